"""Aggregations as chunk → combine → finalize, with named, shared intermediates.

A *partial* is a pandas DataFrame: the group-key columns plus one column per intermediate,
named ``"<column>\\x00<intermediate>"``. ``sum``, ``count`` and ``mean`` on one column share
one ``sum`` and one ``count``; ``var``/``std`` keep ``(count, mean, m2)`` and merge them with
Chan et al.'s formula, which stays exact where sum-of-squares loses every digit.

Partials are combined by concatenating them (earlier partitions first) and grouping again on
the keys; every intermediate knows how to combine its own column. Because the combine order is
fixed by the partition order (see :mod:`hpcframe.execute`), results do not depend on the
number of ranks.

Users register their own aggregation with :func:`register_aggregation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .io.types import first_rows, fixed_width_codes, fixed_width_ids, sorted_ids

SEP = "\x00"
ALL_KEY = "__hpcframe_all__"  # constant key used for whole-frame reductions
FIRST_POS = "__hpcframe_pos__"  # global row position of a group's first row (for sort=False)


@dataclass(frozen=True)
class Intermediate:
    """One partial column. ``chunk(SeriesGroupBy) -> Series`` indexed by group;
    ``combine(SeriesGroupBy over concatenated partials) -> Series``."""

    name: str
    chunk: Callable
    combine: Callable
    #: optional ``Series -> Series`` applied to the column before grouping (e.g. to float64)
    prepare: Callable | None = None


@dataclass(frozen=True)
class Aggregation:
    """``needs`` intermediates; ``finalize({name: Series}) -> Series`` gives the result column."""

    name: str
    needs: tuple[str, ...]
    finalize: Callable
    numeric_only: bool = False


# vectorised nunique partials (one pass for all groups, not a Python call per group)
# the distinct values of all groups in two flat arrays (an Arrow list column:
#    offsets + values), not a numpy array object per group: ~8 bytes per distinct value
#    instead of ~120 bytes per group, and exchanged as plain Arrow buffers
def _flat_kind(values: np.ndarray) -> bool:
    """Whether ``values`` (a numpy array) can be kept as a flat Arrow list column and read
    back unchanged: numbers, bools, naive datetimes and timedeltas."""
    dtype = values.dtype
    if dtype.kind in "iub":
        return True
    if dtype.kind == "f":
        return dtype.itemsize >= 4
    if dtype.kind in "mM":
        return np.datetime_data(dtype)[0] in ("s", "ms", "us", "ns")
    return False


def _distinct_pairs(g: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(g, v)`` pairs of numbers (no missing values), sorted by ``g`` (the
    values of a group in no promised order: ``nunique`` needs only how many values a group
    has). Equal as numpy compares them, so ``-0.0`` equals ``0.0`` as in pandas.

    Rows already in group order with small groups (a block of lineitem grouped by
    ``l_orderkey``: at most 7 rows each) are deduplicated in place by :func:`_distinct_runs`,
    without sorting. Otherwise each pair is packed into one int64,
    ``(g - min g) * span + code(v)``, and that one column is sorted (NumPy's SIMD quicksort:
    ~4x faster than ``lexsort`` of the two columns, which Q21 spent most of its group-by time
    in). ``code(v)`` is ``v - min v`` for integers, bools, datetimes and timedeltas whose
    range allows it, else ``v``'s rank among its distinct values (:func:`numpy.unique`;
    floats, wide integers). Only when even ranks overflow the packing does it fall back to
    ``lexsort``.
    """
    g = np.asarray(g, dtype=np.int64)
    if not len(g):
        return g, v[:0]
    runs = _distinct_runs(g, v)
    if runs is not None:
        return runs
    gmin = int(g.min())
    gspan = int(g.max()) - gmin + 1
    kind = v.dtype.kind
    ints = None
    if kind in "mM":
        ints = v.view(np.int64)
    elif kind == "b":
        ints = v.view(np.uint8)
    elif kind in "iu":
        ints = v
    uniques = None
    lo = 0
    if ints is not None and gspan * (int(ints.max()) - int(ints.min()) + 1) < 2**63:
        lo = int(ints.min())
        span = int(ints.max()) - lo + 1
        if ints.dtype == np.uint64:
            codes = (ints - np.uint64(lo)).astype(np.int64)
        else:  # the differences are in [0, span): exact in int64 even where they wrap
            codes = ints.astype(np.int64, copy=False) - np.int64(lo)
    else:
        uniques, codes = np.unique(v + 0.0 if kind == "f" else v, return_inverse=True)
        span = max(len(uniques), 1)
        codes = codes.reshape(-1).astype(np.int64, copy=False)
        if gspan * span >= 2**63:  # pragma: no cover - ~2**63 distinct (group, value) pairs
            return _distinct_pairs_lexsort(g, v)
    packed = (g - np.int64(gmin)) * np.int64(span) + codes
    del codes
    packed.sort()
    new = np.ones(len(packed), dtype=bool)
    new[1:] = packed[1:] != packed[:-1]
    packed = packed[new]
    del new
    groups, code = np.divmod(packed, np.int64(span))
    groups += np.int64(gmin)
    if uniques is not None:
        return groups, uniques[code]
    if v.dtype == np.uint64:
        return groups, code.astype(np.uint64) + np.uint64(lo)
    code += np.int64(lo)  # back to the values: exact in int64 (wrapping where they do)
    if kind in "mM":
        return groups, code.view(v.dtype)
    return groups, code.astype(v.dtype)


#: the longest run of one group that :func:`_distinct_runs` compares row by row
RUN_LIMIT = 16


def _distinct_runs(g: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_distinct_pairs` of rows whose groups ``g`` never decrease and whose runs have
    at most :data:`RUN_LIMIT` rows: a row is dropped when an earlier row of its run has its
    value (the run compared with itself shifted by 1, 2, ... rows: a few vectorised passes,
    no sort). The values of a group keep their first appearance. ``None`` for other rows."""
    n = len(g)
    if n < 2:
        return g, v
    step = g[1:] != g[:-1]
    if (g[1:] < g[:-1]).any():
        return None
    starts = np.flatnonzero(step)
    longest = int(np.diff(starts, prepend=-1, append=n - 1).max())
    if longest > RUN_LIMIT:
        return None
    key = v.view(np.int64) if v.dtype.kind in "mM" else v
    dup = np.zeros(n, dtype=bool)
    for s in range(1, longest):
        dup[s:] |= (g[s:] == g[:-s]) & (key[s:] == key[:-s])
    if not dup.any():
        return g, v
    keep = ~dup
    return g[keep], v[keep]


def _distinct_pairs_lexsort(g: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_distinct_pairs` by a ``lexsort`` of the two columns."""
    key = v.view(np.int64) if v.dtype.kind in "mM" else v
    order = np.lexsort((key, g))
    g, v = g[order], v[order]
    del order
    key = v.view(np.int64) if v.dtype.kind in "mM" else v
    new = np.ones(len(g), dtype=bool)
    if len(g) > 1:
        new[1:] = (g[1:] != g[:-1]) | (key[1:] != key[:-1])
    return g[new], v[new]


def _uniq_by_group(sgb, ids, values) -> pd.Series:
    """Per group of ``sgb`` (in its order), the distinct non-missing ``values`` of its rows
    (in no promised order: numbers come sorted, or in order of first appearance for rows
    already in group order): ``ids`` is each value's group
    number (``sgb.ngroup()`` numbering; NaN for rows in no group). A list column on Arrow
    (flat offsets and values) where the values allow it, else an object column of numpy
    arrays."""
    size = sgb.size()
    ids = np.asarray(ids, dtype="float64")
    keep = ~np.isnan(ids) & ~np.asarray(pd.isna(values), dtype=bool).reshape(-1)
    if isinstance(values, np.ndarray) and _flat_kind(values):
        g, v = _distinct_pairs(ids[keep].astype(np.int64), values[keep])
    else:
        pairs = pd.DataFrame({"g": ids[keep].astype(np.int64), "v": values[keep]}).drop_duplicates()
        g = pairs["g"].to_numpy()
        order = np.argsort(g, kind="stable")  # by group, first appearance within it
        g, v = g[order], pairs["v"].to_numpy()[order]
        del pairs, order
    del ids, keep
    bounds = np.searchsorted(g, np.arange(len(size) + 1))
    if _flat_kind(v):
        lists = pa.LargeListArray.from_arrays(pa.array(bounds.astype(np.int64)), pa.array(v))
        return pd.Series(pd.arrays.ArrowExtensionArray(lists), index=size.index)
    out = np.empty(len(size), dtype=object)
    for i in range(len(size)):
        out[i] = v[bounds[i] : bounds[i + 1]]
    return pd.Series(out, index=size.index, dtype=object)


def _uniq_flat(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths, values)`` of a column of nunique partials: the number of distinct values
    of each row's group and all of them, row after row."""
    if isinstance(col.dtype, pd.ArrowDtype):
        lists = pa.chunked_array(col.array._pa_array).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)
        return lengths, lists.flatten().to_numpy(zero_copy_only=False)
    arrays = [np.asarray(a) for a in col]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    values = np.concatenate(arrays) if arrays else np.array([], dtype=object)
    return lengths, values


