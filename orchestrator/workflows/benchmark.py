"""The run use case: what `mlperf-bert run` does, as a function that returns a typed result.

    from orchestrator.api import run_benchmark
    from orchestrator.config import RunConfig
    result = run_benchmark(RunConfig(scenario="SingleStream", test_query_count=50))
    print(result.accuracy.f1, result.performance.samples_per_second)

Inputs are validated before a run directory exists, so bad input leaves nothing behind; once the run
directory exists, every way out (success, harness failure, Ctrl-C, runner error) leaves run.json with the
final status and the logs.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from signal import SIGINT
from typing import TYPE_CHECKING

from orchestrator import __version__
from orchestrator.accuracy import score_run
from orchestrator.assets import (
    MLPERF_INTERFACE,
    ResolvedModel,
    check_onnx_interface,
    load_catalogue,
    resolve_dataset,
    resolve_model,
    resolve_vocab,
)
from orchestrator.assets.hashing import cached_digests, cached_sha256, mismatches
from orchestrator.backends import Target, get_target
from orchestrator.config import ExecutionMode, LocalEnv, RunConfig, RunnerKind, SutKind
from orchestrator.containers.client import docker_unusable
from orchestrator.containers.cluster_runner import ClusterRunner
from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.dataset import build_features, load_examples, load_features
from orchestrator.errors import (
    ConfigError,
    DatasetError,
    MlperfBertError,
    ModelError,
    PreflightError,
    RunError,
    RunInterrupted,
)
from orchestrator.harness.engines.engine import check_engine_options, load_engine_class, unused_engine_options
from orchestrator.harness.spec import EXIT_BAD_INPUT, RAY_LOCAL, HarnessResult, HarnessSpec, RaySpec
from orchestrator.loadgen_logs import PerfSummary, parse_performance
from orchestrator.logs import progress_wanted
from orchestrator.mlperf import Scenario
from orchestrator.paths import REPO_ROOT, default_cache_dir
from orchestrator.run_status import process_start, this_process
from orchestrator.runners.host_checks import check_host
from orchestrator.runners.local import CURRENT_ENV, LocalRunner
from orchestrator.runners.ray_runner import RayRunner
from orchestrator.runners.runner import STOP_GRACE_S, Runner, Started, StartHook
from orchestrator.runs import FileRef, RunRecord, git_sha, host_info, new_run_dir, utc_now
from orchestrator.stop_signals import signal_name, signal_of
from orchestrator.workflows.accuracy_label import accuracy_check_label
from orchestrator.workflows.calibration import check_precision, with_calibration

if TYPE_CHECKING:  # the accuracy package pulls in numpy, which `mlperf-bert --help` does not need
    from orchestrator.accuracy import AccuracyReport

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    record: RunRecord
    performance: PerfSummary | None = None
    accuracy: AccuracyReport | None = None

    @property
    def test_mode(self) -> bool:
        return self.record.test_mode

    @property
    def succeeded(self) -> bool:
        return self.record.status == "succeeded"


@dataclass(frozen=True)
class AuditRequest:
    """A compliance run: the performance pass of a verified run again, with a test's audit.config."""

    test: str  # e.g. "TEST01"
    audit_config: str  # the audit.config text (kept as data in configs/compliance/)
    verified_run: Path


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads, resolved and checked before a run directory is made."""

    model: ResolvedModel
    dataset: Path
    vocab: Path
    features: Path
    num_features: int


def resolve_inputs(config: RunConfig, cache_dir: Path) -> Inputs:
    target = get_target(config.backend, config.device)
    if target.model_format == "pytorch" and config.model_path is None:
        raise ConfigError(
            f"{target.key} runs a Hugging Face checkpoint directory; pass --model-path DIR (config.json + "
            "model.safetensors), e.g. the demo's demo-minilm-l6-squad-hf"
        )
    if config.model_path is None and config.model.startswith(ZOO_PREFIX):
        model = _zoo_stub(config, target)  # DeepSparse fetches and checks it when the run starts
    else:
        model = resolve_model(config.model, config.model_path, cache_dir)
        _check_model_format(model, target)
    dataset = resolve_dataset(config.dataset_path, cache_dir)
    vocab = resolve_vocab(config.vocab_path, cache_dir)
    _check_vocab_matches_model(model, vocab)
    if "accuracy" in config.mode.modes():
        _check_answers(dataset)
    return _with_features(config, model, dataset, vocab, cache_dir)


def _check_answers(dataset: Path) -> None:
    """An accuracy run scores every question against its answers: a question without one fails here, before
    the run, not at scoring after it (a SQuAD train file or a question list is no dev set)."""
    unanswered = [e.qas_id for e in load_examples(dataset) if not e.answers]
    if unanswered:
        raise DatasetError(
            f"{len(unanswered)} questions of {dataset.name} have no answers (the first: {unanswered[0]!r}), so an "
            "accuracy run cannot score them; pass a SQuAD v1.1 dev file, or --mode performance"
        )


def _check_model_format(model: ResolvedModel, target: Target) -> None:
    """The model must be what the target runs; an ONNX model must have the MLPerf interface."""
    if target.model_format == "pytorch" and Path(model.path).suffix == ".onnx":
        raise ModelError(
            f"{target.key} runs a Hugging Face checkpoint, but {model.path} is an ONNX file; pass the checkpoint "
            "directory (config.json + model.safetensors) to --model-path, or use --backend onnxruntime"
        )
    if target.model_format != "onnx":
        return
    if Path(model.path).is_dir():
        raise ModelError(f"{target.key} runs ONNX models but {model.path} is a directory; pass an .onnx file")
    problems = check_onnx_interface(Path(model.path), model.interface)
    if problems:
        raise ModelError(
            f"model {model.path} does not have the MLPerf BERT interface: {'; '.join(problems)}; "
            "export it as described in docs/CUSTOM_MODELS.md"
        )


def _with_features(config: RunConfig, model: ResolvedModel, dataset: Path, vocab: Path, cache_dir: Path) -> Inputs:

    features = build_features(dataset, vocab, cache_dir / "features")
    num_features = int(load_features(features).input_ids.shape[0])
    if config.execution_mode is ExecutionMode.test and config.test_query_count > num_features:
        raise ConfigError(
            f"--test-query-count {config.test_query_count} is larger than the dataset ({num_features} samples); "
            f"pass at most {num_features}, or --execution-mode valid for the full set"
        )
    return Inputs(model=model, dataset=dataset, vocab=vocab, features=features, num_features=num_features)


ZOO_PREFIX = "zoo:"


def _zoo_stub(config: RunConfig, target: Target) -> ResolvedModel:
    """A SparseZoo stub: DeepSparse downloads it at run time (so only locally, and only with internet)."""
    if not target.accepts_zoo_stubs:
        raise ConfigError(f"{config.model} is a SparseZoo stub, which only --backend deepsparse can run")
    if config.runner is RunnerKind.ray:
        raise ConfigError(
            "a zoo: stub is downloaded by DeepSparse while the run starts, which the Ray actors cannot share; "
            "download the ONNX file and pass --model-path"
        )
    if config.runner is RunnerKind.docker:
        raise ConfigError(
            "a zoo: stub is downloaded by DeepSparse while the run starts, which the network-less container "
            "cannot do; use --runner local, or download the ONNX file and pass --model-path"
        )
    return ResolvedModel(
        name=config.model,
        path=Path(config.model),
        sha256="",
        source="path",
        format="onnx",
        precision=None,
        demo=False,
        synthetic=False,
        custom=True,
        reference_f1=None,
        reference_exact_match=None,
        interface=MLPERF_INTERFACE,
        vocab=None,
    )


def _is_stub(model: ResolvedModel) -> bool:
    return str(model.path).startswith(ZOO_PREFIX)


def _check_vocab_matches_model(model: ResolvedModel, vocab: Path) -> None:
    """Token ids from another vocabulary run without error and give nonsense; refuse them up front."""
    if not model.vocab:
        return  # a custom model: its vocabulary is not known, the user vouches for it
    expected = load_catalogue().get(model.vocab, kind="vocab")
    if mismatches(cached_digests(vocab), expected.checksums):
        raise DatasetError(
            f"vocab {vocab} is not the vocabulary model {model.name} was trained with ({expected.name}); "
            "drop --vocab to use the default, or pass that vocabulary's file"
        )


def make_runner(config: RunConfig, target: Target, *, stream: bool = True, cache_dir: Path | None = None) -> Runner:
    kind = config.runner
    grace = STOP_GRACE_S if config.stop_grace_s is None else config.stop_grace_s
    if kind is RunnerKind.auto:
        kind, why = _auto_runner(config, target)
        log.info("runner %s (auto: %s)", kind.value, why)
    if kind is RunnerKind.docker:
        return DockerRunner(
            target,
            image=config.image,
            stream=stream,
            gpus=config.gpus or "all",
            shm_size=config.shm_size or "1g",
            cpuset_cpus=config.cpuset_cpus,
            memory=config.memory,
            stop_timeout=grace,
        )
    if kind is RunnerKind.ray and config.cluster is not None:
        return ClusterRunner(target, cluster=config.cluster, stream=stream, stop_grace_s=grace)
    if kind is RunnerKind.ray:
        address = config.ray_address or RAY_LOCAL
        if address == RAY_LOCAL:
            check_host(target)  # the local instance's actors run on this machine
        return RayRunner(address=address, stream=stream, cache_dir=cache_dir, stop_grace_s=grace)
    check_host(target)
    env = CURRENT_ENV if config.local_env is LocalEnv.current else target.local_env
    packages = load_engine_class(target.engine_class).packages
    return LocalRunner(local_env=env, stream=stream, cache_dir=cache_dir, stop_grace_s=grace, packages=packages)


def _auto_runner(config: RunConfig, target: Target) -> tuple[RunnerKind, str]:
    """The runner `auto` picks, and why in a few words: the container once the target's image exists."""
    if config.model_path is None and config.model.startswith(ZOO_PREFIX):
        return RunnerKind.local, "a zoo: stub is downloaded while the run starts, which needs this machine"

    reason = docker_unusable(target)
    if reason is None:
        return RunnerKind.docker, f"the image {target.image}:latest is present; --runner local runs here instead"
    return RunnerKind.local, f"{reason}; `mlperf-bert images build {target.key}` makes the container runner usable"


