"""The shipped data-driven MentorNet: made by our own pipeline, and judged on a fresh held-out dump."""

import hashlib
import json
import shlex

import numpy as np
import pytest

from curricula import get_curriculum
from curricula.targets import data_driven_set, read_dump
from mentor_training import load_mentornet, read_manifest
from pretrained import PRETRAINED_DIR
from numpy.testing import assert_allclose
from pretrained.build import GOLDEN_PATH, HELDOUT_COMMANDS, PIPELINES, golden_features
from student_training.evaluation import detector_auc

DUMP = PRETRAINED_DIR / "data" / "mentornet_dd_dump.csv"
HELDOUT = PRETRAINED_DIR / "data" / "mentornet_dd_heldout_dump.csv"


def _options(command: str) -> dict:
    words = shlex.split(command)
    return {w: (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else True)
            for i, w in enumerate(words) if w.startswith("--")}


def test_manifest_records_every_command_from_student_to_fit():
    entry = read_manifest()["mentornet_dd"]
    assert entry["pipeline"] == PIPELINES["mentornet_dd"] and entry["command"] == entry["pipeline"][-1]
    student, fit = (_options(c) for c in entry["pipeline"])
    assert "train-student" in entry["pipeline"][0] and "learn-curriculum" in entry["pipeline"][1]
    assert student["--dataset"] == "fashion-mnist" and student["--noise"] == "0.2"
    assert student["--clean-subset-fraction"] == "0.1" and student["--dump-at-epoch"] == "18"
    assert fit["--dump"] == student["--dump"] and fit["--percentile"] == "0.9"
    assert entry["heldout_commands"] == HELDOUT_COMMANDS["mentornet_dd"]


def test_the_file_was_fitted_on_the_committed_dump():
    model = load_mentornet("mentornet_dd")
    assert model.source["type"] == "data_driven" and model.source["percentile"] == 0.9
    assert model.source["dump_sha256"] == hashlib.sha256(DUMP.read_bytes()).hexdigest()
    assert model.student_defaults.burn_in_epoch == 18 and model.student_defaults.fixed_epoch_after_burn_in
    dump = read_dump(DUMP)
    assert len(dump) == 2000 and 0.15 < np.mean(dump.noisy_label != dump.clean_label) < 0.25


def test_golden_outputs():
    golden = json.loads(GOLDEN_PATH.read_text())["mentornet_dd"]
    assert_allclose(load_mentornet("mentornet_dd").weight(golden_features()).numpy(), golden, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def heldout():
    data, _ = data_driven_set(read_dump(HELDOUT), 0.9)
    return data.features, data.targets.numpy() == 1.0


def test_heldout_dump_is_fresh():
    a, b = read_dump(DUMP), read_dump(HELDOUT)
    assert a.sha256 != b.sha256
    assert not np.array_equal(np.sort(a.sample_id), np.sort(b.sample_id))


def test_dd_detects_clean_samples_better_than_the_loss_only_rule(heldout):
    features, clean = heldout
    dd = load_mentornet("mentornet_dd").weight(features).numpy()
    self_paced = get_curriculum("self_paced").weight(features).numpy()  # loss_diff <= 0 at the same P = 90
    dd_auc, sp_auc = detector_auc(dd, clean), detector_auc(self_paced, clean)
    assert dd_auc > 0.9, dd_auc
    assert dd_auc > sp_auc + 0.1, (dd_auc, sp_auc)
    assert np.mean((dd >= 0.5) == clean) > np.mean((self_paced >= 0.5) == clean)
