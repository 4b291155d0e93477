"""Normalisation, MER units and edit distances, with hand-worked answers and an independent check."""

import random

import jiwer
import kaldialign
import pytest

from k2d.metrics.edit import ErrorCounts, align, error_counts, error_rate
from k2d.text.normalize import normalize_text
from k2d.text.units import mer_units, text_units


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("我們用ＧＰＵ訓練「模型」！", "我们用gpu训练 模型"),  # traditional -> simplified, full-width -> half-width
        ("Deep  Learning, OK?", "deep learning ok"),  # case and punctuation
        ("資料 [noise] 很多 (laughs)", "资料 很多"),  # bracketed markup removed
        ("準確率是百分之３０", "准确率是百分之30"),  # full-width digits; numbers stay as written
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_mer_units_chinese_characters_and_words():
    assert mer_units("我们用gpu训练 deep learning 模型") == [
        "我", "们", "用", "gpu", "训", "练", "deep", "learning", "模", "型",
    ]
    assert text_units("第３０個 Epoch。") == ["第", "30", "个", "epoch"]


def test_alignment_by_hand():
    # ref a b c d, hyp a x c d d: b->x substitution, one inserted d
    ops = align(list("abcd"), list("axcdd"))
    assert sorted(op for op, _, _ in ops) == ["C", "C", "C", "I", "S"]
    assert [r for op, r, _ in ops if op != "I"] == list("abcd")  # the alignment spells both sides
    assert [h for op, _, h in ops if op != "D"] == list("axcdd")
    assert ("S", "b", "x") in ops
    counts = error_counts(list("abcd"), list("axcdd"))
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.reference_length) == (1, 0, 1, 4)
    assert counts.rate == pytest.approx(0.5)


def test_empty_sides():
    assert error_counts([], []).rate == 0.0
    assert error_counts([], ["a"]).rate == 1.0  # insertions against nothing
    assert error_counts(["a", "b"], []).rate == 1.0


def test_mixed_string_mer_by_hand():
    # ref units: 今 天 讲 gradient descent (5); hyp: 今 天 讲 gradient decent 了
    # -> descent/decent substitution + 了 insertion = 2 errors / 5
    ref = text_units("今天讲 Gradient Descent")
    hyp = text_units("今天講 gradient decent 了")
    assert error_rate(ref, hyp) == pytest.approx(2 / 5)


def test_error_counts_add():
    total = ErrorCounts(1, 2, 3, 10) + ErrorCounts(1, 0, 0, 5)
    assert (total.errors, total.reference_length) == (7, 15)


def test_agrees_with_jiwer_and_kaldialign():
    rng = random.Random(5)
    alphabet = list("abcdefg") + ["模", "型"]
    for _ in range(200):
        ref = [rng.choice(alphabet) for _ in range(rng.randint(1, 12))]
        hyp = [rng.choice(alphabet) for _ in range(rng.randint(0, 12))]
        ours = error_counts(ref, hyp)
        assert ours.errors == kaldialign.edit_distance(ref, hyp)["total"]
        if hyp:
            assert ours.rate == pytest.approx(jiwer.wer(" ".join(ref), " ".join(hyp)))
