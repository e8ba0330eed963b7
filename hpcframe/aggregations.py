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

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

SEP = "\x00"
ALL_KEY = "__hpcframe_all__"   # constant key used for whole-frame reductions
FIRST_POS = "__hpcframe_pos__"  # global row position of a group's first row (for sort=False)


@dataclass(frozen=True)
class Intermediate:
    """One partial column. ``chunk(SeriesGroupBy) -> Series`` indexed by group;
    ``combine(SeriesGroupBy over concatenated partials) -> Series``."""

    name: str
    chunk: Callable
    combine: Callable


@dataclass(frozen=True)
class Aggregation:
    """``needs`` intermediates; ``finalize({name: Series}) -> Series`` gives the result column."""

    name: str
    needs: tuple[str, ...]
    finalize: Callable
    numeric_only: bool = False


def _uniq_chunk(sgb):
    return sgb.agg(lambda s: _unique(s.to_numpy()))


def _uniq_combine(sgb):
    return sgb.agg(lambda s: _unique(np.concatenate(list(s))) if len(s) else np.array([]))


def _unique(values):
    u = pd.unique(values)
    return u[~pd.isna(u)] if len(u) else u


INTERMEDIATES: dict[str, Intermediate] = {
    "sum": Intermediate("sum", lambda g: g.sum(), lambda g: g.sum()),
    "count": Intermediate("count", lambda g: g.count(), lambda g: g.sum()),
    "min": Intermediate("min", lambda g: g.min(), lambda g: g.min()),
    "max": Intermediate("max", lambda g: g.max(), lambda g: g.max()),
    "first": Intermediate("first", lambda g: g.first(), lambda g: g.first()),
    "last": Intermediate("last", lambda g: g.last(), lambda g: g.last()),
    # mean and m2 are combined jointly with count (see combine_partials)
    "mean": Intermediate("mean", lambda g: g.mean(), None),
    "m2": Intermediate("m2", lambda g: g.var(ddof=0) * g.count(), None),
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
    "mean": Aggregation("mean", ("sum", "count"),
                        lambda p: _div(p["sum"], p["count"].where(p["count"] > 0)).astype("float64"),
                        numeric_only=True),
    "var": Aggregation("var", ("count", "mean", "m2"), _var, numeric_only=True),
    "std": Aggregation("std", ("count", "mean", "m2"), lambda p: np.sqrt(_var(p)),
                       numeric_only=True),
    "nunique": Aggregation("nunique", ("uniq",),
                           lambda p: p["uniq"].map(len).astype("int64")),
}


#: aggregations pandas knows by the same name (registered ones are not among them)
BUILTIN = frozenset(AGGREGATIONS) | {"size"}


def register_aggregation(name: str, chunk: Callable, combine: Callable, finalize: Callable):
    """Register a custom aggregation usable in ``agg`` by ``name``.

    ``chunk(SeriesGroupBy) -> Series`` computes a partial per group of one partition,
    ``combine(SeriesGroupBy) -> Series`` merges partials (grouped on the keys again), and
    ``finalize(Series) -> Series`` turns the combined partial into the result. ``combine``
    must be associative; it is applied to partials in partition order.
    """
    if name in AGGREGATIONS:
        raise ValueError(f"an aggregation named {name!r} already exists")
    inter = f"user:{name}"
    INTERMEDIATES[inter] = Intermediate(inter, chunk, combine)
    AGGREGATIONS[name] = Aggregation(name, (inter,), lambda p: finalize(p[inter]))


def get_aggregation(name) -> Aggregation:
    if callable(name) and not isinstance(name, str):
        raise TypeError("pass an aggregation by name; register custom ones with "
                        "hf.register_aggregation(name, chunk, combine, finalize)")
    try:
        return AGGREGATIONS[name]
    except KeyError:
        raise ValueError(f"unknown aggregation {name!r}; known: "
                         f"{', '.join(sorted(AGGREGATIONS))} and 'size'") from None


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


_FAST = {"sum", "count", "size"}
_MAX_DENSE_GROUPS = 1 << 20


def _dense_codes(df, keys, dropna):
    """Group codes from categorical keys (or the constant key) without hashing:
    ``(codes, rows_mask, levels)`` or ``None`` when the keys do not allow it."""
    codes = None
    levels = []
    keep = None
    stride = 1
    for k in reversed(keys):
        col = df[k]
        if k == ALL_KEY:
            c, cats = np.zeros(len(df), dtype=np.int64), pd.Index([0])
        elif isinstance(col.dtype, pd.CategoricalDtype) and len(col.cat.categories):
            c, cats = col.cat.codes.to_numpy().astype(np.int64), col.cat.categories
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
        codes = c * stride if codes is None else codes + c * stride
        stride *= n
        if stride > _MAX_DENSE_GROUPS:
            return None
    return codes, keep, levels, stride


