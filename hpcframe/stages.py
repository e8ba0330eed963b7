"""Stages: sources computed by an earlier part of the plan, held by the ranks.

The plan is a DAG of stages. A stage's rows are row-wise chains (Scan → Filter/Assign/
Project) over one source; a *stage source* is a source whose partitions are produced by
another stage and held on the ranks as Arrow data (:class:`hpcframe.io.ranked.RankedData`):

* :class:`PersistStage` — a frame's rows, kept where they were read (``Frame.persist``);
* :class:`AggStage` — a group-by result hash-partitioned by its keys (a group-by result
  used as a frame: filtered, written, grouped again);
* :class:`ShuffleStage` — a frame's rows hash-partitioned by key columns, so that every
  partition holds whole groups (``drop_duplicates``, ``groupby().apply``, ``transform``,
  ``nunique``), optionally reduced per block before and per partition after the exchange.

A stage is *materialised* collectively by :func:`hpcframe.execute.prepare` before the
outputs that read it run (its own inputs first); the engine then reads its partitions like
any others, except that each rank reads exactly the partitions it holds. A stage that is not
persisted is released when the computation that materialised it ends.

Every stage knows how its rows are partitioned (``partitioning``), which columns are the
pandas index of its frame (``index``), which rows order a collected result (``order``) and
which columns are internal (``hidden``). Partition counts come from
:attr:`hpcframe.config.Config.partitions`, never from the number of ranks.

This module describes stages; :mod:`hpcframe.execute` runs them.
"""

from __future__ import annotations

from collections.abc import Callable

from .io.dataset import DatasetError

#: hidden column: a row's position in the frame it came from (orders shuffled rows)
POSITION = "__hpcframe_row__"


class StageSource:
    """A source whose partitions an earlier stage computes (see the module docstring)."""

    format = "memory"
    splittable = False
    files: list[str] = []
    partitioning = "as read"

    def __init__(
        self, meta, label: str, index=(), order=None, hidden=(), order_ascending=None, na_position="last"
    ):
        self.meta = meta
        self.label = label
        self.index = list(index)
        self.order = list(order) if order else []
        # per column of ``order`` (default: ascending, missing values last); see plan.row_sort
        self.order_ascending = list(order_ascending) if order_ascending is not None else None
        self.na_position = na_position
        self.hidden = list(hidden)
        # a hidden column holding each row's label (pandas' index value), or None: the labels
        # are then the rows' ranks in ``order`` (see hpcframe.outputs.row_labels)
        self.row_labels: str | None = None
        self.data = None  # a RankedData once materialised
        self.persisted = False
        self.dropped = False

    # -- state --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the stage's data is held by the ranks now."""
        return self.data is not None and not self.data.released

    def inputs(self) -> list:
        """The plan nodes this stage reads (materialised before it)."""
        raise NotImplementedError

    def text(self) -> str:
        """A one-line description (for explain)."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop this rank's partitions (local; every rank does it)."""
        if self.data is not None:
            self.data.release()
        self.data = None

    def partition_token(self):
        """What the engine's cache of :meth:`discover` depends on: the data now held (a
        released or recomputed stage has new partitions)."""
        return self.data.serial if self.data is not None and self.ready else None

    # -- the source protocol (valid once materialised) -----------------------------------------
    def _held(self):
        if self.dropped:
            raise DatasetError(
                f"{self.label} was unpersisted: persist the frame again (or use the frame it was made from)"
            )
        if not self.ready:
            raise DatasetError(f"{self.label} is not computed yet (internal: prepare() was not run)")
        return self.data

    def schema(self):
        """The Arrow schema of the held partitions."""
        return self._held().schema()

    def discover(self, comm):
        """The held partitions (no collective: their sizes are known on every rank)."""
        return self._held().discover(comm)

    def read(self, part, columns):
        """Rows of a partition this rank holds."""
        return self._held().read(part, columns)

    def owner_of(self, part) -> int:
        """The rank holding ``part``."""
        return self._held().owner_of(part)


