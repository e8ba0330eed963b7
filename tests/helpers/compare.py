"""hpcframe results compared with the pandas reference: the tolerances of the suite, dtype
normalisation where the spec leaves the dtype open, and bit-identity fingerprints."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.helpers.datasets import INT_NULL_COLUMNS

RTOL = 1e-12
ATOL = 1e-12
# var/std of 1e9 + N(0, 1): a stable algorithm (two-pass, shifted, Welford/Chan merges) is
# within ~1e-7 of the exact variance on this data (pandas' own groupby var is ~1e-7 off); the
# naive sum-of-squares formula is off by orders of magnitude. 1e-6 tells them apart without
# demanding one particular algorithm.
ILL_RTOL = 1e-6


def materialize(obj):
    """The pandas object / scalar of a lazy result (tolerates an already-eager one)."""
    if isinstance(obj, (pd.DataFrame, pd.Series, pd.Index)):
        return obj
    compute = getattr(obj, "compute", None)
    return compute() if callable(compute) else obj


def _normalize_index(idx: pd.Index, hive) -> pd.Index:
    if isinstance(idx, pd.MultiIndex):
        levels = [idx.get_level_values(i) for i in range(idx.nlevels)]
        new = [_normalize_index(lv, hive) for lv in levels]
        if all(a is b for a, b in zip(levels, new)):
            return idx
        return pd.MultiIndex.from_arrays(new, names=idx.names)
    if isinstance(idx.dtype, pd.CategoricalDtype):
        target = _values_dtype(idx.dtype)
        idx = pd.Index(np.asarray(idx.astype(target)), dtype=target, name=idx.name)
    if idx.name in hive:
        idx = idx.astype("int64")
    return idx


def _values_dtype(cat: pd.CategoricalDtype):
    """The dtype of a categorical's values; string categories (also object, e.g. when there are
    no categories at all) -> ``str``."""
    dt = cat.categories.dtype
    return "str" if pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt) else dt


def _normalize_series(s: pd.Series, hive, loose_int_nulls: bool) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(_values_dtype(s.dtype))
    if s.name in hive:
        s = s.astype("int64")
    if loose_int_nulls and s.name in INT_NULL_COLUMNS and s.dtype != object and s.dtype != "float64":
        s = s.astype("float64")  # nullable Int64 / int64 -> float64, NA -> NaN
    return s


def normalize(obj, hive=(), loose_int_nulls=True):
    """Make dtypes that the spec leaves open comparable.

    - categorical columns / index levels -> their values (the category *order* and unused
      categories are not compared; callers check the dtype *is* categorical separately),
    - hive partition columns -> int64 (int32, int64 and category of ints are all fine),
    - int columns with nulls -> float64 (pandas gives float64; Int64 is fine too).
    """
    hive = set(hive)
    if isinstance(obj, pd.DataFrame):
        out = obj
        for i in range(obj.shape[1]):
            col = obj.iloc[:, i]
            new = _normalize_series(col, hive, loose_int_nulls)
            if new is not col:
                if out is obj:
                    out = obj.copy()
                out.isetitem(i, new)
        index = _normalize_index(obj.index, hive)
        if index is not obj.index:
            out = out.set_axis(index)
        return out
    if isinstance(obj, pd.Series):
        s = _normalize_series(obj, hive, loose_int_nulls)
        index = _normalize_index(obj.index, hive)
        return s if index is obj.index else s.set_axis(index)
    return obj


def _categorical_columns(obj):
    if isinstance(obj, pd.Series):
        return [obj.name] if isinstance(obj.dtype, pd.CategoricalDtype) else []
    return [c for c in obj.columns if isinstance(obj[c].dtype, pd.CategoricalDtype)]


def assert_same(
    result,
    expected,
    *,
    hive=(),
    exact=False,
    sort_index=False,
    reset_index=False,
    check_dtype=True,
    check_index_type="equiv",
    column_order=True,
    msg="",
):
    """Compare an hpcframe result (lazy or computed) with the pandas reference.

    exact: compare floats exactly (counts/min/max/first/last); otherwise rtol=1e-12.
    sort_index: sort both by index first (when the row order is not part of the spec).
    reset_index: replace the reference's index by 0..n-1 (compute() returns a RangeIndex).
    column_order: when False only the set of columns must match (order then taken from pandas).
    """
    result = materialize(result)
    where = f" [{msg}]" if msg else ""
    if isinstance(expected, (pd.DataFrame, pd.Series)):
        assert isinstance(result, type(expected)), (
            f"expected a {type(expected).__name__}, got {type(result).__name__}{where}"
        )
        for c in _categorical_columns(expected):
            got = result if isinstance(result, pd.Series) else result[c]
            assert isinstance(got.dtype, pd.CategoricalDtype), f"column {c!r} should be categorical{where}"
        if isinstance(expected, pd.DataFrame):
            if column_order:
                assert list(result.columns) == list(expected.columns), f"columns differ{where}"
            else:
                assert sorted(map(str, result.columns)) == sorted(map(str, expected.columns)), (
                    f"columns differ{where}"
                )
                result = result[expected.columns]
        if reset_index:
            expected = expected.reset_index(drop=True)
        result, expected = normalize(result, hive), normalize(expected, hive)
        if sort_index:
            result, expected = result.sort_index(), expected.sort_index()
        kw = dict(check_dtype=check_dtype, check_index_type=check_index_type, obj=f"result{where}")
        if exact:
            kw["check_exact"] = True
        else:
            kw.update(check_exact=False, rtol=RTOL, atol=ATOL)
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(result, expected, **kw)
        else:
            pd.testing.assert_series_equal(result, expected, **kw)
    else:
        assert_scalar(result, expected, exact=exact, msg=msg)


def _is_na(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def assert_scalar(result, expected, *, exact=False, msg=""):
    where = f" [{msg}]" if msg else ""
    result = materialize(result)
    assert np.ndim(result) == 0, f"expected a scalar, got {type(result).__name__}{where}"
    if _is_na(expected):
        assert _is_na(result), f"expected NA, got {result!r}{where}"
        return
    assert not _is_na(result), f"expected {expected!r}, got NA{where}"
    if isinstance(expected, (float, np.floating)):
        if exact:
            assert float(result) == float(expected), f"{result!r} != {expected!r}{where}"
        else:
            assert float(result) == pytest.approx(float(expected), rel=RTOL, abs=ATOL), (
                f"{result!r} != {expected!r}{where}"
            )
    else:
        assert result == expected, f"{result!r} != {expected!r}{where}"
        if isinstance(expected, (int, np.integer)) and not isinstance(expected, (bool, np.bool_)):
            assert isinstance(result, (int, np.integer)) or float(result).is_integer(), f"{result!r}{where}"


def canon_value_counts(s: pd.Series) -> pd.Series:
    """value_counts with ties ordered by key (pandas leaves the order of ties unspecified)."""
    assert s.is_monotonic_decreasing, "value_counts must be sorted by count, descending"
    frame = s.rename("__count").reset_index()
    key = frame.columns[0]
    frame = frame.sort_values(["__count", key], ascending=[False, True], na_position="last", kind="mergesort")
    out = frame.set_index(key)["__count"].rename(s.name)
    out.index.name = s.index.name
    return out


def float_fingerprint(value) -> list[str]:
    """Exact (hex) representation of the floats in a result, for bit-identity checks."""
    value = materialize(value)
    if isinstance(value, pd.DataFrame):
        arr = value.select_dtypes("number").to_numpy(dtype="float64").ravel()
    elif isinstance(value, pd.Series):
        arr = value.to_numpy(dtype="float64")
    else:
        arr = np.array([float(value)])
    return ["nan" if math.isnan(v) else float(v).hex() for v in arr]


def exact(got, exp, msg=""):
    """Rows, labels, values (every bit) and dtypes exactly as pandas."""
    import pandas as pd

    got = materialize(got)
    if isinstance(exp, pd.DataFrame):
        pd.testing.assert_frame_equal(got, exp, check_exact=True, obj=msg or "DataFrame")
    else:
        pd.testing.assert_series_equal(got, exp, check_exact=True, obj=msg or "Series")


def close(got, expected, msg: str = "", *, exact: bool = False, fresh_index: bool = False):
    """``got`` (lazy or computed) equals pandas' ``expected`` frame, series or scalar: rows in
    order, labels and dtypes; floats within ``RTOL`` and ``ATOL`` (``exact``: every bit). ``fresh_index``
    compares with ``expected.reset_index(drop=True)`` (a filter or join of a frame numbers its
    rows 0..n-1). Returns the computed result."""
    got = materialize(got)
    if fresh_index:
        expected = expected.reset_index(drop=True)
    kw = dict(check_exact=True) if exact else dict(check_exact=False, rtol=RTOL, atol=ATOL)
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected, obj=msg or "DataFrame", **kw)
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(got, expected, obj=msg or "Series", **kw)
    else:
        assert got == (expected if exact else pytest.approx(expected, rel=RTOL, abs=ATOL)), msg
    return got
