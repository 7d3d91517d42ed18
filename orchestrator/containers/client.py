"""The Docker client: connecting, and whether a usable engine and image are there."""

from __future__ import annotations

from orchestrator.backends import Target


def docker_available(target: Target) -> bool:
    """True when a Docker engine answers and the target's image is present (auto runner choice)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.images.get(f"{target.image}:latest")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable", and auto falls back to local
        return False
