"""Resumable progress files, shard merging, and parsing of a window's generated tokens."""

import pytest

from k2d.progress import ShardProgress, merge_shards, resolve_shard, shard_progress
from k2d.transcribe import parse_window_tokens


def test_truncated_last_line_is_dropped(tmp_path):
    progress = ShardProgress(tmp_path / "p.jsonl")
    progress.append({"key": "a", "v": 1})
    progress.append({"key": "b", "v": 2})
    with open(progress.path, "a", encoding="utf-8") as f:
        f.write('{"key": "c", "v"')  # a kill in the middle of a write
    assert set(progress.load()) == {"a", "b"}
    progress.append({"key": "c", "v": 3})
    assert progress.load()["c"]["v"] == 3


def test_merge_checks_exactly_once(tmp_path):
    shard_progress(tmp_path, 0, 2).append({"key": "r0"})
    shard_progress(tmp_path, 1, 2).append({"key": "r1"})
    assert [r["key"] for r in merge_shards(tmp_path, 2, ["r0", "r1"])] == ["r0", "r1"]
    with pytest.raises(RuntimeError, match="not done"):
        merge_shards(tmp_path, 2, ["r0", "r1", "r2"])
    shard_progress(tmp_path, 1, 2).append({"key": "r0"})
    with pytest.raises(RuntimeError, match="more than one shard"):
        merge_shards(tmp_path, 2, ["r0", "r1"])


def test_resolve_shard(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_shard(None, None) == (0, 1)
    assert resolve_shard(2, 4) == (2, 4)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    assert resolve_shard(None, None) == (5, 8)
    with pytest.raises(ValueError):
        resolve_shard(4, 4)


def _ids(tokenizer, *pieces):
    out = []
    for piece in pieces:
        if piece.startswith("<|"):
            out.append(tokenizer.convert_tokens_to_ids(piece))
        else:
            out += tokenizer.encode(piece, add_special_tokens=False)
    return out


def test_parse_complete_segments_moves_on_by_the_window(tokenizer):
    tokens = _ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|2.00|>", "资料", "<|3.00|>", "<|endoftext|>")
    segments, seek = parse_window_tokens(tokens, tokenizer, window=10.0, audio_seconds=10.0)
    assert [(s.start, s.end, s.text) for s in segments] == [(0.0, 1.5, "模型"), (2.0, 3.0, "资料")]
    assert seek == 10.0


def test_parse_unfinished_segment_seeks_to_last_complete_end(tokenizer):
    tokens = _ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|8.00|>", "<|endoftext|>")
    segments, seek = parse_window_tokens(tokens, tokenizer, window=10.0, audio_seconds=10.0)
    assert len(segments) == 1 and seek == 1.5
    tokens = _ids(tokenizer, "<|0.00|>", "模型", "<|1.50|>", "<|8.00|>", "资料")  # cut by max tokens
    assert parse_window_tokens(tokens, tokenizer, 10.0, 10.0)[1] == 1.5


def test_parse_no_speech_and_clipping(tokenizer):
    assert parse_window_tokens(_ids(tokenizer, "<|0.00|>", "<|endoftext|>"), tokenizer, 10.0, 10.0) == ([], 10.0)
    # times past the audio's end are clipped to it; the next window starts after the audio
    tokens = _ids(tokenizer, "<|0.00|>", "模型", "<|9.00|>", "<|endoftext|>")
    segments, seek = parse_window_tokens(tokens, tokenizer, window=10.0, audio_seconds=4.0)
    assert segments[0].end == 4.0 and seek == 4.0
