"""Using a trained student (issue #16): load_student, evaluate, find-label-issues, export, and the bad inputs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import cli
from student_training.callbacks import Callback
from student_training.config import StudentConfig
from student_training.inference import StudentClassifier, load_student
from student_training.label_issues import (SCORES, label_issue_scores, parse_top, precision_recall_at,
                                           rank_label_issues, ranking_auc)
from student_training.loader import per_image_standardize
from student_training.models import create_student
from student_training.noise import load_noisy_labels
from student_training.trainer import prepare_run, train
from conftest import assert_one_line_error

EPOCHS = 3


def invoke(*args):
    return CliRunner().invoke(cli.cli, [str(a) for a in args], catch_exceptions=False)


class EpochLosses(Callback):
    """An independent record, for the oracle: every noisy training sample's eval loss after each epoch."""

    name = "test_epoch_losses"

    def __init__(self):
        self.losses = []

    @torch.no_grad()
    def on_epoch_end(self, run, epoch, row):
        network = run.model.eval()
        images = per_image_standardize(run.data.train_images[run.data.train_indices].float())
        labels = run.noise.noisy_labels[run.data.train_indices]
        self.losses.append(F.cross_entropy(network(images), labels, reduction="none").numpy())
        network.train()


def _train(folder: Path, mentornet: str) -> EpochLosses:
    record = EpochLosses()
    config = StudentConfig(dataset="digits", studentnet="mlp", noise=0.4, epochs=EPOCHS, batch_size=64,
                           mentornet=mentornet, seed=1)
    train(prepare_run(config, folder, callbacks=(record,)))
    return record


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A MentorNet run and a plain cross-entropy run on the bundled digits, with each epoch's losses."""
    root = tmp_path_factory.mktemp("use_student")
    torch.set_num_threads(1)
    return {"pd": (root / "pd", _train(root / "pd", "mentornet_pd")),
            "none": (root / "none", _train(root / "none", "none"))}


@pytest.fixture
def run(runs):
    return runs["pd"][0]


def _digits_test():
    data = np.load(Path(cli.__file__).parent / "student_training" / "data_files" / "digits.npz")
    images = np.round(data["images"].astype(np.float64) * (255 / 16)).astype(np.uint8)[:, None]
    return torch.from_numpy(images[data["is_test"]]), torch.from_numpy(data["labels"][data["is_test"]])


def _reference_logits(checkpoint: Path, images: torch.Tensor) -> torch.Tensor:
    """Logits computed without the code under test: the network rebuilt by hand from the state dict."""
    state = torch.load(checkpoint, weights_only=True)
    network = create_student("mlp", num_classes=10, in_channels=1, image_size=8)
    network.load_state_dict(state["model"])
    with torch.no_grad():
        return network.eval()(per_image_standardize(images.float()))


def _trained(run: Path) -> np.ndarray:
    """The run's training samples (digits has no subset, so their ids are pool indices): the pool less the
    validation hold-out, in the order the oracle recorded them."""
    return torch.load(run / "last.pt", weights_only=True)["callbacks"]["sample_record"]["positions"].numpy()


