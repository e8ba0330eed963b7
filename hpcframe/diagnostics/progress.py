"""Live progress of a computation across all ranks, printed by rank 0 while it runs.

How rank 0 learns about the other ranks (one-sided MPI, no message per leaf):

* ``on_run_start`` (collective) allocates an MPI window of three ``int64`` counters on rank 0
  (leaves, rows, bytes done; other ranks expose zero bytes), zeroes it and meets at a barrier.
* ``on_leaf_done`` adds this leaf's ``(1, rows, bytes)`` with one ``MPI_Accumulate`` in a
  shared passive-target epoch (``Lock``/``Accumulate``/``Unlock``): a few microseconds per
  leaf, no per-row work, and no rank ever waits for rank 0's main thread to take part.
* Rank 0 reads the counters with ``MPI_Get_accumulate(op=NO_OP)`` (atomic with respect to
  the accumulates) from a background thread that prints. That thread makes MPI calls while
  the main thread may be inside a collective, which is correct only with
  ``MPI_THREAD_MULTIPLE`` (mpi4py asks for it by default and MPICH/Open MPI provide it); its
  periodic ``Lock`` also drives MPI progress on rank 0 for the other ranks' accumulates. When
  the library gives less thread support, rank 0 reads the window in its own ``on_leaf_done``
  (main thread) and the printing thread only formats the last value read (no MPI call).
* ``on_run_end`` (collective) stops the thread, prints the final line and frees the window.

In one process (serial engine or one rank) the counters are plain integers: no MPI at all.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from ..callbacks import Callback

_LAUNCHERS = (
    "mpiexec",
    "mpiexec.hydra",
    "mpirun",
    "orterun",
    "prterun",
    "srun",
    "aprun",
    "hydra_pmi_proxy",
    "orted",
    "prted",
)


class _LocalCounters:
    """Counters of a one-process run: plain integers (under a lock)."""

    reads_in_thread = True

    def __init__(self):
        self._lock = threading.Lock()
        self._values = (0, 0, 0)

    def add(self, leaves: int, rows: int, nbytes: int) -> None:
        """Count one more leaf of ``rows`` rows and ``nbytes`` bytes."""
        with self._lock:
            a, b, c = self._values
            self._values = (a + leaves, b + rows, c + nbytes)

    def read(self) -> tuple:
        """The counters: ``(leaves, rows, bytes)`` done."""
        return self._values

    def free(self) -> None:
        """Nothing to free."""


class _WindowCounters:
    """Counters in an MPI window on rank 0 of ``mpi_comm`` (collective constructor)."""

    def __init__(self, mpi_comm):
        import numpy as np
        from mpi4py import MPI

        self._np, self._MPI = np, MPI
        self.rank = mpi_comm.Get_rank()
        self.reads_in_thread = MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        self._win = MPI.Win.Allocate(3 * 8 if self.rank == 0 else 0, 8, comm=mpi_comm)
        if self.rank == 0:
            self._win.Lock(0, MPI.LOCK_EXCLUSIVE)
            self._win.Put(np.zeros(3, np.int64), 0)
            self._win.Unlock(0)
        mpi_comm.Barrier()  # nobody accumulates before the counters are zero
        self._lock = threading.Lock()

    def add(self, leaves: int, rows: int, nbytes: int) -> None:
        """Add ``(leaves, rows, nbytes)`` to rank 0's counters (one ``MPI_Accumulate``)."""
        buf = self._np.array([leaves, rows, nbytes], dtype=self._np.int64)
        win, MPI = self._win, self._MPI
        with self._lock:
            win.Lock(0, MPI.LOCK_SHARED)
            win.Accumulate(buf, 0, op=MPI.SUM)
            win.Unlock(0)

    def read(self) -> tuple:
        """The counters (rank 0 only): one atomic read of the window."""
        np, win, MPI = self._np, self._win, self._MPI
        out = np.zeros(3, dtype=np.int64)
        with self._lock:
            win.Lock(0, MPI.LOCK_SHARED)
            win.Get_accumulate(np.zeros(3, dtype=np.int64), out, 0, op=MPI.NO_OP)
            win.Unlock(0)
        return tuple(int(v) for v in out)

    def free(self) -> None:
        """Collective: free the window."""
        self._win.Free()


def safe_to_meet(error) -> bool:
    """True when every rank is known to be in ``on_run_end`` together: the run succeeded or
    failed with the :class:`~hpcframe.errors.ComputeError` that ``Comm.agree`` raises on
    every rank. Other errors may be local to one rank: then no collective is started."""
    from ..errors import ComputeError

    return error is None or isinstance(error, ComputeError)


