"""egs/mini_cs_mtkd's results helpers: ESPnet's epoch log lines read back, the baseline seeds' spread."""

import pytest
import yaml

import k2d.espnet.recipe as recipe
from k2d.espnet.recipe import best_checkpoint, curves_table, espnet_validations, results_table

LOG = """[vm] 2026-12-05 08:11:06,093 (trainer:394) INFO: 1epoch results: [train] loss=446.617, time=6.83 seconds, \
[valid] loss_ctc=298.726, cer_ctc=0.976, loss_transducer=214.525, cer_transducer=nan, loss=304.142, time=0.99 seconds
[vm] 2026-12-05 08:12:00,000 (trainer:394) INFO: 2epoch results: [train] loss=300.0, [valid] loss=250.5, time=1 seconds
[vm] 2026-12-05 08:13:00,000 (trainer:394) INFO: 2epoch results: [train] loss=299.0, [valid] loss=250.0, time=1 seconds
"""


def test_espnet_validations_by_epoch_the_resumed_epoch_once(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(LOG)
    records = espnet_validations(path)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["loss"] == 304.142 and records[0]["loss_transducer"] == 214.525
    assert records[1]["loss"] == 250.0  # epoch 2 again after a resume: its last line


def test_results_table_relative_reduction_and_seed_spread(tmp_path):
    def score(system, test_set, rate):
        path = tmp_path / f"asr_{system}" / f"decode_{test_set}" / "scores.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({"mer": {"rate": rate}}))

    for system, rate in (("none", 0.40), ("none_seed1", 0.30), ("one", 0.20)):
        score(system, "test_in_short", rate)
    table = results_table(tmp_path, ["none", "none_seed1", "one"], ["test_in_short"], "none")
    assert "| one | 20.00 | +50.0% |" in table  # (40 - 20) / 40
    assert "Spread (max - min MER) of the 2 seeds of none: test_in_short 10.00." in table


def test_a_run_is_chosen_and_plotted_by_its_own_criterion(tmp_path):
    # a distilled student: its total loss keeps falling with the KD terms while its recognition loss turns up
    run = tmp_path / "asr_branch"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"best_model_criterion": [["valid", "loss_asr", "min"]]}))
    (run / "train.log").write_text("".join(
        f"x INFO: {epoch}epoch results: [train] loss=1.0, [valid] loss_asr={asr}, loss={total}, time=1 seconds\n"
        for epoch, asr, total in ((1, 30.0, 900.0), (2, 20.0, 800.0), (3, 25.0, 700.0))))
    assert best_checkpoint(run) == run / "valid.loss_asr.best.pth"
    table = curves_table(tmp_path, ["branch"], tmp_path / "curves.png")
    assert "| branch | 3 | 2 | loss_asr | 20.000 |" in table  # epoch 2, although the total was lowest at 3
    assert (tmp_path / "curves.png").stat().st_size > 0
    (run / "config.yaml").write_text(yaml.safe_dump({"best_model_criterion": [["valid", "acc", "max"]]}))
    with pytest.raises(ValueError, match="validation minimum"):
        best_checkpoint(run)


def test_a_second_phase_is_tabulated_apart_and_plotted_after_the_first(tmp_path, monkeypatch):
    plotted = {}
    monkeypatch.setattr(recipe, "plot_lines", lambda curves, *args, **kwargs: plotted.update(curves))
    for run, losses in (("asr_one_phase1", (40.0, 35.0, 36.0)), ("asr_one", (34.0, 33.0))):
        (tmp_path / run).mkdir()
        (tmp_path / run / "config.yaml").write_text(yaml.safe_dump({"best_model_criterion": [["valid", "loss", "min"]]},
                                                                   default_flow_style=True))
        (tmp_path / run / "train.log").write_text("".join(
            f"x INFO: {epoch}epoch results: [train] loss=1.0, [valid] loss={loss}, time=1 seconds\n"
            for epoch, loss in enumerate(losses, start=1)))
    table = curves_table(tmp_path, ["one"], tmp_path / "curves.png")
    assert "| one, phase 1 | 3 | 2 | loss | 35.000 |" in table
    assert "| one, phase 2 | 2 | 2 | loss | 33.000 |" in table
    assert plotted == {"one": ([1, 2, 3, 4, 5], [40.0, 35.0, 36.0, 34.0, 33.0])}  # phase 2's epochs after 3