def _parent_layout(node):
    """``(index, order, hidden)`` of the frame ``node`` belongs to; ``order`` is its
    :class:`hpcframe.plan.RowSort` (a ``sort_values`` of the chain, or its source's order)."""
    from . import plan as P

    src = node.scan().source
    index, hidden = list(getattr(src, "index", [])), list(getattr(src, "hidden", []))
    # columns the chain kept only for its row order or index (``df.sort_values("a")[["b"]]``
    # keeps ``a``): the new source holds them, but they stay out of the user's columns
    shown = set(index) | set(hidden) | set(P.visible_columns(node))
    hidden += [c for c in node.meta.columns if c not in shown and c != POSITION]
    return index, P.row_sort(node), hidden


class PersistStage(StageSource):
    """A frame's rows kept on the ranks that read them (``Frame.persist``)."""

    def __init__(self, node):
        index, order, hidden = _parent_layout(node)
        super().__init__(
            node.meta, f"persisted {node.scan().source.label}", index, order.columns, hidden, *order[1:]
        )
        self.node = node
        self.persisted = True

    def inputs(self):
        """The persisted frame's plan."""
        return [self.node]

    def text(self):
        """A one-line description (for explain)."""
        return f"persist: {self.node.scan().text()} + {len(self.node.chain()) - 1} step(s)"


class AggStage(StageSource):
    """A group-by result as a frame: one row per group, hash-partitioned by the keys.

    ``output`` is the :class:`hpcframe.outputs.AggOutput` that computes it; ``labels`` the
    names of its value columns; ``as_index``: the keys are the frame's index (as pandas)."""

    def __init__(self, output, labels: list[str], meta, as_index: bool):
        keys = list(output.keys)
        from .aggregations import FIRST_POS

        order = keys if output.sort else [FIRST_POS]
        hidden = [] if output.sort else [FIRST_POS]
        super().__init__(meta, f"group-by result ({output.text()})", keys if as_index else [], order, hidden)
        self.output, self.labels = output, list(labels)
        self.partitioning = f"hash of {keys}"
        #: [(group key column, pandas.Index of int64 keys)]: the group-by drops, while it
        #: reads, the rows whose key is not among them (a copy computed for the inner join
        #: reading it, with that join's other side's keys: see hpcframe.joins.reduced_input)
        self.pushed: list = []

    def inputs(self):
        """The grouped frame's plan."""
        return [self.output.node]

    def text(self):
        """A one-line description (for explain)."""
        return f"aggregate into hash partitions of {self.output.keys}: {self.output.text()}"


class ShuffleStage(StageSource):
    """A frame's rows hash-partitioned by ``keys`` (whole groups per partition), ordered by
    their position in the frame within each partition.

    ``local(df)`` (optional) reduces each block's rows before the exchange (it must keep
    the rows a later ``per_partition`` needs, e.g. the first of each duplicate), given the
    block in the frame's order; a rank may apply it again to the union of its blocks'
    reduced rows of a partition, in the frame's order (so it must keep every row it would
    keep with more rows around it); ``prefilter(df)`` (optional) drops, before that order is
    made, rows that ``local`` drops whatever their order, keeping the others' order;
    ``per_partition(df)`` (optional) maps each partition's rows (sorted by position, with
    their position as the index) to the stage's rows, keeping the ``POSITION`` column;
    ``meta`` describes the result (default: the frame's columns); ``reads``: see below."""

    def __init__(
        self,
        node,
        keys: list[str],
        label: str,
        local: Callable | None = None,
        per_partition: Callable | None = None,
        meta=None,
        index=None,
    ):
        import pandas as pd

        p_index, p_order, p_hidden = _parent_layout(node)
        base = node.meta if meta is None else meta
        if POSITION not in base.columns:
            base = base.assign(**{POSITION: pd.Series([], dtype="int64")})
        # rows keep the order of the frame they come from: its own order (a shuffled or
        # grouped frame), its sort (ties by position), else their position in it
        from . import plan as P

        order, asc, na = p_order
        if P.last_sort(node) is not None and POSITION not in order:
            order, asc, na = order + [POSITION], asc + [True], na + ["last"]
        elif not order:
            order, asc, na = [POSITION], [True], ["last"]
        hidden = p_hidden + ([POSITION] if POSITION not in p_hidden else [])
        super().__init__(base, label, p_index if index is None else index, order, hidden, asc, na)
        self.node, self.keys = node, list(keys)
        self.local, self.per_partition = local, per_partition
        self.prefilter: Callable | None = None
        self.partitioning = f"hash of {self.keys}"
        #: the columns ``local`` and ``per_partition`` read, when they return rows with the
        #: columns they were given, unchanged (``drop_duplicates``): the stage may then carry
        #: only the columns its readers need (:mod:`hpcframe.pruning`); ``None``: unknown
        self.reads: list[str] | None = None
        #: the input columns it carries, when narrowed for one computation (``None``: all)
        self.carried: list[str] | None = None

    def inputs(self):
        """The shuffled frame's plan."""
        return [self.node]

    def text(self):
        """A one-line description (for explain)."""
        return f"shuffle rows into hash partitions of {self.keys}: {self.label}"


