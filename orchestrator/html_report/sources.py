"""What a report shows, read from the folders it is given: run directories, folders of runs, tune sweeps,
submission folders.

Records are read as plain JSON, field by field, not through RunRecord's strict model: a report of old
runs, or of runs a newer version wrote (a status or a field this version does not know), shows what it
can and names what it cannot read. A malformed input never raises: it becomes a `Skipped` with the
reason, which the page lists.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.harness.latencies import LATENCIES_FILE
from orchestrator.runs import RUN_FILE

log = logging.getLogger(__name__)

TUNE_FILE = "tune.json"
SUBMISSION_SUMMARY_GLOB = "mlperf_submission_*_summary.json"
PERFORMANCE_DIR = "performance/run_1"
# The files of a run a reader may want to open (linked when present).
RUN_FILES = (
    RUN_FILE,
    "harness.log",
    "accuracy/accuracy.txt",
    f"{PERFORMANCE_DIR}/mlperf_log_summary.txt",
    f"{PERFORMANCE_DIR}/mlperf_log_detail.txt",
    f"{PERFORMANCE_DIR}/{LATENCIES_FILE}",
)


class Unreadable(Exception):
    """An input the report cannot use; the message says why (shown on the page)."""


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class RunView:
    directory: Path
    status: str
    target: str
    runner: str
    scenario: str
    modes: list[str]
    test_mode: bool
    sut: str
    model: str
    precision: str | None = None
    demo: bool = False
    execution_provider: str | None = None
    engine_settings: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    # performance (None where the run has none)
    samples_per_second: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    loadgen_valid: bool | None = None
    samples_issued: int | None = None
    # accuracy
    f1: float | None = None
    reference_f1: float | None = None
    f1_ratio: float | None = None
    accuracy_partial: bool = False
    # the SUT's per-sample issue-to-complete times (orchestrator/harness/latencies.py), when recorded
    latencies_ms: np.ndarray | None = None
    files: list[str] = field(default_factory=list)  # relative to the run directory, those that exist

    @property
    def name(self) -> str:
        return self.directory.name


@dataclass
class TuneView:
    directory: Path
    title: str
    samples_per_trial: int | None
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    files: dict[str, str]
    precision: dict[str, str]  # trial run dir -> the model's precision
    instances_ran: dict[str, str]  # trial run dir -> the engine's instances setting


@dataclass
class SubmissionView:
    directory: Path
    attempts: list[dict[str, Any]]  # each attempt's _summary.json


@dataclass
class Sources:
    runs: list[RunView] = field(default_factory=list)
    tunes: list[TuneView] = field(default_factory=list)
    submissions: list[SubmissionView] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def displayed_status(raw: dict[str, Any], run_dir: Path) -> str:
    """The status to show, as the record gives it (an unknown one too).

    The one hook for a finer look: a `running` record whose process is gone (abandoned) is decided here
    once runs.py can tell it; until then a record left `running` is shown as `running`."""
    from orchestrator import runs

    decide = getattr(runs, "effective_status", None)  # runs.py's abandoned check, where that version has one
    if callable(decide):
        try:
            return str(decide(raw, run_dir))
        except Exception:  # noqa: BLE001 - a report shows the recorded status rather than fail on a record
            log.debug("effective_status failed for %s", run_dir, exc_info=True)
    return str(raw.get("status") or "unknown")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise Unreadable(f"{path.name} cannot be read ({e.strerror})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Unreadable(f"{path.name} is not valid JSON ({e})") from None


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unreadable(f"{what} is not an object")
    return value


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: Any, what: str, default: str | None = None) -> str:
    if isinstance(value, str) and value:
        return value
    if default is not None:
        return default
    raise Unreadable(f"{RUN_FILE} has no {what}")


def load_run(run_dir: Path) -> RunView:
    raw = _read_json(run_dir / RUN_FILE)
    if not isinstance(raw, dict):
        raise Unreadable(f"{RUN_FILE} is not an object")
    config = _dict(raw.get("config"), "config")
    model = _dict(raw.get("model"), "model")
    meta = _dict(raw.get("model_meta"), "model_meta")
    results = _dict(raw.get("results"), "results")
    perf = _dict(results.get("performance"), "results.performance")
    acc = _dict(results.get("accuracy"), "results.accuracy")
    modes = raw.get("modes") or []
    view = RunView(
        directory=run_dir,
        status=displayed_status(raw, run_dir),
        target=_str(raw.get("target"), "target"),
        runner=_str(raw.get("runner"), "runner", "?"),
        scenario=_str(raw.get("scenario"), "scenario"),
        modes=[str(m) for m in modes] if isinstance(modes, list) else [],
        test_mode=bool(raw.get("test_mode", raw.get("execution_mode") == "test")),
        sut=str(config.get("sut") or "optimized"),
        model=str(model.get("name") or Path(str(model.get("path") or "?")).name),
        precision=meta.get("precision") if isinstance(meta.get("precision"), str) else None,
        demo=bool(meta.get("demo")),
        execution_provider=raw.get("execution_provider") if isinstance(raw.get("execution_provider"), str) else None,
        engine_settings={str(k): str(v) for k, v in _dict(raw.get("engine_settings"), "engine_settings").items()},
        error=raw.get("error") if isinstance(raw.get("error"), str) else None,
        started_at=raw.get("started_at") if isinstance(raw.get("started_at"), str) else None,
    )
    if perf:
        view.samples_per_second = _float(perf.get("samples_per_second"))
        view.metric = str(perf.get("metric") or "")
        view.metric_value = _float(perf.get("metric_value"))
        pct = _dict(perf.get("latency_percentiles_ms"), "latency_percentiles_ms")
        view.percentiles_ms = {str(k): f for k, v in pct.items() if (f := _float(v)) is not None}
        view.loadgen_valid = perf.get("result_valid") if isinstance(perf.get("result_valid"), bool) else None
        issued = perf.get("samples_issued")
        view.samples_issued = issued if isinstance(issued, int) else None
    if acc:
        view.f1 = _float(acc.get("f1"))
        view.reference_f1 = _float(acc.get("reference_f1")) or _float(meta.get("reference_f1"))
        view.f1_ratio = _float(acc.get("ratio"))
        if view.f1_ratio is None and view.f1 is not None and view.reference_f1:
            view.f1_ratio = view.f1 / view.reference_f1
        view.accuracy_partial = bool(acc.get("partial"))
    view.latencies_ms = load_latencies(run_dir / PERFORMANCE_DIR / LATENCIES_FILE)
    view.files = [f for f in RUN_FILES if (run_dir / f).is_file()]
    return view


def load_latencies(path: Path) -> np.ndarray | None:
    """The SUT's per-sample latencies in ms (NaN: never completed), or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        log.warning("%s cannot be read (%s); its run is shown without a latency distribution", path, e)
        return None
    if values.ndim != 1 or values.dtype.kind != "f":
        log.warning("%s is not a 1-D array of floats; its run is shown without a latency distribution", path)
        return None
    return values


