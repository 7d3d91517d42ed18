"""`mlperf-bert assets ...`: fetch, list, verify and import the models and data a run uses.

Thin commands: each hands off to orchestrator.assets and prints a short human result. Errors are
raised as orchestrator.errors exceptions and reported by the CLI edge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.assets.catalogue import Catalogue, load_catalogue
from orchestrator.assets.derive_checkpoint import derive_checkpoint
from orchestrator.assets.download import RetryPolicy, ensure_space, fetch_asset, human
from orchestrator.assets.resolve import resolve_asset
from orchestrator.assets.store import (
    asset_dir,
    check_asset_name,
    custom_stamps,
    custom_status,
    import_file,
    nearest_dir,
    place_generated,
    status,
    verify_cached,
    verify_embedded,
)
from orchestrator.assets.synthetic import BERT_LARGE, BertShape, write_synthetic_bert, write_synthetic_file
from orchestrator.commands.help_format import Command
from orchestrator.commands.verbosity import QuietOption, VerboseOption, apply_verbosity
from orchestrator.errors import AssetError
from orchestrator.paths import EMBEDDED_MODEL, default_cache_dir

app = typer.Typer(
    help="Fetch, list, verify and import models and data (catalogue: configs/assets.yaml).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Asset cache [default: $MLPERF_BERT_CACHE, else $XDG_CACHE_HOME/mlperf-bert]."),
]


def _catalogue(ctx: typer.Context) -> Catalogue:
    path = (ctx.obj or {}).get("catalogue")
    return load_catalogue(path)


def _cache(cache_dir: Path | None) -> Path:
    return (cache_dir or default_cache_dir()).expanduser()


@app.callback()
def _options(
    ctx: typer.Context,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            envvar="MLPERF_BERT_CATALOGUE",
            help="Use another catalogue file than configs/assets.yaml.",
        ),
    ] = None,
) -> None:
    ctx.obj = {"catalogue": catalogue}


@app.command(cls=Command)
def fetch(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(metavar="NAME", help="Catalogue names or aliases to fetch.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Fetch every downloadable asset that is not embedded.")] = False,
    cache_dir: CacheDir = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show a progress bar [default: when stderr is a terminal]."),
    ] = None,
    retries: Annotated[int, typer.Option(min=1, metavar="<n>", help="Tries per mirror on transient errors.")] = 6,
    verbose: VerboseOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Download assets into the cache: resumable, retried, verified before they become visible."""

    apply_verbosity(verbose, quiet)
    catalogue = _catalogue(ctx)
    if not names and not all_:
        raise typer.BadParameter("name at least one asset (see `mlperf-bert assets list`), or pass --all")
    assets = [catalogue.get(n) for n in names or []]
    if all_:
        assets += [a for a in catalogue.assets if a.mirrors and not a.embedded and a not in assets]
    policy = RetryPolicy(attempts=retries)
    failed: list[str] = []
    for asset in assets:
        try:
            result = fetch_asset(asset, _cache(cache_dir), policy=policy, progress=progress)
        except AssetError as e:
            if len(assets) == 1:
                raise
            failed.append(asset.name)
            typer.echo(f"{asset.name}: FAILED: {e}", err=True)
            continue
        size = human(result.path.stat().st_size)
        typer.echo(f"{asset.name}: {result.action} ({size}, verified) {result.path}")
    if failed:
        raise AssetError(
            f"{len(failed)} of {len(assets)} assets could not be fetched ({', '.join(failed)}); "
            "see the messages above and run the fetch again (downloads resume)"
        )