def stage_of(node) -> StageSource | None:
    """The stage source ``node``'s chain reads, or ``None`` for a file or pandas source."""
    src = node.scan().source
    return src if isinstance(src, StageSource) else None


def stages_below(nodes) -> list[StageSource]:
    """Every stage the ``nodes`` depend on, inputs before the stages that read them (each
    once, in a deterministic order: the same on every rank)."""
    out: list[StageSource] = []
    seen: set[int] = set()

    def visit(node):
        stage = stage_of(node)
        if stage is None or id(stage) in seen:
            return
        seen.add(id(stage))
        for inp in stage.inputs():
            visit(inp)
        out.append(stage)

    for n in nodes:
        visit(n)
    return out


def _exprs_of(obj):
    """The expressions (:class:`hpcframe.expr.Expr`) a plan node or a stage holds in its
    attributes, directly or in lists and tuples of them."""
    from .expr import Expr

    for value in vars(obj).values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            for x in item if isinstance(item, tuple) else (item,):
                if isinstance(x, Expr):
                    yield x


def _chain_refs(node, out: list) -> None:
    from .expr import scalar_refs

    for n in node.chain():
        for e in _exprs_of(n):
            out.extend(r for r in scalar_refs(e) if all(r is not o for o in out))


def stage_scalar_refs(stage) -> list:
    """The lazy scalars (:class:`hpcframe.expr.ScalarRef`) ``stage`` itself evaluates: in
    its own expressions and in the chains of its inputs (not in the stages below)."""
    from .expr import scalar_refs

    out: list = []
    for e in _exprs_of(stage):
        out.extend(r for r in scalar_refs(e) if all(r is not o for o in out))
    for node in stage.inputs():
        _chain_refs(node, out)
    return out


def scalar_refs_read(nodes) -> list:
    """The lazy scalars (:class:`hpcframe.expr.ScalarRef`) the chains ``nodes`` and every
    stage below them evaluate, each once, in a deterministic order (the same on every rank)."""
    out: list = []
    for node in nodes:
        _chain_refs(node, out)
    for stage in stages_below(nodes):
        out.extend(r for r in stage_scalar_refs(stage) if all(r is not o for o in out))
    return out


