"""The run report: the HTML drawn by headless Chromium, the PNG's panels, the `report`
command, and the bottleneck analysis."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hpcframe.diagnostics import RunProfile, summarize
from hpcframe.diagnostics.report import COLORS, PANELS, RANK_COLORS
from tests.helpers.cli import write_spec
from tests.helpers.diagnostics import chromium_run


def _rgb(hexcolor):
    return tuple(int(hexcolor[i : i + 2], 16) for i in (1, 3, 5))


def _has_color(pixels, hexcolor, tol=12, at_least=20):
    diff = np.abs(pixels[..., :3].astype(int) - np.array(_rgb(hexcolor))).max(axis=-1)
    return int((diff <= tol).sum()) >= at_least


@pytest.mark.timeout(400)
def test_html_report_is_drawn_by_chromium(runs, chromium, tmp_path):
    from PIL import Image

    _, out = runs(3)
    html = os.path.join(out, "report.html")
    text = open(html, encoding="utf-8").read()
    assert "cdn.bokeh.org" not in text and "Bokeh" in text  # resources inlined: offline
    dom = chromium_run(chromium, tmp_path, "--dump-dom", f"file://{html}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # bokeh's JS ran and built its views (their canvases live in shadow roots)
    assert b'class="bk-Column' in dom.stdout
    assert b"Bottleneck:" in dom.stdout
    shot = tmp_path / "shot.png"
    proc = chromium_run(
        chromium, tmp_path, "--window-size=1400,1600", f"--screenshot={shot}", f"file://{html}"
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 10, "the screenshot is blank"
    # glyphs drawn on the canvases: compute bars, a collective wait, a curve per rank
    assert _has_color(pixels, COLORS["compute"])
    assert _has_color(pixels, COLORS["agree"])
    for r in range(3):
        assert _has_color(pixels, RANK_COLORS[r], tol=25, at_least=10), f"rank {r} curve"


@pytest.mark.timeout(300)
def test_png_report_has_the_panels(runs):
    from PIL import Image

    _, out = runs(2)
    img = Image.open(os.path.join(out, "report.png"))
    assert img.format == "PNG" and img.size[0] >= 1000 and img.size[1] >= 900
    boxes = json.loads(img.text["hpcframe:panels"])
    assert list(boxes) == list(PANELS)
    pixels = np.asarray(img.convert("RGB"))
    for title, (left, top, right, bottom) in boxes.items():
        region = pixels[top:bottom, left:right]
        assert region.size and region.std() > 5, f"panel {title!r} is empty"
    left, top, right, bottom = boxes["Timeline per rank"]
    assert _has_color(pixels[top:bottom, left:right], COLORS["compute"], tol=3)
    left, top, right, bottom = boxes["CPU % per rank"]
    for r in range(2):
        assert _has_color(pixels[top:bottom, left:right], RANK_COLORS[r], tol=3, at_least=5)
    assert "bound" in img.text["Description"] or "imbalance" in img.text["Description"]


@pytest.mark.timeout(300)
def test_report_command(runs, tmp_path):
    from hpcframe.cli.report import report

    _, out = runs(2)
    directory = os.path.join(out, "profile")
    result = CliRunner().invoke(report, [directory, "--png"])
    assert result.exit_code == 0, result.output
    assert os.path.getsize(os.path.join(directory, "report.html")) > 100_000
    assert os.path.getsize(os.path.join(directory, "report.png")) > 10_000
    assert "bottleneck:" in result.output and "2 rank(s)" in result.output
    bad = CliRunner().invoke(report, [str(tmp_path)])
    assert bad.exit_code == 2 and "not a profile directory (no run.json" in bad.output


def _profile(busy_per_rank, read_share=0.1, wait=0.01, planning=0.0, fmt="parquet", path="f{rank}"):
    """A synthetic profile: every rank plans for ``planning`` s, then reads 4 leaves."""
    tasks, colls, run_rows = [], [], []
    end_all = planning + max(busy_per_rank) + wait
    for rank, busy in enumerate(busy_per_rank):
        t = planning
        for leaf in range(4):
            d = busy / 4
            tasks.append(
                (
                    1,
                    "src",
                    rank * 4 + leaf,
                    rank,
                    "h",
                    t,
                    t + d * read_share,
                    t + d,
                    10,
                    100,
                    None,
                    False,
                    path.format(rank=rank),
                    f"f{rank} [row group {leaf}]",
                )
            )
            t += d
        colls.append((1, rank, "h", "agree", t, end_all))
        run_rows.append((1, "src", rank, "h", 0.0, end_all, 4, 40, 400, True, planning, fmt))
    from hpcframe.diagnostics.profile import COLLECTIVE_COLUMNS, RUN_COLUMNS, TASK_COLUMNS

    return RunProfile(
        pd.DataFrame(tasks, columns=TASK_COLUMNS),
        pd.DataFrame(colls, columns=COLLECTIVE_COLUMNS),
        pd.DataFrame(run_rows, columns=RUN_COLUMNS[:10] + ["read_start", "format"]),
        pd.DataFrame(columns=["rank", "host", "epoch", "cpu", "rss", "time"]),
        {"ranks": len(busy_per_rank), "hosts": ["h"], "t0": 0.0},
    )


def test_summary_names_load_imbalance():
    s = summarize(_profile([1.0, 1.0, 1.0, 4.0]))
    assert s["slowest_rank"] == 3 and s["imbalance"] == pytest.approx(4 / 1.75)
    assert s["bottleneck"].startswith("load imbalance: rank 3 was busy 4.00 s")
    assert s["slowest"][0]["rank"] == 3 and "f3 [row group" in s["slowest"][0]["partition"]


def test_summary_names_io_and_compute():
    io = summarize(_profile([2.0, 2.0], read_share=0.9))
    assert io["bottleneck"].startswith("I/O-bound") and io["shares"]["io"] > 0.8
    cpu = summarize(_profile([2.0, 2.1], read_share=0.05))
    assert cpu["bottleneck"].startswith("compute-bound")
    assert sum(cpu["shares"].values()) == pytest.approx(1.0)


def test_reports_of_an_empty_profile(tmp_path):
    """No computation in the block: the report still renders and says so."""
    from hpcframe.diagnostics import Profiler, visualize

    with Profiler() as prof:
        pass
    assert visualize([prof], tmp_path / "r.html").endswith("r.html")
    assert visualize([prof], tmp_path / "r.png").endswith("r.png")
    assert "nothing was read" in open(tmp_path / "r.html").read()
    with pytest.raises(TypeError, match="cannot report on int"):
        visualize([1], tmp_path / "x.html")


@pytest.mark.parametrize(
    "fmt,path,name",
    [
        ("csv", "f{rank}.csv.xz", "reading xz-compressed CSV dominates"),
        ("csv", "f{rank}.csv", "reading CSV dominates"),
        ("hdf5", "f{rank}.h5", "reading HDF5 dominates"),
        ("parquet", "f{rank}.parquet", "reading Parquet dominates"),
    ],
)
def test_io_bottleneck_names_the_format_of_the_source(fmt, path, name):
    """The I/O advice names what was read (it once said "reading Parquet/HDF5" for CSV)."""
    s = summarize(_profile([2.0, 2.0], read_share=0.9, fmt=fmt, path=path))
    assert s["bottleneck"].startswith("I/O-bound") and name in s["bottleneck"], s["bottleneck"]
    if fmt == "hdf5":
        assert "Parquet" not in s["bottleneck"]
    if fmt == "csv":  # the advice for CSV
        assert "convert it once to Parquet" in s["bottleneck"]


def test_wall_time_and_shares_include_planning():
    """Planning (partition discovery) is part of the run: in the wall time, in each rank's
    row and in the shares; when it dominates, the bottleneck says so."""
    from hpcframe.diagnostics.report import _segments

    p = _profile([1.0, 1.0], planning=2.0, fmt="csv", path="f{rank}.csv.xz")
    s = summarize(p)
    assert s["wall"] == pytest.approx(3.01) and s["planning"] == pytest.approx(2.0)
    assert [r["planning"] for r in s["per_rank"]] == [pytest.approx(2.0)] * 2
    assert s["shares"]["planning"] == pytest.approx(4.0 / (4.0 + 2.0 + 0.02))
    assert sum(s["shares"].values()) == pytest.approx(1.0)
    assert s["bottleneck"].startswith("planning-bound") and "CSV" in s["bottleneck"]
    assert [(r, a, b) for r, a, b, _ in _segments(p)["planning"]] == [(0, 0.0, 2.0), (1, 0.0, 2.0)]


def test_real_run_profile_includes_planning(csv_dataset, monkeypatch):
    """A real run whose partition discovery is slow (0.4 s, like decompressing the start of
    every .csv.xz file on a busy file system): the profile starts when compute() planned
    the scan, not when reading began, and the report's wall time includes it."""
    import time

    import hpcframe as hf
    from hpcframe.diagnostics import Profiler, collect
    from hpcframe.io.csv import CSVSource

    real = CSVSource.discover

    def slow_discover(self, comm):
        time.sleep(0.4)
        return real(self, comm)

    monkeypatch.setattr(CSVSource, "discover", slow_discover)
    pattern, df = csv_dataset
    frame = hf.read_csv(pattern)
    with Profiler() as prof:
        called = time.time()
        got = frame.y.sum().compute()
        returned = time.time()
    assert got == pytest.approx(df.y.sum())
    s = summarize(collect([prof]))
    assert s["planning"] >= 0.4 and s["wall"] >= 0.4
    assert called - 0.05 <= prof.t0 <= called + 0.2  # the run starts with its planning
    assert s["wall"] >= 0.8 * (returned - called), (s["wall"], returned - called)
    runs = prof.runs
    assert (runs["read_start"] - runs["start"]).min() >= 0.4 and list(runs["format"]) == ["csv"]


