"""Resumable progress files and shard merging."""

import pytest

from k2d.progress import ShardProgress, merge_shards, resolve_shard, shard_progress


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


def test_a_grown_manifest_is_done_once_per_item_across_shards(tmp_path):
    """Items done before keep their shard when new ones are inserted ahead of them (with shards by position,
    an item moved to the other shard and was done twice: the merge refused)."""
    from k2d.progress import ShardJob, run_sharded

    output, done_by = tmp_path / "out.txt", []

    def run(items: list[str]) -> None:
        for shard in (0, 1):
            def work(todo, shard=shard):
                for item in todo:
                    done_by.append((item, shard))
                    yield {"key": item}

            def merge(records, _):
                output.write_text(" ".join(r["key"] for r in records))

            job = ShardJob(output, shard, 2)
            assert run_sharded(job, lambda: items, str, work, merge, "test", inputs={"items": " ".join(items)},
                               growing=("items",)) == 0

    first = [f"rec{i}" for i in range(8)]
    run(first)
    grown = ["new0", "new1", "new2", *first]  # new recordings sort first: every old one moves 3 places
    run(grown)
    assert output.read_text() == " ".join(grown)
    assert sorted(item for item, _ in done_by) == sorted(grown)  # each item done exactly once
