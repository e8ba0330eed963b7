"""The distributed sample sort and exact order statistics.

A :class:`hpcframe.stages.SortStage` holds a frame's rows sorted into ``config.partitions``
range partitions: partition ``p`` holds rows that all come before those of ``p + 1`` in the
frame's order, each partition sorted. :func:`sample_sort` computes it collectively:

1. every rank reads its blocks (:class:`SortRows`: each block gets its rows' position in the
   frame, ``stages.POSITION``, and gives a sample: its keys at evenly spaced rows);
2. the samples are allgathered (small), put in leaf order and sorted; ``partitions - 1``
   evenly spaced ones are the *splitters*. The blocks, and so the samples, depend only on
   the data, never on the number of ranks: every rank count agrees on the same splitters;
3. each block's rows are routed by range (a row goes after every splitter that comes
   before it in the order: keys, then position, so ties of the keys are split in position
   order) and sent with ``Alltoallv`` to the rank holding their partition;
4. each partition is sorted stably by keys then position (pandas' stable sort of the whole
   frame) and held by the ranks (:class:`hpcframe.io.ranked.RankedData`).

The engine's own functions (reading, the exchange) are passed in by
:func:`hpcframe.execute.materialise`, which imports this module (not the other way round).

:class:`QuantileOutput` reads a column sorted this way: the global rank of a row is its
partition's offset plus its place in it, so the one or two neighbouring values a quantile
interpolates between are read from the partitions that hold them, and pandas computes the
value from them exactly as from the whole column (same ``numpy`` interpolation).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import plan as P
from .comm import failure, interruptible
from .outputs import BlockCategories, Output, recode_pieces, with_categories
from .physical import partition_owners
from .stages import POSITION

#: rows each block contributes to the sample (per partition of the result)
SAMPLE_PER_PARTITION = 8
_SPLIT = "__hpcframe_splitter__"


def full_spec(spec: P.RowSort) -> P.RowSort:
    """``spec`` with the rows' position as the last key (a total order: ties broken the way
    a stable sort of the frame breaks them)."""
    if POSITION in spec.columns:
        return spec
    return P.RowSort(spec.columns + [POSITION], spec.ascending + [True], spec.na_position + ["last"])


class SortRows(Output):
    """The first half of a sample sort: every block of the frame, with each row's position,
    kept on the rank that read it, and a sample of it (its keys at evenly spaced rows)."""

    limit = None

    def __init__(self, stage, nparts: int):
        self.stage, self.node, self.nparts = stage, stage.node, nparts
        self.cols = [c for c in stage.columns if c != POSITION]
        self.spec = full_spec(stage.spec)
        self.blocks: dict[int, pd.DataFrame] = {}
        self.samples: dict[int, pd.DataFrame] = {}
        # one list per categorical column, so that codes order the same way in every block
        #    and the pieces stay categorical when stacked
        self.categories = BlockCategories()

    def columns(self):
        """The stage's columns (and the sort keys)."""
        return set(self.cols) | set(self.stage.spec.columns)

    def text(self):
        """``sample sort by keys`` (for explain and errors)."""
        return f"sample sort by {self.stage.spec.columns}"

    def chunk(self, df, leaf):
        """Keep this block and its sample."""
        if POSITION in df.columns:
            pos = df[POSITION].to_numpy(dtype="int64")
        else:
            pos = np.int64(leaf.row_offset) + df.index.to_numpy(dtype="int64")
        keys = [c for c in self.stage.spec.columns if c not in self.cols]
        df = df[self.cols + keys].reset_index(drop=True).assign(**{POSITION: pos})
        self.categories.note(df, leaf.index)
        if len(df) == 0:
            return None
        self.blocks[leaf.index] = df
        # evenly spaced rows of the block (deterministic: the same on any number of ranks)
        k = min(len(df), SAMPLE_PER_PARTITION * self.nparts)
        at = ((2 * np.arange(k, dtype="int64") + 1) * len(df)) // (2 * k)
        sample = df.iloc[at][self.spec.columns].reset_index(drop=True)
        self.samples[leaf.index] = P.sort_rows(sample, self.spec).reset_index(drop=True)
        return None

    def combine(self, a, b):
        """Nothing to combine (the rows travel in the exchange)."""
        return None

    def finalize(self, _):
        """Nothing (the rows travel in the exchange)."""
        return None


