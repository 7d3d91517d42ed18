"""bf16 arithmetic on a CPU without native bf16 (no amx_bf16, no avx512_bf16) is refused in one sentence, by the
host before any run or tune folder and by the engine as it starts, for every engine that makes bf16 itself.

Found on a real AVX2-only AMD EPYC (2026-12-07): `run --backend pytorch --engine-option precision=bf16` ran
(torch emulates bf16 there, 1.34 samples/s on the demo), `openvino int8_float=bf16` was refused only inside the
harness (a failed run directory), and the `tune --precisions bf16` command a pytorch bf16 run names to check it
was refused ("no precision option"). The CPU is forced with MLPERF_BERT_CPU_FLAGS, so these run on any host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke

from orchestrator.backends import TARGETS, get_target
from orchestrator.config import RunConfig
from orchestrator.errors import ModelError, PreflightError
from orchestrator.harness.cpu import FAKE_FLAGS_ENV
from orchestrator.workflows import tuning as tune_module
from orchestrator.workflows.calibration import check_precision
from orchestrator.workflows.tuning import TuneRequest, tune

AVX2 = "avx2 fma"
ZEN4 = "avx2 avx512f avx512_bf16 avx512_vnni"
REFUSED = "needs a CPU with native bf16 (amx_bf16 or avx512_bf16), which this one lacks (ISA: avx2)"


def test_the_pytorch_engine_refuses_bf16_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's own check (a Ray node's CPU is not the driver's): before torch is imported or a file read."""
    from orchestrator.harness.engines.pytorch import PyTorchEngine

    def engine(device: str, flags: str) -> None:
        monkeypatch.setenv(FAKE_FLAGS_ENV, flags)
        PyTorchEngine(
            "/no/such",
            device=device,
            batch_size=2,
            threads=None,
            execution_provider=device,
            options={"precision": "bf16"},
        )

    with pytest.raises(
        PreflightError, match=re.escape(f"precision=bf16 {REFUSED}; use --engine-option precision=fp32.")
    ):
        engine("cpu", AVX2)
    for device, flags in (("cpu", ZEN4), ("cuda", AVX2)):  # native bf16, or a GPU: past the check, to the model
        with pytest.raises(ModelError, match="does not exist"):
            engine(device, flags)


def test_pytorch_bf16_is_refused_before_a_run(
    shared_assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAKE_FLAGS_ENV, AVX2)
    result = invoke(
        ["run", "--backend", "pytorch", "--runner", "local", "--engine-option", "precision=bf16"]
        + ["--model-path", shared_assets / "models" / "demo-minilm-l6-squad-hf"]
        + ["--output-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    )
    assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.output
    assert result.stderr == f"error: precision=bf16 {REFUSED}; use --engine-option precision=fp32.\n"
    assert not (tmp_path / "runs").exists()


def test_openvino_int8_with_a_bf16_rest_is_refused_before_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was refused inside the harness, after the run directory was made (a failed run)."""
    monkeypatch.setenv(FAKE_FLAGS_ENV, AVX2)
    result = invoke(
        ["run", "--backend", "openvino", "--runner", "local"]
        + ["--engine-option", "precision=int8", "--engine-option", "int8_float=bf16"]
        + ["--output-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    )
    assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.output
    assert result.stderr == (f"error: int8_float=bf16 {REFUSED}; drop the option (the float rest then runs in fp32).\n")
    assert not (tmp_path / "runs").exists()


def test_int8_float_auto_falls_back_without_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_FLAGS_ENV, AVX2)
    config = RunConfig(backend="openvino", engine_options={"precision": "int8", "int8_float": "auto"})
    check_precision(config, get_target("openvino", "cpu"))  # no error: auto is fp32 on this CPU


def test_every_target_whose_engine_makes_precisions_can_sweep_them() -> None:
    """`tune --precisions` is the check a reduced-precision run names: every engine that makes one must take it."""
    makes = {key for key, target in TARGETS.items() if target.engine_precisions}
    assert makes == {
        "openvino-cpu",
        "pytorch-cpu",
        "pytorch-cuda",
        "onnxruntime-cuda",
        "onnxruntime-rocm",
        "tensorrt-cuda",
    }


def _stub_trials(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    ran: list[dict[str, Any]] = []

    def trial(base: RunConfig, **kw: Any) -> Any:
        ran.append(kw)
        raise SystemExit("stop after the pre-checks")

    monkeypatch.setattr(tune_module, "run_trial", trial)
    monkeypatch.setattr(tune_module, "preflight_trials", lambda request, combos: None)  # stand-in trials need no runner
    return ran


def test_tune_pytorch_bf16_is_refused_before_the_tune_folder_on_a_cpu_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAKE_FLAGS_ENV, AVX2)
    ran = _stub_trials(monkeypatch)
    base = RunConfig(backend="pytorch", output_dir=tmp_path, model_path=tmp_path)
    with pytest.raises(PreflightError, match=re.escape(f"precision=bf16 {REFUSED}")):
        tune(TuneRequest(base=base, precisions=["fp32", "bf16"], batch_sizes=[4], plot=False))
    assert not ran and not list(tmp_path.iterdir())


def test_the_check_command_of_a_pytorch_bf16_run_is_accepted(
    shared_assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `run` prints after ACCURACY UNCHECKED for pytorch bf16 passes tune's pre-checks on a bf16 CPU (it
    was refused: 'pytorch-cpu has no precision option to sweep')."""
    monkeypatch.setenv(FAKE_FLAGS_ENV, ZEN4)
    ran = _stub_trials(monkeypatch)
    checkpoint = shared_assets / "models" / "demo-minilm-l6-squad-hf"
    with pytest.raises(SystemExit, match="stop after the pre-checks"):
        invoke(
            ["tune", "--backend", "pytorch", "--model-path", checkpoint, "--precisions", "bf16"]
            + ["--batch-sizes", "16", "--precision-check-samples", "all", "--output-dir", tmp_path / "runs"]
        )
    assert ran and ran[0]["precision"] == "bf16"
