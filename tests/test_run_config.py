"""One typed run configuration: options declared once, --config, resume conflicts, callbacks, plots of
finished runs, npz data sets, packaging and exit codes."""

import dataclasses
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
from PIL import Image

import cli
from curricula.features import WeighterConfig
from curricula.files import TOOLKIT_VERSION
from curricula.options import flag_name, option_fields
from mentor_training import list_pretrained, load_mentornet
from student_training import data as data_module
from student_training.callbacks import Callback, register_callback
from student_training.config import StudentConfig, read_config_file, read_config_file_with_pins
from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
KILL_PLUGIN = str(ROOT / "tests" / "fault_injection.py")
QUICK = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "3", "--batch-size", "64",
         "--mentornet", "mentornet_pd"]


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


def train(*args):
    return invoke("train-student", *args)


def metrics(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "metrics.csv").drop(columns="seconds")


# ------------------------------------------------------------------------- one source of truth


def test_every_config_field_is_one_command_line_option_and_a_config_json_key(tmp_path):
    help_text = invoke("train-student", "--help").output
    fields = [f.name for f in option_fields(StudentConfig)] + [f.name for f in option_fields(WeighterConfig)]
    params = {p.name for p in cli.train_student.params}
    assert set(fields) <= params and params - set(fields) == {"config_file", "out_dir", "resume", "force"}
    for f in option_fields(StudentConfig):
        assert flag_name(f.name) in help_text, f.name
    assert train(*QUICK, "--epochs", "1", "--out", str(tmp_path / "r")).exit_code == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["format_version"] == 2
    assert set(saved["config"]) == {f.name for f in dataclasses.fields(StudentConfig)}
    for name in ("last.pt", "best.pt"):
        assert torch.load(tmp_path / "r" / name, weights_only=True)["config"] == saved["config"]


@pytest.mark.parametrize("name", list_pretrained())
def test_each_shipped_mentornet_carries_one_weighter_config(name):
    assert isinstance(load_mentornet(name).student_defaults, WeighterConfig)


@pytest.mark.parametrize("args, fragment", [
    (["--studentnet", "vgg"], "unknown student 'vgg'"),
    (["--noise-type", "flip"], "unknown noise type 'flip'"),
    (["--lr-schedule", "steps"], "unknown learning-rate schedule 'steps'"),
    (["--dataset", "mnist"], "unknown data set 'mnist'"),
    (["--mentornet", "no_such_mentor"], "neither a pretrained MentorNet"),
])
def test_names_are_checked_before_data_or_models_load(tmp_path, monkeypatch, args, fragment):
    def fail(*_, **__):
        raise AssertionError("data was loaded before the names were checked")

    monkeypatch.setattr("student_training.trainer.load_dataset", fail)
    result = train("--dataset", "cifar10", "--data-dir", str(tmp_path), *args, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, fragment)
    assert result.exit_code == 2 and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------ --config


