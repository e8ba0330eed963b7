"""``describe()``: count, mean, std, min, exact quartiles (or the ``percentiles`` asked for)
and max, computed in one pass.

Quantiles are exact (they equal pandas' linear interpolation) because every rank sends the
distinct values of each numeric column with their counts; memory is O(distinct values).
A bool, string or categorical Series gives pandas' count/unique/top/freq instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import plan as P
from .outputs import AggOutput, Composite

_PERCENTILES = (0.25, 0.5, 0.75)
_STATS = ("count", "mean", "std", "min", "max")


def _value_counts(node, col):
    def shape(values, keys):
        return pd.Series(values[0].to_numpy(), index=keys[col].to_numpy())

    return AggOutput(
        node,
        [col],
        [("", "size")],
        shape,
        lambda m: m[col].value_counts().sort_index(),
        dropna=True,
        sort=True,
        label=f"value counts of {col}",
    )


def _moments(node, cols):
    specs = [(c, s) for c in cols for s in _STATS]

    def shape(values, keys):
        return [v.iloc[0] for v in values]

    def pandas_fn(m):
        return [getattr(m[c], s)() for c in cols for s in _STATS]

    return AggOutput(node, [], specs, shape, pandas_fn, label="describe")


def quantile_from_counts(counts: pd.Series, q: float) -> float:
    """The ``q`` quantile (linear interpolation, as numpy/pandas) of values with counts."""
    if counts is None or counts.sum() == 0:
        return np.nan
    values = counts.index.to_numpy(dtype="float64")
    cum = np.cumsum(counts.to_numpy())
    n = cum[-1]
    pos = (n - 1) * q
    # as numpy: the next value is always the following one (even when pos is whole), so
    # inf next to a finite value gives NaN (inf * 0), as pandas does
    lo = int(np.floor(pos))
    hi = min(lo + 1, int(n) - 1)
    a = values[np.searchsorted(cum, lo, side="right")]
    b = values[np.searchsorted(cum, hi, side="right")]
    t = pos - lo
    diff = b - a
    # numpy's _lerp: exact at both ends
    return float(b - diff * (1 - t)) if t >= 0.5 else float(a + diff * t)


def refine_percentiles(percentiles) -> np.ndarray:
    """The percentiles pandas' ``describe`` reports: ``None`` gives the quartiles; else the
    given ones, sorted (each in [0, 1], no duplicates: ``ValueError`` otherwise)."""
    if percentiles is None:
        return np.array(_PERCENTILES)
    values = np.asarray(list(percentiles) if not np.isscalar(percentiles) else [percentiles], dtype="float64")
    if np.isnan(values).any() or ((values < 0) | (values > 1)).any():
        raise ValueError(f"describe(percentiles={list(values)}): every percentile must be between 0 and 1")
    unique = np.unique(values)
    if len(unique) < len(values):
        raise ValueError(f"describe(percentiles={list(values)}): percentiles cannot contain duplicates")
    return unique


def _percentile_labels(percentiles) -> list[str]:
    """pandas' labels of ``percentiles`` (``25%``, ``12.3%``, ...)."""
    from pandas.io.formats.format import format_percentiles

    return list(format_percentiles(percentiles)) if len(percentiles) else []


def _stats_frame(cols, moments, counts, percentiles=_PERCENTILES):
    rows = {}
    for j, c in enumerate(cols):
        cnt, mean, std, mn, mx = moments[j * 5 : (j + 1) * 5]
        qs = [quantile_from_counts(counts[j], q) for q in percentiles]
        rows[c] = [float(cnt), mean, std, mn] + qs + [mx]
    index = ["count", "mean", "std", "min", *_percentile_labels(percentiles), "max"]
    return pd.DataFrame(rows, index=index, dtype="float64")


def describe_frame(node, percentiles=None):
    """The :class:`~hpcframe.outputs.Composite` output of ``Frame.describe()`` over ``node``
    (raises ``TypeError`` when no column can be described; ``ValueError`` for percentiles
    outside [0, 1] or repeated)."""
    pcts = refine_percentiles(percentiles)
    meta = P.visible_meta(node)  # not a join's hidden columns, nor the index
    cols = [
        c
        for c in meta.columns
        if pd.api.types.is_numeric_dtype(meta[c].dtype) and not pd.api.types.is_bool_dtype(meta[c].dtype)
    ]
    if not cols:
        counted = list(meta.columns)
        if counted and all(_is_counted(meta[c].dtype) for c in counted):
            # as pandas: without numeric columns, count/unique/top/freq of every column
            parts = [_describe_counted(node, c, c) for c in counted]
            return Composite(parts, lambda r: pd.concat(r, axis=1), "describe")
        raise TypeError(
            "describe() needs at least one numeric column, or only bool, string "
            "and categorical columns; select columns first"
        )
    parts = [_moments(node, cols)] + [_value_counts(node, c) for c in cols]
    return Composite(parts, lambda r: _stats_frame(cols, r[0], r[1:], pcts), "describe")


def _is_counted(dtype) -> bool:
    """Columns pandas describes with count/unique/top/freq (not with moments)."""
    return (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
        or dtype == np.dtype(object)
    )


def describe_series(node, col, name, percentiles=None):
    """The :class:`~hpcframe.outputs.Composite` output of ``Series.describe()`` for column
    ``col`` of ``node``, named ``name`` (raises ``TypeError`` for unsupported dtypes,
    ``ValueError`` for percentiles outside [0, 1] or repeated)."""
    pcts = refine_percentiles(percentiles)
    dtype = node.meta[col].dtype
    if _is_counted(dtype):
        return _describe_counted(node, col, name)
    if not pd.api.types.is_numeric_dtype(dtype):
        raise TypeError(
            f"describe() of column {name!r} ({dtype}) is not supported yet; "
            f"use min(), max() and value_counts()"
        )
    parts = [_moments(node, [col]), _value_counts(node, col)]

    def finish(r):
        out = _stats_frame([col], r[0], r[1:], pcts)[col]
        return out.rename(name)

    return Composite(parts, finish, f"describe {name}")


def _describe_counted(node, col, name):
    """count, unique, top (the most frequent value; ties: the first seen) and freq, as
    pandas describes bool, string and categorical columns."""

    def shape(values, keys):
        return pd.Series(values[0].to_numpy(), index=pd.Index(keys[col].to_numpy(dtype=object)))

    counts = AggOutput(
        node,
        [col],
        [("", "size")],
        shape,
        lambda m: m[col].value_counts(sort=False),
        dropna=True,
        sort=False,
        label=f"value counts of {col}",
    )

    def finish(r):
        vc = r[0]
        vc = vc.sort_values(ascending=False, kind="stable") if len(vc) else vc
        top, freq = (vc.index[0], np.int64(vc.iloc[0])) if len(vc) else (np.nan, np.nan)
        return pd.Series(
            [np.int64(vc.sum()), len(vc), top, freq],
            dtype=object,
            index=["count", "unique", "top", "freq"],
            name=name,
        )

    return Composite([counts], finish, f"describe {name}")
