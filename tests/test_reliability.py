"""Reliability, kind by kind, as a user sees it: a command in; one line, an exit status and the files out.

1. data lost; 2. silent wrong results; 3. options silently ignored; 4. tracebacks; 5. failing late;
6. formats people really have. The regression cases from the review are marked with the report's example.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cli
from curricula.files import atomic_write
from mentor_training.pretrained import pretrained_path
from student_training.noise import make_noisy_labels
from student_training.run_folder import RunLock
from conftest import assert_one_line_error

pytestmark = pytest.mark.usefixtures("isolated_plugins")  # plugin curricula of a test stay in that test
ROOT = Path(__file__).resolve().parents[1]
KILL_PLUGIN = str(ROOT / "tests" / "fault_injection.py")
QUICK = ["--dataset", "digits", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "3", "--batch-size", "64"]


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


def train(*args):
    return invoke("train-student", *args)


def snapshot(folder: Path) -> dict:
    """Every file in ``folder`` (hidden ones too, but the lock a killed run left) with its bytes."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def _terminal_signals():
    """In the child: SIGHUP as a terminal session has it. Under nohup the test process ignores it, the child would
    inherit that, and cli.main rightly leaves an ignored SIGHUP ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def cli_process(*args, env=None):
    return subprocess.run([sys.executable, "cli.py", "--plugin", KILL_PLUGIN, *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})},
                          preexec_fn=_terminal_signals if hasattr(signal, "SIGHUP") else None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-epoch run on digits with mentornet_pd."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = train(*QUICK, "--mentornet", "mentornet_pd", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def killed(tmp_path):
    """A run killed inside its third epoch (two epochs saved)."""
    out = tmp_path / "killed"
    result = cli_process("train-student", *QUICK, "--mentornet", "mentornet_pd", "--out", str(out),
                         env={"MENTORNET_KILL_AT_STEP": "45"})
    assert result.returncode == 137
    return out


# ------------------------------------------------------------------------------- 1. data lost


def test_dump_does_not_overwrite_an_existing_file_without_force(tmp_path):
    """Report: train-student --dump FILE overwrote an unrelated file."""
    unrelated = tmp_path / "notes.csv"
    unrelated.write_text("my own notes\n")
    result = train(*QUICK, "--clean-subset-fraction", "0.2", "--dump", str(unrelated), "--dump-at-epoch", "18",
                   "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "notes.csv already exists; pass --force to overwrite it, or choose another --dump")
    assert "in Python" not in result.output  # Report: the CLI's message named the Python keyword
    assert result.exit_code == 2 and unrelated.read_text() == "my own notes\n" and not (tmp_path / "r").exists()


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    """Report: two runs on the same --out (one with --force) both exit 0 and mix the folder."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "cli.py", "train-student", *QUICK, "--epochs", "60", "--mentornet",
                              "mentornet_pd", "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.csv").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / ".lock").exists()
        second = train(*QUICK, "--mentornet", "self_paced_mentornet", "--out", str(out), "--force")
        assert_one_line_error(second, f"in use by process {first.pid}")
        config = (out / "config.json").read_text()
        assert "mentornet_pd" in config and "self_paced_mentornet" not in config
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_of_a_killed_run_is_taken_over(killed):
    assert (killed / ".lock").exists()  # SIGKILL left it behind
    holder = json.loads((killed / ".lock").read_text())
    assert holder["pid"] != os.getpid()
    resumed = train("--out", str(killed), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert not (killed / ".lock").exists() and len(pd.read_csv(killed / "metrics.csv")) == 3


def test_two_locks_on_one_folder_exclude_each_other(tmp_path):
    first = RunLock(tmp_path).acquire()
    with open(tmp_path / ".lock") as handle:
        holder = json.load(handle)
    holder["pid"] = 1  # init: alive on every machine
    (tmp_path / ".lock").write_text(json.dumps(holder))
    with pytest.raises(ValueError, match="in use by process 1"):
        RunLock(tmp_path).acquire()
    first.held = False


def test_temporary_files_of_a_killed_write_are_swept(killed):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    leftover = killed / f".last.pid{dead}.abc123.tmp.pt"
    leftover.write_bytes(b"half a checkpoint")
    assert train("--out", str(killed), "--resume").exit_code == 0
    assert not leftover.exists()
    assert not [p for p in killed.iterdir() if ".tmp" in p.name]


# --------------------------------------------------------------------- 2. silent wrong results


def test_a_mentornet_with_non_finite_weights_is_refused(tmp_path):
    checkpoint = torch.load(pretrained_path("mentornet_pd"), weights_only=True)
    checkpoint["state_dict"]["fc1_weight"][0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "nan.pt")
    result = train(*QUICK, "--mentornet", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "fc1_weight", "NaN or infinite")
    assert result.exit_code == 2 and not (tmp_path / "r").exists()


PLUGIN_NAN_LATE = '''
from dataclasses import dataclass
import torch
from curricula import register_curriculum

@register_curriculum("{name}")
@dataclass(frozen=True)
class Late:
    def weight(self, features):
        weights = torch.full_like(features.loss, 0.5)
        # wrong only for losses in [28.999, 29]: the 4,096-point probe misses it, the grid's 29 does not
        return torch.where(features.loss > 28.999, torch.full_like(weights, {bad}), weights)
'''


@pytest.mark.parametrize("bad", ["float('nan')", "1.5"])
def test_a_curriculum_wrong_only_where_the_probe_misses_is_caught_in_the_target_set(tmp_path, bad):
    name = f"late_{'nan' if 'nan' in bad else 'big'}"
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(PLUGIN_NAN_LATE.format(name=name, bad=bad))
    out = tmp_path / "m.pt"
    result = invoke("--plugin", str(plugin), "learn-curriculum", "--curriculum", name, "--out", str(out))
    assert_one_line_error(result, f"curriculum '{name}'", "at loss 29")
    assert result.exit_code == 2 and not out.exists()


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_epoch(tmp_path):
    """Report: --lr 1e6 ran on to the end and exited 0."""
    out = tmp_path / "r"
    result = train(*QUICK, "--lr", "1e6", "--out", str(out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: training diverged in epoch 1: the loss became nan")
    saved = pd.read_csv(out / "metrics.csv") if (out / "metrics.csv").exists() else pd.DataFrame()
    assert saved.empty or np.isfinite(saved["loss"]).all()
    # Report: the files of a run that saved no epoch stayed, and blocked the same command ("pass --resume", which
    # then found no last.pt): none is left, so a plain re-run starts over
    assert snapshot(out) == {}
    assert not out.exists()  # Report: the empty --out folder the diverged run made was left behind
    assert train(*QUICK, "--out", str(out)).exit_code == 0


def test_a_run_killed_before_its_first_epoch_names_only_force(tmp_path):
    """Report: a run SIGKILLed in its first epoch left config.json and noisy_labels.npz; the rerun said to pass
    --resume or --force, and --resume then failed with 'last.pt does not exist'."""
    out = tmp_path / "r"
    result = cli_process("train-student", *QUICK, "--out", str(out), env={"MENTORNET_KILL_AT_STEP": "10"})
    assert result.returncode == 137 and (out / "config.json").is_file() and not (out / "last.pt").exists()
    again = train(*QUICK, "--out", str(out))
    assert_one_line_error(again, f"{out} holds a run that saved no epoch", "nothing to resume; pass --force")
    assert "--resume" not in again.output
    resumed = train("--out", str(out), "--resume")
    assert_one_line_error(resumed, f"cannot resume: {out} holds no saved epoch", "start over with --force")
    assert train(*QUICK, "--epochs", "1", "--out", str(out), "--force").exit_code == 0


def test_a_hangup_before_the_first_epoch_unwinds_like_ctrl_c(tmp_path):
    """Report: closing the terminal (SIGHUP) in the first epoch left the run's files and its lock behind."""
    out = tmp_path / "r"
    result = cli_process("train-student", *QUICK, "--out", str(out), env={"MENTORNET_HANGUP_AT_STEP": "10"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "Interrupted before the first epoch was saved" in result.stderr
    assert not out.exists()


def test_a_closed_pipe_while_the_run_is_described_leaves_nothing(tmp_path, monkeypatch):
    """Report: `train-student ... | head -1` left config.json and noisy_labels.npz, which blocked the rerun."""
    def closed(run):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_describe_run", closed)
    out = tmp_path / "r"
    result = CliRunner().invoke(cli.cli, ["train-student", *QUICK, "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not out.exists()
    kept = tmp_path / "kept"  # a folder the user made, with a file of their own, stays with that file
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli.cli, ["train-student", *QUICK, "--out", str(kept)])
    assert result.exit_code == 1 and snapshot(kept) == {"notes.txt": b"mine"}


@pytest.mark.parametrize("args, fragment", [
    (["--subset", "10", "--clean-subset-fraction", "0.95"],
     "the clean subset (10 images, 0.95) and the validation split (0 images, 0) leave none of the 10 training images"),
    (["--subset", "20", "--validation-fraction", "0.95"],
     "1 training image left to train on, too few for a step that learns anything; lower --clean-subset-fraction"),
])
def test_fractions_that_leave_almost_no_training_images_say_so(tmp_path, args, fragment):
    """Report: the advice was to 'use --batch-size 0 or less'."""
    result = train(*QUICK, *args, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, fragment)
    assert "--batch-size" not in result.output and not (tmp_path / "r").exists()


def test_a_validation_split_too_small_to_choose_best_is_warned_about(tmp_path):
    """Report: best.pt was chosen on 3 images without a word."""
    result = train(*QUICK, "--epochs", "1", "--subset", "200", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert ("Warning: best.pt is chosen on a validation split of 20 images, where one image is 5 points of accuracy: "
            "the choice is mostly chance; raise --validation-fraction") in result.output
    result = train(*QUICK, "--epochs", "1", "--out", str(tmp_path / "whole"))  # 144 images: no warning
    assert result.exit_code == 0 and "Warning" not in result.output


def test_a_folder_given_as_the_noise_file_is_named_as_a_folder(tmp_path):
    """Report: --noise-file FOLDER said the folder 'does not exist'."""
    base = [a for a in QUICK if a not in ("--noise", "0.4")]
    result = train(*base, "--noise-file", str(tmp_path), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, f"noise file {tmp_path} is a folder; give the label file in it")


def test_a_noise_file_for_another_data_set_is_refused(tmp_path):
    """Report: 50,000 labels for a 1,438-image set were cut to fit."""
    np.save(tmp_path / "c10.npy", np.zeros(50_000, dtype=np.int64))
    result = train(*QUICK[:4], "--noise-file", str(tmp_path / "c10.npy"), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "holds 50000 labels, the training set has 1438")
    assert not (tmp_path / "r").exists()


def test_a_shipped_file_given_by_path_is_sha256_checked(tmp_path, monkeypatch):
    """Report: a pretrained file given by path skipped its sha256 check."""
    import pretrained
    import mentor_training.pretrained as resolver

    copy = tmp_path / "pretrained"
    copy.mkdir()
    for name in ("manifest.json", "mentornet_pd.pt"):
        (copy / name).write_bytes((pretrained.PRETRAINED_DIR / name).read_bytes())
    tampered = torch.load(copy / "mentornet_pd.pt", weights_only=True)
    tampered["state_dict"]["fc1_weight"] *= 2
    torch.save(tampered, copy / "mentornet_pd.pt")
    monkeypatch.setattr(resolver, "PRETRAINED_DIR", copy)
    monkeypatch.setattr(resolver, "MANIFEST_PATH", copy / "manifest.json")
    result = train(*QUICK, "--mentornet", str(copy / "mentornet_pd.pt"), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "fails its sha256 check")


@pytest.mark.parametrize("name", ["config.json", "noisy_labels.npz"])
def test_resume_refuses_files_changed_by_hand(killed, name):
    """Report: --resume continued on a hand-edited config.json or noisy_labels.npz."""
    path = killed / name
    if name == "config.json":
        payload = json.loads(path.read_text())
        payload["config"]["lr"] = 0.05
        path.write_text(json.dumps(payload))
    else:
        with np.load(path) as bundle:
            arrays = dict(bundle)
        arrays["noisy_labels"] = (arrays["noisy_labels"] + 1) % 10
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    before = snapshot(killed)
    result = train("--out", str(killed), "--resume")
    assert_one_line_error(result, f"{name} is not the file last.pt recorded", "changed after the run began")
    assert snapshot(killed) == before


def test_resume_refuses_a_missing_guarded_file_in_one_line(killed):
    """Report: a run folder without its noisy_labels.npz gave the OS's '[Errno 2] No such file or directory'."""
    (killed / "noisy_labels.npz").unlink()
    result = train("--out", str(killed), "--resume")
    assert_one_line_error(result, f"cannot resume: {killed / 'noisy_labels.npz'} is missing (last.pt recorded it)")


def test_force_leaves_nothing_of_the_earlier_run(tmp_path):
    """Report: --force kept the earlier run's learned MentorNets and label_issues.csv, and listed mentornets/ as
    written by the new run."""
    out = tmp_path / "r"
    (out / "mentornets").mkdir(parents=True)
    (out / "mentornets" / "epoch_05.pt").write_bytes(b"an earlier run's")
    (out / "label_issues.csv").write_text("sample_id\n1\n")
    (out / "notes.txt").write_text("mine")
    result = train(*QUICK, "--epochs", "1", "--out", str(out))
    assert_one_line_error(result, "already holds a run (label_issues.csv, mentornets)")
    result = train(*QUICK, "--epochs", "1", "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "mentornets").exists() and not (out / "label_issues.csv").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not a file of a run: kept
    assert "mentornets" not in result.output.splitlines()[-1]
    assert not (out / ".replaced-run").exists()  # the earlier run, set aside until the first epoch was saved


def tree(folder: Path) -> dict:
    """Every file under ``folder`` (subfolders too, but the lock) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def earlier_run(tmp_path):
    """A finished 1-epoch run, with a MentorNet learned in it and a file of the user's beside it."""
    out = tmp_path / "r"
    result = train(*QUICK, "--epochs", "1", "--mentornet", "mentornet_pd", "--out", str(out))
    assert result.exit_code == 0, result.output
    (out / "mentornets").mkdir()
    (out / "mentornets" / "epoch_05.pt").write_bytes(b"learned in the earlier run")
    (out / "notes.txt").write_text("mine")
    return out


def test_force_stopped_before_its_first_epoch_puts_the_earlier_run_back(earlier_run):
    """Report: --force deleted the earlier run at the start, so a new run stopped before its first epoch (Ctrl-C,
    a diverging loss) left a folder with neither run in it."""
    before = tree(earlier_run)
    result = cli_process("train-student", *QUICK, "--out", str(earlier_run), "--force",
                         env={"MENTORNET_INTERRUPT_AT_STEP": "10"})  # epochs are 20 steps
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the run that --force was replacing is back in" in result.stderr.strip().splitlines()[-1]
    assert tree(earlier_run) == before and not (earlier_run / ".replaced-run").exists()


def test_force_killed_before_its_first_epoch_gets_the_earlier_run_back_at_the_next_command(earlier_run):
    """A SIGKILL cannot unwind: the earlier run waits in .replaced-run, and the next command on the folder puts it
    back (the new run never saved an epoch) and says so."""
    before = tree(earlier_run)
    result = cli_process("train-student", *QUICK, "--out", str(earlier_run), "--force",
                         env={"MENTORNET_KILL_AT_STEP": "10"})
    assert result.returncode == 137
    assert (earlier_run / ".replaced-run" / "last.pt").is_file() and (earlier_run / "config.json").is_file()
    result = train("--out", str(earlier_run), "--resume")  # the earlier run has finished: nothing to train
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.output and "the run it was to replace is back in place" in result.output
    assert "has finished its 1 epochs" in result.output or "has finished its 1 epoch" in result.output
    assert tree(earlier_run) == before


@pytest.mark.parametrize("command", [["evaluate", "--run", "{run}"], ["find-label-issues", "--run", "{run}", "--out",
                                     "{tmp}/issues.csv"], ["export", "--run", "{run}", "--out", "{tmp}/s.pt2"],
                                     ["plot", "--run", "{run}", "--out", "{tmp}/curves.png"]])
def test_every_command_reading_a_run_puts_back_what_a_killed_force_run_set_aside(earlier_run, tmp_path, command):
    """Report: after a killed --force run only train-student put the earlier run back; evaluate, find-label-issues,
    plot --run and export said the folder held no checkpoint or metrics."""
    before = tree(earlier_run)
    result = cli_process("train-student", *QUICK, "--out", str(earlier_run), "--force",
                         env={"MENTORNET_KILL_AT_STEP": "10"})
    assert result.returncode == 137 and (earlier_run / ".replaced-run").is_dir()
    result = invoke(*[word.format(run=earlier_run, tmp=tmp_path) for word in command])
    assert result.exit_code == 0, result.output
    assert "the run it was to replace is back in place" in result.output
    assert tree(earlier_run) == before


def test_force_killed_after_its_first_epoch_has_replaced_the_earlier_run(earlier_run):
    """Killed once its first epoch is saved, the new run is the folder's run: the earlier one is deleted (by the
    next command, if the kill came before that) and the new one resumes."""
    result = cli_process("train-student", *QUICK, "--out", str(earlier_run), "--force",
                         env={"MENTORNET_KILL_AT_STEP": "25"})
    assert result.returncode == 137 and (earlier_run / "last.pt").is_file()
    assert not (earlier_run / ".replaced-run").exists()  # deleted once the first epoch was saved
    (earlier_run / ".replaced-run").mkdir()  # as a kill between saving last.pt and that deletion leaves it
    (earlier_run / ".replaced-run" / "last.pt").write_bytes(b"the earlier run's")
    result = train("--out", str(earlier_run), "--resume")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output and not (earlier_run / ".replaced-run").exists()
    assert len(pd.read_csv(earlier_run / "metrics.csv")) == 3 and not (earlier_run / "mentornets").exists()
    assert (earlier_run / "notes.txt").read_text() == "mine"


def test_a_live_force_runs_set_aside_files_are_not_touched(earlier_run):
    """While a --force run is in its first epoch, its .replaced-run belongs to it: another command is refused."""
    (earlier_run / ".replaced-run").mkdir()
    (earlier_run / ".replaced-run" / "last.pt").write_bytes(b"set aside")
    lock = RunLock(earlier_run)  # held by a process on another machine: it may still run
    lock.path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "c", "started": "s"}))
    try:
        result = train("--out", str(earlier_run), "--resume")
    finally:
        lock.path.unlink()
    assert_one_line_error(result, "is in use by process 1 on elsewhere")
    assert (earlier_run / ".replaced-run" / "last.pt").read_bytes() == b"set aside"


def test_resume_refuses_a_mentornet_file_changed_since_the_run_began(tmp_path, monkeypatch):
    """Report: --resume went on with whatever file the --mentornet path held now (config.json keeps the path)."""
    mentor, out = tmp_path / "mine.pt", tmp_path / "r"
    mentor.write_bytes(pretrained_path("mentornet_pd").read_bytes())
    result = cli_process("train-student", *QUICK, "--mentornet", str(mentor), "--out", str(out),
                         env={"MENTORNET_KILL_AT_STEP": "45"})
    assert result.returncode == 137
    mentor.write_bytes(pretrained_path("small_loss_mentornet").read_bytes())  # the same path, another MentorNet
    before = snapshot(out)
    result = train("--out", str(out), "--resume")
    assert_one_line_error(result, f"cannot resume: the MentorNet {mentor} has changed since the run", "sha256")
    assert result.exit_code == 2 and snapshot(out) == before
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from _grid import folder_state  # the accuracy grids reuse a folder only for the same file, too
    from student_training.run_folder import read_config

    with pytest.raises(SystemExit, match="has changed since the run .* choose another --out"):
        folder_state(out, read_config(out)[0])
    mentor.write_bytes(pretrained_path("mentornet_pd").read_bytes())  # the file the run began with: it resumes
    assert folder_state(out, read_config(out)[0]) == "partial"
    result = train("--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out / "metrics.csv")) == 3
    before = snapshot(out)
    result = train("--out", str(out), "--resume")  # once more: the run has finished, and says so
    assert result.exit_code == 0 and "has finished its 3 epochs: nothing to train, nothing rewritten" in result.output
    assert f"the folder holds {out}/" in result.output and "wrote" not in result.output
    assert snapshot(out) == before


def test_a_run_with_relative_paths_resumes_and_is_evaluated_from_another_folder(tmp_path, monkeypatch):
    """Report: a run started with relative paths (a MentorNet file, npz data, --dump) could not be resumed or
    evaluated from another folder ('focal3.pt' is neither a pretrained MentorNet nor an existing file), and the
    corrected path was refused as a changed option; the resume hint said `python cli.py` wherever cli.py was."""
    from student_training.data import load_dataset

    data = load_dataset("digits")
    np.savez(tmp_path / "mine.npz", train_images=data.train_images.numpy().transpose(0, 2, 3, 1),
             train_labels=data.train_labels.numpy(), test_images=data.test_images.numpy().transpose(0, 2, 3, 1),
             test_labels=data.test_labels.numpy())
    (tmp_path / "pd.pt").write_bytes(pretrained_path("mentornet_pd").read_bytes())
    args = ["--dataset", "npz:mine.npz", "--studentnet", "mlp", "--noise", "0.4", "--epochs", "3", "--batch-size",
            "64", "--mentornet", "pd.pt", "--clean-subset-fraction", "0.2", "--dump", "dump.csv", "--dump-at-epoch",
            "90", "--out", "run"]
    started = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--plugin", KILL_PLUGIN, "train-student", *args],
                             cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, "MENTORNET_INTERRUPT_AT_STEP": "25"})
    assert started.returncode == 1, started.stderr
    assert f"continue with: python {ROOT / 'cli.py'} train-student --out run --resume" in started.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = train("--out", "../run", "--resume", "--mentornet", "../pd.pt", "--dataset", "npz:../mine.npz")
    assert resumed.exit_code == 0, resumed.output  # the same files, typed from here: not a change
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]
    assert "../" not in saved["dataset"] and "../" not in saved["mentornet"]  # the run's own values stay
    assert (tmp_path / "dump.csv").is_file() and not (elsewhere / "dump.csv").exists()  # where the run began
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 3
    changed = train("--out", "../run", "--resume", "--mentornet", "mentornet_pd")
    assert_one_line_error(changed, "cannot resume ../run with changed options: --mentornet mentornet_pd")
    evaluated = invoke("evaluate", "--run", "../run")
    assert evaluated.exit_code == 0 and "npz:" in evaluated.output and "top-1 accuracy" in evaluated.output
    monkeypatch.chdir(tmp_path)  # and from where the run began, of the checkpoint saved after that resume
    assert invoke("evaluate", "--run", "run", "--checkpoint", "last").exit_code == 0
    monkeypatch.chdir(elsewhere)
    again = train("--config", "../run/config.json", "--epochs", "1", "--out", "again")  # its inputs, from where
    assert again.exit_code == 0, again.output                                             # the run began
    assert (elsewhere / "dump.csv").is_file()  # a new run's own output: from here


def test_a_closed_output_pipe_is_one_line_on_stderr(tmp_path):
    """Report: `train-student ... | head -1` ended with status 1 and nothing on stderr."""
    reader = subprocess.Popen([sys.executable, "cli.py", "train-student", *QUICK, "--out", str(tmp_path / "r")],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Closed as head closes it, but before the run writes (it takes seconds to import torch): read first, the pipe's
    # buffer could take every line written before training, and the pipe would break only once the run had finished.
    reader.stdout.close()
    stderr = reader.stderr.read()
    assert reader.wait() == 1 and "Traceback" not in stderr
    assert ("Stopped (its output was closed: a pipe into head?) before the first epoch was saved: nothing to resume"
            in stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("step", [10, 45])
def test_an_interrupted_run_says_how_to_continue_and_resumes(tmp_path, step):
    """Report: Ctrl-C printed only 'Aborted!', without saying whether anything was saved or how to go on."""
    out = tmp_path / "r"
    result = cli_process("train-student", *QUICK, "--mentornet", "mentornet_pd", "--out", str(out),
                         env={"MENTORNET_INTERRUPT_AT_STEP": str(step)})  # epochs are 20 steps
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Aborted!" not in result.stderr  # the one line above says it all
    if step < 20:
        assert "Interrupted before the first epoch was saved: nothing to resume" in result.stderr
        assert snapshot(out) == {}  # no config.json or noisy_labels.npz left to block the same command
        assert train(*QUICK, "--mentornet", "mentornet_pd", "--epochs", "1", "--out", str(out)).exit_code == 0
    else:
        assert f"continue with: python cli.py train-student --out {out} --resume" in result.stderr
        assert train("--out", str(out), "--resume").exit_code == 0
        assert len(pd.read_csv(out / "metrics.csv")) == 3
    assert not (out / ".lock").exists()


def test_an_interrupt_while_preparing_is_one_line_without_aborted(tmp_path, monkeypatch):
    """Report: Ctrl-C while the data loaded printed a blank line and 'Aborted!'."""
    import student_training.trainer as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "prepare_run", interrupted)
    result = CliRunner().invoke(cli.cli, ["train-student", *QUICK, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Aborted!" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Interrupted: every file is written whole or not at all, so nothing is half-written"]
    assert not (tmp_path / "r").exists()


def test_a_folder_given_as_the_clean_subset_file_is_named_as_a_folder(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    result = train(*QUICK, "--mentornet", "learn", "--clean-subset-file", str(folder), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, f"clean subset file {folder} is a folder")


def test_resume_refuses_a_truncated_metrics_log(killed):
    """Report: a truncated metrics.csv gave a resumed log with holes and 'best nan'."""
    lines = (killed / "metrics.csv").read_text().splitlines()
    (killed / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")  # header and epoch 1 of 2
    result = train("--out", str(killed), "--resume")
    assert_one_line_error(result, "metrics.csv lacks epochs 2")


def test_percentiles_have_one_scale_and_the_other_is_refused_with_a_hint(tmp_path):
    """Report: --percentile 0.9 was the 0.9th percentile while --loss-p-percentile 70 was refused."""
    dump = tmp_path / "dump.csv"
    dump.write_text("sample_id,epoch,noisy_label,clean_label,loss\n" +
                    "".join(f"{i},18,{i % 3},{i % 3 if i % 4 else (i + 1) % 3},{i / 10:.2f}\n" for i in range(40)))
    for result in (invoke("learn-curriculum", "--dump", str(dump), "--percentile", "90", "--out", str(tmp_path / "m.pt")),
                   train(*QUICK, "--mentornet", "mentornet_pd", "--loss-p-percentile", "70", "--out", str(tmp_path / "r"))):
        assert_one_line_error(result, "fractions", "did you mean 0.")
        assert result.exit_code == 2
    ok = invoke("learn-curriculum", "--dump", str(dump), "--percentile", "0.9", "--steps", "20", "--out",
                str(tmp_path / "m.pt"))
    assert ok.exit_code == 0 and "at percentile 0.9" in ok.output
    assert torch.load(tmp_path / "m.pt", weights_only=True)["source"]["loss_threshold"] == pytest.approx(
        np.quantile(np.arange(40) / 10, 0.9))


@pytest.mark.parametrize("noise_type, sizes", [("pairflip", [3] * 10), ("pairflip", [1] * 10), ("pairflip", [7, 1, 2])])
def test_pair_flip_on_small_classes_flips_round_r_n_labels(noise_type, sizes):
    """Report: 0.5 asked gave 0.667 on 30 images and 0.0 with one image per class."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    result = make_noisy_labels(labels, noise_type=noise_type, rate=0.5, num_classes=len(sizes), seed=0)
    assert int((result.noisy_labels != result.clean_labels).sum()) == round(0.5 * len(labels))


def test_an_unreachable_rate_is_warned_about_in_one_line(tmp_path):
    np.savez(tmp_path / "tiny.npz", train_images=np.zeros((3, 8, 8), np.uint8), train_labels=np.arange(3),
             test_images=np.zeros((2, 8, 8), np.uint8), test_labels=np.arange(2))
    result = train("--dataset", f"npz:{tmp_path / 'tiny.npz'}", "--noise", "0.5", "--noise-type", "pairflip",
                   "--studentnet", "mlp", "--batch-size", "1", "--epochs", "1", "--validation-fraction", "0",
                   "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "Warning: noise rate 0.5 asked, 0.6667 realised" in result.output


def test_best_checkpoint_is_chosen_on_the_validation_split_and_says_which(finished):
    """Report: best.pt was chosen on test accuracy."""
    metrics = pd.read_csv(finished / "metrics.csv")
    best = torch.load(finished / "best.pt", weights_only=True)
    chosen = metrics.loc[metrics["val_accuracy"].idxmax()]
    assert best["epoch"] == int(chosen["epoch"]) and best["val_accuracy"] == pytest.approx(chosen["val_accuracy"])
    assert best["selected_on"].startswith("a noisy hold-out of 144 training images")
    resolved = json.loads((finished / "config.json").read_text())["resolved"]
    assert resolved["validation"] == best["selected_on"]


def test_with_a_clean_subset_the_clean_subset_chooses_best(tmp_path):
    out = tmp_path / "r"
    result = train(*QUICK, "--mentornet", "mentornet_pd", "--clean-subset-fraction", "0.2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "chosen on the clean subset of 288 images, with their clean labels" in result.output
    assert torch.load(out / "best.pt", weights_only=True)["selected_on"].startswith("the clean subset")


# ------------------------------------------------------------------ 3. options silently ignored


@pytest.mark.parametrize("args, fragment", [
    (["--noise-file", "x.npy", "--noise", "0.2"], "--noise and --noise-type would be ignored"),
    (["--noise-type", "pairflip"], "needs a noise rate"),
    (["--relearn-percentile", "0.8"], "give --relearn-mentor too"),
    (["--mentornet", "none", "--burn-in-epoch", "3"], "--burn-in-epoch set the MentorNet weighting"),
    (["--download"], "--download does not apply to digits"),
    (["--data-dir", "."], "--data-dir does not apply to digits"),
])
def test_options_that_would_be_ignored_are_errors(tmp_path, args, fragment):
    base = [a for a in QUICK if a not in ("--noise", "0.4")]
    result = train(*base, *args, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()


def test_a_missing_data_dir_is_not_replaced_by_another_copy(tmp_path):
    """Report: a --data-dir that does not exist silently fell back to Debian's copy."""
    result = train("--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nowhere"), "--studentnet", "mlp",
                   "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "data folder", "nowhere does not exist")


def test_learn_curriculum_refuses_a_percentile_and_a_repeated_parameter(tmp_path):
    """Report: --percentile with --curriculum, and -p gamma=2 -p gamma=3, were silently dropped."""
    out = str(tmp_path / "m.pt")
    assert_one_line_error(invoke("learn-curriculum", "--curriculum", "self_paced", "--percentile", "0.9",
                                 "--out", out), "--percentile applies to --dump")
    assert_one_line_error(invoke("learn-curriculum", "--curriculum", "focal_loss", "-p", "gamma=2", "-p", "gamma=3",
                                 "--out", out), "given twice")
    assert_one_line_error(invoke("plot", "--mentornet", "mentornet_pd", "-p", "gamma=2", "--out",
                                 str(tmp_path / "p.png")), "fixed when it was learned")
    assert not list(tmp_path.iterdir())


# -------------------------------------------------------------------------------- 4. tracebacks


def _fail_with(monkeypatch, code: int, target: str = "curricula.files.os.fsync"):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(target, fail)


def test_disk_full_while_writing_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    out.write_bytes(b"the old checkpoint")
    _fail_with(monkeypatch, errno.ENOSPC)
    result = invoke("learn-curriculum", "--curriculum", "self_paced", "--steps", "10", "--sample-size", "1000",
                    "--out", str(out), "--force")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == f"Error: No space left on device ({out})"
    assert out.read_bytes() == b"the old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("code, words", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")])
def test_an_unwritable_output_folder_is_found_before_any_work(tmp_path, monkeypatch, code, words):
    """Report: a full fit ran, then failed on a read-only folder."""
    _fail_with(monkeypatch, code, "curricula.files.tempfile.mkstemp")
    fitted = []
    monkeypatch.setattr("mentor_training.learn.fit_mentornet", lambda *a, **k: fitted.append(1))
    result = invoke("learn-curriculum", "--curriculum", "self_paced", "--out", str(tmp_path / "m.pt"))
    assert_one_line_error(result, f"cannot write in output folder {tmp_path}", words)
    assert result.exit_code == 2 and not fitted
    result = train(*QUICK, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, words)


def test_no_network_for_download_is_one_line(tmp_path):
    result = train("--dataset", "cifar10", "--data-dir", str(tmp_path), "--download", "--out", str(tmp_path / "r"))
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:")


@pytest.mark.parametrize("payload, fragment", [
    (b"\x00\x93 not a pickle at all", "not a readable noise file"),
    (b"not a pickle at all", "is a text file, not a noise file"),
    (None, "holds objects other than plain data"),
])
def test_unloadable_or_code_carrying_noise_files_are_refused(tmp_path, payload, fragment):
    path = tmp_path / "labels.pt"
    if payload is None:
        torch.save({"noisy_label": np.zeros(1438, np.int64), "evil": Path("/")}, path)
    else:
        path.write_bytes(payload)
    result = train(*QUICK[:4], "--noise-file", str(path), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, fragment)


def test_a_noise_file_without_a_label_vector_says_what_it_holds(tmp_path):
    """Report: a 2-D .npy gave 'holds several label arrays (); choose one with PATH:KEY'."""
    path = tmp_path / "labels.npy"
    np.save(path, np.zeros((3, 4), dtype=np.int64))
    result = train(*QUICK[:4], "--noise-file", str(path), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "holds no one-dimensional label array", "it holds: labels 3x4")


def test_a_damaged_last_checkpoint_is_one_line_on_resume(killed):
    (killed / "last.pt").write_bytes(b"\x80\x02 truncated")
    before = snapshot(killed)
    result = train("--out", str(killed), "--resume")
    assert_one_line_error(result, "last.pt is not a readable run checkpoint")
    assert snapshot(killed) == before


@pytest.mark.parametrize("body, fragment", [
    ("raise RuntimeError('boom')", "weight() raised RuntimeError: boom"),
    ("import sys; sys.exit(3)", "weight() raised SystemExit"),
])
def test_a_plugin_whose_weight_fails_is_one_line(tmp_path, body, fragment):
    name = "failing_" + ("exit" if "exit" in body else "raise")
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(f"from dataclasses import dataclass\nfrom curricula import register_curriculum\n\n"
                      f"@register_curriculum('{name}')\n@dataclass(frozen=True)\nclass Failing:\n"
                      f"    def weight(self, features):\n        {body}\n")
    for command in (["learn-curriculum", "--curriculum", name, "--out", str(tmp_path / "m.pt")],
                    ["plot", "--curriculum", name, "--out", str(tmp_path / "p.png")]):
        assert_one_line_error(invoke("--plugin", str(plugin), *command), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == [plugin.name]


def test_a_canvas_too_large_for_memory_is_refused_before_drawing(tmp_path):
    result = invoke("plot", "--curriculum", "self_paced", "--width", "60000", "--height", "60000",
                    "--out", str(tmp_path / "p.png"))
    assert_one_line_error(result, "too large to draw")
    assert not (tmp_path / "p.png").exists()


def test_an_unexpected_failure_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something inside torch broke")

    monkeypatch.setattr("student_training.trainer.train_one_epoch", broken)
    result = train(*QUICK, "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: RuntimeError: something inside torch broke") and "MENTORNET_DEBUG" in last
    assert not (tmp_path / "r" / ".lock").exists()


# ------------------------------------------------------------------------------ 5. failing late


@pytest.mark.parametrize("args, fragment", [
    (["--epochs", "1", "--batch-size", "256", "--clean-subset-fraction", "0.2", "--dump", "d.csv",
      "--dump-at-epoch", "90"], "--dump-at-epoch epoch 90 is never reached"),
    (["--max-steps", "5", "--clean-subset-fraction", "0.2", "--mentornet", "mentornet_pd", "--relearn-mentor",
      "50,90"], "--relearn-mentor epoch 90 is never reached"),
])
def test_a_dump_or_refit_the_step_budget_never_reaches_is_refused_before_training(tmp_path, args, fragment):
    """Report: 'wrote the clean-subset dump' was printed for a file never written."""
    result = train(*[a for a in QUICK if a not in ("--epochs", "3")], *args, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, fragment, "steps")
    assert not (tmp_path / "r").exists() and not (ROOT / "d.csv").exists()


def test_a_clean_subset_without_corrupted_samples_is_refused_with_the_fraction_that_works(tmp_path):
    """Report: the run died at the re-fit, and again on every --resume."""
    result = train("--dataset", "digits", "--studentnet", "mlp", "--noise", "0.02", "--clean-subset-fraction",
                   "0.005", "--mentornet", "mentornet_pd", "--relearn-mentor", "30", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "holds no corrupted labels", "--clean-subset-fraction 0.")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------- 6. formats people really have


@pytest.mark.parametrize("text", [
    "sample_id,epoch,noisy_label,clean_label,loss\n" + "".join(f"{i},18,{i % 3},{(i + (i % 4 == 0)) % 3},{i / 7:.3f}\n"
                                                            for i in range(60)),
    "".join(f"{i} 18 {i % 3} {(i + (i % 4 == 0)) % 3} {i / 7:.3f}\n" for i in range(60)),
])
def test_a_dump_with_a_byte_order_mark_reads_like_one_without(tmp_path, text):
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    for dump in (plain, marked):
        result = invoke("learn-curriculum", "--dump", str(dump), "--steps", "20", "--out", str(tmp_path / f"{dump.stem}.pt"))
        assert result.exit_code == 0, result.output
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("plain", "marked"))
    assert a["source"]["num_rows"] == b["source"]["num_rows"] == 60
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_a_dump_that_is_not_utf8_names_the_line(tmp_path):
    dump = tmp_path / "latin1.csv"
    dump.write_bytes(b"sample_id,epoch,noisy_label,clean_label,loss\n1,18,2,2,0.1\n2,18,3,3,0.5 \xe9\n")
    assert_one_line_error(invoke("learn-curriculum", "--dump", str(dump), "--out", str(tmp_path / "m.pt")),
                          "line 3: not UTF-8")


@pytest.mark.parametrize("make", [
    lambda n: {"noisy_label": np.arange(n).astype(np.int8) % 10, "noise_rate": np.float64(0.3)},
    lambda n: {"noisy_label": (np.arange(n) % 10).astype(np.uint16)},
    lambda n: (np.arange(n) % 10).astype(np.int16),
])
def test_pt_label_files_with_numpy_scalars_and_small_integer_arrays_load(tmp_path, make):
    path = tmp_path / "labels.pt"
    torch.save(make(1438), path)
    result = train(*QUICK[:4], "--epochs", "1", "--noise-file", str(path), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "file noise from" in result.output


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    def interrupted(tmp):
        Path(tmp).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.csv", interrupted)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["find-label-issues", "--run", "{run}", "--out", "{run}/metrics.csv", "--force"],
    ["evaluate", "--run", "{run}", "--predictions", "{run}/config.json", "--force"],
    ["learn-curriculum", "--curriculum", "self_paced", "--steps", "10", "--out", "{run}/last.pt", "--force"],
    ["learn-curriculum", "--curriculum", "self_paced", "--steps", "10", "--out", "{run}/mentornets/epoch_05.pt",
     "--force"],
])
def test_an_output_never_overwrites_a_run_folders_own_file(earlier_run, command):
    """Report: find-label-issues --out RUN/metrics.csv --force replaced the run's metrics, and plot --run and
    --resume then failed on it."""
    before = tree(earlier_run)
    result = invoke(*[word.format(run=earlier_run) for word in command])
    assert_one_line_error(result, "is a file of the run in", "would break that run")
    assert tree(earlier_run) == before


def test_learn_curriculum_refuses_sample_size_with_a_dump(tmp_path):
    """Report: --sample-size with --dump was silently ignored."""
    result = invoke("learn-curriculum", "--dump", str(tmp_path / "d.csv"), "--sample-size", "10", "--out",
                    str(tmp_path / "x.pt"))
    assert_one_line_error(result, "--sample-size applies to --curriculum")


def test_epochs_beside_max_steps_is_refused():
    """Report: --epochs 3 --max-steps 100 ran 100 steps (10 epochs); --epochs was dropped without a word."""
    result = train(*QUICK, "--max-steps", "100", "--out", "unused")
    assert_one_line_error(result, "--epochs and --max-steps exclude each other")


def test_a_batch_of_one_for_a_batchnorm_student_is_refused_before_training(tmp_path):
    """Report: --batch-size 1 with small_cnn started training, then failed with BatchNorm's 'Expected more than 1
    value per channel', exit 1, leaving an empty folder."""
    result = train("--dataset", "digits", "--studentnet", "small_cnn", "--batch-size", "1", "--epochs", "1",
                   "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "--batch-size 1 gives 1 sample a step, and small_cnn has BatchNorm")
    assert result.exit_code == 2 and not (tmp_path / "r").exists()


def test_a_text_file_given_as_a_mentornet_says_so(tmp_path):
    """Report: a dump CSV given to show or --mentornet was 'corrupt or truncated: IndexError'."""
    path = tmp_path / "dump.csv"
    path.write_text("sample_id,loss,label\n1,0.5,0\n")
    assert_one_line_error(invoke("show", str(path)), f"{path} is a text file, not a checkpoint")
    assert_one_line_error(train(*QUICK, "--mentornet", str(path), "--out", str(tmp_path / "r")),
                          f"{path} is a text file, not a checkpoint")