def _dense_partial(df, keys, inters, dropna):
    """``chunk_partial`` for sums, counts and sizes over categorical keys: aggregation on
    integer codes with ``numpy.bincount`` (no hashing, no sorting). ``None`` if not
    applicable."""
    if any(inter not in _FAST for _, inter in inters):
        return None
    for col, inter in inters:
        if inter == "sum" and df[col].dtype != np.float64:
            return None
    dense = _dense_codes(df, keys, dropna)
    if dense is None:
        return None
    codes, keep, levels, ngroups = dense
    if keep is not None:
        codes = codes[keep]
    size = np.bincount(codes, minlength=ngroups)
    present = np.flatnonzero(size)
    cols = {}
    rest = present.copy()
    decoded = {}
    for k, cats, n in reversed(levels):
        c = rest % n
        rest //= n
        values = pd.Series(cats.take(np.minimum(c, len(cats) - 1)))
        if (c >= len(cats)).any():
            values = values.where(c < len(cats))
        decoded[k] = values
    for k in keys:
        cols[k] = decoded[k]
    for col, inter in inters:
        name = col + SEP + inter
        if inter == "size":
            cols[name] = size[present].astype(np.int64)
            continue
        x = df[col].to_numpy()
        if keep is not None:
            x = x[keep]
        if inter == "count":
            ok = ~pd.isna(x)
            cols[name] = np.bincount(codes[ok], minlength=ngroups)[present].astype(np.int64)
        else:
            cols[name] = np.bincount(codes, weights=np.where(np.isnan(x), 0.0, x),
                                     minlength=ngroups)[present]
    return pd.DataFrame(cols)


def chunk_partial(df: pd.DataFrame, keys: list[str], inters, dropna: bool,
                  first_pos: int | None = None) -> pd.DataFrame:
    """The partial table of one partition (already filtered and projected)."""
    if first_pos is None and inters:
        fast = _dense_partial(df, keys, inters, dropna)
        if fast is not None:
            return fast
    if first_pos is not None:
        df = df.assign(**{FIRST_POS: np.arange(first_pos, first_pos + len(df), dtype="int64")})
    gb = df.groupby(keys, dropna=dropna, sort=False, observed=True)
    cols = {}
    for col, inter in inters:
        name = col + SEP + inter
        if inter == "size":
            cols[name] = gb.size()
        else:
            cols[name] = INTERMEDIATES[inter].chunk(gb[col])
    if first_pos is not None:
        cols[FIRST_POS] = gb[FIRST_POS].min()
    if not cols:
        cols["__n"] = gb.size()
    table = pd.DataFrame(cols).reset_index()
    for k in keys:  # grouped on codes; partials carry values (dictionaries differ per partition)
        if isinstance(table[k].dtype, pd.CategoricalDtype):
            table[k] = table[k].astype(table[k].cat.categories.dtype)
    return table


def combine_partials(a: pd.DataFrame | None, b: pd.DataFrame | None,
                     keys: list[str]) -> pd.DataFrame | None:
    """``a`` (earlier partitions) and ``b`` (later ones) merged into one partial."""
    if a is None:
        return b
    if b is None:
        return a
    t = pd.concat([a, b], ignore_index=True)
    gb = t.groupby(keys, dropna=False, sort=False, observed=True)
    cols = {}
    for name in t.columns:
        if name in keys:
            continue
        col, _, inter = name.rpartition(SEP)
        if name == FIRST_POS:
            cols[name] = gb[name].min()
        elif name == "__n" or inter == "size":
            cols[name] = gb[name].sum()
        elif inter in ("mean", "m2"):
            continue
        elif inter == "count" and (col + SEP + "mean") in t.columns:
            cols.update(_combine_moments(t, gb, col))
        else:
            cols[name] = INTERMEDIATES[inter].combine(gb[name])
    return pd.DataFrame(cols).reset_index()


def _combine_moments(t, gb, col):
    """Chan et al.: n = Σnᵢ, mean = Σnᵢ·meanᵢ / n, M2 = ΣM2ᵢ + Σnᵢ·(meanᵢ − mean)²."""
    n_name, mean_name, m2_name = (col + SEP + s for s in ("count", "mean", "m2"))
    n_i = t[n_name].astype("float64")
    mean_i = t[mean_name].astype("float64").where(n_i > 0, 0.0)
    n = gb[n_name].transform("sum").astype("float64")
    by = [t[k] for k in gb.keys]
    weighted = (n_i * mean_i).groupby(by, dropna=False, sort=False,
                                      observed=True).transform("sum")
    mean = _div(weighted, n.where(n > 0))
    # a group with one contributing partial keeps its mean bit for bit (combining with an
    # empty partial must be an identity, whichever path the partials took)
    contributors = (n_i > 0).groupby(by, dropna=False, sort=False, observed=True).transform("sum")
    only = mean_i.where(n_i > 0).groupby(by, dropna=False, sort=False,
                                         observed=True).transform("max")
    mean = only.where(contributors == 1, mean)
    out = {n_name: gb[n_name].sum(),
           mean_name: mean.groupby([t[k] for k in gb.keys], dropna=False, sort=False,
                                   observed=True).first()}
    if m2_name in t.columns:
        dev = (n_i * (mean_i - mean.fillna(0.0)) ** 2).where(n_i > 0, 0.0)
        m2_i = t[m2_name].astype("float64").where(n_i > 0, 0.0)
        out[m2_name] = (m2_i + dev).groupby([t[k] for k in gb.keys], dropna=False, sort=False,
                                           observed=True).sum()
    return out


def finalize_columns(table: pd.DataFrame, specs) -> list[pd.Series]:
    """One result Series per ``(column, agg)`` spec, aligned with the rows of ``table``."""
    out = []
    for col, agg in specs:
        if agg == "size":
            out.append(table[col + SEP + "size"].astype("int64"))
            continue
        a = get_aggregation(agg)
        parts = {inter: table[col + SEP + inter] for inter in a.needs}
        out.append(a.finalize(parts))
    return out
