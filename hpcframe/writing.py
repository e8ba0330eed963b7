"""The ``to_*`` entry points: write a lazy frame as a dataset, in parallel, as one transaction.

Every rank writes the leaves (blocks of partitions, see :func:`hpcframe.physical.leaves_of`) it
reads, through :class:`WriteOutput` — an output whose ``chunk`` writes one leaf's rows to files
named after the leaf and returns their descriptors; ``combine`` concatenates the lists and the
root rank commits and publishes the dataset. What is on disk (formats, staging folder, lock,
manifest, publish, resume) is :mod:`hpcframe.io.writers`; this module drives the engine.
"""

from __future__ import annotations

import os
import time

import pyarrow as pa

from . import plan as P
from .comm import communicator, on_root
from .errors import ColumnNotFoundError
from .execute import compute, process_settings, read_parts, scalars_resolved, stage_scope
from .execute import prepare as prepare_stages
from .identity import input_digest
from .io.partials import digest
from .io.sources import partitions_of
from .io.types import NULLS, strip_flags
from .io.writers import (
    CSVFormat,
    HDF5Format,
    Lock,
    ParquetFormat,
    _Format,
    commit,
    done_leaves,
    leaves_recorded,
    lock_of,
    prepare,
    publish,
    record_leaf,
    staging_of,
    start_faults,
    summary_from_manifest,
    target_schema,
    to_arrow,
)
from .outputs import Output
from .physical import leaves_of

__all__ = ["to_parquet", "to_hdf", "to_csv", "write", "WriteOutput"]


def written_columns(node) -> list[str]:
    """The columns of ``node``'s frame that are written: all but the internal ones (a join's
    row-order columns, row positions: :func:`hpcframe.plan.hidden_columns`)."""
    hidden = set(P.hidden_columns(node))
    return [c for c in node.meta.columns if c not in hidden]


def written_schema(node, written: list[str]):
    """The Arrow schema of the files written from ``node``'s columns ``written``
    (:func:`~hpcframe.io.writers.target_schema`): a bool column with a missing value that
    the chain passes through from its source (a ``from_pandas`` column of bools with
    ``None``, a Parquet column with a null in a later file, a held stage's) is typed from the
    source's Arrow schema, which says so. (After :func:`prepare_stages`: a stage's schema is
    its data's.)"""
    assigned = {n.name for n in node.chain()[1:] if isinstance(n, P.Assign)}
    held = node.scan().source.schema()
    held = pa.schema([f for f in held if f.name in written and f.name not in assigned])
    return target_schema(node.meta[written], held)


class WriteOutput(Output):
    """Writes every leaf's rows with ``fmt`` into ``staging``, each cast to ``schema``
    (:func:`written_schema` of the frame ``node`` was made from); the partial is the list of
    file descriptors. Leaves in ``done`` (index → descriptors) are not written again.
    ``fail_leaf`` (tests only) makes the write of that leaf raise, to simulate a crash."""

    def __init__(
        self,
        node,
        fmt: _Format,
        staging: str,
        done: dict,
        schema: pa.Schema,
        progress=None,
        fail_leaf: int | None = None,
    ):
        self.node, self.fmt, self.staging, self.done = node, fmt, staging, done
        self.written = written_columns(node)
        self.schema = schema
        self.progress = progress
        self.fail_leaf = fail_leaf

    def columns(self):
        """Every column of the frame is written."""
        return set(self.node.meta.columns)

    def text(self):
        """``write <format> <destination>`` (for explain and errors)."""
        return f"write {self.fmt.name} {self.fmt.dst}"

    def chunk(self, df, leaf):
        """Write one leaf (unless done earlier); its file descriptors and input counts."""
        if leaf.index == self.fail_leaf:
            raise RuntimeError(f"simulated failure in leaf {leaf.index}")
        if leaf.index in self.done:
            files = self.done[leaf.index]
        else:
            table = to_arrow(df[self.written], self.schema, leaf.describe())
            files = self.fmt.write_leaf(table, leaf.index, self.staging)
            record_leaf(self.staging, leaf.index, files)
        if self.progress is not None:
            self.progress(leaf)
        return [{"leaf": leaf.index, "files": files, "rows_in": len(df), "bytes_in": leaf.nbytes}]

    def combine(self, a, b):
        """The descriptors of earlier and later leaves, in order."""
        return (a or []) + (b or [])

    def finalize(self, files):
        """The list of every leaf's descriptors."""
        return files or []


