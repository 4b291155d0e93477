"""A Whisper-style tokenizer built from corpus text (for the demo models, which cannot download Whisper's).

Layout, as in Whisper: byte-level BPE text tokens first, then `<|endoftext|>` (so every text token id is
below it, which Whisper's timestamp logits processor relies on), `<|startoftranscript|>`, the 99 language
tokens of Whisper Large-v2, the task and other special tokens, and last the 1,501 timestamp tokens
`<|0.00|>` ... `<|30.00|>`. The result is a transformers `WhisperTokenizer`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import WhisperTokenizer
from transformers.models.whisper.tokenization_whisper import LANGUAGES

# Whisper Large-v2 has 99 languages; "yue" arrived with Large-v3.
WHISPER_LANGUAGES = [code for code in LANGUAGES if code != "yue"]
TASK_AND_CONTROL_TOKENS = [
    "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
]
NUM_TIMESTAMPS = 1501
TIME_PRECISION = 0.02  # seconds per timestamp step
FRAMES_PER_SECOND = 100  # log-mel frames per second (10 ms hop)
ENCODER_POSITIONS_PER_SECOND = 50  # the encoder's convolutions halve the frame rate


def window_seconds(max_source_positions: int) -> float:
    """Length of a model's input window: 30 s for Whisper's 1,500 encoder positions."""
    return max_source_positions / ENCODER_POSITIONS_PER_SECOND


def snap_time(seconds: float, window: float) -> float:
    """Round to the 0.02 s timestamp grid and clip to [0, window]."""
    return min(max(round(seconds / TIME_PRECISION) * TIME_PRECISION, 0.0), window)


def whisper_special_tokens() -> list[str]:
    """Every special token after `<|endoftext|>`, in Whisper's order."""
    return ["<|startoftranscript|>", *(f"<|{code}|>" for code in WHISPER_LANGUAGES), *TASK_AND_CONTROL_TOKENS]


def timestamp_tokens() -> list[str]:
    return [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(NUM_TIMESTAMPS)]


def train_byte_bpe(texts: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a GPT-2 style byte-level BPE on `texts`; returns (vocab, merges)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_whisper_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> WhisperTokenizer:
    """A WhisperTokenizer over a byte-level BPE vocabulary, with every Whisper special and timestamp token."""
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    if tokenizer.convert_tokens_to_ids("<|endoftext|>") != len(vocab):
        raise RuntimeError("<|endoftext|> must come right after the text tokens")
    # Specials must be registered as special tokens: the tokenizer places the first timestamp at
    # all_special_ids[-1] + 1, so adding them with add_tokens(special=True) alone shifts every timestamp.
    tokenizer.add_special_tokens({"extra_special_tokens": whisper_special_tokens()})
    tokenizer.add_tokens(timestamp_tokens())
    check_whisper_tokenizer(tokenizer, "the new tokenizer")
    return tokenizer


def check_whisper_tokenizer(tokenizer, source: str) -> None:
    """Fail clearly on a tokenizer that is not a usable Whisper tokenizer (e.g. an empty offline download)."""
    missing = [
        token
        for token in ("<|startoftranscript|>", "<|notimestamps|>", "<|0.00|>", "<|zh|>", "<|en|>")
        if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id)
    ]
    if tokenizer.eos_token != "<|endoftext|>" or len(tokenizer) < NUM_TIMESTAMPS or missing:
        raise RuntimeError(
            f"{source} did not give a usable Whisper tokenizer ({len(tokenizer)} tokens, missing "
            f"{', '.join(missing) or 'nothing'}): the model files are missing or incomplete. Offline, "
            "give a local directory holding a saved Whisper model (save_pretrained), or download it first."
        )
    if tokenizer.convert_tokens_to_ids("<|0.00|>") != tokenizer.all_special_ids[-1] + 1:
        raise RuntimeError(f"{source}: the timestamp tokens do not directly follow the special tokens")


@dataclass(frozen=True)
class SpecialTokens:
    """The ids of Whisper's special tokens in one tokenizer (the demo's and OpenAI's differ in places)."""

    eot: int
    sot: int
    sot_prev: int
    no_speech: int | None
    no_timestamps: int
    timestamp_begin: int
    transcribe: int
    translate: int
    languages: dict[str, int]

    @classmethod
    def of(cls, tokenizer) -> SpecialTokens:
        ids = tokenizer.convert_tokens_to_ids
        no_speech = next((ids(t) for t in ("<|nospeech|>", "<|nocaptions|>") if ids(t) != tokenizer.unk_token_id), None)
        languages = {code: ids(f"<|{code}|>") for code in LANGUAGES if ids(f"<|{code}|>") != tokenizer.unk_token_id}
        return cls(
            eot=ids("<|endoftext|>"), sot=ids("<|startoftranscript|>"), sot_prev=ids("<|startofprev|>"),
            no_speech=no_speech, no_timestamps=ids("<|notimestamps|>"), timestamp_begin=ids("<|0.00|>"),
            transcribe=ids("<|transcribe|>"), translate=ids("<|translate|>"), languages=languages,
        )

    def prefix(self, language: str, task: str, timestamps: bool) -> list[int]:
        """<|startoftranscript|><|lang|><|task|>[<|notimestamps|>]: what a decoder is given before its text."""
        if language not in self.languages:
            raise ValueError(f"language {language!r} has no token in this tokenizer")
        tokens = [self.sot, self.languages[language], self.transcribe if task == "transcribe" else self.translate]
        return tokens if timestamps else [*tokens, self.no_timestamps]

    def time(self, token: int) -> float:
        return (token - self.timestamp_begin) * TIME_PRECISION

    def never_generated(self) -> list[int]:
        """Every special token between <|endoftext|> and the timestamps: none may appear inside a transcript."""
        return list(range(self.eot + 1, self.timestamp_begin))
