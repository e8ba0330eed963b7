"""What a computation produces: each output is a chunk → combine → finalize triple over the
rows of one plan chain.

* :class:`AggOutput` — group-by aggregates, whole-frame/column reductions, ``len``,
  ``value_counts``: a partial group table (see :mod:`hpcframe.aggregations`);
* :class:`CollectOutput` — the frame itself (``Frame.compute()``, ``head``);
* :class:`MapOutput` — ``map_partitions``: one user result per partition;
* :class:`Composite` — several outputs finished together (``describe``).

``chunk(df, leaf)`` gets one partition's rows after the chain ran; ``combine(a, b)`` gets the
partials of earlier (``a``) and later (``b``) partitions; ``finalize(p)`` makes the pandas result
(``p`` is ``None`` when no partition had rows).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from . import aggregations as A
from . import plan as P


class Output:
    """A chunk / combine / finalize triple over one plan chain (see the module docstring)."""

    node = None  # the plan chain this output reads

    def columns(self) -> set[str]:
        """The columns of the chain this output reads."""
        raise NotImplementedError

    def leaves(self) -> list[Output]:
        """The simple outputs this one is made of."""
        return [self]

    def text(self) -> str:
        """A one-line description (for explain and errors)."""
        return type(self).__name__


class AggOutput(Output):
    """Aggregates ``specs = [(column, agg)]`` per group of ``keys`` (no keys: whole frame).

    ``shape(table_of_result_columns, keys_frame)`` turns the finalized columns into the
    pandas object the user asked for. ``pandas_fn(meta_df)`` is the same query in pandas; it
    is run on the empty frame to give empty results exactly the shape and dtypes pandas gives.
    """

    def __init__(
        self,
        node,
        keys,
        specs,
        shape: Callable,
        pandas_fn: Callable,
        dropna=True,
        sort=True,
        label="aggregate",
    ):
        self.node, self.keys, self.specs = node, list(keys), list(specs)
        self.shape, self.pandas_fn = shape, pandas_fn
        self.dropna, self.sort, self.label = dropna, sort, label
        self.inters = A.needed(self.specs)
        self.cat_keys = [k for k in self.keys if isinstance(node.meta[k].dtype, pd.CategoricalDtype)]

    def columns(self):
        """The columns of the chain this output reads."""
        return set(self.keys) | {c for c, _ in self.specs if c}

    def text(self):
        """A one-line description (for explain and errors)."""
        aggs = ", ".join(f"{a}({c})" if c else a for c, a in self.specs)
        by = f" by {self.keys}" if self.keys else ""
        return f"{self.label}: {aggs}{by}"

    def chunk(self, df, leaf):
        """The partial of one block's pandas rows ``df`` (of ``leaf``)."""
        keys = self.keys or [A.ALL_KEY]
        if not self.keys:
            df = df.assign(**{A.ALL_KEY: np.zeros(len(df), dtype="int8")})
        if len(df) == 0:
            return None
        return A.chunk_partial(df, keys, self.inters, self.dropna, None if self.sort else leaf.row_offset)

    def combine(self, a, b):
        """The partial of earlier (``a``) and later (``b``) blocks together."""
        return A.combine_partials(a, b, self.keys or [A.ALL_KEY])

    def finalize(self, table):
        """The pandas result from the combined partial (``None``: no block had rows)."""
        return self.shape_result(self.finish_table(table))

    def finish_table(self, table):
        """The combined partial as a table of key columns and finished result columns
        (``None`` if empty). Tables of disjoint groups can be concatenated (shuffle)."""
        if table is None or len(table) == 0:
            return None
        extra = [A.FIRST_POS] if A.FIRST_POS in table.columns else []
        out = table[self.keys + extra].reset_index(drop=True)
        for j, col in enumerate(A.finalize_columns(table, self.specs, self.node.meta.dtypes)):
            out[f"__result{j}"] = col.reset_index(drop=True)
        return out

    def shape_result(self, table):
        """The pandas result from finished tables: groups ordered as pandas orders them."""
        if table is None or len(table) == 0:
            if all(a in A.BUILTIN for _, a in self.specs):
                return self.pandas_fn(self.node.meta)  # pandas decides empty shapes/dtypes
            keys = self.node.meta[self.keys].iloc[:0].reset_index(drop=True)
            return self.shape([pd.Series([], dtype="float64") for _ in self.specs], keys)
        if self.keys:
            if self.sort:
                table = table.sort_values(self.keys, na_position="last", kind="mergesort")
            else:
                table = table.sort_values(A.FIRST_POS, kind="mergesort")
        keys = table[self.keys].reset_index(drop=True)
        for k in self.cat_keys:
            keys[k] = keys[k].astype(pd.CategoricalDtype(sorted(keys[k].dropna().unique())))
        cols = [table[f"__result{j}"].reset_index(drop=True) for j in range(len(self.specs))]
        return self.shape(cols, keys)


