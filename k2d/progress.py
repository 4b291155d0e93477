"""Resumable, sharded work for the long stages (1 and 3): one JSON line per finished item.

Each shard appends a line per item as soon as the item is done (flushed and fsynced), so a killed stage
loses at most the items in flight; a rerun skips what is recorded. A line cut short by a kill is dropped
on load. Items are assigned to shards by a hash of their id, so an item stays in its shard when the
manifest grows or shrinks (a position would move it to another shard, which would do it again); the merge
checks that every item was done exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from k2d.utils import exclusive, remove_stray_temporaries

log = logging.getLogger(__name__)


def resolve_shard(shard: int | None, num_shards: int | None) -> tuple[int, int]:
    """--shard/--num-shards when given, else this torchrun rank (RANK/WORLD_SIZE), else (0, 1)."""
    if shard is None and num_shards is None and "WORLD_SIZE" in os.environ:
        shard, num_shards = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    shard, num_shards = shard or 0, num_shards or 1
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in 0..{num_shards - 1}")
    return shard, num_shards


def in_shard(key: str, shard: int, num_shards: int) -> bool:
    """By the item's id, the key up to "@" (what follows says what the item is: paths, spans, which can
    differ between machines and runs)."""
    return zlib.crc32(key.split("@", 1)[0].encode("utf-8")) % num_shards == shard


class ShardProgress:
    """The progress file of one shard: {"key": ..., ...} per line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        records, good_bytes = {}, 0
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut short by a kill: drop it and everything after
                if not line.endswith(b"\n"):
                    break
                records[record["key"]] = record
                good_bytes += len(line)
        if good_bytes < self.path.stat().st_size:
            log.warning("%s: dropping an incomplete last line left by an interrupted run", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)
        return records

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def shard_progress(progress_dir: Path, shard: int, num_shards: int) -> ShardProgress:
    return ShardProgress(Path(progress_dir) / f"shard-{shard:05d}-of-{num_shards:05d}.jsonl")


def merge_shards(progress_dir: Path, num_shards: int, keys_in_order: Iterable[str]) -> list[dict]:
    """Every shard's records in manifest order; raises if an item is missing or was done twice."""
    merged: dict[str, dict] = {}
    for shard in range(num_shards):
        for key, record in shard_progress(progress_dir, shard, num_shards).load().items():
            if key in merged:
                raise RuntimeError(f"{key} was processed by more than one shard in {progress_dir}")
            merged[key] = record
    ordered, missing = [], []
    for key in keys_in_order:
        (ordered.append(merged.pop(key)) if key in merged else missing.append(key))
    if missing:
        raise RuntimeError(
            f"{len(missing)} item(s) not done yet in {progress_dir} (first: {missing[0]}); "
            "run the unfinished shards again"
        )
    if merged:  # items that left the manifest since they were done: no longer part of the output
        log.info("%d item(s) done before are no longer in the manifest and are left out (e.g. %s)", len(merged),
                 next(iter(merged)))
    return ordered


def all_done(progress_dir: Path, num_shards: int, keys: Iterable[str]) -> bool:
    done = set()
    for shard in range(num_shards):
        done |= set(shard_progress(progress_dir, shard, num_shards).load())
    return all(key in done for key in keys)


def progress_dir(output: Path) -> Path:
    """Where the per-shard progress of OUTPUT lives: OUTPUT's directory/.progress/OUTPUT-stem/."""
    output = Path(output)
    return output.parent / ".progress" / output.name.split(".")[0]


def add_shard_arguments(parser) -> None:
    parser.add_argument("--shard", type=int, help="this job's shard (default: torchrun RANK, else 0)")
    parser.add_argument("--num-shards", type=int, help="number of shards (default: torchrun WORLD_SIZE, else 1)")
    parser.add_argument("--merge-only", action="store_true", help="only merge finished shards into OUTPUT")
    parser.add_argument("--no-merge", action="store_true",
                        help="do this shard only; leave the merge to a later --merge-only call (k2d.launch arrays)")
    parser.add_argument("--force", action="store_true",
                        help="start again from scratch (each shard forgets its own progress; the merge redoes OUTPUT)")


@dataclass(frozen=True)
class ShardJob:
    """Which part of a sharded stage this process does, and how (the CLI's --shard/--num-shards/...)."""

    output: Path
    shard: int | None = None
    num_shards: int | None = None
    force: bool = False
    merge_only: bool = False
    no_merge: bool = False

    @classmethod
    def from_args(cls, output: Path, args) -> ShardJob:
        return cls(Path(output), args.shard, args.num_shards, args.force, args.merge_only, args.no_merge)


