"""TEST01, "verify accuracy in performance mode", verified the way MLPerf's scripts verify it.

Facts from mlcommons/inference compliance/TEST01 (read, not copied): LoadGen runs a performance pass with
the benchmark's audit.config in its working directory and logs a sample of the responses;
`verify_accuracy.py` compares them by qsl_idx with the accuracy run's log (TEST PASS when none differs
and at least one matched); where results are legitimately non-deterministic the submitter adds the
fallback (`create_accuracy_baseline.sh`: the accuracy run's entries for the same qsl_idx, both logs scored
with the accuracy script, `baseline_accuracy.txt` and `compliance_accuracy.txt`, the F1 delta within
1% for bert-99, 0.1% for bert-99.9); `verify_performance.py` needs both detail logs VALID ("TEST FAIL:
Invalid results in ...") and the compliance score within 10% of the submission's (20% for a SingleStream
result <= 0.2 ms). Where this module is stricter than the official scripts it says so.

Host-side and engine-free; scoring (numpy) is the caller's (orchestrator.workflows.compliance).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError, SubmissionError
from orchestrator.paths import CONFIGS_DIR
from orchestrator.submission.mllog import read_detail_log
from orchestrator.submission.rules import (
    COMPLIANCE_DELTA_PERCENT,
    PERFORMANCE_TOLERANCE,
    RESULT_METRIC,
    SMALL_LATENCY_TOLERANCE,
    SMALL_SINGLESTREAM_LATENCY_NS,
    TEST01,
    TEST_MODE_LABEL,
)

AUDIT_CONFIG_NAME = "audit.config"
AUDIT_LINE = re.compile(r"^\*\.\*\.(\w+)\s*=\s*(\S+)\s*$")
# The keys LoadGen logs for what an audit.config set (effective_<key>), checked by the project's checker.
AUDITED_KEYS = ("accuracy_log_rng_seed", "accuracy_log_sampling_target")
AUDIT_FOUND_MESSAGE = "Found Audit Config file"  # LoadGen's warning when it applied an audit.config


@dataclass(frozen=True)
class AuditConfig:
    test: str
    path: Path
    text: str
    settings: dict[str, str]  # key -> value of the `*.*.key = value` lines

    def expected(self, key: str) -> int:
        return int(self.settings[key])


def audit_config_path(test: str = TEST01) -> Path:
    return CONFIGS_DIR / "compliance" / test / "bert" / AUDIT_CONFIG_NAME


def load_audit_config(test: str = TEST01) -> AuditConfig:
    """MLPerf's bert audit.config for `test`, kept as data in configs/compliance/<test>/bert/."""
    path = audit_config_path(test)
    if not path.is_file():
        raise ConfigError(f"{path} is missing; {test} needs MLPerf's bert audit.config there (see its header)")
    text = path.read_text()
    settings = {}
    for raw in text.splitlines():
        m = AUDIT_LINE.match(raw.split("#", 1)[0].strip())
        if m:
            settings[m.group(1)] = m.group(2)
    missing = [k for k in ("mode", *AUDITED_KEYS) if k not in settings]
    if missing:
        raise ConfigError(f"{path} does not set {', '.join(missing)}; restore MLPerf's audit.config")
    return AuditConfig(test=test, path=path, text=text, settings=settings)


# --- accuracy ------------------------------------------------------------------------------------------
def read_log_entries(path: Path) -> list[dict[str, object]]:
    """The entries of a LoadGen accuracy log ({"seq_id", "qsl_idx", "data"}), in order."""
    try:
        entries = json.loads(path.read_bytes())
    except OSError as exc:
        raise SubmissionError(f"{path} cannot be read ({exc.strerror}); rerun the run that writes it") from exc
    except ValueError as exc:
        raise SubmissionError(f"{path} is not valid JSON ({exc}); the run did not finish, rerun it") from exc
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("qsl_idx"), int) and isinstance(e.get("data"), str) for e in entries
    ):
        raise SubmissionError(f"{path} is not a LoadGen accuracy log (a list of qsl_idx/data entries)")
    return entries


@dataclass(frozen=True)
class AccuracyVerdict:
    """verify_accuracy.py's counts. Stricter than the script: a response matches only when ALL its bytes
    are equal (the script compares the first element of the chosen dtype, by default the first byte)."""

    acc_entries: int
    acc_duplicate_keys: int
    acc_data_mismatch: int
    perf_entries: int
    perf_qsl_idx_match: int
    perf_data_mismatch: int
    missing_qsl_idxs: int

    @property
    def passed(self) -> bool:
        return self.perf_data_mismatch == 0 and self.perf_qsl_idx_match > 0

    def text(self, test_mode: bool) -> str:
        lines = [TEST_MODE_LABEL] if test_mode else []
        lines += [
            "Verifying accuracy (mlperf-bert: every byte of each response compared).",
            f"num_acc_log_entries = {self.acc_entries}",
            f"num_acc_log_duplicate_keys = {self.acc_duplicate_keys}",
            f"num_acc_log_data_mismatch = {self.acc_data_mismatch}",
            f"num_perf_log_entries = {self.perf_entries}",
            f"num_perf_log_qsl_idx_match = {self.perf_qsl_idx_match}",
            f"num_perf_log_data_mismatch = {self.perf_data_mismatch}",
            f"num_missing_qsl_idxs = {self.missing_qsl_idxs}",
            "TEST PASS" if self.passed else "TEST FAIL",
        ]
        return "\n".join(lines) + "\n"