def splitters(samples: dict, spec: P.RowSort, nparts: int):
    """The ``nparts - 1`` splitter rows from every block's sample (``{leaf: rows}``): the
    samples in leaf order, sorted, cut evenly (``None`` when there is no row)."""
    pieces = [samples[i] for i in sorted(samples) if len(samples[i])]
    if not pieces or nparts < 2:
        return None
    everything = P.sort_rows(pd.concat(pieces, ignore_index=True), spec).reset_index(drop=True)
    m = len(everything)
    at = (np.arange(1, nparts, dtype="int64") * m) // nparts
    return everything.iloc[at].reset_index(drop=True)


def route(block: pd.DataFrame, split, spec: P.RowSort) -> np.ndarray:
    """The range partition of every row of ``block``: the number of splitters that come
    before it in the order ``spec`` (a splitter equal to a row comes first). Computed by a
    stable sort of the splitters followed by the rows, so it uses pandas' own order (NaN
    placement, strings, times) and nothing else."""
    if split is None or not len(block):
        return np.zeros(len(block), dtype="int64")
    fast = _route_float(block, split, spec)
    if fast is not None:
        return fast
    keys = spec.columns
    both = pd.concat(
        [split[keys].assign(**{_SPLIT: 1}), block[keys].assign(**{_SPLIT: 0})],
        ignore_index=True,
    )
    order = P.sort_order(both, spec)
    flags = both[_SPLIT].to_numpy()[order]
    before = np.cumsum(flags)
    rows = order - len(split)
    out = np.empty(len(block), dtype="int64")
    mask = flags == 0
    out[rows[mask]] = before[mask]
    return out


def _route_float(block: pd.DataFrame, split, spec: P.RowSort):
    """:func:`route` for one float key (then the position) by vectorized comparisons with
    each splitter, in pandas' order: numbers (-0.0 equal to 0.0, infinities at the ends),
    missing values first or last; ``None`` for any other kind of key."""
    if len(spec.columns) != 2 or spec.columns[1] != POSITION:
        return None
    col = spec.columns[0]
    kinds = [getattr(df[col].dtype, "kind", "O") for df in (block, split)]
    if not all(isinstance(df[col].dtype, np.dtype) for df in (block, split)) or kinds != ["f", "f"]:
        return None
    ascending, missing_last = spec.ascending[0], spec.na_position[0] == "last"

    def keyed(values):
        v = values.astype("float64")
        missing = np.isnan(v)
        group = np.where(missing, 1 if missing_last else -1, 0)  # NaN after (before) numbers
        return group, np.where(missing, 0.0, v if ascending else -v)

    bg, bv = keyed(block[col].to_numpy())
    sg, sv = keyed(split[col].to_numpy())
    bp, sp = block[POSITION].to_numpy(), split[POSITION].to_numpy()
    out = np.zeros(len(block), dtype="int64")
    # the splitters are sorted by (group, value, position): per group, a binary search on the
    # values counts those strictly before a row; among the splitters of equal value, those
    # at or before the row's position come first too (a full tie: the splitter first)
    for g in (-1, 0, 1):
        rows = np.flatnonzero(bg == g)
        if not len(rows):
            continue
        out[rows] = np.count_nonzero(sg < g)
        lo_s, hi_s = np.searchsorted(sg, [g, g + 1])  # sg is sorted: the splitters of group g
        if hi_s == lo_s:
            continue
        values = sv[lo_s:hi_s]
        left = np.searchsorted(values, bv[rows], side="left")
        right = np.searchsorted(values, bv[rows], side="right")
        out[rows] += left
        tied = np.flatnonzero(right > left)
        for a, b in set(zip(left[tied].tolist(), right[tied].tolist())):
            these = tied[(left[tied] == a) & (right[tied] == b)]
            out[rows[these]] += np.searchsorted(sp[lo_s + a : lo_s + b], bp[rows[these]], side="right")
    return out


