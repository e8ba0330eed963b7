"""MPI in the tests: whether this process was started by an MPI launcher (without importing
mpi4py when it was not), this rank and the world size, collectives that also work without
MPI, and ``mpiexec`` started as a subprocess with a timeout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)
MPIEXEC = os.path.join(BIN, "mpiexec")
"""The ``mpiexec`` of the environment the tests run in (pip MPICH in ``.venv``)."""

MPI_ENV = ("PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

needs_mpiexec = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason=f"needs {MPIEXEC}")


def under_mpi() -> bool:
    """True when started by mpiexec/srun (HPCFRAME_TEST_MPI=0/1 overrides the detection)."""
    forced = os.environ.get("HPCFRAME_TEST_MPI")
    if forced is not None:
        return forced == "1"
    return any(v in os.environ for v in MPI_ENV)


UNDER_MPI = under_mpi()

# pytest-timeout: under MPI a rank blocked in a C-level collective never sees SIGALRM, so use
# the thread method (dumps stacks and exits the process; mpiexec then takes the job down).
TIMEOUT_METHOD = "thread" if UNDER_MPI else "signal"


def timeout(seconds: float = 60):
    """A ``pytest.mark.timeout`` that also ends a rank blocked in an MPI collective."""
    return pytest.mark.timeout(seconds, method=TIMEOUT_METHOD)


def world():
    """COMM_WORLD under MPI, else None."""
    if not UNDER_MPI:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def rank() -> int:
    """This process's rank in COMM_WORLD (0 without MPI)."""
    c = world()
    return 0 if c is None else c.Get_rank()


def size() -> int:
    """The size of COMM_WORLD (1 without MPI)."""
    c = world()
    return 1 if c is None else c.Get_size()


def barrier() -> None:
    """Wait for every rank (nothing without MPI)."""
    c = world()
    if c is not None:
        c.Barrier()


def allgather(value) -> list:
    """``[value of rank 0, value of rank 1, ...]`` (``[value]`` without MPI)."""
    c = world()
    return [value] if c is None else c.allgather(value)


def allsum(value):
    """The sum of ``value`` over all ranks."""
    return sum(allgather(value))


def on_root(fn) -> None:
    """Once every rank is here, run ``fn`` on rank 0 (files are shared); every rank waits, and
    a failure on rank 0 fails the test on every rank (instead of leaving them at a barrier)."""
    barrier()  # no rank still reads the files fn changes
    error = None
    if rank() == 0:
        try:
            fn()
        except Exception as exc:  # tell the other ranks instead of leaving them at the barrier
            error = repr(exc)
    errors = allgather(error)
    if any(errors):
        pytest.fail(f"setting up on rank 0 failed: {next(e for e in errors if e)}")


def mpiexec(n: int, *args) -> list[str]:
    """The command ``mpiexec -n n args...``."""
    return [MPIEXEC, "-n", str(n), *map(str, args)]


def run_mpi(n: int, args, timeout: float = 120, env=None, **kw) -> subprocess.CompletedProcess:
    """``mpiexec -n n python args...`` with text output captured; fails the test with what the
    ranks printed when it runs longer than ``timeout`` seconds (a hang). ``env`` is added to
    this process's environment."""
    cmd = mpiexec(n, PYTHON, *args)
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, **kw
        )
    except subprocess.TimeoutExpired as exc:  # a hang: fail with what the ranks printed
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