def test_config_file_of_a_finished_run_reruns_it_exactly(tmp_path):
    assert train(*QUICK, "--seed", "4", "--loss-p-percentile", "0.6", "--out", str(tmp_path / "x")).exit_code == 0
    again = train("--config", str(tmp_path / "x" / "config.json"), "--out", str(tmp_path / "y"))
    assert again.exit_code == 0, again.output
    assert "overrides" not in again.output
    pd.testing.assert_frame_equal(metrics(tmp_path / "x"), metrics(tmp_path / "y"))
    a = torch.load(tmp_path / "x" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "y" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_command_line_options_override_the_config_file_and_are_reported(tmp_path):
    assert train(*QUICK, "--epochs", "1", "--out", str(tmp_path / "x")).exit_code == 0
    result = train("--config", str(tmp_path / "x" / "config.json"), "--seed", "7", "--burn-in-epoch", "3",
                   "--out", str(tmp_path / "y"))
    assert result.exit_code == 0, result.output
    assert f"--seed 7 overrides 0 from {tmp_path / 'x' / 'config.json'}" in result.output
    assert "--burn-in-epoch 3 overrides its default" in result.output
    saved = json.loads((tmp_path / "y" / "config.json").read_text())
    assert saved["config"]["seed"] == 7 and saved["config"]["weighter"] == {"burn_in_epoch": 3}
    assert saved["config"]["noise"] == 0.4 and saved["resolved"]["weighter"]["burn_in_epoch"] == 3


def test_max_steps_or_epochs_over_a_config_file_sets_the_run_length_and_says_so(tmp_path):
    """Report: --max-steps over a file's epochs was applied without a word (the file's epochs stayed in the
    config), and --epochs over a file with max_steps was silently overruled by it."""
    hand = tmp_path / "run.toml"
    hand.write_text('dataset = "digits"\nstudentnet = "mlp"\nepochs = 30\nbatch_size = 64\n')
    result = train("--config", str(hand), "--max-steps", "5", "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert f"--max-steps 5 sets the run's length in place of epochs = 30 from {hand}" in result.output
    assert "overrides none" not in result.output
    assert json.loads((tmp_path / "s" / "config.json").read_text())["resolved"]["total_steps"] == 5
    result = train("--config", str(tmp_path / "s" / "config.json"), "--epochs", "2", "--out", str(tmp_path / "e"))
    assert result.exit_code == 0, result.output
    assert "--epochs 2 overrides 30" in result.output and "overrides 5" not in result.output
    assert f"--epochs 2 sets the run's length in place of max_steps = 5 from {tmp_path / 's' / 'config.json'}" \
        in result.output
    assert len(metrics(tmp_path / "e")) == 2


def test_hand_written_toml_and_json_files_work_the_same(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('dataset = "digits"\nstudentnet = "mlp"\nnoise = 0.4\nepochs = 2\nbatch_size = 64\n'
                    'mentornet = "mentornet_pd"\n\n[weighter]\nloss_p_percentile = 0.6\n')
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"dataset": "digits", "studentnet": "mlp", "noise": 0.4, "epochs": 2,
                                   "batch_size": 64, "mentornet": "mentornet_pd",
                                   "weighter": {"loss_p_percentile": 0.6}}))
    assert read_config_file(toml) == read_config_file(as_json)
    for path, out in ((toml, "t"), (as_json, "j")):
        result = train("--config", str(path), "--out", str(tmp_path / out))
        assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(metrics(tmp_path / "t"), metrics(tmp_path / "j"))
    assert json.loads((tmp_path / "t" / "config.json").read_text())["resolved"]["weighter"]["loss_p_percentile"] == 0.6


@pytest.mark.parametrize("text, suffix, fragment", [
    ('dataset = "digits"\nepochz = 3\n', ".toml", "unknown option 'epochz'"),
    ('{"epochs": "ten"}', ".json", "option 'epochs'"),
    ('{"epochs": 3,', ".json", "is malformed"),
    ('dataset = \n', ".toml", "is malformed"),
    ('{"weighter": {"burn_in": 3}}', ".json", "unknown option 'burn_in'"),
    ('{"studentnet": "vgg"}', ".json", "unknown student 'vgg'"),
    ('[1, 2]', ".json", "table of options"),
    ('{}', ".yaml", "must end in .json or .toml"),
    # Report: a file's errors named command-line flags, and a weighting key at the top level was only "unknown"
    ('dataset = "digits"\n[weighter]\nloss_p_percentile = 0.5\n', ".toml",
     "[weighter] loss_p_percentile set the MentorNet weighting; mentornet is none"),
    ('{"dataset": "digits", "noise": 0.4, "noise_file": "x.npy"}', ".json",
     "noise_file gives the noisy labels; noise and noise_type would be ignored"),
    ('{"mentornet": "mentornet_pd", "loss_p_percentile": 0.5}', ".json",
     "'loss_p_percentile' is a weighting option: put it in the [weighter] table"),
])
def test_bad_config_files_are_one_line_usage_errors(tmp_path, text, suffix, fragment):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    result = train("--config", str(path), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, fragment)
    assert result.exit_code == 2 and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------ --resume