class CollectOutput(Output):
    """The rows of a chain, in dataset order (optionally only the first ``limit``)."""

    def __init__(self, node, limit: int | None = None):
        self.node, self.limit = node, limit
        # a hash-partitioned frame is stored by partition: its first rows are known only
        # after sorting everything by its row order (see hpcframe.stages)
        self.order = P.row_order(node)
        self.head = limit
        if self.order:
            self.limit = None

    def columns(self):
        """The columns of the chain this output reads."""
        return set(self.node.meta.columns)

    def text(self):
        """A one-line description (for explain and errors)."""
        return f"collect{'' if self.limit is None else f' head({self.limit})'}"

    def chunk(self, df, leaf):
        """The partial of one block's pandas rows ``df`` (of ``leaf``), in the frame's column
        order (a skipped dead Assign must not move a re-assigned column to the end)."""
        cols = list(self.node.meta.columns)
        if list(df.columns) != cols and set(df.columns) == set(cols):
            df = df[cols]
        return df if self.limit is None else df.head(self.limit)

    def combine(self, a, b):
        """The partial of earlier (``a``) and later (``b``) blocks together."""
        if a is None:
            return b
        if b is None or (self.limit is not None and len(a) >= self.limit):
            return a
        out = concat_frames(a, b)
        return out if self.limit is None else out.head(self.limit)

    def finalize(self, df):
        """The pandas result from the combined partial (``None``: no block had rows): sorted
        by the frame's row order, with its index (a group-by result's keys) and without its
        internal columns."""
        if df is None:
            df = self.node.meta.iloc[:0]
        if self.order:
            df = df.sort_values(self.order, na_position="last", kind="mergesort")
            if self.head is not None:
                df = df.head(self.head)
        index = P.frame_index(self.node)
        visible = P.visible_columns(self.node)
        if list(df.columns) != visible:
            df = df[index + visible]
        if index:
            for k in index:  # as in a group-by's index, a missing object key is NaN, not None
                if df[k].dtype == object:
                    df = df.assign(**{k: df[k].where(df[k].notna(), np.nan)})
            df = df.set_index(index if len(index) > 1 else index[0])
            # internal index columns (row labels, a quantile level) are unnamed, as in pandas
            names = [None if str(n).startswith("__hpcframe") else n for n in df.index.names]
            return df.rename_axis(names if len(names) > 1 else names[0])
        return df.reset_index(drop=True)


def concat_frames(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """``a`` then ``b``; categorical columns keep a categorical dtype with the union of both
    partitions' categories (each Parquet row group has its own dictionary)."""
    if len(a) == 0 or len(b) == 0:  # still the union of both partitions' categories
        out = b if len(a) == 0 and len(b) else a
        for col in out.columns:
            ta, tb = a[col].dtype, b[col].dtype
            if (
                isinstance(ta, pd.CategoricalDtype)
                and isinstance(tb, pd.CategoricalDtype)
                and not ta.categories.equals(tb.categories)
            ):
                cats = (
                    tb.categories
                    if len(ta.categories) == 0
                    else ta.categories.append(tb.categories[~tb.categories.isin(ta.categories)])
                )
                out = out.assign(**{col: out[col].cat.set_categories(cats)})
        return out
    fixed = {}
    for col in a.columns:
        ta, tb = a[col].dtype, b[col].dtype
        if (
            isinstance(ta, pd.CategoricalDtype)
            and isinstance(tb, pd.CategoricalDtype)
            and not ta.categories.equals(tb.categories)
        ):
            u = pd.api.types.union_categoricals([a[col], b[col]], ignore_order=True)
            fixed[col] = pd.Categorical.from_codes(u.codes, dtype=u.dtype)
    out = pd.concat([a, b], ignore_index=True)
    for col, values in fixed.items():
        out[col] = values
    return out


class MapOutput(Output):
    """``fn`` applied to every partition; results combined in partition order."""

    def __init__(self, node, fn, combine_fn=None):
        self.node, self.fn, self.combine_fn = node, fn, combine_fn

    def columns(self):
        """The columns of the chain this output reads."""
        return set(self.node.meta.columns)

    def text(self):
        """A one-line description (for explain and errors)."""
        return f"map_partitions({getattr(self.fn, '__name__', 'fn')})"

    def chunk(self, df, leaf):
        """The partial of one block's pandas rows ``df`` (of ``leaf``)."""
        return [self.fn(df)]

    def combine(self, a, b):
        """The partial of earlier (``a``) and later (``b``) blocks together."""
        if a is None:
            return b
        return a if b is None else a + b

    def finalize(self, parts):
        """The pandas result from the combined partial (``None``: no block had rows)."""
        parts = parts or []
        if self.combine_fn is not None:
            return self.combine_fn(parts)
        if not parts:
            return self.fn(self.node.meta)
        if all(isinstance(p, (pd.DataFrame, pd.Series)) for p in parts):
            return pd.concat(parts)
        return parts


class Composite(Output):
    """Several outputs computed in the same pass and finished by ``finish(results)``."""

    def __init__(self, parts: list[Output], finish: Callable, label: str):
        self.parts, self.finish, self.label = parts, finish, label
        self.node = parts[0].node if parts else None

    def leaves(self):
        """The simple outputs this one is made of."""
        return [leaf for p in self.parts for leaf in p.leaves()]

    def columns(self):
        """The columns of the chain this output reads."""
        return set().union(*(p.columns() for p in self.parts))

    def text(self):
        """A one-line description (for explain and errors)."""
        return self.label
