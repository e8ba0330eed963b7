"""``explain()``: the plan, what is pushed into the reader, what is pruned, who reads what."""

from __future__ import annotations

from .comm import communicator
from .config import config
from .io.sources import source_format, source_label, source_rows_exact
from .physical import ScanPlan, physical_plan
from .stages import StageSource

__all__ = ["explain", "source_format", "source_label", "source_rows_exact"]


def explain(output, comm=None, ranks: int | None = None) -> str:
    """A multi-line description of how ``output`` would run: the text of its
    :class:`~hpcframe.physical.PhysicalPlan` (reads only metadata; stages are not computed).
    Collective under MPI: call it on every rank."""
    lines = []
    with communicator(comm) as c:
        nranks = ranks or c.size
        plan = physical_plan([output], c, nranks)
        for k, stage in enumerate(plan.stages):
            lines.extend(_stage_lines(k, stage, plan.stages, nranks))
        lines.append(f"Output: {output.text()}")
        for outs in plan.pending:
            source = outs[0].node.scan().source
            lines.append(f"Scan: stage {plan.stages.index(source)} ({source.label}), computed when this runs")
            for o in outs:
                lines.append(f"  {o.text()}")
                lines.extend(f"    {n.text()}" for n in o.node.chain()[1:])
        for scan in plan.scans:
            lines.extend(_scan_lines(scan))
    return "\n".join(lines)


def _scan_lines(scan: ScanPlan) -> list[str]:
    """The description of one dataset scan."""
    lines = []
    source, parts = scan.source, scan.partitions
    has_stats = any(p.stats for p in parts)
    exact = source_rows_exact(source)
    fmt = source_format(source)
    lines.append(f"Scan: {fmt} {source_label(source)}")
    for p in scan.plans:
        lines.append(f"  {p.out.text()}")
        for n in p.out.node.chain()[1:]:
            lines.append(f"    {n.text()}")
        lines.append(f"    columns read: {p.columns or '(row counts only)'}")
        lines.append(
            f"    filter in Arrow while reading: {p.arrow_pred if p.arrow_pred is not None else '-'}"
        )
        pandas_filters = [
            s.expr.text()
            for s in p.steps
            if hasattr(s, "expr") and type(s).__name__ in ("Filter", "_BareFilter")
        ]
        lines.append(f"    filter in pandas: {' & '.join(pandas_filters) or '-'}")
        if not has_stats:
            lines.append(
                f"    statistics pruning: none (the {fmt} partitions have "
                f"no column statistics: every partition is read)"
            )
        else:
            lines.append(f"    statistics pruning on: {p.prune.text() if p.prune is not None else '-'}")
    wants = [any(w) for w, _ in scan.wanted]
    files = len({p.path for p in parts})
    rows = sum(p.num_rows for p in parts)
    rows_text = (
        f"{rows:,} rows" if exact else f"~{rows:,} rows (estimated: the row counts are unknown until read)"
    )

    def parents(leaf, ps):  # a cut partition counts once, not once per block
        return (
            {(p.path, p.piece) for p in ps}
            if leaf.parent is not None
            else {(p.path, p.piece, p.start) for p in ps}
        )

    read_set, all_set = set(), set()
    for leaf, (_, ps) in zip(scan.leaves, scan.wanted):
        read_set |= parents(leaf, ps)
        all_set |= parents(leaf, leaf.parts)
    read, nparts = len(read_set), len(all_set)
    pruned = (
        f"{nparts - read} partition(s) pruned by statistics, {read} to read"
        if has_stats
        else f"no statistics to prune with, {read} to read"
    )
    lines.append(
        f"Partitions: {files} file(s), {len(parts)} partition(s), {rows_text}"
        f" in {len(scan.leaves)} block(s) of up to {config.block_rows:,} rows; {pruned}"
    )
    costs = scan.costs
    for r, held in enumerate(scan.ranks):
        a, b = (held[0], held[-1] + 1) if held else (0, 0)
        mine = [i for i in held if wants[i]]
        nbytes = sum(p.nbytes for i in mine for p in scan.wanted[i][1])
        share = (
            (
                f"blocks {a}..{b - 1}, {len(mine)} to read, "
                f"{'' if exact else '~'}{sum(costs[i] for i in held):,} rows"
                f"{'' if exact else ' (estimated)'}, {nbytes / 1e6:.1f} MB"
            )
            if held
            else "idle"
        )
        lines.append(f"  rank {r}: {share}")
    return lines


def _stage_lines(k, stage, stages, nranks) -> list[str]:
    """The description of one stage of the plan (a source computed by an earlier part)."""
    from .config import config

    state = "held by the ranks" if stage.ready else "computed when the output runs"
    lines = [f"Stage {k}: {stage.text()} [{state}]"]
    if stage.partitioning != "as read":
        per_rank = -(-config.partitions // nranks)
        lines.append(
            f"  partitions: {config.partitions} ({stage.partitioning}), up to {per_rank} held by each "
            f"of {nranks} rank(s)"
        )
    else:
        lines.append("  partitions: the blocks of its input, each held by the rank that read it")
    divisions = getattr(stage, "divisions", None)
    if divisions and stage.ready:  # a SortStage: each partition's range of its index
        ranges = [f"[{d[0]}, {d[1]}]" for d in divisions if d is not None and d[0] is not None]
        shown = ", ".join(ranges[:3]) + (f", ... ({len(ranges)} in all)" if len(ranges) > 3 else "")
        lines.append(f"  divisions of {stage.divisions_column}: {shown or 'none (no rows)'}")
    for node in stage.inputs():
        src = node.scan().source
        where = f"stage {stages.index(src)}" if isinstance(src, StageSource) else source_label(src)
        lines.append(f"  reads: {where}")
        lines.extend(f"    {n.text()}" for n in node.chain()[1:])
    return lines
