"""Regressions from the CLI review, on two real MPI ranks (subprocesses with timeouts): a
failure of rank 0's ``finish`` step reaches every rank (no hang), and a profile directory
that is not writable on one rank fails on every rank."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cli_support import write_spec

BIN = os.path.dirname(sys.executable)
MPIEXEC = os.path.join(BIN, "mpiexec")
pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="needs mpiexec")]


def mpirun(n, script, *args):
    try:
        return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "-c", script,
                               *map(str, args)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the ranks hung: {exc.stdout!r} {exc.stderr!r}")


FINISH_FAILS = textwrap.dedent("""
    import sys
    from mpi4py import MPI
    import hpcframe.spec.run as S
    rank = MPI.COMM_WORLD.Get_rank()
    real = S.build

    def build(spec):  # mocked: rank 0's finish step fails (nothing real makes it fail)
        source, lazy, finish = real(spec)
        def broken(values):
            raise RuntimeError("finish broke")
        return source, lazy, (broken if rank == 0 else finish)

    S.build = build
    try:
        S.run_job(sys.argv[1], output=sys.argv[2])
    except Exception as exc:
        print(f"rank {rank} raised {type(exc).__name__}: {exc}", flush=True)
        sys.exit(3)
    print(f"rank {rank} returned", flush=True)
""")


def test_rank0_finish_failure_with_mocked_finish_reaches_every_rank(tmp_path, parquet_dir):
    spec = write_spec(tmp_path / "job.yaml", f"input: {{path: {parquet_dir}}}\n"
                      "groupby: [month]\naggregate: {dep_delay: mean}\n")
    out = tmp_path / "o.parquet"
    proc = mpirun(2, FINISH_FAILS, spec, out)
    assert proc.returncode != 0
    assert "rank 0 raised RuntimeError: finish broke" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 1 raised" in proc.stdout and "finish broke" in proc.stdout
    assert not out.exists()


PROFILE = textwrap.dedent("""
    import sys
    from mpi4py import MPI
    from hpcframe.diagnostics import profiling
    rank = MPI.COMM_WORLD.Get_rank()
    path = sys.argv[1] if rank == 0 else "/proc/hpcframe-not-writable/prof"
    try:
        with profiling(path):
            pass
    except OSError as exc:
        print(f"rank {rank} OSError: {exc}", flush=True)
        sys.exit(3)
    print(f"rank {rank} ran", flush=True)
""")


def test_profile_dir_failing_on_one_rank_fails_on_every_rank(tmp_path):
    proc = mpirun(2, PROFILE, tmp_path / "prof")
    assert proc.returncode != 0
    assert "rank 0 OSError: rank 1:" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 1 OSError" in proc.stdout and "ran\n" not in proc.stdout
