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
from typing import Any

import numpy as np
import pandas as pd

from . import aggregations as A
from . import plan as P


# empty results with the dtypes the dataset has
def empty_meta(node):
    """``node.meta`` with the dtypes the data has, for results without any row (every
    partition pruned by its statistics, or no row passing the filters).

    ``node.meta`` comes from the first file's schema; after discovery the source's schema
    flags every int or bool column with a null in any partition (float64, resp. object, in
    pandas: see :mod:`hpcframe.io.types`). Those columns are replaced in the Scan's empty
    frame and the chain's Assigns and Projects are run again on it, so that a column computed
    from them gets pandas' dtype too. A materialised stage (``persist``...) is read the same
    way: its held data's schema tells which of its int or bool columns hold nulls."""
    import pyarrow as pa

    from .io.types import block_to_pandas, normalize_table
    from .stages import StageSource

    chain = node.chain()
    source, base = chain[0].source, chain[0].meta
    if isinstance(source, StageSource) and not source.ready:
        return node.meta
    try:
        schema = source.schema()  # discovered by now: flags the columns with a null
    except Exception:  # a source that cannot tell: its first file's types
        return node.meta
    narrow = [
        c
        for c in base.columns
        if isinstance(base[c].dtype, np.dtype) and base[c].dtype.kind in "iub" and c in schema.names
    ]
    if not narrow:
        return node.meta
    empty = pa.schema([schema.field(c) for c in narrow]).empty_table()
    declared = block_to_pandas(normalize_table(empty, schema), schema)
    wide = [
        c
        for c in narrow
        if declared[c].dtype == (object if base[c].dtype.kind == "b" else np.dtype("float64"))
    ]
    if not wide:
        return node.meta
    df = base.copy()
    for c in wide:
        df[c] = declared[c]
    try:
        for n in chain[1:]:
            if isinstance(n, P.Assign):  # as Assign.__init__ computes its meta
                value = n.expr.evaluate(df)
                if not isinstance(value, pd.Series):  # a scalar
                    value = pd.Series([], dtype=np.asarray(value).dtype)
                df[n.name] = value
            elif isinstance(n, P.Project):
                df = df[n.columns]
    except Exception:  # an expression pandas refuses on these dtypes: it fails on the data too
        return node.meta
    if list(df.columns) != list(node.meta.columns):
        return node.meta
    df.index = node.meta.index
    return df


# results with the dtypes of the dataset when blocks decided them
def widen_result(out, result):
    """``result`` of ``out`` with the dtypes pandas gives it over the whole dataset.

    A CSV source learns while it reads which integer (bool) columns hold an empty field
    somewhere (:meth:`hpcframe.io.csv.CSVSource.adopt_nulls`); pandas makes them float64
    (object) in the whole frame, but blocks read before that was known kept int64 (bool). A
    result whose rows all come from such blocks is cast here to the dtypes pandas gives it:
    those of the same query on :func:`empty_meta` (the widened dtypes), where they differ
    from the query on the frame's first-file dtypes and the result still has the narrow
    integer or bool dtype. Integers beyond 2**53 are rounded as pandas rounds them. Row
    results (``compute``, ``head``, ``nlargest``) and aggregates with built-in functions
    are handled; other outputs (``map_partitions``, user aggregations) keep their dtypes."""
    if result is None or not isinstance(out, (AggOutput, CollectOutput, TopOutput)):
        return result
    narrow = out.node.meta.iloc[:0]
    wide = empty_meta(out.node)
    if wide is out.node.meta or list(wide.dtypes) == list(narrow.dtypes):
        return result
    try:
        if isinstance(out, AggOutput):
            if not all(a in A.BUILTIN for _, a in out.specs):
                return result
            return _cast_like(result, out.pandas_fn(wide.iloc[:0]), out.pandas_fn(narrow))
        if isinstance(result, pd.DataFrame):
            return _cast_columns(result, wide, narrow)
    except Exception:  # pandas refuses the query on the empty frames: keep the result as is
        return result
    return result


def _widened(got, want, had) -> bool:
    """Whether a column of dtype ``got`` must become ``want`` (it is ``had`` on the frame's
    first-file dtypes): an integer or bool result that pandas makes float64 or object."""
    return (
        isinstance(got, np.dtype)
        and got.kind in "iub"
        and want != had
        and (want == np.dtype("float64") or want == np.dtype(object))
    )


