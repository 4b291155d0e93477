"""Stage 4's accounting, worked out by hand: kept share by hours, and the true pseudo-label MER of the kept
and the dropped chunks."""

import pytest
from lhotse import MonoCut, Recording, SupervisionSegment

from k2d.filtering import FilterConfig, filter_cuts


def chunk(start, duration, text, composite, continued=False, complete_end=None):
    recording = Recording("r", [], 16000, 16000 * 60, 60.0)
    distances = None if composite is None else {
        "mer": composite, "per": composite, "teacher_loops": False, "validator_loops": False, "composite": composite}
    custom = {"text": text, "continued": continued, "complete_end": complete_end or duration, "prev_text": None,
              "validator_text": None if composite is None else "x", "distances": distances}
    return MonoCut(f"r-{start}", start, duration, 0, recording=recording, custom=custom)


def test_kept_share_and_label_error_by_hand(tmp_path):
    truth = {"r": [SupervisionSegment(f"t{i}", "r", start, 2.0, text=text) for i, (start, text) in
                   enumerate([(1.0, "模型资料"), (11.0, "数据"), (16.0, "你好"), (22.0, "不算")])]}
    cuts = [
        chunk(0.0, 10.0, "模型资料", 0.1),  # agrees with the truth: 0 errors of 4
        chunk(10.0, 5.0, "模型", 0.9),  # 2 substitutions of 2
        chunk(15.0, 8.0, "你好", None, continued=True, complete_end=5.0),  # unreadable: never kept; its span
        # ends at 20.0, so the true utterance at 22-24 s is not its truth
    ]
    outputs = {"composite": tmp_path / "kept.jsonl.gz"}
    summaries, values = filter_cuts(cuts, FilterConfig(metrics=["composite"], alpha=0.4), outputs, truth)
    composite, none = summaries["composite"], summaries["none"]
    assert (composite["chunks_kept"], composite["chunks_in"]) == (1, 3)
    assert composite["kept_percent"] == pytest.approx(100 * 10 / 23, abs=0.05)  # 10 of 23 s
    assert composite["pseudo_label_mer_kept"] == 0.0
    assert composite["pseudo_label_mer_dropped"] == pytest.approx(2 / 4)  # (2 + 0) / (2 + 2)
    assert none["kept_percent"] == pytest.approx(100 * 15 / 23, abs=0.05)  # all but the unreadable chunk
    assert none["pseudo_label_mer_kept"] == pytest.approx(2 / 6, abs=1e-4) and none["pseudo_label_mer_dropped"] == 0.0
    assert values["composite"] == [0.1, 0.9]


def test_alpha_sweep_by_hand(tmp_path):
    from k2d.calibrate import choose_alpha, sweep

    truth = {"r": [SupervisionSegment(f"t{i}", "r", start, 2.0, text=text) for i, (start, text) in
                   enumerate([(1.0, "模型资料"), (11.0, "数据"), (16.0, "你好")])]}
    cuts = [chunk(0.0, 10.0, "模型资料", 0.1), chunk(10.0, 5.0, "模型", 0.9),
            chunk(15.0, 8.0, "你好", None, continued=True, complete_end=5.0)]
    table = sweep(cuts, truth, ["composite"], alphas=(0.0, 0.1, 0.5, 0.9, 1.0))["composite"]
    assert table[0.0] == {"kept_percent": 0.0, "kept_hours": 0.0, "label_mer_kept": None}
    assert table[0.1] == table[0.5] == {"kept_percent": 43.5, "kept_hours": round(10 / 3600, 4), "label_mer_kept": 0.0}
    assert table[0.9] == table[1.0] == {"kept_percent": 65.2, "kept_hours": round(15 / 3600, 4),
                                        "label_mer_kept": round(2 / 6, 4)}  # 15 of 23 s; 2 errors of 6 units
    assert choose_alpha(table, 0.0) == 0.1  # most hours at MER 0: the smallest alpha of the tie
    assert choose_alpha(table, 0.5) == 0.9
    assert choose_alpha({0.2: {"kept_hours": 1.0, "label_mer_kept": 0.3}}, 0.1) is None