def test_resume_refuses_changed_options_and_names_each(tmp_path):
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, "train-student", *QUICK,
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "MENTORNET_KILL_AT_STEP": "30"})
    assert killed.returncode == 137
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    result = train("--out", str(out), "--resume", "--epochs", "5", "--lr", "0.5", "--mentornet", "self_paced_mentornet")
    assert_one_line_error(result, "--epochs 5 (the run has 3)", "--lr 0.5 (the run has 0.1)",
                          "--mentornet self_paced_mentornet (the run has mentornet_pd)", "--device")
    assert result.exit_code == 2
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    same = train("--out", str(out), "--resume", "--epochs", "3", "--device", "cpu")  # equal, and a safe option
    assert same.exit_code == 0, same.output
    assert "resuming at epoch 1" in same.output and len(pd.read_csv(out / "metrics.csv")) == 3


def test_resume_and_config_exclude_each_other(tmp_path):
    assert_one_line_error(train("--out", str(tmp_path), "--resume", "--config", "x.json"), "drop --config")


# ----------------------------------------------------------------------------------- callbacks


class Recorder(Callback):
    name = "recorder"

    def __init__(self):
        self.steps, self.epochs = 0, []

    def on_step(self, run, step):
        self.steps += 1

    def on_epoch_end(self, run, epoch, row):
        self.epochs.append((epoch, row["test_accuracy"]))

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_a_registered_callback_sees_every_step_and_epoch_and_its_state_is_saved(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr("student_training.callbacks._FACTORIES", [])
    register_callback(lambda run: made.append(Recorder()) or made[-1])
    assert train(*QUICK, "--out", str(tmp_path / "r")).exit_code == 0
    (recorder,) = made
    steps = int(pd.read_csv(tmp_path / "r" / "metrics.csv")["step"].iloc[-1])
    assert recorder.steps == steps and [e for e, _ in recorder.epochs] == [0, 1, 2]
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["callbacks"]["recorder"] == {"steps": steps}


def test_two_callbacks_with_one_name_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("student_training.callbacks._FACTORIES", [])
    register_callback(lambda run: Recorder())
    register_callback(lambda run: Recorder())
    assert_one_line_error(train(*QUICK, "--out", str(tmp_path / "r")), "share the name 'recorder'")


# ---------------------------------------------------------------------------------- plot --run


def test_plot_of_finished_runs_overlays_them_with_a_legend_from_their_configs(tmp_path):
    for mentor in ("none", "mentornet_pd"):
        assert train(*QUICK[:-2], "--mentornet", mentor, "--out", str(tmp_path / mentor)).exit_code == 0
    out = tmp_path / "curves.png"
    result = invoke("plot", "--run", str(tmp_path / "none"), "--run", str(tmp_path / "mentornet_pd"),
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "mentornet=none: 3 epochs, final test accuracy" in result.output
    assert "mentornet=mentornet_pd: 3 epochs" in result.output
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape == (720, 1000) and image.std() > 10
    for fmt in ("pdf", "svg"):
        assert invoke("plot", "--run", str(tmp_path / "none"), "--out", str(tmp_path / f"c.{fmt}")).exit_code == 0


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.mkdir(), "holds no metrics.csv"),
    (lambda p: None, "does not exist"),
])
def test_plot_of_a_folder_that_is_no_run_is_refused(tmp_path, make, fragment):
    make(tmp_path / "x")
    result = invoke("plot", "--run", str(tmp_path / "x"), "--out", str(tmp_path / "c.png"))
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "c.png").exists()


