"""A group-by by left columns of a left or inner join that counts only right-side columns
counts per key before the join (``hpcframe.frame._counted_before_join``, TPC-H q13:
``customer.merge(orders, how="left").groupby("c_custkey").o_orderkey.count()``).

The answers equal pandas' with the rewrite and without it (``COUNT_BEFORE_JOIN``): NaN
keys matching NaN keys, keys of several columns or of different names and dtypes, duplicate
keys on both sides, counted columns with missing values, an empty or fully filtered side,
``dropna=False``, ``sort=False``, ``as_index=False``, results used again as frames; the
shapes it must leave alone (another aggregation, a key or group key of the right side, an
outer join) are computed as written. Hypothesis draws small random frames.

Every test runs on every rank, locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import hpcframe as hf
import hpcframe.frame as hframe
from tests.helpers import mpi
from tests.helpers.compare import close
from tests.helpers.datasets import arrow_to_pandas, write_tables
from tests.helpers.frames import merge_key_rows, spmd_settings

pytestmark = mpi.timeout(120)

#: the marker the rewritten group-by's label carries (explain)
MARK = "counts taken per key before the join"


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 5)
    monkeypatch.setattr(hf.config, "block_rows", 30)


def _tables():
    rng = np.random.default_rng(13)
    n_left, n_right = 120, 300
    lk = rng.integers(0, 40, n_left)
    lk[:6] = [3, 3, 3, 7, 7, 45]  # duplicate left keys, a key no right row has
    lf = lk.astype("float64")
    lf[rng.random(n_left) < 0.1] = np.nan
    ls = rng.choice(["a", "b", "c"], n_left).astype(object)
    ls[rng.random(n_left) < 0.1] = None
    left = pa.table(
        {
            "k": pa.array(lk, pa.int64()),
            "kf": pa.array(lf, pa.float64()),
            "s": pa.array(ls, pa.string()),
            "g": pa.array(rng.integers(0, 4, n_left), pa.int64()),
            "name": pa.array([f"c{i}" for i in range(n_left)], pa.string()),
            "c": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, 3, n_left), pa.int32()), pa.array(["x", "y", "z"])
            ),
        }
    )
    rk = rng.integers(0, 50, n_right)  # keys 40..49: no left row
    rf = rk.astype("float64")
    rf[rng.random(n_right) < 0.1] = np.nan
    rs = rng.choice(["a", "b", "d"], n_right).astype(object)
    rs[rng.random(n_right) < 0.1] = None
    v = rng.normal(0, 1, n_right)
    v[rng.random(n_right) < 0.2] = np.nan  # counted values that are missing
    right = pa.table(
        {
            "rk": pa.array(rk, pa.int64()),
            "k": pa.array(rk, pa.int64()),
            "kf": pa.array(rf, pa.float64()),
            "s": pa.array(rs, pa.string()),
            "v": pa.array(v, pa.float64()),
            "id": pa.array(np.arange(n_right), pa.int64()),
            "name": pa.array([f"o{i}" for i in range(n_right)], pa.string()),
        }
    )
    return {"left": left, "right": right}


@pytest.fixture(scope="module")
def data(shared_dir):
    """(left frame, right frame, left pandas, right pandas)."""
    root = os.path.join(shared_dir, "count_before_join")
    tables = _tables()
    mpi.on_root(lambda: write_tables(root, tables, pieces={"left": 2, "right": 3}))
    ref = {k: arrow_to_pandas(t) for k, t in tables.items()}
    return (
        hf.read_parquet(os.path.join(root, "left")),
        hf.read_parquet(os.path.join(root, "right")),
        ref["left"],
        ref["right"],
    )


@pytest.fixture(params=[True, False], ids=["counted-first", "joined-first"])
def rewrite(request, monkeypatch):
    """Both ways: the rewrite on (the default) and off."""
    monkeypatch.setattr(hframe, "COUNT_BEFORE_JOIN", request.param)
    return request.param


def _rewritten(result) -> bool:
    return MARK in result.explain()


# (left columns, right columns, merge keywords)
JOINS = {
    "int": (["k", "g", "s"], ["k", "id", "v"], dict(on="k")),
    "names_differ": (["k", "g", "s"], ["rk", "id", "v"], dict(left_on="k", right_on="rk")),
    "float_nan": (["kf", "g", "s"], ["kf", "id", "v"], dict(on="kf")),
    "int_vs_float_nan": (["k", "g"], ["kf", "id", "v"], dict(left_on="k", right_on="kf")),
    "str_nulls": (["s", "g"], ["s", "id", "v"], dict(on="s")),
    "two_keys": (["k", "s", "g"], ["k", "s", "id", "v"], dict(on=["k", "s"])),
    "name_overlap": (["k", "name", "g"], ["k", "name", "id"], dict(on="k")),
}
# group keys per join (a join key, another left column, both)
BY = {
    "int": [["k"], ["g"], ["g", "s"]],
    "names_differ": [["k"], ["s"]],
    "float_nan": [["kf"], ["g"]],
    "int_vs_float_nan": [["k"], ["g"]],
    "str_nulls": [["s"], ["g"]],
    "two_keys": [["k", "s"], ["g"]],
    "name_overlap": [["k"], ["name_x"]],
}


def _cases():
    return [(j, by, how) for j in JOINS for by in BY[j] for how in ("left", "inner")]


@pytest.mark.parametrize("join,by,how", _cases())
def test_counts_equal_pandas(data, rewrite, join, by, how):
    left, right, lref, rref = data
    lc, rc, kw = JOINS[join]
    counted = "name_y" if join == "name_overlap" else "id"
    for dropna in (True, False):
        m = left[lc].merge(right[rc], how=how, **kw)
        mp = pd.merge(lref[lc], rref[rc], how=how, **kw)
        g = m.groupby(by, dropna=dropna)
        gp = mp.groupby(by, dropna=dropna, observed=True)
        got = g.agg(n=(counted, "count"), nv=("v", "count")) if "v" in rc else g.agg(n=(counted, "count"))
        exp = gp.agg(n=(counted, "count"), nv=("v", "count")) if "v" in rc else gp.agg(n=(counted, "count"))
        close(got, exp, f"{join} by {by} {how} dropna={dropna}", exact=True)
        # a group key renamed by the suffixes is not rewritten (the join's columns differ)
        assert _rewritten(got) == (rewrite and by != ["name_x"])
        close(g[counted].count(), gp[counted].count(), exact=True)


@pytest.mark.parametrize("how", ["left", "inner"])
def test_forms_of_count(data, rewrite, how):
    """Series count, dict, list, frame count(), as_index=False, sort=False, result reused."""
    left, right, lref, rref = data
    m = left[["k", "g"]].merge(right[["k", "id", "v"]], how=how, on="k")
    mp = pd.merge(lref[["k", "g"]], rref[["k", "id", "v"]], how=how, on="k")
    close(m.groupby("k").id.count(), mp.groupby("k").id.count(), exact=True)
    close(
        m.groupby("k").agg({"id": "count", "v": ["count"]}),
        mp.groupby("k").agg({"id": "count", "v": ["count"]}),
    )
    close(m.groupby("g")[["id", "v"]].count(), mp.groupby("g")[["id", "v"]].count(), exact=True)
    close(m.groupby("k").agg(["count"]), mp.groupby("k").agg(["count"]), exact=True)
    close(
        m.groupby("k", as_index=False).agg(n=("id", "count")),
        mp.groupby("k", as_index=False).agg(n=("id", "count")),
        exact=True,
    )
    close(
        m.groupby("g", sort=False).agg(n=("v", "count")),
        mp.groupby("g", sort=False).agg(n=("v", "count")),
        exact=True,
    )
    # q13's shape: the counts grouped again, as a frame
    per = m.groupby("k").agg(c=("id", "count")).reset_index()
    perp = mp.groupby("k").agg(c=("id", "count")).reset_index()
    dist = per.groupby("c").agg(n=("k", "count")).reset_index().sort_values(["n", "c"], ascending=False)
    distp = perp.groupby("c").agg(n=("k", "count")).reset_index().sort_values(["n", "c"], ascending=False)
    close(dist, distp, exact=True)
    close(per[per.c > 3], perp[perp.c > 3], exact=True, fresh_index=True)


@pytest.mark.parametrize("how", ["left", "inner"])
def test_empty_sides(data, rewrite, how):
    """A right side filtered to nothing (every left row unmatched, or no row at all) and an
    empty left side: pandas' empty or zero counts and dtypes."""
    left, right, lref, rref = data
    cases = [
        (
            left[["k", "g"]],
            right[right.id < 0][["k", "id"]],
            lref[["k", "g"]],
            rref[rref.id < 0][["k", "id"]],
        ),
        (left[left.g < 0][["k", "g"]], right[["k", "id"]], lref[lref.g < 0][["k", "g"]], rref[["k", "id"]]),
    ]
    for lf, rf, lp, rp in cases:
        got = lf.merge(rf, how=how, on="k").groupby("g").agg(n=("id", "count"))
        exp = pd.merge(lp, rp, how=how, on="k").groupby("g").agg(n=("id", "count"))
        close(got, exp, exact=True)


