"""A failure on one rank ends every rank, promptly, with the error named (real mpiexec)."""

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.helpers.mpi import MPIEXEC

HERE = os.path.dirname(__file__)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fail")
    for i in range(8):  # x = 0..799, 100 rows per file; the last file alone has x >= 700
        pd.DataFrame({"x": np.arange(i * 100, (i + 1) * 100)}).to_parquet(d / f"part-{i}.parquet")
    return str(d)


def _run(n, mode, data):
    t0 = time.time()
    proc = subprocess.run(
        [
            MPIEXEC,
            "-n",
            str(n),
            sys.executable,
            os.path.join(HERE, "scripts", "fail_one_rank.py"),
            mode,
            data,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, time.time() - t0


@pytest.mark.parametrize("n", [2, 3])
def test_exception_on_one_rank_is_raised_on_every_rank(data, n):
    proc, seconds = _run(n, "raise", data)
    out = proc.stdout
    assert proc.returncode != 0
    assert out.count("rank-caught: ComputeError") == n, out + proc.stderr
    last = n - 1  # contiguous assignment: the last file goes to the last rank
    assert f"rank {last} on" in out and "part-7.parquet" in out
    assert "bad value in the last partition" in out
    assert seconds < 30


@pytest.mark.parametrize("n", [2, 3])
def test_an_uncaught_exception_in_the_script_on_one_rank_ends_the_job(data, n):
    """Regression (session 38's failure probes): an exception raised by the user's script on
    one rank, outside hpcframe, left the other ranks waiting in their computation's
    collectives until killed. ``import hpcframe`` under a launcher installs an excepthook
    that prints the traceback and calls MPI_Abort, as ``python -m mpi4py`` does."""
    proc, seconds = _run(n, "uncaught", data)
    assert proc.returncode != 0
    assert "a bug in the script on rank 0" in proc.stderr
    assert "aborting the MPI job" in proc.stderr
    assert seconds < 30


def test_a_rank_that_dies_takes_the_job_down(data):
    """os._exit on one rank (no exception to share): the launcher ends the others."""
    proc, seconds = _run(3, "exit", data)
    assert proc.returncode != 0
    assert "no error" not in proc.stdout
    assert seconds < 30


@pytest.mark.parametrize("n", [2, 3])
def test_sys_exit_on_one_rank_is_a_failure_on_every_rank(data, n):
    """sys.exit() in user code on one rank: reported as that rank's failure everywhere."""
    proc, seconds = _run(n, "sysexit", data)
    out = proc.stdout
    assert proc.returncode != 0
    assert out.count("rank-caught: ComputeError") == n, out + proc.stderr
    assert f"rank {n - 1} on" in out and "part-7.parquet" in out
    assert "SystemExit: sys.exit(3)" in out
    assert seconds < 30


@pytest.mark.parametrize("n", [2, 3])
def test_sigint_to_one_rank_in_user_code_stops_every_rank(data, n):
    """A SIGINT to one rank while it runs a map_partitions function: every rank raises
    JobInterrupted (a ComputeError and a KeyboardInterrupt) naming that rank and partition."""
    proc, seconds = _run(n, "sigint", data)
    out = proc.stdout
    assert proc.returncode != 0
    assert out.count("rank-caught: JobInterrupted") == n, out + proc.stderr
    assert f"rank {n - 1} on" in out and "part-7.parquet" in out
    assert "interrupted (SIGINT)" in out
    assert seconds < 30


def test_sigint_to_one_rank_while_the_others_are_stuck_aborts_the_job(data):
    """The other rank never reaches the agreement (stuck in its function): after
    HPCFRAME_INTERRUPT_GRACE seconds the interrupted rank aborts the whole job."""
    env = dict(os.environ, HPCFRAME_INTERRUPT_GRACE="3")
    t0 = time.time()
    proc = subprocess.run(
        [
            MPIEXEC,
            "-n",
            "2",
            sys.executable,
            os.path.join(HERE, "scripts", "fail_one_rank.py"),
            "sigint-stuck",
            data,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    seconds = time.time() - t0
    assert proc.returncode != 0
    assert "no error" not in proc.stdout
    err = proc.stderr
    report = f"exit {proc.returncode} after {seconds:.1f} s\nstdout:\n{proc.stdout}\nstderr:\n{err}"
    # the job ends with MPI_Abort's code long before rank 0 would wake up (600 s)
    assert proc.returncode == 130 and seconds < 30, report
    # the rank writes why before it aborts; under load mpiexec can kill the job before it
    # forwarded that line (seen in CI), so the message is checked when it arrived
    if err.strip():
        assert "rank 1 of 2 on" in err and "did not agree to stop within 3 s" in err, report
        assert "aborting the MPI job" in err, report


def _start(n, mode, data, **env):
    return subprocess.Popen(
        [
            MPIEXEC,
            "-n",
            str(n),
            sys.executable,
            os.path.join(HERE, "scripts", "fail_one_rank.py"),
            mode,
            data,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **env),
    )


def _read_until(proc, marker, timeout=60):
    """Read ``proc``'s output until ``marker``; returns the lines and ``{rank: pid}``. The
    ranks' lines can arrive merged into one (mpiexec forwards each rank's stream), so the
    ``pid R P`` records and the marker are searched inside the lines."""
    import re

    lines, pids, deadline = [], {}, time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        for rank, pid in re.findall(r"pid (\d+) (\d+)", line):
            pids[int(rank)] = int(pid)
        if marker in line:
            break
    assert lines and marker in lines[-1], "".join(lines)
    return lines, pids


# the abort case lets rank 0 sleep far longer than the grace period, so that an abort is told
# apart from a normal end by a wide margin even on a loaded machine
@pytest.mark.parametrize("grace,expect,slow", [("30", "caught", "6"), ("2", "abort", "40")])
def test_sigint_to_a_rank_blocked_in_a_collective(data, grace, expect, slow):
    """SIGINT to the last rank while it waits in the agreement (blocked in MPI) for rank 0,
    which is still busy: kept until the ranks meet, then every rank raises JobInterrupted;
    if that takes longer than the grace period, the job is aborted instead. Never a hang."""
    import signal

    proc = _start(2, "wait-sigint", data, SLOW=slow, HPCFRAME_INTERRUPT_GRACE=grace)
    try:
        lines, pids = _read_until(proc, "last-done")
        time.sleep(0.5)  # rank 1 is in the agreement's allreduce now
        t0 = time.time()
        os.kill(pids[1], signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    seconds = time.time() - t0
    out = "".join(lines) + out
    assert proc.returncode != 0
    assert "no error" not in out
    if expect == "caught":
        assert out.count("rank-caught: JobInterrupted") == 2, out + err
        assert "rank 1 on" in out and "interrupted (SIGINT)" in out
        assert seconds < 20
    else:
        assert proc.returncode == 130, out + err  # MPI_Abort's code
        if err.strip():  # the reason, when mpiexec forwarded it before the abort (see above)
            assert "rank 1 of 2 on" in err and "aborting the MPI job" in err, err
        assert seconds < 25  # rank 0 would still be asleep for 40 s without the abort
