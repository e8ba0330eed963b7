"""Progress across ranks, printed by rank 0 while the job runs: plain lines in a batch log
(stdout is a pipe), a rewritten bar on a terminal (``script`` gives mpiexec a pty)."""
from __future__ import annotations

import io
import re

import pytest

from conftest import LEAVES
from hpcframe.diagnostics.progress import format_progress

PCT = re.compile(r"(\d+\.\d)% \| (\d+)/(\d+) partitions")


def _percentages(chunks):
    return [(float(m.group(1)), int(m.group(2)), int(m.group(3)))
            for c in chunks for m in [PCT.search(c)] if m]


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
    assert format_progress((10, 6000, 8), (10, 6000, 8), 1.0).endswith("done")


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