class _SkipDone:
    """A source that reads nothing for partitions of finished leaves (resume)."""

    def __init__(self, inner, skip: set):
        self._inner, self._skip = inner, skip

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def schema(self):
        """The source's schema without the dataset-level float64 cast of integer columns
        with nulls (see hpcframe.io.types): a write keeps the stored integers exact."""
        return strip_flags(self._inner.schema(), only=NULLS)

    def discover(self, comm):
        """The inner source's partitions (discovered once, for the inner source)."""
        return partitions_of(self._inner, comm)

    def read(self, part, columns):
        if _part_key(part) in self._skip:
            return pa.schema([self._inner.schema().field(c) for c in columns]).empty_table()
        return self._inner.read(part, columns)

    def read_many(self, parts, columns):
        if all(_part_key(p) in self._skip for p in parts):
            return self.read(parts[0], columns)
        return read_parts(self._inner, parts, columns)


def _part_key(p):
    return (p.path, str(p.piece), p.start, p.stop)


def _skip_keys(leaves, done) -> set:
    skip: set[tuple] = set()  # _part_key()s
    by_parent: dict = {}
    for leaf in leaves:
        if leaf.parent is None:
            if leaf.index in done:
                skip.update(_part_key(p) for p in leaf.parts)
        else:
            by_parent.setdefault(_part_key(leaf.parent), []).append(leaf.index in done)
    skip.update(k for k, flags in by_parent.items() if all(flags))
    return skip


class _Progress:
    """Rank 0 prints ``partitions done / total`` (counting every rank's leaf records)."""

    def __init__(self, comm, total, staging):
        self.rank, self.total, self.staging = comm.rank, total, staging
        self.last = 0.0

    def __call__(self, leaf):
        if self.rank != 0 or time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        print(f"hpcframe: {leaves_recorded(self.staging)}/{self.total} partitions written", flush=True)


# --------------------------------------------------------------------------- driver
def write(
    frame, fmt: _Format, comm=None, overwrite: bool = False, progress: bool = False, fail_leaf=None
) -> dict:
    """Write ``frame`` with ``fmt`` in parallel (collective under MPI) as one transaction.

    See :mod:`hpcframe.io.writers` for the transaction. Returns a summary dict (on every
    rank): ``files``, ``rows``, ``bytes_in``, ``bytes_out``, ``seconds``, ``ranks``,
    ``leaves``, ``skipped`` (leaves done earlier), ``path`` and ``state``: ``"written"``,
    ``"published"`` (an earlier run had finished everything but the publish) or
    ``"complete"`` (nothing to do). Raises ``FileExistsError`` when ``dst`` holds something
    else, :class:`~hpcframe.io.writers.DestinationLockedError` when another write into
    ``dst`` is running, :class:`~hpcframe.ComputeError` on every rank when a rank fails (the
    staging folder is kept, so that the next run resumes). ``fail_leaf`` (tests only) makes
    the write of that leaf raise, to simulate a crash.
    """
    node = getattr(frame, "node", None)
    if not isinstance(node, P.Node):
        raise TypeError(
            f"expected an hpcframe Frame, not {type(frame).__name__} (to write a "
            f"pandas result, use pandas' own to_parquet/to_hdf)"
        )
    missing = [k for k in getattr(fmt, "partition_by", []) if k not in node.meta.columns]
    if missing:
        raise ColumnNotFoundError(missing[0], list(node.meta.columns), "the frame to write")
    scan = node.scan()
    with communicator(comm) as c, stage_scope(), process_settings(c), scalars_resolved([node], c):
        start_faults(c.rank)
        t0 = time.perf_counter()
        prepare_stages([node], c)  # a group-by result or a shuffled frame: computed, held by the ranks
        leaves = leaves_of(scan.source, c)
        staging = staging_of(fmt)
        # (after discovery: a Parquet bool column's null in a later file is known)
        schema = written_schema(node, written_columns(node))
        plan = {
            "format": fmt.name,
            "source": scan.source.label,
            "leaves": len(leaves),
            "plan": [n.text() for n in node.chain()],
            "options": fmt.options(),
            "schema": str(schema),
            # the files, read options and user functions the rows come from: a resumed write
            #    over a changed input would mix old and new rows (it is started over instead)
            "inputs": input_digest(node, c),
        }
        # the same plan (resumed) names its files alike; another write, other names
        fmt.tag = digest(plan)[:10]
        locks = []

        def lock_and_prepare():
            os.makedirs(os.path.dirname(fmt.dst), exist_ok=True)
            locks.append(Lock.acquire(lock_of(fmt), fmt.dst))
            return prepare(fmt, staging, plan, overwrite)

        try:
            state = on_root(c, lock_and_prepare)  # the root's error is raised on every rank
            return _run(c, node, fmt, staging, plan, schema, leaves, state, progress, fail_leaf, t0)
        finally:
            for lock in locks:
                lock.release()


