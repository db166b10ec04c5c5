"""benchmarks/reproduce_2018.py: the whole 2018 grid in --smoke mode, and the paper protocol's flags."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import reproduce_2018  # noqa: E402


def test_smoke_runs_every_cell(tmp_path, capsys):
    table = reproduce_2018.main(["--smoke", "--protocol", "fast", "--out", str(tmp_path / "grid")])
    assert len(table) == 2 * 3 * 5
    ran = table[table["ours final"] != "skipped"]
    assert set(ran["method"]) >= {"baseline", "self_paced", "focal", "pd"}
    assert ran["ours final"].astype(float).between(0, 1).all() and (ran["note"] == "2 steps").all()
    skipped = table[table["ours final"] == "skipped"]
    assert set(skipped["method"]) <= {"dd"} and skipped["note"].str.contains("mentornet_dd").all()
    assert table["2018 (ResNet)"].tolist()[:5] == [0.796, 0.822, 0.797, 0.910, 0.914]
    out = capsys.readouterr().out
    assert "| dataset | noise | method | 2018 (ResNet) | ours final |" in out


def test_paper_protocol_uses_the_2018_flags(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/reproduce_2018.py", "--dry-run", "--data-dir", "d",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 30
    for line in lines:
        assert "--studentnet resnet101 --max-steps 39000 --batch-size 128 --lr 0.1" in line
    dd = [line for line in lines if line.endswith("cifar100_0.8_dd")][0]
    assert "--mentornet mentornet_dd --loss-p-percentile 0.7 --burn-in-epoch 18 --fixed-epoch-after-burn-in" in dd
    pd_line = [line for line in lines if line.endswith("cifar10_0.2_pd")][0]
    assert "--example-dropout-rates 0.5,17,0.05,83" in pd_line and "--no-fixed-epoch-after-burn-in" in pd_line
    baseline = [line for line in lines if line.endswith("cifar10_0.2_baseline")][0]
    assert "--lr-schedule baseline_2018 --mentornet none" in baseline


@pytest.mark.parametrize("flag", ["--datasets", "--methods"])
def test_bad_choice_is_refused(flag):
    with pytest.raises(SystemExit, match="choose from"):
        reproduce_2018.parse_args([flag, "imagenet"])
