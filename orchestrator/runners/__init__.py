"""Runners: the same harness entry point in this environment (local) or elsewhere.

`runner.Runner` is the contract every runner implements; `local` runs the harness in a child process
(this environment or a managed backend venv, `venvs`); the Docker runner lives with the rest of the
Docker knowledge in `orchestrator.containers`.
"""
