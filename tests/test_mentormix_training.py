"""train-student --mentormix end to end: outputs, weighting defaults, resume after a kill, bad input, the
README's MentorMix examples, and old run folders without the MentorMix columns."""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cli
from student_training import MENTORMIX_WEIGHTING, MentorMix
from student_training import models as models_module
from student_training.config import StudentConfig
from student_training.mentormix import OFFICIAL_SETTINGS, OFFICIAL_WEIGHT_DECAY
from student_training.models import TrainingRecipe
from student_training.trainer import MENTORMIX_COLUMNS, METRIC_COLUMNS, learning_rate
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
KILL_PLUGIN = str(ROOT / "tests" / "fault_injection.py")
QUICK = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "3", "--batch-size", "64"]
MIX = [*QUICK, "--mentornet", "mentornet_pd", "--mentormix"]


def train(*args):
    return CliRunner().invoke(cli.cli, ["train-student", *args], catch_exceptions=False)


def metrics(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "metrics.csv")


def printed_weighting(output: str) -> dict:
    (line,) = [line for line in output.splitlines() if line.startswith("weighting: ")]
    pairs = re.findall(r"(\w+)=([^,\s]+(?:,\d+)*)", line.removeprefix("weighting: ").split(" (")[0])
    return dict(pairs)


# ----------------------------------------------------------------------------------- end to end


def test_mentormix_and_plain_mixup_runs_log_what_mentormix_did(tmp_path):
    mixed = train(*MIX, "--mixup-alpha", "2", "--no-second-reweight", "--out", str(tmp_path / "mm"))
    assert mixed.exit_code == 0, mixed.output
    assert "mentormix: mixup alpha 2, second reweighting off" in mixed.output
    plain = train(*QUICK, "--mentornet", "baseline_mentornet", "--mentormix", "--mixup-alpha", "2",
                  "--no-second-reweight", "--out", str(tmp_path / "mixup"))
    assert plain.exit_code == 0, plain.output
    mm, mixup = metrics(tmp_path / "mm"), metrics(tmp_path / "mixup")
    for frame in (mm, mixup):
        assert list(frame.columns) == list(METRIC_COLUMNS) and frame["epoch"].tolist() == [1, 2, 3]
        assert frame["mixing_mean"].between(0, 1).all() and frame["partner_high_weight_share"].between(0, 1).all()
        assert (frame["mixed_loss"] > 0).all() and np.isfinite(frame["mixed_loss"]).all()
        assert frame["second_weight_mean"].isna().all()  # second reweighting off
        assert frame["test_accuracy"].between(0, 1).all()
    # plain mixup: every weight is (about) 1, so every partner has v >= 0.5 and every sample dominates its mix
    assert (mixup["partner_high_weight_share"] == 1.0).all() and (mixup["mixing_mean"] > 0.5).all()
    assert mixup["mean_weight"].min() > 0.999
    # MentorMix with mentornet_pd: low-weight samples appear after the burn-in, and they are dominated by their
    # partners; the same seed draws the same lambdas, so every m is at most plain mixup's max(lambda, 1 - lambda)
    assert (mm["partner_high_weight_share"].iloc[1:] < 1.0).all()
    assert (mm["mixing_mean"].iloc[1:] < mixup["mixing_mean"].iloc[1:] - 0.02).all()
    assert mm["detector_auc"].iloc[-1] > 0.7
    assert not np.allclose(mm["test_accuracy"], mixup["test_accuracy"])


def test_second_reweighting_logs_its_mean_weight_and_drops_weight_decay(tmp_path):
    out = tmp_path / "run"
    dump = tmp_path / "dump.csv"  # a data-driven dump works as without MentorMix
    result = train(*MIX, "--epochs", "2", "--studentnet", "small_cnn", "--clean-subset-fraction", "0.1",
                   "--dump", str(dump), "--dump-at-epoch", "18", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(dump)) == 144 and set(pd.read_csv(dump)["epoch"]) == {20}  # 10% of 1438; step 8 of 40
    assert "second reweighting on (no weight decay unless --weight-decay is given" in result.output
    assert "weight decay 0.0 (sgd)" in result.output  # small_cnn's own 5e-4 is dropped, as the official code does
    frame = metrics(out)
    assert frame["second_weight_mean"].between(0, 1).all() and frame["second_weight_mean"].notna().all()
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["weight_decay"] == 0.0
    assert resolved["mentormix"] == {"mixup_alpha": 8.0, "second_reweight": True, "weighting_defaults": "mentormix",
                                     "clean_pass_updates_bn": False}


