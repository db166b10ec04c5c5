"""GPU acceptance: everything a GPU must show, in one run of a few minutes, with results kept as they come.

    make data        # once, where Debian's Fashion-MNIST is: copies its idx files into data/fashion-mnist/
    python benchmarks/gpu_acceptance.py --data-dir data --out runs/gpu [--budget-s 360]
    python benchmarks/gpu_acceptance.py --smoke --out runs/gpu_smoke      # the same script on a CPU, in seconds

Parts, in this order, each in its own process (a part that fails or hangs cannot stop the others; it is
killed at its time limit), sharing ``--budget-s`` (what a part leaves unused goes to the later ones):

1. ``environment``: the card, its memory and compute capability, torch, CUDA, cuDNN and driver versions,
   the precisions it has, and whether ``--compile`` can run;
2. ``checks``: MentorMix's step and the weighting step under ``torch.cuda.set_sync_debug_mode("error")``
   (they never wait for the host), the host synchronisations of one training epoch at each precision and
   where they happen, the MentorNet weighting in fp32 under bf16 autocast, MentorMix's draws equal on the
   CPU and the GPU, a pinned copy, and a run resumed at another precision (fp16 with its scaler, then bf16);
3. ``speed``: images/s, step time, the weighting's share of a step and peak GPU memory of every student,
   eager at each precision the card has (plus the minimal hand-written loop at the auto precision);
4. ``end_to_end``: ``train-student`` on the full Fashion-MNIST (60,000 images) at 40% symmetric noise,
   the baseline and ``mentornet_pd`` side by side with ``preact_resnet18``, as many epochs as the budget
   allows (planned from the speed part's images/s), with both accuracy curves;
5. ``compile``: ``--compile`` at the auto precision, students in order of compile cost, while time allows.

Under ``--out DIR``: ``acceptance.md`` (every table, rewritten after each result), ``environment.json``,
``checks.csv``, ``speed.csv``, ``end_to_end.csv`` (the curves), ``end_to_end_summary.csv``, ``parts.csv``,
``log.txt`` (each part's output) and ``runs/`` (each end-to-end run's log, ``config.json`` and ``metrics.csv``; its
checkpoints stay in a scratch folder, to keep the results small). A timeout keeps what was written.

Needs no network and installs nothing: a Python with torch (CUDA build), numpy, pandas, scipy and click
(the end-to-end part runs ``cli.py``); a missing package stops the script at once with its name.
``--smoke`` runs every part on the CPU with tiny data: one step per timing on synthetic 8x8 images (bf16,
emulated on a CPU, for ``small_cnn`` and ``mlp`` only), the end-to-end runs with ``small_cnn`` on 300
images of the bundled digits for 2 epochs, and ``mlp`` for the compile part; CI runs it
(``tests/test_gpu_acceptance.py``).
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

STARTED = time.time()  # the budget counts from here: torch's import and the data check are inside it
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PARTS = ("environment", "checks", "speed", "end_to_end", "compile")
ENVIRONMENT_MIN_S = 45  # importing inductor for the compile probe and nvidia-smi can take half a minute
SHARES = {"environment": 0.04, "checks": 0.13, "speed": 0.30, "end_to_end": 0.38, "compile": 0.15}
GRACE_S = 30  # a part past its deadline is killed this much later
STOP_RUNS_S = 15  # the end-to-end runs are stopped this long before the part's deadline
STUDENTS = ("small_cnn", "mlp", "resnet32", "preact_resnet18", "resnet101", "inception")
COMPILE_ORDER = ("mlp", "small_cnn", "inception", "preact_resnet18", "resnet32", "resnet101")  # cheapest first
COMPILE_ESTIMATE_S = {"mlp": 30, "small_cnn": 45, "inception": 45, "preact_resnet18": 90, "resnet32": 90,
                      "resnet101": 150}  # compile plus timing on a GPU; a student is skipped when less is left
GPU = {"batch": 128, "steps": {"resnet101": 12, "resnet32": 20, "preact_resnet18": 30}, "default_steps": 40,
       "repeats": 2, "image_size": 28, "e2e_student": "preact_resnet18", "max_epochs": 40}
SMOKE = {"batch": 4, "steps": {}, "default_steps": 1, "repeats": 1, "image_size": 8, "e2e_student": "small_cnn",
         "max_epochs": 2}
SMOKE_EVERY_PRECISION = ("small_cnn", "mlp")  # on a CPU bf16 is emulated: the big students are timed at fp32 only
E2E_RUNS = (("baseline", "none"), ("mentornet_pd", "mentornet_pd"))
TABLE_FILES = ("environment.json", "parts.csv", "checks.csv", "speed.csv", "end_to_end.csv",
               "end_to_end_summary.csv", "end_to_end.txt", "current.txt", "acceptance.md", "log.txt")
REQUIRED = ("torch", "numpy", "pandas", "scipy", "click")


def check_dependencies() -> None:
    """Stop at once, with one line naming the package, if this Python lacks one (nothing is installed)."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"Error: gpu_acceptance.py needs the Python packages {', '.join(missing)}, missing from "
                 f"{sys.executable}; it installs nothing and needs no network: run it with a Python that has "
                 f"{', '.join(REQUIRED)}")


