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
:class:`~hpcframe.errors.ComputeError` naming the failing ranks, hosts and partitions.
"""
from __future__ import annotations

import os
import socket
import sys
import traceback
from contextlib import contextmanager

from .errors import ComputeError, DatasetComputeError, DatasetError, HpcframeError

# Environment variables set by MPI launchers (MPICH/Hydra and PMI-2 via srun, Open MPI, PMIx,
# MVAPICH, Intel MPI).
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                  "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "I_MPI_HYDRA_HOST_FILE")


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


class Comm:
    """The serial communicator (one process). :class:`MPIComm` has the same methods."""

    rank = 0
    size = 1
    is_mpi = False

    local_size = 1

    def __init__(self):
        self.host = socket.gethostname()

    def allgather(self, obj):
        return [obj]

    def gather(self, obj, root=0):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def alltoall(self, objs):
        return list(objs)

    def any_true(self, flag: bool) -> bool:
        return bool(flag)

    def barrier(self):
        pass

    def free(self):
        pass

    def where(self) -> str:
        return f"rank {self.rank} of {self.size} on {self.host}"

    def agree(self, error: "RankFailure | None"):
        """Raise :class:`ComputeError` on every rank if any rank passes a failure."""
        if not self.any_true(error is not None):
            return
        failures = [f for f in self.allgather(error) if f is not None]
        cls = DatasetComputeError if all(f.kind == "DatasetError" for f in failures) else ComputeError
        raise cls(_failure_message(failures, self.size), [tuple(f)[:4] for f in failures])


class MPIComm(Comm):
    """A duplicate of an mpi4py communicator. Pickle-based (lowercase) methods for objects."""

    is_mpi = True

    def __init__(self, mpi_comm, owned: bool):
        super().__init__()
        self._comm = mpi_comm
        self._owned = owned
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        self._local_size = None

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
        return self._comm

    def allgather(self, obj):
        return self._comm.allgather(obj)

    def gather(self, obj, root=0):
        return self._comm.gather(obj, root=root)

    def bcast(self, obj, root=0):
        return self._comm.bcast(obj, root=root)

    def alltoall(self, objs):
        return self._comm.alltoall(objs)

    def any_true(self, flag: bool) -> bool:
        from mpi4py import MPI

        return bool(self._comm.allreduce(bool(flag), op=MPI.LOR))

    def barrier(self):
        self._comm.Barrier()

    def free(self):
        if self._owned:
            self._comm.Free()
            self._owned = False


class RankFailure(tuple):
    """(rank, host, context, message, kind) of one rank's error; picklable and small."""

    __slots__ = ()

    def __new__(cls, rank, host, context, message, kind="Exception"):
        return tuple.__new__(cls, (rank, host, context, message, kind))

    def __getnewargs__(self):
        return tuple(self)

    @property
    def kind(self):
        return self[4]


def failure(comm: Comm, context: str, exc: BaseException) -> RankFailure:
    """Describe ``exc`` raised on this rank while doing ``context``."""
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, HpcframeError):
        frame = _innermost_own_frame(exc)
        if frame is not None:
            text += f"\n  at {frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    kind = "DatasetError" if isinstance(exc, DatasetError) else type(exc).__name__
    return RankFailure(comm.rank, comm.host, context, text, kind)


def _innermost_own_frame(exc):
    """The innermost traceback frame in user code or hpcframe (not in a library): where to
    look first."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "site-packages" not in f.filename
           or f"{os.sep}hpcframe{os.sep}" in f.filename]
    return own[-1] if own else (frames[-1] if frames else None)


def _failure_message(failures, size) -> str:
    lines = [f"{len(failures)} of {size} rank(s) failed:"]
    for rank, host, context, message, _ in failures:
        lines.append(f"- rank {rank} on {host}, while {context}:\n    "
                     + message.replace("\n", "\n    "))
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
                f"({exc}); install mpi4py or set HPCFRAME_ENGINE=local") from exc
        comm = MPI.COMM_WORLD
    if not hasattr(comm, "Dup"):
        raise TypeError(f"comm must be an mpi4py communicator or None, not {type(comm).__name__}")
    return MPIComm(comm.Dup(), owned=True)


@contextmanager
def communicator(comm=None):
    """``with communicator(c) as comm:`` — a normalised Comm, freed on exit if we duplicated it."""
    c = get_comm(comm)
    try:
        yield c
    finally:
        if not isinstance(comm, Comm):
            c.free()
