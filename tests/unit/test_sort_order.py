"""Unit tests of :func:`hpcframe.plan.sort_order` (the stable multi-key sort behind every
ordered result): its permutation is pandas' ``sort_values(kind="stable")`` on any keys,
when it stops at a leading key whose values are all distinct (Q10SORT: the later keys, say
the strings of a group-by's key order, are then not sorted at all), and when it sorts a
given subset of the rows (``order``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe import fastsort
from hpcframe import plan as P


def frame(n: int, seed: int, unique: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n).astype(np.int64) if unique else rng.integers(0, max(n // 3, 1), n)
    v = rng.choice(np.array([np.nan, -0.0, 0.0, 1.5, 2.0, np.inf, -np.inf]), n)
    words = np.array(["b", "a", "c", None, "aa"], dtype=object)
    return pd.DataFrame(
        {
            "id": ids,
            "v": v,
            "s": pd.array(rng.choice(words, n), dtype="str"),
            "t": pd.array(rng.choice(words, n), dtype="str"),
            "when": pd.to_datetime(ids * 86_400_000, unit="ms"),
        }
    )


def spec(cols, asc, na):
    return P.RowSort(list(cols), [bool(a) for a in asc], [na] * len(cols))


def expected(df, sp):
    """The stable sort by every key of ``sp``: one stable pandas sort per key, the last key
    first (pandas' own multi-key ``sort_values`` differs for a descending float key with
    NaN first, a difference of its own that these tests leave aside)."""
    order = np.arange(len(df))
    for c, a, na in reversed(list(zip(*sp))):
        col = df[c].take(order).reset_index(drop=True)
        order = order[col.sort_values(ascending=a, na_position=na, kind="stable").index.to_numpy()]
    return order


KEYS = [["id", "s", "t"], ["v", "s", "id", "t"], ["s", "id", "t"], ["when", "s"], ["v", "s"], ["s", "t"]]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    seed=st.integers(0, 10_000),
    unique=st.booleans(),
    keys=st.sampled_from(KEYS),
    asc=st.lists(st.booleans(), min_size=4, max_size=4),
    na=st.sampled_from(["first", "last"]),
)
def test_sort_order_is_pandas_stable_sort(n, seed, unique, keys, asc, na):
    df = frame(n, seed, unique)
    sp = spec(keys, asc[: len(keys)], na)
    assert np.array_equal(P.sort_order(df, sp), expected(df, sp))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), seed=st.integers(0, 10_000), unique=st.booleans(), keys=st.sampled_from(KEYS))
def test_sort_order_of_a_given_order_sorts_those_rows(n, seed, unique, keys):
    df = frame(n, seed, unique)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n)[: rng.integers(0, n + 1)].astype(np.int64)
    sp = spec(keys, [True, False, True, False][: len(keys)], "last")
    got = P.sort_order(df, sp, order)
    assert np.array_equal(got, order[expected(df.take(order), sp)])


def test_a_unique_leading_key_decides_alone():
    df = frame(50, 3, unique=True)
    assert P._decisive(df, spec(["id", "s", "t"], [True] * 3, "last")).columns == ["id"]
    # a later unique NumPy key: the keys up to it
    assert P._decisive(df, spec(["s", "id", "t"], [True] * 3, "last")).columns == ["s", "id"]
    # nothing dear after it: nothing to save, the spec as it is
    assert P._decisive(df, spec(["id", "v"], [True] * 2, "last")).columns == ["id", "v"]


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0, np.nan, np.nan],  # two missing values tie
        [0.0, -0.0, 1.0, 2.0],  # -0.0 ties with 0.0
        [3, 1, 3, 2],
    ],
)
def test_ties_in_the_leading_key_keep_the_later_keys(values):
    df = pd.DataFrame({"x": values, "s": pd.array(["d", "c", "b", "a"], dtype="str")})
    sp = spec(["x", "s"], [True, True], "last")
    assert P._decisive(df, sp).columns == ["x", "s"]
    assert np.array_equal(P.sort_order(df, sp), expected(df, sp))


def test_one_missing_value_is_distinct():
    df = pd.DataFrame({"x": [2.0, np.nan, 1.0], "s": pd.array(["a", "b", "c"], dtype="str")})
    sp = spec(["x", "s"], [False, True], "first")
    assert P._decisive(df, sp).columns == ["x"]
    assert np.array_equal(P.sort_order(df, sp), expected(df, sp))


RUN_VALUES = {
    "float": np.array([np.nan, -0.0, 0.0, 1.5, 2.0, np.inf, -np.inf]),
    "float32": np.array([np.nan, -0.0, 1.5, -2.0], dtype=np.float32),
    "int": np.array([-(2**63), -1, 0, 7, 2**63 - 1], dtype=np.int64),
    "bool": np.array([True, False]),
    "when": np.array(["NaT", "2020-01-01", "1970-01-01", "2262-04-11"], dtype="datetime64[ns]"),
}


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(RUN_VALUES)),
    pieces=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    seed=st.integers(0, 10_000),
    asc=st.booleans(),
    na=st.sampled_from(["first", "last"]),
    positions=st.sampled_from(["increasing", "shuffled"]),
)
def test_sort_order_of_stacked_sorted_pieces_is_pandas_stable_sort(kind, pieces, seed, asc, na, positions):
    """Pieces each already sorted by ``[v, pos]`` and stacked (a shuffle's received rows):
    merged by one merge sort of ``v`` (``fastsort.runs_argsort``) when rows that tie on
    ``v`` come in position order — always so when the pieces' positions increase from one
    to the next — else sorted by both keys; either way pandas' stable sort."""
    rng = np.random.default_rng(seed)
    total = sum(pieces)
    pos = np.arange(total, dtype=np.int64) if positions == "increasing" else rng.permutation(total)
    frames, at = [], 0
    for n in pieces:
        piece = pd.DataFrame({"v": rng.choice(RUN_VALUES[kind], n), "pos": pos[at : at + n]})
        at += n
        frames.append(piece.iloc[expected(piece, spec(["v", "pos"], [asc, True], na))])
    df = pd.concat(frames, ignore_index=True)
    sp = spec(["v", "pos"], [asc, True], na)
    want = expected(df, sp)
    assert np.array_equal(P.sort_order(df, sp), want)
    ratio = fastsort.RUNS_DESCENT_RATIO
    fastsort.RUNS_DESCENT_RATIO = 0  # any number of runs (a few rows have many)
    try:
        assert np.array_equal(P.sort_order(df, sp), want)
        merged = fastsort.runs_argsort(df.v.to_numpy(), asc, na == "last", df.pos.to_numpy())
    finally:
        fastsort.RUNS_DESCENT_RATIO = ratio
    if positions == "increasing" and total > 1:  # (the merge itself, not a fallback)
        assert merged is not None
    assert merged is None or np.array_equal(merged, want)
