"""``merge`` (issue 10), compared with pandas: every ``how``, both strategies (broadcast the
small side, shuffle both sides by the keys), several keys, NaN keys (pandas matches NaN with
NaN), duplicate keys, empty sides, categoricals, dates, tz-aware times, strings, float32/int
keys, suffix collisions, ``indicator``, a pandas right side, merges followed by other
operations, type-mismatch errors, filters and projections pushed into the sides.

Row order is part of the answer (pandas': left order for inner/left, right order for right,
keys sorted for outer) and the result has a fresh RangeIndex, so results are compared with
``pd.testing.assert_frame_equal`` including dtypes (a left join's int columns of the right
side become float64 when some row finds no match, as pandas decides from the data).

Every test runs on every rank, locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import close as check
from tests.helpers.datasets import arrow_to_pandas
from tests.helpers.frames import assert_bits, local, merge_key_rows, spmd_settings

pytestmark = mpi.timeout(120)
PARTITIONS = 5
CATS = ["x", "y", "z"]


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", PARTITIONS)
    monkeypatch.setattr(hf.config, "block_rows", 40)


def _left_table(n, seed, start):
    rng = np.random.default_rng(seed)
    s = rng.choice(["a", "b", "c", "d", "e"], n).astype(object)
    s[rng.random(n) < 0.15] = None
    f = rng.choice([0.5, 1.5, 2.5, np.nan], n)
    day = np.datetime64("2024-02-27") + rng.integers(0, 5, n).astype("timedelta64[D]")
    tz = np.datetime64("2024-03-10T05:00:00", "us") + rng.integers(0, 5, n).astype("timedelta64[h]")
    return pa.table(
        {
            "id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "k": pa.array(rng.integers(0, 30, n), pa.int64()),
            "s": pa.array(s, pa.string()),
            "f": pa.array(f, pa.float64()),
            "d": pa.array(day.astype("datetime64[D]"), pa.date32()),
            "tz": pa.array(tz.astype("int64"), pa.timestamp("us", tz="America/New_York")),
            "c": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 3, n), pa.int32()), pa.array(CATS)),
            "v": pa.array(rng.normal(0, 10, n), pa.float64()),
            "n": pa.array(rng.integers(0, 100, n), pa.int64()),
        }
    )


def _right_table(n, seed):
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 40, n)
    kf = k.astype("float64")
    kf[rng.random(n) < 0.1] = np.nan
    s = rng.choice(["a", "b", "c", "f"], n).astype(object)
    s[rng.random(n) < 0.15] = None
    day = np.datetime64("2024-02-26") + rng.integers(0, 5, n).astype("timedelta64[D]")
    tz = np.datetime64("2024-03-10T05:00:00", "us") + rng.integers(0, 6, n).astype("timedelta64[h]")
    return pa.table(
        {
            "k": pa.array(k, pa.int64()),
            "kf": pa.array(kf, pa.float64()),
            "k32": pa.array(k.astype(np.float32), pa.float32()),
            "s": pa.array(s, pa.string()),
            "f": pa.array(rng.choice([0.5, 2.5, 3.5, np.nan], n), pa.float64()),
            "d": pa.array(day.astype("datetime64[D]"), pa.date32()),
            "tz": pa.array(tz.astype("int64"), pa.timestamp("us", tz="America/New_York")),
            "c": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 3, n), pa.int32()), pa.array(CATS)),
            "w": pa.array(rng.integers(-50, 50, n), pa.int64()),
            "name": pa.array([f"r{i}" for i in range(n)], pa.string()),
        }
    )


LEFT_FILES = [(90, 1), (0, 2), (70, 3), (1, 4), (60, 5)]
RIGHT_FILES = [(25, 11), (30, 12)]


def _tables():
    left, start = [], 0
    for n, seed in LEFT_FILES:
        left.append(_left_table(n, seed, start))
        start += n
    right = [_right_table(n, seed) for n, seed in RIGHT_FILES]
    return left, right


@pytest.fixture(scope="module")
def data(shared_dir):
    """(left path, right path, left pandas, right pandas)."""
    root = os.path.join(shared_dir, "merge_data")
    left, right = _tables()
    error = None
    if mpi.rank() == 0 and not os.path.exists(root):
        try:
            for name, tables in (("left", left), ("right", right)):
                os.makedirs(os.path.join(root, name))
                for i, t in enumerate(tables):
                    pq.write_table(t, os.path.join(root, name, f"part-{i}.parquet"), row_group_size=17)
        except Exception as exc:  # tell the other ranks
            error = repr(exc)
    c = mpi.world()
    if c is not None:
        error = c.bcast(error, root=0)
    assert error is None, error
    return (
        os.path.join(root, "left"),
        os.path.join(root, "right"),
        arrow_to_pandas(pa.concat_tables(left)),
        arrow_to_pandas(pa.concat_tables(right)),
    )


@pytest.fixture
def frames(data):
    lp, rp, lref, rref = data
    return hf.read_parquet(lp), hf.read_parquet(rp), lref, rref


# --------------------------------------------------------------------------------------------
# every how, both strategies, several key kinds
# --------------------------------------------------------------------------------------------
KEYS = {
    "int": dict(on="k"),
    "two_keys": dict(on=["k", "s"]),
    "str_with_nulls": dict(on="s"),
    "float_with_nan": dict(on="f"),
    "int_vs_float_with_nan": dict(left_on="k", right_on="kf"),
    "int_vs_float32": dict(left_on="k", right_on="k32"),
    "date": dict(on="d"),
    "tz_aware": dict(on="tz"),
    "categorical": dict(on="c"),
}
# columns per key kind (few, so that str/date keys with many duplicates stay small)
COLS = {
    "int": (["id", "k", "s", "v", "n"], ["k", "w", "name", "s"]),
    "two_keys": (["id", "k", "s", "n"], ["k", "s", "w"]),
    "str_with_nulls": (["id", "s", "n"], ["s", "w"]),
    "float_with_nan": (["id", "f", "n"], ["f", "w"]),
    "int_vs_float_with_nan": (["id", "k", "n"], ["kf", "w", "name"]),
    "int_vs_float32": (["id", "k"], ["k32", "w"]),
    "date": (["id", "d", "n"], ["d", "w"]),
    "tz_aware": (["id", "tz"], ["tz", "w"]),
    "categorical": (["id", "c"], ["c", "w"]),
}
STRATEGIES = {"broadcast": True, "shuffle": False, "auto": None}


def _cases():
    out = []
    for key in KEYS:
        for how in ("inner", "left", "right", "outer"):
            for strategy in STRATEGIES:
                if how == "outer" and strategy == "broadcast":
                    continue
                # the wide product on the int key, fewer combinations on the others
                if key != "int" and strategy == "auto":
                    continue
                out.append((key, how, strategy))
    return out


@pytest.mark.parametrize("key,how,strategy", _cases())
def test_merge_how_strategy_keys(frames, key, how, strategy):
    left, right, lref, rref = frames
    lc, rc = COLS[key]
    kw = KEYS[key]
    indicator = how in ("left", "outer")
    got = left[lc].merge(right[rc], how=how, broadcast=STRATEGIES[strategy], indicator=indicator, **kw)
    expected = pd.merge(lref[lc], rref[rc], how=how, indicator=indicator, **kw)
    check(got, expected, f"{key} {how} {strategy}")
    stats = hf.last_run_stats()
    if strategy == "broadcast":
        assert stats.get("joins_broadcast") == 1
    elif strategy == "shuffle":
        assert stats.get("joins_shuffled") == 1


@pytest.mark.parametrize("strategy", ["broadcast", "shuffle"])
def test_merge_full_frames_default_suffixes(frames, strategy):
    left, right, lref, rref = frames
    got = left.merge(right, on="k", broadcast=STRATEGIES[strategy])
    check(got, pd.merge(lref, rref, on="k"))
    assert list(got.columns) == list(pd.merge(lref, rref, on="k").columns)


def test_cross(frames):
    left, right, lref, rref = frames
    lsmall = left[left.id < 12][["id", "n"]]
    got = lsmall.merge(right[["w", "name"]], how="cross")
    check(
        got,
        pd.merge(lref[lref.id < 12][["id", "n"]].reset_index(drop=True), rref[["w", "name"]], how="cross"),
    )
    # the left side smaller than the right one: the left side is broadcast, order unchanged
    small = right[right.w > 40][["w"]]
    check(
        left[["id"]].merge(small, how="cross"), pd.merge(lref[["id"]], rref[rref.w > 40][["w"]], how="cross")
    )


def test_common_columns_default_on(frames):
    left, right, lref, rref = frames
    got = left[["id", "k", "s"]].merge(right[["k", "s", "w"]])
    check(got, pd.merge(lref[["id", "k", "s"]], rref[["k", "s", "w"]]))


@pytest.mark.parametrize(
    "suffixes", [("_x", "_y"), ("", "_r"), ("_l", None), ("_left", "_right")], ids=lambda s: repr(s)
)
def test_suffix_collisions(frames, suffixes):
    left, right, lref, rref = frames
    lc, rc = ["id", "k", "s", "f", "d"], ["k", "s", "f", "w", "d"]
    for how in ("left", "outer"):
        got = left[lc].merge(right[rc], on="k", how=how, suffixes=suffixes)
        check(got, pd.merge(lref[lc], rref[rc], on="k", how=how, suffixes=suffixes), f"{how} {suffixes}")


def test_left_on_right_on_collisions(frames):
    """A left key whose name is a non-key column of the right side: both suffixed."""
    left, right, lref, rref = frames
    r = right[["kf", "k", "w"]]
    for how in ("inner", "right", "outer"):
        got = left[["k", "id"]].merge(r, left_on="k", right_on="kf", how=how)
        check(got, pd.merge(lref[["k", "id"]], rref[["kf", "k", "w"]], left_on="k", right_on="kf", how=how))


def test_indicator_name(frames):
    left, right, lref, rref = frames
    got = left[["id", "k"]].merge(right[["k", "w"]], on="k", how="outer", indicator="src")
    expected = pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how="outer", indicator="src")
    check(got, expected)
    assert list(got.compute().src.cat.categories) == ["left_only", "right_only", "both"]


def test_indicator_column_as_an_attribute(frames):
    """``m._merge`` and ``m.groupby(k)._merge`` are the column, as in pandas (a regression:
    names starting with ``_`` raised AttributeError); dunders and unknown names still raise."""
    left, right, lref, rref = frames
    m = left[["id", "k"]].merge(right[["k", "w"]], on="k", how="outer", indicator=True)
    p = pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how="outer", indicator=True)
    check(m[m._merge == "both"], p[p._merge == "both"].reset_index(drop=True))  # a filter: fresh labels
    got = m.groupby("_merge")._merge.count().compute()
    # (categorical group keys in the order of their values: user guide)
    assert got.to_dict() == p.groupby("_merge", observed=True)._merge.count().to_dict()
    with pytest.raises(AttributeError, match="_nope"):
        _ = m._nope
    with pytest.raises(AttributeError):
        _ = m.__nope__


# --------------------------------------------------------------------------------------------
# pandas right side, hf.merge, duplicates, empty sides, partitions
# --------------------------------------------------------------------------------------------
def test_pandas_right_side_and_hf_merge(frames):
    left, _, lref, _ = frames
    names = pd.DataFrame({"s": ["a", "b", "c", None], "label": ["A", "B", "C", "none"]})
    got = left[["id", "s"]].merge(names, on="s", how="left")
    check(got, pd.merge(lref[["id", "s"]], names, on="s", how="left"))
    check(hf.merge(left[["id", "s"]], names, on="s"), pd.merge(lref[["id", "s"]], names, on="s"))
    check(
        hf.merge(names, left[["id", "s"]], on="s", how="right"),
        pd.merge(names, lref[["id", "s"]], on="s", how="right"),
    )


def test_duplicate_keys_both_sides():
    left = pd.DataFrame({"k": [1, 1, 2, 2, 2, np.nan, np.nan, 3], "a": range(8)})
    right = pd.DataFrame({"k": [2, 1, 2, np.nan, 1, np.nan, 4], "b": range(7)})
    lf, rf = hf.from_pandas(left, npartitions=3), hf.from_pandas(right, npartitions=2)
    for how in ("inner", "left", "right", "outer"):
        for bc in (None, True, False):
            if how == "outer" and bc:
                continue
            check(
                lf.merge(rf, on="k", how=how, broadcast=bc),
                pd.merge(left, right, on="k", how=how),
                f"{how} {bc}",
            )


@pytest.mark.parametrize(
    "make",
    [
        lambda v: pd.to_datetime(v, unit="D"),
        lambda v: pd.to_datetime(v, unit="D").astype("datetime64[ms]"),  # a Parquet date
        lambda v: pd.to_datetime(v, unit="D").tz_localize("UTC"),
        lambda v: pd.to_timedelta(v, unit="s"),
        lambda v: pd.Series(v, dtype="float64"),
    ],
    ids=["datetime", "date", "tz", "timedelta", "float"],
)
def test_outer_join_missing_time_key_first(make):
    """pandas sorts an outer join's time keys as int64, where NaT is the smallest: their
    missing-key rows come first (a float key's NaN: last). Was last for every type."""
    left = pd.DataFrame({"t": make([2, None, 1, None, 5]), "u": [1, 1, 2, 2, 1], "a": range(5)})
    right = pd.DataFrame({"t": make([None, 2, 3, 5, None]), "u": [1, 1, 1, 2, 2], "b": range(5)})
    lf, rf = hf.from_pandas(left, npartitions=2), hf.from_pandas(right, npartitions=3)
    for on in ("t", ["t", "u"], ["u", "t"]):
        check(lf.merge(rf, on=on, how="outer"), pd.merge(left, right, on=on, how="outer"), f"{on}")


@pytest.mark.parametrize("empty", ["left", "right", "both"])
@pytest.mark.parametrize("how", ["inner", "left", "right", "outer", "cross"])
def test_empty_sides(frames, empty, how):
    left, right, lref, rref = frames
    lc, rc = ["id", "k", "n"], ["k", "w", "name"]
    lf, rf = left[lc], right[rc]
    lp, rp = lref[lc], rref[rc]
    if empty in ("left", "both"):
        lf, lp = lf[lf.id < 0], lp[lp.id < 0].reset_index(drop=True)
    if empty in ("right", "both"):
        rf, rp = rf[rf.w > 1000], rp[rp.w > 1000].reset_index(drop=True)
    kw = {} if how == "cross" else {"on": "k"}
    for bc in (None, False):
        if how == "cross" and bc is False:
            continue
        check(
            lf.merge(rf, how=how, broadcast=bc, **kw), pd.merge(lp, rp, how=how, **kw), f"{how} {empty} {bc}"
        )


def test_all_rows_filtered_after_merge(frames):
    left, right, lref, rref = frames
    m = left[["id", "k"]].merge(right[["k", "w"]], on="k", how="left")
    expected = pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how="left")
    got = m[m.id < -1]
    check(got, expected[expected.id < -1].reset_index(drop=True))
    assert got.len().compute() == 0


