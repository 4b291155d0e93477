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


def test_a_second_run_of_a_shard_is_refused_while_the_first_runs(tmp_path):
    # issue 29: two runs of stage 1 on the same output both did all the work
    from k2d.progress import ShardJob, run_sharded
    from k2d.utils import exclusive

    output = tmp_path / "out.jsonl"
    lock = tmp_path / ".progress" / "out" / "shard-00000-of-00001.lock"
    done = []
    with exclusive(lock, "the first run"):  # what the first run holds while it works
        code = run_sharded(ShardJob(output), items=lambda: ["a"], key=str,
                           work=lambda todo: done.extend(todo) or [], merge=lambda records, n: None, stage="test")
    assert code == 1 and done == []


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from k2d.utils import TEMPORARY_MARK, WRITER, remove_stray_temporaries

    host = WRITER.rsplit("-", 1)[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stray = tmp_path / f".out{TEMPORARY_MARK}{host}-{dead.stdout.strip()}-abc123.jsonl.gz"
    block = tmp_path / f"block-1.h5{TEMPORARY_MARK}{host}-{dead.stdout.strip()}.h5"
    live = tmp_path / f".out{TEMPORARY_MARK}{host}-{os.getpid()}-xyz.jsonl.gz"  # this process: still writing
    for path in (stray, block, live):
        path.write_text("partial")
    assert sorted(remove_stray_temporaries(tmp_path)) == sorted([stray, block])
    assert live.exists() and not stray.exists() and not block.exists()


def test_a_full_disk_is_named_with_the_output_and_leaves_nothing(tmp_path):
    # issue 29 case 10: a bare "OSError: [Errno 28]" (or torch's "PytorchStreamWriter failed") with no path
    import errno

    import pytest

    from k2d.utils import DiskFullError, atomic_path

    final = tmp_path / "out.jsonl.gz"
    for raised in (OSError(errno.ENOSPC, "No space left on device"),
                   RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                                "data/0: file write failed")):
        with pytest.raises(DiskFullError, match=f"while writing {final.name}"), atomic_path(final):
            raise raised
        assert list(tmp_path.iterdir()) == []  # no output, no temporary
    with pytest.raises(ValueError), atomic_path(final):  # other errors pass unchanged
        raise ValueError("not about space")
