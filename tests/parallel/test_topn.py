"""Top-n without a full sort: ``nlargest``/``nsmallest`` (Frame and Series, ``keep`` first,
last and all, ties, NaN), ``head``/``tail`` after a sort, compared with pandas.

Each block keeps only its candidates and partials are combined in leaf order, so ties are
resolved by the frame's order exactly as pandas resolves them. ``head(n)`` of an ordered
frame must read every partition (the "unfiltered head: read just enough partitions"
shortcut is only for frames in dataset order). Runs locally and under ``mpiexec -n 1..4``.
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
    monkeypatch.setattr(hf.config, "partitions", 5)


def exact(got, exp, msg=""):
    same(got, exp, msg=msg, exact=True)


TOPS = {
    "ints_many_ties": ["n"],
    "float_nan": ["v"],
    "float32": ["f32"],
    "int64_extremes": ["big"],
    "two_keys": ["n", "v"],
    "dates": ["d"],
    "tz_times": ["tz"],
}


@pytest.mark.parametrize("keep", ["first", "last", "all"])
@pytest.mark.parametrize("case", list(TOPS))
def test_nlargest_nsmallest(nasty, case, keep):
    path, ref = nasty
    cols = TOPS[case]
    df = hf.read_parquet(path)
    got = hf.compute(
        df.nlargest(5, cols, keep=keep),
        df.nsmallest(7, cols, keep=keep),
        df.nlargest(1000, cols, keep=keep),
        df[df.n > 40].nsmallest(3, cols, keep=keep),
    )
    exact(got[0], ref.nlargest(5, cols, keep=keep), f"{case} nlargest")
    exact(got[1], ref.nsmallest(7, cols, keep=keep), f"{case} nsmallest")
    exact(got[2], ref.nlargest(1000, cols, keep=keep), f"{case} nlargest(1000)")
    r = ref[ref.n > 40].reset_index(drop=True)
    exact(got[3], r.nsmallest(3, cols, keep=keep), f"{case} filtered")


@pytest.mark.parametrize("keep", ["first", "last", "all"])
def test_series_nlargest(nasty, keep):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = hf.compute(
        df.n.nlargest(4, keep=keep), df.v.nsmallest(6, keep=keep), (df.n * -1).nlargest(3, keep=keep)
    )
    exact(got[0], ref.n.nlargest(4, keep=keep))
    exact(got[1], ref.v.nsmallest(6, keep=keep))
    exact(got[2], (ref.n * -1).nlargest(3, keep=keep))


def test_nlargest_of_a_group_by_result(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = hf.compute(
        df.groupby("s").n.sum().nlargest(2), df.groupby("cat").agg(m=("v", "mean")).nsmallest(2, "m")
    )
    exact(got[0], ref.groupby("s").n.sum().nlargest(2))
    same(got[1], ref.groupby("cat", observed=True).agg(m=("v", "mean")).nsmallest(2, "m"))  # means: rtol


def test_nlargest_after_a_sort_resolves_ties_in_sorted_order(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    s = df.sort_values("v", ascending=False)
    r = ref.sort_values("v", ascending=False, kind="stable")
    for keep in ("first", "last"):
        exact(s.nlargest(6, "n", keep=keep).compute(), r.nlargest(6, "n", keep=keep), keep)


def test_head_after_sort_reads_every_partition(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    df.head(3).compute()
    plain = hf.last_run_stats()["rows_read"]
    got = df.sort_values("v", ascending=False).head(3).compute()
    ordered = hf.last_run_stats()["rows_read"]
    exact(got, ref.sort_values("v", ascending=False, kind="stable").head(3))
    total = hf.compute(df.len())[0]
    # summed over the ranks: a sorted head reads all rows, a plain head only the first blocks
    plain, ordered = mpi_sum(plain), mpi_sum(ordered)
    assert ordered == total and plain < total


def mpi_sum(x):
    c = mpi.world()
    return x if c is None else c.allreduce(x)


def test_top_n_ties_across_many_blocks():
    """Every value tied: the answer is the first (or last) rows in dataset order."""
    pdf = pd.DataFrame({"x": np.zeros(50), "i": np.arange(50)})
    df = hf.from_pandas(pdf, npartitions=7)
    for keep in ("first", "last", "all"):
        exact(df.nlargest(4, "x", keep=keep).compute(), pdf.nlargest(4, "x", keep=keep), keep)
        exact(df.nsmallest(4, "x", keep=keep).compute(), pdf.nsmallest(4, "x", keep=keep), keep)
    exact(df.sort_values("x").head(5).compute(), pdf.sort_values("x", kind="stable").head(5))
    exact(df.sort_values("x").tail(5).compute(), pdf.sort_values("x", kind="stable").tail(5))


def test_top_n_of_empty_and_filtered_out(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    none = df[df.n < -5]
    r = ref[ref.n < -5]
    got = hf.compute(none.nlargest(3, "v"), none.v.nsmallest(3), none.sort_values("v").head(2))
    exact(got[0], r.nlargest(3, "v"))
    exact(got[1], r.v.nsmallest(3))
    exact(got[2], r.sort_values("v").head(2))


def test_errors(nasty):
    path, _ = nasty
    df = hf.read_parquet(path)
    with pytest.raises(TypeError, match="nlargest"):
        df.nlargest(3, "s")
    with pytest.raises(ValueError, match="keep"):
        df.nlargest(3, "n", keep="middle")
    with pytest.raises(hf.ColumnNotFoundError):
        df.nsmallest(3, "nope")