def _run(c, node, fmt, staging, plan, schema, leaves, state, progress, fail_leaf, t0) -> dict:
    """The write after the root checked the destination (``state``); returns the summary."""
    if state in ("complete", "publish"):

        def finish_earlier_write():
            if state == "publish":
                publish(fmt, staging)
            return summary_from_manifest(
                fmt, c.size, time.perf_counter() - t0, "published" if state == "publish" else "complete"
            )

        return on_root(c, finish_earlier_write, f"publishing {fmt.dst}")
    done = done_leaves(staging, len(leaves))
    counter = _Progress(c, len(leaves), staging) if progress else None
    # the same chain over a source that skips the finished leaves (the frame is not changed)
    skipping = P.with_source(node, _SkipDone(node.scan().source, _skip_keys(leaves, done)))
    # (``schema`` is the frame's own source's: the skipping one strips the flag that says a
    #    bool column has a null somewhere)
    out = WriteOutput(skipping, fmt, staging, done, schema, counter, fail_leaf)
    (files,) = compute([out], comm=c, root=0)
    return on_root(
        c,
        lambda: commit(fmt, files, out.schema, staging, plan, len(done), c.size, time.perf_counter() - t0),
        f"finishing {fmt.dst}",
    )


# --------------------------------------------------------------------------- public API
def to_parquet(
    frame,
    path,
    partition_by=None,
    row_group_size: int = 1 << 20,
    compression: str = "zstd",
    compression_level=None,
    comm=None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a lazy frame as a Parquet dataset, in parallel, atomically and resumably.

    Parameters
    ----------
    frame : Frame
        The lazy frame to write.
    path : str or os.PathLike
        The destination folder.
    partition_by : list of str, optional
        Hive folders (``Year=2016/Month=1/``) by these columns.
    row_group_size, compression, compression_level
        Parquet options.
    comm : optional
        The communicator (collective under MPI).
    overwrite : bool, default False
        Replace a dataset hpcframe wrote there before.
    progress : bool, default False
        Rank 0 prints how many partitions are written.

    Returns
    -------
    dict
        The summary of :func:`write` (rows, files, bytes, seconds, state).

    Raises
    ------
    FileExistsError
        When ``path`` holds something else (or another write into it runs).
    ComputeError
        On every rank when a rank fails; running the same write again resumes.

    Examples
    --------
    >>> hf.to_parquet(flights[flights.carrier == "AA"], "out/aa", partition_by=["year"])  # doctest: +SKIP
    """
    fmt = ParquetFormat(path, partition_by, row_group_size, compression, compression_level)
    return write(frame, fmt, comm=comm, overwrite=overwrite, progress=progress)


def to_hdf(
    frame,
    path,
    compression: str | None = "gzip",
    chunk_rows: int = 65536,
    comm=None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a lazy frame as HDF5, readable by ``hf.read_hdf(path)``.

    Part files go to ``<path>.d/`` and the file ``path`` presents them as one table (virtual
    datasets). Columns are encoded as :mod:`hpcframe.io.hdf5codec` says.

    Parameters
    ----------
    frame : Frame
        The lazy frame to write.
    path : str or os.PathLike
        The destination file.
    compression : str or None, default "gzip"
        The HDF5 filter of the column datasets.
    chunk_rows : int, default 65536
        Rows per HDF5 chunk.
    comm, overwrite, progress
        As for :func:`to_parquet`.

    Returns
    -------
    dict
        The summary of :func:`write`.

    Raises
    ------
    FileExistsError, ComputeError
        As for :func:`to_parquet`.

    Examples
    --------
    >>> summary = hf.to_hdf(flights, "out/flights.h5")  # doctest: +SKIP
    >>> summary["rows"], summary["state"]  # doctest: +SKIP
    (4, 'written')
    >>> int(hf.read_hdf("out/flights.h5").dep_delay.count().compute())  # doctest: +SKIP
    4
    """
    fmt = HDF5Format(path, compression, chunk_rows)
    return write(frame, fmt, comm=comm, overwrite=overwrite, progress=progress)


def to_csv(
    frame, path, partition_by=None, comm=None, overwrite: bool = False, progress: bool = False
) -> dict:
    """Write a lazy frame as CSV files (with header) in folder ``path``.

    Parameters
    ----------
    frame : Frame
        The lazy frame to write.
    path : str or os.PathLike
        The destination folder.
    partition_by, comm, overwrite, progress
        As for :func:`to_parquet`.

    Returns
    -------
    dict
        The summary of :func:`write`.

    Raises
    ------
    FileExistsError, ComputeError
        As for :func:`to_parquet`.

    Examples
    --------
    >>> summary = hf.to_csv(flights, "out/flights")  # doctest: +SKIP
    >>> summary["rows"], summary["state"]  # doctest: +SKIP
    (4, 'written')
    >>> # one folder per carrier: out/by_carrier/carrier=AA/part-TAG-000000.csv, ...
    >>> _ = hf.to_csv(flights, "out/by_carrier", partition_by=["carrier"])  # doctest: +SKIP
    """
    return write(frame, CSVFormat(path, partition_by), comm=comm, overwrite=overwrite, progress=progress)
