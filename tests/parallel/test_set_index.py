"""``set_index(col)``: rows sample-sorted into range partitions with known divisions, and
``.loc`` label selection that reads only the partitions whose range overlaps.

hpcframe's ``set_index`` sorts by the index (as Dask), so the reference is pandas'
``set_index(col).sort_index(kind="stable")``. ``.loc[a:b]`` includes both ends; for a datetime
index a string bound is a time, and a partial date ("2013-06") covers its whole period, as
pandas' partial string indexing. Runs locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.frames import same

pytestmark = mpi.timeout(120)


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 6)


def exact(got, exp, msg=""):
    same(got, exp, msg=msg, exact=True)


def hourly():
    rng = np.random.default_rng(7)
    t = pd.date_range("2013-01-01", periods=2000, freq="3h")
    return pd.DataFrame({"t": rng.permutation(t), "x": rng.normal(size=2000), "k": rng.integers(0, 9, 2000)})


def test_set_index_sorts_and_records_divisions(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    for col in ["n", "v", "tz", "d", "s"]:
        got = df.set_index(col).compute()
        exact(got, ref.set_index(col).sort_index(kind="stable"), col)
    ts = df.set_index("n").persist()
    try:
        divisions = ts.node.scan().source.divisions
        held = [d for d in divisions if d is not None]
        assert len(held) >= 2
        for (_, hi, _), (lo, _, _) in zip(held, held[1:]):
            assert hi <= lo  # ranges in order
    finally:
        ts.unpersist()


@pytest.mark.parametrize("broadcast", [True, False])
def test_ties_keep_the_frames_row_order(broadcast):
    """Rows with equal keys keep the frame's order (pandas' stable sort_index): a merged
    frame's (a shuffled join stores its rows by hash partition) and a sorted frame's."""
    rng = np.random.default_rng(3)
    left = pd.DataFrame({"k": rng.integers(0, 40, 300), "g": rng.integers(0, 4, 300), "i": np.arange(300)})
    right = pd.DataFrame({"k": np.arange(40), "w": rng.integers(0, 9, 40)})
    m = hf.from_pandas(left, npartitions=3).merge(
        hf.from_pandas(right, npartitions=2), on="k", broadcast=broadcast
    )
    pm = left.merge(right, on="k")
    exact(m.set_index("g").compute(), pm.set_index("g").sort_index(kind="stable"))
    s = hf.from_pandas(left, npartitions=3).sort_values("i", ascending=False)
    ps = left.sort_values("i", ascending=False, kind="stable")
    exact(s.set_index("g").compute(), ps.set_index("g").sort_index(kind="stable"))


def test_loc_range_on_datetime_index_reads_fewer_partitions():
    pdf = hourly()
    df = hf.from_pandas(pdf, npartitions=5)
    ts = df.set_index("t").persist()
    ref = pdf.set_index("t").sort_index(kind="stable")
    try:
        ts.compute()
        everything = hf.last_run_stats()
        assert "divisions of t: [2013-01-01" in ts.explain()
        for a, b in [
            ("2013-03-01", "2013-03-07"),
            ("2013-02", "2013-02"),
            ("2013-05-05 10:00", "2013-05-06"),
            (pd.Timestamp("2013-01-10"), pd.Timestamp("2013-01-11 06:00")),
            (None, "2013-01-03"),
            ("2013-08-20", None),
        ]:
            got = ts.loc[a:b].compute()
            stats = hf.last_run_stats()
            exact(got, ref.loc[a:b], f"{a}:{b}")
            assert stats["partitions_pruned"] >= 3, (a, b, stats)
            assert mpi_sum(stats["partitions_read"]) < mpi_sum(everything["partitions_read"])
        exact(ts.loc["2013-04-02"].compute(), ref.loc["2013-04-02"])  # a whole day
        exact(ts.loc[ref.index[17]].compute(), ref.loc[ref.index[17]])  # one row: a Series
        with pytest.raises(KeyError):
            ts.loc[pd.Timestamp("1999-01-01")].compute()
    finally:
        ts.unpersist()


def mpi_sum(x):
    c = mpi.world()
    return x if c is None else c.allreduce(x)


def test_loc_on_tz_aware_and_integer_index(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    tz = df.set_index("tz")
    r = ref.set_index("tz").sort_index(kind="stable")
    exact(
        tz.loc["2024-03-10 01:00":"2024-03-10 03:00"].compute(), r.loc["2024-03-10 01:00":"2024-03-10 03:00"]
    )
    exact(tz.loc["2024-03-10 03":"2024-03-10 04"].compute(), r.loc["2024-03-10 03":"2024-03-10 04"])
    n = df.set_index("n")
    rn = ref.set_index("n").sort_index(kind="stable")
    exact(n.loc[10:20].compute(), rn.loc[10:20])
    exact(n.loc[7].compute(), rn.loc[7])  # duplicates: a frame
    exact(n.loc[10:20][["v", "s"]].compute(), rn.loc[10:20][["v", "s"]])


def test_loc_slices_of_an_index_with_missing_labels(shared_dir):
    """pandas' sorted index has its missing labels last, and slices it by position between
    present labels: loc[a:] runs over the missing labels to the end, loc[:b] and loc[a:b]
    stop before them; a time string bound is resolved by value (loc["2024-01-02":] leaves
    NaT out). loc[a:] left the missing labels out."""
    import os

    from tests.helpers.mpi import barrier, rank

    rng = np.random.default_rng(3)
    n = 400
    miss = rng.random(n) < 0.2
    f = np.where(miss, np.nan, rng.integers(0, 50, n).astype("float64"))
    pdf = pd.DataFrame(
        {
            "f": f,
            "k": pd.array(
                [None if m else f"k{int(v):02d}" for m, v in zip(miss, np.nan_to_num(f))], dtype="str"
            ),
            "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(f, unit="D"),
            "v": np.arange(n),
        }
    )
    d = os.path.join(shared_dir, "set_index_missing_labels")
    if rank() == 0:
        os.makedirs(d)
        for i in range(4):
            pdf.iloc[i * 100 : (i + 1) * 100].to_parquet(os.path.join(d, f"part-{i}.parquet"), index=False)
    barrier()
    df, pdf = hf.read_parquet(d), pd.read_parquet(d)  # pandas on the same files
    bounds = {
        "f": (12.0, 30.0),
        "k": ("k12", "k30"),
        "t": (pd.Timestamp("2024-01-13"), pd.Timestamp("2024-01-31")),
    }
    for col, (a, b) in bounds.items():
        ts = df.set_index(col)
        ref = pdf.set_index(col).sort_index(kind="stable")
        for sl in (slice(a, None), slice(None, b), slice(a, b)):
            exact(ts.loc[sl].compute(), ref.loc[sl], f"{col} {sl}")
    ts, ref = df.set_index("t"), pdf.set_index("t").sort_index(kind="stable")
    exact(ts.loc["2024-01-13":].compute(), ref.loc["2024-01-13":], "time string")


def test_set_index_of_empty_and_more_ranks_than_partitions(nasty, monkeypatch):
    path, ref = nasty
    df = hf.read_parquet(path)
    none = df[df.n > 1000].set_index("v")
    exact(none.compute(), ref[ref.n > 1000].set_index("v"))
    monkeypatch.setattr(hf.config, "partitions", 2)
    exact(df.set_index("v").compute(), ref.set_index("v").sort_index(kind="stable"))
    exact(df.set_index("n").loc[3:40].compute(), ref.set_index("n").sort_index(kind="stable").loc[3:40])


def test_set_index_sorted_true(nasty, shared_dir):
    """sorted=True: no splitters, the blocks of data already in order become the partitions."""
    import os

    path, ref = nasty
    out = os.path.join(shared_dir, "by_id_desc_then_n")
    hf.read_parquet(path).sort_values("n").to_parquet(out)
    back = hf.read_parquet(out)
    ts = back.set_index("n", sorted=True).persist()
    try:
        rn = ref.sort_values("n", kind="stable").set_index("n")
        exact(ts.compute()[list(rn.columns)], rn)
        exact(ts.loc[5:9].compute()[list(rn.columns)], rn.loc[5:9])
        assert hf.last_run_stats()["partitions_pruned"] >= 1
    finally:
        ts.unpersist()
    with pytest.raises(ValueError, match="not sorted"):
        hf.read_parquet(path).set_index("v", sorted=True).compute()


def test_errors(nasty):
    path, _ = nasty
    df = hf.read_parquet(path)
    with pytest.raises(TypeError, match="set_index"):
        df.loc[1:2]
    with pytest.raises(hf.ColumnNotFoundError):
        df.set_index("nope")
    with pytest.raises(NotImplementedError):
        df.set_index(["n", "v"])
