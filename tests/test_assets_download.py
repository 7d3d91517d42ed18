"""`assets fetch` against a real HTTP server on loopback that serves the real dev set and vocab and
injects faults. Invariant checked in every case: the cache's final name holds either the verified file
or nothing (a `.part` may remain after a transient failure, for a later resume, and is never used).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.assets.catalogue import Asset, Catalogue, Mirror, load_catalogue
from orchestrator.assets.download import RetryPolicy, _content_range, _retry_after, fetch_asset
from orchestrator.assets.store import cache_path, part_path, read_stamp
from orchestrator.commands.assets_cmd import app
from orchestrator.errors import AssetError
from orchestrator.paths import EMBEDDED_DIR, REPO_ROOT

# MLPerf's published MD5s (mlcommons get-dataset-squad / get-dataset-squad-vocab).
DEV_MD5 = "3e85deb501d4e538b6bc56f786231552"
VOCAB_MD5 = "64800d5d8528ce344256daf115d4965e"
DEV = (EMBEDDED_DIR / "squad" / "dev-v1.1.json").read_bytes()
VOCAB = (EMBEDDED_DIR / "vocab" / "vocab.txt").read_bytes()
FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, connect_timeout=2, read_timeout=2)


@dataclass
class Fault:
    missing: bool = False  # 404
    fail_first: int = 0  # answer fail_status to the first N requests
    fail_status: int = 500
    retry_after: str | None = None
    drop_after: int | None = None  # close the connection after this many body bytes...
    drop_times: int = 1  # ...on this many (successful-status) requests
    corrupt_at: int | None = None  # flip this byte of the file in every response
    no_range: bool = False  # ignore Range: always 200 with the whole file
    trickle: tuple[int, float] | None = None  # (chunk bytes, delay seconds)
    stall_at: int | None = None  # on the first body, stop sending for stall_s after this many bytes
    stall_s: float = 0.0


@dataclass
class Hit:
    path: str
    range: str | None
    status: int


@dataclass
class FaultServer:
    files: dict[str, tuple[bytes, Fault]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def serve(self, path: str, data: bytes, fault: Fault | None = None) -> str:
        self.files["/" + path] = (data, fault or Fault())
        return self.url(path)

    def hits_for(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == "/" + path]

    def _record(self, h: BaseHTTPRequestHandler, status: int) -> int:
        with self.lock:
            previous = sum(1 for x in self.hits if x.path == h.path)
            self.hits.append(Hit(h.path, h.headers.get("Range"), status))
        return previous

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        data, fault = self.files.get(h.path, (b"", Fault(missing=True)))
        with self.lock:
            n = sum(1 for x in self.hits if x.path == h.path)
        if fault.missing:
            return self._empty(h, 404)
        if n < fault.fail_first:
            return self._empty(h, fault.fail_status, fault.retry_after)
        if fault.corrupt_at is not None:
            data = data[: fault.corrupt_at] + bytes([data[fault.corrupt_at] ^ 0xFF]) + data[fault.corrupt_at + 1 :]
        start, status = 0, 200
        rng = h.headers.get("Range")
        if rng and not fault.no_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self._record(h, 416)
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        body = data[start:]
        served_ok = n - fault.fail_first  # index among the non-failed requests
        self._record(h, status)
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if not fault.no_range:
            h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        limit = len(body)
        dropping = fault.drop_after is not None and served_ok < fault.drop_times
        if dropping:
            limit = min(limit, fault.drop_after)  # type: ignore[type-var]
        chunk, delay = fault.trickle or (1 << 16, 0.0)
        sent = 0
        try:
            while sent < limit:
                if fault.stall_at is not None and served_ok == 0 and sent <= fault.stall_at < sent + chunk:
                    upto = fault.stall_at - sent
                    h.wfile.write(body[sent : sent + upto])
                    h.wfile.flush()
                    sent += upto
                    time.sleep(fault.stall_s)
                piece = body[sent : min(limit, sent + chunk)]
                h.wfile.write(piece)
                sent += len(piece)
                if delay:
                    h.wfile.flush()
                    time.sleep(delay)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
            return
        if dropping:
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True

    def _empty(self, h: BaseHTTPRequestHandler, status: int, retry_after: str | None = None) -> None:
        self._record(h, status)
        h.send_response(status)
        if retry_after is not None:
            h.send_header("Retry-After", retry_after)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FaultServer()
    yield s
    s.close()


CATALOGUE = load_catalogue()
DEV_ASSET = CATALOGUE.get("squad-dev-v1.1")
VOCAB_ASSET = CATALOGUE.get("vocab-bert-uncased")


def with_mirrors(asset: Asset, *urls: str, **update: object) -> Asset:
    return asset.model_copy(update={"mirrors": [Mirror(url=u) for u in urls], **update})


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def assert_verified_or_nothing(cache: Path, asset: Asset, expect_file: bool) -> None:
    final = cache_path(cache, asset)
    if expect_file:
        assert final.is_file() and md5(final) == asset.md5
        assert not part_path(final).exists()
        stamp = read_stamp(final.parent)
        assert stamp is not None and stamp.md5 == asset.md5 and stamp.matches(final)
    else:
        assert not final.exists()


def test_clean_fetch_then_present_without_a_request(server, tmp_path):
    asset = with_mirrors(DEV_ASSET, server.serve("dev.json", DEV))
    result = fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert result.action == "fetched"
    assert_verified_or_nothing(tmp_path, asset, True)
    assert [h.range for h in server.hits] == [None]
    again = fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert again.action == "present" and len(server.hits) == 1


def test_dropped_connection_resumes_where_it_stopped(server, tmp_path):
    asset = with_mirrors(DEV_ASSET, server.serve("dev.json", DEV, Fault(drop_after=1_000_000)))
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    hits = server.hits_for("dev.json")
    assert [(h.range, h.status) for h in hits] == [(None, 200), ("bytes=1000000-", 206)]


def test_500s_then_success_is_retried(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB, Fault(fail_first=2)))
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    assert [h.status for h in server.hits] == [500, 500, 200]


def test_429_with_retry_after_is_retried(server, tmp_path):
    asset = with_mirrors(
        VOCAB_ASSET, server.serve("vocab.txt", VOCAB, Fault(fail_first=1, fail_status=429, retry_after="0"))
    )
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert [h.status for h in server.hits] == [429, 200]


def test_404_is_not_retried_and_the_next_mirror_is_used(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.url("gone.txt"), server.serve("vocab.txt", VOCAB))
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    assert [h.status for h in server.hits_for("gone.txt")] == [404]


def test_wrong_byte_is_never_published_nor_retried(server, tmp_path):
    asset = with_mirrors(DEV_ASSET, server.serve("dev.json", DEV, Fault(corrupt_at=123_456)))
    with pytest.raises(AssetError, match="fails its checksum"):
        fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, False)
    assert not part_path(cache_path(tmp_path, asset)).exists()  # wrong bytes are not kept to resume from
    assert len(server.hits) == 1


def test_wrong_byte_on_one_mirror_falls_back_to_a_good_one(server, tmp_path):
    asset = with_mirrors(DEV_ASSET, server.serve("bad.json", DEV, Fault(corrupt_at=7)), server.serve("good.json", DEV))
    result = fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert result.url == server.url("good.json")
    assert_verified_or_nothing(tmp_path, asset, True)
    assert len(server.hits_for("bad.json")) == 1


def test_slow_trickle_with_a_stall_times_out_and_resumes(server, tmp_path):
    fault = Fault(trickle=(1 << 15, 0.0), stall_at=200_000, stall_s=1.5)
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB, fault))
    policy = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, connect_timeout=2, read_timeout=0.4)
    fetch_asset(asset, tmp_path, policy=policy, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    hits = server.hits_for("vocab.txt")
    assert [(h.range, h.status) for h in hits] == [(None, 200), ("bytes=200000-", 206)]


def test_slow_steady_trickle_completes(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB, Fault(trickle=(16_384, 0.01))))
    policy = RetryPolicy(attempts=2, initial_wait=0.01, connect_timeout=2, read_timeout=0.5)
    fetch_asset(asset, tmp_path, policy=policy, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    assert len(server.hits) == 1


def test_server_without_range_support_starts_over_cleanly(server, tmp_path):
    asset = with_mirrors(DEV_ASSET, server.serve("dev.json", DEV, Fault(no_range=True, drop_after=1_500_000)))
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)  # not the first 1.5 MB twice
    assert [(h.range, h.status) for h in server.hits] == [(None, 200), ("bytes=1500000-", 200)]


def test_persistent_500_gives_up_after_the_policy_and_leaves_nothing(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB, Fault(fail_first=99)))
    with pytest.raises(AssetError, match=r"could not fetch vocab-bert-uncased .*assets import"):
        fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert len(server.hits) == FAST.attempts
    assert_verified_or_nothing(tmp_path, asset, False)
    assert not part_path(cache_path(tmp_path, asset)).exists()


def test_an_interrupted_fetch_resumes_in_the_next_run(server, tmp_path):
    asset = with_mirrors(DEV_ASSET, server.serve("dev.json", DEV, Fault(drop_after=600_000, drop_times=99)))
    policy = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02, connect_timeout=2, read_timeout=2)
    with pytest.raises(AssetError):
        fetch_asset(asset, tmp_path, policy=policy, progress=False)
    part = part_path(cache_path(tmp_path, asset))
    assert_verified_or_nothing(tmp_path, asset, False)
    assert part.stat().st_size == 1_200_000  # two tries, 600 kB each, appended
    server.serve("dev.json", DEV)  # the network recovers
    result = fetch_asset(asset, tmp_path, policy=policy, progress=False)
    assert result.resumed_from == 1_200_000
    assert server.hits[-1].range == "bytes=1200000-"
    assert_verified_or_nothing(tmp_path, asset, True)


def test_a_bad_leftover_part_is_retried_from_scratch_once(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB))
    final = cache_path(tmp_path, asset)
    final.parent.mkdir(parents=True)
    part_path(final).write_bytes(b"X" * 1000)  # not the file's first 1000 bytes
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    assert [h.range for h in server.hits] == ["bytes=1000-", None]


def test_a_complete_part_is_verified_without_a_request(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB))
    final = cache_path(tmp_path, asset)
    final.parent.mkdir(parents=True)
    part_path(final).write_bytes(VOCAB)
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    assert server.hits == []


def test_a_corrupt_cached_file_is_moved_aside_and_fetched_again(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB))
    final = cache_path(tmp_path, asset)
    final.parent.mkdir(parents=True)
    final.write_bytes(VOCAB[:-1] + b"!")
    fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert_verified_or_nothing(tmp_path, asset, True)
    aside = list(final.parent.glob("vocab.txt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().endswith(b"!")


def test_free_space_is_checked_before_any_request(server, tmp_path):
    asset = with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB)).model_copy(
        update={"size": None, "approx_size": 1 << 60}
    )
    with pytest.raises(AssetError, match="not enough free disk space"):
        fetch_asset(asset, tmp_path, policy=FAST, progress=False)
    assert server.hits == []


def test_no_mirror_says_how_to_import(tmp_path):
    with pytest.raises(AssetError, match=r"assets import FILE --as demo-fp32.*/work/shared/assets/models"):
        fetch_asset(CATALOGUE.get("demo-fp32"), tmp_path, policy=FAST, progress=False)


# ------------------------------------------------------------------------------- through the CLI


def write_catalogue(path: Path, assets: list[Asset]) -> Path:
    data = Catalogue(assets=assets).model_dump(mode="json", exclude_defaults=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_cli_fetch_of_the_real_dev_set_and_vocab_matches_mlperf_md5s(server, tmp_path):
    catalogue = write_catalogue(
        tmp_path / "assets.yaml",
        [
            with_mirrors(DEV_ASSET, server.serve("dataset/dev-v1.1.json", DEV)),
            with_mirrors(VOCAB_ASSET, server.serve("files/vocab.txt", VOCAB)),
        ],
    )
    cache = tmp_path / "cache"
    result = CliRunner().invoke(
        app,
        [
            "--catalogue",
            str(catalogue),
            "fetch",
            "squad-dev-v1.1",
            "vocab-bert-uncased",
            "--cache-dir",
            str(cache),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert md5(cache / "assets" / "squad-dev-v1.1" / "dev-v1.1.json") == DEV_MD5
    assert md5(cache / "assets" / "vocab-bert-uncased" / "vocab.txt") == VOCAB_MD5
    assert "squad-dev-v1.1: fetched" in result.output


def test_cli_fetch_all_reports_each_failure_and_fails(server, tmp_path):
    catalogue = write_catalogue(
        tmp_path / "assets.yaml",
        [
            with_mirrors(VOCAB_ASSET, server.serve("vocab.txt", VOCAB), embedded=None),
            with_mirrors(DEV_ASSET, server.url("missing.json"), embedded=None),
        ],
    )
    result = CliRunner().invoke(
        app, ["--catalogue", str(catalogue), "fetch", "--all", "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    )
    assert isinstance(result.exception, AssetError)
    assert "1 of 2 assets could not be fetched (squad-dev-v1.1)" in str(result.exception)
    assert (tmp_path / "c" / "assets" / "vocab-bert-uncased" / "vocab.txt").is_file()


def test_two_concurrent_fetches_one_waits_for_the_other(server, tmp_path):
    """Two processes fetch the same file: one downloads, the other waits on the lock, then finds it."""
    url = server.serve("vocab.txt", VOCAB, Fault(trickle=(16_384, 0.15)))  # about 2 s
    catalogue = write_catalogue(tmp_path / "assets.yaml", [with_mirrors(VOCAB_ASSET, url)])
    cache = tmp_path / "cache"
    env = {**os.environ, "MLPERF_BERT_CATALOGUE": str(catalogue), "PYTHONPATH": str(REPO_ROOT)}
    cmd = [
        sys.executable,
        "-c",
        "from orchestrator.commands.assets_cmd import app; app()",
        "fetch",
        "vocab-bert-uncased",
        "--cache-dir",
        str(cache),
        "--no-progress",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(server.hits) == 1  # one download, not two
    stdout = "".join(o for o, _ in outs)
    assert "vocab-bert-uncased: fetched" in stdout and "vocab-bert-uncased: present" in stdout
    assert "waiting" in "".join(e for _, e in outs)
    assert md5(cache / "assets" / "vocab-bert-uncased" / "vocab.txt") == VOCAB_MD5


def test_header_parsing():
    assert _content_range("bytes 100-199/200") == (100, 200)
    assert _content_range("bytes */200") == (None, 200)
    assert _content_range(None) == (None, None)
    assert _retry_after("7") == 7.0 and _retry_after("-3") == 0.0 and _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2099 07:28:00 GMT") > 1e9  # an HTTP date, seconds from now
