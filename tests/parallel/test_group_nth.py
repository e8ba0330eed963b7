"""``groupby().head(n)``, ``tail(n)`` and ``nth(n)`` (issue 10), compared with pandas.

They are lazy frames (Series after ``[col]``) in the frame's row order; the computed result
keeps pandas' row labels (the rows' positions in the frame; pandas 2+ ``nth`` is a filter,
not an aggregation). Rows with a missing key are left out (``dropna=True``), as in pandas.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import exact, materialize
from tests.helpers.frames import keyed_frames, spmd_settings

pytestmark = mpi.timeout(120)
PARTITIONS = 5


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", PARTITIONS)


SELECT = {
    "head2": lambda g: g.head(2),
    "head_-3": lambda g: g.head(-3),
    "tail1": lambda g: g.tail(1),
    "tail3": lambda g: g.tail(3),
    "nth0": lambda g: g.nth(0),
    "nth1": lambda g: g.nth(1),
    "nth-1": lambda g: g.nth(-1),
    "nth_list": lambda g: g.nth([0, 2, -1]),
    "nth_slice": lambda g: g.nth(slice(1, 3)),
}

KEYSETS = {
    "str_with_nulls": (["carrier"], True),
    "str_with_nulls_dropna_false": (["carrier"], False),
    "two_keys": (["origin", "ki"], True),
    "categorical": (["cat"], True),
    "float_with_nan_dropna_false": (["kf"], False),
}
COLS = ["id", "carrier", "origin", "ki", "kf", "cat", "x", "n", "day", "tsz", "flag"]


@pytest.mark.parametrize("keyset", list(KEYSETS))
def test_head_tail_nth(dir6, keyset):
    keys, dropna = KEYSETS[keyset]
    df, ref = dir6.open()[COLS], dir6.pdf[COLS]
    names = list(SELECT)
    lazy = [SELECT[k](df.groupby(keys, dropna=dropna)) for k in names]
    lazy += [SELECT[k](df.groupby(keys, dropna=dropna).x) for k in ("head2", "nth-1", "nth_list")]
    lazy += [df.groupby(keys, dropna=dropna)[["x", "n"]].tail(2)]
    got = hf.compute(*lazy)
    exp = [SELECT[k](ref.groupby(keys, dropna=dropna)) for k in names]
    exp += [SELECT[k](ref.groupby(keys, dropna=dropna).x) for k in ("head2", "nth-1", "nth_list")]
    exp += [ref.groupby(keys, dropna=dropna)[["x", "n"]].tail(2)]
    for i, (g, e) in enumerate(zip(got, exp)):
        exact(g, e, msg=f"{keyset} case {i}")


def test_lazy_use_of_the_rows(dir6):
    """Filter, assign, aggregate and group again: the rows are a lazy frame."""
    df, ref = dir6.open()[COLS], dir6.pdf[COLS]

    def q(d):
        h = d.groupby("carrier").head(3)
        return (
            h[h.x > 10],
            h.assign(z=h.n * 2)[["id", "z"]],
            h.n.sum(),
            h.groupby("origin").x.mean(),
            h.len() if hasattr(h, "len") else len(h),
        )

    got = hf.compute(*q(df)[:4], q(df)[4])
    exp = q(ref)
    exact(got[0], exp[0], "filtered")
    exact(got[1], exp[1], "assigned")
    assert got[2] == exp[2]
    pd.testing.assert_series_equal(got[3], exp[3], rtol=1e-12)
    assert got[4] == len(ref.groupby("carrier").head(3))


def test_after_a_filter(dir6):
    """pandas keeps the labels of the filtered frame (positions in the whole frame)."""
    df, ref = dir6.open()[COLS], dir6.pdf[COLS]
    f, rf = df[df.n > 500], ref[ref.n > 500]
    got = hf.compute(f.groupby("carrier").nth(1), f.groupby(["origin", "cat"]).tail(2).x)
    exact(got[0], rf.groupby("carrier").nth(1), "nth after filter")
    exact(got[1], rf.groupby(["origin", "cat"]).tail(2).x, "tail after filter")


NASTY_KEYS = {
    "giant_group": (["one"], True),
    "str_with_nulls": (["s"], True),
    "bool_with_nulls": (["kb"], True),
    "bool_with_nulls_dropna_false": (["kb"], False),
    "int_near_2_63": (["big"], True),
    "float32_dropna_false": (["f32"], False),
    "date_and_categorical": (["d", "cat"], True),
    "tz": (["tz"], True),
}


@pytest.mark.parametrize("keyset", list(NASTY_KEYS))
def test_nasty_keys(nasty, keyset):
    path, ref = nasty
    keys, dropna = NASTY_KEYS[keyset]
    df = hf.read_parquet(path)
    got = hf.compute(
        df.groupby(keys, dropna=dropna).head(2),
        df.groupby(keys, dropna=dropna).nth([0, -1]),
        df.groupby(keys, dropna=dropna).v.tail(1),
    )
    exp = [
        ref.groupby(keys, dropna=dropna).head(2),
        ref.groupby(keys, dropna=dropna).nth([0, -1]),
        ref.groupby(keys, dropna=dropna).v.tail(1),
    ]
    for i, (g, e) in enumerate(zip(got, exp)):
        exact(g, e, msg=f"{keyset} case {i}")


def test_empty_and_more_ranks_than_partitions(dir6, cfg):
    ref = dir6.pdf[COLS]
    cfg(partitions=2)
    df = hf.from_pandas(ref, npartitions=1)
    e, re_ = df[df.n < 0], ref[ref.n < 0]
    got = hf.compute(
        df.groupby("carrier").head(2),
        df.groupby("origin").nth(-1),
        e.groupby("carrier").head(2),
        e.groupby("carrier").x.nth(0),
    )
    exact(got[0], ref.groupby("carrier").head(2), "one partition head")
    exact(got[1], ref.groupby("origin").nth(-1), "one partition nth")
    empty = materialize(got[2])
    assert len(empty) == 0 and list(empty.columns) == COLS
    # (an empty categorical column has no categories: the user guide's differences)
    kinds = [d.name if isinstance(d, pd.CategoricalDtype) else d for d in empty.dtypes]
    assert kinds == [d.name if isinstance(d, pd.CategoricalDtype) else d for d in re_.dtypes]
    assert len(materialize(got[3])) == 0 and materialize(got[3]).dtype == re_.x.dtype


def test_rows_per_group_after_sort(dir6):
    """db-benchmark q8's shape (the largest two per group: sort, then head), and other
    selections after a sort: the sorted order and the original labels, as pandas."""
    df, ref = dir6.open()[COLS], dir6.pdf[COLS]
    s, rs = df.sort_values("x", ascending=False), ref.sort_values("x", ascending=False, kind="stable")
    s2 = df.sort_values(["origin", "day"], ascending=[True, False], na_position="first")
    rs2 = ref.sort_values(["origin", "day"], ascending=[True, False], na_position="first", kind="stable")
    got = hf.compute(
        s[s.x.notna()].groupby("carrier").head(2),
        s2.groupby("carrier").nth([0, -1]),
        s2.groupby(["cat", "ki"]).x.tail(1),
        s2[s2.n > 300].groupby("origin").head(3),
    )
    exp = [
        rs[rs.x.notna()].groupby("carrier").head(2),
        rs2.groupby("carrier").nth([0, -1]),
        rs2.groupby(["cat", "ki"]).x.tail(1),
        rs2[rs2.n > 300].groupby("origin").head(3),
    ]
    for i, (g, e) in enumerate(zip(got, exp)):
        exact(g, e, msg=f"after sort case {i}")


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
@pytest.mark.parametrize("broadcast", [False, None], ids=["shuffled", "chosen"])
def test_after_a_merge(dir6, how, broadcast):
    """The labels are the rows' positions in the merged frame (pandas': left order then
    right order, right order for ``how="right"``, the keys for ``"outer"``), also for a
    shuffled join, whose partitions hold the rows by hash of the key (a regression: the
    rows were right and their labels positions in storage order)."""
    df, ref = dir6.open()[COLS], dir6.pdf[COLS]
    rref = pd.DataFrame({"origin": ["EWR", "JFK", "JFK", "XXX", None], "w": [1, 2, 3, 4, 5]})
    m = df.merge(hf.from_pandas(rref, npartitions=2), on="origin", how=how, broadcast=broadcast)
    rm = ref.merge(rref, on="origin", how=how)
    s, rs = m.sort_values("x", ascending=False), rm.sort_values("x", ascending=False, kind="stable")
    # a filter reading both sides stays above the join (one reading one side moves into the
    # join: the user guide's differences list says which labels those rows then get)
    f, rf = m[m.n > m.w * 100], rm[rm.n > rm.w * 100]
    got = hf.compute(
        m.groupby("carrier").head(2),
        m.groupby(["origin", "w"], dropna=False).nth([0, -1]),
        f.groupby("carrier").x.tail(1),
        s.groupby("carrier").head(1),
    )
    exp = [
        rm.groupby("carrier").head(2),
        rm.groupby(["origin", "w"], dropna=False).nth([0, -1]),
        rf.groupby("carrier").x.tail(1),
        rs.groupby("carrier").head(1),
    ]
    for i, (g, e) in enumerate(zip(got, exp)):
        exact(g, e, msg=f"{how} case {i}")


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_GROUP_NTH_EXAMPLES", "5"))

if st is not None:
    frames = keyed_frames([np.nan, -1.5, 0.0, 2.25, np.inf])
    _SETTINGS = spmd_settings(EXAMPLES)

    @_SETTINGS
    @given(
        frame=frames,
        keys=st.sampled_from([["k"], ["i"], ["k", "i"]]),
        how=st.sampled_from(sorted(SELECT)),
        dropna=st.booleans(),
    )
    def test_head_nth_hypothesis(frame, keys, how, dropna):
        pdf, nparts = frame
        df = hf.from_pandas(pdf, npartitions=nparts)
        got = SELECT[how](df.groupby(keys, dropna=dropna)).compute()
        exp = SELECT[how](pdf.groupby(keys, dropna=dropna))
        if len(exp) == 0:
            assert len(got) == 0 and list(got.columns) == list(exp.columns)
        else:
            exact(got, exp, msg=f"{keys} {how} dropna={dropna} npartitions={nparts}")


@pytest.mark.parametrize("dropna", [True, False])
def test_categorical_columns_with_other_categories_in_every_file(mixed_categories, dropna):
    """Rows of a dictionary key and a dictionary value whose files have other category lists
    (another order, unused ones; an empty file, a file where every key is missing) keep
    pandas' categories, the union in file order: a partition's rows come from several blocks
    and ranks, and were stacked as ``str``."""
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    names = ["head2", "tail1", "nth1", "nth-1", "nth_list"]
    lazy = [SELECT[k](df.groupby("k", dropna=dropna)) for k in names]
    lazy += [df.groupby(["c", "k"], dropna=dropna).head(1), df.groupby("i").c.nth(-1)]
    exp = [SELECT[k](ref.groupby("k", dropna=dropna)) for k in names]
    exp += [ref.groupby(["c", "k"], dropna=dropna).head(1), ref.groupby("i").c.nth(-1)]
    for i, (g, e) in enumerate(zip(hf.compute(*lazy), exp)):
        exact(g, e, msg=f"case {i} dropna={dropna}")
