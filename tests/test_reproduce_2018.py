"""benchmarks/reproduce_2018.py: the whole 2018 grid in --smoke mode, and the paper protocol's flags."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import reproduce_2018  # noqa: E402


def test_smoke_runs_every_cell(tmp_path, capsys):
    table = reproduce_2018.main(["--smoke", "--protocol", "fast", "--out", str(tmp_path / "grid")])
    assert len(table) == 2 * 3 * 6
    ran = table[table["ours final"] != "skipped"]
    assert set(ran["method"]) >= {"baseline", "self_paced", "focal", "pd", "mentormix"}
    assert ran["ours final"].astype(float).between(0, 1).all() and (ran["note"] == "2 steps").all()
    skipped = table[table["ours final"] == "skipped"]
    assert set(skipped["method"]) <= {"dd"} and skipped["note"].str.contains("mentornet_dd").all()
    assert table["2018 (ResNet)"].tolist()[:6] == [0.796, 0.822, 0.797, 0.910, 0.914, ""]
    mentormix = table[table["method"] == "mentormix"]
    assert mentormix["2020 (ResNet-32)"].tolist() == [0.962, 0.944, 0.820, 0.778, 0.704, 0.392]  # 2020 spec §4.1
    assert (table[table["method"] != "mentormix"]["2020 (ResNet-32)"] == "").all()
    assert len(mentormix) == 6 and mentormix["ours final"].astype(float).between(0, 1).all()
    for cell in ("cifar10_0.2_mentormix", "cifar100_0.8_mentormix"):
        assert not pd.read_csv(tmp_path / "grid" / cell / "metrics.csv")["mixing_mean"].isna().any()
    out = capsys.readouterr().out
    assert "| dataset | noise | method | 2018 (ResNet) | 2020 (ResNet-32) | ours final |" in out


def test_paper_protocol_uses_the_2018_flags(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/reproduce_2018.py", "--dry-run", "--data-dir", "d",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 36
    for line in lines:
        if not line.endswith("_mentormix"):
            assert "--studentnet resnet101 --max-steps 39000 --batch-size 128 --lr 0.1" in line
    dd = [line for line in lines if line.endswith("cifar100_0.8_dd")][0]
    assert "--mentornet mentornet_dd --loss-p-percentile 0.7 --burn-in-epoch 18 --fixed-epoch-after-burn-in" in dd
    pd_line = [line for line in lines if line.endswith("cifar10_0.2_pd")][0]
    assert "--example-dropout-rates 0.5,17,0.05,83" in pd_line and "--no-fixed-epoch-after-burn-in" in pd_line
    baseline = [line for line in lines if line.endswith("cifar10_0.2_baseline")][0]
    assert "--lr-schedule baseline_2018 --mentornet none" in baseline


def test_mentormix_cells_use_the_official_2020_commands(tmp_path):
    """2020 spec §3.1: per cell alpha, p and second reweighting; weight decay 2e-4 only without the latter."""
    result = subprocess.run([sys.executable, "benchmarks/reproduce_2018.py", "--dry-run", "--methods", "mentormix",
                             "--data-dir", "d", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    lines = {line.rsplit("/", 1)[1]: line for line in result.stdout.strip().splitlines()}
    assert len(lines) == 6
    for line in lines.values():
        assert "--studentnet resnet32 --max-steps 200000 --batch-size 128 --lr 0.1 --lr-schedule mentormix_2020" in line
        assert "--mentornet mentornet_pd --mentormix --burn-in-epoch 10 --loss-moving-average-decay 0.5" in line
        assert "--example-dropout-rates 0.0,100" in line
    assert "--mixup-alpha 2.0 --loss-p-percentile 0.8 --no-second-reweight --weight-decay 0.0002" in \
        lines["cifar10_0.2_mentormix"]
    assert "--mixup-alpha 8.0 --loss-p-percentile 0.5 --no-second-reweight --weight-decay 0.0002" in \
        lines["cifar100_0.4_mentormix"]
    assert lines["cifar10_0.8_mentormix"].endswith("--mixup-alpha 4.0 --loss-p-percentile 0.2 --second-reweight "
                                                   f"--out {tmp_path}/cifar10_0.8_mentormix")


@pytest.mark.parametrize("flag", ["--datasets", "--methods"])
def test_bad_choice_is_refused(flag):
    with pytest.raises(SystemExit, match="choose from"):
        reproduce_2018.parse_args([flag, "imagenet"])
