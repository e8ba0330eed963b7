"""``groupstats.corr_per_group`` (the per-group correlation behind ``g.x.corr(g.y)``)
against pandas' own ``g.apply(lambda d: d.x.corr(d.y))``, bit for bit: NaN values, constant
groups, one-row groups, NaN keys kept or dropped, unsorted groups, ints near 2**63,
float32, bools and pandas' nullable dtypes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe.groupstats import _segment_sums, corr_per_group, fast_corr_dtype


def reference(g):
    out = g.apply(lambda d: d["x"].corr(d["y"]))
    if not isinstance(out, pd.Series):  # no group: pandas gives an empty frame
        out = pd.Series([], index=g.size().index, dtype="float64")
    return out.astype("float64").rename("x")


def check(df, keys, dropna=True, sort=True):
    g = df.groupby(keys, dropna=dropna, sort=sort, observed=True)[["x", "y"]]
    got = corr_per_group(g, "x", "y")
    pd.testing.assert_series_equal(got, reference(g), check_exact=True)


VALUES = {
    "float": st.floats(-1e6, 1e6) | st.just(float("nan")),
    "float_inf": st.floats(allow_nan=True, allow_infinity=True, width=64),
    "small_int": st.integers(-5, 5),
    "big_int": st.integers(2**63 - 20, 2**63 - 1),
}


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 60),
    kind=st.sampled_from(sorted(VALUES)),
    dropna=st.booleans(),
    sort=st.booleans(),
)
def test_equals_pandas_apply(data, n, kind, dropna, sort):
    keys = data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, np.nan]), min_size=n, max_size=n))
    xs = data.draw(st.lists(VALUES[kind], min_size=n, max_size=n))
    ys = data.draw(st.lists(VALUES["float"], min_size=n, max_size=n))
    df = pd.DataFrame({"k": pd.Series(keys, dtype="float64"), "x": xs, "y": ys})
    if kind.endswith("int"):
        df["x"] = df["x"].astype("uint64" if kind == "big_int" else "int64")
    check(df, ["k"], dropna=dropna, sort=sort)


@pytest.mark.parametrize(
    "x",
    [
        pd.Series([1.5, 2.0, 2.0, 7.25, 1.0, 3.0], dtype="float32"),
        pd.Series([True, False, True, True, False, False]),
        pd.Series([1, None, 3, 4, 5, 9], dtype="Int64"),
        pd.Series([0.5, None, 0.25, 1.0, 2.0, 8.0], dtype="Float64"),
        pd.Series([2**62, -(2**62), 5, 7, 2**63 - 1, 3], dtype="int64"),
    ],
    ids=["float32", "bool", "Int64", "Float64", "int64_extremes"],
)
def test_dtypes(x):
    assert fast_corr_dtype(x.dtype)
    df = pd.DataFrame({"k": ["a", "b", "a", "b", "a", "b"], "x": x, "y": [1.0, 4.0, 2.5, -1.0, 0.0, 3.0]})
    check(df, ["k"])
    check(df.assign(k2=[1, 1, 1, 2, 2, 2]), ["k", "k2"])


def test_constant_and_single_row_groups_are_nan():
    df = pd.DataFrame(
        {"k": [1, 1, 2, 3, 3, 3], "x": [5.0, 5.0, 1.0, 1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0, 3.0, 1.0, 2.0]}
    )
    check(df, ["k"])
    got = corr_per_group(df.groupby("k")[["x", "y"]], "x", "y")
    assert np.isnan(got[1]) and np.isnan(got[2]) and got[3] == pytest.approx(-0.5)


def test_no_rows():
    check(pd.DataFrame({"k": pd.Series([], dtype="int64"), "x": [], "y": []}), ["k"])


def test_other_dtypes_go_to_pandas():
    for dtype in ["object", "category", "datetime64[ns]", "string"]:
        assert not fast_corr_dtype(pd.Series([], dtype=dtype).dtype)


def test_segment_sums_are_numpy_sums():
    """Each segment's sum is NumPy's ``sum`` of its slice, bit for bit, also for segments
    longer than NumPy's pairwise block (128) and buffer (8192), and for ``-0.0`` alone
    (``sum`` starts from ``0.0``; a bare ``np.add.reduceat`` from the first value)."""
    rng = np.random.default_rng(7)
    sizes = np.array([1, 2, 7, 8, 9, 127, 128, 129, 1000, 8191, 8192, 8193, 30001, 1, 3])
    values = rng.standard_normal(sizes.sum()) * 10.0 ** rng.uniform(-8, 8, sizes.sum())
    values[0] = -0.0
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    got = _segment_sums(values, starts)
    want = np.array([values[s : s + k].sum() for s, k in zip(starts, sizes)])
    assert got.tobytes() == want.tobytes()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    groups=st.integers(1, 40),
    rows=st.integers(0, 40_000),
    nan_share=st.sampled_from([0.0, 0.01, 0.5]),
    spread=st.sampled_from([1.0, 1e-9, 1e12]),
)
def test_large_groups_equal_pandas_apply(seed, groups, rows, nan_share, spread):
    """Groups of thousands of rows (NumPy's pairwise summation and BLAS' dot products over
    long slices), values with a large common offset, NaNs, constant groups."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, groups, rows)
    x = 1e6 + rng.standard_normal(rows) * spread
    y = rng.standard_normal(rows) + 0.3 * x
    x[rng.random(rows) < nan_share] = np.nan
    x[k == 0] = 2.5  # a constant group
    df = pd.DataFrame({"k": k, "x": x, "y": y})
    check(df, ["k"])
    check(df, ["k"], sort=False)
