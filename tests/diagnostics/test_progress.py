"""Progress across ranks, printed by rank 0 while the job runs: plain lines in a batch log
(stdout is a pipe), a rewritten bar on a terminal (``script`` gives mpiexec a pty)."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from hpcframe.diagnostics.progress import format_progress
from tests.helpers.diagnostics import LEAVES

PCT = re.compile(r"(\d+\.\d)% \| (\d+)/(\d+) partitions")


def _percentages(chunks):
    return [
        (float(m.group(1)), int(m.group(2)), int(m.group(3))) for c in chunks for m in [PCT.search(c)] if m
    ]


def _check_lines(text, ranks):
    lines = [ln for ln in text.splitlines() if ln.startswith("hpcframe:")]
    assert "\r" not in text, "a batch log must not get carriage returns"
    headers = [ln for ln in lines if "partitions," in ln]
    assert len(headers) == 2 and all(f"on {ranks} rank(s)" in h for h in headers), lines
    progress = _percentages(lines)
    finals = [p for p in progress if p[0] == 100.0]
    assert len(finals) == 2 and all(p[1] == p[2] == LEAVES for p in finals), lines
    # intermediate lines were printed while the job ran, with counts from all ranks
    middle = [p for p in progress if p[0] < 100.0]
    assert middle, f"no progress line before the end:\n{text}"
    assert all(0 < p[1] < LEAVES for p in middle)
    assert "RESULT keys=20" in text


def _check_bar(text):
    assert "hpcframe:" not in text  # no plain lines on a terminal
    chunks = text.split("\r")
    bars = [c for c in chunks if c.startswith("[")]
    assert len(bars) >= 4, f"expected a bar redrawn several times:\n{text!r}"
    progress = _percentages(bars)
    assert progress[-1][0] == 100.0 and progress[-1][1] == LEAVES
    assert any(0 < p[0] < 100 for p in progress), "the bar was not drawn during the run"
    # within a scan the bar never goes backwards
    for scan in re.split(r"\s*done\s*\n", text):
        seen = [p[1] for p in _percentages(scan.split("\r"))]
        assert seen == sorted(seen), seen
    assert re.search(r"\[#{30}\] 100\.0%", text)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ranks", [2, 3])
def test_plain_lines_without_terminal_under_mpiexec(runs, ranks):
    text, _ = runs(ranks)
    _check_lines(text, ranks)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ranks", [2, 3])
def test_bar_on_terminal_under_mpiexec(runs, ranks):
    text, _ = runs(ranks, tty=True)
    _check_bar(text)
    assert "RESULT keys=20" in text


@pytest.mark.timeout(300)
def test_bar_on_terminal_without_mpi(runs):
    text, _ = runs(None, tty=True)
    _check_bar(text)


def test_format_progress_line():
    line = format_progress((3, 1500, 2_000_000), (10, 6000, 8_000_000), 3.0, width=10)
    assert line.startswith("[##--------]  25.0% | 3/10 partitions | 1.5k/6.0k rows")
    assert "500 rows/s" in line and "ETA 9s" in line
    assert format_progress((10, 6000, 8), (10, 6000, 8), 1.0, final=True).endswith("done")
    # all read but the results not yet combined: only the final line says done
    assert format_progress((10, 6000, 8), (10, 6000, 8), 1.0).endswith("finishing")


def test_progress_local_engine_in_process(dataset):
    """Local engine (no MPI) in this process: header and final line in plain mode."""
    import hpcframe as hf
    from hpcframe.diagnostics import ProgressBar

    data, df = dataset
    out = io.StringIO()
    old = hf.config.block_rows
    hf.config.block_rows = 250
    try:
        with ProgressBar(out=out, mode="lines"):
            total = hf.read_parquet(data).y.sum().compute()
    finally:
        hf.config.block_rows = old
    assert total == pytest.approx(df.y.sum())
    text = out.getvalue()
    assert "on 1 rank(s)" in text
    assert f"100.0% | {LEAVES}/{LEAVES} partitions | 8.0k/8.0k rows" in text


def test_bad_mode():
    from hpcframe.diagnostics import ProgressBar

    with pytest.raises(ValueError, match="mode='fancy'"):
        ProgressBar(mode="fancy")


# -- compressed CSV: row counts are estimates (the seed workflow) ---------------------------
ANY = re.compile(
    r"(\d+\.\d)% \| (\d+)/(\d+) partitions \| ([^|]+) rows[^|]*\|.*\| "
    r"(done|finishing|ETA [^|]+)$"
)


def _csv_progress_lines(text):
    return [m for ln in re.split(r"[\r\n]", text) for m in [ANY.search(ln.rstrip())] if m]


def _check_csv_progress(text, scans):
    lines = _csv_progress_lines(text)
    assert lines, text
    # the line that ends each scan: 100 %, every partition, done, the rows really read
    finals = [m for m in lines if m.group(5) == "done"]
    assert len(finals) == scans, text
    for m in finals:
        assert m.group(1) == "100.0" and m.group(2) == m.group(3), m.group(0)
        assert "~" not in m.group(0) and "est." not in m.group(0), m.group(0)
    assert all(float(m.group(1)) <= 100.0 for m in lines)
    # while running the rows total is labelled an estimate, never shown as a known count
    for m in lines:
        if m.group(5) != "done":
            assert "est." in m.group(0) and "/" not in m.group(4), m.group(0)
            assert float(m.group(1)) < 100.0 or m.group(5) == "finishing", m.group(0)


@pytest.mark.parametrize("mode", ["lines", "bar"])
def test_progress_of_compressed_csv_ends_with_done(csv_dataset, mode):
    """The row counts of .csv.xz files are estimates: progress is measured in bytes, the
    estimate is labelled, and the last line says 100 % / done (it once ended at
    ``4.8% | 12/12 partitions | 336.8k/7.0M rows | ETA 30s``)."""
    import hpcframe as hf
    from hpcframe.diagnostics import ProgressBar

    pattern, df = csv_dataset
    out = io.StringIO()
    old = hf.config.block_rows
    hf.config.block_rows = 250
    try:
        frame = hf.read_csv(pattern)
        with ProgressBar(out=out, mode=mode, interval=0.0, refresh=0.01):
            got = frame.groupby("key").y.sum().compute()
    finally:
        hf.config.block_rows = old
    pd.testing.assert_series_equal(got, df.groupby("key").y.sum(), check_exact=False)
    text = out.getvalue()
    _check_csv_progress(text, scans=1)
    assert f"| {len(df) / 1000:.1f}k rows |" in text  # the final line: rows really read
    if mode == "lines":
        header = text.splitlines()[0]
        assert "rows (estimated" in header and "~" in header, header
    else:
        assert re.search(r"\[#{30}\] 100\.0%", text) and re.search(r"done *\n$", text)


def test_format_progress_with_estimated_rows():
    # 12/12 partitions and every byte read while the estimate said 7.0M rows: 100 %
    line = format_progress((12, 336_776, 4_900_000), (12, 6_967_128, 4_900_000), 2.0, rows_known=False)
    assert line.startswith("100.0% | 12/12") and line.endswith("finishing"), line
    # half of the bytes: 50 % and an ETA from the bytes, whatever the rows say
    line = format_progress((6, 10, 2_450_000), (12, 6_967_128, 4_900_000), 2.0, rows_known=False)
    assert " 50.0% |" in line and "10 rows (~7.0M est.)" in line and line.endswith("ETA 2s")
    # a finished run is 100 % even when the counts fell short of the estimates
    line = format_progress((11, 300, 10), (12, 6_967_128, 4_900_000), 2.0, rows_known=False, final=True)
    assert line.startswith("100.0%") and line.endswith("done") and "| 300 rows |" in line


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ranks", [2, 3])
def test_plain_lines_of_compressed_csv_under_mpiexec(csv_dataset, tmp_path, ranks):
    """A batch (SLURM-like) log of the seed workflow under mpiexec: each scan ends with a
    100 % / done line, the report names CSV and counts the planning."""
    import json
    import os

    from tests.helpers.diagnostics import run_job

    pattern, _ = csv_dataset
    text = run_job(ranks, pattern, str(tmp_path / "out"), mode="lines")
    assert "\r" not in text and "RESULT keys=20" in text
    _check_csv_progress(text, scans=2)
    with open(os.path.join(tmp_path, "out", "profile", "run.json")) as fh:
        summary = json.load(fh)["summary"]
    assert summary["formats"] == ["csv (xz-compressed)"], summary
    assert "Parquet" not in summary["bottleneck"], summary["bottleneck"]
    assert summary["planning"] > 0 and summary["wall"] > summary["planning"]
    # explain() under mpiexec: the rows are labelled estimates, no statistics are claimed
    plan = next(ln for ln in text.splitlines() if ln.startswith("EXPLAIN "))
    assert re.search(
        r"Partitions: 8 file\(s\), \d+ partition\(s\), ~[\d,]+ rows "
        r"\(estimated",
        plan,
    ), plan
    assert "statistics pruning on" not in plan and "pruned by statistics" not in plan
    assert len(re.findall(r"\| rank \d: ", plan)) == ranks, plan
