"""Reading LoadGen's logs on the host (no engine, no LoadGen import).

`mlperf_log_detail.txt` holds one `:::MLLOG {json}` entry per line; it is the source of truth (the
submission checker reads it too). `mlperf_log_summary.txt` is LoadGen's human summary of the same run;
it is parsed only to cross-check the headline numbers.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from orchestrator.errors import RunError
from orchestrator.mlperf import Scenario

log = logging.getLogger(__name__)

DETAIL_FILE = "mlperf_log_detail.txt"
SUMMARY_FILE = "mlperf_log_summary.txt"
_PREFIX = ":::MLLOG"
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
_POWER_TIME = "%m-%d-%Y %H:%M:%S.%f"


class LogEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    value: Any
    time_ms: float | None = None
    is_error: bool = False
    is_warning: bool = False


class DetailLog(BaseModel):
    """Every entry in order, and key -> value (the last value when a key repeats)."""

    entries: list[LogEntry]
    values: dict[str, Any]
    skipped_lines: int = 0  # unreadable `:::MLLOG` lines (e.g. the last one of an interrupted run)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def errors(self) -> list[str]:
        return [_text(e.value) for e in self.entries if e.is_error]

    @property
    def warnings(self) -> list[str]:
        return [_text(e.value) for e in self.entries if e.is_warning]


class PerfSummary(BaseModel):
    """One performance run, from its detail log. Latencies in milliseconds."""

    scenario: str
    mode: str
    result_valid: bool
    metric: str  # what MLPerf reports for this scenario
    metric_value: float | None
    samples_per_second: float | None = None  # Offline: samples/s; Server: completed samples/s; else QPS
    latency_ms: float | None = None  # SingleStream p90, MultiStream p99 (per query)
    latency_percentiles_ms: dict[str, float] = Field(default_factory=dict)  # "50", "90", ... "99.9"
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    mean_latency_ms: float | None = None
    query_count: int | None = None
    samples_per_query: int | None = None
    samples_issued: int | None = None
    duration_s: float | None = None
    min_duration_met: bool | None = None
    min_queries_met: bool | None = None
    perf_constraints_met: bool | None = None  # Server only
    early_stopping_met: bool | None = None
    early_stopping_result: str | None = None
    invalid_reason: str | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    min_duration_ms: int | None = None
    min_query_count: int | None = None
    max_query_count: int | None = None
    performance_sample_count: int | None = None
    seeds: dict[str, int] = Field(default_factory=dict)
    loadgen_version: str | None = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    summary_mismatches: list[str] = Field(default_factory=list)  # detail vs summary file disagreements

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_count(self) -> int:
        return len(self.errors)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warning_count(self) -> int:
        return len(self.warnings)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parse_detail(path: Path) -> DetailLog:
    if not path.is_file():
        raise RunError(f"There is no LoadGen detail log at {path}; the run did not reach LoadGen.")
    entries: list[LogEntry] = []
    skipped = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith(_PREFIX):
                continue
            try:
                raw = json.loads(line[len(_PREFIX) :])
                meta = raw.get("metadata") or {}
                entries.append(
                    LogEntry(
                        key=str(raw["key"]),
                        value=raw.get("value"),
                        time_ms=raw.get("time_ms"),
                        is_error=bool(meta.get("is_error", False)),
                        is_warning=bool(meta.get("is_warning", False)),
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                skipped += 1
    if skipped:
        log.warning("%s: skipped %d unreadable log lines", path, skipped)
    return DetailLog(entries=entries, values={e.key: e.value for e in entries}, skipped_lines=skipped)


def parse_summary(path: Path) -> dict[str, str]:
    """`key : value` lines of mlperf_log_summary.txt (keys stripped; indented sub-items included)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if ":" not in line or line.startswith(("=", " *")):
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key and value:
            values.setdefault(key, value)
    return values


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _bool(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v.strip().lower() in ("true", "yes", "1")
    return bool(v)


def _duration_s(d: DetailLog) -> float | None:
    begin, end = d.get("power_begin"), d.get("power_end")
    if not (isinstance(begin, str) and isinstance(end, str)):
        return None
    try:
        return (datetime.strptime(end, _POWER_TIME) - datetime.strptime(begin, _POWER_TIME)).total_seconds()
    except ValueError:
        return None


def summarize(d: DetailLog) -> PerfSummary:
    scenario = str(d.get("effective_scenario", d.get("requested_scenario", "unknown")))
    mode = str(d.get("effective_test_mode", "unknown"))
    pct = {p: d.get(f"result_{p}_percentile_latency_ns") for p in PERCENTILES}
    percentiles = {p.rstrip("0").rstrip("."): float(v) / 1e6 for p, v in pct.items() if v is not None}
    samples_per_second: float | None
    latency: float | None = None
    if scenario == Scenario.Offline:
        metric = "samples_per_second"
        samples_per_second = _float(d.get("result_samples_per_second"))
        value = samples_per_second
    elif scenario == Scenario.Server:
        metric = "completed_samples_per_second"
        samples_per_second = _float(d.get("result_completed_samples_per_sec"))
        value = samples_per_second
    elif scenario == Scenario.SingleStream:
        metric = "p90_latency_ms"
        samples_per_second = _float(d.get("result_qps_with_loadgen_overhead"))
        latency = _ms(pct["90.00"])
        value = latency
    else:  # MultiStream: the 99th percentile of per-query latency
        metric = "p99_query_latency_ms"
        samples_per_second = None
        latency = _ms(d.get("result_99.00_percentile_per_query_latency_ns"))
        value = latency
    query_count = _int(d.get("result_query_count"))
    spq = _int(d.get("effective_samples_per_query"))
    return PerfSummary(
        scenario=scenario,
        mode=mode,
        result_valid=d.get("result_validity") == "VALID",
        metric=metric,
        metric_value=value,
        samples_per_second=samples_per_second,
        latency_ms=latency,
        latency_percentiles_ms=percentiles,
        min_latency_ms=_ms(d.get("result_min_latency_ns")),
        max_latency_ms=_ms(d.get("result_max_latency_ns")),
        mean_latency_ms=_ms(d.get("result_mean_latency_ns")),
        query_count=query_count,
        samples_per_query=spq,
        samples_issued=query_count * spq if query_count is not None and spq is not None else None,
        duration_s=_duration_s(d),
        min_duration_met=_bool(d.get("result_min_duration_met")),
        min_queries_met=_bool(d.get("result_min_queries_met")),
        perf_constraints_met=_bool(d.get("result_perf_constraints_met")),
        early_stopping_met=_bool(d.get("early_stopping_met")),
        early_stopping_result=(str(d.get("early_stopping_result")).strip() or None)
        if d.get("early_stopping_result") is not None
        else None,
        invalid_reason=(str(d.get("result_invalid_reason")).strip() or None)
        if d.get("result_invalid_reason") is not None
        else None,
        target_qps=_float(d.get("effective_target_qps")),
        target_latency_ms=_ms(d.get("effective_target_latency_ns")),
        min_duration_ms=_int(d.get("effective_min_duration_ms")),
        min_query_count=_int(d.get("effective_min_query_count")),
        max_query_count=_int(d.get("effective_max_query_count")),
        performance_sample_count=_int(d.get("effective_performance_sample_count")),
        seeds={
            k: int(d.get(f"effective_{k}"))
            for k in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")
            if d.get(f"effective_{k}") is not None
        },
        loadgen_version=d.get("loadgen_version"),
        errors=d.errors,
        warnings=d.warnings,
    )


# The summary's headline line per scenario, and the PerfSummary field it must agree with.
_SUMMARY_METRIC: dict[str, tuple[str, str]] = {
    Scenario.Offline: ("Samples per second", "samples_per_second"),
    Scenario.Server: ("Completed samples per second", "samples_per_second"),
    Scenario.SingleStream: ("90.00 percentile latency (ns)", "latency_ms"),
    Scenario.MultiStream: ("99.0th percentile latency (ns)", "latency_ms"),
}


def cross_check(perf: PerfSummary, summary: dict[str, str]) -> list[str]:
    """Where the summary file disagrees with the detail log (empty when they agree)."""
    problems: list[str] = []
    if summary.get("Scenario") not in (None, perf.scenario):
        problems.append(f"scenario {summary.get('Scenario')!r} vs {perf.scenario!r}")
    result = summary.get("Result is")
    if result is not None and (result == "VALID") != perf.result_valid:
        problems.append(f"result {result!r} vs result_valid={perf.result_valid}")
    label, field = _SUMMARY_METRIC.get(perf.scenario, ("", ""))
    text = summary.get(label) if label else None
    if text is not None:
        expected = getattr(perf, field)
        try:
            found = float(re.split(r"\s+", text)[0])
        except ValueError:
            problems.append(f"{label} {text!r} is not a number")
        else:
            if label.endswith("(ns)"):
                found /= 1e6
            # The summary rounds (e.g. 2 decimals for rates).
            if expected is None or abs(found - expected) > max(0.01, 1e-3 * abs(expected)):
                problems.append(f"{label} {text} vs detail {expected}")
    return problems


def parse_performance(log_dir: Path) -> PerfSummary:
    """The PerfSummary of the performance run in log_dir, cross-checked against its summary file."""
    perf = summarize(parse_detail(log_dir / DETAIL_FILE))
    summary_path = log_dir / SUMMARY_FILE
    if summary_path.is_file():
        perf.summary_mismatches = cross_check(perf, parse_summary(summary_path))
        for problem in perf.summary_mismatches:
            log.warning("%s disagrees with %s: %s", SUMMARY_FILE, DETAIL_FILE, problem)
    else:
        perf.summary_mismatches = [f"{SUMMARY_FILE} is missing"]
    return perf
