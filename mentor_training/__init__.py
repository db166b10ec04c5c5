"""MentorNet: the 2018 architecture, its trainer and its checkpoints.

``from mentor_training import MentorNet, MentorNetConfig, load_mentornet``
"""

from .checkpoint import CheckpointError, build_checkpoint, read_checkpoint, save_checkpoint
from .model import MentorNet, MentorNetConfig, count_trainable_parameters
from .pretrained import list_pretrained, load_mentornet, read_manifest

__all__ = [
    "CheckpointError", "build_checkpoint", "read_checkpoint", "save_checkpoint", "MentorNet",
    "MentorNetConfig", "count_trainable_parameters", "list_pretrained", "load_mentornet", "read_manifest",
]
