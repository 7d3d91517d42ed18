"""The project's checks of one result folder: measurements, user.conf, the performance and accuracy logs.

Each rule reports one finding naming the file. Rules the official checker waives in the open division
for a short run are reported as test-mode findings there (and as errors in the closed division), so a
test-mode submission is always reported as such and never as valid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from orchestrator.mlperf import DATASET_SIZE, PERFORMANCE_SAMPLE_COUNT
from orchestrator.submission.accuracy_files import (
    is_truncated_form,
    parse_accuracy_line,
    parse_hash_line,
    sha256_file,
)
from orchestrator.submission.compliance import AUDITED_KEYS, delta_percent, fallback_passes, load_audit_config
from orchestrator.submission.findings import Collector, ResultRow
from orchestrator.submission.layout import Layout
from orchestrator.submission.mllog import DetailLog, read_detail_log, result_metric
from orchestrator.submission.rules import (
    ACC_FILES,
    ACC_OPTIONAL,
    ACCURACY_LINE_RE,
    ACCURACY_LOG,
    ACCURACY_TARGET_F1,
    ACCURACY_TXT,
    BASELINE_ACCURACY_TXT,
    CLOSED_MINIMUMS,
    COMPLIANCE_ACCURACY_TXT,
    COMPLIANCE_DELTA_PERCENT,
    COMPLIANCE_TESTS,
    DETAIL_LOG,
    EARLY_STOPPING_SCENARIOS,
    MAX_ACCURACY_LOG_BYTES,
    MEASUREMENTS_KEYS,
    PERF_FILES,
    PERF_OPTIONAL,
    README,
    SEEDS,
    SHA256_RE,
    SUMMARY_LOG,
    TEST01,
    TEST01_ACC_FILES,
    TEST_PASS,
    TRACE_LOG,
    USER_CONF,
    VERIFY_ACCURACY_TXT,
    VERIFY_PERFORMANCE_TXT,
)

MAX_QUERY_ERROR = "Max query count reached"
TEST_MODE_MARK = re.compile(r"TEST[ -]MODE", re.IGNORECASE)
USER_CONF_LINE = re.compile(r"^([\w.*-]+)\.([\w*]+)\.(\w+)\s*=\s*(\S+)\s*$")


class ScenarioCheck:
    def __init__(
        self,
        c: Collector,
        lay: Layout,
        system: str,
        model: str,
        mlperf_model: str,
        scenario: str,
        system_json: dict[str, Any],
    ) -> None:
        self.c, self.lay = c, lay
        self.system, self.model, self.mlperf_model, self.scenario = system, model, mlperf_model, scenario
        self.system_json = system_json
        self.closed = lay.division != "open"
        self.test_mode_reasons = 0
        self.measurements: dict[str, Any] = {}
        self.minimums = CLOSED_MINIMUMS[lay.version]

    # A rule the open division waives for a short run: test-mode there, an error in closed.
    def short_run(self, path: Path, message: str) -> None:
        if self.closed:
            self.c.error(path, message + " (not allowed in the closed division)")
        else:
            self.test_mode_reasons += 1
            self.c.test_mode(path, message)

    def run(self) -> ResultRow | None:
        result_dir = self.lay.result_dir(self.system, self.model, self.scenario)
        self.check_measurements()
        perf = self.check_performance()
        acc = self.check_accuracy()
        self.check_compliance()
        readme = self.lay.measurements_dir(self.system, self.model, self.scenario) / README
        if (
            self.test_mode_reasons
            and readme.is_file()
            and not TEST_MODE_MARK.search(readme.read_text(errors="replace"))
        ):
            self.c.error(readme, 'this is a test-mode result but README.md does not say "TEST MODE"; label it')
        if perf is None:
            return None
        value, unit = result_metric(perf, self.scenario)
        em_f1, samples = acc if acc else (None, None)
        return ResultRow(
            division=self.lay.division,
            submitter=self.lay.submitter,
            system=self.system,
            model=self.model,
            mlperf_model=self.mlperf_model,
            scenario=self.scenario,
            result=value,
            units=unit,
            exact_match=em_f1[0] if em_f1 else None,
            f1=em_f1[1] if em_f1 else None,
            accuracy_samples=samples,
            test_mode=self.test_mode_reasons > 0,
            system_json=self.system_json,
            weight_data_types=str(self.measurements.get("weight_data_types", "")),
            location=self.c.rel(result_dir),
            version=self.lay.version,
        )

    # --- measurements, user.conf, README -------------------------------------------------------------
    def check_measurements(self) -> None:
        mdir = self.lay.measurements_dir(self.system, self.model, self.scenario)
        if not mdir.is_dir():
            self.c.error(
                mdir, "the measurements folder is missing; it must hold user.conf, README.md and the measurements JSON"
            )
            return
        for name in (USER_CONF, README):
            path = mdir / name
            if not path.is_file():
                self.c.error(path, f"{name} is missing")
            elif path.stat().st_size == 0:
                self.c.error(path, f"{name} is empty")
        if self.lay.v6:
            mjson: Path | None = mdir / "measurements.json"
        else:
            cands = sorted(p for p in mdir.glob(f"{self.system}*.json"))
            mjson = cands[0] if cands else None
            if mjson is not None:
                self.check_v5_code_dir(mjson)
        if mjson is None or not mjson.is_file():
            self.c.error(
                mjson or mdir,
                "the measurements JSON is missing ("
                + ("measurements.json" if self.lay.v6 else f"{self.system}_<impl>_{self.scenario}.json")
                + ")",
            )
        else:
            try:
                data = json.loads(mjson.read_text())
            except ValueError:
                data = None
            if not isinstance(data, dict):
                self.c.error(mjson, "is not a JSON object; regenerate it")
                data = {}
            self.measurements = data
            for key in MEASUREMENTS_KEYS:
                if key not in data:
                    self.c.error(mjson, f"field {key} is missing")
                elif not data[key]:
                    self.c.error(mjson, f"field {key} is empty; it needs a meaningful value")
        if (mdir / USER_CONF).is_file():
            self.check_user_conf(mdir / USER_CONF)

    def check_v5_code_dir(self, mjson: Path) -> None:
        name = mjson.name.removesuffix(".json")
        impl = name[len(self.system) + 1 :].removesuffix("_" + self.scenario)
        code = self.lay.submitter_dir / "code" / self.model
        if not (code / impl).exists() and not code.exists():
            self.c.error(code / impl, "the v5.x checker looks for the code of this implementation here; it is missing")

    def check_user_conf(self, path: Path) -> None:
        for lineno, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = USER_CONF_LINE.match(line)
            if not m:
                self.c.error(path, f"line {lineno} is not `model.scenario.key = value`: {raw.strip()!r}")
                continue
            key, value = m.group(3), m.group(4)
            if key.endswith("_rng_seed"):
                self.c.error(path, f"line {lineno} sets {key}; the seeds are fixed by LoadGen for the round, remove it")
            elif key == "min_duration" and _num(value) is not None and _num(value) < self.minimums.min_duration_ms:  # type: ignore[operator]
                self.c.error(
                    path,
                    f"line {lineno} lowers min_duration to {value} ms; MLPerf needs >= {self.minimums.min_duration_ms}, "
                    "shorten test runs with min/max_query_count or target_qps instead",
                )
            elif key == "performance_sample_count_override" and 0 < (_num(value) or 0) < PERFORMANCE_SAMPLE_COUNT:
                self.c.error(
                    path,
                    f"line {lineno} lowers performance_sample_count_override to {value}; MLPerf needs "
                    f">= {PERFORMANCE_SAMPLE_COUNT}",
                )

    # --- performance --------------------------------------------------------------------------------
    def _file_set(self, folder: Path, required: frozenset[str], optional: frozenset[str]) -> None:
        present = {p.name for p in folder.iterdir() if p.is_file()}
        for name in sorted(required - present):
            self.c.error(folder / name, "is missing")
        for name in sorted(present - required - optional):
            self.c.error(folder / name, "is not allowed here (the official checker rejects extra files in this folder)")

    def _read_log(self, path: Path) -> DetailLog | None:
        if not path.is_file():
            return None
        log = read_detail_log(path)
        for lineno in log.bad_lines[:5]:
            self.c.error(
                path, f"line {lineno} starts with :::MLLOG but is not valid JSON; the official checker stops on it"
            )
        if not log.records:
            self.c.error(path, "holds no :::MLLOG records; it is not a LoadGen detail log")
            return None
        return log

    def check_performance(self, folder: Path | None = None) -> DetailLog | None:
        """performance/run_1, or (folder given) a compliance test's performance/run_1, checked alike."""
        folder = folder or self.lay.performance_dir(self.system, self.model, self.scenario)
        if not folder.is_dir():
            self.c.error(folder, "the performance run folder is missing")
            return None
        self._file_set(folder, PERF_FILES, PERF_OPTIONAL)
        summary = folder / SUMMARY_LOG
        if summary.is_file() and summary.stat().st_size == 0:
            self.c.error(summary, "is empty")
        path = folder / DETAIL_LOG
        log = self._read_log(path)
        if log is None:
            return None
        if log.get("effective_test_mode") != "PerformanceOnly":
            self.c.error(
                path, f"is a {log.get('effective_test_mode')} log; performance/run_1 needs a PerformanceOnly run"
            )
        if log.get("effective_scenario") != self.scenario:
            self.c.error(path, f"is a {log.get('effective_scenario')} run but sits in the {self.scenario} folder")
        capped = (_num(log.get("effective_max_query_count")) or 0) > 0
        for err in log.errors():
            if MAX_QUERY_ERROR in err and capped:
                self.short_run(path, f"LoadGen stopped at max_query_count ({err.strip()})")
            else:
                self.c.error(path, f"LoadGen reported an error: {err.strip()}")
        psc = _num(log.get("effective_performance_sample_count"))
        if psc is None or psc < PERFORMANCE_SAMPLE_COUNT:
            self.c.error(
                path,
                f"performance_sample_count is {_show(psc)}; it must be >= {PERFORMANCE_SAMPLE_COUNT} "
                "(never lower it, shorten a run with min/max_query_count or target_qps)",
            )
        seeds = SEEDS[self.lay.version]
        for name, expected in seeds.items():
            found = log.get(f"effective_{name}")
            if found != expected:
                self.c.error(
                    path,
                    f"{name} is {found}, the {self.lay.version} checker expects {expected} "
                    "(use the LoadGen of that round, or --mlperf-version of the round the LoadGen carries)",
                )
        min_duration = _num(log.get("effective_min_duration_ms"))
        if min_duration is None or min_duration < self.minimums.min_duration_ms:
            self.c.error(
                path,
                f"min_duration is {_show(min_duration)} ms; it must be >= {self.minimums.min_duration_ms} "
                "(shorten test runs with min/max_query_count or target_qps instead)",
            )
        if self.scenario in EARLY_STOPPING_SCENARIOS:
            if log.get("early_stopping_met") is not True:
                self.c.error(path, "LoadGen's early-stopping condition was not met (too few queries); run more queries")
        else:
            # The round's min-queries table applies only without early stopping (see rules.ClosedMinimums).
            required = self.minimums.min_queries.get(self.scenario, 0)
            mqc = _num(log.get("effective_min_query_count"))
            if mqc is None or mqc < required:
                self.c.error(path, f"min_query_count is {_show(mqc)}; it must be >= {required}")
        if self.scenario == "Offline":
            spq = _num(log.get("effective_samples_per_query"))
            if spq is None or spq < self.minimums.offline_samples_per_query:
                self.short_run(
                    path,
                    f"Offline issued {_show(spq)} samples per query; a full run issues >= "
                    f"{self.minimums.offline_samples_per_query}",
                )
        validity = log.get("result_validity")
        if validity != "VALID":
            reason = str(log.get("result_invalid_reason") or "").strip()
            self.short_run(path, f"LoadGen result is {validity}" + (f" ({reason})" if reason else ""))
        value, _ = result_metric(log, self.scenario)
        if value is None:
            self.c.error(path, f"has no numeric result for {self.scenario}; the run did not finish")
        return log

    # --- accuracy -----------------------------------------------------------------------------------
    def check_accuracy(self) -> tuple[tuple[float, float] | None, int | None] | None:
        folder = self.lay.accuracy_dir(self.system, self.model, self.scenario)
        if not folder.is_dir():
            self.c.error(folder, "the accuracy folder is missing")
            return None
        self._file_set(folder, ACC_FILES, ACC_OPTIONAL)
        scores = self.check_accuracy_txt(folder)
        path = folder / DETAIL_LOG
        log = self._read_log(path)
        samples: int | None = None
        if log is not None:
            if log.get("effective_test_mode") != "AccuracyOnly":
                self.c.error(path, f"is a {log.get('effective_test_mode')} log; accuracy/ needs an AccuracyOnly run")
            if log.get("effective_scenario") != self.scenario:
                self.c.error(path, f"is a {log.get('effective_scenario')} run but sits in the {self.scenario} folder")
            for err in log.errors():
                self.c.error(path, f"LoadGen reported an error: {err.strip()}")
            raw = log.get("effective_accuracy_sample_count", log.get("qsl_reported_total_count"))
            samples = int(raw) if _num(raw) is not None else None
            if samples != DATASET_SIZE:
                self.short_run(
                    path,
                    f"the accuracy run covered {samples} of {DATASET_SIZE} samples (the official "
                    "checker accepts it only with --skip-dataset-size-check)",
                )
        if scores is not None:
            target = ACCURACY_TARGET_F1[self.mlperf_model]
            if scores[1] < target:
                msg = f"F1 {scores[1]:.3f} is below the {self.mlperf_model} target {target:.5f}"
                if self.closed:
                    self.c.error(folder / ACCURACY_TXT, msg)
                else:
                    self.c.note(folder / ACCURACY_TXT, msg + " (the open division does not enforce it)")
        return scores, samples

    def check_accuracy_txt(self, folder: Path) -> tuple[float, float] | None:
        path = folder / ACCURACY_TXT
        if not path.is_file():
            return None
        lines = path.read_text(errors="replace").splitlines()
        scores = parse_accuracy_line(lines)
        if scores is None:
            if any(ACCURACY_LINE_RE.match(ln) for ln in lines):
                self.c.error(path, "the accuracy line matches the checker's pattern but its numbers do not parse")
            else:
                self.c.error(
                    path,
                    "has no line the official checker can parse; it needs a line starting with "
                    '{"exact_match": <number>, "f1": <number>} (exact_match first, plain decimals)',
                )
        recorded = parse_hash_line(lines)
        log_path = folder / ACCURACY_LOG
        if recorded is None:
            self.c.error(path, "has no hash=<sha256 of the full accuracy log> line")
        elif not SHA256_RE.match(recorded):
            self.c.error(path, f"hash {recorded} is not a sha256 hex digest")
        if log_path.is_file():
            size = log_path.stat().st_size
            data = log_path.read_bytes() if size <= MAX_ACCURACY_LOG_BYTES else b""
            if size > MAX_ACCURACY_LOG_BYTES:
                self.c.error(
                    log_path,
                    f"is {size} bytes; truncate it to 4096 + '\\n\\n...\\n\\n' + 4096 characters "
                    f"(<= {MAX_ACCURACY_LOG_BYTES} bytes) and keep the full log",
                )
            elif not is_truncated_form(data) and recorded and recorded != sha256_file(log_path):
                self.c.error(
                    log_path,
                    "is neither the full log the hash in accuracy.txt names nor its "
                    "4096 + '\\n\\n...\\n\\n' + 4096 truncation; regenerate the submission",
                )
            elif not data.lstrip().startswith(b"["):
                self.c.error(log_path, "does not start like a LoadGen accuracy log (a JSON list)")
            elif recorded and self.c.full_logs.paths:
                full = self.c.full_logs.find(data)
                if full is None:
                    self.c.note(
                        log_path,
                        "none of the given run directories holds the full log it was cut from; "
                        "the hash in accuracy.txt could not be verified",
                    )
                elif sha256_file(full) != recorded:
                    self.c.error(
                        path,
                        f"hash {recorded} is not the sha256 of the full log {full}; regenerate "
                        "the submission from that run",
                    )
        return scores

    # --- compliance ---------------------------------------------------------------------------------
    def check_compliance(self) -> None:
        """The closed division's compliance tests (checks/compliance_check.py); the open one needs none."""
        if not self.closed:
            return
        for test in COMPLIANCE_TESTS[self.mlperf_model]:
            folder = self.lay.compliance_dir(self.system, self.model, self.scenario, test)
            if not folder.is_dir():
                self.c.error(
                    folder,
                    f"the closed division needs the {test} compliance run for bert; make it with "
                    f"`mlperf-bert compliance run --test {test} RUN_DIR` (or `submission run --division closed`)",
                )
                continue
            self.check_test01(folder)

    def check_test01(self, folder: Path) -> None:
        verify_acc, verify_perf = folder / VERIFY_ACCURACY_TXT, folder / VERIFY_PERFORMANCE_TXT
        for path in (verify_acc, verify_perf):
            if not path.is_file():
                self.c.error(path, f"is missing; TEST01 needs MLPerf's {path.name}")
        log = self.check_performance(folder / "performance" / "run_1")
        if log is not None:
            self.check_audit_applied(log)
        if verify_acc.is_file():
            lines = [ln.strip() for ln in verify_acc.read_text(errors="replace").splitlines()]
            if TEST_PASS not in lines:  # the checker's "deterministic mode" test failed: the fallback decides
                self.check_test01_fallback(folder / "accuracy")
        if verify_perf.is_file():
            text = verify_perf.read_text(errors="replace")
            if TEST_PASS not in text:
                said = next((ln.strip() for ln in text.splitlines() if ln.startswith("TEST FAIL")), "no TEST line")
                self.c.error(verify_perf, f"the TEST01 performance check did not pass ({said})")

    def check_audit_applied(self, log: DetailLog) -> None:
        """Stricter than the checker: the compliance run must have run with MLPerf's audit.config."""
        audit = load_audit_config(TEST01)
        for key in AUDITED_KEYS:
            found = log.get(f"effective_{key}")
            if found != audit.expected(key):
                self.c.error(
                    log.path,
                    f"{key} is {found}, MLPerf's TEST01 audit.config sets {audit.expected(key)}; the run did not "
                    "use it, rerun `mlperf-bert compliance run --test TEST01`",
                )

    def check_test01_fallback(self, folder: Path) -> None:
        if not folder.is_dir():
            self.c.error(
                folder, "verify_accuracy.txt does not say TEST PASS and the fallback's accuracy folder is missing"
            )
            return
        present = {p.name for p in folder.iterdir() if p.is_file()}
        for name in sorted(TEST01_ACC_FILES - present):
            self.c.error(
                folder / name, "is missing; verify_accuracy.txt does not say TEST PASS, so the fallback needs it"
            )
        for name in sorted(present - TEST01_ACC_FILES - {TRACE_LOG}):
            self.c.error(folder / name, "is not allowed here (the checker wants exactly the fallback's files)")
        scores = {}
        for name in (BASELINE_ACCURACY_TXT, COMPLIANCE_ACCURACY_TXT):
            path = folder / name
            if path.is_file():
                parsed = parse_accuracy_line(path.read_text(errors="replace").splitlines())
                if parsed is None or parsed[1] == 0:
                    self.c.error(path, 'has no non-zero F1 line like {"exact_match": 80.1, "f1": 87.2}; rescore it')
                else:
                    scores[name] = parsed[1]
        if len(scores) == 2:
            baseline, compliance = scores[BASELINE_ACCURACY_TXT], scores[COMPLIANCE_ACCURACY_TXT]
            margin = COMPLIANCE_DELTA_PERCENT[self.mlperf_model]
            if not fallback_passes(self.mlperf_model, baseline, compliance):
                self.c.error(
                    folder / COMPLIANCE_ACCURACY_TXT,
                    f"F1 {compliance} differs from the baseline's {baseline} by "
                    f"{delta_percent(baseline, compliance):.3f}%, more than the {margin:g}% {self.mlperf_model} allows",
                )


def _show(value: float | None) -> str:
    """A logged count as LoadGen wrote it (100, not 100.0)."""
    if value is None:
        return "missing"
    return str(int(value)) if float(value).is_integer() else str(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
