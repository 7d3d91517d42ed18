"""The type checker and the linter over the code, as `make lint` runs the latter. mypy is what caught an
engine attribute shadowing the Engine.settings() method in the TensorRT engine, a path no machine here
can run (no GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )


def test_mypy_finds_no_errors_in_the_package() -> None:
    pytest.importorskip("mypy")
    proc = _run("mypy", "orchestrator")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_finds_nothing_in_the_package_tests_and_benchmarks() -> None:
    pytest.importorskip("ruff")
    proc = _run("ruff", "check", "orchestrator", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_the_tree_is_formatted() -> None:
    pytest.importorskip("ruff")
    proc = _run("ruff", "format", "--check", "orchestrator", "tests", "benchmarks")
    assert proc.returncode == 0, "run `make format` (ruff format):\n" + proc.stdout[-4000:] + proc.stderr[-2000:]
