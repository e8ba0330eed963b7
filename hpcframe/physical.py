"""The physical plan: how outputs will run, decided from metadata only (no data is read).

For every dataset scan (:class:`ScanPlan`): the leaves (blocks of partitions, sized by
:attr:`hpcframe.config.Config.block_rows`, never by the number of ranks), what each output
reads and filters (:class:`OutputPlan`), which partitions statistics prune, and the leaves each
rank reads (contiguous ranges balanced by rows, or the partitions a rank holds for data held
by the ranks). :class:`PhysicalPlan` adds the stages the outputs depend on
(:mod:`hpcframe.stages`).

:mod:`hpcframe.execute` runs exactly these objects; ``explain()``, ``hpcframe run --explain``
and ``hpcframe convert --dry-run`` print them (:mod:`hpcframe.explain`,
:func:`hpcframe.convert.plan`), so the three never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import plan as P
from .config import config
from .io.dataset import Partition, by_file
from .io.sources import known_partitions, partitions_of
from .io.types import filter_schema, is_string
from .stages import StageSource, stages_below


@dataclass(frozen=True)
class Leaf:
    """One leaf of the combine tree: contiguous partitions of one file, or the partitions of
    consecutive small files, read together (``parent`` is ``None``), or one block of a
    partition longer than ``block_rows``."""

    index: int
    parts: tuple
    parent: Partition | None
    row_offset: int

    @property
    def num_rows(self) -> int:
        """Rows of the leaf's partitions."""
        return sum(p.num_rows for p in self.parts)

    @property
    def nbytes(self) -> int:
        """Bytes of the leaf's partitions (on disk)."""
        return sum(p.nbytes for p in self.parts)

    def describe(self) -> str:
        """The leaf's partitions, for messages."""
        if len(self.parts) == 1:
            return self.parts[0].describe()
        first, last = self.parts[0], self.parts[-1]
        if first.path != last.path:  # small files read together
            files = len({p.path for p in self.parts})
            return f"{first.path} [piece {first.piece}] .. {last.path} [piece {last.piece}] ({files} files)"
        return f"{first.path} [pieces {first.piece}..{last.piece}]"


def leaves_of(source, comm) -> list[Leaf]:
    """The leaves of ``source`` in dataset order. Small partitions of one file are grouped
    and long ones cut, so that leaves have about ``config.block_rows`` rows; consecutive
    small files are grouped too where the source can read them together and
    ``config.group_files`` is ``"on"`` (:func:`_small_file_runs`). The result depends only
    on the data, never on the number of ranks. Partitions are discovered once per source."""
    parts = partitions_of(source, comm)
    limit = config.block_rows
    out: list[Leaf] = []
    group: list[Partition] = []
    offset = 0

    def flush():
        nonlocal offset, group
        if group:
            out.append(Leaf(len(out), tuple(group), None, offset))
            offset += sum(p.num_rows for p in group)
            group = []

    splittable = getattr(source, "splittable", True)
    across = splittable and config.group_files == "on" and getattr(source, "reads_across_files", False)
    runs = _small_file_runs(parts, limit) if across else {}
    i = 0
    while i < len(parts):
        p = parts[i]
        if i in runs:  # whole small files, grouped into leaves of balanced sizes
            flush()
            for whole in runs[i]:
                group = whole
                flush()
            i += sum(len(g) for g in runs[i])
            continue
        i += 1
        if not splittable:  # held partitions: one leaf each, never cut (whole groups)
            flush()
            group.append(p)
            flush()
            continue
        if p.num_rows > limit:
            flush()
            for block in p.split(limit):
                out.append(Leaf(len(out), (block,), p, offset))
                offset += block.num_rows
            continue
        if group and (group[0].path != p.path or sum(g.num_rows for g in group) + p.num_rows > limit):
            flush()
        group.append(p)
    flush()
    return out


def _small_file_runs(parts: list[Partition], limit: int) -> dict[int, list[list[Partition]]]:
    """Runs of two or more consecutive *small* files (at most ``limit / 2`` rows each: two
    of them fit in one leaf), by the index of their first partition, each cut into the
    fewest contiguous groups of whole files of at most ``limit`` rows, balanced by rows as
    :func:`assign` balances ranks (used when ``config.group_files`` is ``"on"``; TPC-H
    SF 10: 16 supplier files of 6,250 rows are one leaf, 16 partsupp files of 500,000 rows
    eight, 16 customer files of 93,750 rows two of 750,000 rows). A per-block cost (a
    pandas frame, a join's merge, a held partition of every stage built from it) is then
    paid once per ~``limit`` rows, not once per file. Larger files keep their own leaves,
    so the leaves of large datasets do not move. Like every leaf, the groups depend only
    on the data."""
    files = by_file(parts)  # the partitions of each file, in dataset order
    runs: dict[int, list[list[Partition]]] = {}
    start = 0  # the index of the run's first partition
    run: list[list[Partition]] = []  # the run's files

    def close():
        if len(run) > 1:
            runs[start] = _balanced(run, limit)

    at = 0
    for f in files:
        if 2 * sum(p.num_rows for p in f) <= limit:
            if not run:
                start = at
            run.append(f)
        else:
            close()
            run = []
        at += len(f)
    close()
    return runs