def terminal_mode(stream) -> bool:
    """True when ``stream`` ends on a terminal: it is a TTY itself, or (under ``mpiexec``,
    which forwards the ranks' output through pipes) the launcher that started this process
    writes to a terminal. ``HPCFRAME_PROGRESS=bar|lines`` forces the answer."""
    forced = os.environ.get("HPCFRAME_PROGRESS", "").strip().lower()
    if forced in ("bar", "tty"):
        return True
    if forced in ("lines", "log", "plain"):
        return False
    try:
        if stream.isatty():
            return True
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    if fd not in (1, 2) or not os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
        return False
    return _launcher_on_tty(fd)


def _launcher_on_tty(fd: int) -> bool:
    try:
        import psutil

        parents = psutil.Process().parents()[:4]
    except Exception:  # noqa: BLE001 - no psutil or no /proc: assume a log file
        return False
    for proc in parents:
        try:
            if proc.name() not in _LAUNCHERS:
                return False
            target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
        except (OSError, Exception):  # noqa: BLE001 - process gone or not ours
            return False
        if target.startswith(("/dev/pts/", "/dev/tty")):
            return True
        if not target.startswith("pipe:"):
            return False
    return False


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000 or suffix == "T":
            text = f"{n:.0f}" if suffix == "" else f"{n:.1f}"
            return f"{text}{suffix}{unit}"
        n /= 1000.0
    return str(n)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress_fraction(done: tuple, totals: tuple, rows_known: bool = True) -> float:
    """The fraction of the work done, in [0, 1], measured honestly: by rows when the row
    counts are known (Parquet, HDF5, pandas), else by the bytes of the partitions done (the
    bytes of every partition are known: compressed bytes for a compressed file), else by
    partitions."""
    leaves, rows, nbytes = done
    t_leaves, t_rows, t_bytes = totals
    if rows_known and t_rows:
        frac = rows / t_rows
    elif t_bytes:
        frac = nbytes / t_bytes
    else:
        frac = leaves / t_leaves if t_leaves else 1.0
    return min(max(frac, 0.0), 1.0)


def format_progress(
    done: tuple, totals: tuple, elapsed: float, width: int = 0, rows_known: bool = True, final: bool = False
) -> str:
    """One progress line for ``done = (leaves, rows, bytes)`` of ``totals`` after ``elapsed``
    seconds; with ``width`` > 0 it starts with a bar of that many characters.

    ``rows_known=False`` says that the total rows are an estimate (CSV files): the fraction
    and the ETA then come from bytes (see :func:`progress_fraction`) and the rows show as
    ``N rows (~T est.)``. ``final=True`` is the line of a finished run: 100 % and ``done``
    (rows are then exact: the rows read); only that line says ``done``."""
    leaves, rows, nbytes = done
    t_leaves, t_rows, t_bytes = totals
    frac = 1.0 if final else progress_fraction(done, totals, rows_known)
    rate = rows / elapsed if elapsed > 0 else 0.0
    if final:
        eta = "done"
    elif frac >= 1.0:  # every partition read, results not yet combined
        eta = "finishing"
    elif frac > 0 and elapsed > 0:
        eta = "ETA " + _duration(elapsed * (1 - frac) / frac)
    else:
        eta = "ETA ?"
    head = ""
    if width:
        fill = int(round(frac * width))
        head = "[" + "#" * fill + "-" * (width - fill) + "] "
    if rows_known:
        rows_text = f"{_human(rows)}/{_human(t_rows)} rows"
    elif final:
        rows_text = f"{_human(rows)} rows"
    else:
        rows_text = f"{_human(rows)} rows (~{_human(t_rows)} est.)"
    return (
        f"{head}{frac * 100:5.1f}% | {leaves}/{t_leaves} partitions | {rows_text} | "
        f"{_human(nbytes, 'B')}/{_human(t_bytes, 'B')} | "
        f"{_human(rate)} rows/s | {_duration(elapsed)} elapsed | {eta}"
    )


