"""``explain()``: the plan, what is pushed into the reader, what is pruned, who reads what."""
from __future__ import annotations

from .comm import communicator
from .config import config
from .execute import _OutputPlan, assign, leaves_of, wanted_parts


def source_format(source) -> str:
    """The format of a data source for messages: its ``format`` attribute when it has one
    ("parquet", "csv", "pandas"), else its class name without ``Source`` ("hdf5" for
    ``HDF5Source``). Works for every source: it needs nothing but the object's class."""
    fmt = getattr(source, "format", None)
    if isinstance(fmt, str) and fmt:
        return fmt
    name = type(source).__name__
    return (name[:-len("Source")] if name.endswith("Source") and name != "Source"
            else name).lower()


def source_label(source) -> str:
    """A short human label of a data source: its ``label`` attribute when it has one, else
    its file(s) (``files``/``paths``/``path``), else its format. Never raises."""
    label = getattr(source, "label", None)
    if isinstance(label, str) and label:
        return label
    for attr in ("files", "paths", "path"):
        value = getattr(source, attr, None)
        if isinstance(value, (list, tuple)) and value:
            first = str(value[0])
            return first if len(value) == 1 else f"{len(value)} files ({first}, ...)"
        if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
            return str(value)
    return f"{source_format(source)} source"


def source_rows_exact(source) -> bool:
    """False when the source's partition row counts are estimates (``exact_row_counts``
    False, e.g. CSV files); True otherwise (Parquet, HDF5, pandas know their row counts)."""
    return bool(getattr(source, "exact_row_counts", True))


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
            parts = getattr(source, "_hf_partitions", None) or list(dict.fromkeys(
                leaf.parent if leaf.parent is not None else p
                for leaf in leaves for p in leaf.parts))
            has_stats = any(p.stats for p in parts)
            exact = source_rows_exact(source)
            fmt = source_format(source)
            lines.append(f"Scan: {fmt} {source_label(source)}")
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
                if not has_stats:
                    lines.append(f"    statistics pruning: none (the {fmt} partitions have "
                                 f"no column statistics: every partition is read)")
                else:
                    lines.append(f"    statistics pruning on: "
                                 f"{p.prune.text() if p.prune is not None else '-'}")
            wanted = [wanted_parts(leaf, plans) for leaf in leaves]
            wants = [any(w) for w, _ in wanted]
            files = len({p.path for p in parts})
            rows = sum(p.num_rows for p in parts)
            rows_text = f"{rows:,} rows" if exact else \
                f"~{rows:,} rows (estimated: the row counts are unknown until read)"

            def parents(leaf, ps):  # a cut partition counts once, not once per block
                return {(p.path, p.piece) for p in ps} if leaf.parent is not None else \
                    {(p.path, p.piece, p.start) for p in ps}

            read_set, all_set = set(), set()
            for leaf, (_, ps) in zip(leaves, wanted):
                read_set |= parents(leaf, ps)
                all_set |= parents(leaf, leaf.parts)
            read, nparts = len(read_set), len(all_set)
            pruned = (f"{nparts - read} partition(s) pruned by statistics, {read} to read"
                      if has_stats else f"no statistics to prune with, {read} to read")
            lines.append(f"Partitions: {files} file(s), {len(parts)} partition(s), {rows_text}"
                         f" in {len(leaves)} block(s) of up to {config.block_rows:,} rows; "
                         f"{pruned}")
            costs = [sum(p.num_rows for p in ps) for _, ps in wanted]
            for r, (a, b) in enumerate(assign(costs, nranks)):
                mine = [i for i in range(a, b) if wants[i]]
                nbytes = sum(p.nbytes for i in mine for p in wanted[i][1])
                share = (f"blocks {a}..{b - 1}, {len(mine)} to read, "
                         f"{'' if exact else '~'}{sum(costs[a:b]):,} rows"
                         f"{'' if exact else ' (estimated)'}, {nbytes / 1e6:.1f} MB"
                         ) if b > a else "idle"
                lines.append(f"  rank {r}: {share}")
    return "\n".join(lines)
