"""Projection through stages: every stage computes only the columns its readers need.

A stage (:mod:`hpcframe.stages`) is read by the outputs of a computation and by the stages
built on it (a join's side, a group-by's, a shuffle's or a sort's input). Before
:func:`hpcframe.execute.prepare` materialises anything, :func:`plan_stages` walks the stages
from the readers down to the sources, once per computation:

1. every output reading a stage asks for the columns its chain needs at the stage
   (:func:`hpcframe.plan.required_columns` of the output's ``columns()``: exactly the
   columns the engine will read, see :class:`hpcframe.physical.OutputPlan`);
2. each stage, readers first, gets the union of what its readers ask for and is *narrowed*
   for this computation: a copy that carries only those columns plus its keys, index,
   hidden and order columns (a join: :func:`hpcframe.joins.narrow`; a shuffle whose
   functions keep the rows' columns: :func:`shuffle_columns`; a sort: fewer ``columns``).
   The copy runs; its data is held by the stage itself, so the frames built on it read it;
3. the narrowed stage asks its own inputs for the columns it reads from them (a join's
   sides, a group-by's keys and values, ...), and so on down.

A persisted stage (``Frame.persist``) always carries every column; so does a stage of a
kind this module does not know. A stage held already (computed earlier in the same
:func:`hpcframe.execute.stage_scope`) is kept when it holds what is asked for, and computed
again otherwise; a stage that nothing reads in this computation (the input of a stage held
already) is not computed at all. The decisions depend only on the plan and on what is held,
so every rank takes them alike.
"""

from __future__ import annotations

import copy

from . import plan as P
from .stages import (
    POSITION,
    AggStage,
    JoinStage,
    PersistStage,
    ShuffleStage,
    SortStage,
    stage_of,
    stages_below,
)

#: ``plan_stages`` value of a stage held already with every column asked for
HELD = "held"
#: ``plan_stages`` value of a stage that nothing reads in this computation
UNREAD = "unread"


def plan_stages(nodes, needs=None) -> tuple[list, dict]:
    """``(stages, runs)``: the stages the plan ``nodes`` read (inputs first, as
    :func:`hpcframe.stages.stages_below`), and for each (by ``id``) what to do with it in
    this computation: the stage object to materialise (the stage itself, or a narrowed
    copy of it), :data:`HELD` or :data:`UNREAD`.

    Parameters
    ----------
    nodes : list of plan nodes
        The chains the computation reads.
    needs : list of (set of str or None), optional
        Per node, the columns its reader needs at the end of the chain (an output's
        ``columns()``); ``None`` (or no list): every column of the node.

    Returns
    -------
    tuple
        The stages in materialisation order and the ``{id(stage): run}`` decisions.
    """
    stages = stages_below(nodes)
    demand: dict[int, set] = {}
    for i, node in enumerate(nodes):
        cols = None if needs is None else needs[i]
        _ask(demand, node, set(node.meta.columns) if cols is None else set(cols))
    runs: dict[int, object] = {}
    for stage in reversed(stages):  # readers come after their inputs in ``stages``
        need = demand.get(id(stage))
        if need is None:
            runs[id(stage)] = UNREAD
            continue
        if stage.ready and (stage.persisted or need <= set(stage.schema().names)):
            runs[id(stage)] = HELD
            continue
        run = stage if stage.persisted else narrowed(stage, need)
        runs[id(stage)] = run
        for node, cols in input_reads(run):
            _ask(demand, node, cols)
    return stages, runs


def _ask(demand: dict, node, cols: set) -> None:
    """Record that ``node``'s reader needs ``cols`` at the end of ``node``'s chain: the
    columns of its source stage the chain needs for them (nothing for a file source)."""
    stage = stage_of(node)
    if stage is None:
        return
    at_source, _ = P.required_columns(node.chain()[1:], cols, list(stage.meta.columns))
    demand.setdefault(id(stage), set()).update(at_source)


def narrowed(stage, need: set):
    """``stage`` for a computation whose readers need only the columns ``need``: a copy
    carrying fewer columns (see the module docstring), or the stage itself when nothing can
    be left out or the stage's kind is not known here."""
    if type(stage) is JoinStage:
        from .joins import narrow

        return narrow(stage, need)
    if type(stage) is SortStage:
        keep = _layout(stage) | set(stage.spec.columns) | set(need)
        if stage.divisions_column is not None:
            keep.add(stage.divisions_column)
        cols = [c for c in stage.columns if c in keep]
        if len(cols) == len(stage.columns):
            return stage
        fewer = copy.copy(stage)
        fewer.columns, fewer.meta, fewer.data = cols, stage.meta[cols].iloc[:0], None
        return fewer
    if type(stage) is ShuffleStage and (
        stage.reads is not None or (stage.local is None and stage.per_partition is None)
    ):
        keep = _layout(stage) | set(stage.keys) | set(stage.reads or ()) | set(need) | {POSITION}
        cols = [c for c in stage.node.meta.columns if c in keep]
        if len(cols) == len(stage.node.meta.columns):
            return stage
        new = copy.copy(stage)
        new.carried = cols
        new.meta = stage.meta[[c for c in stage.meta.columns if c in keep]].iloc[:0]
        new.data = None
        return new
    return stage


def _layout(stage) -> set:
    """The columns every narrowed stage keeps: its index, hidden and order columns."""
    return set(stage.index) | set(stage.hidden) | set(stage.order)


def shuffle_columns(stage) -> list[str]:
    """The columns of its input frame a :class:`~hpcframe.stages.ShuffleStage` carries
    (every one, unless :func:`narrowed` left some out)."""
    carried = getattr(stage, "carried", None)
    return list(stage.node.meta.columns) if carried is None else list(carried)


def input_reads(stage) -> list[tuple]:
    """``[(input node, columns read at its end)]`` of a stage about to be materialised:
    the columns its first step reads from each of its inputs."""
    if isinstance(stage, JoinStage):
        from .joins import side_columns

        return [(stage.left, side_columns(stage, "left")), (stage.right, side_columns(stage, "right"))]
    if type(stage) is AggStage:
        return [(stage.output.node, set(stage.output.columns()))]
    if type(stage) is SortStage:
        cols = {c for c in stage.columns if c != POSITION} | set(stage.spec.columns)
        return [(stage.node, cols)]
    if type(stage) is ShuffleStage:
        return [(stage.node, set(shuffle_columns(stage)))]
    if type(stage) is PersistStage:
        return [(stage.node, set(stage.node.meta.columns))]
    return [(node, set(node.meta.columns)) for node in stage.inputs()]  # every column: safe


__all__ = ["plan_stages", "narrowed", "input_reads", "shuffle_columns", "HELD", "UNREAD"]
