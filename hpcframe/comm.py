"""The communicator: MPI (mpi4py) when started under a launcher, serial otherwise.

Everything in hpcframe talks to a :class:`Comm`. :func:`get_comm` turns what a user passes
(``None``, an ``mpi4py`` communicator, or a :class:`Comm`) into one:

* ``None`` → the MPI engine over ``COMM_WORLD`` when the process was started by ``mpiexec``/
  ``mpirun``/``srun`` (detected from the launcher's environment, or because the user already
  imported ``mpi4py.MPI``), the serial engine otherwise. ``HPCFRAME_ENGINE=local|mpi`` forces one.
* an ``mpi4py`` communicator → hpcframe works on its own duplicate (``Dup``), so its messages
  never collide with the caller's; the duplicate is freed after the computation.

Collective error discipline: :meth:`Comm.agree` is called before every combine. A rank that
failed contributes its error; if any rank failed, every rank raises the same
:class:`~hpcframe.errors.ComputeError` naming the failing ranks, hosts and partitions. Every
``BaseException`` takes part: ``sys.exit()`` in user code is a failure of that rank, and a
``KeyboardInterrupt`` (SIGINT) on any rank makes every rank raise
:class:`~hpcframe.errors.JobInterrupted`.

Checkpoint signals: when ``HPCFRAME_CHECKPOINT_SIGNALS`` names signals (``USR1,TERM``; the job
script of ``hpcframe submit --signal``/``--requeue`` sets it), :func:`install_checkpoint_handlers`
makes them a request to stop: every rank finishes its block in flight, stops at the block
boundary (a second signal drops the block in flight), the ranks agree and every rank raises
:class:`~hpcframe.errors.JobCheckpointed` (exit code 75), keeping the work already done.

Signals: :func:`interrupt_guard` is active during a computation. On more than one rank, a
SIGINT to one rank raises ``KeyboardInterrupt`` at once while the rank reads or runs user code,
and is kept for the next agreement while it is between or inside collectives. If the rank cannot
reach the agreement within ``HPCFRAME_INTERRUPT_GRACE`` seconds (default 10; the other ranks are
stuck, or it is blocked in a collective), or gets a second SIGINT, it aborts the MPI job
(``MPI_Abort``, exit code 130): the last resort, never the first. On one rank (and in local
mode) a SIGINT raises ``KeyboardInterrupt`` at once, as without the guard.

Either way a SIGINT is remembered until it has become a failure (:func:`failure`) or left the
computation: a ``KeyboardInterrupt`` raised inside code called from C that clears every error
(NumPy's ctypes check in a dtype comparison, an ``io`` object's finalizer asking ``closed``)
would otherwise be lost and the computation would go on; the remembered one is raised at the
next block or agreement instead.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager

from .errors import (
    ComputeError,
    DatasetComputeError,
    DatasetError,
    HpcframeError,
    JobCheckpointed,
    JobInterrupted,
)

# Environment variables set by MPI launchers (MPICH/Hydra and PMI-2 via srun, Open MPI, PMIx,
# MVAPICH, Intel MPI).
_LAUNCHER_VARS = (
    "PMI_SIZE",
    "PMI_RANK",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "I_MPI_HYDRA_HOST_FILE",
)


def launched_by_mpi() -> bool:
    """True when this process looks like one rank of an MPI job."""
    forced = os.environ.get("HPCFRAME_ENGINE", "").strip().lower()
    if forced in ("local", "serial"):
        return False
    if forced == "mpi":
        return True
    if forced:
        raise HpcframeError(f"HPCFRAME_ENGINE={forced!r} is not understood; use 'local' or 'mpi'")
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and mpi.COMM_WORLD.Get_size() > 1:
        return True
    return any(v in os.environ for v in _LAUNCHER_VARS)


#: Environment variables in which MPI launchers and SLURM give a process its rank.
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def world_rank(start_mpi: bool = False) -> int:
    """This process's rank in ``COMM_WORLD``, 0 without MPI: the one answer to "which rank
    am I" outside a communicator.

    By default no MPI call is started: the rank of an initialised mpi4py, else the one the
    launcher put in the environment (:data:`RANK_VARS`). With ``start_mpi`` MPI is
    initialised when :func:`launched_by_mpi` (0 otherwise, e.g. under
    ``HPCFRAME_ENGINE=local``). A broken MPI answers 0 (it shows up later, with a clear
    error, when a communicator is made).
    """
    try:
        if start_mpi:
            if not launched_by_mpi():
                return 0
            from mpi4py import MPI

            return MPI.COMM_WORLD.Get_rank()
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
            return mpi.COMM_WORLD.Get_rank()
        for var in RANK_VARS:
            if os.environ.get(var, "").isdigit():
                return int(os.environ[var])
        return 0
    except Exception:  # noqa: BLE001
        return 0


class Comm:
    """The serial communicator (one process). :class:`MPIComm` has the same methods."""

    rank = 0
    size = 1
    is_mpi = False

    @property
    def local_size(self) -> int:
        """How many ranks of this communicator share this node (1: the serial one)."""
        return 1

    def __init__(self):
        self.host = socket.gethostname()

    def allgather(self, obj):
        """Every rank's ``obj``, in rank order, on every rank."""
        return [obj]

    def gather(self, obj, root=0):
        """Every rank's ``obj`` in rank order on ``root`` (``None`` elsewhere)."""
        return [obj]

    def bcast(self, obj, root=0):
        """``obj`` of rank ``root``, on every rank."""
        return obj

    def alltoall(self, objs):
        """``objs[r]`` goes to rank ``r``; returns what each rank sent to this one."""
        return list(objs)

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (collective)."""
        return bool(flag)

    def any_true_each(self, flags):
        """Elementwise :meth:`any_true` of a boolean NumPy array of the same length on every
        rank (collective)."""
        import numpy as np

        return np.asarray(flags, dtype=bool)

    def barrier(self):
        """Wait until every rank arrives."""
        pass

    def free(self):
        """Release the communicator (a no-op for the serial one)."""
        pass

    def where(self) -> str:
        """``rank R of N on HOST`` (for messages)."""
        return f"rank {self.rank} of {self.size} on {self.host}"

    def agree(self, error: RankFailure | None):
        """Raise :class:`ComputeError` on every rank if any rank passes a failure."""
        if not self.any_true(error is not None):
            return
        failures = [f for f in self.allgather(error) if f is not None]
        cls: type[ComputeError]
        if any(f.kind == "KeyboardInterrupt" for f in failures):
            cls = JobInterrupted
        elif all(f.kind == CHECKPOINT_KIND for f in failures):
            cls = JobCheckpointed
            _checkpoint_agreed[0] = True
        elif all(f.kind == "DatasetError" for f in failures):
            cls = DatasetComputeError
        else:
            cls = ComputeError
        head = None
        if cls is JobCheckpointed:  # not a failure: say what happened
            head = f"checkpoint: every rank stopped; {len(failures)} of {self.size} rank(s) got the request:"
        exc = cls(_failure_message(failures, self.size, head), [tuple(f)[:4] for f in failures])
        # how many other ranks sent this one a stop notice (see notices()): to receive them
        # (a private attribute, read back with getattr() in execute.py)
        exc._notices_to_me = sum(  # type: ignore[attr-defined]
            1 for f in failures if f.notified and f.rank != self.rank
        )
        raise exc

    def notices(self) -> _NoNotices:
        """A channel on which a failing rank tells the others to stop reading at once (they
        check it between blocks) instead of finishing their share before the agreement."""
        return _NoNotices()


class _NoNotices:
    """The serial engine's (and one rank's) notices: nobody else to tell."""

    def received(self) -> bool:
        return False

    def send(self) -> bool:
        return False

    def close(self, senders: int = 0) -> None:
        pass


class _Notices(_NoNotices):
    """Stop notices between the ranks of an :class:`MPIComm`: one posted ``Irecv`` per rank,
    ``Isend`` to every other rank from a rank that failed. After the agreement every rank
    receives exactly the notices sent to it (the failures say who sent one), so no message
    is left behind on the communicator."""

    TAG = 7301

    def __init__(self, mpi_comm):
        import numpy as np
        from mpi4py import MPI

        self._MPI, self._comm = MPI, mpi_comm
        self._buf = np.zeros(1, dtype=np.int32)
        self._one = np.ones(1, dtype=np.int32)
        self._req = mpi_comm.Irecv([self._buf, MPI.INT], source=MPI.ANY_SOURCE, tag=self.TAG)
        self._got = False
        self._sends = []

    def received(self) -> bool:
        if not self._got:
            self._got = bool(self._req.Test())
        return self._got

    def send(self) -> bool:
        if self._sends:
            return True
        me, MPI = self._comm.Get_rank(), self._MPI
        self._sends = [
            self._comm.Isend([self._one, MPI.INT], dest=r, tag=self.TAG)
            for r in range(self._comm.Get_size())
            if r != me
        ]
        return True

    def close(self, senders: int = 0) -> None:
        """Receive the ``senders`` notices sent to this rank (0: cancel the receive)."""
        MPI = self._MPI
        if senders == 0:
            if not self._got:
                self._req.Cancel()
            self._req.Wait()
        else:
            self._req.Wait()
            for _ in range(senders - 1):
                self._comm.Recv([self._buf, MPI.INT], source=MPI.ANY_SOURCE, tag=self.TAG)
        MPI.Request.Waitall(self._sends)
        self._sends = []


class MPIComm(Comm):
    """A duplicate of an mpi4py communicator. Pickle-based (lowercase) methods for objects."""

    is_mpi = True

    def __init__(self, mpi_comm, owned: bool):
        super().__init__()
        self._comm = mpi_comm
        self._owned = owned
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        self._local_size: int | None = None

    @property
    def local_size(self) -> int:
        """How many ranks of this communicator share this node (collective the first time)."""
        if self._local_size is None:
            from mpi4py import MPI

            node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
            self._local_size = node.Get_size()
            node.Free()
        return self._local_size

    @property
    def mpi(self):
        """The underlying mpi4py communicator."""
        return self._comm

    def allgather(self, obj):
        """Every rank's ``obj``, in rank order, on every rank."""
        return self._comm.allgather(obj)

    def gather(self, obj, root=0):
        """Every rank's ``obj`` in rank order on ``root`` (``None`` elsewhere)."""
        return self._comm.gather(obj, root=root)

    def bcast(self, obj, root=0):
        """``obj`` of rank ``root``, on every rank."""
        return self._comm.bcast(obj, root=root)

    def alltoall(self, objs):
        """``objs[r]`` goes to rank ``r``; returns what each rank sent to this one."""
        return self._comm.alltoall(objs)

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (collective)."""
        from mpi4py import MPI

        return bool(self._comm.allreduce(bool(flag), op=MPI.LOR))

    def any_true_each(self, flags):
        """Elementwise :meth:`any_true` of a boolean NumPy array of the same length on every
        rank (collective: one ``Allreduce`` with bitwise or)."""
        import numpy as np
        from mpi4py import MPI

        buf = np.ascontiguousarray(flags, dtype=np.uint8)
        self._comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.BOR)
        return buf.astype(bool)

    def barrier(self):
        """Wait until every rank arrives."""
        self._comm.Barrier()

    def notices(self):
        """A channel on which a failing rank tells the others to stop reading."""
        return _Notices(self._comm) if self.size > 1 else _NoNotices()

    def free(self):
        """Release the communicator (a no-op for the serial one)."""
        if self._owned:
            self._comm.Free()
            self._owned = False


class RankFailure(tuple):
    """(rank, host, context, message, kind, notified) of one rank's error; picklable and small.
    ``notified``: this rank told the others to stop reading (:meth:`Comm.notices`)."""

    __slots__ = ()

    def __new__(cls, rank, host, context, message, kind="Exception", notified=False):
        """A failure record."""
        return tuple.__new__(cls, (rank, host, context, message, kind, notified))

    def __getnewargs__(self):
        return tuple(self)

    @property
    def rank(self):
        """The failing rank."""
        return self[0]

    @property
    def kind(self):
        """The exception's kind (``DatasetError``, ``KeyboardInterrupt``, a type name)."""
        return self[4]

    @property
    def notified(self):
        """Whether this rank told the others to stop reading."""
        return self[5]

    def with_notice(self) -> RankFailure:
        """The same failure, marked as notified to the others."""
        rank, host, context, message, kind = self[:5]
        return RankFailure(rank, host, context, message, kind, True)