def test_more_ranks_than_partitions(frames, monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 2)
    left, right, lref, rref = frames
    for how in ("inner", "outer", "right"):
        got = left[["id", "k"]].merge(right[["k", "w"]], on="k", how=how, broadcast=False)
        check(got, pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how=how))


def test_default_partitions(frames, monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 32)
    left, right, lref, rref = frames
    got = left[["id", "s"]].merge(right[["s", "w"]], on="s", how="outer", broadcast=False)
    check(got, pd.merge(lref[["id", "s"]], rref[["s", "w"]], on="s", how="outer"))


def test_group_result_merges_on_its_index(frames):
    left, right, lref, rref = frames
    g = left.groupby("k").agg(total=("n", "sum"), rows=("n", "size"))
    gp = lref.groupby("k").agg(total=("n", "sum"), rows=("n", "size"))
    check(g.merge(right[["k", "w"]], on="k"), gp.merge(rref[["k", "w"]], on="k"))
    # not merging on the index: pandas drops it
    g2 = left.groupby("s").agg(total=("n", "sum"))
    gp2 = lref.groupby("s").agg(total=("n", "sum"))
    got = g2.merge(right[["w"]].assign(total=right.w), on="total", how="inner")
    check(got, gp2.merge(rref[["w"]].assign(total=rref.w), on="total", how="inner"))


