"""``--compile`` on the CPU (inductor with the machine's C++ compiler): a tiny student for a few steps.

Compiling takes tens of seconds even for the MLP, so this file holds the one compiled run; the check
that refuses ``--compile`` where the compiler is missing is in ``tests/test_gpu_paths.py``.
"""

import pandas as pd
import torch
from click.testing import CliRunner
from numpy.testing import assert_allclose

import cli
from student_training.config import StudentConfig
from student_training.models import create_student
from student_training.trainer import prepare_run, train

ARGS = dict(dataset="digits", subset=512, studentnet="mlp", noise=0.4, mentornet="mentornet_pd", batch_size=64,
            max_steps=3, device="cpu")


def test_a_compiled_student_trains_like_the_eager_one_and_saves_plain_weights(tmp_path):
    compiled = prepare_run(StudentConfig(**ARGS, compile=True), tmp_path / "compiled")
    assert isinstance(compiled.forward_model, torch._dynamo.eval_frame.OptimizedModule)
    train(compiled)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in ARGS.items()]
    eager = CliRunner().invoke(cli.cli, ["train-student", *flags, "--out", str(tmp_path / "eager")])
    assert eager.exit_code == 0, eager.output
    ours, reference = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("compiled", "eager"))
    assert ours["step"].tolist() == reference["step"].tolist() == [3]
    for column in ("loss", "weighted_loss", "mean_weight", "train_accuracy"):
        assert_allclose(ours[column], reference[column], rtol=1e-4, err_msg=column)
    state = torch.load(tmp_path / "compiled" / "last.pt", weights_only=True)["model"]
    assert not any(key.startswith("_orig_mod") for key in state)  # the plain module's weights
    student = create_student("mlp", num_classes=10, in_channels=1, image_size=8)
    student.load_state_dict(state)
