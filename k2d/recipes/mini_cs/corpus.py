"""Render mini_cs items: short labelled utterances and long-form lecture recordings.

Every item draws from its own random generators seeded by (seed, split, index), so the corpus is the same
whatever the number of parallel jobs or the order they run in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from k2d.audio import SAMPLE_RATE
from k2d.recipes.mini_cs.audio import brown_noise, hard_stretch, mix_at_snr, white_noise
from k2d.recipes.mini_cs.synth import Speaker, synthesize
from k2d.recipes.mini_cs.text import Sentence, generate_sentence

# Speakers of the training splits and test_in; test_ood uses held-out voices at speeds outside this range.
TRAIN_SPEAKERS = [
    Speaker("spk01", "cmn-latn-pinyin+m1", "en-us+m1", 165, 45),
    Speaker("spk02", "cmn-latn-pinyin+f2", "en-us+f2", 150, 60),
    Speaker("spk03", "cmn-latn-pinyin+m3", "en-gb+m3", 175, 40),
    Speaker("spk04", "cmn-latn-pinyin+f4", "en-gb-x-rp+f4", 160, 70),
    Speaker("spk05", "cmn-latn-pinyin", "en-us", 185, 50),
    Speaker("spk06", "cmn-latn-pinyin+f1", "en-029+f1", 155, 55),
    Speaker("spk07", "cmn-latn-pinyin+m2", "en-gb-scotland+m2", 170, 35),
    Speaker("spk08", "cmn-latn-pinyin+f3", "en-us+f3", 145, 65),
]
OOD_SPEAKERS = [
    Speaker("ood01", "cmn-latn-pinyin+klatt", "en-us-nyc+klatt", 130, 30),
    Speaker("ood02", "cmn-latn-pinyin+f5", "en-gb-x-gbclan+f5", 205, 80),
    Speaker("ood03", "cmn-latn-pinyin+m7", "en-gb-x-gbcwmd+m7", 200, 25),
]
SPLIT_CODES = {"train_labelled": 1, "dev": 2, "train_unlabelled": 3, "test_in": 4, "test_ood": 5,
               "train_unlabelled_ood": 6, "dev_ood": 7}


@dataclass(frozen=True)
class LongFormStyle:
    """How a long-form recording is put together."""

    pause_range: tuple[float, float] = (0.3, 1.5)
    hard_stretch_prob: float = 0.12  # after each utterance
    overlap_noise_prob: float = 0.1  # noise laid over an utterance
    overlap_snr_range: tuple[float, float] = (0.0, 10.0)
    background_snr_range: tuple[float, float] | None = None  # noise over the whole recording (test_ood)
    noise_floor: float = 3e-4


@dataclass
class Segment:
    """One spoken sentence inside an item, times in seconds from the item's start."""

    start: float
    end: float
    text: str
    kind: str


@dataclass
class RenderedItem:
    audio: np.ndarray
    segments: list[Segment]
    speaker_id: str
    nonspeech_seconds: float = 0.0
    hard_stretches: dict[str, int] = field(default_factory=dict)


def item_rngs(seed: int, split: str, index: int) -> tuple[random.Random, np.random.Generator]:
    """Independent text and audio generators for one item."""
    key = [seed, SPLIT_CODES[split], index]
    return random.Random("-".join(map(str, key))), np.random.default_rng(key)


def speak(sentence: Sentence, speaker: Speaker, text_rng: random.Random, rng: np.random.Generator):
    """Synthesize with a small per-utterance jitter in speed and pitch, at a random loudness."""
    jittered = Speaker(
        speaker.speaker_id,
        speaker.zh_voice,
        speaker.en_voice,
        speaker.speed + text_rng.randint(-10, 10),
        min(99, max(0, speaker.pitch + text_rng.randint(-5, 5))),
    )
    audio = synthesize(sentence.text, jittered)
    peak = float(np.max(np.abs(audio))) or 1.0
    return audio / peak * rng.uniform(0.3, 0.8)


def render_utterance(seed: int, split: str, index: int, speakers: list[Speaker]) -> RenderedItem:
    """A short labelled utterance with 0.1-0.3 s of near-silence around it."""
    text_rng, rng = item_rngs(seed, split, index)
    speaker = speakers[index % len(speakers)]
    sentence = generate_sentence(text_rng)
    speech = speak(sentence, speaker, text_rng, rng)
    lead, tail = (int(rng.uniform(0.1, 0.3) * SAMPLE_RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    audio = audio + white_noise(rng, audio.size, 3e-4)
    start = lead / SAMPLE_RATE
    segment = Segment(start, start + speech.size / SAMPLE_RATE, sentence.text, sentence.kind)
    return RenderedItem(audio.astype(np.float32), [segment], speaker.speaker_id, (lead + tail) / SAMPLE_RATE)


def render_longform(
    seed: int, split: str, index: int, speakers: list[Speaker], minutes: float, style: LongFormStyle
) -> RenderedItem:
    """A lecture recording of about `minutes`: sentences, pauses and hard stretches, one speaker."""
    text_rng, rng = item_rngs(seed, split, index)
    speaker = speakers[index % len(speakers)]
    pieces: list[np.ndarray] = [np.zeros(int(rng.uniform(0.2, 1.0) * SAMPLE_RATE), np.float32)]
    position = pieces[0].size
    segments: list[Segment] = []
    hard_counts: dict[str, int] = {}
    target = int(minutes * 60 * SAMPLE_RATE)
    while position < target:
        sentence = generate_sentence(text_rng)
        speech = speak(sentence, speaker, text_rng, rng)
        if rng.random() < style.overlap_noise_prob:
            noise = brown_noise(rng, speech.size, 0.1)
            speech = mix_at_snr(speech, noise, rng.uniform(*style.overlap_snr_range))
            hard_counts["overlap_noise"] = hard_counts.get("overlap_noise", 0) + 1
        start = position / SAMPLE_RATE
        segments.append(Segment(start, start + speech.size / SAMPLE_RATE, sentence.text, sentence.kind))
        pause = np.zeros(int(rng.uniform(*style.pause_range) * SAMPLE_RATE), np.float32)
        pieces += [speech, pause]
        position += speech.size + pause.size
        if rng.random() < style.hard_stretch_prob:
            kind = str(rng.choice(["silence", "noise", "tones"]))
            stretch = hard_stretch(rng, kind)
            gap = np.zeros(int(rng.uniform(0.3, 1.0) * SAMPLE_RATE), np.float32)
            pieces += [stretch, gap]
            position += stretch.size + gap.size
            hard_counts[kind] = hard_counts.get(kind, 0) + 1
    audio = np.concatenate(pieces)
    audio = audio + white_noise(rng, audio.size, style.noise_floor)
    if style.background_snr_range is not None:
        background = brown_noise(rng, audio.size, 0.1) + white_noise(rng, audio.size, 0.05)
        audio = mix_at_snr(audio, background, rng.uniform(*style.background_snr_range))
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:  # keep the mix inside [-1, 1] without clipping
        audio = audio * (0.99 / peak)
    speech_seconds = sum(s.end - s.start for s in segments)
    return RenderedItem(
        audio.astype(np.float32), segments, speaker.speaker_id, audio.size / SAMPLE_RATE - speech_seconds,
        hard_counts,
    )
