"""Results without any row have the dataset's dtypes, as pandas on ``pd.read_parquet`` of the
whole directory: an int column with a null in any file is float64 and a bool column with a
null is object, also when min/max statistics prune every file (no block is read, the result
comes from the frame's empty meta) or when no row of the blocks read passes. Filtered frames,
``head``, ``len``, column sums and group-by sums; every file pruned, some, none; read from
the files and from the same frame persisted (held by the ranks)."""

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers.mpi import rank, timeout, world

pytestmark = timeout(300)

# q > 100: every file pruned by statistics; q > 3: the file with the nulls pruned;
# q > 0: none pruned; q % 100 == 99: every block read, no row passes
CUTS = {
    "all_pruned": lambda d: d.q > 100,
    "some_pruned": lambda d: d.q > 3,
    "none_pruned": lambda d: d.q > 0,
    "read_no_row": lambda d: d.q % 100 == 99,
}
COLUMNS = ["n", "b", "i"]  # int with a null, bool with a null, int without nulls


@pytest.fixture(scope="module")
def data(shared_dir):
    d = os.path.join(shared_dir, "pruned_dtypes")
    files = {
        "a.parquet": ([1, 2, 3], [1, None, 3], [True, None, False], [10, 20, 30]),
        "b.parquet": ([4, 5], [7, 8], [True, False], [40, 50]),
        "c.parquet": ([6, 7, 6], [9, 10, 11], [False, False, True], [60, 70, 60]),
    }
    if rank() == 0:
        os.makedirs(d)
        for name, (q, n, b, i) in files.items():
            table = pa.table(
                {
                    "q": pa.array(q, pa.int64()),
                    "n": pa.array(n, pa.int64()),
                    "b": pa.array(b, pa.bool_()),
                    "i": pa.array(i, pa.int64()),
                }
            )
            pq.write_table(table, os.path.join(d, name))
    if world() is not None:
        world().Barrier()
    return d, pd.read_parquet(d)


@pytest.fixture(scope="module", params=["read", "persist"])
def frame(request, data):
    """The dataset as a lazy frame: read from the files, or persisted by the ranks."""
    df = hf.read_parquet(data[0])
    if request.param == "read":
        yield df
        return
    held = df.persist()
    yield held
    held.unpersist()


@pytest.mark.parametrize("cut", list(CUTS))
def test_filtered_frame_and_head(data, frame, cut):
    ref, df = data[1], frame
    got = df[CUTS[cut](df)].compute().reset_index(drop=True)
    want = ref[CUTS[cut](ref)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert dict(want.dtypes) == {"q": "int64", "n": "float64", "b": object, "i": "int64"}
    head = df[CUTS[cut](df)].head(2).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(head, want.head(2))
    assert len(df[CUTS[cut](df)]) == len(want)


@pytest.mark.parametrize("col", COLUMNS)
@pytest.mark.parametrize("cut", list(CUTS))
def test_column_sum(data, frame, cut, col):
    ref, df = data[1], frame
    got = df[CUTS[cut](df)][col].sum().compute()
    want = ref[CUTS[cut](ref)][col].sum()
    assert type(got) is type(want) and got == want, (got, want)


@pytest.mark.parametrize("col", COLUMNS)
@pytest.mark.parametrize("cut", list(CUTS))
def test_group_by_sum(data, frame, cut, col):
    ref, df = data[1], frame
    got = df[CUTS[cut](df)].groupby("q")[col].sum().compute()
    want = ref[CUTS[cut](ref)].groupby("q")[col].sum()
    pd.testing.assert_series_equal(got, want)
    got = df[CUTS[cut](df)].groupby("q")[COLUMNS].sum().compute()
    want = ref[CUTS[cut](ref)].groupby("q")[COLUMNS].sum()
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("cut", list(CUTS))
def test_assigned_column_of_a_column_with_nulls(data, frame, cut):
    """A column computed from an int column with nulls is float64 in an empty result too."""
    ref, df = data[1], frame
    df, ref = df.assign(m=df.n * 2), ref.assign(m=ref.n * 2)
    got = df[CUTS[cut](df)][["m", "i"]].compute().reset_index(drop=True)
    want = ref[CUTS[cut](ref)][["m", "i"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
