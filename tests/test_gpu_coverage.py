"""No GPU-only line of student_training/ goes untested: each one runs in a CPU test, or is listed in
:data:`NOT_COVERABLE` (and README's table) with the reason it cannot run on a CPU.

A GPU-only line is a statement whose code (comments and docstrings aside) names a GPU-only thing
(:data:`GPU_MARKERS`: ``"cuda"``, ``.is_cuda``, ``torch.cuda``, ``pin_memory``, ``non_blocking``, nccl,
``GradScaler``, ``SyncBatchNorm``, ...), and every statement in either branch of an ``if`` whose condition
does. The tests of ``tests/test_gpu_paths.py`` run under ``coverage`` in a subprocess, and each GPU-only
line must have run there. A one-line conditional expression that tests or chooses a GPU-only thing
(``a if cuda else b``) is refused, because line coverage cannot tell which side ran: write it as an
``if`` statement.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "student_training"
GPU_PATH_TESTS = ("tests/test_gpu_paths.py",)
GPU_MARKERS = re.compile(r"""["']cuda["']|\.is_cuda\b|\btorch\.cuda\b|\bpin_memory\b|\bnon_blocking\b|["']nccl["']"""
                         r"""|\bGradScaler\b|\bSyncBatchNorm\b|\bis_bf16_supported\b|\bhas_triton\b"""
                         r"""|\bset_sync_debug_mode\b""")

# (file in student_training/, function, code, why it cannot run on a CPU). README's section "GPU branches
# and what a CPU cannot run" holds the same rows; the acceptance script (benchmarks/gpu_acceptance.py) runs them.
NOT_COVERABLE = [
    ("accelerator.py", "pin", "tensor.pin_memory()",
     "page-locked memory needs a CUDA build and a GPU: on a CPU-only build it raises \"Cannot access "
     "accelerator device when none is available\"; the copy around it runs in tests with the meta device "
     "standing in for the GPU"),
    ("run_folder.py", "save_epoch", "torch.cuda.get_rng_state()",
     "the CUDA generator exists only with a GPU; the acceptance script's resume check saves it"),
    ("run_folder.py", "restore", "torch.cuda.set_rng_state(state[\"cuda_rng\"])",
     "restores that generator on a GPU run; the acceptance script's resume check runs it"),
    ("trainer.py", "_training_module", "torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)",
     "--sync-bn needs torchrun processes on CUDA GPUs (SyncBatchNorm has no CPU kernel, and the CPU refuses "
     "it first); not in the acceptance script either, which has one GPU"),
]


# ------------------------------------------------------------------------------------------ the scan


def _code_lines(source: str) -> dict[int, str]:
    """Each physical line without its comment."""
    lines = dict(enumerate(source.splitlines(), start=1))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            lines[row] = lines[row][:column]
    return lines


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _functions(tree: ast.AST) -> list[tuple[int, int, str]]:
    return [(node.lineno, node.end_lineno, node.name) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _enclosing(functions, line: int) -> str:
    inside = [(start, name) for start, end, name in functions if start <= line <= end]
    return max(inside)[1] if inside else "<module>"


def gpu_lines(source: str) -> dict[int, tuple[str, str]]:
    """``{first line of a GPU-only statement: (enclosing function, the statement's code)}``."""
    tree = ast.parse(source)
    statements = [node for node in ast.walk(tree) if isinstance(node, ast.stmt)]
    code = _code_lines(source)
    found: set[int] = set()
    for line, text in code.items():
        if GPU_MARKERS.search(text):
            holders = [node for node in statements if node.lineno <= line <= node.end_lineno]
            innermost = max(holders, key=lambda node: node.lineno) if holders else None
            if innermost is not None and not _is_docstring(innermost):
                found.add(innermost.lineno)
    for node in statements:
        if isinstance(node, ast.If) and GPU_MARKERS.search(ast.get_source_segment(source, node.test) or ""):
            for branch in (*node.body, *node.orelse):
                found |= {inner.lineno for inner in ast.walk(branch) if isinstance(inner, ast.stmt)}
    functions = _functions(tree)
    starts = {node.lineno: node for node in statements}
    return {line: (_enclosing(functions, line), ast.get_source_segment(source, starts[line]).splitlines()[0].strip())
            for line in sorted(found)}


def gpu_conditional_expressions(source: str) -> list[int]:
    """Lines of ``a if c else b`` expressions that test or choose a GPU-only thing (which side ran is
    invisible to line coverage)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.IfExp) and GPU_MARKERS.search(ast.get_source_segment(source, node) or "")]


def _sources() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(PACKAGE.glob("*.py"))}


# ------------------------------------------------------------------------------------------ the tests


def test_the_scan_finds_gpu_statements_and_both_sides_of_gpu_branches():
    source = '''"""Mentions pin_memory and "cuda" in a docstring."""
import torch


def move(x, device):
    # a comment about torch.cuda
    if device.type == "cuda":
        x = x.pin_memory()
        y = x
    else:
        y = x.to(device,
                 non_blocking=True)
    z = 1 if x.is_cuda else 2
    w = torch.cuda.current_device() if x else None
    return y
'''
    assert gpu_lines(source) == {7: ("move", 'if device.type == "cuda":'), 8: ("move", "x = x.pin_memory()"),
                                 9: ("move", "y = x"), 11: ("move", "y = x.to(device,"),
                                 13: ("move", "z = 1 if x.is_cuda else 2"),
                                 14: ("move", "w = torch.cuda.current_device() if x else None")}
    assert gpu_conditional_expressions(source) == [13, 14]


def test_no_gpu_choice_hides_in_a_conditional_expression():
    hidden = [f"student_training/{name}:{line}" for name, source in _sources().items()
              for line in gpu_conditional_expressions(source)]
    assert not hidden, f"write these GPU choices as if statements, so the coverage guard sees each side: {hidden}"


def test_every_gpu_line_runs_in_a_cpu_test_or_is_listed_with_its_reason(tmp_path):
    try:
        import coverage
    except ImportError:
        pytest.fail("the GPU-branch guard needs coverage: pip install -e '.[test]'")
    data_file = tmp_path / ".coverage"
    result = subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data_file}",
                             "--source=student_training", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *GPU_PATH_TESTS], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    measured = coverage.Coverage(data_file=str(data_file))
    measured.load()
    untested, listed_but_run, matched = [], [], set()
    for name, source in _sources().items():
        _, statements, _, missing, _ = measured.analysis2(str(PACKAGE / name))
        for line, (function, code) in gpu_lines(source).items():
            ran = line in statements and line not in missing
            entries = [entry for entry in NOT_COVERABLE if entry[0] == name and entry[1] == function
                       and entry[2] in code]
            matched.update(entries)
            if entries and ran:
                listed_but_run.append(f"{name}:{line} {code}")
            elif not entries and not ran:
                untested.append(f"student_training/{name}:{line} ({function}) {code}")
    assert not untested, ("GPU-only lines no CPU test runs; test them in tests/test_gpu_paths.py, or list them in "
                          f"NOT_COVERABLE and README with the reason: {untested}")
    assert not listed_but_run, f"listed as not coverable, yet a CPU test runs them: {listed_but_run}"
    assert set(NOT_COVERABLE) == matched, f"entries that match no GPU-only line: {set(NOT_COVERABLE) - matched}"


def test_readme_lists_what_a_cpu_cannot_run():
    readme = (ROOT / "README.md").read_text()
    for name, function, code, why in NOT_COVERABLE:
        assert f"| `student_training/{name}` | `{function}` | `{code}` | {why} |" in readme, (name, function)
