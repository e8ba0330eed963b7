"""Subtotals: ROLLUP-style totals per level of a multi-key group-by, in one pass.

For keys ``[k1, k2]`` the result has the detail groups, a ``(k1, "All")`` row after each
``k1`` value's details, and a final ``("All", "All")`` row, like
``pandas.pivot_table(..., margins=True)``. Totals add up the rows shown: with ``dropna=True``
rows with a missing key are left out of every level.
"""

from __future__ import annotations

import pandas as pd

from . import expr as E
from . import plan as P
from .outputs import AggOutput, Composite


def rollup(
    node: P.Node,
    keys: list[str],
    agg: str,
    cols: list[str],
    margins_name: str = "All",
    dropna: bool = True,
    sort: bool = True,
    as_index: bool = True,
    series: bool = False,
) -> Composite:
    """The output of ``groupby(keys)[cols].<agg>(subtotals=True)`` over ``node``: the detail
    groups, a subtotal row per level and a grand total (see the module docstring). ``series``:
    the result is a Series of ``cols[0]``. Raises ``ValueError`` when ``sort`` is False."""
    if not sort:
        raise ValueError("subtotals=True needs sort=True (totals are placed after the rows they add up)")
    notna = E.and_all([E.IsNa(E.Col(k), negate=True) for k in keys])
    if dropna and notna is not None:  # None: no keys (refused by groupby)
        node = P.Filter(node, notna)
    specs = [(c, agg) for c in cols]
    outs = [_level(node, keys[:n], specs, cols, agg) for n in range(len(keys), -1, -1)]

    def finish(results):
        return _assemble(results, keys, cols, margins_name, as_index, cols[0] if series else None)

    return Composite(outs, finish, f"groupby {agg} with subtotals")


def _level(node, keys, specs, cols, agg):
    def shape(values, key_frame):
        out = key_frame.copy()
        for c, v in zip(cols, values):
            out[c] = v.to_numpy()
        return out

    def pandas_fn(m):
        if keys:
            return getattr(m.groupby(keys, observed=True, dropna=False)[cols], agg)().reset_index()
        return pd.DataFrame([getattr(m[cols], agg)()])

    return AggOutput(
        node, keys, specs, shape, pandas_fn, dropna=False, sort=True, label=f"subtotal by {keys}"
    )


def _assemble(results, keys, cols, margins_name, as_index, series_name):
    frames = []
    for n, table in zip(range(len(keys), -1, -1), results):
        t = table.copy()
        for k in keys[n:]:
            t[k] = margins_name
        for k in keys:
            t[k] = t[k].astype(object)
        t["__level"] = n
        frames.append(t[keys + cols + ["__level"]])
    out = pd.concat(frames, ignore_index=True)
    order = []
    for k in keys:  # rank real values in sorted order; the margin after them
        is_margin = out[k].map(lambda v: isinstance(v, str) and v == margins_name) & (
            out["__level"] <= keys.index(k)
        )
        real = out.loc[~is_margin, k]
        uniq = pd.Series(real.dropna().unique())
        try:
            uniq = uniq.sort_values(kind="mergesort")
        except TypeError:
            uniq = uniq.astype(str).sort_values(kind="mergesort")
        rank = {v: i for i, v in enumerate(uniq)}
        r = out[k].map(lambda v, rank=rank: rank.get(v, len(rank)) if not pd.isna(v) else len(rank))
        r[is_margin] = len(rank) + 1
        order.append(r.rename(f"__r{k}"))
    ranks = pd.concat(order, axis=1)
    out = out.loc[ranks.sort_values(list(ranks.columns), kind="mergesort").index]
    out = out.drop(columns="__level").reset_index(drop=True)
    if not as_index:
        return out
    index = (
        pd.Index(out[keys[0]], name=keys[0], dtype=object)
        if len(keys) == 1
        else pd.MultiIndex.from_frame(out[keys])
    )
    if series_name is not None:
        return pd.Series(out[series_name].to_numpy(), index=index, name=series_name)
    result = out[cols].set_axis(index)
    return result
