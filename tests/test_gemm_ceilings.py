"""benchmarks/gemm_ceilings.py: every engine's GEMM rate side by side, the ceiling of a precision the best of
them, and a precision counted only where the engine really runs it (OpenVINO falls back to fp32 for bf16 where
its CPU plugin has no bf16). The rates themselves are figures for RESULTS.md, not asserted."""

from __future__ import annotations

import sys

import pytest
from harness_support import REPO

from orchestrator.harness.cpu import detect_isa

sys.path.insert(0, str(REPO / "benchmarks"))
import gemm_ceilings  # noqa: E402


@pytest.mark.slow
def test_each_precision_s_ceiling_is_its_best_engine_and_bf16_only_where_it_runs() -> None:
    result = gemm_ceilings.measure(threads=1)
    rates = result["rates"]
    expected = (
        "fp32 onnxruntime MatMul",
        "int8 onnxruntime MatMulInteger, weight an input",
        "int8 onnxruntime MatMulInteger, weight a constant",
        "fp32 OpenVINO FullyConnected",
        "int8 OpenVINO FullyConnected u8 x i8",
    ) + (("bf16 PyTorch matmul (oneDNN)",) if detect_isa().bf16 else ())
    missing = [label for label in expected if label not in rates]
    assert not missing, f"not measured (see the log: a venv that could not be built?): {missing}"
    assert all(rates[label] > 0 for label in expected)
    # Where the CPU has native bf16, OpenVINO's FullyConnected runs in bf16 and its rate counts. (Without it,
    # OpenVINO may emulate bf16 on AVX-512 or fall back to fp32; the script counts only what really ran.)
    isa = detect_isa()
    if isa.amx_bf16 or isa.avx512_bf16:
        assert "bf16 OpenVINO FullyConnected" in rates
    else:  # no engine here runs bf16 on it (harness/cpu.py bf16_refusal), and PyTorch emulates it slowly
        assert "bf16 PyTorch matmul (oneDNN)" not in rates
    for precision in ("fp32", "int8", "bf16") if isa.bf16 else ("fp32", "int8"):
        mine = {k: v for k, v in rates.items() if k.startswith(precision + " ")}
        assert result["ceilings"][precision] == max(mine.values())
        assert result["sources"][precision] == max(mine, key=mine.__getitem__)