def _uniq_chunk(sgb):
    return _uniq_by_group(sgb, sgb.ngroup().to_numpy(), sgb.obj.to_numpy())


def _uniq_combine(sgb):
    col = sgb.obj
    rows = sgb.ngroup().to_numpy()
    if isinstance(col.dtype, pd.ArrowDtype) and rows.dtype.kind in "iu" and (rows >= 0).all():
        return _uniq_combine_lists(sgb, col, rows.astype(np.int64, copy=False))
    lengths, values = _uniq_flat(col)
    ids = np.repeat(sgb.ngroup().to_numpy().astype("float64"), lengths)
    return _uniq_by_group(sgb, ids, values)


def _uniq_combine_lists(sgb, col: pd.Series, rows: np.ndarray) -> pd.Series:
    """:func:`_uniq_combine` of Arrow list partials (``rows``: each partial row's group).
    A group met in one partial row keeps that row's list as it is (the partials of
    neighbouring blocks share few groups): only the groups met in several rows have their
    values merged, and the result is one ``take`` of the lists, no per-value temporaries."""
    size = sgb.size()
    n = len(size)
    lists = col.array._pa_array  # a ChunkedArray: no copy of the concatenated partials
    counts = np.bincount(rows, minlength=n)
    first = np.full(n, len(rows), dtype=np.int64)
    np.minimum.at(first, rows, np.arange(len(rows), dtype=np.int64))
    multi = np.flatnonzero(counts > 1)  # ascending group numbers
    if not len(multi):
        result = lists.take(pa.array(first))
        return pd.Series(pd.arrays.ArrowExtensionArray(result), index=size.index)
    mine = counts[rows] > 1  # the partial rows of those groups
    part = lists.filter(pa.array(mine)).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(part), 0).to_numpy().astype(np.int64)
    g, v = _distinct_pairs(np.repeat(rows[mine], lengths), part.flatten().to_numpy(zero_copy_only=False))
    offsets = np.append(np.searchsorted(g, multi), len(g)).astype(np.int64)
    merged = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(v, type=lists.type.value_type))
    index = first
    index[multi] = len(lists) + np.arange(len(multi), dtype=np.int64)
    result = pa.chunked_array([*lists.chunks, merged], type=lists.type).take(pa.array(index))
    return pd.Series(pd.arrays.ArrowExtensionArray(result), index=size.index)


def _uniq_final(col: pd.Series, rows: np.ndarray, n: int) -> pd.Series | None:
    """The LAST combine of Arrow list partials, when every partial of each group is here (a
    group-by result's groups after the exchange): each group's number of distinct values,
    int64, not its merged list. A group met in one partial row counts that row's list (the
    values of one partial are distinct already); only groups met in several rows have
    their values sorted, so no copy of all values is made. ``rows``: each partial row's
    group number in ``[0, n)`` (:func:`group_ids`; no pandas group-by needed). ``None``
    for other partials (numpy arrays of objects): the caller combines them as usual."""
    if not isinstance(col.dtype, pd.ArrowDtype):
        return None
    lists = col.array._pa_array  # a ChunkedArray: read in place
    lengths = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [pc.fill_null(pc.list_value_length(c), 0).to_numpy().astype(np.int64) for c in lists.chunks]
    )
    out = np.zeros(n, dtype=np.int64)
    out[rows] = lengths  # right for groups met in one row; the others are set below
    several = np.bincount(rows, minlength=n) > 1
    if several.any():
        mine = several[rows]  # the partial rows of groups met in several rows
        part = lists.filter(pa.array(mine)).combine_chunks()
        values = part.flatten().to_numpy(zero_copy_only=False)
        g, _ = _distinct_pairs(np.repeat(rows[mine], lengths[mine]), values)
        multi = np.flatnonzero(several)
        out[multi] = np.bincount(g, minlength=n)[multi]
    return pd.Series(out)


