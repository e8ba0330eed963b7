"""Regressions found in review, each compared with pandas on every rank count."""
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from support import UNDER_MPI, assert_same, rank, timeout, world

pytestmark = timeout(60)


@pytest.fixture(scope="module")
def small(shared_dir):
    """x = 0..9 in row groups of 2 rows; a file whose keys are all null; hive values that
    need URL-decoding."""
    d = os.path.join(shared_dir, "regressions")
    if rank() == 0:
        os.makedirs(os.path.join(d, "nk"))
        pq.write_table(pa.table({"x": np.arange(10.0), "s": list("abcdefghij")}),
                       os.path.join(d, "rg.parquet"), row_group_size=2)
        pq.write_table(pa.table({"k": pa.array([None, None], pa.string()), "x": [1.0, 2.0]}),
                       os.path.join(d, "nk", "a.parquet"))
        pq.write_table(pa.table({"k": ["a", "b"], "x": [3.0, 4.0]}),
                       os.path.join(d, "nk", "b.parquet"))
        pq.write_to_dataset(pa.table({"x": [1.0, 2.0, 3.0], "city": ["New York", "Paris", "a/b"]}),
                            os.path.join(d, "hive"), partition_cols=["city"])
    if world() is not None:
        world().Barrier()
    return d


def test_head_after_a_filter_statistics_cannot_prune(small):
    df = hf.read_parquet(os.path.join(small, "rg.parquet"))
    ref = pd.read_parquet(os.path.join(small, "rg.parquet"))
    assert_same(df[~(df.x <= 5)].head(3), ref[~(ref.x <= 5)].head(3), reset_index=True)
    assert_same(df[(df.x * 2.0) > 10].head(3), ref[(ref.x * 2.0) > 10].head(3),
                reset_index=True)


def test_groupby_dropna_false_with_a_partition_of_null_keys(small):
    df = hf.read_parquet(os.path.join(small, "nk"))
    ref = pd.concat([pd.read_parquet(os.path.join(small, "nk", f)) for f in ("a.parquet",
                                                                           "b.parquet")])
    assert_same(df.groupby("k", dropna=False).x.sum(),
                ref.groupby("k", dropna=False).x.sum())


def test_hive_values_are_url_decoded(small):
    df = hf.read_parquet(os.path.join(small, "hive"))
    got = df[df.city == "New York"].x.sum().compute()
    assert got == 1.0
    assert sorted(df.city.value_counts().compute().index) == ["New York", "Paris", "a/b"]


def _eight_partitions():
    return hf.from_pandas(pd.DataFrame({"x": np.arange(80.0)}), npartitions=8)


def test_unpicklable_partial_fails_on_every_rank():
    query = _eight_partitions().map_partitions(lambda part: (lambda: len(part)), combine=len)
    if not UNDER_MPI:
        assert query.compute() == 8  # the local engine sends nothing: works
    else:
        with pytest.raises(hf.ComputeError, match="sending the partial results"):
            query.compute()


def test_a_failing_callback_fails_every_rank():
    from hpcframe.callbacks import Callback

    class FailOnLastRank(Callback):
        def on_leaf_done(self, run, leaf, times):
            if run.comm.rank == run.comm.size - 1:
                raise RuntimeError("callback failed")

    df = _eight_partitions()  # every rank of up to 4 has partitions
    with FailOnLastRank():
        with pytest.raises(hf.ComputeError, match="callback failed"):
            df.x.sum().compute()
