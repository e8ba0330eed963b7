"""Predicate pushdown over awkward types: a filter placed on the scan (evaluated while reading,
and used for min/max statistics pruning) gives the same rows as the same filter run after an
``assign`` of every column it reads (no pushdown, no pruning), and both give pandas' rows --
or all three raise.

The data hold ints near 2**53 and 2**63, uint64 above 2**63, ints with nulls (float64 in
pandas), NaN and ±inf, float32 values that are not float64 values (0.1), dates, naive and
tz-aware timestamps, bools with and without nulls, dictionary (category) strings and strings
with nulls, in 8 row groups of 8 rows whose statistics must not prune wrongly.
"""

import datetime
import decimal
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import hpcframe as hf
from tests.helpers.datasets import arrow_to_pandas, write_parquet_slices
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

N = 64
BIG = 2**53


def _table() -> pa.Table:
    rng = np.random.default_rng(8)
    i = rng.integers(-50, 50, N).astype(object)
    i[0:8] = [BIG + 1, BIG + 3, BIG + 1, BIG + 5, BIG + 1, BIG + 7, BIG + 3, BIG + 1]
    i[8:16] = [2**62, 2**63 - 1, -(2**63), 0, 1, -1, 5, BIG]
    i[20] = 16777217
    inull = [
        None if k % 8 == 3 else v
        for k, v in enumerate(
            [BIG + 1 if k % 5 == 0 else int(x) for k, x in enumerate(rng.integers(-9, 9, N))]
        )
    ]
    f = rng.normal(0, 10, N)
    f[[1, 9, 17, 33]] = np.nan
    f[[2, 18]] = np.inf
    f[[3, 40]] = -np.inf
    f[4], f[5], f[6], f[12], f[13] = 1.5, 0.1, float(BIG), float(2**63), 16777216.0
    g = rng.normal(0, 10, N).astype(np.float32)
    g[0:8] = np.float32([0.1, 0.2, 0.3, 0.1, 0.5, 0.7, 0.25, 0.4])  # min is float32(0.1) > 0.1
    g[[9, 20, 41]] = np.nan
    g[[10, 42]] = np.inf
    g[11] = -np.inf
    g[12], g[13], g[14] = 16777216.0, 3.4e38, 1.5
    days = pd.to_datetime("2013-06-28") + pd.to_timedelta(rng.integers(0, 7, N), "D")
    d = [None if k % 8 == 5 else t.date() for k, t in enumerate(days)]
    ts = pd.to_datetime("2013-07-01") + pd.to_timedelta(rng.integers(-72, 72, N), "h")
    ts_null = [None if k % 11 == 4 else t for k, t in enumerate(ts)]
    flag = rng.random(N) < 0.5
    bn = [None if k % 8 == 6 else bool(v) for k, v in enumerate(rng.random(N) < 0.5)]
    cats = ["lo", "mid", "hi", None, "ab", "b"]
    cat = [cats[k] for k in rng.integers(0, len(cats), N)]
    strs = ["ab", "abc", "b", None, "xyz", "", "a.b", "B"]
    s = [strs[k] for k in rng.integers(0, len(strs), N)]
    u = rng.integers(0, 100, N).astype(np.uint64)
    u[[0, 9, 30]] = [2**63 + 5, 2**64 - 1, 2**63]
    days2 = pd.to_datetime("2013-06-28") + pd.to_timedelta(rng.integers(0, 7, N), "D")
    d2 = [None if k % 7 == 2 else t.date() for k, t in enumerate(days2)]
    dec = [
        None if k % 9 == 1 else decimal.Decimal(int(v)).scaleb(-2)
        for k, v in enumerate(rng.integers(-999, 999, N))
    ]
    return pa.table(
        {
            "id": pa.array(np.arange(N), pa.int64()),
            "i": pa.array(list(i), pa.int64()),
            "inull": pa.array(inull, pa.int64()),
            "f": pa.array(f, pa.float64()),
            "g": pa.array(g, pa.float32()),
            "d": pa.array(d, pa.date32()),
            "ts": pa.array(ts_null, pa.timestamp("ns")),
            "tsz": pa.array(ts.tz_localize("Europe/Paris"), pa.timestamp("us", tz="Europe/Paris")),
            "flag": pa.array(flag, pa.bool_()),
            "bn": pa.array(bn, pa.bool_()),
            "cat": pa.array(cat, pa.string()).dictionary_encode(),
            "s": pa.array(s, pa.string()),
            "u": pa.array(u, pa.uint64()),
            "d2": pa.array(d2, pa.date32()),
            "dec": pa.array(dec, pa.decimal128(12, 2)),
        }
    )


