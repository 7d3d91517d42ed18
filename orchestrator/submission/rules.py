"""The facts a BERT submission must honour, in one place (see ../shared/docs/MLPERF_RULES.md).

Values were read from the official checker (mlcommons/inference, tools/submission/submission_checker/
constants.py, checks/*.py, loader.py; and the v5.x monolithic tools/submission/submission_checker.py)
and from the logs of the pinned LoadGen (mlcommons-loadgen 6.0.17), never copied from its code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from orchestrator.mlperf import DATASET_SIZE, REFERENCE_F1, Scenario

VERSIONS: Final = ("v6.1", "v6.0", "v5.1", "v5.0")
DEFAULT_VERSION: Final = "v6.1"
DIVISIONS: Final = ("open", "closed", "network")
SUBMITTABLE_DIVISIONS: Final = ("open", "closed")
SCENARIOS: Final = tuple(s.value for s in Scenario)
MLPERF_MODELS: Final = ("bert-99", "bert-99.9")

# LoadGen RNG seeds per round. The checker compares the effective_*_rng_seed of every performance log.
# mlcommons-loadgen 6.0.17 (pinned in pyproject.toml) compiles in the v6.1 set.
SEEDS: Final[dict[str, dict[str, int]]] = {
    "v6.1": {
        "qsl_rng_seed": 2085463073848966840,
        "sample_index_rng_seed": 2747215439041700203,
        "schedule_rng_seed": 16159082839903944936,
    },
    "v6.0": {
        "qsl_rng_seed": 2465351861681999779,
        "sample_index_rng_seed": 14276810075590677512,
        "schedule_rng_seed": 3936089224930324775,
    },
    "v5.1": {
        "qsl_rng_seed": 1780908523862526354,
        "sample_index_rng_seed": 14771362308971278857,
        "schedule_rng_seed": 18209322760996052031,
    },
    "v5.0": {
        "qsl_rng_seed": 6023615788873153749,
        "sample_index_rng_seed": 15036839855038426416,
        "schedule_rng_seed": 9933818062894767841,
    },
}


def is_v6(version: str) -> bool:
    """v6.x keeps everything under results/ and calls the source folder src/; v5.x used code/ + measurements/."""
    return version.startswith("v6")


# Benchmark constants (bert-99 / bert-99.9 are the same task with two accuracy targets).
ACCURACY_TARGET_F1: Final = {"bert-99": REFERENCE_F1 * 0.99, "bert-99.9": REFERENCE_F1 * 0.999}
EARLY_STOPPING_SCENARIOS: Final = (Scenario.SingleStream, Scenario.MultiStream, Scenario.Server)
# LoadGen 6.0.17 logs early_stopping_met=false below this many SingleStream queries (measured: 63 no, 64 yes),
# and the v6 checker rejects such a result in every division.
SINGLESTREAM_MIN_QUERIES: Final = 64


@dataclass(frozen=True)
class ClosedMinimums:
    """What a closed-division bert result must reach, as one round's checker states it."""

    min_duration_ms: int
    offline_samples_per_query: int  # OFFLINE_MIN_SPQ_SINCE_V4["bert-99"]
    # The checker's "min-queries" table. It is read ONLY for scenarios without early stopping
    # (config.uses_early_stopping: Server, SingleStream, MultiStream use it), so for bert only Offline's 1
    # applies; SingleStream's 1,024 is never consulted. SingleStream instead needs early_stopping_met, which
    # LoadGen 6.0.17 reaches from SINGLESTREAM_MIN_QUERIES (64) queries; a VALID closed run (>= 600 s)
    # issues far more anyway (BERT-large at ~0.5 s per query: ~1,200).
    min_queries: dict[str, int]


# One table per round (tools/submission/submission_checker/constants.py "min-queries",
# OFFLINE_MIN_SPQ_SINCE_V4, TEST_DURATION_MS); the same values in v5.0 to v6.1 for bert.
CLOSED_MINIMUMS: Final[dict[str, ClosedMinimums]] = {
    version: ClosedMinimums(
        min_duration_ms=600_000,
        offline_samples_per_query=DATASET_SIZE,
        min_queries={Scenario.SingleStream: 1024, Scenario.Offline: 1},
    )
    for version in ("v6.1", "v6.0", "v5.1", "v5.0")
}

# Since v5.0 bert is an edge benchmark: these are the closed division's required scenarios, and an edge
# system may not submit any other scenario for it in the closed division.
CLOSED_REQUIRED_SCENARIOS: Final = (Scenario.SingleStream, Scenario.Offline)
SYSTEM_TYPES_WITH_EDGE: Final = ("edge", "datacenter,edge", "edge,datacenter")
SYSTEM_TYPES: Final = ("datacenter", *SYSTEM_TYPES_WITH_EDGE)
STATUSES: Final = ("available", "preview", "rdi")

# Result metric per scenario: detail-log key, divisor to reach the unit, unit (as in summary.csv).
RESULT_METRIC: Final[dict[str, tuple[str, float, str]]] = {
    Scenario.Offline: ("result_samples_per_second", 1.0, "Samples/s"),
    Scenario.SingleStream: ("early_stopping_latency_ss", 1e6, "Latency (ms)"),
    Scenario.MultiStream: ("early_stopping_latency_ms", 1e6, "Latency (ms)"),
    Scenario.Server: ("result_completed_samples_per_sec", 1.0, "Queries/s"),
}

