"""docs/new-curriculum.md runs as written: every python, bash block in order, in a scratch folder."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "new-curriculum.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_MARKER = re.compile(r"^# (\S+\.py)\n")


def tutorial_blocks() -> list[tuple[str, str]]:
    return [(language, body) for language, body in BLOCK.findall(TUTORIAL.read_text())]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{shlex.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _command(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[:2] == ["python", "cli.py"], f"tutorial commands run cli.py, got {line!r}"
    return [sys.executable, str(ROOT / "cli.py"), *words[2:]]


def test_the_tutorial_has_the_four_steps():
    languages = [language for language, _ in tutorial_blocks()]
    assert languages.count("python") >= 2 and languages.count("bash") >= 4
    commands = "\n".join(body for language, body in tutorial_blocks() if language == "bash")
    for needed in ("learn-curriculum", "plot --mentornet soft.pt --compare", "train-student", "--plugin"):
        assert needed in commands


def test_every_block_runs_in_order(tmp_path):
    outputs = []
    for language, body in tutorial_blocks():
        marker = FILE_MARKER.match(body)
        if language == "python" and marker:
            (tmp_path / marker.group(1)).write_text(body)
        elif language == "python":
            outputs.append(_run([sys.executable, "-c", body], tmp_path).stdout)
        elif language == "bash":
            for line in filter(None, (line.strip() for line in body.splitlines())):
                outputs.append(_run(_command(line), tmp_path).stdout)
    assert "soft_threshold" in outputs[0]  # `list` shows the plugin's curriculum
    for made in ("soft.pt", "soft_compare.png", "soft.png", "soft_run/metrics.csv", "soft_api.pt",
                 "soft_api_compare.png"):
        assert (tmp_path / made).is_file(), made
    assert "MentorNet" in outputs[-1] and "weighted torch.Size([128])" in outputs[-1]