def _by_sample(run: Path, values: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """``values`` (one per training sample, in training order) in the order of ``frame``'s sample ids."""
    row_of = {int(sample): row for row, sample in enumerate(_trained(run))}
    return values[[row_of[int(sample)] for sample in frame["sample_id"]]]


def _accuracy_line(output: str) -> tuple[float, int, int]:
    line = next(line for line in output.splitlines() if "top-1 accuracy" in line)
    accuracy = float(line.split("top-1 accuracy ")[1].split()[0])
    correct, total = line.rsplit("(", 1)[1].rstrip(")").split("/")
    return accuracy, int(correct), int(total)


# --------------------------------------------------------------------------------------- load_student


def test_load_student_rebuilds_the_network_from_the_checkpoint_alone(run, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    model, config = load_student(run)
    assert calls and all(call.get("weights_only") is True for call in calls)
    assert isinstance(model, StudentClassifier) and not model.training and not model.network.training
    assert model.image_shape == (1, 8, 8) and model.class_names == tuple("0123456789")
    assert config == StudentConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    best = torch.load(run / "best.pt", weights_only=True)
    assert model.checkpoint.which == "best" and model.checkpoint.epoch == best["epoch"]
    images, _ = _digits_test()
    torch.testing.assert_close(model(images), _reference_logits(run / "best.pt", images), rtol=0, atol=0)


def test_load_student_reads_last_or_a_checkpoint_file(run):
    last, _ = load_student(run, which="last")
    assert last.checkpoint.epoch == EPOCHS and last.checkpoint.finished
    from_file, _ = load_student(run / "last.pt")
    images, _ = _digits_test()
    torch.testing.assert_close(from_file(images), last(images), rtol=0, atol=0)
    with pytest.raises(ValueError, match="which must be one of best, last"):
        load_student(run, which="final")


def test_a_run_killed_after_its_last_metrics_row_but_before_last_pt_is_not_called_finished(run, tmp_path):
    """Report: evaluate counted metrics.csv's rows, which an epoch writes before best.pt and last.pt."""
    copy = tmp_path / "killed"
    shutil.copytree(run, copy)
    for name, epoch in (("last.pt", EPOCHS - 1), ("best.pt", EPOCHS)):  # the last epoch improved: best.pt is new
        state = torch.load(copy / name, weights_only=True)
        state["epoch"] = epoch  # last.pt still at the epoch before; metrics.csv and best.pt already hold the last
        torch.save(state, copy / name)
    assert len(pd.read_csv(copy / "metrics.csv")) == EPOCHS
    model, _ = load_student(copy)
    assert model.checkpoint.epoch == EPOCHS and model.checkpoint.epochs_done == EPOCHS - 1
    assert model.checkpoint.finished is False
    result = invoke("evaluate", "--run", str(copy))
    assert result.exit_code == 0 and f"the run is unfinished: {EPOCHS - 1} of {EPOCHS} epochs planned" in result.output
    assert load_student(run)[0].checkpoint.finished is True  # the run itself is finished, whichever file is read
    state = torch.load(run / "last.pt", weights_only=True)  # a last.pt in torch's legacy format (no memory map)
    torch.save(state, copy / "last.pt", _use_new_zipfile_serialization=False)
    assert load_student(copy)[0].checkpoint.epochs_done == EPOCHS


def test_load_student_refuses_pickled_code_and_old_formats(run, tmp_path):
    state = torch.load(run / "best.pt", weights_only=True)
    state["payload"] = Path("x")  # any object that is not plain data
    torch.save(state, tmp_path / "best.pt")
    with pytest.raises(ValueError, match="objects other than plain data"):
        load_student(tmp_path / "best.pt")
    old = torch.load(run / "best.pt", weights_only=True)
    del old["student"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="no 'student'"):
        load_student(tmp_path / "old.pt")


# ------------------------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("which", ["best", "last"])
def test_evaluate_equals_the_runs_test_accuracy(run, which):
    metrics = pd.read_csv(run / "metrics.csv")
    epoch = torch.load(run / f"{which}.pt", weights_only=True)["epoch"]
    expected = metrics.loc[metrics["epoch"] == epoch, "test_accuracy"].item()
    result = invoke("evaluate", "--run", run, "--checkpoint", which)
    assert result.exit_code == 0, result.output
    accuracy, correct, total = _accuracy_line(result.output)
    assert total == 359 and correct == round(expected * total) and accuracy == pytest.approx(expected, abs=5e-5)
    assert f"({which}, epoch {epoch}) (the run is finished: {EPOCHS} of {EPOCHS} epochs)" in result.output


def test_predictions_csv_and_per_class_accuracy(run, tmp_path):
    path = tmp_path / "predictions.csv"
    result = invoke("evaluate", "--run", run, "--per-class", "--predictions", path)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["sample_id", "label", "prediction", "confidence"]
    images, labels = _digits_test()
    probabilities = torch.softmax(_reference_logits(run / "best.pt", images), dim=1)
    np.testing.assert_array_equal(frame["sample_id"], np.arange(len(labels)))
    np.testing.assert_array_equal(frame["label"], labels.numpy())
    np.testing.assert_array_equal(frame["prediction"], probabilities.argmax(1).numpy())
    np.testing.assert_allclose(frame["confidence"], probabilities.max(1).values.numpy(), atol=1e-6)
    rows = [line.split() for line in result.output.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert len(rows) == 10, result.output
    for cls, name, count, correct, accuracy in rows:
        mine = frame[frame["label"] == int(cls)]
        assert int(count) == len(mine) and int(correct) == int((mine["prediction"] == mine["label"]).sum())
        assert float(accuracy) == pytest.approx(float((mine["prediction"] == mine["label"]).mean()), abs=5e-5)


def test_evaluate_against_a_noise_file_scores_the_training_images(run):
    result = invoke("evaluate", "--run", run, "--checkpoint", "last", "--noise-file", run / "noisy_labels.npz")
    assert result.exit_code == 0, result.output
    noise = load_noisy_labels(run / "noisy_labels.npz")
    data = np.load(Path(cli.__file__).parent / "student_training" / "data_files" / "digits.npz")
    train_images = np.round(data["images"].astype(np.float64) * (255 / 16)).astype(np.uint8)[~data["is_test"], None]
    predicted = _reference_logits(run / "last.pt", torch.from_numpy(train_images)).argmax(1)
    accuracy, correct, total = _accuracy_line(result.output)
    assert total == len(noise.noisy_labels) and correct == int((predicted == noise.noisy_labels).sum())
    true = float((predicted == noise.clean_labels).float().mean())
    assert f"against the true labels: top-1 accuracy {true:.4f}" in result.output


# ---------------------------------------------------------------------------------- find-label-issues


def test_find_label_issues_ranks_by_the_mean_loss_and_reports_precision_and_recall(runs, tmp_path):
    run, record = runs["pd"]
    out = tmp_path / "issues.csv"
    result = invoke("find-label-issues", "--run", run, "--out", out, "--top", "10%")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["sample_id", "given_label", "predicted_label", "score"]
    noise = load_noisy_labels(run / "noisy_labels.npz")
    count = len(_trained(run))
    assert count < len(noise.noisy_labels) and sorted(frame["sample_id"]) == sorted(_trained(run))
    expected = np.mean(record.losses, axis=0)  # the oracle: losses recorded independently every epoch
    np.testing.assert_allclose(frame["score"], _by_sample(run, expected, frame), atol=2e-6)
    assert (np.diff(frame["score"]) <= 0).all()
    np.testing.assert_array_equal(frame["given_label"], noise.noisy_labels[frame["sample_id"]].numpy())
    predicted = _reference_logits(run / "last.pt", _train_images())[frame["sample_id"]].argmax(1)
    np.testing.assert_array_equal(frame["predicted_label"], predicted.numpy())
    wrong = (noise.noisy_labels != noise.clean_labels).numpy()[frame["sample_id"]]
    k = round(0.1 * count)
    found = int(wrong[:k].sum())
    assert (f"top {k}: precision {found / k:.4f} ({found} of {k} labels are corrupted), recall "
            f"{found / wrong.sum():.4f} ({found} of {int(wrong.sum())} corrupted labels)") in result.output
    assert "from MentorNet weights and losses over 3 epochs" in result.output


def _train_images() -> torch.Tensor:
    data = np.load(Path(cli.__file__).parent / "student_training" / "data_files" / "digits.npz")
    images = np.round(data["images"].astype(np.float64) * (255 / 16)).astype(np.uint8)[~data["is_test"], None]
    return torch.from_numpy(images)


def test_final_loss_score_is_the_last_students_loss(run, tmp_path):
    assert invoke("find-label-issues", "--run", run, "--score", "final_loss", "--out", tmp_path / "f.csv").exit_code == 0
    frame = pd.read_csv(tmp_path / "f.csv")
    noise = load_noisy_labels(run / "noisy_labels.npz")
    losses = F.cross_entropy(_reference_logits(run / "last.pt", _train_images()), noise.noisy_labels,
                             reduction="none").numpy()
    np.testing.assert_allclose(frame["score"], losses[frame["sample_id"]], atol=2e-6)


def test_a_baseline_run_is_ranked_from_losses_alone(runs, tmp_path):
    run, record = runs["none"]
    result = invoke("find-label-issues", "--run", run)
    assert result.exit_code == 0, result.output
    assert "losses alone (the run recorded no MentorNet weights)" in result.output
    frame = pd.read_csv(run / "label_issues.csv")
    np.testing.assert_allclose(frame["score"], _by_sample(run, np.mean(record.losses, axis=0), frame), atol=2e-6)
    refused = invoke("find-label-issues", "--run", run, "--score", "mean_weight", "--out", tmp_path / "w.csv")
    assert_one_line_error(refused, "without a MentorNet")
    assert refused.exit_code == 2 and not (tmp_path / "w.csv").exists()


def test_ranking_function_on_hand_made_inputs():
    losses = np.array([[0.1, 2.0, 0.5, 3.0, 0.2], [0.3, 1.0, 0.5, 0.0, 0.2]])
    weights = np.array([[1.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.5, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(label_issue_scores(losses), [0.2, 1.5, 0.5, 1.5, 0.2])
    np.testing.assert_allclose(label_issue_scores(losses, score="final_loss"), [0.3, 1.0, 0.5, 0.0, 0.2])
    np.testing.assert_allclose(label_issue_scores(losses, weights, score="mean_weight"), [0, 0.75, 0.5, 0.5, 0])
    np.testing.assert_allclose(label_issue_scores(losses, weights, score="final_weight"), [0, 0.5, 1, 0, 0])
    ranked = rank_label_issues(losses, weights, given_labels=[0, 1, 2, 3, 4], predicted_labels=[0, 2, 2, 1, 4],
                               sample_ids=[10, 11, 12, 13, 14])
    assert list(ranked["sample_id"]) == [11, 13, 12, 10, 14]  # ties keep sample order
    assert list(ranked["given_label"]) == [1, 3, 2, 0, 4] and list(ranked["predicted_label"]) == [2, 1, 2, 0, 4]
    assert list(rank_label_issues(losses[0], given_labels=[0] * 5)["sample_id"]) == [3, 1, 2, 4, 0]
    assert precision_recall_at([True, False, True, False, False], 2) == (0.5, 0.5)
    assert precision_recall_at([True, True, False, False, True], 3) == (2 / 3, 2 / 3)
    assert ranking_auc([3.0, 2.0, 1.0, 0.0], [True, False, True, False]) == pytest.approx(0.75)
    assert parse_top("20%", 10) == 2 and parse_top("7", 10) == 7
    np.testing.assert_allclose(label_issue_scores(losses, score="early_loss", until=1), losses[0])
    assert set(SCORES) == {"mean_loss", "early_loss", "mean_weight", "final_loss", "final_weight"}


@pytest.mark.parametrize("call, message", [
    (lambda: label_issue_scores([[1.0, float("nan")]]), "NaN"),
    (lambda: label_issue_scores([1.0, 2.0], [0.5], score="mean_weight"), "weights have shape"),
    (lambda: label_issue_scores([1.0, 2.0], [0.5, 1.5], score="final_weight"), r"\[0, 1\]"),
    (lambda: label_issue_scores([1.0], score="mean_weight"), "needs MentorNet weights"),
    (lambda: label_issue_scores([1.0], score="median"), "unknown score 'median'"),
    (lambda: rank_label_issues([1.0, 2.0], given_labels=[0]), "given_labels must be 2 integers"),
    (lambda: parse_top("0", 10), "between 1 and 10"),
    (lambda: parse_top("lots", 10), "percentage like 20%"),
    (lambda: precision_recall_at([True], 2), "k must lie in 1..1"),
])
def test_ranking_functions_name_the_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------------- export


def test_export_runs_in_plain_torch_with_the_same_logits(run, tmp_path):
    out = tmp_path / "student.pt2"
    result = invoke("export", "--run", run, "--out", out)
    assert result.exit_code == 0, result.output
    model, _ = load_student(run)
    images, _ = _digits_test()
    torch.save({"images": images[:7]}, tmp_path / "input.pt")
    script = ("import sys, json, torch\n"
              "extra = {'student.json': ''}\n"
              "program = torch.export.load('student.pt2', extra_files=extra)\n"
              "images = torch.load('input.pt', weights_only=True)['images']\n"
              "module = program.module()\n"
              "torch.save({'logits': module(images), 'one': module(images[:1])}, 'output.pt')\n"
              "mine = [m for m in sys.modules if m.split('.')[0] in "
              "('student_training', 'curricula', 'mentor_training', 'cli', 'visualize')]\n"
              "print(json.dumps({'toolkit_modules': mine, 'meta': json.loads(extra['student.json'])}))\n")
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["toolkit_modules"] == []
    assert report["meta"]["class_names"] == list("0123456789") and report["meta"]["image_shape"] == [1, 8, 8]
    output = torch.load(tmp_path / "output.pt", weights_only=True)
    with torch.no_grad():
        expected = model(images[:7])
    torch.testing.assert_close(output["logits"], expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(output["one"], expected[:1], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------- bad inputs


def _npz(path: Path, *, size: int = 8, classes: int = 10) -> str:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, size, size), dtype=np.uint8)
    labels = np.arange(20) % classes
    np.savez(path, train_images=images, train_labels=labels, test_images=images, test_labels=labels)
    return f"npz:{path}"


def _unfinished(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "unfinished"
    shutil.copytree(run, copy)
    payload = json.loads((copy / "config.json").read_text())
    payload["resolved"]["epochs"] = EPOCHS + 2  # as if it had been stopped after EPOCHS epochs
    (copy / "config.json").write_text(json.dumps(payload))
    return copy


def _without_record(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "old"
    shutil.copytree(run, copy)
    state = torch.load(copy / "last.pt", weights_only=True)
    del state["callbacks"]["sample_record"]
    torch.save(state, copy / "last.pt")
    return copy


def _without_best(run: Path, tmp_path: Path, *, validation: bool = False) -> Path:
    """A copy of ``run`` without best.pt: as a run with --validation-fraction 0 leaves it, or (``validation``) one
    that had a validation split and lost its best.pt."""
    copy = tmp_path / ("best_deleted" if validation else "no_validation")
    shutil.copytree(run, copy)
    (copy / "best.pt").unlink()
    if not validation:
        payload = json.loads((copy / "config.json").read_text())
        payload["resolved"]["validation"] = "none"
        (copy / "config.json").write_text(json.dumps(payload))
    return copy


@pytest.mark.parametrize("case", ["no checkpoint", "missing folder", "classes", "image shape", "predictions exist",
                                  "issues exist", "unfinished", "no record", "export exists", "export suffix",
                                  "no best.pt", "best.pt deleted", "noise file on the test split"])
def test_bad_input_is_one_line_exit_2_and_leaves_no_file(run, tmp_path, case):
    out = tmp_path / "out.csv"
    empty = tmp_path / "empty"
    empty.mkdir()
    if case in ("predictions exist", "issues exist", "export exists"):
        out = tmp_path / ("out.pt2" if case == "export exists" else "out.csv")
        out.write_text("keep me")
    args, *fragments = {
        "no checkpoint": (["evaluate", "--run", empty, "--predictions", out], "holds no finished checkpoint"),
        "missing folder": (["evaluate", "--run", tmp_path / "nope", "--predictions", out], "does not exist"),
        "classes": (["evaluate", "--run", run, "--dataset", _npz(tmp_path / "c.npz", classes=3), "--predictions", out],
                    "has 3 classes, the student 10"),
        "image shape": (["evaluate", "--run", run, "--dataset", _npz(tmp_path / "s.npz", size=16), "--predictions",
                         out], "images of shape 1x16x16"),
        "predictions exist": (["evaluate", "--run", run, "--predictions", out], "already exists"),
        "issues exist": (["find-label-issues", "--run", run, "--out", out], "already exists"),
        "unfinished": (["find-label-issues", "--run", _unfinished(run, tmp_path), "--out", out], "has not finished"),
        "no record": (["find-label-issues", "--run", _without_record(run, tmp_path), "--out", out],
                      "no per-sample record"),
        "export exists": (["export", "--run", run, "--out", out], "already exists"),
        "export suffix": (["export", "--run", run, "--out", tmp_path / "student.pt"], "must end in .pt2"),
        "no best.pt": (["evaluate", "--run", _without_best(run, tmp_path), "--predictions", out],
                       "keeps none; use its last.pt (--checkpoint last)"),
        # user review: a run that had a validation split was said to have had none
        "best.pt deleted": (["evaluate", "--run", _without_best(run, tmp_path, validation=True), "--predictions", out],
                            "the run chose it on a noisy hold-out", "(deleted or moved?); use its last.pt"),
        "noise file on the test split": (["evaluate", "--run", run, "--split", "test", "--noise-file",
                                          tmp_path / "labels.npy", "--predictions", out],
                                         "it cannot go with --split test"),
    }[case]
    result = invoke(*args)
    assert_one_line_error(result, *fragments)
    assert result.exit_code == 2
    if out.exists():
        assert out.read_text() == "keep me"
    assert not (tmp_path / "student.pt").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def test_each_new_command_explains_every_option():
    for name in ("evaluate", "find-label-issues", "export"):
        command = cli.cli.commands[name]
        text = invoke(name, "--help").output
        for param in command.params:
            if param.name == "help":
                continue
            assert param.opts[0] in text and param.help, (name, param.name)


def test_class_names_must_agree_where_both_sides_name_their_classes():
    from types import SimpleNamespace

    from student_training.inference import check_compatible

    network = create_student("mlp", num_classes=3, in_channels=1, image_size=8)
    named = StudentClassifier(network, class_names=["cat", "dog", "cow"], image_shape=(1, 8, 8))
    data = lambda names: SimpleNamespace(name="mine", train_images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8),  # noqa: E731
                                         num_classes=3, class_names=tuple(names))
    check_compatible(named, data(["cat", "dog", "cow"]))
    check_compatible(named, data(["0", "1", "2"]))  # a data set that does not name its classes
    with pytest.raises(ValueError, match="class 1: 'pig' vs 'dog'"):
        check_compatible(named, data(["cat", "pig", "cow"]))


def test_the_record_survives_a_kill_and_resume(tmp_path):
    root = Path(cli.__file__).parent
    args = ["train-student", "--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "3",
            "--batch-size", "64", "--mentornet", "mentornet_pd", "--seed", "2"]
    assert invoke(*args, "--out", tmp_path / "whole").exit_code == 0
    killed = subprocess.run([sys.executable, "cli.py", "--plugin", str(root / "tests" / "fault_injection.py"), *args,
                             "--out", str(tmp_path / "cut")], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "MENTORNET_KILL_AT_STEP": "30", "OMP_NUM_THREADS": "1"})
    assert killed.returncode == 137, killed.stderr  # one thread, as the in-process runs: the same float sums
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["callbacks"]["sample_record"]["epochs"] == 1
    assert invoke("train-student", "--out", tmp_path / "cut", "--resume").exit_code == 0
    whole, cut = (torch.load(tmp_path / name / "last.pt", weights_only=True)["callbacks"]["sample_record"]
                  for name in ("whole", "cut"))
    assert whole["epochs"] == cut["epochs"] == 3
    for key in ("positions", "sample_ids", "loss_sum", "weight_sum", "final_loss", "final_weight", "prediction"):
        torch.testing.assert_close(cut[key], whole[key], rtol=0, atol=0, msg=key)


def test_no_record_samples_skips_the_record_and_find_label_issues_says_so(tmp_path):
    args = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "1", "--batch-size", "64"]
    assert invoke("train-student", *args, "--no-record-samples", "--out", tmp_path / "r").exit_code == 0
    assert not torch.load(tmp_path / "r" / "last.pt", weights_only=True)["callbacks"]["sample_record"]
    result = invoke("find-label-issues", "--run", tmp_path / "r")
    assert_one_line_error(result, "--no-record-samples")
    assert result.exit_code == 2 and not (tmp_path / "r" / "label_issues.csv").exists()


def test_early_loss_averages_up_to_the_epoch_the_validation_split_chose(runs, tmp_path):
    run, record = runs["pd"]
    assert invoke("find-label-issues", "--run", run, "--score", "early_loss", "--out", tmp_path / "e.csv").exit_code == 0
    frame = pd.read_csv(tmp_path / "e.csv")
    chosen = torch.load(run / "best.pt", weights_only=True)["epoch"]  # the best validation accuracy's epoch
    expected = np.mean(record.losses[:chosen], axis=0)
    np.testing.assert_allclose(frame["score"], _by_sample(run, expected, frame), atol=2e-6)
    np.testing.assert_allclose(label_issue_scores(np.stack(record.losses), score="early_loss", until=chosen),
                               expected, atol=1e-12)
    with pytest.raises(ValueError, match="1..3"):
        label_issue_scores(np.stack(record.losses), score="early_loss", until=4)


def test_best_pt_of_a_finished_run_is_reported_finished_even_from_an_earlier_epoch(tmp_path):
    from student_training.inference import CheckpointInfo

    best = CheckpointInfo(path=tmp_path / "best.pt", which="best", epoch=2, run_epochs=4, epochs_done=4)
    assert best.finished is True
    assert CheckpointInfo(path=tmp_path / "best.pt", which="best", epoch=2, run_epochs=4, epochs_done=3).finished is False
    assert CheckpointInfo(path=tmp_path / "x.pt", which="file", epoch=2, run_epochs=None).finished is None


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path, command):
    """Report: evaluate --run README.md said the file 'holds objects other than plain data'."""
    text = tmp_path / "notes.md"
    text.write_text("# not a checkpoint\n")
    extra = ["--out", str(tmp_path / "s.pt2")] if command == "export" else []
    result = invoke(command, "--run", str(text), *extra)
    assert_one_line_error(result, f"{text} is not a checkpoint (not a file torch.save writes)")


def test_predict_names_the_image_shape_the_student_was_trained_on():
    """Report: 28 x 28 images given to a student of 8 x 8 digits gave 'mat1 and mat2 shapes cannot be multiplied'."""
    from student_training.inference import StudentClassifier, predict
    from student_training.models import create_student

    network = create_student("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    model = StudentClassifier(network, class_names=range(10), image_shape=(1, 8, 8))
    assert predict(model, torch.zeros(3, 1, 8, 8, dtype=torch.uint8)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"images must be N x 1 x 8 x 8 .*got shape \(2, 1, 28, 28\)"):
        predict(model, torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_an_npz_without_clean_labels_is_scored_against_the_labels_it_brings(run, tmp_path):
    """Report: evaluate --split train on an npz without clean_labels said 'against true labels'."""
    result = invoke("evaluate", "--run", run, "--dataset", _npz(tmp_path / "mine.npz"), "--split", "train")
    assert result.exit_code == 0, result.output
    assert "against the labels it brings" in result.output and "true labels" not in result.output


# --- a new user's review of evaluate, export, find-label-issues and plot --run ------------------------------

def test_find_label_issues_refuses_noisy_labels_from_another_run(runs, tmp_path):
    """Review: a noisy_labels.npz copied from another run was ranked against (exit 0, wrong precision and AUC)."""
    copy = tmp_path / "copy"
    shutil.copytree(runs["pd"][0], copy)
    noise = np.load(copy / "noisy_labels.npz")
    arrays = {key: noise[key] for key in noise.files}
    arrays["noisy_labels"] = np.roll(arrays["noisy_labels"], 1)
    np.savez(copy / "noisy_labels.npz", **arrays)
    result = invoke("find-label-issues", "--run", copy, "--out", tmp_path / "issues.csv")
    assert_one_line_error(result, "cannot rank its labels", "noisy_labels.npz is not the file last.pt recorded")
    assert not (tmp_path / "issues.csv").exists()
    (copy / "noisy_labels.npz").write_text("junk")  # review: a raw numpy message advising allow_pickle
    with pytest.raises(ValueError, match="noisy-label file .* is not an .npz archive"):
        load_noisy_labels(copy / "noisy_labels.npz")
    np.savez(copy / "noisy_labels.npz", noisy_labels=arrays["noisy_labels"])
    with pytest.raises(ValueError, match="is not one that train-student wrote"):
        load_noisy_labels(copy / "noisy_labels.npz")


def test_a_mentormix_run_records_the_mentornet_weights(tmp_path):
    """Review: a MentorMix run recorded no weights, and find-label-issues said the run had no MentorNet."""
    out = tmp_path / "mix"
    result = invoke("train-student", "--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "2",
                    "--mentornet", "mentornet_pd", "--mentormix", "--mixup-alpha", "2", "--out", out)
    assert result.exit_code == 0, result.output
    result = invoke("find-label-issues", "--run", out, "--score", "mean_weight", "--out", tmp_path / "issues.csv")
    assert result.exit_code == 0, result.output
    assert "MentorNet weights and losses" in result.output
    scores = pd.read_csv(tmp_path / "issues.csv")["score"]
    assert scores.between(0, 1).all() and scores.nunique() > 1  # one minus the mean weight, not a constant
    # review: --no-mentormix over its config.json failed on --mixup-alpha, an option the user did not type
    result = invoke("train-student", "--config", out / "config.json", "--no-mentormix", "--epochs", "1",
                    "--out", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert "--mixup-alpha none overrides 2" in result.output
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["config"]["mentormix"] is False
    # and on --resume, the option typed that may not change is named, not --mixup-alpha
    assert_one_line_error(invoke("train-student", "--out", out, "--resume", "--no-mentormix"),
                          "cannot resume", "--mentormix off (the run has on)")


def test_checkpoint_is_refused_with_a_checkpoint_file_it_does_not_name(run, tmp_path):
    """Review: export --run RUN/last.pt --checkpoint best exported last.pt (the option was ignored)."""
    for command in ("evaluate", "export"):
        extra = ["--out", tmp_path / "s.pt2"] if command == "export" else []
        result = invoke(command, "--run", run / "last.pt", "--checkpoint", "best", *extra)
        assert_one_line_error(result, "--checkpoint best (which='best') picks a file of a run folder")
    model, _ = load_student(run / "last.pt", which="last")  # naming the file it is: fine
    assert model.checkpoint.which == "last"


def test_the_classifier_takes_an_empty_batch_and_names_a_wrong_shape(run):
    """Review: N = 0 failed in a reshape; 9 x 9 images failed with 'mat1 and mat2 shapes cannot be multiplied'."""
    model, _ = load_student(run)
    assert model(torch.zeros(0, *model.image_shape, dtype=torch.uint8)).shape == (0, model.num_classes)
    with pytest.raises(ValueError, match=r"images must be N x 1 x 8 x 8"):
        model(torch.zeros(2, 1, 9, 9, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images must be N x 1 x 8 x 8"):
        model(torch.zeros(2, 8, 8, dtype=torch.uint8))


def test_evaluate_reports_progress_and_a_recorded_data_dir_that_is_not_there(run, tmp_path):
    from student_training.inference import evaluate_student, evaluation_data

    model, config = load_student(run)
    calls = []
    evaluate_student(model, evaluation_data(model, config), batch_size=100, progress=lambda *c: calls.append(c))
    assert calls[-1][0] == calls[-1][1] and len(calls) > 1
    moved = config.with_options({"dataset": "fashion-mnist", "data_dir": "no/such/folder"})
    with pytest.raises(ValueError, match="the run's own --data-dir no/such/folder, as recorded in its config.json"):
        evaluation_data(model, moved)


def test_plot_run_refuses_a_cell_that_is_not_a_number_and_notes_an_unfinished_run(run, tmp_path):
    """Review: a text cell in metrics.csv wrote the figure, then failed with "Unknown format code 'f'"."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    metrics = pd.read_csv(copy / "metrics.csv")
    metrics["test_accuracy"] = metrics["test_accuracy"].astype(object)
    metrics.loc[len(metrics) - 1, "test_accuracy"] = "oops"
    metrics.to_csv(copy / "metrics.csv", index=False)
    result = invoke("plot", "--run", copy, "--out", tmp_path / "curves.png")
    assert_one_line_error(result, f"line {len(metrics) + 1}: test_accuracy is 'oops', not a number")
    assert not (tmp_path / "curves.png").exists()
    metrics.drop(index=len(metrics) - 1).to_csv(copy / "metrics.csv", index=False)  # as a run stopped early
    result = invoke("plot", "--run", copy, "--out", tmp_path / "curves.png")
    assert result.exit_code == 0, result.output
    assert f"{EPOCHS - 1} epochs (unfinished: {EPOCHS} planned), last test accuracy" in result.output