def sample_sort(stage, comm, nparts: int, run_scan, exchange_partitions, agree_context) -> tuple:
    """Collective: the sample sort of ``stage`` (see the module docstring). ``run_scan`` and
    ``exchange_partitions`` are :mod:`hpcframe.execute`'s. Returns ``(frames, owners,
    divisions)``: this rank's sorted partitions (``{partition: DataFrame}``), the owner rank
    of every partition, and per partition ``(min, max, null_count)`` of the stage's
    ``divisions_column`` (``None`` for an empty partition, or without such a column)."""
    rows = SortRows(stage, nparts)
    run_scan([rows], comm, None)
    spec = rows.spec
    owners = partition_owners(nparts, comm.size)
    cats = rows.categories.union(comm)
    if cats:
        rows.blocks = {i: with_categories(df, cats) for i, df in rows.blocks.items()}
        rows.samples = {i: with_categories(df, cats) for i, df in rows.samples.items()}
    everyone: dict = {}
    for d in comm.allgather(rows.samples):
        everyone.update(d)
    rows.samples = {}
    sends: list[dict] = [{} for _ in range(comm.size)]
    error = None
    context = f"routing the rows of {stage.label} to their sorted partitions"
    try:
        with interruptible():
            split = None if stage.presorted else splitters(everyone, spec, nparts)
            nleaves = max(everyone, default=0) + 1
            for i in sorted(rows.blocks):
                block = rows.blocks.pop(i)
                if stage.presorted:  # in order already: consecutive blocks, consecutive partitions
                    dest = np.full(len(block), i * nparts // nleaves, dtype="int64")
                else:
                    dest = route(block, split, spec)
                # small integers: numpy's stable sort is a radix sort
                order = np.argsort(dest.astype(np.uint16) if nparts < 2**16 else dest, kind="stable")
                sorted_dest = dest[order]
                for b in np.unique(dest):
                    lo, hi = np.searchsorted(sorted_dest, [b, b + 1])
                    piece = block.take(order[lo:hi]).reset_index(drop=True)
                    sends[owners[b]].setdefault(int(b), []).append(piece)
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or agree_context(comm, context))
    sends = [{b: pd.concat(p, ignore_index=True) for b, p in d.items()} for d in sends]
    received = exchange_partitions(comm, sends, f"the rows of {stage.label}")
    del sends
    frames: dict = {}
    mine_div: dict = {}
    column = stage.divisions_column
    context = f"sorting the partitions of {stage.label}"
    try:
        with interruptible():
            for b in [p for p, o in enumerate(owners) if o == comm.rank]:
                pieces = [got[b] for got in received if b in got]
                if not pieces:
                    continue
                pieces = recode_pieces(pieces, cats)  # (again on arrival)
                df = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
                df = P.sort_rows(df, spec)
                frames[b] = df[stage.columns].reset_index(drop=True)
                if column is not None:
                    mine_div[b] = _division(df[column])
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or agree_context(comm, context))
    divisions: list = [None] * nparts
    if column is not None:
        for d in comm.allgather(mine_div):
            for b, v in d.items():
                divisions[b] = v
    if stage.presorted:  # the same divisions on every rank: every rank raises alike
        _check_presorted(stage, divisions)
    return frames, owners, divisions


def _check_presorted(stage, divisions) -> None:
    """Raise ``ValueError`` when the partitions of a frame promised sorted overlap."""
    held = [(b, d) for b, d in enumerate(divisions) if d is not None and d[0] is not None]
    for (a, da), (b, db) in zip(held, held[1:]):
        if da[1] > db[0] or (da[2] and b > a):
            raise ValueError(
                f"set_index({stage.divisions_column!r}, sorted=True): the rows are not sorted by "
                f"{stage.divisions_column!r} (partition {a} reaches {da[1]!r}, partition {b} starts at "
                f"{db[0]!r}); use sorted=False to sort them"
            )


def _division(values: pd.Series):
    """``(min, max, null_count)`` of a partition's sorted index values (``None``: no value)."""
    present = values.dropna()
    nulls = int(len(values) - len(present))
    if not len(present):
        return (None, None, nulls)
    return (present.min(), present.max(), nulls)


# ------------------------------------------------------------------------------------------
# exact order statistics over a sorted column
# ------------------------------------------------------------------------------------------
def quantile_ranks(n: int, qs: list[float]) -> list[tuple]:
    """For each ``q``: ``(ranks, gamma)``, the ranks of the sorted non-missing values numpy's
    linear method interpolates between and the weight of the second (``(n - 1) * q``,
    split into its floor and fraction as ``numpy.quantile`` splits it)."""
    out: list[tuple] = []
    for q in qs:
        virtual = (n - 1) * np.float64(q)
        if virtual >= n - 1:
            out.append(((n - 1,), 1.0))
        elif virtual < 0:
            out.append(((0,), 1.0))
        else:
            lo = int(math.floor(virtual))
            out.append(((lo, lo + 1), float(virtual - lo)))
    return out