def effective_batch_size(config: RunConfig, target: Target) -> int:
    """The batch size a run uses: the user's, else 1 for the reference SUT and for SingleStream (each query
    is one sample, so no batch is ever larger), else the target's default."""
    if config.batch_size is not None:
        return config.batch_size
    if config.sut is SutKind.reference or config.scenario is Scenario.SingleStream:
        return 1
    return target.batch_size


def with_default_batch_size(config: RunConfig, target: Target) -> RunConfig:
    """The config with its batch size filled in when the user left it out, so run.json, the summary and
    the submission name the batch size that ran."""
    if config.batch_size is not None:
        return config
    return config.model_copy(update={"batch_size": effective_batch_size(config, target)})


def run_engine_options(config: RunConfig, target: Target, cache_dir: Path | None) -> dict[str, str]:
    """The engine options a run passes: the user's, then the target's for the reference SUT or Offline, then
    the engine's cache directory (made here) unless the user named one."""
    engine_options = dict(config.engine_options)
    if config.sut is SutKind.reference:
        for key, value in target.reference_options:
            engine_options.setdefault(key, value)
    elif config.scenario is Scenario.Offline:
        for key, value in target.offline_options:
            engine_options.setdefault(key, value)
    if target.cache_option and cache_dir is not None and target.cache_option not in engine_options:
        engine_dir = (cache_dir / "engines" / target.key).resolve()
        engine_dir.mkdir(parents=True, exist_ok=True)
        engine_options[target.cache_option] = str(engine_dir)
    return engine_options


