"""`mlperf-bert submission ...`: generate a submission from runs, check one, or do the whole flow.

Thin commands: each hands off to orchestrator.submission and prints a short result. Errors are raised as
orchestrator.errors exceptions and reported by the CLI edge (orchestrator.cli.run_cli).
"""

from __future__ import annotations

import gzip
import json
import lzma
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.commands.help_format import Command
from orchestrator.commands.run_options import (
    BackendOption,
    BatchSizeOption,
    CacheDirOption,
    ClusterOption,
    ConfigFileOption,
    DeviceOption,
    EngineOptionsOption,
    ExecutionModeOption,
    ModelOption,
    ModelPathOption,
    OutputDirOption,
    RayActorsOption,
    RayAddressOption,
    RunnerOption,
    ScenariosOption,
    StopGraceOption,
    SutOption,
    TargetQpsOption,
    TestQueryCountOption,
    ThreadsOption,
    parse_engine_options,
)
from orchestrator.commands.verbosity import QuietOption, VerboseOption, apply_verbosity
from orchestrator.config import RunOverrides
from orchestrator.errors import ConfigError, first_line
from orchestrator.submission import GenerateOptions, Overrides, check_submission, generate_submission
from orchestrator.submission.rules import DEFAULT_VERSION, MLPERF_MODELS, SUBMITTABLE_DIVISIONS, VERSIONS
from orchestrator.workflows.submission_run import run_and_submit

app = typer.Typer(
    help="Generate, check and package MLPerf submissions (and the SCC artifacts) from run directories.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

EXIT_TEST_MODE = 3  # `check`: the submission follows the rules of a short run but is not a valid result

SubmissionDir = Annotated[
    Path, typer.Option("--submission-dir", help="Folder of submission attempts (the tree, tarball and SCC files).")
]
Division = Annotated[str, typer.Option(metavar="<division>", help=f"{' | '.join(SUBMITTABLE_DIVISIONS)}.")]
Version = Annotated[
    str, typer.Option("--mlperf-version", metavar="<version>", help=f"Layout and rules: {' | '.join(VERSIONS)}.")
]
Benchmark = Annotated[
    str, typer.Option(metavar="<model>", help=f"The MLPerf model results count for: {' | '.join(MLPERF_MODELS)}.")
]
Submitter = Annotated[str | None, typer.Option(metavar="<name>", help="Submitter (organisation or team) name.")]
HwName = Annotated[
    str | None, typer.Option(metavar="<name>", help="Hardware name used for the system folder and name.")
]
SystemConfig = Annotated[Path | None, typer.Option(help="YAML of system description keys overriding detection.")]
ModelName = Annotated[
    str | None,
    typer.Option(metavar="<name>", help="Folder name of a custom (non-MLPerf) model (default: from the run)."),
]
Attempt = Annotated[
    str | None,
    typer.Option(
        metavar="<n>",
        help="Attempt N ('short' or a number) (default: short for test-mode runs, else the next number).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _options(
    division: str,
    version: str,
    benchmark: str,
    submitter: str | None,
    hw_name: str | None,
    system_config: Path | None,
    model_name: str | None,
) -> GenerateOptions:
    options = GenerateOptions(
        division=division,
        version=version,
        benchmark=benchmark,
        model_name=model_name,
        overrides=Overrides(submitter=submitter, hw_name=hw_name, system_config=system_config),
    )
    options.validate()
    return options


def _print_result(result: Any, as_json: bool) -> None:
    report = result.report
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "attempt": result.attempt,
                    "tree": str(result.tree),
                    "verdict": report.verdict,
                    "artifacts": {k: str(v) for k, v in result.artifacts.items()},
                    "findings": [str(f) for f in report.findings],
                },
                indent=2,
            )
        )
        return
    for finding in report.findings:
        typer.echo(str(finding))
    typer.echo(report.summary_line())
    typer.echo(f"attempt {result.attempt}: {result.tree}")
    for _, path in sorted(result.artifacts.items()):
        typer.echo(f"  {path}")


