"""``mpiexec -n 3 hpcframe run spec.yaml``: the installed console script on three real MPI
ranks writes what pandas computes; only rank 0 prints; errors exit non-zero on every rank."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_support import write_spec
from test_cli import SPEC, assert_same, by_day_pandas, read_output

BIN = os.path.dirname(sys.executable)
MPIEXEC = os.path.join(BIN, "mpiexec")
HPCFRAME = os.path.join(BIN, "hpcframe")
pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(not (os.path.exists(MPIEXEC) and os.path.exists(HPCFRAME)),
                                 reason="needs mpiexec and the hpcframe console script "
                                        "(pip install -e '.[mpich]')")]


def mpirun(n: int, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HPCFRAME_DEBUG"}
    env["HPCFRAME_BLOCK_ROWS"] = "50"  # small blocks: every rank gets a share of the data
    return subprocess.run([MPIEXEC, "-n", str(n), HPCFRAME, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("ext", ["parquet", "h5"])
def test_three_ranks_write_the_pandas_result(tmp_path, parquet_dir, flights_ordered, ext):
    out = tmp_path / f"by_day.{ext}"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    proc = mpirun(3, "run", spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("rows out:") == 1  # rank 0 only
    assert "on 3 rank(s)" in proc.stdout
    assert proc.stderr == ""
    assert_same(read_output(out), by_day_pandas(flights_ordered))
    assert sorted(os.listdir(tmp_path)) == sorted(["job.yaml", out.name])


def test_three_ranks_spec_error_printed_once(tmp_path, parquet_dir):
    out = tmp_path / "o.parquet"
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=parquet_dir, out=out))
    proc = mpirun(3, "run", spec, "--set", "filter=carier == 'AA'")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("Error: filter: column 'carier' not found") == 1, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["job.yaml"]


def test_three_ranks_unreadable_file_fails_everywhere(tmp_path, parquet_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(parquet_dir, data)
    (data / "month=2" / "part-0.parquet").write_bytes(b"garbage")
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    spec = write_spec(tmp_path / "job.yaml", SPEC.format(data=data, out=out))
    proc = mpirun(3, "run", spec)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "month=2" in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(out.parent) == []
