"""Small Parquet files grouped into blocks (``config.group_files``, SMALLQ): the rows, joins and
float sums are pandas' and the same bits on any number of ranks; the blocks follow the data.

Twelve files of 40..95 rows (block_rows = 500: files of at most 250 rows are small) make two
blocks of balanced sizes; one string column is read as a dictionary from some files and as
plain strings from others (``io.parquet._plain_strings`` decides per file).
"""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.frames import assert_bits, local
from tests.helpers.mpi import rank, timeout, world

pytestmark = timeout(120)
ROWS = [40 + 5 * i for i in range(12)]


def _frame(i: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(100 + i)
    if i % 3:
        words = [f"w{j % 4}" for j in range(n)]  # few distinct values: dictionary pages
    else:
        words = [f"a long distinct value {i}-{j} " * 2 for j in range(n)]  # plain pages
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64") + 1000 * i,
            "k": rng.integers(0, 7, n),
            "s": words,
            "x": rng.standard_normal(n) * 10.0 ** rng.integers(-3, 9, n),
        }
    )


@pytest.fixture(scope="module")
def small_files(shared_dir):
    """``(folder, keys folder)``: the twelve files, and three files of keys to join with."""
    d = os.path.join(shared_dir, "small_files")
    if rank() == 0 and not os.path.exists(d):
        os.makedirs(os.path.join(d, "rows"))
        os.makedirs(os.path.join(d, "keys"))
        for i, n in enumerate(ROWS):
            table = pa.Table.from_pandas(_frame(i, n), preserve_index=False)
            pq.write_table(table, os.path.join(d, "rows", f"part-{i:02d}.parquet"), row_group_size=30)
        for i in range(3):
            keys = pd.DataFrame({"k": np.arange(i * 3, i * 3 + 3, dtype="int64"), "name": [f"n{i}"] * 3})
            pq.write_table(
                pa.Table.from_pandas(keys, preserve_index=False), os.path.join(d, "keys", f"{i}.parquet")
            )
    if world() is not None:
        world().Barrier()
    return os.path.join(d, "rows"), os.path.join(d, "keys")


@pytest.fixture(autouse=True)
def grouped(cfg):
    cfg(group_files="on")


def test_small_files_are_two_blocks_of_pandas_rows(small_files):
    rows, _ = small_files
    ref = pd.concat([_frame(i, n) for i, n in enumerate(ROWS)], ignore_index=True)
    df = hf.read_parquet(rows)
    got = df.compute()
    assert_same(got, ref.astype({"s": got.dtypes["s"]}), exact=True)
    assert hf.last_run_stats()["partitions_total"] == 2
    sizes = df.map_partitions(len).compute()
    assert sizes == [sum(ROWS[:7]), sum(ROWS[7:])]  # balanced by rows: 385 and 425
    few = df[df.s.str.startswith("w")][["id", "s"]].compute()
    assert few["id"].tolist() == ref[ref.s.str.startswith("w")]["id"].tolist()


def test_float_sums_are_the_same_bits_on_any_number_of_ranks(small_files):
    rows, _ = small_files
    df = hf.read_parquet(rows)
    for lazy in (df.x.sum(), df.groupby("k").x.sum(), df.groupby("s").agg(m=("x", "mean"), v=("x", "var"))):
        assert_bits(lazy.compute(), local(lazy))


def test_join_of_small_files_is_pandas_merge(small_files):
    rows, keys = small_files
    left, right = hf.read_parquet(rows), hf.read_parquet(keys)
    pl, pr = pd.read_parquet(rows), pd.read_parquet(keys)
    got = left.merge(right, on="k")[["id", "k", "name", "x"]].compute()
    want = pl.merge(pr, on="k")[["id", "k", "name", "x"]]
    assert_same(got, want.astype({"name": got.dtypes["name"]}), exact=True)
    lazy = left.merge(right, on="k").groupby("name").x.sum()
    assert_bits(lazy.compute(), local(lazy))
