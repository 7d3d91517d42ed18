"""`mlperf-bert cluster up|status|down`: a Ray cluster in containers on this machine.

Thin commands over orchestrator.containers.cluster; errors are orchestrator.errors exceptions, reported by
the CLI edge as one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.backends import get_target
from orchestrator.commands.help_format import Command
from orchestrator.commands.run_options import BackendOption, DeviceOption
from orchestrator.commands.verbosity import QuietOption, VerboseOption, apply_verbosity
from orchestrator.containers.client import connect
from orchestrator.containers.cluster import cluster_down, cluster_status, cluster_up, format_status

app = typer.Typer(
    help="A Ray cluster in containers: a head and N workers from the backend's image with Ray added.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

NameOption = Annotated[str, typer.Option("--name", metavar="<name>", help="The cluster's name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the status as JSON on stdout.")]


@app.command(cls=Command)
def up(
    workers: Annotated[
        int, typer.Option("--workers", min=1, metavar="<count>", help="Worker containers, each on its own CPUs.")
    ] = 2,
    backend: BackendOption = None,
    device: DeviceOption = None,
    cpus_per_worker: Annotated[
        int, typer.Option(min=1, metavar="<count>", help="CPUs of each worker (its cpuset).")
    ] = 1,
    data: Annotated[
        Path | None, typer.Option(help="A host folder mounted read-only at /data in every node (models, features).")
    ] = None,
    name: NameOption = "demo",
    offline: Annotated[
        bool, typer.Option(help="Never download: Ray's wheels must be in wheelhouse/ray-<key>/.")
    ] = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Build the backend's image with Ray (once), then start a head and N workers on an internal network."""
    apply_verbosity(verbose, quiet)
    target = get_target(backend or "onnxruntime", device)
    client = connect("start a Ray cluster", otherwise=None)
    status = cluster_up(
        client,
        target,
        name=name,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        data=data.resolve() if data else None,
        offline=offline,
    )
    typer.echo(json.dumps(asdict(status), indent=2) if as_json else format_status(status))


@app.command(cls=Command)
def status(name: NameOption = "demo", as_json: JsonOption = False) -> None:
    """The cluster's containers (role, state, CPUs, address) and the nodes Ray sees alive."""
    client = connect("inspect the Ray cluster", otherwise=None)
    result = cluster_status(client, name)
    typer.echo(json.dumps(asdict(result), indent=2) if as_json else format_status(result))


@app.command(cls=Command)
def down(name: NameOption = "demo") -> None:
    """Remove the cluster's containers and network (only those labelled with its name) and its token."""
    client = connect("remove the Ray cluster", otherwise=None)
    removed = cluster_down(client, name)
    typer.echo(f"cluster {name}: removed {removed} container(s) and network(s)")
