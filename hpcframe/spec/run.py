"""Running a job: :func:`run_spec` (a :class:`~hpcframe.spec.JobSpec`) and :func:`run_job`
(a spec file) on every rank, rank 0 writing the output atomically; :func:`explain_job`
shows the plan instead. They return data (:class:`RunSummary`, text of the plan); the
command line decides how to print it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ColumnNotFoundError, HpcframeError
from .build import _Many, build
from .validate import JobSpec, OutputSpec, SpecError, load_spec


@dataclass
class RunSummary:
    """What :func:`run_spec` did. ``result`` is the table on rank 0 (``None`` elsewhere)."""

    rank: int
    ranks: int
    rows_total: int | None
    rows_read: int
    partitions: int
    partitions_pruned: int
    rows_out: int | None
    output: str | None
    format: str | None
    seconds: float
    result: Any = field(default=None, repr=False)
    # blocks read (the others were pruned or came from a cache, issue 14)
    partitions_read: int | None = None


def run_spec(
    spec: JobSpec, comm=None, output: str | None = None, overwrite: bool | None = None
) -> RunSummary:
    """Run ``spec`` on every rank of ``comm`` (``None``: ``COMM_WORLD`` under an MPI launcher,
    else the local engine). Collective: call it on every rank. ``output``/``overwrite``
    override the spec's. Rank 0 writes the output atomically (or keeps the table in
    ``summary.result`` when the spec has no output). Returns a :class:`RunSummary` on every
    rank. Raises, on every rank: :class:`SpecError` (bad columns/expressions, output exists),
    :class:`~hpcframe.errors.ComputeError` (a rank failed), ``OSError`` (writing failed)."""
    from ..comm import communicator

    with communicator(comm) as c:
        return _run(spec, c, output, overwrite)


def run_job(
    path: str, overrides=(), output: str | None = None, overwrite: bool | None = None, comm=None
) -> RunSummary:
    """Load the spec file ``path`` (with ``overrides``, see :func:`load_spec`) and run it,
    collectively: if loading fails on any rank, every rank raises. See :func:`run_spec`."""
    from ..comm import communicator

    with communicator(comm) as c:
        spec = _together(c, lambda: load_spec(path, overrides))
        with _spec_diagnostics(spec, c):
            return _run(spec, c, output, overwrite)


def _spec_diagnostics(spec: JobSpec, c):
    """``hf.profiling`` for the spec's ``progress:``/``profile_dir:`` keys, leaving out what
    the caller already turned on (``hpcframe run --progress --profile-dir`` wins)."""
    from contextlib import nullcontext

    from ..callbacks import active

    if not (spec.progress or spec.profile_dir):
        return nullcontext()
    from ..diagnostics import Profiler, ProgressBar, profiling

    on = active()
    progress = spec.progress and not any(isinstance(cb, ProgressBar) for cb in on)
    profile_dir = spec.profile_dir if not any(isinstance(cb, Profiler) for cb in on) else None
    return profiling(profile_dir, progress, comm=c)


def explain_job(path: str, overrides=(), comm=None) -> str:
    """The plan of the job spec at ``path`` (see :meth:`hpcframe.Frame.explain`), without
    running it. Collective under MPI. Raises as :func:`load_spec` and :func:`build`."""
    from ..comm import communicator

    with communicator(comm) as c:
        spec = _together(c, lambda: load_spec(path, overrides))
        _, lazy, _ = _together(c, lambda: build(spec, c))
        objs = lazy.parts if isinstance(lazy, _Many) else [lazy]
        return "\n".join(o.explain(comm=c) for o in objs)


def _with_output(spec: JobSpec, output, overwrite) -> JobSpec:
    """``spec`` with the command line's ``--output``/``--overwrite``. A ``--output`` path is
    replaced only with ``--overwrite`` (the spec's ``overwrite: true`` was meant for the
    spec's own output). Raises :class:`SpecError` for a ``--output`` whose extension is not
    one of the writers' suffixes, or ``--overwrite`` without any output."""
    from ..io.output import FORMATS, format_of

    out = spec.output
    if output is not None:
        fmt = format_of(output)
        if fmt is None:
            suffixes = ", ".join(x for fmts in FORMATS.values() for x in fmts)
            raise SpecError(
                "--output",
                f"cannot tell the format of {output!r}: end the name in one of {suffixes}",
                output,
                spec.source,
            )
        out = OutputSpec(output, fmt, False)
    if overwrite is not None:
        if out is None:
            raise SpecError(
                "--overwrite",
                "there is no output to overwrite; give --output or output: in the spec",
                overwrite,
                spec.source,
            )
        out = replace(out, overwrite=bool(overwrite))
    return replace(spec, output=out)


def _together(c, fn):
    """``fn()`` on every rank; if it raised on any rank, raise on every rank (the rank's own
    error where it failed, a summary of the first failure elsewhere)."""
    from ..query import QueryError

    try:
        value, error = fn(), None
    except BaseException as exc:  # re-raised below, on every rank; SystemExit and
        value, error = None, exc  # KeyboardInterrupt too, so no rank skips the allgather
    if c.size == 1:
        if error is not None:
            raise error
        return value
    usage = (SpecError, QueryError, ColumnNotFoundError)
    text = str(error) if isinstance(error, Exception) else f"{type(error).__name__}: {error}"
    brief = None if error is None else (text, isinstance(error, usage))
    gathered = c.allgather(brief)
    if error is not None:
        raise error
    for rank, item in enumerate(gathered):
        if item is not None:
            message, is_usage = item
            if is_usage:
                raise SpecError("", message)
            raise HpcframeError(f"rank {rank} failed: {message}")
    return value


def _run(spec: JobSpec, c, output, overwrite) -> RunSummary:
    from ..execute import last_run_stats
    from ..frame import compute
    from ..io.output import OutputExistsError, check_writable, write_table
    from ..io.sources import known_partitions

    t0 = time.perf_counter()
    spec = _with_output(spec, output, overwrite)
    source, lazy, finish = _together(c, lambda: build(spec, c))
    out = spec.output

    def check():
        if out is not None and c.rank == 0:
            try:
                check_writable(out.path, out.overwrite)
            except OutputExistsError as exc:
                raise SpecError("output.path", str(exc), out.path, spec.source) from None
            except OSError as exc:
                raise SpecError("output.path", str(exc), out.path, spec.source) from None

    _together(c, check)
    objs = lazy.parts if isinstance(lazy, _Many) else [lazy]
    values = compute(*objs, comm=c, root=0)
    stats = c.gather(last_run_stats(), root=0)
    table = None

    def write():  # finish and write on rank 0; a failure of either reaches every rank
        nonlocal table
        if c.rank == 0:
            table = finish(list(values) if isinstance(lazy, _Many) else values[0])
            if out is not None:
                write_table(table, out.path, out.format, overwrite=out.overwrite)

    _together(c, write)
    rows_total = None
    parts = known_partitions(source.node.scan().source)  # discovered by execute
    if parts is not None:
        rows_total = sum(p.num_rows for p in parts)
    first = stats[0] if stats else {}
    return RunSummary(
        rank=c.rank,
        ranks=c.size,
        rows_total=rows_total,
        rows_read=sum(s.get("rows_read", 0) for s in stats) if stats else 0,
        partitions=first.get("partitions_total", 0),
        partitions_pruned=first.get("partitions_pruned", 0),
        rows_out=len(table) if table is not None else None,
        output=out.path if out is not None else None,
        format=out.format if out is not None else None,
        seconds=time.perf_counter() - t0,
        result=table if (c.rank == 0 and out is None) else None,
        partitions_read=sum(s.get("partitions_read", 0) for s in stats) if stats else None,
    )
