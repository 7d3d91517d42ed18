"""Runners: the same harness entry point, in this environment (local) or in a container (docker)."""
