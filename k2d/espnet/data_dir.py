"""Write chunk cuts (e.g. stage 4's kept chunks) as a Kaldi/ESPnet data directory, one utterance per chunk
with its pseudo-label, so any Kaldi or ESPnet recipe can train on K²D-filtered pseudo-labels.

    python -m k2d.espnet.data_dir --cuts data/mini_cs/cuts/mini_cs_cuts_train_unlabelled-k2d_composite.jsonl.gz \\
        --out-dir data/mini_cs/kaldi/train_k2d_composite [--dump-audio]

Kaldi form (default): wav.scp (recordings), segments (each chunk's labelled span: a continued chunk ends at
its last complete segment), text, utt2spk, spk2utt. With --dump-audio, ESPnet's `dump/raw` form: each
chunk's labelled audio as its own FLAC under OUT_DIR/audio/, wav.scp pointing at them, no segments.
Both also get `text_ts` (the label with Whisper timestamp tokens relative to the utterance, the form
the K2D student learns half of the time), `prompt` (the previous chunk's text, its <|startofprev|>
prompt; an empty line when it has none) and `speech_shape` (samples per utterance, ESPnet's shape file).
The speaker of a chunk is its recording (unlabelled audio has no speaker labels). `check_data_dir` is the
check these directories pass.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from k2d.audio import SAMPLE_RATE, labelled_cut, load_cut_audio
from k2d.cuts import ChunkFields, teacher_text
from k2d.kaldi_text import read_text_file
from k2d.manifests import read_manifest
from k2d.models.tokenizer import snap_time
from k2d.train.data import cut_segments
from k2d.train.labels import TimedText
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.espnet.data_dir")

TIMESTAMPED = re.compile(r"<\|(\d+\.\d\d)\|>(.*?)<\|(\d+\.\d\d)\|>")


def timestamped_text(segments: list[TimedText], window: float = 30.0) -> str:
    """'<|0.50|>你好<|2.00|><|2.50|>world<|4.00|>': complete segments with times snapped to 0.02 s."""
    return "".join(f"<|{snap_time(s.start, window):.2f}|>{s.text.strip()}<|{snap_time(s.end, window):.2f}|>"
                   for s in segments if s.end is not None)


def parse_timestamped(text: str) -> list[TimedText]:
    """The inverse of timestamped_text."""
    return [TimedText(float(start), float(end), body) for start, body, end in TIMESTAMPED.findall(text)]


def write_lines(path: Path, rows: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{key} {value}".rstrip() + "\n" for key, value in sorted(rows.items())),
                       encoding="utf-8")


def write_data_dir(cuts, out_dir: Path, dump_audio: bool = False) -> int:
    """Write the data directory; returns the number of utterances."""
    import soundfile as sf

    out_dir = Path(out_dir)
    files = {name: {} for name in ("wav.scp", "text", "text_ts", "prompt", "utt2spk", "segments", "speech_shape")}
    for cut in cuts:
        span = labelled_cut(cut)
        fields = ChunkFields.from_cut(cut)
        uid = cut.id
        files["text"][uid] = teacher_text(cut)
        files["text_ts"][uid] = timestamped_text(cut_segments(span))
        files["prompt"][uid] = (fields.prev_text or "") if fields is not None else ""
        files["utt2spk"][uid] = cut.recording_id
        files["speech_shape"][uid] = str(int(round(span.duration * SAMPLE_RATE)))  # ESPnet's shape file
        if dump_audio:
            path = out_dir / "audio" / f"{uid}.flac"
            if not path.exists():
                with atomic_path(path) as tmp:
                    sf.write(tmp, load_cut_audio(span), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            files["wav.scp"][uid] = str(path.resolve())
        else:
            source = cut.recording.sources[0].source
            files["wav.scp"][cut.recording_id] = str(Path(source).resolve())
            files["segments"][uid] = f"{cut.recording_id} {span.start:.3f} {span.start + span.duration:.3f}"
    if dump_audio:
        del files["segments"]
    for name, rows in files.items():
        write_lines(out_dir / name, rows)
    spk2utt: dict[str, list[str]] = {}
    for uid, spk in files["utt2spk"].items():
        spk2utt.setdefault(spk, []).append(uid)
    write_lines(out_dir / "spk2utt", {spk: " ".join(sorted(uids)) for spk, uids in spk2utt.items()})
    return len(files["text"])


def read_lines(path: Path) -> dict[str, str]:
    return read_text_file(path)


def check_data_dir(data_dir: Path) -> list[str]:
    """What is wrong with a Kaldi/ESPnet data directory (an empty list when nothing is): the files it needs,
    sorted unique ids, the same utterances in every per-utterance file, audio that exists, segments inside
    their recording's ids."""
    data_dir = Path(data_dir)
    problems = []
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        if not (data_dir / name).is_file():
            problems.append(f"{data_dir / name} is missing")
    if problems:
        return problems
    per_utterance = {name: read_lines(data_dir / name) for name in ("text", "utt2spk", "text_ts", "prompt")
                     if (data_dir / name).is_file()}
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "segments"):
        path = data_dir / name
        if path.is_file():
            keys = [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line]
            if keys != sorted(keys) or len(keys) != len(set(keys)):
                problems.append(f"{path}: ids are not sorted and unique (Kaldi's utils/fix_data_dir.sh order)")
    utterances = set(per_utterance["text"])
    for name, rows in per_utterance.items():
        if set(rows) != utterances:
            problems.append(f"{data_dir / name} and text list different utterances")
    wav = read_lines(data_dir / "wav.scp")
    if (data_dir / "segments").is_file():
        segments = read_lines(data_dir / "segments")
        if set(segments) != utterances:
            problems.append(f"{data_dir / 'segments'} and text list different utterances")
        for uid, value in segments.items():
            recording, start, end = value.split()
            if recording not in wav or not 0 <= float(start) < float(end):
                problems.append(f"{data_dir / 'segments'}: {uid} names recording {recording} or times {start}-{end}")
                break
    elif set(wav) != utterances:
        problems.append(f"{data_dir / 'wav.scp'} and text list different utterances (no segments file)")
    missing = [path for path in wav.values() if not path.endswith("|") and not Path(path).exists()]
    if missing:
        problems.append(f"{len(missing)} audio file(s) of {data_dir / 'wav.scp'} do not exist (e.g. {missing[0]})")
    spk2utt = {u for v in read_lines(data_dir / "spk2utt").values() for u in v.split()}
    if spk2utt != utterances:
        problems.append(f"{data_dir / 'spk2utt'} does not list the utterances of utt2spk")
    return problems


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="chunk cuts (stage 2-4 output)")
    parser.add_argument("--out-dir", type=Path, required=True, help="data directory to write")
    parser.add_argument("--dump-audio", action="store_true", help="one FLAC per utterance (ESPnet's dump form)")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    try:
        count = write_data_dir(read_manifest(args.cuts, "cuts"), args.out_dir, args.dump_audio)
    except (FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    problems = check_data_dir(args.out_dir)
    for problem in problems:
        log.error("%s", problem)
    log.info("wrote %d utterances to %s", count, args.out_dir)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
