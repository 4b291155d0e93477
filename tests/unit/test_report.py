"""Stage 7's table in the shape of the K2D paper's Table 2, checked by hand."""

from k2d.report import kept_share, results_table


def test_table_two_relative_change_against_the_teacher():
    rows = [
        {"model": "teacher", "parameters": 1_543_000_000, "speedup": 1.0, "kept": "-", "mer": {"a": 0.20, "b": 0.10}},
        {"model": "student_composite", "parameters": 756_000_000, "speedup": 5.04, "kept": "74%",
         "mer": {"a": 0.15, "b": 0.12}},
        {"model": "student_none", "parameters": 756_000_000, "speedup": 5.0, "kept": "100%", "mer": {"a": 0.30}},
    ]
    lines = results_table(rows, ["a", "b"]).splitlines()
    assert lines[0] == "| model | parameters | speed-up | data kept | a MER % | b MER % |"
    assert lines[2] == "| teacher | 1543.00M | 1.00x | - | 20.00 | 10.00 |"
    # (15 - 20) / 20 = -25%; (12 - 10) / 10 = +20%
    assert lines[3] == "| student_composite | 756.00M | 5.04x | 74% | 15.00 (-25.0%) | 12.00 (+20.0%) |"
    assert lines[4] == "| student_none | 756.00M | 5.00x | 100% | 30.00 (+50.0%) | - |"


def test_kept_share_of_each_student():
    report = {"metrics": {"composite": {"kept_percent": 73.6}, "none": {"kept_percent": 100.0}}}
    assert kept_share(report, "student_composite") == "74%"
    assert kept_share(report, "teacher") == "-" and kept_share(None, "student_none") == "-"
    assert kept_share(report, "student_per") == "?"  # a metric the report does not cover
    assert kept_share(report, "student_composite_seed1") == "74%"  # another run of the same student
    report["metrics"]["two_validators"] = {"kept_percent": 40.2}
    report["metrics"]["two"] = {"kept_percent": 1.0}  # a shorter name that is a prefix: the longest match wins
    assert kept_share(report, "student_two_validators_seed1") == "40%"


def test_learning_curves_keep_the_last_validation_of_each_step(tmp_path):
    import json

    from k2d.report import curves_table, learning_curves, plot_learning_curves

    run = tmp_path / "student_composite"
    run.mkdir()
    # killed after validating step 300, resumed from step 150's checkpoint: step 300 is validated again
    records = [{"step": 150, "mer": 0.5}, {"step": 300, "mer": 0.4}, {"step": 300, "mer": 0.38},
               {"step": 450, "mer": 0.2, "insertions": 3, "loop_events": 0, "train_seconds": 600}]
    (run / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    curves = learning_curves(tmp_path, {"teacher": "t", "student_composite": "s", "student_none": "n"})
    assert list(curves) == ["student_composite"]  # the teacher is not a student; student_none has no curve
    assert [(r["step"], r["mer"]) for r in curves["student_composite"]] == [(150, 0.5), (300, 0.38), (450, 0.2)]
    assert "| student_composite | 450 | 10 min | 20.00 | 3 | 0 |" in curves_table(curves)
    plot_learning_curves(curves, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
