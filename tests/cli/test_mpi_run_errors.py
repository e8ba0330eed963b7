"""``hpcframe run``'s steps failing on one of two real MPI ranks (subprocesses with
timeouts): a failure of rank 0's ``finish`` step reaches every rank (no hang) and nothing is
written."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers.cli import write_spec
from tests.helpers.mpi import needs_mpiexec, run_mpi

pytestmark = [pytest.mark.timeout(150), needs_mpiexec]


FINISH_FAILS = textwrap.dedent("""
    import sys
    from mpi4py import MPI
    import hpcframe.spec.run as S
    rank = MPI.COMM_WORLD.Get_rank()
    real = S.build

    def build(spec, comm=None):  # mocked: rank 0's finish step fails (nothing real makes it fail)
        source, lazy, finish = real(spec, comm)
        def broken(values):
            if sys.argv[3] == "exit":
                sys.exit("finish exited")
            raise RuntimeError("finish broke")
        return source, lazy, (broken if rank == 0 else finish)

    S.build = build
    try:
        S.run_job(sys.argv[1], output=sys.argv[2])
    except BaseException as exc:
        print(f"rank {rank} raised {type(exc).__name__}: {exc}", flush=True)
        sys.exit(3)
    print(f"rank {rank} returned", flush=True)
""")


def test_rank0_finish_failure_with_mocked_finish_reaches_every_rank(tmp_path, parquet_dir):
    spec = write_spec(
        tmp_path / "job.yaml",
        f"input: {{path: {parquet_dir}}}\ngroupby: [month]\naggregate: {{dep_delay: mean}}\n",
    )
    out = tmp_path / "o.parquet"
    proc = run_mpi(2, ["-c", FINISH_FAILS, spec, out, "raise"], timeout=60)
    assert proc.returncode != 0
    assert "rank 0 raised RuntimeError: finish broke" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 1 raised" in proc.stdout and "finish broke" in proc.stdout
    assert not out.exists()


def test_rank0_finish_sys_exit_with_mocked_finish_reaches_every_rank(tmp_path, parquet_dir):
    """A ``sys.exit`` (a BaseException, not an Exception) in rank 0's finish step still reaches
    the agreement: rank 1 raises too, naming it, instead of waiting forever."""
    spec = write_spec(
        tmp_path / "job.yaml",
        f"input: {{path: {parquet_dir}}}\ngroupby: [month]\naggregate: {{dep_delay: mean}}\n",
    )
    out = tmp_path / "o.parquet"
    proc = run_mpi(2, ["-c", FINISH_FAILS, spec, out, "exit"], timeout=60)
    assert proc.returncode != 0
    assert "rank 0 raised SystemExit: finish exited" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 1 raised HpcframeError: rank 0 failed: SystemExit: finish exited" in proc.stdout
    assert not out.exists()
