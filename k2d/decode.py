"""Stage 6: a model decodes a test set, long-form (whole recordings, sequential with timestamps) or
short-form (each reference utterance on its own), and the result is scored.

    python -m k2d.decode --model egs/mini_cs/models/teacher --set-name test_in \\
        --recordings data/mini_cs/manifests/mini_cs_recordings_test_in.jsonl.gz \\
        --supervisions data/mini_cs/manifests/mini_cs_supervisions_test_in.jsonl.gz \\
        --out-dir exp/mini_cs/teacher/decode_test_in --config egs/mini_cs/conf/decode.yaml

OUT_DIR gets hyp.txt and ref.txt (Kaldi text; long-form: one line per recording, short-form: per
utterance), hyp_segments.jsonl (long-form timestamps), errs.txt, scores.yaml, summary.txt and
decode_info.yaml (audio seconds, wall time, real-time factor).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from lhotse import CutSet, RecordingSet, SupervisionSet
from tqdm import tqdm

from k2d import provenance
from k2d.audio import load_cut_audio
from k2d.config import ConfigError, add_config_arguments, option, parse_stage_args, save_config
from k2d.inference.backends import recognizer_for
from k2d.inference.settings import GenerationSettings
from k2d.inference.transcribe import joined_text, transcribe_audios, transcribe_longform
from k2d.kaldi_text import write_text_file
from k2d.manifests import references_by_recording, utterance_cuts
from k2d.metrics.scoring import score_files
from k2d.models.names import resolve_model
from k2d.models.whisper import add_device_argument
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.decode")


@dataclass
class DecodeConfig(GenerationSettings):
    # The K2D authors' evaluation: every window decoded (no no-speech skipping), up to 256 new tokens.
    no_speech_threshold: float | None = option(
        None, "skip a window whose no-speech probability exceeds this and whose mean log-probability is below "
        "logprob_threshold (openai's rule; null: never skip, as the K2D authors evaluate)", minimum=0, maximum=1)
    max_new_tokens: int = option(256, "most tokens generated per window (the K2D authors: 256)", minimum=1)
    mode: str = option("long", "long: whole recordings, sequentially; short: each reference utterance alone")
    batch_size: int = option(8, "recordings (long) or utterances (short) per batch", minimum=1)
    dtype: str = option("float32", "model dtype: float32, float16 or bfloat16")
    silence_rms: float = option(1e-4, "long-form windows quieter than this are not decoded", minimum=0)
    vad: bool = option(False, "voice activity detection (Silero): long-form windows without speech are not decoded")

    def __post_init__(self):
        if self.mode not in ("long", "short"):
            raise ConfigError(f"mode must be long or short, got {self.mode!r}")


def unknown_recordings(supervisions, recordings) -> list[str]:
    """Recording ids the supervisions name that the recordings manifest lacks, sorted."""
    known = set(recordings.ids)
    return sorted({s.recording_id for s in supervisions} - known)


def decode_long(recognizer, recordings: list, config: DecodeConfig, out_dir: Path) -> dict[str, str]:
    hypotheses = {}
    with atomic_path(out_dir / "hyp_segments.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as segments_file:
        results = transcribe_longform(recognizer, recordings, config, config.batch_size, config.silence_rms,
                                  config.vad)
        for result in tqdm(results, total=len(recordings), desc="decode", unit="rec"):
            if result.error:
                log.warning("recording %s: %s (scored as an empty hypothesis)", result.recording_id, result.error)
            hypotheses[result.recording_id] = joined_text(result.segments)
            for s in result.segments:
                segments_file.write(json.dumps(
                    {"recording_id": result.recording_id, "start": round(s.start, 3), "end": round(s.end, 3),
                     "text": s.text},
                    ensure_ascii=False) + "\n")
    return hypotheses


def decode_short(recognizer, cuts: CutSet, config: DecodeConfig) -> dict[str, str]:
    items = list(cuts)
    results = transcribe_audios(recognizer, (load_cut_audio(c) for c in items), config, config.batch_size)
    results = tqdm(results, total=len(items), desc="decode", unit="utt")
    return {c.supervisions[0].id: r.text for c, r in zip(items, results, strict=True)}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hugging Face id or local model directory")
    parser.add_argument("--set-name", required=True, help="test set name (for logs)")
    parser.add_argument("--recordings", type=Path, required=True, help="recordings manifest of the test set")
    parser.add_argument("--supervisions", type=Path, required=True, help="reference supervisions of the test set")
    parser.add_argument("--out-dir", type=Path, required=True, help="e.g. exp/NAME/MODEL/decode_SET")
    add_device_argument(parser)
    parser.add_argument("--force", action="store_true", help="decode again even if scores exist")
    add_config_arguments(parser, DecodeConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args, config = parse_stage_args(get_parser(), DecodeConfig, argv)
    scores = args.out_dir / "scores.yaml"
    inputs = {"model": resolve_model(args.model), "recordings": args.recordings, "supervisions": args.supervisions,
              "config": config}
    if provenance.up_to_date(scores, inputs, f"decoding {args.set_name} (decoded and scored)", args.force):
        return 0
    for path in (args.recordings, args.supervisions):
        if not path.is_file():
            log.error("%s does not exist (run stage 0 first)", path)
            return 1
    recordings = RecordingSet.from_file(args.recordings)
    supervisions = SupervisionSet.from_file(args.supervisions)
    unknown = unknown_recordings(supervisions, recordings)
    if unknown:
        log.error("%s: %d supervision(s) name recordings that are not in %s (e.g. %s): the manifests do not belong "
                  "together", args.supervisions, len(unknown), args.recordings, ", ".join(unknown[:3]))
        return 1
    try:
        recognizer = recognizer_for(config, args.model, args.device)
    except (RuntimeError, FileNotFoundError) as error:
        log.error("%s", error)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, args.out_dir / "decode_config.yaml")
    started = time.time()
    if config.mode == "long":
        references = references_by_recording(supervisions)
        scored = [r for r in recordings if r.id in references]
        hypotheses = decode_long(recognizer, scored, config, args.out_dir)
        audio_seconds = sum(r.duration for r in scored)
    else:
        cuts = utterance_cuts(args.recordings, args.supervisions)
        references = {c.supervisions[0].id: c.supervisions[0].text or "" for c in cuts}
        hypotheses = decode_short(recognizer, cuts, config)
        audio_seconds = sum(c.duration for c in cuts)
    elapsed = time.time() - started
    write_text_file(args.out_dir / "ref.txt", references)
    write_text_file(args.out_dir / "hyp.txt", hypotheses)
    info = {"model": str(args.model), "set": args.set_name, "mode": config.mode,
            "audio_seconds": round(audio_seconds, 2), "wall_seconds": round(elapsed, 2),
            "rtf": round(elapsed / max(audio_seconds, 1e-9), 4), "device": args.device}
    with atomic_path(args.out_dir / "decode_info.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")
    try:
        total = score_files(args.out_dir / "ref.txt", args.out_dir / "hyp.txt", args.out_dir)
    except ValueError as error:
        log.error("%s", error)
        return 1
    provenance.write_record(scores, inputs)
    log.info("stage 6 %s on %s (%s-form, RTF %.3f): %s", args.model, args.set_name, config.mode, info["rtf"],
             total.summary_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
