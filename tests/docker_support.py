"""What the docker-marked tests share: the engine, the base image, and a backend image built here when it
is missing (a fresh machine has none). Each skips with its reason, or fails in CI
(MLPERF_BERT_REQUIRE_DOCKER=1), where the docker tests must run.

`images.build_image` on an unchanged tree is a matter of seconds once Docker's layer cache holds it, so a
test module can ask for an image without depending on another module having built it first."""

from __future__ import annotations

import os
from typing import Any

import pytest

from orchestrator.containers import images

REQUIRE = os.environ.get("MLPERF_BERT_REQUIRE_DOCKER") == "1"
BASES = ("mlperf-bert/base:bookworm", "python:3.11-slim-bookworm")


def unavailable(reason: str) -> None:
    """Skip with the reason; in CI (MLPERF_BERT_REQUIRE_DOCKER=1) fail instead."""
    if REQUIRE:
        pytest.fail(f"{reason} (MLPERF_BERT_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def docker_client(timeout: int = 120) -> Any:
    """A client of the Docker engine that answers here."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine here
        unavailable(f"no Docker engine answers ({type(exc).__name__}); start one with `bash .ci/docker-setup.sh`")
    return client


def base_image(client: Any) -> str:
    """The local base image (.ci/docker-setup.sh), else the public one if it is here."""
    import docker

    for ref in (os.environ.get("MLPERF_BERT_BASE_IMAGE"), *BASES):
        if not ref:
            continue
        try:
            client.images.get(ref)
            return ref
        except docker.errors.ImageNotFound:
            continue
    unavailable(f"none of the base images {', '.join(BASES)} is present; make one with `bash .ci/docker-setup.sh`")
    raise AssertionError("unreachable")


def ensure_image(client: Any, key: str) -> str:
    """`mlperf-bert/<key>:latest`, built from images/<key> on the local base image when it is absent."""
    import docker

    recipe = images.get_recipe(key)
    ref = f"{recipe.repository}:latest"
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        images.build_image(recipe, client=client, base_image=base_image(client), on_step=lambda line: None)
    return ref
