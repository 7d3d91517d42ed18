"""Submissions: the MLPerf tree from run directories, the project's own checker, and the SCC artifacts.

from orchestrator.submission import GenerateOptions, generate_submission, check_submission
"""

from orchestrator.submission.checker import check_submission
from orchestrator.submission.findings import CheckReport, Finding, ResultRow
from orchestrator.submission.generate import GenerateOptions
from orchestrator.submission.submit import SubmissionResult, generate_submission
from orchestrator.submission.system import Overrides

__all__ = [
    "CheckReport",
    "Finding",
    "GenerateOptions",
    "Overrides",
    "ResultRow",
    "SubmissionResult",
    "check_submission",
    "generate_submission",
]
