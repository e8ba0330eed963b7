"""``explain()``: the plan, what is pushed into the reader, what is pruned, who reads what."""
from __future__ import annotations

from .comm import communicator
from .execute import _OutputPlan, assign, leaves_of
from .io.types import normalize_schema


def explain(output, comm=None, ranks: int | None = None) -> str:
    """A multi-line description of how ``output`` would run (reads only metadata).
    Collective under MPI: call it on every rank."""
    lines = []
    with communicator(comm) as c:
        nranks = ranks or c.size
        by_scan = {}
        for o in output.leaves():
            by_scan.setdefault(id(o.node.scan()), []).append(o)
        lines.append(f"Output: {output.text()}")
        for outs in by_scan.values():
            scan = outs[0].node.scan()
            source = scan.source
            leaves = leaves_of(source, c)
            schema = normalize_schema(source.schema())
            plans = [_OutputPlan(o, schema) for o in outs]
            lines.append(f"Scan: {source.format} {source.label}")
            for p in plans:
                lines.append(f"  {p.out.text()}")
                for n in p.out.node.chain()[1:]:
                    lines.append(f"    {n.text()}")
                lines.append(f"    columns read: {p.columns or '(row counts only)'}")
                lines.append(f"    filter in Arrow while reading: "
                             f"{p.arrow_pred if p.arrow_pred is not None else '-'}")
                pandas_filters = [s.expr.text() for s in p.steps if hasattr(s, "expr")
                                  and type(s).__name__ in ("Filter", "_BareFilter")]
                lines.append(f"    filter in pandas: {' & '.join(pandas_filters) or '-'}")
                lines.append(f"    statistics pruning on: "
                             f"{p.prune.text() if p.prune is not None else '-'}")
            wants = [any(p.wants(leaf) for p in plans) for leaf in leaves]
            files = len({leaf.part.path for leaf in leaves})
            parents = len({(leaf.parent.path, leaf.parent.piece, leaf.parent.start)
                           for leaf in leaves})
            rows = sum(leaf.part.num_rows for leaf in leaves)
            pruned = wants.count(False)
            lines.append(f"Partitions: {files} file(s), {parents} partition(s), {len(leaves)} "
                         f"block(s), {rows:,} rows; {pruned} block(s) pruned by statistics, "
                         f"{len(leaves) - pruned} to read")
            costs = [leaf.part.num_rows if w else 0 for leaf, w in zip(leaves, wants)]
            for r, (a, b) in enumerate(assign(costs, nranks)):
                mine = [i for i in range(a, b) if wants[i]]
                nbytes = sum(leaves[i].part.nbytes for i in mine)
                share = (f"blocks {a}..{b - 1}, {len(mine)} to read, "
                         f"{sum(costs[a:b]):,} rows, {nbytes / 1e6:.1f} MB") if b > a else "idle"
                lines.append(f"  rank {r}: {share}")
    return "\n".join(lines)