def test_plot_run_refuses_surface_options(tmp_path):
    assert_one_line_error(invoke("plot", "--run", str(tmp_path), "--curriculum", "self_paced", "--out",
                                 str(tmp_path / "c.png")), "drop --curriculum")


# ---------------------------------------------------------------------------------- npz:PATH


def _npz(path: Path, *, clean: bool, channels: bool = False):
    """The README's example of a user's own data set, with digits as the images."""
    bundle = np.load(data_module.DIGITS_FILE)
    images = (bundle["images"] * 15).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=3) if channels else images
    labels, test = bundle["labels"], bundle["is_test"]
    noisy = np.where(np.arange(len(labels)) % 5 == 0, (labels + 1) % 10, labels)
    extra = {"clean_labels": labels[~test]} if clean else {}
    np.savez(path, train_images=images[~test], train_labels=noisy[~test], test_images=images[test],
             test_labels=labels[test], **extra)


def test_own_npz_data_set_with_clean_labels_trains_on_its_noisy_labels(tmp_path):
    path = tmp_path / "mine.npz"
    _npz(path, clean=True, channels=True)
    result = train("--dataset", f"npz:{path}", "--studentnet", "mlp", "--epochs", "2", "--batch-size", "64",
                   "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "r" / "noisy_labels.npz") as labels:
        assert 0.15 < float(labels["noise_rate"]) < 0.25  # every fifth label moved
    assert "given noise from" in result.output
    assert pd.read_csv(tmp_path / "r" / "metrics.csv")["detector_auc"].notna().all()


def test_own_npz_data_set_without_clean_labels_takes_synthetic_noise(tmp_path):
    path = tmp_path / "mine.npz"
    _npz(path, clean=False)
    result = train("--dataset", f"npz:{path}", "--studentnet", "mlp", "--epochs", "1", "--noise", "0.2",
                   "--batch-size", "64", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "symmetric noise at nominal rate 0.2" in result.output


@pytest.mark.parametrize("arrays, fragment", [
    ({"train_images": np.zeros((4, 8, 8), np.float32)}, "must be uint8"),
    ({"train_images": np.zeros((4, 8, 6), np.uint8)}, "square images"),
    ({"train_labels": np.zeros(3, np.int64)}, "train_labels must be 4 integers"),
    ({"test_images": None}, "lacks test_images"),
])
def test_bad_npz_data_sets_are_one_line_errors(tmp_path, arrays, fragment):
    base = {"train_images": np.zeros((4, 8, 8), np.uint8), "train_labels": np.arange(4) % 2,
            "test_images": np.zeros((2, 8, 8), np.uint8), "test_labels": np.arange(2)}
    base.update(arrays)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in base.items() if v is not None})
    assert_one_line_error(train("--dataset", f"npz:{tmp_path / 'bad.npz'}", "--studentnet", "mlp",
                                "--out", str(tmp_path / "r")), fragment)


@pytest.mark.parametrize("write", [lambda path: path.write_text("train_images,train_labels\n"),
                                   lambda path: np.save(path.with_suffix(".npy"), np.zeros(3)) or
                                   path.with_suffix(".npy").rename(path)],
                         ids=["text", "one .npy array"])
def test_a_file_that_is_not_an_npz_archive_is_named_as_such(tmp_path, write):
    write(tmp_path / "bad.npz")
    assert_one_line_error(train("--dataset", f"npz:{tmp_path / 'bad.npz'}", "--studentnet", "mlp",
                                "--out", str(tmp_path / "r")), "is not an .npz archive (np.savez writes one)")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------- packaging, exit codes


def test_version_names_the_toolkit_and_torch():
    result = invoke("--version")
    assert result.exit_code == 0
    assert f"mentornet-toolkit {TOOLKIT_VERSION}" in result.output and f"torch {torch.__version__}" in result.output


