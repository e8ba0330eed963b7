"""Group windows (issue 10), compared with pandas: ``cumsum``, ``cumprod``, ``cummax``,
``cummin``, ``cumcount``, ``diff``, ``shift``, ``rank`` and ``pct_change`` on
``df.groupby(keys)`` and ``df.groupby(keys)[col]``.

They are lazy objects aligned with the frame's rows, like ``transform`` results: rows are
shuffled by the keys (whole groups per hash partition, each partition in the frame's row
order) and pandas computes each partition. The reference is plain pandas on the same data
with a ``RangeIndex``; the dtypes are pandas' (``cumcount`` int64, ``rank`` float64, a
``shift`` of ints float64, int64 again for an empty frame), also when a key is missing
(``dropna=True``: those rows get NaN, and pandas computes sums, products and ranks of ints
as floats when a key is missing anywhere).

Hypothesis drives a few small random frames (derandomized, no shrinking under MPI, so that
every rank draws the same examples).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import materialize
from tests.helpers.frames import (
    assert_bits,
    keyed_frames,
    local,
    same,
    spmd_settings,
)

pytestmark = mpi.timeout(120)
PARTITIONS = 5  # more than the ranks (some hold two with 3 ranks), few: the data is small


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", PARTITIONS)


WINDOWS = {
    "cumsum": lambda g: g.cumsum(),
    "cumprod": lambda g: g.cumprod(),
    "cummax": lambda g: g.cummax(),
    "cummin": lambda g: g.cummin(),
    "cumcount": lambda g: g.cumcount(),
    "cumcount_desc": lambda g: g.cumcount(ascending=False),
    "diff": lambda g: g.diff(),
    "diff_-2": lambda g: g.diff(-2),
    "shift": lambda g: g.shift(),
    "shift_2_fill": lambda g: g.shift(2, fill_value=0),
    "shift_-1": lambda g: g.shift(-1),
    "rank": lambda g: g.rank(),
    "rank_dense_desc_pct": lambda g: g.rank(method="dense", ascending=False, pct=True),
    "rank_first_top": lambda g: g.rank(method="first", na_option="top"),
    "rank_min_bottom": lambda g: g.rank(method="min", na_option="bottom"),
    "rank_max": lambda g: g.rank(method="max"),
    "pct_change": lambda g: g.pct_change(),
}

KEYSETS = {
    "str_with_nulls": (["carrier"], True),
    "str_with_nulls_dropna_false": (["carrier"], False),
    "two_keys": (["origin", "ki"], True),
    "categorical": (["cat"], True),
    "float_with_nan": (["kf"], True),
    "float_with_nan_dropna_false": (["kf"], False),
}


@pytest.mark.parametrize("keyset", list(KEYSETS))
def test_windows_of_a_column(dir6, keyset):
    keys, dropna = KEYSETS[keyset]
    df, ref = dir6.open(), dir6.pdf
    names = list(WINDOWS)
    cols = ["x", "n", "nn"]  # float with NaN, int, int with nulls (float64)
    lazy, exp = [], []
    for i, name in enumerate(names):
        col = cols[i % len(cols)]
        lazy.append(WINDOWS[name](df.groupby(keys, dropna=dropna)[col]))
        exp.append((f"{keyset} {col}.{name}", WINDOWS[name](ref.groupby(keys, dropna=dropna)[col])))
    got = hf.compute(*lazy)
    for g, (msg, e) in zip(got, exp):
        assert isinstance(materialize(g).index, pd.RangeIndex), msg
        assert materialize(g).dtype == e.dtype, f"{msg}: {materialize(g).dtype} != {e.dtype}"
        same(g, e, msg=msg)


@pytest.mark.parametrize("keyset", ["str_with_nulls", "two_keys", "float_with_nan_dropna_false"])
def test_windows_of_a_frame(dir6, keyset):
    keys, dropna = KEYSETS[keyset]
    df, ref = dir6.open(), dir6.pdf
    cols = ["x", "n", "y", "nn"]
    names = ["cumsum", "cummax", "cumcount", "diff", "shift", "rank", "rank_dense_desc_pct"]
    got = hf.compute(*[WINDOWS[k](df[keys + cols].groupby(keys, dropna=dropna)) for k in names])
    for k, g in zip(names, got):
        exp = WINDOWS[k](ref[keys + cols].groupby(keys, dropna=dropna))
        same(g, exp, msg=f"{keyset} {k}")
    # a list of columns
    got = df.groupby(keys, dropna=dropna)[["n", "x"]].cumsum().compute()
    same(got, ref.groupby(keys, dropna=dropna)[["n", "x"]].cumsum(), msg="selected columns")


def test_windows_in_assign_and_filters(dir6):
    df, ref = dir6.open(), dir6.pdf

    def q(d):
        g = d.groupby("carrier")
        return d.assign(
            prev=g.x.shift(),
            delta=g.x.diff(),
            running=d.groupby(["origin", "ki"]).n.cumsum(),
            k=g.cumcount(),
            r=g.x.rank(method="first"),
        )

    def q_filtered(d):
        a = q(d)
        return a[(a.k < 3) & (a.x > a.prev)][["id", "carrier", "x", "prev", "k"]]

    def q_direct_filter(d):
        return d[d.x > d.groupby("carrier").x.shift(1)][["id", "x"]]

    def q_expression(d):
        return d.x - d.groupby("origin").x.shift(1)

    def q_after_filter(d):
        f = d[d.n > 500]
        return f.assign(c=f.groupby("carrier").cumcount(), s=f.groupby("origin").n.cumsum())

    got = hf.compute(q(df), q_filtered(df), q_direct_filter(df), q_expression(df), q_after_filter(df))
    same(got[0], q(ref), msg="assign")
    same(got[1], q_filtered(ref).reset_index(drop=True), msg="assign then filter")
    same(got[2], q_direct_filter(ref).reset_index(drop=True), msg="filter by a window")
    same(got[3], q_expression(ref), msg="column - window")
    same(got[4], q_after_filter(ref).reset_index(drop=True), msg="filter then window")


NASTY_WINDOWS = {
    "str_dropna_cumsum_big": lambda d: d.groupby("s").big.cumsum(),  # floats, as pandas
    "str_dropna_cumprod_n": lambda d: d.groupby("s").n.cumprod(),
    "str_dropna_rank_big": lambda d: d.groupby("s").big.rank(),  # ties after the float cast
    "str_dropna_false_cumsum_big": lambda d: d.groupby("s", dropna=False).big.cumsum(),  # wraps
    "str_cummax_big": lambda d: d.groupby("s").big.cummax(),
    "str_cumcount": lambda d: d.groupby("s").cumcount(),
    "giant_cumsum_f32": lambda d: d.groupby("one").f32.cumsum(),
    "giant_shift_f32": lambda d: d.groupby("one").f32.shift(),
    "bool_key_cumsum_n": lambda d: d.groupby("kb").n.cumsum(),
    "bool_key_cumcount": lambda d: d.groupby("kb").cumcount(ascending=False),
    "big_key_diff_v": lambda d: d.groupby("big").v.diff(),
    "date_key_cumsum_big": lambda d: d.groupby("d").big.cumsum(),  # int64, wraps as numpy
    "f32_key_dropna_false_rank": lambda d: d.groupby("f32", dropna=False).v.rank(method="min"),
    "cat_str_shift_d": lambda d: d.groupby(["cat", "s"]).d.shift(),
    "cat_cummax_tz": lambda d: d.groupby("cat").tz.cummax(),
    "cat_diff_tz": lambda d: d.groupby("cat").tz.diff(),
    "tz_key_rank_v": lambda d: d.groupby("tz").v.rank(pct=True),
    "cat_cummin_d": lambda d: d.groupby("cat").d.cummin(),
    "s_rank_dec": lambda d: d.groupby("s").dec.rank(method="dense"),
    "s_cumsum_inf": lambda d: d.assign(w=d.v * np.inf).groupby("s").w.cumsum(),
}


def test_windows_nasty(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    names = list(NASTY_WINDOWS)
    got = hf.compute(*[NASTY_WINDOWS[k](df) for k in names])
    for k, g in zip(names, got):
        exp = NASTY_WINDOWS[k](ref)
        assert materialize(g).dtype == exp.dtype, f"{k}: {materialize(g).dtype} != {exp.dtype}"
        same(g, exp, msg=k)


def test_windows_empty_one_partition_more_ranks(dir6, cfg):
    ref = dir6.pdf
    cfg(partitions=2)  # fewer partitions than ranks under mpiexec -n 3 or 4
    df = hf.from_pandas(ref, npartitions=1)
    e, re_ = df[df.n < 0], ref[ref.n < 0].reset_index(drop=True)
    names = ["cumsum", "cumcount", "diff", "shift", "rank", "pct_change"]
    got = hf.compute(
        *[WINDOWS[k](df.groupby("carrier").n) for k in names],
        *[WINDOWS[k](e.groupby("carrier").n) for k in names],
        e.assign(c=e.groupby("carrier").cumcount()),
    )
    for k, g in zip(names, got[: len(names)]):
        same(g, WINDOWS[k](ref.groupby("carrier").n), msg=f"one partition {k}")
    for k, g in zip(names, got[len(names) : 2 * len(names)]):
        exp = WINDOWS[k](re_.groupby("carrier").n)
        assert len(materialize(g)) == 0, k
        assert materialize(g).dtype == exp.dtype, f"empty {k}: {materialize(g).dtype} != {exp.dtype}"
    c = materialize(got[-1])
    assert len(c) == 0 and c["c"].dtype == np.int64
    assert list(c.columns) == list(re_.columns) + ["c"]


def test_windows_all_keys_missing(dir6):
    """Every row has a missing key: every window is NaN (float64), as pandas gives it."""
    df, ref = dir6.open(), dir6.pdf
    f, rf = df[df.carrier.isna()], ref[ref.carrier.isna()].reset_index(drop=True)
    names = ["cumsum", "cumcount", "shift", "rank"]
    got = hf.compute(*[WINDOWS[k](f.groupby("carrier").n) for k in names])
    for k, g in zip(names, got):
        same(g, WINDOWS[k](rf.groupby("carrier").n), msg=k)


def test_windows_bit_identical_to_serial_engine(dir6, nasty, cfg):
    cfg(partitions=5)
    df = dir6.open()
    ndf = hf.read_parquet(nasty[0])
    queries = {
        "cumsum": df.groupby(["origin", "ki"]).x.cumsum(),
        "rank": df.groupby("carrier", dropna=False).y.rank(pct=True),
        "frame_diff": df[["carrier", "x", "y"]].groupby("carrier").diff(),
        "nasty_cumsum": NASTY_WINDOWS["str_dropna_cumsum_big"](ndf),
        "nasty_shift": NASTY_WINDOWS["giant_shift_f32"](ndf),
    }
    got = hf.compute(*queries.values())
    for (k, q), g in zip(queries.items(), got):
        assert_bits(g, local(q), msg=k)


def test_windows_errors(dir6):
    df = dir6.open()
    with pytest.raises(ValueError, match="rank"):
        df.groupby("carrier").x.rank(method="bogus")
    with pytest.raises(ValueError, match="na_option"):
        df.groupby("carrier").x.rank(na_option="middle")
    with pytest.raises(hf.ColumnNotFoundError):
        df.groupby("carrier")["nope"].cumsum()


def test_windows_after_sort_values(dir6):
    """The windows follow the frame's row order, e.g. after ``sort_values`` (in that order,
    with a fresh ``RangeIndex``, as ``transform`` results after a sort)."""
    df, ref = dir6.open(), dir6.pdf
    s, rs = df.sort_values("ts"), ref.sort_values("ts", kind="stable")
    s2 = df.sort_values(["ki", "x"], ascending=[False, True], na_position="first")
    rs2 = ref.sort_values(["ki", "x"], ascending=[False, True], na_position="first", kind="stable")

    def q(d):
        g = d.groupby("carrier")
        return d.assign(prev=g.x.shift(1), run=g.n.cumsum(), k=g.cumcount(), d=g.ts.diff())

    got = hf.compute(
        q(s),
        s.groupby("carrier").x.shift(1),
        s2.groupby("origin").n.cumsum(),
        s2.groupby(["origin", "cat"]).y.rank(method="first"),
        s2[s2.n > 300].groupby("carrier").x.diff(),
    )
    exp = [
        q(rs),
        rs.groupby("carrier").x.shift(1),
        rs2.groupby("origin").n.cumsum(),
        rs2.groupby(["origin", "cat"]).y.rank(method="first"),
        rs2[rs2.n > 300].groupby("carrier").x.diff(),
    ]
    for i, (g, e) in enumerate(zip(got, exp)):
        same(g, e.reset_index(drop=True), msg=f"after sort case {i}")


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_GROUP_WINDOW_EXAMPLES", "5"))

if st is not None:
    frames = keyed_frames([np.nan, -1.5, 0.0, 2.25, 1e15, 3.0, np.inf, -np.inf])
    _SETTINGS = spmd_settings(EXAMPLES)

    @_SETTINGS
    @given(
        frame=frames,
        keys=st.sampled_from([["k"], ["i"], ["k", "i"]]),
        how=st.sampled_from(sorted(WINDOWS)),
        col=st.sampled_from(["v", "i"]),
        dropna=st.booleans(),
    )
    def test_windows_hypothesis(frame, keys, how, col, dropna):
        pdf, nparts = frame
        if col in keys:
            col = "v"
        df = hf.from_pandas(pdf, npartitions=nparts)
        got = df.assign(t=WINDOWS[how](df.groupby(keys, dropna=dropna)[col])).compute()
        exp = pdf.assign(t=WINDOWS[how](pdf.groupby(keys, dropna=dropna)[col]))
        same(
            got,
            exp,
            msg=f"{keys} {col}.{how} dropna={dropna} npartitions={nparts}",
            check_index_type=len(exp) > 0,
        )


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8"])
def test_windows_of_narrow_ints_that_overflow_their_dtype(monkeypatch, dtype):
    """A group cumsum, cumprod or ``transform("sum")`` of a narrow integer column: pandas
    gives int64 where a value outgrew the column's dtype (and keeps the dtype where none
    did). Regression: partitions whose values fit kept the narrow dtype, the others made
    int64, and the first won when the partitions were kept as Arrow ("Integer value 200 not
    in range: -128 to 127"). Integers of other widths now agree on one that holds them all."""
    monkeypatch.setattr(hf.config, "partitions", 2)
    big = int(np.iinfo(dtype).max) // 2 + 1
    ref = pd.DataFrame({"k": [1, 2, 2, 3, 1], "v": np.array([1, big, big, 2, 3], dtype=dtype)})
    f = hf.from_pandas(ref, npartitions=2)
    for name, fn in (
        ("cumsum", lambda g: g.v.cumsum()),
        ("cumprod", lambda g: g.v.cumprod()),
        ("transform", lambda g: g.v.transform("sum")),
    ):
        got = fn(f.groupby("k")).compute()
        pd.testing.assert_series_equal(got, fn(ref.groupby("k")), obj=name)
    small = ref.assign(v=np.array([1, 2, 2, 3, 1], dtype=dtype))  # nothing overflows: the dtype stays
    got = hf.from_pandas(small, npartitions=2).groupby("k").v.cumsum().compute()
    pd.testing.assert_series_equal(got, small.groupby("k").v.cumsum())
