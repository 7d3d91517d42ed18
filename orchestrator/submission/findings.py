"""What the project's checker reports: findings (one per problem, naming the file) and result rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.submission.accuracy_files import truncated_bytes

Kind = Literal["error", "test-mode", "note"]


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the submission root
    message: str
    kind: Kind = "error"

    def __str__(self) -> str:
        tag = {"error": "ERROR", "test-mode": "TEST-MODE", "note": "note"}[self.kind]
        return f"{tag} {self.path}: {self.message}"


@dataclass
class ResultRow:
    """One result as the official summary.csv lists it, plus whether it is a test-mode result."""

    division: str
    submitter: str
    system: str
    model: str
    mlperf_model: str
    scenario: str
    result: float | None
    units: str
    exact_match: float | None = None
    f1: float | None = None
    accuracy_samples: int | None = None
    test_mode: bool = False
    valid: bool = False
    system_json: dict[str, Any] = field(default_factory=dict)
    weight_data_types: str = ""
    location: str = ""
    version: str = ""


class FullLogs:
    """Full accuracy logs, found by the truncated copy a submission holds (head + separator + tail)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._by_cut: dict[bytes, Path] | None = None

    def find(self, truncated: bytes) -> Path | None:
        if self._by_cut is None:
            self._by_cut = {truncated_bytes(p): p for p in self.paths if p.is_file()}
        return self._by_cut.get(truncated)


@dataclass
class Collector:
    root: Path
    full_logs: FullLogs = field(default_factory=lambda: FullLogs([]))
    findings: list[Finding] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)

    def error(self, path: Path, message: str) -> None:
        self.findings.append(Finding(self.rel(path), message, "error"))

    def test_mode(self, path: Path, message: str) -> None:
        self.findings.append(Finding(self.rel(path), message, "test-mode"))

    def note(self, path: Path, message: str) -> None:
        self.findings.append(Finding(self.rel(path), message, "note"))


@dataclass
class CheckReport:
    root: Path
    version: str
    findings: list[Finding]
    results: list[ResultRow]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "error"]

    @property
    def test_mode_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "test-mode"]

    @property
    def verdict(self) -> Literal["invalid", "test-mode", "valid"]:
        if self.errors or not self.results:
            return "invalid"
        if self.test_mode_findings or any(r.test_mode for r in self.results):
            return "test-mode"
        return "valid"

    def summary_line(self) -> str:
        n = len(self.results)
        if self.verdict == "invalid":
            return f"INVALID: {len(self.errors)} problem(s) in {self.root} (checked as {self.version})"
        if self.verdict == "test-mode":
            return (
                f"TEST MODE: {n} result(s) follow the {self.version} rules for a short run, but a test-mode "
                "submission is NOT a valid MLPerf result"
            )
        return f"VALID: {n} result(s) follow the {self.version} rules"
