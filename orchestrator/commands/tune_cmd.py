"""`mlperf-bert tune`: the batch-size sweep, the plot and table, and --find-performance.

Thin: parses options, hands off to orchestrator.workflows.tuning (and orchestrator.workflows.int8 for --int8), prints the
table and where the records are. Mounted by orchestrator/cli.py as the `tune` command.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.backends import get_target
from orchestrator.commands.run_options import (
    BackendOption,
    CacheDirOption,
    CalibrationOption,
    ClusterOption,
    ConfigFileOption,
    DeviceOption,
    EngineOptionsOption,
    ModelOption,
    ModelPathOption,
    OutputDirOption,
    RayActorsOption,
    RayAddressOption,
    RunnerOption,
    ScenarioOption,
    SutOption,
    parse_engine_options,
)
from orchestrator.commands.verbosity import QuietOption, VerboseOption, apply_verbosity
from orchestrator.config import RunOverrides, resolve_config
from orchestrator.errors import ConfigError
from orchestrator.paths import default_cache_dir
from orchestrator.workflows import int8 as int8_checks
from orchestrator.workflows.accuracy_checks import CHECK_SAMPLES_FLAG
from orchestrator.workflows.benchmark import effective_batch_size
from orchestrator.workflows.tuning import (
    DEFAULT_CHECK_SAMPLES,
    Trial,
    TuneRequest,
    check_request,
    markdown_table,
    precision_check,
    precision_option,
    preflight_trials,
    trial_config,
    tune,
)

log = logging.getLogger(__name__)


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(
            f"--{what} {text!r} is not a comma-separated list of whole numbers; pass e.g. 1,4,16"
        ) from None
    if not values or min(values) < 1:
        raise ConfigError(f"--{what} needs whole numbers >= 1; pass e.g. 1,4,16")
    return values


def parse_option_sweeps(items: list[str] | None) -> dict[str, list[str]]:
    """--sweep-option KEY=V1,V2 (repeatable) as {KEY: [V1, V2]}, in the order given."""
    sweeps: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip()
        listed = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not listed:
            raise ConfigError(
                f"--sweep-option {item!r} is not KEY=V1,V2; pass e.g. --sweep-option int8_float=fp32,bf16"
            )
        if key in sweeps:
            raise ConfigError(f"--sweep-option {key} is given twice; list all its values once, e.g. {key}=A,B")
        sweeps[key] = listed
    return sweeps


def check_samples(text: str) -> int | None:
    """--precision-check-samples: a count of dev features, or None for `all` (the full dev set)."""
    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(f"{CHECK_SAMPLES_FLAG} {text!r} is neither a whole number >= 1 nor all; pass e.g. 200 or all")
    return int(text)


def command(
    batch_sizes: Annotated[
        str, typer.Option(metavar="<list>", help="Comma-separated batch sizes to try.")
    ] = "1,2,4,8,16,32,64",
    # A sweep of run's --threads: the same flag, a list of values (not the RunConfig field itself).
    thread_counts: Annotated[
        str | None,
        typer.Option(
            "--threads", metavar="<list>", help="Comma-separated intra-op thread counts (default: the engine's choice)."
        ),
    ] = None,
    instances: Annotated[
        str | None, typer.Option(metavar="<list>", help="Comma-separated engine instance counts (onnxruntime).")
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, metavar="<n>", help="Samples per trial (short test-mode performance runs).")
    ] = 512,
    precisions: Annotated[
        str | None,
        typer.Option(
            metavar="<list>",
            help="Comma-separated precisions to sweep, e.g. fp32,bf16,int8 (openvino; pytorch and the GPU targets "
            "their own); a reduced one is taken only "
            f"when its F1 holds against fp32 on {CHECK_SAMPLES_FLAG} features (bert-99: >= 0.99x for int8 and "
            "fp16, bert-99.9: >= 0.999x for bf16); each verdict is recorded where later runs of it find it.",
        ),
    ] = None,
    precision_check_samples: Annotated[
        str,
        typer.Option(
            CHECK_SAMPLES_FLAG,
            metavar="<n>|all",
            help="Dev features of the accuracy check of each reduced precision; all: the full dev set.",
        ),
    ] = str(DEFAULT_CHECK_SAMPLES),
    repeats: Annotated[
        int,
        typer.Option(min=1, metavar="<n>", help="Runs per setting; the median samples/s counts, the min is recorded."),
    ] = 1,
    sweep_options: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep-option",
            metavar="<key=v1,v2>",
            help="An engine option to sweep, its values comma-separated, e.g. int8_float=fp32,bf16 or "
            "pad_to=16,32,64 (openvino); repeatable: every combination is a setting, less an option where it "
            "does nothing (int8_float at fp32). Precision and instances have --precisions and --instances.",
        ),
    ] = None,
    calibration_path: CalibrationOption = None,
    scenario: ScenarioOption = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    model: ModelOption = None,
    model_path: ModelPathOption = None,
    sut: SutOption = None,
    runner: RunnerOption = None,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = None,
    cluster: ClusterOption = None,
    engine_options: EngineOptionsOption = None,
    output_dir: OutputDirOption = None,
    cache_dir: CacheDirOption = None,
    config: ConfigFileOption = None,
    find_performance: Annotated[
        bool,
        typer.Option(
            "--find-performance",
            help="After the sweep, a short run at the best setting sets target_qps (Offline, "
            "Server) or target_latency (SingleStream, MultiStream) for a valid run: writes user.conf and config.yaml.",
        ),
    ] = False,
    performance_samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="<n>",
            help="Samples of the --find-performance run (default: about 20 s of work at the best rate).",
        ),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Quantize the fp32 model (--model-path) to int8, check its F1 against the fp32 model on the "
            "same questions (bert-99: >= 0.99x), and tune the int8 model only if it passes.",
        ),
    ] = False,
    int8_check_samples: Annotated[
        int | None,
        typer.Option(min=1, metavar="<n>", help="Features for the int8 accuracy check (default: the full dev set)."),
    ] = None,
    plot: Annotated[
        bool, typer.Option(help="Write throughput.png (needs matplotlib: pip install 'mlperf-bert[plot]').")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Sweep batch size (and threads/instances) with short performance runs; keep every trial, pick the best.

    The trials and their records go into a tune-<time> folder under --output-dir.
    """
    apply_verbosity(verbose, quiet)
    overrides = RunOverrides(
        scenario=scenario,
        backend=backend,
        device=device,
        model=model,
        model_path=model_path,
        sut=sut,
        runner=runner,
        ray_address=ray_address,
        ray_actors=ray_actors,
        cluster=cluster,
        engine_options=parse_engine_options(engine_options),
        output_dir=output_dir,
        cache_dir=cache_dir,
        calibration_path=calibration_path,
    )
    _tune(
        overrides,
        config,
        batch_sizes=batch_sizes,
        threads=thread_counts,
        instances=instances,
        samples=samples,
        precisions=precisions,
        precision_check_samples=precision_check_samples,
        repeats=repeats,
        sweep_options=sweep_options,
        find_performance=find_performance,
        performance_samples=performance_samples,
        int8=int8,
        int8_check_samples=int8_check_samples,
        plot=plot,
        as_json=as_json,
    )


