"""Streaming decoding of a streaming KD student (k2d.streaming.task, exported): audio goes in pieces of
`--chunk-ms`, text comes out as soon as the chunk of encoder frames it belongs to is complete.

    python -m k2d.streaming.stream --model exp/x/export --audio a.wav --chunk-ms 320
    python -m k2d.streaming.stream --model exp/x/export --chunk-ms 320 --recordings R.jsonl.gz \\
        --supervisions S.jsonl.gz --out-dir exp/x/stream_test_in_320ms

The decoder computes features and subsampling for the new audio only (k2d.streaming.frontend: a frame never
changes when more audio arrives), keeps each encoder layer's input for the frames already done and runs every
layer on the new chunk only, attending to the cached frames as the chunk mask allows (with left_chunks < 0 that
cache grows with the stream: set left_chunks for unbounded streams). Greedy search, CTC or transducer (the
prediction network's state carried from chunk to chunk; `--ctc` decodes a transducer's CTC head, as its
sherpa-onnx export does), or the transducer's modified beam search (`--beam N`, whose best hypothesis may
change as chunks come); the result equals decoding the whole utterance with the same chunk masks (tests).
With a set, OUT_DIR gets hyp.txt, ref.txt, scores.yaml (k2d.score) and latency.yaml: compute per chunk
(mean, max), the real-time factor, and the first token's delay (audio received when it came out minus the
end of the audio of the frame that produced it).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from k2d.audio import SAMPLE_RATE
from k2d.espnet.rnnt import BeamSearch, GreedySearch
from k2d.kaldi_text import write_text_file
from k2d.metrics.scoring import score_files
from k2d.streaming.frontend import Framing, frames_of, framing_of, mirrored_slice
from k2d.streaming.kd import chunk_mask, ctc_collapse
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.streaming.stream")
SUBSAMPLING = 4  # ESPnet's conv2d input layer
SUBSAMPLING_CONTEXT = 7  # feature frames behind one subsampled frame (two 3-wide convolutions, stride 2)
MAX_SYMBOLS = 4  # transducer tokens one encoder frame may emit (sherpa-onnx's greedy search: 1)


def subsampled(feature_frames: int) -> int:
    """Encoder frames that the conv2d subsampling makes of `feature_frames`."""
    return 0 if feature_frames < SUBSAMPLING_CONTEXT else ((feature_frames - 1) // 2 - 1) // 2


def encoder_frames(samples: int, framing: Framing, final: bool = False) -> int:
    """Encoder frames that `samples` of audio make (when final, with the frames that mirror the end)."""
    return subsampled(framing.ready(samples, final))


def layer_on_new_frames(layer, keys: torch.Tensor, new: int, mask: torch.Tensor) -> torch.Tensor:
    """An ESPnet EncoderLayer (pre-norm, no concat) computed for the last `new` frames of `keys` only."""
    normed = layer.norm1(keys)
    x = keys[:, -new:] + layer.self_attn(normed[:, -new:], normed, normed, mask)
    return x + layer.feed_forward(layer.norm2(x))


def subsample(embed, feats: torch.Tensor, first: int) -> torch.Tensor:
    """ESPnet's Conv2dSubsampling on feature frames that begin at subsampled frame `first`: the same
    convolutions and projection, the positional encoding of positions first, first + 1, ..."""
    x = embed.conv(feats.unsqueeze(1))
    batch, channels, time, bins = x.shape
    x = embed.out[0](x.transpose(1, 2).reshape(batch, time, channels * bins))
    position = embed.out[1]
    position.extend_pe(torch.zeros(1, first + time))
    return x * position.xscale + position.pe[:, first : first + time]


class StreamingDecoder:
    """Audio in, tokens out as each chunk of encoder frames completes. Work per chunk is the new audio's
    features and subsampling, and each layer on the new frames against the cached earlier ones."""

    def __init__(self, model, chunk_frames: int, ctc: bool = False, max_symbols: int = MAX_SYMBOLS, beam: int = 0):
        if chunk_frames < 1:
            raise ValueError(f"chunk of {chunk_frames} encoder frames: a streaming decoder needs at least one")
        self.model, self.chunk = model.eval(), chunk_frames
        self.framing = framing_of(model.frontend)
        self.audio = np.zeros(0, dtype=np.float32)  # audio from sample `self.audio_start` on
        self.audio_start = 0
        self.cache = [None] * len(model.encoder.layers)  # each layer's input, frames done
        self.done, self.previous = 0, None
        self.search = transducer_search(model, ctc, max_symbols, beam)
        self.tokens, self.token_frames = [], []  # the result so far, and the encoder frame that produced each token

    @torch.no_grad()
    def accept(self, samples: np.ndarray, final: bool = False) -> list[int]:
        """The tokens so far, with those of the chunks these samples complete (all the rest when final). Greedy
        search and CTC only add tokens; a beam search's best hypothesis may change."""
        self.audio = np.concatenate([self.audio, samples.astype(np.float32)])
        total = encoder_frames(self.audio_start + self.audio.size, self.framing, final)
        ready = total if final else total // self.chunk * self.chunk
        if ready <= self.done:
            return self.tokens
        encoder, new = self.model.encoder, ready - self.done
        # the feature frames behind encoder frames done..ready-1, and the samples behind those
        start, stop = self.framing.span(SUBSAMPLING * self.done, SUBSAMPLING * (ready - 1) + SUBSAMPLING_CONTEXT)
        feats = frames_of(self.model.frontend, mirrored_slice(self.audio, start - self.audio_start,
                                                              stop - self.audio_start))
        x = subsample(encoder.embed, encoder.input_norm(feats[None]), self.done)
        mask = chunk_mask(ready, self.chunk, encoder.left_chunks)[self.done : ready][None]
        for i, layer in enumerate(encoder.layers):
            keys = x if self.cache[i] is None else torch.cat([self.cache[i], x], dim=1)
            self.cache[i] = keys
            x = layer_on_new_frames(layer, keys, new, mask)
        encoded = encoder.after_norm(x)
        if self.search is not None:
            self.search.accept(encoded[0])
            self.tokens, self.token_frames = self.search.result  # frames counted from the stream's start
        else:
            tokens, frames, self.previous = ctc_collapse(self.model.ctc.argmax(encoded)[0].tolist(), self.previous)
            self.tokens, self.token_frames = self.tokens + tokens, self.token_frames + [self.done + f for f in frames]
        self.done = ready
        keep_from = max(0, self.framing.span(SUBSAMPLING * ready, SUBSAMPLING * ready + 1)[0])  # none needs less
        self.audio, self.audio_start = self.audio[keep_from - self.audio_start :], keep_from
        return self.tokens


