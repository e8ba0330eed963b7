"""Diagnostics: live progress across ranks, task and resource profiles, and a run report.

::

    with hf.ProgressBar(), hf.Profiler() as prof, hf.ResourceProfiler(dt=0.25) as rprof:
        result = query.compute()
    hf.visualize([prof, rprof], "report.html")

    with hf.Cache("2GB"), hf.CacheProfiler() as cprof:   # cache hits, misses, evictions
        ...
    hf.visualize([prof, rprof, cprof], "report.html")

Everything here is off unless used: the engine only checks a list of active callbacks.
Bokeh and matplotlib are imported only when a report is written.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager

from .cacheprof import CacheProfiler
from .profile import Profiler
from .progress import ProgressBar
from .report import summarize, visualize
from .resource import ResourceProfiler
from .store import RunProfile, collect, load, save

__all__ = [
    "ProgressBar",
    "Profiler",
    "ResourceProfiler",
    "CacheProfiler",
    "visualize",
    "profiling",
    "RunProfile",
    "collect",
    "load",
    "save",
    "summarize",
]


@contextmanager
def profiling(profile_dir=None, progress: bool = False, dt: float = 0.5, comm=None):
    """Diagnostics around a batch run (what ``hpcframe run --progress --profile-dir`` uses).

    A context manager; use it on every rank. With ``profile_dir``, rank 0 saves the records
    into ``profile_dir`` on exit, also when the run failed (``run.json`` then says so); read
    them back with :func:`load` or turn them into a report with ``hpcframe report``.

    Parameters
    ----------
    profile_dir : str or os.PathLike, optional
        Where to save a :class:`Profiler`'s and a :class:`ResourceProfiler`'s records; created
        if needed. ``None``: no profile.
    progress : bool, default False
        Show a :class:`ProgressBar`.
    dt : float, default 0.5
        Seconds between the resource samples.
    comm : communicator, optional
        The ranks that check ``profile_dir`` together; default COMM_WORLD when launched by
        MPI (the check is collective then), else this process alone.

    Yields
    ------
    list of Callback
        The active diagnostics (empty when neither ``progress`` nor ``profile_dir``).

    Raises
    ------
    OSError
        On every rank, before anything runs, when ``profile_dir`` cannot be created or written
        on any rank.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> frame = hf.from_pandas(pd.DataFrame({"x": range(1000)}), npartitions=4)
    >>> folder = os.path.join(tempfile.mkdtemp(), "profile")
    >>> with hf.profiling(folder) as active:
    ...     total = frame.x.sum().compute()
    >>> [type(cb).__name__ for cb in active]
    ['Profiler', 'ResourceProfiler']
    >>> sorted(os.listdir(folder))
    ['collectives.parquet', 'resources.parquet', 'run.json', 'runs.parquet', 'tasks.parquet']
    """
    if profile_dir is not None:
        _check_everywhere(os.fspath(profile_dir), comm)
    status = "ok"
    with ExitStack() as stack:
        active = []
        if progress:
            active.append(stack.enter_context(ProgressBar()))
        if profile_dir is not None:
            prof = stack.enter_context(Profiler())
            rprof = stack.enter_context(ResourceProfiler(dt=dt))
            active += [prof, rprof]
            recorded = [prof, rprof]
            # with a cache in use (hf.Cache, --cache-dir), its counts too
            from ..cache import current

            if current() is not None:
                recorded.append(stack.enter_context(CacheProfiler()))
                active.append(recorded[-1])
        try:
            yield active
        except BaseException as exc:
            status = f"failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            if profile_dir is not None:
                stack.close()  # stop the sampler before saving
                if prof.root and _world_rank() == 0:
                    save(collect(recorded, status=status), profile_dir)


def _check_everywhere(path: str, comm=None) -> None:
    """:func:`_check_writable` on every rank; if it failed on any rank, raise ``OSError`` on
    every rank (the rank's own message where it failed, the first failure's elsewhere)."""
    from ..comm import communicator

    try:
        _check_writable(path)
        error = None
    except OSError as exc:
        error = exc
    with communicator(comm) as c:
        if c.size == 1:
            messages = [None if error is None else str(error)]
        else:
            messages = c.allgather(None if error is None else str(error))
    if error is not None:
        raise error
    for rank, message in enumerate(messages):
        if message is not None:
            raise OSError(f"rank {rank}: {message}")


def _check_writable(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the profile directory {path!r}: {exc.strerror}; pass a writable --profile-dir"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OSError(f"the profile directory {path!r} is not writable; pass a writable --profile-dir")


def _world_rank() -> int:
    """This process's rank in the job (0 without MPI); no MPI call is started."""
    from ..comm import world_rank

    return world_rank()
