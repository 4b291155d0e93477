"""Counting a teacher's hallucinations in its long-form labels, given where the true speech is.

Two kinds, as Whisper's users meet them: text written over audio without speech (silence, music, tones,
noise), and text that loops (the K2D paper's repetition events, counted on the recording's whole text as
its Table 4 does: k2d.metrics.distances.loop_events). A segment is "over non-speech" when less
than `min_speech` of its time lies inside the reference utterances: Whisper's timestamps are coarse, so a
segment that overlaps an utterance by a little is not counted.

    counts = hallucinations(segments, speech)   # segments: [(start, end, text)], speech: [(start, end)]
"""

from __future__ import annotations

from dataclasses import dataclass

from k2d.metrics.distances import loop_events
from k2d.text.script import join_texts
from k2d.text.units import text_units

MIN_SPEECH = 0.25  # share of a segment's time that must be reference speech for it to count as speech


def speech_seconds(start: float, end: float, speech: list[tuple[float, float]]) -> float:
    """Seconds of [start, end] inside the (non-overlapping) speech spans."""
    return sum(max(0.0, min(end, s_end) - max(start, s_start)) for s_start, s_end in speech)


@dataclass
class HallucinationCounts:
    segments: int = 0  # segments with text
    over_non_speech: int = 0  # of them: less than MIN_SPEECH of their time is speech
    over_non_speech_units: int = 0  # words and characters (MER units) in those segments
    loop_events: int = 0  # repetition events in the recording's joined text

    def __add__(self, other: HallucinationCounts) -> HallucinationCounts:
        return HallucinationCounts(*(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True)))


def hallucinations(segments: list[tuple[float, float, str]], speech: list[tuple[float, float]],
                   min_speech: float = MIN_SPEECH) -> HallucinationCounts:
    """The hallucination counts of one recording's segments against its reference speech spans."""
    counts = HallucinationCounts()
    for start, end, text in segments:
        units = text_units(text)
        if not units:
            continue
        counts.segments += 1
        covered = speech_seconds(start, end, speech)
        if end <= start or covered < min_speech * (end - start):
            counts.over_non_speech += 1
            counts.over_non_speech_units += len(units)
    counts.loop_events = loop_events(join_texts([text for *_, text in segments]))
    return counts
