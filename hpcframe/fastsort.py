"""A stable order of one NumPy column, as pandas' ``sort_values(kind="stable")`` gives it,
computed with NumPy's (unstable, vectorised) quicksort.

NumPy's stable sort of 64-bit numbers is a merge sort, several times slower than its
default sort (a SIMD quicksort). A quicksort does not keep the order of equal values, but
the order it gives is fixed afterwards: runs of equal values are re-sorted by their row
number (one more sort, of unique integers, only when some value repeats). The result is
exactly the permutation of pandas' stable sort:

- values ascending (descending: the reverse order of the values, equal ones still in row
  order, as pandas' ``nargsort`` gives them); ``-0.0`` equals ``0.0`` (a tie);
- missing values (NaN, NaT) first or last, in row order.

Only columns held as a plain NumPy array of floats, integers, booleans, datetimes or
timedeltas take this path; :func:`stable_argsort` returns ``None`` for anything else
(strings, categoricals, pandas' nullable types), which the caller sorts with pandas.
"""

from __future__ import annotations

import numpy as np

#: NumPy kinds ordered here (the rest: pandas)
KINDS = frozenset("fiubMm")
_NAT = np.iinfo(np.int64).min


def stable_argsort(values, ascending: bool = True, na_last: bool = True) -> np.ndarray | None:
    """The row numbers of ``values`` (a 1-d NumPy array) in pandas' stable sort order.

    Parameters
    ----------
    values : numpy.ndarray
        The column.
    ascending : bool
        Smallest first (``False``: largest first, ties still in row order).
    na_last : bool
        NaN/NaT after (``False``: before) every value, in row order.

    Returns
    -------
    numpy.ndarray or None
        int64 positions; ``None`` when ``values`` is not a NumPy array of a supported kind.
    """
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in KINDS:
        return None
    kind = values.dtype.kind
    m = len(values)
    if m < 2:
        return np.arange(m, dtype=np.int64)
    missing = None
    if kind == "f":
        isnan = np.isnan(values)
        if isnan.any():
            missing = isnan
        key = values if ascending else -values
    elif kind in "mM":
        key = values.view(np.int64)
        isnat = key == _NAT
        if isnat.any():
            missing = isnat
        key = key if ascending else ~key
    else:
        key = values.view(np.uint8) if kind == "b" else values
        key = key if ascending else ~key  # exact reversal of the order (no overflow)
    if missing is None:
        return _stable(key).astype(np.int64, copy=False)
    rows = np.flatnonzero(~missing)
    order = rows[_stable(key[rows])]
    nans = np.flatnonzero(missing)
    order = np.concatenate([order, nans] if na_last else [nans, order])
    return order.astype(np.int64, copy=False)


def _stable(key: np.ndarray) -> np.ndarray:
    """A stable argsort of ``key`` (no missing values): a quicksort, then runs of equal
    values put back in row order."""
    m = len(key)
    order = np.argsort(key)
    if m < 2:
        return order
    ranked = key[order]
    ties = ranked[1:] == ranked[:-1]
    if not ties.any():
        return order
    # every run of equal values gets a number; sorting the (run, row) pairs of the rows in
    # a run of two or more (unique pairs, so any sort is stable) puts each run's rows in row
    # order, in the places the run already takes
    run = np.empty(m, dtype=np.int64)
    run[0] = 0
    np.cumsum(~ties, out=run[1:])
    tied = np.zeros(m, dtype=bool)
    tied[:-1] = ties
    tied[1:] |= ties
    at = np.flatnonzero(tied)
    if m < 2**31:
        order[at] = np.sort(run[at] * np.int64(m) + order[at]) % np.int64(m)
    else:  # pragma: no cover - over 2**31 rows in one block
        order[at] = order[at][np.lexsort((order[at], run[at]))]
    return order