def test_usage_errors_exit_2_and_failures_of_the_work_exit_1(tmp_path):
    assert invoke("train-student", "--noise", "2", "--out", str(tmp_path / "r")).exit_code == 2
    assert invoke("plot", "--curriculum", "focal_loss", "-p", "gamma=-1", "--out", str(tmp_path / "p.png")).exit_code == 2
    (tmp_path / "empty").mkdir()
    missing = train("--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert_one_line_error(missing, "cifar-10")
    assert missing.exit_code == 2  # refused before the work started
    diverged = train(*QUICK, "--lr", "1e7", "--out", str(tmp_path / "d"))
    assert diverged.exit_code == 1 and "training diverged" in diverged.output  # the work itself failed


def test_every_declared_dependency_is_imported_by_the_toolkit():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    requirements = [line.split(">")[0].split("=")[0].split("<")[0].strip()
                    for line in parser["options"]["install_requires"].strip().splitlines()]
    sources = "\n".join(path.read_text() for folder in ("curricula", "mentor_training", "student_training",
                                                         "visualize") for path in (ROOT / folder).glob("*.py"))
    sources += (ROOT / "cli.py").read_text()
    for name in requirements:
        assert f"import {name}" in sources or f"from {name}" in sources, name


# --------------------------------------------------------------------------- format-1 run folders


def _as_format_1(folder: Path) -> None:
    """Rewrite a killed format-2 run folder (trained without a validation split, as 0.1 was) exactly as
    toolkit 0.1 laid it out, checked against a real 0.1 run: config.json held the resolved weighting under
    config.weighter and no validation option; last.pt kept dump_done, relearn_rows, mentornet and
    best_accuracy (the best test accuracy) at its top level, and had no student, callbacks or files."""
    saved = json.loads((folder / "config.json").read_text())
    config = {**saved["config"], "weighter": saved["resolved"]["weighter"]}
    del config["validation_fraction"]
    (folder / "config.json").write_text(json.dumps({"config": config, "format_version": 1, "world_size": 1}))
    last = torch.load(folder / "last.pt", weights_only=True)
    del last["callbacks"], last["student"], last["best_validation"], last["best_epoch"], last["files"]
    best_test = pd.read_csv(folder / "metrics.csv")["test_accuracy"].max()
    last.update(format_version=1, config=config, dump_done=False, relearn_rows=[], mentornet=None,
                best_accuracy=float(best_test))
    torch.save(last, folder / "last.pt")


def test_a_run_folder_of_format_1_resumes_to_the_same_result(tmp_path):
    args = [*QUICK, "--epochs", "4", "--seed", "2", "--validation-fraction", "0"]
    assert train(*args, "--out", str(tmp_path / "whole")).exit_code == 0
    killed = subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, "train-student", *args,
                             "--out", str(tmp_path / "old")], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "MENTORNET_KILL_AT_STEP": "50"})
    assert killed.returncode == 137
    _as_format_1(tmp_path / "old")
    resumed = train("--out", str(tmp_path / "old"), "--resume")
    assert resumed.exit_code == 0, resumed.output
    pd.testing.assert_frame_equal(metrics(tmp_path / "whole"), metrics(tmp_path / "old"))
    assert invoke("plot", "--run", str(tmp_path / "old"), "--out", str(tmp_path / "c.png")).exit_code == 0