class SortStage(StageSource):
    """A frame's rows sorted into range partitions by a distributed sample sort (see
    :mod:`hpcframe.sorting`): its dataset order is the sort (``spec``, a
    :class:`hpcframe.plan.RowSort`; default: the frame's own order), so reading its
    partitions in order reads the rows sorted, and ``head(n)`` reads only the first ones.

    ``index``: the columns that become the frame's index (``set_index``; default: the
    frame's index); ``drop``: columns left out (e.g. the index replaced by ``set_index``);
    ``divisions_column``: a column whose ``(min, max)`` per partition is recorded once
    materialised (``divisions``) and given as the partitions' statistics, so a filter on
    it (``.loc[a:b]``) reads only the partitions whose range overlaps."""

    def __init__(self, node, spec=None, index=None, drop=(), divisions_column=None, label=None):
        from . import plan as P

        p_index, p_order, p_hidden = _parent_layout(node)
        spec = p_order if spec is None else spec
        if not spec:
            raise ValueError("a sort needs at least one key")
        leave_out = set(drop) | {POSITION}
        self.columns = [c for c in node.meta.columns if c not in leave_out]
        meta = node.meta[self.columns].iloc[:0]
        hidden = [h for h in p_hidden if h not in leave_out]
        keys = ", ".join(f"{k}{'' if a else ' desc'}" for k, a in zip(spec.columns, spec.ascending))
        super().__init__(
            meta,
            label or f"sorted {node.scan().source.label} by [{keys}]",
            p_index if index is None else index,
            [],
            hidden,
        )
        self.node, self.spec = (
            node,
            P.RowSort(list(spec.columns), list(spec.ascending), list(spec.na_position)),
        )
        self.partitioning = f"sorted ranges of [{keys}]"
        self.divisions_column = divisions_column
        self.divisions: list | None = None
        # the rows are promised in order already (set_index(sorted=True)): blocks are cut
        # into partitions in dataset order instead of by splitters, and the order is checked
        self.presorted = False

    def inputs(self):
        """The sorted frame's plan."""
        return [self.node]

    def text(self):
        """A one-line description (for explain)."""
        return f"sample sort into range partitions: {self.label}"

    def discover(self, comm):
        """The held partitions, with the divisions as statistics of ``divisions_column``."""
        parts = super().discover(comm)
        if self.divisions_column is None or self.divisions is None:
            return parts
        import dataclasses

        from .io.dataset import ColumnStats

        out = []
        for p in parts:
            d = self.divisions[p.piece] if p.piece < len(self.divisions) else None
            if d is not None and d[0] is not None:
                p = dataclasses.replace(p, stats={self.divisions_column: ColumnStats(d[0], d[1], d[2])})
            out.append(p)
        return out