def test_chained_merges(frames):
    left, right, lref, rref = frames
    names = pd.DataFrame({"c": CATS, "cname": ["ex", "why", "zed"]})
    m = left[["id", "k", "c"]].merge(right[["k", "w"]], on="k", how="left").merge(names, on="c", how="left")
    e = pd.merge(lref[["id", "k", "c"]], rref[["k", "w"]], on="k", how="left").merge(
        names, on="c", how="left"
    )
    check(m, e)
    m2 = left[["id", "k"]].merge(right[["k", "w"]], on="k", how="outer", broadcast=False)
    m2 = m2.merge(right[["k", "name"]], on="k", how="right", broadcast=False)
    e2 = pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how="outer").merge(
        rref[["k", "name"]], on="k", how="right"
    )
    check(m2, e2)


# --------------------------------------------------------------------------------------------
# merge, then other operations
# --------------------------------------------------------------------------------------------
def test_merge_then_operations(frames):
    left, right, lref, rref = frames
    m = left[["id", "k", "s", "v"]].merge(right[["k", "w", "name"]], on="k", how="left")
    e = pd.merge(lref[["id", "k", "s", "v"]], rref[["k", "w", "name"]], on="k", how="left")
    check(m[m.w > 0], e[e.w > 0].reset_index(drop=True))
    check(m.assign(t=m.v * m.w), e.assign(t=e.v * e.w))
    got = m.groupby("s").agg(total=("w", "sum"), mean=("v", "mean"), rows=("id", "size")).compute()
    expected = e.groupby("s").agg(total=("w", "sum"), mean=("v", "mean"), rows=("id", "size"))
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert m.len().compute() == len(e)
    check(m.drop_duplicates(["k"]), e.drop_duplicates(["k"]).reset_index(drop=True))
    p = m.persist()
    try:
        check(p, e)
        check(p[p.s == "a"], e[e.s == "a"].reset_index(drop=True))
    finally:
        p.unpersist()


@pytest.mark.parametrize(
    "how,broadcast", [("inner", True), ("inner", False), ("left", True), ("left", False), ("outer", False)]
)
def test_reductions_of_a_merged_frame_see_only_its_columns(frames, how, broadcast):
    """A frame reduction (sum, max, count, nunique, describe, median) of a merge, of a column
    selection of it, or after an ``assign``: only the columns pandas has, never the join's
    hidden row-order and key columns (they gave extra entries, or a TypeError for outer)."""
    left, right, lref, rref = frames
    m = left[["id", "k", "v"]].merge(right[["k", "w"]], on="k", how=how, broadcast=broadcast)
    e = pd.merge(lref[["id", "k", "v"]], rref[["k", "w"]], on="k", how=how)
    for got, expected in (
        (m[["w"]], e[["w"]]),
        (m.assign(z=m.w * 2)[["z"]], e.assign(z=e.w * 2)[["z"]]),
        (m, e),
    ):
        for agg in ("sum", "max", "count", "nunique", "median"):
            result = getattr(got, agg)().compute()
            pd.testing.assert_series_equal(result, getattr(expected, agg)(), rtol=1e-12)
        pd.testing.assert_frame_equal(got.describe().compute(), expected.describe(), rtol=1e-12)


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("suffixes", [("_x", "_y"), (None, "_r")])
def test_int_columns_stay_int_when_a_right_column_of_their_name_has_nulls(shared_dir, how, suffixes):
    """A left int64 column without nulls (the key ``k``, or ``x`` kept by the suffix None)
    whose name a right int column with nulls (float64 in pandas) also has: int64 as in
    pandas, whichever rank holds the rows (the ranks without any used to declare the right
    column's float64 for the left one, and the schema the ranks agree on became float64)."""
    root = os.path.join(shared_dir, "merge_nulls_of_a_name")

    def write():
        if os.path.exists(root):
            return
        for name, table in (
            ("left", pa.table({"k": pa.array([1, 2, 3], pa.int64()), "x": pa.array([1, 2, 3], pa.int64())})),
            (
                "right",
                pa.table({"k": pa.array([1, None, 3], pa.int64()), "x": pa.array([4, None, 6], pa.int64())}),
            ),
        ):
            os.makedirs(os.path.join(root, name))
            pq.write_table(table, os.path.join(root, name, "part-0.parquet"))

    mpi.on_root(write)
    lp, rp = os.path.join(root, "left"), os.path.join(root, "right")
    for broadcast in (True, False):
        got = hf.read_parquet(lp).merge(
            hf.read_parquet(rp), on="k", how=how, suffixes=suffixes, broadcast=broadcast
        )
        expected = pd.read_parquet(lp).merge(pd.read_parquet(rp), on="k", how=how, suffixes=suffixes)
        pd.testing.assert_frame_equal(got.compute(), expected)


def test_same_answer_on_any_rank_count(frames):
    """A float sum over a shuffled join: bit-identical to the serial engine."""
    left, right, _, _ = frames
    m = left[["k", "v"]].merge(right[["k", "w"]], on="k", broadcast=False)
    total = (m.v * m.w).sum()
    assert_bits(total.compute(), local(total))
    m = left[["k", "v"]].merge(right[["k", "w"]], on="k", broadcast=True)
    total = (m.v * m.w).sum()
    assert_bits(total.compute(), local(total))


def test_declared_dtypes_follow_the_data(frames):
    """Before the join runs, dtypes are pandas' for a full match; once it ran (persist), the
    declared dtypes are the data's (right int columns float64 when a row found no match)."""
    left, right, lref, rref = frames
    m = left[["id", "k"]].merge(right[["k", "w"]], on="k", how="left")
    assert m.dtypes["w"] == np.dtype("int64")
    p = m.persist()
    try:
        got = p.compute()
        assert got.w.dtype == np.dtype("float64")
        pd.testing.assert_series_equal(p.dtypes, got.dtypes)
        check(got, pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how="left"))
    finally:
        p.unpersist()
    # every row matches: int64 stays int64, as pandas
    inner = left[["id", "k"]].merge(right[["k", "w"]], on="k")
    assert inner.compute().w.dtype == np.dtype("int64")


def test_bool_columns_of_unmatched_rows():
    left = pd.DataFrame({"k": [1, 2, 3, 4], "flag": [True, False, True, False]})
    right = pd.DataFrame({"k": [1, 3], "ok": [True, False]})
    lf, rf = hf.from_pandas(left, npartitions=2), hf.from_pandas(right)
    for bc in (True, False):
        got = lf.merge(rf, on="k", how="left", broadcast=bc).compute()
        assert got.ok.dtype == object
        # a documented difference: the missing values of an object column of bools are None
        # (as hpcframe reads bools with nulls), pandas' merge shows NaN
        assert got.ok[1] is None
        got["ok"] = got.ok.where(got.ok.notna(), np.nan)
        check(got, pd.merge(left, right, on="k", how="left"))


@pytest.mark.parametrize(
    "how, bc",
    [("right", True), ("right", False), ("outer", None)],
    ids=["right-broadcast", "right-shuffle", "outer"],
)
def test_bool_column_of_unmatched_rows_stays_object_after_a_filter(how, bc, cfg):
    """A partition of a shuffled join whose rows all miss the left side holds the left bools
    as an object column of missing values only: the join's stored schema flags the column
    object, so a filter dropping those rows keeps it object, as pandas (found by session
    31's differential fuzzing: it came back bool)."""
    cfg(partitions=5)
    left = pd.DataFrame({"lk": ["x", "y", "v"], "b": [True, False, True], "n": [1, 2, 3]})
    right = pd.DataFrame({"rk": ["x", "z", "u", "x"], "w": [1.5, 2.5, 3.5, 4.5]})
    lf, rf = hf.from_pandas(left, npartitions=2), hf.from_pandas(right, npartitions=2)
    m = lf.merge(rf, how=how, left_on="lk", right_on="rk", broadcast=bc)
    want = pd.merge(left, right, how=how, left_on="lk", right_on="rk")
    got = m[m.n > 0].compute()
    assert got.b.dtype == want[want.n > 0].b.dtype == object
    assert got.b.tolist() == want[want.n > 0].b.tolist()


