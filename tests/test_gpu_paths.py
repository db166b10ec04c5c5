"""The GPU-only branches of student_training, exercised on the CPU where PyTorch allows it.

``tests/test_gpu_coverage.py`` runs this file under coverage and requires every GPU-only line of
``student_training/`` to run here, unless its table (and README's) says why it cannot run on a CPU.
What needs a real GPU is checked by ``benchmarks/gpu_acceptance.py``.

Where a test pretends to have a GPU it replaces only what PyTorch says about the hardware
(``torch.cuda.is_available``, ``device_count``, ``is_bf16_supported``, ``get_device_name``, Triton's
presence, ``set_device``) or the one call that needs a CUDA build (``Tensor.pin_memory``); the code
around it runs as it does on a GPU.
"""

import json
import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from numpy.testing import assert_allclose
from torch import nn

import cli
from curricula.features import WeighterConfig
from mentor_training.pretrained import load_mentornet
from student_training import accelerator, distributed
from student_training.accelerator import Precision, compile_unavailable_reason, needs_pinning, resolve_precision
from student_training.callbacks import Callback
from student_training.config import StudentConfig
from student_training.data_driven import clean_subset_dump
from student_training.loader import DeviceLoader
from student_training.mentormix import MentorMix, draw_mixup_noise
from student_training.trainer import evaluate, prepare_run, resolve_device, train, train_one_epoch
from conftest import assert_one_line_error

QUICK = ["--dataset", "digits", "--subset", "512", "--studentnet", "small_cnn", "--noise", "0.4", "--batch-size",
         "64", "--mentornet", "mentornet_pd", "--device", "cpu"]
SMALL = dict(dataset="digits", subset=512, studentnet="small_cnn", noise=0.4, batch_size=64, mentornet="mentornet_pd",
             device="cpu", epochs=1)


def invoke(*args):
    return CliRunner().invoke(cli.cli, ["train-student", *args], catch_exceptions=False)


@pytest.fixture
def a_gpu(monkeypatch):
    """What PyTorch would say about a GPU: ``a_gpu(bf16=False, name=...)``; returns the calls made."""
    calls = []

    def pretend(*, bf16: bool = True, name: str = "NVIDIA H200", count: int = 1):
        def is_bf16_supported(**kwargs):
            calls.append(("is_bf16_supported", kwargs))
            return bf16

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        return calls

    return pretend


# ------------------------------------------------------------------------------------------ precision


PRECISIONS = [  # asked, device, native bf16 on the GPU, what the run uses (or a fragment of the refusal)
    ("auto", "cpu", None, "fp32"),
    ("bf16", "cpu", None, "bf16"),
    ("fp32", "cpu", None, "fp32"),
    ("fp16", "cpu", None, "is for GPUs"),
    ("auto", "cuda", True, "bf16"),
    ("auto", "cuda", False, "fp16"),
    ("bf16", "cuda", True, "bf16"),
    ("bf16", "cuda", False, "Tesla V100-SXM2-16GB) cannot compute in bf16"),
    ("fp16", "cuda", True, "fp16"),
    ("fp32", "cuda", False, "fp32"),
]


@pytest.mark.parametrize("asked, device, bf16, expected", PRECISIONS)
def test_precision_follows_what_the_device_can_do(a_gpu, asked, device, bf16, expected):
    calls = a_gpu(bf16=bool(bf16), name="Tesla V100-SXM2-16GB") if device == "cuda" else []
    if expected in accelerator.AUTOCAST_DTYPES:
        assert resolve_precision(asked, torch.device(device)) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)):
            resolve_precision(asked, torch.device(device))
    if device == "cuda":  # emulated bf16 (slower than fp32 on a V100) must not count
        assert ("is_bf16_supported", {"including_emulation": False}) in calls


def test_a_torch_without_including_emulation_asks_the_plain_question(monkeypatch):
    def is_bf16_supported(**kwargs):
        if kwargs:
            raise TypeError("is_bf16_supported() got an unexpected keyword argument 'including_emulation'")
        return False

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert accelerator.available_precisions(torch.device("cuda")) == ("fp16", "fp32")


