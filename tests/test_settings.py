"""user.conf from the spec, and the sample counts LoadGen really issues with it (real LoadGen runs in a
fresh harness process each, with the instant fake engine so only LoadGen's own behaviour is measured)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from harness_support import FAKE_ENGINE, V61_SEEDS, accuracy_entries, make_spec, run_harness, write_features

from orchestrator.harness.settings import (
    expected_samples,
    offline_test_qps,
    user_conf_entries,
    user_conf_text,
)
from orchestrator.loadgen_logs import parse_detail, parse_performance

FORBIDDEN = ("min_duration", "performance_sample_count", "samples_per_query", "seed")


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_features(tmp_path_factory.mktemp("feat") / "features.npz")


def _spec(tmp_path: Path, **kw: object):
    return make_spec(tmp_path / "run", tmp_path / "features.npz", **kw)


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "MultiStream", "Server"])
def test_test_mode_shortens_only_through_query_counts_and_qps(tmp_path: Path, scenario: str) -> None:
    text = user_conf_text(_spec(tmp_path, scenario=scenario, test_query_count=20))
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines, text
    for line in lines:
        key, _, value = line.partition(" = ")
        assert key.startswith(f"bert.{scenario}.")
        assert not any(f in key for f in FORBIDDEN), line
        float(value)
    if scenario == "MultiStream":
        assert f"bert.MultiStream.max_query_count = {math.ceil(20 / 8)}" in lines


def test_offline_test_qps_keeps_the_query_at_the_requested_count() -> None:
    for n in (1, 10, 16, 20, 32, 100, 659, 660, 661, 10833):
        qps = offline_test_qps(n)
        assert int(1.1 * 600 * qps) <= n  # so max(min_query_count=n, 660 x qps) == n
        assert qps > 0


def test_valid_mode_writes_only_what_was_given(tmp_path: Path) -> None:
    assert user_conf_entries(_spec(tmp_path, execution_mode="valid")) == {}
    assert user_conf_entries(_spec(tmp_path, execution_mode="valid", target_qps=55.5)) == {"target_qps": "55.5"}
    assert user_conf_entries(
        _spec(tmp_path, execution_mode="valid", scenario="SingleStream", target_qps=3.0, target_latency_ms=12)
    ) == {"target_latency": "12"}
    assert user_conf_entries(
        _spec(tmp_path, execution_mode="valid", scenario="Server", target_qps=40, target_latency_ms=130)
    ) == {"target_qps": "40", "target_latency": "130"}


def test_expected_samples(tmp_path: Path) -> None:
    spec = _spec(tmp_path, scenario="MultiStream", test_query_count=20)
    assert expected_samples(spec, "performance", 10833) == 24
    assert expected_samples(spec, "accuracy", 20) == 24
    valid = _spec(tmp_path, scenario="Offline", execution_mode="valid", target_qps=100)
    assert expected_samples(valid, "performance", 10833) == 66000
    assert expected_samples(_spec(tmp_path, scenario="Server", execution_mode="valid"), "performance", 10833) is None


# What LoadGen really issues for test_query_count=20 (MultiStream issues whole queries of 8).
ISSUED = {"Offline": 20, "SingleStream": 20, "MultiStream": 24, "Server": 20}


@pytest.mark.parametrize("scenario", list(ISSUED))
def test_loadgen_issues_the_expected_counts(tmp_path: Path, features: Path, scenario: str) -> None:
    run_dir = tmp_path / "run"
    make_spec(
        run_dir,
        features,
        scenario=scenario,
        test_query_count=20,
        engine_class=FAKE_ENGINE,
        target_qps=2000 if scenario == "Server" else None,
    )
    code, stderr, result = run_harness(run_dir)
    assert code == 0, stderr
    assert result is not None and result.status == "succeeded"
    issued = {m.mode: m.samples_issued for m in result.modes}
    assert issued == {"accuracy": ISSUED[scenario], "performance": ISSUED[scenario]}
    perf = parse_performance(run_dir / "performance" / "run_1")
    assert perf.samples_issued == ISSUED[scenario]
    assert perf.min_duration_ms == 600_000 and perf.performance_sample_count == 10833
    # One FromConfig per process: both modes carry the round's seeds and no "Multiple conf files" error.
    for log_dir in ("accuracy", "performance/run_1"):
        detail = parse_detail(run_dir / log_dir / "mlperf_log_detail.txt")
        assert {k: detail.get(f"effective_{k}") for k in V61_SEEDS} == V61_SEEDS
        assert not any("Multiple conf" in e for e in detail.errors)
    # Accuracy mode issues every QSL index (MultiStream repeats a few to fill its last query).
    idx = [e["qsl_idx"] for e in accuracy_entries(run_dir)]
    assert sorted(set(idx)) == list(range(20))
    assert len(idx) == ISSUED[scenario]
