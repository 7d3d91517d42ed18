"""The asset cache on disk: layout, the verification stamp, the per-asset lock, status, verify, import.

Layout (one directory per asset, keyed by its catalogue name):

    <cache>/assets/<name>/<filename>          the verified file (only ever appears by os.replace)
    <cache>/assets/<name>/<filename>.part     a download or copy in progress (resumable, never used)
    <cache>/assets/<name>/asset.json          the stamp: digests, size and mtime at verification
    <cache>/assets/<name>/.lock               flock'ed by whoever writes this asset

A file is "verified" when its stamp matches its current size and mtime and the stamp's digests match
the catalogue; anything else must be re-hashed (`assets verify`) before it is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.assets.catalogue import NAME_PATTERN, Asset, Catalogue, Interface, Kind
from orchestrator.assets.hashing import CHUNK, cached_digests, file_digests, mismatches
from orchestrator.assets.interface import check_onnx_interface
from orchestrator.errors import AssetError, MlperfBertError

log = logging.getLogger(__name__)

ASSETS_SUBDIR = "assets"
STAMP_FILE = "asset.json"
LOCK_FILE = ".lock"


class Stamp(BaseModel):
    """What was verified, when, and from where; also the record of custom (non-catalogue) assets."""

    model_config = ConfigDict(extra="forbid")

    name: str
    filename: str
    kind: Kind
    format: str | None = None
    precision: str | None = None
    size: int
    mtime_ns: int
    md5: str
    sha256: str
    origin: str  # the URL, "import:<path>" or "make-synthetic"
    placed_as: Literal["download", "copy", "hardlink", "symlink", "generated"] = "download"
    custom: bool = False  # imported under a name the catalogue does not have
    verified_at: str

    def matches(self, path: Path) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def asset_dir(cache_dir: Path, name: str) -> Path:
    return Path(cache_dir) / ASSETS_SUBDIR / name


def cache_path(cache_dir: Path, asset: Asset) -> Path:
    return asset_dir(cache_dir, asset.name) / asset.filename


def part_path(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def read_stamp(directory: Path) -> Stamp | None:
    try:
        return Stamp.model_validate_json((directory / STAMP_FILE).read_text())
    except (OSError, ValidationError, ValueError):
        return None


def write_stamp(directory: Path, stamp: Stamp) -> None:
    tmp = directory / (STAMP_FILE + ".tmp")
    tmp.write_text(stamp.model_dump_json(indent=2) + "\n")
    os.replace(tmp, directory / STAMP_FILE)


def stamp_for(
    path: Path,
    name: str,
    kind: Kind,
    digests: dict[str, str],
    origin: str,
    *,
    placed_as: str,
    custom: bool = False,
    format: str | None = None,
    precision: str | None = None,
) -> Stamp:
    st = path.stat()
    return Stamp(
        name=name,
        filename=path.name,
        kind=kind,
        format=format,
        precision=precision,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        md5=digests["md5"],
        sha256=digests["sha256"],
        origin=origin,
        placed_as=placed_as,  # type: ignore[arg-type]
        custom=custom,
        verified_at=utc_now(),
    )


def nearest_dir(directory: Path, *, what: str, remedy: str, error: type[MlperfBertError] = AssetError) -> Path:
    """The deepest existing directory at or above `directory` (where it would be created); refuse, in one
    sentence, a path under something that is not a directory (a regular file, a broken link)."""
    here = Path(directory)
    while not os.path.isdir(here):
        if os.path.lexists(here):
            raise error(f"{what} {directory} cannot be created because {here} is not a directory; {remedy}")
        if here.parent == here:
            break
        here = here.parent
    return here


def make_dirs(directory: Path, *, what: str, remedy: str, error: type[MlperfBertError] = AssetError) -> list[Path]:
    """`mkdir -p` that returns the directories it made (outermost first), so that a failure after it can
    take them away again (remove_dirs); an error in one sentence instead of an OSError."""
    directory = Path(directory)
    top = nearest_dir(directory, what=what, remedy=remedy, error=error)
    missing = []
    here = directory
    while here != top:
        missing.append(here)
        here = here.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if path.is_dir():  # another process made it meanwhile: it is not ours to remove
                continue
            remove_dirs(created)
            raise error(f"{what} {directory} cannot be created because {path} is not a directory; {remedy}") from None
        except OSError as e:
            remove_dirs(created)
            raise error(f"cannot create {what} {path} ({e.strerror}); {remedy}") from None
        created.append(path)
    return created


def remove_dirs(created: list[Path]) -> None:
    """Remove the directories make_dirs made, innermost first, as far as they are still empty."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return  # not empty (someone else's file is there now), or gone: leave it and those above


