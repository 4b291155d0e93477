"""Which script a character belongs to (Chinese characters are MER units of their own)."""

from __future__ import annotations


def is_chinese_char(char: str) -> bool:
    """True for a CJK unified ideograph (basic block or extension A)."""
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def join_texts(texts: list[str]) -> str:
    """Join transcript pieces: nothing between two Chinese characters, one space otherwise.

    >>> join_texts(["我们用", "GPU", "训练", "模型"])
    '我们用 GPU 训练模型'
    """
    out = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if out and not (is_chinese_char(out[-1]) and is_chinese_char(text[0])):
            out += " "
        out += text
    return out
