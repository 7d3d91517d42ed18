"""`mlperf-bert tune`: sweep precision x batch size (and threads, instances) with short performance runs,
`repeats` times each (the median counts, the min is kept: one noisy trial once picked different best batch
sizes in two sweeps), keep every trial, pick the fastest whose accuracy check passes, plot it; optionally
size a valid run from a short one (`find_performance`).

    from orchestrator.workflows.tuning import TuneRequest, tune
    result = tune(TuneRequest(base=RunConfig(model="demo-int8"), batch_sizes=[1, 4, 16, 64]))

Every trial is a normal run directory (run.json, LoadGen logs) made by orchestrator.api.run_benchmark,
under `<output_dir>/tune-<time>/trials/`. Beside them:

    tune.json          every trial (settings, samples/s, latencies, run dir, error) and the best one
    tune.md            the same as a markdown table
    throughput.png     samples/s against batch size, one line per threads/instances (orchestrator.plots)
    report.html        the sweep and its trials as one page (orchestrator.html_report)
    user.conf, config.yaml   with find_performance: the target_qps (or target_latency) for a valid run

A trial that fails is recorded with its error and the sweep goes on. Host code: never imports an engine.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import plots
from orchestrator.backends import get_target
from orchestrator.config import RunConfig, checked_config
from orchestrator.errors import ConfigError, MlperfBertError, RunError
from orchestrator.harness.engines.engine import check_engine_options, unused_engine_options
from orchestrator.harness.engines.options import PRECISION_OPTION
from orchestrator.html_report import REPORT_FILE, write_report
from orchestrator.loadgen_logs import parse_performance
from orchestrator.mlperf import Scenario
from orchestrator.paths import default_cache_dir
from orchestrator.workflows.accuracy_checks import (
    THRESHOLD_NAMES,
    PrecisionCheck,
    check_key,
    threshold_for,
    why_unkeyed,
    write_check,
)
from orchestrator.workflows.benchmark import RunResult, prepare_run, run_benchmark, unused_run_options
from orchestrator.workflows.calibration import check_precision, missing_calibration

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
# Offline: LoadGen issues 1.1 x 600 s x target_qps samples, so a target_qps at the measured rate leaves
# 10% headroom should the valid run be faster than the short one.
OFFLINE_MARGIN = 1.0
# Server: the first rate tried is this share of the Offline throughput; each miss lowers it by STEP.
SERVER_START_SHARE = 0.8
SERVER_STEP = 0.8
SERVER_TRIES = 6
DEFAULT_CHECK_SAMPLES = 200  # dev features of a reduced precision's check (tune --precision-check-samples)
PLOT_TEST_MODE = "TEST MODE (short runs: settings, not results)"


@dataclass
class Trial:
    batch_size: int
    threads: int | None
    instances: int | None
    run_dir: str | None
    samples_per_second: float | None = None
    latency_ms: float | None = None  # SingleStream p90 / MultiStream p99 per query; Server p99 per sample
    p99_latency_ms: float | None = None
    samples: int | None = None
    seconds: float | None = None
    error: str | None = None
    rejected: str | None = None  # ran, but the request's vet turned it down (e.g. int8 F1 at this batch size)
    accepted: str | None = None  # the request's vet asked and took it ("passed its check")
    instances_ran: str | None = None  # the engine's own account of its instances, e.g. "2 (auto)"
    precision: str | None = None  # the engine's precision option (None: the backend's default)
    options: dict[str, str] = field(default_factory=dict)  # the swept engine options (--sweep-option) it ran with
    # repeats > 1: every repeat's samples/s; samples_per_second is their median, min_samples_per_second the min
    repeat_samples_per_second: list[float] = field(default_factory=list)
    min_samples_per_second: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.samples_per_second is not None


@dataclass
class TuneRequest:
    base: RunConfig
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    threads: list[int | None] = field(default_factory=lambda: [None])
    instances: list[int | None] = field(default_factory=lambda: [None])
    precisions: list[str | None] = field(default_factory=lambda: [None])  # the target's precision option
    # Engine options swept besides those (`--sweep-option int8_float=fp32,bf16`): every combination of their
    # values is a setting, crossed with the precisions, threads, instances and batch sizes.
    option_sweeps: dict[str, list[str]] = field(default_factory=dict)
    repeats: int = 1  # runs per setting; the median counts
    samples: int = 512  # per trial (test mode)
    find_performance: bool = False
    performance_samples: int | None = None  # the short run of find_performance (default: ~20 s of work)
    margin: float = OFFLINE_MARGIN
    plot: bool = True
    # Asked of the fastest trial before it is taken as the best: None to accept it, else why not (the next
    # fastest is asked then). `tune --int8` checks the int8 F1 at the trial's batch size this way.
    vet: Callable[[Trial], str | None] | None = None


@dataclass
class TuneResult:
    directory: Path
    trials: list[Trial]
    best: Trial | None
    files: dict[str, str] = field(default_factory=dict)
    performance: dict[str, Any] | None = None  # find_performance's outcome


def _config(base: RunConfig, **update: Any) -> RunConfig:
    """A copy of base with updates, validated again (model_copy alone skips validation)."""
    data = base.model_dump()
    data.update(update)
    return checked_config(data)


def _engine_options(
    base: RunConfig, instances: int | None, precision: str | None = None, swept: dict[str, str] | None = None
) -> dict[str, Any]:
    """The instances, precision and swept settings, as engine options over the user's, less those the run
    would ignore with them (an int8 option at precision=bf16: check_settings refuses one ignored everywhere)."""
    if instances is None and precision is None and not swept:
        return {}
    options = _asked(base, instances, precision, swept)
    unused = _unused(base, options)
    return {"engine_options": {k: v for k, v in options.items() if k not in unused}}


def _asked(
    base: RunConfig, instances: int | None, precision: str | None, swept: dict[str, str] | None
) -> dict[str, str]:
    options = {**base.engine_options, **(swept or {})}
    if instances is not None:
        options["instances"] = str(instances)
    if precision is not None:
        options[precision_option(base)] = precision
    return options


def _unused(base: RunConfig, options: dict[str, str]) -> dict[str, str]:
    """{option: the sentence refusing it} of those the run with these options would ignore (with the options
    the target adds, e.g. the reference SUT's)."""
    target = get_target(base.backend, base.device)
    return unused_run_options(base.model_copy(update={"engine_options": options}), target)


def effective_sweep(base: RunConfig, precision: str | None, swept: dict[str, str]) -> dict[str, str]:
    """The swept options that take effect at this precision: a swept int8 option at bf16 changes nothing, so
    that setting runs once there and its trial names none of them."""
    unused = _unused(base, _asked(base, None, precision, swept))
    return {key: value for key, value in swept.items() if key not in unused}


# Options with a sweep flag of their own: --sweep-option names the others.
_OWN_FLAGS = {"instances": "--instances", "precision": "--precisions"}


def check_settings(request: TuneRequest, combos: list[dict[str, str]]) -> None:
    """Every setting the sweep would run, checked as its run will check it, before the tune folder exists: a
    batch size or thread count RunConfig refuses, a precision or option the engine refuses, int8 without its
    calibration set. One sentence, instead of a folder of failed trials."""
    base = request.base
    target = get_target(base.backend, base.device)
    ignored_everywhere: dict[str, str] | None = None  # options no setting uses: the user's mistake
    for batch in sorted(set(request.batch_sizes)):
        for threads in request.threads:
            _config(base, batch_size=batch, threads=threads, test_query_count=request.samples)
    for precision in request.precisions:
        for options in combos:
            for instances in request.instances:
                setting = _asked(base, instances, precision, options)
                ignored = _unused(base, setting)  # left out of this setting's run (_engine_options)
                kept = {k: v for k, v in setting.items() if k not in ignored}
                check_engine_options(target.engine_class, kept)
                check_precision(base.model_copy(update={"engine_options": kept}), target)  # bf16 on this CPU
                ignored_everywhere = (
                    ignored
                    if ignored_everywhere is None
                    else {k: v for k, v in ignored_everywhere.items() if k in ignored}
                )
        if precision is not None:
            asked = {**base.engine_options, precision_option(base): precision}
            missing = missing_calibration(base.model_copy(update={"engine_options": asked}), target)
            if missing:
                raise ConfigError(missing)
    several = len(request.precisions) * len(combos) * len(request.instances) > 1
    for sentence in (ignored_everywhere or {}).values():
        raise ConfigError(f"{sentence} (in every setting of this sweep)" if several else sentence)


def option_combinations(base: RunConfig, sweeps: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the swept engine options' values (one empty one without sweeps), each checked by
    the engine's own parser before any trial runs: a misspelt option or value is one sentence, not N failed
    trials."""
    for key, values in sweeps.items():
        if key in _OWN_FLAGS or key == PRECISION_OPTION:
            flag = _OWN_FLAGS.get(key, "--precisions")
            raise ConfigError(f"{key} has its own sweep flag; pass {flag} instead of --sweep-option {key}=...")
        if not values:
            raise ConfigError(f"--sweep-option {key}= names no value; pass e.g. --sweep-option {key}=A,B")
    combos: list[dict[str, str]] = [{}]
    for key, values in sweeps.items():
        combos = [{**combo, key: value} for combo in combos for value in dict.fromkeys(values)]
    target = get_target(base.backend, base.device)
    for combo in combos:  # an unknown option or a bad value; one ignored at some precision is check_settings'
        unused_engine_options(target.engine_class, {**base.engine_options, **combo})
    return combos


def _distinct(combos: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The combinations in order, each once (options dropped where they do nothing can make two equal)."""
    seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for combo in combos:
        seen.setdefault(tuple(sorted(combo.items())), combo)
    return list(seen.values())


def precision_option(base: RunConfig) -> str:
    """The engine option that names the precision of base's target; a ConfigError where its engine makes no
    other precision itself."""
    target = get_target(base.backend, base.device)
    if not target.engine_precisions:
        raise ConfigError(
            f"{target.key} has no precision option to sweep; drop --precisions, or tune --backend openvino"
        )
    return PRECISION_OPTION


def trial_config(
    base: RunConfig,
    *,
    batch_size: int,
    threads: int | None,
    instances: int | None,
    samples: int,
    output_dir: Path,
    target_qps: float | None = None,
    precision: str | None = None,
    options: dict[str, str] | None = None,
) -> RunConfig:
    """The RunConfig of one trial: a short test-mode performance run of base at these settings."""
    return _config(
        base,
        mode="performance",
        execution_mode="test",
        test_query_count=samples,
        batch_size=batch_size,
        threads=threads,
        output_dir=output_dir,
        target_qps=target_qps,
        **_engine_options(base, instances, precision, options),
    )


def preflight_trials(request: TuneRequest, combos: list[dict[str, str]]) -> None:
    """Each precision's first trial prepared as its run will prepare it (inputs, calibration, the runner's
    venv, image, GPU or cluster), before the tune folder exists: a sweep none of whose trials can start (a
    GPU target without the GPU, a model the backend cannot read) is one sentence, not a folder of failures.
    The other settings differ only in what check_settings has checked already."""
    base = request.base
    for precision in request.precisions:
        prepare_run(
            trial_config(
                base,
                batch_size=min(request.batch_sizes),
                threads=request.threads[0],
                instances=request.instances[0],
                samples=request.samples,
                output_dir=Path(base.output_dir),
                precision=precision,
                options=effective_sweep(base, precision, combos[0]),
            ),
            stream=False,
        )


def run_trial(
    base: RunConfig,
    *,
    batch_size: int,
    threads: int | None,
    instances: int | None,
    samples: int,
    output_dir: Path,
    target_qps: float | None = None,
    precision: str | None = None,
    options: dict[str, str] | None = None,
) -> Trial:
    """One short performance run; never raises for a failed run (the error is recorded)."""

    trial = Trial(
        batch_size=batch_size,
        threads=threads,
        instances=instances,
        run_dir=None,
        precision=precision,
        options=dict(options or {}),
    )
    started = time.perf_counter()
    try:
        config = trial_config(
            base,
            batch_size=batch_size,
            threads=threads,
            instances=instances,
            samples=samples,
            output_dir=output_dir,
            target_qps=target_qps,
            precision=precision,
            options=options,
        )
        result = run_benchmark(config, progress=False, stream=False)
        trial.run_dir = str(result.run_dir)
        perf = result.performance
        if perf is None:
            raise RunError(f"the run {result.run_dir} has no performance result")
        trial.samples_per_second = perf.samples_per_second
        trial.latency_ms = perf.latency_ms
        trial.p99_latency_ms = perf.latency_percentiles_ms.get("99")
        trial.samples = perf.samples_issued
        trial.instances_ran = result.record.engine_settings.get("instances")
    except MlperfBertError as exc:
        trial.error = str(exc)
        log.warning("trial batch %d threads %s failed: %s", batch_size, threads, exc)
    trial.seconds = round(time.perf_counter() - started, 2)
    log.info(
        "trial batch %d threads %s instances %s%s: %s samples/s",
        batch_size,
        threads or "auto",
        instances or "default",
        "".join(f" {k}={v}" for k, v in trial.options.items()),
        f"{trial.samples_per_second:.2f}" if trial.ok else "failed",
    )
    return trial


def _precision_kw(precision: str | None) -> dict[str, Any]:
    return {"precision": precision} if precision is not None else {}


def merge_repeats(repeats: list[Trial]) -> Trial:
    """One trial of a setting run several times: the median repeat (by samples/s) with every rate and the min;
    failed while any repeat failed."""
    failed = [t for t in repeats if not t.ok]
    if failed or len(repeats) == 1:
        return failed[0] if failed else repeats[0]
    rates = [t.samples_per_second or 0.0 for t in repeats]
    ranked = sorted(repeats, key=lambda t: t.samples_per_second or 0.0)
    middle = ranked[(len(ranked) - 1) // 2]
    merged = Trial(**{**asdict(middle), "repeat_samples_per_second": rates})
    merged.samples_per_second = round(statistics.median(rates), 4)
    merged.min_samples_per_second = min(rates)
    merged.seconds = round(sum(t.seconds or 0.0 for t in repeats), 2)
    return merged


def precision_check(
    base: RunConfig, *, samples: int | None, output_dir: Path, cache_dir: Path | None = None
) -> Callable[[Trial], str | None]:
    """A vet for precision sweeps: a trial of a reduced precision is taken only when its F1 on the first
    `samples` dev features (None: the full dev set) is at least its threshold x fp32's (accuracy_checks.
    THRESHOLDS: bert-99 for int8/fp16, bert-99.9 for bf16) at the same batch size, both scored from real
    accuracy runs through the harness; fp32 (and the default) pass as they are. Each verdict, pass or
    fail, is recorded in the check store (accuracy_checks.py), where later runs of the same numerics find it."""
    runs: dict[tuple[str, int, tuple[tuple[str, str], ...]], RunResult] = {}
    store = (cache_dir or base.cache_dir or default_cache_dir()).expanduser()

    def score(trial: Trial, precision: str) -> RunResult:
        # The same swept options in the fp32 run: the check compares one configuration's two precisions.
        # The fp32 run leaves out the int8-only ones (_engine_options), so one fp32 run serves every int8 rest.
        options = _engine_options(base, trial.instances, precision, trial.options)
        key = (precision, trial.batch_size, tuple(sorted(options.get("engine_options", {}).items())))
        if key not in runs:
            config = _config(
                base,
                mode="accuracy",
                execution_mode="test" if samples is not None else "valid",
                test_query_count=samples or base.test_query_count,
                batch_size=trial.batch_size,
                threads=trial.threads,
                output_dir=output_dir,
                **options,
            )
            result = run_benchmark(config, progress=False, stream=False)
            if result.accuracy is None:
                raise RunError(f"the {precision} accuracy check at batch size {trial.batch_size} scored nothing")
            runs[key] = result
        return runs[key]

    def holds(trial: Trial) -> str | None:
        if trial.precision in (None, "fp32"):
            return None
        try:
            reduced, full = score(trial, trial.precision), score(trial, "fp32")
        except MlperfBertError as exc:
            return f"its accuracy check failed to run ({exc})"
        check = record_check(reduced, full)
        if check is None:
            return f"its {trial.precision} run {reduced.run_dir} {why_unkeyed(reduced.record) or 'scored nothing'}; not taken"
        write_check(check, store)
        return None if check.passed else f"{check.precision} F1 ratio {check.ratio:.4f} < {check.threshold} vs fp32"

    return holds


def record_check(reduced: RunResult, full: RunResult) -> PrecisionCheck | None:
    """The verdict of two accuracy runs on the same features (the reduced precision's and fp32's), keyed by
    the reduced run's record; None when that run has no key (e.g. its engine ran the model as given)."""
    key = check_key(reduced.record)
    if key is None or reduced.accuracy is None or full.accuracy is None:
        return None
    if (reduced.accuracy.questions_scored, reduced.accuracy.features_answered) != (
        full.accuracy.questions_scored,
        full.accuracy.features_answered,
    ):
        raise RunError("the reduced and fp32 accuracy runs did not answer the same questions; rerun the check")
    precision = key["precision"]
    threshold = threshold_for(precision)
    ratio = reduced.accuracy.f1 / full.accuracy.f1 if full.accuracy.f1 > 0 else 0.0
    check = PrecisionCheck(
        key=key,
        passed=ratio >= threshold,
        precision=precision,
        f1=round(reduced.accuracy.f1, 4),
        fp32_f1=round(full.accuracy.f1, 4),
        exact_match=round(reduced.accuracy.exact_match, 4),
        fp32_exact_match=round(full.accuracy.exact_match, 4),
        ratio=round(ratio, 5),
        threshold=threshold,
        threshold_name=THRESHOLD_NAMES[threshold],
        features=reduced.accuracy.features_answered,
        questions=reduced.accuracy.questions_scored,
        batch_size=reduced.record.batch_size_ran or 1,
        run=str(reduced.run_dir),
        fp32_run=str(full.run_dir),
        calibration_set=str(reduced.record.config.calibration_path) if key["calibration_sha256"] else None,
    )
    log.info("%s", check.summary())
    return check


def best_trial(trials: list[Trial]) -> Trial | None:
    """The fastest successful trial; on a tie, the smaller batch (lower latency, less memory)."""
    return vetted_best(trials, None)


def vetted_best(trials: list[Trial], vet: Callable[[Trial], str | None] | None) -> Trial | None:
    """The fastest successful trial that `vet` accepts; the ones it turns down are marked with its reason."""
    ranked = sorted(
        (t for t in trials if t.ok), key=lambda t: (t.samples_per_second or 0.0, -t.batch_size), reverse=True
    )
    for trial in ranked:
        reason = vet(trial) if vet is not None else None
        if reason is None:
            if vet is not None:
                trial.accepted = "passed its check"
            return trial
        trial.rejected = reason
        log.warning(
            "trial batch %d threads %s instances %s not taken: %s",
            trial.batch_size,
            trial.threads or "auto",
            trial.instances or "default",
            reason,
        )
    return None


def check_request(request: TuneRequest) -> list[dict[str, str]]:
    """The request's settings checked before anything is written or run (tune --int8 calls it before it
    quantizes): one sentence for bad input; the swept options' combinations."""
    if not request.batch_sizes or min(request.batch_sizes) < 1:
        raise ConfigError("batch sizes must be whole numbers >= 1; pass e.g. --batch-sizes 1,4,16,64")
    if request.samples < 1:
        raise ConfigError("--samples must be at least 1; pass e.g. 512")
    if request.repeats < 1:
        raise ConfigError("--repeats must be at least 1; pass e.g. 3")
    for name, values in (("threads", request.threads), ("instances", request.instances)):
        if not values:  # the CLI always passes one ([None]: the default); an API caller may not
            raise ConfigError(f"{name} names no setting; pass [None] for the default, or e.g. [1, 2]")
    if not request.precisions:
        raise ConfigError("precisions names no setting; pass [None] for the model as given, or e.g. ['fp32']")
    combos = option_combinations(request.base, request.option_sweeps)
    check_settings(request, combos)
    return combos


def tune(request: TuneRequest) -> TuneResult:
    base = request.base
    combos = check_request(request)  # before the tune directory: bad input writes nothing
    preflight_trials(request, combos)
    if base.scenario is Scenario.SingleStream and len(request.batch_sizes) > 1:
        log.warning("SingleStream runs one sample at a time: the batch size changes nothing there")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    directory = Path(base.output_dir) / f"tune-{stamp}-{base.scenario.value}"
    n = 1
    while directory.exists():
        n += 1
        directory = Path(base.output_dir) / f"tune-{stamp}-{base.scenario.value}-{n}"
    trials_dir = directory / "trials"
    try:
        trials_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the tune folder under {base.output_dir} ({exc.strerror}); pass a writable --output-dir"
        ) from None
    result = TuneResult(directory=directory, trials=[], best=None)
    settings = [
        (precision, options, threads, instances, batch)
        for precision in request.precisions
        for options in _distinct(effective_sweep(base, precision, combo) for combo in combos)
        for threads in request.threads
        for instances in request.instances
        for batch in sorted(set(request.batch_sizes))
    ]
    for precision, options, threads, instances, batch in settings:
        repeats = []
        for _ in range(request.repeats):
            repeats.append(
                run_trial(
                    base,
                    batch_size=batch,
                    threads=threads,
                    instances=instances,
                    samples=request.samples,
                    output_dir=trials_dir,
                    options=options,
                    **_precision_kw(precision),
                )
            )
        result.trials.append(merge_repeats(repeats))
        write_summary(result, request)  # a sweep stopped half-way still leaves its record
    result.best = vetted_best(result.trials, request.vet)
    if result.best is None:
        write_summary(result, request)
        write_page(result)
        if any(t.rejected for t in result.trials):
            raise RunError(
                f"no tuning trial passed its check ({next(t.rejected for t in result.trials if t.rejected)}); "
                f"see tune.json in {directory}"
            )
        raise RunError(f"every tuning trial failed; see tune.json in {directory}")
    if request.find_performance:
        result.performance = find_performance(base, result.best, request, trials_dir)
        result.files.update(write_performance_config(directory, base, result.best, result.performance))
    if request.plot:
        title = f"{_title(base)}\n{PLOT_TEST_MODE}, {request.samples} samples per trial"
        plot = plot_throughput(result.trials, directory / "throughput.png", title=title, chosen=result.best)
        if plot is not None:
            result.files["plot"] = str(plot)
    write_page(result)
    write_summary(result, request)
    return result


def write_page(result: TuneResult) -> None:
    """report.html beside tune.json: the sweep, its chosen point and every trial (orchestrator.html_report)."""
    page = write_report([result.directory], result.directory / REPORT_FILE, title=f"Tuning: {result.directory.name}")
    result.files["report"] = str(page.path)


def _title(base: RunConfig) -> str:
    model = base.model_path.name if base.model_path else base.model
    return f"{base.backend}-{base.resolved_device} {base.scenario.value}: {model}"


# ---- find_performance ----------------------------------------------------------------------------------
def find_performance(base: RunConfig, best: Trial, request: TuneRequest, trials_dir: Path) -> dict[str, Any]:
    """A short run at the best settings, and the target for a valid run from it."""
    scenario = base.scenario.value
    rate = best.samples_per_second or 1.0
    samples = request.performance_samples or max(request.samples, int(math.ceil(rate * 20)))
    if scenario == Scenario.Server:
        return _find_server_qps(base, best, request, trials_dir, rate, samples)
    short = run_trial(
        base,
        batch_size=best.batch_size,
        threads=best.threads,
        instances=best.instances,
        samples=samples,
        output_dir=trials_dir,
        precision=best.precision,
        options=best.options,
    )
    if not short.ok:
        raise RunError(f"the find-performance run failed: {short.error}")
    outcome: dict[str, Any] = {"scenario": scenario, "short_run": asdict(short)}
    if scenario == Scenario.Offline:
        outcome["target_qps"] = round((short.samples_per_second or 0.0) * request.margin, 3)
        outcome["expected_valid_run_s"] = round(1.1 * 600 * request.margin, 1)
    else:  # SingleStream / MultiStream: LoadGen sizes the run from the expected latency
        outcome["target_latency_ms"] = round(short.latency_ms or 0.0, 3)
    return outcome


def _find_server_qps(
    base: RunConfig, best: Trial, request: TuneRequest, trials_dir: Path, offline_rate: float, samples: int
) -> dict[str, Any]:
    """Short Server runs at falling rates until LoadGen reports the latency bound kept."""
    qps = offline_rate * SERVER_START_SHARE
    tries: list[dict[str, Any]] = []
    for _ in range(SERVER_TRIES):
        trial = run_trial(
            base,
            batch_size=best.batch_size,
            threads=best.threads,
            instances=best.instances,
            samples=max(samples, int(qps * 20)),
            output_dir=trials_dir,
            target_qps=round(qps, 3),
            precision=best.precision,
            options=best.options,
        )
        met = _constraints_met(trial)
        tries.append({"target_qps": round(qps, 3), "constraints_met": met, **asdict(trial)})
        if met:
            return {"scenario": Scenario.Server, "target_qps": round(qps, 3), "tries": tries}
        qps *= SERVER_STEP
    raise RunError(
        f"no Server rate down to {qps / SERVER_STEP:.2f} qps kept the latency bound in a short run; "
        "check the system's load or tune a smaller batch size"
    )


def _constraints_met(trial: Trial) -> bool:
    if not trial.ok or trial.run_dir is None:
        return False

    perf = parse_performance(Path(trial.run_dir) / "performance" / "run_1")
    return bool(perf.perf_constraints_met)


def write_performance_config(directory: Path, base: RunConfig, best: Trial, perf: dict[str, Any]) -> dict[str, str]:
    """user.conf lines and a run config YAML for a valid run at the found target."""
    scenario = base.scenario.value
    lines = [
        f"# mlperf-bert tune --find-performance ({time.strftime('%Y-%m-%d %H:%M:%S')}); "
        "the harness writes these keys itself from --target-qps / --target-latency-ms."
    ]
    config: dict[str, Any] = {
        "backend": base.backend,
        "device": base.resolved_device,
        "scenario": scenario,
        "execution_mode": "valid",
        "mode": "both",
        "batch_size": best.batch_size,
    }
    if base.model_path is not None:
        config["model_path"] = str(base.model_path)
    else:
        config["model"] = base.model
    if best.threads is not None:
        config["threads"] = best.threads
    # The engine options the best trial ran with: the user's, its instances and its precision.
    chosen = _engine_options(base, best.instances, best.precision, best.options)
    engine_options = chosen.get("engine_options", base.engine_options)
    if engine_options:
        config["engine_options"] = dict(engine_options)
    if base.calibration_path is not None:
        config["calibration_path"] = str(base.calibration_path)
    if "target_qps" in perf:
        lines.append(f"bert.{scenario}.target_qps = {perf['target_qps']}")
        config["target_qps"] = perf["target_qps"]
    if "target_latency_ms" in perf:
        lines.append(f"bert.{scenario}.target_latency = {perf['target_latency_ms']}")
        config["target_latency_ms"] = perf["target_latency_ms"]
    user_conf = directory / "user.conf"
    user_conf.write_text("\n".join(lines) + "\n")
    config_yaml = directory / "config.yaml"
    config_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    return {"user_conf": str(user_conf), "config": str(config_yaml)}


# ---- records -------------------------------------------------------------------------------------------
def markdown_table(trials: list[Trial], best: Trial | None) -> str:
    """The trials as a table; the precision and min columns only where a sweep has them."""
    with_precision = any(t.precision for t in trials)
    with_options = any(t.options for t in trials)
    with_min = any(t.min_samples_per_second is not None for t in trials)
    head = ["batch size", "threads", "instances", "samples/s"]
    align = ["---:", "---:", "---:", "---:"]
    if with_options:
        head, align = ["engine options", *head], ["---", *align]
    if with_precision:
        head, align = ["precision", *head], ["---", *align]
    if with_min:
        head, align = [*head, "min samples/s"], [*align, "---:"]
    rows = [
        "| " + " | ".join([*head, "p99 latency (ms)", "run directory"]) + " |",
        "|" + "|".join([*align, "---:", "---"]) + "|",
    ]
    for t in trials:
        rate = f"{t.samples_per_second:.2f}" if t.ok else f"failed: {t.error}"
        mark = " **best**" if t is best else f" (not taken: {t.rejected})" if t.rejected else ""
        p99 = f"{t.p99_latency_ms:.1f}" if t.p99_latency_ms is not None else "-"
        cells = [str(t.batch_size), str(t.threads or "auto"), str(t.instances or "default"), rate + mark]
        if with_options:
            cells.insert(0, options_text(t.options) or "-")
        if with_precision:
            cells.insert(0, t.precision or "default")
        if with_min:
            cells.append(f"{t.min_samples_per_second:.2f}" if t.min_samples_per_second is not None else "-")
        cells += [p99, Path(t.run_dir).name if t.run_dir else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def write_summary(result: TuneResult, request: TuneRequest) -> None:
    best = result.best or best_trial(result.trials)
    base = request.base
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "base_config": base.model_dump(mode="json"),
        "samples_per_trial": request.samples,
        "batch_sizes": request.batch_sizes,
        "threads": request.threads,
        "instances": request.instances,
        "precisions": request.precisions,
        "option_sweeps": request.option_sweeps,
        "repeats": request.repeats,
        "trials": [asdict(t) for t in result.trials],
        "best": asdict(best) if best else None,
        "performance": result.performance,
        "files": result.files,
        "note": "test-mode runs: for choosing settings, never a result",
    }
    tmp = result.directory / "tune.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(result.directory / "tune.json")
    title = f"# Tuning: {_title(base)}\n\n{request.samples} samples per trial (test mode: settings, not results).\n\n"
    (result.directory / "tune.md").write_text(title + markdown_table(result.trials, best))
    result.files.setdefault("summary", str(result.directory / "tune.json"))
    result.files.setdefault("table", str(result.directory / "tune.md"))


def options_text(options: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def series_label(trial: Trial) -> str:
    """A sweep line's name: the precision, the swept options, the threads and the instance count the engine
    ran (not the request's None)."""
    label = f"threads {trial.threads or 'auto'}, instances {trial.instances_ran or trial.instances or 'default'}"
    swept = f", {options_text(trial.options)}" if trial.options else ""
    return (f"{trial.precision}, " if trial.precision else "") + label + swept


def plot_throughput(trials: list[Trial], path: Path, *, title: str, chosen: Trial | None = None) -> Path | None:
    """samples/s against batch size, one line per (threads, instances), the chosen trial ringed (drawn by
    orchestrator.plots); None without matplotlib."""
    series: dict[str, list[plots.SweepPoint]] = {}
    for t in trials:
        if t.ok:
            series.setdefault(series_label(t), []).append(plots.SweepPoint(t.batch_size, t.samples_per_second or 0.0))
    mark = None
    if chosen is not None and chosen.ok:
        mark = (series_label(chosen), plots.SweepPoint(chosen.batch_size, chosen.samples_per_second or 0.0))
    png = plots.sweep_chart(series, title=title, chosen=mark, fmt="png")
    if png is None:
        return None
    path.write_bytes(png)
    return path
