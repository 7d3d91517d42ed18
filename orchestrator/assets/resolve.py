"""Turn what a run asks for (a catalogue name, or a file path) into a verified file on disk.

Embedded assets resolve to embedded/<path> (their sha256 checked once per process per file version);
fetched or imported assets to the cache. Nothing is downloaded here: a missing asset is an AssetError
that says which command brings it in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from orchestrator.assets.catalogue import (
    MLPERF_INTERFACE,
    Asset,
    Catalogue,
    Interface,
    Kind,
    load_catalogue,
    no_mirror_message,
)
from orchestrator.assets.hashing import cached_digests, mismatches
from orchestrator.assets.onnx_precision import onnx_precision
from orchestrator.assets.store import (
    Stamp,
    asset_dir,
    asset_lock,
    cache_path,
    embedded_file,
    read_stamp,
    stamp_for,
    write_stamp,
)
from orchestrator.config import RUN_FLAGS
from orchestrator.errors import AssetError, DatasetError, ModelError

DEFAULT_DATASET = "squad-dev-v1.1"
DEFAULT_VOCAB = "vocab-bert-uncased"

Source = Literal["embedded", "cache", "path"]


@dataclass(frozen=True)
class ResolvedAsset:
    name: str
    path: Path
    sha256: str
    md5: str
    source: Source
    asset: Asset | None  # None for a custom (imported, non-catalogue) asset or an unknown file


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    sha256: str
    source: Source
    format: str | None
    precision: str | None
    demo: bool
    synthetic: bool
    custom: bool  # not a catalogue model (a --model-path file or an asset imported under a new name)
    reference_f1: float | None
    reference_exact_match: float | None
    interface: Interface
    vocab: str | None


def _missing(name: str, asset: Asset | None) -> AssetError:
    """The advice that works: fetch what has a mirror; import what has none (or make a synthetic one)."""
    if asset is None:  # a custom asset, imported once: only an import brings it back
        return AssetError(
            f"custom asset {name} is no longer in the cache; import it again with "
            f"`mlperf-bert assets import FILE --as {name}`"
        )
    if not asset.fetchable:
        return AssetError(f"asset {name} is not in the cache: {no_mirror_message(asset)}")
    return AssetError(
        f"asset {name} is not in the cache; run `mlperf-bert assets fetch {name}` "
        f"(or `mlperf-bert assets import FILE --as {name}` offline)"
    )


def _trusted(stamp: Stamp | None, path: Path, expected: dict[str, str]) -> bool:
    return (
        stamp is not None
        and stamp.filename == path.name
        and stamp.matches(path)
        and not mismatches({"md5": stamp.md5, "sha256": stamp.sha256}, expected)
    )


def _from_cache(name: str, path: Path, asset: Asset | None, cache_dir: Path) -> ResolvedAsset:
    stamp = read_stamp(path.parent)
    expected = dict(asset.checksums) if asset is not None else {}
    if stamp is not None and not expected:  # synthetic or custom: what was recorded when it was made
        expected = {"sha256": stamp.sha256}
    if stamp is not None and _trusted(stamp, path, expected):
        return ResolvedAsset(name, path, stamp.sha256, stamp.md5, "cache", asset)
    digests = cached_digests(path)  # changed since it was verified (or never stamped): hash it now
    bad = mismatches(digests, expected) if expected else ["no checksum to verify it against"]
    if bad:
        raise AssetError(
            f"cached asset {name} at {path} fails verification ({'; '.join(bad)}); run "
            f"`mlperf-bert assets fetch {name}` to replace it (the corrupt copy is moved aside)"
        )
    try:  # refresh the stamp so the next run need not hash again; a read-only cache is fine too
        with asset_lock(cache_dir, name):
            write_stamp(
                path.parent,
                stamp_for(
                    path,
                    name,
                    asset.kind if asset else stamp.kind,  # type: ignore[union-attr]
                    digests,
                    stamp.origin if stamp else "found in cache",
                    placed_as=stamp.placed_as if stamp else "copy",
                    custom=asset is None,
                    format=asset.format if asset else (stamp.format if stamp else None),
                    precision=asset.precision if asset else (stamp.precision if stamp else None),
                ),
            )
    except (AssetError, OSError):
        pass
    return ResolvedAsset(name, path, digests["sha256"], digests["md5"], "cache", asset)


def resolve_asset(
    name: str, cache_dir: Path, *, kind: Kind | None = None, catalogue: Catalogue | None = None
) -> ResolvedAsset:
    """A catalogue (or custom) asset by name -> its verified file."""
    catalogue = catalogue or load_catalogue()
    asset = catalogue.find(name)
    if asset is not None:
        if kind is not None and asset.kind != kind:
            raise AssetError(f"{name} is a {asset.kind}, not a {kind}; pick a {kind} from `mlperf-bert assets list`")
        emb = embedded_file(asset)
        if emb is not None:
            digests = cached_digests(emb)
            bad = mismatches(digests, asset.checksums)
            if bad:
                raise AssetError(
                    f"embedded asset {asset.name} ({emb}) is corrupt ({'; '.join(bad)}); restore it with "
                    f"`git checkout -- embedded/{asset.embedded}`"
                )
            return ResolvedAsset(asset.name, emb, digests["sha256"], digests["md5"], "embedded", asset)
        path = cache_path(cache_dir, asset)
        if not path.is_file():
            raise _missing(asset.name, asset)
        return _from_cache(asset.name, path, asset, cache_dir)
    stamp = read_stamp(asset_dir(cache_dir, name))
    if stamp is not None and stamp.custom:
        if kind is not None and stamp.kind != kind:
            raise AssetError(f"{name} is a {stamp.kind}, not a {kind}; pick a {kind} from `mlperf-bert assets list`")
        path = asset_dir(cache_dir, name) / stamp.filename
        if not path.is_file():
            raise _missing(name, None)
        return _from_cache(name, path, None, cache_dir)
    catalogue.get(name, kind)  # raises the "unknown ...; choose one of" error
    raise AssertionError("unreachable")


def _model_from(
    asset: Asset | None, name: str, path: Path, sha256: str, source: Source, *, custom: bool, stamp: Stamp | None = None
) -> ResolvedModel:
    ref = asset.reference if asset is not None else None
    form = asset.format if asset else (stamp.format if stamp else ("onnx" if path.suffix == ".onnx" else None))
    precision = asset.precision if asset else (stamp.precision if stamp else None)
    if precision is None and form == "onnx" and path.is_file():
        # A file the catalogue does not describe says itself what it is: an int8 or fp16 file must be
        # labelled and checked as one (workflows/accuracy_label.py), never taken for full precision.
        precision = onnx_precision(path)
    return ResolvedModel(
        name=name,
        path=path,
        sha256=sha256,
        source=source,
        format=form,
        precision=precision,
        demo=asset.demo if asset else False,
        synthetic=asset.synthetic if asset else False,
        custom=custom,
        reference_f1=ref.f1 if ref else None,
        reference_exact_match=ref.exact_match if ref else None,
        interface=(asset.interface if asset and asset.interface else MLPERF_INTERFACE),
        vocab=asset.vocab if asset else None,
    )


def resolve_model(
    name: str | None, model_path: Path | None, cache_dir: Path, *, catalogue: Catalogue | None = None
) -> ResolvedModel:
    """The model a run uses: --model-path (any compatible file) wins over a catalogue name.

    A file whose digest equals a catalogue model's is recognised as that model (with its reference
    accuracy); any other file is a custom model, identified in the run record by its sha256.
    """
    catalogue = catalogue or load_catalogue()
    if model_path is not None:
        path = Path(model_path).expanduser()
        if path.is_dir():
            return _checkpoint_dir(path, catalogue)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist; pass an existing .onnx file to --model-path")
        digests = cached_digests(path)
        for asset in catalogue.assets:
            if asset.kind == "model" and asset.checksums and not mismatches(digests, asset.checksums):
                return _model_from(asset, asset.name, path, digests["sha256"], "path", custom=False)
        return _model_from(None, f"custom:{path.name}", path, digests["sha256"], "path", custom=True)
    if not name:
        raise ModelError("no model given; pass --model NAME (see `mlperf-bert assets list`) or --model-path FILE")
    found = resolve_asset(name, cache_dir, kind="model", catalogue=catalogue)
    stamp = read_stamp(found.path.parent) if found.source == "cache" else None
    return _model_from(
        found.asset, found.name, found.path, found.sha256, found.source, custom=found.asset is None, stamp=stamp
    )


CHECKPOINT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _checkpoint_dir(path: Path, catalogue: Catalogue) -> ResolvedModel:
    """A Hugging Face checkpoint directory (config.json + weights), identified by its weights' digests."""
    weights = next((path / n for n in CHECKPOINT_WEIGHTS if (path / n).is_file()), None)
    if weights is None or not (path / "config.json").is_file():
        raise ModelError(
            f"{path} is not a Hugging Face checkpoint directory (it needs config.json and one of "
            f"{', '.join(CHECKPOINT_WEIGHTS)}); pass such a directory, or an .onnx file for ONNX backends"
        )
    digests = cached_digests(weights)
    for asset in catalogue.assets:
        if asset.kind == "model" and asset.checksums and not mismatches(digests, asset.checksums):
            return _model_from(asset, asset.name, path, digests["sha256"], "path", custom=False)
    model = _model_from(None, f"custom:{path.name}", path, digests["sha256"], "path", custom=True)
    return replace(model, format="pytorch")


def resolve_dataset(
    dataset_path: Path | None, cache_dir: Path, *, name: str = DEFAULT_DATASET, catalogue: Catalogue | None = None
) -> Path:
    """--dataset when given, else the catalogue's SQuAD dev set (embedded by default)."""
    if dataset_path is not None:
        path = Path(dataset_path).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise DatasetError(
                f"dataset file {path} {what}; pass a SQuAD v1.1 JSON file to {RUN_FLAGS['dataset_path']}"
            )
        return path
    return resolve_asset(name, cache_dir, kind="dataset", catalogue=catalogue).path


def resolve_vocab(
    vocab_path: Path | None, cache_dir: Path, *, name: str = DEFAULT_VOCAB, catalogue: Catalogue | None = None
) -> Path:
    """--vocab when given, else the catalogue's BERT uncased vocabulary (embedded by default)."""
    if vocab_path is not None:
        path = Path(vocab_path).expanduser()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise DatasetError(f"vocab file {path} {what}; pass a BERT vocab.txt to {RUN_FLAGS['vocab_path']}")
        return path
    return resolve_asset(name, cache_dir, kind="vocab", catalogue=catalogue).path
