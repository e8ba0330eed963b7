"""The same query gives bit-identical floating-point results in local mode and on 1, 2, 3 and 4
ranks (the combine tree is fixed by the data, not by the rank count). Real mpiexec."""

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.mpi import MPIEXEC

HERE = os.path.dirname(__file__)
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ident")
    rng = np.random.default_rng(42)
    for i in range(5):
        n = 1500 + 317 * i
        t = pa.table(
            {
                "k": rng.choice(["a", "b", "c"], n),
                "c": rng.integers(0, 4, n),
                "x": rng.normal(size=n) * 10.0 ** rng.integers(-3, 6, n),
                "y": 1e9 + rng.normal(size=n),
            }
        )
        pq.write_table(t, d / f"p{i}.parquet", row_group_size=1000)
    return str(d)


def _digest(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("digest")]
    assert len(lines) == 1, proc.stdout
    return lines[0]


def test_bit_identical_for_any_rank_count(data):
    script = os.path.join(HERE, "scripts", "digest.py")
    env_local = [sys.executable, script, data]
    digests = {"local": _digest(env_local)}
    for n in (1, 2, 3, 4):
        digests[n] = _digest([MPIEXEC, "-n", str(n), sys.executable, script, data])
    assert len(set(digests.values())) == 1, digests
