"""Logical plan: a chain of row-wise nodes over one Scan, and the optimiser's questions.

``Scan → Filter/Assign/Project → ...``: every lazy frame is one such chain. Outputs (group-by
aggregates, reductions, collected frames, map_partitions) hang off a chain; several outputs over
the same Scan share one pass over the data (see :mod:`hpcframe.execute`).

The optimiser's passes are plain functions over a chain:

* :func:`required_columns` — which source columns a chain needs (projection pushdown);
* :func:`split_filters` — which leading predicates Arrow can evaluate while reading, and which
  stay in pandas (predicate pushdown);
* :func:`prune_predicate` — the predicate that partition statistics can be tested against.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

from .errors import ColumnNotFoundError
from .expr import Col, Expr, and_all, as_mask, balanced, conjuncts


class Node:
    """A plan node. ``meta`` is an empty pandas DataFrame with the node's columns and dtypes."""

    child: Node | None = None
    meta: Any = None  # an empty pandas DataFrame, set by every node's __init__

    def chain(self) -> list[Node]:
        """The nodes from the Scan up to this node."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None:
            out.append(node)
            node = node.child
        return out[::-1]

    def scan(self) -> Scan:
        """The Scan at the start of this chain."""
        return cast("Scan", self.chain()[0])  # every chain starts at a Scan

    def dtype_now(self, column: str):
        """The dtype of ``column`` as it is now. A join's declared dtypes become its data's
        once it ran (``joins.adopt_schema`` updates the Scan's meta in place), but a node
        built on it holds a copy: a column passed on unchanged from the Scan has the Scan's
        dtype, one computed along the chain (:class:`Assign`) its own; a copy of a column
        (``rename``) the dtype of the column it copies."""
        for node in reversed(self.chain()[1:]):
            if isinstance(node, Assign) and node.name == column:
                if isinstance(node.expr, Col) and node.child is not None:
                    return node.child.dtype_now(node.expr.name)
                return node.meta[column].dtype
        meta = self.scan().meta
        return (meta if column in meta.columns else self.meta)[column].dtype

    def text(self) -> str:
        """A one-line description of the node (for explain); every node kind defines it."""
        raise NotImplementedError

    def check_columns(self, names, where="the frame"):
        """Raise :class:`~hpcframe.ColumnNotFoundError` for a name in ``names`` that is not a column."""
        for n in names:
            if n not in self.meta.columns:
                raise ColumnNotFoundError(n, list(self.meta.columns), where)


class Scan(Node):
    """The rows of a data source (the start of every chain)."""

    def __init__(self, source, meta):
        self.source, self.meta = source, meta

    def text(self):
        """A one-line description of the node (for explain)."""
        return f"Scan {self.source.format} {self.source.label}"


def _check_mask(expr: Expr, value) -> None:
    """Refuse a mask of numbers, times or strings: pandas reads such a Series as column labels
    (``df[df.x]`` is a KeyError there), so filtering by its truth value would be a silent guess."""
    import pandas as pd

    dtype = getattr(value, "dtype", None)
    if (
        isinstance(value, pd.Series)
        and dtype is not None
        and not (pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_object_dtype(dtype))
    ):
        raise TypeError(
            f"the filter {expr.text()} gives {dtype} values, not booleans; compare "
            f"explicitly, e.g. df[df.x != 0] or df[df.x.notna()]"
        )


class Filter(Node):
    """The rows where an expression is true."""

    def __init__(self, child: Node, expr: Expr):
        child.check_columns(expr.columns())
        # as pandas, refuse now what the column types cannot do (a datetime column against a
        # datetime.date, ...), even if no block is ever evaluated (all pruned, head(0)); an
        # empty frame of the schema raises exactly the dtype-level errors and no data-level one
        _check_mask(expr, expr.evaluate(child.meta))
        self.child, self.expr, self.meta = child, expr, child.meta

    def text(self):
        """A one-line description of the node (for explain)."""
        return f"Filter {self.expr.text()}"


class Assign(Node):
    """A new or replaced column computed from an expression.

    ``order_copy``: ``expr`` is a column (``Col``) that a ``sort_values`` of the chain sorts
    by, and ``name`` a copy of it that the order reads from here on (:func:`row_sort`), so
    that later nodes may replace the column itself (``rename``, ``fillna``, ``astype``)."""

    def __init__(self, child: Node, name: str, expr: Expr, order_copy: bool = False):
        import pandas as pd

        child.check_columns(expr.columns())
        self.child, self.name, self.expr, self.order_copy = child, name, expr, order_copy
        meta = child.meta.copy()
        value = expr.evaluate(child.meta)
        meta[name] = value if isinstance(value, pd.Series) else pd.Series([value] * 0, dtype=_dtype_of(value))
        self.meta = meta

    def text(self):
        """A one-line description of the node (for explain)."""
        copy = " (the sort order's copy)" if self.order_copy else ""
        return f"Assign {self.name} = {self.expr.text()}{copy}"


class Project(Node):
    """A subset of the columns, in a given order. The frame's index and internal columns
    (see :func:`kept_columns`) are always kept, in front."""

    def __init__(self, child: Node, columns: list[str]):
        child.check_columns(columns)
        keep = [c for c in kept_columns(child) if c not in columns and c in child.meta.columns]
        self.child, self.columns, self.user_columns = child, keep + list(columns), list(columns)
        self.meta = child.meta[self.columns]

    def text(self):
        """A one-line description of the node (for explain)."""
        return f"Project {self.columns}"


class ResetIndex(Node):
    """The index (a group-by result's keys) becomes ordinary columns (``drop``: is dropped)."""

    def __init__(self, child: Node, drop: bool = False):
        self.child, self.drop, self.meta = child, drop, child.meta
        self.index = frame_index(child)

    def text(self):
        """A one-line description of the node (for explain)."""
        return f"ResetIndex {self.index}{' (dropped)' if self.drop else ''}"


def frame_index(node: Node) -> list[str]:
    """The columns that are the pandas index of ``node``'s frame (a group-by result's keys)."""
    index = list(getattr(node.scan().source, "index", []))
    for n in node.chain()[1:]:
        if isinstance(n, ResetIndex):
            index = []
    return index


def hidden_columns(node: Node) -> list[str]:
    """Internal columns of ``node``'s frame (row positions): never shown to the user."""
    return list(getattr(node.scan().source, "hidden", []))


class Sort(Node):
    """The same rows, ordered by ``by`` (``sort_values``): changes no row, only the order
    of the frame (see :func:`row_sort`). ``ascending``: one bool per key; ``na_position``:
    ``"last"`` or ``"first"``; ``ignore_index``: the collected result gets a fresh
    ``RangeIndex`` instead of the rows' labels."""

    def __init__(self, child: Node, by, ascending, na_position: str = "last", ignore_index: bool = False):
        by = [by] if isinstance(by, str) else list(by)
        if not by:
            raise ValueError("sort_values: 'by' names no column")
        child.check_columns(by, "the frame to sort")
        if isinstance(ascending, (list, tuple)):
            if len(ascending) != len(by):
                raise ValueError(f"Length of ascending ({len(ascending)}) != length of by ({len(by)})")
            ascending = list(ascending)
        else:
            ascending = [ascending] * len(by)
        import numpy as np

        for a in ascending:
            if not isinstance(a, (bool, np.bool_)):
                raise ValueError(f"ascending must be a bool or a list of bools, not {a!r}")
        if na_position not in ("first", "last"):
            raise ValueError(f"invalid na_position: {na_position!r} (use 'first' or 'last')")
        self.child, self.meta = child, child.meta
        self.by, self.ascending = by, [bool(a) for a in ascending]
        self.na_position, self.ignore_index = na_position, bool(ignore_index)

    def text(self):
        """A one-line description of the node (for explain)."""
        keys = ", ".join(f"{k} {'asc' if a else 'desc'}" for k, a in zip(self.by, self.ascending))
        return f"Sort [{keys}] nulls {self.na_position}"


class RowSort(NamedTuple):
    """The order of a frame's rows: sort by ``columns`` (``ascending`` and ``na_position``:
    one per column); rows that tie on every column stay in dataset order (a stable sort of
    the rows concatenated in partition order). Empty ``columns``: dataset order."""

    columns: list[str]
    ascending: list[bool]
    na_position: list[str]

    def __bool__(self) -> bool:
        return bool(self.columns)


def source_sort(source) -> RowSort:
    """The order a source declares for its rows (``order``, ``order_ascending``,
    ``na_position`` attributes; empty: dataset order)."""
    cols = list(getattr(source, "order", []) or [])
    asc = getattr(source, "order_ascending", None)
    # a list that does not match ``order`` (code that set ``order`` alone): the defaults
    asc = [bool(a) for a in asc] if asc is not None and len(asc) == len(cols) else [True] * len(cols)
    na = getattr(source, "na_position", "last") or "last"
    nas = (
        list(na)
        if not isinstance(na, str) and len(na) == len(cols)
        else [na if isinstance(na, str) else "last"] * len(cols)
    )
    return RowSort(cols, asc, nas)


def input_order(stage) -> RowSort:
    """The order of the rows a shuffle stage receives: its ``input_sort`` when its own order
    differs from its input's (a group-by result's keys), else its own (:func:`source_sort`)."""
    return getattr(stage, "input_sort", None) or source_sort(stage)


def only_columns(spec: RowSort, columns) -> RowSort:
    """``spec`` restricted to the keys among ``columns``."""
    keep = [i for i, c in enumerate(spec.columns) if c in set(columns)]
    return RowSort(
        [spec.columns[i] for i in keep],
        [spec.ascending[i] for i in keep],
        [spec.na_position[i] for i in keep],
    )


def row_sort(node: Node) -> RowSort:
    """The order of ``node``'s rows (:class:`RowSort`): the keys of the last ``Sort`` of its
    chain, then (ties) the order before that sort, down to the source's own order (its
    ``order``, ``order_ascending`` and ``na_position`` attributes: a hash-partitioned
    stage is stored by partition, not in the order pandas shows it); ties of everything
    keep dataset order. Every consumer (collected results, shuffles, sorts) uses this.

    Raises ``ValueError`` when a column the order depends on was replaced by an Assign
    after the sort (the order would need the old values), unless an order copy of it
    (``Assign(..., order_copy=True)``) came between: the sort then reads the copy."""
    levels = _sort_levels(node)
    cols: list[str] = []
    asc: list[bool] = []
    nas: list[str] = []
    for s, keys in reversed(levels):
        for k, a in zip(keys, s.ascending):
            if k not in cols:
                cols.append(k)
                asc.append(a)
                nas.append(s.na_position)
    base = source_sort(node.scan().source)
    for k, a, na in zip(*base):
        if k not in cols:
            cols.append(k)
            asc.append(a)
            nas.append(na)
    return RowSort(cols, asc, nas)


def _sort_levels(node: Node) -> list[tuple[Sort, list[str]]]:
    """The ``Sort`` nodes of ``node``'s chain, each with the names its keys have now (an
    order copy renames them); raises ``ValueError`` as :func:`row_sort` says."""
    levels: list[tuple[Sort, list[str]]] = []
    for n in node.chain()[1:]:
        if isinstance(n, Sort):
            levels.append((n, list(n.by)))
        elif isinstance(n, Assign) and n.order_copy:
            source = cast("Any", n.expr).name
            for _, keys in levels:
                keys[:] = [n.name if k == source else k for k in keys]
        elif isinstance(n, Assign) and levels and any(n.name in keys for _, keys in levels):
            raise ValueError(
                f"the column {n.name!r} was replaced after sort_values() sorted by it; assign "
                f"it before sorting, or sort again afterwards"
            )
    return levels


def sort_keys(node: Node) -> list[str]:
    """The columns the ``sort_values`` of ``node``'s chain sort by now (order copies
    included; not its source's own order)."""
    out: list[str] = []
    for _, keys in _sort_levels(node):
        out += [k for k in keys if k not in out]
    return out


def row_order(node: Node) -> list[str]:
    """The columns a collected result of ``node`` is sorted by (see :func:`row_sort`)."""
    return row_sort(node).columns


def last_sort(node: Node) -> Sort | None:
    """The last ``Sort`` of ``node``'s chain (``None``: not sorted by the user)."""
    for n in reversed(node.chain()[1:]):
        if isinstance(n, Sort):
            return n
    return None


def sort_order(df, spec: RowSort, order=None):
    """The positions of ``df``'s rows in the order ``spec`` (a stable sort: rows that tie
    keep their order in ``df``), as pandas' ``sort_values(kind="stable")`` orders them. One
    stable pass per column, the last column first, on that column alone: faster than
    pandas' multi-key sort, which factorizes every key. ``order``: positions of ``df``'s
    rows to sort instead (ties keep their order in ``order``): the result is
    ``order[sort_order(df.take(order), spec)]``, without taking the other columns."""
    import numpy as np

    spec = _decisive(df, spec)
    if order is None and len(spec.columns) == 2 and spec.ascending[1]:
        merged = _merged_runs(df, spec)
        if merged is not None:
            return merged
    order = np.arange(len(df)) if order is None else np.asarray(order, dtype=np.int64)
    for c, a, na in reversed(list(zip(*spec))):
        col = df[c]
        identity = len(order) == len(df) and (
            not len(order) or (order[0] == 0 and bool((np.diff(order) == 1).all()))
        )
        if identity and a and _in_order(col):
            continue  # already in order (rows in position order): nothing to do
        if not identity:
            col = col.take(order)
        # numbers, booleans and times: NumPy's quicksort made stable (fastsort)
        from .fastsort import stable_argsort

        fast = stable_argsort(col.to_numpy() if isinstance(col.dtype, np.dtype) else None, a, na == "last")
        if fast is not None:
            order = order[fast]
            continue
        ranked = col.reset_index(drop=True).sort_values(ascending=a, na_position=na, kind="stable")
        order = order[ranked.index.to_numpy()]
    return order


def _in_order(col) -> bool:
    """Whether ``col`` is ascending and has no missing value. (A categorical with a missing
    value is monotonic to pandas by its code, -1, first, whatever ``na_position``; float16:
    pandas cannot make the Index its ``is_monotonic_increasing`` needs.)"""
    import numpy as np

    probe = col.astype("float32") if col.dtype == np.float16 else col
    return bool(probe.is_monotonic_increasing) and not col.hasnans


def _merged_runs(df, spec: RowSort):
    """:func:`sort_order` of a sort by a NumPy column and then an integer column ascending
    (a sort_values' column and the rows' positions) when ``df`` is a few runs already in
    that order — a shuffle's pieces stacked, a rank's blocks' top rows — by one merge sort
    (:func:`hpcframe.fastsort.runs_argsort`); ``None`` otherwise."""
    import numpy as np

    from .fastsort import runs_argsort

    first, then = df[spec.columns[0]], df[spec.columns[1]]
    if not isinstance(first.dtype, np.dtype) or not (
        isinstance(then.dtype, np.dtype) and then.dtype.kind in "iu"
    ):
        return None
    return runs_argsort(first.to_numpy(), spec.ascending[0], spec.na_position[0] == "last", then.to_numpy())


# a sort by keys of which one is unique stops at that key
def _decisive(df, spec: RowSort) -> RowSort:
    """``spec`` without the columns after its first NumPy number, boolean or time column
    whose values are all distinct (no two equal as the sort compares them: ``-0.0`` equals
    ``0.0``, missing values tie): such a column orders every pair of rows, so the later
    columns never decide and the stable sort by the shorter ``spec`` is the same
    permutation. Checked only while a later column is one NumPy cannot sort (strings,
    objects, extension types: sorted by pandas, much dearer than this check's one
    quicksort); a group-by result's key order, ``[id, name, address, ...]``, is then sorted
    by ``id`` alone (TPC-H q10, q3, q18)."""
    import numpy as np

    from .fastsort import KINDS

    cols = spec.columns
    dear = [not (isinstance(df[c].dtype, np.dtype) and df[c].dtype.kind in KINDS) for c in cols]
    for j, c in enumerate(cols[:-1]):
        if not any(dear[j + 1 :]):
            break
        if dear[j]:
            continue
        values = df[c].to_numpy()
        kind = values.dtype.kind
        if kind in "mM":
            values = values.view(np.int64)
            missing = values == np.iinfo(np.int64).min
        elif kind == "f":
            missing = np.isnan(values)
        else:
            missing = None
        if missing is not None and missing.any():
            if int(missing.sum()) > 1:
                continue
            values = values[~missing]
        ranked = np.sort(values)
        if not bool((ranked[1:] == ranked[:-1]).any()):
            return RowSort(cols[: j + 1], spec.ascending[: j + 1], spec.na_position[: j + 1])
    return spec


def sort_rows(df, spec: RowSort):
    """``df`` stably sorted by ``spec`` (pandas' ``sort_values(kind="stable")``), keeping
    its index (see :func:`sort_order`)."""
    if not spec.columns or len(df) < 2:
        return df
    return df.take(sort_order(df, spec))


def kept_columns(node: Node) -> list[str]:
    """Columns every projection keeps: the index, the internal ones and the sort order."""
    out: list[str] = []
    for c in frame_index(node) + hidden_columns(node) + row_order(node):
        if c not in out:
            out.append(c)
    return out


def visible_columns(node: Node) -> list[str]:
    """The columns the user sees (``Frame.columns``): neither index nor internal columns,
    nor columns a projection kept only for the index or the row order."""
    chain = node.chain()
    index = list(getattr(node.scan().source, "index", []))
    skip = set(index) | set(hidden_columns(node))
    cols = [c for c in chain[0].meta.columns if c not in skip]
    for n in chain[1:]:
        if isinstance(n, Assign) and n.name not in cols and n.name not in skip:
            cols.append(n.name)
        elif isinstance(n, Project):
            cols = [c for c in n.user_columns if c not in skip]
        elif isinstance(n, ResetIndex) and n.index:
            if not n.drop:
                cols = n.index + [c for c in cols if c not in n.index]
                skip -= set(n.index)
    return cols


def visible_meta(node: Node):
    """``node.meta`` of the columns the user sees (:func:`visible_columns`): what an output
    over the whole frame (a reduction, ``describe``, a quantile) computes, as pandas would
    on the collected frame: never the index, hidden or row-order columns."""
    return node.meta[visible_columns(node)]


def _dtype_of(value):
    import numpy as np

    return np.asarray(value).dtype


def required_columns(steps, needed: set[str], source_columns) -> tuple[list[str], dict]:
    """The source columns that ``steps`` (nodes or pandas filter steps, in order) need to
    produce ``needed``, in ``source_columns`` order, and for each step (by ``id``) the columns
    needed *after* it (used to skip dead Assigns)."""
    after = {}
    need = set(needed)
    for n in reversed(list(steps)):
        after[id(n)] = set(need)
        if isinstance(n, (Filter, _BareFilter)):
            need |= n.expr.columns()
        elif isinstance(n, Assign):
            if n.name in need:
                need.discard(n.name)
                need |= n.expr.columns()
        elif isinstance(n, Project):
            need &= set(n.columns)
        elif isinstance(n, Sort):
            need |= set(n.by)
    return [c for c in source_columns if c in need], after


def split_filters(node: Node, arrow_schema) -> tuple[object, set[str], list]:
    """``(arrow_predicate, its_columns, pandas_steps)``: the conjuncts of the filters that sit
    directly on the Scan (before any Assign) and that Arrow evaluates exactly as pandas would,
    and the remaining chain to run in pandas (the untranslated conjuncts first)."""
    chain = node.chain()[1:]
    arrow_terms: list[tuple[Expr, Any]] = []
    rest_terms: list[tuple[Expr, Any]] = []
    i = 0
    while i < len(chain) and isinstance(chain[i], (Filter, Project, Sort)):
        step = chain[i]
        if isinstance(step, Filter):
            for term in conjuncts(step.expr):
                a = term.to_arrow(arrow_schema)
                (arrow_terms if a is not None else rest_terms).append((term, a))
        i += 1
    pred = balanced([a for _, a in arrow_terms], lambda x, y: x & y)  # shallow: no recursion limit
    rest = (
        [_BareFilter(t) for t, _ in rest_terms]
        + [n for n in chain[:i] if isinstance(n, (Project, Sort))]
        + chain[i:]
    )
    pred_columns = set().union(*(t.columns() for t, _ in arrow_terms))
    return pred, pred_columns, rest


class _BareFilter:
    """A filter step to run in pandas (no parent link, no column check)."""

    def __init__(self, expr: Expr):
        self.expr = expr


def prune_predicate(node: Node) -> Expr | None:
    """The conjunction of filters that only read source columns not redefined by an Assign
    before them: safe to test against partition statistics."""
    terms, assigned = [], set()
    for n in node.chain()[1:]:
        if isinstance(n, Assign):
            assigned.add(n.name)
        elif isinstance(n, Filter):
            terms += [t for t in conjuncts(n.expr) if not (t.columns() & assigned)]
    return and_all(terms)


def run_pandas(df, steps, after: dict[int, set]):
    """Apply the pandas part of a chain to one partition's DataFrame."""
    for n in steps:
        if isinstance(n, (Filter, _BareFilter)):
            mask = as_mask(n.expr.evaluate(df), len(df), n.expr)
            keep = after.get(id(n))
            if keep is not None and len(keep) < len(df.columns):
                # columns only this filter read are not carried through it (a string
                # column's take is the costly part of filtering it)
                df = df[[c for c in df.columns if c in keep]]
            df = df[mask]
        elif isinstance(n, Assign):
            if n.name in after.get(id(n), ()):
                df = df.assign(**{n.name: n.expr.evaluate(df)})
        elif isinstance(n, Project):
            df = df[[c for c in n.columns if c in df.columns]]
    return df


def with_source(node: Node, source) -> Node:
    """A copy of ``node``'s chain that reads from ``source`` instead of its Scan's source;
    the original nodes are left untouched (other frames may share them)."""
    import copy

    chain = node.chain()
    new: Node = Scan(source, chain[0].meta)
    for n in chain[1:]:
        n = copy.copy(n)
        n.child = new
        new = n
    return new
