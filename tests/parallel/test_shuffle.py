"""Group-bys finished with the hash shuffle (forced with config.shuffle_rows = 1) equal pandas
and are bit-identical to the plain (allgather) path, on every rank count."""

import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(60)

QUERIES = {
    "sum_two_str_keys": lambda df: df.groupby(["origin", "carrier"])[["x", "n"]].sum(),
    "mean_var_nan_keys": lambda df: df.groupby("kf", dropna=False).agg(
        m=("x", "mean"), v=("y", "var"), c=("x", "count")
    ),
    "unsorted_first_appearance": lambda df: df.groupby("carrier", sort=False)[["x"]].max(),
    "category_keys": lambda df: df.groupby(["cat", "flag"]).agg(s=("x", "sum"), u=("name", "nunique")),
    "as_index_false": lambda df: df.groupby("ki", as_index=False).x.mean(),
}


@pytest.fixture
def forced_shuffle():
    old = hf.config.shuffle_rows
    hf.config.shuffle_rows = 1
    yield
    hf.config.shuffle_rows = old


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_shuffle_equals_pandas_and_plain_path(dir6, name, forced_shuffle, size):
    query = QUERIES[name]
    df, ref = dir6.open(), dir6.pdf
    shuffled = query(df).compute()
    assert hf.last_run_stats()["shuffled_outputs"] == (1 if size > 1 else 0)
    hf.config.shuffle_rows = 1 << 40
    plain = query(df).compute()
    assert_same(shuffled, query(ref), msg=name)
    if isinstance(plain, pd.DataFrame):
        pd.testing.assert_frame_equal(shuffled, plain, check_exact=True)
    else:
        pd.testing.assert_series_equal(shuffled, plain, check_exact=True)


def test_shuffle_with_root(dir6, rank, forced_shuffle):
    df, ref = dir6.open(), dir6.pdf
    got = df.groupby("origin").x.sum().compute(root=0)
    if rank == 0:
        assert_same(got, ref.groupby("origin").x.sum())
    else:
        assert got is None


# --------------------------------------------------------------------------------------------
# one key column, several dtypes: bool blocks and bool-with-null (object) blocks, int64 blocks
# and int-with-null (float64) blocks, a dictionary column whose nulls fill a whole file
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_keys(shared_dir):
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers.mpi import rank, world

    d = os.path.join(shared_dir, "shuffle_mixed_keys")
    if rank() == 0:
        os.makedirs(d)
        rng = np.random.default_rng(7)
        for f, (n, nulls) in enumerate(
            [(300, False), (700, True), (40, False), (0, False), (650, True), (120, True), (260, False)]
        ):
            b = rng.random(n) < 0.4
            i = rng.integers(-2, 3, n)
            c = rng.choice(["p", "q", "r"], n).astype(object)
            mask = (rng.random(n) < 0.2) if nulls else np.zeros(n, dtype=bool)
            if f == 5:
                c[:] = None
            pq.write_table(
                pa.table(
                    {
                        "b": pa.array(b, pa.bool_(), mask=mask),
                        "i": pa.array(i, pa.int64(), mask=mask),
                        "c": pa.array(c, pa.string()).dictionary_encode(),
                        "x": pa.array(np.round(rng.normal(size=n), 3)),
                    }
                ),
                os.path.join(d, f"part-{f}.parquet"),
                row_group_size=250,
            )
    if world() is not None:
        world().Barrier()
    return d


MIXED = {
    "bool_key": lambda df: df.groupby("b").x.sum(),
    "bool_key_dropna_false": lambda df: df.groupby("b", dropna=False).agg(
        s=("x", "sum"), m=("x", "mean"), n=("x", "count")
    ),
    "int_key_floats_in_some_blocks": lambda df: df.groupby("i").x.sum(),
    "int_key_dropna_false": lambda df: df.groupby("i", dropna=False).x.mean(),
    "category_key_all_null_file": lambda df: df.groupby("c", dropna=False).x.sum(),
    "two_keys": lambda df: df.groupby(["b", "i"], dropna=False).x.sum(),
    "bool_key_unsorted": lambda df: df.groupby("b", sort=False).x.count(),
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_shuffle_key_dtype_differs_between_blocks(mixed_keys, name, forced_shuffle, size):
    """The routing hash is a function of the key value, not of the block's dtype: no group
    appears twice and the result does not depend on the rank count."""
    query = MIXED[name]
    df, ref = hf.read_parquet(mixed_keys), pd.read_parquet(mixed_keys)
    shuffled = query(df).compute()
    assert hf.last_run_stats()["shuffled_outputs"] == (1 if size > 1 else 0)
    hf.config.shuffle_rows = 1 << 40
    plain = query(df).compute()
    expected = query(ref)
    assert shuffled.index.is_unique, shuffled
    # pandas keeps NaN among a MultiIndex's levels with dropna=False (same values, so only
    # the levels' inferred type differs); single keys must have pandas' index dtype
    assert_same(shuffled, expected, msg=name, check_index_type=not isinstance(expected.index, pd.MultiIndex))
    if isinstance(plain, pd.DataFrame):
        pd.testing.assert_frame_equal(shuffled, plain, check_exact=True)
    else:
        pd.testing.assert_series_equal(shuffled, plain, check_exact=True)
