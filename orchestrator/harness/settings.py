"""LoadGen settings: the `user.conf` the harness writes from the spec, and the TestSettings read from it.

LoadGen's `mlperf.conf` (min_duration 600 s, performance sample count 10,833, the round's seeds, Server
130 ms...) is compiled into `mlperf_loadgen`; only `user.conf` comes from disk, and the built-in bert
rules apply only with the model name `bert`. A test-mode run is shortened ONLY through
`min_query_count`, `max_query_count` and `target_qps`: the submission checker accepts a short run but
rejects a configuration that lowers `min_duration` or the performance sample count, so those keys are
never written here.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import ConfigError
from orchestrator.harness.spec import HarnessSpec
from orchestrator.mlperf import DATASET_SIZE, MIN_DURATION_S, MODEL_NAME, Pass, Scenario

if TYPE_CHECKING:
    import mlperf_loadgen

log = logging.getLogger(__name__)

USER_CONF_FILE = "user.conf"

# Offline: LoadGen issues max(min_query_count, OFFLINE_SLACK * min_duration_s * target_qps) samples.
OFFLINE_SLACK = 1.1
MULTISTREAM_SAMPLES_PER_QUERY = 8  # mlperf.conf; a checker rule, so never changed
# Server test runs without a target_qps spread their arrivals over about this many seconds.
SERVER_TEST_SPREAD_S = 10.0


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}".rstrip("0")


def offline_test_qps(sample_count: int) -> float:
    """A target_qps whose Offline query (1.1 x 600 s x qps samples) is no larger than sample_count.

    Rounded down to 6 decimals (what user.conf carries), so min_query_count = sample_count decides.
    """
    return math.floor(sample_count / (OFFLINE_SLACK * MIN_DURATION_S) * 1e6) / 1e6


def server_test_qps(spec: HarnessSpec) -> float:
    if spec.target_qps is not None:
        return spec.target_qps
    return max(1.0, spec.test_query_count / SERVER_TEST_SPREAD_S)


def user_conf_entries(spec: HarnessSpec) -> dict[str, str]:
    """The per-scenario keys (without the `bert.<Scenario>.` prefix) this spec sets, in order."""
    scenario = spec.scenario
    n = spec.test_query_count
    entries: dict[str, str] = {}
    if spec.execution_mode == "test":
        if scenario == Scenario.Offline:
            if spec.target_qps is not None:
                log.warning("target_qps is ignored in an Offline test run: the query holds test_query_count samples")
            entries["min_query_count"] = str(n)
            entries["target_qps"] = _fmt(offline_test_qps(n))
        elif scenario == Scenario.SingleStream:
            entries["min_query_count"] = str(n)
            entries["max_query_count"] = str(n)
        elif scenario == Scenario.MultiStream:
            queries = math.ceil(n / MULTISTREAM_SAMPLES_PER_QUERY)
            entries["min_query_count"] = str(queries)
            entries["max_query_count"] = str(queries)
        else:  # Server
            entries["min_query_count"] = str(n)
            entries["max_query_count"] = str(n)
            entries["target_qps"] = _fmt(server_test_qps(spec))
    elif spec.target_qps is not None:
        if scenario in (Scenario.Offline, Scenario.Server):
            entries["target_qps"] = _fmt(spec.target_qps)
        else:
            log.warning("target_qps has no meaning in %s and is not written to user.conf", scenario)
    if spec.target_latency_ms is not None:
        if scenario == Scenario.Offline:
            log.warning("target_latency has no meaning in Offline and is not written to user.conf")
        else:
            if scenario == Scenario.Server:
                log.warning("target_latency overrides the MLPerf Server bound of 130 ms for bert")
            entries["target_latency"] = _fmt(spec.target_latency_ms)
    return entries


def user_conf_text(spec: HarnessSpec) -> str:
    lines = [
        f"# Written by the mlperf-bert harness: {spec.execution_mode} mode, {spec.scenario}.",
        "# LoadGen's built-in mlperf.conf supplies everything else (min_duration, sample counts, seeds).",
    ]
    lines += [f"{MODEL_NAME}.{spec.scenario}.{k} = {v}" for k, v in user_conf_entries(spec).items()]
    return "\n".join(lines) + "\n"


def write_user_conf(spec: HarnessSpec, run_dir: Path) -> Path:
    path = run_dir / USER_CONF_FILE
    path.write_text(user_conf_text(spec))
    return path


def expected_samples(spec: HarnessSpec, mode: Pass, accuracy_count: int) -> int | None:
    """How many samples LoadGen will issue in this mode, when that is known in advance (for progress)."""
    if mode == "accuracy":
        if spec.scenario == Scenario.MultiStream:  # the last query is filled up with repeated samples
            per = MULTISTREAM_SAMPLES_PER_QUERY
            return math.ceil(accuracy_count / per) * per
        return accuracy_count
    if spec.execution_mode == "test":
        n = spec.test_query_count
        if spec.scenario == Scenario.MultiStream:
            return math.ceil(n / MULTISTREAM_SAMPLES_PER_QUERY) * MULTISTREAM_SAMPLES_PER_QUERY
        return n
    if spec.scenario == Scenario.Offline:
        qps = spec.target_qps if spec.target_qps is not None else 1.0
        return max(DATASET_SIZE, int(OFFLINE_SLACK * MIN_DURATION_S * qps))
    return None  # duration-bound: depends on the system's speed


def build_test_settings(user_conf: Path, scenario: Scenario) -> mlperf_loadgen.TestSettings:
    """TestSettings = LoadGen's mlperf.conf for `bert` + our user.conf, for one scenario.

    Call this ONCE per process and switch modes with set_mode(): LoadGen counts FromConfig calls in a
    process-wide counter and logs the error "Multiple conf files are used" into every later test's detail
    log, which the submission checker rejects.
    """
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    rc = settings.FromConfig(str(user_conf), MODEL_NAME, scenario)
    if rc != 0:
        raise ConfigError(f"LoadGen rejected {user_conf} (code {rc}); check its `bert.<Scenario>.<key> = value` lines.")
    settings.scenario = getattr(lg.TestScenario, scenario)
    return settings


def set_mode(settings: mlperf_loadgen.TestSettings, mode: Pass) -> None:
    import mlperf_loadgen as lg

    settings.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
