"""The Docker client: connecting to the engine, the one retry policy for transient API errors, and
docker SDK / requests failures as one DockerError or PreflightError sentence that names what to do.

The rest of orchestrator.containers reaches the engine through `connect` and `call` only. The docker
SDK is imported on first use (it is heavy, and `--runner local` never needs it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.wait import wait_base

from orchestrator.backends import Target
from orchestrator.errors import DockerError, MlperfBertError, PreflightError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ENGINE = "unix:///var/run/docker.sock"  # where the SDK looks when DOCKER_HOST is not set
START_ENGINE = "start it (`sudo systemctl start docker`, or `bash .ci/docker-setup.sh`)"
USE_LOCAL = "use --runner local"  # the way out of a run; `images` commands have none


# --- what a failure means ----------------------------------------------------------------------------
def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes: the SDK wraps the socket's own error two or three levels deep."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def short(text: str, limit: int = 200) -> str:
    """The first non-blank line of a library's message, cut to `limit` characters."""
    first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def explanation(exc: BaseException) -> str:
    """What the engine said (an APIError's explanation), else the exception's own text, on one line."""
    said = getattr(exc, "explanation", None)
    return short(said if said else str(exc) or type(exc).__name__)


def is_connection_error(exc: BaseException) -> bool:
    """The engine could not be talked to at all (no socket, refused, reset), as opposed to an answer."""
    import requests
    from docker.errors import APIError

    if isinstance(exc, APIError):  # the engine answered (its text may still say "connection refused": a registry's)
        return False
    if any(
        isinstance(e, (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)) for e in _chain(exc)
    ):
        return True
    text = str(exc).lower()
    return any(
        s in text
        for s in (
            "connection refused",
            "connection aborted",
            "connection reset",
            "error while fetching server api version",
        )
    )


def _unreachable_reason(exc: BaseException) -> str | None:
    """Why nothing answers at the engine's address, when that is the failure: no socket file, the
    connection refused, or the socket not ours to open. None when the engine may just be busy."""
    for e in _chain(exc):
        if isinstance(e, FileNotFoundError):
            return "no socket there"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, PermissionError):
            return "permission denied"
    text = str(exc).lower()
    for marker, reason in (
        ("no such file or directory", "no socket there"),
        ("filenotfounderror", "no socket there"),
        ("connection refused", "connection refused"),
        ("permission denied", "permission denied"),
    ):
        if marker in text:
            return reason
    return None


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


