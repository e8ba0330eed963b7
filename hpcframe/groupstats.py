"""Statistics of whole groups computed without a pandas object per group.

A function pandas runs per group through ``groupby().apply`` builds a DataFrame and two
Series for each group; with thousands of small groups that overhead, not the arithmetic, is
the time. The functions here take the pandas group-by of one hash partition (whole groups,
see ``frame._exact``), put its rows in group order once, and run pandas' own per-group
arithmetic on NumPy slices — the same operations on the same values in the same order, so
the results are bit-identical to pandas'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two float64 arrays, as pandas' ``Series.corr`` computes it
    (``pandas.core.nanops.nancorr`` with ``method="pearson"``, ``min_periods=None``): pairs
    with a NaN dropped, fewer than two pairs or a constant column give NaN, else the centered
    and scaled dot products, clipped to [-1, 1]."""
    valid = ~(np.isnan(a) | np.isnan(b))
    if not valid.all():
        a = a[valid]
        b = b[valid]
    if len(a) < 2:
        return np.nan
    a = a - a.mean()
    b = b - b.mean()
    a_scale = np.max(np.abs(a))
    b_scale = np.max(np.abs(b))
    if a_scale == 0 or b_scale == 0:
        return np.nan
    a = a / a_scale
    b = b / b_scale
    fact = len(a) - 1
    divisor = np.sqrt(np.dot(a, a) / fact)
    if divisor == 0:
        return np.nan
    result = np.dot(a, b) / fact / divisor
    divisor = np.sqrt(np.dot(b, b) / fact)
    if divisor == 0:
        return np.nan
    return float(np.clip(result / divisor, -1.0, 1.0))


def fast_corr_dtype(dtype) -> bool:
    """Whether a column of ``dtype`` converts to float64 the way ``Series.corr`` converts
    it (``to_numpy(dtype=float, na_value=nan)``) for :func:`corr_per_group`: NumPy bools,
    integers and floats, and pandas' nullable ones."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biuf"
    return isinstance(dtype, pd.core.arrays.masked.BaseMaskedDtype) and dtype.kind in "biuf"


def corr_per_group(g, x: str, y: str) -> pd.Series:
    """``g.apply(lambda d: d[x].corr(d[y]))`` for a pandas DataFrame group-by ``g`` whose
    selection holds the numeric columns ``x`` and ``y`` (see :func:`fast_corr_dtype`): one
    float64 value per group, indexed and ordered as pandas' group index, bit-identical."""
    frame = g.obj
    a_all = frame[x].to_numpy(dtype="float64", na_value=np.nan)
    b_all = frame[y].to_numpy(dtype="float64", na_value=np.nan)
    codes = g.ngroup().to_numpy(dtype="float64", na_value=np.nan)  # NaN: a dropped key
    index = g.size().index
    n = len(index)
    codes = np.where(np.isnan(codes), -1, codes).astype(np.int64)
    order = np.argsort(codes, kind="stable")  # each group's rows in the frame's order
    ordered = codes[order]
    bounds = np.searchsorted(ordered, np.arange(n + 1))
    a_all, b_all = a_all[order], b_all[order]
    out = np.empty(n, dtype=np.float64)
    with np.errstate(all="ignore"):  # inf - inf in a group: NaN, as pandas (which warns)
        for k in range(n):
            lo, hi = bounds[k], bounds[k + 1]
            out[k] = pearson(a_all[lo:hi], b_all[lo:hi])
    return pd.Series(out, index=index, name=x)
