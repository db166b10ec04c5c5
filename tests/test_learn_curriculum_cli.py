"""``python cli.py learn-curriculum`` through click's CliRunner: dumps and outputs it refuses before fitting
(user review: a dump epoch past 99, a dump too small to hold rows out, an --out that is no .pt file)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import cli
from conftest import assert_one_line_error
from mentor_training.learn import MIN_DUMP_ROWS


def invoke(*args):
    return CliRunner().invoke(cli.cli, ["learn-curriculum", *map(str, args)])


def write_dump(path, rows: int, *, epoch: int = 18):
    """``rows`` samples of the 2018 space-separated format, every third one corrupted."""
    path.write_text("".join(f"{i} {epoch} {i % 10} {(i % 10) if i % 3 else (i + 1) % 10} {(i % 7) * 0.5:.3f}\n"
                            for i in range(rows)))
    return path


@pytest.mark.parametrize("epoch", [100, 180, -1])
def test_a_dump_epoch_outside_0_99_is_refused_naming_the_line(tmp_path, epoch):
    dump = write_dump(tmp_path / "dump.txt", 30)
    dump.write_text(dump.read_text() + f"99 {epoch} 1 2 0.5\n")
    out = tmp_path / "m.pt"
    result = invoke("--dump", dump, "--out", out)
    assert_one_line_error(result, "line 31", f"epoch {epoch} is outside 0..99")
    assert result.exit_code == 2
    assert not out.exists()


def test_epochs_0_and_99_are_accepted(tmp_path):
    dump = write_dump(tmp_path / "dump.txt", 30, epoch=99)
    dump.write_text(dump.read_text() + "100 0 1 2 0.5\n")
    out = tmp_path / "m.pt"
    result = invoke("--dump", dump, "--steps", "20", "--out", out)
    assert result.exit_code == 0, result.output
    assert torch.load(out, weights_only=True)["source"]["num_rows"] == 31


@pytest.mark.parametrize("rows", [2, 3, MIN_DUMP_ROWS - 1])
def test_a_dump_too_small_to_fit_and_hold_out_is_refused(tmp_path, rows):
    dump = write_dump(tmp_path / "dump.txt", rows)
    out = tmp_path / "m.pt"
    result = invoke("--dump", dump, "--out", out)
    assert_one_line_error(result, f"holds {rows} distinct samples", f"needs at least {MIN_DUMP_ROWS}")
    assert result.exit_code == 2
    assert not out.exists()


def test_a_dump_of_the_minimum_size_fits(tmp_path):
    out = tmp_path / "m.pt"
    result = invoke("--dump", write_dump(tmp_path / "dump.txt", MIN_DUMP_ROWS), "--steps", "20", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"dump: {MIN_DUMP_ROWS} samples" in result.output and "held-out (4 rows" in result.output


def test_duplicate_ids_do_not_count_towards_the_minimum(tmp_path):
    dump = write_dump(tmp_path / "dump.txt", MIN_DUMP_ROWS - 1)
    dump.write_text(dump.read_text() * 2)  # twice the lines, the same samples
    assert_one_line_error(invoke("--dump", dump, "--out", tmp_path / "m.pt"),
                          f"holds {MIN_DUMP_ROWS - 1} distinct samples")


@pytest.mark.parametrize("name", ["x.txt", "x", "x.pt2", "x.pth"])
@pytest.mark.parametrize("source", ["curriculum", "dump"])
def test_out_must_be_a_pt_checkpoint(tmp_path, name, source):
    args = ["--curriculum", "self_paced"] if source == "curriculum" else ["--dump", write_dump(tmp_path / "d.txt", 30)]
    result = invoke(*args, "--out", tmp_path / name)
    assert_one_line_error(result, f"--out {tmp_path / name} must end in .pt")
    assert result.exit_code == 2
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("args, fragment", [
    (["--learning-rate", "inf"], "--learning-rate must be a finite number > 0"),  # review: failed after the fit began
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--seed", "99999999999999999999"], "--seed"),  # review: "Overflow when unpacking long long"
])
def test_bad_numbers_are_refused_before_the_fit(tmp_path, args, fragment):
    out = tmp_path / "m.pt"
    result = invoke("--curriculum", "baseline", "--steps", "5", *args, "--out", out)
    assert_one_line_error(result, fragment)
    assert result.exit_code == 2 and "fitting MentorNet" not in result.output and not out.exists()


def test_a_checkpoint_given_as_a_dump_and_a_dump_given_as_a_checkpoint_say_what_they_are(tmp_path):
    """Review: a dump given to `show` was called corrupt (the text hint was only for text not starting with a digit)."""
    dump = write_dump(tmp_path / "dump.txt", 30)
    for command in (["show", dump], ["plot", "--mentornet", dump, "--out", tmp_path / "x.png"]):
        result = CliRunner().invoke(cli.cli, list(map(str, command)))
        assert_one_line_error(result, "is a text file, not a checkpoint")


def test_seed_and_learning_rate_are_checked_in_python_too(tmp_path):
    from mentor_training.learn import plan_learning

    with pytest.raises(ValueError, match="--seed must lie in 0"):
        plan_learning(curriculum="baseline", out=tmp_path / "m.pt", seed=-1)
    with pytest.raises(ValueError, match="finite number > 0"):
        plan_learning(curriculum="baseline", out=tmp_path / "m.pt", learning_rate=float("inf"))
