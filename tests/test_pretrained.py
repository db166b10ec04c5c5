"""The shipped MentorNets: manifest and sha256, golden outputs, and fidelity to their curricula."""

import json
import shutil

import pytest
import torch
from numpy.testing import assert_allclose

import mentor_training.pretrained as pretrained_module
from curricula import get_curriculum
from mentor_training import CheckpointError, list_pretrained, load_mentornet, read_manifest
from mentor_training.fidelity import fidelity
from curricula.files import sha256_of
from pretrained import PRETRAINED_DIR
from pretrained.build import COMMANDS, GOLDEN_PATH, golden_features

SEED_SIX = ["baseline_mentornet", "self_paced_mentornet", "spcl_linear_mentornet", "hard_example_mining_mentornet",
            "focal_loss_mentornet", "mentornet_pd"]
GRADED_BOUND = {"spcl_linear_mentornet": 0.02, "focal_loss_mentornet": 0.02, "mentornet_pd": 0.03}
# The curriculum zoo (curricula/zoo.py): the same rules, with the spcl_linear/focal bound where graded.
ZOO = ["spl_linear_mentornet", "spl_logarithmic_mentornet", "spl_mixture_mentornet", "implicit_huber_mentornet",
       "implicit_cauchy_mentornet", "implicit_l1_l2_mentornet", "implicit_welsch_mentornet", "small_loss_mentornet"]
GRADED_BOUND.update({name: 0.02 for name in ZOO if name != "small_loss_mentornet"})
SHIPPED = SEED_SIX + ZOO


def test_the_2018_six_are_shipped_with_their_commands():
    manifest = read_manifest()
    assert set(SHIPPED) <= set(list_pretrained())
    for name in SHIPPED:
        entry = manifest[name]
        assert entry["command"].startswith("python cli.py learn-curriculum ")
        assert entry["command"] == (f"python cli.py learn-curriculum {COMMANDS[name]} "
                                    f"--out pretrained/{name}.pt --force")
        assert entry["sha256"] == sha256_of(PRETRAINED_DIR / entry["file"])
        assert "mae" in entry["metrics"]["test"]
        checkpoint = torch.load(PRETRAINED_DIR / entry["file"], weights_only=True)
        assert checkpoint["provenance"]["command"] == entry["command"]
        assert checkpoint["source"] == entry["source"]


@pytest.mark.parametrize("name", SHIPPED)
def test_golden_outputs(name):
    golden = json.loads(GOLDEN_PATH.read_text())[name]
    assert_allclose(load_mentornet(name).weight(golden_features()).numpy(), golden, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SHIPPED)
def test_fidelity_to_the_curriculum_on_fresh_points(name):
    model = load_mentornet(name)
    source = model.source
    curriculum = get_curriculum(source["name"], **source["params"])
    result = fidelity(model, curriculum, num_points=100_000, seed=2026)
    if result["binary_points"]:
        assert result["binary_agreement"] >= 0.99, result
    if name in GRADED_BOUND:
        assert result["graded_points"] > 500
        assert result["graded_mae"] <= GRADED_BOUND[name], result


def test_tampered_file_fails_its_sha256(tmp_path, monkeypatch):
    copy = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, copy)
    data = bytearray((copy / "self_paced_mentornet.pt").read_bytes())
    data[-40] ^= 0xFF
    (copy / "self_paced_mentornet.pt").write_bytes(bytes(data))
    monkeypatch.setattr(pretrained_module, "PRETRAINED_DIR", copy)
    monkeypatch.setattr(pretrained_module, "MANIFEST_PATH", copy / "manifest.json")
    with pytest.raises(CheckpointError, match="fails its sha256 check"):
        load_mentornet("self_paced_mentornet")
    load_mentornet("focal_loss_mentornet")  # the untouched ones still load