def transducer_search(model, ctc: bool, max_symbols: int, beam: int) -> GreedySearch | BeamSearch | None:
    """The search over the model's transducer: greedy (beam 0) or modified beam search; None for its CTC head."""
    if model.transducer is None or ctc:
        if beam:
            raise ValueError(f"beam {beam}: beam search is for a transducer, not a CTC head")
        return None
    return BeamSearch(model.transducer, beam) if beam else GreedySearch(model.transducer, max_symbols)


@torch.no_grad()
def full_decode(model, audio: np.ndarray, chunk_frames: int, ctc: bool = False,
                max_symbols: int = MAX_SYMBOLS, beam: int = 0) -> list[int]:
    """The whole utterance at once under the same chunk masks (what streaming must equal)."""
    speech = torch.from_numpy(audio.astype(np.float32))[None]
    encoded, _, _ = model.eval().encode(speech, torch.tensor([speech.shape[1]]), chunk_frames)
    search = transducer_search(model, ctc, max_symbols, beam)
    if search is not None:
        search.accept(encoded[0])
        return search.result[0]
    return ctc_collapse(model.ctc.argmax(encoded)[0].tolist())[0]


def frame_ms_of(model) -> float:
    """Milliseconds of audio per encoder frame."""
    return 1000 * framing_of(model.frontend).shift * SUBSAMPLING / SAMPLE_RATE


def chunk_frames_of(model, chunk_ms: float) -> int:
    """Encoder frames per chunk of chunk_ms (0: full context)."""
    if chunk_ms == 0:
        return 0
    frame_ms = frame_ms_of(model)
    frames = chunk_ms / frame_ms
    if frames < 1 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"--chunk-ms {chunk_ms} is not a whole number of {frame_ms:g} ms encoder frames")
    return round(frames)


