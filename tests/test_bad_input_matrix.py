"""The bad-input matrix: every command against every kind of bad input, each case a command line in and one
``Error:`` line, an exit status and an unchanged folder out. README states how many cases there are.

Kinds: ``name`` (unknown names), ``value`` (out-of-range or malformed values), ``combination`` (options that
exclude or would ignore each other), ``file`` (missing, damaged, foreign or code-carrying input files),
``output`` (outputs that exist or cannot be written), ``scale`` (a value on the wrong scale).
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cli
from mentor_training.pretrained import pretrained_path
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["--dataset", "digits", "--studentnet", "mlp", "--epochs", "1"]


def _files(tmp: Path) -> dict:
    """Input files the cases refer to, made fresh in each case's folder."""
    (tmp / "exists.pt").write_bytes(b"keep me")
    (tmp / "exists.png").write_bytes(b"keep me")
    (tmp / "garbage.pt").write_bytes(b"\x00\x01 not a checkpoint")
    (tmp / "bad.json").write_text('{"epochs": 3,')
    (tmp / "unknown.toml").write_text("epochz = 3\n")
    (tmp / "dump.csv").write_text("sample_id,epoch,noisy_label,clean_label,loss\n1,18,2,2,0.1\n2,18,3,1,x\n")
    (tmp / "clean.csv").write_text("sample_id,epoch,noisy_label,clean_label,loss\n1,18,2,2,0.1\n2,18,3,3,0.5\n")
    np.save(tmp / "long.npy", np.zeros(50_000, dtype=np.int64))
    (tmp / "labels.txt").write_text("1 2 3\n")
    torch.save({"evil": Path("/")}, tmp / "evil.pt")
    checkpoint = torch.load(pretrained_path("mentornet_pd"), weights_only=True)
    checkpoint["state_dict"]["fc1_weight"][0, 0] = float("inf")
    torch.save(checkpoint, tmp / "inf.pt")
    (tmp / "notrun").mkdir()
    return {}


