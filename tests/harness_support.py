"""Helpers for the harness tests: a features .npz in the project's layout, harness specs, and a fake
instant engine (importable by the harness subprocess as `harness_support:InstantEngine` with tests/ on
PYTHONPATH). The fake exists only for layout/batching/count tests; real-engine tests sit beside them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.spec import HarnessResult, HarnessSpec

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
REFERENCE_FEATURES = TESTS / "fixtures" / "reference_features.npz"
MODEL = REPO / "embedded" / "models" / "demo-minilm-l6-squad.int8.onnx"
ORT_ENGINE = "orchestrator.harness.engines.onnxruntime:OnnxRuntimeEngine"
FAKE_ENGINE = "harness_support:InstantEngine"
CPU = "CPUExecutionProvider"
V61_SEEDS = {
    "qsl_rng_seed": 2085463073848966840,
    "sample_index_rng_seed": 2747215439041700203,
    "schedule_rng_seed": 16159082839903944936,
}


def write_features(path: Path, count: int | None = None) -> Path:
    """The reference features in the dataset step's .npz layout (int32/int8/int16), optionally the first `count`."""
    with np.load(REFERENCE_FEATURES, allow_pickle=False) as z:
        ids, mask, seg = z["input_ids"], z["input_mask"], z["segment_ids"]
    if count is not None:
        ids, mask, seg = ids[:count], mask[:count], seg[:count]
    np.savez(
        path,
        input_ids=ids.astype(np.int32),
        input_mask=mask.astype(np.int8),
        segment_ids=seg.astype(np.int8),
        seq_len=mask.sum(axis=1).astype(np.int16),
    )
    return path


def make_spec(run_dir: Path, features: Path, **overrides: object) -> HarnessSpec:
    values: dict[str, object] = {
        "target": "onnxruntime-cpu",
        "engine_class": ORT_ENGINE,
        "execution_provider": CPU,
        "model_path": str(MODEL),
        "features_path": str(features),
        "run_dir": str(run_dir),
        "scenario": "Offline",
        "modes": ["accuracy", "performance"],
        "test_query_count": 16,
        "batch_size": 8,
        "threads": 2,
        "progress": False,
    }
    values.update(overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = HarnessSpec.model_validate(values)
    spec.write(run_dir)
    return spec


def harness_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    return env


def run_harness(run_dir: Path, timeout: float = 240) -> tuple[int, str, HarnessResult | None]:
    """`python -m orchestrator.harness run_dir` in a fresh process, as the runners do."""
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.harness", str(run_dir)],
        cwd=REPO,
        env=harness_env(),
        check=False,  # the exit code is what the tests look at
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stderr, HarnessResult.read(run_dir)


def accuracy_entries(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())


def logits_of(entry: dict) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.float32).reshape(-1, 2)


class InstantEngine(Engine):
    """Answers at once: start logit = input id, end logit = position. Options (strings):
    report_provider, buckets ("128,384"), max_batch, instances (instance_count), shape_cost ("1": its first
    call at each shape is slow, like OpenVINO's), fail_at_batch (raise on that call, 1-based), delay_s (sleep per call), record (a file that gets one JSON line [B, S] per call)."""

    name = "instant"

    def __init__(self, model_path: str, **kwargs: object) -> None:
        super().__init__(model_path, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[int, int]] = []
        self.calls_by_instance: list[tuple[int, int, int]] = []  # (instance, B, S): one append, thread-safe
        self.buffers_seen: list[int] = []

    @property
    def execution_provider(self) -> str:
        return self.options.get("report_provider", self.requested_provider)

    def versions(self) -> dict[str, str]:
        return {"instant": "0"}

    def seq_buckets(self) -> list[int] | None:
        text = self.options.get("buckets")
        return [int(x) for x in text.split(",")] if text else None

    def max_batch(self) -> int | None:
        text = self.options.get("max_batch")
        return int(text) if text else None

    def shape_costs_first_call(self) -> bool:
        return self.options.get("shape_cost") == "1"

    @property
    def instance_count(self) -> int:
        return int(self.options.get("instances", "1"))

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        assert 0 <= instance < self.instance_count
        assert input_ids.dtype == np.int64 and input_ids.flags.c_contiguous
        assert input_ids.shape == input_mask.shape == segment_ids.shape
        self.calls.append(tuple(input_ids.shape))  # type: ignore[arg-type]
        self.calls_by_instance.append((instance, *input_ids.shape))  # type: ignore[arg-type]
        self.buffers_seen.append(input_ids.ctypes.data)
        if "record" in self.options:
            with open(self.options["record"], "a") as fh:
                fh.write(json.dumps(list(input_ids.shape)) + "\n")
        if "fail_at_batch" in self.options and len(self.calls) == int(self.options["fail_at_batch"]):
            raise RuntimeError("instant engine failed on purpose")
        if "delay_s" in self.options:
            time.sleep(float(self.options["delay_s"]))
        b, s = input_ids.shape
        start = input_ids.astype(np.float32)
        end = np.broadcast_to(np.arange(s, dtype=np.float32), (b, s)).copy()
        return start, end


def wait_for_harness_line(under: Path, text: str, timeout: float) -> Path:
    """The harness.log below `under` once it contains `text` (e.g. "QSL samples": the harness has loaded its
    engine and is starting a LoadGen test). Tests that interrupt a run wait for this rather than a fixed
    delay, which a loaded machine can outlast."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log_file in under.glob("**/harness.log"):
            if text in log_file.read_text(errors="replace"):
                return log_file
        time.sleep(0.2)
    raise AssertionError(f"no harness.log below {under} said {text!r} within {timeout:.0f} s")
