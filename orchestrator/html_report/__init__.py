"""`mlperf-bert report`: runs, tune sweeps and submissions as one self-contained HTML page.

    from orchestrator.html_report import write_report
    summary = write_report([Path("runs"), Path("runs/tune-...")], Path("report.html"))

sources.py reads the folders (never raising on a malformed one: it is named on the page and skipped),
page.py writes the page, orchestrator.plots draws its charts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.html_report.page import GENERATOR, render
from orchestrator.html_report.sources import Skipped, Sources, collect

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


@dataclass
class ReportSummary:
    path: Path
    runs: int
    tunes: int
    submissions: int
    skipped: list[Skipped] = field(default_factory=list)


def write_report(inputs: list[Path], output: Path, *, title: str | None = None) -> ReportSummary:
    """Read every input and write the page to `output` (atomically); returns what it holds."""
    if not inputs:
        raise ConfigError("the report needs at least one run, runs, tune or submission folder; pass one or more")
    if output.is_dir():
        raise ConfigError(f"{output} is a folder; pass the page's file name with -o, e.g. -o {output / REPORT_FILE}")
    absent = [p for p in inputs if not Path(p).exists()]
    if len(absent) == len(inputs):
        raise ConfigError(
            f"{absent[0]} does not exist{' (nor any other input)' if len(absent) > 1 else ''}; pass run, runs, tune "
            "or submission folders that exist"
        )
    if output.exists() and not _is_our_page(output):
        raise ConfigError(
            f"{output} exists and is not a page this command wrote; pass a new file name with -o (it replaces only "
            "its own reports)"
        )
    sources: Sources = collect(inputs)
    for skipped in sources.skipped:
        log.warning("report: skipped %s: %s", skipped.path, skipped.reason)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        text = render(sources, output, inputs=inputs, title=title or "MLPerf BERT report")
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as e:
        raise ConfigError(f"cannot write the report {output} ({e.strerror}); choose another path with -o") from None
    return ReportSummary(output, len(sources.runs), len(sources.tunes), len(sources.submissions), sources.skipped)


def _is_our_page(path: Path) -> bool:
    """An earlier page of write_report, which it may replace: its generator tag in the first 2 KB, or (a page
    of a version before the tag) its DOCTYPE and its no-fetch content policy."""
    try:
        with path.open("rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    if f"<meta name='generator' content='{GENERATOR}'>".encode() in head:
        return True
    return head.startswith(b"<!DOCTYPE html>") and b"default-src 'none'; style-src 'unsafe-inline'; " in head


__all__ = ["REPORT_FILE", "ReportSummary", "write_report"]