# -------------------------------------------------------------------------------------------- results


class Results:
    """The files under ``--out``: rows appended to CSV tables, and ``acceptance.md`` rendered from them."""

    def __init__(self, out: Path):
        self.out = out

    def add(self, table: str, row: dict) -> None:
        path = self.out / f"{table}.csv"
        fresh = not path.exists()
        columns = list(row)
        if not fresh:
            with path.open(newline="") as handle:
                columns = next(csv.reader(handle))  # the header's order
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if fresh:
                writer.writeheader()
            writer.writerow(row)
        print(f"{table}: {row}", flush=True)
        self.render()

    def rows(self, table: str) -> list[dict]:
        path = self.out / f"{table}.csv"
        if not path.exists():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def now_doing(self, text: str | None) -> None:
        """What is running now (shown in acceptance.md, so a killed part says what it was doing)."""
        path = self.out / "current.txt"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
        self.render()

    def render(self) -> None:
        try:
            text = render_markdown(self)
        except Exception as error:  # noqa: BLE001 - a report that cannot be drawn must not stop a part
            text = f"# GPU acceptance\n\nThe report could not be drawn ({_one_line(error)}); the CSV files hold it.\n"
        temporary = self.out / "acceptance.md.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.out / "acceptance.md")


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "(none yet)\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(results: Results) -> str:
    env_path = results.out / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    title = env.get("card", "(environment not recorded)")
    parts = [f"# GPU acceptance: {title}\n",
             "torch {torch}, CUDA {cuda}, cuDNN {cudnn}, driver {driver}; compute capability {capability}, "
             "{memory_gib} GiB; precisions {precisions}; --compile: {compile}; mode {mode}, budget {budget_s} s; "
             "host CPU {cpu} ({cpu_count} threads); cuDNN autotuning {cudnn_benchmark}, TF32 in matmul "
             "{tf32_matmul} and in cuDNN {tf32_cudnn}\n"
             .format_map(_Missing(env)) if env else ""]
    current = results.out / "current.txt"
    if current.exists():
        parts.append(f"**In progress (or cut off by a time limit):** {current.read_text()}\n")
    parts += ["## Parts\n", _table(results.rows("parts")),
              "## Checks\n", _table(results.rows("checks")),
              "## Speed\n", "Images/s of our training loop (MentorNet weighting, per-sample bookkeeping, learning-rate "
              "schedule) on one epoch of `steps` batches, best of the repeats after a warm-up epoch; `weighting "
              "share` is one `MentorWeighter` call over one step; `minimal img/s` is a hand-written loop at the "
              "auto precision.\n\n", _table(results.rows("speed")),
              "## End to end\n", _end_to_end_text(results)]
    return "\n".join(parts)


def _cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "/")


class _Missing(dict):
    def __missing__(self, key):
        return "?"


def _end_to_end_text(results: Results) -> str:
    curves = results.rows("end_to_end")
    summary = results.rows("end_to_end_summary")
    names = [name for name, _ in E2E_RUNS]
    by_epoch: dict[int, dict] = {}
    for row in curves:
        line = by_epoch.setdefault(int(row["epoch"]), {"epoch": int(row["epoch"])})
        for column in ("test_accuracy", "val_accuracy", "detector_auc"):
            line[f"{row['run']} {column.replace('_accuracy', '').replace('detector_', '')}"] = row[column]
    columns = ["epoch"] + [f"{name} {kind}" for name in names for kind in ("test", "val", "auc")]
    header = (results.out / "end_to_end.txt").read_text() if (results.out / "end_to_end.txt").exists() else ""
    return (header + "\n" + _table([by_epoch[e] for e in sorted(by_epoch)], columns) + "\nFinal:\n\n"
            + _table(summary))


# ------------------------------------------------------------------------------------- orchestration


def orchestrate(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLE_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "runs", ignore_errors=True)
    results = Results(out)
    start = STARTED
    deadline = start + args.budget_s
    parts = [part for part in PARTS if part in args.parts.split(",")]
    for index, part in enumerate(parts):
        now = time.time()
        shares_left = sum(SHARES[p] for p in parts[index:])
        allotted = max(0.0, (deadline - now) * SHARES[part] / shares_left)
        if part == "environment" and not args.smoke:  # it names the card: never cut short by a small share
            allotted = min(max(allotted, ENVIRONMENT_MIN_S), max(0.0, deadline - now))
        if allotted < (3 if args.smoke else 10):
            results.add("parts", {"part": part, "status": "skipped: no time left", "seconds": 0, "limit_s": 0})
            continue
        status = _run_part(part, args, now + allotted, min(now + allotted + GRACE_S, deadline + 15), out)
        results.add("parts", {"part": part, "status": status, "seconds": round(time.time() - now, 1),
                              "limit_s": round(allotted)})
    results.render()
    print((out / "acceptance.md").read_text())
    print(f"gpu_acceptance: wrote {out}/ in {time.time() - start:.0f} s", flush=True)
    failed = [row for row in results.rows("parts") if row["status"] != "ok"]
    failed += [row for row in results.rows("checks") if row["result"] == "FAIL"]
    return 1 if failed else 0


