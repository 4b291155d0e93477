"""Scoring: hand-worked corpus MER / CER / WER, hallucination counting, and jiwer agreement."""

import random

import jiwer
import pytest

from k2d.kaldi_text import read_text_file
from k2d.metrics.scoring import score_files, score_texts
from k2d.text.units import text_units


def test_score_by_hand():
    references = {"a": "今天讲 Gradient Descent", "b": "大家好"}
    hypotheses = {"a": "今天講 gradient decent 了", "b": "大家"}
    total, per_utterance = score_texts(references, hypotheses)
    # a: 5 ref units, 1 substitution (descent) + 1 insertion (了); b: 3 ref units, 1 deletion (好)
    assert (total.mer.substitutions, total.mer.deletions, total.mer.insertions) == (1, 1, 1)
    assert total.mer.reference_length == 8 and total.mer.rate == pytest.approx(3 / 8)
    # Mandarin only: a: 今天讲 vs 今天讲了 (1 ins / 3), b: 大家好 vs 大家 (1 del / 3)
    assert total.cer.rate == pytest.approx(2 / 6)
    # English only: gradient descent vs gradient decent: 1 sub / 2
    assert total.wer.rate == pytest.approx(1 / 2)
    assert [u.key for u in per_utterance] == ["a", "b"]


def test_missing_hypothesis_is_all_deletions_and_hallucinations_counted():
    total, _ = score_texts({"a": "一二三", "b": "四五"}, {"b": "四五" + "哈哈哈哈哈哈" * 6})
    assert total.missing_hypotheses == 1
    assert total.mer.deletions == 3
    assert total.hallucinations == 1 and total.utterances == 2


def test_agrees_with_jiwer_on_units():
    rng = random.Random(11)
    words = ["模型", "资料", "gradient", "descent", "GPU", "训练", "的"]
    references, hypotheses = {}, {}
    for i in range(50):
        references[f"u{i}"] = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
        hypotheses[f"u{i}"] = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
    total, _ = score_texts(references, hypotheses)
    ref_units = [" ".join(text_units(references[k])) for k in references]
    hyp_units = [" ".join(text_units(hypotheses[k])) for k in references]
    assert total.mer.rate == pytest.approx(jiwer.wer(ref_units, hyp_units))


def test_score_files_and_text_format(tmp_path):
    (tmp_path / "ref.txt").write_text("u1 我们 用 GPU\nu2 好\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("u1 我们用gpu\nu2\n", encoding="utf-8")
    assert read_text_file(tmp_path / "hyp.txt") == {"u1": "我们用gpu", "u2": ""}
    total = score_files(tmp_path / "ref.txt", tmp_path / "hyp.txt", tmp_path / "out")
    assert total.mer.errors == 1 and total.mer.reference_length == 5
    assert (tmp_path / "out" / "errs.txt").read_text(encoding="utf-8").count("id: ") == 2
    assert "MER 20.00%" in (tmp_path / "out" / "summary.txt").read_text(encoding="utf-8")


def test_duplicate_ids_are_an_error(tmp_path):
    (tmp_path / "t.txt").write_text("a x\na y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="appears twice"):
        read_text_file(tmp_path / "t.txt")
