"""train-student under torchrun (DDP, gloo on the CPU) against one process with the same global batch.

The `mlp` student has no BatchNorm, so two processes must reproduce one process: the same global
permutation, the all-gathered losses give the same percentile, moving average and example dropout, and
DDP's averaged gradients give the same update. Only the order in which the gradient all-reduce and the
per-shard matmuls add up floats differs. Tolerance: 1e-4 absolute on every loss, weight and AUC column
(measured: about 1e-6), and test accuracy within one test image (1/359 on digits; measured: equal).
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cli
from student_training.distributed import World, check_batch_size

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "3", "--batch-size", "64",
        "--mentornet", "mentornet_pd", "--seed", "1", "--device", "cpu"]
DIGITS_TEST_IMAGES = 359
ATOL = 1e-4


def torchrun(*args, nproc=2, env=None):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "cli.py", "--plugin", str(ROOT / "tests" / "fault_injection.py"), "train-student", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def invoke(*args):
    return CliRunner().invoke(cli.cli, ["train-student", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process straight through; two processes killed inside epoch 3 and resumed."""
    root = tmp_path_factory.mktemp("ddp")
    single = invoke(*ARGS, "--out", str(root / "one"))
    assert single.exit_code == 0, single.output
    killed = torchrun(*ARGS, "--out", str(root / "two"), env={"MENTORNET_KILL_AT_STEP": "50"})  # step 44..65
    assert killed.returncode != 0
    assert len(pd.read_csv(root / "two" / "metrics.csv")) == 2
    resumed = torchrun("--out", str(root / "two"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root, resumed


def test_two_processes_equal_one_with_the_same_global_batch(runs):
    root, resumed = runs
    assert "resuming at epoch 2" in resumed.stdout and "2 processes" in resumed.stdout
    assert resumed.stdout.count("final test accuracy") == 1  # rank 1 prints nothing
    one = pd.read_csv(root / "one" / "metrics.csv").drop(columns="seconds")
    two = pd.read_csv(root / "two" / "metrics.csv").drop(columns="seconds")
    assert list(one.columns) == list(two.columns) and len(one) == len(two) == 3
    pd.testing.assert_series_equal(one["step"], two["step"])
    exact_at_tolerance = one.columns.drop(["epoch", "step", "test_accuracy"])
    pd.testing.assert_frame_equal(one[exact_at_tolerance], two[exact_at_tolerance], check_exact=False, atol=ATOL,
                                  rtol=0)
    assert (one["test_accuracy"] - two["test_accuracy"]).abs().max() <= 1.0 / DIGITS_TEST_IMAGES + 1e-12
    state_one = torch.load(root / "one" / "last.pt", weights_only=True)
    state_two = torch.load(root / "two" / "last.pt", weights_only=True)
    assert state_two["world_size"] == 2 and set(state_one["model"]) == set(state_two["model"])  # no "module."
    for key, value in state_one["model"].items():
        torch.testing.assert_close(state_two["model"][key], value, atol=ATOL, rtol=0)


def test_resume_with_another_world_size_is_one_line_error(runs):
    root, _ = runs
    result = invoke("--out", str(root / "two"), "--resume")
    assert result.exit_code != 0
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and "mismatched resume across world sizes" in last and "Traceback" not in result.output


def test_world_size_that_does_not_divide_the_batch_is_refused(tmp_path):
    result = torchrun(*ARGS, "--batch-size", "63", "--out", str(tmp_path / "r"))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors and all("world size 2 does not divide the batch size 63" in line for line in errors)
    assert "[rank0]: Traceback" not in result.stderr and "[rank1]: Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_batch_check_and_shards():
    check_batch_size(128, World(rank=1, size=4))
    with pytest.raises(ValueError, match="world size 3 does not divide the batch size 128"):
        check_batch_size(128, World(rank=0, size=3))
    shards = [World(rank=r, size=4).shard(128) for r in range(4)]
    assert [(s.start, s.stop) for s in shards] == [(0, 32), (32, 64), (64, 96), (96, 128)]
