"""A failure on one rank ends every rank, promptly, with the error named (real mpiexec)."""
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

HERE = os.path.dirname(__file__)
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fail")
    for i in range(8):  # x = 0..799, 100 rows per file; the last file alone has x >= 700
        pd.DataFrame({"x": np.arange(i * 100, (i + 1) * 100)}).to_parquet(d / f"part-{i}.parquet")
    return str(d)


def _run(n, mode, data):
    t0 = time.time()
    proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable,
                           os.path.join(HERE, "scripts", "fail_one_rank.py"), mode, data],
                          capture_output=True, text=True, timeout=60)
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


def test_a_rank_that_dies_takes_the_job_down(data):
    """os._exit on one rank (no exception to share): the launcher ends the others."""
    proc, seconds = _run(3, "exit", data)
    assert proc.returncode != 0
    assert "no error" not in proc.stdout
    assert seconds < 30