def test_the_readme_example_makes_an_npz_data_set_that_trains(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Five lines make one")[1].split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    result = train("--dataset", "npz:mine.npz", "--studentnet", "mlp", "--epochs", "1", "--batch-size", "64",
                   "--mentornet", "mentornet_pd", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "given noise from mine.npz: realised rate 0.2" in result.output


# ------------------------------------------------------------------------------- learning rate


def test_the_learning_rate_is_the_students_own_unless_given():
    assert StudentConfig(studentnet="preact_resnet18").recipe.lr == 0.02  # DivideMix's rate for this network
    assert StudentConfig(studentnet="mlp").recipe.lr == 0.1 and StudentConfig(studentnet="resnet101").recipe.lr == 0.1
    assert StudentConfig(studentnet="preact_resnet18", lr=0.05).recipe.lr == 0.05
    assert "0.02 for preact_resnet18" in invoke("train-student", "--help").output.replace("\n", " ").replace("  ", "")


def test_the_rate_reaches_the_optimiser_and_config_json_records_it(tmp_path):
    from student_training.trainer import learning_rate

    for given, expected in ((None, 0.1), ("0.05", 0.05)):
        out = tmp_path / f"run_{given}"
        result = train(*QUICK, "--epochs", "1", *(["--lr", given] if given else []), "--out", str(out))
        assert result.exit_code == 0, result.output
        assert f"lr {expected:g} (cosine)" in result.output
        saved = json.loads((out / "config.json").read_text())
        assert saved["config"]["lr"] == (expected if given else None) and saved["resolved"]["lr"] == expected
        row = pd.read_csv(out / "metrics.csv").iloc[-1]
        assert row["lr"] == pytest.approx(learning_rate(int(row["step"]) - 1, int(row["step"]), expected, "cosine"))
    from visualize.runs import read_runs

    labels = read_runs([tmp_path / "run_None", tmp_path / "run_0.05"]).groupby("folder")["run"].first()
    assert sorted(labels) == ["lr=0.05", "lr=0.1"]  # the legend names the default's number, not "none"


def test_a_run_keeps_the_rate_it_ran_at_when_the_default_moves(tmp_path, monkeypatch):
    """config.json's resolved lr pins a run left at the default: resuming it, or rerunning its config.json, keeps
    that rate; an old folder that recorded the number resumes under a config that leaves --lr to the default."""
    from student_training import models
    from student_training.trainer import resume_config

    out = tmp_path / "run"
    assert train(*QUICK, "--epochs", "1", "--out", str(out)).exit_code == 0
    fresh = StudentConfig(dataset="digits", studentnet="mlp", noise=0.4, epochs=1, batch_size=64,
                          mentornet="mentornet_pd")
    assert resume_config(out, fresh).recipe.lr == 0.1  # the same rate, whether written as None or 0.1
    assert read_config_file(out / "config.json").lr == 0.1
    monkeypatch.setitem(models._RECIPES, "mlp", dataclasses.replace(models._RECIPES["mlp"], lr=0.3))
    assert read_config_file(out / "config.json").lr == 0.1  # rerun: the rate it ran at, not today's default
    with pytest.raises(ValueError, match=r"--lr the student's default \(0.3\) \(the run has 0.1\)"):
        resume_config(out, fresh)
    assert resume_config(out, None).recipe.lr == 0.1  # the CLI's --resume: the run's own config


def test_a_run_keeps_its_weight_decay_schedule_and_augmentation_when_the_defaults_move(tmp_path, monkeypatch):
    """The other options whose default is the student's own (the data set's, for augmentation) are pinned as the
    learning rate is: config.json's resolved values, not today's defaults, decide a resume or a rerun."""
    from student_training import config as config_module, models
    from student_training.config import RECIPE_OPTIONS, describe_changes
    from student_training.trainer import resume_config

    assert set(RECIPE_OPTIONS) == {"lr", "lr_schedule", "weight_decay", "augment"}
    out = tmp_path / "run"
    assert train(*QUICK, "--epochs", "1", "--out", str(out)).exit_code == 0
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert (resolved["weight_decay"], resolved["lr_schedule"], resolved["augment"]) == (0.0, "cosine", False)
    fresh = StudentConfig(dataset="digits", studentnet="mlp", noise=0.4, epochs=1, batch_size=64,
                          mentornet="mentornet_pd")
    assert describe_changes(resume_config(out, None), fresh) == []  # the pinned values are today's defaults
    assert fresh.shown("weight_decay") == "the student's default (0)"
    assert fresh.shown("lr_schedule") == "the student's default (cosine)"
    assert fresh.shown("augment") == "the data set's default (off)"
    monkeypatch.setitem(models._RECIPES, "mlp", dataclasses.replace(models._RECIPES["mlp"], weight_decay=1e-3,
                                                                    lr_schedule="constant"))
    monkeypatch.setattr(config_module, "AUGMENTED_DATASETS", ("digits",))
    rerun = read_config_file(out / "config.json")
    assert (rerun.effective("weight_decay"), rerun.effective("lr_schedule"), rerun.effective("augment")) == \
        (0.0, "cosine", False)
    assert (fresh.effective("weight_decay"), fresh.effective("lr_schedule"), fresh.effective("augment")) == \
        (1e-3, "constant", True)
    with pytest.raises(ValueError) as refused:
        resume_config(out, fresh)
    for part in ("--lr-schedule the student's default (constant) (the run has cosine)",
                 "--weight-decay the student's default (0.001) (the run has 0)",
                 "--augment the data set's default (on) (the run has off)"):
        assert part in str(refused.value)
    assert resume_config(out, None).recipe.weight_decay == 0.0  # the CLI's --resume: the run's own config


def test_a_resolved_value_of_the_wrong_kind_pins_nothing():
    from student_training.config import recipe_pins, run_config_values

    payload = {"format_version": 2, "config": {"lr": None, "lr_schedule": "auto", "weight_decay": None,
                                                 "augment": None},
               "resolved": {"lr": True, "lr_schedule": "auto", "weight_decay": -1.0, "augment": "yes"}}
    values = run_config_values(payload, origin="config.json")
    assert (values["lr"], values["lr_schedule"], values["weight_decay"], values["augment"]) == \
        (None, "auto", None, None)
    payload["resolved"] = {"lr": float("nan"), "lr_schedule": "steps", "weight_decay": float("inf"), "augment": 1}
    assert recipe_pins(payload) == {}
    payload["config"]["weight_decay"] = 1e-3  # given: kept, whatever resolved says
    payload["resolved"] = {"lr": 0.05, "lr_schedule": "constant", "weight_decay": 0.0, "augment": True}
    assert recipe_pins(payload) == {"lr": 0.05, "lr_schedule": "constant", "augment": True}
    assert run_config_values(payload, origin="config.json")["weight_decay"] == 1e-3
    payload["config"]["weight_decay"] = None
    values = run_config_values(payload, origin="config.json")
    assert (values["lr"], values["lr_schedule"], values["weight_decay"], values["augment"]) == \
        (0.05, "constant", 0.0, True)


def test_a_config_rerun_that_changes_what_a_pinned_default_depends_on_takes_the_new_default(tmp_path):
    """--config of a run's config.json keeps the values its defaults stood for, unless an override changes what
    they depend on: then the new default holds, and the run says so."""
    out = tmp_path / "run"
    assert train(*QUICK, "--epochs", "1", "--out", str(out)).exit_code == 0
    base, pins = read_config_file_with_pins(out / "config.json")
    assert pins == {"lr": 0.1, "lr_schedule": "cosine", "weight_decay": 0.0, "augment": False}
    assert cli._overrides(base, {"studentnet": "small_cnn"}, pins) == {
        "studentnet": "small_cnn", "lr": None, "lr_schedule": "auto", "weight_decay": None}
    assert cli._overrides(base, {"dataset": "fashion-mnist"}, pins) == {"dataset": "fashion-mnist", "augment": None}
    assert cli._overrides(base, {"mentormix": True}, pins) == {"mentormix": True, "weight_decay": None}
    assert cli._overrides(base, {"studentnet": "mlp", "seed": 3}, pins) == {"studentnet": "mlp", "seed": 3}
    assert cli._overrides(base, {"studentnet": "small_cnn", "weight_decay": 0.0}, pins)["weight_decay"] == 0.0
    assert cli._overrides(base, {"studentnet": "small_cnn"}, {}) == {"studentnet": "small_cnn"}  # a hand-written file
    rerun = train("--config", str(out / "config.json"), "--studentnet", "small_cnn", "--out", str(tmp_path / "cnn"))
    assert rerun.exit_code == 0, rerun.output
    assert "--studentnet small_cnn overrides mlp" in rerun.output
    assert (f"--weight-decay follows --studentnet: the student's default (0.0005), where the run in "
            f"{out / 'config.json'} had 0" in rerun.output)
    assert rerun.output.index("--studentnet small_cnn overrides") < rerun.output.index("--weight-decay follows")
    resolved = json.loads((tmp_path / "cnn" / "config.json").read_text())["resolved"]
    assert resolved["weight_decay"] == 5e-4
    # without such a change, the run's values hold and nothing is said about them
    again = train("--config", str(out / "config.json"), "--seed", "3", "--out", str(tmp_path / "seed3"))
    assert again.exit_code == 0 and "weight-decay" not in again.output


def test_resuming_with_a_typed_default_that_the_run_pinned_is_no_change(tmp_path, monkeypatch):
    from student_training import models

    out = tmp_path / "run"
    assert train(*QUICK, "--epochs", "1", "--out", str(out)).exit_code == 0
    resumed = train("--out", str(out), "--resume", "--lr-schedule", "auto", "--lr", "0.1")
    assert resumed.exit_code == 0, resumed.output
    # a typed default means the student's own, which for a run is what it recorded, even after the default moved
    monkeypatch.setitem(models._RECIPES, "mlp", dataclasses.replace(models._RECIPES["mlp"], lr_schedule="constant"))
    resumed = train("--out", str(out), "--resume", "--lr-schedule", "auto")
    assert resumed.exit_code == 0, resumed.output
    refused = train("--out", str(out), "--resume", "--lr-schedule", "constant")
    assert refused.exit_code == 2 and "--lr-schedule constant (the run has cosine)" in refused.output


def test_mentormix_weight_decay_default_is_named_as_mentormixs_and_legends_skip_implied_differences():
    from visualize.runs import run_labels

    mix = StudentConfig(studentnet="small_cnn", mentormix=True, mentornet="mentornet_pd")
    assert mix.shown("weight_decay") == "MentorMix's default with second reweighting (0, as in the official code)"
    assert mix.with_options({"second_reweight": False}).shown("weight_decay") == "the student's default (0.0005)"
    pinned = [StudentConfig(studentnet=name, weight_decay=StudentConfig(studentnet=name).effective("weight_decay"),
                            lr=0.1, lr_schedule="cosine").applicable_options() for name in ("mlp", "small_cnn")]
    folders, defaults = [Path("a"), Path("b")], [{"lr", "lr_schedule", "weight_decay"}] * 2
    assert run_labels(folders, pinned, defaults) == ["studentnet=mlp", "studentnet=small_cnn"]  # 0 and 5e-4 follow
    # a weight decay typed for one of them is a difference worth naming
    assert run_labels(folders, pinned, [defaults[0], {"lr", "lr_schedule"}]) == [
        "studentnet=mlp, weight_decay=0", "studentnet=small_cnn, weight_decay=0.0005"]
    plain = StudentConfig(studentnet="small_cnn", mentornet="mentornet_pd", weight_decay=5e-4).applicable_options()
    with_mix = mix.with_options({"weight_decay": 0.0}).applicable_options()
    assert run_labels(folders, [plain, with_mix], [{"weight_decay"}] * 2) == ["mentormix=off", "mentormix=on"]
    same_student = [dict(pinned[0]), {**pinned[0], "weight_decay": 1e-3}]
    assert run_labels(folders, same_student, [{"weight_decay"}, set()]) == ["weight_decay=0", "weight_decay=0.001"]
