"""The report as one HTML page: inline CSS, inline SVG charts (orchestrator.plots), no script, no font,
no file or address fetched when it is opened. Links to each run's files are relative to the page and
only followed on a click, so the page reads whole on its own (sent by mail, say).

Every value from a record is escaped; test-mode results carry the label on every row and chart.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator import __version__, plots
from orchestrator.html_report.sources import RunView, Sources, SubmissionView, TuneView
from orchestrator.mlperf import SERVER_TARGET_LATENCY_MS, Scenario
from orchestrator.submission.rules import TEST_MODE_LABEL

LATENCY_SOURCE = "the SUT's issue-to-complete time per sample (sut_latencies.npy), not LoadGen's trace"
KNOWN_STATUSES = ("succeeded", "failed", "interrupted", "abandoned", "running", "created")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 1.5em auto;
  max-width: 1400px; padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
  border-bottom: 1px solid #ddd; padding-bottom: .2em; } h3 { font-size: 1em; }
.meta { color: #555; font-size: .9em; }
table { border-collapse: collapse; font-size: .82em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .45em; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 0 .4em; border-radius: .3em; font-size: .85em; font-weight: 600; }
.test { background: #fff3cd; color: #7a5a00; border: 1px solid #e5c65c; }
.valid { background: #d8f3dc; color: #1b5e20; }
.st-succeeded { color: #1b5e20; font-weight: 600; } .st-failed { color: #b00020; font-weight: 600; }
.st-interrupted, .st-abandoned { color: #a15c00; font-weight: 600; } .st-other { color: #555; font-weight: 600; }
.banner { background: #fff3cd; border: 1px solid #e5c65c; padding: .5em .8em; border-radius: .3em; margin: .8em 0; }
.skipped { background: #fdecea; border: 1px solid #f5c2c0; padding: .5em .8em; border-radius: .3em; }
.settings { font-size: .8em; color: #333; min-width: 12em; max-width: 16em; }
.files { font-size: .8em; margin-top: .2em; } .files a { margin-right: .4em; white-space: nowrap; }
.err { font-size: .85em; }
.run { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; display: inline-block; min-width: 13em; }
.wide { overflow-x: auto; } td .meta { font-size: .85em; }
.err { color: #b00020; max-width: 28em; } figure { margin: .8em 0; } figcaption { font-size: .85em; color: #444; }
svg { max-width: 100%; height: auto; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _badge(test_mode: bool) -> str:
    if test_mode:
        return f'<span class="badge test" title="{_e(TEST_MODE_LABEL)}">TEST MODE</span>'
    return '<span class="badge valid">valid</span>'


def _status(status: str) -> str:
    cls = f"st-{status}" if status in KNOWN_STATUSES else "st-other"
    return f'<span class="{cls}">{_e(status)}</span>'


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Cells are HTML already (escaped by their makers)."""
    out = ["<table><thead><tr>", *(f"<th>{h}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _link(target: Path, page_dir: Path, text: str) -> str:
    rel = os.path.relpath(target, page_dir)
    return f'<a href="{_e(Path(rel).as_posix())}">{_e(text)}</a>'


def _figure(svg: bytes | None, caption: str) -> str:
    if svg is None:
        return f'<p class="meta">(chart not drawn: matplotlib is not installed; {_e(plots.INSTALL_HINT)})</p>'
    return f"<figure>{plots.inline_svg(svg)}<figcaption>{caption}</figcaption></figure>"


# ---- runs ------------------------------------------------------------------------------------------------
def _f1_cell(run: RunView) -> str:
    if run.f1 is None:
        return "–"
    text = _num(run.f1, 2)
    if run.f1_ratio is not None and run.reference_f1:
        text += f'<div class="meta">{run.f1_ratio * 100:.1f}% of {run.reference_f1:g}</div>'
    if run.accuracy_partial:
        text += ' <span class="meta" title="scored over part of the dev set: indicative only">partial</span>'
    return text


def runs_table(runs: list[RunView], page_dir: Path) -> str:
    rows = []
    for r in runs:
        pct = r.percentiles_ms
        settings = "; ".join(f"{_e(k.replace('_', ' '))} {_e(v)}" for k, v in r.engine_settings.items())
        model = _e(r.model) + (f" ({_e(r.precision)})" if r.precision else "") + (" DEMO" if r.demo else "")
        files = " ".join(_link(r.directory / f, page_dir, Path(f).name) for f in r.files)
        valid = "" if r.loadgen_valid is None else (" LoadGen VALID" if r.loadgen_valid else " LoadGen INVALID")
        rows.append(
            [
                _td(f'<span class="run" id="run-{_e(r.name)}">{_e(r.name)}</span><div class="files">{files}</div>'),
                _td(_status(r.status) + (f'<div class="err">{_e(r.error)}</div>' if r.error else "")),
                _td(
                    _e(r.target)
                    + f'<div class="meta">{_e(r.runner)} runner'
                    + (f", {_e(r.execution_provider)}" if r.execution_provider else "")
                    + "</div>"
                ),
                _td(_e(r.scenario) + f'<div class="meta">{_e("+".join(r.modes))}, {_e(r.sut)} SUT</div>'),
                _td(_badge(r.test_mode) + (f'<div class="meta">{valid}</div>' if valid else "")),
                _td(model),
                _td(_num(r.samples_per_second), "num"),
                *(_td(_num(pct.get(p)), "num") for p in ("50", "90", "99")),
                _td(_f1_cell(r), "num"),
                _td(settings, "settings"),
            ]
        )
    head = [
        "run (files)",
        "status",
        "target / runner",
        "scenario / mode",
        "test / valid",
        "model",
        "samples/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "F1 (of reference)",
        "engine settings",
    ]
    return _table(head, rows)


def throughput_section(runs: list[RunView]) -> str:
    measured = [r for r in runs if r.samples_per_second is not None]
    if not measured:
        return '<p class="meta">No run in the report has a performance result.</p>'
    bars = [
        plots.Bar(
            label=r.name + (" (reference SUT)" if r.sut == "reference" else ""),
            group=r.target,
            value=r.samples_per_second or 0.0,
            test_mode=r.test_mode,
            reference=r.sut == "reference",
        )
        for r in measured
    ]
    tag = " [TEST MODE runs tagged]" if any(r.test_mode for r in measured) else ""
    svg = plots.throughput_bars(bars, title=f"samples/s per run{tag}")
    has_ref = any(b.reference for b in bars)
    caption = "One bar per run with a performance result, coloured by target; " + (
        "hatched bars are the reference SUT (batch 1, padded to 384)."
        if has_ref
        else "no reference-SUT run is among the inputs (`--sut reference` makes one)."
    )
    return _figure(svg, caption)


def latency_section(runs: list[RunView]) -> str:
    parts = []
    for r in runs:
        if r.samples_per_second is None and r.latencies_ms is None:
            continue
        bound = SERVER_TARGET_LATENCY_MS if r.scenario == Scenario.Server else None
        if r.latencies_ms is None or r.latencies_ms.size == 0:
            pct = ", ".join(f"p{k} {_num(v)} ms" for k, v in r.percentiles_ms.items())
            parts.append(
                f"<h3>{_e(r.name)} {_badge(r.test_mode)}</h3><p class='meta'>No per-sample latencies were "
                f"recorded for this run (made before the SUT kept them); LoadGen's percentiles: {_e(pct) or '–'}.</p>"
            )
            continue
        svg = plots.latency_histogram(
            plots.LatencySeries(f"{r.name} ({r.scenario})", r.latencies_ms.tolist(), r.test_mode),
            bound_ms=bound,
            source="SUT issue-to-complete",
            percentiles_ms=r.percentiles_ms,
        )
        note = f" The red line is the {r.scenario} latency bound ({bound:g} ms)." if bound is not None else ""
        parts.append(
            f"<h3>{_e(r.name)} {_badge(r.test_mode)}</h3>"
            + _figure(svg, f"Latency distribution: {_e(LATENCY_SOURCE)}; dashed: LoadGen's p90/p99.{_e(note)}")
        )
    return "".join(parts) or '<p class="meta">No run in the report has a performance pass.</p>'


# ---- tune ------------------------------------------------------------------------------------------------
def _trial_series(t: dict[str, Any], tune: TuneView) -> str:
    run_dir = str(t.get("run_dir") or "")
    instances = t.get("instances_ran") or tune.instances_ran.get(run_dir) or t.get("instances") or "default"
    precision = tune.precision.get(run_dir)
    label = f"threads {t.get('threads') or 'auto'}, instances {instances}"
    options = t.get("options")  # the swept engine options (tune --sweep-option)
    swept = "".join(f", {k}={v}" for k, v in options.items()) if isinstance(options, dict) else ""
    return label + swept + (f", {precision}" if precision else "")


def tune_section(tune: TuneView, page_dir: Path) -> str:
    series: dict[str, list[plots.SweepPoint]] = {}
    chosen = None
    best = tune.best
    for t in tune.trials:
        rate = t.get("samples_per_second")
        if t.get("error") is None and isinstance(rate, int | float) and isinstance(t.get("batch_size"), int):
            point = plots.SweepPoint(t["batch_size"], float(rate))
            series.setdefault(_trial_series(t, tune), []).append(point)
            if best is not None and t.get("run_dir") == best.get("run_dir"):
                chosen = (_trial_series(t, tune), point)
    samples = f", {tune.samples_per_trial} samples per trial" if tune.samples_per_trial else ""
    svg = plots.sweep_chart(series, title=f"{tune.title}\nTEST MODE (short runs){samples}", chosen=chosen, fmt="svg")
    rows = []
    for t in tune.trials:
        is_best = best is not None and t.get("run_dir") == best.get("run_dir")
        rate = t.get("samples_per_second")
        run_dir = t.get("run_dir")
        if t.get("error"):
            check = "– (trial failed)"
        elif t.get("rejected"):
            check = f"failed: {_e(t['rejected'])}"
        elif t.get("accepted"):
            check = _e(t["accepted"])
        else:
            check = "none (performance-only trial)"
        rows.append(
            [
                _td(_e(t.get("batch_size")), "num"),
                _td(_e(_trial_series(t, tune))),
                _td(
                    (_num(rate) if isinstance(rate, int | float) else f'<span class="err">{_e(t.get("error"))}</span>')
                    + (" <b>chosen</b>" if is_best else ""),
                    "num",
                ),
                _td(_num(t.get("p99_latency_ms"), 1), "num"),
                _td(_badge(True)),
                _td(check),
                _td(_link(Path(run_dir), page_dir, Path(run_dir).name) if isinstance(run_dir, str) else "–"),
            ]
        )
    table = _table(["batch", "series", "samples/s", "p99 ms", "test / valid", "accuracy check", "run"], rows)
    head = f"<h3>{_e(tune.title)} {_badge(True)}</h3><p class='meta'>{_e(tune.directory)}{_e(samples)}</p>"
    caption = "samples/s against batch size per thread/instance count and precision; the ringed point is chosen."
    return head + _figure(svg, caption) + table


# ---- submissions -----------------------------------------------------------------------------------------
def submission_section(sub: SubmissionView) -> str:
    parts = [f"<p class='meta'>{_e(sub.directory)}</p>"]
    for a in sub.attempts:
        verdict = str(a.get("verdict") or "?")
        label = a.get("label") or (TEST_MODE_LABEL if verdict == "test-mode" else "")
        parts.append(
            f"<h3>attempt {_e(a.get('attempt'))}: checker verdict <b>{_e(verdict)}</b> "
            f"{_badge(verdict == 'test-mode') if verdict in ('test-mode', 'valid') else ''}</h3>"
        )
        if label:
            parts.append(f'<div class="banner">{_e(label)}</div>')
        rows = []
        for rec in a.get("results") or []:
            if not isinstance(rec, dict):
                continue
            acc: dict[str, Any] = rec["accuracy"] if isinstance(rec.get("accuracy"), dict) else {}
            res = rec.get("result")
            rows.append(
                [
                    _td(_e(rec.get("scenario"))),
                    _td(_e(rec.get("system"))),
                    _td(_e(rec.get("model")) + (" DEMO" if rec.get("demo_model") else "")),
                    _td(_num(res, 3) if isinstance(res, int | float) else "–", "num"),
                    _td(_e(rec.get("units"))),
                    _td(_num(acc.get("f1"), 3) if isinstance(acc.get("f1"), int | float) else "–", "num"),
                    _td(
                        _badge(True)
                        if rec.get("validity") == "test-mode"
                        else f'<span class="badge">{_e(rec.get("validity"))}</span>'
                    ),
                ]
            )
        parts.append(_table(["scenario", "system", "model", "result", "units", "F1", "validity"], rows))
        findings = [str(f) for f in a.get("checker_findings") or []]
        if findings:
            parts.append(
                "<details><summary>checker findings ("
                + str(len(findings))
                + ")</summary><ul>"
                + "".join(f"<li>{_e(f)}</li>" for f in findings)
                + "</ul></details>"
            )
    return "".join(parts)


# ---- the page --------------------------------------------------------------------------------------------
GENERATOR = "mlperf-bert report"


def render(sources: Sources, page_path: Path, *, inputs: list[Path], title: str = "MLPerf BERT report") -> str:
    page_dir = page_path.parent.resolve()
    body = [f"<h1>{_e(title)}</h1>"]
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body.append(
        f"<p class='meta'>mlperf-bert {_e(__version__)}, {_e(stamp)}: {len(sources.runs)} run(s), "
        f"{len(sources.tunes)} tune sweep(s), {len(sources.submissions)} submission folder(s) from "
        + ", ".join(f"<code>{_e(p)}</code>" for p in inputs)
        + "</p>"
    )
    tested = any(r.test_mode for r in sources.runs) or bool(sources.tunes)
    tested = tested or any(a.get("verdict") == "test-mode" for s in sources.submissions for a in s.attempts)
    if tested:
        body.append(f'<div class="banner"><b>{_e(TEST_MODE_LABEL)}</b>: rows and charts marked TEST MODE.</div>')
    if sources.skipped:
        items = "".join(f"<li><code>{_e(s.path)}</code>: {_e(s.reason)}</li>" for s in sources.skipped)
        body.append(f'<div class="skipped"><b>Skipped {len(sources.skipped)} input(s)</b><ul>{items}</ul></div>')
    if sources.runs:
        body += ["<h2>Runs</h2>", '<div class="wide">', runs_table(sources.runs, page_dir), "</div>"]
        body += ["<h2>Throughput</h2>", throughput_section(sources.runs)]
        body += ["<h2>Latency</h2>", latency_section(sources.runs)]
    if sources.tunes:
        body.append("<h2>Tune sweeps</h2>")
        body += [tune_section(t, page_dir) for t in sources.tunes]
    if sources.submissions:
        body.append("<h2>Submissions</h2>")
        body += [submission_section(s) for s in sources.submissions]
    if not (sources.runs or sources.tunes or sources.submissions):
        body.append("<p>Nothing to show: no input held a run, a tune sweep or a submission.</p>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<meta name='generator' content='{GENERATOR}'>"  # write_report replaces only pages that say this
        # Nothing may be fetched: no script, no remote style, image or font (the page works offline).
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
