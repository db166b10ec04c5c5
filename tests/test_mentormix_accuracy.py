"""benchmarks/mentormix_accuracy.py: the evidence grid in its tiny --smoke setting, with --tune, kept run
folders and an incremental rerun."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from mentor_training.pretrained import pretrained_path
from student_training.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import mentormix_accuracy  # noqa: E402


def test_smoke_grid_tunes_on_validation_keeps_folders_and_reruns_incrementally(tmp_path, capsys):
    out = tmp_path / "grid"
    learned = str(pretrained_path("self_paced_mentornet"))  # any learn-curriculum checkpoint, given as a path
    argv = ["--smoke", "--tune", "--learned", learned, "--out", str(out)]
    results = mentormix_accuracy.main(argv)
    assert len(results) == 6 * 2  # six methods x seeds 0 and 1 at noise 0.4
    assert set(results["method"]) == set(mentormix_accuracy.METHODS)
    for column in ("final_accuracy", "best_accuracy", "detector_auc"):
        assert results[column].between(0, 1).all(), column
    mentormix = results[results["method"].isin(["mixup", "mentormix_pd", "mentormix_learned"])]
    assert (mentormix["chosen_by"] == "validation").all()
    assert set(mentormix["mixup_alpha"]) <= {2.0, 8.0}
    assert (results[results["method"] == "mentormix_learned"]["mentornet"] == learned).all()

    tuning = pd.read_csv(out / "tuning.csv")
    assert len(tuning) == 2 + 2 + 2  # mixup: 2 alphas; each MentorMix method: 2 alphas x 1 p; tune seed 0
    assert tuning["validation_accuracy"].between(0, 1).all() and (tuning["validation_labels"] == "noisy").all()
    for method, group in tuning.groupby("method"):  # the chosen alpha has the best validation accuracy
        best = group.loc[group["validation_accuracy"].idxmax(), "mixup_alpha"]
        assert set(results[results["method"] == method]["mixup_alpha"]) == {best}
    tune_config = json.loads((Path(tuning["folder"].iloc[0]) / "config.json").read_text())["config"]
    assert tune_config["clean_subset_fraction"] == 0.1  # trained without the held-out validation images
    for folder in results["folder"]:  # every final run trained on the whole training set, and was kept
        saved = json.loads((Path(folder) / "config.json").read_text())["config"]
        assert saved["clean_subset_fraction"] == 0.0 and len(pd.read_csv(Path(folder) / "metrics.csv")) == 3

    text = (out / "results.md").read_text()
    assert "| noise | method | setting | seeds | final_accuracy | best_accuracy | fit_noisy | detector_auc |" in text
    assert text.count(" ± ") >= 6 * 4 and "python cli.py plot --run" in text
    columns = ["method", "noise", "seed", "mixup_alpha", *mentormix_accuracy.SUMMARY, "folder"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv")[columns], results[columns], check_dtype=False)

    before = {folder: (Path(folder) / "last.pt").stat().st_mtime_ns for folder in results["folder"]}
    capsys.readouterr()
    again = mentormix_accuracy.main(argv)  # every folder complete: read, not retrained
    assert "trained in" not in capsys.readouterr().err
    assert {folder: (Path(folder) / "last.pt").stat().st_mtime_ns for folder in results["folder"]} == before
    pd.testing.assert_frame_equal(again, results)

    plot = CliRunner().invoke(cli.cli, ["plot", *[a for f in results["folder"][:3] for a in ("--run", f)],
                                        "--out", str(tmp_path / "curves.png")])
    assert plot.exit_code == 0, plot.output


class Interrupted(Exception):
    pass


class InterruptAtStep30(Callback):
    name = "interrupt"

    def on_step(self, run, step):
        if step == 30:  # inside epoch 2 (22 steps per epoch)
            raise Interrupted


def test_an_interrupted_grid_resumes_to_the_same_result_and_refuses_a_folder_of_other_options(
        tmp_path, monkeypatch, capsys):
    argv = ["--smoke", "--methods", "mentormix_pd", "--seeds", "0"]
    whole = mentormix_accuracy.main([*argv, "--out", str(tmp_path / "whole")])
    folder = tmp_path / "cut" / "runs" / "mentormix_pd_noise0.4_a8_p0.6_seed0"  # official CIFAR-10 values at 0.4
    assert Path(whole["folder"].iloc[0]).name == folder.name
    monkeypatch.setattr("student_training.callbacks._FACTORIES", [lambda run: InterruptAtStep30()])
    with pytest.raises(Interrupted):
        mentormix_accuracy.main([*argv, "--out", str(tmp_path / "cut")])
    assert len(pd.read_csv(folder / "metrics.csv")) == 1
    monkeypatch.setattr("student_training.callbacks._FACTORIES", [])
    capsys.readouterr()
    cut = mentormix_accuracy.main([*argv, "--out", str(tmp_path / "cut")])
    assert "resumed in" in capsys.readouterr().err
    a, b = (pd.read_csv(Path(f) / "metrics.csv").drop(columns="seconds") for f in (whole["folder"][0], folder))
    pd.testing.assert_frame_equal(a, b)
    assert cut["final_accuracy"].tolist() == whole["final_accuracy"].tolist()

    saved = json.loads((folder / "config.json").read_text())
    saved["config"]["lr"] = 0.5
    (folder / "config.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit,
                       match="holds a run with other options: lr 0.5 \\(asked the student.s default \\(0.1\\)\\)"):
        mentormix_accuracy.main([*argv, "--out", str(tmp_path / "cut")])


def test_a_learned_mentornet_fitted_on_the_loss_alone_gets_no_loss_percentile():
    """Found rerunning the README's grid: mentormix_learned passed the official p to mentornet_learned (fitted
    without loss_diff), which train-student now refuses; p only defines loss_diff (2020 spec §2, steps a-c)."""
    args = mentormix_accuracy.parse_args(["--out", "x", "--learned", str(pretrained_path("mentornet_learned"))])
    assert mentormix_accuracy.default_hyper("mentormix_learned", 0.4, args) == \
        mentormix_accuracy.Hyper(alpha=8.0, p=None, second_reweight=False)
    assert mentormix_accuracy.default_hyper("mentormix_pd", 0.4, args).p == 0.6  # the official CIFAR-10 p
    args.alphas, args.ps = [2.0, 8.0], [0.6, 0.7]
    assert {hyper.p for hyper in mentormix_accuracy.candidates("mentormix_learned", 0.4, args)} == {None}
    config = mentormix_accuracy.run_config("mentormix_learned", 0.4, 0, mentormix_accuracy.default_hyper(
        "mentormix_learned", 0.4, args), args)
    assert "loss_p_percentile" not in config.weighter