def widen_frame(df, wide: pd.DataFrame, narrow: pd.DataFrame):
    """``df`` (rows of a frame, e.g. a partition of a persisted frame) with its integer or
    bool columns cast to float64 or object where the frame's dtypes over the whole dataset
    (``wide``, :func:`empty_meta`) differ from its first-file dtypes (``narrow``)."""
    if not isinstance(df, pd.DataFrame):
        return df
    return _cast_columns(df, wide, narrow)


def group_frame_dtypes(out, labels: list[str]):
    """For a group-by result held as a frame (an ``AggStage``: columns ``out.keys`` then
    ``labels``): ``(wide, narrow)`` empty frames with those columns, the dtypes pandas gives
    them over the whole dataset and over the first file's dtypes (see
    :func:`widen_frame`), or ``None`` when nothing differs or pandas cannot tell."""
    if not isinstance(out, AggOutput) or not all(a in A.BUILTIN for _, a in out.specs):
        return None
    node: Any = out.node
    wide = empty_meta(node)
    if wide is node.meta:
        return None
    flat = []
    try:
        for meta in (wide.iloc[:0], node.meta.iloc[:0]):
            r = out.pandas_fn(meta)
            r = r.to_frame() if isinstance(r, pd.Series) else r
            keyed = out.keys and isinstance(r, pd.DataFrame) and list(r.columns[: len(out.keys)]) == out.keys
            if keyed and r.shape[1] == len(out.keys) + len(labels):  # as_index=False: keys first
                r = r.set_index(out.keys)
            if not isinstance(r, pd.DataFrame) or r.shape[1] != len(labels):
                return None
            values = r.set_axis(labels, axis=1)
            keys = r.index.to_frame(index=False) if list(r.index.names) == out.keys else None
            flat.append(
                values.reset_index(drop=True)
                if keys is None
                else pd.concat([keys, values.reset_index(drop=True)], axis=1)
            )
    except Exception:  # pandas refuses the query on the empty frames
        return None
    return flat[0], flat[1]


def join_frame_dtypes(stage):
    """For a join's result partitions (a ``JoinStage``): ``(wide, narrow)`` empty frames of
    the columns each side contributes, under their result names, with the dtypes of the
    side over its whole dataset and over its first file's dtypes (see :func:`widen_frame`).
    pandas' own decisions of the merge (an int column of a side that can miss a match
    becomes float64) are made afterwards from the data (``joins.adopt_schema``)."""
    wide, narrow = {}, {}
    for node, pairs in ((stage.left, stage.left_cols), (stage.right, stage.right_cols)):
        w, n = empty_meta(node), node.meta
        for col, name in pairs:
            if col in w.columns and col in n.columns:
                wide[name], narrow[name] = w[col], n[col].iloc[:0]
    return pd.DataFrame(wide), pd.DataFrame(narrow)


def _cast_columns(result: pd.DataFrame, wide: pd.DataFrame, narrow: pd.DataFrame) -> pd.DataFrame:
    fixed = {
        c: result[c].astype(wide[c].dtype)
        for c in result.columns
        if c in wide.columns
        and c in narrow.columns
        and _widened(result[c].dtype, wide[c].dtype, narrow[c].dtype)
    }
    return result.assign(**fixed) if fixed else result


