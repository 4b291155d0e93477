"""Mixed-error-rate units: every Chinese character is a unit, every other word (run of non-space,
non-Chinese characters, e.g. an English word or a number) is a unit.

    >>> mer_units("我们用gpu训练 deep learning 模型")
    ['我', '们', '用', 'gpu', '训', '练', 'deep', 'learning', '模', '型']
"""

from __future__ import annotations

import re

from k2d.text.normalize import normalize_text
from k2d.text.script import is_chinese_char

_UNIT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[^\s\u3400-\u4dbf\u4e00-\u9fff]+")


def mer_units(normalized_text: str) -> list[str]:
    """Units of already-normalised text."""
    return _UNIT.findall(normalized_text)


def text_units(text: str) -> list[str]:
    """Normalise, then split into MER units."""
    return mer_units(normalize_text(text))


def is_chinese_unit(unit: str) -> bool:
    return len(unit) == 1 and is_chinese_char(unit)
