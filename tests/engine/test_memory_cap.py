"""A group-by with millions of groups succeeds with every rank under a memory cap, because its
result stays distributed (written by the ranks holding its groups, never gathered). Real mpiexec.

The cap is on the address space (``RLIMIT_AS``, set after MPI starts), which is stricter than
resident memory. glibc's per-thread malloc arenas and Arrow's jemalloc reserve address space
they never touch, so the test runs with ``MALLOC_ARENA_MAX=2`` and Arrow's system allocator to
make the figure about data, not reservations."""

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.mpi import run_mpi

HERE = os.path.dirname(__file__)
pytestmark = pytest.mark.timeout(300)

ROWS = 3_000_000  # one group per row
CAP = 1_200_000_000  # bytes of address space per rank


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("memcap")
    rng = np.random.default_rng(7)
    k = rng.permutation(ROWS)
    table = pa.table({"k1": k // 1000, "k2": k % 1000, "v": rng.random(ROWS)})
    for i in range(6):
        pq.write_table(table.slice(i * ROWS // 6, ROWS // 6), d / f"part-{i}.parquet", row_group_size=1 << 19)
    return d


def test_millions_of_groups_under_a_per_rank_memory_cap(data, tmp_path):
    out = tmp_path / "groups"
    env = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    script = os.path.join(HERE, "scripts", "memory_cap.py")
    proc = run_mpi(2, [script, str(data), str(out), str(CAP)], timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # one record per rank (mpiexec may join the ranks' lines: search, do not split lines)
    records = re.findall(r"groups (\d+) maxrss (\d+) MB", proc.stdout)
    assert len(records) == 2, proc.stdout
    assert all(int(rows) == ROWS for rows, _ in records), proc.stdout
    back = pq.read_table(out)
    assert back.num_rows == ROWS
    assert back.column("n").to_numpy().sum() == ROWS