def _run_part(part: str, args, part_deadline: float, kill_at: float, out: Path) -> str:
    command = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--deadline", str(part_deadline),
               "--out", str(out), "--data-dir", str(args.data_dir), "--budget-s", str(args.budget_s),
               "--device", args.device] + (["--smoke"] if args.smoke else [])
    with (out / "log.txt").open("a") as log:
        log.write(f"\n===== {part} (until {time.strftime('%H:%M:%S', time.localtime(part_deadline))})\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            code = process.wait(timeout=max(1.0, kill_at - time.time()))
        except subprocess.TimeoutExpired:
            _stop(process)
            return "killed at its time limit (results so far kept)"
    return "ok" if code == 0 else f"failed (exit {code}; see log.txt)"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the part's process group (it and the runs it started), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 4)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------------- a part


class Part:
    """What every part gets: its deadline, the device, the sizes, the results and a scratch folder."""

    def __init__(self, args):
        import torch

        self.args, self.smoke, self.deadline = args, args.smoke, args.deadline
        self.sizes = SMOKE if args.smoke else GPU
        self.results = Results(Path(args.out))
        self.device = _device(args.device)
        self.scratch = Path(tempfile.mkdtemp(prefix="gpu_acceptance_"))
        self.torch = torch

    def left(self) -> float:
        return self.deadline - time.time()

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def check(self, name: str, function) -> None:
        """Run one check; a failure is a row, never the end of the part."""
        start = time.perf_counter()
        try:
            result, detail = function()
        except Exception as error:  # noqa: BLE001 - every failure is a result here
            result, detail = "FAIL", f"{type(error).__name__}: {_one_line(error)}{_where(error)}"
            traceback.print_exc()
        self.results.add("checks", {"check": name, "result": result, "detail": detail,
                                    "seconds": round(time.perf_counter() - start, 2)})


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _where(error: BaseException) -> str:
    """`` at FILE:LINE``: the innermost frame of the toolkit (not this script) that the error passed through."""
    script = Path(__file__).resolve()
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename).resolve()
        if path != script and ROOT in path.parents:
            return f" at {path.relative_to(ROOT)}:{frame.lineno}"
    return ""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def run_part(args) -> int:
    part = Part(args)
    try:
        {"environment": environment, "checks": checks, "speed": speed, "end_to_end": end_to_end,
         "compile": compile_speed}[args.part](part)
    finally:
        part.results.now_doing(None)
        shutil.rmtree(part.scratch, ignore_errors=True)
    return 0


# -------------------------------------------------------------------------------------- environment


