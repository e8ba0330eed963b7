"""The run report: a summary that names the bottleneck, a per-rank timeline (Gantt of leaves:
read, compute, collective waits) and CPU / memory curves per rank.

Two renderings of the same panels: a self-contained HTML file (Bokeh, resources inlined, works
offline) and a PNG (matplotlib, Agg) for terminals and job e-mails. The PNG records its panel
titles and their pixel boxes in the ``hpcframe:panels`` text chunk.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any, cast

from ..io.fs import write_bytes_atomic
from .store import RunProfile, collect, load
from .summary import FORMAT_NAMES, IMBALANCE, TASK_KINDS, planning_times, summarize

__all__ = [
    "summarize",
    "visualize",
    "write_html",
    "write_png",
    "html_layout",
    "png_figure",
    "FORMAT_NAMES",
    "IMBALANCE",
]

PANELS = ("Summary", "Timeline per rank", "CPU % per rank", "Memory (RSS) per rank")
COLORS = {
    "planning": "#8172B3",
    "read": "#4C72B0",
    "compute": "#55A868",
    "agree": "#C44E52",
    "exchange": "#DD8452",
}
RANK_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
Segment = tuple[int, float, float, str]  # (rank, left, right, label) of one timeline bar


def _as_profile(what) -> RunProfile | None:
    if isinstance(what, RunProfile):
        return what
    if isinstance(what, (str, os.PathLike)):
        return load(what)
    items = list(what) if isinstance(what, (list, tuple)) else [what]
    if any(not getattr(p, "root", True) for p in items):
        return None  # not rank 0: the records were gathered there
    return collect(items)


def visualize(profilers, path="report.html"):
    """Write the report of ``profilers`` (a list of :class:`Profiler` /
    :class:`ResourceProfiler`, a :class:`RunProfile`, or a profile directory) to ``path``: a
    self-contained HTML file, or a PNG when ``path`` ends in ``.png``. Returns ``path``; on
    ranks other than 0 (whose records were sent to rank 0) writes nothing and returns None.
    Raises ``TypeError`` for objects that are not profilers.

    Parameters
    ----------
    profilers : list, RunProfile, str or os.PathLike
        :class:`Profiler` / :class:`ResourceProfiler` objects, a :class:`RunProfile`, or a
        profile directory.
    path : str or os.PathLike, default "report.html"
        The report file: HTML, or PNG when it ends in ``.png``.

    Returns
    -------
    str or None
        ``path`` on rank 0; ``None`` on the other ranks.

    Raises
    ------
    TypeError
        For objects that are not profilers.

    Examples
    --------
    >>> with hf.Profiler() as prof:  # doctest: +SKIP
    ...     by_carrier = flights.groupby("carrier").dep_delay.mean().compute()
    >>> hf.visualize([prof], "report.html")  # doctest: +SKIP
    'report.html'
    >>> hf.visualize([prof], "timeline.png")  # doctest: +SKIP
    'timeline.png'
    """
    profile = _as_profile(profilers)
    if profile is None:
        return None
    path = os.fspath(path)
    if path.lower().endswith(".png"):
        return write_png(profile, path)
    return write_html(profile, path)


def _segments(profile: RunProfile) -> dict[str, list[Segment]]:
    """Timeline bars per kind: lists of (rank, left, right, label) in seconds since t0."""
    tasks: Any = profile.tasks  # DataFrames (RunProfile types them as object)
    t = tasks[~tasks["pruned"].astype(bool)] if len(tasks) else tasks
    segs: dict[str, list[Segment]] = {"planning": [], "read": [], "compute": []}
    runs: Any = profile.runs
    if len(runs) and "read_start" in runs:
        for row, planning in zip(runs.itertuples(index=False), planning_times(runs)):
            if planning > 0:
                segs["planning"].append(
                    (
                        int(row.rank),
                        float(row.start),
                        float(row.start) + float(planning),
                        f"planning the scan of {row.source}",
                    )
                )
    for row in t.itertuples(index=False):
        label = f"{row.partition} ({row.rows} rows)"
        segs["read"].append((int(row.rank), float(row.start), float(row.read_end), label))
        segs["compute"].append((int(row.rank), float(row.read_end), float(row.end), label))
    collectives: Any = profile.collectives
    for row in collectives.itertuples(index=False):
        segs.setdefault(str(row.name), []).append(
            (int(row.rank), float(row.start), float(row.end), f"collective {row.name}")
        )
    return segs


def _summary_html(profile: RunProfile, s: dict) -> str:
    meta = profile.meta
    esc = html.escape
    rows = "".join(
        f"<tr><td>{p['rank']}</td><td>{p['leaves']}</td><td>{p['rows']:,}</td>"
        f"<td>{p.get('planning', 0.0):.3f}</td><td>{p['read']:.3f}</td><td>{p['compute']:.3f}</td>"
        f"<td>{p['collective']:.3f}</td></tr>"
        for p in s["per_rank"]
    )
    slow = "".join(
        f"<tr><td>{esc(x['partition'])}</td><td>{x['rank']}</td><td>{x['seconds']:.3f}</td>"
        f"<td>{x['read']:.3f}</td><td>{x['rows']:,}</td></tr>"
        for x in s["slowest"]
    )
    sh = s["shares"]
    return (
        f"<h2>hpcframe run report</h2>"
        f"<p><b>Bottleneck:</b> {esc(s['bottleneck'])}</p>"
        f"<p>{s['ranks']} rank(s) on {esc(', '.join(meta.get('hosts', [])) or '?')}; "
        f"wall {s['wall']:.2f} s (of which planning {s.get('planning', 0.0):.2f} s); "
        f"sources: {esc('; '.join(meta.get('sources', [])))}"
        f"{esc(' (' + ', '.join(s['formats']) + ')') if s.get('formats') else ''}; "
        f"status: {esc(str(meta.get('status', 'ok')))}<br>"
        f"time of all ranks: planning {sh.get('planning', 0.0):.0%}, I/O {sh['io']:.0%}, "
        f"compute {sh['compute']:.0%}, "
        f"communication {sh['communication']:.0%}; load imbalance (slowest / mean busy): "
        f"{s['imbalance']:.2f}</p>"
        f"<table border='1' cellspacing='0' cellpadding='3'><tr><th>rank</th><th>partitions</th>"
        f"<th>rows</th><th>planning s</th><th>read s</th><th>compute s</th><th>collectives s</th></tr>"
        f"{rows}</table>"
        f"<h3>Slowest partitions</h3><table border='1' cellspacing='0' cellpadding='3'>"
        f"<tr><th>partition</th><th>rank</th><th>seconds</th><th>of which read</th>"
        f"<th>rows</th></tr>{slow}</table>"
        f"{_cache_html(profile)}"
    )


# the CacheProfiler's table (issue 14)
def _cache_html(profile: RunProfile) -> str:
    cache: Any = profile.cache
    if cache is None or not len(cache):
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{int(r.rank)}</td><td>{esc(str(r.level))}</td><td>{int(r.hits):,}</td>"
        f"<td>{int(r.misses):,}</td><td>{'' if r.hit_rate != r.hit_rate else f'{r.hit_rate:.0%}'}</td>"
        f"<td>{int(r.uncacheable):,}</td><td>{int(r.bytes):,}</td><td>{int(r.stored):,}</td>"
        f"<td>{int(r.evictions):,}</td><td>{int(r.rejected):,}</td></tr>"
        for r in cache.itertuples(index=False)
    )
    return (
        "<h3>Cache</h3><table border='1' cellspacing='0' cellpadding='3' class='cache'><tr><th>rank</th>"
        "<th>level</th><th>hits</th><th>misses</th><th>hit rate</th><th>uncacheable</th>"
        "<th>bytes served</th><th>bytes stored</th><th>evictions</th><th>rejected</th></tr>"
        f"{rows}</table>"
    )


def write_html(profile: RunProfile, path: str) -> str:
    """Write the Bokeh report of ``profile`` to ``path`` (resources inlined); returns path."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    page = file_html(html_layout(profile), INLINE, title="hpcframe run report")
    return write_bytes_atomic(path, page.encode("utf-8"))


