"""Streaming decoding by sherpa-onnx's online recognizer (the on-device runtime) of a student exported by
k2d.streaming.onnx (its CTC head, or its transducer: whichever the directory holds): its text, MER and speed
beside those of k2d.streaming.stream (--ctc, or --max-symbols 1).

    python -m k2d.streaming.sherpa --sherpa exp/x/export_sherpa [--int8] --model exp/x/export \\
        --recordings R.jsonl.gz --supervisions S.jsonl.gz --out-dir exp/x/decode_test_in_sherpa

Audio goes in pieces of one chunk. sherpa-onnx decodes whole chunks only, so each utterance gets silence
appended for its last chunk to come out: `--tail-ms`, by default a chunk and 100 ms (as sherpa-onnx's own
examples pad the tail). Give k2d.streaming.stream the same `--tail-ms` to compare the two on the same input.
OUT_DIR gets what k2d.streaming.stream writes (hyp.txt, ref.txt, scores, latency.yaml with the runtime and the
model file's size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from k2d.audio import SAMPLE_RATE
from k2d.onnx_files import int8_name
from k2d.streaming.onnx import DECODER, ENCODER, JOINER, MODEL, TOKENS, read_tokens
from k2d.streaming.stream import SUBSAMPLING, decode_set, load_model, with_tail
from k2d.utils import setup_logging

FRAME_SAMPLES = 160  # sherpa-onnx's feature frame shift (10 ms)
WORD_START = "\u2581"  # sentencepiece's word-start mark


def is_transducer(sherpa_dir: Path) -> bool:
    """Whether k2d.streaming.onnx exported the transducer (encoder, decoder, joiner) or the CTC head here."""
    return (Path(sherpa_dir) / ENCODER).is_file()


def model_files(sherpa_dir: Path, int8: bool = False) -> list[Path]:
    names = (ENCODER, DECODER, JOINER) if is_transducer(sherpa_dir) else (MODEL,)
    return [Path(sherpa_dir) / (int8_name(name) if int8 else name) for name in names]


def export_metadata(sherpa_dir: Path) -> dict[str, str]:
    import onnx

    first = model_files(sherpa_dir)[0]
    return {p.key: p.value for p in onnx.load(str(first), load_external_data=False).metadata_props}


class SherpaStreamer:
    """One exported model in sherpa-onnx's OnlineRecognizer; `__call__(audio)` -> (token ids, timing)."""

    def __init__(self, sherpa_dir: Path, int8: bool = False, tail_ms: float | None = None, beam: int = 0):
        import sherpa_onnx

        meta = export_metadata(sherpa_dir)
        self.chunk, self.left_chunks = int(meta["chunk_size"]), int(meta["left_chunks"])
        self.model_files = model_files(sherpa_dir, int8)
        tokens = str(Path(sherpa_dir) / TOKENS)
        if is_transducer(sherpa_dir):  # features in [-32768, 32768), as k2d's kaldi_fbank computes them
            encoder, decoder, joiner = map(str, self.model_files)
            self.recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
                tokens=tokens, encoder=encoder, decoder=decoder, joiner=joiner, model_type="conformer",
                normalize_samples=False, num_threads=1,
                decoding_method="modified_beam_search" if beam else "greedy_search", max_active_paths=beam or 4)
        else:
            if beam:
                raise ValueError(f"beam {beam}: {sherpa_dir} is a CTC export (beam search is for a transducer)")
            self.recognizer = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
                tokens=tokens, model=str(self.model_files[0]), chunk_size=self.chunk,
                num_left_chunks=self.left_chunks, num_threads=1)
        # sherpa-onnx gives tokens with sentencepiece's word-start mark as a space
        self.ids = {token.replace(WORD_START, " "): i for token, i in read_tokens(Path(sherpa_dir) / TOKENS).items()}
        self.piece = self.chunk * SUBSAMPLING * FRAME_SAMPLES
        self.tail_ms = self.chunk_ms + 100 if tail_ms is None else tail_ms

    @property
    def chunk_ms(self) -> float:
        return 1000 * self.piece / SAMPLE_RATE

    def __call__(self, audio: np.ndarray) -> tuple[list[int], dict]:
        stream = self.recognizer.create_stream()
        audio = with_tail(audio.astype(np.float32), self.tail_ms)
        compute = []
        for start in range(0, max(audio.size, 1), self.piece):
            began = time.perf_counter()
            stream.accept_waveform(SAMPLE_RATE, audio[start : start + self.piece])
            if start + self.piece >= audio.size:
                stream.input_finished()
            while self.recognizer.is_ready(stream):
                self.recognizer.decode_stream(stream)
            compute.append(time.perf_counter() - began)
        tokens = [self.ids[token] for token in self.recognizer.get_result_all(stream).tokens]
        return tokens, {"chunks": len(compute), "compute_seconds": compute, "first_token_delay": None}


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(prog="python -m k2d.streaming.sherpa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sherpa", type=Path, required=True, help="the export (python -m k2d.streaming.onnx)")
    parser.add_argument("--int8", action="store_true", help="decode the int8 models (*.int8.onnx)")
    parser.add_argument("--model", type=Path, required=True, help="the k2d export it came from (tokens to text)")
    parser.add_argument("--recordings", type=Path, required=True)
    parser.add_argument("--supervisions", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--tail-ms", type=float, help="silence appended to each utterance (default: a chunk + 100)")
    parser.add_argument("--beam", type=int, default=0,
                        help="0: greedy search; N: modified_beam_search with N active paths (a transducer export)")
    args = parser.parse_args(argv)
    if args.beam < 0:
        parser.error(f"--beam {args.beam}: 0 (greedy) or a number of active paths")
    if args.tail_ms is not None and args.tail_ms < 0:
        parser.error(f"--tail-ms {args.tail_ms}: silence cannot be shorter than none")
    for path in (*model_files(args.sherpa, args.int8), args.sherpa / TOKENS, args.model / "config.yaml"):
        if not path.is_file():
            parser.error(f"{path} is missing: export with python -m k2d.streaming.task export, then "
                         f"python -m k2d.streaming.onnx{' --int8' if args.int8 else ''}")
    try:
        streamer = SherpaStreamer(args.sherpa, args.int8, args.tail_ms, args.beam)
    except ValueError as error:
        parser.error(str(error))
    from k2d.manifests import utterance_cuts

    _, train_args = load_model(args.model)
    decode_set(streamer, train_args, utterance_cuts(args.recordings, args.supervisions), streamer.chunk_ms,
               args.out_dir, runtime="sherpa-onnx int8" if args.int8 else "sherpa-onnx",
               search=f"modified_beam_search, {args.beam} active paths" if args.beam else "greedy_search",
               model_mb=round(sum(path.stat().st_size for path in streamer.model_files) / 2**20, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