def _balanced(files: list[list[Partition]], limit: int) -> list[list[Partition]]:
    """``files`` (each at most ``limit / 2`` rows) cut into contiguous groups of at most
    ``limit`` rows: the fewest groups (or one more) balanced by rows as :func:`assign`
    balances ranks (:func:`_owners`), else greedily (each group takes files while they fit)."""
    rows = [sum(p.num_rows for p in f) for f in files]
    fewest = max(1, -(-sum(rows) // limit))
    for k in (fewest, fewest + 1):
        owner = _owners(rows, k)
        cuts = [0] + [i for i in range(1, len(files)) if owner[i] != owner[i - 1]] + [len(files)]
        ranges = list(zip(cuts[:-1], cuts[1:]))
        if all(sum(rows[a:b]) <= limit for a, b in ranges):
            return [[p for f in files[a:b] for p in f] for a, b in ranges]
    groups: list[list[Partition]] = []
    size = limit + 1
    for f, n in zip(files, rows):
        if size + n > limit:
            groups.append([])
            size = 0
        groups[-1].extend(f)
        size += n
    return groups


def _owners(costs: list[int], size: int) -> list[int]:
    """The owner (``0 .. size - 1``) of each item of a sequence split into ``size``
    contiguous ranges balanced by ``costs``: item *i* goes to ⌊(costs before *i* + its cost
    / 2) · size / total⌋ (by position when every cost is 0)."""
    n = len(costs)
    total = sum(costs)
    owner = []
    before = 0
    for i, c in enumerate(costs):
        if total > 0:
            r = int((before + c / 2) * size // total)
        else:
            r = i * size // max(n, 1)
        owner.append(min(size - 1, r))
        before += c
    return owner


def assign(costs: list[int], size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` leaf ranges per rank, balanced by cost (rows to read).
    Deterministic: depends only on the costs and the number of ranks."""
    owner = _owners(costs, size)
    ranges = []
    for r in range(size):
        idx = [i for i, o in enumerate(owner) if o == r]
        ranges.append((idx[0], idx[-1] + 1) if idx else (0, 0))
    return ranges


class OutputPlan:
    """How one output reads a dataset: the columns it needs, what Arrow filters while
    reading, what pandas runs, and the predicate statistics can prune with."""

    def __init__(self, out, declared):
        self.out, self.declared = out, declared
        self.arrow_pred, self.pred_columns, self.steps = P.split_filters(out.node, filter_schema(declared))
        # a join side's rows that cannot match are dropped before the conversion
        key_terms = getattr(out, "key_terms", None)
        for term in key_terms(declared) if key_terms is not None else ():
            self.arrow_pred = term if self.arrow_pred is None else self.arrow_pred & term
            self.pred_columns = self.pred_columns | {term.name}
        self.pandas_columns, self.after = P.required_columns(self.steps, out.columns(), declared.names)
        wanted = set(self.pandas_columns) | self.pred_columns
        self.columns = [c for c in declared.names if c in wanted]
        # string group keys that no pandas step looks at: aggregate on dictionary codes
        used = set().union(*(s.expr.columns() for s in self.steps if hasattr(s, "expr")))
        keys = getattr(out, "keys", [])
        self.keep_dict = frozenset(
            k for k in keys if k in declared.names and k not in used and is_string(declared.field(k).type)
        )
        # the dataset's string columns (a reader hands them over as dictionaries)
        self.string_columns = frozenset(
            c for c in self.pred_columns if c in declared.names and is_string(declared.field(c).type)
        )
        self.prune = P.prune_predicate(out.node)
        self.filters = self.arrow_pred is not None or any(
            type(s).__name__ in ("Filter", "_BareFilter") for s in self.steps
        )
        self.key = (str(self.arrow_pred), id(out.node), frozenset(out.columns()), self.keep_dict)

    def wants(self, part: Partition) -> bool:
        """False when ``part``'s statistics prove no row passes this output's filters."""
        if self.prune is None or not part.stats:
            return True
        stats = {k: (s.min, s.max) for k, s in part.stats.items()}
        return self.prune.may_match(stats)


def wanted_parts(leaf: Leaf, plans) -> tuple[list[bool], list[Partition]]:
    """Which outputs need ``leaf``, and which of its partitions must be read."""
    per_part = [[p.wants(part) for p in plans] for part in leaf.parts]
    outputs = [any(w[k] for w in per_part) for k in range(len(plans))]
    return outputs, [part for part, w in zip(leaf.parts, per_part) if any(w)]


def owned_leaves(source, leaves, costs, size) -> list[list[int]]:
    """The leaves each rank reads: contiguous ranges balanced by ``costs`` for files, the
    leaves it holds for data held by the ranks (a stage: see :mod:`hpcframe.stages`)."""
    owner_of = getattr(source, "owner_of", None)
    if owner_of is None:
        return [list(range(a, b)) for a, b in assign(costs, size)]
    out: list[list[int]] = [[] for _ in range(size)]
    for i, leaf in enumerate(leaves):
        out[owner_of(leaf.parts[0])].append(i)
    return out


def partition_owners(nparts: int, size: int) -> list[int]:
    """The rank holding each of ``nparts`` hash partitions: contiguous, balanced ranges."""
    return [p * size // nparts for p in range(nparts)]


@dataclass
class ScanPlan:
    """How one dataset scan runs: its source, the outputs sharing the scan, the leaves, each
    output's :class:`OutputPlan`, which partitions of each leaf are read (``wanted``), the rows
    to read per leaf (``costs``; 0: pruned) and the leaf indices each rank reads (``ranks``)."""

    source: object
    outputs: list
    leaves: list[Leaf]
    plans: list[OutputPlan]
    wanted: list[tuple[list[bool], list[Partition]]]
    costs: list[int]
    ranks: list[list[int]]

    @property
    def partitions(self) -> list[Partition]:
        """The source's partitions (a cut partition once, not once per block)."""
        parts = known_partitions(self.source)
        if parts is not None:
            return parts
        return list(
            dict.fromkeys(
                leaf.parent if leaf.parent is not None else p for leaf in self.leaves for p in leaf.parts
            )
        )

    def read_columns(self) -> list[str]:
        """The columns read from the source (at least one, to count rows)."""
        names = self.source.schema().names  # type: ignore[attr-defined]
        return [c for c in names if any(c in p.columns for p in self.plans)] or names[:1]


def plan_scan(outs, comm, nranks: int | None = None) -> ScanPlan:
    """The :class:`ScanPlan` of ``outs`` (outputs over one Scan) for ``nranks`` ranks
    (default: the communicator's size). Collective the first time a source is discovered."""
    source = outs[0].node.scan().source
    leaves = leaves_of(source, comm)
    plans = [OutputPlan(o, source.schema()) for o in outs]
    wanted = [wanted_parts(leaf, plans) for leaf in leaves]
    costs = [sum(p.num_rows for p in parts) for _, parts in wanted]
    ranks = owned_leaves(source, leaves, costs, nranks or comm.size)
    return ScanPlan(source, list(outs), leaves, plans, wanted, costs, ranks)


@dataclass
class PhysicalPlan:
    """The whole plan of some outputs: the stages they depend on (inputs first) and, per
    dataset scan, its :class:`ScanPlan` — or, for a scan of a stage not computed yet, the
    outputs only (``pending``: its partitions exist once the stage ran)."""

    stages: list[StageSource]
    scans: list[ScanPlan] = field(default_factory=list)
    pending: list[list] = field(default_factory=list)


def scans_of(outputs) -> list[list]:
    """The simple outputs grouped by the Scan they read, in first-seen order."""
    by_scan: dict[int, list] = {}
    for o in outputs:
        for leaf in o.leaves():
            by_scan.setdefault(id(leaf.node.scan()), []).append(leaf)
    return list(by_scan.values())


def physical_plan(outputs, comm, nranks: int | None = None) -> PhysicalPlan:
    """The :class:`PhysicalPlan` of ``outputs`` (reads only metadata; stages are not
    computed). Collective under MPI."""
    groups = scans_of(outputs)
    out = PhysicalPlan(stages_below([o.node for g in groups for o in g]))
    for outs in groups:
        source = outs[0].node.scan().source
        if isinstance(source, StageSource) and not source.ready:
            out.pending.append(outs)
        else:
            out.scans.append(plan_scan(outs, comm, nranks))
    return out