def warn_unused_targets(config: RunConfig) -> None:
    """One line for a LoadGen target the scenario does not read (it changes nothing, so it is not an error)."""
    scenario = config.scenario
    if config.target_qps is not None and scenario in (Scenario.SingleStream, Scenario.MultiStream):
        log.warning("%s does not read --target-qps (Offline and Server do); it changes nothing", scenario.value)
    if config.target_latency_ms is not None and scenario is Scenario.Offline:
        log.warning("Offline does not read --target-latency-ms (the other scenarios do); it changes nothing")


def unused_run_options(config: RunConfig, target: Target) -> dict[str, str]:
    """{each of the user's engine options that this run's engine would ignore: the sentence refusing it}. One
    ignored because of an option the target adds (the reference SUT's optimize=none) names that, not the
    engine's advice to drop an option the user never passed; a misspelt option or a bad value is the
    engine's ConfigError as usual."""
    merged = run_engine_options(config, target, None)
    unused = unused_engine_options(target.engine_class, merged)
    added = {k: v for k, v in merged.items() if k not in config.engine_options}
    if not unused or not added:
        return unused
    own = unused_engine_options(target.engine_class, {**config.engine_options})
    added_text = ", ".join(f"{k}={v}" for k, v in added.items())
    if config.sut is SutKind.reference:
        where, fix = f"the reference SUT runs {target.key} with {added_text}", "drop it, or use --sut optimized"
    else:
        where, fix = f"{config.scenario.value} runs {target.key} with {added_text}", "drop it"
    return {
        name: sentence if name in own else f"engine option {name}={merged[name]} does nothing here: {where}; {fix}"
        for name, sentence in unused.items()
    }