def environment(part: Part) -> None:
    torch = part.torch
    from student_training.accelerator import available_precisions, compile_unavailable_reason

    device = part.device
    info = {"card": "cpu (no GPU)", "device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "driver": None, "capability": None, "memory_gib": None, "python": platform.python_version(),
            "host": platform.node(), "precisions": ", ".join(available_precisions(device)),
            "compile": compile_unavailable_reason(device) or "available", "mode": "smoke" if part.smoke else "full",
            "budget_s": part.args.budget_s, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(card=properties.name, capability=f"{properties.major}.{properties.minor}",
                    memory_gib=round(properties.total_memory / 2**30, 1))
    # The settings behind the speed rows: cuDNN autotuning off; "fp32" convolutions may use TF32.
    info.update(cudnn_benchmark=torch.backends.cudnn.benchmark, tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                tf32_cudnn=torch.backends.cudnn.allow_tf32, cpu=_cpu_model(), cpu_count=os.cpu_count())
    (part.results.out / "environment.json").write_text(json.dumps(info, indent=2))  # the card named at once
    if device.type == "cuda":
        info.update(driver=_driver_version())  # nvidia-smi may be slow: after the card is on record
        (part.results.out / "environment.json").write_text(json.dumps(info, indent=2))
    part.results.render()
    print(json.dumps(info, indent=2), flush=True)


def _cpu_model() -> str | None:
    """The host CPU's model name (at batch 128 on 28 x 28 images a GPU step is bound by kernel launches)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _driver_version() -> str | None:
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10)
        return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------------------------------- checks


@contextmanager
def sync_debug(part: Part, mode: str):
    """``torch.cuda.set_sync_debug_mode(mode)`` inside (on a GPU; nothing on the CPU)."""
    if part.device.type != "cuda":
        yield
        return
    part.torch.cuda.synchronize()
    part.torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        part.torch.cuda.set_sync_debug_mode("default")


def _no_sync_check(part: Part) -> str | None:
    """On a GPU, prove that error mode is live (a deliberate .item() must raise); None when it is."""
    if part.device.type != "cuda":
        return "cpu: ran the step; the host-sync check needs CUDA (tests/test_gpu_paths.py checks no host read " \
               "on the meta device)"
    try:
        with sync_debug(part, "error"):
            part.torch.ones(1, device=part.device).sum().item()
    except RuntimeError:
        return None
    return "set_sync_debug_mode('error') did not raise on .item(): the check would prove nothing"


def checks(part: Part) -> None:
    part.check("precision auto on this device", lambda: _check_auto_precision(part))
    part.check("MentorMix step never waits for the host", lambda: _check_mentormix_step(part))
    part.check("weighting step never waits for the host", lambda: _check_weighting_step(part))
    part.check("MentorMix draws equal on the CPU and this device", lambda: _check_draws(part))
    part.check("pinned host-to-device copy", lambda: _check_pinned_copy(part))
    part.check("MentorNet weighting in fp32 under autocast", lambda: _check_fp32_weighting(part))
    from student_training.accelerator import available_precisions

    for precision in available_precisions(part.device):
        part.check(f"host syncs in a training epoch at {precision}", lambda p=precision: _check_epoch_syncs(part, p))
    part.check("resume at another precision", lambda: _check_resume_across_precisions(part))


def _check_auto_precision(part: Part):
    from student_training.accelerator import available_precisions, resolve_precision

    auto = resolve_precision("auto", part.device)
    expected = "fp32" if part.device.type == "cpu" else ("bf16" if "bf16" in available_precisions(part.device)
                                                         else "fp16")
    return ("pass" if auto == expected else "FAIL"), f"auto is {auto}; available: {available_precisions(part.device)}"


def _mentormix_model_and_mix(part: Part):
    from torch import nn

    from curricula.features import WeighterConfig
    from mentor_training.pretrained import load_mentornet
    from student_training.mentormix import MentorMix

    torch = part.torch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(32, 10))
    mix = MentorMix(load_mentornet("mentornet_pd").to(part.device), WeighterConfig(example_dropout_rates="0.1,100"),
                    num_classes=10, alpha=8.0, second_reweight=True, total_steps=100, seed=0)
    return model.to(part.device), mix


def _check_mentormix_step(part: Part):
    """The old tests/test_mentormix.py GPU test: one step under sync debug mode "error" after a first step."""
    import torch.nn.functional as F

    torch, device = part.torch, part.device
    model, mix = _mentormix_model_and_mix(part)

    def step(index):
        x = torch.randn(32, 3, 4, 4, device=device)
        y = torch.randint(0, 10, (32,), device=device)
        with mix.clean_pass(model):
            losses = F.cross_entropy(model(x), y, reduction="none")
        batch = mix.mix(x, y, losses, index)
        mix.loss(model(batch.inputs), batch).backward()
        return batch

    step(0)  # the moving averages' first value moves to the device once
    inconclusive = _no_sync_check(part)
    with sync_debug(part, "error"):
        for index in (50, 51, 52):
            batch = step(index)
    on_device = batch.inputs.device.type == device.type and mix.metrics["mixing_mean"].device.type == device.type
    if not on_device:
        return "FAIL", "the mixed batch or the metrics left the device"
    return ("info", inconclusive) if inconclusive else ("pass", "3 steps (clean pass, weighting, mixing, mixed "
                                                                "pass, second weighting, backward) with no sync")


def _check_weighting_step(part: Part):
    from curricula.features import WeighterConfig
    from mentor_training.pretrained import load_mentornet
    from student_training.weighting import MentorWeighter

    torch = part.torch
    weighter = MentorWeighter(load_mentornet("mentornet_pd").to(part.device),
                              WeighterConfig(example_dropout_rates="0.1,100"), total_steps=100, seed=0)
    losses = torch.rand(128, device=part.device) * 3
    weighter(losses, 0)
    inconclusive = _no_sync_check(part)
    with sync_debug(part, "error"):
        weights = [weighter(losses, step) for step in (30, 31, 60, 90)]
    if weights[-1].device.type != part.device.type or weights[-1].dtype != torch.float32:
        return "FAIL", f"weights on {weights[-1].device} in {weights[-1].dtype}"
    return ("info", inconclusive) if inconclusive else ("pass", "4 calls (percentile, moving average, MentorNet, "
                                                                "example dropout) with no sync")


def _check_draws(part: Part):
    from student_training.mentormix import draw_mixup_noise

    torch = part.torch
    here = draw_mixup_noise(256, 8.0, torch.Generator().manual_seed(5), part.device)
    cpu = draw_mixup_noise(256, 8.0, torch.Generator().manual_seed(5))
    same = all(torch.equal(a.cpu(), b) for a, b in zip(here, cpu))
    if part.device.type == "cpu":
        return ("info" if same else "FAIL"), "cpu: both draws on the cpu (the comparison needs a GPU)"
    return ("pass" if same else "FAIL"), f"256 Beta(8, 8) and uniform draws on {part.device} and the cpu"


def _check_pinned_copy(part: Part):
    from student_training.accelerator import needs_pinning, pin, to_device

    torch = part.torch
    host = torch.arange(100_000, dtype=torch.float32)
    moved = to_device(host, part.device)
    part.sync()
    same = moved.device.type == part.device.type and torch.equal(moved.cpu(), host)
    wanted = needs_pinning(host, part.device)  # the rule: pin what goes to an accelerator
    pinned = bool(pin(host).is_pinned()) if wanted else False  # and what it really gives: page-locked memory
    result = "pass" if same and pinned else "info" if same and not wanted else "FAIL"
    return result, f"pinning wanted: {wanted}, page-locked: {pinned}, values equal: {same}"


def _small_config(part: Part, **options):
    from student_training.config import StudentConfig

    base = dict(dataset="digits", subset=64 * 12 if not part.smoke else 48, studentnet="small_cnn", noise=0.4,
                mentornet="mentornet_pd", batch_size=64 if not part.smoke else 16, epochs=4,
                validation_fraction=0.0, device=str(part.device.type))
    return StudentConfig(**{**base, **options})


def _check_fp32_weighting(part: Part):
    from student_training.trainer import prepare_run, train_one_epoch

    from student_training.accelerator import available_precisions

    torch = part.torch
    precision = "bf16" if "bf16" in available_precisions(part.device) else "fp16"  # the CPU has bf16
    run = prepare_run(_small_config(part, precision=precision), part.scratch / "fp32_weighting")
    run.release()
    calls = []
    mentor = run.weighter.mentor

    class Spy:
        def weight(self, features):
            weights = mentor.weight(features)
            calls.append((features.loss.dtype, torch.is_autocast_enabled(part.device.type), weights.dtype))
            return weights

    run.weighter.mentor = Spy()
    train_one_epoch(run, 0)
    # The trainer calls the weighting outside its autocast region; a user's loop may call it inside one, where
    # the weighter's own fp32 region must switch autocast off.
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(part.device.type, dtype=dtype):
        run.weighter.mentor_weights(torch.rand(16, device=part.device) * 3, 1)
    part.sync()
    good = len(calls) > 1 and all(call == (torch.float32, False, torch.float32) for call in calls)
    return ("pass" if good else "FAIL"), (f"{len(calls)} weighting calls (a {precision} epoch, and one inside a "
                                         f"caller's autocast): {set(calls)}")


def _check_epoch_syncs(part: Part, precision: str):
    """Counts host synchronisations in one training epoch (after a warm-up epoch) and says where they are."""
    from student_training.trainer import prepare_run, train_one_epoch

    run = prepare_run(_small_config(part, precision=precision), part.scratch / f"syncs_{precision}")
    run.release()
    train_one_epoch(run, 0)
    steps = len(run.train_loader)
    if part.device.type != "cuda":
        train_one_epoch(run, 1)
        return "info", f"cpu: {steps} steps ran; counting host syncs needs CUDA"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with sync_debug(part, "warn"):
            part.torch.ones(1, device=part.device).sum().item()  # the control: one sync that must be seen
            train_one_epoch(run, 1)
        part.sync()
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    if not syncs:
        return "info", "inconclusive: not even the control sync was reported as a warning"
    places: dict[str, int] = {}
    for w in syncs[1:]:
        where = f"{Path(w.filename).name}:{w.lineno}"
        places[where] = places.get(where, 0) + 1
    count = len(syncs) - 1
    detail = f"{count} syncs in {steps} steps" + (f": {places}" if places else "")
    if precision == "fp16":  # GradScaler.step reads its inf/NaN flag on the host every step
        return "info", detail + " (fp16: the gradient scaler reads its overflow flag each step)"
    return ("pass" if count < steps else "FAIL"), detail + " (pass: fewer syncs than steps, none per step)"


def _check_resume_across_precisions(part: Part):
    from student_training.callbacks import Callback
    from student_training.trainer import prepare_run, train
    from student_training.accelerator import available_precisions

    torch = part.torch
    first, second = ("fp16", "bf16") if {"fp16", "bf16"} <= set(available_precisions(part.device)) else ("bf16",
                                                                                                          "fp32")
    out = part.scratch / "resume"

    class Stop(Callback):
        name = "stop"

        def on_step(self, run, step):
            if step == 2 * len(run.train_loader):
                raise KeyboardInterrupt

    run = prepare_run(_small_config(part, precision=first), out, callbacks=(Stop(),))
    try:
        train(run)
    except KeyboardInterrupt:
        pass
    finally:
        run.release()
    saved = torch.load(out / "last.pt", weights_only=True)
    run = prepare_run(_small_config(part, precision=second), out, resume=True)
    rows = train(run)
    final = torch.load(out / "last.pt", weights_only=True)
    scaler = saved["callbacks"]["precision"]["scaler"]
    good = (saved["epoch"] == 2 and len(rows) == 4 and all(math.isfinite(r["loss"]) for r in rows)
            and final["callbacks"]["precision"]["name"] == second
            and (scaler is not None) == (first == "fp16")
            and (final["cuda_rng"] is not None) == (part.device.type == "cuda"))
    return ("pass" if good else "FAIL"), (f"{first} for 2 epochs (scaler scale {scaler and scaler['scale']}), then "
                                          f"{second} for 2; CUDA generator saved: {saved['cuda_rng'] is not None}; "
                                          f"final loss {rows[-1]['loss']:.3f}")


# -------------------------------------------------------------------------------------------- speed


def speed_data(part: Part, count: int) -> tuple[str, str]:
    """An ``npz:`` data set of ``count`` training images: Fashion-MNIST from ``--data-dir`` (synthetic 8x8
    images with ``--smoke``, synthetic 28x28 ones if Fashion-MNIST is missing), and where it came from."""
    import numpy as np

    size = part.sizes["image_size"]
    source = f"synthetic {size}x{size}"
    rng = np.random.default_rng(0)
    count = count * 3 // 2
    train, labels = rng.integers(0, 256, (count, size, size), dtype=np.uint8), np.arange(count) % 10
    if not part.smoke:
        try:
            from student_training.data import load_dataset

            data = load_dataset("fashion-mnist", data_dir=part.args.data_dir)
            train = data.train_images[:count, 0].numpy()
            labels = data.train_labels[:count].numpy()
            source = f"Fashion-MNIST ({data.source})"
        except Exception as error:  # noqa: BLE001 - the speed table is still worth having
            print(f"Fashion-MNIST unavailable ({_one_line(error)}); timing on synthetic images", flush=True)
    path = part.scratch / "speed.npz"  # more images than the largest subset, so each subset can be class-balanced
    np.savez(path, train_images=train, train_labels=labels, test_images=train[:100], test_labels=labels[:100])
    return f"npz:{path}", source


def _speed_config(part: Part, student: str, dataset: str, steps: int, **options):
    from student_training.config import StudentConfig

    return StudentConfig(dataset=dataset, subset=steps * part.sizes["batch"], noise=0.4, studentnet=student,
                         mentornet="mentornet_pd", epochs=1000, batch_size=part.sizes["batch"],
                         validation_fraction=0.0, device=part.device.type, **options)


def _release_memory(part: Part) -> None:
    gc.collect()
    if part.device.type == "cuda":
        part.torch.cuda.empty_cache()


def speed(part: Part) -> None:
    from student_training.accelerator import available_precisions

    steps_of = {s: part.sizes["steps"].get(s, part.sizes["default_steps"]) for s in STUDENTS}
    dataset, source = speed_data(part, max(steps_of.values()) * part.sizes["batch"])
    precisions = available_precisions(part.device)  # the auto one first
    first = part.sizes["e2e_student"]  # first: the end-to-end part plans its epochs from this student's row
    students = (first, *(student for student in STUDENTS if student != first))
    for index, student in enumerate(students):
        if part.left() < 5:
            for rest in students[index:]:
                part.results.add("speed", _skipped_row(rest, "eager", "all", "skipped for time"))
            return
        part.results.now_doing(f"speed: {student}, eager")
        try:
            _speed_of_student(part, student, dataset, steps_of[student], precisions, source)
        except Exception as error:  # noqa: BLE001 - one student's failure is a row
            traceback.print_exc()
            part.results.add("speed", _skipped_row(student, "eager", "?", f"failed: {_one_line(error)}"))
        _release_memory(part)


def _skipped_row(student: str, mode: str, precision: str, note: str) -> dict:
    return {"student": student, "mode": mode, "precision": precision, "batch": "", "steps": "", "img/s": "",
            "step ms": "", "weighting ms": "", "weighting share": "", "peak GPU MiB": "", "minimal img/s": "",
            "compile s": "", "note": note}


def _speed_of_student(part: Part, student, dataset, steps, precisions, source) -> None:
    from student_speed import weighting_ms
    from student_training.accelerator import Precision
    from student_training.trainer import prepare_run

    run = prepare_run(_speed_config(part, student, dataset, steps), part.scratch / f"speed_{student}")
    run.release()
    weighting = weighting_ms(run, repeats=300 if not part.smoke else 5)
    started = time.perf_counter()
    for index, precision in enumerate(precisions):
        spent = time.perf_counter() - started
        if part.smoke and index and student not in SMOKE_EVERY_PRECISION:
            part.results.add("speed", _skipped_row(student, "eager", precision, "smoke: not timed (emulated bf16)"))
            continue
        if index and part.left() < spent / index * 1.5 + 3:
            part.results.add("speed", _skipped_row(student, "eager", precision, "skipped for time"))
            continue
        run.precision = Precision.create(precision, run.device)
        row = _time_run(part, run, student, "eager", precision, weighting, minimal=index == 0)
        row["note"] = source
        part.results.add("speed", row)


def _time_run(part: Part, run, student: str, mode: str, precision: str, weighting: float, *, minimal: bool) -> dict:
    """Warm-up epoch, then the best of the repeats; the minimal loop's images/s too if ``minimal``."""
    from student_speed import minimal_epoch, timed
    from student_training.trainer import train_one_epoch

    torch = part.torch
    ours = lambda r, e: train_one_epoch(r, e)  # noqa: E731
    warm_up = timed(ours, run, 1)
    if part.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(ours, run, 1) for _ in range(part.sizes["repeats"])]
    peak = round(torch.cuda.max_memory_allocated() / 2**20) if part.device.type == "cuda" else ""
    steps, batch = len(run.train_loader), run.config.batch_size
    step_ms = min(times) / steps * 1000
    row = {"student": student, "mode": mode, "precision": precision, "batch": batch, "steps": steps,
           "img/s": round(steps * batch / min(times)), "step ms": round(step_ms, 2),
           "weighting ms": round(weighting, 3), "weighting share": f"{weighting / step_ms:.1%}",
           "peak GPU MiB": peak, "minimal img/s": "", "compile s": "", "note": ""}
    if minimal:
        row["minimal img/s"] = round(steps * batch / timed(minimal_epoch, run, 1))
    if mode == "compile":
        row["compile s"] = round(warm_up, 1)
    return row


