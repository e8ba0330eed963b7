"""Task and resource profiles of real multi-rank runs: every leaf exactly once, consistent
times, and saved files that pandas loads."""

from __future__ import annotations

import json
import os
import textwrap

import pandas as pd
import pytest

from tests.helpers.diagnostics import LEAVES
from tests.helpers.mpi import needs_mpiexec, run_mpi


@pytest.fixture(scope="module", params=[2, 3])
def saved(request, runs):
    ranks = request.param
    _, out = runs(ranks)
    return ranks, os.path.join(out, "profile")


def _load(directory):
    return {
        name: pd.read_parquet(os.path.join(directory, f"{name}.parquet"))
        for name in ("tasks", "collectives", "runs", "resources")
    }


@pytest.mark.timeout(300)
def test_every_leaf_exactly_once_across_ranks(saved):
    ranks, directory = saved
    tasks = _load(directory)["tasks"]
    assert sorted(tasks["run"].unique()) == [1, 2]  # two scans in the with block
    for _, t in tasks.groupby("run"):
        assert sorted(t["leaf"]) == list(range(LEAVES))
        assert set(t["rank"]) == set(range(ranks))
        assert t["rows"].sum() == 8000
        # a rank reads a contiguous range of leaves
        for _, r in t.groupby("rank"):
            leaves = sorted(r["leaf"])
            assert leaves == list(range(leaves[0], leaves[-1] + 1))
    assert tasks["partition"].str.contains(r"part-\d\.parquet \[row group [01], rows").all()


@pytest.mark.timeout(300)
def test_times_are_consistent(saved):
    ranks, directory = saved
    tables = _load(directory)
    tasks, colls, runs = tables["tasks"], tables["collectives"], tables["runs"]
    assert (tasks["start"] <= tasks["read_end"]).all()
    assert (tasks["read_end"] <= tasks["end"]).all()
    assert len(runs) == 2 * ranks and runs["ok"].all()
    tol = 0.05  # clocks aligned at a barrier: microseconds on one node; allow scheduling noise
    for (run, rank), t in tasks.groupby(["run", "rank"]):
        r = runs[(runs["run"] == run) & (runs["rank"] == rank)].iloc[0]
        assert t["start"].min() >= r["start"] - tol and t["end"].max() <= r["end"] + tol
        starts = t.sort_values("start")
        assert (starts["start"].iloc[1:].values >= starts["end"].iloc[:-1].values - 1e-9).all()
    # every rank agreed, exchanged, and agreed again on the finished results once per scan,
    # after its last leaf
    assert sorted(colls.groupby(["run", "rank"]).size().unique()) == [3]
    assert set(colls["name"]) == {"agree", "exchange"}
    last = tasks.groupby(["run", "rank"])["end"].max()
    first_coll = colls.groupby(["run", "rank"])["start"].min()
    assert (first_coll >= last - 1e-6).all()
    assert (runs.groupby("run")["start"].max() - runs.groupby("run")["start"].min() < 0.5).all()


@pytest.mark.timeout(300)
def test_resources_and_run_json(saved):
    ranks, directory = saved
    res = _load(directory)["resources"]
    assert set(res["rank"]) == set(range(ranks))
    assert (res.groupby("rank").size() >= 3).all()
    assert (res["rss"] > 10 * 2**20).all() and (res["cpu"] >= 0).all()
    with open(os.path.join(directory, "run.json")) as fh:
        meta = json.load(fh)
    assert meta["ranks"] == ranks and meta["leaves"] == 2 * LEAVES
    assert meta["status"] == "ok" and meta["summary"]["bottleneck"]
    assert len(meta["summary"]["per_rank"]) == ranks
    from hpcframe.diagnostics import load

    prof = load(directory)
    assert len(prof.tasks) == 2 * LEAVES and prof.t0 > 1e9


def test_profiler_local_engine_in_process(dataset, tmp_path):
    """Local engine in this process: the frames on the one rank, and profiling() saving."""
    import hpcframe as hf
    from hpcframe.diagnostics import Profiler, ResourceProfiler, load, profiling

    data, df = dataset
    old = hf.config.block_rows
    hf.config.block_rows = 250
    try:
        with Profiler() as prof, ResourceProfiler(dt=0.01) as rprof:
            frame = hf.read_parquet(data)
            total = frame[frame.x > 0].y.sum().compute()
        with profiling(tmp_path / "prof", progress=False):
            frame.y.mean().compute()
    finally:
        hf.config.block_rows = old
    assert total == pytest.approx(df[df.x > 0].y.sum())
    t = prof.results
    assert sorted(t["leaf"]) == list(range(LEAVES)) and set(t["rank"]) == {0}
    assert t is not None and len(prof.to_frame()) == LEAVES
    assert len(prof.collectives) == 3 and len(prof.runs) == 1
    assert len(rprof.results) >= 1
    saved = load(tmp_path / "prof")
    assert len(saved.tasks) == LEAVES and saved.meta["status"] == "ok"


def test_profiling_reports_an_unwritable_directory(tmp_path):
    from hpcframe.diagnostics import profiling

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="profile directory .*file/sub"):
        with profiling(blocker / "sub"):
            pass


def test_profiling_records_a_failed_run(tmp_path):
    from hpcframe.diagnostics import load, profiling

    with pytest.raises(RuntimeError):
        with profiling(tmp_path / "p"):
            raise RuntimeError("boom")
    assert load(tmp_path / "p").meta["status"] == "failed: RuntimeError: boom"


def test_resource_profiler_rejects_bad_dt():
    from hpcframe.diagnostics import ResourceProfiler

    with pytest.raises(ValueError, match="dt=0"):
        ResourceProfiler(dt=0)


# a profile directory that is not writable on one rank (rank 1's path is under /proc)
PROFILE = textwrap.dedent("""
    import sys
    from mpi4py import MPI
    from hpcframe.diagnostics import profiling
    rank = MPI.COMM_WORLD.Get_rank()
    path = sys.argv[1] if rank == 0 else "/proc/hpcframe-not-writable/prof"
    try:
        with profiling(path):
            pass
    except OSError as exc:
        print(f"rank {rank} OSError: {exc}", flush=True)
        sys.exit(3)
    print(f"rank {rank} ran", flush=True)
""")


@needs_mpiexec
@pytest.mark.timeout(150)
def test_profile_dir_failing_on_one_rank_fails_on_every_rank(tmp_path):
    proc = run_mpi(2, ["-c", PROFILE, tmp_path / "prof"], timeout=60)
    assert proc.returncode != 0
    assert "rank 0 OSError: rank 1:" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 1 OSError" in proc.stdout and "ran\n" not in proc.stdout