def check_asset_name(name: str) -> None:
    """A name the cache may hold: the catalogue's rule (lower-case letters, digits, '.', '_', '-')."""
    if not re.match(NAME_PATTERN, name):
        raise AssetError(f"asset name {name!r} is not valid; use lower-case letters, digits, '.', '_' and '-'")


def _same_file(lock: IO[bytes], path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    mine = os.fstat(lock.fileno())
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)


@contextlib.contextmanager
def asset_lock(cache_dir: Path, name: str) -> Iterator[Path]:
    """Hold the asset's lock (fcntl.flock): a second writer waits here until the first is done.

    A writer that leaves nothing in the directory (a refused import, a failed generation) removes the lock
    file and the directories it created on its way out, so a failure leaves no empty directory behind; a
    waiter whose lock file was removed meanwhile takes the lock again on a new one.
    """
    directory = asset_dir(cache_dir, name)
    lock_path = directory / LOCK_FILE
    created: list[Path] = []
    while True:
        created += make_dirs(directory, what="cache directory", remedy="pass a writable --cache-dir")
        try:
            lock = open(lock_path, "a+b")  # closed below, after the body has run
        except FileNotFoundError:  # a writer that gave up removed the directory just now: make it again
            continue
        except OSError as e:
            remove_dirs(created)
            raise AssetError(f"cannot create {lock_path} ({e.strerror}); pass a writable --cache-dir") from None
        try:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                log.warning("%s: another process is writing this asset; waiting for it to finish", name)
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except BaseException:
            lock.close()
            raise
        if _same_file(lock, lock_path):
            break
        lock.close()  # the lock file was removed while this process waited for it: lock the new one
    try:
        yield directory
    finally:
        try:
            if {p.name for p in directory.iterdir()} <= {LOCK_FILE}:  # nothing was placed: leave no trace
                lock_path.unlink(missing_ok=True)
                directory.rmdir()
                remove_dirs([d for d in created if d != directory])
        except OSError:
            pass  # someone else's file is there now: the directory stays
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Make a verified temporary file visible under its final name, durably."""
    if not tmp.is_symlink():
        fd = os.open(tmp, os.O_RDONLY)  # read-only is enough for fsync, and works on linked files
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def move_aside(path: Path) -> Path:
    """Keep a corrupt file for inspection instead of deleting it: <file>.corrupt-<timestamp>."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, target)
    log.warning("moved corrupt %s aside to %s", path, target)
    return target


# ---------------------------------------------------------------------------------------------- status

Verified = Literal["yes", "no", "corrupt", "-"]


@dataclass(frozen=True)
class AssetStatus:
    name: str
    kind: str
    where: Literal["embedded", "cache", "missing"]
    path: Path | None
    size: int | None
    verified: Verified  # "no": present but not checked since it last changed (run `assets verify`)
    custom: bool = False
    detail: str = ""


def _expected(asset: Asset | None, stamp: Stamp | None) -> dict[str, str]:
    """Catalogue checksums; for what the catalogue lacks (or for custom assets), the stamp's."""
    expected = dict(asset.checksums) if asset is not None else {}
    if stamp is not None:
        expected.setdefault("sha256", stamp.sha256)
        expected.setdefault("md5", stamp.md5)
    return expected


def embedded_file(asset: Asset) -> Path | None:
    path = asset.embedded_path
    return path if path is not None and path.is_file() else None


def status(asset: Asset, cache_dir: Path) -> AssetStatus:
    """Where an asset is and whether it is verified, without re-hashing cached files."""
    emb = embedded_file(asset)
    if emb is not None:
        bad = mismatches(cached_digests(emb), asset.checksums)
        return AssetStatus(
            asset.name,
            asset.kind,
            "embedded",
            emb,
            emb.stat().st_size,
            "corrupt" if bad else "yes",
            detail="; ".join(bad),
        )
    path = cache_path(cache_dir, asset)
    if not path.is_file():
        return AssetStatus(asset.name, asset.kind, "missing", None, None, "-")
    stamp = read_stamp(path.parent)
    ok = (
        stamp is not None
        and stamp.filename == path.name
        and stamp.matches(path)
        and not mismatches({"md5": stamp.md5, "sha256": stamp.sha256}, asset.checksums)
    )
    return AssetStatus(asset.name, asset.kind, "cache", path, path.stat().st_size, "yes" if ok else "no")