def with_tail(audio: np.ndarray, tail_ms: float) -> np.ndarray:
    """`audio` followed by tail_ms of silence."""
    return np.concatenate([audio, np.zeros(round(tail_ms * SAMPLE_RATE / 1000), dtype=audio.dtype)])


def stream(model, audio: np.ndarray, chunk_ms: float, ctc: bool = False, max_symbols: int = MAX_SYMBOLS,
           tail_ms: float = 0.0, beam: int = 0) -> tuple[list[int], dict]:
    """Feed `audio` in pieces of chunk_ms; returns (tokens, timing). chunk_ms 0: the whole utterance at once
    with full context (a non-streaming model such as the teacher). tail_ms of silence are fed after the audio
    (as sherpa-onnx's examples pad, and sherpa-onnx needs: it decodes whole chunks only): a transducer allowed
    few tokens per frame (sherpa-onnx's one) may need frames after the last word to say all of it."""
    audio = with_tail(audio, tail_ms)
    if chunk_ms == 0:
        began = time.perf_counter()
        tokens = full_decode(model, audio, 0, ctc, max_symbols, beam)
        return tokens, {"chunks": 1, "compute_seconds": [time.perf_counter() - began], "first_token_delay": None}
    decoder = StreamingDecoder(model, chunk_frames_of(model, chunk_ms), ctc, max_symbols, beam)
    piece = round(chunk_ms * SAMPLE_RATE / 1000)
    tokens, compute, first_delay = [], [], None
    frame_seconds = frame_ms_of(model) / 1000
    for start in range(0, max(audio.size, 1), piece):
        final = start + piece >= audio.size
        began = time.perf_counter()
        tokens = decoder.accept(audio[start : start + piece], final=final)
        compute.append(time.perf_counter() - began)
        if tokens and first_delay is None:  # the first token: how long after the end of its frame's audio it came
            received = min(audio.size, start + piece) / SAMPLE_RATE
            first_delay = received - (decoder.token_frames[0] + 1) * frame_seconds
    return tokens, {"chunks": len(compute), "compute_seconds": compute, "first_token_delay": first_delay}


def load_model(model_dir: Path, device: str = "cpu"):
    from k2d.streaming.task import StreamingKDTask

    model, args = StreamingKDTask.build_model_from_file(model_dir / "config.yaml", model_dir / "model.pth", device)
    return model, args


def text_of(args, tokens: list[int]) -> str:
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.token_id_converter import TokenIDConverter

    pieces = TokenIDConverter(args.token_list).ids2tokens(tokens)
    return build_tokenizer(args.token_type, getattr(args, "bpemodel", None)).tokens2text(pieces)  # none: char tokens


