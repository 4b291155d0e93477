"""Text normalisation shared by stage 3 (validation distances) and stage 6 (scoring).

Steps: traditional -> simplified Chinese (OpenCC t2s), then Whisper's basic normaliser (NFKC, so
full-width -> half-width; lower case; text in [brackets] and (parentheses) removed; punctuation and symbols
-> spaces), then spaces collapsed. Numbers are left as written: "30" and "三十" differ.

    >>> normalize_text("我們用ＧＰＵ訓練「模型」！")
    '我们用gpu训练 模型'
"""

from __future__ import annotations

import functools
import re

from transformers.models.whisper.english_normalizer import BasicTextNormalizer


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


_BASIC = BasicTextNormalizer()


def to_simplified(text: str) -> str:
    return _t2s().convert(text)


def normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", _BASIC(to_simplified(text))).strip()