def custom_stamps(cache_dir: Path, catalogue: Catalogue) -> list[Stamp]:
    """Assets imported under names the catalogue does not have."""
    root = Path(cache_dir) / ASSETS_SUBDIR
    if not root.is_dir():
        return []
    stamps = []
    for directory in sorted(root.iterdir()):
        if directory.is_dir() and catalogue.find(directory.name) is None:
            stamp = read_stamp(directory)
            if stamp is not None and stamp.custom:
                stamps.append(stamp)
    return stamps


def custom_status(stamp: Stamp, cache_dir: Path) -> AssetStatus:
    path = asset_dir(cache_dir, stamp.name) / stamp.filename
    if not path.is_file():
        return AssetStatus(stamp.name, stamp.kind, "missing", None, None, "-", custom=True)
    return AssetStatus(
        stamp.name, stamp.kind, "cache", path, path.stat().st_size, "yes" if stamp.matches(path) else "no", custom=True
    )


# ---------------------------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path | None
    ok: bool
    problem: str = ""
    moved_to: Path | None = None


def verify_cached(asset: Asset | None, stamp_name: str, cache_dir: Path, *, move_corrupt: bool = False) -> VerifyResult:
    """Re-hash the cached copy of an asset; refresh its stamp when it verifies.

    A corrupt file is reported and left where it is (or moved aside with move_corrupt), never deleted.
    """
    directory = asset_dir(cache_dir, stamp_name)
    stamp = read_stamp(directory)
    filename = asset.filename if asset is not None else (stamp.filename if stamp else None)
    if filename is None or not (directory / filename).is_file():
        return VerifyResult(stamp_name, None, False, "not in the cache")
    path = directory / filename
    with asset_lock(cache_dir, stamp_name):
        digests = file_digests(path)
        expected = _expected(asset, stamp)
        bad = mismatches(digests, expected)
        if asset is not None and asset.size is not None and path.stat().st_size != asset.size:
            bad.insert(0, f"size {path.stat().st_size} (expected {asset.size})")
        if bad:
            moved = move_aside(path) if move_corrupt else None
            return VerifyResult(stamp_name, path, False, "; ".join(bad), moved)
        custom = asset is None
        kind: Kind = asset.kind if asset is not None else stamp.kind  # type: ignore[union-attr]
        origin = stamp.origin if stamp is not None else f"found in cache: {path}"
        placed = stamp.placed_as if stamp is not None else "copy"
        write_stamp(
            directory,
            stamp_for(
                path,
                stamp_name,
                kind,
                digests,
                origin,
                placed_as=placed,
                custom=custom,
                format=asset.format if asset else (stamp.format if stamp else None),
                precision=asset.precision if asset else (stamp.precision if stamp else None),
            ),
        )
    return VerifyResult(stamp_name, path, True)


def verify_embedded(asset: Asset) -> VerifyResult:
    path = embedded_file(asset)
    if path is None:
        return VerifyResult(asset.name, None, False, "embedded file is missing")
    bad = mismatches(file_digests(path), asset.checksums)
    return VerifyResult(asset.name, path, not bad, "; ".join(bad))


# ---------------------------------------------------------------------------------------------- import

LinkMode = Literal["copy", "link"]


