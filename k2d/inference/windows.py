"""From the tokens decoded for one window to timed segments and the next seek position (openai's rules).

    <|0.00|> a <|2.00|><|2.40|> b <|5.00|>           two complete segments; seek past the window
    <|0.00|> a <|2.00|><|2.40|> b                    b is unfinished: dropped, seek to 2.00 (decoded again)
    <|0.00|> a <|2.00|><|2.40|><|endoftext|>          ends on a new segment's start: seek to 2.00
    <|0.00|> a b                                     no segment is closed: one segment to the window end
    <|0.00|> a <|3.00|>                              one segment, closed by its only end timestamp
    <|1.00|> a                                       one segment from 1.00 to the window end

With `keep_unfinished` (batched long-form: a window ends in silence, so nothing is decoded again) the
unfinished last segment is kept, up to the window end: `<|0.00|> a <|2.00|><|2.40|> b` gives a and b.

Times are relative to the window and clipped to the audio it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from k2d.models.tokenizer import SpecialTokens


@dataclass
class Segment:
    start: float  # seconds, relative to the audio passed in (long-form: to the recording)
    end: float
    text: str
    tokens: list[int] = field(default_factory=list, repr=False)  # timestamps and text, as decoded
    avg_logprob: float | None = None  # of the window that produced it (the teacher's confidence)
    no_speech_prob: float | None = None


def split_segments(
    tokens: list[int], specials: SpecialTokens, decode_text, audio_seconds: float, keep_unfinished: bool = False
) -> tuple[list[Segment], float | None]:
    """(segments, seek) of one window's generated tokens (without prefix and <|endoftext|>).

    `seek` is where the next window starts, relative to this one: the end of the last complete segment
    when the window ends inside a segment, else None (the whole window was used)."""
    tb = specials.timestamp_begin
    is_time = [t >= tb for t in tokens]

    def clip(token: int) -> float:
        return min(specials.time(token), audio_seconds)

    def segment(piece: list[int], start: float, end: float) -> Segment:
        return Segment(start, max(end, start), decode_text([t for t in piece if t < specials.eot]).strip(), piece)

    pair_ends = [i + 1 for i in range(len(tokens) - 1) if is_time[i] and is_time[i + 1]]
    single_timestamp_ending = is_time[-2:] == [False, True]
    if pair_ends:
        slices = pair_ends + ([len(tokens)] if single_timestamp_ending else [])
        segments, last = [], 0
        for end_index in slices:
            piece = tokens[last:end_index]
            segments.append(segment(piece, clip(piece[0]), clip(piece[-1])))
            last = end_index
        seek = None if single_timestamp_ending else clip(tokens[last - 1])
        if seek is not None and keep_unfinished:
            segments.append(segment(tokens[last:], clip(tokens[last]), audio_seconds))
            seek = None
    else:
        # a closing timestamp ends the segment, else it runs to the window's end
        end = clip(tokens[-1]) if single_timestamp_ending else audio_seconds
        start = clip(tokens[0]) if tokens and is_time[0] else 0.0
        segments, seek = [segment(tokens, start, end)], None
    # text after the audio's end (clipped to zero length) was never spoken
    return [s for s in segments if s.text and s.end > s.start], seek


def plain_text(tokens: list[int], specials: SpecialTokens, decode_text) -> str:
    """Every text token of a window, an unfinished last segment included (short-form transcripts)."""
    return decode_text([t for t in tokens if t < specials.eot]).strip()