# --------------------------------------------------------------------------------------------
# strategy choice and explain
# --------------------------------------------------------------------------------------------
def test_strategy_choice_and_explain(frames, monkeypatch):
    left, right, lref, rref = frames
    m = left[["id", "k"]].merge(right[["k", "w"]], on="k")
    text = m.explain()
    assert "chosen when it runs" in text and "broadcast_bytes" in text
    assert (
        "strategy: broadcast the right side (forced)" in left.merge(right, on="k", broadcast=True).explain()
    )
    assert "shuffle both sides by the keys (forced)" in left.merge(right, on="k", broadcast=False).explain()
    m.compute()
    assert hf.last_run_stats()["joins_broadcast"] == 1
    monkeypatch.setattr(hf.config, "broadcast_bytes", 1)
    m2 = left[["id", "k"]].merge(right[["k", "w"]], on="k")
    check(m2, pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k"))
    assert hf.last_run_stats()["joins_shuffled"] == 1
    p = m2.persist()
    try:
        stage = m2.node.scan().source
        assert stage.strategy == "shuffle"
        assert "strategy: shuffle (measured: left" in stage.text()
        m3 = left[["id", "k"]].merge(right[["k", "w"]], on="k", broadcast=True)
        p3 = m3.persist()
        stage3 = m3.node.scan().source
        assert stage3.strategy == "broadcast right"
        assert "left not measured (merged while read), right" in stage3.text()
        p3.unpersist()
    finally:
        p.unpersist()


def test_inner_join_reads_the_smaller_estimate_first(frames):
    """An inner join reads first the side whose scan is estimated smaller (statistics prune
    ``id < 12`` to the first row group): written ``small.merge(big)`` the small left side
    is broadcast and the big side streams past it (never held: its size is not measured),
    as ``big.merge(small)`` broadcasts the right side. Answers equal pandas either way."""
    left, right, lref, rref = frames
    small, small_ref = left[left.id < 12][["id", "k"]], lref[lref.id < 12][["id", "k"]]
    for got, expected, strategy, sizes in (
        (small.merge(right, on="k"), pd.merge(small_ref, rref, on="k"), "broadcast left", 0),
        (right.merge(small, on="k"), pd.merge(rref, small_ref, on="k"), "broadcast right", 1),
    ):
        held = got.persist()
        try:
            stage = got.node.scan().source
            assert stage.strategy == strategy
            assert stage.sizes[sizes] is not None and stage.sizes[1 - sizes] is None
            check(got, expected, strategy)
        finally:
            held.unpersist()
    # a left join can only broadcast its right side: read first, whatever the estimates
    got = small.merge(right, on="k", how="left")
    check(got, pd.merge(small_ref, rref, on="k", how="left"), "left join")


def test_a_narrow_range_filter_makes_its_side_the_smaller_estimate(frames):
    """A side filtered to a narrow range of a column (``40 <= n < 42`` of values spread over
    0–99 in every row group: statistics prune nothing) is estimated from the share of each
    row group's min/max range it keeps, not from a flat guess per filter: it is read first
    and broadcast, and the other side streams past it (TPC-H Q14: one month of lineitem
    against part). Answers equal pandas."""
    left, right, lref, rref = frames
    narrow = left[(left.n >= 40) & (left.n < 42)]
    narrow_ref = lref[(lref.n >= 40) & (lref.n < 42)]
    got = narrow.merge(right[["k", "w"]], on="k")
    held = got.persist()
    try:
        stage = got.node.scan().source
        assert stage.strategy == "broadcast left"
        assert stage.sizes[0] is not None and stage.sizes[1] is None  # the right side streamed
        check(got, pd.merge(narrow_ref, rref[["k", "w"]], on="k"))
    finally:
        held.unpersist()


# --------------------------------------------------------------------------------------------
# pushdown
# --------------------------------------------------------------------------------------------
def _sides(frame):
    stage = frame.node.scan().source
    return (
        stage,
        [type(n).__name__ for n in stage.left.chain()],
        [type(n).__name__ for n in stage.right.chain()],
    )


def test_filters_pushed_into_the_sides(frames):
    left, right, lref, rref = frames
    lc, rc = ["id", "k", "n"], ["k", "w", "name"]
    e_inner = pd.merge(lref[lc], rref[rc], on="k")
    m = left[lc].merge(right[rc], on="k")
    f = m[(m.n > 50) & (m.w < 0) & (m.n + m.w > 0) & (m.k > 5)]
    stage, lchain, rchain = _sides(f)
    assert lchain.count("Filter") == 2 and rchain.count("Filter") == 2  # n, k | w, k
    assert [type(n).__name__ for n in f.node.chain()] == ["Scan", "Filter"]  # n + w stays
    ef = e_inner[(e_inner.n > 50) & (e_inner.w < 0) & (e_inner.n + e_inner.w > 0) & (e_inner.k > 5)]
    check(f, ef.reset_index(drop=True))
    assert "Filter (n > 50)" in f.explain()

    # left join: pandas decides the dtypes from the unfiltered join (an int column of the
    # right side is float64 when some row had no match), so nothing moves while the right
    # side has int columns
    e_left = pd.merge(lref[lc], rref[rc], on="k", how="left")
    m = left[lc].merge(right[rc], on="k", how="left")
    f = m[m.w.isna() & (m.n > 10)]
    stage, lchain, rchain = _sides(f)
    assert lchain.count("Filter") == 0 and rchain.count("Filter") == 0
    check(f, e_left[e_left.w.isna() & (e_left.n > 10)].reset_index(drop=True))

    # ... with only float and string columns on the right: left filters move into the left
    # side; a filter on the right side's column stays above (NaN of unmatched rows)
    rc2, lc2 = ["k", "f", "name"], ["k", "v", "s"]
    e_left = pd.merge(lref[lc], rref[rc2], on="k", how="left")
    m = left[lc].merge(right[rc2], on="k", how="left")
    f = m[m.f.isna() & (m.n > 10)]
    stage, lchain, rchain = _sides(f)
    assert lchain.count("Filter") == 1 and rchain.count("Filter") == 0
    check(f, e_left[e_left.f.isna() & (e_left.n > 10)].reset_index(drop=True))

    # outer join: only filters on the shared key move (into both sides)
    e_outer = pd.merge(lref[lc2], rref[rc2], on="k", how="outer")
    m = left[lc2].merge(right[rc2], on="k", how="outer")
    f = m[(m.k < 20) & (m.v > 0)]
    stage, lchain, rchain = _sides(f)
    assert lchain.count("Filter") == 1 and rchain.count("Filter") == 1
    check(f, e_outer[(e_outer.k < 20) & (e_outer.v > 0)].reset_index(drop=True))

    # right join: right-side columns move into the right side only
    e_right = pd.merge(lref[lc2], rref[rc], on="k", how="right")
    m = left[lc2].merge(right[rc], on="k", how="right")
    f = m[(m.w > 0) & (m.v > 0)]
    stage, lchain, rchain = _sides(f)
    assert lchain.count("Filter") == 0 and rchain.count("Filter") == 1
    check(f, e_right[(e_right.w > 0) & (e_right.v > 0)].reset_index(drop=True))


@pytest.mark.parametrize("keys", [("id", "k"), ("f", "kf")], ids=["int", "float_with_nan"])
def test_keys_of_a_big_first_side_filter_the_other_side(frames, monkeypatch, keys):
    """An inner join whose side read first (the right one: estimated smaller) is too big
    to broadcast but whose distinct keys are small: the left side's rows that cannot match
    are dropped while it is read (NaN keys matching NaN, as pandas' merge), and the answer
    equals pandas for the strategy chosen after. Int keys, float keys with NaN."""
    left, right, lref, rref = frames
    lk, rk = keys
    lc = ["id", "n", "s", "v", "f", "d"]  # wide: the right side (all its columns) is read first
    expected = pd.merge(lref[lc], rref, left_on=lk, right_on=rk)
    for limit in (3000, 1 << 30):  # the right side is ~5 KB, its keys < 700 bytes; then fits
        monkeypatch.setattr(hf.config, "broadcast_bytes", limit)
        got = left[lc].merge(right, left_on=lk, right_on=rk)
        check(got, expected, f"{keys} limit {limit}")
        dropped = mpi.allsum(hf.last_run_stats().get("join_rows_dropped_by_keys", 0))
        if limit == 3000:
            assert dropped > 0
        else:  # the right side was broadcast: the left side streamed past it, no key filter
            assert dropped == 0


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
@pytest.mark.parametrize("kind", ["int", "date"])
def test_key_filter_of_sorted_blocks_gives_up_without_hashing(monkeypatch, order, kind):
    """The side read first has too many distinct keys to filter the other side
    with; when its blocks are sorted and disjoint (lineitem by ``l_orderkey``) that is known
    from one pass (``join_key_filters_given_up_early``), and the join goes on as it did
    after hashing them. With a limit the keys fit, they still filter. Equal to pandas."""
    rng = np.random.default_rng(5)
    keys = np.repeat(np.arange(600, dtype=np.int64), 2)  # 600 distinct keys: 4800 bytes
    if order == "shuffled":
        keys = rng.permutation(keys)
    right = pd.DataFrame({"k": keys, "w": rng.random(len(keys)), "name": [f"n{i:0200d}" for i in keys]})
    n = 3000
    left = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "k": rng.integers(-50, 700, n),
            "v": rng.random(n),
            "s": [f"row{i:0300d}" for i in range(n)],  # wider: read second
        }
    )
    if kind == "date":
        for df in (left, right):
            df["k"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(df["k"], unit="D")
    expected = pd.merge(left, right, on="k")
    # keys > limit/4; then every rank's distinct keys (<= 4 x 4800 bytes) <= limit/4 < the side
    for limit, gives_up in ((4000, True), (80000, False)):
        monkeypatch.setattr(hf.config, "broadcast_bytes", limit)
        got = hf.from_pandas(left, npartitions=3).merge(hf.from_pandas(right, npartitions=4), on="k")
        check(got.compute(comm=mpi.world()), expected, f"{order} {kind} limit {limit}")
        stats = hf.last_run_stats()
        early = mpi.allsum(stats.get("join_key_filters_given_up_early", 0))
        dropped = mpi.allsum(stats.get("join_rows_dropped_by_keys", 0))
        if gives_up:
            assert dropped == 0
            if order == "sorted":
                assert early > 0
        else:
            assert early == 0 and dropped > 0


@pytest.mark.parametrize("gain", [8, 10**9], ids=["other_side_much_bigger", "other_side_not"])
def test_key_filter_may_take_more_when_the_other_side_is_much_bigger(monkeypatch, gain):
    """Keys of the side read first above a quarter of ``broadcast_bytes`` still filter the
    other side when that side is estimated ``joins.KEY_FILTER_GAIN`` times bigger (up to
    ``broadcast_bytes``; TPC-H q9: the order keys of the green parts' lineitem rows cut the
    orders before they are shuffled); otherwise they do not. Equal to pandas either way."""
    from hpcframe import joins

    rng = np.random.default_rng(11)
    keys = np.arange(600, dtype=np.int64)  # 600 distinct keys: 4800 bytes, sorted blocks
    right = pd.DataFrame({"k": keys, "w": rng.random(len(keys))})
    n = 3000
    left = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "k": rng.integers(-50, 2000, n),
            "v": rng.random(n),
            "s": [f"row{i:0300d}" for i in range(n)],  # ~1 MB: read second, > 8 x the keys
        }
    )
    expected = pd.merge(left, right, on="k")
    monkeypatch.setattr(hf.config, "broadcast_bytes", 8000)  # a quarter (2000) < the keys < 8000
    monkeypatch.setattr(joins, "KEY_FILTER_GAIN", gain)
    got = hf.from_pandas(left, npartitions=3).merge(hf.from_pandas(right, npartitions=4), on="k")
    check(got.compute(comm=mpi.world()), expected, f"gain {gain}")
    stats = hf.last_run_stats()
    early = mpi.allsum(stats.get("join_key_filters_given_up_early", 0))
    dropped = mpi.allsum(stats.get("join_rows_dropped_by_keys", 0))
    if gain == 8:
        assert early == 0 and dropped > 0
    else:
        assert early > 0 and dropped == 0