def _legend_above(fig, items) -> None:
    """A horizontal legend of ``items`` ((label, renderer) pairs) *above* the plot area of
    ``fig``, outside it, so that it never covers a bar or a curve."""
    from bokeh.models.annotations.legends import Legend, LegendItem  # = bokeh.models.Legend*

    if not items:
        return
    # bokeh's stub types Legend.padding as Property[Property[int] | ...]; an int is valid
    legend = Legend(
        items=[LegendItem(label=label, renderers=[r]) for label, r in items],
        orientation="horizontal",
        location="top_right",
        margin=2,
        padding=4,  # type: ignore[arg-type]
        spacing=12,
        label_text_font_size="9pt",
        border_line_alpha=0,
    )
    fig.add_layout(legend, "above")


def html_layout(profile: RunProfile):
    """The Bokeh layout of the HTML report (summary, timeline, CPU and memory panels)."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, HoverTool, Range1d
    from bokeh.models.annotations.labels import Title  # = bokeh.models.Title (typed here)
    from bokeh.models.widgets.markups import Div  # = bokeh.models.Div (typed here)
    from bokeh.plotting import figure

    s = summarize(profile)
    nranks = max(int(profile.meta.get("ranks") or 1), s["ranks"], 1)
    res: Any = profile.resources  # a DataFrame (RunProfile types it as object)
    end = max([s["wall"]] + [float(res["time"].max()) if len(res) else 0.0]) or 1.0
    x_range = Range1d(start=-0.02 * end, end=end * 1.02)
    timeline = figure(
        title=PANELS[1],
        height=120 + 40 * nranks,
        x_range=x_range,
        y_range=Range1d(start=nranks - 0.5, end=-0.5),
        sizing_mode="stretch_width",
        x_axis_label="seconds since start",
        y_axis_label="rank",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        name="timeline",
    )
    items = []
    for kind, segs in _segments(profile).items():
        if not segs:
            continue
        is_task = kind in TASK_KINDS
        src = ColumnDataSource(
            {
                "y": [r + (0 if is_task else 0.3) for r, *_ in segs],
                "left": [a for _, a, _, _ in segs],
                "right": [b for _, _, b, _ in segs],
                "label": [x for *_, x in segs],
                "seconds": [b - a for _, a, b, _ in segs],
            }
        )
        items.append(
            (
                kind,
                timeline.hbar(
                    y="y",
                    left="left",
                    right="right",
                    height=0.55 if is_task else 0.25,
                    source=src,
                    color=COLORS.get(kind, "#937860"),
                    line_color="white",
                    line_width=0.5,
                ),
            )
        )
    timeline.add_tools(HoverTool(tooltips=[("", "@label"), ("seconds", "@seconds{0.000}")]))
    timeline.yaxis.ticker = list(range(nranks))
    _legend_above(timeline, items)
    figs = [timeline]
    for title, col, scale, unit in (
        (PANELS[2], "cpu", 1.0, "CPU %"),
        (PANELS[3], "rss", 1 / 2**20, "RSS MiB"),
    ):
        f = figure(
            title=title,
            height=220,
            x_range=x_range,
            sizing_mode="stretch_width",
            x_axis_label="seconds since start",
            y_axis_label=unit,
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            name=col,
        )
        if len(res):
            _legend_above(
                f,
                [
                    (
                        f"rank {r}",
                        f.line(
                            list(res[res["rank"] == r]["time"]),
                            list(res[res["rank"] == r][col] * scale),
                            line_width=2,
                            color=RANK_COLORS[int(r) % len(RANK_COLORS)],
                        ),
                    )
                    for r in sorted(set(res["rank"]))
                ],
            )
        else:
            f.line([0, end], [0, 0], color="#cccccc")
            cast(Title, f.title).text = f"{title} (no samples: use ResourceProfiler)"
        figs.append(f)
    return column(
        Div(text=_summary_html(profile, s), sizing_mode="stretch_width", name="summary"),
        *figs,
        sizing_mode="stretch_width",
    )


def _legend_above_axes(ax):
    """The legend of ``ax`` in one row above its top right corner, outside the plot area
    (the panel titles are on the left), so that it never covers the first rank's row."""
    return ax.legend(
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=10,
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
        handlelength=1.5,
        columnspacing=1.2,
    )