def compile_speed(part: Part) -> None:
    from student_speed import weighting_ms
    from student_training.accelerator import compile_unavailable_reason, resolve_precision
    from student_training.trainer import prepare_run

    reason = compile_unavailable_reason(part.device)
    students = COMPILE_ORDER if not part.smoke else ("mlp",)
    if reason:
        for student in students:
            part.results.add("speed", _skipped_row(student, "compile", "auto", f"unavailable: {reason}"))
        return
    precision = resolve_precision("auto", part.device)
    steps_of = {s: part.sizes["steps"].get(s, part.sizes["default_steps"]) for s in STUDENTS}
    dataset, source = speed_data(part, max(steps_of.values()) * part.sizes["batch"])
    for student in students:
        estimate = COMPILE_ESTIMATE_S[student] if not part.smoke else 1
        # A cold compile can take half as long again as the estimate, and a part killed at its limit counts as a
        # failure: start a student only with that margin left.
        if part.left() < (1.5 * estimate + 15 if not part.smoke else estimate):
            part.results.add("speed", _skipped_row(student, "compile", precision,
                                                   f"skipped for time (needs about {estimate} s)"))
            continue
        part.results.now_doing(f"compile: {student} at {precision} (compiling)")
        try:
            run = prepare_run(_speed_config(part, student, dataset, steps_of[student], compile=True),
                              part.scratch / f"compile_{student}")
            run.release()
            row = _time_run(part, run, student, "compile", precision, weighting_ms(run, repeats=5), minimal=False)
            row["note"] = source
            part.results.add("speed", row)
            del run
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            part.results.add("speed", _skipped_row(student, "compile", precision, f"failed: {_one_line(error)}"))
        _release_memory(part)


