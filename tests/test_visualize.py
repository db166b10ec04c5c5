"""Weight surfaces (``visualize.surface``): values against the spec's formulas, layout and input checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from curricula import MentorFeatures, get_curriculum, list_curricula
from visualize import (DEFAULT_EPOCHS, compare_surfaces, describe_curriculum, gallery_surfaces, parse_epochs,
                       parse_range, reference_curriculum, surface_grid, weight_surface)
from visualize.plot import write_atomically

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(loss_range=(0.0, 6.0), loss_diff_range=(-3.0, 3.0), resolution=13)


@pytest.fixture(scope="module")
def spcl_mentornet(tmp_path_factory):
    from mentor_training import load_mentornet
    from mentor_training.learn import learn_curriculum

    path = tmp_path_factory.mktemp("mentornet") / "spcl.pt"
    learn_curriculum(out=path, curriculum="spcl_linear", steps=150, sample_size=5_000)
    return load_mentornet(path)


# --- the frame ---------------------------------------------------------------------------------------

def test_frame_is_tidy_with_one_row_per_grid_point_and_epoch():
    frame = weight_surface(get_curriculum("baseline"), (0, 10), (-5, 5), [50, 0, 99], resolution=7)
    assert list(frame.columns) == ["loss", "loss_diff", "epoch", "label", "weight"]
    assert len(frame) == 3 * 7 * 7
    assert list(dict.fromkeys(frame["epoch"])) == [50, 0, 99]  # in the order given
    assert set(frame["label"]) == {0}
    assert_allclose(np.unique(frame["loss"]), np.linspace(0, 10, 7))
    assert_allclose(np.unique(frame["loss_diff"]), np.linspace(-5, 5, 7))
    assert frame.groupby("epoch").size().tolist() == [49, 49, 49]
    assert (frame["weight"] == 1.0).all()


def test_default_epochs_are_the_2018_visualisers():
    assert DEFAULT_EPOCHS == (0, 10, 18, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99)
    frame = weight_surface(get_curriculum("baseline"), resolution=2)
    assert tuple(dict.fromkeys(frame["epoch"])) == DEFAULT_EPOCHS


# --- oracle tests: each value against the formula of spec §2.1, in plain numpy ---------------------

def test_self_paced_is_one_exactly_where_loss_diff_is_not_positive():
    frame = weight_surface(get_curriculum("self_paced"), epochs=[0, 60], **SMALL)
    assert_allclose(frame["weight"], np.where(frame["loss_diff"] <= 0, 1.0, 0.0))
    assert 0 < frame["weight"].mean() < 1


@pytest.mark.parametrize("gamma", [1.0, 2.5, -1.0])
def test_spcl_linear_is_clipped_linear_in_loss_diff(gamma):
    frame = weight_surface(get_curriculum("spcl_linear", gamma=gamma), epochs=[5], **SMALL)
    expected = np.clip(1.0 - frame["loss_diff"].to_numpy() / gamma, 0.0, 1.0)
    assert_allclose(frame["weight"], expected, rtol=1e-6, atol=1e-7)


def test_focal_loss_is_one_minus_p_true_to_the_gamma():
    frame = weight_surface(get_curriculum("focal_loss", gamma=3.0), epochs=[40], **SMALL)
    assert_allclose(frame["weight"], (1.0 - np.exp(-frame["loss"].to_numpy())) ** 3, rtol=1e-6, atol=1e-7)


def test_hard_example_mining_is_one_where_loss_diff_is_not_negative():
    frame = weight_surface(get_curriculum("hard_example_mining"), epochs=[70], **SMALL)
    assert_allclose(frame["weight"], np.where(frame["loss_diff"] >= 0, 1.0, 0.0))


def test_mentornet_pd_switches_curriculum_with_the_epoch():
    frame = weight_surface(get_curriculum("mentornet_pd"), epochs=[18, 19, 89, 90], **SMALL)
    by_epoch = {epoch: rows for epoch, rows in frame.groupby("epoch")}
    assert (by_epoch[18]["weight"] == 1).all()
    for epoch in (19, 89):
        rows = by_epoch[epoch]
        assert_allclose(rows["weight"], np.where(rows["loss_diff"] <= 0, 1.0, 0.0))
    rows = by_epoch[90]
    assert_allclose(rows["weight"], np.clip(1.0 - rows["loss_diff"].to_numpy(), 0, 1), atol=1e-7)


def test_surface_grid_lays_loss_along_columns_and_loss_diff_along_rows():
    frame = weight_surface(get_curriculum("focal_loss"), (0, 4), (-2, 2), [3], resolution=5)
    loss_axis, loss_diff_axis, values = surface_grid(frame, 3)
    assert_allclose(loss_axis, np.linspace(0, 4, 5))
    assert_allclose(loss_diff_axis, np.linspace(-2, 2, 5))
    expected = np.tile((1 - np.exp(-loss_axis)) ** 2, (5, 1))
    assert_allclose(values, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="epoch 4 is not in the frame"):
        surface_grid(frame, 4)


# --- MentorNets: the same contract ------------------------------------------------------------------

def test_a_mentornet_is_plotted_like_a_curriculum(spcl_mentornet):
    frame = weight_surface(spcl_mentornet, epochs=[0, 95], **SMALL)
    assert frame["weight"].between(0, 1).all()
    features = MentorFeatures.build(frame["loss"].to_numpy(copy=True), frame["loss_diff"].to_numpy(copy=True),
                                    epoch=frame["epoch"].to_numpy(copy=True), label=0)
    assert_allclose(frame["weight"], spcl_mentornet.weight(features).double().numpy(), rtol=1e-6)


def test_compare_reads_the_curriculum_from_the_checkpoint(spcl_mentornet):
    curriculum = reference_curriculum(spcl_mentornet)
    assert curriculum == get_curriculum("spcl_linear")
    frame = compare_surfaces(spcl_mentornet, curriculum, epochs=[10, 95], **SMALL)
    assert {"mentornet", "curriculum", "abs_diff"} <= set(frame.columns)
    assert_allclose(frame["abs_diff"], (frame["mentornet"] - frame["curriculum"]).abs())
    assert_allclose(frame["curriculum"], np.clip(1 - frame["loss_diff"].to_numpy(), 0, 1), atol=1e-7)
    assert frame["abs_diff"].mean() < 0.2  # a short fit is already close


def test_compare_refuses_a_data_driven_mentornet():
    class DataDriven:
        source = {"type": "data_driven", "percentile": 90.0}

    with pytest.raises(ValueError, match="not fitted to a curriculum"):
        reference_curriculum(DataDriven())


def test_gallery_has_every_registered_curriculum():
    frame = gallery_surfaces(epochs=[10, 95], **SMALL)
    assert list(dict.fromkeys(frame["curriculum"])) == list_curricula()
    assert len(frame) == len(list_curricula()) * 2 * 13 * 13
    assert frame["weight"].between(0, 1).all()


def test_describe_curriculum_names_its_parameters():
    assert describe_curriculum(get_curriculum("focal_loss", gamma=3.0)) == "focal_loss (gamma=3)"
    assert describe_curriculum(get_curriculum("self_paced")) == "self_paced"
    assert describe_curriculum(get_curriculum("mentornet_pd")) == "mentornet_pd"  # long defaults are left out
    assert describe_curriculum(get_curriculum("mentornet_pd", second_threshold=80)) == \
        "mentornet_pd (second_threshold=80)"


# --- input checks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("epochs, message", [
    ([100], "epoch 100 is outside 0..99"),
    ([-1], "epoch -1 is outside 0..99"),
    ([], "no epochs given"),
    ([3, 3], "epoch 3 is given twice"),
    ([2.5], "must be integers"),
])
def test_bad_epochs_are_named(epochs, message):
    with pytest.raises(ValueError, match=message):
        weight_surface(get_curriculum("baseline"), (0, 1), (-1, 1), epochs, resolution=2)


@pytest.mark.parametrize("loss_range, loss_diff_range, message", [
    ((3, 3), (-1, 1), "loss range 3,3 is empty"),
    ((5, 1), (-1, 1), "loss range 5,1 is empty"),
    ((-1, 1), (-1, 1), "starts below 0"),
    ((0, 1), (2, 2), "loss_diff range 2,2 is empty"),
    ((0, float("inf")), (-1, 1), "must be finite"),
])
def test_bad_ranges_are_named(loss_range, loss_diff_range, message):
    with pytest.raises(ValueError, match=message):
        weight_surface(get_curriculum("baseline"), loss_range, loss_diff_range, [0], resolution=2)


def test_bad_resolution_and_weighter():
    for resolution in (1, 1002):  # 1002: a million points a panel is the most (a user's 100000 ran out of memory)
        with pytest.raises(ValueError, match=r"resolution must be an integer in 2\.\.1001"):
            weight_surface(get_curriculum("baseline"), resolution=resolution)
    with pytest.raises(TypeError, match="weight\\(features\\)"):
        weight_surface(object())


def test_parsers():
    assert parse_epochs("0, 10,99") == (0, 10, 99)
    assert parse_range("-5,5", name="--loss-diff-range") == (-5.0, 5.0)
    with pytest.raises(ValueError, match="got 'ten'"):
        parse_epochs("0,ten")
    with pytest.raises(ValueError, match="--loss-range must be given as LO,HI"):
        parse_range("1", name="--loss-range")


def test_a_failed_write_leaves_no_file(tmp_path):
    def fail(tmp):
        Path(tmp).write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "figure.png", fail)
    assert list(tmp_path.iterdir()) == []


def test_a_written_file_gets_the_usual_mode(tmp_path):
    path = write_atomically(tmp_path / "figure.png", lambda tmp: Path(tmp).write_bytes(b"png"))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_importing_visualize_chooses_no_backend():
    code = ("import sys, visualize, visualize.draw, visualize.plot\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n"
            "m = sys.modules.get('matplotlib')\n"
            "assert m is None or m.rcParams._get_backend_or_none() is None\n")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)


def test_a_run_label_names_only_the_options_that_apply_to_it():
    from pathlib import Path

    from visualize.runs import run_labels

    folders = [Path("a"), Path("b"), Path("c")]
    options = [{"mentornet": "none"},  # --learn-* do not apply: read_runs leaves them out
               {"mentornet": "learn", "learn_relabel_confidence": 0.9},
               {"mentornet": "learn", "learn_relabel_confidence": 0.0}]
    assert run_labels(folders, options) == ["mentornet=none", "mentornet=learn, learn_relabel_confidence=0.9",
                                            "mentornet=learn, learn_relabel_confidence=0"]
    # an option only one run has is no difference
    assert run_labels(folders[:2], options[:2]) == ["mentornet=none", "mentornet=learn"]