def png_figure(profile: RunProfile):
    """The matplotlib figure of the report (Agg, not yet drawn): ``(figure, [summary,
    timeline, cpu, memory axes], summary dict)``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    s = summarize(profile)
    nranks = max(int(profile.meta.get("ranks") or 1), s["ranks"], 1)
    fig = Figure(figsize=(12, 9 + 0.25 * nranks), dpi=100)
    axes = fig.subplots(4, 1, gridspec_kw={"height_ratios": [0.8, 1.2 + 0.15 * nranks, 1, 1]})
    ax_sum, ax_tl, ax_cpu, ax_mem = axes
    ax_sum.axis("off")
    ax_sum.set_title(PANELS[0], loc="left", fontweight="bold")
    sh = s["shares"]
    lines = [
        f"Bottleneck: {s['bottleneck']}",
        f"{s['ranks']} rank(s), wall {s['wall']:.2f} s (planning "
        f"{s.get('planning', 0.0):.2f} s); planning {sh.get('planning', 0.0):.0%}, "
        f"I/O {sh['io']:.0%}, compute {sh['compute']:.0%}, communication "
        f"{sh['communication']:.0%}; imbalance {s['imbalance']:.2f}"
        + (f"; format: {', '.join(s['formats'])}" if s.get("formats") else ""),
        "Slowest partitions:",
    ]
    lines += [f"  {x['seconds']:.3f} s  rank {x['rank']}  {x['partition']}" for x in s["slowest"][:4]]
    import textwrap

    text = "\n".join(
        textwrap.shorten(t, 150, placeholder="...")
        if not t.startswith("Bott")
        else "\n".join(textwrap.wrap(t, 150))
        for t in lines
    )
    ax_sum.text(0, 1, text, va="top", ha="left", family="monospace", fontsize=8.5, transform=ax_sum.transAxes)
    res: Any = profile.resources  # a DataFrame (RunProfile types it as object)
    end = max([s["wall"]] + [float(res["time"].max()) if len(res) else 0.0]) or 1.0
    for kind, segs in _segments(profile).items():
        for r in range(nranks):
            bars = [(a, max(b - a, end * 1e-4)) for rr, a, b, _ in segs if rr == r]
            if not bars:
                continue
            is_task = kind in TASK_KINDS
            y = r - 0.3 if is_task else r + 0.15
            ax_tl.broken_barh(
                bars,
                (y, 0.55 if is_task else 0.25),
                color=COLORS.get(kind, "#937860"),
                label=kind if r == min(rr for rr, *_ in segs) else None,
            )
    ax_tl.set_ylim(nranks - 0.5, -0.5)
    ax_tl.set_yticks(range(nranks))
    ax_tl.set_ylabel("rank")
    ax_tl.set_title(PANELS[1], loc="left", fontweight="bold")
    if ax_tl.get_legend_handles_labels()[0]:
        _legend_above_axes(ax_tl)
    for ax, title, col, scale, unit in (
        (ax_cpu, PANELS[2], "cpu", 1.0, "CPU %"),
        (ax_mem, PANELS[3], "rss", 1 / 2**20, "RSS MiB"),
    ):
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_ylabel(unit)
        if len(res):
            for r in sorted(set(res["rank"])):
                d = res[res["rank"] == r]
                ax.plot(d["time"], d[col] * scale, color=RANK_COLORS[int(r) % 10], label=f"rank {r}")
            _legend_above_axes(ax)
        else:
            ax.text(0.5, 0.5, "no samples: use ResourceProfiler", ha="center", transform=ax.transAxes)
    for ax in (ax_tl, ax_cpu, ax_mem):
        ax.set_xlim(-0.02 * end, end * 1.02)
        ax.grid(alpha=0.3)
    ax_mem.set_xlabel("seconds since start")
    fig.tight_layout()
    return fig, axes, s


def write_png(profile: RunProfile, path: str) -> str:
    """Write the matplotlib (Agg) rendering of the report to ``path``; returns path. The
    PNG's ``hpcframe:panels`` text chunk maps each panel title to its pixel box
    ``[left, top, right, bottom]``."""
    import io

    fig, axes, s = png_figure(profile)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    height = fig.bbox.height
    boxes = {}
    for ax, title in zip(axes, PANELS):
        bb = ax.get_window_extent()
        boxes[title] = [int(bb.x0), int(height - bb.y1), int(bb.x1), int(height - bb.y0)]
    buf = io.BytesIO()
    fig.savefig(
        buf,
        format="png",
        metadata={
            "Title": "hpcframe run report",
            "Description": s["bottleneck"],
            "hpcframe:panels": json.dumps(boxes),
        },
    )
    return write_bytes_atomic(path, buf.getvalue())
