"""``python cli.py plot`` through click's CliRunner: the files it writes, and the one-line errors it gives."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageSequence

import cli
from curricula import list_curricula
from visualize import draw
from conftest import assert_one_line_error

FAST = ["--resolution", "21"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from mentor_training.learn import learn_curriculum

    path = tmp_path_factory.mktemp("mentornet") / "self_paced.pt"
    learn_curriculum(out=path, curriculum="self_paced", steps=150, sample_size=5_000)
    return path


def run(*args):
    return CliRunner().invoke(cli.cli, ["plot", *map(str, args)])


def assert_ok(result):
    assert result.exit_code == 0, result.output
    return result


def assert_varied_image(path, size=None):
    with Image.open(path) as image:
        if size is not None:
            assert image.size == size
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 10  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20



def test_surface_png_has_the_requested_pixel_size(tmp_path):
    out = tmp_path / "pd.png"
    result = assert_ok(run("--curriculum", "mentornet_pd", "--epochs", "10,50,95", "--width", "900",
                           "--height", "400", "--out", out, *FAST))
    assert f"wrote {out}" in result.output
    assert_varied_image(out, (900, 400))
    assert [p.name for p in tmp_path.iterdir()] == ["pd.png"]  # no temporary file left behind


def test_heatmap_with_the_default_2018_epochs_and_size(tmp_path):
    out = tmp_path / "focal.png"
    assert_ok(run("--curriculum", "focal_loss", "-p", "gamma=3", "--kind", "heatmap", "--dpi", "50",
                  "--out", out, *FAST))
    width, height = draw.surface_figure_size(13, "heatmap")
    assert_varied_image(out, (round(width * 50), round(height * 50)))


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_the_extension_chooses_the_format(tmp_path, suffix, magic):
    out = tmp_path / f"spcl{suffix}"
    assert_ok(run("--curriculum", "spcl_linear", "--kind", "heatmap", "--epochs", "0", "--out", out, *FAST))
    assert out.read_bytes().startswith(magic)


def test_a_mentornet_is_drawn_and_compared_with_its_curriculum(tmp_path, checkpoint):
    surface = tmp_path / "mentornet.png"
    assert_ok(run("--mentornet", checkpoint, "--epochs", "0,99", "--width", "600", "--height", "300",
                  "--out", surface, *FAST))
    assert_varied_image(surface, (600, 300))
    compare = tmp_path / "compare.png"
    result = assert_ok(run("--mentornet", checkpoint, "--compare", "--width", "700", "--height", "600",
                           "--out", compare, *FAST))
    assert "|MentorNet - self_paced| over the plotted grid: mean" in result.output
    assert_varied_image(compare, (700, 600))


def test_gallery_of_every_curriculum(tmp_path):
    out = tmp_path / "gallery.png"
    assert_ok(run("--curriculum", "all", "--dpi", "40", "--out", out, *FAST))
    width, height = draw.gallery_figure_size(len(list_curricula()), 3, "heatmap")
    assert_varied_image(out, (round(width * 40), round(height * 40)))


def test_gif_has_one_frame_per_epoch(tmp_path):
    out = tmp_path / "spcl.gif"
    assert_ok(run("--curriculum", "mentornet_pd", "--animate", out, "--frames", "4", "--width", "320",
                  "--height", "240", "--kind", "heatmap", *FAST))
    with Image.open(out) as image:
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    assert len(frames) == 4
    assert frames[0].size == (320, 240)
    assert_varied_image(out)
    # Frames differ: epoch 0 is the baseline phase, epoch 99 the SPCL phase.
    assert np.abs(np.asarray(frames[0], float) - np.asarray(frames[-1], float)).mean() > 1


def test_out_and_animate_together(tmp_path):
    out, gif = tmp_path / "sp.png", tmp_path / "sp.gif"
    result = assert_ok(run("--curriculum", "self_paced", "--epochs", "50", "--out", out, "--animate", gif,
                           "--frames", "2", "--width", "200", "--height", "200", *FAST))
    assert out.is_file() and gif.is_file()
    assert f"wrote {gif}" in result.output


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "sp.png"
    out.write_bytes(b"keep me")
    assert_one_line_error(run("--curriculum", "self_paced", "--epochs", "0", "--out", out, *FAST),
                          "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    assert_ok(run("--curriculum", "self_paced", "--epochs", "0", "--out", out, "--force", *FAST))
    assert_varied_image(out)


def test_the_cli_draws_with_agg(tmp_path):
    import matplotlib

    assert_ok(run("--curriculum", "baseline", "--epochs", "0", "--out", tmp_path / "b.png", *FAST))
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("args, fragments", [
    (["--curriculum", "nope"], ["unknown curriculum 'nope'", "self_paced"]),
    (["--mentornet", "no_such_mentornet"], ["'no_such_mentornet' is neither"]),
    (["--curriculum", "self_paced", "--epochs", "0,100"], ["epoch 100 is outside 0..99"]),
    (["--curriculum", "self_paced", "--epochs", "-1"], ["epoch -1 is outside 0..99"]),
    (["--curriculum", "self_paced", "--loss-range", "3,3"], ["loss range 3,3 is empty"]),
    (["--curriculum", "self_paced", "--loss-diff-range", "1,-1"], ["loss_diff range 1,-1 is empty"]),
    (["--curriculum", "self_paced", "--loss-range", "0"], ["--loss-range must be given as LO,HI"]),
    (["--curriculum", "focal_loss", "-p", "gamma=-1"], ["gamma must be a finite number > 0"]),
    (["--curriculum", "all", "-p", "gamma=2"], ["not to 'all'"]),
    (["--curriculum", "self_paced", "--compare"], ["--compare needs a MentorNet"]),
    # user review: inf passed the range checks (an OverflowError, a GIF without frame durations), and a resolution
    # of 100000 ran out of memory
    (["--curriculum", "self_paced", "--dpi", "inf"], ["dpi must be a finite number > 0"]),
    (["--curriculum", "self_paced", "--animate", "{tmp}/a.gif", "--fps", "inf"], ["fps must be a finite number > 0"]),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, args, fragments):
    result = run(*[str(arg).format(tmp=tmp_path) for arg in args], "--out", tmp_path / "x.png", *FAST)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_a_resolution_beyond_1001_is_refused(tmp_path):
    """User review: --resolution 100000 ran out of memory after the work had started."""
    assert_one_line_error(run("--curriculum", "self_paced", "--resolution", "100000", "--out", tmp_path / "x.png"),
                          "--resolution", "1001")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, name, fragment", [
    ("--out", "x.jpg", "unsupported extension '.jpg' for --out"),
    ("--out", "x", "unsupported extension '(none)'"),
    ("--animate", "x.png", "unsupported extension '.png' for --animate"),
    ("--out", "missing/x.png", "output folder"),
    ("--animate", "missing/x.gif", "does not exist"),
    ("--out", "a_file/x.png", "output folder"),  # user review: a file there was said "does not exist"
])
def test_bad_output_paths(tmp_path, option, name, fragment):
    if name.startswith("a_file/"):
        (tmp_path / "a_file").write_text("not a folder")
        fragment += f" {tmp_path / 'a_file'} is a file, not a folder"
    before = sorted(tmp_path.iterdir())
    result = run("--curriculum", "self_paced", option, tmp_path / name, *FAST)
    assert_one_line_error(result, fragment)
    assert sorted(tmp_path.iterdir()) == before


def test_no_output_or_no_weighter_is_an_error(tmp_path):
    assert_one_line_error(run("--curriculum", "self_paced"), "--out")
    result = run("--out", tmp_path / "x.png")
    assert result.exit_code != 0 and "give exactly one of" in result.output


# --- options the plot would not use are refused, not ignored (user review) ------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = CliRunner().invoke(cli.cli, ["train-student", "--dataset", "digits", "--studentnet", "mlp", "--epochs",
                                          "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("option, value", [
    ("--resolution", "5"), ("--loss-range", "0,3"), ("--loss-diff-range", "-1,1"), ("--fps", "3"),
    ("--frames", "3"), ("--kind", "heatmap"), ("--epochs", "10"), ("--compare", None),
])
def test_run_refuses_each_surface_option_it_would_ignore(tmp_path, finished_run, option, value):
    out = tmp_path / "curves.png"
    result = run("--run", finished_run, option, *([value] if value is not None else []), "--out", out)
    assert_one_line_error(result, "--run draws the training curves", f"drop {option}")
    assert result.exit_code == 2
    assert not out.exists()


def test_run_names_every_ignored_option_and_accepts_those_it_uses(tmp_path, finished_run):
    out = tmp_path / "curves.png"
    assert_one_line_error(run("--run", finished_run, "--resolution", "5", "--fps", "3", "--out", out),
                          "drop --resolution and --fps")
    # The options --run uses, and those left at their defaults, are accepted.
    assert_ok(run("--run", finished_run, "--width", "400", "--height", "300", "--dpi", "50", "--out", out))
    assert_varied_image(out, (400, 300))


@pytest.mark.parametrize("args, fragment", [
    (["--fps", "3"], "--fps applies to the animation; add --animate FILE.gif"),
    (["--frames", "3"], "--frames applies to the animation"),
    (["--frames", "3", "--fps", "3"], "--frames and --fps apply to the animation"),
])
def test_animation_options_without_animate_are_refused(tmp_path, args, fragment):
    out = tmp_path / "q.png"
    result = run("--curriculum", "self_paced", *args, "--out", out, *FAST)
    assert_one_line_error(result, fragment)
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_epochs_without_out_are_refused_since_the_animation_ignores_them(tmp_path):
    result = run("--curriculum", "self_paced", "--animate", tmp_path / "a.gif", "--epochs", "10", *FAST)
    assert_one_line_error(result, "--epochs picks the panels of --out", "drop --epochs")
    assert list(tmp_path.iterdir()) == []


# --- a MentorNet learned in a run is titled by what its checkpoint records (user review) ---------------------

def svg_text(path) -> str:
    """The text of a matplotlib SVG: it draws glyphs as paths, each text preceded by a comment holding it."""
    import re

    return " ".join(re.findall(r"<!-- (.*?) -->", path.read_text(), flags=re.S))


def learned_in_run_copy(folder, *, uses_loss_diff: bool):
    """The shipped mentornet_learned.pt (a run's mentornets/epoch_95.pt), as a run would leave it."""
    import torch
    from mentor_training.pretrained import pretrained_path

    checkpoint = torch.load(pretrained_path("mentornet_learned"), weights_only=True)
    checkpoint["model_config"]["uses_loss_diff"] = uses_loss_diff
    path = folder / "run" / "mentornets" / "epoch_95.pt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return path


def test_a_mentornet_learned_in_a_run_is_titled_as_such_and_flat_in_loss_diff(tmp_path):
    mentornet = learned_in_run_copy(tmp_path, uses_loss_diff=False)
    out = tmp_path / "learned.svg"
    assert_ok(run("--mentornet", mentornet, "--resolution", "11", "--out", out))
    text = svg_text(out)
    assert "MentorNet epoch_95.pt, learned in run learned_seed0 at progress epoch 95" in text
    assert "(fashion-mnist, noise 0.4, 976 rows)" in text
    assert "its weight does not depend on loss_diff (fitted on the loss alone)" in text
    assert "data-driven" not in text and "percentile ?" not in text


def test_a_learned_mentornet_that_uses_loss_diff_gets_no_flat_note(tmp_path):
    out = tmp_path / "learned.svg"
    assert_ok(run("--mentornet", learned_in_run_copy(tmp_path, uses_loss_diff=True), "--epochs", "50",
                  "--resolution", "11", "--out", out))
    text = svg_text(out)
    assert "learned in run" in text and "does not depend on loss_diff" not in text


def test_the_shipped_learned_mentornet_animates_with_its_long_title(tmp_path):
    out = tmp_path / "learned.gif"
    result = assert_ok(run("--mentornet", "mentornet_learned", "--animate", out, "--frames", "2", "--kind", "heatmap",
                           "--width", "320", "--height", "240", *FAST))
    assert f"wrote {out}" in result.output
    assert_varied_image(out, (320, 240))