def check_run_engine_options(config: RunConfig, target: Target) -> None:
    """A misspelt --engine-option, a bad value or one the run would ignore: one sentence (the engine's own
    but for options the target adds), before any run directory (the harness parses them again when the
    engine starts)."""
    for sentence in unused_run_options(config, target).values():
        raise ConfigError(sentence)
    check_engine_options(
        target.engine_class,
        run_engine_options(config, target, None),
        device=target.device,
        execution_provider=target.execution_provider,
    )
    given = config.engine_options.get(target.cache_option or "")
    if given and Path(given).expanduser().exists() and not Path(given).expanduser().is_dir():
        raise ConfigError(
            f"engine option {target.cache_option}={given} is a file, not a folder; pass the folder the engine may "
            "keep its cache in, or leave the option out (the run's cache then holds it)"
        )


def build_spec(
    config: RunConfig,
    target: Target,
    inputs: Inputs,
    run_dir: Path,
    *,
    progress: bool,
    cache_dir: Path | None = None,
    audit: AuditRequest | None = None,
) -> HarnessSpec:
    engine_options = run_engine_options(config, target, cache_dir)
    return HarnessSpec(
        target=target.key,
        engine_class=target.engine_class,
        execution_provider=target.execution_provider,
        sut=config.sut,
        model_path=str(inputs.model.path) if _is_stub(inputs.model) else str(Path(inputs.model.path).resolve()),
        features_path=str(inputs.features.resolve()),
        run_dir=str(run_dir.resolve()),
        scenario=config.scenario,
        modes=config.mode.modes(),
        execution_mode=config.execution_mode,
        test_query_count=config.test_query_count,
        batch_size=effective_batch_size(config, target),
        threads=config.threads,
        target_qps=config.target_qps,
        target_latency_ms=config.target_latency_ms,
        engine_options=engine_options,
        progress=progress and progress_wanted(),  # -q: no bar
        compliance_test=audit.test if audit else None,
        audit_config=audit.audit_config if audit else None,
        ray=_ray_spec(config, cache_dir),
    )


def _ray_spec(config: RunConfig, cache_dir: Path | None) -> RaySpec | None:
    """The Ray runner's part of the spec; each node of a cluster keeps its caches in its own default cache."""
    if config.runner is not RunnerKind.ray:
        return None
    address = "auto" if config.cluster is not None else (config.ray_address or RAY_LOCAL)  # the runner sets the head's
    local_cache = str(cache_dir.resolve()) if address == RAY_LOCAL and cache_dir is not None else None
    return RaySpec(address=address, actors=config.ray_actors, node_cache_dir=local_cache)


def _new_record(
    config: RunConfig, target: Target, inputs: Inputs, run_dir: Path, runner: Runner, argv: list[str] | None
) -> RunRecord:
    model = inputs.model
    return RunRecord(
        run_id=run_dir.name,
        status="running",
        execution_mode=config.execution_mode.value,
        test_mode=config.execution_mode is ExecutionMode.test,
        scenario=config.scenario.value,
        modes=config.mode.modes(),
        target=target.key,
        runner=runner.name,
        config=config,
        model=FileRef(name=model.name, path=str(model.path), sha256=model.sha256),
        # Hashed once per process and file version (the inputs were just verified or built: cheap).
        dataset=FileRef(path=str(inputs.dataset), sha256=cached_sha256(inputs.dataset)),
        vocab=FileRef(path=str(inputs.vocab), sha256=cached_sha256(inputs.vocab)),
        features=FileRef(path=str(inputs.features), sha256=cached_sha256(inputs.features)),
        model_meta={
            "precision": model.precision,
            "demo": model.demo,
            "reference_f1": model.reference_f1,
            "reference_exact_match": model.reference_exact_match,
        },
        versions={"mlperf-bert": __version__},
        host=host_info(),
        process=this_process(),
        git_sha=git_sha(REPO_ROOT),
        command=list(argv) if argv is not None else list(sys.argv),
        started_at=utc_now(),
    )


