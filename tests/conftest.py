"""Shared test fixtures. Tests read ../shared when present; what they always need is vendored in the repo."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# A suite started in the background by a shell without job control (`nohup make test &`, `(cmd &)`) inherits
# SIGINT ignored, and so would every CLI and harness it starts: the Ctrl-C tests would then test nothing but
# the ignore. Python's own handler here makes the children start with SIGINT at its default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLPERF_BERT_SHARED", REPO.parent / "shared"))
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def zen4_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with native bf16 and VNNI (an AMD EPYC Zen 4's flags), for tests whose stand-ins assume one: the host
    refuses bf16 on a CPU without it (harness/cpu.py bf16_refusal), an int8 check holds for its class of CPU
    (int8_kernels), and these machines are sometimes AVX2-only."""
    from orchestrator.harness.cpu import FAKE_FLAGS_ENV

    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 avx512f avx512_bf16 avx512_vnni")


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    path = SHARED / "assets"
    if not path.is_dir():
        pytest.skip(f"{path} is not present (the shared development assets)")
    return path


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature/asset cache for the whole session, so the dev set is preprocessed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def fp32_model(shared_assets: Path) -> Path:
    """The demo model's fp32 ONNX (MiniLM-L6-H384 fine-tuned on SQuAD) of the shared assets."""
    path = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the demo fp32 ONNX of the shared assets)")
    return path


@pytest.fixture(scope="session")
def openvino_python() -> Path:
    """The openvino-cpu venv's python, built on first use; the test is skipped where it cannot be built."""
    from orchestrator.errors import PreflightError
    from orchestrator.runners import venvs

    try:
        return venvs.ensure_venv("openvino-cpu")
    except PreflightError as exc:
        pytest.skip(f"the openvino environment cannot be built here: {exc}")