def _copy_hashing(src: Path, dst: Path) -> dict[str, str]:
    """Copy src to dst in one pass, hashing the bytes written (what lands in the cache is what we hash)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def check_content(src: Path, kind: Kind, fmt: str | None, interface: Interface | None = None) -> None:
    """Refuse, in one sentence, a file a run could not use as this kind of asset: an ONNX model needs the
    MLPerf BERT interface, a dataset must be SQuAD v1.1 JSON and a vocab a WordPiece vocab.txt, each read
    by the same loader a run uses."""
    if kind == "model" and fmt == "onnx":
        problems = check_onnx_interface(src, interface)
        if problems:
            raise AssetError(
                f"{src} does not have the expected model interface: {'; '.join(problems)}; "
                "export it as described in docs/CUSTOM_MODELS.md"
            )
    elif kind == "dataset":
        from orchestrator.dataset.squad import load_examples

        load_examples(src)  # DatasetError: not UTF-8 JSON, not SQuAD v1.1's structure, no questions
    elif kind == "vocab":
        from orchestrator.dataset.vocab import load_vocab

        load_vocab(src)  # DatasetError: not UTF-8, empty or repeated lines, no [CLS]/[SEP]/[UNK]/[PAD]


def import_file(
    src: Path,
    name: str,
    cache_dir: Path,
    catalogue: Catalogue,
    *,
    link: bool = False,
    kind: Kind = "model",
    check_interface: bool = True,
) -> Path:
    """Place a local file into the cache as asset `name`, after checking it.

    A catalogue name must match the catalogue's checksums; any other name becomes a custom asset
    whose sha256 is recorded. With link, a hard link is made when src is on the same file system,
    else a symbolic link. What no checksum proves must pass check_content: an ONNX model the interface
    check, a dataset or a vocab the loader a run reads it with. A refused file leaves nothing in the cache.
    """
    src = Path(src).expanduser()
    if not src.is_file():
        raise AssetError(f"{src} is not a file; pass the path of the file to import")
    asset = catalogue.find(name)
    if asset is None:
        check_asset_name(name)
    canonical = asset.name if asset is not None else name
    if asset is not None and embedded_file(asset) is not None:
        log.info("%s is embedded in the repository; importing a cache copy anyway", canonical)
    src_digests = file_digests(src)
    if asset is not None:
        bad = mismatches(src_digests, asset.checksums)
        if asset.size is not None and src.stat().st_size != asset.size:
            bad.insert(0, f"size {src.stat().st_size} (expected {asset.size})")
        if bad:
            raise AssetError(
                f"{src} is not asset {canonical} ({'; '.join(bad)}); import the right file, or import it "
                "under a new name (e.g. --as my-model) to use it as a custom asset"
            )
    fmt = asset.format if asset is not None else ("onnx" if src.suffix == ".onnx" else None)
    kind = asset.kind if asset is not None else kind
    # A matching checksum already proves a catalogue file; the content checks are for everything else.
    unproven = asset is None or not asset.checksums
    if check_interface and unproven:
        check_content(src, kind, fmt, asset.interface if asset is not None else None)
    filename = asset.filename if asset is not None else src.name
    if filename in (STAMP_FILE, STAMP_FILE + ".tmp", LOCK_FILE):
        raise AssetError(f"{src.name} is a file name the cache uses itself; rename the file and import it again")
    with asset_lock(cache_dir, canonical) as directory:
        final = directory / filename
        tmp = part_path(final)
        tmp.unlink(missing_ok=True)
        placed = "copy"
        if link:
            try:
                os.link(src, tmp)
                placed = "hardlink"
            except OSError:
                try:
                    os.symlink(src.resolve(), tmp)
                except OSError as e:
                    raise AssetError(
                        f"cannot link {src} into {directory} ({e.strerror}); import it without --link"
                    ) from None
                placed = "symlink"
            digests = src_digests
        else:
            if shutil.disk_usage(directory).free < src.stat().st_size:
                raise AssetError(
                    f"not enough free space in {directory} to copy {src}; free space, "
                    "use --link, or pass another --cache-dir"
                )
            try:
                digests = _copy_hashing(src, tmp)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise AssetError(
                    f"cannot copy {src} into {directory} ({e.strerror}); free space, use --link, "
                    "or pass another --cache-dir"
                ) from None
            except BaseException:  # interrupted: a half-copied file is of no use to anyone
                tmp.unlink(missing_ok=True)
                raise
            if digests != src_digests:
                tmp.unlink(missing_ok=True)
                raise AssetError(f"{src} changed while it was copied; import it again")
        publish(tmp, final)
        write_stamp(
            directory,
            stamp_for(
                final,
                canonical,
                kind,
                digests,
                f"import:{src.resolve()}",
                placed_as=placed,
                custom=asset is None,
                format=fmt,
                precision=asset.precision if asset is not None else None,
            ),
        )
    log.info("imported %s as %s (%s) -> %s", src, canonical, placed, final)
    return final


def place_generated(
    cache_dir: Path,
    name: str,
    filename: str,
    writer: Callable[[Path], object],
    *,
    kind: Kind,
    format: str | None,
    precision: str | None,
    custom: bool,
    origin: str,
) -> Path:
    """Write a generated file into the cache the same way a download lands: part, hash, publish, stamp."""
    with asset_lock(cache_dir, name) as directory:
        final = directory / filename
        tmp = part_path(final)
        tmp.unlink(missing_ok=True)
        try:
            writer(tmp)
            digests = file_digests(tmp)
            publish(tmp, final)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise AssetError(
                f"cannot write {final} ({e.strerror}); free disk space or pass another --cache-dir"
            ) from None
        except BaseException:  # interrupted, or the writer failed: no half-written file stays
            tmp.unlink(missing_ok=True)
            raise
        write_stamp(
            directory,
            stamp_for(
                final,
                name,
                kind,
                digests,
                origin,
                placed_as="generated",
                custom=custom,
                format=format,
                precision=precision,
            ),
        )
    return final
