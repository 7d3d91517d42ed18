"""Host-side LoadGen log parsing, on logs a real LoadGen run writes into a tmp dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness_support import FAKE_ENGINE, V61_SEEDS, make_spec, run_harness, write_features

from orchestrator.errors import RunError
from orchestrator.loadgen_logs import cross_check, parse_detail, parse_performance, parse_summary


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real performance logs of each scenario (instant fake engine: only LoadGen's output matters)."""
    root = tmp_path_factory.mktemp("logs")
    features = write_features(root / "features.npz")
    out = {}
    for scenario in ("Offline", "SingleStream", "MultiStream", "Server"):
        run_dir = root / scenario
        make_spec(
            run_dir,
            features,
            engine_class=FAKE_ENGINE,
            scenario=scenario,
            modes=["performance"],
            test_query_count=16,
            target_qps=1000 if scenario == "Server" else None,
        )
        code, stderr, _ = run_harness(run_dir)
        assert code == 0, stderr
        out[scenario] = run_dir / "performance" / "run_1"
    return out


METRICS = {
    "Offline": "samples_per_second",
    "Server": "completed_samples_per_second",
    "SingleStream": "p90_latency_ms",
    "MultiStream": "p99_query_latency_ms",
}


@pytest.mark.parametrize("scenario", list(METRICS))
def test_parse_performance_of_a_real_run(logs: dict[str, Path], scenario: str) -> None:
    perf = parse_performance(logs[scenario])
    assert perf.scenario == scenario and perf.mode == "PerformanceOnly"
    assert perf.metric == METRICS[scenario] and perf.metric_value is not None and perf.metric_value > 0
    assert perf.result_valid is False  # a 16-sample test run cannot meet the 600 s minimum
    assert perf.min_duration_met is False
    assert perf.samples_issued == 16
    assert perf.seeds == V61_SEEDS
    assert perf.loadgen_version is not None and perf.loadgen_version.startswith("6.0.17")
    assert set(perf.latency_percentiles_ms) == {"50", "90", "95", "97", "99", "99.9"}
    p = perf.latency_percentiles_ms
    assert perf.min_latency_ms is not None and perf.max_latency_ms is not None
    assert perf.min_latency_ms <= p["50"] <= p["90"] <= p["99"] <= p["99.9"] <= perf.max_latency_ms
    assert perf.duration_s is not None and perf.duration_s >= 0
    assert perf.min_duration_ms == 600_000 and perf.performance_sample_count == 10833
    assert perf.summary_mismatches == []
    assert perf.error_count == len(perf.errors)
    if scenario == "Offline":
        assert perf.samples_per_query == 16 and perf.errors == []
    else:  # LoadGen reports the test-mode stop through max_query_count as an error entry
        assert any("Max query count reached" in e for e in perf.errors)
    if scenario in ("SingleStream", "MultiStream", "Server"):
        assert perf.early_stopping_met is False and perf.early_stopping_result
    dumped = perf.model_dump()
    assert dumped["error_count"] == perf.error_count and "warning_count" in dumped


def test_cross_check_catches_a_disagreeing_summary(logs: dict[str, Path]) -> None:
    perf = parse_performance(logs["Offline"])
    summary = parse_summary(logs["Offline"] / "mlperf_log_summary.txt")
    assert summary["Scenario"] == "Offline" and summary["Result is"] == "INVALID"
    assert cross_check(perf, summary) == []
    assert perf.samples_per_second is not None
    summary["Samples per second"] = str(perf.samples_per_second * 2 + 1)
    summary["Result is"] = "VALID"
    problems = cross_check(perf, summary)
    assert len(problems) == 2


def test_parse_detail_skips_broken_lines_and_collects_errors(tmp_path: Path) -> None:
    def line(key: str, value: object, error: bool = False, warning: bool = False) -> str:
        meta = {"is_error": error, "is_warning": warning}
        return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "metadata": meta})

    path = tmp_path / "mlperf_log_detail.txt"
    path.write_text(
        "\n".join(
            [
                "some stdout noise",
                line("effective_scenario", "Offline"),
                line("error_runtime", "first", error=True),
                line("warning_generic_message", "careful", warning=True),
                line("error_runtime", "second", error=True),
                ':::MLLOG {"key": "truncated", "val',  # the last line of an interrupted run
            ]
        )
        + "\n"
    )
    detail = parse_detail(path)
    assert detail.skipped_lines == 1
    assert detail.errors == ["first", "second"] and detail.warnings == ["careful"]
    assert detail.get("error_runtime") == "second"
    assert detail.get("effective_scenario") == "Offline"


def test_missing_detail_log_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no LoadGen detail log"):
        parse_performance(tmp_path)
