"""The `mlperf-bert` command line: thin commands handing off to keyword-only functions.

Errors from orchestrator.errors are caught here, and only here, and become one readable line and a
non-zero exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from orchestrator import __version__
from orchestrator.backends import BACKENDS, DEVICES
from orchestrator.commands import assets_cmd, images_cmd, submission_cmd, tune_cmd
from orchestrator.config import Scenario, resolve_config
from orchestrator.errors import ConfigError, MlperfBertError
from orchestrator.logs import setup_logging

log = logging.getLogger("mlperf-bert")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    invoke_without_command=True,
    help="Run, optimize and submit the MLPerf Inference BERT benchmark (one container per backend).",
    pretty_exceptions_enable=False,
)

app.add_typer(assets_cmd.app, name="assets")
app.add_typer(images_cmd.app, name="images")
app.add_typer(submission_cmd.app, name="submission")
app.command(name="tune")(tune_cmd.command)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and the final summary.")] = False,
) -> None:
    if version:
        typer.echo(f"mlperf-bert {__version__}")
        raise typer.Exit()
    setup_logging(-1 if quiet else verbose)


def _choice_help(values: tuple[str, ...]) -> str:
    return " | ".join(values)


@app.command()
def run(
    backend: Annotated[str | None, typer.Option(help=f"Inference backend: {_choice_help(BACKENDS)}.")] = None,
    device: Annotated[str | None, typer.Option(help=f"Device: {_choice_help(DEVICES)} (default: the backend's first).")] = None,
    scenario: Annotated[str | None, typer.Option(help=f"LoadGen scenario: {_choice_help(tuple(s.value for s in Scenario))}.")] = None,
    mode: Annotated[str | None, typer.Option(help="accuracy | performance | both (accuracy first).")] = None,
    execution_mode: Annotated[str | None, typer.Option(
        help="test | valid. test: a short run of --test-query-count samples (a test-mode result, never valid); valid: full MLPerf rules.")] = None,
    test_query_count: Annotated[int | None, typer.Option(help="Samples in a test-mode run (default 100).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size of the optimized SUT (default: the backend's, 2 for onnxruntime on the CPU, else 16).")] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: the engine's choice).")] = None,
    sut: Annotated[str | None, typer.Option(help="optimized (default) | reference (the MLPerf reference behaviour).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name from configs/assets.yaml (default demo-int8, embedded).")] = None,
    model_path: Annotated[Path | None, typer.Option(help="Any ONNX model with the MLPerf BERT interface (overrides --model).")] = None,
    dataset: Annotated[Path | None, typer.Option(help="SQuAD v1.1 JSON (default: the embedded dev set).")] = None,
    vocab: Annotated[Path | None, typer.Option(help="WordPiece vocab (default: the embedded BERT uncased vocab).")] = None,
    target_qps: Annotated[float | None, typer.Option(help="LoadGen target_qps (Offline/Server).")] = None,
    target_latency_ms: Annotated[float | None, typer.Option(help="Server target latency in ms (MLPerf: 130).")] = None,
    runner: Annotated[str | None, typer.Option(
        help="auto | local | docker. auto (docker when the engine and image are there, else local), local, or docker.")] = None,
    image: Annotated[str | None, typer.Option(help="Docker runner: image reference to use.")] = None,
    shm_size: Annotated[str | None, typer.Option(help="Docker runner: shared memory size (default 1g).")] = None,
    cpuset_cpus: Annotated[str | None, typer.Option(help="Docker runner: CPUs the container may use, e.g. 0-3.")] = None,
    memory: Annotated[str | None, typer.Option(help="Docker runner: memory limit, e.g. 8g.")] = None,
    gpus: Annotated[str | None, typer.Option(help="Docker runner, NVIDIA: --gpus value (default all).")] = None,
    engine_option: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE passed to the engine (repeatable), e.g. optimize=none.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Where run directories are made (default ./runs).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Asset and feature cache (default $MLPERF_BERT_CACHE or ~/.cache/mlperf-bert).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of run options (CLI flags override it).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the command the runner would execute, and stop.")] = False,
    debug: Annotated[bool, typer.Option(help="Docker runner: open a shell in the container with everything mounted.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar while samples complete.")] = True,
) -> None:
    """Run the MLPerf BERT benchmark (default: the embedded demo model, Offline, accuracy + performance, test mode)."""
    cli_values: dict[str, Any] = {
        "backend": backend, "device": device, "scenario": scenario, "mode": mode,
        "execution_mode": execution_mode, "test_query_count": test_query_count, "batch_size": batch_size,
        "threads": threads, "sut": sut, "model": model, "model_path": model_path, "dataset_path": dataset,
        "vocab_path": vocab, "target_qps": target_qps, "target_latency_ms": target_latency_ms,
        "runner": runner, "image": image, "shm_size": shm_size, "cpuset_cpus": cpuset_cpus,
        "memory": memory, "gpus": gpus, "output_dir": output_dir, "cache_dir": cache_dir,
    }
    with _errors_to_exit():
        if engine_option:
            cli_values["engine_options"] = _key_values(engine_option, "--engine-option")
        cfg = resolve_config(cli_values, config)
        if dry_run or debug:
            from orchestrator.workflows.benchmark import prepare_only

            typer.echo(prepare_only(cfg, debug=debug))
            return
        from orchestrator.run_summary import format_result, result_json
        from orchestrator.workflows.benchmark import run_benchmark

        result = run_benchmark(cfg, progress=progress and not as_json, argv=sys.argv)
        if as_json:
            typer.echo(json.dumps(result_json(result), indent=2))
        else:
            typer.echo(format_result(result))


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE; write it like {flag} optimize=none")
        out[key.strip()] = value.strip()
    return out


class _errors_to_exit:
    """Turn our errors into one line on stderr and their exit code; leave real bugs loud."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, MlperfBertError):
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code)
        if isinstance(exc, KeyboardInterrupt):
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        return False


errors_to_exit = _errors_to_exit  # for the sub-command modules


def main() -> None:
    """Console entry point: our errors become one line on stderr, wherever they come from."""
    try:
        app()
    except MlperfBertError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
