"""The mini_cs text generator and script splitting."""

import random
from collections import Counter

import pytest

from k2d.recipes.mini_cs.text import generate_sentence, join_words, mandarin_number, split_scripts
from k2d.text.script import is_chinese_char, join_texts


@pytest.mark.parametrize(
    "value, expected",
    [(0, "零"), (7, "七"), (10, "十"), (11, "十一"), (20, "二十"), (35, "三十五"), (99, "九十九")],
)
def test_mandarin_number(value, expected):
    assert mandarin_number(value) == expected


def test_mandarin_number_range():
    with pytest.raises(ValueError):
        mandarin_number(100)


def test_split_scripts_alternates_runs():
    assert split_scripts("我们用 GPU 训练 deep learning 模型") == [
        ("zh", "我们用"), ("en", "GPU"), ("zh", "训练"), ("en", "deep learning"), ("zh", "模型"),
    ]


def test_split_scripts_drops_punctuation_and_merges_same_script():
    assert split_scripts("好，那我们 begin！OK?") == [
        ("zh", "好 那我们"), ("en", "begin OK"),
    ]


def test_join_words_spaces_between_scripts_only():
    assert join_words("如果pooling太大的话") == "如果 pooling 太大的话"
    assert join_words("so  the   model") == "so the model"


def test_join_texts():
    assert join_texts(["我们用", "GPU", "训练", "模型"]) == "我们用 GPU 训练模型"
    assert join_texts(["", " a ", "b"]) == "a b"


def test_generator_is_deterministic_and_varied():
    first = [generate_sentence(random.Random(7)).text for _ in range(3)]
    assert len(set(first)) == 1  # same seed, same sentence
    rng = random.Random(0)
    sentences = [generate_sentence(rng) for _ in range(2000)]
    assert len({s.text for s in sentences}) > 1800  # hardly any repeats: nothing to memorise
    kinds = Counter(s.kind for s in sentences)
    # 70 / 15 / 15 %: with 2000 draws each share is within 4 points
    assert abs(kinds["cs"] / 2000 - 0.70) < 0.04
    assert abs(kinds["zh"] / 2000 - 0.15) < 0.04
    assert abs(kinds["en"] / 2000 - 0.15) < 0.04


def test_sentence_kinds_match_their_scripts():
    rng = random.Random(3)
    for _ in range(300):
        s = generate_sentence(rng)
        has_zh = any(is_chinese_char(c) for c in s.text)
        has_en = any(c.isascii() and c.isalpha() for c in s.text)
        assert (has_zh, has_en) == {"cs": (True, True), "zh": (True, False), "en": (False, True)}[s.kind]
