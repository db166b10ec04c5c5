"""Curricula from outside the toolkit: entry-point packages, ``--plugin FILE``, and one-line errors for
plugins and curricula that break the rules."""

import textwrap
import warnings

import pytest
from click.testing import CliRunner

import cli
from curricula import get_curriculum, list_curricula
from curricula.plugins import PluginWarning, load_entry_point_plugins, load_plugin_file
from conftest import assert_one_line_error

GOOD_MODULE = '''
from dataclasses import dataclass
import torch
from curricula import register_curriculum

@register_curriculum("{name}")
@dataclass(frozen=True)
class Plugged:
    temperature: float = 0.5

    def weight(self, features):
        return torch.sigmoid(-features.loss_diff / self.temperature)
'''

BAD_WEIGHTS = '''
from dataclasses import dataclass
import torch
from curricula import register_curriculum

@register_curriculum("too_big")
@dataclass(frozen=True)
class TooBig:
    def weight(self, features):
        return features.loss  # up to 29: outside [0, 1]

@register_curriculum("wrong_shape")
@dataclass(frozen=True)
class WrongShape:
    def weight(self, features):
        return torch.ones(len(features.loss), 2)
'''


@pytest.fixture
def scratch(isolated_plugins):
    """A registry copy and a fresh plugin state; plugin modules imported by the test are forgotten."""
    return isolated_plugins


