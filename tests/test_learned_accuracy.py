"""benchmarks/learned_accuracy.py: issue #13's evidence grid in its tiny --smoke setting, with kept run folders,
the clean-subset baselines, an ablation, and an incremental rerun."""

import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import learned_accuracy  # noqa: E402


def test_smoke_grid_keeps_folders_summarises_over_seeds_and_reruns_incrementally(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["--smoke", "--methods", "baseline,clean_only,noisy_plus_clean,learned,learned_soft", "--out", str(out)]
    results = learned_accuracy.main(argv)
    assert len(results) == 5 * 2  # five methods x seeds 0 and 1 at symmetric 0.4
    for column in ("final_accuracy", "selected_accuracy", "best_accuracy"):
        assert results[column].between(0, 1).all(), column
    learned = results[results["method"].str.startswith("learned")]
    assert learned["detector_auc"].between(0.5, 1).all()
    assert results[results["method"] == "clean_only"]["detector_auc"].isna().all()  # nothing noisy is weighted
    for folder in results["folder"]:
        assert (Path(folder) / "metrics.csv").is_file()
    assert (Path(learned["folder"].iloc[0]) / "relearn.csv").is_file()
    text = (out / "results.md").read_text()
    assert "| symmetric 0.4 | learned | 2 |" in text and "±" in text and "cli.py plot --run" in text
    assert pd.read_csv(out / "results.csv").shape[0] == 10

    capsys.readouterr()
    again = learned_accuracy.main(argv)  # every folder is complete: read back, nothing trained
    assert "trained in" not in capsys.readouterr().err
    pd.testing.assert_frame_equal(results, again)


def test_an_unknown_method_or_setting_is_refused_before_any_run(tmp_path):
    with pytest.raises(SystemExit):
        learned_accuracy.parse_args(["--methods", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        learned_accuracy.parse_args(["--settings", "symmetric", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())
