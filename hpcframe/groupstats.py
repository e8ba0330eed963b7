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


def fast_corr_dtype(dtype) -> bool:
    """Whether a column of ``dtype`` converts to float64 the way ``Series.corr`` converts
    it (``to_numpy(dtype=float, na_value=nan)``) for :func:`corr_per_group`: NumPy bools,
    integers and floats, and pandas' nullable ones."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biuf"
    return isinstance(dtype, pd.core.arrays.masked.BaseMaskedDtype) and dtype.kind in "biuf"


def _segment_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``values[starts[i]:starts[i + 1]].sum()`` for every (non-empty) segment, bit for bit:
    NumPy's ``sum`` starts from its identity, ``0.0``, and adds the pairwise sum of all the
    values, while ``np.add.reduceat`` starts from a segment's first value and adds the pairwise
    sum of the rest — so each segment is given a leading ``0.0`` (then ``reduceat`` runs
    NumPy's pairwise summation over the same values as ``sum``; checked in
    tests/unit/test_groupstats.py against per-slice sums with segments of up to 30,000 values)."""
    padded_starts = starts + np.arange(len(starts))
    padded = np.zeros(len(values) + len(starts), dtype=values.dtype)
    keep = np.ones(len(padded), dtype=bool)
    keep[padded_starts] = False
    padded[keep] = values
    return np.add.reduceat(padded, padded_starts)


def corr_per_group(g, x: str, y: str) -> pd.Series:
    """``g.apply(lambda d: d[x].corr(d[y]))`` for a pandas DataFrame group-by ``g`` whose
    selection holds the numeric columns ``x`` and ``y`` (see :func:`fast_corr_dtype`): one
    float64 value per group, indexed and ordered as pandas' group index, bit-identical.

    pandas' steps (``pandas.core.nanops.nancorr``, Pearson, ``min_periods=None``): pairs with
    a NaN dropped; fewer than two pairs: NaN; each column centered on its mean and divided by
    its largest absolute value (NaN if that is 0); the dot products divided by ``n - 1``
    (NaN if a column's is 0) and clipped to [-1, 1]. They run for all groups at once, on the
    rows put in group order: the element-wise steps over whole arrays, the means through
    :func:`_segment_sums` (NumPy's own summation of each group's values), the largest
    values through ``np.maximum.reduceat`` (exact); only the three dot products (BLAS, whose
    order of additions is its own) run per group, on each group's contiguous slice."""
    frame = g.obj
    a = frame[x].to_numpy(dtype="float64", na_value=np.nan)
    b = frame[y].to_numpy(dtype="float64", na_value=np.nan)
    codes = g.ngroup()
    index = g.size().index
    n = len(index)
    out = np.full(n, np.nan, dtype=np.float64)
    # the pairs without a NaN (pandas drops the others) of the groups with at least two of
    # them (the others are NaN), each group's rows in the frame's order
    keep = ~(np.isnan(a) | np.isnan(b))
    if codes.dtype.kind == "f":  # NaN: a dropped key
        codes = codes.to_numpy()
        keep &= ~np.isnan(codes)
    codes = codes.to_numpy(dtype=np.int64) if isinstance(codes, pd.Series) else codes
    if not keep.all():
        codes, a, b = codes[keep], a[keep], b[keep]
    codes = codes.astype(np.int64, copy=False)  # float64 when a key may be missing
    counts = np.bincount(codes, minlength=n)
    live = counts >= 2
    if not live.any():
        return pd.Series(out, index=index, name=x)
    if not live.all():
        used = live[codes]
        codes, a, b = (np.cumsum(live) - 1)[codes[used]], a[used], b[used]  # among the live
    size = counts[live]
    small = len(size) < 2**16  # NumPy's stable sort of uint16 is a radix sort
    order = np.argsort(codes.astype(np.uint16) if small else codes, kind="stable")
    a, b = a[order], b[order]
    del codes, order
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    fact = (size - 1).astype(np.float64)
    with np.errstate(all="ignore"):  # inf - inf in a group: NaN, as pandas (which warns)
        # in place: the same operations on the same values as pandas' new arrays
        np.subtract(a, np.repeat(_segment_sums(a, starts) / size, size), out=a)
        np.subtract(b, np.repeat(_segment_sums(b, starts) / size, size), out=b)
        a_scale = np.maximum.reduceat(np.abs(a), starts)
        b_scale = np.maximum.reduceat(np.abs(b), starts)
        np.divide(a, np.repeat(a_scale, size), out=a)
        np.divide(b, np.repeat(b_scale, size), out=b)
        scaled = np.flatnonzero((a_scale != 0) & (b_scale != 0))  # else NaN
        dots = np.full((3, len(size)), np.nan)
        for j, s, e in zip(scaled.tolist(), starts[scaled].tolist(), (starts + size)[scaled].tolist()):
            sa, sb = a[s:e], b[s:e]
            dots[0, j], dots[1, j], dots[2, j] = np.dot(sa, sa), np.dot(sa, sb), np.dot(sb, sb)
        divisor_a = np.sqrt(dots[0] / fact)
        result = dots[1] / fact / divisor_a
        divisor_b = np.sqrt(dots[2] / fact)
        result = np.where((divisor_a == 0) | (divisor_b == 0), np.nan, result / divisor_b)
        out[live] = np.clip(result, -1.0, 1.0)
    return pd.Series(out, index=index, name=x)
