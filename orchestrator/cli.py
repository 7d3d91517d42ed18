"""The `mlperf-bert` command line: thin commands handing off to keyword-only functions.

Errors from orchestrator.errors are caught here, and only here (`run_cli`), and become one readable line
and a non-zero exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from orchestrator import __version__
from orchestrator.commands import (
    assets_cmd,
    cluster_cmd,
    compliance_cmd,
    images_cmd,
    report_cmd,
    runs_cmd,
    submission_cmd,
    tune_cmd,
)
from orchestrator.commands.help_format import Command
from orchestrator.commands.run_options import (
    BackendOption,
    BatchSizeOption,
    CacheDirOption,
    CalibrationOption,
    ClusterOption,
    ConfigFileOption,
    CpusetCpusOption,
    DatasetOption,
    DeviceOption,
    EngineOptionsOption,
    ExecutionModeOption,
    GpusOption,
    ImageOption,
    LocalEnvOption,
    MemoryOption,
    ModelOption,
    ModelPathOption,
    ModeOption,
    OutputDirOption,
    RayActorsOption,
    RayAddressOption,
    RunnerOption,
    ScenarioOption,
    ShmSizeOption,
    StopGraceOption,
    SutOption,
    TargetLatencyOption,
    TargetQpsOption,
    TestQueryCountOption,
    ThreadsOption,
    VocabOption,
    parse_engine_options,
)
from orchestrator.commands.verbosity import QuietOption, VerboseOption, apply_verbosity
from orchestrator.config import RunOverrides, resolve_config
from orchestrator.errors import MlperfBertError, first_line
from orchestrator.logs import setup_logging
from orchestrator.run_summary import format_result, result_json
from orchestrator.stop_signals import Terminated, exit_code_for, signal_name, signal_of, stop_signals_interrupt
from orchestrator.workflows.benchmark import prepare_only, run_benchmark

log = logging.getLogger("mlperf-bert")

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    invoke_without_command=True,
    help="Run, optimize and submit the MLPerf Inference BERT benchmark (one container per backend).",
    pretty_exceptions_enable=False,
)

app.add_typer(assets_cmd.app, name="assets")
app.add_typer(images_cmd.app, name="images")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(submission_cmd.app, name="submission")
app.add_typer(compliance_cmd.app, name="compliance")
app.add_typer(cluster_cmd.app, name="cluster")
app.command(name="tune", cls=Command)(tune_cmd.command)
app.command(name="report", cls=Command)(report_cmd.command)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    if version:
        typer.echo(f"mlperf-bert {__version__}")
        raise typer.Exit()
    setup_logging(-1 if quiet else verbose)


@app.command(cls=Command)
def run(
    backend: BackendOption = None,
    device: DeviceOption = None,
    scenario: ScenarioOption = None,
    mode: ModeOption = None,
    execution_mode: ExecutionModeOption = None,
    test_query_count: TestQueryCountOption = None,
    batch_size: BatchSizeOption = None,
    threads: ThreadsOption = None,
    sut: SutOption = None,
    model: ModelOption = None,
    model_path: ModelPathOption = None,
    dataset_path: DatasetOption = None,
    vocab_path: VocabOption = None,
    calibration_path: CalibrationOption = None,
    target_qps: TargetQpsOption = None,
    target_latency_ms: TargetLatencyOption = None,
    runner: RunnerOption = None,
    local_env: LocalEnvOption = None,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = None,
    cluster: ClusterOption = None,
    image: ImageOption = None,
    shm_size: ShmSizeOption = None,
    cpuset_cpus: CpusetCpusOption = None,
    memory: MemoryOption = None,
    gpus: GpusOption = None,
    stop_grace_s: StopGraceOption = None,
    engine_options: EngineOptionsOption = None,
    output_dir: OutputDirOption = None,
    cache_dir: CacheDirOption = None,
    config: ConfigFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the command the runner would execute, and stop.")] = False,
    debug: Annotated[
        bool, typer.Option(help="Docker runner: open a shell in the container with everything mounted.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar while samples complete.")] = True,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Run the MLPerf BERT benchmark (default: the embedded demo model, Offline, accuracy + performance, test mode)."""
    apply_verbosity(verbose, quiet)
    overrides = RunOverrides(
        backend=backend,
        device=device,
        scenario=scenario,
        mode=mode,
        execution_mode=execution_mode,
        test_query_count=test_query_count,
        batch_size=batch_size,
        threads=threads,
        sut=sut,
        model=model,
        model_path=model_path,
        dataset_path=dataset_path,
        vocab_path=vocab_path,
        calibration_path=calibration_path,
        target_qps=target_qps,
        target_latency_ms=target_latency_ms,
        runner=runner,
        local_env=local_env,
        ray_address=ray_address,
        ray_actors=ray_actors,
        cluster=cluster,
        image=image,
        shm_size=shm_size,
        cpuset_cpus=cpuset_cpus,
        memory=memory,
        gpus=gpus,
        stop_grace_s=stop_grace_s,
        engine_options=parse_engine_options(engine_options),
        output_dir=output_dir,
        cache_dir=cache_dir,
    )
    cfg = resolve_config(overrides, config)
    if dry_run or debug:
        typer.echo(prepare_only(cfg, debug=debug))
        return
    result = run_benchmark(cfg, progress=progress and not as_json, argv=sys.argv)
    if as_json:
        typer.echo(json.dumps(result_json(result), indent=2))
    else:
        typer.echo(format_result(result))


# Typer parses with click, a copy of its own in recent versions (the click package before): its usage
# error class is found from one typer exports, so either works.
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run one command line (default: this process's) and return its exit code.

    The one place errors meet the user, for every sub-command: ours become `error: <message>` on stderr and
    their exit code, Ctrl-C `interrupted` and 130 (SIGTERM and SIGHUP, made interrupts here, 143 and 129),
    a bad flag or value one `error:` line and 2. Typer's own
    main() is not used: it turns Ctrl-C into a silent exit 130 before a handler here could see it.
    """
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with stop_signals_interrupt(), command.make_context("mlperf-bert", args) as ctx:
            command.invoke(ctx)
    except MlperfBertError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Terminated) outside a run
        signum = signal_of(exc)
        typer.echo(f"interrupted by {signal_name(signum)}" if isinstance(exc, Terminated) else "interrupted", err=True)
        return exit_code_for(signum)
    except typer.Exit as exc:  # --help, --version, `submission check`'s verdicts
        return exc.exit_code
    except _UsageError as exc:
        return _usage_error(exc)
    except Exception as exc:  # noqa: BLE001 - the last resort: a failure no check above named is a bug of ours
        log.debug("the traceback of the unexpected error", exc_info=True)
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {first_line(exc)[:300]} (a bug in mlperf-bert: rerun with -v "
            "for the traceback, and report it)",
            err=True,
        )
        return UNEXPECTED_EXIT
    return 0


UNEXPECTED_EXIT = 1


def _usage_error(exc: Exception) -> int:
    code = int(getattr(exc, "exit_code", 2))
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a group given no command: its help (rich prints it itself)
        text = ctx.get_help() if ctx is not None else ""
        if text:
            typer.echo(text)
        return code
    message = str(getattr(exc, "format_message", exc.__str__)()).rstrip(".")
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    typer.echo(f"error: {message}{where}", err=True)
    return code


def main() -> None:
    """Console entry point."""
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