# --------------------------------------------------------------------------------------- end to end


def _epoch_seconds_estimate(part: Part) -> float | None:
    """One epoch of the end-to-end student on 54,000 images, plus evaluating 16,000 (validation and test) and
    the 54,000 training images again (the per-sample losses that find-label-issues reads), from the speed table
    (two runs share the GPU, hence the factor; an evaluation pass is taken as 4 times a training pass)."""
    student = part.sizes["e2e_student"]
    rows = [r for r in part.results.rows("speed") if r["student"] == student and r["mode"] == "eager"
            and r["img/s"]]
    if not rows:
        return None
    images_per_s = float(rows[0]["img/s"])  # the auto precision comes first
    return 2.0 * (54_000 / images_per_s + (16_000 + 54_000) / (4 * images_per_s))


def end_to_end(part: Part) -> None:
    student = part.sizes["e2e_student"]
    startup = 30 if not part.smoke else 0
    estimate = _epoch_seconds_estimate(part) if not part.smoke else None
    if part.smoke:
        epochs, data = 2, ["--dataset", "digits", "--subset", "300", "--batch-size", "32"]
    else:
        budget = part.left() - startup - 20
        # 0.8 of the time left, and 2 s an epoch besides the images (last.pt, best.pt, metrics, AUC): a run cut
        # off before its last epoch would stop partway through its cosine schedule.
        epochs = max(1, min(part.sizes["max_epochs"], int(0.8 * budget / (estimate + 2.0)))) if estimate else 3
        data = ["--dataset", "fashion-mnist", "--data-dir", str(part.args.data_dir)]
    planned = (f"{student}, 40% symmetric noise, {epochs} epochs planned "
               f"({'estimated ' + format(estimate, '.1f') + ' s per epoch' if estimate else 'no speed estimate'}),"
               f" both runs at once on {part.device}, precision auto, seed 0")
    header = ("Fashion-MNIST, all 60,000 training images (54,000 trained, 6,000 noisy validation), 10,000 test: "
              if not part.smoke else "smoke: the bundled digits, 300 training images: ")
    (part.results.out / "end_to_end.txt").write_text(header + planned + "\n")
    runs_dir = part.scratch / "runs"  # fresh: the poller never reads an older run's rows
    runs_dir.mkdir()
    kept = part.results.out / "runs"
    kept.mkdir(exist_ok=True)
    processes = {}
    for name, mentornet in E2E_RUNS:
        command = [sys.executable, str(ROOT / "cli.py"), "train-student", *data, "--noise", "0.4", "--studentnet",
                   student, "--mentornet", mentornet, "--epochs", str(epochs), "--seed", "0",
                   "--device", part.device.type, "--out", str(runs_dir / name)]
        log = (kept / f"{name}.log").open("w")
        processes[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log)
    part.results.now_doing(f"end to end: {planned}")
    try:
        _follow(part, processes, runs_dir, epochs)
    finally:  # whatever happened while following them, no run outlives this part (nor keeps the GPU)
        for process, log in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()


