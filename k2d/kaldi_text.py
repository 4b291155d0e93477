"""Kaldi `text` files: one `<id> <transcript>` per line, UTF-8 (what scoring, ESPnet data directories and
`local/score.sh` read and write)."""

from __future__ import annotations

from pathlib import Path

from k2d.utils import atomic_path


def read_text_file(path: Path) -> dict[str, str]:
    """A Kaldi text file as {id: transcript}; a line with an id only is an empty transcript. The file must
    be UTF-8: another encoding (e.g. GBK) is an error naming the file and line."""
    entries: dict[str, str] = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{number} is not UTF-8: Kaldi text files must be UTF-8 (convert, e.g. "
                                 f"iconv -f GBK -t UTF-8 {path})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write: not part of the id
            if not line.strip():
                continue
            key, _, text = line.strip().partition(" ")
            if key in entries:
                raise ValueError(f"{path}:{number}: id {key} appears twice")
            entries[key] = text.strip()
    return entries


def write_text_file(path: Path, entries: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{k} {v}\n" for k, v in entries.items()), encoding="utf-8")
