"""The data-driven path: dumps from train-student, learn-curriculum on them, and re-learning the
MentorNet during training (with resume across a re-fit)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cli
from curricula.targets import read_dump
from student_training.data_driven import parse_relearn
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
KILL_PLUGIN = str(ROOT / "tests" / "fault_injection.py")  # kills a run at MENTORNET_KILL_AT_STEP
BASE = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "6", "--batch-size", "64",
        "--clean-subset-fraction", "0.2"]


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)



@pytest.fixture(scope="module")
def dump_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dd")
    result = invoke("train-student", *BASE, "--dump-at-epoch", "18", "--dump", str(folder / "dump.csv"),
                    "--out", str(folder / "run"))
    assert result.exit_code == 0, result.output
    return folder


def test_dump_holds_the_clean_subset_with_clean_and_corrupted_samples(dump_run):
    table = pd.read_csv(dump_run / "dump.csv")
    assert list(table.columns) == ["sample_id", "epoch", "noisy_label", "clean_label", "loss"]
    assert len(table) == round(0.2 * 1438)  # 20% of the digits training pool
    assert (table["epoch"] == 18).all() and table["sample_id"].is_unique
    noisy = table["noisy_label"] != table["clean_label"]
    assert 0.3 < noisy.mean() < 0.5  # the noise model's labels, both kinds present
    assert table.loc[noisy, "loss"].mean() > table.loc[~noisy, "loss"].mean()
    labels = pd.read_csv(dump_run / "run" / "metrics.csv")
    assert len(labels) == 6
    dump = read_dump(dump_run / "dump.csv")
    assert len(dump) == len(table) and dump.duplicates_dropped == 0


def test_a_dump_taken_after_the_asked_epoch_says_so(tmp_path):
    """Report: --dump-at-epoch 18 in a 20-step run wrote rows of epoch 20 without a word."""
    result = invoke("train-student", *BASE[:6], "--max-steps", "20", "--batch-size", "64", "--clean-subset-fraction",
                    "0.2", "--dump-at-epoch", "18", "--dump", str(tmp_path / "d.csv"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert (f"wrote the clean-subset dump {tmp_path / 'd.csv'} at progress epoch 20 (no step of this run falls on "
            "--dump-at-epoch 18: the first after it)") in result.output
    assert (pd.read_csv(tmp_path / "d.csv")["epoch"] == 20).all()


def test_learn_curriculum_reads_the_dump(dump_run):
    out = dump_run / "dd.pt"
    result = invoke("learn-curriculum", "--dump", str(dump_run / "dump.csv"), "--percentile", "0.9", "--out", str(out),
                    "--steps", "300")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["source"]["type"] == "data_driven" and checkpoint["source"]["percentile"] == 0.9
    assert checkpoint["student_defaults"]["fixed_epoch_after_burn_in"] is True


def test_relearning_changes_the_mentornet_and_training_continues(dump_run, tmp_path):
    mentor = dump_run / "mentor.pt"
    assert invoke("learn-curriculum", "--dump", str(dump_run / "dump.csv"), "--out", str(mentor),
                  "--steps", "200").exit_code == 0
    out = tmp_path / "relearn"
    result = invoke("train-student", *BASE, "--mentornet", str(mentor), "--relearn-mentor", "30,60",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    log = pd.read_csv(out / "relearn.csv")
    assert log["progress_epoch"].tolist() == [30, 60] and (log["rows"] == round(0.2 * 1438)).all()
    assert log["heldout_mae"].between(0, 1).all()
    assert len(pd.read_csv(out / "metrics.csv")) == 6
    before = torch.load(mentor, weights_only=True)["state_dict"]
    after = torch.load(out / "last.pt", weights_only=True)["callbacks"]["relearn"]["mentornet"]["state_dict"]
    assert not torch.equal(before["fc1_weight"], after["fc1_weight"])
    assert torch.equal(before["epoch_embedding"], after["epoch_embedding"])  # frozen, even when re-fitted


def test_resume_across_a_refit(dump_run, tmp_path):
    mentor = dump_run / "mentor2.pt"
    assert invoke("learn-curriculum", "--dump", str(dump_run / "dump.csv"), "--out", str(mentor),
                  "--steps", "200").exit_code == 0
    args = [*BASE, "--mentornet", str(mentor), "--relearn-mentor", "30,60"]

    def run(*extra, env=None):
        return subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, "train-student", *args, *extra], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, **(env or {})})

    whole = run("--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    # 17 steps per epoch, 102 in all: step 70 is in epoch 5, after the re-fit at progress 60 (step 61).
    killed = run("--out", str(tmp_path / "cut"), env={"MENTORNET_KILL_AT_STEP": "70"})
    assert killed.returncode == 137
    resumed = subprocess.run([sys.executable, "cli.py", "train-student", "--out", str(tmp_path / "cut"), "--resume"],
                             cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("metrics.csv", "relearn.csv"):
        a = pd.read_csv(tmp_path / "whole" / name).drop(columns=["seconds", "fit_seconds"], errors="ignore")
        b = pd.read_csv(tmp_path / "cut" / name).drop(columns=["seconds", "fit_seconds"], errors="ignore")
        pd.testing.assert_frame_equal(a, b)


def test_parse_relearn():
    assert parse_relearn("never", "cosine") == ()
    assert parse_relearn("60,30", "cosine") == (30, 60)
    assert parse_relearn("lr-drops", "piecewise_2018") == (50, 64)
    with pytest.raises(ValueError, match="stepped learning-rate schedule"):
        parse_relearn("lr-drops", "cosine")
    with pytest.raises(ValueError, match="1..99"):
        parse_relearn("0,150", "cosine")


@pytest.mark.parametrize("args, fragment", [
    (["--dump", "d.csv", "--dump-at-epoch", "18"], "needs a clean subset"),
    (["--clean-subset-fraction", "0.1", "--dump", "d.csv", "--dump-at-epoch", "150"], "beyond the run"),
    (["--clean-subset-fraction", "0.1", "--dump", "d.csv"], "together"),
    (["--mentornet", "mentornet_pd", "--relearn-mentor", "30,60"], "needs a clean subset"),
    (["--clean-subset-fraction", "0.1", "--relearn-mentor", "30"], "needs a MentorNet"),
    (["--clean-subset-fraction", "1.5"], "--clean-subset-fraction"),
])
def test_bad_data_driven_input(tmp_path, args, fragment):
    out = tmp_path / "run"
    result = invoke("train-student", "--dataset", "digits", "--studentnet", "mlp", "--epochs", "1", *args,
                    "--out", str(out))
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_dump_without_a_mixture_is_refused(tmp_path):
    dump = tmp_path / "clean.csv"
    dump.write_text("sample_id,epoch,noisy_label,clean_label,loss\n1,18,2,2,0.1\n2,18,3,3,0.5\n3,18,1,1,0.2\n")
    assert_one_line_error(invoke("learn-curriculum", "--dump", str(dump), "--out", str(tmp_path / "m.pt")),
                          "only clean samples")