@pytest.mark.parametrize("how", ["inner", "left"])
def test_rows_that_cannot_match_are_dropped_before_the_conversion(frames, how):
    """A side streamed past a broadcast side on one int64 key: in an inner join its rows
    whose key is not among the broadcast keys are dropped while the block is read, before
    pandas sees them (``join_rows_dropped_while_read``); a left join keeps them (they are
    in its result). Equal to pandas, with and without a filter on the streamed side, a
    broadcast side with duplicate keys, and a broadcast side left with no rows."""
    left, right, lref, rref = frames
    lc, rc = ["id", "k", "s", "v", "n"], ["k", "w", "name"]
    cases = {
        "some_keys": (right[right.w > 0], rref[rref.w > 0]),
        "no_keys": (right[right.w > 1e9], rref[rref.w > 1e9]),
        "all": (right, rref),
    }
    for name, (r, rr) in cases.items():
        for filtered in (False, True):
            lsel, lrsel = (left[left.n > 20], lref[lref.n > 20]) if filtered else (left, lref)
            got = lsel[lc].merge(r[rc], on="k", how=how, broadcast=True)
            expected = pd.merge(lrsel[lc], rr[rc], on="k", how=how).reset_index(drop=True)
            check(got, expected, f"{how} {name} filtered={filtered}")
            dropped = mpi.allsum(hf.last_run_stats().get("join_rows_dropped_while_read", 0))
            unmatched = int((~lrsel.k.isin(rr.k)).sum())
            assert dropped == (unmatched if how == "inner" else 0), (name, filtered)


def test_or_over_both_sides_pushes_what_each_side_implies(frames):
    """TPC-H Q19's shape: ``(a1 & b1) | (a2 & b2)`` with ``a`` on the left side and ``b`` on
    the right. Each side gets ``a1 | a2`` (``b1 | b2``), which every passing row satisfies;
    the whole condition stays above the join. Answers equal pandas, also with NaN (the
    comparisons of pandas are False there), string and between terms, and when a chain has
    no term of one side (then nothing is derived for that side)."""
    left, right, lref, rref = frames
    lc, rc = ["id", "k", "n", "f", "s"], ["k", "w", "name", "kf"]
    exp_m = pd.merge(lref[lc], rref[rc], on="k")
    m = left[lc].merge(right[rc], on="k")
    conditions = {
        "both_sides": lambda d: (
            ((d.n > 50) & (d.w < 0) & d.f.between(0.5, 1.5))
            | ((d.s == "a") & d.name.isin(["r1", "r3", "r5"]))
            | ((d.n < 10) & (d.kf > 20))
        ),
        "one_side_missing": lambda d: ((d.n > 50) & (d.w < 0)) | (d.kf > 20),
        "nested": lambda d: (((d.n > 50) | (d.f == 2.5)) & (d.w < 1)) | ((d.s != "b") & (d.kf >= 3)),
    }
    derived = {"both_sides": (1, 1), "one_side_missing": (0, 1), "nested": (1, 1)}
    for name, cond in conditions.items():
        f = m[cond(m)]
        stage, lchain, rchain = _sides(f)
        assert (lchain.count("Filter"), rchain.count("Filter")) == derived[name], name
        assert [type(n).__name__ for n in f.node.chain()] == ["Scan", "Filter"], name  # stays
        check(f, exp_m[cond(exp_m)].reset_index(drop=True), name)


def test_filter_pushdown_reads_fewer_rows(frames):
    left, right, lref, rref = frames
    m = left[["id", "k", "n"]].merge(right[["k", "w"]], on="k")
    f = m[m.id < 30]  # statistics prune the left side's later row groups
    check(
        f, pd.merge(lref[["id", "k", "n"]], rref[["k", "w"]], on="k").query("id < 30").reset_index(drop=True)
    )
    pruned = hf.last_run_stats()["partitions_pruned"]
    assert pruned > 0