def failure(comm: Comm, context: str, exc: BaseException) -> RankFailure:
    """Describe ``exc`` raised on this rank while doing ``context``. Any ``BaseException``:
    ``sys.exit()`` and ``KeyboardInterrupt`` are failures of this rank too (kind
    ``"SystemExit"``/``"KeyboardInterrupt"``), reported on every rank by :meth:`Comm.agree`."""
    if isinstance(exc, KeyboardInterrupt):
        if _guard is not None:
            _guard.pending = False  # this SIGINT is accounted for: this failure reports it
        how = "SIGINT" if _guard is not None and _guard.signalled else "KeyboardInterrupt"
        return RankFailure(
            comm.rank,
            comm.host,
            context,
            f"KeyboardInterrupt: interrupted ({how}) on this rank; the job was stopped on every rank",
            "KeyboardInterrupt",
        )
    if isinstance(exc, CheckpointNow):  # a second signal dropped the block
        dropped = checkpoint_failure(comm, context, dropped=True)
        assert dropped is not None  # always a failure when dropped
        return dropped
    if isinstance(exc, SystemExit):
        text = (
            f"SystemExit: sys.exit({exc.code!r}) was called; it cannot end one rank alone, "
            "so it is reported as a failure (raise an exception instead)"
        )
    else:
        text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, HpcframeError):
        frame = _innermost_own_frame(exc)
        if frame is not None:
            text += f"\n  at {frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    kind = "DatasetError" if isinstance(exc, DatasetError) else type(exc).__name__
    return RankFailure(comm.rank, comm.host, context, text, kind)


