"""The inference core: Whisper's decoding rules, window parsing, fallback and no-speech rules, and the
recognizer's one-pass decoding (against hand-worked expectations)."""

import dataclasses

import numpy as np
import pytest
import torch

from k2d.inference.recognizer import Hypothesis, TransformersRecognizer
from k2d.inference.rules import compression_ratio, filter_logits, is_no_speech, needs_fallback
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import decode_windows
from k2d.inference.windows import split_segments
from k2d.models.tokenizer import SpecialTokens


@pytest.fixture(scope="module")
def specials(tokenizer):
    return SpecialTokens.of(tokenizer)


def ids(tokenizer, *pieces):
    out = []
    for piece in pieces:
        out += [tokenizer.convert_tokens_to_ids(piece)] if piece.startswith("<|") else tokenizer.encode(
            piece, add_special_tokens=False)
    return out


def split(tokenizer, specials, tokens, audio_seconds=10.0):
    segments, seek = split_segments(tokens, specials, lambda t: tokenizer.decode(t), audio_seconds)
    return [(s.start, s.end, s.text) for s in segments], seek


def test_complete_segments_use_the_whole_window(tokenizer, specials):
    tokens = ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|2.00|>", "资料", "<|3.00|>")
    assert split(tokenizer, specials, tokens) == ([(0.0, 1.5, "模型"), (2.0, 3.0, "资料")], None)


def test_an_unfinished_segment_is_dropped_and_decoded_again(tokenizer, specials):
    tokens = ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|2.00|>", "资料")  # cut by the window
    assert split(tokenizer, specials, tokens) == ([(0.0, 1.5, "模型")], 1.5)
    # ending on the start of a new segment: seek to the end of the last complete one
    tokens = ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|8.00|>")
    assert split(tokenizer, specials, tokens) == ([(0.0, 1.5, "模型")], 1.5)


def test_batched_mode_keeps_the_unfinished_segment_to_the_window_end(tokenizer, specials):
    # a batched window ends where speech ends: nothing decodes the tail again, so it is kept, up to 10 s
    tokens = ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|2.00|>", "资料")
    segments, seek = split_segments(tokens, specials, lambda t: tokenizer.decode(t), 10.0, keep_unfinished=True)
    assert [(s.start, s.end, s.text) for s in segments] == [(0.0, 1.5, "模型"), (2.0, 10.0, "资料")]
    assert seek is None


def test_text_no_timestamp_closes_is_kept_to_the_window_end(tokenizer, specials):
    tokens = ids(tokenizer, "<|1.00|>", "模型", "资料")
    assert split(tokenizer, specials, tokens) == ([(1.0, 10.0, "模型资料")], None)
    tokens = ids(tokenizer, "<|1.00|>", "模型", "<|4.00|>")  # one segment, closed by its end
    assert split(tokenizer, specials, tokens) == ([(1.0, 4.0, "模型")], None)


def test_times_are_clipped_to_the_audio_and_text_past_it_dropped(tokenizer, specials):
    tokens = ids(tokenizer, "<|0.00|>", "模型", "<|9.00|>")
    assert split(tokenizer, specials, tokens, audio_seconds=4.0) == ([(0.0, 4.0, "模型")], None)
    tokens = ids(tokenizer, "<|0.00|>", "模型", "<|3.00|>", "<|5.00|>", "资料", "<|6.00|>")
    assert split(tokenizer, specials, tokens, audio_seconds=4.0) == ([(0.0, 3.0, "模型")], None)
    assert split(tokenizer, specials, ids(tokenizer, "<|0.00|>")) == ([], None)


def filtered(tokenizer, specials, generated, logits=None, max_initial=50):
    if logits is None:  # flat, but <|endoftext|> likelier than all timestamps together (no timestamp forcing)
        logits = torch.zeros(1, len(tokenizer))
        logits[0, specials.eot] = 10.0
    filter_logits(logits, [generated], specials, timestamps=True, suppress=specials.never_generated(),
                  begin_suppress=[], max_initial_timestamp_index=max_initial)
    return torch.isfinite(logits[0])


def test_a_window_begins_with_an_early_timestamp(tokenizer, specials):
    allowed = filtered(tokenizer, specials, [])
    tb = specials.timestamp_begin
    assert not allowed[:tb].any()  # no text, no <|endoftext|>, no special
    assert allowed[tb : tb + 51].all() and not allowed[tb + 51 :].any()  # <|0.00|> ... <|1.00|> only


