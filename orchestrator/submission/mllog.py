"""Read a LoadGen detail log (`mlperf_log_detail.txt`): one `:::MLLOG {json}` record per line.

The official checker parses it strictly (an unparsable MLLOG line aborts the check) and, when a key
appears more than once, uses the first value. This reader does the same but records bad lines instead of
raising, so the project's checker can name them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.submission.rules import RESULT_METRIC

MARKER = ":::MLLOG"


@dataclass
class DetailLog:
    path: Path
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bad_lines: list[int] = field(default_factory=list)  # 1-based line numbers

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str, default: Any = None) -> Any:
        values = self.records.get(key)
        return values[0].get("value", default) if values else default

    def errors(self) -> list[str]:
        """The values of every record LoadGen flagged as an error (metadata.is_error)."""
        return [
            str(rec.get("value"))
            for recs in self.records.values()
            for rec in recs
            if (rec.get("metadata") or {}).get("is_error")
        ]


def read_detail_log(path: Path) -> DetailLog:
    log = DetailLog(path=path)
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip()
            if not line.startswith(MARKER):
                continue
            try:
                rec = json.loads(line[len(MARKER) :])
                key = rec["key"]
            except (ValueError, KeyError, TypeError):
                log.bad_lines.append(lineno)
                continue
            log.records.setdefault(str(key), []).append(rec)
    return log


def result_metric(log: DetailLog, scenario: str) -> tuple[float | None, str]:
    """The scenario's headline metric as summary.csv reports it: (value, unit); value None when absent."""

    key, divisor, unit = RESULT_METRIC[scenario]
    raw = log.get(key)
    try:
        return float(raw) / divisor, unit
    except (TypeError, ValueError):
        return None, unit
