"""How a model transcribes: the decoding options stages 1, 3 and 6 expose in their configs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from k2d.config import ConfigError, build_config, load_yaml, option

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BACKENDS = ("transformers", "ctranslate2")


@dataclass
class GenerationSettings:
    language: str = option("zh", "forced language token (code-switching: zh)")
    task: str = option("transcribe", "transcribe or translate")
    timestamps: bool = option(True, "predict timestamp tokens")
    num_beams: int = option(1, "beam size (1 = greedy)", minimum=1)
    temperature_fallback: bool = option(
        False, "re-decode a window at temperatures 0.2 ... 1.0 while its output looks degenerate (openai's rule)")
    compression_ratio_threshold: float = option(
        2.4, "fallback when the gzip compression ratio of a window's text exceeds this (openai's text-based scale)",
        minimum=0)
    logprob_threshold: float = option(
        -1.0, "fallback when the mean token log-probability is below this", unbounded=True)
    no_speech_threshold: float | None = option(
        0.6, "skip a window whose no-speech probability exceeds this and whose mean log-probability is below "
        "logprob_threshold (openai's rule; null: never skip)", minimum=0, maximum=1)
    condition_on_previous_text: bool = option(
        False, "long-form: prompt each window with the text decoded so far (<|startofprev|>)")
    mix_lang_emb: bool = option(False, "replace the <|zh|> embedding by the mean of <|zh|> and <|en|> (applied once)")
    max_new_tokens: int = option(224, "most tokens generated per window, within the 448-token context", minimum=1)
    backend: str = option("transformers", "inference backend: transformers or ctranslate2 (faster-whisper's engine)")
    compute_type: str = option(
        "auto", "ctranslate2 backend: float32, float16, int8, int8_float16, ... (auto: float16 on a GPU with a "
        "half-precision dtype, else float32)")

    def __post_init__(self):
        if self.task not in ("transcribe", "translate"):
            raise ConfigError(f"task must be transcribe or translate, got {self.task!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")

    @property
    def temperatures(self) -> tuple[float, ...]:
        return FALLBACK_TEMPERATURES if self.temperature_fallback else (0.0,)


def settings_from_file(path) -> GenerationSettings:
    """The decoding settings in a stage config (decode.yaml, pseudo_label.yaml): its GenerationSettings keys
    (the stage's other keys are left to the stage), so a validation or a benchmark decodes as the stage does."""
    values = load_yaml(path)
    names = {f.name for f in dataclasses.fields(GenerationSettings)}
    return build_config(GenerationSettings, {k: v for k, v in values.items() if k in names}, f"config {path}")