def test_projection_prunes_the_sides(frames):
    left, right, lref, rref = frames
    m = left.merge(right, on="k", how="left")
    sel = m[["id", "w"]]
    stage = sel.node.scan().source
    assert [r for _, r in stage.left_cols] == ["id", "k"]
    assert [r for _, r in stage.right_cols] == ["w", "k"]
    expected = pd.merge(lref, rref, on="k", how="left")[["id", "w"]]
    check(sel, expected)
    # suffixed names keep their meaning when the other one is pruned
    sel = m[["id", "s_y"]]
    check(sel, pd.merge(lref, rref, on="k", how="left")[["id", "s_y"]])


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
def test_errors(frames):
    left, right, _, _ = frames
    with pytest.raises(hf.ColumnNotFoundError, match="nope"):
        left.merge(right, on="nope")
    with pytest.raises(hf.ColumnNotFoundError):
        left.merge(right, left_on="k", right_on="nope")
    with pytest.raises(ValueError, match=r"'s'.*'k'|'k'.*'s'") as info:
        left.merge(right, left_on="s", right_on="k")
    assert "left frame" in str(info.value) and "right frame" in str(info.value)
    with pytest.raises(ValueError, match="datetime64"):
        left.merge(right, left_on="d", right_on="w")
    with pytest.raises(ValueError, match="'tz'.*'d'"):  # tz-aware with naive times
        left.merge(right, left_on="tz", right_on="d")
    with pytest.raises(ValueError, match="how must be one of"):
        left.merge(right, on="k", how="semi")
    with pytest.raises(ValueError, match="outer join cannot broadcast"):
        left.merge(right, on="k", how="outer", broadcast=True)
    with pytest.raises(pd.errors.MergeError, match="No common columns"):
        left[["id"]].merge(right[["w"]])
    with pytest.raises(ValueError, match="suffix"):
        left[["k", "s"]].merge(right[["k", "s"]], on="k", suffixes=(None, None))
    with pytest.raises(TypeError, match="Frame or a pandas DataFrame"):
        left.merge([1, 2], on="k")


def test_int_float_keys_warn_as_pandas():
    left = pd.DataFrame({"k": [1, 2, 3]})
    right = pd.DataFrame({"k": [1.0, 2.5], "v": [1, 2]})
    got = hf.from_pandas(left).merge(hf.from_pandas(right), on="k", how="left")
    with pytest.warns(UserWarning):
        expected = pd.merge(left, right, on="k", how="left")
    check(got, expected)


