"""Phonemes, the n-gram looping detector, the composite distance and the filter predicate."""

import pytest

from k2d.metrics.distances import composite_distance, distances, has_ngram_loop, keep, loop_events, metric_value
from k2d.text.phonemes import english_phones, mandarin_phones, phonemes, phonemes_of_units, zhuyin_symbols


def test_mandarin_phones_are_toneless_initial_and_final():
    assert mandarin_phones("模") == ("m", "o")
    assert mandarin_phones("型") == ("x", "ing")
    assert mandarin_phones("安") == ("an",)  # zero initial


def test_english_phones_from_cmudict_without_stress():
    assert english_phones("gradient") == ("G", "R", "EY", "D", "IY", "AH", "N", "T")
    assert english_phones("30") == english_phones("thirty")  # numbers read as English words


def test_out_of_dictionary_word_gets_phones():
    phones = english_phones("pytorch")  # not in CMUdict: the neural g2p answers
    assert 3 <= len(phones) <= 10 and all(p.isupper() for p in phones)


def test_phonemes_of_mixed_text():
    english = ["G", "R", "EY", "D", "IY", "AH", "N", "T"]
    assert phonemes("模型 Gradient", scheme="pinyin") == ["m", "o", "x", "ing", *english]
    assert phonemes("模型 Gradient") == ["ㄇ", "ㄛ", "ㄒ", "ㄧ", "ㄥ", *english]  # zhuyin is the default


def test_zhuyin_reads_runs_in_context_one_unit_per_symbol():
    # 行 alone is xing2 = ㄒㄧㄥ (3 symbols); in 银行 (bank) it is hang2 = ㄏㄤ; tones are dropped
    assert zhuyin_symbols("行") == ("ㄒ", "ㄧ", "ㄥ")
    assert zhuyin_symbols("银行") == ("ㄧ", "ㄣ", "ㄏ", "ㄤ")
    assert phonemes_of_units(["银", "行"]) == ["ㄧ", "ㄣ", "ㄏ", "ㄤ"]  # units of one run are read together
    # per character, 行 is xing (no context); 银 has a zero initial (strict pinyin: y is not an initial)
    assert phonemes_of_units(["银", "行"], "pinyin") == ["in", "x", "ing"]
    assert zhuyin_symbols("的") == ("ㄉ", "ㄜ")  # neutral tone mark ˙ dropped
    # teacher 银航 (yin hang) against validator 银行 (yin hang in context): one character differs (MER 1/2),
    # the sounds do not (Zhuyin PER 0); read per character, 行 is x+ing against 航's h+ang: 2 of 3 units differ
    found = distances("银航", "银行")
    assert found.mer == pytest.approx(0.5) and found.per == 0.0
    assert distances("银航", "银行", mandarin_phonemes="pinyin").per == pytest.approx(2 / 3)


def test_loop_events_by_hand():
    assert loop_events("abcdef" * 5) == 1  # "abcdef" at 0, 6, 12, 18, 24: the 5th occurrence is one event
    assert loop_events("abcdef" * 4) == 0
    assert loop_events("abcdef" * 9) == 1  # counts restart after the event: 4 more occurrences are not 5
    assert loop_events("abcdef" * 10) == 2  # ... 5 more are
    assert loop_events("a" * 9) == 0 and loop_events("a" * 10) == 1  # "aaaaaa" at positions 0-3, then 0-4
    # a 6-gram seen 4 times, then 100 other characters, then once more: the counts were reset in between
    filler = "".join(chr(0x4E00 + i) for i in range(100))
    assert loop_events("xyzxyz" * 2 + "xyzx" + filler + "xyzxyz") == 0


def test_ngram_loop_detector_counts_by_hand():
    assert has_ngram_loop("a" * 11)  # "aaaaaa" occurs 6 times (> 5)
    assert not has_ngram_loop("a" * 10)  # 5 times
    assert has_ngram_loop("abcdef" * 6)  # "abcdef" 6 times
    assert not has_ngram_loop("abcdef" * 5)
    assert has_ngram_loop("ab cdef " * 6)  # spaces ignored
    assert has_ngram_loop("abc" * 4, n=3, max_count=3) and not has_ngram_loop("abc" * 3, n=3, max_count=3)


def test_composite_three_branches():
    assert composite_distance(teacher_loops=True, validator_loops=False, per=0.0) == 1.0  # teacher loops: drop
    assert composite_distance(teacher_loops=True, validator_loops=True, per=0.0) == 1.0
    assert composite_distance(teacher_loops=False, validator_loops=True, per=0.9) == 0.0  # validator loops: keep
    assert composite_distance(teacher_loops=False, validator_loops=False, per=0.25) == 0.25  # PER decides


def test_validator_is_the_reference():
    # validator 今天讲模型 (5 units), teacher 今天讲 (3): 2 deletions / 5
    d = distances("今天讲", "今天讲模型")
    assert d.mer == pytest.approx(0.4)


def test_per_forgives_homophones_mer_does_not():
    # 模型 (mo xing) vs 魔性 (mo xing): every character differs, every phoneme agrees
    d = distances("模型", "魔性")
    assert (d.mer, d.per, d.composite) == (1.0, 0.0, 0.0)


def test_identical_and_empty_validator():
    assert distances("我们用 GPU", "我們用gpu").as_dict() == {
        "mer": 0.0, "per": 0.0, "teacher_loops": False, "validator_loops": False, "composite": 0.0,
    }
    empty = distances("今天讲模型", "")
    assert (empty.mer, empty.per, empty.composite) == (0.0, 0.0, 0.0)
    looping = distances("哈" * 20, "")  # an empty validator does not save a looping teacher
    assert looping.composite == 1.0


def test_filter_predicate():
    stored = {"mer": 0.5, "per": 0.3, "teacher_loops": False, "validator_loops": False, "composite": 0.3}
    assert keep(stored, "none", 0.4)
    assert keep(stored, "ngram", 0.4)
    assert not keep(stored, "mer", 0.4)
    assert keep(stored, "per", 0.4) and keep(stored, "composite", 0.4)
    assert keep(stored, "per", 0.3)  # delta <= alpha keeps at equality
    assert not keep({**stored, "teacher_loops": True}, "ngram", 0.4)
    with pytest.raises(ValueError):
        metric_value(stored, "wer")


def test_ngram_detectors_count_spaces_as_characters():
    # "abcdef" written 6 times with the space in a different place each time: without spaces the 6-gram
    # "abcdef" occurs 6 times (> 5, a loop); with spaces (the K2D authors' detector) "abcdef" occurs once and
    # no other 6-gram more than twice: no loop
    text = "abcdef abc def ab cdef abcd ef a bcdef abcde f"
    assert has_ngram_loop(text.replace(" ", ""))
    assert not has_ngram_loop(text)
    # loop events: in "x y z " * 5 the 6-gram "x y z " occurs at 0, 6, 12, 18, 24: its 5th occurrence is an
    # event; read without spaces ("xyz" * 5) "xyzxyz" occurs at 0, 3, 6, 9 only: no event
    assert loop_events("x y z " * 5) == 1 and loop_events("xyz" * 5) == 0
