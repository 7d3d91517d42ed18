"""One exception hierarchy. Every message is one sentence: what is wrong, then what to do.

Only the CLI edge (cli.py) catches these; library code raises them and lets them travel.
"""

from __future__ import annotations

# How a child process of ours (e.g. the int8 quantizer) writes its one error sentence on stderr, so that the
# parent passes that sentence on as it is, not the child's log lines.
CHILD_ERROR_PREFIX = "mlperf-bert child error: "


class MlperfBertError(Exception):
    """Base of every error this tool reports to a user."""

    exit_code = 1


class ConfigError(MlperfBertError):
    """An option or config file value is invalid."""

    exit_code = 2


class DatasetError(MlperfBertError):
    """The SQuAD file or the vocabulary is missing, malformed or does not match."""

    exit_code = 2


class ModelError(MlperfBertError):
    """The model is missing, corrupt, or does not have the MLPerf BERT interface."""

    exit_code = 2


class AssetError(MlperfBertError):
    """An asset cannot be fetched, verified or imported."""


class UnknownAssetError(AssetError):
    """A name the catalogue does not hold: a bad value the user typed, so the exit code of one (2)."""

    exit_code = 2


class RunError(MlperfBertError):
    """The benchmark run itself failed (harness crash, LoadGen error, interrupted)."""


class RunInterrupted(RunError):
    """The run was interrupted (Ctrl-C, SIGTERM, SIGHUP); its directory is marked interrupted and keeps its logs.

    The exit code is the shell's for the signal: 128 + its number (130 for SIGINT, 143 SIGTERM, 129 SIGHUP)."""

    exit_code = 130

    def __init__(self, message: str, *, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class DockerError(MlperfBertError):
    """The Docker engine is unreachable, an image is missing, or a container failed."""


class PreflightError(MlperfBertError):
    """Something the run needs is not available on this machine (GPU, execution provider, CPU feature)."""

    exit_code = 2


class SubmissionError(MlperfBertError):
    """A submission cannot be generated, or a checked submission breaks a rule."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none): what a one-sentence error
    quotes of a library's multi-line report."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