def test_legends_are_outside_the_plot_areas():
    """No legend covers a panel's plot area (it once covered rank 0's timeline): in the PNG
    every legend lies above its axes, in the HTML every legend is in a side panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hpcframe.diagnostics.report import html_layout, png_figure

    p = _profile([1.0, 1.2, 0.9], planning=0.3)
    p.resources = pd.DataFrame(
        {
            "rank": [0, 0, 1, 1, 2, 2],
            "host": "h",
            "epoch": [0.0, 1.0] * 3,
            "cpu": [50.0, 90.0] * 3,
            "rss": [1e8, 2e8] * 3,
            "time": [0.0, 1.0] * 3,
        }
    )
    fig, axes, _ = png_figure(p)
    FigureCanvasAgg(fig).draw()
    legends = 0
    for ax in axes[1:]:
        leg = ax.get_legend()
        assert leg is not None
        legends += 1
        lb, ab = leg.get_window_extent(), ax.get_window_extent()
        assert lb.y0 >= ab.y1 - 1, (ax.get_title(), lb, ab)  # above the plot area
        assert lb.y1 <= fig.bbox.height and lb.x1 <= fig.bbox.width + 1  # on the page
    assert legends == 3

    from bokeh.models import Legend

    figures = [c for c in html_layout(p).children if hasattr(c, "center")]
    assert len(figures) == 3
    for f in figures:
        assert not [r for r in f.center if isinstance(r, Legend)], f.name
        outside = [r for r in f.above if isinstance(r, Legend)]
        assert len(outside) == 1 and outside[0].items, f.name


def test_diagnostics_of_an_hdf5_run_name_hdf5(tmp_path):
    """Progress and profiles work on HDF5 sources (which have no ``label`` attribute) and
    the report names HDF5 as what was read."""
    import io

    import h5py

    import hpcframe as hf
    from hpcframe.diagnostics import Profiler, ProgressBar, collect

    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("data")
        g.create_dataset("k", data=np.arange(1000) % 7, chunks=(100,))
        g.create_dataset("v", data=np.arange(1000.0), chunks=(100,))
    out = io.StringIO()
    with ProgressBar(out=out, mode="lines"), Profiler() as prof:
        got = hf.read_hdf(str(path), key="data").v.sum().compute()
    assert got == sum(range(1000))
    assert "100.0% |" in out.getvalue() and "| 1.0k/1.0k rows |" in out.getvalue()
    s = summarize(collect([prof]))
    assert s["formats"] == ["hdf5"] and "t.h5" in prof.runs["source"].iloc[0]


def test_profile_directory_saved_before_planning_was_recorded_loads(tmp_path):
    """A profile directory written by an earlier version (runs without ``read_start`` and
    ``format``) still loads and reports: no planning, a generic I/O line."""
    from hpcframe.diagnostics import load, save
    from hpcframe.diagnostics.store import FORMAT_VERSION

    p = _profile([2.0, 2.0], read_share=0.9, planning=0.5, fmt="csv")
    p.meta["version"] = FORMAT_VERSION
    save(p, tmp_path)
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    runs.drop(columns=["read_start", "format"]).to_parquet(tmp_path / "runs.parquet")
    s = summarize(load(tmp_path))
    assert s["planning"] == 0.0 and s["formats"] == []
    assert "reading the data dominates" in s["bottleneck"], s["bottleneck"]
    assert summarize(load(tmp_path))["wall"] == pytest.approx(2.51)


def test_report_into_a_missing_folder_is_a_usage_error(tmp_path, parquet_dir):
    from hpcframe.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], env={"HPCFRAME_DEBUG": ""})

    spec = write_spec(
        tmp_path / "job.yaml",
        f"input: {{path: {parquet_dir}}}\n"
        'filter: "dep_delay > -5"\ngroupby: [month]\n'
        "aggregate: {dep_delay: mean}\n"
        f"output: {{path: {tmp_path / 'o.parquet'}, overwrite: true}}\n",
    )
    prof = tmp_path / "prof"
    r = invoke("run", spec, "-q", "--profile-dir", prof)
    assert r.exit_code == 0, r.output
    r = invoke("report", prof, "-o", tmp_path / "nodir" / "r.html")
    assert r.exit_code == 2, r.output
    assert "nodir" in r.output and "does not exist" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = invoke("report", prof, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
