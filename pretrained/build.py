"""Rebuild every shipped MentorNet with our own ``learn-curriculum`` and rewrite ``manifest.json``.

    python pretrained/build.py [NAME ...]

Each entry of ``COMMANDS`` is the exact command line that makes one file. The manifest records that
command, the file's sha256, its source, held-out metrics, fidelity, and the StudentNet defaults. The
golden outputs that ``tests/test_pretrained.py`` checks are rewritten as well.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mentor_training.checkpoint import read_checkpoint  # noqa: E402
from mentor_training.pretrained import sha256_of  # noqa: E402
from pretrained import MANIFEST_PATH, PRETRAINED_DIR  # noqa: E402

GOLDEN_PATH = ROOT / "tests" / "golden" / "pretrained_outputs.json"

# name -> learn-curriculum options (the --out is added). mentornet_pd and spcl_linear use --balance
# strata: their graded regions are rare in the grid and the plain recipes under-fit them.
COMMANDS = {
    "baseline_mentornet": "--curriculum baseline",
    "self_paced_mentornet": "--curriculum self_paced",
    "spcl_linear_mentornet": "--curriculum spcl_linear --balance strata --steps 4000",
    "hard_example_mining_mentornet": "--curriculum hard_example_mining",
    "focal_loss_mentornet": "--curriculum focal_loss",
    "mentornet_pd": "--curriculum mentornet_pd --balance strata --steps 6000",
}


def golden_features():
    """Fixed inputs whose outputs every shipped file must keep reproducing."""
    from curricula import MentorFeatures

    loss = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 0.2, 4.0, 1.5, 20.0]
    loss_diff = [-3.0, -0.5, -0.1, 0.1, 0.5, 0.9, 2.0, 4.5, -4.0, 0.3, 0.7, 1.2]
    epoch = [0, 5, 17, 18, 19, 40, 60, 89, 90, 95, 99, 99]
    return MentorFeatures.build(loss, loss_diff, epoch=epoch)


def build(name: str) -> dict:
    out = PRETRAINED_DIR / f"{name}.pt"
    command = f"python cli.py learn-curriculum {COMMANDS[name]} --out pretrained/{name}.pt --force"
    print(f"$ {command}", flush=True)
    subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    checkpoint = read_checkpoint(out)
    metrics = checkpoint["metrics"]
    return {
        "file": out.name,
        "sha256": sha256_of(out),
        "command": command,
        "source": checkpoint["source"],
        "student_defaults": checkpoint["student_defaults"],
        "metrics": {"test": metrics["test"], "fidelity": metrics.get("fidelity"),
                    "fit_seconds": metrics["fit_seconds"]},
    }


def main(names: list[str]) -> None:
    from mentor_training import load_mentornet

    manifest = json.loads(MANIFEST_PATH.read_text()) if MANIFEST_PATH.exists() else {}
    for name in names or list(COMMANDS):
        if name not in COMMANDS:
            raise SystemExit(f"unknown pretrained name {name!r}; known: {', '.join(COMMANDS)}")
        manifest[name] = build(name)
        MANIFEST_PATH.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    golden = {name: load_mentornet(name).weight(golden_features()).tolist() for name in sorted(manifest)}
    GOLDEN_PATH.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    print(f"wrote {MANIFEST_PATH} and {GOLDEN_PATH}")


if __name__ == "__main__":
    main(sys.argv[1:])