def _done_records(directory: Path, num_shards: int) -> dict[str, dict]:
    return {key: record for shard in range(num_shards)
            for key, record in shard_progress(directory, shard, num_shards).load().items()}


# The output's provenance also records the shard records it was merged from: a shard that redid an item
# (a recording restored after a failure) without merging changes them, and the next merge sees that.
PROGRESS_INPUT = "shard records"


def records_state(records: dict[str, dict]) -> dict:
    digest = hashlib.sha256()
    for key in sorted(records):
        digest.update(json.dumps(records[key], sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return {"items": len(records), "sha256": digest.hexdigest()[:16]}


def run_sharded(job: ShardJob, items: Callable[[], Iterable], key: Callable[[object], str],
                work: Callable[[list], Iterable[dict]], merge: Callable[[list[dict], int], None], stage: str,
                inputs: dict | None = None, growing: tuple[str, ...] = (),
                retry: Callable[[dict], bool] = lambda record: False) -> int:
    """The common driver of a resumable, sharded stage; returns the process exit status.

    items() -> the manifest's items in order; key(item) -> its id; work(todo) yields one record
    {"key": ..., ...} per item of this shard not done before (each is recorded as soon as it comes);
    merge(records, num_shards) writes the output from every shard's records, in manifest order.

    `inputs` ({name: path, model or config}) are what the output is made from (k2d.provenance). When the
    output exists and an input named in `growing` (the items' manifest) changed, only the new items are
    done and the output is made again; any other changed input stops the stage with a message. Records
    for which `retry(record)` holds (an item that failed) are done again on every rerun."""
    from k2d import provenance

    inputs = inputs or {}
    try:
        shard, num_shards = resolve_shard(job.shard, job.num_shards)
    except ValueError as error:
        log.error("%s", error)
        return 2
    directory = progress_dir(job.output)
    if job.output.exists() and not job.force:
        records = _done_records(directory, num_shards)
        # without progress files (cleaned up) there is nothing to compare: the output stands
        checked = {**inputs, PROGRESS_INPUT: records_state(records)} if records else inputs
        changed = provenance.changes(job.output, checked)
        fixed = [name for name in changed if name not in growing and name != PROGRESS_INPUT]
        if fixed:
            log.error("%s: %s changed since %s was made; run the stage again with --force (or restore it)", stage,
                      " and ".join(fixed), job.output)
            return 1
        failed = [k for k, r in records.items() if retry(r)]
        if not changed and not failed:
            log.info("%s exists: skipping %s (use --force to redo)", job.output, stage)
            return 0
        log.info("%s: %s; doing what is new or failed, then %s again", stage, " and ".join(
            [f"{name} changed" for name in changed if name != PROGRESS_INPUT]
            + (["some items were done again since the last merge"] if PROGRESS_INPUT in changed else [])
            + ([f"{len(failed)} item(s) failed before"] if failed else [])),
            job.output)
    try:
        for stray in remove_stray_temporaries(job.output.parent):
            log.info("removed %s, left by a killed run", stray)
        if not job.merge_only:
            with exclusive(directory / f"shard-{shard:05d}-of-{num_shards:05d}.lock",
                           f"{stage} shard {shard}/{num_shards} of {job.output}"):
                progress = shard_progress(directory, shard, num_shards)
                if job.force:  # only this shard's own file: shards of one array start at the same time
                    progress.path.unlink(missing_ok=True)
                done = {k: r for k, r in progress.load().items() if not retry(r)}
                todo = [item for item in items() if in_shard(key(item), shard, num_shards) and key(item) not in done]
                log.info("%s shard %d/%d: %d item(s) done before, %d to do", stage, shard, num_shards, len(done),
                         len(todo))
                for record in work(todo) if todo else ():
                    progress.append(record)
            if job.no_merge:
                return 0
        with exclusive(directory / "merge.lock", f"the merge of {job.output}"):
            keys = [key(item) for item in items()]
            if not all_done(directory, num_shards, keys):
                log.info("shard %d/%d finished; other shards are not done yet (merge with --merge-only)", shard,
                         num_shards)
                return 1 if job.merge_only else 0
            merge(merge_shards(directory, num_shards, keys), num_shards)
            provenance.write_record(job.output, {**inputs, PROGRESS_INPUT: records_state(_done_records(directory,
                                                                                                     num_shards))})
    except (OSError, RuntimeError) as error:  # a missing file, a full disk, a running twin: named in the message
        log.error("%s", error)
        return 1
    return 0
