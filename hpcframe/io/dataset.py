"""Datasets and partitions: what the engine needs to know before it reads a byte.

A :class:`Dataset` is a format-specific *source* (Parquet, HDF5, an in-memory pandas frame)
plus, once discovered, a list of :class:`Partition` descriptors. Discovery reads only metadata
(Parquet footers, HDF5 shapes and chunking), and under MPI the footer reads are spread over the
ranks and the descriptors exchanged with one ``allgather``; no data passes through rank 0.

A source implements three methods:

``schema() -> pyarrow.Schema``
    The dataset's columns with their *Arrow* types (hive columns included), known cheaply
    (first file only) so that the lazy API can check column names before any work is done.
``discover(comm) -> list[Partition]``
    Every partition of the dataset in a fixed order (file order, then row group / row range).
    Must be called collectively when ``comm.size > 1``. Raises :class:`DatasetError` naming the
    file when a file is unreadable or its schema differs from the dataset's.
``read(part, columns) -> pyarrow.Table``
    The rows ``[part.start, part.stop)`` of one partition, only ``columns`` (hive columns filled
    from the path), in the given order. Raises :class:`DatasetError` naming the file.

and describes itself with three attributes, which planning, ``explain()``, ``convert``, the
writers and every error message use:

``format``
    ``"parquet"``, ``"hdf5"``, ``"csv"`` or ``"pandas"``.
``label``
    What the user named, for messages: the path or pattern as given, or ``"N <format> files
    (first, ...)"`` for a list (see :func:`source_label`).
``files``
    The data files, in dataset order (discovery order: see :mod:`hpcframe.io.paths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import DatasetError  # noqa: F401  (re-exported for the format modules)


@runtime_checkable
class Source(Protocol):
    """The source protocol (see the module docstring): what the engine, ``explain``, the
    writers and the command line use of a data source, and all they use.

    Optional capabilities, used when present:

    ``read_many(parts, columns)``
        Several contiguous partitions of one file in one read.
    ``exact_row_counts`` (bool, default True)
        False when partition row counts are estimates (CSV).
    ``partition_token()``
        What discovered partitions depend on besides the source (they are rediscovered when
        it changes): a CSV source's block size, a stage's current data.
    ``owner_of(part)`` and ``splittable = False``
        Data held by the ranks (:mod:`hpcframe.io.ranked`): only the owner reads a
        partition, and partitions are never cut into blocks.
    """

    format: str
    label: str
    files: list[str]

    def schema(self) -> Any:
        """The Arrow schema (with pandas dtype flags)."""
        ...

    def discover(self, comm) -> list[Partition]:
        """Every partition, in dataset order (collective)."""
        ...

    def read(self, part: Partition, columns: list[str]) -> Any:
        """The rows of one partition, only ``columns``, as an Arrow table."""
        ...


@dataclass(frozen=True)
class ColumnStats:
    """Min/max/null statistics of one column inside one partition (``None`` when unknown)."""

    min: Any = None
    max: Any = None
    null_count: int | None = None


@dataclass(frozen=True)
class Partition:
    """One unit of work: a contiguous row range of one file (a row group, or a slice of one).

    ``piece`` says where in the file: the Parquet row-group number, or the HDF5 object path.
    ``start``/``stop`` are row offsets *within the piece*. ``stats`` maps column names to
    :class:`ColumnStats` (possibly empty); ``hive`` maps hive partition columns to their value.
    """

    path: str
    piece: Any
    start: int
    stop: int
    nbytes: int = 0
    stats: dict[str, ColumnStats] = field(default_factory=dict)
    hive: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Number of rows in the partition (``stop - start``)."""
        return self.stop - self.start

    def describe(self) -> str:
        """A short human label, used in error messages and explain()."""
        if self.path.startswith("<") and isinstance(self.piece, int):  # held by the ranks
            return f"{self.path} [rows {self.start}:{self.stop}]"
        where = f"row group {self.piece}" if isinstance(self.piece, int) else str(self.piece)
        return f"{self.path} [{where}, rows {self.start}:{self.stop}]"

    def split(self, max_rows: int) -> list[Partition]:
        """This partition cut into row ranges of at most ``max_rows`` rows (stats kept: they
        still bound every slice)."""
        if max_rows <= 0 or self.num_rows <= max_rows:
            return [self]
        out = []
        for s in range(self.start, self.stop, max_rows):
            e = min(s + max_rows, self.stop)
            nbytes = self.nbytes * (e - s) // max(self.num_rows, 1)
            out.append(Partition(self.path, self.piece, s, e, nbytes, self.stats, self.hive))
        return out