def test_a_2018_run_has_the_mentormix_columns_as_nan(tmp_path):
    result = train(*QUICK, "--epochs", "1", "--mentornet", "mentornet_pd", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    frame = metrics(tmp_path / "r")
    assert list(frame.columns) == list(METRIC_COLUMNS) and frame[list(MENTORMIX_COLUMNS)].isna().all().all()
    assert "mentormix:" not in result.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["resolved"]["mentormix"] is None


# ------------------------------------------------------------------------------ weighting defaults


def test_mentormix_weighting_defaults_are_printed_recorded_and_overridable(tmp_path):
    result = train(*MIX, "--epochs", "1", "--out", str(tmp_path / "d"))
    assert result.exit_code == 0, result.output
    resolved = json.loads((tmp_path / "d" / "config.json").read_text())["resolved"]["weighter"]
    assert resolved == dataclasses.asdict(MENTORMIX_WEIGHTING)
    assert resolved["burn_in_epoch"] == 10 and resolved["example_dropout_rates"] == "0.0,100"  # not PD's 2018 ones
    assert printed_weighting(result.output) == {k: str(v) for k, v in resolved.items()}
    assert "--mentormix defaults, not mentornet_pd's student_defaults" in result.output

    given = train(*MIX, "--epochs", "1", "--loss-p-percentile", "0.6", "--example-dropout-rates", "0.5,100",
                  "--out", str(tmp_path / "o"))
    assert given.exit_code == 0, given.output
    resolved = json.loads((tmp_path / "o" / "config.json").read_text())["resolved"]["weighter"]
    assert resolved == {**dataclasses.asdict(MENTORMIX_WEIGHTING), "loss_p_percentile": 0.6,
                        "example_dropout_rates": "0.5,100"}
    assert printed_weighting(given.output) == {k: str(v) for k, v in resolved.items()}


def test_help_says_how_mentormix_picks_its_weighting():
    text = " ".join(CliRunner().invoke(cli.cli, ["train-student", "--help"]).output.split())
    assert "Weighting defaults are MentorMix's, not the MentorNet's student_defaults: p 0.7, decay 0.5, burn-in 10, " \
           "no example dropout" in text
    assert "Plain mixup: --mentornet baseline_mentornet" in text
    assert text.count("Default: the MentorNet's (with --mentormix: MentorMix's, see --mentormix).") == 6


def test_weight_decay_follows_the_official_code_unless_given():
    base = StudentConfig(studentnet="resnet32", mentornet="mentornet_pd", mentormix=True)
    assert base.recipe.weight_decay == 0.0  # second reweighting on by default: no regulariser
    assert dataclasses.replace(base, second_reweight=False).recipe.weight_decay == 5e-4  # the student's own
    assert dataclasses.replace(base, weight_decay=2e-4).recipe.weight_decay == 2e-4
    assert StudentConfig(studentnet="resnet32").recipe.weight_decay == 5e-4  # runs without MentorMix unchanged


def test_mentormix_2020_learning_rate_is_the_official_staircase():
    assert learning_rate(11718, 200000, 0.1, "mentormix_2020") == pytest.approx(0.1)
    assert learning_rate(11719, 200000, 0.1, "mentormix_2020") == pytest.approx(0.09)
    assert learning_rate(199999, 200000, 0.1, "mentormix_2020") == pytest.approx(0.1 * 0.9 ** 17)  # 0.0167
    assert learning_rate(1172, 20000, 0.1, "mentormix_2020") == pytest.approx(0.09)  # scaled to the run


# ------------------------------------------------------------------------------------- resume


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, "train-student", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_resume_after_a_kill_ends_like_an_uninterrupted_mentormix_run(tmp_path):
    args = [*MIX, "--epochs", "4", "--second-reweight", "--seed", "3"]
    whole = _cli(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed = _cli(*args, "--out", str(tmp_path / "cut"), env={"MENTORNET_KILL_AT_STEP": "50"})  # inside epoch 3
    assert killed.returncode == 137 and len(metrics(tmp_path / "cut")) == 2
    resumed = _cli("--out", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2" in resumed.stdout and "mentormix: mixup alpha 8" in resumed.stdout
    a, b = (metrics(tmp_path / name).drop(columns="seconds") for name in ("whole", "cut"))
    assert a[list(MENTORMIX_COLUMNS)].notna().all().all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    last_a, last_b = (torch.load(tmp_path / name / "last.pt", weights_only=True) for name in ("whole", "cut"))
    assert all(torch.equal(last_a["model"][k], last_b["model"][k]) for k in last_a["model"])
    assert last_a["callbacks"]["mentormix"]["generator"].equal(last_b["callbacks"]["mentormix"]["generator"])


def test_an_old_run_folder_without_the_mentormix_columns_plots_and_resumes(tmp_path):
    out = tmp_path / "old"
    args = [*QUICK, "--mentornet", "mentornet_pd"]
    killed = _cli(*args, "--out", str(out), env={"MENTORNET_KILL_AT_STEP": "30"})  # inside epoch 2
    assert killed.returncode == 137
    frame = metrics(out).drop(columns=list(MENTORMIX_COLUMNS))  # as written before MentorMix was integrated
    frame.to_csv(out / "metrics.csv", index=False)
    plot = CliRunner().invoke(cli.cli, ["plot", "--run", str(out), "--out", str(tmp_path / "c.png")])
    assert plot.exit_code == 0, plot.output
    resumed = train("--out", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.output
    after = metrics(out)
    assert list(after.columns) == list(METRIC_COLUMNS) and len(after) == 3
    assert after[list(MENTORMIX_COLUMNS)].isna().all().all()


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("args, fragment", [
    (["--mentornet", "none", "--mentormix"], "for plain mixup give --mentornet baseline_mentornet"),
    ([*MIX[len(QUICK):], "--mixup-alpha", "0"], "--mixup-alpha must be > 0"),
    ([*MIX[len(QUICK):], "--mixup-alpha", "-1"], "--mixup-alpha must be > 0"),
    (["--mentornet", "mentornet_pd", "--mixup-alpha", "2"], "--mixup-alpha applies only with --mentormix"),
    (["--mentornet", "mentornet_pd", "--second-reweight"], "--second-reweight applies only with --mentormix"),
    (["--mentornet", "mentornet_pd", "--no-second-reweight"], "--second-reweight applies only with --mentormix"),
    ([*MIX[len(QUICK):], "--clean-subset-fraction", "0.1", "--relearn-mentor", "30"], "drop --relearn-mentor"),
])
def test_bad_mentormix_input_is_a_one_line_usage_error(tmp_path, args, fragment):
    out = tmp_path / "run"
    result = train(*QUICK, *args, "--out", str(out))
    assert_one_line_error(result, fragment)
    assert result.exit_code == 2 and not out.exists()


def test_a_student_whose_input_cannot_be_mixed_is_refused(tmp_path, monkeypatch):
    def token_ids(*, num_classes, in_channels, image_size):  # e.g. an embedding model reading token ids
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    monkeypatch.setitem(models_module._REGISTRY, "token_ids", token_ids)
    monkeypatch.setitem(models_module._RECIPES, "token_ids", TrainingRecipe(mixable=False))
    out = tmp_path / "run"
    result = train(*MIX, "--studentnet", "token_ids", "--out", str(out))
    assert_one_line_error(result, "student 'token_ids' takes inputs that cannot be mixed")
    assert result.exit_code == 2 and not out.exists()


def test_mentormix_under_torchrun_is_refused_before_anything_starts(tmp_path, monkeypatch):
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    result = train(*MIX, "--out", str(out))
    assert_one_line_error(result, "--mentormix runs in one process", "2 torchrun processes")
    assert result.exit_code == 2 and not out.exists()


# ------------------------------------------------------------------------------------- README


def test_the_readme_mentormix_loop_trains_a_model():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("From any training loop, MentorMix is")[1].split("```python\n")[1].split("```")[0]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 10))
    before = [p.detach().clone() for p in model.parameters()]
    running_mean = model[2].running_mean.clone()
    namespace = {"model": model, "x": torch.randn(64, 1, 4, 4), "y": torch.randint(0, 10, (64,)), "step": 50,
                 "num_steps": 100, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    exec(compile(block, "README.md", "exec"), namespace)
    assert isinstance(namespace["mix"], MentorMix) and torch.isfinite(namespace["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not torch.equal(running_mean, model[2].running_mean)  # the mixed pass updated the BN statistics


def _readme_cifar_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("The official CIFAR runs")[1].split("```bash\n")[1].split("```")[0]
    text = block.replace("\\\n", " ")
    prefix = re.search(r'^MM="(.*?)"', text, re.M | re.S).group(1)
    return [shlex.split(line.replace("$MM", prefix)) for line in text.splitlines() if "$MM" in line]


def test_the_readme_cifar_commands_are_the_official_settings():
    commands = _readme_cifar_commands()
    assert len(commands) == 8
    seen = set()
    for argv in commands:
        assert argv[:3] == ["python", "cli.py", "train-student"]
        context = cli.train_student.make_context("train-student", argv[3:])
        options = {k: v for k, v in context.params.items() if k not in ("config_file", "out_dir", "resume", "force")}
        config = StudentConfig().with_options(options)
        alpha, p, second = OFFICIAL_SETTINGS[(config.dataset, config.noise)]
        seen.add((config.dataset, config.noise))
        assert (config.resolved_mixup_alpha, config.weighter_config(MENTORMIX_WEIGHTING).loss_p_percentile,
                config.resolved_second_reweight) == (alpha, p, second)
        assert config.recipe.weight_decay == (0.0 if second else OFFICIAL_WEIGHT_DECAY)
        assert (config.studentnet, config.mentornet, config.max_steps, config.batch_size, config.lr,
                config.recipe.lr_schedule) == ("resnet32", "mentornet_pd", 200000, 128, 0.1, "mentormix_2020")
    assert seen == set(OFFICIAL_SETTINGS)