# (kind, command line, fragment of the error line, exit status)
CASES = [
    # learn-curriculum
    ("name", ["learn-curriculum", "--curriculum", "nope", "--out", "m.pt"], "unknown curriculum 'nope'", 2),
    ("name", ["learn-curriculum", "--curriculum", "focal_loss", "-p", "beta=2", "--out", "m.pt"], "unknown parameter", 2),
    ("value", ["learn-curriculum", "--curriculum", "focal_loss", "-p", "gamma=-1", "--out", "m.pt"], "gamma", 2),
    ("value", ["learn-curriculum", "--curriculum", "focal_loss", "-p", "gamma", "--out", "m.pt"], "key=value", 2),
    ("combination", ["learn-curriculum", "--curriculum", "focal_loss", "-p", "gamma=2", "-p", "gamma=3", "--out",
                     "m.pt"], "given twice", 2),
    ("combination", ["learn-curriculum", "--curriculum", "self_paced", "--dump", "dump.csv", "--out", "m.pt"],
     "exactly one of", 2),
    ("combination", ["learn-curriculum", "--curriculum", "self_paced", "--percentile", "0.9", "--out", "m.pt"],
     "--percentile applies to --dump", 2),
    ("scale", ["learn-curriculum", "--dump", "clean.csv", "--percentile", "90", "--out", "m.pt"], "did you mean 0.9", 2),
    ("file", ["learn-curriculum", "--dump", "missing.csv", "--out", "m.pt"], "does not exist", 2),
    ("file", ["learn-curriculum", "--dump", "dump.csv", "--out", "m.pt"], "line 3", 2),
    ("file", ["learn-curriculum", "--dump", "clean.csv", "--out", "m.pt"], "only clean samples", 2),
    ("output", ["learn-curriculum", "--curriculum", "self_paced", "--out", "exists.pt"], "already exists", 2),
    ("output", ["learn-curriculum", "--curriculum", "self_paced", "--out", "nowhere/m.pt"], "does not exist", 2),
    ("output", ["learn-curriculum", "--curriculum", "self_paced", "--out", "notrun"], "is a directory", 2),
    # plot
    ("name", ["plot", "--curriculum", "nope", "--out", "p.png"], "unknown curriculum", 2),
    ("name", ["plot", "--mentornet", "nope", "--out", "p.png"], "neither a pretrained MentorNet", 2),
    ("value", ["plot", "--curriculum", "self_paced", "--epochs", "5,200", "--out", "p.png"], "epoch", 2),
    ("value", ["plot", "--curriculum", "self_paced", "--loss-range", "5,1", "--out", "p.png"], "loss", 2),
    ("value", ["plot", "--curriculum", "self_paced", "--width", "90000", "--out", "p.png"], "too large to draw", 2),
    ("combination", ["plot", "--curriculum", "self_paced", "--mentornet", "mentornet_pd", "--out", "p.png"],
     "exactly one of", 2),
    ("combination", ["plot", "--mentornet", "mentornet_pd", "-p", "gamma=2", "--out", "p.png"], "fixed when", 2),
    ("combination", ["plot", "--curriculum", "self_paced", "--compare", "--out", "p.png"], "--compare needs", 2),
    ("combination", ["plot", "--run", "notrun", "--curriculum", "self_paced", "--out", "p.png"], "drop --curriculum", 2),
    ("file", ["plot", "--mentornet", "garbage.pt", "--out", "p.png"], "not a readable checkpoint", 2),
    ("file", ["plot", "--mentornet", "evil.pt", "--out", "p.png"], "refusing to load", 2),
    ("file", ["plot", "--run", "notrun", "--out", "p.png"], "holds no metrics.csv", 2),
    ("output", ["plot", "--curriculum", "self_paced", "--out", "exists.png"], "already exists", 2),
    ("output", ["plot", "--curriculum", "self_paced", "--out", "p.bmp"], "unsupported extension", 2),
    # train-student
    ("name", ["train-student", *DIGITS, "--studentnet", "vgg", "--out", "r"], "unknown student", 2),
    ("name", ["train-student", *DIGITS, "--dataset", "mnist", "--out", "r"], "unknown data set", 2),
    ("name", ["train-student", *DIGITS, "--noise", "0.2", "--noise-type", "flip", "--out", "r"], "unknown noise type", 2),
    ("name", ["train-student", *DIGITS, "--lr-schedule", "steps", "--out", "r"], "unknown learning-rate schedule", 2),
    ("name", ["train-student", *DIGITS, "--mentornet", "nope", "--out", "r"], "neither a pretrained MentorNet", 2),
    # --mentornet learn and the clean subset it learns from
    ("value", ["train-student", *DIGITS, "--noise", "0.4", "--mentornet", "learn", "--clean-subset-fraction", "0.05",
               "--learn-epochs", "50", "--out", "r"], "use --clean-subset-fraction", 2),
    ("value", ["train-student", *DIGITS[:-2], "--noise", "0.4", "--mentornet", "learn", "--clean-subset-fraction",
               "0.3", "--max-steps", "10", "--learn-epochs", "95", "--out", "r"], "run at least 20 steps", 2),
    ("combination", ["train-student", *DIGITS, "--noise", "0.4", "--mentornet", "learn", "--out", "r"],
     "needs a clean subset", 2),
    ("combination", ["train-student", *DIGITS, "--mentornet", "mentornet_pd", "--learn-window", "3", "--out", "r"],
     "applies only with --mentornet learn", 2),
    ("value", ["train-student", *DIGITS, "--noise", "0.4", "--mentornet", "learn", "--clean-subset-fraction", "0.3",
               "--learn-precision", "98", "--out", "r"], "--learn-precision must lie in (0, 1)", 2),
    ("combination", ["train-student", *DIGITS, "--noise", "0.4", "--mentornet", "learn", "--clean-subset-fraction",
                     "0.3", "--learn-weights", "soft", "--learn-precision", "0.9", "--out", "r"], "drop --learn-precision", 2),
    ("file", ["train-student", *DIGITS, "--noise", "0.4", "--mentornet", "learn", "--clean-subset-file", "dump.csv",
              "--out", "r"], "must start with the header sample_id,label", 2),
    ("value", ["train-student", *DIGITS, "--noise", "1.5", "--out", "r"], "noise rate must lie in [0, 1]", 2),
    ("value", ["train-student", *DIGITS, "--epochs", "0", "--out", "r"], "--epochs must be >= 1", 2),
    ("value", ["train-student", *DIGITS, "--lr", "-1", "--out", "r"], "--lr must be a finite number > 0", 2),
    ("value", ["train-student", *DIGITS, "--mentornet", "mentornet_pd", "--example-dropout-rates", "0.5,90",
               "--out", "r"], "sum to 90", 2),
    ("value", ["train-student", *DIGITS, "--validation-fraction", "1.2", "--out", "r"], "--validation-fraction", 2),
    ("scale", ["train-student", *DIGITS, "--mentornet", "mentornet_pd", "--loss-p-percentile", "70", "--out", "r"],
     "did you mean 0.7", 2),
    ("scale", ["train-student", *DIGITS, "--clean-subset-fraction", "0.2", "--mentornet", "mentornet_pd",
               "--relearn-mentor", "30", "--relearn-percentile", "90", "--out", "r"], "did you mean 0.9", 2),
    ("combination", ["train-student", *DIGITS, "--noise-file", "long.npy", "--noise", "0.2", "--out", "r"],
     "would be ignored", 2),
    ("combination", ["train-student", *DIGITS, "--noise-type", "pairflip", "--out", "r"], "needs a noise rate", 2),
    ("combination", ["train-student", *DIGITS, "--burn-in-epoch", "3", "--out", "r"], "--mentornet is none", 2),
    ("combination", ["train-student", *DIGITS, "--dump", "d.csv", "--dump-at-epoch", "18", "--out", "r"],
     "needs a clean subset", 2),
    ("combination", ["train-student", *DIGITS, "--download", "--out", "r"], "--download does not apply", 2),
    ("combination", ["train-student", *DIGITS, "--out", "r", "--resume", "--force"], "exclude each other", 2),
    ("combination", ["train-student", *DIGITS, "--sync-bn", "--out", "r"], "--sync-bn", 2),
    ("file", ["train-student", *DIGITS, "--noise-file", "long.npy", "--out", "r"], "holds 50000 labels", 2),
    ("file", ["train-student", *DIGITS, "--noise-file", "labels.txt", "--out", "r"], "must end in .npy", 2),
    ("file", ["train-student", *DIGITS, "--noise-file", "evil.pt", "--out", "r"], "holds objects other than plain", 2),
    ("file", ["train-student", *DIGITS, "--mentornet", "inf.pt", "--out", "r"], "NaN or infinite", 2),
    ("file", ["train-student", *DIGITS, "--mentornet", "garbage.pt", "--out", "r"], "not a readable checkpoint", 2),
    ("file", ["train-student", "--config", "bad.json", "--out", "r"], "is malformed", 2),
    ("file", ["train-student", "--config", "unknown.toml", "--out", "r"], "unknown option 'epochz'", 2),
    ("file", ["train-student", "--out", "notrun", "--resume"], "cannot resume", 2),
    ("file", ["train-student", "--dataset", "npz:missing.npz", "--out", "r"], "does not exist", 2),
    ("output", ["train-student", *DIGITS, "--out", "exists.pt"], "is a file", 2),
    ("output", ["train-student", *DIGITS, "--out", "nowhere/r"], "does not exist", 2),
    ("output", ["train-student", *DIGITS, "--clean-subset-fraction", "0.2", "--dump", "exists.pt", "--dump-at-epoch",
                "18", "--out", "r"], "already exists", 2),
    # evaluate, find-label-issues, export (a trained run's cases are in test_use_student.py)
    ("file", ["evaluate", "--run", "notrun"], "holds no finished checkpoint", 2),
    ("file", ["evaluate", "--run", "missing"], "does not exist", 2),
    ("value", ["evaluate", "--run", "notrun", "--split", "nope"], "'--split'", 2),
    ("file", ["find-label-issues", "--run", "notrun"], "config.json does not exist", 2),
    ("file", ["find-label-issues", "--run", "missing"], "is not a folder", 2),
    ("name", ["find-label-issues", "--run", "notrun", "--score", "nope"], "'--score'", 2),
    ("file", ["export", "--run", "notrun", "--out", "s.pt2"], "holds no finished checkpoint", 2),
    ("output", ["export", "--run", "notrun", "--out", "s.pt"], "must end in .pt2", 2),
    # show, list
    ("name", ["show", "nope"], "neither a pretrained MentorNet", 2),
    ("file", ["show", "garbage.pt"], "not a readable checkpoint", 2),
    ("file", ["show", "evil.pt"], "refusing to load", 2),
    ("file", ["--plugin", "missing.py", "list"], "does not exist", 2),
]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("kind, args, fragment, status", CASES, ids=[f"{c[1][0]}-{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input(tmp_path, monkeypatch, isolated_plugins, kind, args, fragment, status):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli.cli, args, catch_exceptions=False)
    assert_one_line_error(result, fragment)
    assert result.exit_code == status, result.output
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed, nothing left behind


def test_readme_states_the_number_of_cases():
    readme = (ROOT / "README.md").read_text()
    stated = re.search(r"bad-input matrix.*?(\d+) cases", readme, re.S)
    assert stated is not None and int(stated.group(1)) == len(CASES)