def _finish(record: RunRecord, run_dir: Path, status: str, error: str | None = None) -> None:
    record.status = status  # type: ignore[assignment]
    record.error = error
    record.finished_at = utc_now()
    record.save(run_dir)


@dataclass(frozen=True)
class PreparedRun:
    """A run checked and resolved up to its run directory: what run_benchmark then runs."""

    config: RunConfig  # with its default batch size and calibration filled in
    target: Target
    inputs: Inputs
    runner: Runner
    cache_dir: Path


def prepare_run(config: RunConfig, *, stream: bool = True, preflight: bool = True) -> PreparedRun:
    """Everything a run checks before its run directory exists (options, this CPU's precision, the target's GPU,
    the inputs, the runner's venv/engine/image), cheapest first; one MlperfBertError sentence for bad input.
    tune calls it for each precision's first trial before its folder, so a sweep that cannot run is one
    sentence, not a folder of failures."""
    target = get_target(config.backend, config.device)
    config = with_default_batch_size(config, target)
    check_run_engine_options(config, target)  # before the inputs, which may take a while to build
    check_precision(config, target)  # this CPU's bf16, likewise
    cache_dir = (config.cache_dir or default_cache_dir()).expanduser()
    # The runner first: making it checks this machine for the target's GPU (host_checks), before the inputs.
    # It reads none of the engine options with_calibration fills in.
    runner = make_runner(config, target, stream=stream, cache_dir=cache_dir)
    inputs = resolve_inputs(config, cache_dir)
    config = with_calibration(config, target, inputs.vocab, cache_dir, inputs.dataset)
    if preflight:
        runner.preflight()  # venv, engine, image, GPU: fail before a run directory exists
    return PreparedRun(config=config, target=target, inputs=inputs, runner=runner, cache_dir=cache_dir)


def run_benchmark(
    config: RunConfig,
    *,
    progress: bool = True,
    stream: bool = True,
    argv: list[str] | None = None,
    audit: AuditRequest | None = None,
) -> RunResult:
    """Run the benchmark as configured; returns the result or raises an MlperfBertError.

    audit: make this a compliance run (a performance pass with the test's audit.config).
    A failed run raises after its run.json is marked failed (the error names the run directory)."""
    if audit is not None and config.mode.modes() != ["performance"]:
        raise ConfigError(f"a {audit.test} compliance run is a performance pass only; use --mode performance")
    warn_unused_targets(config)
    ready = prepare_run(config, stream=stream)
    config, target, inputs, runner, cache_dir = ready.config, ready.target, ready.inputs, ready.runner, ready.cache_dir
    label = f"{target.key}-{config.scenario.value}-{audit.test if audit else config.mode.value}"
    run_dir = new_run_dir(config.output_dir, label)
    record = _new_record(config, target, inputs, run_dir, runner, argv)
    if audit is not None:
        record.compliance_test, record.verified_run = audit.test, str(audit.verified_run)
    record.save(run_dir)
    log.info(
        "run %s: %s %s %s (%s), runner %s",
        run_dir,
        target.key,
        config.scenario.value,
        config.mode.value,
        "TEST MODE" if record.test_mode else "valid",
        runner.name,
    )
    spec = build_spec(config, target, inputs, run_dir, progress=progress, cache_dir=cache_dir, audit=audit)
    try:
        return _run_and_record(runner, spec, record, run_dir, target, inputs)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (stop_signals), anywhere once the run exists
        signum = signal_of(exc)
        _finish(record, run_dir, "interrupted", interrupted_by(signum))
        raise _interrupted(signum, run_dir) from None


def interrupted_by(signum: int) -> str:
    """run.json's error for an interrupted run: the signal named."""
    return "interrupted by the user (Ctrl-C)" if signum == SIGINT else f"interrupted by {signal_name(signum)}"