def on_root(comm: Comm, fn, context: str | None = None, root: int = 0):
    """Run ``fn()`` on ``root`` only and return its result on every rank (a broadcast).

    The ranks agree first, so that a failure never leaves the others waiting: with a
    ``context``, a failure of ``fn`` raises :class:`ComputeError` on every rank naming the
    root and ``context`` (:meth:`Comm.agree`); without one, every rank raises a copy of the
    root's own exception (a ``FileExistsError`` stays a ``FileExistsError``).
    """
    result = error = None
    failed: RankFailure | None = None  # with a context: this rank's failure, for agree()
    if comm.rank == root:
        try:
            result = fn()
        except Exception as exc:  # the others wait in the collective below: send it to them
            if context is None:
                error = portable_error(exc)
            else:
                failed = failure(comm, context, exc)
    if context is not None:
        comm.agree(failed)
        return comm.bcast(result, root)
    result, error = comm.bcast((result, error), root)
    if error is not None:
        raise rebuilt_error(error)
    return result


def portable_error(exc: Exception) -> Exception:
    """``exc`` in a form that pickles for a broadcast (an ``OSError`` keeps errno, message
    and file name; other types that do not pickle become ``DatasetError`` with the message)."""
    if isinstance(exc, OSError):
        return (
            type(exc)(exc.errno, exc.strerror or str(exc), exc.filename)
            if exc.errno is not None or exc.filename is not None
            else type(exc)(str(exc))
        )
    try:
        type(exc)(*exc.args)  # what unpickling does on the receiving ranks
        return exc
    except Exception:
        return DatasetError(f"{type(exc).__name__}: {exc}")


