"""Reading lhotse manifests lazily, with errors that name the file.

A manifest cut short (a killed copy, a full disk) fails deep inside gzip or json with no file name; a
stage reading it through `read_manifest` says which file is broken and what to do.

    for recording in read_manifest("data/x/manifests/x_recordings_train.jsonl.gz", "recordings"): ...
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from k2d.text.script import join_texts


class ManifestError(RuntimeError):
    """A manifest that cannot be read; the message names it and says why."""


KINDS = ("recordings", "supervisions", "cuts")


class ManifestReader:
    """Iterable over a manifest's items, read lazily (each iteration reads the file again); an id that occurs
    twice is a ManifestError naming it."""

    def __init__(self, path: Path, kind: str):
        if kind not in KINDS:
            raise ValueError(f"manifest kind {kind!r} is not one of {', '.join(KINDS)}")
        self.path, self.kind = Path(path), kind

    def __iter__(self) -> Iterator:
        from lhotse import CutSet, RecordingSet, SupervisionSet

        if not self.path.is_file():
            raise FileNotFoundError(f"{self.kind} manifest {self.path} does not exist (run the stage that writes it)")
        lazy = {"recordings": RecordingSet, "supervisions": SupervisionSet, "cuts": CutSet}[self.kind]
        seen: set[str] = set()
        try:
            for item in lazy.from_jsonl_lazy(self.path):
                if item.id in seen:  # a second item under one id would be done twice or overwrite the first
                    raise ManifestError(f"{self.kind} manifest {self.path}: id {item.id} occurs more than once; "
                                        "ids must be unique (rename or drop the duplicate)")
                seen.add(item.id)
                yield item
        except (EOFError, OSError, zlib.error, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ManifestError(
                f"{self.kind} manifest {self.path} is truncated or corrupt ({type(error).__name__}: {error}); "
                "make it again with the stage that wrote it (--force)") from None


def read_manifest(path: Path, kind: str) -> ManifestReader:
    return ManifestReader(path, kind)


def utterance_cuts(recordings: Path, supervisions: Path):
    """One cut per supervision (each reference utterance on its own: short-form decoding, labelled
    training data), in memory."""
    from lhotse import CutSet, RecordingSet, SupervisionSet

    return CutSet.from_manifests(
        recordings=RecordingSet.from_recordings(read_manifest(recordings, "recordings")),
        supervisions=SupervisionSet.from_segments(read_manifest(supervisions, "supervisions")),
    ).trim_to_supervisions(keep_overlapping=False).to_eager()


def references_by_recording(supervisions) -> dict[str, str]:
    """Recording id -> the text of its supervisions in time order (the reference of long-form decoding)."""
    grouped = defaultdict(list)
    for sup in sorted(supervisions, key=lambda s: (s.recording_id, s.start)):
        grouped[sup.recording_id].append(sup.text or "")
    return {key: join_texts(texts) for key, texts in grouped.items()}