def test_bad_precision_and_compile_are_one_line_usage_errors_before_anything_is_written(tmp_path, monkeypatch, a_gpu):
    out = tmp_path / "run"
    fp16 = invoke(*QUICK, "--precision", "fp16", "--out", str(out))
    assert_one_line_error(fp16, "--precision fp16 is for GPUs", "use --precision bf16 or fp32")
    assert fp16.exit_code == 2 and not out.exists()
    unknown = invoke(*QUICK, "--precision", "fp8", "--out", str(out))
    assert_one_line_error(unknown, "unknown precision 'fp8'", "auto, bf16, fp16, fp32")
    monkeypatch.setattr(accelerator.shutil, "which", lambda name: None)  # no compiler on PATH
    compiled = invoke(*QUICK, "--compile", "--out", str(out))
    assert_one_line_error(compiled, "--compile cannot run on the cpu here: no C++ compiler (g++)", "set CXX")
    assert compiled.exit_code == 2 and not out.exists()
    a_gpu(bf16=False, name="Tesla T4")  # a GPU without native bf16; the refusal comes before any data is loaded
    monkeypatch.setattr("student_training.trainer.resolve_device", lambda name, rank=0: torch.device("cuda", 0))
    t4 = invoke(*QUICK[:-2], "--device", "cuda", "--precision", "bf16", "--out", str(out))
    assert_one_line_error(t4, "this GPU (Tesla T4) cannot compute in bf16", "use --precision fp16 or auto")
    assert t4.exit_code == 2 and not out.exists()


def test_compile_checks_what_inductor_needs_on_each_device(monkeypatch):
    assert compile_unavailable_reason(torch.device("cpu")) is None  # g++ is on this machine's PATH
    assert "Triton" in compile_unavailable_reason(torch.device("cuda"))  # not installed with a CPU build
    monkeypatch.setattr(accelerator, "_has_triton", lambda: True)
    assert compile_unavailable_reason(torch.device("cuda")) is None
    monkeypatch.setenv("CC", "my-cc")
    monkeypatch.setattr(accelerator.shutil, "which", lambda name: None)
    assert "no C compiler (my-cc, gcc, clang)" in compile_unavailable_reason(torch.device("cuda"))
    monkeypatch.setattr("torch._dynamo.is_dynamo_supported", lambda: False)
    assert "TorchDynamo does not support Python" in compile_unavailable_reason(torch.device("cpu"))