def load_tune(directory: Path) -> TuneView:
    raw = _read_json(directory / TUNE_FILE)
    if not isinstance(raw, dict) or not isinstance(raw.get("trials"), list):
        raise Unreadable(f"{TUNE_FILE} has no list of trials")
    base = _dict(raw.get("base_config"), "base_config")
    trials = [t for t in raw["trials"] if isinstance(t, dict)]
    precision: dict[str, str] = {}
    instances: dict[str, str] = {}
    for t in trials:
        run_dir = t.get("run_dir")
        if not isinstance(run_dir, str) or not (Path(run_dir) / RUN_FILE).is_file():
            continue
        try:
            rec = _read_json(Path(run_dir) / RUN_FILE)
        except Unreadable:
            continue
        if isinstance(rec, dict):
            meta, settings = rec.get("model_meta") or {}, rec.get("engine_settings") or {}
            if isinstance(meta, dict) and isinstance(meta.get("precision"), str):
                precision[run_dir] = meta["precision"]
            if isinstance(settings, dict) and settings.get("instances") is not None:
                instances[run_dir] = str(settings["instances"])
    model = base.get("model_path") or base.get("model") or "?"
    title = f"{base.get('backend', '?')} {base.get('scenario', '?')}: {Path(str(model)).name}"
    samples = raw.get("samples_per_trial")
    best = raw.get("best") if isinstance(raw.get("best"), dict) else None
    files = {str(k): str(v) for k, v in _dict(raw.get("files"), "files").items()}
    return TuneView(
        directory, title, samples if isinstance(samples, int) else None, trials, best, files, precision, instances
    )


def load_submission(directory: Path) -> SubmissionView:
    attempts = []
    for path in sorted(directory.glob(SUBMISSION_SUMMARY_GLOB)):
        raw = _read_json(path)
        if not isinstance(raw, dict):
            raise Unreadable(f"{path.name} is not an object")
        raw.setdefault("attempt", path.name)
        raw["_file"] = path.name
        attempts.append(raw)
    return SubmissionView(directory, attempts)


def collect(inputs: list[Path]) -> Sources:
    """Everything the inputs hold; each unusable input or run named in `skipped`, never raised."""
    sources = Sources()
    seen: set[Path] = set()

    def add(kind: str, path: Path) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        try:
            if kind == "run":
                sources.runs.append(load_run(path))
            elif kind == "tune":
                sources.tunes.append(load_tune(path))
            else:
                sources.submissions.append(load_submission(path))
        except Unreadable as e:
            sources.skipped.append(Skipped(path, str(e)))

    for path in inputs:
        kind = _kind(path)
        if kind is not None:
            add(kind, path)
            continue
        if not path.exists():
            sources.skipped.append(Skipped(path, "does not exist"))
            continue
        if not path.is_dir():
            sources.skipped.append(Skipped(path, "is a file, not a run, tune or submission folder"))
            continue
        found = False
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            kind = _kind(child)
            if kind is not None:
                add(kind, child)
                found = True
            elif (child / "harness.json").is_file() or (child / "harness.log").is_file():
                sources.skipped.append(Skipped(child, f"looks like a run directory but has no {RUN_FILE}"))
                found = True
        if not found:
            sources.skipped.append(Skipped(path, "holds no run, tune sweep or submission"))
    sources.runs.sort(key=lambda r: (r.started_at or "", r.name))
    return sources


def _kind(path: Path) -> str | None:
    if not path.is_dir():
        return None
    if (path / RUN_FILE).is_file():
        return "run"
    if (path / TUNE_FILE).is_file():
        return "tune"
    if next(path.glob(SUBMISSION_SUMMARY_GLOB), None) is not None:
        return "submission"
    return None
