"""An ESPnet data directory of teacher embeddings (k2d.mtkd.embed output) for encoder pre-training.

    python -m k2d.mtkd.data_dir --embeddings data/mini_cs_mtkd/embeddings/pretrain.jsonl.gz \\
        [--embeddings data/mini_cs_mtkd/embeddings/extra.jsonl.gz ...] --out-dir data/mini_cs_mtkd/espnet/pretrain

Several manifests make one directory (ESPnet pairs the files of one directory utterance by utterance, so
training on more audio takes one directory holding all of it).

OUT_DIR gets each cut's audio as FLAC (audio/), wav.scp, speech_shape, utt2spk, spk2utt, one HDF5 file per
target (TARGET.h5: each utterance id links to its array in k2d.mtkd.embed's block files, nothing is copied; ESPnet's
`hdf5` data type reads it) and targets.yaml ({target: {dim, frame_rate, teacher, layer}}).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from k2d.audio import SAMPLE_RATE, load_cut_audio
from k2d.espnet.data_dir import write_lines
from k2d.manifests import read_manifest
from k2d.mtkd.embed import embedding_field, embedding_targets
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.mtkd.data_dir")


def write_embed_data_dir(cuts, out_dir: Path) -> tuple[int, dict]:
    """Write the directory; returns (utterances, targets)."""
    import h5py
    import soundfile as sf

    out_dir = Path(out_dir)
    files = {name: {} for name in ("wav.scp", "speech_shape", "utt2spk")}
    links: dict[str, dict[str, tuple[str, str]]] = {}
    targets: dict = {}
    for cut in cuts:
        info = embedding_targets(cut)
        if not info:
            raise RuntimeError(f"cut {cut.id} has no embeddings (is this a k2d.mtkd.embed output?)")
        if targets and set(info) != set(targets):
            raise RuntimeError(f"cut {cut.id} has targets {sorted(info)}, the cuts before it {sorted(targets)}")
        targets = info
        audio = out_dir / "audio" / f"{cut.id}.flac"
        if not audio.exists():
            samples = load_cut_audio(cut)
            with atomic_path(audio) as tmp:
                sf.write(tmp, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        files["wav.scp"][cut.id] = str(audio.resolve())
        files["speech_shape"][cut.id] = str(int(round(cut.duration * SAMPLE_RATE)))
        files["utt2spk"][cut.id] = cut.id  # no speakers in unlabelled audio: one per utterance
        for target in info:
            array = cut.custom[embedding_field(target)]
            links.setdefault(target, {})[cut.id] = (str(Path(array.storage_path).resolve()), array.storage_key)
    for name, rows in files.items():
        write_lines(out_dir / name, rows)
    write_lines(out_dir / "spk2utt", {uid: uid for uid in files["utt2spk"]})
    for target, rows in links.items():
        with atomic_path(out_dir / f"{target}.h5") as tmp, h5py.File(tmp, "w") as f:
            for uid, (path, key) in rows.items():
                f[uid] = h5py.ExternalLink(path, key)
    with atomic_path(out_dir / "targets.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(targets, sort_keys=True), encoding="utf-8")
    return len(files["wav.scp"]), targets


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, action="append", required=True,
                        help="cuts with embeddings (k2d.mtkd.embed output); repeat to join several")
    parser.add_argument("--out-dir", type=Path, required=True, help="data directory to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    try:
        cuts = (cut for path in args.embeddings for cut in read_manifest(path, "cuts"))
        count, targets = write_embed_data_dir(cuts, args.out_dir)
    except (FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    log.info("wrote %d utterances with targets %s to %s", count, ", ".join(targets), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
