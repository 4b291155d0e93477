"""Decoder label construction and the KD loss, against hand-worked values."""

import math

import pytest
import torch

from k2d.models.tokenizer import snap_time
from k2d.train.labels import IGNORE_INDEX, LabelTooLong, TimedText, build_decoder_labels, label_fits
from k2d.train.losses import cross_entropy, kl_divergence


def ids(tokenizer, *tokens):
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def test_snap_time():
    assert snap_time(2.333, 30) == pytest.approx(2.34)
    assert snap_time(-0.5, 30) == 0.0 and snap_time(31.0, 30) == 30.0


def test_labels_with_timestamps_and_an_unfinished_segment(tokenizer):
    segments = [TimedText(0.5, 2.0, "你好"), TimedText(2.5, None, "world")]
    labels = build_decoder_labels(tokenizer, segments, window=10.0, timestamps=True)
    text = tokenizer.encode("你好", add_special_tokens=False)
    sequence = (
        ids(tokenizer, "<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|0.50|>") + text
        + ids(tokenizer, "<|2.00|>", "<|2.50|>", "<|endoftext|>")  # unfinished segment: its start only
    )
    assert labels.input_ids == sequence[:-1]
    assert labels.targets == [IGNORE_INDEX, IGNORE_INDEX] + sequence[3:]  # no loss on <|zh|> <|transcribe|>
    assert labels.num_prompt_tokens == 0


def test_labels_without_timestamps_with_prompt(tokenizer):
    segments = [TimedText(0.0, 1.0, "模型"), TimedText(1.5, 3.0, "GPU")]
    labels = build_decoder_labels(tokenizer, segments, window=10.0, timestamps=False, prompt_text="上一句")
    prompt = tokenizer.encode("上一句", add_special_tokens=False)
    body = tokenizer.encode("模型 GPU", add_special_tokens=False)
    prefix = ids(tokenizer, "<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>")
    sequence = ids(tokenizer, "<|startofprev|>") + prompt + prefix + body + ids(tokenizer, "<|endoftext|>")
    assert labels.input_ids == sequence[:-1]
    masked = 1 + len(prompt) + len(prefix) - 1  # prompt tokens and the forced prefix
    assert labels.targets == [IGNORE_INDEX] * masked + sequence[1 + masked :]
    assert labels.num_prompt_tokens == 1 + len(prompt)


def test_a_long_prompt_is_cut_to_fit_the_context(tokenizer):
    segments = [TimedText(0.0, 1.0, "模型")]
    labels = build_decoder_labels(tokenizer, segments, window=10.0, prompt_text="资料" * 300)
    assert len(labels.input_ids) + 1 <= 448 and labels.num_prompt_tokens == 448 // 2  # <|startofprev|> + 223


def test_a_label_longer_than_the_context_is_refused_not_truncated(tokenizer):
    # 444 tokens fit after <|startoftranscript|><|zh|><|transcribe|> and before <|endoftext|>.
    # " x" is two tokens in the fixture tokenizer (" " and "x"), so " x" * k is 2k tokens.
    assert tokenizer.encode(" x x", add_special_tokens=False) == tokenizer.encode(" x", add_special_tokens=False) * 2
    assert len(tokenizer.encode(" x", add_special_tokens=False)) == 2
    fits = [TimedText(0.0, 9.0, " ".join(["x"] * 221))]  # <|0.00|> + 442 + <|9.00|> = 444
    too_long = [TimedText(0.0, 9.0, " ".join(["x"] * 222))]  # 446
    assert len(build_decoder_labels(tokenizer, fits, window=10.0).input_ids) == 3 + 444
    with pytest.raises(LabelTooLong):
        build_decoder_labels(tokenizer, too_long, window=10.0)
    assert label_fits(tokenizer, fits, 10.0) and not label_fits(tokenizer, too_long, 10.0)


def test_kl_by_hand():
    # one token, vocabulary of 2; student logits (0, 0), teacher logits (ln 3, 0), temperature 2
    student = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0], [-5.0, 5.0]]])
    targets = torch.tensor([[0, IGNORE_INDEX]])  # the second position is padding / prompt: no loss
    p = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]  # softmax((ln 3)/2, 0)
    expected = 4 * sum(pi * math.log(pi / 0.5) for pi in p)  # T^2 * KL(p || (0.5, 0.5))
    assert kl_divergence(student, teacher, targets, temperature=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.14536, abs=1e-4)  # 4 * (0.63397 * 0.23740 - 0.36603 * 0.31190)


def test_kl_is_zero_for_equal_logits_and_ce_by_hand():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, IGNORE_INDEX], [0, IGNORE_INDEX, IGNORE_INDEX]])
    assert kl_divergence(logits, logits.clone(), targets, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 2, 4)
    assert cross_entropy(uniform, torch.tensor([[3, IGNORE_INDEX]])).item() == pytest.approx(math.log(4))


def window_chunk(tmp_path, continued: bool = False, pause_before: float | None = None, next_start: float = 7.2,
                 cut_id: str = "rec-chunk00000"):
    """A 3 s chunk (one complete segment 0.5-3.0 s) at 1 s of a 12 s recording whose window ends at 10 s, the
    teacher's next segment beginning at `next_start` s."""
    import numpy as np
    import soundfile as sf
    from lhotse import MonoCut, Recording, SupervisionSegment

    from k2d.cuts import ChunkFields

    path = tmp_path / "rec.flac"
    sf.write(path, (np.random.default_rng(0).standard_normal(12 * 16000) * 0.05).astype("float32"), 16000)
    recording = Recording.from_file(path, recording_id="rec")
    fields = ChunkFields("你好", continued, 3.0, window_end=10.0, next_start=next_start, pause_before=pause_before)
    return MonoCut(cut_id, start=1.0, duration=10.0 if continued else 3.0, channel=0, recording=recording,
                   supervisions=[SupervisionSegment("s0", "rec", 0.5, 2.5, channel=0, text="你好")],
                   custom=fields.to_custom())


