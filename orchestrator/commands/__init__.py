"""Typer sub-apps mounted by orchestrator/cli.py (one module per command group, each exposing `app`)."""