def rebuilt_error(exc: Exception) -> Exception:
    """A fresh copy of the broadcast error ``exc`` (so that every rank raises the same)."""
    if isinstance(exc, OSError) and (exc.errno is not None or exc.filename is not None):
        return type(exc)(exc.errno, exc.strerror, exc.filename)
    try:
        return type(exc)(*exc.args)
    except Exception:
        return exc


def _innermost_own_frame(exc):
    """The innermost traceback frame in user code or hpcframe (not in a library): where to
    look first."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [
        f for f in frames if "site-packages" not in f.filename or f"{os.sep}hpcframe{os.sep}" in f.filename
    ]
    return own[-1] if own else (frames[-1] if frames else None)


def _failure_message(failures, size, head: str | None = None) -> str:
    lines = [head or f"{len(failures)} of {size} rank(s) failed:"]
    for rank, host, context, message, *_ in failures:
        lines.append(f"- rank {rank} on {host}, while {context}:\n    " + message.replace("\n", "\n    "))
    return "\n".join(lines)


def get_comm(comm=None) -> Comm:
    """Normalise what the user passed into a :class:`Comm` (see the module docstring)."""
    if isinstance(comm, Comm):
        return comm
    if comm is None:
        if not launched_by_mpi():
            return Comm()
        try:
            from mpi4py import MPI
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise HpcframeError(
                "this process was started by an MPI launcher but mpi4py cannot be imported "
                f"({exc}); install mpi4py or set HPCFRAME_ENGINE=local"
            ) from exc
        comm = MPI.COMM_WORLD
    if not hasattr(comm, "Dup"):
        raise TypeError(f"comm must be an mpi4py communicator or None, not {type(comm).__name__}")
    return MPIComm(comm.Dup(), owned=True)


_hook_installed = False


def abort_job_on_uncaught() -> None:
    """Make an exception that ends this rank's program (raised in the user's own script,
    outside hpcframe's collectives) end every rank of the MPI job, as ``python -m mpi4py``
    does: the traceback is printed, then ``MPI_Abort``. Without it the other ranks would wait
    in their next collective forever. Installed by ``import hpcframe`` in a process an MPI
    launcher started (mpi4py is imported only when the hook runs); ``HPCFRAME_NO_ABORT=1``
    leaves ``sys.excepthook`` alone."""
    global _hook_installed
    if _hook_installed or os.environ.get("HPCFRAME_NO_ABORT") == "1":
        return
    try:
        if not launched_by_mpi():
            return
    except HpcframeError:  # a bad HPCFRAME_ENGINE: said when a computation starts
        return
    _hook_installed = True
    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            previous(kind, value, tb)
        finally:
            from mpi4py import MPI

            world = MPI.COMM_WORLD
            if world.Get_size() > 1:
                sys.stderr.write(
                    f"hpcframe: rank {world.Get_rank()} of {world.Get_size()} ended with an "
                    f"uncaught {kind.__name__}; aborting the MPI job (HPCFRAME_NO_ABORT=1: not)\n"
                )
                sys.stderr.flush()
                world.Abort(1)

    sys.excepthook = hook


@contextmanager
def communicator(comm=None):
    """``with communicator(c) as comm:`` — a normalised Comm, freed on exit if we duplicated it."""
    c = get_comm(comm)
    try:
        yield c
    finally:
        if not isinstance(comm, Comm):
            c.free()


# ------------------------------------------------------------------------------------ signals
def _grace() -> float:
    raw = os.environ.get("HPCFRAME_INTERRUPT_GRACE", "").strip()
    try:
        value = float(raw) if raw else 10.0
    except ValueError:
        raise HpcframeError(f"HPCFRAME_INTERRUPT_GRACE={raw!r} must be a number of seconds") from None
    return max(value, 0.0)


# a SIGINT this long after the first one is a second Ctrl-C (a terminal's Ctrl-C reaches a rank
# twice at once: from the terminal and forwarded by mpiexec)
_SECOND_SIGINT = 1.0


class _Guard:
    """SIGINT handling of this process while :func:`interrupt_guard` is active."""

    def __init__(self, comm: Comm, grace: float):
        self.comm, self.grace = comm, grace
        #: ranks wait for each other: a SIGINT between collectives is kept for the agreement,
        #: a rank that cannot reach it aborts the job (one rank, local mode: neither)
        self.across_ranks = comm.is_mpi and comm.size > 1
        self.interruptible = True  # raise KeyboardInterrupt at once (else keep it pending)
        #: a SIGINT not yet turned into a failure (:func:`failure`): kept while it is only
        #: raised, since C code that clears errors may swallow the ``KeyboardInterrupt``
        self.pending = False
        self.signalled = False  # a SIGINT arrived during the guard
        self.done = threading.Event()
        self._rfd = self._wfd = None
        self._thread = None
        self._timer = None
        self._first = 0.0

    def handler(self, signum, frame):
        """The Python-level handler: runs in the main thread between bytecodes."""
        if self.across_ranks and self._thread is None:  # no watcher thread: count them here
            if self._timer is not None:
                if time.monotonic() - self._first > _SECOND_SIGINT:
                    _abort(self.comm, "interrupted twice (SIGINT)")
            else:
                self._first = time.monotonic()
                self._timer = threading.Timer(self.grace, self._expired)
                self._timer.daemon = True
                self._timer.start()
        self.signalled = True
        self.pending = True
        if self.interruptible:
            raise KeyboardInterrupt

    def _expired(self):
        if not self.done.is_set():
            _abort(
                self.comm,
                f"interrupted (SIGINT), and the ranks did not agree to stop "
                f"within {self.grace:g} s (HPCFRAME_INTERRUPT_GRACE)",
            )

    def start(self):
        """Watch for SIGINT from a thread too: the Python handler cannot run while the main
        thread is blocked in an MPI call, but the wakeup fd is written at once."""
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        try:
            old = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            old = None
        if old != -1:  # unavailable, or someone else (asyncio) uses it: leave it to them
            if old is not None:
                signal.set_wakeup_fd(old)
            os.close(rfd)
            os.close(wfd)
            return
        self._rfd, self._wfd = rfd, wfd
        self._thread = threading.Thread(target=self._watch, name="hpcframe-interrupt", daemon=True)
        self._thread.start()

    def _watch(self):
        import select

        deadline = None
        while not self.done.is_set():
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._rfd], [], [], wait)
            if self.done.is_set():
                return
            if not ready:  # the grace period is over
                self._expired()
                return
            data = os.read(self._rfd, 64)
            if signal.SIGINT in data:
                self.signalled = True
                if deadline is None:
                    first = time.monotonic()
                    deadline = first + self.grace
                elif time.monotonic() - first > _SECOND_SIGINT:
                    _abort(self.comm, "interrupted twice (SIGINT)")

    def stop(self):
        self.done.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            signal.set_wakeup_fd(-1)
            os.write(self._wfd, b"\0")  # wake the watcher
            self._thread.join(1.0)
            os.close(self._rfd)
            os.close(self._wfd)


_guard: _Guard | None = None


def _abort(comm: Comm, why: str) -> None:
    """Last resort: end every rank of the job (MPI_Abort, exit code 130)."""
    sys.stderr.write(
        f"hpcframe: rank {comm.rank} of {comm.size} on {comm.host}: {why}; aborting the MPI job\n"
    )
    sys.stderr.flush()
    try:
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(130)
    finally:
        os._exit(130)


@contextmanager
def interrupt_guard(comm: Comm):
    """Handle SIGINT so that a signal to one rank ends every rank, and no SIGINT is lost (see
    the module docstring). Active in the main thread when SIGINT has Python's default handler;
    nested guards are no-ops. Leaving it normally with a SIGINT still pending raises
    ``KeyboardInterrupt``."""
    global _guard
    if (
        _guard is not None
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield _guard
        return
    g = _Guard(comm, _grace())
    signal.signal(signal.SIGINT, g.handler)
    _guard = g
    if g.across_ranks:
        g.start()
    try:
        yield g
        if g.pending:
            g.pending = False
            raise KeyboardInterrupt
    finally:
        _guard = None
        signal.signal(signal.SIGINT, signal.default_int_handler)
        g.stop()


@contextmanager
def world_interrupt_guard():
    """:func:`interrupt_guard` over ``COMM_WORLD`` when this process is one rank of an MPI job
    of several ranks (no communicator is created); for commands that run collectively."""
    if not launched_by_mpi():
        yield None
        return
    from mpi4py import MPI

    with interrupt_guard(MPIComm(MPI.COMM_WORLD, owned=False)) as g:
        yield g


@contextmanager
def interruptible():
    """Inside: a SIGINT raises ``KeyboardInterrupt`` at once (reading, user code; the caller
    turns it into a failure for the next agreement). Outside (between collectives) it is kept
    until :func:`take_interrupt`."""
    g = _guard
    if g is None:
        yield
        return
    before = g.interruptible
    g.interruptible = True
    try:
        if g.pending:  # (it stays pending until it becomes a failure)
            raise KeyboardInterrupt
        yield
    finally:
        g.interruptible = before


@contextmanager
def deferred():
    """Inside: a SIGINT is kept pending (collectives must not be skipped). On one rank there
    are none to skip: it is raised at once."""
    g = _guard
    if g is None or not g.across_ranks:
        yield
        return
    before = g.interruptible
    g.interruptible = False
    try:
        yield
    finally:
        g.interruptible = before


def take_interrupt() -> bool:
    """True (once) if a SIGINT arrived that has not become a failure yet: kept pending between
    collectives, or raised and swallowed by code that clears errors."""
    g = _guard
    if g is None or not g.pending:
        return False
    g.pending = False
    return True


# ------------------------------------------------------------------ CHECKPOINT: checkpoint signals
# a checkpoint signal stops every rank at the next block boundary (issue 13.7)
#: The ``RankFailure.kind`` of a rank that stopped on a checkpoint signal.
CHECKPOINT_KIND = "Checkpoint"
#: The environment variable naming the checkpoint signals (``USR1,TERM``).
CHECKPOINT_ENV = "HPCFRAME_CHECKPOINT_SIGNALS"

_checkpoint_signal: int | None = None  # the checkpoint signal that arrived (sticky)
_checkpoint_installed: dict[int, object] = {}  # signal -> the handler it had before
_in_block = False  # this rank is inside a block (reading, user code): a second signal drops it
_checkpoint_agreed = [False]  # the ranks agreed to stop on a checkpoint (JobCheckpointed raised)


def checkpoint_agreed() -> bool:
    """True once this rank raised :class:`~hpcframe.errors.JobCheckpointed` (every rank of the
    computation did): the process should leave with exit code 75."""
    return _checkpoint_agreed[0]


class CheckpointNow(BaseException):
    """Raised by a second checkpoint signal while a rank is inside a block: the block in
    flight is dropped (redone on resume). A ``BaseException``, so user code does not catch it."""


def checkpoint_signals(env=None) -> list[int]:
    """The signal numbers named by ``HPCFRAME_CHECKPOINT_SIGNALS`` (``USR1,TERM``, ``SIGUSR2``
    or numbers; empty when unset). Raises :class:`HpcframeError` naming an unknown one."""
    raw = (os.environ if env is None else env).get(CHECKPOINT_ENV, "").strip()
    out: list[int] = []
    for word in filter(None, (w.strip() for w in raw.replace(" ", ",").split(","))):
        name = word.upper()
        try:
            num = (
                int(name)
                if name.isdigit()
                else int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))
            )
            signal.Signals(num)
        except (AttributeError, ValueError):
            raise HpcframeError(
                f"{CHECKPOINT_ENV}={raw!r}: {word!r} is not a signal; use names such as USR1,TERM"
            ) from None
        if num in (signal.SIGINT, signal.SIGKILL, signal.SIGSTOP):
            raise HpcframeError(
                f"{CHECKPOINT_ENV}={raw!r}: {word} cannot be a checkpoint signal; use USR1, USR2 or TERM"
            )
        if num not in out:
            out.append(num)
    return out


def _checkpoint_handler(signum, frame):
    global _checkpoint_signal
    if _checkpoint_signal is not None and _in_block:
        raise CheckpointNow()  # the second signal: drop the block in flight
    if _checkpoint_signal is None:
        _checkpoint_signal = signum


def install_checkpoint_handlers(signals=None) -> list[int]:
    """Make ``signals`` (default: :func:`checkpoint_signals`) checkpoint requests in this
    process: the handler only records the signal; the engine stops at the next block boundary
    (:func:`checkpoint_requested`). Idempotent; a no-op outside the main thread. Returns the
    signals handled."""
    sigs = checkpoint_signals() if signals is None else list(signals)
    if not sigs or threading.current_thread() is not threading.main_thread():
        return sorted(_checkpoint_installed)
    for num in sigs:
        if num not in _checkpoint_installed:
            _checkpoint_installed[num] = signal.signal(num, _checkpoint_handler)
    return sorted(_checkpoint_installed)


def uninstall_checkpoint_handlers() -> None:
    """Give the checkpoint signals back their earlier handlers and forget a request."""
    global _checkpoint_signal
    for num, old in list(_checkpoint_installed.items()):
        signal.signal(num, old)  # type: ignore[arg-type]
        del _checkpoint_installed[num]
    _checkpoint_signal = None
    _checkpoint_agreed[0] = False


#: A file whose appearance asks for a checkpoint like a signal (the job script creates it when
#: the batch shell gets the warning signal: launchers such as Hydra's mpiexec do not forward it).
CHECKPOINT_FILE_ENV = "HPCFRAME_CHECKPOINT_FILE"
_checkpoint_polled = [0.0]


def checkpoint_requested() -> str | None:
    """The name of the checkpoint signal that arrived in this process (``"SIGUSR1"``), or
    ``None``. Sticky: once asked, every later block boundary stops. The file named by
    ``HPCFRAME_CHECKPOINT_FILE`` (looked for at most every half second) asks too."""
    global _checkpoint_signal
    if _checkpoint_signal is None and _checkpoint_installed:
        path = os.environ.get(CHECKPOINT_FILE_ENV)
        now = time.monotonic()
        if path and now - _checkpoint_polled[0] >= 0.5:
            _checkpoint_polled[0] = now
            if os.path.exists(path):
                _checkpoint_signal = -1
    if _checkpoint_signal is None:
        return None
    if _checkpoint_signal == -1:
        return f"a checkpoint request ({os.environ.get(CHECKPOINT_FILE_ENV)})"
    return signal.Signals(_checkpoint_signal).name


@contextmanager
def block_in_flight():
    """Around one block's reading and computing: a second checkpoint signal inside raises
    :class:`CheckpointNow` (the block is dropped)."""
    global _in_block
    before = _in_block
    _in_block = True
    try:
        yield
    finally:
        _in_block = before


def checkpoint_failure(comm: Comm, context: str, dropped: bool = False) -> RankFailure | None:
    """This rank's :data:`CHECKPOINT_KIND` failure for the next agreement if a checkpoint signal
    arrived (``None`` otherwise): every rank then raises :class:`JobCheckpointed`."""
    name = checkpoint_requested()
    if name is None and not dropped:
        return None
    how = "dropped the block in flight" if dropped else "stopped at a block boundary"
    return RankFailure(
        comm.rank,
        comm.host,
        context,
        f"checkpoint: {name or 'a checkpoint signal'} arrived; this rank {how}. Work already "
        "done is kept: run the same command again to resume",
        CHECKPOINT_KIND,
    )