@app.command(cls=Command)
def generate(
    run_dirs: Annotated[
        list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories made by `mlperf-bert run`.")
    ],
    submission_dir: SubmissionDir = Path("submissions"),
    division: Division = "open",
    mlperf_version: Version = DEFAULT_VERSION,
    benchmark: Benchmark = "bert-99",
    submitter: Submitter = None,
    hw_name: HwName = None,
    system_config: SystemConfig = None,
    model_name: ModelName = None,
    attempt: Attempt = None,
    package: Annotated[bool, typer.Option(help="Write the tarball and the SCC artifacts after the check.")] = True,
    keep_invalid: Annotated[
        bool, typer.Option("--keep-invalid", help="Keep a tree that fails the check, for inspection.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Assemble attempt N from run directories, check it, and package it with the SCC artifacts."""
    options = _options(division, mlperf_version, benchmark, submitter, hw_name, system_config, model_name)
    result = generate_submission(
        list(run_dirs),
        submission_dir,
        options,
        attempt=attempt,
        package=package,
        keep_invalid=keep_invalid,
        argv=sys.argv,
    )
    _print_result(result, as_json)


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive)
    except tarfile.ReadError:  # tarfile tried each compression and none fits
        raise ConfigError(
            f"{archive} is not a tar archive (plain, gzip, bzip2 or xz); pass a submission folder or its .tar.gz"
        ) from None


def _extract(archive: Path, dest: Path) -> Path:
    """A submission tarball unpacked safely (plain files and folders only, nothing outside dest)."""
    try:
        with _open_tar(archive) as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise ConfigError(
                        f"{archive} holds {member.name}, which is not a plain file or folder; "
                        "a submission tarball must hold only the tree"
                    )
            tar.extractall(dest, filter="data")
    except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, tarfile.ReadError) as e:  # cut or corrupt
        raise ConfigError(
            f"{archive} is truncated or corrupt ({first_line(e)}); pass a complete submission folder or tarball"
        ) from None
    except (tarfile.TarError, OSError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise ConfigError(
            f"{archive} cannot be read as a tar.gz ({reason}); pass a submission folder or tarball"
        ) from None
    return dest


def _full_logs(run_dirs: list[Path]) -> list[Path]:
    """The full accuracy log of each --run-dir, which must be a run directory."""
    for d in run_dirs:
        if not d.exists():
            raise ConfigError(f"--run-dir {d} does not exist; pass a run directory made by `mlperf-bert run`")
        if not d.is_dir():
            raise ConfigError(f"--run-dir {d} is not a directory; pass a run directory made by `mlperf-bert run`")
    return [d / "accuracy" / "mlperf_log_accuracy.json" for d in run_dirs]


@app.command(cls=Command)
def check(
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="A submission root (holding open/ or closed/) or its .tar.gz.")
    ],
    mlperf_version: Version = DEFAULT_VERSION,
    run_dir: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="<path>",
            help="Run directory holding a full accuracy log, to verify the hashes in accuracy.txt (repeat it).",
        ),
    ] = None,
    allow_test_mode: Annotated[
        bool,
        typer.Option(
            "--allow-test-mode",
            help=f"Exit 0 for a test-mode submission (default: exit {EXIT_TEST_MODE}, it is not a valid result).",
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Check a submission against the MLPerf rules: one line per problem, naming the file."""
    full_logs = _full_logs(run_dir or [])
    with tempfile.TemporaryDirectory(prefix="mlperf-bert-check-") as tmp:
        root = _extract(path, Path(tmp)) if path.is_file() else path
        report = check_submission(root, mlperf_version, full_logs)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "root": str(path),
                    "version": report.version,
                    "verdict": report.verdict,
                    "findings": [{"kind": f.kind, "path": f.path, "message": f.message} for f in report.findings],
                    "results": [
                        {
                            "system": r.system,
                            "model": r.model,
                            "scenario": r.scenario,
                            "result": r.result,
                            "units": r.units,
                            "f1": r.f1,
                            "test_mode": r.test_mode,
                        }
                        for r in report.results
                    ],
                },
                indent=2,
            )
        )
    else:
        for finding in report.findings:
            typer.echo(str(finding))
        typer.echo(report.summary_line())
    if report.verdict == "invalid":
        raise typer.Exit(1)
    if report.verdict == "test-mode" and not allow_test_mode:
        typer.echo(
            f"exit {EXIT_TEST_MODE}: a test-mode submission is not a valid result; pass --allow-test-mode to accept "
            "one (exit 0)",
            err=True,
        )
        raise typer.Exit(EXIT_TEST_MODE)


@app.command(cls=Command)
def run(
    scenario: ScenariosOption = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    execution_mode: ExecutionModeOption = None,
    test_query_count: TestQueryCountOption = None,
    batch_size: BatchSizeOption = None,
    threads: ThreadsOption = None,
    sut: SutOption = None,
    model: ModelOption = None,
    model_path: ModelPathOption = None,
    target_qps: TargetQpsOption = None,
    runner: RunnerOption = None,
    ray_address: RayAddressOption = None,
    ray_actors: RayActorsOption = None,
    cluster: ClusterOption = None,
    stop_grace_s: StopGraceOption = None,
    engine_options: EngineOptionsOption = None,
    output_dir: OutputDirOption = None,
    cache_dir: CacheDirOption = None,
    config: ConfigFileOption = None,
    submission_dir: SubmissionDir = Path("submissions"),
    division: Division = "open",
    mlperf_version: Version = DEFAULT_VERSION,
    benchmark: Benchmark = "bert-99",
    submitter: Submitter = None,
    hw_name: HwName = None,
    system_config: SystemConfig = None,
    model_name: ModelName = None,
    attempt: Attempt = None,
    as_json: AsJson = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Accuracy + performance for each scenario, then generate, check and package one attempt."""
    apply_verbosity(verbose, quiet)
    overrides = RunOverrides(
        backend=backend,
        device=device,
        execution_mode=execution_mode,
        test_query_count=test_query_count,
        batch_size=batch_size,
        threads=threads,
        sut=sut,
        model=model,
        model_path=model_path,
        target_qps=target_qps,
        runner=runner,
        ray_address=ray_address,
        ray_actors=ray_actors,
        cluster=cluster,
        stop_grace_s=stop_grace_s,
        engine_options=parse_engine_options(engine_options),
        output_dir=output_dir,
        cache_dir=cache_dir,
    )
    options = _options(division, mlperf_version, benchmark, submitter, hw_name, system_config, model_name)
    result = run_and_submit(
        overrides,
        config,
        list(scenario or []),
        submission_dir,
        options,
        attempt=attempt,
        argv=sys.argv,
        progress=not as_json,
    )
    _print_result(result, as_json)