@pytest.fixture(scope="module")
def nasty(shared_dir):
    """4 Parquet files of 2 row groups of 8 rows each, and the pandas reference."""
    table = _table()
    d = write_parquet_slices(os.path.join(shared_dir, "pushdown_types"), table, 16, row_group_size=8)
    return hf.read_parquet(d), arrow_to_pandas(table)


D0 = datetime.date(2013, 7, 1)
T0 = pd.Timestamp("2013-07-01")

QUERIES = {
    # 4. isin with missing values
    "isin_nan_float": lambda d: d[d.f.isin([np.nan])],
    "isin_none_float": lambda d: d[d.f.isin([None])],
    "isin_nan_and_value": lambda d: d[d.f.isin([np.nan, 1.5])],
    "isin_nan_float32": lambda d: d[d.g.isin([np.nan])],
    "isin_nan_int_nulls": lambda d: d[d.inull.isin([np.nan])],
    "isin_none_str": lambda d: d[d.s.isin([None, "ab"])],
    "isin_nan_str": lambda d: d[d.s.isin([np.nan])],
    "isin_none_category": lambda d: d[d.cat.isin([None])],
    "isin_none_bool": lambda d: d[d.bn.isin([None])],
    "isin_mixed_str_int": lambda d: d[d.s.isin(["b", 5])],
    "isin_nat_timestamp": lambda d: d[d.ts.isin([pd.NaT])],
    "isin_nat_date": lambda d: d[d.d.isin([pd.NaT, T0])],
    "not_isin_nan": lambda d: d[~d.f.isin([np.nan])],
    # 6. float32 against Python numbers
    "f32_eq_py_float": lambda d: d[d.g == 0.1],
    "f32_ne_py_float": lambda d: d[d.g != 0.1],
    "f32_le_py_float": lambda d: d[d.g <= 0.1],
    "f32_lt_py_float": lambda d: d[d.g < 0.1],
    "f32_gt_py_float": lambda d: d[d.g > 0.1],
    "f32_ge_py_float_flipped": lambda d: d[0.1 <= d.g],
    "f32_isin_py_float": lambda d: d[d.g.isin([0.1, 0.2])],
    "f32_eq_np_float64": lambda d: d[d.g == np.float64(0.1)],
    "f32_eq_np_float32": lambda d: d[d.g == np.float32(0.1)],
    "f32_eq_big_py_int": lambda d: d[d.g == 16777217],
    "f32_between": lambda d: d[d.g.between(0.1, 0.3)],
    "f32_gt_overflowing_float": lambda d: d[d.g < 1e39],
    "f32_vs_f64_column": lambda d: d[d.g < d.f],
    "f32_eq_inf": lambda d: d[d.g == np.inf],
    "f64_ne_nan": lambda d: d[d.f != np.nan],
    "f64_gt_neg_inf": lambda d: d[d.f > -np.inf],
    # 7. dates
    "date_eq_date": lambda d: d[d.d == D0],
    "date_ne_date": lambda d: d[d.d != D0],
    "date_gt_date": lambda d: d[d.d > D0],
    "date_isin_date": lambda d: d[d.d.isin([D0])],
    "date_eq_timestamp": lambda d: d[d.d == T0],
    "date_gt_timestamp": lambda d: d[d.d > T0 + pd.Timedelta("10h")],
    "date_lt_timestamp_flipped": lambda d: d[T0 + pd.Timedelta("1h") > d.d],
    "date_ge_string": lambda d: d[d.d >= "2013-07-01"],
    "date_eq_datetime": lambda d: d[d.d == datetime.datetime(2013, 7, 1)],
    "date_lt_np_datetime64": lambda d: d[d.d < np.datetime64("2013-07-02")],
    "date_eq_nat": lambda d: d[d.d != pd.NaT],
    "date_lt_date_column": lambda d: d[d.d < d.d2],
    "date_ne_date_column": lambda d: d[d.d != d.d2],
    "date_eq_date_column": lambda d: d[d.d2 == d.d],
    "date_ge_date_column": lambda d: d[d.d >= d.d2],
    "ts_le_timestamp": lambda d: d[d.ts <= T0],
    "ts_gt_date": lambda d: d[d.ts > D0],
    "ts_between": lambda d: d[d.ts.between(T0, T0 + pd.Timedelta("1D"))],
    "tsz_ge_tz_timestamp": lambda d: d[d.tsz >= pd.Timestamp("2013-07-01 02:00", tz="UTC")],
    "tsz_lt_naive_timestamp": lambda d: d[d.tsz < T0],
    "ts_eq_string_not_a_date": lambda d: d[d.ts == "x"],
    "ts_ne_string_not_a_date": lambda d: d[d.ts != "x"],
    "ts_lt_string_not_a_date_raises": lambda d: d[d.ts < "x"],
    "ts_eq_string_nat": lambda d: d[d.ts != "NaT"],
    "ts_eq_tz_string": lambda d: d[d.ts == "2013-07-01 00:00Z"],
    "ts_lt_tz_string_raises": lambda d: d[d.ts < "2013-07-01 00:00Z"],
    "tsz_le_naive_string": lambda d: d[d.tsz <= "2013-07-01 02:00"],
    "tsz_lt_utc_string": lambda d: d[d.tsz < "2013-07-01 00:00Z"],
    "date_eq_string_not_a_date": lambda d: d[d.d == "soon"],
    # 10. ints against floats, beyond 2**53 and 2**63
    "int_gt_float_column": lambda d: d[d.i > d.f],
    "int_gt_py_float": lambda d: d[d.i > 1.5],
    "int_eq_float_2_53": lambda d: d[d.i == float(BIG)],
    "int_eq_int_2_53": lambda d: d[d.i == BIG],
    "int_gt_float32_column": lambda d: d[d.i > d.g],
    "int_lt_beyond_int64": lambda d: d[d.i < 2**64],
    "int_eq_beyond_int64": lambda d: d[d.i == -(2**70)],
    "int_nulls_eq_int": lambda d: d[d.inull == BIG],
    "int_nulls_gt_float": lambda d: d[d.inull > 1.5],
    "int_times_float": lambda d: d[d.i * 0.5 > 1.0],
    "int_times_int": lambda d: d[d.i * 2 > 10],
    "int_isin_float": lambda d: d[d.i.isin([float(BIG), 1.0])],
    "uint64_gt_int_column": lambda d: d[d.u > d.i],
    "uint64_gt_big": lambda d: d[d.u > 2**63],
    "uint64_ge_negative": lambda d: d[d.u >= -1],
    "uint64_isin": lambda d: d[d.u.isin([2**64 - 1, 5])],
    # 11. string methods on dictionary (category) and plain string columns
    "cat_startswith": lambda d: d[d.cat.str.startswith("l")],
    "cat_endswith": lambda d: d[d.cat.str.endswith("i")],
    "cat_contains": lambda d: d[d.cat.str.contains("i")],
    "cat_contains_regex": lambda d: d[d.cat.str.contains("^m|b$")],
    "cat_contains_nocase": lambda d: d[d.cat.str.contains("L", case=False)],
    "cat_eq": lambda d: d[d.cat == "lo"],
    "cat_ne": lambda d: d[d.cat != "lo"],
    "cat_isin": lambda d: d[d.cat.isin(["lo", "b"])],
    "cat_gt_raises": lambda d: d[d.cat > "b"],
    "str_startswith": lambda d: d[d.s.str.startswith("a")],
    "str_contains_literal_dot": lambda d: d[d.s.str.contains(".", regex=False)],
    "str_contains_regex_dot": lambda d: d[d.s.str.contains(".")],
    "str_lt": lambda d: d[d.s < "b"],
    "str_ne": lambda d: d[d.s != "ab"],
    "str_eq_int": lambda d: d[d.s == 5],
    "str_gt_int_raises": lambda d: d[d.s > 5],
    "str_vs_category": lambda d: d[d.s == d.cat],
    # 12. bool columns as masks, with and without nulls
    "bool_and_cmp": lambda d: d[d.flag & (d.f > 1)],
    "cmp_and_bool": lambda d: d[(d.f > 1) & d.flag],
    "bool_or_cmp": lambda d: d[d.flag | (d.i > 40)],
    "not_bool_or_str": lambda d: d[~d.flag | (d.s == "ab")],
    "bool_then_filter": lambda d: (lambda e: e[e.f > 0])(d[d.flag]),
    "bool_then_bool": lambda d: (lambda e: e[~e.flag])(d[d.flag]),
    "bool_eq_true": lambda d: d[d.flag == True],  # noqa: E712 - element-wise
    "bool_nulls_mask_raises": lambda d: d[d.bn],
    "bool_nulls_and": lambda d: d[d.bn & (d.f > 0)],
    "cmp_and_bool_nulls": lambda d: d[(d.f > 0) & d.bn],
    "bool_nulls_or": lambda d: d[d.bn | (d.f > 0)],
    "bool_nulls_invert_raises": lambda d: d[~d.bn],
    "bool_nulls_eq_true": lambda d: d[d.bn == True],  # noqa: E712 - element-wise
    "bool_nulls_ne_true": lambda d: d[d.bn != True],  # noqa: E712 - element-wise
    "bool_nulls_isna": lambda d: d[d.bn.isna()],
    "bool_and_bool_nulls": lambda d: d[d.flag & d.bn],
    # mixed
    "isna_or_string": lambda d: d[d.d.isna() | d.s.str.startswith("a")],
    "string_and_number": lambda d: d[(d.s == "ab") & (d.g == 0.1)],
    "or_of_string_and_number": lambda d: d[(d.s == "b") | (d.i == float(BIG))],
    "neg_int": lambda d: d[-d.i > 0],
    "float_arith_inf_minus_inf": lambda d: d[d.f - d.f == 0],
    "float_times_float32": lambda d: d[d.f * 2.0 > d.g],
    "int_plus_wraps": lambda d: d[d.i + 1 < 0],
    "int_div": lambda d: d[d.i / 3 > 1.0],
    "int_floordiv_mod": lambda d: d[(d.i // 7 > 1) | (d.i % 5 == 1)],
    "float_pow": lambda d: d[d.f**2 > 4.0],
    # terms in the reader's order: dictionary terms, whole-batch terms, the row-wise terms
    # over decimals and strings on the rows kept so far
    "category_then_decimal": lambda d: d[d.cat.isin(["lo", "b"]) & d.dec.between(-5, 5)],
    "category_then_decimal_or_string": lambda d: d[(d.cat == "hi") & ((d.dec > 0) | (d.s == "ab"))],
    "category_then_int_nulls_or_decimal": lambda d: d[(d.cat == "lo") & ((d.inull == BIG) | (d.dec < -9))],
    "category_dates_decimal_string": lambda d: d[
        d.cat.str.startswith("l") & (d.d < d.d2) & (d.dec >= 0) & d.s.str.contains("b")
    ],
    "category_keeps_none_then_decimal": lambda d: d[(d.cat == "none such") & (d.dec > 0)],
    "decimal_then_string_most_kept": lambda d: d[(d.dec > -9.9) & (d.s != "x")],
}


def _rows(q, frame):
    """(ids, None) or (None, exception type name)."""
    try:
        out = q(frame)
        ids = out["id"].compute() if isinstance(out, hf.Frame) else out["id"]
        return [int(v) for v in ids], None
    except Exception as exc:  # noqa: BLE001 - compared between the three evaluations
        return None, type(exc).__name__


def _unpushed(df):
    """The same frame with every column re-assigned: filters run in pandas, no pruning."""
    return df.assign(**{c: df[c] for c in df.columns})


@pytest.mark.parametrize("name", list(QUERIES))
def test_pushed_unpushed_and_pandas_agree(nasty, name):
    df, ref = nasty
    q = QUERIES[name]
    want, want_err = _rows(q, ref)
    pushed, pushed_err = _rows(q, df)
    plain, plain_err = _rows(q, _unpushed(df))
    if want_err is not None:
        assert pushed_err is not None and plain_err is not None, (
            f"{name}: pandas raises {want_err}; hpcframe gave {pushed} pushed, {plain} unpushed"
        )
        return
    assert pushed_err is None, f"{name}: pandas works, hpcframe raised {pushed_err} (pushed)"
    assert plain_err is None, f"{name}: pandas works, hpcframe raised {plain_err} (unpushed)"
    assert pushed == want, f"{name}: pushed {pushed} != pandas {want}"
    assert plain == want, f"{name}: unpushed {plain} != pandas {want}"


def test_the_awkward_filters_are_pushed(nasty):
    """The filters above run while reading (as Arrow or pandas on the predicate columns)."""
    df, _ = nasty
    for name in (
        "f32_eq_py_float",
        "date_eq_date",
        "int_gt_float_column",
        "cat_startswith",
        "bool_and_cmp",
        "isin_nan_float",
    ):
        text = QUERIES[name](df).explain()
        assert "filter in Arrow while reading: -" not in text, (name, text)
        assert "filter in pandas:" not in text or "filter in pandas: -" in text, (name, text)


def test_bool_mask_with_nulls_error_names_the_filter(nasty):
    df, _ = nasty
    with pytest.raises(Exception) as info:
        df[df.bn].compute()
    assert "bn" in str(info.value) and "missing" in str(info.value)


def test_a_filter_the_column_types_refuse_raises_even_if_no_block_is_read():
    """pandas raises TypeError for ``datetime64 <= datetime.date`` whatever the data; so does
    hpcframe when the filter is written, also where no block would be evaluated (head(0), every
    block pruned, an empty dataset)."""
    pdf = pd.DataFrame({"day": pd.to_datetime(["2020-01-01", "2020-01-02"]), "x": [1, 2]})
    df = hf.from_pandas(pdf)
    with pytest.raises(TypeError):
        pdf[pdf.day <= datetime.date(2020, 1, 1)]
    with pytest.raises(TypeError):
        df[df.day <= datetime.date(2020, 1, 1)].head(0).compute()
    with pytest.raises(TypeError):
        df[(df.x > 5) & (df.day <= datetime.date(2020, 1, 1))]
    # != is defined for any operand, as in pandas
    got = df[df.day != datetime.date(2020, 1, 1)].head(0).compute()
    assert list(got.columns) == ["day", "x"] and len(got) == 0


def test_a_mask_of_numbers_is_refused_with_a_hint():
    """pandas reads a float Series key as column labels (KeyError); hpcframe refuses it instead
    of filtering by truth value, and says how to write the comparison."""
    pdf = pd.DataFrame({"f": [0.0, 1.5, np.nan], "b": [True, False, True]})
    df = hf.from_pandas(pdf)
    with pytest.raises(KeyError):
        pdf[pdf.f]
    with pytest.raises(TypeError, match=r"not booleans.*df\[df.x != 0\]"):
        df[df.f]
    assert len(df[df.b].compute()) == 2  # bool masks are fine


NULLABLE_FILTERS = {
    "ne": lambda d: d[d.v != 5],
    "not_eq": lambda d: d[~(d.v == 1)],
    "not_between": lambda d: d[~d.v.between(1, 1)],
    "lt_or_gt": lambda d: d[(d.v < 2) | (d.v > 4)],
    "not_isin": lambda d: d[~d.v.isin([1])],
    "notna_and_ne": lambda d: d[d.v.notna() & (d.v != 1)],
}


@pytest.mark.parametrize("dtype", ["Float64", "Int64", "UInt8", "boolean"])
@pytest.mark.parametrize("name", list(NULLABLE_FILTERS))
def test_filters_on_nullable_extension_columns_drop_missing_values_as_pandas(dtype, name):
    """Regression (randomized expression runs, session 38): on a ``from_pandas`` column of a
    nullable dtype, ``!=``, ``~(==)`` and ``~between`` pushed down kept the ``<NA>`` rows (the
    Arrow predicate coalesced nulls as NaN, for which ``!=`` is True, and ``~`` inverted the
    dropped rows); pandas answers ``<NA>``, which a mask drops. Pushed, unpushed and pandas
    agree."""
    values = [True, None, False, True] if dtype == "boolean" else [1, None, 5, 3]
    pdf = pd.DataFrame({"v": pd.array(values, dtype=dtype), "id": [0, 1, 2, 3]})
    df = hf.from_pandas(pdf, npartitions=2)
    q = NULLABLE_FILTERS[name]
    want, want_err = _rows(q, pdf)
    pushed, pushed_err = _rows(q, df)
    plain, plain_err = _rows(q, _unpushed(df))
    assert (pushed_err, plain_err) == (want_err, want_err), (pushed_err, plain_err, want_err)
    assert pushed == want and plain == want, (pushed, plain, want)


NUMPY_LITERALS = {
    "datetime64_on_the_left": lambda d: d[np.datetime64("2013-07-02") > d.ts],
    "datetime64_ns_on_the_left": lambda d: d[np.datetime64("2013-07-02T00:00", "ns") > d.ts],
    "uint64_on_the_left": lambda d: d[np.uint64(2**63 + 5) == d.u],
    "float64_on_the_left": lambda d: d[np.float64(1.5) < d.x],
    "longdouble_eq": lambda d: d[d.x == np.longdouble("0.1")],
    "longdouble_ne": lambda d: d[d.x != np.longdouble("0.1")],
    "longdouble_exact": lambda d: d[d.x == np.longdouble(0.5)],
}


@pytest.mark.parametrize("name", list(NUMPY_LITERALS))
def test_numpy_scalars_on_either_side_and_of_any_width(shared_dir, name):
    """Regression (randomized expression runs, session 38): a NumPy scalar on the left of a
    comparison reached hpcframe converted by NumPy (``np.datetime64`` as a ``datetime.date``
    or an int: TypeError; ``np.uint64`` above 2**63: OverflowError); a ``np.longdouble``
    literal was pushed down as the nearest float64 (``x == np.longdouble("0.1")`` matched
    0.1). Pushed, unpushed and pandas agree."""
    pdf = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2013-07-01", "2013-07-03", "2013-07-02"]),
            "u": np.array([1, 2**63 + 5, 3], dtype=np.uint64),
            "x": [0.1, 0.5, 2.0],
            "id": [0, 1, 2],
        }
    )
    q = NUMPY_LITERALS[name]
    want, want_err = _rows(q, pdf)
    for df in (hf.from_pandas(pdf, npartitions=2), _parquet(shared_dir, name, pdf)):
        pushed, pushed_err = _rows(q, df)
        plain, plain_err = _rows(q, _unpushed(df))
        assert (pushed_err, plain_err) == (want_err, want_err), (pushed_err, plain_err, want_err)
        assert pushed == want and plain == want, (pushed, plain, want)


def _parquet(shared_dir, name, pdf):
    """``pdf`` as a Parquet file that every rank reads."""
    import pyarrow.parquet as pq

    from tests.helpers import mpi

    path = os.path.join(shared_dir, f"numpy-literals-{name}.parquet")
    if mpi.rank() == 0:
        pq.write_table(pa.Table.from_pandas(pdf, preserve_index=False), path)
    mpi.barrier()
    return hf.read_parquet(path)
