"""Shipped MentorNet checkpoints and ``manifest.json``, which gives each one's file, sha256, source,
held-out metrics and the exact command that made it. Load them with
``mentor_training.load_mentornet(name)``."""

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = PRETRAINED_DIR / "manifest.json"