def _cast_index(index: pd.Index, wide: pd.Index, narrow: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        if not (isinstance(wide, pd.MultiIndex) and isinstance(narrow, pd.MultiIndex)):
            return index
        if not (index.nlevels == wide.nlevels == narrow.nlevels):
            return index
        levels = [
            lev.astype(w.dtype) if _widened(lev.dtype, w.dtype, n.dtype) else lev
            for lev, w, n in zip(index.levels, wide.levels, narrow.levels)
        ]
        return index.set_levels(levels)
    if isinstance(wide, pd.MultiIndex) or isinstance(narrow, pd.MultiIndex):
        return index
    if _widened(index.dtype, wide.dtype, narrow.dtype):
        return index.astype(wide.dtype)
    return index


def _cast_like(result, wide, narrow):
    """``result`` (a query's answer) cast where the same query on the widened empty frame
    (``wide``) and on the first-file empty frame (``narrow``) differ in dtype."""
    frames = (result, wide, narrow)
    if all(isinstance(x, pd.DataFrame) for x in frames):
        if not (list(result.columns) == list(wide.columns) == list(narrow.columns)):
            return result
        out = result.copy(deep=False)
        for j, (w, n) in enumerate(zip(wide.dtypes, narrow.dtypes)):
            if _widened(result.iloc[:, j].dtype, w, n):
                out.isetitem(j, result.iloc[:, j].astype(w))
        out.index = _cast_index(result.index, wide.index, narrow.index)
        return out
    if all(isinstance(x, pd.Series) for x in frames):
        if _widened(result.dtype, wide.dtype, narrow.dtype):
            result = result.astype(wide.dtype)
        index = _cast_index(result.index, wide.index, narrow.index)
        if index is not result.index:
            result = result.set_axis(index)
        return result
    if (
        isinstance(result, (int, np.integer))
        and not isinstance(result, (bool, np.bool_))
        and isinstance(wide, (float, np.floating))
    ):
        return np.float64(result)
    if type(wide) is int and type(narrow) is not int and isinstance(result, np.integer):
        return int(result)  # the sum of an object (bool with nulls) column: a Python int
    return result


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
        if len(df) == 0:
            return None
        if not self.keys:
            if self.sort:  # the same partial, without a key column added to the block
                fast = A.whole_partial(df, self.inters)
                if fast is not None:
                    return fast
            df = df.assign(**{A.ALL_KEY: np.zeros(len(df), dtype="int8")})
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
        for j, col in enumerate(
            A.finalize_columns(table, self.specs, self.node.meta.dtypes, bool(self.keys))
        ):
            out[f"__result{j}"] = col.reset_index(drop=True)
        return out

    def shape_result(self, table):
        """The pandas result from finished tables: groups ordered as pandas orders them."""
        if table is None or len(table) == 0:
            if all(a in A.BUILTIN for _, a in self.specs):
                return self.pandas_fn(empty_meta(self.node))  # pandas decides empty shapes/dtypes
            keys = empty_meta(self.node)[self.keys].iloc[:0].reset_index(drop=True)
            return self.shape([pd.Series([], dtype="float64") for _ in self.specs], keys)
        if self.keys:
            if self.sort:
                table = sort_by_keys(table, self.keys)
            else:
                table = table.sort_values(A.FIRST_POS, kind="mergesort")
        keys = table[self.keys].reset_index(drop=True)
        # (as it is now: a join that ran may have found a key not categorical)
        for k in [k for k in self.keys if isinstance(self.node.dtype_now(k), pd.CategoricalDtype)]:
            keys[k] = keys[k].astype(observed_categories(keys[k]))
        cols = [table[f"__result{j}"].reset_index(drop=True) for j in range(len(self.specs))]
        if self.keys:  # a float32 group std's dtype depends on every group's value
            dtypes = self.node.meta.dtypes
            for j, (col, agg) in enumerate(self.specs):
                if agg == "std" and col in dtypes:
                    cols[j] = A.group_std_dtype(cols[j], dtypes[col])
        return self.shape(cols, keys)


def observed_categories(values) -> pd.CategoricalDtype:
    """The dtype of a categorical group key in a group-by result: its categories are the
    values observed (``values``: every group's key, any sequence), without nulls, distinct
    and sorted (the combine makes such keys strings; not the categories of the input).
    :meth:`AggOutput.shape_result` and a shuffled group-by's partitions (the values of every
    rank, ``hpcframe.execute._Spread``) type them both so."""
    return pd.CategoricalDtype(sorted(pd.Series(values).dropna().unique()))


def sort_by_keys(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``table.sort_values(keys, na_position="last", kind="mergesort")``, faster: pandas
    sorts raw int64 keys with ``numpy.lexsort`` (a merge sort per key); here every key
    becomes small ordered codes (an integer key its offset from the minimum, a string key
    its categorical codes, as pandas' sort makes them), combined into one int64 sorted
    once (stable). The same permutation; one key (pandas sorts it alone, without a lexsort)
    and other key types use ``sort_values``."""
    if len(keys) < 2:
        return table.sort_values(keys, na_position="last", kind="mergesort")
    codes = []
    for k in keys:
        col = table[k]
        dtype = col.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iub" and len(col):
            x = col.to_numpy()
            if dtype.kind == "b":
                x = x.astype(np.int64)
            lo, hi = int(x.min()), int(x.max())
            if hi - lo >= 2**62:
                return table.sort_values(keys, na_position="last", kind="mergesort")
            codes.append((A.int_offsets(x, lo), hi - lo + 1))  # (in int64: int8 127 - -1)
        elif isinstance(dtype, pd.StringDtype):
            cat = pd.Categorical(col, ordered=True)
            n = len(cat.categories)
            c = cat.codes.astype(np.int64)
            codes.append((np.where(c < 0, n, c), n + 1))  # missing last
        else:
            return table.sort_values(keys, na_position="last", kind="mergesort")
    ids = np.zeros(len(table), dtype=np.int64)
    for c, width in codes:
        if int(ids.max(initial=0)) >= (2**62) // width:  # compress, keeping the order
            ids = np.unique(ids, return_inverse=True)[1].astype(np.int64).reshape(-1)
        ids = ids * width + c
    return table.take(np.argsort(ids, kind="stable"))


#: internal column of ordered collected results: a row's position in the frame (its label)
LABEL = "__hpcframe_label__"


class CollectOutput(Output):
    """The rows of a chain, in the frame's row order (:func:`hpcframe.plan.row_sort`:
    dataset order, a ``sort_values`` or a stage's order), optionally only the first
    (``limit``) or last (``tail=True``) ``n`` of them.

    A frame without an order keeps the plain path: partials are concatenated in dataset
    order and ``head(n)`` stops reading once it holds ``n`` rows (``self.limit``). An
    ordered frame (and any ``tail``) is a *top-n*: each block keeps only its first ``n`` rows
    in the frame's order (a stable sort of the block, then head) and partials are combined
    in leaf order, so ties stay in dataset order; the shortcut of reading only the leading
    partitions is not used (``self.limit`` is ``None``). Every row carries its position in
    the unsorted frame (``LABEL``, offset by the rows of earlier partials), which becomes
    the result's index, as pandas keeps row labels through a sort."""

    def __init__(self, node, limit: int | None = None, tail: bool = False):
        self.node = node
        self.spec = P.row_sort(node)
        self.order = self.spec.columns
        self.sort = P.last_sort(node)
        self.head = limit
        self.tail = bool(tail)
        self.ordered = bool(self.spec) or self.tail
        self.limit = None if self.ordered else limit
        self.index = P.frame_index(node)
        # labels of a frame over a source with an order (a shuffled or grouped frame) are
        # ranks in that order: known only with every row
        base = P.source_sort(node.scan().source)
        self.base = base if (base and not self.index) else None
        # a filter after the sort: labels are the rows' positions in the dataset
        self.absolute = _filtered_after_sort(node)
        self.labels = None if self.index else row_labels(node)
        may_cut = self.ordered and limit is not None and self.base is None
        self._topn: bool | None = None if may_cut else False  # (see topn)

    @property
    def topn(self) -> bool:
        """Whether each block and partial keeps only its first ``n`` rows in the frame's
        order: an ordered head/tail not by a categorical column. Decided at the first block
        (the dtypes of a merged frame's columns are known once its join ran: a key
        categorical on both sides is ``str`` when the categories differ)."""
        if self._topn is None:
            self._topn = not _categorical(self.node, self.order)
        return self._topn

    def columns(self):
        """The columns of the chain this output reads."""
        return set(self.node.meta.columns)

    def text(self):
        """A one-line description (for explain and errors)."""
        if self.head is None:
            what = ""
        else:
            what = f" {'tail' if self.tail else 'head'}({self.head})"
        by = f" sorted by {self.order}" if self.order else ""
        return f"collect{what}{by}"

    def _frame(self, df):
        cols = list(self.node.meta.columns)
        if list(df.columns) != cols and set(df.columns) == set(cols):
            df = df[cols]
        return df

    def _cut(self, df):
        df = P.sort_rows(_candidate_rows(df, self.spec, self.head, self.tail), self.spec)
        return df.tail(self.head) if self.tail else df.head(self.head)

    def chunk(self, df, leaf):
        """The partial of one block's pandas rows ``df`` (of ``leaf``), in the frame's column
        order (a skipped dead Assign must not move a re-assigned column to the end); for an
        ordered frame ``(rows with their LABEL, number of rows in the block)``."""
        df = self._frame(df)
        if not self.ordered:
            return df if self.limit is None else df.head(self.limit)
        df, n = _with_labels(df, leaf, self.absolute, self.labels)
        if self.topn:
            df = self._cut(df)
        return (df, n)

    def combine(self, a, b):
        """The partial of earlier (``a``) and later (``b``) blocks together."""
        if a is None:
            return b
        if b is None:
            return a
        if self.ordered:
            (da, na), (db, nb) = a, b
            db = db.assign(**{LABEL: db[LABEL].to_numpy() + np.int64(na)})
            out = concat_frames(da, db)
            return (self._cut(out) if self.topn else out, na + nb)
        if self.limit is not None and len(a) >= self.limit:
            return a
        out = concat_frames(a, b)
        return out if self.limit is None else out.head(self.limit)

    def finalize(self, df):
        """The pandas result from the combined partial (``None``: no block had rows): in the
        frame's row order, with its index (a group-by result's keys, or the rows' labels)
        and without its internal columns."""
        if self.ordered:
            return self._finalize_ordered(df)
        if df is None:
            df = empty_meta(self.node).iloc[:0]
        return self._shape(df)

    def _finalize_ordered(self, partial):
        if partial is None:
            df = empty_meta(self.node).iloc[:0].assign(**{LABEL: np.zeros(0, dtype="int64")})
        else:
            df = partial[0]
        # the orders are computed on the columns they need, and only the rows
        #    returned are taken (a head of a group-by result: 20 rows of 400 k)
        order = None
        if self.base is not None and self.labels is None and len(df):  # labels: ranks in the frame's order
            order = P.sort_order(df, self.base, np.argsort(df[LABEL].to_numpy(), kind="stable"))
            labels = np.empty(len(df), dtype="int64")
            labels[order] = np.arange(len(df), dtype="int64")
            df = df.assign(**{LABEL: labels})
        if self.spec and len(df) > 1:
            order = P.sort_order(df, self.spec, order)
        if order is not None:
            if self.head is not None:  # pandas' head/tail of the sorted rows (any n)
                pick = pd.Series(order)
                order = (pick.tail(self.head) if self.tail else pick.head(self.head)).to_numpy()
            df = df.take(order)
        elif self.head is not None:
            df = df.tail(self.head) if self.tail else df.head(self.head)
        labels = df[LABEL].to_numpy()
        if self.sort is not None and self.sort.ignore_index:  # positions in the sorted frame
            total = 0 if partial is None else partial[1]
            first = total - len(df) if self.tail else 0
            labels = np.arange(first, first + len(df), dtype="int64")
        return self._shape(df, labels=labels)

    def _shape(self, df, labels=None):
        index = self.index
        visible = P.visible_columns(self.node)
        if list(df.columns) != index + visible:
            df = df[index + visible]
        if index:
            for k in index:  # as in a group-by's index, a missing object key is NaN, not None
                if df[k].dtype == object:
                    df = df.assign(**{k: df[k].where(df[k].notna(), np.nan)})
            df = df.set_index(index if len(index) > 1 else index[0])
            if self.sort is not None and self.sort.ignore_index:
                df.index = pd.Index(labels if labels is not None else np.arange(len(df)), dtype="int64")
                return df
            # internal index columns (row labels, a quantile level) are unnamed, as in pandas
            names = [None if str(n).startswith("__hpcframe") else n for n in df.index.names]
            return df.rename_axis(names if len(names) > 1 else names[0])
        if labels is None:
            return df.reset_index(drop=True)
        df.index = _labels_index(labels)
        return df


def _candidate_rows(df, spec: P.RowSort, n: int, tail: bool):
    """The rows of ``df`` that can be among its first (``tail``: last) ``n`` in the order
    ``spec``, in their order: those not after the ``n``-th value of the first key (every tie
    kept), found by a linear-time selection instead of a sort. ``df`` itself when the first
    key is not a plain numpy number or time column, or when that would not remove much."""
    if not spec.columns:  # dataset order (a tail): the block's last rows
        return df.tail(n) if tail else df.head(n)
    if len(df) <= 4 * max(n, 1):
        return df
    col = df[spec.columns[0]]
    dtype = col.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iufM":
        return df
    values = col.to_numpy()
    missing = np.isnan(values) if dtype.kind == "f" else (np.isnat(values) if dtype.kind == "M" else None)
    if dtype.kind == "M":
        values = values.view("int64")
    ascending, missing_first = spec.ascending[0], spec.na_position[0] == "first"
    if tail:  # the last rows: the first ones of the reversed order
        ascending, missing_first = not ascending, not missing_first
    present = values if missing is None else values[~missing]
    n_missing = len(values) - len(present)
    if missing_first and n_missing >= n:
        return df[missing]
    need = n - n_missing if missing_first else n
    if len(present) <= need or need <= 0:
        return df
    if ascending:
        bound = np.partition(present, need - 1)[need - 1]
        keep = values <= bound
    else:
        bound = np.partition(present, len(present) - need)[len(present) - need]
        keep = values >= bound
    if missing is not None:
        keep &= ~missing
        if missing_first:
            keep |= missing
    return df[keep]


def _filtered_after_sort(node) -> bool:
    """Whether a filter follows the last ``sort_values`` of ``node``'s chain."""
    chain = node.chain()
    sort = P.last_sort(node)
    return sort is not None and any(isinstance(n, P.Filter) for n in chain[chain.index(sort) + 1 :])


def row_labels(node) -> str | None:
    """The hidden column of ``node``'s source that holds its rows' labels (a stage's
    ``row_labels``: a semi-join after a sort keeps the sorted frame's labels), or ``None``:
    the labels are then positions, or ranks in the source's order."""
    column = getattr(node.scan().source, "row_labels", None)
    return column if column is not None and column in node.meta.columns else None


def _with_labels(df, leaf, absolute: bool, column: str | None = None):
    """``(df with its rows' labels, rows counted for the next blocks' labels)``: positions
    among the block's rows, offset later by the rows of earlier blocks; or (``absolute``)
    the rows' positions in the dataset (a pandas filter keeps them as the index); or the
    labels the source holds in ``column`` (:func:`row_labels`)."""
    if column is not None:
        return df.assign(**{LABEL: df[column].to_numpy(dtype="int64")}), 0
    if absolute:
        pos = np.int64(leaf.row_offset) + df.index.to_numpy(dtype="int64")
        return df.assign(**{LABEL: pos}), 0
    n = len(df)
    return df.assign(**{LABEL: np.arange(n, dtype="int64")}), n


def _labels_index(labels) -> pd.Index:
    """Row labels as an index: a ``RangeIndex`` when they are consecutive (an unsorted
    frame, its head or tail), as pandas gives them."""
    labels = np.asarray(labels, dtype="int64")
    if len(labels) == 0 or (labels[-1] - labels[0] == len(labels) - 1 and bool((np.diff(labels) == 1).all())):
        start = int(labels[0]) if len(labels) else 0
        return pd.RangeIndex(start, start + len(labels))
    return pd.Index(labels, dtype="int64")


def _categorical(node, cols) -> bool:
    """Whether one of ``cols`` is categorical: its order is the categories' order, which
    each partition may list differently (known only once all are combined)."""
    return any(isinstance(node.dtype_now(c), pd.CategoricalDtype) for c in cols if c in node.meta.columns)


class TopOutput(Output):
    """``nlargest``/``nsmallest``: the ``n`` rows with the largest (smallest) values of
    ``columns``, as pandas selects them, without sorting the frame. Each block keeps its
    candidates (its own ``n + 1`` best rows with every tie, and those preferring later
    rows: a superset of its rows in the answer for any ``keep``), partials
    are combined in leaf order, and pandas' own ``nlargest`` picks the answer from the
    candidates put back in the frame's order, with their labels."""

    def __init__(self, node, n: int, columns: list[str], keep: str, largest: bool):
        self.node, self.n, self.by, self.keep, self.largest = node, int(n), list(columns), keep, largest
        self.spec = P.row_sort(node)
        self.index = P.frame_index(node)
        sort = P.last_sort(node)
        base = P.source_sort(node.scan().source)
        self.base = base if (base and not self.index) else None
        self.absolute = _filtered_after_sort(node)
        self.labels = None if self.index else row_labels(node)
        self.labels_ignored = sort is not None and sort.ignore_index
        self.prune = self.base is None and not self.labels_ignored

    def columns(self):
        """The columns of the chain this output reads."""
        return set(self.node.meta.columns)

    def text(self):
        """A one-line description (for explain and errors)."""
        return f"{'nlargest' if self.largest else 'nsmallest'}({self.n}, {self.by}, keep={self.keep!r})"

    def _select(self, df, n, keep):
        return df.nlargest(n, self.by, keep=keep) if self.largest else df.nsmallest(n, self.by, keep=keep)

    def _candidates(self, df):
        # n + 1: pandas sorts instead of selecting when asked for as many rows as it has,
        # so the candidates of more than n rows are more than n rows too
        k = self.n + 1
        if not self.prune or len(df) <= k:
            return df
        rows = np.union1d(
            self._select(df, k, "all")[LABEL].to_numpy(),
            self._select(df, k, "last")[LABEL].to_numpy(),
        )
        return df[df[LABEL].isin(rows)]

    def chunk(self, df, leaf):
        """This block's candidates with their labels, and its number of rows."""
        cols = list(self.node.meta.columns)
        if list(df.columns) != cols and set(df.columns) == set(cols):
            df = df[cols]
        df, n = _with_labels(df, leaf, self.absolute, self.labels)
        return (self._candidates(df.reset_index(drop=True)), n)

    def combine(self, a, b):
        """The candidates of earlier (``a``) and later (``b``) blocks together."""
        if a is None:
            return b
        if b is None:
            return a
        (da, na), (db, nb) = a, b
        db = db.assign(**{LABEL: db[LABEL].to_numpy() + np.int64(na)})
        return (self._candidates(concat_frames(da, db)), na + nb)

    def finalize(self, partial):
        """pandas' selection from the candidates in the frame's order."""
        if partial is None:
            df = empty_meta(self.node).iloc[:0].assign(**{LABEL: np.zeros(0, dtype="int64")})
        else:
            df = partial[0].sort_values(LABEL, kind="stable")
        if self.base is not None:
            df = P.sort_rows(df, self.base)
            if self.labels is None:  # labels: ranks in the frame's order
                df = df.assign(**{LABEL: np.arange(len(df), dtype="int64")})
        df = P.sort_rows(df, self.spec)
        visible = P.visible_columns(self.node)
        out = df[self.index + visible]
        if self.index:
            out = out.set_index(self.index if len(self.index) > 1 else self.index[0])
        elif self.labels_ignored:
            out = out.reset_index(drop=True)
        else:
            out.index = _labels_index(df[LABEL].to_numpy())
        return self._select(out, self.n, self.keep)


def concat_frames(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """``a`` then ``b`` (:func:`stack_frames`)."""
    return stack_frames([a, b])


def stack_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``frames`` one after the other (a new ``RangeIndex`` when there are
    several with rows); a column categorical in them keeps a categorical dtype with the
    union of their categories in order of first appearance (each Parquet row group has its
    own dictionary; ``pd.concat`` makes such a column ``str``), also from frames without
    rows."""
    union: dict[str, pd.CategoricalDtype] = {}
    for df in frames:
        for col, t in df.dtypes.items():
            if not isinstance(t, pd.CategoricalDtype):
                continue
            u = union.get(col)
            if u is None or len(u.categories) == 0:
                union[col] = t
            elif not _same_categories(u, t):
                add = t.categories[~t.categories.isin(u.categories)]
                if len(add):
                    union[col] = pd.CategoricalDtype(u.categories.append(add), ordered=u.ordered)
    rows = [df for df in frames if len(df)] or frames[:1]
    rows = [with_categories(df, union) for df in rows]
    return pd.concat(rows, ignore_index=True) if len(rows) > 1 else rows[0]


class BlockCategories:
    """The categories of a frame's categorical columns, block by block, made into one list
    per column: the union of every block's categories in leaf order (first appearance
    first), as pandas reading the files has them (Arrow unifies the dictionaries of the
    row groups in file order), unused categories included. Rows that are stacked before
    pandas sees them (a shuffle's or a sort's pieces, from several blocks and ranks) get
    these categories first, so that they stay categorical and the codes agree
    (``pd.concat`` of categoricals with different categories makes ``str``).

    ``note(df, leaf)`` records a block (also one without rows: a frame collected from its
    blocks keeps their categories, see :func:`concat_frames`); :meth:`union` (collective)
    makes the lists; :func:`with_categories` applies them."""

    def __init__(self):
        self.blocks: dict[int, dict[str, pd.CategoricalDtype]] = {}

    @classmethod
    def of(cls, frames: dict[int, pd.DataFrame]) -> BlockCategories:
        """The categories of the blocks ``{leaf_index: frame}`` (each :meth:`note`-d)."""
        blocks = cls()
        for leaf, df in frames.items():
            blocks.note(df, leaf)
        return blocks

    def note(self, df: pd.DataFrame, leaf_index: int) -> None:
        """Record the categories of ``df``'s categorical columns (block ``leaf_index``)."""
        found = {c: t for c, t in df.dtypes.items() if isinstance(t, pd.CategoricalDtype)}
        if found:
            self.blocks[leaf_index] = found

    def union(self, comm) -> dict[str, pd.CategoricalDtype]:
        """Collective: ``{column: CategoricalDtype}``, the union of every rank's blocks'
        categories in leaf order (the same on every rank). Each rank sends, per block,
        only the categories none of its earlier blocks had (those are in the union already
        when the block's turn comes): a dictionary every row group repeats travels once."""
        mine: list[tuple[int, str, pd.Index, bool]] = []
        seen: dict[str, pd.Index] = {}
        for leaf in sorted(self.blocks):
            for col, dtype in self.blocks[leaf].items():
                cats, before = dtype.categories, seen.get(col)
                new = cats if before is None else cats[~cats.isin(before)]
                if before is None or len(new):
                    mine.append((leaf, col, new, bool(dtype.ordered)))
                    seen[col] = new if before is None else before.append(new)
        everyone = [entry for got in comm.allgather(mine) for entry in got]
        everyone.sort(key=lambda entry: entry[0])  # stable: one leaf's columns stay together
        out: dict[str, pd.CategoricalDtype] = {}
        for _, col, new, ordered in everyone:
            if col not in out:
                out[col] = pd.CategoricalDtype(new, ordered=ordered)
            elif len(new):
                cats = out[col].categories
                add = new[~new.isin(cats)]
                if len(add):
                    out[col] = pd.CategoricalDtype(cats.append(add), ordered=out[col].ordered)
        return out


def with_categories(df: pd.DataFrame, dtypes: dict) -> pd.DataFrame:
    """``df`` with its categorical columns recoded to ``dtypes`` (``{column:
    CategoricalDtype}``, see :class:`BlockCategories`); the others as they are."""
    change = {}
    for c, t in dtypes.items():
        now = df[c].dtype if c in df.columns else None
        if isinstance(now, pd.CategoricalDtype) and not _same_categories(now, t):
            change[c] = df[c].cat.set_categories(t.categories, ordered=t.ordered)
    return df.assign(**change) if change else df


def recode_pieces(pieces: list[pd.DataFrame], dtypes: dict) -> list[pd.DataFrame]:
    """``pieces`` (rows of several blocks and ranks, to be stacked) with their categorical
    columns recoded to ``dtypes`` (``{column: CategoricalDtype}``, the union of every
    block's, :meth:`BlockCategories.union`), so that ``pd.concat`` keeps them categorical
    and their codes agree. An exchange recodes its pieces before sending them and again on
    arrival: a received piece's categories are not always as sent (a piece's Arrow
    dictionary could differ). ``pieces`` as they are when ``dtypes`` is empty."""
    if not dtypes:
        return pieces
    return [with_categories(p, dtypes) for p in pieces]


def _same_categories(a: pd.CategoricalDtype, b: pd.CategoricalDtype) -> bool:
    """The same categories in the same order (``==`` of unordered dtypes ignores the order)."""
    return a.ordered == b.ordered and a.categories.equals(b.categories)


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
            return self.fn(empty_meta(self.node))
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