def test_merge_reads_each_side_once(frames):
    left, right, lref, rref = frames
    m = left[["id", "k"]].merge(right[["k", "w"]], on="k")
    m.compute()
    rows = hf.last_run_stats()["rows_read"]
    # read once per side, then the held result once (the sums over all ranks)
    comm = mpi.world()
    total = rows if comm is None else comm.allreduce(rows)
    assert total == len(lref) + len(rref) + len(pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k"))


def test_series_isin_list_unchanged(frames):
    left, _, lref, _ = frames
    check(left[left.k.isin([1, 2, 3])], lref[lref.k.isin([1, 2, 3])].reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames, every how and strategy
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_MERGE_EXAMPLES", "12"))

if st is not None:

    def _frame(rows, name):
        return pd.DataFrame(
            {
                "k1": np.array([r[0] for r in rows], dtype=np.float64),
                "k2": pd.array([r[1] for r in rows], dtype="str"),
                name: np.array([r[2] for r in rows], dtype=np.int64),
            }
        )

    _rows = merge_key_rows()
    _SETTINGS = spmd_settings(EXAMPLES)

    @_SETTINGS
    @given(
        left=_rows,
        right=_rows,
        nparts=st.tuples(st.integers(1, 4), st.integers(1, 3)),
        partitions=st.integers(1, 6),
        keys=st.sampled_from([["k1"], ["k2"], ["k1", "k2"], "int_vs_float"]),
        how=st.sampled_from(["inner", "left", "right", "outer", "cross"]),
        broadcast=st.sampled_from([None, True, False]),
        indicator=st.booleans(),
    )
    def test_merge_hypothesis(left, right, nparts, partitions, keys, how, broadcast, indicator):
        if (how == "outer" and broadcast) or (how == "cross" and broadcast is False):
            return
        lp, rp = _frame(left, "a"), _frame(right, "b")
        if keys == "int_vs_float":
            lp = lp.assign(k1=lp.k1.fillna(-1).astype("int64"))
            kw = dict(left_on="k1", right_on="k1")
        else:
            kw = {} if how == "cross" else dict(on=keys)
        if how == "cross":
            kw = {}
        old = hf.config.partitions
        hf.config.partitions = partitions
        try:
            lf, rf = hf.from_pandas(lp, npartitions=nparts[0]), hf.from_pandas(rp, npartitions=nparts[1])
            got = lf.merge(rf, how=how, broadcast=broadcast, indicator=indicator, **kw).compute()
        finally:
            hf.config.partitions = old
        expected = pd.merge(lp, rp, how=how, indicator=indicator, **kw)
        # an empty result's categorical _merge has no categories (the user guide's differences)
        pd.testing.assert_frame_equal(got, expected, check_categorical=len(expected) > 0)

    _KEY_KINDS = ["str", "category", "category of a b c d z", "object"]

    def _string_key(values, kind):
        """A string key column of ``kind`` (``None``: a missing key); a categorical's
        categories are its values, or a fixed wider list."""
        if kind == "str":
            return pd.Series(values, dtype="str")
        if kind == "object":
            return pd.Series(values, dtype=object)
        if kind == "category":
            return pd.Series(pd.Categorical(values))
        return pd.Series(pd.Categorical(values, categories=["a", "b", "c", "d", "z"]))

    def _values(df):
        """Each column's values, a missing one as ``None`` (dtypes aside)."""
        return {c: df[c].astype(object).where(df[c].notna(), None).tolist() for c in df.columns}

    _keys = st.lists(st.sampled_from(["a", "b", "c", "d", None]), max_size=8)

    @_SETTINGS
    @given(
        left=_keys,
        right=_keys,
        kinds=st.tuples(st.sampled_from(_KEY_KINDS), st.sampled_from(_KEY_KINDS)),
        nparts=st.tuples(st.integers(1, 3), st.integers(1, 3)),
        partitions=st.integers(1, 5),
        how=st.sampled_from(["inner", "left", "right", "outer"]),
        names=st.sampled_from(["on", "left_on_right_on"]),
    )
    def test_merge_of_string_keys_of_mixed_kinds_hypothesis(
        left, right, kinds, nparts, partitions, how, names
    ):
        """A merge of ``str``, categorical (other categories on the two sides, or the same
        ones) and ``object`` string keys has pandas' rows, values and order. (Found by a
        randomized run: outer joins of such keys failed with "cannot keep the data as Arrow
        tables", or put the missing key first, where a hash partition held one side's rows
        only, see test_outer_join_of_a_categorical_key_with_a_str_key_or_other_categories.)
        The key's dtype is not compared: ``str`` where pandas gives ``object``, and a merge
        with an empty side has the empty frames' dtypes (the user guide's differences)."""
        lp = pd.DataFrame({"k": _string_key(left, kinds[0]), "a": np.arange(len(left))})
        rp = pd.DataFrame({"k": _string_key(right, kinds[1]), "b": np.arange(len(right)) * 10.0})
        kw = dict(on="k")
        if names == "left_on_right_on":
            rp, kw = rp.rename(columns={"k": "r"}), dict(left_on="k", right_on="r")
        old = hf.config.partitions
        hf.config.partitions = partitions
        try:
            lf, rf = hf.from_pandas(lp, npartitions=nparts[0]), hf.from_pandas(rp, npartitions=nparts[1])
            got = lf.merge(rf, how=how, **kw).compute()
        finally:
            hf.config.partitions = old
        expected = pd.merge(lp, rp, how=how, **kw)
        assert list(got.columns) == list(expected.columns)
        assert _values(got) == _values(expected)


@pytest.mark.parametrize("how", ["inner", "cross"])
def test_small_left_side_is_broadcast(frames, monkeypatch, how):
    """The right side is too big to broadcast, the left one is not: the left side is copied
    to every rank, the right side's blocks are merged where they are held; pandas' order."""
    left, right, lref, rref = frames
    monkeypatch.setattr(hf.config, "broadcast_bytes", 200)
    small = left[left.id < 5][["id", "k"]]
    kw = {"on": "k"} if how == "inner" else {}
    m = small.merge(right[["k", "w"]] if how == "inner" else right[["w"]], how=how, **kw)
    expected = pd.merge(
        lref[lref.id < 5][["id", "k"]].reset_index(drop=True),
        rref[["k", "w"]] if how == "inner" else rref[["w"]],
        how=how,
        **kw,
    )
    check(m, expected)
    assert m.node.scan().source.strategy == "broadcast left"


def test_sides_that_are_stages(frames):
    """Sides computed by earlier stages keep their own row order: a group-by result with
    sort=False (first appearance), a persisted frame, a deduplicated frame."""
    left, right, lref, rref = frames
    g = left.groupby("s", sort=False, as_index=False).agg(total=("n", "sum"))
    gp = lref.groupby("s", sort=False, as_index=False).agg(total=("n", "sum"))
    check(g.merge(right[["s", "w"]], on="s", how="left"), pd.merge(gp, rref[["s", "w"]], on="s", how="left"))
    d = right[["k", "w"]].drop_duplicates(["k"])
    dp = rref[["k", "w"]].drop_duplicates(["k"]).reset_index(drop=True)
    p = left[["id", "k"]].persist()
    try:
        for how in ("inner", "right", "outer"):
            got = p.merge(d, on="k", how=how, broadcast=False)
            check(got, pd.merge(lref[["id", "k"]], dp, on="k", how=how), how)
            got = d.merge(p, on="k", how=how)
            check(got, pd.merge(dp, lref[["id", "k"]], on="k", how=how), how)
    finally:
        p.unpersist()


def test_semi_join_explain(frames):
    left, right, lref, rref = frames
    f = left[left.k.isin(right[right.w > 0].k)]
    text = f.explain()
    assert "semi-join" in text and "strategy: chosen when it runs" in text
    assert "Filter (w > 0)" in text


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_sorted_sides_keep_their_order(frames, how):
    """A side sorted by sort_values (any direction, NaN first or last) keeps that order in
    the result, as pandas' merge keeps its inputs' order; a merged frame sorts as pandas."""
    left, right, lref, rref = frames
    ls = left[["id", "k", "f"]].sort_values(["f", "id"], ascending=[False, True], na_position="first")
    rs = right[["k", "w"]].sort_values("w")
    lp = lref[["id", "k", "f"]].sort_values(
        ["f", "id"], ascending=[False, True], na_position="first", kind="stable"
    )
    rp = rref[["k", "w"]].sort_values("w", kind="stable")
    for bc in (None, False):
        if how == "outer" and bc is None:
            continue
        check(ls.merge(rs, on="k", how=how, broadcast=bc), pd.merge(lp, rp, on="k", how=how), f"{how} {bc}")
    got = (
        left[["id", "k"]].merge(right[["k", "w"]], on="k", how=how).sort_values("w", ascending=False).head(7)
    )
    expected = pd.merge(lref[["id", "k"]], rref[["k", "w"]], on="k", how=how)
    check(
        got.compute().reset_index(drop=True),
        expected.sort_values("w", ascending=False, kind="stable").head(7).reset_index(drop=True),
    )


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
def test_a_written_join_has_the_columns_of_the_frame(shared_dir, how):
    """``to_parquet`` of a join result writes the frame's columns, not the join's internal
    row-order columns (``__hpcframe_jl0__`` ... were written before); read back it equals
    pandas' merge (row order aside)."""
    left = pd.DataFrame({"k": [1, 2, 2, 3, 5], "a": [0.5, 1.5, 2.5, np.nan, 4.5]})
    right = pd.DataFrame({"k": [2, 3, 3, 4], "b": ["x", "y", "z", "w"]})
    joined = hf.from_pandas(left, npartitions=2).merge(hf.from_pandas(right), on="k", how=how)
    out = os.path.join(shared_dir, f"written_join_{how}")
    hf.to_parquet(joined, out)
    back = hf.read_parquet(out).compute()
    expected = pd.merge(left, right, on="k", how=how)
    assert list(back.columns) == list(expected.columns)
    key = ["k", "a", "b"]
    got = back.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(key).reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
def test_groupby_of_every_column_after_merge(frames, how):
    """A group-by aggregating every column of a merged frame (``agg(["count"])``,
    ``count()``) aggregates the user's columns only, not the join's hidden row-order
    columns (regression: they appeared as ``__hpcframe_jl0__`` result columns)."""
    left, right, lref, rref = frames
    m = left[["id", "k"]].merge(right[["k", "w"]], how=how, on="k")
    mp = pd.merge(lref[["id", "k"]], rref[["k", "w"]], how=how, on="k")
    check(m.groupby("k").agg(["count"]), mp.groupby("k").agg(["count"]))
    check(m.groupby("k").count(), mp.groupby("k").count())
    check(m.groupby("k").max(), mp.groupby("k").max())


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize(
    "right_categories", [["a", "c", "d"], ["a", "b", "c"]], ids=["other_categories", "same_categories"]
)
def test_groupby_after_merge_on_a_key_categorical_on_both_sides(right_categories, how):
    """A merge on a key that is categorical on both sides: pandas keeps it categorical only
    when the two sides have the same categories (``str`` otherwise). The merged frame's dtype
    (once the join ran) and a group-by of it by that key follow pandas, also when the
    counts of right columns are taken before the join (regression: the key stayed
    ``category`` as declared from the empty frames, and the group-by returned a
    ``CategoricalIndex`` where pandas has a ``str`` index), and on frames built on the merged
    one before the join ran (a projection, an assigned column). The result's categories are
    the observed ones (the user guide's differences), so they are not compared."""
    left = pd.DataFrame({"k": pd.Categorical(list("abcabca"), categories=list("abc")), "x": np.arange(7)})
    keys = pd.Categorical(["a", "c", "c"], categories=right_categories)
    right = pd.DataFrame({"k": keys, "y": [10, 20, 30]})
    merged = hf.from_pandas(left, npartitions=3).merge(hf.from_pandas(right, npartitions=2), on="k", how=how)
    expected = left.merge(right, on="k", how=how)
    projected, exp_projected = merged[["k", "x"]], expected[["k", "x"]]  # built before the join ran
    assigned = merged.assign(z=merged.x * 2)
    pd.testing.assert_frame_equal(merged.compute(), expected, check_categorical=False)
    assert isinstance(merged.dtypes["k"], pd.CategoricalDtype) == isinstance(
        expected.k.dtype, pd.CategoricalDtype
    )
    fresh = hf.from_pandas(left, npartitions=3).merge(hf.from_pandas(right, npartitions=2), on="k", how=how)
    for got, exp in [
        (merged.groupby("k").x.sum(), expected.groupby("k", observed=True).x.sum()),
        (fresh.groupby("k").y.count(), expected.groupby("k", observed=True).y.count()),
        (projected.groupby("k").x.sum(), exp_projected.groupby("k", observed=True).x.sum()),
        (
            assigned.groupby("k").z.sum(),
            expected.assign(z=expected.x * 2).groupby("k", observed=True).z.sum(),
        ),
    ]:
        pd.testing.assert_series_equal(got.compute(), exp, check_categorical=False)
    # (a projection of a join is a join of its own: its dtypes are the data's once it ran)
    assert isinstance(projected.dtypes["k"], pd.CategoricalDtype) == isinstance(
        exp_projected.k.dtype, pd.CategoricalDtype
    )


@pytest.mark.parametrize(
    "right_categories", [["a", "c", "d"], ["a", "b", "c"]], ids=["other_categories", "same_categories"]
)
def test_sorted_head_after_merge_on_a_key_categorical_on_both_sides(right_categories):
    """``sort_values(key).head(n)`` and ``nsmallest`` of a frame merged on a key categorical
    on both sides (``str`` after the merge when the categories differ, ``category`` when they
    are the same) equal pandas', for a sorted frame built before the join ran."""
    left = pd.DataFrame({"k": pd.Categorical(list("cabcabca"), categories=list("abc")), "x": np.arange(8)})
    keys = pd.Categorical(["a", "c", "c"], categories=right_categories)
    right = pd.DataFrame({"k": keys, "y": [10, 20, 30]})
    merged = hf.from_pandas(left, npartitions=3).merge(hf.from_pandas(right, npartitions=2), on="k")
    expected = left.merge(right, on="k")
    ordered = merged.sort_values(["k", "x"])  # built before the join ran
    got = ordered.head(3).compute()
    want = expected.sort_values(["k", "x"]).head(3)
    pd.testing.assert_frame_equal(got, want, check_categorical=False)
    pd.testing.assert_frame_equal(
        merged.nsmallest(3, "x").compute(), expected.nsmallest(3, "x"), check_categorical=False
    )


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_shuffled_join_keeps_categoricals_of_other_category_lists(mixed_categories, how):
    """A shuffled join of columns whose files have other category lists: every side's
    categorical columns get the union of its blocks' categories before the pieces are
    stacked, so they stay ``category`` with pandas' categories (a regression: ``str``), as
    the key (categorical on both sides) and as values."""
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    right = df[df.id % 3 == 0][["k", "c", "i"]]
    got = df[["id", "k", "c", "x"]].merge(right, on="k", how=how, broadcast=False)
    exp = pd.merge(ref[["id", "k", "c", "x"]], ref[ref.id % 3 == 0][["k", "c", "i"]], on="k", how=how)
    res = got.compute()
    for col in ("k", "c_x", "c_y"):
        assert res[col].dtype == exp[col].dtype, (col, res[col].dtype, exp[col].dtype)
    check(res, exp)  # (outer: the missing key's rows first, as pandas sorts the codes)


_SAME = pd.CategoricalDtype(["y", "x", "q"])


def _categorical_sides(same: bool):
    """A left frame keyed by ``_SAME`` and a right one keyed by the same categories or by
    others (one more category), with missing keys and keys on one side only."""
    left = pd.DataFrame(
        {"k": pd.Categorical(["x", None, "y", "q", "x", "q", None, "y"], dtype=_SAME), "a": range(8)}
    )
    cats = _SAME if same else pd.CategoricalDtype(["y", "x", "q", "z"])
    other = "y" if same else "z"
    right = pd.DataFrame(
        {"r": pd.Categorical(["q", "x", None, other, other, "x"], dtype=cats), "b": range(6)}
    )
    return left, right


@pytest.mark.parametrize("same", [True, False], ids=["same_categories", "other_categories"])
@pytest.mark.parametrize("on", ["left_on_right_on", "on"])
@pytest.mark.parametrize(
    "how, broadcast",
    [("outer", None), ("inner", None), ("inner", False), ("left", False), ("right", False)],
)
def test_merge_on_keys_categorical_on_both_sides(same, on, how, broadcast):
    """A merge of keys categorical on both sides equals pandas', rows, order and dtypes:
    with the same categories an outer join sorts the keys by their codes with the missing
    ones FIRST (regression: last); with other categories the left key is ``str`` and an
    outer join sorts by value (regression: on 3 ranks, a rank without rows declared the
    key ``category`` from the planned dtypes, its type won the schema agreement, and the
    outer join's rows came in the categories' order: ``nlargest`` labels differed from
    local, the relational differential test's fixed seed 9)."""
    left, right = _categorical_sides(same)
    kw = dict(left_on="k", right_on="r")
    if on == "on":
        right, kw = right.rename(columns={"r": "k"}), dict(on="k")
    expected = left.merge(right, how=how, **kw)
    merged = hf.from_pandas(left, npartitions=3).merge(
        hf.from_pandas(right, npartitions=2), how=how, broadcast=broadcast, **kw
    )
    got = merged.compute()
    pd.testing.assert_frame_equal(got, expected)
    if how == "outer":  # the labels: positions in the merged frame's order
        pd.testing.assert_frame_equal(merged.nsmallest(5, "a").compute(), expected.nsmallest(5, "a"))
        pd.testing.assert_frame_equal(merged.tail(4).compute(), expected.tail(4))


@pytest.mark.parametrize("other", ["str", "categorical"])
@pytest.mark.parametrize("categorical", ["left", "right"])
def test_outer_join_of_a_categorical_key_with_a_str_key_or_other_categories(other, categorical):
    """An outer join of a categorical key with a ``str`` key, or with a key categorical
    with other categories, has pandas' rows and order: sorted by value, the missing key
    last (pandas' key is ``str`` or ``object``). In a hash partition where one side has no
    rows, pandas makes the merged key categorical (the other side's dtype); the hidden sort
    column took its codes there. Regressions: with a ``str`` key, "cannot keep the data as
    Arrow tables: Expected a string or bytes dtype, got int64"; with other categories the
    planned dtypes (a declared categorical has no categories, so both sides look alike)
    made every partition sort by codes, the missing key first, or failed alike. Now each
    partition decides from its two sides' categories, which are their whole side's. The
    key comes back ``str`` where pandas gives ``object`` (see the user guide: an ``object``
    column of strings)."""
    # one value on one side: most hash partitions hold rows of the other side only
    few = pd.Series(["b", "b"], dtype="str" if other == "str" else "category")
    plain = pd.DataFrame({"k": few, "x": [1, 2]})
    coded = pd.DataFrame({"k": pd.Categorical(["d", "b", "a", None, "f", "g", "h"]), "y": np.arange(7.0)})
    left, right = (coded, plain) if categorical == "left" else (plain, coded)
    expected = left.merge(right, on="k", how="outer")
    got = hf.from_pandas(left, npartitions=2).merge(hf.from_pandas(right, npartitions=3), on="k", how="outer")
    got = got.compute()
    pd.testing.assert_frame_equal(got, expected.astype({"k": got.k.dtype}))


def test_outer_join_of_int64_keys_near_2_63_with_float32_keys():
    """An outer join of int64 keys beyond 2**53 with float32 keys (``left_on``/``right_on``)
    equals pandas: its rows sorted by the keys as float64, the type pandas matches them in.
    Regression: the hidden coalesced key was made of Python objects, ints and floats mixed,
    and Arrow refused to keep it ("Integer value 5764607523034234880 is outside of the range
    exactly representable by a IEEE 754 double precision value")."""
    big = np.int64(2**62) + np.array([1, 1, 0, 2, 1], dtype=np.int64) * np.int64(2**60)
    left = pd.DataFrame({"k": big, "x": np.arange(5)})
    right = pd.DataFrame({"r": np.array([np.nan, 0.0, np.nan], dtype=np.float32), "y": [0.0, 10.0, 20.0]})
    expected = left.merge(right, left_on="k", right_on="r", how="outer")
    got = hf.from_pandas(left, npartitions=2).merge(
        hf.from_pandas(right, npartitions=2), left_on="k", right_on="r", how="outer"
    )
    pd.testing.assert_frame_equal(got.compute(), expected)


@pytest.mark.parametrize("broadcast", [None, True, False])
def test_right_join_key_typed_by_the_ranks_with_rows(broadcast):
    """A right join of a float64 key (left) with an int64 key (right): pandas' key is the
    right's int64. The planned dtype (from the empty frames) is float64; ranks without rows
    took part in the schema agreement with it, and by the rule for ints and floats together
    the key came back float64 on 2 and 3 ranks (fuzz seed 3613). Only frames with rows
    decide the types (``agree_schema``)."""
    left = pd.DataFrame({"k": [1.5, np.nan], "i": [1, 2]})
    right = pd.DataFrame({"k": [6, 3], "s": ["a", "b"]})
    got = hf.from_pandas(left).merge(hf.from_pandas(right), how="right", on="k", broadcast=broadcast)
    pd.testing.assert_frame_equal(got.compute(), left.merge(right, how="right", on="k"))