def _follow(part: Part, processes: dict, runs_dir: Path, epochs: int) -> None:
    """Copy each run's new metrics.csv rows into the curves as they appear; stop the runs at the deadline."""
    seen = {name: 0 for name in processes}
    stopped: set[str] = set()
    while True:
        running = [name for name, (process, _) in processes.items() if process.poll() is None]
        for name in processes:
            seen[name] = _copy_new_rows(part, runs_dir / name, name, seen[name])
        if not running:
            break
        if part.left() < STOP_RUNS_S:  # time to stop both runs and keep their files before the part's grace ends
            stopped.update(running)
            for name in running:
                processes[name][0].terminate()  # SIGTERM unwinds the CLI: lock released, files whole
            waited_until = time.time() + 10  # one shared wait, not 10 s a run
            for name in running:
                try:
                    processes[name][0].wait(timeout=max(0.1, waited_until - time.time()))
                except subprocess.TimeoutExpired:
                    processes[name][0].kill()
                    processes[name][0].wait()
            for name in processes:
                seen[name] = _copy_new_rows(part, runs_dir / name, name, seen[name])
            break
        time.sleep(1.0 if part.smoke else 3.0)
    for name, (process, log) in processes.items():
        log.close()
        for file in ("config.json", "metrics.csv"):
            if (runs_dir / name / file).exists():
                (part.results.out / "runs" / name).mkdir(exist_ok=True)
                shutil.copy(runs_dir / name / file, part.results.out / "runs" / name / file)
        part.results.add("end_to_end_summary", _summary(runs_dir / name, name, epochs, process.returncode,
                                                        stopped=name in stopped))


