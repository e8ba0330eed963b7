"""Caching (issue 14): hf.Cache in memory and on disk, on the local engine and on 1-4 ranks.

Every result is compared with pandas and, bit for bit, with an uncached run; the counters
(hits, misses, evictions, rejected entries, blocks read) are summed over the ranks.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.cache import stats
from hpcframe.io.partials import PartialStore
from tests.helpers import mpi
from tests.helpers.compare import assert_same

ROWS = 600  # per daily file: row groups of 250, 250, 100 -> 2 blocks of <= 500 rows


def _day(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(1000 + i)
    carrier = rng.choice(np.array(["AA", "UA", "DL", "WN", None], dtype=object), ROWS)
    delay = rng.normal(10, 30, ROWS)
    delay[rng.random(ROWS) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "day": np.full(ROWS, i, dtype="int64"),
            "carrier": pd.array(carrier, dtype="str"),
            "flights": rng.integers(0, 50, ROWS).astype("int64"),
            "delay": delay,
            "dist": rng.uniform(50, 3000, ROWS),
        }
    )


def _write_day(folder: str, i: int, frame: pd.DataFrame | None = None) -> None:
    (frame if frame is not None else _day(i)).to_parquet(
        os.path.join(folder, f"day{i:02d}.parquet"), row_group_size=250, index=False
    )


@pytest.fixture
def daily(shared_dir, request):
    """A fresh folder of 4 daily files and a cache folder beside it (shared by the ranks)."""
    root = os.path.join(shared_dir, "cache-" + request.node.name.replace("[", "-").replace("]", ""))
    data, cache = os.path.join(root, "data"), os.path.join(root, "cache")

    def make():
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(data)
        for i in range(4):
            _write_day(data, i)

    mpi.on_root(make)
    return data, cache


def _reference(folder: str) -> pd.DataFrame:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".parquet"))
    return pd.concat([pd.read_parquet(os.path.join(folder, f)) for f in files], ignore_index=True)


def _queries(df):
    return [
        df.groupby("carrier").flights.sum(),
        df[df.dist > 1000].groupby(["carrier", "day"]).delay.mean(),
        df.groupby("day").agg({"delay": ["min", "max", "count"], "flights": "sum"}),
        df.delay.sum(),
        df.flights.count(),
    ]


def _pandas(pdf):
    return [
        pdf.groupby("carrier").flights.sum(),
        pdf[pdf.dist > 1000].groupby(["carrier", "day"]).delay.mean(),
        pdf.groupby("day").agg({"delay": ["min", "max", "count"], "flights": "sum"}),
        pdf.delay.sum(),
        pdf.flights.count(),
    ]


def _run(folder):
    """Results of the queries over a fresh reader of ``folder``; blocks read (all ranks)."""
    out = hf.compute(*_queries(hf.read_parquet(folder)))
    return list(out), mpi.allsum(hf.last_run_stats()["partitions_read"])


def _identical(got, want):
    for g, w in zip(got, want):
        if isinstance(w, (pd.Series, pd.DataFrame)):
            assert type(g) is type(w)
            if isinstance(w, pd.Series):
                pd.testing.assert_series_equal(g, w, check_exact=True)
            else:
                pd.testing.assert_frame_equal(g, w, check_exact=True)
        else:
            assert repr(g) == repr(w) and type(g) is type(w)


def _check_pandas(got, folder):
    for g, w in zip(got, _pandas(_reference(folder))):
        assert_same(g, w)


def _count(level, name):
    return mpi.allsum(stats()[level][name])


def test_memory_cache_hits_skip_reading(daily):
    data, _ = daily
    plain, read_plain = _run(data)
    assert read_plain == 8  # 4 files x 2 blocks
    before = _count("memory partials", "hits")
    with hf.Cache("64MB"):
        first, read_first = _run(data)
        again, read_again = _run(data)
    assert read_first == 8 and read_again == 0
    assert _count("memory partials", "hits") - before == 8 * 5  # every block, every output
    _identical(first, plain)
    _identical(again, plain)
    _check_pandas(again, data)


def test_memory_column_chunks_serve_other_queries(daily):
    data, _ = daily
    df = hf.read_parquet(data)
    want = df[df.flights > 10].groupby("carrier").delay.max().compute()
    with hf.Cache("64MB"):
        hf.compute(*_queries(hf.read_parquet(data)))  # decodes every column once
        hits = _count("column chunks", "hits")
        misses = _count("column chunks", "misses")
        got = df[df.flights > 10].groupby("carrier").delay.max().compute()
    assert _count("column chunks", "misses") == misses  # nothing decoded again
    assert _count("column chunks", "hits") - hits == 8 * 3  # carrier, flights, delay per block
    _identical([got], [want])
    pdf = _reference(data)
    assert_same(got, pdf[pdf.flights > 10].groupby("carrier").delay.max())


def test_eviction_under_a_small_budget(daily):
    data, _ = daily
    plain, _ = _run(data)
    evicted = _count("column chunks", "evictions") + _count("memory partials", "evictions")
    with hf.Cache(12_000 // mpi.size()):  # per rank: some chunks and partials fit, not all
        first, _ = _run(data)
        again, read_again = _run(data)
        queries = hf.read_parquet(data)
        one = queries.groupby("day").dist.sum().compute()
    # what is kept depends on measured costs: some entries were evicted or never admitted,
    # so some blocks were read again (evictions themselves: tests/unit/test_cache_keys.py)
    assert read_again > 0
    assert _count("column chunks", "evictions") + _count("memory partials", "evictions") >= evicted
    _identical(first, plain)
    _identical(again, plain)
    assert_same(one, _reference(data).groupby("day").dist.sum())


def test_disk_cache_survives_the_process_and_rank_count(daily):
    """Rank 0 fills the store alone (1 rank); then all ranks run from it: nothing is read and
    the results are those of a fresh run on this many ranks, bit for bit."""
    data, cache = daily
    plain, _ = _run(data)

    def fill():
        comm = None
        if mpi.UNDER_MPI:
            from mpi4py import MPI

            comm = MPI.COMM_SELF
        with hf.Cache(dir=cache):
            hf.compute(*_queries(hf.read_parquet(data)), comm=comm)

    mpi.on_root(fill)
    hits = _count("disk partials", "hits")
    with hf.Cache(dir=cache):
        got, read = _run(data)
    assert read == 0
    assert _count("disk partials", "hits") - hits == 8 * 5
    _identical(got, plain)
    _check_pandas(got, data)


def test_incremental_append_modify_delete(daily):
    data, cache = daily
    with hf.Cache(dir=cache):
        _run(data)
        # append a day: only its 2 blocks are read
        mpi.on_root(lambda: _write_day(data, 4))
        got, read = _run(data)
        assert read == 2
        _identical(got, _run_plain(data))
        _check_pandas(got, data)

        # modify a day (other values, another size and time): only its blocks are read
        def modify():
            frame = _day(1).iloc[:550].copy()
            frame["flights"] += 7
            _write_day(data, 1, frame)
            st = os.stat(os.path.join(data, "day01.parquet"))
            os.utime(os.path.join(data, "day01.parquet"), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

        mpi.on_root(modify)
        got, read = _run(data)
        assert read == 2
        _identical(got, _run_plain(data))
        _check_pandas(got, data)
        # delete a day: nothing is read, the day is gone from the results
        mpi.on_root(lambda: os.remove(os.path.join(data, "day02.parquet")))
        got, read = _run(data)
        assert read == 0
        _identical(got, _run_plain(data))
        _check_pandas(got, data)
        assert 2 not in set(got[2].index)


def _run_plain(folder):
    """The uncached results (outside any hf.Cache)."""
    saved = hf.cache._stack[:]
    hf.cache._stack.clear()
    try:
        return _run(folder)[0]
    finally:
        hf.cache._stack[:] = saved


def test_plan_changes_miss_but_same_plan_hits(daily):
    data, cache = daily
    with hf.Cache(dir=cache):
        df = hf.read_parquet(data)
        a = df[df.dist > 1000].groupby("carrier").delay.sum().compute()
        r1 = mpi.allsum(hf.last_run_stats()["partitions_read"])
        b = df[df.dist > 1001].groupby("carrier").delay.sum().compute()  # another literal
        r2 = mpi.allsum(hf.last_run_stats()["partitions_read"])
        c = df[df.dist > 1000].groupby("carrier").delay.mean().compute()  # another aggregation
        r3 = mpi.allsum(hf.last_run_stats()["partitions_read"])
        d = df[df.dist > 1000].groupby("carrier").flights.sum().compute()  # another column
        r4 = mpi.allsum(hf.last_run_stats()["partitions_read"])
        d32 = df.assign(dist=df.dist.astype("float32"))  # another dtype
        e = d32[d32.dist > 1000].groupby("carrier").delay.sum().compute()
        r5 = mpi.allsum(hf.last_run_stats()["partitions_read"])
        df2 = hf.read_parquet(data)  # the same plan, built again
        a2 = df2[df2.dist > 1000].groupby("carrier").delay.sum().compute()
        r6 = mpi.allsum(hf.last_run_stats()["partitions_read"])
    assert (r1, r2, r3, r4, r5, r6) == (8, 8, 8, 8, 8, 0)
    pdf = _reference(data)
    assert_same(a, pdf[pdf.dist > 1000].groupby("carrier").delay.sum())
    assert_same(b, pdf[pdf.dist > 1001].groupby("carrier").delay.sum())
    assert_same(c, pdf[pdf.dist > 1000].groupby("carrier").delay.mean())
    assert_same(d, pdf[pdf.dist > 1000].groupby("carrier").flights.sum())
    p32 = pdf.assign(dist=pdf.dist.astype("float32"))
    assert_same(e, p32[p32.dist > 1000].groupby("carrier").delay.sum())
    pd.testing.assert_series_equal(a2, a, check_exact=True)


def test_corrupt_and_foreign_entries_are_recomputed(daily):
    data, cache = daily
    plain, _ = _run(data)
    with hf.Cache(dir=cache):
        _run(data)

    def damage():
        store = PartialStore(cache)
        paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(store.root) for f in fs)
        assert len(paths) == 8 * 5
        with open(paths[0], "r+b") as fh:  # truncated
            fh.truncate(os.path.getsize(paths[0]) // 2)
        with open(paths[1], "r+b") as fh:  # one byte flipped
            fh.seek(-10, os.SEEK_END)
            byte = fh.read(1)
            fh.seek(-10, os.SEEK_END)
            fh.write(bytes([byte[0] ^ 0xFF]))
        shutil.copyfile(paths[3], paths[2])  # a valid entry of another key

    mpi.on_root(damage)
    rejected = _count("disk partials", "rejected")
    with hf.Cache(dir=cache):
        got, read = _run(data)
        assert _count("disk partials", "rejected") - rejected == 3
        assert 1 <= read <= 3
        _identical(got, plain)
        again, read = _run(data)  # recomputed entries were stored again
        assert read == 0
        _identical(again, plain)


def test_uncacheable_outputs_are_computed(daily):
    data, cache = daily
    df = hf.read_parquet(data)
    want_rows = df[df.day == 1].compute()
    want_top = df.nlargest(3, "dist").compute() if hasattr(df, "nlargest") else None
    unc = _count("disk partials", "uncacheable")
    with hf.Cache("16MB", dir=cache):
        rows = df[df.day == 1].compute()
        top = df.nlargest(3, "dist").compute() if want_top is not None else None
    assert _count("disk partials", "uncacheable") > unc
    pd.testing.assert_frame_equal(rows, want_rows, check_exact=True)
    if want_top is not None:
        pd.testing.assert_frame_equal(top, want_top, check_exact=True)
    assert PartialStore(cache).info()["entries"] == 0


def test_cache_profiler_gathers_every_rank(daily):
    data, _ = daily
    with hf.Cache("64MB"), hf.CacheProfiler() as cprof:
        _run(data)
        _run(data)
    if mpi.rank() != 0:
        assert len(cprof.results) == 0
        return
    res = cprof.results
    assert sorted(set(res["rank"])) == list(range(mpi.size()))
    mem = res[res.level == "memory partials"]
    assert mem["hits"].sum() == 8 * 5 and mem["misses"].sum() == 8 * 5
    assert (mem["stored"] > 0).sum() >= 1


def test_csv_append_reads_only_the_new_file(daily, cfg):
    """CSV row ranges are estimates that move when files are added: blocks are identified by
    their byte ranges instead (files not cut into blocks: cut points are estimates too)."""
    cfg(block_rows=1 << 20)
    data, cache = daily
    csv = os.path.join(os.path.dirname(data), "csv")

    def write(i):
        os.makedirs(csv, exist_ok=True)
        _day(i).to_csv(os.path.join(csv, f"day{i:02d}.csv"), index=False)

    mpi.on_root(lambda: [write(i) for i in range(3)])

    def run():
        df = hf.read_csv(os.path.join(csv, "*.csv"))
        got = df.groupby("carrier").agg({"flights": "sum", "delay": "max"}).compute()
        return got, mpi.allsum(hf.last_run_stats()["partitions_read"])

    with hf.Cache(dir=cache):
        _, first = run()
        mpi.on_root(lambda: write(3))
        got, read = run()
    assert (first, read) == (3, 1)
    plain, _ = run()
    pd.testing.assert_frame_equal(got, plain, check_exact=True)
    pdf = pd.concat([pd.read_csv(os.path.join(csv, f"day{i:02d}.csv")) for i in range(4)], ignore_index=True)
    assert_same(got, pdf.groupby("carrier").agg({"flights": "sum", "delay": "max"}))
