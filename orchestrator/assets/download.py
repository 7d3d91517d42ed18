"""Fetch a catalogue asset into the cache: resumable, retried, verified before it becomes visible.

The rules, in order of importance:
1. The final name only ever holds a verified file: bytes go to `<file>.part`, the whole part is hashed
   against the catalogue's md5/sha256, fsync'ed, then os.replace'd into place.
2. A resumed download continues where the part ends (HTTP Range); a server that ignores Range (200
   instead of 206) is detected and the part is rewritten from byte 0.
3. Retries (tenacity, exponential backoff) only on transient failures: connection errors, timeouts,
   truncated bodies, HTTP 5xx and 429. A 404 (or any other 4xx) moves to the next mirror at once; a
   checksum mismatch deletes the part (its bytes are wrong) and moves to the next mirror.
4. One writer per asset (fcntl.flock); a second process waits, then finds the verified file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import requests
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tqdm import tqdm

from orchestrator import __version__
from orchestrator.assets.catalogue import Asset, no_mirror_message
from orchestrator.assets.hashing import CHUNK, file_digests, mismatches
from orchestrator.assets.store import (
    asset_lock,
    cache_path,
    move_aside,
    part_path,
    publish,
    read_stamp,
    stamp_for,
    write_stamp,
)
from orchestrator.errors import AssetError
from orchestrator.logs import progress_wanted

log = logging.getLogger(__name__)

SPACE_RESERVE = 64 << 20  # leave this much free after a download


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # per mirror, counting the first try
    initial_wait: float = 1.0  # seconds; doubles after each failure
    max_wait: float = 60.0
    connect_timeout: float = 20.0
    read_timeout: float = 60.0  # no byte for this long: the connection is dropped and resumed


@dataclass(frozen=True)
class FetchResult:
    name: str
    path: Path
    action: Literal["fetched", "present"]
    url: str | None = None
    resumed_from: int = 0  # bytes already in the part when this fetch began


class TransientHTTPError(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class IncompleteDownload(Exception):
    """The body ended early, or the server's byte range did not line up: resume or restart."""


class MirrorFailed(Exception):
    """This mirror cannot serve the file (404, another 4xx, a bad URL): try the next one."""


TRANSIENT: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    TransientHTTPError,
    IncompleteDownload,
)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); 'bytes */200' -> (None, 200)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = int(span.split("-")[0]) if span != "*" and "-" in span else None
    return start, (int(total) if total.isdigit() else None)


def brief(e: BaseException) -> str:
    """A short reason for a log line or an error message (requests' own messages run to paragraphs)."""
    if isinstance(e, requests.Timeout):
        return "timed out"
    if isinstance(e, requests.ConnectionError):
        cause = re.search(r"Caused by (\w+)", str(e))
        return f"connection failed ({cause.group(1) if cause else e.__class__.__name__})"
    return str(e) or e.__class__.__name__


def ensure_space(
    directory: Path, needed: int, name: str, *, remedy: str = "free some space or pass --cache-dir on a larger disk"
) -> None:
    free = shutil.disk_usage(directory).free
    if needed > 0 and free < needed + SPACE_RESERVE:
        raise AssetError(
            f"not enough free disk space in {directory} for {name}: it needs {human(needed)} more and "
            f"{human(free)} is free; {remedy}"
        )