def test_bf16_trains_evaluates_and_is_recorded_and_printed(tmp_path):
    out = tmp_path / "run"
    result = invoke(*QUICK, "--epochs", "2", "--precision", "bf16", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "precision: bf16 (autocast; losses, MentorNet weights and percentiles in fp32)" in result.output
    assert json.loads((out / "config.json").read_text())["resolved"]["precision"] == "bf16"
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["callbacks"]["precision"] == {"name": "bf16", "scaler": None}
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "nan" not in rows[-1].split(",")[1]  # two epochs, a finite loss
    default = prepare_run(StudentConfig(**SMALL), tmp_path / "default")
    default.release()
    assert default.precision.name == "fp32" and default.autocast_dtype is None  # auto on the CPU


class AutocastSpy:
    """A mentor that records, at each call, the dtypes it is given and whether autocast is on."""

    def __init__(self, mentor):
        self.mentor, self.calls = mentor, []

    def weight(self, features):
        weights = self.mentor.weight(features)
        self.calls.append({"loss": features.loss.dtype, "loss_diff": features.loss_diff.dtype,
                           "autocast": torch.is_autocast_enabled("cpu"), "weights": weights.dtype})
        return weights


FP32_CALL = {"loss": torch.float32, "loss_diff": torch.float32, "autocast": False, "weights": torch.float32}


@pytest.mark.parametrize("mentormix", [False, True], ids=["mentornet", "mentormix"])
def test_only_the_students_forward_passes_run_under_autocast(tmp_path, mentormix):
    run = prepare_run(StudentConfig(**SMALL, precision="bf16", mentormix=mentormix), tmp_path / "run")
    run.release()
    weighters = [run.mentormix.first_weighter, run.mentormix.second_weighter] if mentormix else [run.weighter]
    spies = []
    for weighter in weighters:
        weighter.mentor = AutocastSpy(weighter.mentor)
        spies.append(weighter.mentor)
    forwards = []
    run.model.register_forward_hook(lambda module, inputs, output: forwards.append(
        (output.dtype, torch.is_autocast_enabled("cpu"), module.training)))
    stats = train_one_epoch(run, 0)
    steps = len(run.train_loader)
    for spy in spies:  # every weighting (both of MentorMix's) saw fp32 losses, outside autocast
        assert spy.calls == [FP32_CALL] * steps
    assert stats.sample_weight.dtype == torch.float32 and stats.loss.dtype == torch.float32
    assert forwards == [(torch.bfloat16, True, True)] * (steps * (2 if mentormix else 1))
    forwards.clear()
    assert 0 <= evaluate(run) <= 1  # evaluation runs the student under bf16 autocast too
    assert forwards and set(forwards) == {(torch.bfloat16, True, False)}


def test_a_data_driven_dump_under_bf16_holds_fp32_losses(tmp_path):
    run = prepare_run(StudentConfig(**SMALL, precision="bf16", clean_subset_fraction=0.2), tmp_path / "run")
    run.release()
    dump = clean_subset_dump(run, 0)
    indices = run.data.clean_subset_indices
    images = run.test_loader.prepare(run.data.train_images[indices])
    run.model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = run.model(images)
    labels = run.noise.noisy_labels[indices]
    exact = F.cross_entropy(logits.double(), labels, reduction="none").numpy()
    assert_allclose(dump.loss, exact, atol=2e-6)  # fp32 from the bf16 logits, written with 6 decimals
    in_bf16 = F.cross_entropy(logits, labels, reduction="none").double().numpy()
    assert abs(in_bf16 - exact).max() > 1e-4  # what a loss computed in bf16 would have been: the test can tell


# ------------------------------------------------------------------------------- fp16 and its scaler


class StopAtStep(Callback):
    """Stops training (as a kill would) when ``step`` is reached, after the previous epoch was saved."""

    name = "stop_at_step"

    def __init__(self, step: int):
        self.step = step

    def on_step(self, run, step):
        if step == self.step:
            raise KeyboardInterrupt


def _train_until(config, out, stop, *, resume=False):
    run = prepare_run(config, out, resume=resume, callbacks=(StopAtStep(stop),) if stop is not None else ())
    try:
        if stop is None:
            train(run)
        else:
            with pytest.raises(KeyboardInterrupt):
                train(run)
    finally:
        run.release()
    return torch.load(out / "last.pt", weights_only=True)["callbacks"]["precision"]


def test_fp16_trains_with_its_scaler_and_resumes_across_precisions(tmp_path, monkeypatch):
    # As on a V100: fp16 is available (the command line refuses it on the CPU; the code path is the same).
    monkeypatch.setattr(accelerator, "available_precisions", lambda device: ("fp16", "fp32", "bf16"))
    out, steps = tmp_path / "run", 7  # 460 training images in batches of 64
    config = StudentConfig(**{**SMALL, "epochs": 3}, precision="fp16")
    saved = _train_until(config, out, stop=steps)  # epoch 1 at fp16
    assert saved["name"] == "fp16" and saved["scaler"]["scale"] > 0 and "_growth_tracker" in saved["scaler"]
    saved = _train_until(config.with_options({"precision": "bf16"}), out, stop=2 * steps, resume=True)
    assert saved == {"name": "bf16", "scaler": None}  # epoch 2 at bf16: the scaler was dropped
    result = invoke("--out", str(out), "--resume", "--precision", "auto")  # epoch 3: auto is fp16 "here"
    assert result.exit_code == 0, result.output
    assert "precision: fp16 (autocast with a gradient scaler; losses, MentorNet weights and percentiles in fp32) " \
           "(until this resume: bf16)" in result.output
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["epoch"] == 3 and saved["callbacks"]["precision"]["name"] == "fp16"
    assert saved["callbacks"]["precision"]["scaler"]["_growth_tracker"] == steps  # a fresh scaler, 7 good steps
    assert (out / "metrics.csv").read_text().count("\n") == 4


def test_the_scaler_skips_a_step_whose_fp16_gradients_overflow():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, labels = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def step(precision):
        with precision.autocast():
            logits = model(inputs)
        assert logits.dtype == torch.float16
        precision.backward_step(F.cross_entropy(logits.float(), labels), optimizer)

    huge = Precision("fp16", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0 ** 40))
    step(huge)  # the scaled gradients overflow fp16: no update, and the scale backs off
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert huge.scaler.get_scale() == 2.0 ** 39
    fine = Precision("fp16", "cpu", torch.amp.GradScaler("cpu", init_scale=1.0))
    step(fine)
    assert not torch.equal(model.weight, before[0]) and fine.scaler.get_scale() == 1.0
    with pytest.raises(ValueError, match="fp16 needs a gradient scaler"):
        Precision("fp16", "cpu")
    with pytest.raises(ValueError, match="only fp16 uses one"):
        Precision("bf16", "cpu", torch.amp.GradScaler("cpu"))


