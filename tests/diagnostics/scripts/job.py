"""A small job for the diagnostics tests, run as ``[mpiexec -n N] python job.py DATA OUT MODE``.

Rank 0 writes the profile (OUT/profile) and reports (OUT/report.html, .png) and prints a digest.
DATA is a Parquet directory or a glob of CSV files (``*.csv.xz``).
MODE is ``bar``, ``lines`` or ``auto`` (the ProgressBar's terminal detection); a fifth
argument ``noreport`` skips writing the reports. To make the
progress visible while the job runs, each leaf is slowed down by HPCFRAME_TEST_LEAF_DELAY
seconds (default 0.05) by a test-only callback; the data is read and computed for real.
"""

from __future__ import annotations

import os
import sys
import time

import hpcframe as hf
from hpcframe.callbacks import Callback
from hpcframe.diagnostics import Profiler, ProgressBar, ResourceProfiler, collect, save, visualize


class SlowLeaves(Callback):
    """Test only: sleep after every leaf so that the run lasts long enough to be watched."""

    def __init__(self, delay):
        self.delay = delay

    def on_leaf_done(self, run, leaf, times):
        time.sleep(self.delay)


def main(data, out, mode, report="report"):
    report = report == "report"
    hf.config.block_rows = int(os.environ.get("HPCFRAME_TEST_BLOCK_ROWS", "250"))
    delay = float(os.environ.get("HPCFRAME_TEST_LEAF_DELAY", "0.05"))
    frame = hf.read_csv(data) if ".csv" in data else hf.read_parquet(data)
    query = frame[frame.x > 0].groupby("key").y.sum()
    total = frame.y.sum()
    plan = query.explain()  # collective: every rank
    bar = ProgressBar(mode=None if mode == "auto" else mode, interval=0.3, refresh=0.05)
    with bar, SlowLeaves(delay), Profiler() as prof, ResourceProfiler(dt=0.05) as rprof:
        by_key, s = hf.compute(query, total)
        n = frame.x.count().compute()  # a second scan in the same block
    if prof.root:
        os.makedirs(out, exist_ok=True)
        save(collect([prof, rprof]), os.path.join(out, "profile"))
        if report:
            visualize([prof, rprof], os.path.join(out, "report.html"))
            visualize([prof, rprof], os.path.join(out, "report.png"))
        print(f"RESULT keys={len(by_key)} sum={s} count={n}", flush=True)
        print("EXPLAIN " + " | ".join(ln.strip() for ln in plan.splitlines()), flush=True)
    else:
        assert len(prof.results) == 0 and visualize([prof, rprof], "/nonexistent/x.html") is None


if __name__ == "__main__":
    main(*sys.argv[1:5])
