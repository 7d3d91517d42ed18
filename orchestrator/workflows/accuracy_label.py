"""Whether a run's reduced precision (int8, bf16) has a passing accuracy check: the label of its record.

A model or engine that trades precision for speed is trusted only where a check says its accuracy holds:
the record `accuracy_check.json` that `tune --int8` writes beside an int8 model (orchestrator/workflows/
int8.py), or the catalogue's measured reference accuracy of that very model. Anything else (an int8 or
bf16 that the engine made itself at load time, a random-weight speed model) is labelled UNCHECKED in the
run's summary and run.json, and `submission generate` refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECK_FILE = "accuracy_check.json"
UNCHECKED = "accuracy unchecked"
REDUCED = ("int8", "bf16", "fp16")


def engine_precision(engine_settings: dict[str, str]) -> str | None:
    """The precision the engine says it ran (its settings' `precision`, e.g. "bf16 (auto)"), if it says."""
    text = engine_settings.get("precision", "").strip()
    return text.split()[0].lower() if text else None


def accuracy_check_label(engine_settings: dict[str, str], model_meta: dict[str, Any], model_path: Path) -> str | None:
    """None for full precision; "passed: ..." with a passing check; else UNCHECKED."""
    ran = engine_precision(engine_settings)
    precision = ran or str(model_meta.get("precision") or "").lower()
    if precision not in REDUCED:
        return None
    record = model_path.parent / CHECK_FILE
    try:
        check = json.loads(record.read_text())
    except (OSError, ValueError):
        check = None
    if isinstance(check, dict) and check.get("passed") is True and (ran in (None, "int8")):
        return f"passed ({record})"
    if ran is None and model_meta.get("reference_f1") is not None:
        return None  # a catalogue model whose own accuracy is measured and recorded (e.g. the embedded demo-int8)
    return UNCHECKED