def test_timestamps_come_in_pairs_and_never_go_back(tokenizer, specials):
    tb, eot = specials.timestamp_begin, specials.eot
    text = ids(tokenizer, "模型")
    # after <|0.50|> text <|2.00|>: another timestamp (>= 2.00, the next segment's start) or the end
    allowed = filtered(tokenizer, specials, [tb + 25, *text, tb + 100])
    assert not allowed[:eot].any() and allowed[eot]
    assert not allowed[tb : tb + 100].any() and allowed[tb + 100 :].all()
    # after a pair (end, start): text follows, not a third timestamp
    allowed = filtered(tokenizer, specials, [tb + 25, *text, tb + 100, tb + 110])
    assert allowed[:eot].all() and not allowed[tb:].any()
    # inside a segment: text, the end, or a later timestamp (never the segment's own start: no zero length)
    allowed = filtered(tokenizer, specials, [tb + 25, *text])
    assert allowed[:eot].all() and not allowed[tb : tb + 26].any() and allowed[tb + 26 :].all()


def test_timestamps_win_when_together_more_likely_than_any_text(tokenizer, specials):
    tb = specials.timestamp_begin
    logits = torch.zeros(1, len(tokenizer))
    logits[0, 5] = 3.0  # the best text token: p ~ e^3 / Z; 1,501 timestamps at e^0 each outweigh it
    allowed = filtered(tokenizer, specials, [tb, *ids(tokenizer, "模型")], logits)
    assert not allowed[:tb].any() and allowed[tb + 1 :].all()
    logits[0, 5] = 10.0  # e^10 = 22,026 > 1,501: text may still be chosen
    allowed = filtered(tokenizer, specials, [tb, *ids(tokenizer, "模型")], logits)
    assert allowed[5]


def test_fallback_and_no_speech_rules():
    settings = GenerationSettings()  # thresholds: compression 2.4, log-probability -1.0, no-speech 0.6
    assert compression_ratio("") == 0.0
    looping = "the model " * 40
    assert compression_ratio(looping) > 2.4 and compression_ratio("一二三四五六七八九十") < 2.4
    assert needs_fallback(looping, -0.2, 0.1, settings)  # repeats itself
    assert needs_fallback("模型", -1.5, 0.1, settings)  # unsure
    assert not needs_fallback("模型", -1.5, 0.9, settings)  # unsure, but probably silence: no fallback
    assert not needs_fallback("模型", -0.5, 0.1, settings)
    assert is_no_speech(-1.5, 0.9, settings) and not is_no_speech(-0.5, 0.9, settings)
    assert not is_no_speech(-1.5, 0.5, settings)
    assert not is_no_speech(-1.5, 0.9, dataclasses.replace(settings, no_speech_threshold=None))
    assert Hypothesis([1, 2, 3], -2.0, 0.0).avg_logprob == pytest.approx(-0.5)  # + 1 for <|endoftext|>


def test_each_window_is_decoded_once_and_obeys_the_rules(tiny_whisper, monkeypatch):
    model, processor = tiny_whisper
    recognizer = TransformersRecognizer(model, processor)
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("transformers' generate was called"))
    rng = np.random.default_rng(0)
    audios = [(0.1 * rng.standard_normal(16000 * s)).astype("float32") for s in (3, 7, 10)]
    settings = GenerationSettings(max_new_tokens=30, no_speech_threshold=None)
    results = decode_windows(recognizer, audios, settings)
    tb = recognizer.specials.timestamp_begin
    for result in results:
        times = [t for t in result.tokens if t >= tb]
        assert result.tokens[0] >= tb and times == sorted(times)  # starts with a timestamp, never goes back
        assert all(s.end > s.start for s in result.segments)


def test_prompts_of_different_lengths_batch_like_single_windows(tiny_whisper):
    model, processor = tiny_whisper
    recognizer = TransformersRecognizer(model, processor)
    rng = np.random.default_rng(1)
    audios = [(0.1 * rng.standard_normal(16000 * 4)).astype("float32") for _ in range(3)]
    prompt = processor.tokenizer.encode("模型 资料", add_special_tokens=False)
    prompts = [None, prompt, prompt * 3]
    settings = GenerationSettings(max_new_tokens=20, no_speech_threshold=None)
    batched = decode_windows(recognizer, audios, settings, prompts)
    alone = [decode_windows(recognizer, [a], settings, [p])[0] for a, p in zip(audios, prompts, strict=True)]
    assert [r.tokens for r in batched] == [r.tokens for r in alone]
    beams = decode_windows(recognizer, audios, dataclasses.replace(settings, num_beams=3))
    assert all(r.tokens and r.tokens[0] >= recognizer.specials.timestamp_begin for r in beams)