def decode_set(decode, args, cuts, chunk_ms: float, out_dir: Path, **facts) -> dict:
    """Every cut through decode(audio) -> (tokens, timing) as `stream` returns them; OUT_DIR gets hyp.txt,
    ref.txt, the scores and latency.yaml (with `facts` added, e.g. the runtime)."""
    from tqdm import tqdm

    from k2d.audio import load_cut_audio

    hyps, refs, compute, delays, seconds = {}, {}, [], [], 0.0
    for cut in tqdm(cuts, desc=f"stream {out_dir.name}", unit="utt"):
        audio = load_cut_audio(cut)
        seconds += audio.size / SAMPLE_RATE
        tokens, timing = decode(audio)
        compute += timing["compute_seconds"]
        if timing["first_token_delay"] is not None:
            delays.append(timing["first_token_delay"])
        hyps[cut.supervisions[0].id] = text_of(args, tokens)
        refs[cut.supervisions[0].id] = cut.supervisions[0].text or ""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_file(out_dir / "hyp.txt", hyps)
    write_text_file(out_dir / "ref.txt", refs)
    latency = {"chunk_ms": chunk_ms, "utterances": len(hyps), "audio_seconds": round(seconds, 2),
               "chunks": len(compute), "compute_ms_per_chunk_mean": round(1000 * statistics.mean(compute), 2),
               "compute_ms_per_chunk_max": round(1000 * max(compute), 2), "rtf": round(sum(compute) / seconds, 4),
               "first_token_delay_ms_mean": round(1000 * statistics.mean(delays), 1) if delays else None,
               **facts}
    with atomic_path(out_dir / "latency.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(latency, sort_keys=False))
    score = score_files(out_dir / "ref.txt", out_dir / "hyp.txt", out_dir, out_dir.name)
    log.info("%s: MER %.2f%% over %d utterances, %s ms chunks, %.1f ms compute per chunk, first token after "
             "%s ms", out_dir, 100 * score.mer.rate, len(hyps), chunk_ms, latency["compute_ms_per_chunk_mean"],
             latency["first_token_delay_ms_mean"])
    return latency


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True,
                        help="an exported model dir (python -m k2d.streaming.task export)")
    parser.add_argument("--chunk-ms", type=float,
                        help="audio per step and encoder chunk size (default: the chunk the model was trained "
                             "with); 0: whole utterances with full context")
    parser.add_argument("--ctc", action="store_true",
                        help="decode a transducer's CTC head (what its sherpa-onnx export runs)")
    parser.add_argument("--max-symbols", type=int, default=MAX_SYMBOLS,
                        help="greedy search: transducer tokens one encoder frame may emit (sherpa-onnx emits 1)")
    parser.add_argument("--beam", type=int, default=0,
                        help="0: greedy search; N: the transducer's modified beam search with N hypotheses (one "
                             "token per frame, as sherpa-onnx's modified_beam_search)")
    parser.add_argument("--tail-ms", type=float, default=0.0,
                        help="silence fed after each utterance, so that its last words come out (sherpa-onnx "
                             "via k2d.streaming.sherpa: the chunk + 100 ms)")
    parser.add_argument("--audio", type=Path, help="one audio file: prints the text as it comes")
    parser.add_argument("--recordings", type=Path, help="a test set: lhotse recordings ...")
    parser.add_argument("--supervisions", type=Path, help="... and supervisions (one utterance each)")
    parser.add_argument("--out-dir", type=Path, help="where a test set's hyp, scores and latency go")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    for name in ("config.yaml", "model.pth"):
        if not (args.model / name).is_file():
            parser.error(f"--model {args.model} has no {name}: export a trained model with "
                         "python -m k2d.streaming.task export")
    if (args.audio is None) == (args.recordings is None):
        parser.error("give either --audio or --recordings/--supervisions/--out-dir")
    model, train_args = load_model(args.model)
    if args.chunk_ms is None:
        args.chunk_ms = model.encoder.chunk_size * frame_ms_of(model)
    if args.max_symbols < 1:
        parser.error(f"--max-symbols {args.max_symbols}: a frame emits at least one token")
    if args.beam < 0 or (args.beam and args.ctc):
        parser.error(f"--beam {args.beam}: 0 (greedy) or a number of hypotheses for a transducer (not with --ctc)")
    if args.beam and model.transducer is None:
        parser.error(f"--beam {args.beam}: {args.model} has no transducer (a CTC model decodes greedily)")
    if args.tail_ms < 0:
        parser.error(f"--tail-ms {args.tail_ms}: silence cannot be shorter than none")
    try:
        chunk_frames_of(model, args.chunk_ms)
    except ValueError as error:
        parser.error(str(error))
    if args.audio is not None:
        import soundfile as sf

        audio, rate = sf.read(args.audio, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            parser.error(f"{args.audio}: {rate} Hz; the model reads {SAMPLE_RATE} Hz audio")
        tokens, timing = stream(model, audio.mean(axis=1), args.chunk_ms, args.ctc, args.max_symbols, args.tail_ms,
                                args.beam)
        print(text_of(train_args, tokens))
        log.info("%d chunks, %.1f ms compute per chunk", timing["chunks"],
                 1000 * statistics.mean(timing["compute_seconds"]))
        return 0
    if args.supervisions is None or args.out_dir is None:
        parser.error("--recordings needs --supervisions and --out-dir")
    from k2d.manifests import utterance_cuts

    decode_set(lambda audio: stream(model, audio, args.chunk_ms, args.ctc, args.max_symbols, args.tail_ms, args.beam),
               train_args, utterance_cuts(args.recordings, args.supervisions), args.chunk_ms, args.out_dir,
               search=f"modified beam search, beam {args.beam}" if args.beam else "greedy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
