"""Harness overhead, by mechanism: with an engine that answers at once, the optimized SUT runs a LoadGen
Offline query as length-sorted batches, each answered with ONE QuerySamplesComplete call carrying one
response per sample, from inputs and responses in reused buffers. Real LoadGen, in a fresh process.
The speed itself (>= 100,000 samples/s) is measured by benchmarks/bench_throughput.py, not asserted here:
a timed test on a shared 2-core machine would be flaky."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from harness_support import REPO, harness_env, write_features

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
import mlperf_loadgen as lg
from harness_support import InstantEngine
from orchestrator.harness.qsl import SampleLibrary, load_feature_arrays
from orchestrator.harness.sut import BertSUT

features_path, samples, batch, log_dir, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
features = load_feature_arrays(Path(features_path))
settings = lg.TestSettings()
settings.scenario = lg.TestScenario.Offline
settings.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
settings.min_query_count = samples
settings.max_query_count = samples
settings.min_duration_ms = 0
settings.offline_expected_qps = 1
total = samples if mode == "accuracy" else features.count
qsl = SampleLibrary(features, total, total)
engine = InstantEngine("none", device="cpu", batch_size=batch, threads=None, execution_provider="CPU", options={})
sut = BertSUT(engine, qsl, scenario="Offline", kind="optimized", batch_size=batch)
calls = []
real_complete = lg.QuerySamplesComplete
def counting(responses, *args):
    calls.append(len(responses))
    return real_complete(responses, *args)
lg.QuerySamplesComplete = counting
log_settings = lg.LogSettings()
log_settings.log_output.outdir = log_dir
log_settings.enable_trace = False
qh, sh = qsl.construct(), sut.construct()
lg.StartTestWithLogSettings(sh, qh, settings, log_settings)
sut.close(); qsl.destroy()
print(json.dumps({"calls": calls, "engine_calls": engine.calls, "buffers": len(set(engine.buffers_seen)),
                  "completed": sut.samples_completed, "batches": sut.batches_run, "complete_calls": sut.complete_calls,
                  "error": repr(sut.error) if sut.error else None}))
"""


def _run(tmp_path: Path, samples: int, batch: int, mode: str) -> dict:
    features = write_features(tmp_path / "features.npz")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(features), str(samples), str(batch), str(log_dir), mode],
        cwd=REPO,
        env=harness_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_query_samples_complete_call_per_batch(tmp_path: Path) -> None:
    samples, batch = 5000, 64
    out = _run(tmp_path, samples, batch, "performance")
    batches = math.ceil(samples / batch)
    assert out["error"] is None
    # The warm-up is one engine call outside the test; then exactly one engine call per batch...
    assert len(out["engine_calls"]) == 1 + batches
    assert out["batches"] == batches and out["completed"] == samples
    # ...and one QuerySamplesComplete per batch, each with one response per sample of the batch.
    assert out["complete_calls"] == batches
    assert len(out["calls"]) == batches
    assert sorted(out["calls"]) == sorted([batch] * (samples // batch) + [samples % batch])
    # The input buffers are reused: the same memory for every batch (warm-up included).
    assert out["buffers"] == 2  # the warm-up's own arrays, and the one reused input buffer


def test_accuracy_responses_carry_each_sample_at_its_real_length(tmp_path: Path) -> None:
    samples = 300
    _run(tmp_path, samples, 32, "accuracy")
    entries = json.loads((tmp_path / "logs" / "mlperf_log_accuracy.json").read_text())
    with np.load(tmp_path / "features.npz") as z:
        ids, seq_len = z["input_ids"], z["seq_len"]
    assert sorted(e["qsl_idx"] for e in entries) == list(range(samples))
    for e in entries:
        i = e["qsl_idx"]
        data = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32).reshape(-1, 2)
        assert data.shape == (seq_len[i], 2)
        np.testing.assert_array_equal(data[:, 0], ids[i, : seq_len[i]].astype(np.float32))
        np.testing.assert_array_equal(data[:, 1], np.arange(seq_len[i], dtype=np.float32))