def test_categorical_group_key(data, rewrite):
    left, right, lref, rref = data
    m = left[["k", "c"]].merge(right[["k", "id"]], how="left", on="k")
    mp = pd.merge(lref[["k", "c"]], rref[["k", "id"]], how="left", on="k")
    close(
        m.groupby("c").agg(n=("id", "count")),
        mp.groupby("c", observed=True).agg(n=("id", "count")),
        exact=True,
    )


def test_filters_before_and_after(data, rewrite):
    """Filters on either side (pushed into the sides) still count before the join; a filter
    on the joined rows that stays above the join leaves the group-by as written."""
    left, right, lref, rref = data
    m = left[["k", "g"]].merge(right[["k", "id", "v"]], how="left", on="k")
    mp = pd.merge(lref[["k", "g"]], rref[["k", "id", "v"]], how="left", on="k")
    f, fp = m[m.g > 0], mp[mp.g > 0]
    close(f.groupby("k").agg(n=("id", "count")), fp.groupby("k").agg(n=("id", "count")), exact=True)
    f, fp = m[m.v.isna() | (m.g > 1)], mp[mp.v.isna() | (mp.g > 1)]
    got = f.groupby("k").agg(n=("id", "count"))
    close(got, fp.groupby("k").agg(n=("id", "count")), exact=True)
    assert not _rewritten(got)


