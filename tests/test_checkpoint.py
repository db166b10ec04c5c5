"""Checkpoints: self-describing, loadable with weights_only=True, atomic, and checked on load."""

import os
import pickle

import pytest
import torch

from curricula import MentorFeatures
from curricula.features import WeighterConfig, feature_spec
from mentor_training import CheckpointError, MentorNet, build_checkpoint, load_mentornet, read_checkpoint, save_checkpoint

SOURCE = {"type": "curriculum", "name": "self_paced", "params": {}}
DEFAULTS = {"loss_p_percentile": 0.7, "loss_moving_average_decay": 0.5, "burn_in_epoch": 0,
            "fixed_epoch_after_burn_in": False, "example_dropout_rates": "0.0,100"}


def _checkpoint(model=None):
    model = model or MentorNet()
    return build_checkpoint(model, source=SOURCE, feature_spec=feature_spec(), student_defaults=DEFAULTS,
                            metrics={"test": {"mae": 0.1}}, command="python cli.py test")


def test_round_trip_is_self_describing_and_weights_only(tmp_path):
    model = MentorNet()
    path = save_checkpoint(_checkpoint(model), tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "mentornet" and raw["format_version"] == 1
    assert set(raw) == {"format_version", "kind", "model_config", "feature_spec", "source", "student_defaults",
                        "metrics", "provenance", "state_dict"}
    assert raw["provenance"]["command"] == "python cli.py test"
    loaded = load_mentornet(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.source == SOURCE and loaded.student_defaults == WeighterConfig.from_dict(DEFAULTS)
    features = MentorFeatures.build(torch.rand(9) * 5, torch.randn(9), epoch=torch.arange(9) * 11)
    assert torch.equal(loaded.weight(features), model.weight(features))


def test_existing_file_is_kept_without_force_and_no_temp_files_remain(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(_checkpoint(), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        save_checkpoint(_checkpoint(), path)
    assert path.read_bytes() == before
    save_checkpoint(_checkpoint(), path, force=True)
    assert os.listdir(tmp_path) == ["m.pt"]


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def explode(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError):
        save_checkpoint(_checkpoint(), tmp_path / "m.pt")
    assert os.listdir(tmp_path) == []


def test_newer_format_is_refused(tmp_path):
    checkpoint = _checkpoint()
    checkpoint["format_version"] = 99
    torch.save(checkpoint, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="format version 99, newer"):
        read_checkpoint(tmp_path / "new.pt")


def test_not_a_mentornet_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a MentorNet checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="not a MentorNet checkpoint"):
        read_checkpoint(tmp_path / "tensor.pt")


def test_corrupt_and_truncated_files_are_refused(tmp_path):
    good = save_checkpoint(_checkpoint(), tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "junk.pt").write_bytes(os.urandom(2048))
    for name in ("cut.pt", "junk.pt"):
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            read_checkpoint(tmp_path / name)


def test_feature_spec_mismatch_is_refused(tmp_path):
    checkpoint = _checkpoint()
    checkpoint["feature_spec"]["names"] = ["loss", "loss_diff", "label", "real_epoch"]
    torch.save(checkpoint, tmp_path / "spec.pt")
    with pytest.raises(CheckpointError, match="feature spec mismatch"):
        read_checkpoint(tmp_path / "spec.pt")


def test_wrong_weights_are_refused(tmp_path):
    checkpoint = _checkpoint()
    checkpoint["state_dict"]["fc1_weight"] = torch.zeros(3, 3)
    torch.save(checkpoint, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_mentornet(tmp_path / "shape.pt")


class _Payload:
    """Unpickling this would create a file: the classic code-execution pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = _checkpoint()
    checkpoint["metrics"] = _Payload(str(marker))
    torch.save(checkpoint, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(_Payload(str(marker)), handle)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(CheckpointError, match="refusing to load"):
            read_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_unknown_name_or_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="neither a pretrained MentorNet"):
        load_mentornet("no_such_mentornet")
    with pytest.raises(CheckpointError, match="neither"):
        load_mentornet(tmp_path / "missing.pt")