@app.command("list", cls=Command)
def list_(
    ctx: typer.Context,
    cache_dir: CacheDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every catalogue asset (and custom import): where it is, its size, and whether it is verified."""

    catalogue = _catalogue(ctx)
    cache = _cache(cache_dir)
    rows = []
    for asset in catalogue.assets:
        st = status(asset, cache)
        notes = [n for n, on in (("demo", asset.demo), ("synthetic", asset.synthetic)) if on]
        if asset.aliases:
            notes.append("alias " + ",".join(asset.aliases))
        if st.where == "missing":
            notes.append(
                "`assets make-synthetic`"
                if asset.synthetic
                else "`assets fetch`"
                if asset.mirrors
                else "`assets import`"
            )
        rows.append((st, notes))
    rows += [(custom_status(s, cache), ["custom", s.sha256[:12]]) for s in custom_stamps(cache, catalogue)]
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": st.name,
                        "kind": st.kind,
                        "where": st.where,
                        "path": str(st.path) if st.path else None,
                        "size": st.size,
                        "verified": st.verified,
                        "custom": st.custom,
                        "notes": notes,
                    }
                    for st, notes in rows
                ],
                indent=2,
            )
        )
        return
    typer.echo(f"cache: {cache}")
    header = ("NAME", "KIND", "WHERE", "SIZE", "VERIFIED", "NOTES")
    table = [header] + [
        (st.name, st.kind, st.where, human(st.size) if st.size else "-", st.verified, "; ".join(notes))
        for st, notes in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:  # every column but the last is padded
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


@app.command(cls=Command)
def verify(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(metavar="NAME", help="Assets to re-hash [default: every present one].")
    ] = None,
    cache_dir: CacheDir = None,
    move_aside: Annotated[
        bool,
        typer.Option(
            "--move-aside", help="Rename a corrupt cached file to <file>.corrupt-<time> (it is never deleted)."
        ),
    ] = False,
) -> None:
    """Re-hash assets against the catalogue; report (never silently delete) a corrupt file."""

    catalogue = _catalogue(ctx)
    cache = _cache(cache_dir)
    customs = {s.name for s in custom_stamps(cache, catalogue)}
    wanted = names or [a.name for a in catalogue.assets] + sorted(customs)
    for name in wanted:
        if catalogue.find(name) is None and name not in customs:
            catalogue.get(name)  # raises "unknown asset; choose one of"
    bad: list[str] = []
    checked = 0
    for name in wanted:
        asset = catalogue.find(name)
        if asset is None:
            result = verify_cached(None, name, cache, move_corrupt=move_aside)
        else:
            where = status(asset, cache).where
            if where == "missing":
                if names:  # asked for by name: missing is a failure; otherwise just not present
                    typer.echo(f"{name}: missing (not in {cache})", err=True)
                    bad.append(name)
                continue
            result = (
                verify_embedded(asset)
                if where == "embedded"
                else verify_cached(asset, asset.name, cache, move_corrupt=move_aside)
            )
        checked += 1
        if result.ok:
            typer.echo(f"{name}: ok {result.path}")
            continue
        bad.append(name)
        where_now = f"; moved to {result.moved_to}" if result.moved_to else f" (left in place: {result.path})"
        typer.echo(f"{name}: CORRUPT: {result.problem}{where_now}", err=True)
    if bad:
        raise AssetError(
            f"{len(bad)} asset(s) failed verification ({', '.join(bad)}); replace them with "
            f"`mlperf-bert assets fetch {' '.join(bad)}` (or `assets import` offline)"
        )
    typer.echo(f"{checked} asset(s) verified")


@app.command("import", cls=Command)
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="FILE", help="The file to bring into the cache.")],
    name: Annotated[
        str, typer.Option("--as", metavar="<name>", help="Catalogue name (checksum must match) or a new custom name.")
    ],
    link: Annotated[
        bool,
        typer.Option("--link", help="Hard-link the file (symbolic link across file systems) instead of copying it."),
    ] = False,
    kind: Annotated[
        str,
        typer.Option(
            metavar="<kind>",
            help="Kind of a custom asset, checked before it is copied: model (an .onnx one needs the MLPerf "
            "interface), dataset (SQuAD v1.1 JSON) or vocab (WordPiece vocab.txt).",
        ),
    ] = "model",
    cache_dir: CacheDir = None,
) -> None:
    """Bring a local file into the cache (for machines without internet): checks it, then copies or links."""

    if kind not in ("model", "dataset", "vocab"):
        raise typer.BadParameter("--kind must be model, dataset or vocab")
    final = import_file(path, name, _cache(cache_dir), _catalogue(ctx), link=link, kind=kind)  # type: ignore[arg-type]
    typer.echo(f"{name}: imported (verified) {final}")


@app.command("make-synthetic", cls=Command)
def make_synthetic(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Option("--as", metavar="<name>", help="Cache name for the model.")
    ] = "bert-large-synthetic",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of the cache.")] = None,
    layers: Annotated[int, typer.Option(min=1, metavar="<n>", help="Transformer layers.")] = 24,
    hidden: Annotated[int, typer.Option(min=1, metavar="<n>", help="Hidden size (a multiple of --heads).")] = 1024,
    heads: Annotated[int, typer.Option(min=1, metavar="<n>", help="Attention heads per layer.")] = 16,
    ffn: Annotated[int, typer.Option(min=1, metavar="<n>", help="Feed-forward (intermediate) size.")] = 4096,
    seed: Annotated[int, typer.Option(min=0, metavar="<n>", help="Random seed (same seed and shape: same bytes).")] = 0,
    cache_dir: CacheDir = None,
) -> None:
    """Generate a BERT-shaped ONNX model with RANDOM weights (BERT-large by default) for speed tests."""

    try:
        shape = BertShape(layers=layers, hidden=hidden, heads=heads, ffn=ffn)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if output is not None:
        output = write_synthetic_file(output, shape, seed)
        typer.echo(f"wrote {output} ({human(output.stat().st_size)}, random weights, seed {seed})")
        return
    catalogue = _catalogue(ctx)
    asset = catalogue.find(name)
    if asset is None:
        check_asset_name(name)  # the rule `assets import --as` applies
    if asset is not None and not asset.synthetic:
        raise AssetError(f"{name} is a real catalogue asset; pass another --as name for a synthetic model")
    if asset is not None and shape != BERT_LARGE:
        raise AssetError(f"{asset.name} must have BERT-large's shape; pass --as another name for a smaller model")
    cache = _cache(cache_dir)
    directory = asset_dir(cache, asset.name if asset else name)
    # Checked on the disk it will land on before any folder is made: a refusal leaves nothing behind.
    where = nearest_dir(directory, what="cache directory", remedy="pass a writable --cache-dir")
    ensure_space(where, shape.file_bytes(), name)
    filename = asset.filename if asset is not None else f"{name}.onnx"
    final = place_generated(
        cache,
        asset.name if asset else name,
        filename,
        lambda p: write_synthetic_bert(p, shape, seed),
        kind="model",
        format="onnx",
        precision="fp32",
        custom=asset is None,
        origin=f"make-synthetic layers={layers} hidden={hidden} heads={heads} ffn={ffn} seed={seed}",
    )
    typer.echo(
        f"{asset.name if asset else name}: generated ({human(final.stat().st_size)}, RANDOM weights, "
        f"seed {seed}) {final}"
    )


@app.command(cls=Command)
def path(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Catalogue name, alias or custom asset.")],
    cache_dir: CacheDir = None,
) -> None:
    """Print the verified file of an asset (embedded or cached), e.g. for scripts."""

    typer.echo(str(resolve_asset(name, _cache(cache_dir), catalogue=_catalogue(ctx)).path))


@app.command("derive-checkpoint")
def derive_checkpoint_(
    onnx_model: Annotated[
        Path, typer.Option("--onnx", help="A quantized (or fp32) BERT ONNX export [default: the embedded int8 demo].")
    ] = EMBEDDED_MODEL,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Checkpoint directory to write [default: <cache>/derived/<model>-hf]."),
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """A Hugging Face checkpoint for the pytorch backend, dequantized from an ONNX export (no download)."""
    stem = onnx_model.name.removesuffix(".onnx").removesuffix(".int8").removesuffix(".fp32")
    destination = output or _cache(cache_dir) / "derived" / f"{stem}-hf"
    derive_checkpoint(onnx_model, destination)
    typer.echo(f"wrote {destination} (run it with --backend pytorch --model-path {destination})")
