"""Unit tests of :func:`hpcframe.fastsort.group_top_rows`, the pre-filter of a per-group
top-n (``sort_values(...).groupby(keys).head(n)``, db-benchmark q8): before a block is sorted,
the rows that cannot be among the first ``n`` of their group are dropped.

Two properties, on random columns of every supported kind with many ties, NaN/NaT, ±inf,
-0.0, ints at the ends of their range: the mask is exactly "keep unless at least ``n``
valued rows of the group are strictly ahead" (brute force), and pandas' stable sort plus
``cumcount() < n`` picks the same rows, with the same ranks, from the kept rows as from all.
The engine's answers against pandas are in ``tests/parallel/test_group_topn.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe.fastsort import TOP_ROWS_MAX_N, group_top_rows

_I64 = np.iinfo(np.int64)
_U64 = np.iinfo(np.uint64)
POOLS = {
    "float64": np.array([np.nan, -0.0, 0.0, 1.5, -2.0, np.inf, -np.inf, 7.0, 1e308]),
    "float32": np.array([np.nan, -0.0, 0.0, 1.5, -2.0, np.inf, 3.25], dtype=np.float32),
    "int64": np.array([_I64.min, _I64.min + 1, -1, 0, 5, _I64.max - 1, _I64.max], dtype=np.int64),
    "uint64": np.array([0, 1, 2**63, _U64.max - 1, _U64.max], dtype=np.uint64),
    "int8": np.array([-128, -1, 0, 3, 127], dtype=np.int8),
    "datetime64[ns]": np.array(["NaT", "2001-01-01", "1970-01-01", "2262-04-11"], dtype="datetime64[ns]"),
    "timedelta64[s]": np.array(["NaT", 0, -5, 9], dtype="timedelta64[s]"),
}


def _missing(values: np.ndarray) -> np.ndarray:
    return pd.isna(pd.Series(values)).to_numpy()


def _strictly_ahead(values: np.ndarray, ids: np.ndarray, ascending: bool) -> np.ndarray:
    """How many valued rows of each row's group are strictly ahead of it (brute force)."""
    v = pd.Series(values)
    valued = ~_missing(values)
    out = np.zeros(len(values), dtype=np.int64)
    for i in range(len(values)):
        if not valued[i]:
            continue
        same = (ids == ids[i]) & valued
        better = (v < v.iloc[i]) if ascending else (v > v.iloc[i])
        out[i] = int((same & better.to_numpy()).sum())
    return out


def _picked(values, ids, rows, n, ascending, na):
    """The rows (of ``rows``) pandas' stable sort and ``cumcount() < n`` pick, with ranks."""
    df = pd.DataFrame({"v": values[rows], "g": ids[rows], "row": rows})
    s = df.sort_values("v", ascending=ascending, na_position=na, kind="stable")
    rank = s.groupby("g").cumcount()
    return dict(zip(s["row"][rank < n], rank[rank < n]))


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(list(POOLS)),
    rows=st.integers(0, 70),
    groups=st.integers(1, 6),
    n=st.integers(1, 4),
    ascending=st.booleans(),
    na=st.sampled_from(["first", "last"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_drops_exactly_the_rows_behind_n_others_and_picks_the_same(
    dtype, rows, groups, n, ascending, na, seed
):
    rng = np.random.default_rng(seed)
    pool = POOLS[dtype]
    values = pool[rng.integers(0, len(pool), rows)]
    ids = rng.integers(0, groups, rows).astype(np.int64)
    keep = group_top_rows(values, ids, groups, n, ascending)
    assert keep is not None and keep.dtype == bool and len(keep) == rows
    ahead = _strictly_ahead(values, ids, ascending)
    valued = ~_missing(values)
    np.testing.assert_array_equal(keep, ~valued | (ahead < n))
    everything = np.arange(rows)
    assert _picked(values, ids, np.flatnonzero(keep), n, ascending, na) == _picked(
        values, ids, everything, n, ascending, na
    )


def test_a_block_of_many_rows_per_group_keeps_about_n_per_group():
    """db-benchmark q8's shape (about six rows per group and block, distinct floats): the
    top two of each group are kept, and little else."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, 6000).astype(np.int64)
    values = rng.normal(size=6000)
    keep = group_top_rows(values, ids, 1000, 2, False)
    assert keep.sum() == sum(min(2, c) for c in np.bincount(ids, minlength=1000))


def test_what_it_does_not_take():
    ids = np.zeros(3, dtype=np.int64)
    assert group_top_rows(np.array(["a", "b", "c"], dtype=object), ids, 1, 1, True) is None
    assert group_top_rows(np.array([True, False, True]), ids, 1, 1, True) is None
    assert group_top_rows(np.arange(3.0), ids, 1, 0, True) is None
    assert group_top_rows(np.arange(3.0), ids, 1, TOP_ROWS_MAX_N + 1, True) is None
