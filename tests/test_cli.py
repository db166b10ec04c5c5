"""The command line: help, learn-curriculum, list, show, and one-line errors that leave no file behind."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import cli
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--steps", "150", "--sample-size", "5000"]


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)



def test_help_from_the_repository_root_and_the_console_script():
    for args in ([sys.executable, "cli.py", "--help"], [sys.executable, "cli.py", "learn-curriculum", "--help"]):
        out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        assert "Usage:" in out
    script = shutil.which("mentornet", path=str(Path(sys.executable).parent)) or shutil.which("mentornet")
    if script is None:
        pytest.skip("the toolkit is not installed (pip install -e .), so there is no mentornet script")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "learn-curriculum" in out and "Usage: mentornet" in out


def test_learn_curriculum_writes_a_checkpoint_and_reports_held_out_error(tmp_path):
    out = tmp_path / "focal.pt"
    result = invoke("learn-curriculum", "--curriculum", "focal_loss", "-p", "gamma=3", "--out", str(out), *QUICK)
    assert result.exit_code == 0, result.output
    assert "held-out" in result.output and "mean abs error" in result.output
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["source"]["params"] == {"gamma": 3.0}
    assert checkpoint["metrics"]["recipe"]["steps"] == 150
    assert os.listdir(tmp_path) == ["focal.pt"]


def test_learn_from_a_dump(tmp_path):
    dump = tmp_path / "dump.txt"
    dump.write_text("".join(f"{i} 18 {i % 10} {(i % 10) if i % 3 else (i + 1) % 10} {(i % 7) * 0.5:.3f}\n"
                            for i in range(300)))
    out = tmp_path / "dd.pt"
    result = invoke("learn-curriculum", "--dump", str(dump), "--percentile", "0.75", "--out", str(out), "--steps", "50")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["source"]["type"] == "data_driven" and checkpoint["source"]["percentile"] == 0.75
    assert checkpoint["student_defaults"]["burn_in_epoch"] == 18
    assert checkpoint["feature_spec"]["loss_diff_reference"] == "percentile_of_dump"


@pytest.mark.parametrize("args, fragment", [
    (["--curriculum", "nope"], "unknown curriculum 'nope'"),
    (["--curriculum", "focal_loss", "-p", "gama=2"], "unknown parameter 'gama'"),
    (["--curriculum", "focal_loss", "-p", "gamma=0"], "gamma must be a finite number > 0"),
    (["--curriculum", "focal_loss", "-p", "gamma=-1"], "gamma must be a finite number > 0"),
    (["--curriculum", "spcl_linear", "-p", "gamma=0"], "non-zero"),
    (["--curriculum", "self_paced", "--dump", "x.txt"], "exactly one of"),
    ([], "exactly one of"),
])
def test_bad_curriculum_input_is_one_line_and_writes_nothing(tmp_path, args, fragment):
    out = tmp_path / "m.pt"
    assert_one_line_error(invoke("learn-curriculum", *args, "--out", str(out)), fragment)
    assert not out.exists()


def test_malformed_dump_is_one_line_naming_the_line(tmp_path):
    dump = tmp_path / "dump.txt"
    dump.write_text("1 18 2 2 0.1\n2 18 3 oops 0.2\n")
    out = tmp_path / "m.pt"
    assert_one_line_error(invoke("learn-curriculum", "--dump", str(dump), "--out", str(out)), "line 2")
    assert not out.exists()


def test_existing_out_needs_force(tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    assert_one_line_error(invoke("learn-curriculum", "--curriculum", "self_paced", "--out", str(out), *QUICK),
                          "already exists; pass --force")
    assert out.read_bytes() == b"keep me"
    assert invoke("learn-curriculum", "--curriculum", "self_paced", "--out", str(out), "--force", *QUICK).exit_code == 0
    assert torch.load(out, weights_only=True)["kind"] == "mentornet"


def test_missing_output_folder(tmp_path):
    assert_one_line_error(invoke("learn-curriculum", "--curriculum", "self_paced", "--out",
                                 str(tmp_path / "no" / "m.pt")), "does not exist")


def test_list_shows_curricula_parameters_and_pretrained():
    result = invoke("list")
    assert result.exit_code == 0
    assert "focal_loss" in result.output and "gamma=2.0" in result.output
    assert "first_threshold=18" in result.output
    assert "mentornet_pd" in result.output.split("Pretrained")[1]


def test_show_describes_a_pretrained_mentornet():
    result = invoke("show", "mentornet_pd")
    assert result.exit_code == 0 and '"name": "mentornet_pd"' in result.output
    assert "student_defaults_unused" not in result.output  # mentornet_pd uses loss_diff


def test_show_says_which_defaults_a_mentornet_without_loss_diff_does_not_use():
    """Report: show listed loss_p_percentile 0.7 among the defaults of a MentorNet fitted without loss_diff."""
    result = invoke("show", "mentornet_learned")
    shown = json.loads(result.output)
    assert shown["model_config"]["uses_loss_diff"] is False
    assert set(shown["student_defaults_unused"]) == {"loss_p_percentile", "loss_moving_average_decay"}


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(os.urandom(500)), "not a readable checkpoint"),
    (lambda p: torch.save({"kind": "mentornet", "format_version": 7}, p), "newer than this toolkit"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a MentorNet checkpoint"),
    (lambda p: torch.save({"kind": "mentornet", "format_version": 1, "x": Path("/")}, p), "refusing to load"),
])
def test_bad_checkpoints_are_one_line_errors(tmp_path, make, fragment):
    path = tmp_path / "bad.pt"
    make(path)
    assert_one_line_error(invoke("show", str(path)), fragment)


def test_show_checks_what_loading_checks(tmp_path):
    """Review: show printed a checkpoint whose weights do not fit the MentorNet (loading it fails), and a metrics
    entry that is not a dict gave "AttributeError: 'str' object has no attribute 'items'"."""
    from mentor_training.pretrained import pretrained_path

    checkpoint = torch.load(pretrained_path("mentornet_pd"), weights_only=True)
    bad_shape = dict(checkpoint, state_dict=dict(checkpoint["state_dict"]))
    name = next(iter(bad_shape["state_dict"]))
    bad_shape["state_dict"][name] = torch.zeros(3, 3)
    torch.save(bad_shape, tmp_path / "shape.pt")
    result = invoke("show", str(tmp_path / "shape.pt"))
    assert_one_line_error(result, "weights do not fit the MentorNet architecture", f"size mismatch for {name}")
    torch.save(dict(checkpoint, metrics="none"), tmp_path / "metrics.pt")
    assert_one_line_error(invoke("show", str(tmp_path / "metrics.pt")), "metrics must be a dict")