@pytest.mark.parametrize(
    "shape",
    [
        "sum",
        "count_and_sum",
        "right_group_key",
        "count_right_key",
        "outer",
        "right_join",
        "size",
        "left_column",
    ],
)
def test_left_alone(data, shape):
    """The shapes the rewrite does not apply to are computed as written (and equal pandas)."""
    left, right, lref, rref = data
    how = {"outer": "outer", "right_join": "right"}.get(shape, "left")
    lc, rc = ["k", "g", "name"], ["rk", "s", "id", "v"]
    m = left[lc].merge(right[rc], how=how, left_on="k", right_on="rk")
    mp = pd.merge(lref[lc], rref[rc], how=how, left_on="k", right_on="rk")
    by, spec = {
        "sum": ("k", dict(n=("v", "sum"))),
        "count_and_sum": ("k", dict(n=("id", "count"), t=("v", "sum"))),
        "right_group_key": ("s", dict(n=("id", "count"))),
        "count_right_key": ("k", dict(n=("rk", "count"))),
        "outer": ("k", dict(n=("id", "count"))),
        "right_join": ("k", dict(n=("id", "count"))),
        "size": ("k", None),
        "left_column": ("k", dict(n=("name", "count"))),
    }[shape]
    if spec is None:
        got, exp = m.groupby(by).size(), mp.groupby(by).size()
    else:
        got, exp = m.groupby(by).agg(**spec), mp.groupby(by).agg(**spec)
    close(got, exp)
    assert not _rewritten(got)


def test_rewrite_explained(data):
    left, right, _, _ = data
    got = left.merge(right, how="left", on="k").groupby("k").agg(n=("id", "count"))
    text = got.explain()
    assert MARK in text and "count(id) by ['k']" in text


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames, both ways, against pandas
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_COUNT_JOIN_EXAMPLES", "15"))

if st is not None:

    def _frame(rows, value):
        return pd.DataFrame(
            {
                "k1": np.array([r[0] for r in rows], dtype=np.float64),
                "k2": pd.array([r[1] for r in rows], dtype="str"),
                "g": np.array([r[2] % 3 for r in rows], dtype=np.int64),
                value: np.array([np.nan if r[2] < -1 else r[2] for r in rows], dtype=np.float64),
            }
        )

    _rows = merge_key_rows()

    @spmd_settings(EXAMPLES)
    @given(
        left=_rows,
        right=_rows,
        nparts=st.tuples(st.integers(1, 4), st.integers(1, 3)),
        keys=st.sampled_from([["k1"], ["k2"], ["k1", "k2"]]),
        by=st.sampled_from(["keys", "g", "keys+g"]),
        how=st.sampled_from(["inner", "left"]),
        broadcast=st.sampled_from([None, True, False]),
        dropna=st.booleans(),
        sort=st.booleans(),
    )
    def test_count_before_join_hypothesis(left, right, nparts, keys, by, how, broadcast, dropna, sort):
        lp, rp = _frame(left, "a"), _frame(right, "b").rename(columns={"g": "h"})
        group = {"keys": keys, "g": ["g"], "keys+g": keys + ["g"]}[by]
        mp = pd.merge(lp, rp, how=how, on=keys)
        exp = mp.groupby(group, dropna=dropna, sort=sort).agg(n=("b", "count"), m=("h", "count"))
        lf, rf = hf.from_pandas(lp, npartitions=nparts[0]), hf.from_pandas(rp, npartitions=nparts[1])
        m = lf.merge(rf, how=how, on=keys, broadcast=broadcast)
        old = hframe.COUNT_BEFORE_JOIN
        try:
            for flag in (True, False):
                hframe.COUNT_BEFORE_JOIN = flag
                got = m.groupby(group, dropna=dropna, sort=sort).agg(n=("b", "count"), m=("h", "count"))
                pd.testing.assert_frame_equal(got.compute(), exp)
        finally:
            hframe.COUNT_BEFORE_JOIN = old
