"""``groupby(...).agg(name=(col, "nunique"))`` compared with pandas: every column type of the nasty
dataset (strings, object bools with nulls, float32, big ints, decimals as floats, dates, time
zones, categoricals, NaN values) by keys with few groups, many groups (one per row) and two keys.
The per-partition and combined partials of ``nunique`` are computed for all groups at once
(vectorised: TPC-H Q16/Q21 group by tens of thousands of orders); these tests pin the result to
pandas', locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.frames import same

pytestmark = mpi.timeout(120)

VALUES = ["s", "one", "kb", "f32", "big", "dec", "d", "tz", "cat", "v", "n"]


@pytest.mark.parametrize("keys", ["s", "n", "id", ["s", "kb"]], ids=str)
@pytest.mark.parametrize("partitions", [1, 5])
def test_groupby_nunique_every_type(nasty, cfg, keys, partitions):
    cfg(partitions=partitions)
    path, ref = nasty
    df = hf.read_parquet(path)
    cols = [c for c in VALUES if c not in ([keys] if isinstance(keys, str) else keys)]
    spec = {f"u_{c}": (c, "nunique") for c in cols}
    got = df.groupby(keys).agg(**spec).compute(comm=mpi.world())
    same(got, ref.groupby(keys, observed=True).agg(**spec), msg=f"nunique by {keys}")


def test_groupby_nunique_after_filter_and_reset_index(nasty, cfg):
    """Groups whose values are all missing in a partition, or absent from it."""
    cfg(partitions=3)
    path, ref = nasty
    df = hf.read_parquet(path)
    got = df[df.n % 3 == 0].groupby("n").agg(u=("v", "nunique"), w=("s", "nunique")).reset_index()
    exp = ref[ref.n % 3 == 0].groupby("n").agg(u=("v", "nunique"), w=("s", "nunique")).reset_index()
    same(got.compute(comm=mpi.world()), exp, msg="nunique after a filter")
