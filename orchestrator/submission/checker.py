"""`mlperf-bert submission check DIR`: the project's own checker.

It implements the rules of ../shared/docs/MLPERF_RULES.md as read from the official checker
(mlcommons/inference tools/submission/submission_checker/ for v6.x and tools/submission/submission_checker.py
for v5.x) and is stricter where the official one lets things through in the open division (an unparsable
accuracy line, a missing hash, LoadGen errors in the performance log). Every problem is one finding that
names its file; a test-mode submission gets the verdict "test-mode", never "valid".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.submission.check_results import ScenarioCheck
from orchestrator.submission.findings import CheckReport, Collector, FullLogs, ResultRow
from orchestrator.submission.layout import Layout
from orchestrator.submission.rules import (
    CLOSED_REQUIRED_SCENARIOS,
    DEFAULT_VERSION,
    DIVISIONS,
    MAX_FILE_BYTES,
    MLPERF_MODELS,
    MODEL_MAPPING,
    SCENARIOS,
    STATUSES,
    SYSTEM_INTEGER_KEYS,
    SYSTEM_KEYS,
    SYSTEM_NETWORK_KEY,
    SYSTEM_OPTIONAL_EMPTY,
    SYSTEM_TYPES,
    SYSTEM_TYPES_WITH_EDGE,
    VERSIONS,
)

ROOT_IGNORED_DIRS = (".git", ".github", "assets")  # the official checker skips these at the root


def check_submission(root: Path, version: str = DEFAULT_VERSION, full_logs: list[Path] | None = None) -> CheckReport:
    """Check the tree under root. full_logs: full accuracy logs (from the run directories) to verify each
    accuracy.txt hash against; without them the hash can only be checked for form."""
    if version not in VERSIONS:
        raise ConfigError(f"--mlperf-version {version!r} is not known; choose one of {', '.join(VERSIONS)}")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; pass the submission root (the folder holding open/ or closed/)")
    c = Collector(root=root, full_logs=FullLogs(full_logs or []))
    results: list[ResultRow] = []
    divisions = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            if entry.name in DIVISIONS:
                divisions.append(entry)
            elif entry.name not in ROOT_IGNORED_DIRS:
                c.error(entry, "is not a division folder (open, closed or network); remove it from the root")
        elif not entry.name.endswith((".md", ".pdf")):
            c.error(entry, "only .md and .pdf files may sit next to the division folders; remove it")
    if not divisions:
        c.error(root, "holds no division folder (open/ or closed/); pass the submission root")
    for division in divisions:
        for entry in sorted(division.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                c.error(entry, "a division folder may only hold submitter folders; remove it")
            else:
                results += check_submitter(c, Layout(root, division.name, entry.name, version))
    return CheckReport(root=root, version=version, findings=c.findings, results=results)


def check_hygiene(c: Collector, top: Path) -> None:
    """No dot files, spaces, __pycache__, empty folders, links that are broken or lead out, or files over 50 MB."""
    root = c.root.resolve()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        here = Path(dirpath)
        if not dirnames and not filenames:
            c.error(here, "is an empty folder; remove it")
        for name in sorted(dirnames + filenames):
            path = here / name
            if name.startswith("."):
                c.error(path, "dot files and folders are not allowed in a submission; remove it")
            if " " in name:
                c.error(path, "names with spaces are not allowed in a submission; rename it")
            if name == "__pycache__":
                c.error(path, "__pycache__ folders are not allowed in a submission; remove it")
            if path.is_symlink():
                target = path.resolve()
                if not target.exists():
                    c.error(path, "is a broken symbolic link; replace it with the file")
                elif root not in target.parents and target != root:
                    c.error(path, "is a symbolic link that leads out of the submission; copy the file in instead")
            elif name in filenames and path.stat().st_size > MAX_FILE_BYTES:
                c.error(path, f"is {path.stat().st_size // (1 << 20)} MB; files over 50 MB are not allowed")
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]


def load_model_mapping(c: Collector, lay: Layout) -> dict[str, str]:
    path = lay.model_mapping()
    if not path.exists():
        return {}
    if lay.division != "open":
        c.error(
            path,
            "model_mapping.json is only read in the open division; the closed division needs "
            f"the official model names ({', '.join(MLPERF_MODELS)})",
        )
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        c.error(path, "is not valid JSON; it must map custom model names to MLPerf model names")
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        c.error(path, "must be a JSON object mapping custom model names to MLPerf model names")
        return {}
    return data


def check_system_json(c: Collector, lay: Layout, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except ValueError:
        c.error(path, "is not valid JSON")
        return {}
    if not isinstance(data, dict):
        c.error(path, "must be a JSON object")
        return {}
    for key in SYSTEM_KEYS:
        if key not in data:
            c.error(path, f"field {key} is missing")
        elif key not in SYSTEM_OPTIONAL_EMPTY and not data[key]:
            c.error(path, f"field {key} is empty; it needs a meaningful value")
    for key in sorted(set(data) - set(SYSTEM_KEYS) - {SYSTEM_NETWORK_KEY}):
        c.note(path, f"field {key} is not one of the 35 system keys (the official checker warns about it)")
    if SYSTEM_NETWORK_KEY in data and lay.division != "network":
        c.error(
            path,
            f"field {SYSTEM_NETWORK_KEY} makes the official checker require the network-division fields; "
            "remove it outside the network division",
        )
    status = str(data.get("status", "")).lower()
    if status not in STATUSES:
        c.error(path, f"status {data.get('status')!r} is not one of {', '.join(STATUSES)}")
    system_type = data.get("system_type")
    if system_type not in SYSTEM_TYPES:
        c.error(path, f"system_type {system_type!r} is not one of {', '.join(SYSTEM_TYPES)}")
    elif system_type not in SYSTEM_TYPES_WITH_EDGE:
        c.error(
            path,
            f"system_type {system_type!r} has no bert results since v5.0 (bert is an edge benchmark); "
            "use edge or datacenter,edge",
        )
    if str(data.get("submitter", "")).lower() != lay.submitter.lower():
        c.error(path, f"submitter {data.get('submitter')!r} differs from the folder name {lay.submitter!r}")
    if data.get("division") != lay.division:
        c.error(path, f"division {data.get('division')!r} differs from the folder name {lay.division!r}")
    for key in SYSTEM_INTEGER_KEYS:
        if key in data and not str(data[key]).isdigit():
            c.error(path, f'{key} {data[key]!r} must be an integer written as a string, e.g. "1"')
    return data


def check_submitter(c: Collector, lay: Layout) -> list[ResultRow]:
    sub = lay.submitter_dir
    check_hygiene(c, sub)
    src, other = ("src", "code") if lay.v6 else ("code", "src")
    if not (sub / src).is_dir():
        hint = (
            f" (this looks like the {'v5.x' if lay.v6 else 'v6.x'} layout; check with the matching --mlperf-version)"
            if (sub / other).is_dir()
            else ""
        )
        c.error(sub / src, f"the {src}/ folder is missing; {lay.version} submissions must include their source{hint}")
    systems_dir, results_dir = sub / "systems", sub / "results"
    for d in (systems_dir, results_dir):
        if not d.is_dir():
            c.error(d, f"the {d.name}/ folder is missing")
    if not results_dir.is_dir():
        return []
    mapping = load_model_mapping(c, lay)
    results_systems = sorted(p.name for p in results_dir.iterdir() if p.is_dir())
    if systems_dir.is_dir():
        for sj in sorted(systems_dir.glob("*.json")):
            if sj.stem not in results_systems:
                c.error(sj, "describes a system that has no results/ folder; remove it or add its results")
    rows: list[ResultRow] = []
    for system in results_systems:
        sj = lay.system_json(system)
        if not sj.is_file():
            c.error(sj, f"is missing; every results/{system}/ needs systems/{system}.json")
            system_json: dict[str, Any] = {}
        else:
            system_json = check_system_json(c, lay, sj)
        for model_dir in sorted(p for p in (results_dir / system).iterdir() if p.is_dir()):
            rows += check_model(c, lay, system, model_dir, mapping, system_json)
    return rows


def check_model(
    c: Collector, lay: Layout, system: str, model_dir: Path, mapping: dict[str, str], system_json: dict[str, Any]
) -> list[ResultRow]:
    model = model_dir.name
    mlperf_model = model if model in MLPERF_MODELS else mapping.get(model)
    if mlperf_model not in MLPERF_MODELS:
        if lay.division == "open":
            c.error(
                model_dir,
                f"model {model!r} is not {' or '.join(MLPERF_MODELS)}; map it in "
                f'{MODEL_MAPPING} (e.g. {{"{model}": "bert-99"}})',
            )
        else:
            c.error(
                model_dir, f"model {model!r} is not allowed in the closed division; use {' or '.join(MLPERF_MODELS)}"
            )
        return []
    assert mlperf_model is not None
    scenarios = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
    rows = []
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            c.error(model_dir / scenario, f"{scenario!r} is not a scenario ({', '.join(SCENARIOS)})")
            continue
        if lay.division == "closed" and scenario not in CLOSED_REQUIRED_SCENARIOS:
            c.error(
                model_dir / scenario,
                f"bert is an edge benchmark: the closed division accepts only "
                f"{' and '.join(CLOSED_REQUIRED_SCENARIOS)}",
            )
            continue
        row = ScenarioCheck(c, lay, system, model, mlperf_model, scenario, system_json).run()
        if row is not None:
            rows.append(row)
    if lay.division == "closed":
        for scenario in CLOSED_REQUIRED_SCENARIOS:
            if scenario not in scenarios:
                c.error(
                    model_dir / scenario,
                    f"the closed division needs both {' and '.join(CLOSED_REQUIRED_SCENARIOS)} "
                    f"for bert; {scenario} is missing",
                )
    return rows