def make_distribution(root, dist, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed-looking distribution: modules plus ``DIST-0.1.dist-info`` with its entry points."""
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mentornet.curricula]\n{lines}")


def invoke(*args):
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)



def test_entry_point_plugin_registers_and_list_shows_it(scratch, tmp_path):
    make_distribution(tmp_path, "ep_plugin_pkg", {"mine": "ep_plugin_good"},
                      {"ep_plugin_good": GOOD_MODULE.format(name="ep_soft")})
    scratch.syspath_prepend(str(tmp_path))
    assert "ep_soft" in list_curricula()  # loaded lazily on the first read
    assert load_entry_point_plugins() == []  # and only once
    assert get_curriculum("ep_soft", temperature=0.25).temperature == 0.25
    result = invoke("list")
    assert result.exit_code == 0 and "ep_soft" in result.output and "temperature=0.5" in result.output


def test_broken_entry_point_warns_in_one_line_and_the_rest_works(scratch, tmp_path):
    make_distribution(tmp_path, "ep_plugin_pkg", {"good": "ep_plugin_fine", "broken": "ep_plugin_broken:thing"},
                      {"ep_plugin_fine": GOOD_MODULE.format(name="ep_fine"),
                       "ep_plugin_broken": "import a_module_that_is_not_installed\n"})
    scratch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginWarning) as caught:
        names = list_curricula()
    assert "ep_fine" in names and "focal_loss" in names
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "'broken'" in messages[0] and "ModuleNotFoundError" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already loaded: no second warning
        assert invoke("list").exit_code == 0


def test_entry_point_that_takes_a_registered_name_is_a_one_line_error(scratch, tmp_path):
    make_distribution(tmp_path, "ep_plugin_pkg", {"clash": "ep_plugin_clash"},
                      {"ep_plugin_clash": GOOD_MODULE.format(name="focal_loss")})
    scratch.syspath_prepend(str(tmp_path))
    assert_one_line_error(invoke("list"), "'clash'", "'focal_loss' is already registered")


def test_plugin_file_option_registers_for_the_command(scratch, tmp_path):
    path = tmp_path / "my_curricula.py"
    path.write_text(GOOD_MODULE.format(name="file_soft"))
    result = invoke("--plugin", str(path), "list")
    assert result.exit_code == 0 and "file_soft" in result.output


def test_an_edited_plugin_file_loaded_again_replaces_its_curricula(scratch, tmp_path):
    """Report: in a notebook, loading an edited plugin file again kept the old formula, and there was no way to
    replace a curriculum but restarting the kernel."""
    from curricula import MentorFeatures, get_curriculum

    path = tmp_path / "edit_me.py"
    path.write_text(GOOD_MODULE.format(name="edit_me"))
    name = load_plugin_file(path)
    features = MentorFeatures.build([1.0], [0.5], epoch=0)
    before = get_curriculum("edit_me").weight(features).tolist()
    assert load_plugin_file(path) == name  # unchanged: not run again
    path.write_text(GOOD_MODULE.format(name="edit_me").replace("features.loss_diff", "-features.loss_diff"))
    assert load_plugin_file(path) == name
    after = get_curriculum("edit_me").weight(features).tolist()
    assert after != before
    path.write_text("raise RuntimeError('typo')\n")  # a broken edit: an error, and the last good version stays
    with pytest.raises(ValueError, match="RuntimeError: typo"):
        load_plugin_file(path)
    assert get_curriculum("edit_me").weight(features).tolist() == after


def test_plugin_file_errors_are_one_line(scratch, tmp_path):
    assert_one_line_error(invoke("--plugin", str(tmp_path / "missing.py"), "list"), "does not exist")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert_one_line_error(invoke("--plugin", str(broken), "list"), "broken.py", "RuntimeError: boom")
    clash = tmp_path / "clash.py"
    clash.write_text(GOOD_MODULE.format(name="self_paced"))
    assert_one_line_error(invoke("--plugin", str(clash), "list"), "'self_paced' is already registered")
    with pytest.raises(ValueError, match="must be a .py file"):
        load_plugin_file(tmp_path)  # a folder


@pytest.mark.parametrize("name, fragment", [("too_big", "must lie in [0, 1]"), ("wrong_shape", "shape")])
def test_bad_weights_fail_once_in_one_line_before_learning_or_plotting(scratch, tmp_path, name, fragment):
    path = tmp_path / "bad.py"
    path.write_text(BAD_WEIGHTS)
    out = tmp_path / "m.pt"
    result = invoke("--plugin", str(path), "learn-curriculum", "--curriculum", name, "--out", str(out))
    assert_one_line_error(result, f"curriculum {name!r}", fragment)
    assert not out.exists()
    figure = tmp_path / "m.png"
    result = invoke("--plugin", str(path), "plot", "--curriculum", name, "--out", str(figure))
    assert_one_line_error(result, f"curriculum {name!r}", fragment)
    assert not figure.exists()


TYPED_MODULE = '''
from dataclasses import dataclass
from typing import Optional
import torch
from curricula import register_curriculum

@register_curriculum("typed")
@dataclass(frozen=True)
class Typed:
    temperature: Optional[float] = 0.5
    label: str = "a"
    items: tuple = (1, 2)

    def weight(self, features):
        return torch.sigmoid(-features.loss_diff / (self.temperature or 1.0))

@register_curriculum("needs_t")
@dataclass(frozen=True)
class NeedsT:
    t: float

    def weight(self, features):
        return torch.sigmoid(-features.loss_diff / self.t)
'''


def test_p_converts_optional_and_str_parameters_and_refuses_other_types(scratch, tmp_path):
    """Report: -p temperature=0.3 on an Optional[float] field arrived as the string '0.3' (a TypeError in weight());
    a tuple field was stored as the string '1,2'."""
    from curricula import parse_params

    path = tmp_path / "typed.py"
    path.write_text(TYPED_MODULE)
    load_plugin_file(path)
    assert parse_params("typed", ["temperature=0.3", "label=b"]) == {"temperature": 0.3, "label": "b"}
    assert parse_params("typed", ["temperature=none"]) == {"temperature": None}
    with pytest.raises(ValueError, match="is a tuple, which a key=value text cannot give"):
        parse_params("typed", ["items=1,2"])
    out = tmp_path / "typed.pt"
    result = invoke("--plugin", str(path), "learn-curriculum", "--curriculum", "typed", "-p", "temperature=0.3",
                    "--steps", "5", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert_one_line_error(invoke("--plugin", str(path), "learn-curriculum", "--curriculum", "typed", "-p", "items=3",
                                 "--steps", "5", "--out", str(tmp_path / "t2.pt")), "is a tuple")


POSTPONED_MODULE = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import Literal, Optional
import torch
from curricula import register_curriculum

@register_curriculum("postponed")
@dataclass(frozen=True)
class Postponed:
    temperature: Optional[float] = 0.5
    k: int = 1
    mode: Literal["soft", "hard"] = "soft"
    extra: NotDefinedAnywhere = None  # noqa: F821 - one annotation that does not resolve

    def weight(self, features):
        return torch.sigmoid(-features.loss_diff / (self.temperature or 1.0))
'''


def test_each_parameter_is_converted_on_its_own_annotation(scratch, tmp_path):
    """Review: one annotation that did not resolve made every parameter text ('0.3', 'none' as strings)."""
    from curricula import parse_params

    path = tmp_path / "postponed.py"
    path.write_text(POSTPONED_MODULE)
    load_plugin_file(path)
    assert parse_params("postponed", ["temperature=0.3", "k=2", "mode=hard"]) == \
        {"temperature": 0.3, "k": 2, "mode": "hard"}
    assert parse_params("postponed", ["temperature=none"]) == {"temperature": None}
    with pytest.raises(ValueError, match="expects one of soft, hard"):
        parse_params("postponed", ["mode=medium"])


def test_a_parameter_without_default_is_listed_as_required_and_asked_for(scratch, tmp_path):
    """Report: list printed t=<dataclasses._MISSING_TYPE object at 0x...>, and learning it without -p said
    'NeedsT.__init__() missing 1 required positional argument'."""
    path = tmp_path / "typed.py"
    path.write_text(TYPED_MODULE)
    result = invoke("--plugin", str(path), "list")
    assert "needs_t" in result.output and "t=(required)" in result.output and "MISSING" not in result.output
    assert_one_line_error(invoke("--plugin", str(path), "learn-curriculum", "--curriculum", "needs_t", "--steps", "5",
                                 "--out", str(tmp_path / "n.pt")), "'needs_t' has no default for t", "-p t=VALUE")
    assert not (tmp_path / "n.pt").exists()
    assert get_curriculum("needs_t", t=2.0).t == 2.0


def test_a_parameter_may_not_be_called_name(scratch):
    """Report: a field `name` hid the registry's class attribute, so its checkpoint's source named the field's value
    and plot --mentornet failed with "got multiple values for argument 'name'"."""
    from dataclasses import dataclass

    from curricula import register_curriculum

    with pytest.raises(TypeError, match="may not be called 'name'"):
        @register_curriculum("named")
        @dataclass(frozen=True)
        class Named:
            name: str = "x"

            def weight(self, features):
                return features.loss * 0
    assert "named" not in list_curricula()


def test_plotting_a_mentornet_alone_does_not_need_its_curriculum(scratch, tmp_path):
    """Report: plot --mentornet FILE of a MentorNet fitted to a plugin curriculum failed with 'unknown curriculum'
    without --plugin: the curriculum was rebuilt only for the title."""
    path = tmp_path / "plugged.py"
    path.write_text(GOOD_MODULE.format(name="plugged"))
    out = tmp_path / "plugged.pt"
    assert invoke("--plugin", str(path), "learn-curriculum", "--curriculum", "plugged", "--steps", "5",
                  "--out", str(out)).exit_code == 0
    scratch_registry = __import__("curricula.registry", fromlist=["_REGISTRY"])._REGISTRY
    del scratch_registry["plugged"]  # as in a new process without --plugin
    figure = tmp_path / "alone.png"
    result = invoke("plot", "--mentornet", str(out), "--kind", "heatmap", "--epochs", "10", "--out", str(figure))
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 0
    from visualize.plot import _mentornet_origin

    assert _mentornet_origin({"type": "curriculum", "name": "plugged", "params": {"temperature": 0.5}}) \
        == "fitted to plugged (temperature=0.5)"


def test_plugin_given_after_the_command_says_where_it_goes():
    result = invoke("list", "--plugin", "x.py")
    assert_one_line_error(result, "No such option", "--plugin goes before the command")