def verify_accuracy(reference_log: Path, compliance_log: Path) -> AccuracyVerdict:
    """Compare the compliance run's logged responses with the accuracy run's, by qsl_idx."""
    reference: dict[int, str] = {}
    duplicates = acc_mismatch = 0
    acc = read_log_entries(reference_log)
    for e in acc:
        idx, data = int(e["qsl_idx"]), str(e["data"]).lower()  # type: ignore[call-overload]
        if idx in reference:
            duplicates += 1
            acc_mismatch += reference[idx] != data
        else:
            reference[idx] = data
    match = mismatch = missing = 0
    perf = read_log_entries(compliance_log)
    for e in perf:
        idx, data = int(e["qsl_idx"]), str(e["data"]).lower()  # type: ignore[call-overload]
        if idx in reference:
            match += 1
            mismatch += reference[idx] != data
        else:
            missing += 1
    return AccuracyVerdict(len(acc), duplicates, acc_mismatch, len(perf), match, mismatch, missing)


def baseline_log(reference_log: Path, compliance_log: Path) -> bytes:
    """create_accuracy_baseline.sh: the accuracy run's entries for the qsl_idx the compliance run logged,
    in the accuracy log's order, in LoadGen's own line format."""
    wanted = {int(e["qsl_idx"]) for e in read_log_entries(compliance_log)}  # type: ignore[call-overload]
    kept = [e for e in read_log_entries(reference_log) if e["qsl_idx"] in wanted]
    lines = [f'{{ "seq_id" : {e["seq_id"]}, "qsl_idx" : {e["qsl_idx"]}, "data" : "{e["data"]}" }}' for e in kept]
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode()


def delta_percent(baseline_f1: float, compliance_f1: float) -> float:
    """The checker's |1 - baseline / compliance| x 100."""
    if compliance_f1 == 0:
        return float("inf")
    return abs(1 - baseline_f1 / compliance_f1) * 100


def fallback_passes(benchmark: str, baseline_f1: float, compliance_f1: float) -> bool:
    """As the checker: both scores non-zero and the delta within the benchmark's margin."""
    if baseline_f1 == 0 or compliance_f1 == 0:
        return False
    return delta_percent(baseline_f1, compliance_f1) <= COMPLIANCE_DELTA_PERCENT[benchmark]


# --- performance ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerformanceVerdict:
    passed: bool
    lines: list[str]

    def text(self, test_mode: bool) -> str:
        return "\n".join(([TEST_MODE_LABEL] if test_mode else []) + self.lines) + "\n"

    @property
    def summary(self) -> str:
        return next((ln for ln in self.lines if ln.startswith("TEST ")), "TEST FAIL")


def verify_performance(reference_detail: Path, compliance_detail: Path) -> PerformanceVerdict:
    """verify_performance.py: both runs VALID, same scenario, the compliance score within the tolerance."""
    lines = ["Verifying performance."]
    scores: list[tuple[str, float]] = []
    for path in (reference_detail, compliance_detail):
        log = read_detail_log(path)
        scenario = str(log.get("effective_scenario"))
        if log.get("result_validity") != "VALID":
            return PerformanceVerdict(False, [*lines, f"TEST FAIL: Invalid results in {path}"])
        try:
            scores.append((scenario, float(log.get(RESULT_METRIC[scenario][0]))))
        except (KeyError, TypeError, ValueError):
            return PerformanceVerdict(False, [*lines, f"TEST FAIL: no {scenario} result in {path}"])
    (ref_scenario, ref), (test_scenario, test) = scores
    if ref_scenario != test_scenario:
        return PerformanceVerdict(False, [*lines, "TEST FAIL: Test and reference scenarios do not match!"])
    lines += [f"Reference score = {ref}", f"Test score = {test}"]
    small = ref_scenario == "SingleStream" and ref <= SMALL_SINGLESTREAM_LATENCY_NS
    tolerance = SMALL_LATENCY_TOLERANCE if small else PERFORMANCE_TOLERANCE
    passed = ref * (1 - tolerance) <= test <= ref * (1 + tolerance)
    return PerformanceVerdict(passed, [*lines, "TEST PASS" if passed else "TEST FAIL: Test score invalid"])
