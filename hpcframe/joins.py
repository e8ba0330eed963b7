"""Joins: ``Frame.merge`` and ``isin`` with a lazy Series, built and run as a JoinStage.

A join is a stage (:class:`hpcframe.stages.JoinStage`): a source computed from two plans,
held by the ranks. :func:`build_merge` checks a merge against the two frames' schemas as
pandas does and describes its result; :func:`semi_join` describes ``frame[frame.k.isin(
other.col)]``; :func:`materialise_join` (called by :func:`hpcframe.execute.materialise`)
computes it collectively:

1. each side's rows are read once and kept where they are read (as ``persist`` keeps them),
   with the columns the result needs, renamed to their result names (suffixes applied), and
   hidden columns carrying the side's row order (its position, or its own order columns);
2. the ranks agree on the sizes (bytes of the kept rows) and choose a strategy:
   **broadcast** the small side (allgathered as Arrow buffers) and merge every kept block of
   the other side with it, where it was read; or **shuffle** both sides into
   ``config.partitions`` hash partitions of the keys (equal values meet: numbers hash as
   float64, missing keys alike) and merge each partition where it is owned;
3. each result partition is sorted by the result's row order (pandas': left order then right
   order; right order for ``how="right"``; the keys for ``how="outer"``), so a collected
   result is pandas' row for row on any number of ranks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from . import plan as P
from .config import config
from .errors import ColumnNotFoundError
from .expr import KeyIn, conjuncts, line_position, range_of, range_share
from .stages import POSITION, AggStage, JoinStage, stage_of

HOWS = ("inner", "left", "right", "outer", "cross")
_LEFT_ORDER = "__hpcframe_jl{}__"
_RIGHT_ORDER = "__hpcframe_jr{}__"
_JOIN_KEY = "__hpcframe_jk{}__"
_SEMI_VALUE = "__hpcframe_semi_value__"
#: the share of rows a filter is guessed to keep when the sides of an inner join are ordered
#: by their estimated sizes (:func:`_estimated_bytes`): only the reading order depends on it
FILTER_SELECTIVITY = 0.2


# ------------------------------------------------------------------------------------------
# describing a join (at API time)
# ------------------------------------------------------------------------------------------
def side_node(node, keys: list[str]):
    """``node`` as a side of a merge: a frame with an index (a group-by result) merges on its
    index levels by name as pandas does (they become columns); otherwise the index is
    dropped (pandas gives a merged frame a fresh RangeIndex)."""
    index = P.frame_index(node)
    if not index:
        return node
    return P.ResetIndex(node, drop=not any(k in index for k in keys))


def _listify(x) -> list:
    if x is None:
        return []
    return [x] if isinstance(x, str) or not isinstance(x, (list, tuple)) else list(x)


def _order_of(node, template: str):
    """``(pairs, ascending, na_position)``: for the row order of ``node``'s frame
    (:func:`hpcframe.plan.row_sort`: its sort_values keys, then its source's own order), the
    ``(side column or None for the row position, hidden result column)`` pairs and, per pair,
    the direction and the place of missing values. Rows that tie keep dataset order: the
    row position comes last when the source has no order of its own."""
    spec = P.row_sort(node)
    cols: list[str | None] = list(spec.columns)
    asc, nas = list(spec.ascending), list(spec.na_position)
    if not P.source_sort(node.scan().source):
        cols, asc, nas = cols + [None], asc + [True], nas + ["last"]
    return [(c, template.format(i)) for i, c in enumerate(cols)], asc, nas


def _check_key_types(lmeta, rmeta, lkeys, rkeys) -> None:
    """Raise pandas' ValueError for key pairs whose types cannot be compared, naming both."""
    for lk, rk in zip(lkeys, rkeys):
        ld, rd = lmeta[lk].dtype, rmeta[rk].dtype
        try:
            pd.merge(lmeta[[lk]], rmeta[[rk]], left_on=lk, right_on=rk)
        except ValueError as exc:
            raise ValueError(
                f"merge: the key column {lk!r} of the left frame ({ld}) and the key column {rk!r} of "
                f"the right frame ({rd}) cannot be matched: pandas refuses to merge {ld} with {rd} "
                f"keys ({exc}); convert one of them with astype() first"
            ) from None
        numeric = {"i", "u", "f"}
        lkind, rkind = getattr(ld, "kind", "O"), getattr(rd, "kind", "O")
        if (lkind in numeric and isinstance(rd, pd.StringDtype)) or (
            rkind in numeric and isinstance(ld, pd.StringDtype)
        ):
            raise ValueError(
                f"merge: the key column {lk!r} of the left frame ({ld}) and the key column {rk!r} of "
                f"the right frame ({rd}) cannot be matched: pandas refuses to merge numbers with "
                f"strings; convert one of them with astype() first"
            )


def build_merge(
    left,
    right,
    how="inner",
    on=None,
    left_on=None,
    right_on=None,
    suffixes=("_x", "_y"),
    indicator=False,
    broadcast=None,
) -> JoinStage:
    """The :class:`~hpcframe.stages.JoinStage` of ``merge(left, right, ...)`` over two plan
    nodes, checked as pandas checks it (unknown key: ColumnNotFoundError; key types that
    cannot match: ValueError naming both columns; overlapping columns without suffix)."""
    if how not in HOWS:
        raise ValueError(f"merge: how must be one of {', '.join(HOWS)}, not {how!r}")
    if broadcast not in (None, True, False):
        raise ValueError(f"merge: broadcast must be None, True or False, not {broadcast!r}")
    if how == "outer" and broadcast is True:
        raise ValueError(
            "merge: an outer join cannot broadcast a side (its unmatched rows would appear once per "
            "rank); use broadcast=None or False"
        )
    if how == "cross" and broadcast is False:
        raise ValueError("merge: a cross join has no keys to shuffle by; use broadcast=None or True")
    if suffixes is None or len(suffixes) != 2:
        raise ValueError(f"merge: suffixes must be a pair such as ('_x', '_y'), not {suffixes!r}")
    on, left_on, right_on = _listify(on), _listify(left_on), _listify(right_on)
    if how == "cross":
        if on or left_on or right_on:
            raise pd.errors.MergeError(
                "Can not pass on, right_on, left_on or set right_index=True or left_index=True"
            )
        lkeys, rkeys = [], []
    elif on:
        if left_on or right_on:
            raise pd.errors.MergeError(
                'Can only pass argument "on" OR "left_on" and "right_on", not a combination of both.'
            )
        lkeys, rkeys = on, on
    elif left_on or right_on:
        if not (left_on and right_on):
            raise pd.errors.MergeError(
                'Must pass "right_on" OR "right_index".'
                if left_on
                else 'Must pass "left_on" OR "left_index".'
            )
        if len(left_on) != len(right_on):
            raise ValueError("len(right_on) must equal len(left_on)")
        lkeys, rkeys = left_on, right_on
    else:
        lnames = P.visible_columns(side_node(left, []))
        rnames = set(P.visible_columns(side_node(right, [])))
        common = [c for c in lnames if c in rnames]
        if not common:
            raise pd.errors.MergeError(
                "No common columns to perform merge on. Merge options: left_on=None, right_on=None, "
                "left_index=False, right_index=False"
            )
        lkeys, rkeys = common, common
    left, right = side_node(left, lkeys), side_node(right, rkeys)
    lvis, rvis = P.visible_columns(left), P.visible_columns(right)
    for keys, names, side in ((lkeys, lvis, "left"), (rkeys, rvis, "right")):
        for k in keys:
            if k not in names:
                raise ColumnNotFoundError(k, names, f"the {side} frame of merge")
    lmeta, rmeta = left.meta[lvis], right.meta[rvis]
    _check_key_types(lmeta, rmeta, lkeys, rkeys)
    # result names: pandas' suffixing, applied here once (every result name is distinct)
    same = {lk for lk, rk in zip(lkeys, rkeys) if lk == rk}
    overlap = (set(lvis) & set(rvis)) - same

    def name(col, suffix):
        return col + suffix if col in overlap and suffix is not None else col

    left_cols = [(c, name(c, suffixes[0])) for c in lvis]
    right_cols = [(c, name(c, suffixes[1])) for c in rvis if c not in same]
    right_cols += [(c, c) for c in rvis if c in same]  # matched with the left key of that name
    res_left = dict(left_cols)
    res_right = dict(right_cols)
    left_keys = [res_left[k] for k in lkeys]
    right_keys = [res_right[k] for k in rkeys]
    origins: dict = {}
    for c, r in left_cols:
        origins[r] = ("left", c)
    for c, r in right_cols:
        if c in same:
            origins[r] = ("both", c, c)
        else:
            origins[r] = ("right", c)
    try:  # pandas on the empty frames: its own checks, the result's columns and dtypes
        if how == "cross":
            expected = pd.merge(lmeta, rmeta, how="cross", suffixes=suffixes, indicator=indicator)
        else:
            expected = pd.merge(
                lmeta, rmeta, how=how, left_on=lkeys, right_on=rkeys, suffixes=suffixes, indicator=indicator
            )
    except KeyError as exc:
        raise ColumnNotFoundError(
            exc.args[0] if exc.args else str(exc), lvis + rvis, "the frames of merge"
        ) from None
    except (ValueError, TypeError) as exc:
        if not isinstance(exc, pa.ArrowException):
            raise
        # pandas fails on some empty frames (several string keys): the columns
        expected = _empty_result(lmeta, rmeta, left_cols, right_cols, same, indicator)
    except Exception:  # pandas fails on some empty frames (several string keys): the columns
        expected = _empty_result(lmeta, rmeta, left_cols, right_cols, same, indicator)
    left_order, lasc, lnas = _order_of(left, _LEFT_ORDER)
    right_order, rasc, rnas = _order_of(right, _RIGHT_ORDER)
    join_keys = [_JOIN_KEY.format(i) for i in range(len(lkeys))] if how == "outer" else []
    meta = expected.iloc[:0].copy()
    mine = [r for _, r in left_cols] + [r for c, r in right_cols if c not in same]
    if indicator:
        mine.append(indicator if isinstance(indicator, str) else "_merge")
    if list(meta.columns) != mine:  # pragma: no cover - a pandas rule not reproduced here
        raise NotImplementedError(
            f"merge: hpcframe names the result columns {mine}, pandas {list(meta.columns)}; "
            f"please report this case"
        )
    for side, pairs in ((left, left_order), (right, right_order)):
        for c, h in pairs:
            meta[h] = pd.Series([], dtype="int64" if c is None else side.meta[c].dtype)
    for i, (lk, rk) in enumerate(zip(left_keys, right_keys)):
        if how == "outer":
            meta[join_keys[i]] = pd.Series([], dtype=_coalesced_dtype(expected, lk, rk))
    asc, nas = lasc + rasc, lnas + rnas
    if how == "right":
        asc, nas = rasc + lasc, rnas + lnas
    elif how == "outer":
        keys_nas = [_outer_key_na_position(expected, lk, rk) for lk, rk in zip(left_keys, right_keys)]
        asc, nas = [True] * len(join_keys) + asc, keys_nas + nas
    label = (
        f"merge(how={how!r}, left_on={lkeys}, right_on={rkeys})" if how != "cross" else "merge(how='cross')"
    )
    return JoinStage(
        left,
        right,
        how,
        left_cols,
        right_cols,
        left_keys,
        right_keys,
        left_order,
        right_order,
        join_keys,
        indicator,
        broadcast,
        meta,
        label,
        origins,
        order_ascending=asc,
        na_position=nas,
    )


def _empty_result(lmeta, rmeta, left_cols, right_cols, same, indicator):
    """The empty result of a merge, column by column (where pandas cannot merge the empty
    frames itself)."""
    out = {r: lmeta[c] for c, r in left_cols}
    out.update({r: rmeta[c] for c, r in right_cols if c not in same})
    if indicator:
        out[indicator if isinstance(indicator, str) else "_merge"] = pd.Series(
            pd.Categorical([], categories=["left_only", "right_only", "both"])
        )
    return pd.DataFrame({k: v.reset_index(drop=True) for k, v in out.items()})


def _outer_key_na_position(expected, lk, rk) -> str:
    """Where an outer join puts the rows of a missing key: first for datetime and timedelta
    keys, last for the others, as pandas. pandas sorts an outer join's keys by their
    factorized codes: a time key is factorized as its int64 values, where NaT is the
    smallest integer (so first), while the other types' missing value gets the last code.
    (A ``date`` column read from Parquet is ``datetime64[ms]`` here, and its NaT comes first,
    as in pandas' merge of that dtype; ``pandas.read_parquet`` makes Python dates, whose
    ``None`` pandas puts last.)"""
    times = [expected[c].dtype for c in (lk, rk)]
    if all(pd.api.types.is_datetime64_any_dtype(d) or pd.api.types.is_timedelta64_dtype(d) for d in times):
        return "first"
    return "last"


def _coalesced_dtype(expected, lk, rk):
    """The dtype of the hidden column an outer join is sorted by (the key of either side;
    a categorical key's codes, see :func:`outer_sort_key`)."""
    ld, rd = expected[lk].dtype, expected[rk].dtype
    if lk == rk or ld == rd:
        return np.dtype("int64") if isinstance(ld, pd.CategoricalDtype) else ld
    return _common_dtype(ld, rd)


def _common_dtype(ld, rd):
    """The dtype two outer-join keys of other dtypes are coalesced in: NumPy numbers in
    their common type (an int64 key against a float32 one: float64, the type pandas matches
    and sorts them in; as Python objects, ints beyond 2**53 next to floats could not be
    kept as Arrow), anything else as objects."""
    numeric = all(isinstance(d, np.dtype) and d.kind in "iuf" for d in (ld, rd))
    return np.result_type(ld, rd) if numeric else np.dtype(object)


def semi_join(node, key_expr, values_node, values_col: str, negate: bool, broadcast=None):
    """The :class:`~hpcframe.stages.JoinStage` of ``frame[key.isin(values)]`` (``negate``:
    ``~isin``, an anti-join) where ``values`` is a lazy Series (column ``values_col`` of
    ``values_node``); ``key_expr`` is an expression over ``node``'s columns. The result has
    ``node``'s columns and rows (in its order), NaN matching NaN as in pandas' ``isin``."""
    from . import expr as E

    if P.frame_index(node):
        raise NotImplementedError(
            "isin with a lazy Series filters a frame without an index; call reset_index() on the "
            "group-by result first"
        )
    visible = P.visible_columns(node)
    if isinstance(key_expr, E.Col):
        key = key_expr.name
    else:
        key = "__hpcframe_semi_key__"
        node = P.Assign(node, key, key_expr)
    right = P.Project(values_node, [values_col]) if values_col in values_node.meta.columns else values_node
    left_cols = [(c, c) for c in visible] + ([(key, key)] if key not in visible else [])
    right_cols = [(values_col, _SEMI_VALUE)]
    left_order, asc, nas = _order_of(node, _LEFT_ORDER)
    meta = node.meta[[c for c, _ in left_cols]].iloc[:0].copy()
    for c, h in left_order:
        meta[h] = pd.Series([], dtype="int64" if c is None else node.meta[c].dtype)
    how = "anti" if negate else "semi"
    label = f"{'~' if negate else ''}{key_expr.text()}.isin(<lazy Series>)"
    stage = JoinStage(
        node,
        right,
        how,
        left_cols,
        right_cols,
        [key],
        [_SEMI_VALUE],
        left_order,
        [],
        [],
        False,
        broadcast,
        meta,
        label,
        {c: ("left", c) for c in visible},
        order_ascending=asc,
        na_position=nas,
    )
    sort = P.last_sort(node)
    if sort is not None and not sort.ignore_index and left_order[-1][0] is None:
        # a filter after a sort: pandas keeps the sorted frame's labels, which are the rows'
        # positions in the dataset (as a plain filter after a sort has them), not ranks
        stage.row_labels = left_order[-1][1]
    return stage, visible


# ------------------------------------------------------------------------------------------
# pushing filters and projections into the sides (at API time)
# ------------------------------------------------------------------------------------------
def _side_names(stage: JoinStage, side: str) -> dict:
    """``{result column: side column}`` of the columns a filter may be moved into ``side``
    with (legal for the join type, same name on both sides of the move)."""
    how = stage.how
    out = {}
    for res, origin in stage.origins.items():
        if origin[0] == "both":
            lk, rk = origin[1], origin[2]
            same_type = stage.left.meta[lk].dtype == stage.right.meta[rk].dtype
            # a key value is the same on both sides of a match: rows of the other side whose
            # key fails the filter would only meet rows the filter drops anyway
            ok = {"inner": True, "left": side == "left" or same_type, "right": side == "right" or same_type}
            ok["outer"] = same_type
            if ok.get(how, False) and res == (lk if side == "left" else rk):
                out[res] = lk if side == "left" else rk
        elif origin[0] == side and res == origin[1]:
            legal = (
                how in ("inner", "cross", "semi", "anti")
                or (how == "left" and side == "left")
                or (how == "right" and side == "right")
            )
            if legal:
                out[res] = origin[1]
    return out


def _nan_keeps_dtypes(stage: JoinStage, side: str) -> bool:
    """Whether ``side``'s result columns keep their dtypes when some row has no match there
    (no int or bool column, which pandas turns into float64/object): only then does a
    filter moved below an outer/left/right join leave the result's dtypes as pandas has them
    (pandas decides them from the unfiltered join)."""
    pairs = stage.left_cols if side == "left" else stage.right_cols
    for _, r in pairs:
        if stage.origins.get(r, ("",))[0] == "both" or r not in stage.meta.columns:
            continue
        if getattr(stage.meta[r].dtype, "kind", "O") in "iub":
            return False
    return True


def push_filter(stage: JoinStage, expr):
    """``(new stage or None, remaining conjuncts)``: the conjuncts of the filter ``expr`` on
    the join's result that only read columns of one side (legal for the join type: any side
    of an inner join, the left side of a left join, ...) moved into that side's plan."""
    from .expr import conjuncts, implied_by

    if stage.ready or stage.persisted:
        return None, conjuncts(expr)
    names = {s: _side_names(stage, s) for s in ("left", "right")}
    exposed = {"left": ["right"], "right": ["left"], "outer": ["left", "right"]}.get(stage.how, [])
    if not all(_nan_keeps_dtypes(stage, s) for s in exposed):
        return None, conjuncts(expr)
    if stage.how in ("semi", "anti"):
        names["right"] = {}
    moved: dict[str, list] = {"left": [], "right": []}
    rest = []
    for term in conjuncts(expr):
        cols = term.columns()
        targets = [s for s in ("left", "right") if cols and cols <= set(names[s])]
        if not targets:
            rest.append(term)
            # an | over both sides: each side may still get the part of it the side implies
            for s in ("left", "right"):
                derived = implied_by(term, _only_columns(set(names[s])))
                if derived is not None:
                    moved[s].append(derived)
            continue
        for s in targets:
            moved[s].append(term)
    if not moved["left"] and not moved["right"]:
        return None, rest
    left, right = stage.left, stage.right
    for term in moved["left"]:
        left = P.Filter(left, term)
    for term in moved["right"]:
        right = P.Filter(right, term)
    return stage.with_sides(left, right), rest


def _only_columns(cols: set):
    """Whether an expression reads columns, all among ``cols``."""

    def usable(term) -> bool:
        used = term.columns()
        return bool(used) and used <= cols

    return usable


def prune(stage: JoinStage, wanted: list[str]):
    """A join computing only the result columns ``wanted`` (and the keys and order), or
    ``None`` when nothing can be left out."""
    if stage.ready or stage.persisted or stage.how in ("semi", "anti"):
        return None
    new = narrow(stage, wanted)
    return None if new is stage else new


def narrow(stage: JoinStage, wanted):
    """The join computing only the result columns ``wanted`` plus its keys and its hidden
    order columns (each side then reads only what these need), or ``stage`` itself when
    nothing can be left out. A dtype pandas decides from the data (an int column of a side
    that can miss a match) is decided per column, so a kept column gets the same one.
    Used by the engine for one computation (:mod:`hpcframe.pruning`) and by :func:`prune`."""
    keep = set(wanted) | set(stage.left_keys) | set(stage.right_keys)
    left_cols = [(c, r) for c, r in stage.left_cols if r in keep]
    right_cols = [(c, r) for c, r in stage.right_cols if r in keep]
    if len(left_cols) == len(stage.left_cols) and len(right_cols) == len(stage.right_cols):
        return stage
    dropped = {r for _, r in stage.left_cols + stage.right_cols} - keep
    meta = stage.meta[[c for c in stage.meta.columns if c not in dropped]]
    return stage.with_sides(stage.left, stage.right, left_cols, right_cols, meta)


def side_columns(stage: JoinStage, which: str) -> set:
    """The columns of the ``which`` side's frame the join reads: those it contributes to
    the result (keys included) and those carrying the side's row order."""
    pairs = stage.left_cols if which == "left" else stage.right_cols
    order = stage.left_order if which == "left" else stage.right_order
    return {c for c, _ in pairs} | {c for c, _ in order if c is not None}


# ------------------------------------------------------------------------------------------
# running a join (collective)
# ------------------------------------------------------------------------------------------
class _Side:
    """Output over one side of a join: each block's rows with the columns the result needs
    (renamed to their result names) and the hidden order columns, kept on the rank that read
    them; the partial maps leaves to that rank (as ``persist``)."""

    limit = None

    def __init__(
        self,
        stage: JoinStage,
        which: str,
        rank: int,
        whole: Probe | None = None,
        reduce: _KeyFilter | None = None,
        node=None,
    ):
        self.stage, self.which, self.rank, self.whole, self.reduce = stage, which, rank, whole, reduce
        self.node = node if node is not None else stage.left if which == "left" else stage.right
        self.pairs = stage.left_cols if which == "left" else stage.right_cols
        self.order = stage.left_order if which == "left" else stage.right_order
        self.frames: dict = {}
        self.term: KeyIn | None = None
        self.pushed: KeyIn | None = None

    def key_terms(self, declared) -> list[KeyIn]:
        """The Arrow filters of the read: :meth:`key_term` and, for a join computed for the
        inner join reading it (``stage.pushed``), the reading join's keys on this side's
        column (:func:`reduced_input`)."""
        out = []
        term = self.key_term(declared)
        if term is not None:
            out.append(term)
        pushed = self.stage.pushed.get(self.which)
        if pushed is not None:
            if self.pushed is None and _int64_source_column(self.node, pushed[0], declared):
                self.pushed = KeyIn(pushed[0], pushed[1])
            if self.pushed is not None:
                out.append(self.pushed)
        return out

    def key_term(self, declared) -> KeyIn | None:
        """An Arrow filter for the read (:class:`hpcframe.expr.KeyIn`) that keeps only the rows
        whose key is among the keys of the broadcast side (``whole``) or of the key filter
        (``reduce``), so that rows which cannot match are dropped before their conversion
        to pandas. Only for an inner join on one key that is an int64 column of the source
        on this side (not reassigned) and int64 on the other side: there Arrow's ``is_in``
        matches exactly what the merge matches (a missing key matches nothing). Also for a
        semi/anti join: its values (right side) against the key filter of the rows to filter
        (a value no row has changes nothing), and a semi join's rows (left side) against the
        broadcast values (a row whose key is not among them is not kept); both sides then
        are int64 without a missing value, where ``isin`` and ``is_in`` agree. ``None``
        otherwise: the join then drops those rows itself."""
        probe = self.whole if self.whole is not None else getattr(self.reduce, "probe", None)
        stage = self.stage
        semi = (stage.how in ("semi", "anti") and self.which == "right" and self.reduce is not None) or (
            stage.how == "semi" and self.which == "left" and self.whole is not None
        )
        if probe is None or not (stage.how == "inner" or semi) or stage.indicator or stage.join_keys:
            return None
        if self.term is not None:
            return self.term
        if len(probe.keys) != 1 or probe.whole[probe.keys[0]].dtype != np.dtype("int64"):
            return None
        sources = [c for c, r in self.pairs if r == probe.other_keys[0]]
        if len(sources) != 1 or sources[0] not in declared.names:
            return None
        if not _int64_source_column(self.node, sources[0], declared):
            return None
        index = probe._build()
        if index is None:
            return None
        self.term = KeyIn(sources[0], index.uniques[0])
        return self.term

    def leaves(self):
        """Itself."""
        return [self]

    def columns(self):
        """The side's columns the result needs."""
        return side_columns(self.stage, self.which)

    def text(self):
        """For explain and errors."""
        return f"{self.which} side of {self.stage.label}"

    def chunk(self, df, leaf):
        """Keep this block's rows, renamed; or, with the other side broadcast (``whole``),
        this block's part of the result (the block itself is not kept)."""
        block = shape_side(df, self.pairs, self.order, leaf.row_offset, self.stage.how)
        if self.reduce is not None:
            block = self.reduce.keep(block)
        if self.whole is not None:
            block = _finish_part(self.stage, merge_block(self.stage, block, self.whole))
        self.frames[leaf.index] = block
        return {leaf.index: self.rank}

    def combine(self, a, b):
        """Merge the leaf → rank maps."""
        return {**(a or {}), **(b or {})}

    def finalize(self, owners):
        """Every read leaf's rank."""
        return owners or {}


def _int64_source_column(node, column: str, declared) -> bool:
    """Whether ``column`` of ``node``'s frame is the int64 column of that name of its
    source (``declared``: the source's Arrow schema; not reassigned by the chain; int64 in
    pandas too: float64 where the dataset has missing keys) — where a :class:`KeyIn` on the
    source column drops exactly the rows whose key is not among its keys."""
    if column not in declared.names or declared.field(column).type != pa.int64():
        return False
    return _kept_int64(node, column)


def _kept_int64(node, column: str) -> bool:
    """Whether ``column`` of ``node``'s frame is int64 and not reassigned by its chain."""
    if column not in node.meta.columns or node.meta[column].dtype != np.dtype("int64"):
        return False
    return not any(isinstance(n, P.Assign) and n.name == column for n in node.chain())


def shape_side(df, pairs, order, row_offset: int, how: str):
    """One block of a side as the join reads it: result names, hidden order columns."""
    names = [r for _, r in pairs] + [h for _, h in order]
    if len(df) and names and len(set(names)) == len(names) and df.columns.is_unique:
        # one concat of the renamed columns (selecting, renaming, resetting the index and
        # inserting the order columns one by one cost ~4 pandas calls per column per block)
        plain = df.reset_index(drop=True)
        cols = [plain[c].rename(r) for c, r in pairs]
        for c, h in order:
            if c is None:
                positions = np.int64(row_offset) + df.index.to_numpy(dtype="int64")
                cols.append(pd.Series(positions, index=plain.index, name=h, copy=False))
            else:
                cols.append(plain[c].rename(h))
        out = pd.concat(cols, axis=1)
    else:  # no rows (the empty side: pandas' dtypes of an empty frame), or unusual names
        out = df[[c for c, _ in pairs]].set_axis([r for _, r in pairs], axis=1).reset_index(drop=True)
        for c, h in order:
            if c is None:
                out[h] = np.int64(row_offset) + df.index.to_numpy(dtype="int64")
            else:
                out[h] = df[c].reset_index(drop=True)
    if how in ("semi", "anti") and _SEMI_VALUE in out.columns:
        out = out.drop_duplicates(_SEMI_VALUE, ignore_index=True)
    return out


def _empty_side(stage: JoinStage, which: str):
    node = stage.left if which == "left" else stage.right
    pairs = stage.left_cols if which == "left" else stage.right_cols
    order = stage.left_order if which == "left" else stage.right_order
    return shape_side(node.meta, pairs, order, 0, stage.how)


def merge_part(stage: JoinStage, left, right):
    """pandas' merge of one partition's (or block's) rows of the two sides, with the hidden
    coalesced keys of an outer join."""
    how = stage.how
    if not len(left) and not len(right):  # (pandas fails on some empty frames)
        return stage.meta.iloc[:0].copy()
    if how in ("semi", "anti"):
        mask = left[stage.left_keys[0]].isin(right[_SEMI_VALUE]).to_numpy()
        return left[~mask if how == "anti" else mask]
    if how == "cross":
        return pd.merge(left, right, how="cross", indicator=stage.indicator)
    out = pd.merge(
        left,
        right,
        how=how,
        left_on=stage.left_keys,
        right_on=stage.right_keys,
        indicator=stage.indicator,
        sort=False,
    )
    if stage.join_keys:
        present = out[stage.left_order[0][1]].notna().to_numpy()
        for h, lk, rk in zip(stage.join_keys, stage.left_keys, stage.right_keys):
            if lk == rk:
                key = out[lk]
            else:
                lv, rv = out[lk], out[rk]
                if lv.dtype != rv.dtype:
                    common = _common_dtype(lv.dtype, rv.dtype)
                    lv, rv = lv.astype(common), rv.astype(common)
                key = lv.where(present, rv)
            by_codes = left[lk].dtype == right[rk].dtype and isinstance(left[lk].dtype, pd.CategoricalDtype)
            out[h] = outer_sort_key(key, by_codes)
    return out


def outer_sort_key(key: pd.Series, by_codes: bool) -> pd.Series:
    """The hidden column an outer join's rows are sorted by, from its coalesced key: a key
    categorical on both sides with the same categories (pandas keeps it categorical) as
    its codes, a missing key -1, since pandas sorts such a key by its codes with the
    missing ones first; any other key as it is (a categorical key with other categories on
    the two sides is ``str``: sorted by value, missing last).

    ``by_codes``: whether the two sides' keys are categorical with the same categories.
    Every partition's pieces, and an empty side, have their side's categories
    (:func:`_shuffle`), so all partitions decide alike. The planned dtypes cannot tell (a
    frame's declared categorical has no categories): the partition decides. When the
    categories differ, or one side is not categorical, the key is sorted by its values even
    where pandas made it categorical — in a partition whose other side has no rows — since
    its codes would be integers in a column of strings ("cannot keep the data as Arrow
    tables") and would order the rows by the wrong rule."""
    if isinstance(key.dtype, pd.CategoricalDtype):
        if not by_codes:
            return key.astype(object)
        return pd.Series(key.cat.codes.to_numpy(dtype="int64"), index=key.index)
    return key


# ------------------------------------------------------------------------------------------
# the broadcast side, hashed once
# ------------------------------------------------------------------------------------------
_RADIX_LIMIT = 1 << 62  # several keys are combined into one int64 code below this


def _probe_dtype(dtype) -> bool:
    """Whether keys of ``dtype`` are matched by :class:`Probe` (NumPy numbers, bools,
    datetimes and timedeltas: what ``pandas.Index.get_indexer`` matches exactly as ``merge``
    and ``isin`` do, NaN and NaT matching each other)."""
    return isinstance(dtype, np.dtype) and dtype.kind in "biufmM"


class _HashIndex(NamedTuple):
    """:class:`Probe`'s index: per key the Index of its distinct values and their number
    (several keys: one int64 code per row, mixed radix, and the Index of the distinct
    codes); the rows of ``whole`` by group (``order``), ``counts`` and ``starts`` per group;
    the :class:`_DenseLookup` tables that replace an Index where its values are compact."""

    uniques: list
    radices: list
    combined: pd.Index | None
    counts: np.ndarray
    starts: np.ndarray
    order: np.ndarray
    dense: list  # per key, then (several keys) of the combined codes: a _DenseLookup or None


class _DenseLookup:
    """The positions of a key's distinct integer values (``pd.factorize``'s uniques) as a
    table over their range, ``table[value - low]`` (-1: absent): one gather per row instead of
    a hash lookup (TPC-H part, supplier and order keys are dense ranges)."""

    __slots__ = ("low", "high", "table")

    #: the table is used when the keys' range is at most this many times their number (or
    #: at most ``SMALL`` entries) ...
    SPREAD = 64
    SMALL = 1 << 20
    #: ... and at most this many entries (int32: 64 MiB)
    MAX_ENTRIES = 1 << 24

    @classmethod
    def of(cls, uniques: np.ndarray) -> _DenseLookup | None:
        """The table of ``uniques`` (distinct values), or ``None`` when they are not signed
        integers spanning a compact range."""
        if uniques.dtype.kind != "i" or not len(uniques):
            return None
        low, high = int(uniques.min()), int(uniques.max())
        span = high - low + 1
        if span > cls.MAX_ENTRIES or span > max(cls.SPREAD * len(uniques), cls.SMALL):
            return None
        table = np.full(span, -1, dtype=np.int32)
        table[uniques.astype(np.int64) - np.int64(low)] = np.arange(len(uniques), dtype=np.int32)
        return cls(low, high, table)

    def __init__(self, low: int, high: int, table: np.ndarray):
        self.low, self.high, self.table = low, high, table

    def get_indexer(self, values: np.ndarray) -> np.ndarray:
        """As ``pd.Index(uniques).get_indexer(values)`` for ``values`` of the uniques' dtype."""
        inside = (values >= self.low) & (values <= self.high)
        at = np.where(inside, values.astype(np.int64, copy=False) - np.int64(self.low), 0)
        out = self.table.take(at).astype(np.int64)
        out[~inside] = -1
        return out


class Probe:
    """The broadcast side of a join (``whole``), its keys hashed once for all the blocks of
    the other side merged with it (``pandas.merge`` and ``isin`` hash the whole side again for
    every block: at TPC-H scale factor 10 that was most of a broadcast join's time).

    The matches of a block are computed from the hash index and handed to pandas as row
    positions (:meth:`indexers`); the result is built by ``take`` and so has pandas' values
    and dtypes. Only the cases where that is provably pandas' result use it
    (:meth:`usable`): same key dtypes on both sides (:func:`_probe_dtype`), no indicator,
    and every row of the block's side kept (inner joins; left joins, a block row without a
    match filled as pandas fills it; right joins whose block rows all found a match).
    Everything else goes through :func:`merge_part`.
    """

    def __init__(self, stage: JoinStage, which: str, whole: pd.DataFrame):
        self.stage, self.which, self.whole = stage, which, whole
        self.keys = stage.left_keys if which == "left" else stage.right_keys
        self.other_keys = stage.right_keys if which == "left" else stage.left_keys
        self._index: _HashIndex | None = None
        self._unusable = False  # too many distinct key combinations for one int64

    def usable(self, block: pd.DataFrame) -> bool:
        """Whether :meth:`merge` computes this block's result (see the class docstring)."""
        stage = self.stage
        if stage.indicator or stage.how in ("cross", "outer") or stage.join_keys:
            return False
        kept = {"semi": "left", "anti": "left", "left": "left", "right": "right"}.get(stage.how)
        if kept == self.which:  # the side every row of which is kept is not the probed one
            return False
        for k, ok in zip(self.keys, self.other_keys):
            dtype = self.whole[k].dtype
            if dtype != block[ok].dtype or not _probe_dtype(dtype):
                return False
        return self._build() is not None

    def _build(self) -> _HashIndex | None:
        if self._index is None and not self._unusable and len(self.keys) == 1:
            self._index = _distinct_index(self.whole[self.keys[0]].to_numpy())
        if self._index is None and not self._unusable:
            whole = self.whole
            uniques, codes, radices, dense = [], None, [], []
            size = 1
            for k in self.keys:
                c, u = _factorize(whole[k].to_numpy())
                uniques.append(pd.Index(u))
                dense.append(_DenseLookup.of(u))
                radices.append(len(u))
                size *= max(len(u), 1)
                if size >= _RADIX_LIMIT:
                    self._unusable = True
                    return None
                c = c.astype(np.int64, copy=False)
                codes = c if codes is None else codes * len(u) + c
            assert codes is not None  # a join that is not a cross join has keys
            if len(self.keys) > 1:
                group, combos = pd.factorize(codes)
                combined = pd.Index(combos)
                dense.append(_DenseLookup.of(combos))
            else:
                group, combined = codes, None
            counts = np.bincount(group, minlength=len(combined) if combined is not None else radices[0])
            order = np.argsort(group, kind="stable")
            starts = np.cumsum(counts) - counts
            self._index = _HashIndex(uniques, radices, combined, counts, starts, order, dense)
        return self._index

    def _groups(self, block: pd.DataFrame) -> np.ndarray:
        """The group of every block row's keys in ``whole`` (-1: no match)."""
        ix = self._build()
        assert ix is not None
        uniques, radices, combined = ix.uniques, ix.radices, ix.combined
        codes: np.ndarray | None = None
        missing = np.zeros(len(block), dtype=bool)
        for k, u, r, d in zip(self.other_keys, uniques, radices, ix.dense):
            values = block[k].to_numpy()
            c = (u if d is None else d).get_indexer(values).astype(np.int64, copy=False)
            missing |= c < 0
            codes = c if codes is None else codes * r + c
        assert codes is not None
        if combined is None:
            return codes
        lookup = combined if ix.dense[len(uniques)] is None else ix.dense[len(uniques)]
        out = lookup.get_indexer(np.where(missing, 0, codes)).astype(np.int64, copy=False)
        out[missing] = -1
        return out

    def contains(self, block: pd.DataFrame) -> np.ndarray:
        """For a semi/anti join: whether each block row's key is among ``whole``'s values
        (``isin``, NaN matching NaN)."""
        return self._groups(block) >= 0

    def indexers(self, block: pd.DataFrame, unmatched: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(block rows, whole rows, every block row matched)`` of the matches: block rows
        in order, and for each the matching whole rows in ``whole``'s order (pandas' order of
        an inner merge with the block on the left). ``unmatched``: a block row without a match
        is kept too, once, with whole row ``-1`` (a left join's row of missing values)."""
        ix = self._build()
        assert ix is not None
        counts, starts, order = ix.counts, ix.starts, ix.order
        g = self._groups(block)
        found = g >= 0
        if unmatched and len(order) and not bool(found.all()):
            hit = np.arange(len(block), dtype=np.int64)  # every row, an unmatched one once
            gh = np.where(found, g, 0)
            per = np.where(found, counts[gh], 1)
            missing = np.repeat(~found, per)
        else:  # only the rows that found a match are expanded (a selective join keeps few)
            hit = np.flatnonzero(found)
            gh = g[hit]
            per, missing = counts[gh], None
        at = starts[gh]
        all_found = missing is None and len(hit) == len(block)
        if bool((per == 1).all()):  # each key once in ``whole`` (a primary key): no repeats
            rows, matches = hit, order[at]
        else:
            total = int(per.sum())
            rows = np.repeat(hit, per)
            within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
            matches = order[np.repeat(at, per) + within]
        if missing is not None:
            matches[missing] = -1
        return rows, matches, all_found

    def merge(self, block: pd.DataFrame):
        """The block's merge with ``whole`` (as :func:`merge_part` gives it), or ``None`` when
        it must go through pandas (a left/right join with an unmatched row of the block, or
        too many key combinations for the index)."""
        stage = self.stage
        if self._build() is None:
            return None
        if stage.how in ("semi", "anti"):
            mask = self.contains(block)
            return block[~mask if stage.how == "anti" else mask]
        # a left join's block rows without a match: the whole side's columns missing there,
        # taken as pandas' merge takes them (ints become float64, bools object, ...)
        fill = stage.how == "left" and self.which == "right" and len(self.whole) > 0
        rows, matches, all_found = self.indexers(block, unmatched=fill)
        if stage.how != "inner" and not all_found and not fill:
            return None
        if stage.how == "inner" and self.which == "left":  # left rows first, as pandas
            perm = np.argsort(matches, kind="stable")
            rows, matches = rows[perm], matches[perm]
        left, right = (self.whole, block) if self.which == "left" else (block, self.whole)
        at: np.ndarray | None = rows
        if (
            len(rows) == len(block)
            and (all_found or fill)
            and not (stage.how == "inner" and self.which == "left")
        ):
            at = None  # every block row once, in order (a primary key's side): kept as it is
        lrows, rrows = (matches, at) if self.which == "left" else (at, matches)
        # a key of the same name on both sides: the left one
        rcols = [c for c in right.columns if c not in left.columns]
        return _taken(stage, left, lrows, right, rcols, rrows, fill=not all_found)


def _taken(
    stage: JoinStage, left: pd.DataFrame, lrows, right: pd.DataFrame, rcols: list, rrows, fill: bool = False
) -> pd.DataFrame:
    """``left.take(lrows)`` beside ``right[rcols].take(rrows)`` (index reset): a join's rows
    from the positions :meth:`Probe.indexers` found, in the result's column order when those
    are its columns. One ``take`` of each column's array and one frame of them (the frames'
    ``take`` and ``concat`` cost pandas a copy of ``right[rcols]`` and more calls per block
    than the gathers themselves); the same arrays, so the same values and dtypes. Positions
    ``None``: every row of that frame once, in order — its columns are shared, not copied,
    as pandas' ``take`` does for such positions (every block row matching one row of a
    broadcast primary key: TPC-H's joins with ``nation``). ``fill``: ``rrows`` holds ``-1``
    for a left join's unmatched rows, taken as pandas' merge takes them (``allow_fill``: the
    missing value of the dtype pandas promotes to); ``None`` when that cannot be taken so
    (unusual names: the frames' ``take`` cannot fill), for pandas to merge."""
    if not left.columns.is_unique or len(set(rcols)) != len(rcols):  # (unusual names)
        if fill:
            return None
        lrows = np.arange(len(left)) if lrows is None else lrows
        rrows = np.arange(len(right)) if rrows is None else rrows
        parts = [left.take(lrows).reset_index(drop=True), right[rcols].take(rrows).reset_index(drop=True)]
        return pd.concat(parts, axis=1)
    if lrows is None and not left.index.equals(pd.RangeIndex(len(left))):
        left = left.reset_index(drop=True)  # (no copy: the index of the result's Series)
    if rrows is None and not right.index.equals(pd.RangeIndex(len(right))):
        right = right.reset_index(drop=True)
    where = {c: (left, lrows) for c in left.columns}
    where.update((c, (right, rrows)) for c in rcols)
    names = list(stage.meta.columns)
    if len(names) != len(where) or not all(c in where for c in names):
        names = list(where)
    data = {}
    for c in names:
        frame, at = where[c]
        col = frame[c]
        if at is None:  # (a Series: the frame built of it knows they share the values)
            data[c] = col
        elif fill and frame is right:
            values = col.to_numpy() if isinstance(col.dtype, np.dtype) else col.array
            data[c] = pd.api.extensions.take(values, at, allow_fill=True)
        else:
            data[c] = col.to_numpy().take(at) if isinstance(col.dtype, np.dtype) else col.array.take(at)
    return pd.DataFrame(data, copy=False)


def _distinct_index(values: np.ndarray) -> _HashIndex | None:
    """The :class:`_HashIndex` of one integer key whose values are all distinct (a primary
    key: TPC-H's order, customer, part and supplier keys), or ``None`` when some repeat or the
    values are not integers. It is the index ``pd.factorize`` gives (codes ``arange``, the
    values as uniques, one row per group in row order) without that hash pass: strictly
    ascending values are distinct, a compact range is checked distinct by its
    :class:`_DenseLookup` table, any other by the hash table of the uniques' Index, which is
    then the one the probe looks blocks up in (the general path hashes the values twice: to
    factorize them, then in the Index of the uniques)."""
    n = len(values)
    if values.dtype.kind not in "iu" or n < 2:
        return None
    dense = _DenseLookup.of(values)
    index = pd.Index(values, copy=False)
    if not bool((values[1:] > values[:-1]).all()):  # strictly ascending: distinct (key filters)
        if dense is not None:
            # a repeated value's table entry holds its last position only
            at = dense.table.take(values.astype(np.int64) - np.int64(dense.low))
            if not bool((at == np.arange(n, dtype=np.int32)).all()):
                return None
        else:
            head = values[:_DISTINCT_SAMPLE]
            if len(np.unique(head)) != len(head):  # (repeats show early: skip a wasted hash)
                return None
            if not index.is_unique:
                return None
    rows = np.arange(n, dtype=np.intp)
    return _HashIndex([index], [n], None, np.ones(n, dtype=np.intp), rows, rows, [dense])


#: the first values of a key :func:`_distinct_index` checks by a sort before hashing them all
_DISTINCT_SAMPLE = 4096


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values, use_na_sentinel=False)``; integers in strictly ascending order
    (the distinct keys gathered from sorted blocks: lineitem's order keys) without hashing."""
    if values.dtype.kind in "iu" and (len(values) < 2 or bool((values[1:] > values[:-1]).all())):
        return np.arange(len(values), dtype=np.intp), values
    return pd.factorize(values, use_na_sentinel=False)


def _distinct_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The distinct rows of ``frame`` (the key columns of a join's side) as a frame with a
    fresh RangeIndex, as ``frame.drop_duplicates(ignore_index=True)`` has them but in an
    order of this function's choosing: the key filter only asks whether a key is among them.

    One integer column (a numpy dtype, so no missing value) is sorted and its runs kept,
    not hashed: the keys gathered from the ranks are a few sorted runs (every rank's
    distinct keys are sorted), which the stable sort (timsort) merges in about linear time,
    and the sorted result is what ``_factorize`` and ``_distinct_index`` then take without
    hashing (TPC-H q9 at SF 10: 0.4 s per rank to deduplicate 2.9 M order keys, and 0.75 s
    to factorize them, before). Several columns: ``drop_duplicates`` (packing integer
    columns into one code measured no faster)."""
    if len(frame.columns) == 1 and len(frame) > 1:
        values = frame.iloc[:, 0].to_numpy()
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            if not bool((values[1:] >= values[:-1]).all()):
                values = np.sort(values, kind="stable")
            heads = np.concatenate(([True], values[1:] != values[:-1]))
            return pd.DataFrame({frame.columns[0]: values[heads]})
    return frame.drop_duplicates(ignore_index=True)


def merge_block(stage: JoinStage, block: pd.DataFrame, probe: Probe):
    """One block of the side that is not broadcast merged with the broadcast side (held by
    ``probe``): by the probe's hash index where it gives pandas' result, else by pandas."""
    if probe.usable(block):
        res = probe.merge(block)
        if res is not None:
            return res
    if probe.which == "left":
        return merge_part(stage, probe.whole, block)
    return merge_part(stage, block, probe.whole)


def _finish_part(stage: JoinStage, df):
    """A result partition in the result's column order, sorted by its row order (a merge
    mostly gives it in that order already: checked first, in O(rows))."""
    if not df.columns.equals(stage.meta.columns):  # (a merge mostly gives that order too)
        df = df[list(stage.meta.columns)]
    spec = P.source_sort(stage)
    if not _is_sorted(df, spec):
        df = P.sort_rows(df, spec)
    return df.reset_index(drop=True)


def _is_sorted(df, spec) -> bool:
    """Whether ``df``'s rows are in the order ``spec`` (a :class:`hpcframe.plan.RowSort`)
    when it is ascending, missing values last, on numeric columns; ties count as sorted (a
    stable sort keeps them). ``False`` when unsure (a non-numeric column, another
    direction)."""
    cols = spec.columns
    if not all(spec.ascending) or any(na != "last" for na in spec.na_position):
        return False
    n = len(df)
    if n < 2:
        return True
    undecided = np.ones(n - 1, dtype=bool)  # pairs of neighbours equal in the columns so far
    for c in cols:
        col = df[c]
        kind = getattr(col.dtype, "kind", "O")
        if kind in "iu":
            a = col.to_numpy()
            lt, eq = a[:-1] < a[1:], a[:-1] == a[1:]
        elif kind == "f":
            a = col.to_numpy(dtype="float64", na_value=np.nan)
            x, y = a[:-1], a[1:]
            xn, yn = np.isnan(x), np.isnan(y)
            with np.errstate(invalid="ignore"):
                lt = (x < y) | (~xn & yn)
                eq = (x == y) | (xn & yn)
        else:
            return False
        if (undecided & ~lt & ~eq).any():
            return False
        undecided &= eq
        if not undecided.any():
            return True
    return True


def _choose(stage: JoinStage, lbytes: int, rbytes: int) -> str:
    """``"broadcast left"``, ``"broadcast right"`` or ``"shuffle"`` (the same on every rank:
    from the agreed sizes and the stage's parameters)."""
    how, force = stage.how, stage.broadcast
    limit = config.broadcast_bytes
    if how == "outer":
        return "shuffle"
    if how == "cross":
        return "broadcast left" if lbytes < rbytes else "broadcast right"
    legal = {
        "inner": ["right", "left"],
        "left": ["right"],
        "right": ["left"],
        "semi": ["right", "left"],  # left: see _filter_broadcast_left
        "anti": ["right", "left"],
    }[how]
    sizes = {"left": lbytes, "right": rbytes}
    if force is False:
        return "shuffle"
    if force is True:
        side = min(legal, key=lambda s: sizes[s])
        return f"broadcast {side}"
    fits = [s for s in legal if sizes[s] <= limit]
    if not fits:
        return "shuffle"
    if how in ("semi", "anti") and "right" in fits:  # the values: deduplicated, streamed
        return "broadcast right"
    return f"broadcast {min(fits, key=lambda s: sizes[s])}"


def materialise_join(stage: JoinStage, comm, engine):
    """Collective: compute ``stage``; returns ``(owners, frames)``: the rank holding each
    result partition and this rank's partitions (see the module docstring). ``engine`` is
    the :mod:`hpcframe.execute` module, passed in by it (this module sits below the engine
    and does not import it): its scans, exchanges and counters.

    The side that may be broadcast is read first (see :func:`_first_side`: usually the
    right side; the left one of a right join; the smaller estimate of an inner or semi/anti
    join). When it may be broadcast, it is, and the other side is merged with it
    block by block while it is read (its rows are never all held); otherwise the other side
    is read and held too, and the strategy is chosen from both sizes."""
    stage.input_schemas = {}
    first = _first_side(stage, comm, engine)
    other = "right" if first == "left" else "left"
    sides = {first: _read(stage, first, comm, engine)}
    first_bytes = _total_bytes(sides[first][0], comm)
    limit = config.broadcast_bytes
    stream = stage.how != "outer" and stage.broadcast is not False
    stream = stream and (stage.broadcast is True or first_bytes <= limit)
    # the rows a semi/anti join filters are never broadcast for the values to stream past
    stream = stream and not (stage.how in ("semi", "anti") and first == "left")
    sizes: tuple[int | None, int | None]
    if stream:
        strategy = f"broadcast {first}"
        sizes = (None, first_bytes) if first == "right" else (first_bytes, None)
    else:
        reduce = _key_filter(stage, first, sides[first][0], comm, engine)
        sides[other] = _read(stage, other, comm, engine, reduce=reduce)
        other_bytes = _total_bytes(sides[other][0], comm)
        both = (other_bytes, first_bytes) if first == "right" else (first_bytes, other_bytes)
        strategy = _choose(stage, both[0], both[1])
        sizes = both
    stage.strategy, stage.sizes = strategy, sizes
    stage.partitioning = "hash of the keys" if strategy == "shuffle" else "as read"
    engine._add_stat("joins_broadcast" if strategy.startswith("broadcast") else "joins_shuffled", 1)
    if strategy == "shuffle":
        return _shuffle(stage, sides, comm, engine)
    small = strategy.split()[1]
    if small == "left" and stage.how in ("semi", "anti"):
        return _filter_broadcast_left(stage, sides, comm, engine)
    whole = Probe(stage, small, _gather_side(stage, small, sides.pop(small)[0], comm, engine))
    if stream:
        frames, owners_of_leaves = _read(stage, other, comm, engine, whole)
        return _by_leaf(frames, owners_of_leaves)
    return _broadcast(stage, sides, small, whole, comm, engine)


def _first_side(stage: JoinStage, comm, engine) -> str:
    """Collective: the side to read first — the one that may be broadcast (the right side;
    the left one of a right join). An inner join may broadcast either: there the side with
    the smaller estimate (:func:`_estimated_bytes`) is read first, so that when it fits,
    the other side streams past it instead of being held (``small.merge(big)`` as well as
    ``big.merge(small)``). A semi/anti join (``isin`` of a lazy Series) whose rows to filter
    have the smaller estimate reads them first too: their keys then filter the values while
    they are read (:func:`_key_filter`; TPC-H Q4: a quarter's orders, then the lineitem rows
    of those orders only). The choice only orders the reading: the strategy is still
    decided from the sizes read.

    A side over a join (or group-by result) left to this one (:func:`deferrable_joins`) is
    estimated from that join's sides (:func:`_deferred_estimate`); when the other side is
    filtered (:func:`_selective`: its keys are likely few) and estimated smaller, and
    small — at most a quarter of ``config.broadcast_bytes``, so that broadcasting it
    instead of a small deferred join costs little (TPC-H q8's orders of two years: 134 MB
    at SF 10, not read first) — it is read first and its keys reduce the deferred join (see
    :func:`_read`); otherwise the deferred join is computed in full here. (A join of
    unfiltered tables as the other side, q8's suppliers with their nations, would be
    broadcast in place of a smaller deferred join and reduce nothing.)"""
    if stage.how == "right":
        return "left"
    nodes = {"left": stage.left, "right": stage.right}
    for which, node in nodes.items():
        run = engine.deferred_run(stage_of(node))
        if run is not None and pushed_input(stage, which, run) is not None:
            # reduced by the keys this join's reader pushed into it (see _read): its rows are
            #    few of the child's, read first (its keys may reduce the other side in turn)
            return which
    for which, node in nodes.items():
        child = stage_of(node)
        run = engine.deferred_run(child)
        if run is None:
            continue
        other = "right" if which == "left" else "left"
        onode = stage.right if which == "left" else stage.left
        if _selective(onode):  # its keys: a subset
            mine = _deferred_estimate(run, comm, engine)
            orun = engine.deferred_run(stage_of(onode))  # (both sides deferred: see deferrable_joins)
            theirs = (
                _deferred_estimate(orun, comm, engine)
                if orun is not None
                else _estimated_bytes(stage, other, comm)
            )
            if theirs < mine and theirs <= config.broadcast_bytes // 4:
                return other
        engine.materialise_deferred(child, comm)
    if stage.how not in ("inner", "semi", "anti") or stage.broadcast is not None:
        return "right"
    left, right = _estimated_bytes(stage, "left", comm), _estimated_bytes(stage, "right", comm)
    return "left" if left < right else "right"


def _selective(node) -> bool:
    """Whether the rows of ``node`` (a side of a join) are likely few of its tables' rows,
    so that its keys are likely a small subset of those they meet: a filter in its chain,
    or a join stage it reads that is a semi/anti join (a filter) or an inner join with such
    a side (TPC-H q20: partsupp joined with the 1 % of parts named 'forest%')."""
    if any(isinstance(n, P.Filter) for n in node.chain()):
        return True
    st = stage_of(node)
    if isinstance(st, JoinStage) and st.how in ("semi", "anti"):
        return True
    return isinstance(st, JoinStage) and st.how == "inner" and (_selective(st.left) or _selective(st.right))


def _deferred_estimate(run, comm, engine) -> float:
    """Collective: a deferred join's estimated bytes (it is not computed yet): its larger
    side's estimate — an inner join with a smaller side (a dimension table) keeps at most
    about the rows of the larger one; a semi/anti join its left side's. A side over another
    deferred join is estimated the same way. A deferred group-by result (an AggStage): the
    estimate of the rows its group-by reads."""
    if isinstance(run, AggStage):  # a group-by result: its input's rows
        return _scan_estimate(run.output, comm)
    whiches = ["left"] if run.how in ("semi", "anti") else ["left", "right"]
    out = 0.0
    for which in whiches:
        child = engine.deferred_run(stage_of(run.left if which == "left" else run.right))
        got = _deferred_estimate(child, comm, engine) if child is not None else None
        out = max(out, got if got is not None else _estimated_bytes(run, which, comm))
    return out


def _estimated_bytes(stage: JoinStage, which: str, comm) -> float:
    """Collective (the first scan of a source discovers it): the bytes of the ``which``
    side's source that its scan reads — the partitions left after pruning by statistics,
    each times the share of its rows the side's range filters keep if its values were
    spread evenly between its min/max statistics (:func:`_filter_ranges`), times the share
    of the source's columns the join uses — times a guessed selectivity of 1/5 per other
    filter of the side (``FILTER_SELECTIVITY``, as DuckDB's planner guesses; at least
    1/100). Partitions of a held stage are exact; a Parquet row group's size is its
    uncompressed size. The same on every rank."""
    return _scan_estimate(_Side(stage, which, comm.rank), comm)


def _scan_estimate(out, comm) -> float:
    """Collective: :func:`_estimated_bytes` of the read of one output ``out`` (a join side,
    or the group-by computing a group-by result)."""
    from .physical import plan_scan

    side = out
    plan = plan_scan([side], comm)
    bounds, guessed = _filter_ranges(side.node)
    pushed = _pushed_keys(side)
    nbytes = 0.0
    for _, parts in plan.wanted:
        for part in parts:
            share = 1.0
            for col, (low, high) in bounds.items():
                st = part.stats.get(col) if part.stats else None
                share *= range_share((low, high), None if st is None else (st.min, st.max))
            if pushed is not None:
                st = part.stats.get(pushed[0]) if part.stats else None
                share *= _keys_share(pushed[1], st)
            nbytes += part.nbytes * share
    total = len(side.node.scan().meta.columns) or 1
    return nbytes * min(1.0, len(side.columns()) / total) * max(FILTER_SELECTIVITY**guessed, 0.01)


def _pushed_keys(side) -> tuple[str, np.ndarray] | None:
    """``(column, sorted keys)`` of the keys the reader of a join pushed into its side
    ``side`` (``stage.pushed``, :func:`reduced_input`, :func:`pushed_input`), else ``None``."""
    stage = getattr(side, "stage", None)
    pushed = getattr(stage, "pushed", None)
    got = pushed.get(side.which) if isinstance(pushed, dict) else None
    if got is None:
        return None
    return got[0], np.sort(np.asarray(got[1], dtype=np.int64))


def _keys_share(keys: np.ndarray, stats) -> float:
    """The share of a partition's rows whose int64 column is among the distinct ``keys``
    (sorted), were its values the integers between its statistics' min and max, each as
    often: the keys in that range over its width (TPC-H keys are dense ranges). 1.0 when
    the statistics cannot tell."""
    if stats is None or stats.min is None or stats.max is None:
        return 1.0
    try:
        lo, hi = int(stats.min), int(stats.max)
    except (TypeError, ValueError, OverflowError):
        return 1.0
    if hi < lo:
        return 1.0
    n = int(np.searchsorted(keys, hi, side="right") - np.searchsorted(keys, lo, side="left"))
    return min(1.0, n / (hi - lo + 1))


def _filter_ranges(node) -> tuple[dict, int]:
    """The filters of a side's chain as ``(bounds, guessed)``: per source column the
    interval its range terms leave (``col >= a``, ``col < b``, ``between``: intersected),
    whose share of each partition's rows :func:`_estimated_bytes` takes from the
    partition's statistics; and the number of filters with another kind of term (each
    guessed to keep ``FILTER_SELECTIVITY``). Terms on a column an Assign before them
    redefines count as guessed."""
    bounds: dict = {}
    guessed, assigned = 0, set()
    for n in node.chain()[1:]:
        if isinstance(n, P.Assign):
            assigned.add(n.name)
            continue
        if not isinstance(n, P.Filter):
            continue
        other = False
        for term in conjuncts(n.expr):
            r = range_of(term)
            if r is None or r[0] in assigned:
                other = True
                continue
            col, low, high = r
            was_low, was_high = bounds.get(col, (None, None))
            bounds[col] = (_tighter(was_low, low, max), _tighter(was_high, high, min))
        guessed += other
    return bounds, guessed


def _tighter(a, b, pick):
    """The tighter of two interval ends (``pick``: max for low ends, min for high ends);
    one alone when the other is open or they cannot be compared."""
    if a is None:
        return b
    if b is None:
        return a
    pa_, pb = line_position(a), line_position(b)
    if pa_ is None or pb is None:
        return a
    return a if pick(pa_, pb) == pa_ else b


# a join's keys reduce the join it reads (sideways information passing)
def _pushable(parent: JoinStage, which: str) -> list[tuple[str, str]]:
    """``[(side of the child, its column)]``: where the keys of the inner join ``parent``
    may reduce the join stage its ``which`` side reads (the child): the child's side
    columns its key comes from, each an int64 column not reassigned on its way. A child
    row (or a child side's row) whose key is not among the other side's keys cannot be in
    ``parent``'s result: dropping it changes nothing else (the child is an inner join, or a
    semi/anti join whose left rows are filtered each on its own). Empty when not so."""
    if parent.how != "inner" or parent.indicator or parent.join_keys or len(parent.left_keys) != 1:
        return []
    node = parent.left if which == "left" else parent.right
    child = stage_of(node)
    if not isinstance(child, JoinStage):
        return []
    pairs = parent.left_cols if which == "left" else parent.right_cols
    key = (parent.left_keys if which == "left" else parent.right_keys)[0]
    cols = [c for c, r in pairs if r == key]
    if len(cols) != 1 or not _kept_int64(node, cols[0]):
        return []
    return _origin_columns(child, cols[0])


def _origin_columns(child: JoinStage, col: str) -> list[tuple[str, str]]:
    """``[(side of the join stage child, its column)]``: the int64 side columns (not
    reassigned on their way) the result column ``col`` of ``child`` comes from, where a row
    of that side whose value is not among some keys may be dropped for a reader that drops
    the result rows whose ``col`` is not among them: ``child`` an inner join (either side,
    both for a shared key) or a semi/anti join (its left rows, each filtered on its own;
    not its values: an anti-join would keep more). Empty when none."""
    if child.indicator or child.join_keys or child.how not in ("inner", "semi", "anti"):
        return []
    origin = child.origins.get(col)
    if origin is None:
        return []
    if origin[0] == "both":
        candidates = [("left", origin[1]), ("right", origin[2])]
    elif origin[0] == "left" or child.how == "inner":
        candidates = [(origin[0], origin[1])]
    else:  # the values of a semi/anti join: not filtered (an anti-join would keep more)
        return []
    out = []
    for side, source in candidates:
        snode = child.left if side == "left" else child.right
        if _kept_int64(snode, source):
            out.append((side, source))
    return out


# the keys of a join reduce the group-by result it reads
def _pushable_group_keys(parent: JoinStage, which: str) -> list[tuple[int, str]]:
    """``[(position of the key among parent's keys, group key column)]``: where the keys of
    the inner join ``parent`` may reduce the group-by result (an
    :class:`~hpcframe.stages.AggStage`) its ``which`` side reads, while the group-by reads
    its rows: each of ``parent``'s keys on that side that is a group key of the child, int64
    in the side and in the group-by's input, reassigned on neither way. A row of the
    group-by's input whose key is not among the other side's keys only adds to a group
    whose key has no match, which the inner join drops; every other group keeps all its
    rows, so its values are the same. Each key alone gives a superset of the matching rows,
    so any number of keys may be joined on (TPC-H q20: the lineitem rows of 1994 grouped by
    (part, supplier), joined with the partsupp rows of 1 % of the parts). Empty when not
    so."""
    if parent.how != "inner" or parent.indicator or parent.join_keys:
        return []
    node = parent.left if which == "left" else parent.right
    child = stage_of(node)
    if not isinstance(child, AggStage):
        return []
    grouped = child.output.node
    pairs = parent.left_cols if which == "left" else parent.right_cols
    keys = parent.left_keys if which == "left" else parent.right_keys
    out = []
    for i, key in enumerate(keys):
        cols = [c for c, r in pairs if r == key]
        if len(cols) != 1 or cols[0] not in child.output.keys:
            continue
        col = cols[0]
        if _kept_int64(node, col) and _kept_int64(grouped, col):
            out.append((i, col))
    return out


def _reduced_groups(parent: JoinStage, which: str, run: AggStage, probe: Probe):
    """A copy of the deferred group-by result ``run`` whose group-by drops, while reading,
    the rows whose group key is not among ``probe``'s keys (:func:`_pushable_group_keys`;
    the keys with the fewest distinct values first), or ``None``."""
    int64 = np.dtype("int64")
    targets = _pushable_group_keys(parent, which)
    targets = [(i, c) for i, c in targets if probe.whole[probe.keys[i]].dtype == int64]
    index = probe._build() if targets else None
    if index is None:
        return None
    return _with_pushed(run, sorted(((c, index.uniques[i]) for i, c in targets), key=lambda t: len(t[1])))


def _with_pushed(run, pushed):
    """A copy of the deferred stage ``run``, not computed, that drops while read the rows
    ``pushed`` names (``JoinStage.pushed``: ``{side: (column, keys)}``; ``AggStage.pushed``:
    ``[(group key, keys)]``). Released after its read, never retained."""
    import copy

    if isinstance(run, JoinStage):
        reduced = run.with_sides(run.left, run.right)
    else:
        reduced = copy.copy(run)
        reduced.data = None
        reduced.persisted = reduced.dropped = False
    reduced.pushed = pushed
    return reduced


def deferrable_joins(planned, nodes) -> dict:
    """``{id(stage): (stage, run)}`` of the join stages of ``planned`` (the ``(stage, run)``
    pairs a computation materialises, inputs first; ``run``: the stage narrowed for it, see
    :func:`hpcframe.pruning.plan_stages`) that the inner join reading them computes, instead
    of :func:`hpcframe.execute.prepare` before it: a join stage computed now (not held, not
    persisted) that nothing else of this computation reads — no output (``nodes``), no
    other stage, not both sides — and whose reader's key comes from an int64 column of its
    sides (:func:`_pushable`). The reader reads its other side first when that one is
    filtered and estimated smaller (:func:`_first_side`), and computes the child with the
    rows whose key is not among that side's keys dropped while read
    (:func:`reduced_input`; TPC-H q2: part's 0.4 % cut partsupp before its join with the
    suppliers). A group-by result read by one side of an inner join on its group keys is
    deferred alike (:func:`_pushable_group_keys`; TPC-H q20: the lineitem rows of 1994 grouped
    by part and supplier, reduced to the parts named 'forest%'). Only when the reader's
    other side is filtered (:func:`_selective`; else the reader would compute the child in
    full anyway), so that of two deferrable sides the one that can be reduced is. At most
    one per reader, except for a reader deferred itself: there the other side may be
    deferred too (see the second pass below). The same on every rank (from the plan only)."""
    reads: dict[int, list] = {}
    for node in nodes:
        st = stage_of(node)
        if st is not None:
            reads.setdefault(id(st), []).append(None)
    for _stage, run in planned:
        for which, node in zip(("left", "right"), run.inputs()):
            st = stage_of(node)
            if st is not None:
                reads.setdefault(id(st), []).append((run, which) if isinstance(run, JoinStage) else None)
    out: dict = {}
    readers: set[int] = set()
    for stage, run in planned:
        if not isinstance(run, (JoinStage, AggStage)) or stage.ready or stage.persisted or stage.dropped:
            continue
        got = reads.get(id(stage), [])
        if len(got) != 1 or got[0] is None:
            continue
        parent, which = got[0]
        if id(parent) in readers or parent.broadcast is not None:
            continue
        if not _pushable(parent, which) and not _pushable_group_keys(parent, which):
            continue
        # only where the reader may reduce it (its other side filtered, see
        #    _first_side), so that the other side, when also deferrable, may be instead
        if not _selective(parent.right if which == "left" else parent.left):
            continue
        other = stage_of(parent.right if which == "left" else parent.left)
        if other is not None and id(other) in out:
            continue
        readers.add(id(parent))
        out[id(stage)] = (stage, run)
    # the other side of a reader that is deferred itself: that reader may be reduced by the
    #    keys its own reader pushes into it (pushed_input), and then reads the side they reach
    #    first, whose keys reduce this side in turn (TPC-H q21: the late lineitems' supplier
    #    counts, reduced to the orders of one nation's suppliers' late lines)
    deferred_runs = {id(r) for s, r in planned if id(s) in out}
    for stage, run in planned:
        if id(stage) in out or not isinstance(run, (JoinStage, AggStage)):
            continue
        if stage.ready or stage.persisted or stage.dropped:
            continue
        got = reads.get(id(stage), [])
        if len(got) != 1 or got[0] is None:
            continue
        parent, which = got[0]
        if id(parent) not in deferred_runs or parent.broadcast is not None:
            continue
        if not _pushable(parent, which) and not _pushable_group_keys(parent, which):
            continue
        other = stage_of(parent.right if which == "left" else parent.left)
        if other is None or id(other) not in out:  # the other side: deferred, to be read first
            continue
        out[id(stage)] = (stage, run)
    return out


def reduced_input(parent: JoinStage, which: str, run, probe: Probe | None):
    """A copy of the deferred join ``run`` (the stage ``parent``'s ``which`` side reads)
    whose sides drop, while read, the rows whose key is not among ``probe``'s (the other
    side's distinct keys: one int64 key), or ``None`` when that cannot be done exactly.
    A deferred group-by result: see :func:`_reduced_groups`."""
    if isinstance(run, AggStage) and probe is not None:
        return _reduced_groups(parent, which, run, probe)
    if probe is None or len(probe.keys) != 1 or probe.whole[probe.keys[0]].dtype != np.dtype("int64"):
        return None
    targets = _pushable(parent, which)
    index = probe._build() if targets else None
    if index is None:
        return None
    return _with_pushed(run, {side: (col, index.uniques[0]) for side, col in targets})


def pushed_input(stage: JoinStage, which: str, run):
    """A copy of the deferred child ``run`` (the stage the ``which`` side of ``stage``
    reads) reduced by the keys that the join reading ``stage`` pushed into that side
    (``stage.pushed``, see :func:`reduced_input`), passed on one level down: a join's sides
    drop, while read, the rows whose column the pushed one comes from is not among the keys
    (:func:`_origin_columns`); a group-by result's group-by drops the rows whose group key
    is not (the pushed column must be one of its int64 group keys). ``None`` when ``stage``
    has no keys for that side or they cannot be passed on exactly. A side row whose column
    is not among the keys is dropped when ``stage`` reads it, so the child's rows (or
    groups) it would come from need not be computed. TPC-H q21: the suppliers of one nation,
    pushed by the join with them into the join of the late lineitems with the order
    counts, reach the join that makes those rows and then the late lineitems' read, whose
    few orders reduce in turn the group-by counting every order's suppliers."""
    got = stage.pushed.get(which) if isinstance(stage.pushed, dict) else None
    if got is None:
        return None
    col, keys = got
    if not _kept_int64(stage.left if which == "left" else stage.right, col):
        return None
    if isinstance(run, AggStage):
        if col not in run.output.keys or not _kept_int64(run.output.node, col):
            return None
        return _with_pushed(run, [(col, keys)])
    targets = _origin_columns(run, col) if isinstance(run, JoinStage) else []
    return _with_pushed(run, {side: (source, keys) for side, source in targets}) if targets else None


class _KeyFilter:
    """The distinct keys of the side of an inner join (or the rows to filter of a semi/anti
    join) read first, hashed once (a
    :class:`Probe` of them): the other side's rows whose keys are not among them are dropped
    as its blocks are read — they could not match. A block whose key dtypes the probe does
    not match exactly as ``merge`` does is kept whole (the join drops the rows anyway)."""

    def __init__(self, probe: Probe):
        self.probe = probe
        self.dropped = 0
        self._member: KeyIn | None = None

    def keep(self, block: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``block`` (a shaped side block) whose keys may match."""
        probe = self.probe
        for k, ok in zip(probe.keys, probe.other_keys):
            dtype = probe.whole[k].dtype
            if dtype != block[ok].dtype or not _probe_dtype(dtype):
                return block
        index = probe._build()
        if index is None:  # too many key combinations for one int64
            return block
        if len(probe.keys) == 1 and probe.whole[probe.keys[0]].dtype == np.dtype("int64"):
            # one int64 key: a bitset of the keys' range where compact (KeyIn: the rows a
            #    key term of the read already filtered are tested in a few vector operations)
            if self._member is None:
                self._member = KeyIn(probe.other_keys[0], index.uniques[0])
            mask = self._member.member(block[probe.other_keys[0]].to_numpy())
        else:
            mask = probe.contains(block)
        if mask.all():
            return block
        self.dropped += int(len(mask) - mask.sum())
        return block[mask].reset_index(drop=True)


def _key_filter(stage: JoinStage, which: str, frames: dict, comm, engine) -> _KeyFilter | None:
    """Collective: for an inner join whose side ``which`` (read first, held in ``frames``)
    is too big to broadcast, or a semi/anti join whose rows to filter were read first (a
    value not among their keys changes no row: ``isin``, NaN matching NaN, as the probe
    matches), a :class:`_KeyFilter` of its distinct keys when they take at
    most a quarter of ``config.broadcast_bytes`` — or more when the other side is much
    bigger (:func:`_key_filter_limit`) — (gathered on every rank), else ``None``
    (the same on every rank). The other side is then read already reduced to the rows that
    can match, and its size decides the strategy (TPC-H Q10: 15 M lineitem rows → 1.1 M,
    broadcast instead of shuffled)."""
    from .comm import failure

    semi = stage.how in ("semi", "anti") and which == "left"  # values not among the keys: no effect
    if not (stage.how == "inner" or semi) or stage.indicator or stage.join_keys:
        return None
    if semi:  # keys the probe cannot match as isin does (strings, other dtypes): not gathered
        lt, rt = stage.left.meta[stage.left_keys[0]].dtype, stage.right.meta[stage.right_cols[0][0]].dtype
        if lt != rt or not _probe_dtype(lt):
            return None
    keys = stage.left_keys if which == "left" else stage.right_keys
    local, error, pieces, floor = None, None, [], 0
    context = f"collecting the keys of the {which} side of {stage.label}"
    try:
        pieces = [f[keys] for f in frames.values() if len(f)]
        floor = distinct_bytes_at_least(pieces)
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or engine._interrupted(comm, context))
    # keys that cannot fit are known without hashing them (Q21: 30 M lineitem
    #    rows of sorted, disjoint blocks); the same decision as from the distinct keys
    limit = config.broadcast_bytes // 4
    total_floor = sum(comm.allgather(floor))
    if total_floor > limit:  # (the same on every rank: collective below)
        limit = _key_filter_limit(stage, which, comm, engine)
    if total_floor > limit:
        engine._add_stat("join_key_filters_given_up_early", 1)
        return None
    try:
        if pieces:
            local = _distinct_rows(pd.concat(pieces, ignore_index=True))
    except BaseException as exc:
        error = failure(comm, context, exc)
    del pieces
    comm.agree(error or engine._interrupted(comm, context))
    mine = 0 if local is None else int(local.memory_usage(deep=True, index=False).sum())
    total = sum(comm.allgather(mine))
    if total > limit and limit == config.broadcast_bytes // 4:
        limit = _key_filter_limit(stage, which, comm, engine)
    if total > limit:
        return None
    got = _allgather(local, f"the keys of the {which} side of {stage.label}", comm, engine)
    if got is not None and len(got):
        whole = _distinct_rows(got)
    else:
        whole = _empty_side(stage, which)[keys]
    return _KeyFilter(Probe(stage, which, whole))


#: the keys of a join's side read first may take up to ``config.broadcast_bytes`` (instead of
#: a quarter of it) when the other side is estimated at least this many times their size
KEY_FILTER_GAIN = 8


def _key_filter_limit(stage: JoinStage, which: str, comm, engine) -> int:
    """Collective: the most bytes of distinct keys of the side ``which`` (read first) that
    :func:`_key_filter` gathers on every rank: a quarter of ``config.broadcast_bytes``, or
    up to all of it when the other side is estimated (:func:`_estimated_bytes`; a deferred
    join: :func:`_deferred_estimate`) ``KEY_FILTER_GAIN`` times bigger than the keys — then
    gathering them costs far less than shuffling that side whole (TPC-H q9 at SF 10: 23 MB
    of order keys of the green parts' lineitem rows cut the 15 M orders, 360 MB, to the
    3 M rows that match, before they are converted and shuffled)."""
    other = "right" if which == "left" else "left"
    run = engine.deferred_run(stage_of(stage.right if other == "right" else stage.left))
    estimate = (
        _deferred_estimate(run, comm, engine) if run is not None else _estimated_bytes(stage, other, comm)
    )
    quarter = config.broadcast_bytes // 4
    return int(max(quarter, min(config.broadcast_bytes, estimate // KEY_FILTER_GAIN)))


def distinct_bytes_at_least(pieces: list) -> int:
    """A lower bound, found in one pass without hashing, of the bytes (as
    ``memory_usage(deep=True, index=False)`` counts them) of the distinct rows of
    ``pieces`` (frames of one key column each, or several): for one integer, datetime or
    timedelta column whose blocks are each in ascending order, the runs of equal values of
    each block — summed when the blocks' value ranges do not overlap (lineitem's blocks by
    ``l_orderkey``: then exact), else the largest block's. ``0`` for other keys."""
    if not pieces or len(pieces[0].columns) != 1:
        return 0
    counts, ranges, overlap = [], [], False
    for piece in pieces:
        values = piece.iloc[:, 0].to_numpy()
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "iumM":
            return 0
        ints = values.view(np.int64) if values.dtype.kind in "mM" else values
        if not len(ints):
            continue
        if (ints[1:] < ints[:-1]).any():  # not ascending: counted as overlapping the rest
            overlap = True
            continue
        counts.append(1 + int(np.count_nonzero(ints[1:] != ints[:-1])))
        ranges.append((int(ints[0]), int(ints[-1])))
    if not counts:
        return 0
    ranges.sort()
    overlap = overlap or any(a[1] >= b[0] for a, b in zip(ranges, ranges[1:]))
    itemsize = pieces[0].iloc[:, 0].dtype.itemsize
    return (max(counts) if overlap else sum(counts)) * itemsize


def _read(stage: JoinStage, which: str, comm, engine, whole=None, reduce=None):
    """Collective: read one side (see :class:`_Side`); ``(frames by leaf, leaf → rank)``.
    A side over a join left to this one (:func:`deferrable_joins`) is computed first:
    reduced by the keys of the other side (``whole`` or ``reduce``) where
    :func:`reduced_input` can, else in full."""
    node = stage.left if which == "left" else stage.right
    child = stage_of(node)
    run = engine.deferred_run(child)
    reduced = None
    if run is not None:
        probe = whole if whole is not None else getattr(reduce, "probe", None)
        reduced = reduced_input(stage, which, run, probe)
        if reduced is None:  # the keys pushed into this join by its reader, passed on
            reduced = pushed_input(stage, which, run)
        if reduced is None:
            engine.materialise_deferred(child, comm)
        else:
            engine.forget_deferred(child)
            engine._add_stat("joins_reduced_by_reading_join", 1)
            engine.materialise(reduced, comm, reduced)
            stage.input_schemas[id(child)] = reduced.schema()
            node = P.with_source(node, reduced)
    try:
        side = _Side(stage, which, comm.rank, whole, reduce, node)
        owners = engine._run_scan([side], comm, None)[id(side)]
    finally:
        if reduced is not None:  # its rows are this side's now (a reduced copy: never reused)
            reduced.release()
    dropped = side.term.dropped if side.term is not None else 0
    if side.pushed is not None:
        engine._add_stat("join_rows_dropped_by_reading_join", side.pushed.dropped)
    if reduce is not None:
        engine._add_stat("join_rows_dropped_by_keys", reduce.dropped + dropped)
    elif dropped:
        engine._add_stat("join_rows_dropped_while_read", dropped)
    return side.frames, owners


def _total_bytes(frames: dict, comm) -> int:
    """Collective: the bytes of every rank's kept blocks of a side."""
    local = int(sum(df.memory_usage(deep=True, index=False).sum() for df in frames.values()))
    return int(sum(comm.allgather(local)))


def _allgather(mine, tag: str, comm, engine):
    """Collective: every rank's frame ``mine`` (or ``None``), stacked in rank order on every
    rank (Arrow buffers; pickled when some value cannot be Arrow); ``None`` when all are."""
    got = engine.exchange_frames(comm, [mine] * comm.size, tag, stacked=True)
    if got is None:  # some value is not Arrow: pickled
        engine._add_stat("exchanges_pickled", 1)
        parts = [p for p in comm.allgather(mine) if p is not None]
        got = pd.concat(parts, ignore_index=True) if parts else None
    return got


def _gather_side(stage: JoinStage, small: str, frames: dict, comm, engine):
    """Collective: every rank's blocks of the ``small`` side, on every rank."""
    pieces = [frames[i] for i in sorted(frames) if len(frames[i])]
    mine = pd.concat(pieces, ignore_index=True) if pieces else None
    got = _allgather(mine, f"the {small} side of {stage.label}", comm, engine)
    whole = got if got is not None and len(got) else _empty_side(stage, small)
    if stage.how in ("semi", "anti"):
        whole = whole.drop_duplicates(_SEMI_VALUE, ignore_index=True)
    return whole


def _filter_broadcast_left(stage: JoinStage, sides: dict, comm, engine):
    """Collective: a semi/anti join (``isin`` of a lazy Series) whose rows to filter (the
    left side) are few and whose values (the right side) are many — an EXISTS over a big
    table. The left side's keys (not its rows) are gathered on every rank; each rank marks
    the keys found among the values of its own right blocks (``isin``, as pandas: NaN
    matching NaN), the marks are OR-ed over the ranks, and each rank keeps (semi) or drops
    (anti) the marked rows of its own left blocks. The values never travel, and the result's
    partitions are the left side's blocks where they were read (as for a broadcast right
    side), so they do not depend on the number of ranks."""
    from .comm import failure

    key = stage.left_keys[0]
    held, owners_of_leaves = sides["left"]
    values, _ = sides.pop("right")
    leaves = sorted(held)
    mine = [held[i][[key]] for i in leaves if len(held[i])]
    local = pd.concat(mine, ignore_index=True) if mine else None
    counts = comm.allgather(0 if local is None else len(local))
    got = _allgather(local, f"the keys of the left side of {stage.label}", comm, engine)
    keys = got[key] if got is not None and len(got) else pd.Series([], dtype=stage.left.meta[key].dtype)
    marks = np.zeros(len(keys), dtype=bool)
    error = None
    context = f"matching the left keys of {stage.label} with the values"
    try:
        for leaf in sorted(values):
            block = values.pop(leaf)
            if len(block) and len(keys):
                marks |= keys.isin(block[_SEMI_VALUE]).to_numpy()
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or engine._interrupted(comm, context))
    marks = comm.any_true_each(marks)
    out: dict = {}
    at = sum(counts[: comm.rank])
    context = f"filtering the left blocks of {stage.label}"
    try:
        for leaf in leaves:
            block = held.pop(leaf)
            found = marks[at : at + len(block)]
            at += len(block)
            out[leaf] = _finish_part(stage, block[~found if stage.how == "anti" else found])
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or engine._interrupted(comm, context))
    return _by_leaf(out, owners_of_leaves)


def _by_leaf(frames: dict, owners_of_leaves: dict):
    """``(owners, frames)`` of result partitions that are the blocks of the side read last
    (in leaf order; one empty partition when it has none)."""
    read = sorted(owners_of_leaves)
    owners = [owners_of_leaves[leaf] for leaf in read]
    out = {j: frames[leaf] for j, leaf in enumerate(read) if leaf in frames}
    if not owners:
        return [0], {}
    return owners, out


def _broadcast(stage: JoinStage, sides: dict, small: str, whole, comm, engine):
    """Merge each kept block of the side other than ``small`` with ``whole`` (``small``
    gathered on every rank)."""
    from .comm import failure

    big = "left" if small == "right" else "right"
    held, owners_of_leaves = sides[big]
    out: dict = {}
    error = None
    context = f"merging the blocks of {stage.label}"
    try:
        for leaf in sorted(held):
            block = held.pop(leaf)
            out[leaf] = _finish_part(stage, merge_block(stage, block, whole))
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or engine._interrupted(comm, context))
    return _by_leaf(out, owners_of_leaves)


