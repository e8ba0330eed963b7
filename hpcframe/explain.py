"""``explain()``: the plan, what is pushed into the reader, what is pruned, who reads what."""
from __future__ import annotations

from .comm import communicator
from .config import config
from .execute import _OutputPlan, assign, leaves_of, wanted_parts


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
            plans = [_OutputPlan(o, source.schema()) for o in outs]
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
            wanted = [wanted_parts(leaf, plans) for leaf in leaves]
            wants = [any(w) for w, _ in wanted]
            parts = source._hf_partitions
            files = len({p.path for p in parts})
            rows = sum(p.num_rows for p in parts)
            def parents(leaf, ps):  # a cut partition counts once, not once per block
                return {(p.path, p.piece) for p in ps} if leaf.parent is not None else \
                    {(p.path, p.piece, p.start) for p in ps}

            read_set, all_set = set(), set()
            for leaf, (_, ps) in zip(leaves, wanted):
                read_set |= parents(leaf, ps)
                all_set |= parents(leaf, leaf.parts)
            read, nparts = len(read_set), len(all_set)
            lines.append(f"Partitions: {files} file(s), {len(parts)} partition(s), {rows:,} rows"
                         f" in {len(leaves)} block(s) of up to {config.block_rows:,} rows; "
                         f"{nparts - read} partition(s) pruned by statistics, {read} to read")
            costs = [sum(p.num_rows for p in ps) for _, ps in wanted]
            for r, (a, b) in enumerate(assign(costs, nranks)):
                mine = [i for i in range(a, b) if wants[i]]
                nbytes = sum(p.nbytes for i in mine for p in wanted[i][1])
                share = (f"blocks {a}..{b - 1}, {len(mine)} to read, "
                         f"{sum(costs[a:b]):,} rows, {nbytes / 1e6:.1f} MB") if b > a else "idle"
                lines.append(f"  rank {r}: {share}")
    return "\n".join(lines)
