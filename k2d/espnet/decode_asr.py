"""Decode a test set with an ESPnet ASR model (e.g. seed 002's fine-tuned student) and score it with k2d's
scorer, so its results sit in the same tables as the Whisper students'.

    python -m k2d.espnet.decode_asr --asr-config exp/mini_cs_mtkd/asr_none/config.yaml \\
        --asr-model exp/mini_cs_mtkd/asr_none/valid.acc.best.pth \\
        --recordings data/mini_cs/manifests/mini_cs_recordings_test_in.jsonl.gz \\
        --supervisions data/mini_cs/manifests/mini_cs_supervisions_test_in.jsonl.gz \\
        --out-dir exp/mini_cs_mtkd/asr_none/decode_test_in_short

Each reference utterance is decoded on its own (short-form) with ESPnet's `Speech2Text`: beam search with
the CTC weight given for an attention decoder; for a transducer, ESPnet's transducer beam search (greedy at
--beam-size 1; the loss from torchaudio when warp-transducer is not installed, k2d.espnet.rnnt).
OUT_DIR gets hyp.txt, ref.txt, errs.txt, scores.yaml (k2d.score) and decode_info.yaml (audio seconds, wall
time, real-time factor).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from k2d.audio import load_cut_audio
from k2d.espnet.rnnt import provide_warprnnt
from k2d.kaldi_text import write_text_file
from k2d.manifests import utterance_cuts
from k2d.metrics.scoring import score_files
from k2d.models.whisper import add_device_argument, resolve_device
from k2d.provenance import up_to_date, write_record
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.espnet.decode_asr")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr-config", type=Path, required=True, help="the ESPnet training config.yaml")
    parser.add_argument("--asr-model", type=Path, required=True, help="the ESPnet checkpoint (.pth)")
    parser.add_argument("--recordings", type=Path, required=True)
    parser.add_argument("--supervisions", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--force", action="store_true", help="decode again even when nothing changed")
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    parser.add_argument("--maxlenratio", type=float, default=0.5,
                        help="at most this many tokens per encoder frame (0.5: 12.5 per second at 25 Hz)")
    add_device_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from espnet2.bin.asr_inference import Speech2Text

    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    for path in (args.asr_config, args.asr_model):
        if not path.is_file():
            parser.error(f"{path} does not exist")
    # a resumed training's new best checkpoint, other test data or options: decode again
    options = {"beam_size": args.beam_size, "ctc_weight": args.ctc_weight, "maxlenratio": args.maxlenratio}
    inputs = {"model": args.asr_model, "config": args.asr_config, "recordings": args.recordings,
              "supervisions": args.supervisions, "options": options}
    if up_to_date(args.out_dir / "scores.yaml", inputs, "decoding", args.force):
        return 0
    try:
        cuts = utterance_cuts(args.recordings, args.supervisions)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        log.error("%s", error)
        return 1
    provide_warprnnt()  # a transducer model is built with its loss
    speech2text = Speech2Text(asr_train_config=str(args.asr_config), asr_model_file=str(args.asr_model),
                              device=str(resolve_device(args.device)), beam_size=args.beam_size,
                              ctc_weight=args.ctc_weight, maxlenratio=args.maxlenratio, nbest=1)
    hyps, refs, seconds = {}, {}, 0.0
    started = time.time()
    for cut in tqdm(cuts, desc=f"decode {args.out_dir.name}", unit="utt"):
        audio = load_cut_audio(cut)
        seconds += len(audio) / 16000
        results = speech2text(audio)
        hyps[cut.supervisions[0].id] = results[0][0] if results else ""
        refs[cut.supervisions[0].id] = cut.supervisions[0].text or ""
    wall = time.time() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text_file(args.out_dir / "hyp.txt", hyps)
    write_text_file(args.out_dir / "ref.txt", refs)
    with atomic_path(args.out_dir / "decode_info.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"audio_seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
                                       "rtf": round(wall / max(seconds, 1e-9), 4), "utterances": len(hyps)}))
    score = score_files(args.out_dir / "ref.txt", args.out_dir / "hyp.txt", args.out_dir, args.out_dir.name)
    write_record(args.out_dir / "scores.yaml", inputs)
    log.info("%s: MER %.2f%% over %d utterances (RTF %.3f)", args.out_dir, 100 * score.mer.rate, len(hyps),
             wall / max(seconds, 1e-9))
    return 0


if __name__ == "__main__":
    sys.exit(main())