# -- joins (merge, isin semi/anti-join) ----------------------------------------------------
class JoinStage(StageSource):
    """Two frames joined on key columns (``Frame.merge``), or a frame's rows whose key is
    (not) among another frame's values (``isin`` with a lazy Series: ``how`` ``"semi"`` or
    ``"anti"``). :mod:`hpcframe.joins` builds and materialises it.

    ``left``/``right`` are the plan nodes of the two sides; ``left_cols``/``right_cols`` the
    ``(side column, result column)`` pairs each side contributes (keys included; every
    result name is distinct, so pandas never suffixes: the suffixes were applied when the
    stage was built); ``left_keys``/``right_keys`` the key columns by their result names;
    ``left_order``/``right_order`` the ``(side column or None for the row position, hidden
    result column)`` pairs that carry each side's row order; ``join_keys`` hidden columns
    holding the coalesced keys (an outer join is sorted by them, as pandas sorts).
    ``broadcast``: ``None`` (chosen when it runs from the measured sizes), ``True`` or
    ``False``; ``strategy`` is the one chosen once materialised (``"broadcast left"``,
    ``"broadcast right"`` or ``"shuffle"``) and ``sizes`` the measured bytes."""

    def __init__(
        self,
        left,
        right,
        how: str,
        left_cols: list,
        right_cols: list,
        left_keys: list[str],
        right_keys: list[str],
        left_order: list,
        right_order: list,
        join_keys: list[str],
        indicator,
        broadcast,
        meta,
        label: str,
        origins: dict,
        order_ascending=None,
        na_position=None,
    ):
        if how == "right":
            order = [h for _, h in right_order] + [h for _, h in left_order]
        elif how == "outer":
            order = list(join_keys) + [h for _, h in left_order] + [h for _, h in right_order]
        else:
            order = [h for _, h in left_order] + [h for _, h in right_order]
        hidden = [h for _, h in left_order] + [h for _, h in right_order] + list(join_keys)
        # per order column (sides sorted by sort_values keep their directions and NaN places)
        super().__init__(meta, label, (), order, hidden, order_ascending, na_position or "last")
        self.left, self.right, self.how = left, right, how
        self.left_cols, self.right_cols = list(left_cols), list(right_cols)
        self.left_keys, self.right_keys = list(left_keys), list(right_keys)
        self.left_order, self.right_order = list(left_order), list(right_order)
        self.join_keys = list(join_keys)
        self.indicator, self.broadcast = indicator, broadcast
        #: result column -> ("left", side column) / ("right", side column) / ("both", l, r)
        self.origins = dict(origins)
        self.strategy: str | None = None
        self.sizes: tuple | None = None
        #: side -> (side column, pandas.Index of int64 keys): rows of that side whose key is
        #: not among the keys are dropped while read (a copy computed for the inner join
        #: reading it, with that join's other side's keys: see hpcframe.joins.reduced_input)
        self.pushed: dict = {}
        #: id(stage read by a side) -> the Arrow schema of the reduced copy of it this join
        #: read instead (that stage itself is not computed then)
        self.input_schemas: dict = {}
        forced = how == "cross" or broadcast is True
        self.partitioning = "as read" if forced else "hash of the keys when shuffled"

    def inputs(self):
        """The two sides' plans."""
        return [self.left, self.right]

    def text(self):
        """A one-line description (for explain), with the strategy: the one chosen when the
        stage ran, the forced one, or the rule that will choose."""
        if self.how in ("semi", "anti"):
            what = f"{'semi' if self.how == 'semi' else 'anti'}-join ({self.label})"
        elif self.how == "cross":
            what = "cross join"
        else:
            what = f"{self.how} join on {self.left_keys} = {self.right_keys}"
        if self.strategy is not None:
            measured = ""
            if self.sizes:
                measured = ", ".join(
                    f"{side} {'not measured (merged while read)' if n is None else f'{n:,} bytes'}"
                    for side, n in zip(("left", "right"), self.sizes)
                )
                measured = f" (measured: {measured})"
            how = f"strategy: {self.strategy}{measured}"
        elif self.broadcast is True:
            how = f"strategy: broadcast the {self.small_side()} side (forced)"
        elif self.broadcast is False:
            how = "strategy: shuffle both sides by the keys (forced)"
        elif self.how == "outer":
            how = "strategy: shuffle both sides by the keys (an outer join cannot broadcast)"
        else:
            from .config import config

            how = (
                f"strategy: chosen when it runs: broadcast the {self.small_side()} side if it holds "
                f"at most hf.config.broadcast_bytes = {config.broadcast_bytes:,} bytes, else shuffle"
            )
        return f"{what}; {how}"

    def small_side(self) -> str:
        """Which side a broadcast copies to every rank: the right one (the left one of a
        right join); an inner or cross join whose right side is too big broadcasts the left
        side if that one is small enough, and a semi/anti join the left side's keys."""
        return "left" if self.how == "right" else "right"

    def with_sides(self, left, right, left_cols=None, right_cols=None, meta=None):
        """The same join over other side plans (a filter or a projection pushed into a side);
        not computed yet."""
        import copy

        new = copy.copy(self)
        new.left, new.right = left, right
        if left_cols is not None:
            new.left_cols = list(left_cols)
        if right_cols is not None:
            new.right_cols = list(right_cols)
        # its own meta: the dtypes of the data it computes are adopted into it
        new.meta = (self.meta if meta is None else meta).copy()
        new.data, new.strategy, new.sizes = None, None, None
        new.persisted = new.dropped = False
        return new
