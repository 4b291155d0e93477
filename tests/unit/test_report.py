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
