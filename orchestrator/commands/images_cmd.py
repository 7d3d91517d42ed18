"""`mlperf-bert images ...`: build and list the per-target Docker images.

Thin commands over orchestrator.containers.images; errors are orchestrator.errors exceptions, reported by the CLI
edge as one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.backends import BACKENDS, TARGETS, Target, default_device
from orchestrator.commands.help_format import Command
from orchestrator.commands.text_table import format_table
from orchestrator.commands.verbosity import QuietOption, VerboseOption, apply_verbosity
from orchestrator.containers.client import connect
from orchestrator.containers.images import (
    build_image,
    format_size,
    get_recipe,
    list_images,
    parse_build_arg_options,
    recipes,
)
from orchestrator.errors import PreflightError
from orchestrator.logs import progress_wanted
from orchestrator.runners.host_checks import check_gpu_visible_locally

app = typer.Typer(
    help="Build and list the per-target Docker images (images/<backend>-<device>/).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _gpu_present(target: Target) -> bool:
    try:
        check_gpu_visible_locally(target)
    except PreflightError:
        return False
    return True


def resolve_name(name: str) -> str:
    """An image key, or a backend alone meaning its default device (`tensorrt` -> `tensorrt-cuda`)."""
    if name not in TARGETS and name in BACKENDS:
        return f"{name}-{default_device(name)}"
    return name


def default_images() -> list[str]:
    """The CPU images, plus each GPU image whose GPU this machine has."""
    return [key for key, r in recipes().items() if r.target.gpu is None or _gpu_present(r.target)]


def _progress(key: str) -> Callable[[str], None]:
    def show(line: str) -> None:
        if progress_wanted():  # -q: only warnings and the final summary
            typer.echo(f"  [{key}] {line}", err=True)

    return show


@app.command(cls=Command)
def build(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help="Images to build, by key (onnxruntime-cpu) or backend (deepsparse) [default: the CPU images and "
            "those of the GPUs present].",
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Build every image, GPU ones too.")] = False,
    build_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--build-arg",
            metavar="<name=value>",
            help="NAME=VALUE overriding a Dockerfile ARG (a version, PYTHON_VERSION...); repeatable.",
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            envvar="MLPERF_BERT_BASE_IMAGE",
            metavar="<ref>",
            help="Base image (the BASE_IMAGE build arg), e.g. a local mlperf-bert/base:bookworm "
            "[default: each Dockerfile's public base].",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Never download: build from the wheelhouse already in wheelhouse/<name>/.")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every layer.")] = False,
    allow_network: Annotated[
        bool, typer.Option(help="Let build steps reach the network (only for a base that lacks python3).")
    ] = False,
    log_dir: Annotated[
        Path | None, typer.Option(help="Where full build logs go [default: <cache>/logs/images].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Download each image's wheelhouse on this host, then build it with no network; keeps the full log."""
    apply_verbosity(verbose, quiet)

    keys = list(recipes()) if all_ else [resolve_name(n) for n in names] if names else default_images()
    chosen = [get_recipe(k) for k in keys]
    overrides = parse_build_arg_options(build_arg or [])
    client = connect("build images", otherwise=None)
    results = []
    for recipe in chosen:
        if progress_wanted():
            typer.echo(f"building {recipe.reference} ...", err=True)
        result = build_image(
            recipe,
            client=client,
            overrides=overrides,
            base_image=base_image,
            offline=offline,
            no_cache=no_cache,
            allow_network=allow_network,
            log_dir=log_dir,
            on_step=_progress(recipe.key),
        )
        results.append(result)
        if not as_json:
            typer.echo(
                f"{result.reference}  {result.image_id[:19]}  {format_size(result.size_bytes)}  "
                f"{result.seconds:.0f} s  log: {result.log_path}"
            )
    if as_json:
        typer.echo(json.dumps([{**asdict(r), "log_path": str(r.log_path)} for r in results], indent=2))


@app.command("list", cls=Command)
def list_(
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME", help="Only these images.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON on stdout.")] = False,
) -> None:
    """Name, tag, digest, size and the versions inside (from the image labels) of every image."""

    keys = [get_recipe(resolve_name(k)).key for k in names] if names else None
    rows = list_images(connect("list images", otherwise=None), keys)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = [("NAME", "TAG", "DIGEST", "SIZE", "VERSIONS")]
    for r in rows:
        if r.reference is None:
            table.append((r.key, "-", "-", "-", f"not built: mlperf-bert images build {r.key}"))
            continue
        versions = ", ".join(f"{k} {v}" if k != "engine" else v for k, v in r.versions.items())
        table.append((r.key, r.reference, (r.digest or "")[:19], format_size(r.size_bytes), versions))
    typer.echo(format_table(table))
