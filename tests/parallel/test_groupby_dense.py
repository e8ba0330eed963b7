"""Group-bys on dictionary-encoded (categorical) keys with integer sums, minima and maxima:
the block partials are computed on the category codes (no hashing), and must equal pandas
exactly, also where a sum no longer fits float64 exactly (then pandas' own path is used) and
next to float sums (which keep pandas' compensated summation)."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


def _frame(seed: int, n: int, big: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    keys = np.array([f"k{i:03d}" for i in range(40)], dtype=object)
    k = keys[rng.integers(0, len(keys), n)]
    k[rng.random(n) < 0.05] = None
    v = rng.integers(-5, 6, n).astype("int64")
    if big:  # sums beyond 2**53: float64 would round them
        v[::7] = np.int64(2**60) + rng.integers(0, 1000, len(v[::7]))
    return pd.DataFrame(
        {
            "k": k,
            "j": rng.integers(0, 3, n).astype("int64"),
            "v": v,
            "w": rng.integers(0, 100, n).astype("int64"),
            "x": rng.normal(size=n),
        }
    )


@pytest.fixture(scope="module")
def dense_data(shared_dir):
    """Two Parquet folders (small and huge integers), each 3 files of 4 row groups, string
    keys dictionary-encoded; and their pandas references."""
    out = {}
    for big in (False, True):
        path = os.path.join(shared_dir, f"dense-{'big' if big else 'small'}")
        frames = [_frame(10 * i + big, 2000, big) for i in range(3)]
        if mpi.rank() == 0:
            os.makedirs(path, exist_ok=True)
            for i, f in enumerate(frames):
                table = pa.Table.from_pandas(f, preserve_index=False)
                pq.write_table(table, os.path.join(path, f"part-{i}.parquet"), row_group_size=500)
        mpi.barrier()
        out[big] = (path, pd.concat(frames, ignore_index=True))
    return out


AGGS = {
    "sum": lambda g: g.agg(v=("v", "sum"), w=("w", "sum")),
    "minmax": lambda g: g.agg(vmax=("v", "max"), wmin=("w", "min"), n=("v", "size")),
    "mean_int": lambda g: g.agg(v=("v", "mean"), c=("w", "count")),
    "mixed": lambda g: g.agg(v=("v", "sum"), x=("x", "sum"), m=("w", "max")),
}


@pytest.mark.parametrize("big", [False, True], ids=["small", "big"])
@pytest.mark.parametrize("dropna", [True, False])
@pytest.mark.parametrize("keys", [["k"], ["k", "j"]], ids=["k", "k_j"])
def test_dense_integer_aggregations(dense_data, big, dropna, keys):
    path, ref = dense_data[big]
    df = hf.read_parquet(path)
    names = list(AGGS)
    got = hf.compute(*[AGGS[a](df.groupby(keys, dropna=dropna)) for a in names])
    for name, result in zip(names, got):
        expected = AGGS[name](ref.groupby(keys, dropna=dropna))
        exact = name != "mixed" and not (big and name == "mean_int")
        assert_same(result, expected, exact=exact, msg=f"{name} by {keys} dropna={dropna}")


def _runs_frame(seed: int, n: int) -> pd.DataFrame:
    """Few groups in long runs of equal keys (as TPC-H Q1's flags), floats with NaN and ±inf in
    one group, a missing key."""
    rng = np.random.default_rng(seed)
    run = np.repeat(rng.integers(0, 3, n // 50 + 1), 50)[:n]
    k = np.array(["A", "N", "R"], dtype=object)[run]
    k[rng.random(n) < 0.01] = None
    x = rng.normal(size=n) * 1e6
    x[rng.random(n) < 0.05] = np.nan
    x[(k == "R") & (rng.random(n) < 0.001)] = np.inf
    return pd.DataFrame(
        {
            "k": pd.Categorical(k),
            "f": pd.Categorical(np.array(["F", "O"], dtype=object)[rng.integers(0, 2, n)]),
            "x": x,
            "y": rng.random(n),
            "v": rng.integers(-1000, 1000, n).astype("int64"),
        }
    )


@pytest.mark.parametrize("dropna", [True, False])
def test_few_groups_of_large_blocks_sum_over_interleaved_bins(shared_dir, dropna, monkeypatch):
    """Blocks of >= 4096 rows and few groups take ``aggregations._Bins``' interleaved lanes:
    counts and integer sums stay exact, float sums (NaN skipped, inf kept) equal pandas'."""
    monkeypatch.setattr(hf.config, "block_rows", 9000)  # (the folder's fixture makes 500)
    path = os.path.join(shared_dir, "dense-runs")
    frames = [_runs_frame(seed, 9000) for seed in range(3)]
    if mpi.rank() == 0:
        os.makedirs(path, exist_ok=True)
        for i, f in enumerate(frames):
            pq.write_table(pa.Table.from_pandas(f, preserve_index=False), os.path.join(path, f"p{i}.parquet"))
    mpi.barrier()
    ref = pd.concat(frames, ignore_index=True)

    def floats(g):
        return g.agg(x=("x", "sum"), xc=("x", "count"), y=("y", "sum"), ym=("y", "mean"), n=("y", "size"))

    def ints(g):  # (integer sums take the dense path only without float sums beside them)
        return g.agg(v=("v", "sum"), vm=("v", "mean"), n=("v", "size"))

    for query in (floats, ints):
        got = query(hf.read_parquet(path).groupby(["k", "f"], dropna=dropna)).compute()
        expected = query(ref.groupby(["k", "f"], dropna=dropna))
        assert_same(got, expected, msg=f"{query.__name__} dropna={dropna}")
        exact = [c for c in ("xc", "v", "n") if c in expected]
        assert_same(got[exact], expected[exact], exact=True)