# File names.
DETAIL_LOG: Final = "mlperf_log_detail.txt"
SUMMARY_LOG: Final = "mlperf_log_summary.txt"
ACCURACY_LOG: Final = "mlperf_log_accuracy.json"
TRACE_LOG: Final = "mlperf_log_trace.json"
ACCURACY_TXT: Final = "accuracy.txt"
MEASUREMENTS_JSON: Final = "measurements.json"
USER_CONF: Final = "user.conf"
README: Final = "README.md"
MODEL_MAPPING: Final = "model_mapping.json"
PERF_FILES: Final = frozenset({SUMMARY_LOG, DETAIL_LOG})
PERF_OPTIONAL: Final = frozenset({ACCURACY_LOG, TRACE_LOG})
ACC_FILES: Final = frozenset({SUMMARY_LOG, DETAIL_LOG, ACCURACY_LOG, ACCURACY_TXT})
ACC_OPTIONAL: Final = frozenset({TRACE_LOG})

# The accuracy log in a submission: first 4096 characters, this separator, last 4096.
TRUNCATE_KEEP: Final = 4096
TRUNCATE_SEPARATOR: Final = b"\n\n...\n\n"
MAX_ACCURACY_LOG_BYTES: Final = 10 * 1024
MAX_FILE_BYTES: Final = 50 * 1024 * 1024

# accuracy.txt: the bert line the official checker parses (exact_match first, then f1, plain decimals,
# nothing before the brace and nothing after f1), and the hash line.
ACCURACY_LINE_RE: Final = re.compile(r"^{[\"']exact_match[\"']:\s*([\d.]+),\s*[\"']f1[\"']:\s*([\d.]+)}")
HASH_LINE_RE: Final = re.compile(r"^hash=([\w\d]+)$")
SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")

# systems/<system>.json: all 35 keys must be present; these must also be non-empty.
SYSTEM_KEYS: Final = (
    "division",
    "submitter",
    "status",
    "system_name",
    "system_type",
    "system_type_detail",
    "number_of_nodes",
    "host_processors_per_node",
    "host_processor_model_name",
    "host_processor_core_count",
    "host_processor_frequency",
    "host_processor_caches",
    "host_processor_interconnect",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_type",
    "host_storage_capacity",
    "host_networking",
    "host_networking_topology",
    "host_network_card_count",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_capacity",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "framework",
    "operating_system",
    "other_software_stack",
    "hw_notes",
    "sw_notes",
)
SYSTEM_OPTIONAL_EMPTY: Final = frozenset(
    {
        "system_type_detail",
        "host_processor_frequency",
        "host_processor_caches",
        "host_processor_interconnect",
        "accelerator_frequency",
        "accelerator_interconnect_topology",
        "accelerator_on-chip_memories",
        "hw_notes",
        "sw_notes",
    }
)
SYSTEM_INTEGER_KEYS: Final = ("number_of_nodes", "accelerators_per_node")
# The checker adds 13 network fields to the required list whenever this key is present at all.
SYSTEM_NETWORK_KEY: Final = "is_network"

MEASUREMENTS_KEYS: Final = (
    "input_data_types",
    "retraining",
    "starting_weights_filename",
    "weight_data_types",
    "weight_transformations",
)

# Shown wherever a test-mode result appears.
TEST_MODE_LABEL: Final = "TEST MODE: a short run, not a valid MLPerf result"
DEMO_MODEL_LABEL: Final = "DEMO MODEL: not the MLPerf BERT-large model"

# --- compliance (mlcommons/inference compliance/TEST01 and checks/compliance_check.py) ------------------
TEST01: Final = "TEST01"
COMPLIANCE_TESTS: Final[dict[str, tuple[str, ...]]] = {"bert-99": (TEST01,), "bert-99.9": (TEST01,)}
VERIFY_ACCURACY_TXT: Final = "verify_accuracy.txt"
VERIFY_PERFORMANCE_TXT: Final = "verify_performance.txt"
BASELINE_ACCURACY_TXT: Final = "baseline_accuracy.txt"
COMPLIANCE_ACCURACY_TXT: Final = "compliance_accuracy.txt"
TEST_PASS: Final = "TEST PASS"
# TEST01/accuracy/ when verify_accuracy.txt does not say TEST PASS (REQUIRED_TEST01_ACC_FILES).
TEST01_ACC_FILES: Final = frozenset({ACCURACY_LOG, ACCURACY_TXT, BASELINE_ACCURACY_TXT, COMPLIANCE_ACCURACY_TXT})
# The fallback's F1 delta |1 - baseline / compliance| in percent (config.get_delta_perc: 0.1 for *99.9*).
COMPLIANCE_DELTA_PERCENT: Final = {"bert-99": 1.0, "bert-99.9": 0.1}
# verify_performance.py: within 10%, 20% for a SingleStream result <= 200,000 ns (0.2 ms).
PERFORMANCE_TOLERANCE: Final = 0.10
SMALL_LATENCY_TOLERANCE: Final = 0.20
SMALL_SINGLESTREAM_LATENCY_NS: Final = 200_000
