"""A sentencepiece model and ESPnet token list for a student that has its own vocabulary (seed 002's
transducer or CTC/attention student), trained on the text of a Kaldi/ESPnet data directory.

    python -m k2d.espnet.tokens --text data/mini_cs_mtkd/espnet/train/text --vocab-size 500 \\
        --out-dir data/mini_cs_mtkd/token_list/bpe500

OUT_DIR gets bpe.model (sentencepiece, unigram, every character covered: Chinese characters stay whole
tokens) and tokens.txt (ESPnet's token list: <blank>, <unk>, the pieces, <sos/eos>), which ESPnet's
`--token_type bpe --bpemodel OUT_DIR/bpe.model --token_list OUT_DIR/tokens.txt` take.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from k2d.kaldi_text import read_text_file
from k2d.utils import atomic_path, setup_logging

log = logging.getLogger("k2d.espnet.tokens")

SPECIAL_FIRST, SPECIAL_LAST = ["<blank>", "<unk>"], ["<sos/eos>"]


def train_tokens(texts: list[str], out_dir: Path, vocab_size: int, model_type: str = "unigram") -> list[str]:
    """Train the model on `texts` and write bpe.model and tokens.txt; returns the token list."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "train_text.txt"
    corpus.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out_dir / "bpe"), vocab_size=vocab_size,
                                   model_type=model_type, character_coverage=1.0, input_sentence_size=10**8,
                                   hard_vocab_limit=False, unk_id=0, bos_id=-1, eos_id=-1, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    tokens = SPECIAL_FIRST + [p for p in pieces if p != "<unk>"] + SPECIAL_LAST
    with atomic_path(out_dir / "tokens.txt") as tmp:
        tmp.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return tokens


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text file (utterance-id text)")
    parser.add_argument("--vocab-size", type=int, default=500, help="sentencepiece vocabulary (at most)")
    parser.add_argument("--model-type", default="unigram", choices=("unigram", "bpe", "char"))
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.vocab_size < 10:
        parser.error("--vocab-size must be at least 10")
    try:
        texts = [t for t in read_text_file(args.text).values() if t.strip()]
    except (FileNotFoundError, ValueError) as error:
        log.error("%s", error)
        return 1
    if not texts:
        log.error("%s has no text", args.text)
        return 1
    tokens = train_tokens(texts, args.out_dir, args.vocab_size, args.model_type)
    log.info("%d tokens from %d sentences -> %s", len(tokens), len(texts), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