def median_ranks(n: int) -> tuple:
    """The ranks of the one or two middle values (pandas takes their mean)."""
    return ((n - 1) // 2,) if n % 2 else (n // 2 - 1, n // 2)


class QuantileOutput(Output):
    """Picks the values at given ranks of a column held sorted by a SortStage (``node``: a
    Scan of it), for ``qs`` quantiles (or the median); ``finish(values, dtype)`` builds the result.

    Each partition knows its first row's global rank (its leaf's ``row_offset``), so only
    the one or two rows per quantile are kept; ``finalize`` computes every quantile with
    pandas from those neighbours (bit-identical to pandas on the whole column)."""

    limit = None

    def __init__(self, node, stage, col: str, qs: list[float] | None, finish):
        self.node, self.stage, self.col, self.qs, self.finish = node, stage, col, qs, finish

    def columns(self):
        """The column."""
        return {self.col}

    def text(self):
        """``quantile(col, qs)`` (for explain and errors)."""
        return f"{'median' if self.qs is None else f'quantile {self.qs}'} of {self.col}"

    def _counts(self) -> tuple[int, int]:
        """``(non-missing values, missing values)`` of the column: missing ones are sorted
        last, counted per partition by the sort (its divisions)."""
        divisions = self.stage.divisions or []
        missing = sum(d[2] for d in divisions if d is not None)
        return self.stage.data.num_rows - missing, missing

    def _wanted(self, n: int) -> list[tuple]:
        if self.qs is None:
            return [(median_ranks(n), None)] if n else []
        return quantile_ranks(n, self.qs) if n else []

    def chunk(self, df, leaf):
        """The rows of this partition at the wanted ranks (``{rank: value}`` as a frame)."""
        n = self._counts()[0]
        start = leaf.row_offset
        ranks = sorted({r for rs, _ in self._wanted(n) for r in rs if start <= r < start + len(df)})
        if not ranks:
            return None
        values = df[self.col].iloc[[r - start for r in ranks]].reset_index(drop=True)
        return pd.DataFrame({"rank": np.asarray(ranks, dtype="int64"), "value": values})

    def combine(self, a, b):
        """Both sets of picked values."""
        if a is None:
            return b
        if b is None:
            return a
        return pd.concat([a, b], ignore_index=True)

    def finalize(self, table):
        """Every quantile from the picked neighbours: per ``q`` a one-value Series (pandas'
        ``quantile([q])`` of them), or the median as a scalar."""
        n, missing = self._counts()
        dtype = self.data_dtype()
        if table is None or not n:
            # only missing values (kept as one, so a float32 column's NaN stays float32, as in
            # pandas), or no rows at all
            empty = pd.Series([np.nan] if missing and getattr(dtype, "kind", "") == "f" else [], dtype=dtype)
            try:
                if self.qs is None:
                    return self.finish([empty.median()], dtype)
                return self.finish([empty.quantile([q]) for q in self.qs], dtype)
            except TypeError:  # an object column of bools with nulls: left out (numeric_only)
                return self.finish([], dtype)
        by_rank = dict(zip(table["rank"].tolist(), range(len(table))))
        values = table["value"]
        out = []
        for rs, gamma in self._wanted(n):
            pick = values.iloc[[by_rank[r] for r in rs]].reset_index(drop=True)
            if self.qs is None:
                out.append(pick.median())
            else:
                value = pick.quantile([1.0 if len(pick) == 1 else gamma])
                if missing and value.dtype.kind == "f" and pick.dtype.kind == "f":
                    value = value.astype(pick.dtype)  # as pandas' quantile of a column with NaN
                out.append(value)
        return self.finish(out, dtype)

    def data_dtype(self):
        """The column's pandas dtype in the data (an int or bool column with a null in some
        partition is float64 or object, which the first file's schema cannot tell)."""
        from .io.types import block_to_pandas, normalize_table

        schema = self.stage.schema()
        return block_to_pandas(normalize_table(schema.empty_table(), schema), schema)[self.col].dtype
