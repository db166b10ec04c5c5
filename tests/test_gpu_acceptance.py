"""benchmarks/gpu_acceptance.py: the script a GPU session runs once, run here with --smoke on the CPU."""

import csv
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"
STUDENTS = {"small_cnn", "mlp", "resnet32", "preact_resnet18", "resnet101", "inception"}


def _script():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(folder: Path, table: str) -> list[dict]:
    with (folder / f"{table}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoke_runs_every_part_and_writes_every_table(tmp_path):
    out = tmp_path / "acceptance"
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {(r["part"], r["status"]) for r in _rows(out, "parts")} == {
        (part, "ok") for part in ("environment", "checks", "speed", "end_to_end", "compile")}
    checks = {r["check"]: r["result"] for r in _rows(out, "checks")}
    assert set(checks.values()) <= {"pass", "info"}, checks
    for name in ("precision auto on this device", "MentorNet weighting in fp32 under autocast",
                 "resume at another precision"):
        assert checks[name] == "pass", name
    assert set(checks) == {"precision auto on this device", "MentorNet weighting in fp32 under autocast",
                           "resume at another precision", "MentorMix step never waits for the host",
                           "weighting step never waits for the host",
                           "MentorMix draws equal on the CPU and this device", "pinned host-to-device copy", "host syncs in a training epoch at fp32",
                           "host syncs in a training epoch at bf16"}  # the GPU-only ones say "info" on a CPU
    speed = _rows(out, "speed")
    eager = {(r["student"], r["precision"]): r for r in speed if r["mode"] == "eager"}
    assert set(eager) == {(student, precision) for student in STUDENTS for precision in ("fp32", "bf16")}
    for student in STUDENTS:  # every student is timed at the CPU's auto precision
        row = eager[(student, "fp32")]
        assert float(row["img/s"]) > 0 and row["weighting share"].endswith("%") and float(row["minimal img/s"]) > 0
    assert float(eager[("mlp", "bf16")]["img/s"]) > 0
    compiled = [r for r in speed if r["mode"] == "compile"]
    assert [r["student"] for r in compiled] == ["mlp"] and float(compiled[0]["compile s"]) > 0
    curves = _rows(out, "end_to_end")
    assert sorted((r["run"], r["epoch"]) for r in curves) == [("baseline", "1"), ("baseline", "2"),
                                                            ("mentornet_pd", "1"), ("mentornet_pd", "2")]
    summary = {r["run"]: r for r in _rows(out, "end_to_end_summary")}
    assert {name: (r["epochs"], r["status"]) for name, r in summary.items()} == {
        "baseline": ("2/2", "finished"), "mentornet_pd": ("2/2", "finished")}
    report = (out / "acceptance.md").read_text()
    assert "# GPU acceptance: cpu (no GPU)" in report and "torch " in report and "mode smoke" in report
    assert "| small_cnn | eager | fp32 | 4 | 1 |" in report and "| 2 | 0." in report
    assert report in result.stdout  # the report is printed too
    assert not (out / "current.txt").exists()


def test_what_runs_past_its_time_is_skipped_and_said_so(tmp_path):
    out = tmp_path / "acceptance"
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--parts", "environment,speed", "--budget-s",
                             "8", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # not everything ran
    parts = {r["part"]: r["status"] for r in _rows(out, "parts")}
    assert parts == {"environment": "skipped: no time left", "speed": "ok"}
    last = _rows(out, "speed")[-1]
    assert (last["student"], last["note"]) == ("inception", "skipped for time")  # 8 s cannot time every student
    assert "| inception | eager | all |" in (out / "acceptance.md").read_text()


def test_a_part_past_its_limit_is_killed_with_what_it_started(tmp_path, monkeypatch):
    script = _script()
    hang = tmp_path / "python"
    hang.write_text("#!/bin/sh\nsleep 300 &\nwait\n")  # a part that hangs, and a child of its own
    hang.chmod(0o755)
    monkeypatch.setattr(script.sys, "executable", str(hang))
    args = script.parse_args(["--smoke", "--out", str(tmp_path)])
    start = time.time()
    status = script._run_part("speed", args, start + 1, start + 2, tmp_path)
    assert status == "killed at its time limit (results so far kept)" and time.time() - start < 20
    assert "===== speed" in (tmp_path / "log.txt").read_text()


def test_a_missing_package_stops_the_script_at_once_naming_it(monkeypatch):
    script = _script()
    monkeypatch.setattr(script, "REQUIRED", ("torch", "no_such_package_for_this_test"))
    with pytest.raises(SystemExit, match="needs the Python packages no_such_package_for_this_test, missing from"):
        script.main(["--smoke", "--out", "unused"])


def test_bad_options_are_refused():
    script = _script()
    with pytest.raises(SystemExit):
        script.parse_args(["--out", "x", "--budget-s", "0"])
    with pytest.raises(SystemExit):
        script.parse_args(["--out", "x", "--parts", "speed,warp"])


def test_a_full_run_without_fashion_mnist_stops_at_once_naming_the_file(tmp_path, monkeypatch):
    """Review: without data/ carried to the GPU machine both end-to-end runs would fail minutes in, and the
    speed part would time synthetic images instead."""
    script = _script()
    assert script._missing_fashion_mnist(tmp_path) == "train-images-idx3-ubyte.gz"
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (folder / f"{stem}.gz").write_bytes(b"")
    assert script._missing_fashion_mnist(tmp_path) == "t10k-labels-idx1-ubyte.gz"
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"")  # unpacked is found too, as the loader finds it
    assert script._missing_fashion_mnist(tmp_path) is None
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # past the GPU check, to the data check
    with pytest.raises(SystemExit, match="Fashion-MNIST's train-images-idx3-ubyte.gz is not in .*carry data/"):
        script.main(["--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "empty")])