def _shuffle(stage: JoinStage, sides: dict, comm, engine):
    """Hash-partition both sides by their keys; merge each owned partition."""
    from .comm import failure, interruptible
    from .outputs import BlockCategories, recode_pieces, with_categories
    from .physical import partition_owners

    nparts = config.partitions
    owners = partition_owners(nparts, comm.size)
    received = {}
    categories = {}
    for which, keys in (("left", stage.left_keys), ("right", stage.right_keys)):
        frames, _ = sides[which]
        # one category list per categorical column of the side (the union of its blocks', in
        #    leaf order, as pandas reading the files): stacked pieces stay categorical
        cats = categories[which] = BlockCategories.of(frames).union(comm)
        outbox: dict[int, list] = {}
        for leaf in sorted(frames):
            df = frames.pop(leaf)
            if not len(df):
                continue
            if cats:
                df = with_categories(df, cats)
            bucket = engine._route(df, keys, nparts)
            for b, piece in _split(df, bucket).items():
                outbox.setdefault(b, []).append(piece)
        sends: list[dict] = [{} for _ in range(comm.size)]
        if comm.size == 1:  # nothing travels
            for b, pieces in outbox.items():
                sends[owners[b]][b] = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
            del outbox
            received[which] = sends
        else:  # the pieces go as they are (one concatenation, in the exchange)
            for b, pieces in outbox.items():
                sends[owners[b]][b] = pieces
            del outbox
            received[which] = engine._exchange_partitions(comm, sends, f"the {which} side of {stage.label}")
    out: dict = {}
    error = None
    context = f"merging the partitions of {stage.label}"
    how = stage.how
    try:
        with interruptible():
            for b in [p for p, o in enumerate(owners) if o == comm.rank]:
                parts = {}
                for which in ("left", "right"):
                    # pop: a partition's rows are freed once merged
                    pieces = [got.pop(b) for got in received[which] if b in got]
                    pieces = recode_pieces(pieces, categories[which])  # (again on arrival)
                    parts[which] = (
                        (pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0])
                        if pieces
                        else None
                    )
                lf, rf = parts["left"], parts["right"]
                needs_left = how in ("inner", "left", "semi", "anti")
                needs_right = how in ("inner", "right", "semi")
                if (lf is None and (needs_left or rf is None)) or (rf is None and needs_right):
                    continue
                # (an empty side with its side's categories: pandas' result dtypes, and an
                #    outer join's sort key, depend on whether both sides' are the same)
                if lf is None:
                    lf = with_categories(_empty_side(stage, "left"), categories["left"])
                if rf is None:
                    rf = with_categories(_empty_side(stage, "right"), categories["right"])
                out[b] = _finish_part(stage, merge_part(stage, lf, rf))
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or engine._interrupted(comm, context))
    return owners, out