# ------------------------------------------------------------------------------------- pinned copies


class PinnedRecorder:
    """Stands in for a page-locked tensor (``Tensor.pin_memory`` needs a CUDA build) and records the copy."""

    copies: list = []

    def __init__(self, tensor):
        self.tensor = tensor

    def to(self, device, non_blocking=False):
        PinnedRecorder.copies.append((tuple(self.tensor.shape), torch.device(device).type, non_blocking))
        return self.tensor.to(device)


def test_host_to_gpu_copies_are_pinned_and_do_not_make_the_host_wait(monkeypatch):
    host = torch.zeros(3)
    assert needs_pinning(host, torch.device("cuda", 0)) and needs_pinning(host, "cuda")
    assert not needs_pinning(host, "cpu") and not needs_pinning(torch.zeros(3, device="meta"), "cuda")
    # The meta device plays the GPU: the copy path runs, with pin_memory replaced by a recorder.
    monkeypatch.setattr(accelerator, "needs_pinning", lambda tensor, device: tensor.device.type == "cpu"
                        and torch.device(device).type == "meta")
    monkeypatch.setattr(accelerator, "pin", PinnedRecorder)
    monkeypatch.setattr(PinnedRecorder, "copies", [])
    images = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(10, dtype=torch.long), batch_size=5, augment=False, device="meta")
    lam, uniforms = draw_mixup_noise(6, 8.0, torch.Generator().manual_seed(0), device="meta")
    assert loader.images.device.type == "meta" and lam.device.type == uniforms.device.type == "meta"
    assert PinnedRecorder.copies == [((10, 1, 4, 4), "meta", True), ((2, 6), "meta", True)]
    lam, uniforms = draw_mixup_noise(6, 8.0, torch.Generator().manual_seed(0))  # on the CPU: no pinned copy
    assert len(PinnedRecorder.copies) == 2 and lam.shape == uniforms.shape == (6,)
    assert ((lam >= 0) & (lam <= 1) & (uniforms >= 0) & (uniforms < 1)).all()


# ---------------------------------------------------------------------------------- devices and DDP


