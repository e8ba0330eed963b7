"""Run-time events of a computation, for diagnostics (progress bars, profilers).

A :class:`Callback` is active inside its ``with`` block (on every rank: use the same
``with`` in SPMD code). The engine calls the hooks below on every rank; when no callback is
active, nothing is called and nothing is measured beyond a list check.

Hooks (all optional; ``run`` is a :class:`RunInfo`):

``on_run_start(run)``
    Collective: every rank calls it, after planning and before reading. ``run.comm`` may be
    used for collective set-up (e.g. an MPI window for progress counters).
``on_leaf_done(run, leaf, times)``
    After a leaf (a block of partitions) was read and computed on this rank. ``times`` has
    ``start``, ``read_end``, ``compute_end`` (chunk partials made), ``end`` (partials folded
    into the local combine tree) as ``time.perf_counter()`` values, ``rows`` read, ``rows_out``
    (rows that passed the first output's filters; ``None`` if none was computed) and
    ``nbytes`` (Parquet/HDF5 bytes described by the partitions read).
``on_collective(run, name, start, end)``
    After this rank left a collective (``"agree"``, ``"exchange"``): the time between start
    and end is time spent waiting for the other ranks plus the transfer.
``on_run_end(run, error)``
    Collective, after the results are combined (``error`` is the exception if it failed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

_active: list[Callback] = []


class Callback:
    """Base class: override the hooks you need; use as a context manager."""

    def __enter__(self):
        _active.append(self)
        return self

    def __exit__(self, *exc):
        if self in _active:
            _active.remove(self)
        return False

    def on_run_start(self, run: RunInfo) -> None:
        """Collective, before reading: every rank calls it (see the module docstring)."""

    def on_leaf_done(self, run: RunInfo, leaf, times: dict) -> None:
        """After this rank read and computed ``leaf``; ``times`` as in the module docstring."""

    def on_collective(self, run: RunInfo, name: str, start: float, end: float) -> None:
        """After this rank left the collective ``name`` (``perf_counter`` start and end)."""

    def on_run_end(self, run: RunInfo, error: BaseException | None) -> None:
        """Collective, after the results are combined; ``error`` is the failure or None."""


@dataclass
class RunInfo:
    """What a callback knows about the scan in progress (one per dataset scan)."""

    comm: object  # hpcframe.comm.Comm (rank, size, host, allgather, .mpi)
    source: str  # dataset label
    outputs: list[str]  # one line per output
    leaves_total: int  # leaves of the dataset
    rows_total: int  # rows to read on all ranks (after pruning)
    bytes_total: int  # bytes described by the partitions to read, all ranks
    my_leaves: list[int] = field(default_factory=list)  # indices this rank reads
    my_rows: int = 0
    my_bytes: int = 0
    t0: float = field(default_factory=time.perf_counter)  # reading starts (after planning)
    source_format: str = ""  # "parquet", "csv", "hdf5", ... (names the I/O in reports)
    rows_exact: bool = True  # False when rows_total is an estimate (e.g. CSV files)
    t_plan: float | None = None  # perf_counter when planning the scan began (<= t0)


def active() -> list[Callback]:
    """The callbacks active now (a copy), in the order their ``with`` blocks were entered."""
    return list(_active)


def emit(hook: str, *args) -> None:
    """Call ``hook`` of every active callback. Each one is called even if an earlier one
    raised (a later one may have a collective to take part in, e.g. freeing an MPI window);
    the first error is raised after all were called."""
    error = None
    for cb in list(_active):
        try:
            getattr(cb, hook)(*args)
        except BaseException as exc:  # noqa: BLE001 - raised below, after the others ran
            if error is None:
                error = exc
    if error is not None:
        raise error