def _interrupted(signum: int, run_dir: Path) -> RunInterrupted:
    how = "(Ctrl-C)" if signum == SIGINT else f"by {signal_name(signum)}"
    return RunInterrupted(f"run interrupted {how}; its logs are kept in {run_dir}", signum=signum)


def _harness_started(record: RunRecord, run_dir: Path) -> StartHook:
    """Keeps what the runner started in run.json, so a later look can tell whether it still runs."""

    def started(what: Started) -> None:
        if record.process is None:
            return
        update: dict[str, object] = {"container_id": what.container_id}
        if what.pid is not None:
            update |= {"harness_pid": what.pid, "harness_started": process_start(what.pid)}
        record.process = record.process.model_copy(update=update)
        record.save(run_dir)

    return started


def _run_and_record(
    runner: Runner, spec: HarnessSpec, record: RunRecord, run_dir: Path, target: Target, inputs: Inputs
) -> RunResult:
    try:
        outcome = runner.run(spec, run_dir, on_start=_harness_started(record, run_dir))
    except MlperfBertError as e:
        _finish(record, run_dir, "failed", str(e))
        raise
    record.image, record.image_digest = outcome.image, outcome.image_digest
    harness = HarnessResult.read(run_dir)
    if harness is not None:
        record.execution_provider = harness.execution_provider
        record.engine_settings = dict(harness.engine_settings)
        record.nodes = list(harness.nodes)
        record.versions.update(harness.versions)
        record.accuracy_check = accuracy_check_label(record, Path(inputs.model.path))
    record.engine_settings.update(outcome.settings)
    if outcome.interrupted:
        signum = outcome.signal if outcome.signal is not None else SIGINT
        _finish(record, run_dir, "interrupted", interrupted_by(signum))
        raise _interrupted(signum, run_dir)
    if outcome.exit_code != 0:
        reason = (
            (harness.error if harness and harness.error else None)
            or outcome.message
            or (f"the harness exited with code {outcome.exit_code}")
        )
        if outcome.oom_killed:
            reason = "the container was killed for running out of memory; lower --batch-size or give it more memory"
        _finish(record, run_dir, "failed", reason)
        err = ModelError if outcome.exit_code == EXIT_BAD_INPUT else RunError
        raise err(f"{reason.rstrip('.')} (run {run_dir} marked failed; see harness.log there)")
    if harness is None or harness.execution_provider != target.execution_provider:
        got = harness.execution_provider if harness else "nothing (no harness_result.json)"
        reason = (
            f"the run asked for {target.execution_provider} but {got} ran; a fallback is never a valid result, "
            "fix the image or drivers and rerun"
        )
        _finish(record, run_dir, "failed", reason)
        raise PreflightError(f"{reason} (run {run_dir} marked failed)")
    result = RunResult(run_dir=run_dir, record=record)
    try:
        _collect(result, inputs)
    except MlperfBertError as e:
        _finish(record, run_dir, "failed", str(e))
        raise
    _finish(record, run_dir, "succeeded")
    return result


def _collect(result: RunResult, inputs: Inputs) -> None:
    """Score the accuracy log and read the performance log into the record."""
    record, run_dir = result.record, result.run_dir
    if "accuracy" in record.modes:
        report = score_run(
            run_dir / "accuracy", inputs.features, inputs.dataset, inputs.vocab, record.model_meta.get("reference_f1")
        )
        result.accuracy = report
        record.results["accuracy"] = dataclasses.asdict(report)
    if "performance" in record.modes:
        perf = parse_performance(run_dir / "performance" / "run_1")
        result.performance = perf
        record.results["performance"] = perf.model_dump(mode="json")


def prepare_only(config: RunConfig, *, debug: bool = False) -> str:
    """--dry-run: the command the runner would execute (nothing is run or written).
    --debug (docker runner): open a shell in the container with everything mounted."""
    ready = prepare_run(config, preflight=False)  # --debug's shell gets the calibrated model mounted too
    config, target, inputs, runner, cache_dir = ready.config, ready.target, ready.inputs, ready.runner, ready.cache_dir
    run_dir = (config.output_dir / "<new-run>").resolve()
    spec = build_spec(config, target, inputs, run_dir, progress=True, cache_dir=cache_dir)
    if debug:
        return runner.debug(spec, config.output_dir)
    return runner.describe(spec, run_dir)
