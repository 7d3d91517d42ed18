"""Every chart the project draws: the tune sweep, throughput bars across runs, latency distributions.

One place draws, two outputs: `tune` saves the sweep as throughput.png, `mlperf-bert report` inlines every
chart as SVG in its page. matplotlib (the `plot` extra), not hand-written SVG: `tune` needs a PNG, which
hand-written SVG cannot give without a rasteriser, and matplotlib's axes (ticks, log scales, legends) are
what a hand-made SVG would have to re-implement. The SVG keeps its text as text (`svg.fonttype: none`),
in the viewer's own sans-serif: no font or file is referenced, so the page needs no network, and its
numbers can be searched and copied. Without matplotlib each function returns None and says so once.

The functions take plain data (no run records), so that neither the tuning workflow nor the report
depends on the other.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

Format = Literal["png", "svg"]
INSTALL_HINT = "pip install 'mlperf-bert[plot]'"
TEST_MODE_TAG = "TEST MODE"
_warned = False


@dataclass(frozen=True)
class SweepPoint:
    batch_size: int
    samples_per_second: float


@dataclass(frozen=True)
class Bar:
    label: str  # one run
    group: str  # the target (backend-device): one colour each
    value: float  # samples/s
    test_mode: bool
    reference: bool = False  # the reference SUT's figure (hatched)


@dataclass(frozen=True)
class LatencySeries:
    label: str
    latencies_ms: Sequence[float]
    test_mode: bool


def _pyplot() -> Any | None:
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            log.warning("matplotlib is not installed (%s); no charts drawn", INSTALL_HINT)
            _warned = True
        return None
    plt.rcParams["svg.fonttype"] = "none"  # text stays text, no embedded or referenced font
    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["svg.hashsalt"] = "mlperf-bert"  # stable ids: the same data gives the same page
    return plt


def _finish(plt: Any, fig: Figure, fmt: Format) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)
    return buf.getvalue()


def sweep_chart(
    series: dict[str, list[SweepPoint]],
    *,
    title: str,
    chosen: tuple[str, SweepPoint] | None = None,
    fmt: Format = "png",
) -> bytes | None:
    """samples/s against batch size (log2 axis), one line per series (threads, instances, precision); the
    y-axis from zero (a 10% drop is not a cliff), the chosen point ringed. None without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, points in series.items():
        pts = sorted(points, key=lambda p: p.batch_size)
        ax.plot([p.batch_size for p in pts], [p.samples_per_second for p in pts], marker="o", label=label)
    if chosen is not None:
        label, point = chosen
        ax.scatter(
            [point.batch_size],
            [point.samples_per_second],
            s=220,
            facecolors="none",
            edgecolors="crimson",
            linewidths=2,
            zorder=5,
            label=f"chosen: batch {point.batch_size}, {point.samples_per_second:.1f} samples/s",
        )
    ax.set_xscale("log", base=2)
    sizes = sorted({p.batch_size for pts in series.values() for p in pts})
    if sizes:
        ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_ylim(bottom=0)
    top = max((p.samples_per_second for pts in series.values() for p in pts), default=0.0)
    if top > 0:
        ax.set_ylim(0, top * 1.12)
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples / s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="lower right")
    return _finish(plt, fig, fmt)


def throughput_bars(bars: Sequence[Bar], *, title: str, fmt: Format = "svg") -> bytes | None:
    """One horizontal bar per run, coloured by target, the reference SUT's hatched, test-mode runs tagged."""
    plt = _pyplot()
    if plt is None or not bars:
        return None
    groups = list(dict.fromkeys(b.group for b in bars))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.42 * len(bars)), dpi=100)
    ys = list(range(len(bars)))[::-1]
    top = max(b.value for b in bars) or 1.0
    for y, b in zip(ys, bars, strict=True):
        ax.barh(
            y,
            b.value,
            color=colours[b.group],
            hatch="//" if b.reference else None,
            edgecolor="black" if b.reference else colours[b.group],
            alpha=0.85,
        )
        tag = (
            f"  {b.value:.1f}"
            + ("  reference SUT" if b.reference else "")
            + (f"  [{TEST_MODE_TAG}]" if b.test_mode else "")
        )
        ax.text(b.value, y, tag, va="center", fontsize=8)
    ax.set_yticks(ys, [b.label for b in bars], fontsize=8)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("samples / s")
    ax.set_title(title, fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    ax.legend(handles, groups, fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return _finish(plt, fig, fmt)


def latency_histogram(
    series: LatencySeries, *, bound_ms: float | None, source: str, percentiles_ms: dict[str, float], fmt: Format = "svg"
) -> bytes | None:
    """The per-query latencies of one run as a histogram, LoadGen's p90/p99 dashed, the scenario's bound red."""
    plt = _pyplot()
    if plt is None:
        return None
    values = [v for v in series.latencies_ms if v == v]  # NaN: a sample never completed
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    if values:
        ax.hist(values, bins=min(60, max(10, len(values) // 5)), color="#4c72b0", alpha=0.85)
    for name, align in (("90", "right"), ("99", "left")):
        if name in percentiles_ms:
            ax.axvline(percentiles_ms[name], color="#555555", linestyle="--", linewidth=1)
            top = ax.get_ylim()[1] * 0.92
            ax.text(percentiles_ms[name], top, f" p{name} (LoadGen) ", fontsize=7, color="#333333", ha=align)
    if bound_ms is not None:
        ax.axvline(bound_ms, color="crimson", linewidth=2)
        ax.text(bound_ms, ax.get_ylim()[1] * 0.75, f" bound {bound_ms:g} ms", fontsize=8, color="crimson")
    right = max([*values, *percentiles_ms.values(), bound_ms or 0.0, 1.0])
    ax.set_xlim(0, right * 1.15)
    ax.set_xlabel(f"latency (ms): {source}")
    ax.set_ylabel("samples")
    tag = f" [{TEST_MODE_TAG}]" if series.test_mode else ""
    ax.set_title(f"{series.label}: {len(values)} samples{tag}", fontsize=9)
    ax.grid(True, alpha=0.3)
    return _finish(plt, fig, fmt)


_PROLOG = re.compile(rb"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(rb"<metadata>.*?</metadata>\s*", re.DOTALL)


def inline_svg(svg: bytes) -> str:
    """matplotlib's SVG file as an element for an HTML page: without its XML prolog, DOCTYPE and RDF
    metadata (namespace URIs that point outside, though nothing fetches them)."""
    return _METADATA.sub(b"", _PROLOG.sub(b"", svg, count=1), count=1).decode("utf-8")