def _split(df, bucket) -> dict:
    """``{b: rows of df in bucket b}`` (each in the rows' order): one stable sort and one
    ``take`` of the whole frame, then slices (a take per bucket costs a copy of the string
    columns per bucket)."""
    # partition numbers (small, non-negative) sorted as uint16 (NumPy's stable
    #    radix sort) and listed by a bincount (np.unique sorted them all again)
    small = len(bucket) and bucket.min() >= 0 and bucket.max() < 2**16
    order = np.argsort(bucket.astype(np.uint16) if small else bucket, kind="stable")
    ordered = bucket[order]
    taken = df.take(order)
    out = {}
    for b in np.flatnonzero(np.bincount(bucket)) if small else np.unique(ordered):
        lo, hi = np.searchsorted(ordered, [b, b + 1])
        out[int(b)] = taken.iloc[lo:hi].reset_index(drop=True)
    return out


def adopt_schema(stage: JoinStage) -> None:
    """After the join ran: its declared dtypes become the ones its data has, where pandas
    decides them from the data: a left join's int columns of the right side are float64 when
    some row found no match, and a key categorical on both sides stays categorical only when
    the two sides have the same categories (``str`` otherwise; the declared dtype, from the
    empty frames, cannot know). The meta is updated in place, so frames built on it see it."""
    from .io.types import block_to_pandas, normalize_table

    if stage.data is None:
        return
    schema = stage.data.schema()
    empty = block_to_pandas(normalize_table(schema.empty_table(), schema), schema)
    for c in stage.meta.columns:
        declared = stage.meta[c].dtype
        categorical = isinstance(declared, pd.CategoricalDtype)
        if c not in empty.columns or (getattr(declared, "kind", "O") not in "iub" and not categorical):
            continue
        if categorical and isinstance(empty[c].dtype, pd.CategoricalDtype):
            continue  # (its categories are the data's, not the declared ones)
        if empty[c].dtype != declared:
            stage.meta[c] = pd.Series([], dtype=empty[c].dtype)


__all__ = [
    "build_merge",
    "semi_join",
    "push_filter",
    "prune",
    "narrow",
    "side_columns",
    "materialise_join",
    "POSITION",
]
