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
    m = len(values)
    if m < 2:
        return np.arange(m, dtype=np.int64)
    key, missing = _order_key(values, ascending)
    if missing is None:
        return _stable(key).astype(np.int64, copy=False)
    rows = np.flatnonzero(~missing)
    order = rows[_stable(key[rows])]
    nans = np.flatnonzero(missing)
    order = np.concatenate([order, nans] if na_last else [nans, order])
    return order.astype(np.int64, copy=False)


#: :func:`runs_argsort` takes a column that descends (against its order) at most once in
#: this many rows: a few sorted runs, which NumPy's stable sort (a merge sort that finds
#: runs) merges in a fraction of a quicksort's time; on anything else a quicksort is faster
RUNS_DESCENT_RATIO = 64


def runs_argsort(values, ascending: bool, na_last: bool, then: np.ndarray) -> np.ndarray | None:
    """The stable order of the rows by ``values`` and then by ``then`` (integers,
    ascending) — ``sort_values([values, then], kind="stable")`` — when ``values`` is a few
    sorted runs (rows stacked from pieces that were each in this order, as a shuffle
    receives them) and rows that tie on ``values`` already come in ``then``'s order (the
    pieces' positions increase from one to the next): then NumPy's stable merge sort of
    ``values`` alone is that order. ``None`` when ``values`` is not such a NumPy column
    (:data:`RUNS_DESCENT_RATIO`) or some tied rows are out of ``then``'s order (checked on
    the result; the caller sorts by both columns instead)."""
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in KINDS:
        return None
    if len(values) < 2:
        return None
    # adjacent pairs at ~4096 places first: most columns are no runs, told at once
    step = max(1, (len(values) - 1) // 4096)
    at = np.arange(0, len(values) - 1, step)
    pairs = values[at + 1] < values[at] if ascending else values[at + 1] > values[at]
    if RUNS_DESCENT_RATIO * int(np.count_nonzero(pairs)) > 2 * len(at):
        return None
    key, missing = _order_key(values, ascending)
    rows = None if missing is None else np.flatnonzero(~missing)
    valued = key if rows is None else key[rows]
    if RUNS_DESCENT_RATIO * int(np.count_nonzero(valued[1:] < valued[:-1])) > len(valued):
        return None
    order = np.argsort(valued, kind="stable")
    ranked = valued[order]
    if rows is not None:
        order = rows[order]
    following = then[order]
    if (np.equal(ranked[1:], ranked[:-1]) & (following[1:] < following[:-1])).any():
        return None
    if missing is not None:  # missing values tie: in ``then``'s order already, or no
        nans = np.flatnonzero(missing)
        if (then[nans][1:] < then[nans][:-1]).any():
            return None
        order = np.concatenate([order, nans] if na_last else [nans, order])
    return order.astype(np.int64, copy=False)


def _order_key(values: np.ndarray, ascending: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(key, missing)``: numbers whose ascending order is the order of ``values`` (of a
    kind in :data:`KINDS`) — descending is ``-x`` for floats (``-0.0`` still ties ``0.0``)
    and ``~x`` for the rest (an exact reversal, no overflow at the ends of the range); times
    as int64 ticks — and the mask of the missing values (NaN, NaT), ``None`` without any.
    The key is meaningless where a value is missing."""
    kind = values.dtype.kind
    missing = None
    if kind == "f":
        isnan = np.isnan(values)
        if isnan.any():
            missing = isnan
        return (values if ascending else -values), missing
    if kind in "mM":
        key = values.view(np.int64)
        isnat = key == _NAT
        if isnat.any():
            missing = isnat
    else:
        key = values.view(np.uint8) if kind == "b" else values
    return (key if ascending else ~key), missing


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


#: the largest ``n`` :func:`group_top_rows` takes (it makes ``n`` passes over the rows)
TOP_ROWS_MAX_N = 8


def group_top_rows(values, ids: np.ndarray, groups: int, n: int, ascending: bool) -> np.ndarray | None:
    """A mask of the rows that may be among the first ``n`` of their group when the rows
    are stably sorted by ``values`` first (any further sort keys and the row order break
    ties): every row but those with at least ``n`` rows of their group *strictly* ahead of
    them in the order of ``values`` — such a row is behind those ``n`` whatever decides the
    ties, so it is never in its group's first ``n``. Missing values (NaN, NaT), wherever
    they sort, and every row of a group with fewer than ``n`` valued rows are kept. Each
    kept row has the same rows of its group ahead of it as in the whole table, so its
    rank in the group (``cumcount``) is the same among the kept rows.

    ``ids``: the group number of every row (``0 .. groups - 1``). ``None`` where this does
    not apply: ``values`` not a NumPy array of numbers or times, ``n`` outside ``1 ..
    TOP_ROWS_MAX_N``.

    The threshold of each group — its ``n``-th best distinct value counted with ties — is
    found in at most ``n`` passes: the best value below the last threshold, and how many
    rows have it."""
    if not isinstance(values, np.ndarray) or values.ndim != 1 or not 1 <= n <= TOP_ROWS_MAX_N:
        return None
    if values.dtype.kind not in "fiuMm":
        return None
    key, missing = _order_key(values, ascending)  # smaller is better
    unset = np.inf if key.dtype.kind == "f" else np.iinfo(key.dtype).max
    valued = np.flatnonzero(~missing) if missing is not None else None
    cand_ids = ids if valued is None else ids[valued]
    cand_key = key if valued is None else key[valued]
    threshold = np.full(groups, unset, dtype=key.dtype)
    ahead = np.zeros(groups, dtype=np.int64)  # rows at or above the threshold
    done = np.zeros(groups, dtype=bool)
    for _ in range(n):
        best = np.full(groups, unset, dtype=key.dtype)
        np.minimum.at(best, cand_ids, cand_key)
        tied = cand_key == best[cand_ids]
        ahead += np.bincount(cand_ids[tied], minlength=groups)
        threshold = np.where(done, threshold, best)
        done |= ahead >= n
        below = ~tied & ~done[cand_ids]  # the next pass: values behind the best, open groups
        if not below.any():
            break
        cand_ids, cand_key = cand_ids[below], cand_key[below]
    keep = ~done[ids] | (key <= threshold[ids])
    if missing is not None:
        keep |= missing
    return keep