_PERMANENT = (
    "could not select device driver",
    "no such file or directory",
    "bind source path does not exist",
    "invalid",
    "not found",
    "no such image",
    "permission denied",
    "unknown runtime",
    "conflict",
    "no space left",
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the engine answered 502/503/504, or a 500 that is not one of the known permanent
    failures, or dropped a connection it had accepted. Not when nothing listens (no socket, refused):
    that lasts until someone starts the engine."""
    from docker.errors import APIError

    if isinstance(exc, APIError):
        status = exc.status_code or 0
        if status in (502, 503, 504):
            return True
        if status == 500:
            return not any(s in explanation(exc).lower() for s in _PERMANENT)
        return False
    return is_connection_error(exc) and _unreachable_reason(exc) is None


def is_not_found(exc: BaseException) -> bool:
    """The engine has no such image or container (a 404)."""
    from docker.errors import NotFound

    return isinstance(exc, NotFound)


def docker_error(exc: BaseException, action: str, *, otherwise: str | None = USE_LOCAL) -> MlperfBertError:
    """A Docker failure while trying to `action`, as one sentence naming what to do; `otherwise` is the
    way around Docker offered last (None where there is none, as for `images build`)."""
    text = explanation(exc)
    low = text.lower()
    or_else = f" or {otherwise}" if otherwise else ""
    unreachable = _unreachable_reason(exc) if is_connection_error(exc) else None
    if (
        "permission denied" in low and ("docker.sock" in low or "connect" in low)
    ) or unreachable == "permission denied":
        return DockerError(
            f"permission denied on the Docker socket while trying to {action}; add your user to the docker group "
            f"(`sudo usermod -aG docker $USER`, then log in again){or_else}"
        )
    if is_connection_error(exc):
        return DockerError(
            f"cannot reach the Docker engine at {engine_address()} to {action} ({unreachable or text}); "
            f"{START_ENGINE}{or_else}"
        )
    if "could not select device driver" in low:
        return PreflightError(
            f"Docker cannot give the container an NVIDIA GPU ({text}); install the NVIDIA Container Toolkit and "
            "restart Docker, or choose a CPU target such as --backend onnxruntime --device cpu"
        )
    if "/dev/kfd" in low or "/dev/dri" in low:
        return PreflightError(
            f"Docker cannot pass the AMD GPU devices to the container ({text}); check that the ROCm driver is "
            "loaded and /dev/kfd and /dev/dri exist, or choose --device cpu"
        )
    if "bind source path does not exist" in low or "invalid mount config" in low:
        return DockerError(
            f"Docker cannot mount a path to {action} ({text}); the model, features and run directory must exist "
            "on the machine that runs the Docker engine"
        )
    if "no space left" in low:
        return DockerError(f"the Docker engine ran out of disk space to {action}; free some with `docker system prune`")
    return DockerError(f"Docker failed to {action} ({text}); check `docker info`, then rerun with -vv for details")


# --- the one retry policy --------------------------------------------------------------------------------
def _default_wait() -> wait_base:
    return wait_exponential(multiplier=0.5, min=0.5, max=4)  # 0.5, 1, 2 s between four attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How every Docker API call is retried on a transient error (tests pass `wait=wait_none()`)."""

    attempts: int = 4
    wait: wait_base = field(default_factory=_default_wait)

    def retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=self.wait,
            reraise=True,
            before_sleep=_log_retry,
        )


DEFAULT_RETRY = RetryPolicy()


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("transient Docker API error (%s); retrying in %.1f s", explanation(exc) if exc else "?", wait)


def call(
    action: str,
    fn: Callable[[], T],
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    missing_image: Callable[[], MlperfBertError] | None = None,
    otherwise: str | None = USE_LOCAL,
) -> T:
    """fn() with retries for transient Docker API errors; any other failure becomes one sentence
    (`missing_image()` for an image the engine does not have, when given)."""
    try:
        return retry.retrying()(fn)
    except MlperfBertError:
        raise
    except Exception as exc:
        if missing_image is not None:
            from docker.errors import ImageNotFound

            if isinstance(exc, ImageNotFound):
                raise missing_image() from exc
        raise docker_error(exc, action, otherwise=otherwise) from exc


# --- connecting ----------------------------------------------------------------------------------------
def connect(
    action: str,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout: float | None = None,
    otherwise: str | None = USE_LOCAL,
) -> Any:
    """A docker client (from DOCKER_HOST, else the local socket) whose engine has answered a ping."""

    def attempt() -> Any:
        import docker

        client = docker.from_env(timeout=timeout) if timeout is not None else docker.from_env()
        client.ping()
        return client

    return call(action, attempt, retry=retry, otherwise=otherwise)


def docker_unusable(target: Target) -> str | None:
    """Why the auto runner cannot use Docker for this target (no engine, no image), or None when it can."""
    try:
        client = connect("choose the runner", timeout=3)
    except MlperfBertError:
        return "no Docker engine answers"
    image = f"{target.image}:latest"
    try:
        call("inspect the image", lambda: client.images.get(image))
    except MlperfBertError:  # missing, or any other failure: not usable, and auto falls back to local
        return f"no image {image}"
    return None


def docker_available(target: Target) -> bool:
    """True when a Docker engine answers and the target's image is present (the auto runner choice)."""
    return docker_unusable(target) is None