def test_whole_window_view_runs_to_the_window_end_and_closes_with_the_next_start(tokenizer, tmp_path):
    from k2d.train.data import LabelOptions, load_cut_audio, make_example, training_view

    cut = window_chunk(tmp_path)
    view, segments = training_view(cut, LabelOptions(window=10.0, whole_window=True))
    assert (view.start, view.duration) == (1.0, 10.0) and load_cut_audio(view).size == 160000
    assert segments == [TimedText(0.5, 3.0, "你好"), TimedText(7.2, None, "")]
    labels = build_decoder_labels(tokenizer, segments, window=10.0)
    expected = (ids(tokenizer, "<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|0.50|>")
                + tokenizer.encode("你好", add_special_tokens=False)
                + ids(tokenizer, "<|3.00|>", "<|7.20|>", "<|endoftext|>"))
    assert labels.input_ids + [labels.targets[-1]] == expected
    # the authors' form: the audio the label covers, no word of what follows
    view, segments = training_view(cut, LabelOptions(window=10.0))
    assert view.duration == 3.0 and segments == [TimedText(0.5, 3.0, "你好")]
    # a continued chunk's authors' form is cut back to its last complete segment
    assert training_view(window_chunk(tmp_path, continued=True), LabelOptions(window=10.0))[0].duration == 3.0
    # a label that leaves out the speech after 7.2 s must say where it begins: timestamps even at prob 0
    example = make_example("k", None, segments + [TimedText(7.2, None, "")], tokenizer,
                           LabelOptions(window=10.0, timestamp_prob=0.0), epoch=0)
    assert example.variant == "ts"


def test_pause_open_window_starts_where_the_speech_before_ended(tmp_path):
    from k2d.train.data import LabelOptions, load_cut_audio, training_view

    every = LabelOptions(window=10.0, whole_window=True, pause_open=1.0)
    # 1 s of pause before the chunk: the window opens at 0 s of the recording and ends 1 s earlier (10 s long);
    # every time in the label moves 1 s later
    view, segments = training_view(window_chunk(tmp_path, pause_before=1.0), every)
    assert (view.start, view.duration) == (0.0, 10.0) and load_cut_audio(view).size == 160000
    assert segments == [TimedText(1.5, 4.0, "你好"), TimedText(8.2, None, "")]
    # the next segment now begins after the window's end: nothing of it is in the label
    view, segments = training_view(window_chunk(tmp_path, pause_before=1.0, next_start=9.5), every)
    assert segments == [TimedText(1.5, 4.0, "你好")]
    # no pause recorded (an older manifest), none at all, or pause_open 0: the window opens at the chunk's start
    for cut, options in ((window_chunk(tmp_path), every), (window_chunk(tmp_path, pause_before=0.0), every),
                         (window_chunk(tmp_path, pause_before=1.0), LabelOptions(window=10.0, whole_window=True))):
        assert training_view(cut, options)[0].start == 1.0
    # the same chunks open early every time, about the share asked for
    half = LabelOptions(window=10.0, whole_window=True, pause_open=0.5)
    cuts = [window_chunk(tmp_path, pause_before=1.0, cut_id=f"rec-chunk{i:05d}") for i in range(400)]
    early = [training_view(c, half)[0].start < 1.0 for c in cuts]
    assert early == [training_view(c, half)[0].start < 1.0 for c in cuts]
    assert 160 <= sum(early) <= 240


def test_pause_lead_keeps_the_first_segment_inside_the_window():
    from k2d.cuts import ChunkFields
    from k2d.train.data import pause_lead

    class Cut:
        id, start = "c", 5.0

    fields = ChunkFields("x", False, 9.6, window_end=10.0, pause_before=1.0)
    # the first segment ends at 9.6 of a 10 s window: the window may open only 0.4 s earlier
    assert pause_lead(Cut(), fields, [TimedText(0.0, 9.6, "x")], 1.0) == pytest.approx(0.4)
    # less than MIN_PAUSE_LEAD (0.1 s) of room: the same window as without
    assert pause_lead(Cut(), fields, [TimedText(0.0, 9.95, "x")], 1.0) == 0.0
    # a first segment that is unfinished cannot be moved
    assert pause_lead(Cut(), fields, [TimedText(0.0, None, "")], 1.0) == 0.0


def test_chunks_from_an_older_stage_2_are_named_when_pause_open_needs_their_pauses(tmp_path):
    from k2d.distill import without_pauses

    older, newer = window_chunk(tmp_path, cut_id="older"), window_chunk(tmp_path, pause_before=0.0, cut_id="newer")
    assert without_pauses([newer, older]) == "older"
    assert without_pauses([newer]) is None


def test_at_loss_tokens_is_a_view_when_every_token_takes_a_loss():
    from k2d.train.losses import at_loss_tokens

    x = torch.arange(12.0).reshape(2, 2, 3)
    every = torch.ones(2, 2, dtype=torch.bool)
    flat = at_loss_tokens(x, every)
    assert flat.shape == (4, 3) and flat.data_ptr() == x.data_ptr()  # no copy
    some = torch.tensor([[True, False], [False, True]])
    assert at_loss_tokens(x, some).tolist() == [[0.0, 1.0, 2.0], [9.0, 10.0, 11.0]]
