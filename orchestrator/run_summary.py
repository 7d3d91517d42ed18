"""What a finished run means, for people (format_result) and for programs (result_json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.accuracy import format_report
from orchestrator.mlperf import Scenario
from orchestrator.workflows.accuracy_label import UNCHECKED, check_advice, unchecked_precision
from orchestrator.workflows.benchmark import RunResult

TEST_MODE_LABEL = "TEST MODE: a short run, not a valid MLPerf result"


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


METRIC_LABELS = {
    "samples_per_second": ("{} samples/s", 2),
    "p90_latency_ms": ("90th-percentile latency {} ms", 2),
    "completed_samples_per_second": ("{} completed samples/s", 2),
    "p99_query_latency_ms": ("99th-percentile latency per query {} ms", 2),
}


def format_performance(perf: Any, scenario: str) -> str:
    template, digits = METRIC_LABELS.get(perf.metric, (perf.metric + " {}", 2))
    parts = [template.format(_fmt(perf.metric_value, digits=digits))]
    if scenario not in (Scenario.Offline, Scenario.Server) and perf.samples_per_second is not None:
        parts.append(f"{_fmt(perf.samples_per_second)} samples/s")
    lat = perf.latency_percentiles_ms
    pct = ", ".join(f"p{k} {_fmt(lat[k], ' ms')}" for k in ("50", "90", "99") if k in lat)
    if pct:
        parts.append(f"latency {pct}")
    parts.append(f"LoadGen result {'VALID' if perf.result_valid else 'INVALID'}")
    return "; ".join(parts)


def latency_note(result: RunResult) -> str | None:
    """What a latency-bound run's latencies include beyond the engine's compute, as its engine declared it
    (engine_settings `latency`; the Ray runner: the hop to the actors and back), with the measured cost."""
    rec = result.record
    note = rec.engine_settings.get("latency")
    if rec.scenario == Scenario.Offline or result.performance is None or not note:
        return None
    hop = rec.engine_settings.get("ray_hop_ms_per_batch")
    return note + (f" (measured: {hop} ms per batch beyond the engine's compute)" if hop else "")


def format_result(result: RunResult) -> str:
    rec = result.record
    lines = [f"Run {rec.run_id}: {rec.status.upper()}" + (f"  [{TEST_MODE_LABEL}]" if rec.test_mode else "")]
    demo = " (DEMO model, not an MLPerf model)" if rec.model_meta.get("demo") else ""
    lines.append(
        f"  {rec.target} on {rec.execution_provider}, {rec.scenario}, model {rec.model.name or rec.model.path}{demo}"
    )
    if rec.engine_settings:
        lines.append("  engine: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in rec.engine_settings.items()))
    if result.performance is not None:
        lines.append(f"  performance: {format_performance(result.performance, rec.scenario)}")
        note = latency_note(result)
        if note:
            lines.append(f"    latency: {note}")
        if rec.test_mode and not result.performance.result_valid:
            lines.append("    (INVALID is expected in test mode: the run is shorter than MLPerf's 600 s minimum)")
    if result.accuracy is not None:
        lines.append("  accuracy: " + format_report(result.accuracy).replace("\n", "\n    "))
    if rec.accuracy_check == UNCHECKED:
        lines.append(
            f"  {UNCHECKED.upper()}: this {unchecked_precision(rec)} run has no passing accuracy check; not for a "
            f"submission ({check_advice(rec)})"
        )
    elif rec.accuracy_check:
        lines.append(f"  accuracy check: {rec.accuracy_check}")
    files = ["run.json"]
    if result.accuracy is not None:
        files.append("accuracy/accuracy.txt")
    if result.performance is not None:
        files.append("performance/run_1/mlperf_log_summary.txt")
    lines.append(f"  results in {result.run_dir}/ ({', '.join(files)})")
    lines.append(f"  report of every run there: mlperf-bert report {Path(result.run_dir).parent} -o report.html")
    return "\n".join(lines)


def result_json(result: RunResult) -> dict[str, Any]:
    data = result.record.model_dump(mode="json")
    data["run_dir"] = str(result.run_dir)
    if result.record.test_mode:
        data["label"] = TEST_MODE_LABEL
    if result.record.accuracy_check == UNCHECKED:
        data["accuracy_label"] = UNCHECKED
    note = latency_note(result)
    if note:
        data["latency_note"] = note
    return data