def _uniq_count(col: pd.Series) -> pd.Series:
    """``nunique`` from the combined partials: the length of each group's distinct values
    (or the counts :func:`_uniq_final` made already)."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu":
        return col.astype(np.int64)
    lengths, _ = _uniq_flat(col) if isinstance(col.dtype, pd.ArrowDtype) else (col.map(len), None)
    return pd.Series(np.asarray(lengths, dtype=np.int64), index=col.index, name=col.name)


def _as_float(s: pd.Series) -> pd.Series:
    """The values a mean accumulates, as pandas does: float64 for integers and bools (no
    int64 wrap-around), the int64 ticks (in the column's unit) of datetimes and timedeltas
    (NaT -> NaN); float columns stay as they are."""
    dtype = s.dtype
    if dtype.kind == "f":
        return s
    if dtype.kind == "m":
        values = s.to_numpy().view("int64").astype("float64")
        values[s.isna().to_numpy()] = np.nan
        return pd.Series(values, index=s.index)
    if dtype.kind == "M":
        ticks = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(dtype, "tz", None) else s
        values = ticks.to_numpy().view("int64").astype("float64")
        values[s.isna().to_numpy()] = np.nan
        return pd.Series(values, index=s.index)
    if dtype == np.dtype(object):  # bools with nulls
        return pd.to_numeric(s, errors="raise").astype("float64")
    return s.astype("float64")


def _as_float64(s: pd.Series) -> pd.Series:
    """A float32 (or float16) column as float64; other columns unchanged. pandas computes
    variances in float64 (a float32 variance's squares overflow long before its result
    does), so the moments ``var``/``std`` accumulate do too."""
    return s.astype("float64") if _narrow_float(s.dtype) else s


def _sum_chunk(g):
    return g.sum()


def _sum_keep_nan(g):
    # a partial sum is NaN only where its partition added +inf and -inf: pandas gives NaN for
    # the whole group then, so the combine must not skip it as "missing"
    return g.sum(skipna=False)


def _m2_chunk(g):
    m2 = g.var(ddof=0) * g.count()
    # any ±inf in a group makes pandas' variance NaN (inf - inf); state it explicitly
    if g.obj.dtype.kind != "f":
        return m2
    bad = (g.max() == np.inf) | (g.min() == -np.inf)
    return m2.where(~bad, np.nan)


def _with_count(g):
    """The ``combine`` of ``mean`` and ``m2``: never called, they are merged jointly with their
    ``count`` (see :func:`_combine_moments`)."""
    raise RuntimeError("mean and m2 partials are combined with their count, not on their own")


INTERMEDIATES: dict[str, Intermediate] = {
    "sum": Intermediate("sum", _sum_chunk, _sum_keep_nan),
    # the sum a mean divides: accumulated in float64 for integers (pandas' mean never wraps)
    "fsum": Intermediate("fsum", _sum_chunk, _sum_keep_nan, prepare=_as_float),
    "count": Intermediate("count", lambda g: g.count(), lambda g: g.sum()),
    "min": Intermediate("min", lambda g: g.min(), lambda g: g.min()),
    "max": Intermediate("max", lambda g: g.max(), lambda g: g.max()),
    "first": Intermediate("first", lambda g: g.first(), lambda g: g.first()),
    "last": Intermediate("last", lambda g: g.last(), lambda g: g.last()),
    # mean and m2 are combined jointly with count (see combine_partials)
    "mean": Intermediate("mean", lambda g: g.mean(), _with_count, prepare=_as_float64),
    "m2": Intermediate("m2", _m2_chunk, _with_count, prepare=_as_float64),
    "uniq": Intermediate("uniq", _uniq_chunk, _uniq_combine),
}


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


def _var(p, ddof=1):
    n = p["count"]
    out = _div(p["m2"], (n - ddof).where(n - ddof > 0))
    return out.astype("float64")


AGGREGATIONS: dict[str, Aggregation] = {
    "sum": Aggregation("sum", ("sum",), lambda p: p["sum"]),
    "count": Aggregation("count", ("count",), lambda p: p["count"].astype("int64")),
    "min": Aggregation("min", ("min",), lambda p: p["min"]),
    "max": Aggregation("max", ("max",), lambda p: p["max"]),
    "first": Aggregation("first", ("first",), lambda p: p["first"]),
    "last": Aggregation("last", ("last",), lambda p: p["last"]),
    "mean": Aggregation(
        "mean",
        ("fsum", "count"),
        lambda p: _div(p["fsum"].astype("float64"), p["count"].where(p["count"] > 0)).astype("float64"),
        numeric_only=True,
    ),
    "var": Aggregation("var", ("count", "mean", "m2"), _var, numeric_only=True),
    "std": Aggregation("std", ("count", "mean", "m2"), lambda p: np.sqrt(_var(p)), numeric_only=True),
    "nunique": Aggregation("nunique", ("uniq",), lambda p: _uniq_count(p["uniq"])),
}


#: aggregations pandas knows by the same name (registered ones are not among them)
BUILTIN = frozenset(AGGREGATIONS) | {"size"}


def register_aggregation(name: str, chunk: Callable, combine: Callable, finalize: Callable) -> None:
    """Register a custom aggregation, usable by ``name`` in group-by ``agg``.

    The aggregation runs in three steps, like the built-in ones: a partial per group of each
    block of rows, partials merged (in dataset order, so results do not depend on the number
    of ranks), and the merged partial turned into the result.

    Parameters
    ----------
    name : str
        The name to use in ``agg`` (name, list, dict or named form). Must not be taken.
    chunk : callable
        ``chunk(SeriesGroupBy) -> Series``: one partial per group of one block of rows.
    combine : callable
        ``combine(SeriesGroupBy) -> Series``: merges partials, regrouped on the keys. It must
        be associative; it receives the partials in dataset order.
    finalize : callable
        ``finalize(Series) -> Series``: the result column from the combined partials.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If an aggregation called ``name`` exists already (built-in or registered).

    Examples
    --------
    A product of the values of each group (partials multiply):

    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> hf.register_aggregation("product", chunk=lambda g: g.prod(),
    ...                         combine=lambda g: g.prod(), finalize=lambda s: s)
    >>> df = pd.DataFrame({"k": ["a", "a", "b", "b"], "x": [2, 3, 4, 5]})
    >>> out = hf.from_pandas(df, npartitions=2).groupby("k").agg({"x": "product"}).compute()
    >>> out["x"].to_dict()
    {'a': 6, 'b': 20}
    """
    if name in AGGREGATIONS:
        raise ValueError(f"an aggregation named {name!r} already exists")
    inter = f"user:{name}"
    INTERMEDIATES[inter] = Intermediate(inter, chunk, combine)
    AGGREGATIONS[name] = Aggregation(name, (inter,), lambda p: finalize(p[inter]))


def get_aggregation(name) -> Aggregation:
    """The :class:`Aggregation` registered as ``name``; ``ValueError`` if there is none,
    ``TypeError`` for a function (aggregations are passed by name)."""
    if callable(name) and not isinstance(name, str):
        raise TypeError(
            "pass an aggregation by name; register custom ones with "
            "hf.register_aggregation(name, chunk, combine, finalize)"
        )
    try:
        return AGGREGATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown aggregation {name!r}; known: {', '.join(sorted(AGGREGATIONS))} and 'size'"
        ) from None


def needed(specs) -> list[tuple[str, str]]:
    """The (column, intermediate) pairs the aggregation specs ``[(column, agg), ...]`` need,
    each once, in a stable order. ``var`` needs ``count`` too, shared with ``mean``."""
    out = []
    for col, agg in specs:
        names = ("size",) if agg == "size" else get_aggregation(agg).needs
        for inter in names:
            if (col, inter) not in out:
                out.append((col, inter))
    return out


_FAST = {"sum", "fsum", "count", "size", "min", "max"}
_MAX_DENSE_GROUPS = 1 << 20
#: ``_dense_partial`` spreads each group's rows over this many interleaved bins (row ``i`` to
#: lane ``i % _LANES``) when a block has at most ``_LANE_MAX_GROUPS`` groups and at least
#: ``_LANE_MIN_ROWS`` rows, of which (among the first ``_LANE_MIN_ROWS``) at least
#: ``_LANE_MIN_REPEATS`` (half) follow a row of their own group: those then add into different bins,
#: so ``numpy.bincount`` does not wait for each addition to the same bin before the next (a
#: block of TPC-H Q1's four groups, where 64 % of rows follow one of their group: 2.3 -> 1.3 ms
#: per sum of 900,000 rows). With groups in random order the lanes' extra pass costs more than
#: it saves (db-benchmark q1: 100 groups, 1 % repeats).
_LANES = 4
_LANE_MAX_GROUPS = 1 << 12
_LANE_MIN_ROWS = 1 << 12
_LANE_MIN_REPEATS = 0.5
#: float64 adds integers exactly while every partial sum stays below this magnitude
_EXACT_FLOAT_INT = 2**53


@dataclass(frozen=True)
class _IntLevel:
    """A level of :func:`_dense_codes` from an integer key: code ``c`` is the value
    ``lo + c`` of ``dtype``; ``span`` codes."""

    lo: int
    span: int
    dtype: np.dtype

    def __len__(self) -> int:
        return self.span

    def values(self, codes: np.ndarray) -> pd.Series:
        """The key values of ``codes`` (all in ``[0, span)``)."""
        if self.dtype == np.uint64:
            return pd.Series(codes.astype(np.uint64) + np.uint64(self.lo))
        return pd.Series((codes + np.int64(self.lo)).astype(self.dtype))


#: an integer key takes the dense path of a block's partial when its values span at most
#: this many per row of a block of at least 16,384 rows (65,536 values for the default 4)
#: and no float is summed; 0 turns the path off
DENSE_INT_KEY_SPAN = 4


def _int_level(x: np.ndarray) -> tuple[np.ndarray, _IntLevel] | None:
    """``(codes, level)`` of an integer key of few values (:data:`DENSE_INT_KEY_SPAN`): each
    value's offset from the minimum, or ``None``."""
    lo, hi = int(x.min()), int(x.max())
    span = hi - lo + 1
    if span > DENSE_INT_KEY_SPAN * max(len(x), 1 << 14):
        return None
    return int_offsets(x, lo), _IntLevel(lo, span, x.dtype)


def int_offsets(x: np.ndarray, lo: int) -> np.ndarray:
    """``x - lo`` as a new int64 array, for integers ``x`` of any dtype whose minimum is
    ``lo`` and whose range fits int64 (exact even where the subtraction wraps)."""
    if x.dtype == np.uint64:
        return (x - np.uint64(lo)).astype(np.int64)
    return x.astype(np.int64, copy=False) - np.int64(lo)


def _dense_codes(df, keys, dropna, int_keys=False):
    """Group codes from categorical keys (or the constant key; ``int_keys``: integer keys of
    few values, :func:`_int_level`) without hashing: ``(codes, rows_mask, levels)`` or
    ``None`` when the keys do not allow it."""
    codes = None
    levels: list = []
    keep = None
    stride = 1
    # (an integer level is at most DENSE_INT_KEY_SPAN * rows long by itself)
    cap = max(_MAX_DENSE_GROUPS, DENSE_INT_KEY_SPAN * len(df)) if int_keys else _MAX_DENSE_GROUPS
    for k in reversed(keys):
        cats: pd.Index | _IntLevel
        if k == ALL_KEY:  # (need not be a column of df: see whole_partial)
            c, cats = np.zeros(len(df), dtype=np.int64), pd.Index([0])
        elif isinstance(df[k].dtype, pd.CategoricalDtype) and len(df[k].cat.categories):
            # the codes array without the Series pandas' .cat.codes builds
            c, cats = df[k].array.codes.astype(np.int64), df[k].cat.categories
        elif int_keys and isinstance(df[k].dtype, np.dtype) and df[k].dtype.kind in "iu" and len(df):
            level = _int_level(df[k].to_numpy())
            if level is None:
                return None
            c, cats = level
        else:
            return None
        n = len(cats)
        missing = c < 0
        if missing.any():
            if dropna:
                keep = ~missing if keep is None else keep & ~missing
            else:
                c = np.where(missing, n, c)
            n += 1
        levels.insert(0, (k, cats, n))
        # in place on the fresh int64 copy (same integers)
        if stride != 1:
            c *= stride
        if codes is None:
            codes = c
        else:
            codes += c
        stride *= n
        if stride > cap:
            return None
    return codes, keep, levels, stride


def _exact_int_sum(col: pd.Series) -> bool:
    """Whether every sum of values of the int64 column ``col`` is exact in float64 (so
    ``numpy.bincount`` sums it exactly, as pandas' integer sum does)."""
    if col.dtype != np.int64 or len(col) == 0:
        return col.dtype == np.int64
    x = col.to_numpy()
    big = max(abs(int(x.max())), abs(int(x.min())))
    return big * len(x) < _EXACT_FLOAT_INT


def _dense_partial(df, keys, inters, dropna):
    """``chunk_partial`` for sums, counts and sizes over categorical keys: aggregation on
    integer codes with ``numpy.bincount`` (no hashing, no sorting). ``None`` if not
    applicable."""
    if any(inter not in _FAST for _, inter in inters):
        return None
    sums = {col for col, inter in inters if inter in ("sum", "fsum")}
    # float sums as before (all float64); integer sums only where float64 adds them exactly,
    # and not next to float sums (those stay on pandas' compensated path with them)
    if not (all(df[col].dtype == np.float64 for col in sums) or all(_exact_int_sum(df[col]) for col in sums)):
        return None
    for col, inter in inters:
        if inter in ("min", "max") and df[col].dtype != np.int64:
            return None  # floats: NaN and signed zeros follow pandas' own rules
    # integer keys by their offsets only where the result is exact either way (counts, sizes,
    # integer sums, mins and maxes): a float sum by bincount is not pandas' compensated sum
    exact = all(df[col].dtype.kind != "f" for col in sums)
    dense = _dense_codes(df, keys, dropna, int_keys=exact)
    if dense is None:
        return None
    codes, keep, levels, ngroups = dense
    if keep is not None:
        codes = codes[keep]
    bins = _Bins(codes, ngroups)
    size = bins.count()
    present = np.flatnonzero(size)
    cols = {}
    rest = present.copy()
    decoded = {}
    for k, cats, n in reversed(levels):
        c = rest % n
        rest //= n
        if k == ALL_KEY:  # its one group: what the take below gives (int64 zeros), directly
            decoded[k] = np.zeros(len(c), dtype=np.int64)
            continue
        if isinstance(cats, _IntLevel):
            decoded[k] = cats.values(c)
            continue
        values = pd.Series(cats.take(np.minimum(c, len(cats) - 1)))
        if (c >= len(cats)).any():
            values = values.where(c < len(cats))
        decoded[k] = values
    for k in keys:
        cols[k] = decoded[k]
    # per column once: its values, whether it has NaN, its bincount sum (shared by
    #    "sum" and "fsum", which run the same bincount); a count without NaN is the size
    values: dict = {}
    nans: dict = {}
    totals: dict = {}
    for col, inter in inters:
        name = col + SEP + inter
        if inter == "size":
            cols[name] = size[present].astype(np.int64)
            continue
        x = values.get(col)
        if x is None:
            x = df[col].to_numpy()
            if keep is not None:
                x = x[keep]
            values[col] = x
        if inter in ("count", "sum", "fsum") and x.dtype == np.float64 and col not in nans:
            isnan = np.isnan(x)
            nans[col] = isnan if isnan.any() else None
        if inter == "count":
            if x.dtype.kind in "iub" or (x.dtype == np.float64 and nans[col] is None):
                cols[name] = size[present].astype(np.int64)  # no missing value
                continue
            ok = ~nans[col] if x.dtype == np.float64 else ~pd.isna(x)
            cols[name] = bins.count(ok)[present].astype(np.int64)
        elif inter in ("min", "max"):  # int64 (checked above): every present group has a value
            if inter == "min":
                acc = np.full(ngroups, np.iinfo(np.int64).max, dtype=np.int64)
                np.minimum.at(acc, codes, x)
            else:
                acc = np.full(ngroups, np.iinfo(np.int64).min, dtype=np.int64)
                np.maximum.at(acc, codes, x)
            cols[name] = acc[present]
        elif x.dtype == np.int64:  # exact in float64 (checked above); as pandas: int64 or float64
            total = totals.get(col)
            if total is None:
                w = x.astype(np.float64)
                total = totals[col] = bins.sum(w)[present]
            cols[name] = total.astype(np.int64) if inter == "sum" else total.copy()
        else:
            total = totals.get(col)
            if total is None:
                w = x if nans[col] is None else np.where(nans[col], 0.0, x)
                total = totals[col] = bins.sum(w)[present]
            cols[name] = total.copy()
    return pd.DataFrame(cols)


def _repeats(codes: np.ndarray) -> float:
    """The share of the first ``_LANE_MIN_ROWS`` rows (at least one) whose code is the code of
    the row before (1.0 for a block of fewer than two rows)."""
    head = codes[: max(_LANE_MIN_ROWS, 2)]
    if len(head) < 2:
        return 1.0
    return np.count_nonzero(head[1:] == head[:-1]) / (len(head) - 1)


class _Bins:
    """Per-group counts and sums of one block's rows by ``numpy.bincount`` on their group
    codes (``0 <= code < ngroups``), over interleaved lanes where that is faster
    (``_LANES``): a group's float sum is then the sequential sum (from 0.0) of its values in
    each lane, row ``i`` of the block in lane ``i % _LANES``, and the lanes added in order.
    Deterministic: the same block gives the same bits on any number of ranks."""

    def __init__(self, codes: np.ndarray, ngroups: int):
        self.ngroups = ngroups
        self.lanes = 1
        self.codes = codes
        few = ngroups <= _LANE_MAX_GROUPS and len(codes) >= _LANE_MIN_ROWS
        if few and _repeats(codes) >= _LANE_MIN_REPEATS:
            self.lanes = _LANES
            lane_codes = codes * _LANES
            lane_codes += np.arange(len(codes), dtype=np.int64) & (_LANES - 1)
            self.codes = lane_codes

    def _fold(self, binned: np.ndarray) -> np.ndarray:
        """Each group's lanes added in lane order, ``((l0 + l1) + l2) + l3``."""
        if self.lanes == 1:
            return binned
        lanes = binned.reshape(self.ngroups, self.lanes)
        out = lanes[:, 0].copy()
        for lane in range(1, self.lanes):
            out += lanes[:, lane]
        return out

    def count(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The number of rows per group (of the rows where the bool mask ``rows`` is true)."""
        codes = self.codes if rows is None else self.codes[rows]
        return self._fold(np.bincount(codes, minlength=self.ngroups * self.lanes))

    def sum(self, weights: np.ndarray) -> np.ndarray:
        """The float64 sum of ``weights`` (one per row, none NaN) per group, float64 also
        when the block has no rows (NumPy then returns int64 zeros: a block whose rows
        ``dropna`` drops all typed its float sums int64, where pandas' group-by types them
        float64)."""
        binned = np.bincount(self.codes, weights=weights, minlength=self.ngroups * self.lanes)
        return self._fold(binned.astype(np.float64, copy=False))


def chunk_partial(
    df: pd.DataFrame, keys: list[str], inters, dropna: bool, first_pos: int | None = None
) -> pd.DataFrame:
    """The partial table of one partition (already filtered and projected)."""
    if first_pos is None and inters:
        fast = _dense_partial(df, keys, inters, dropna)
        if fast is not None:
            return _object_keys(fast, df, keys)
    extra = {}
    if first_pos is not None:
        extra[FIRST_POS] = np.arange(first_pos, first_pos + len(df), dtype="int64")
    source = {}
    for col, inter in inters:  # columns some intermediates accumulate in another dtype
        prepare = inter != "size" and INTERMEDIATES[inter].prepare
        if prepare:
            name = col + SEP + inter
            values = prepare(df[col])
            if values is df[col]:
                source[name] = col
            else:
                extra[name], source[name] = values, name
    # categorical keys are grouped by their integer codes (pandas' categorical
    #    group-by hashes the categories more than once per block); the codes map back to the
    #    values below. Each group holds the same rows in the same order either way, so every
    #    aggregate is the same bit for bit.
    coded = _coded_keys(df, keys, {col for col, _ in inters})
    if coded:
        extra.update({k: codes for k, (codes, _) in coded.items()})
    if extra:
        df = df.assign(**extra)
    by, dependent = keys, _dependent_keys(df, keys) if not coded else None
    if dependent is not None:  # grouped by the integer keys; the others taken per group
        by = [k for k in keys if k not in dependent[0]]
    builtin = not any(inter.startswith("user:") for _, inter in inters)
    # (_dependent_keys has made group_ids' check of the integer keys unless keys are coded)
    numbered = _numbered_groups(df, by, dropna, bool(coded)) if dependent is None and builtin else None
    if numbered is not None:  # one integer per group, not pandas' multi-key grouping
        rows, ids, first = numbered
        if rows is not None:  # the dropped rows stay, as missing group numbers: pandas then
            # sees the same group index as in its multi-key group-by (which decides whether
            # it sums plainly or compensated, see _unsorted_ids)
            number = np.full(len(df), np.nan)
            number[rows] = ids
            ids, first = number, rows[first]
        gb = df.groupby(ids, sort=False, dropna=True)
    else:
        gb = df.groupby(by, dropna=dropna, sort=False, observed=True)
    cols = {}
    done = {}  # (source column, chunk function) -> column: float sums serve sum and fsum
    for col, inter in inters:
        name = col + SEP + inter
        if inter == "size":
            cols[name] = gb.size()
            continue
        src, fn = source.get(name, col), INTERMEDIATES[inter].chunk
        if (src, fn) not in done:
            done[(src, fn)] = fn(gb[src])
        cols[name] = done[(src, fn)]
    if first_pos is not None:
        cols[FIRST_POS] = gb[FIRST_POS].min()
    if not cols:
        cols["__n"] = gb.size()
    if numbered is not None:
        values = pd.DataFrame(cols).reset_index(drop=True)
        table = pd.concat([_numbered_keys(df, by, first), values], axis=1)
    else:
        table = pd.DataFrame(cols).reset_index()
    if dependent is not None:
        named, first = dependent
        for k in keys:  # in the keys' order, before the partial columns
            if k in named:
                table.insert(keys.index(k), k, df[k].take(first).reset_index(drop=True))
    if coded:
        table = _decode_keys(table, coded, dropna)
    for k in keys:  # grouped on codes; partials carry values (dictionaries differ per partition)
        if isinstance(table[k].dtype, pd.CategoricalDtype):
            table[k] = _category_values(table[k])
    return _object_keys(table, df, keys)


#: NumPy kinds of group keys :func:`_numbered_groups` takes (a group index keeps their dtype)
_NUMBERED_KINDS = frozenset("biufmM")


def _numbered_groups(df: pd.DataFrame, by: list, dropna: bool, determined: bool = True):
    """``(rows, ids, first)`` for a partial of several NumPy keys (integers, floats, bools,
    times; categoricals as their codes): the rows pandas groups (``None``: all; with
    ``dropna`` those without a missing key), the group number of each of them and each
    group's first row among them (:func:`group_ids`: pandas' own factorization of each key,
    numbered in order of first appearance). Grouping by the one integer gives the groups,
    rows and order of ``df.groupby(by, sort=False)`` — so the same aggregates, bit for bit —
    without pandas' multi-key grouping, which compresses and splits the group index again
    for its MultiIndex (db-benchmark q10: 600,000 groups of six keys per block). ``None``
    for one key or any other key dtype. (Only for built-in aggregations: a registered one
    may look at its groups' names, which are these numbers here.) ``determined``: as in
    :func:`group_ids`."""
    if not isinstance(by, list) or len(by) < 2:
        return None
    cols = [df[k] for k in by]
    if not all(isinstance(c.dtype, np.dtype) and c.dtype.kind in _NUMBERED_KINDS for c in cols):
        return None
    rows = None
    if dropna:
        missing = None
        for c in cols:
            if c.dtype.kind in "fmM":
                m = c.isna().to_numpy()
                missing = m if missing is None else missing | m
        if missing is not None and missing.any():
            rows = np.flatnonzero(~missing)
    keyed = df[by] if rows is None else df[by].take(rows)
    ids, first = group_ids(keyed, list(by), determined)
    return rows, ids, first


def _numbered_keys(df: pd.DataFrame, by: list, first: np.ndarray) -> pd.DataFrame:
    """The keys of the groups of :func:`_numbered_groups` (``first``: each group's first
    row of the block ``df``, rows with a missing key included), as pandas' MultiIndex has
    them: a float key is its column's first occurrence of the value in the block (``-0.0``
    and ``0.0`` are one value, spelt as first seen in the column — also in a row ``dropna``
    drops —, not in the group), a missing one NaN."""
    keys = df[by].take(first).reset_index(drop=True)
    for k in by:
        col = df[k]
        if col.dtype.kind == "f":
            codes, uniques = pd.factorize(col.to_numpy())
            picked = codes[first]
            spelt = np.full(len(first), np.nan, dtype=col.dtype)
            found = picked >= 0
            spelt[found] = np.asarray(uniques, dtype=col.dtype)[picked[found]]
            keys[k] = spelt
    return keys


def _object_keys(table: pd.DataFrame, df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The partial ``table`` of the block ``df`` with the keys of an ``object`` column that
    are all missing kept ``object``: pandas' group-by types a block's keys by their values
    (only missing keys: ``float64``; bools: ``bool``), and pandas 3 stacks an all-missing
    ``float64`` column with a ``bool`` one as ``float64`` (``True`` -> ``1.0``; a regression:
    object bools with ``None`` grouped with ``dropna=False`` came back ``0.0``/``1.0`` when
    a block held only missing keys). :func:`combine_many` types the combined keys as
    pandas' index does."""
    fix = {
        k: object
        for k in keys
        if df[k].dtype == object and table[k].dtype == np.float64 and table[k].isna().all()
    }
    return table.astype(fix) if fix else table


#: whether a partial groups by its integer keys alone when the other keys depend on them
#: (:func:`_dependent_keys`; off only to compare with the plain group-by in tests)
GROUP_BY_DETERMINING_KEYS = True


def _dependent_keys(df: pd.DataFrame, keys: list[str]) -> tuple[set, np.ndarray] | None:
    """``(keys, first rows)`` when the keys of ``df`` other than its integer keys are each
    constant within the groups of the integer keys (:func:`_determined_ids`) and grouping by
    the integer keys alone gives pandas' groups: those other keys then have no missing value
    (which ``dropna`` would drop or pandas would group apart) and a dtype pandas keeps as
    the index level's (not object, not categorical). ``first``: each group's first row, in
    order of first appearance (pandas' order with ``sort=False``). Else ``None``."""
    if not GROUP_BY_DETERMINING_KEYS or len(keys) < 2 or len(df) < 2:
        return None
    base = _int_keys(df, keys)
    rest = [k for k in keys if k not in base]
    if not base or not rest:
        return None
    for k in rest:
        dtype = df[k].dtype
        if dtype == np.dtype(object) or isinstance(dtype, pd.CategoricalDtype) or df[k].isna().any():
            return None
    got = _determined_ids(df, keys)
    if got is None:
        return None
    return set(rest), got[1]


def _coded_keys(df: pd.DataFrame, keys: list[str], aggregated: set) -> dict:
    """``{key: (codes, CategoricalDtype)}`` for the categorical keys of ``df`` that are not
    aggregated too: the integer codes, ``-1`` for a missing key (a group of its own, which
    :func:`_decode_keys` drops or names NaN)."""
    out = {}
    for k in keys:
        col = df[k]
        if k not in aggregated and isinstance(col.dtype, pd.CategoricalDtype):
            out[k] = (col.array.codes, col.dtype)
    return out


def _decode_keys(table: pd.DataFrame, coded: dict, dropna: bool) -> pd.DataFrame:
    """The partial ``table`` grouped on the codes of :func:`_coded_keys`, with each coded key
    as its values (what :func:`_category_values` gives): the groups of a missing key are
    dropped with ``dropna`` (pandas drops rows whose key is missing), else their key is NaN."""
    if dropna:
        drop = None
        for k in coded:
            missing = table[k].to_numpy() < 0
            drop = missing if drop is None else drop | missing
        if drop is not None and drop.any():
            table = table[~drop].reset_index(drop=True)
    for k, (_, dtype) in coded.items():
        cat = pd.Categorical.from_codes(table[k].to_numpy(), dtype=dtype, validate=False)
        table[k] = _category_values(pd.Series(cat, index=table.index, name=k))
    return table


def _category_values(col: pd.Series) -> pd.Series:
    """``col.astype(col.cat.categories.dtype)``; for string categories by a take on the
    categories (Arrow's take: no Python string per row, as the cast makes)."""
    cats = col.cat.categories
    if isinstance(cats.dtype, pd.StringDtype):
        codes = col.cat.codes.to_numpy()
        # no fill without missing values: the result then has no validity bitmap
        values = cats.array.take(codes, allow_fill=bool((codes < 0).any()))
        return pd.Series(values, index=col.index, name=col.name)
    return col.astype(cats.dtype)


def whole_partial(df: pd.DataFrame, inters) -> pd.DataFrame | None:
    """The partial of a whole-frame reduction of ``df`` (at least one row) —
    ``chunk_partial(df.assign(**{ALL_KEY: 0}), [ALL_KEY], inters, ...)`` — by
    :func:`_dense_partial` without adding the key column to ``df`` (the same table, bit for
    bit), or ``None`` where that path does not apply (then call :func:`chunk_partial`)."""
    return _dense_partial(df, [ALL_KEY], inters, True)


def combine_partials(a: pd.DataFrame | None, b: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame | None:
    """``a`` (earlier partitions) and ``b`` (later ones) merged into one partial."""
    if a is None:
        return b
    if b is None:
        return a
    if keys == [ALL_KEY]:
        fast = _combine_whole(a, b)
        if fast is not None:
            return fast
    return combine_many(pd.concat([a, b], ignore_index=True), keys)


#: the intermediates :func:`_combine_whole` merges, by dtype kind of their column
_WHOLE_FLOAT = frozenset({"sum", "fsum"})
_WHOLE_INT = frozenset({"sum", "fsum", "count", "size", "min", "max"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _combine_whole(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame | None:
    """``combine_many(concat([a, b]), [ALL_KEY])`` for two one-row partials of a whole-frame
    reduction (one group) without pandas' group-by (about 7 ms a call: a fixed cost per block
    of every scalar reduction), or ``None`` when a column is not one of these:

    * a float64 ``sum``/``fsum``: pandas' compensated group sum of the two values (``skipna=
      False``) starts from 0.0, and its compensation after the first value is 0 (``0.0 + a - a``
      is 0 for finite ``a``, and reset to 0 when not finite), so it is ``(0.0 + a) + b`` —
      the same IEEE operations — and pandas' own NaN when either is NaN;
    * an int64 ``sum``/``fsum``/``count``/``size``/``min``/``max``: exact integer arithmetic
      (``None`` when a sum leaves int64, where pandas' int64 sum would wrap).

    Columns, their order and dtypes are those of ``combine_many`` (the key as in ``a``)."""
    if len(a) != 1 or len(b) != 1 or list(a.columns) != list(b.columns) or a.columns[0] != ALL_KEY:
        return None
    if a[ALL_KEY].dtype != b[ALL_KEY].dtype:  # (concat would widen the key's dtype)
        return None
    cols: dict = {ALL_KEY: a[ALL_KEY].to_numpy()}
    for name in a.columns[1:]:
        _, _, inter = name.rpartition(SEP)
        x, y = a[name].to_numpy(), b[name].to_numpy()
        if x.dtype != y.dtype:
            return None
        if x.dtype == np.float64 and inter in _WHOLE_FLOAT:
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, overflow: as pandas
                total = (0.0 + x) + y
            # a missing value sets pandas' sum to its NaN (whatever payload the value had)
            cols[name] = np.where(np.isnan(x) | np.isnan(y), np.nan, total)
        elif x.dtype == np.int64 and inter in _WHOLE_INT:
            u, v = int(x[0]), int(y[0])
            got = min(u, v) if inter == "min" else max(u, v) if inter == "max" else u + v
            if not _INT64_MIN <= got <= _INT64_MAX:
                return None
            cols[name] = np.array([got], dtype=np.int64)
        else:
            return None
    return pd.DataFrame(cols)


def combine_many(
    t: pd.DataFrame, keys: list[str], final: bool = False, carried: list[str] | None = None
) -> pd.DataFrame:
    """The partials stacked in ``t`` (earlier partitions' rows first) merged into one: every
    intermediate combines all of a group's rows at once, in row order (so the result depends
    only on that order). Groups come out in order of first appearance, with the key values
    of their first row. ``final``: every partial of each group is in ``t`` and the result is
    only finalized, never combined again: a ``nunique`` partial then becomes its count
    (:func:`_uniq_final`), not a merged list of values. ``carried``: columns of ``t`` that
    are functions of the keys (equal in every row of a group), kept like the keys (from
    each group's first row) but not grouped on."""
    carried = list(carried or [])
    ids, first = group_ids(t, keys)
    cols, skip = _single_partial_groups(t, ids, first, keys, carried), 0
    if cols is None:
        cols, skip = _combine_groups(t, ids, first, keys, carried, final)
    out = t[keys + carried].take(first).reset_index(drop=True)
    for k in keys:  # typed as a group-by index types them (object bools -> bool, strings -> str)
        if out[k].dtype == object:
            typed = pd.Series(pd.Index(out[k].to_numpy()).infer_objects())
            # a missing key of an object column is NaN in a group-by's index, never None
            out[k] = typed.where(typed.notna(), np.nan) if typed.dtype == object else typed
    for name, values in cols.items():  # (without _unsorted_ids' extra group, if any)
        out[name] = values.iloc[skip : skip + len(first)].reset_index(drop=True)
    return out


#: the combines (of the partial columns named ``col SEP inter``) that give a group's only
#: partial back unchanged — a float sum plus 0.0: pandas' compensated sum starts from 0, so
#: a lone -0.0 comes back as 0.0
_ONE_IS_ITSELF = frozenset({"sum", "fsum", "count", "min", "max", "first", "last", "size"})
_PLAIN_NUMBERS = (np.dtype("int64"), np.dtype("uint64"), np.dtype("float64"))
#: below this many groups a combine is cheap enough as one pandas group-by
SINGLE_PARTIALS_MIN_GROUPS = 1024


def _single_partial_groups(t, ids, first, keys, carried) -> dict | None:
    """:func:`combine_many`'s combined columns (a Series per partial column, one row per
    group in order of first appearance) when most groups have a single partial row — a
    group-by of a key whose blocks hold disjoint ranges of it (TPC-H q18's 15 M order keys
    at SF 10: a key spans two blocks only at a block's edge) — else ``None``. A group's only
    partial is its result (:data:`_ONE_IS_ITSELF`); the few groups with several partials go
    through :func:`_combine_groups` on their rows alone, which combines each group's rows
    exactly as on the whole table (in row order, compensated sums). Only for int64, uint64
    and float64 partials of those combines."""
    n, groups = len(ids), len(first)
    if groups < SINGLE_PARTIALS_MIN_GROUPS or 2 * groups < n:
        return None
    names = [c for c in t.columns if c not in keys and c not in carried]
    for name in names:
        inter = name.rpartition(SEP)[2]
        if name != FIRST_POS and name != "__n" and inter not in _ONE_IS_ITSELF:
            return None
        if t[name].dtype not in _PLAIN_NUMBERS:
            return None
    several = np.bincount(ids, minlength=groups)[ids] > 1  # the rows of groups of 2+ rows
    if 2 * int(np.count_nonzero(several)) > n:
        # most rows are in groups of several partials (every block holds most keys: db-
        # benchmark q3's 1e5 ids): combining those rows apart would group them a second time
        return None
    cols = {}
    for name in names:
        values = t[name].to_numpy().take(first)  # a group's first row: its only one
        if values.dtype.kind == "f" and name.rpartition(SEP)[2] in ("sum", "fsum", "size"):
            values += 0.0
        cols[name] = values
    if several.any():
        rows = np.flatnonzero(several)
        sub = t.iloc[rows].reset_index(drop=True)
        sub_ids, sub_first = group_ids(sub, keys)
        merged, skip = _combine_groups(sub, sub_ids, sub_first, keys, carried, False)
        at = ids[rows[sub_first]]  # their groups' numbers in the whole table
        for name in names:
            got = merged[name].to_numpy()[skip : skip + len(sub_first)]
            if got.dtype != cols[name].dtype:  # (not for these combines and dtypes)
                return None
            cols[name][at] = got
    return {name: pd.Series(values) for name, values in cols.items()}


def _combine_groups(t, ids, first, keys, carried, final) -> tuple[dict, int]:
    """:func:`combine_many`'s combined columns by a pandas group-by of ``t`` on ``ids``, and
    how many leading groups of theirs are not ``t``'s (:func:`_unsorted_ids`)."""
    uniq_t, uniq_ids = t, ids
    t, ids, skip = _unsorted_ids(t, ids)
    gb = t.groupby(ids, sort=False)
    cols = {}
    for name in t.columns:
        if name in keys or name in carried:
            continue
        col, _, inter = name.rpartition(SEP)
        if name == FIRST_POS:
            cols[name] = gb[name].min()
        elif name == "__n" or inter == "size":
            cols[name] = gb[name].sum()
        elif inter in ("mean", "m2"):
            continue
        elif inter == "count" and (col + SEP + "mean") in t.columns:
            cols.update(_combine_moments(t, gb, col, ids))
        else:
            # the last combine of nunique counts
            counted = _uniq_final(uniq_t[name], uniq_ids, len(first)) if final and inter == "uniq" else None
            if counted is not None:  # one per group of uniq_t already
                counted = pd.concat([counted.iloc[:skip], counted], ignore_index=True)
            cols[name] = INTERMEDIATES[inter].combine(gb[name]) if counted is None else counted
    return cols, skip


def _unsorted_ids(t: pd.DataFrame, ids: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, int]:
    """``t`` and its group numbers ``ids`` such that pandas never sees every group's rows
    together in order, and how many groups (0 or 1) its results then have before ``t``'s.

    pandas (3.x) sums a group-by with Kahan-compensated sums, except when each group's rows
    are together and in order of first appearance: then with ``numpy.add.reduceat``, a
    plain sum that can differ in the last bit (and keeps a lone ``-0.0``). Which case a
    combine met depended on which other groups shared its table — under a shuffle, on the
    number of ranks (TPC-H q5 at SF 1: on 3 ranks one nation's partials alone on a rank,
    summed plainly; on 1 and 2 ranks beside the others', compensated). Such a table gets a
    copy of its first row before and after it as a group of its own (first in pandas'
    results: the caller skips it), so every combine takes the compensated sums."""
    n = len(ids)
    if n == 0 or (n > 1 and bool((ids[1:] < ids[:-1]).any())):
        return t, ids, 0
    extra = np.array([int(ids[-1]) + 1], dtype=ids.dtype)  # ascending: ids[-1] is the largest
    return (
        pd.concat([t.iloc[:1], t, t.iloc[:1]], ignore_index=True),
        np.concatenate([extra, ids, extra]),
        1,
    )


def group_ids(t: pd.DataFrame, keys: list[str], determined: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, first)``: a group number per row of ``t`` by the values of ``keys`` (missing
    values are a group of their own, as ``dropna=False``), numbered in order of first
    appearance, and the row where each group first appears. One integer key instead of
    several columns: grouping by it is much cheaper than a multi-column group-by.
    ``determined=False``: skip the check whether the integer keys alone determine the groups
    (:func:`_determined_ids`), for a caller that made it already."""
    if len(keys) == 1:  # one key: factorized once (one hash table, not two)
        col = t[keys[0]]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu" and len(col):
            x = col.to_numpy()
            lo, hi = int(x.min()), int(x.max())
            if hi - lo < DENSE_IDS_SPAN * len(x):
                return _dense_ids(x, lo, hi - lo + 1)
            return sorted_ids(x)
        by_bytes = _string_values(col)
        got = None if by_bytes is None else fixed_width_ids(by_bytes)
        if got is not None:
            return got
        codes, _ = pd.factorize(col, use_na_sentinel=False)
        ids = codes.astype(np.int64, copy=False)
        return ids, first_rows(ids)
    by_ints = _determined_ids(t, keys) if determined else None
    if by_ints is not None:
        return by_ints
    ids = None
    for k in keys:
        codes, width = _key_codes(t[k])
        if ids is None:
            ids = codes
            continue
        if int(ids.max(initial=0)) >= (2**62) // width:  # compress before it could overflow
            ids = pd.factorize(ids)[0].astype(np.int64, copy=False)
        ids = ids * width + codes
    if ids is None:
        return np.zeros(len(t), dtype=np.int64), np.zeros(min(len(t), 1), dtype=np.int64)
    if _many_groups(ids):  # (db-benchmark q10: ~1e7 groups of six keys)
        return sorted_ids(ids)
    ids = pd.factorize(ids)[0].astype(np.int64, copy=False)  # first-appearance numbering
    return ids, first_rows(ids)


def _int_keys(t: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys of ``t`` that are NumPy integer columns (no missing value, cheap to group)."""
    out = []
    for k in keys:
        dtype = t[k].dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iu":
            out.append(k)
    return out


def _constant_within(col: pd.Series, ids: np.ndarray, first: np.ndarray) -> bool:
    """Whether ``col`` has one value in every group (``ids``, each group's ``first`` row):
    equal to its group's first value, or missing where that is missing."""
    if not len(col):
        return True
    ref = col.take(first[ids])
    same = np.asarray(col.reset_index(drop=True).eq(ref.reset_index(drop=True)).fillna(False), dtype=bool)
    if same.all():
        return True
    return bool((same | (col.isna().to_numpy() & ref.isna().to_numpy())).all())


def _determined_ids(t: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`group_ids` of several keys by their integer keys alone when every other key
    is constant within those groups in ``t`` (an id with its descriptive columns: TPC-H q10
    groups by ``c_custkey`` and six more customer columns, q3 by ``l_orderkey`` and two order
    columns): the same groups in the same order, without hashing the strings. ``None`` when
    there is no integer key, only integer keys, or another key varies within a group."""
    base = _int_keys(t, keys) if GROUP_BY_DETERMINING_KEYS else []
    if not base or len(base) == len(keys) or len(t) < 2:
        return None
    if len(t) >= DETERMINED_SAMPLE_MIN_ROWS:
        # every DETERMINED_SAMPLE_STEP-th row first: a key that varies within a group there
        # varies in the whole table too, so the whole check need not run (db-benchmark q10:
        # integer keys that determine nothing, rejected at 1/8 of the check's cost)
        if _ids_if_determined(t[keys].iloc[::DETERMINED_SAMPLE_STEP], keys, base) is None:
            return None
    return _ids_if_determined(t, keys, base)


#: :func:`_determined_ids` checks a table of at least this many rows on every
#: ``DETERMINED_SAMPLE_STEP``-th row first
DETERMINED_SAMPLE_MIN_ROWS = 1 << 17
DETERMINED_SAMPLE_STEP = 8


def _ids_if_determined(
    t: pd.DataFrame, keys: list[str], base: list[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`group_ids` of ``t`` by the integer keys ``base`` when every other key of ``keys``
    is constant within those groups, else ``None``."""
    ids, first = group_ids(t, base)
    if len(first) == len(t):  # every row its own group: nothing else to check
        return ids, first
    for k in keys:
        if k not in base and not _constant_within(t[k], ids, first):
            return None
    return ids, first


#: :func:`group_ids` numbers one integer key by its offset from the minimum when the keys
#: span fewer than this many values per row (else by a sort: :func:`~hpcframe.io.types.sorted_ids`)
DENSE_IDS_SPAN = 2


def _dense_ids(x: np.ndarray, lo: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`group_ids` of one integer key whose values ``lo .. lo + span - 1`` are few
    (``span`` below :data:`DENSE_IDS_SPAN` per row): each value's first row found by one
    pass over a table of ``span`` slots, no sort of the rows. The combine of a group-by whose
    every block holds most groups (per-customer counts: 6 M partial rows in any order over
    1.5 M keys) took 1.0 s by the stable sort, 0.3 s this way; on the sorted runs of ordered
    data both are alike. Groups numbered by first appearance, as ``pd.factorize``."""
    n = len(x)
    codes = int_offsets(x, lo)
    first_at = np.full(span, n, dtype=np.int64)
    np.minimum.at(first_at, codes, np.arange(n, dtype=np.int64))
    present = np.flatnonzero(first_at < n)  # the values that occur, in value order
    firsts = first_at[present]
    del first_at
    by_first = np.argsort(firsts)  # (distinct rows: any sort gives the one order)
    first = firsts[by_first]
    renumber = np.empty(span, dtype=np.int64)
    renumber[present[by_first]] = np.arange(len(first), dtype=np.int64)
    del present, by_first, firsts
    np.take(renumber, codes, out=codes)
    return codes, first


#: :func:`group_ids` of several keys numbers their combined integer by a sort, not a hash
#: table, when a sample of its rows suggests at least this many groups (fewer fit the caches)
SORTED_IDS_MIN_GROUPS = 1 << 18
_GROUPS_SAMPLE = 4096


def _many_groups(x: np.ndarray) -> bool:
    """Whether the integers ``x`` hold at least :data:`SORTED_IDS_MIN_GROUPS` distinct values,
    as estimated from :data:`_GROUPS_SAMPLE` evenly spaced rows (``k`` rows with ``d``
    distinct values: about ``k² / (2 (k - d))`` values in all, by the birthday problem)."""
    if len(x) < SORTED_IDS_MIN_GROUPS:
        return False
    k = _GROUPS_SAMPLE
    sample = x[:: max(len(x) // k, 1)][:k]
    repeats = len(sample) - len(np.unique(sample))
    return repeats == 0 or len(sample) ** 2 / (2 * repeats) >= SORTED_IDS_MIN_GROUPS


def group_codes(t: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, int]:
    """``(codes, width)``: a number in ``[0, width)`` per row of ``t``, equal for rows with
    equal ``keys`` and different otherwise (missing values a group of their own), where
    the order of the numbers does not matter: one integer key of a small range is its
    offset from the minimum (no hashing, no numbering; some numbers may be unused), other
    keys :func:`group_ids`' numbers."""
    if len(keys) == 1:
        return _key_codes(t[keys[0]])
    ids, first = group_ids(t, keys)
    return ids, len(first)


def _key_codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """``(codes, width)``: an int64 code per value of ``col`` in ``[0, width)``, equal codes
    for equal values (missing values one code). A numpy integer column with a small range is
    coded by its offset from the minimum (no hashing); anything else is factorized."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(col):
        x = col.to_numpy()
        lo, hi = int(x.min()), int(x.max())
        if hi - lo < max(4 * len(x), 1 << 16):
            # (in int64: an int8/16/32 key's offsets can exceed its own dtype, 127 - -1)
            return int_offsets(x, lo), hi - lo + 1
    codes = string_codes(col)
    if codes is not None:
        return codes, int(codes.max(initial=0)) + 1
    codes, uniques = pd.factorize(col, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False), max(len(uniques), 1)


def string_codes(col: pd.Series) -> np.ndarray | None:
    """``pd.factorize``'s codes of an Arrow-backed string column without missing values whose
    values all have one byte length (identifiers, codes: the combines of q3's 1e5 ``id3``
    keys), by their bytes as integers (:func:`~hpcframe.io.types.fixed_width_codes`, about
    twice as fast as Arrow's string hash in q3's combines); else ``None``."""
    arr = _string_values(col)
    return None if arr is None else fixed_width_codes(arr)


def _string_values(col: pd.Series) -> pa.Array | None:
    """The values of an Arrow-backed string column as one Arrow array (chunks combined), or
    ``None`` for another column or an empty one."""
    if not isinstance(col.array, pd.arrays.ArrowStringArray) or not len(col):
        return None
    arr = pa.array(col.array)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _combine_moments(t, gb, col, ids):
    """Chan et al.: n = Σnᵢ, mean = Σnᵢ·meanᵢ / n, M2 = ΣM2ᵢ + Σnᵢ·(meanᵢ − mean)²."""
    n_name, mean_name, m2_name = (col + SEP + s for s in ("count", "mean", "m2"))
    n_i = t[n_name].astype("float64")
    mean_i = t[mean_name].astype("float64").where(n_i > 0, 0.0)
    n = gb[n_name].transform("sum").astype("float64")
    by = ids
    weighted = (n_i * mean_i).groupby(by, sort=False).transform("sum")
    mean = _div(weighted, n.where(n > 0))
    # a group with one contributing partial keeps its mean bit for bit (combining with an
    # empty partial must be an identity, whichever path the partials took)
    contributors = (n_i > 0).groupby(by, sort=False).transform("sum")
    only = mean_i.where(n_i > 0).groupby(by, sort=False).transform("max")
    mean = only.where(contributors == 1, mean)
    out = {
        n_name: gb[n_name].sum(),
        mean_name: mean.groupby(ids, sort=False).first(),
    }
    if m2_name in t.columns:
        dev = (n_i * (mean_i - mean.fillna(0.0)) ** 2).where(n_i > 0, 0.0)
        m2_i = t[m2_name].astype("float64").where(n_i > 0, 0.0)
        # skipna=False: a NaN here comes from ±inf in the group, and pandas' variance is NaN
        out[m2_name] = (m2_i + dev).groupby(ids, sort=False).sum(skipna=False)
    return out


def finalize_columns(table: pd.DataFrame, specs, dtypes=None, grouped: bool = True) -> list[pd.Series]:
    """One result Series per ``(column, agg)`` spec, aligned with the rows of ``table``.
    ``dtypes`` (column -> dtype of the source column) gives results pandas' dtypes: float32
    means stay float32, a datetime mean is a datetime, categorical first/last stay
    categorical. ``grouped``: a group-by (else a whole-frame reduction), where pandas'
    ``std`` of float32 differs (see :func:`result_dtype`)."""
    out = []
    for col, agg in specs:
        if agg == "size":
            out.append(table[col + SEP + "size"].astype("int64"))
            continue
        a = get_aggregation(agg)
        parts = {inter: table[col + SEP + inter] for inter in a.needs}
        dtype = dtypes.get(col) if dtypes is not None else None
        if agg == "std" and not grouped and _narrow_float(dtype):
            # pandas' Series.std is the root of the variance already rounded to float32
            # (so inf where that variance overflows float32, even if the std would fit)
            with np.errstate(over="ignore"):
                result = np.sqrt(_var(parts).astype(dtype))
        else:
            result = a.finalize(parts)
        if dtype is not None:
            result = result_dtype(result, agg, dtype, grouped)
        out.append(result)
    return out


def _narrow_float(dtype) -> bool:
    """Whether ``dtype`` is a NumPy float narrower than float64 (float32, float16)."""
    return isinstance(dtype, np.dtype) and dtype.kind == "f" and dtype.itemsize < 8


def result_dtype(result: pd.Series, agg: str, dtype, grouped: bool = True) -> pd.Series:
    """``result`` (the finalized ``agg`` of a column of ``dtype``) in the dtype pandas gives.
    A float32 column's mean and var stay float32; its std stays float32 in a whole-frame
    reduction but is float64 in a group-by, until :func:`group_std_dtype` sees all groups."""
    kind = getattr(dtype, "kind", "")
    if _narrow_float(dtype) and (agg in ("mean", "var") or (agg == "std" and not grouped)):
        with np.errstate(over="ignore"):  # (an overflow to inf is pandas' result too)
            return result.astype(dtype)
    if agg == "mean" and kind in "mM":
        return _ticks_to_datetime(result, dtype)
    if (
        agg in ("first", "last")
        and isinstance(dtype, pd.CategoricalDtype)
        and not isinstance(result.dtype, pd.CategoricalDtype)
    ):
        cats = dtype.categories
        present = pd.Index(result.dropna().unique())
        if len(cats) == 0 or not present.isin(cats).all():
            cats = present.sort_values()
        return result.astype(pd.CategoricalDtype(cats, ordered=dtype.ordered))
    return result


def group_std_dtype(result: pd.Series, dtype) -> pd.Series:
    """The group-by ``std`` (float64, every group) of a column of ``dtype`` in pandas' dtype.
    pandas computes a float32 column's group std in float64 and returns it as float32 only
    if every group's value survives the cast within 5e-4 (absolute; NaN equals NaN: its
    ``maybe_downcast_to_dtype``), else float64 — so it depends on all groups' values, and is
    decided once on the whole result, not per rank's share of the groups."""
    if not _narrow_float(dtype):
        return result
    with np.errstate(over="ignore"):
        narrow = result.astype(dtype)
    values = result.to_numpy(dtype="float64")
    if np.allclose(narrow.to_numpy(dtype="float64"), values, equal_nan=True, rtol=0.0, atol=5e-4):
        return narrow
    return result


def _ticks_to_datetime(result: pd.Series, dtype) -> pd.Series:
    """Float ticks (as :func:`_as_float` made them) truncated to int64, as pandas does."""
    values = result.to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(values)
    ticks = np.where(missing, 0.0, values).astype("int64")
    ticks[missing] = np.iinfo("int64").min  # NaT
    unit = (
        np.datetime_data(getattr(dtype, "base", dtype))[0] if not getattr(dtype, "tz", None) else dtype.unit
    )
    letter = "m" if dtype.kind == "m" else "M"
    naive = pd.Series(ticks.view(f"{letter}8[{unit}]"), index=result.index, name=result.name)
    tz = getattr(dtype, "tz", None)
    return naive.dt.tz_localize("UTC").dt.tz_convert(tz) if tz is not None else naive
