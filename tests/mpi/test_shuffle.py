"""Group-bys finished with the hash shuffle (forced with config.shuffle_rows = 1) equal pandas
and are bit-identical to the plain (allgather) path, on every rank count."""
import pandas as pd
import pytest

import hpcframe as hf
from support import assert_same, timeout

pytestmark = timeout(60)

QUERIES = {
    "sum_two_str_keys": lambda df: df.groupby(["origin", "carrier"])[["x", "n"]].sum(),
    "mean_var_nan_keys": lambda df: df.groupby("kf", dropna=False).agg(
        m=("x", "mean"), v=("y", "var"), c=("x", "count")),
    "unsorted_first_appearance": lambda df: df.groupby("carrier", sort=False)[["x"]].max(),
    "category_keys": lambda df: df.groupby(["cat", "flag"]).agg(
        s=("x", "sum"), u=("name", "nunique")),
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
