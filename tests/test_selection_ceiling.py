"""benchmarks/selection_ceiling.py: the trusted images plus an oracle's or the student's own choice of noisy-set
samples, on digits for a few epochs."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import selection_ceiling  # noqa: E402
from student_training.config import StudentConfig  # noqa: E402
from student_training.data import load_dataset  # noqa: E402
from student_training.noise import make_noisy_labels  # noqa: E402
from student_training.trainer import prepare_run, train  # noqa: E402


def test_rows_add_what_their_rule_says_and_the_table_is_written(tmp_path, capsys):
    out = tmp_path / "ceiling"
    frame = selection_ceiling.main(["--dataset", "digits", "--subset", "0", "--epochs", "4", "--seeds", "0",
                                    "--settings", "symmetric:0.6", "--out", str(out)])
    rows = frame.set_index("row")
    assert list(rows.index) == list(selection_ceiling.ROWS)
    # the oracle rows: every noisy-set sample whose noisy label is the true one, counted here independently
    data = load_dataset("digits", clean_subset_fraction=0.1, seed=0)
    noisy = make_noisy_labels(data.train_labels, noise_type="symmetric", rate=0.6, num_classes=10, seed=0,
                              dataset="digits").noisy_labels
    right = int((torch.as_tensor(noisy)[data.train_indices] == data.train_labels[data.train_indices]).sum())
    assert rows.loc["oracle_right", "added"] == right
    assert rows.loc["oracle_right", "precision"] == 1.0 and rows.loc["oracle_easy", "precision"] == 1.0
    # two numbers computed apart: the agreement row's right labels are exactly the oracle_easy row
    agreement = rows.loc["agreement"]
    assert round(agreement["precision"] * agreement["added"]) == rows.loc["oracle_easy", "added"] > 0
    # the agreement rows train on noisy labels, so their precision is below the oracle's at 60% noise
    assert rows.loc["agreement", "precision"] < 1.0
    assert frame["test_accuracy"].between(0, 1).all() and frame["val_accuracy"].between(0, 1).all()
    assert (out / "results.csv").is_file()
    text = (out / "results.md").read_text()
    assert "| symmetric 0.6 | oracle_right | 1 |" in text and text in capsys.readouterr().out
    assert pd.read_csv(out / "results.csv").shape[0] == len(selection_ceiling.ROWS)


@pytest.mark.filterwarnings("ignore:best.pt is chosen on a validation split")  # digits' clean subset is small
@pytest.mark.parametrize("student, batch", [("mlp", 128), ("small_cnn", 64)])  # small_cnn: weight decay 5e-4
def test_its_clean_only_student_is_train_students_clean_subset_run(tmp_path, student, batch):
    """The loop is train-student's for the student's recipe: the same trusted images, batches, initialisation,
    schedule and weight decay."""
    frame = selection_ceiling.main(["--dataset", "digits", "--subset", "0", "--epochs", "3", "--seeds", "1",
                                    "--settings", "symmetric:0.4", "--studentnet", student, "--batch-size",
                                    str(batch), "--out", str(tmp_path / "ceiling")])
    ours = frame.set_index("row").loc["clean_only"]
    run = prepare_run(StudentConfig(dataset="digits", studentnet=student, noise=0.4, epochs=3, seed=1,
                                    batch_size=batch, clean_subset_fraction=0.1, train_on="clean_subset",
                                    mentornet="none", record_samples=False), tmp_path / "run")
    row = train(run)[-1]
    assert (ours["test_accuracy"], ours["val_accuracy"]) == (row["test_accuracy"], row["val_accuracy"])


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="Error: --settings are TYPE:RATE"):
        selection_ceiling.main(["--settings", "symmetric", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("options, message", [
    (["--settings", "symmetric:0.4,bogus:0.2"], "unknown noise type 'bogus'"),
    (["--settings", "symmetric:1.5"], "noise rate must lie in"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--clean-subset-fraction", "0"], "needs a clean subset"),
    (["--seeds", "0,-1"], "--seeds must be integers >= 0"),
    (["--studentnet", "resnet101"], "scaled by the sample weights"),
    (["--clean-subset-fraction", "0.001"], "leaves 1 verified training image and 0 validation images"),
])
def test_every_setting_is_checked_before_anything_trains(tmp_path, monkeypatch, options, message):
    def no_training(*_, **__):
        raise AssertionError("trained before every setting was checked")

    monkeypatch.setattr(selection_ceiling, "one_setting", no_training)
    with pytest.raises(SystemExit, match=message):
        selection_ceiling.main(["--dataset", "digits", "--subset", "0", "--out", str(tmp_path / "x"), *options])
    assert not (tmp_path / "x").exists()