def test_cuda_means_this_ranks_gpu(a_gpu):
    calls = a_gpu(count=2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert [call for call in calls if call[0] == "set_device"] == [("set_device", 0), ("set_device", 1)]
    with pytest.raises(ValueError, match="local rank 2 has no GPU: only 2 are visible"):
        resolve_device("cuda", local_rank=2)


def test_without_a_gpu_auto_is_the_cpu_and_cuda_sync_bn_are_refused(tmp_path):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    result = invoke(*QUICK, "--sync-bn", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--sync-bn needs CUDA GPUs (SyncBatchNorm has no CPU kernel)")


def test_data_parallel_uses_nccl_and_this_ranks_gpu_on_gpus_gloo_on_cpus():
    gpu = torch.device("cuda", 1)
    assert distributed.process_group_options(gpu) == {"backend": "nccl", "device_id": gpu}
    assert distributed.process_group_options(torch.device("cpu")) == {"backend": "gloo", "device_id": None}
    assert distributed.ddp_device_ids(gpu) == [gpu] and distributed.ddp_device_ids(torch.device("cpu")) is None


# ------------------------------------------------- MentorMix: no host read in a step (the CPU side)


def _mentormix_steps(device: torch.device, *, host_read=None):
    """Two MentorMix steps (clean pass, weighting, mixing, mixed pass, second weighting, backward) with every
    tensor on ``device``; ``host_read`` is called on the losses inside the step, to show what is caught."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(32, 10))
    model = model.to(device)
    mix = MentorMix(load_mentornet("mentornet_pd").to(device), WeighterConfig(example_dropout_rates="0.1,100"),
                    num_classes=10, alpha=8.0, second_reweight=True, total_steps=100, seed=0)
    for index in (0, 50):
        inputs = torch.randn(32, 3, 4, 4, device=device)
        labels = torch.randint(0, 10, (32,), device=device)
        with mix.clean_pass(model):
            losses = F.cross_entropy(model(inputs), labels, reduction="none")
        if host_read is not None:
            host_read(losses)
        batch = mix.mix(inputs, labels, losses, index)
        mix.loss(model(batch.inputs), batch).backward()
    return batch, mix


def test_a_mentormix_step_reads_no_value_back_to_the_host():
    """On the meta device tensors have no values, so any host read (``.item()``, ``float()``, ``.tolist()``,
    ``.cpu()``, a branch on a value, a data-dependent shape) raises: what would stall a GPU fails here.
    The GPU run of the same steps under ``torch.cuda.set_sync_debug_mode("error")`` is in
    benchmarks/gpu_acceptance.py."""
    batch, mix = _mentormix_steps(torch.device("meta"))
    assert batch.inputs.device.type == "meta" and mix.metrics["second_weight_mean"].device.type == "meta"
    for read in (lambda losses: float(losses.mean()), lambda losses: losses.tolist(),
                 lambda losses: losses[losses > 1].sum()):
        with pytest.raises((RuntimeError, NotImplementedError)):  # the guard has teeth
            _mentormix_steps(torch.device("meta"), host_read=read)


def test_mentormix_weights_stay_fp32_inside_a_callers_autocast():
    torch.manual_seed(0)
    inputs, labels, losses = torch.randn(16, 3), torch.randint(0, 4, (16,)), torch.rand(16) * 3
    logits = torch.randn(16, 4)
    results = []
    for autocast in (True, False):
        mix = MentorMix(load_mentornet("mentornet_pd"), num_classes=4, alpha=2.0, second_reweight=True,
                        total_steps=100, seed=3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            batch = mix.mix(inputs, labels, losses, 40)
            loss = mix.loss(logits, batch)
        results.append((batch.mentor_weights, mix.metrics["second_weight_mean"], loss))
    (weights, second, loss), (weights_fp32, second_fp32, loss_fp32) = results
    assert weights.dtype == torch.float32 and torch.equal(weights, weights_fp32)
    assert torch.equal(second, second_fp32) and torch.equal(loss, loss_fp32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no CUDA GPU is")
def test_load_student_refuses_a_cuda_device_without_a_gpu(tmp_path):
    """Review: load_student(..., device="cuda") on a CPU machine raised an AssertionError from torch."""
    from student_training.inference import load_student

    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        load_student(tmp_path, device="cuda")  # refused before the folder is read