def _tune(
    overrides: RunOverrides,
    config: Path | None,
    *,
    batch_sizes: str,
    threads: str | None,
    instances: str | None,
    samples: int,
    find_performance: bool,
    performance_samples: int | None,
    int8: bool,
    precisions: str | None = None,
    precision_check_samples: str = str(DEFAULT_CHECK_SAMPLES),
    repeats: int = 1,
    sweep_options: list[str] | None = None,
    int8_check_samples: int | None,
    plot: bool,
    as_json: bool,
) -> None:
    base = resolve_config(overrides, config)
    check_samples(precision_check_samples)  # checked when given, whether or not --precisions uses it
    notes: list[str] = []
    swept: list[str | None] = [None]
    if precisions:
        if int8:
            raise ConfigError("--int8 tunes one int8 ONNX model; sweep --precisions without it, or drop --precisions")
        swept = [p.strip().lower() for p in precisions.split(",") if p.strip()]
        if not swept:
            raise ConfigError(f"--precisions {precisions!r} names no precision; pass e.g. fp32,bf16,int8")
        precision_option(base)  # one sentence before any trial where the target has no precision option
    settings: dict[str, Any] = {
        "precisions": swept,
        "option_sweeps": parse_option_sweeps(sweep_options),
        "repeats": repeats,
        "batch_sizes": _int_list(batch_sizes, "batch-sizes"),
        "threads": list(_int_list(threads, "threads")) if threads else [None],
        "instances": list(_int_list(instances, "instances")) if instances else [None],
        "samples": samples,
        "find_performance": find_performance,
        "performance_samples": performance_samples,
        "plot": plot,
    }
    # Every setting checked before --int8 spends minutes quantizing and scoring: bad input is one sentence.
    combos = check_request(TuneRequest(base=base, **settings))
    vet: Callable[[Trial], str | None] | None = None
    if int8:
        if base.model_path is None:
            raise ConfigError("--int8 quantizes an fp32 ONNX file: pass it with --model-path")
        preflight_trials(TuneRequest(base=base, **settings), combos)  # its runner (GPU, image), on the fp32 model
        cache = (base.cache_dir or default_cache_dir()).expanduser()
        fp32_path, check_dir = base.model_path, Path(base.output_dir) / "int8-check"
        # First checked at the batch size a plain `run` would use; the best trial is checked at its own.
        first_batch = effective_batch_size(base, get_target(base.backend, base.device))
        variant = int8_checks.make_int8_variant(
            fp32_path,
            cache_dir=cache,
            output_dir=check_dir,
            samples=int8_check_samples,
            batch_size=first_batch,
            calibration=int8_checks.calibration_for(base, cache),  # --calibration: the static recipe is tried too
            template=base,  # checked as the trials run: this backend, runner (a Ray cluster's nodes), options
        )
        assert variant.check is not None
        notes.append(variant.check.summary())
        if not variant.approved:
            raise ConfigError(
                f"the int8 model failed its accuracy check ({variant.check.summary()}); "
                "tune the fp32 model instead (drop --int8)"
            )
        base = resolve_config(replace(overrides, model_path=variant.path), config)

        def int8_holds(trial: Trial) -> str | None:
            ran = trial_config(  # the trial's own settings: its swept engine options are part of the numerics
                base,
                batch_size=trial.batch_size,
                threads=trial.threads,
                instances=trial.instances,
                samples=samples,
                output_dir=check_dir,
                precision=trial.precision,
                options=trial.options,
            )
            check = int8_checks.check_at_batch(
                variant,
                fp32_path,
                trial.batch_size,
                cache_dir=cache,
                output_dir=check_dir,
                samples=int8_check_samples,
                template=ran,
            )
            if check is not variant.check:
                notes.append(check.summary())
            return None if check.passed else f"int8 F1 ratio {check.ratio:.4f} < {check.threshold} at this batch size"

        vet = int8_holds
    if precisions:
        vet = precision_check(
            base,
            samples=check_samples(precision_check_samples),
            output_dir=Path(base.output_dir) / "precision-check",
        )
    request = TuneRequest(base=base, vet=vet, **settings)
    result = tune(request)
    if as_json:
        typer.echo(json.dumps(json.loads((result.directory / "tune.json").read_text()), indent=2))
        return
    for note in notes:
        typer.echo(note)
    typer.echo(markdown_table(result.trials, result.best))
    best = result.best
    if best is not None:
        typer.echo(
            (f"best: precision {best.precision}, " if best.precision else "best: ")
            + f"batch size {best.batch_size}, threads {best.threads or 'auto'}, "
            f"instances {best.instances_ran or best.instances or 'default'}, "
            + "".join(f"{k}={v}, " for k, v in best.options.items())
            + f"{best.samples_per_second:.2f} samples/s (test mode)"
        )
    if result.performance:
        target = result.performance.get("target_qps", result.performance.get("target_latency_ms"))
        typer.echo(
            f"valid-run target: {target} -> {result.files.get('config')} "
            f"(mlperf-bert run --config {result.files.get('config')})"
        )
    if "plot" in result.files:
        typer.echo(f"plot: {result.files['plot']}")
    if "report" in result.files:
        typer.echo(f"report: {result.files['report']}")
    typer.echo(f"records: {result.directory}")