def by_file(parts: list[Partition]) -> list[list[Partition]]:
    """``parts`` (in dataset order) as runs of consecutive partitions of one file each."""
    runs: list[list[Partition]] = []
    for p in parts:
        if runs and runs[-1][0].path == p.path:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def discover_files(comm, files: list[str], describe) -> list[Partition]:
    """The partitions of every file, in file order. File ``i`` is described by rank
    ``i % size`` (``describe(path) -> list[Partition]``, reading only metadata) and the
    descriptors are exchanged with one ``allgather``. Collective. If describing any file fails
    on any rank, every rank raises the same :class:`DatasetError` naming the file."""
    mine, error = {}, None
    for i in range(comm.rank, len(files), comm.size):
        try:
            mine[i] = describe(files[i])
        except DatasetError as exc:
            error = str(exc)
            break
        except Exception as exc:  # anything else must not leave the other ranks waiting
            error = f"{files[i]}: cannot read its metadata ({type(exc).__name__}: {exc})"
            break
    gathered = comm.allgather((mine, error))
    errors = [e for _, e in gathered if e]
    if errors:
        raise DatasetError(errors[0])
    by_file = {}
    for m, _ in gathered:
        by_file.update(m)
    return [p for i in range(len(files)) for p in by_file[i]]


def mark_dataset_types(schema, parts: list[Partition]):
    """The dataset-level dtype decision (see :mod:`hpcframe.io.types`): ``(schema, parts)``
    with every integer or bool column that holds a null in ANY partition flagged ``nulls``
    (pandas reads it as float64, resp. object, in every block), and the statistics of the
    flagged integer columns turned into floats (pandas compares the float64 values, so pruning
    must too; rounding is monotonic, so the bounds still hold).

    A partition whose ``null_count`` of such a column is unknown counts as holding a null
    (the column is float64, never a wrapped int64): sources fill ``null_count`` for integer
    and bool columns wherever they can (Parquet reads the column's validity when a row group
    has no statistics). Depends only on ``parts``, which every rank holds identically after
    discovery, so every rank decides the same."""
    import pyarrow.types as pat

    from .types import NULLS, dtype_flag, flag_fields

    flags = {}
    for f in schema:
        if dtype_flag(f) is not None:  # decided before (a source discovered again)
            if dtype_flag(f) == NULLS:
                flags[f.name] = NULLS
            continue
        if not (pat.is_integer(f.type) or pat.is_boolean(f.type)):
            continue
        for p in parts:
            if p.num_rows == 0:
                continue
            st = p.stats.get(f.name)
            if st is None or st.null_count is None or st.null_count > 0:
                flags[f.name] = NULLS
                break
    if not flags:
        return schema, parts
    ints = [n for n in flags if pat.is_integer(schema.field(n).type)]
    if ints:
        parts = [_float_stats(p, ints) for p in parts]
    return flag_fields(schema, flags), parts


def _float_stats(part: Partition, names) -> Partition:
    from dataclasses import replace

    stats = dict(part.stats)
    changed = False
    for n in names:
        st = stats.get(n)
        if st is not None and (st.min is not None or st.max is not None):
            stats[n] = ColumnStats(
                None if st.min is None else float(st.min),
                None if st.max is None else float(st.max),
                st.null_count,
            )
            changed = True
    return replace(part, stats=stats) if changed else part


def source_label(given, files: list[str], what: str) -> str:
    """The ``label`` of a source: ``given`` (the path or pattern the user passed) when it is a
    single path, else a short description of the file list."""
    if given is not None and not isinstance(given, (list, tuple)):
        return str(given)
    if len(files) == 1:
        return str(files[0])
    return f"{len(files)} {what} files ({files[0]}, ...)"