class _Downloader:
    """Downloads one URL into a part file, resuming; raises TRANSIENT errors for tenacity to retry."""

    def __init__(self, session: requests.Session, policy: RetryPolicy, asset: Asset, part: Path, bar: tqdm) -> None:
        self.session, self.policy, self.asset, self.part, self.bar = session, policy, asset, part, bar

    def once(self, url: str) -> None:
        part, size = self.part, self.asset.size
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            log.info("%s: the partial file is longer than the asset; starting over", self.asset.name)
            part.unlink()
            offset = 0
        if size is not None and 0 < offset == size:
            return  # complete already; the checksum decides
        headers = {"Accept-Encoding": "identity"}  # byte offsets must be offsets into the file itself
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        with self.session.get(url, headers=headers, stream=True, timeout=timeout) as r:
            self._write(r, offset)

    def _write(self, r: requests.Response, offset: int) -> None:
        code = r.status_code
        if code == 416 and offset:
            _, total = _content_range(r.headers.get("Content-Range"))
            if total == offset:
                return  # the part already holds the whole file
            self.part.unlink(missing_ok=True)
            raise IncompleteDownload("the server refused to resume; starting over")
        if code == 429 or 500 <= code <= 599:
            raise TransientHTTPError(code, _retry_after(r.headers.get("Retry-After")))
        if code not in (200, 206):
            raise MirrorFailed(f"HTTP {code}")
        encoding = r.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise MirrorFailed(f"the server sent {encoding}-encoded content")
        length = int(r.headers["Content-Length"]) if r.headers.get("Content-Length", "").isdigit() else None
        if code == 206:
            start, total = _content_range(r.headers.get("Content-Range"))
            if start != offset:
                self.part.unlink(missing_ok=True)
                raise IncompleteDownload(f"the server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:
            if offset:
                log.warning("%s: %s ignores HTTP Range; downloading from the start", self.asset.name, r.url)
            offset, mode = 0, "wb"
            total = length
        if total is None and length is not None:
            total = offset + length
        if total is not None:
            ensure_space(self.part.parent, total - offset, self.asset.name)
        self.bar.reset(total=total or self.asset.size or self.asset.approx_size)
        self.bar.update(offset)
        with open(self.part, mode) as f:
            while True:
                try:  # read1: whatever has arrived, so a broken connection loses no received byte
                    chunk = r.raw.read1(CHUNK, decode_content=False)
                except urllib3.exceptions.HTTPError as e:  # reset, truncated body, read timeout
                    raise IncompleteDownload(f"the connection broke ({e.__class__.__name__})") from e
                if not chunk:
                    break
                f.write(chunk)
                self.bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        got = self.part.stat().st_size
        if total is not None and got < total:
            raise IncompleteDownload(f"the connection ended after {got} of {total} bytes")


def _wait(policy: RetryPolicy):  # type: ignore[no-untyped-def]
    def wait(state: RetryCallState) -> float:
        delay = policy.initial_wait * 2 ** (state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientHTTPError) and exc.retry_after:
            delay = max(delay, exc.retry_after)  # honour the server's Retry-After
        return min(delay, policy.max_wait)

    return wait


def _log_retry(name: str, url: str):  # type: ignore[no-untyped-def]
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.warning(
            "%s: %s: %s; retry %d in %.1f s", name, url, brief(exc) if exc else "error", state.attempt_number, wait
        )

    return before_sleep


def _download(downloader: _Downloader, url: str, policy: RetryPolicy) -> None:
    retrying = Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        stop=stop_after_attempt(policy.attempts),
        wait=_wait(policy),
        before_sleep=_log_retry(downloader.asset.name, url),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            downloader.once(url)


def _stamped(asset: Asset, final: Path) -> bool:
    stamp = read_stamp(final.parent)
    return (
        stamp is not None
        and stamp.filename == final.name
        and stamp.matches(final)
        and not mismatches({"md5": stamp.md5, "sha256": stamp.sha256}, asset.checksums)
    )


def _present(asset: Asset, final: Path) -> bool:
    """Is the final file already there and verified? A corrupt one is moved aside, never reused."""
    if not final.is_file():
        return False
    if _stamped(asset, final):
        return True
    if not asset.checksums:
        return False  # nothing published to check an unstamped file against
    digests = file_digests(final)
    if not mismatches(digests, asset.checksums) and (asset.size is None or final.stat().st_size == asset.size):
        write_stamp(
            final.parent,
            stamp_for(
                final,
                asset.name,
                asset.kind,
                digests,
                "found in cache",
                placed_as="copy",
                format=asset.format,
                precision=asset.precision,
            ),
        )
        return True
    log.warning("%s: the cached file fails its checksum; moving it aside and fetching again", asset.name)
    move_aside(final)
    return False


def fetch_asset(
    asset: Asset,
    cache_dir: Path,
    *,
    policy: RetryPolicy = RetryPolicy(),
    progress: bool | None = None,
    session: requests.Session | None = None,
) -> FetchResult:
    """Download `asset` into the cache (or find it there, verified); raise AssetError when impossible."""
    final = cache_path(cache_dir, asset)
    if not asset.mirrors:
        if final.is_file() and _stamped(asset, final):
            return FetchResult(asset.name, final, "present")
        raise AssetError(no_mirror_message(asset))
    part = part_path(final)
    if progress is None:
        progress = sys.stderr.isatty() and progress_wanted()  # never under -q
    own_session = session is None
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", f"mlperf-bert/{__version__}")
    try:
        with asset_lock(cache_dir, asset.name):
            if _present(asset, final):
                log.info("%s: already in the cache and verified (%s)", asset.name, final)
                return FetchResult(asset.name, final, "present")
            have = part.stat().st_size if part.exists() else 0
            ensure_space(final.parent, (asset.size or asset.approx_size or 0) - have, asset.name)
            return _fetch_from_mirrors(asset, final, part, have, policy, progress, session)
    finally:
        if own_session:
            session.close()


def _fetch_from_mirrors(
    asset: Asset, final: Path, part: Path, have: int, policy: RetryPolicy, progress: bool, session: requests.Session
) -> FetchResult:
    errors: list[str] = []
    mismatched = 0
    bar_args: dict[str, Any] = {
        "unit": "B",
        "unit_scale": True,
        "unit_divisor": 1024,
        "desc": asset.name,
        "disable": not progress,
        "file": sys.stderr,
        "dynamic_ncols": True,
        "leave": True,
    }
    for mirror in asset.mirrors:
        url = mirror.url
        for from_scratch in (False, True):
            if from_scratch:
                log.warning("%s: the resumed file failed its checksum; downloading it again from the start", asset.name)
            resumed_from = part.stat().st_size if part.exists() else 0
            try:
                with tqdm(total=asset.size or asset.approx_size, **bar_args) as bar:
                    _download(_Downloader(session, policy, asset, part, bar), url, policy)
            except MirrorFailed as e:
                errors.append(f"{url}: {e}")
                log.warning("%s: %s: %s; trying the next mirror", asset.name, url, e)
                break
            except TRANSIENT as e:  # retries exhausted; the part is kept so that a later fetch resumes
                errors.append(f"{url}: {brief(e)}")
                log.warning(
                    "%s: %s still failing after %d tries (%s); trying the next mirror",
                    asset.name,
                    url,
                    policy.attempts,
                    brief(e),
                )
                break
            except requests.RequestException as e:  # a bad URL, too many redirects...
                errors.append(f"{url}: {e.__class__.__name__}")
                break
            except OSError as e:
                raise AssetError(
                    f"cannot write {part} ({e.strerror}); free disk space or pass another --cache-dir"
                ) from None
            with tqdm(total=part.stat().st_size, **{**bar_args, "desc": f"{asset.name} (verify)"}) as bar:
                digests = file_digests(part, on_bytes=bar.update)
            bad = mismatches(digests, asset.checksums)
            if asset.size is not None and part.stat().st_size != asset.size:
                bad.insert(0, f"size {part.stat().st_size} (expected {asset.size})")
            if not bad:
                publish(part, final)
                write_stamp(
                    final.parent,
                    stamp_for(
                        final,
                        asset.name,
                        asset.kind,
                        digests,
                        url,
                        placed_as="download",
                        format=asset.format,
                        precision=asset.precision,
                    ),
                )
                log.info("%s: fetched and verified from %s -> %s", asset.name, url, final)
                return FetchResult(asset.name, final, "fetched", url, resumed_from=have)
            part.unlink()  # wrong bytes: never resume from them
            if resumed_from and not from_scratch:
                continue  # the bad bytes may be the old part's; one clean try on this mirror
            mismatched += 1
            errors.append(f"{url}: checksum mismatch ({'; '.join(bad)})")
            log.warning("%s: %s served a file that fails its checksum (%s)", asset.name, url, "; ".join(bad))
            break
    if mismatched == len(asset.mirrors):
        raise AssetError(
            f"every mirror of {asset.name} served a file that fails its checksum ({errors[-1]}); do not use "
            f"these copies, and import a verified one with `mlperf-bert assets import FILE --as {asset.name}`"
        )
    raise AssetError(
        f"could not fetch {asset.name} from any of its {len(asset.mirrors)} mirror(s) (last: {errors[-1]}); "
        f"check the network and run the fetch again (it resumes), or on an offline machine copy the file "
        f"and run `mlperf-bert assets import FILE --as {asset.name}`"
    )