class ProgressBar(Callback):
    """Progress of every computation in the ``with`` block, for all ranks, printed by rank 0.

    Use the same ``with`` on every rank (SPMD). In a terminal one line is rewritten (a bar);
    in a batch log (no terminal) a plain line is printed every ``interval`` seconds and at
    every 10 % step. Other ranks print nothing. Progress is counted in rows when the row
    counts are known, else in bytes (CSV).

    Parameters
    ----------
    out : text stream, optional
        Where rank 0 prints; default ``sys.stdout``.
    mode : {"bar", "lines", None}, default None
        A rewritten bar, plain lines, or ``None`` to choose by whether the output ends on a
        terminal (see :func:`terminal_mode`; ``HPCFRAME_PROGRESS=bar|lines`` forces it).
    interval : float, default 10.0
        Seconds between plain lines.
    refresh : float, default 0.2
        Seconds between redraws of the bar.
    width : int, default 30
        Width of the bar in characters.

    Raises
    ------
    ValueError
        If ``mode`` is not one of the above.

    Examples
    --------
    >>> import io
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> frame = hf.from_pandas(pd.DataFrame({"x": range(1000)}), npartitions=4)
    >>> log = io.StringIO()
    >>> with hf.ProgressBar(out=log, mode="lines"):
    ...     total = frame.x.sum().compute()
    >>> int(total)
    499500
    >>> last = log.getvalue().splitlines()[-1]
    >>> "100.0% | 4/4 partitions" in last, last.endswith("done")
    (True, True)
    """

    def __init__(
        self, out=None, mode: str | None = None, interval: float = 10.0, refresh: float = 0.2, width: int = 30
    ):
        if mode not in (None, "bar", "lines"):
            raise ValueError(f"ProgressBar(mode={mode!r}): use 'bar', 'lines' or None (detect)")
        self.out, self.mode, self.interval = out, mode, float(interval)
        self.refresh, self.width = float(refresh), int(width)
        self._run = None

    # -- hooks ------------------------------------------------------------------------------
    def on_run_start(self, run) -> None:
        """Collective: set up the counters (an MPI window on rank 0) and start printing."""
        comm = run.comm
        mpi = getattr(comm, "is_mpi", False) and comm.size > 1
        self._counters = _WindowCounters(comm.mpi) if mpi else _LocalCounters()
        self._run, self._rank = run, comm.rank
        self._totals = (run.leaves_total, run.rows_total, run.bytes_total)
        self._rows_known = bool(getattr(run, "rows_exact", True))
        self._snapshot = (0, 0, 0)
        self._stop = threading.Event()
        self._thread = None
        if self._rank != 0:
            return
        self._stream = self.out if self.out is not None else sys.stdout
        bar = self.mode == "bar" or (self.mode is None and terminal_mode(self._stream))
        self._bar = bar
        self._last_len = 0
        if not bar:
            rows = (
                f"{_human(run.rows_total)} rows"
                if self._rows_known
                else f"~{_human(run.rows_total)} rows (estimated; progress counts bytes)"
            )
            t_plan = getattr(run, "t_plan", None)
            planned = f", planned in {run.t0 - t_plan:.2f}s" if t_plan is not None else ""
            self._write(
                f"hpcframe: {run.source}: {run.leaves_total} partitions, "
                f"{rows}, {_human(run.bytes_total, 'B')} "
                f"on {comm.size} rank(s){planned}\n"
            )
        self._thread = threading.Thread(
            target=self._loop, args=(run.t0,), name="hpcframe-progress", daemon=True
        )
        self._thread.start()

    def on_leaf_done(self, run, leaf, times) -> None:
        """Add this leaf's rows and bytes to the counters."""
        counters = self._counters
        counters.add(1, int(times.get("rows", 0)), int(times.get("nbytes", 0)))
        if self._rank == 0 and not counters.reads_in_thread:
            self._snapshot = counters.read()

    def on_run_end(self, run, error) -> None:
        """Collective: stop printing, print the final line and free the counters."""
        if self._run is None:
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._rank == 0:
            # every rank's Unlock completed before it entered the final collectives: exact
            done = self._counters.read()
            elapsed = time.perf_counter() - run.t0
            # a run that ended without error is done, whatever the estimates said: 100 %
            line = format_progress(
                done,
                self._totals,
                elapsed,
                self.width if self._bar else 0,
                rows_known=self._rows_known,
                final=error is None,
            )
            if error is not None:
                line += f" | FAILED after {_duration(elapsed)}"
            self._show(line, final=True)
        if safe_to_meet(error):
            self._counters.free()
        self._run = None

    # -- printing (rank 0) ------------------------------------------------------------------
    def _loop(self, t0: float) -> None:
        """Print until stopped (rank 0's thread); ``t0`` is when the run started reading."""
        counters = self._counters
        tick = self.refresh if self._bar else min(0.5, self.interval)
        last_print, last_decile = time.perf_counter(), 0
        while not self._stop.wait(tick):
            done = counters.read() if counters.reads_in_thread else self._snapshot
            now = time.perf_counter()
            if self._bar:
                self._show(
                    format_progress(done, self._totals, now - t0, self.width, rows_known=self._rows_known)
                )
                continue
            frac = progress_fraction(done, self._totals, self._rows_known)
            decile = int(frac * 10)
            if now - last_print >= self.interval or decile > last_decile:
                if decile >= 10:
                    continue  # the final line is printed by on_run_end
                self._show(format_progress(done, self._totals, now - t0, rows_known=self._rows_known))
                last_print, last_decile = now, max(decile, last_decile)

    def _show(self, line: str, final: bool = False) -> None:
        if self._bar:
            pad = " " * max(0, self._last_len - len(line))
            self._last_len = len(line)
            self._write("\r" + line + pad + ("\n" if final else ""))
        else:
            self._write(f"hpcframe: {line}\n")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # closed stream: progress is never worth a failure
            pass