def _copy_new_rows(part: Part, folder: Path, name: str, seen: int) -> int:
    import pandas as pd

    path = folder / "metrics.csv"
    if not path.exists():
        return seen
    try:
        frame = pd.read_csv(path)
    except Exception:  # noqa: BLE001 - being rewritten (atomically, but a read may still race a rename)
        return seen
    for row in frame.iloc[seen:].to_dict("records"):
        part.results.add("end_to_end", {"run": name, "epoch": int(row["epoch"]),
                                        "test_accuracy": f"{row['test_accuracy']:.4f}",
                                        "val_accuracy": f"{row['val_accuracy']:.4f}",
                                        "detector_auc": f"{row['detector_auc']:.3f}", "loss": f"{row['loss']:.4f}",
                                        "fit_noisy": f"{row['fit_noisy']:.3f}", "seconds": row["seconds"]})
    return max(seen, len(frame))


def _summary(folder: Path, name: str, planned: int, code: int | None, *, stopped: bool) -> dict:
    import pandas as pd

    status = "finished" if code == 0 else f"exit {code} (see runs/{name}.log)"
    row = {"run": name, "epochs": f"0/{planned}", "final test": "", "best test (epoch)": "",
           "test at best val (epoch)": "", "final detector AUC": "", "final fit noisy": "", "train s": "",
           "status": "stopped at the time limit" if stopped else status}
    path = folder / "metrics.csv"
    if not path.exists():
        return row
    frame = pd.read_csv(path)
    if frame.empty:
        return row
    best = frame.loc[frame["test_accuracy"].idxmax()]
    chosen = frame.loc[frame["val_accuracy"].idxmax()] if frame["val_accuracy"].notna().any() else None
    last = frame.iloc[-1]
    row.update({"epochs": f"{len(frame)}/{planned}", "final test": f"{last['test_accuracy']:.4f}",
                "best test (epoch)": f"{best['test_accuracy']:.4f} ({int(best['epoch'])})",
                "test at best val (epoch)": f"{chosen['test_accuracy']:.4f} ({int(chosen['epoch'])})"
                if chosen is not None else "", "final detector AUC": f"{last['detector_auc']:.3f}",
                "final fit noisy": f"{last['fit_noisy']:.3f}", "train s": round(float(frame["seconds"].sum()), 1)})
    return row


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Folder for acceptance.md, the CSV tables and the runs.")
    parser.add_argument("--data-dir", default="data", help="Folder holding fashion-mnist/ (make data). [data]")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="Wall-clock budget of the whole script in seconds, from its start (importing torch "
                             "included); it overruns by 27 s at most (a part still running 15 s past it is "
                             "stopped, SIGKILL 12 s later) [360; 600 with --smoke].")
    parser.add_argument("--smoke", action="store_true", help="Every part on the CPU with tiny data, in seconds.")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"Comma-separated subset of {', '.join(PARTS)}.")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # internal: run one part here
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 600.0 if args.smoke else 360.0
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be > 0, got {args.budget_s:g}")
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown part {sorted(unknown)[0]!r}; choose from {', '.join(PARTS)}")
    return args


def _missing_fashion_mnist(data_dir: Path) -> str | None:
    """The first Fashion-MNIST idx file the toolkit's loader would not find under ``data_dir``, else None."""
    from student_training.data import FASHION_MNIST_FILES, _fashion_folders, _find_idx  # the loader's own lookup

    for stem in FASHION_MNIST_FILES:
        if _find_idx(stem, _fashion_folders(data_dir)) is None:
            return f"{stem}.gz"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    check_dependencies()
    from student_training.host_memory import keep_freed_memory

    keep_freed_memory()  # as cli.py does, so that the students train as train-student trains them
    args.out, args.data_dir = str(Path(args.out).resolve()), str(Path(args.data_dir).resolve())
    if args.part:
        return run_part(args)
    import torch

    if not args.smoke and args.device != "cpu" and not torch.cuda.is_available():
        sys.exit("Error: no CUDA GPU is visible to torch here; on a CPU run the smoke test: --smoke")
    if not args.smoke:
        missing = _missing_fashion_mnist(Path(args.data_dir))
        if missing:
            sys.exit(f"Error: Fashion-MNIST's {missing} is not in {args.data_dir} (or its fashion-mnist/): run make data "
                     "here, and carry data/ to the GPU machine with the working tree; the end-to-end runs need it")
    if args.smoke:
        args.device = "cpu"
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
