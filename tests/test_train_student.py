"""train-student end to end on real data: outputs, resume after a kill, defaults, and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from numpy.testing import assert_allclose

import cli
from mentor_training.pretrained import pretrained_path
from student_training.data import DEBIAN_FASHION_MNIST_DIR
from student_training.evaluation import detector_auc
from student_training.trainer import METRIC_COLUMNS, learning_rate, student_loss
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
KILL_PLUGIN = str(ROOT / "tests" / "fault_injection.py")  # kills a run at MENTORNET_KILL_AT_STEP
QUICK = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "4", "--batch-size", "64"]


def invoke(*args):
    return CliRunner().invoke(cli.cli, ["train-student", *args], catch_exceptions=False)



def test_run_folder_contract(tmp_path):
    out = tmp_path / "run"
    result = invoke(*QUICK, "--mentornet", "mentornet_pd", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "realised rate 0.3999" in result.output and "final test accuracy" in result.output
    assert sorted(os.listdir(out)) == ["best.pt", "config.json", "last.pt", "metrics.csv", "noisy_labels.npz"]
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == list(METRIC_COLUMNS) and metrics["epoch"].tolist() == [1, 2, 3, 4]
    assert metrics["test_accuracy"].between(0, 1).all() and metrics["detector_auc"].between(0, 1).all()
    with np.load(out / "noisy_labels.npz") as labels:
        assert {"noisy_labels", "clean_labels", "transition_matrix", "noise_rate"} <= set(labels.files)
        assert abs(float(labels["noise_rate"]) - 0.4) < 1e-3
        assert_allclose(labels["transition_matrix"].sum(axis=1), 1.0)
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["weighter"] == {}  # no weighting option was given ...
    assert saved["resolved"]["weighter"]["example_dropout_rates"] == "0.5,17,0.05,83"  # ... so the checkpoint's
    assert torch.load(out / "best.pt", weights_only=True)["kind"] == "student"


def test_flags_override_checkpoint_defaults(tmp_path):
    out = tmp_path / "run"
    result = invoke(*QUICK, "--epochs", "1", "--mentornet", "mentornet_pd", "--loss-p-percentile", "0.75",
                    "--burn-in-epoch", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    weighter = json.loads((out / "config.json").read_text())["resolved"]["weighter"]
    assert weighter["loss_p_percentile"] == 0.75 and weighter["burn_in_epoch"] == 5
    assert weighter["example_dropout_rates"] == "0.5,17,0.05,83"
    assert "loss_p_percentile=0.75" in result.output


def test_baseline_runs_through_the_same_loop(tmp_path):
    result = invoke(*QUICK, "--epochs", "2", "--mentornet", "none", "--out", str(tmp_path / "base"))
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "base" / "metrics.csv")
    assert (metrics["mean_weight"] == 1.0).all() and (metrics["detector_auc"] == 0.5).all()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, "train-student", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(tmp_path):
    args = [*QUICK, "--epochs", "5", "--mentornet", "mentornet_pd", "--seed", "3"]
    whole = _cli(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = _cli(*args, "--out", str(tmp_path / "cut"), env={"MENTORNET_KILL_AT_STEP": "50"})  # inside epoch 3
    assert killed.returncode == 137
    assert len(pd.read_csv(tmp_path / "cut" / "metrics.csv")) == 2
    resumed = _cli("--out", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2" in resumed.stdout
    a = pd.read_csv(tmp_path / "whole" / "metrics.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    state_a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    state_b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_subset_end_to_end(tmp_path):
    out = tmp_path / "fm"
    result = invoke("--dataset", "fashion-mnist", "--subset", "2000", "--studentnet", "mlp", "--noise", "0.4",
                    "--epochs", "3", "--mentornet", "self_paced_mentornet", "--out", str(out))
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["test_accuracy"].iloc[-1] > 0.5
    assert metrics["weight_clean"].iloc[-1] > metrics["weight_noisy"].iloc[-1]


@pytest.fixture
def mismatched_checkpoint(tmp_path):
    checkpoint = torch.load(pretrained_path("self_paced_mentornet"), weights_only=True)
    checkpoint["feature_spec"]["epoch_encoding"] = "real_epochs"
    path = tmp_path / "mismatch.pt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("args, fragment", [
    (["--example-dropout-rates", "0.5,17,0.05,80"], "sum to 97"),
    (["--example-dropout-rates", "1.5,100"], "outside [0, 1]"),
    (["--loss-p-percentile", "0"], "(0, 1]"),
    (["--loss-p-percentile", "1.5"], "(0, 1]"),
    (["--noise", "1.5"], "noise rate must lie in [0, 1]"),
    (["--noise-type", "weird"], "unknown noise type"),
    (["--dataset", "mnist"], "unknown data set"),
    (["--studentnet", "vgg"], "unknown student"),
    (["--mentornet", "no_such_mentor"], "neither a pretrained MentorNet"),
])
def test_bad_input_is_one_line(tmp_path, args, fragment):
    out = tmp_path / "run"
    base = [a for a in QUICK]
    for flag in ("--dataset", "--studentnet", "--noise"):
        if flag in args:
            i = base.index(flag)
            del base[i:i + 2]
    assert_one_line_error(invoke(*base, "--mentornet", "mentornet_pd", *args, "--out", str(out)), fragment)
    assert not out.exists()


def test_mismatched_feature_spec_is_refused(tmp_path, mismatched_checkpoint):
    assert_one_line_error(invoke(*QUICK, "--mentornet", str(mismatched_checkpoint), "--out", str(tmp_path / "r")),
                          "feature spec mismatch")


def test_missing_data_set_says_how_to_get_it(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "cifar-10")


def test_existing_run_needs_resume_or_force(tmp_path):
    out = tmp_path / "run"
    assert invoke(*QUICK, "--epochs", "1", "--out", str(out)).exit_code == 0
    before = (out / "metrics.csv").read_bytes()
    assert_one_line_error(invoke(*QUICK, "--epochs", "1", "--out", str(out)), "pass --resume")
    assert (out / "metrics.csv").read_bytes() == before
    assert invoke(*QUICK, "--epochs", "1", "--out", str(out), "--force").exit_code == 0
    assert_one_line_error(invoke("--out", str(tmp_path / "nothing"), "--resume"), "cannot resume")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    assert_one_line_error(invoke(*QUICK, "--device", "cuda", "--out", str(tmp_path / "r")), "no CUDA GPU")


def test_learning_rate_schedules_follow_2018():
    assert learning_rate(19531, 39000, 0.1, "piecewise_2018") == pytest.approx(0.1)
    assert learning_rate(19532, 39000, 0.1, "piecewise_2018") == pytest.approx(0.01)
    assert learning_rate(25001, 39000, 0.1, "piecewise_2018") == pytest.approx(0.001)
    assert learning_rate(30001, 39000, 0.1, "piecewise_2018") == pytest.approx(0.0001)
    assert learning_rate(78124, 120000, 0.1, "exponential_2018") == pytest.approx(0.1)
    assert learning_rate(78125, 120000, 0.1, "exponential_2018") == pytest.approx(0.01)
    assert learning_rate(50, 100, 0.1, "cosine") == pytest.approx(0.05)


def test_loss_is_mean_over_batch_with_resnet_decay_scaled_by_mean_weight():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weights = torch.tensor([1.0, 0.5, 0.0, 0.5])
    weight_matrix = torch.tensor([[3.0, 4.0]])  # ‖W‖² = 25
    assert float(student_loss(losses, weights, [], 0.0)) == pytest.approx((1 + 1 + 0 + 2) / 4)  # not / Σv
    expected = 1.0 + 0.5 * 2e-4 * 0.5 * 25.0
    assert float(student_loss(losses, weights, [weight_matrix], 2e-4)) == pytest.approx(expected)


def test_detector_auc():
    assert detector_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert detector_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert detector_auc([1.0, 1.0, 1.0, 1.0], [True, False, True, False]) == 0.5
    assert detector_auc([0.5, 0.7, 0.6], [True, True, False]) == 0.5
    assert np.isnan(detector_auc([0.5, 0.7], [True, True]))


def test_a_mentornet_that_weights_everything_near_zero_is_warned_about(tmp_path):
    """Report: a MentorNet learned late in another run, given by --mentornet PATH, weighted a new run's losses
    near 0 (mean 0.0007) and the student stayed at chance, without a word."""
    from mentor_training import build_checkpoint, load_mentornet, save_checkpoint
    from mentor_training.checkpoint import read_checkpoint

    mentor = load_mentornet("mentornet_pd")
    with torch.no_grad():  # h = tanh(large) = 1 for every sample and z = sum(w2 + beta) = -40: weight ~ 0
        mentor.fc1_bias.fill_(50.0)
        mentor.fc2_weight.fill_(-1.0)
        mentor.fc2_beta.fill_(-1.0)
    shipped = read_checkpoint(pretrained_path("mentornet_pd"))
    path = tmp_path / "zero.pt"
    save_checkpoint(build_checkpoint(mentor, source={"type": "test"}, feature_spec=shipped["feature_spec"],
                                     student_defaults={"burn_in_epoch": 0}, metrics={}), path)
    result = CliRunner().invoke(cli.cli, ["train-student", "--dataset", "digits", "--studentnet", "mlp", "--noise",
                                          "0.4", "--epochs", "2", "--mentornet", str(path), "--out",
                                          str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and "epoch 1: the MentorNet's mean weight is 0.0000" in warnings[0]
    assert "barely trains" in warnings[0]
