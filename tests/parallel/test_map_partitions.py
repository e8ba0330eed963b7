"""map_partitions: per-partition pandas functions, concatenated (or combined) in partition order.

The index of a concatenated map_partitions result is not compared (only values and order).
"""

import pandas as pd
import pytest

from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


@pytest.mark.parametrize("dataset", ["dir6", "empty_parts", "one_part", "h5_columns"], indirect=True)
def test_map_partitions_concat_in_partition_order(dataset):
    fn = lambda p: p[p.n > 500][["id", "n", "x"]].assign(z=p.x * 2)  # noqa: E731
    got = dataset.open().map_partitions(fn).compute()
    exp = dataset.pdf[dataset.pdf.n > 500][["id", "n", "x"]]
    exp = exp.assign(z=exp.x * 2)
    assert_same(got.reset_index(drop=True), exp.reset_index(drop=True), exact=True)


@pytest.mark.parametrize(
    "dataset",
    ["dir6", "rowgroups", "empty_parts", "one_part", "hive", "from_pandas", "h5_columns"],
    indirect=True,
)
def test_map_partitions_combine_receives_parts_in_order(dataset):
    """Concatenating the per-partition id lists gives the ids in dataset order."""
    ids = (
        dataset.open()
        .map_partitions(lambda p: p["id"].tolist(), combine=lambda parts: [i for part in parts for i in part])
        .compute()
    )
    assert ids == dataset.pdf["id"].tolist()


def test_map_partitions_combine_scalar(dir6):
    df, ref = dir6.open(), dir6.pdf
    total = df.map_partitions(len, combine=lambda parts: sum(parts)).compute()
    assert total == len(ref)
    nparts = df.map_partitions(lambda p: 1, combine=lambda parts: len(parts)).compute()
    assert nparts == dir6.nparts


def test_map_partitions_after_filter_and_projection(catalog):
    ds = catalog["rowgroups"]
    df, ref = ds.open(), ds.pdf
    sel = df[df.carrier.isin(["AA", "DL"])][["carrier", "x"]]
    got = sel.map_partitions(
        lambda p: p.groupby("carrier").x.sum(), combine=lambda parts: pd.concat(parts).groupby(level=0).sum()
    ).compute()
    exp = ref[ref.carrier.isin(["AA", "DL"])].groupby("carrier").x.sum()
    assert_same(got, exp)
    seen = sel.map_partitions(lambda p: list(p.columns), combine=lambda parts: parts).compute()
    assert all(cols == ["carrier", "x"] for cols in seen)
