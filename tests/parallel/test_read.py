"""Reading every data set layout: the whole frame, columns/dtypes, projections, head, HDF5 keys."""

import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same, materialize
from tests.helpers.datasets import ALL, DECIMAL_COLUMNS, INT_NULL_COLUMNS
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


def _split_decimals(frame):
    """(frame without decimal-derived columns, those columns): decimals compare with rtol."""
    dec = [c for c in frame.columns if c in DECIMAL_COLUMNS]
    return frame.drop(columns=dec), frame[dec]


def _check_lazy_columns_and_dtypes(dataset, df, ref):
    """columns and dtypes are known before anything runs, and follow the type mapping."""
    if dataset.ordered_columns and not dataset.hive:
        assert list(df.columns) == list(ref.columns)
    else:
        assert sorted(df.columns) == sorted(ref.columns)
    dtypes = df.dtypes
    for c in ref.columns:
        got = dtypes[c]
        if c in dataset.hive:
            assert pd.api.types.is_integer_dtype(got) or isinstance(got, pd.CategoricalDtype), (c, got)
        elif c in INT_NULL_COLUMNS:
            assert str(got) in ("int64", "Int64", "float64"), (c, got)
        elif isinstance(ref[c].dtype, pd.CategoricalDtype):
            assert isinstance(got, pd.CategoricalDtype), (c, got)
        else:
            assert got == ref[c].dtype, (c, got, ref[c].dtype)


@pytest.mark.parametrize("dataset", ALL, indirect=True)
def test_compute_whole_frame(dataset):
    df = dataset.open()
    ref = dataset.pdf
    _check_lazy_columns_and_dtypes(dataset, df, ref)
    got = df.compute()
    assert isinstance(got, pd.DataFrame)
    assert isinstance(got.index, pd.RangeIndex) and got.index.start == 0 and got.index.step == 1
    order = dataset.ordered_columns and not dataset.hive  # hive columns: position not specified
    g_main, g_dec = _split_decimals(got)
    r_main, r_dec = _split_decimals(ref)
    assert_same(g_main, r_main, hive=dataset.hive, exact=True, column_order=order)
    assert_same(g_dec, r_dec, hive=dataset.hive)
    for c in got.columns:  # the lazily known dtypes are the dtypes of the result
        lazy, real = df.dtypes[c], got[c].dtype
        if isinstance(real, pd.CategoricalDtype):
            assert isinstance(lazy, pd.CategoricalDtype), c
        elif c not in INT_NULL_COLUMNS:  # ints with nulls: dtype left open by the spec
            assert lazy == real, (c, lazy, real)


@pytest.mark.parametrize("dataset", ["dir6", "h5_compound"], indirect=True)
def test_projection_and_series(dataset):
    df, ref = dataset.open(), dataset.pdf
    assert list(df[["n", "id", "x"]].columns) == ["n", "id", "x"]
    assert_same(df[["n", "id", "x"]].compute(), ref[["n", "id", "x"]], exact=True)
    for s in (df["x"], df.x):
        got = s.compute()
        assert isinstance(got.index, pd.RangeIndex)
        assert_same(got, ref["x"], exact=True)
    assert_same(df[["y"]].compute(), ref[["y"]], exact=True)  # one-column frame stays a frame


@pytest.mark.parametrize("dataset", ["dir6", "empty_parts", "hive"], indirect=True)
def test_head(dataset):
    df, ref = dataset.open(), dataset.pdf
    got = materialize(df.head(7))
    g, _ = _split_decimals(got)
    r, _ = _split_decimals(ref.head(7))
    assert_same(
        g, r, hive=dataset.hive, exact=True, column_order=dataset.ordered_columns and not dataset.hive
    )


def test_head_after_filter_spans_partitions(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = materialize(df[df.n > 990][["id", "n", "x"]].head(12))
    assert_same(got, ref[ref.n > 990][["id", "n", "x"]].head(12), reset_index=True, exact=True)


def test_head_larger_than_data(catalog):
    ds = catalog["two_parts"]
    got = materialize(ds.open()[["id", "x"]].head(10_000))
    assert_same(got, ds.pdf[["id", "x"]], exact=True)


def test_len(catalog):
    for name in ALL:
        ds = catalog[name]
        df = ds.open()
        assert len(df) == len(ds.pdf), name
        assert df.len().compute() == len(ds.pdf), name


def test_read_hdf_key_selects_group(layout):
    import h5py

    path = layout["h5_two_groups"]
    for key in ("a", "b"):
        with h5py.File(path, "r") as f:
            ref = pd.DataFrame({c: f[key][c][()] for c in sorted(f[key])})
        got = hf.read_hdf(path, key=key).compute()
        assert_same(got, ref, exact=True, column_order=False)


def test_parquet_path_forms_agree(layout):
    """A directory, a glob and an explicit list of the same files read the same rows."""
    import os

    files = layout["dir6"]
    folder = os.path.dirname(files[0])
    a = hf.read_parquet(folder)[["id", "x", "carrier"]].compute()
    b = hf.read_parquet(os.path.join(folder, "*.parquet"))[["id", "x", "carrier"]].compute()
    c = hf.read_parquet(list(files))[["id", "x", "carrier"]].compute()
    d = hf.read_parquet(files[2])[["id", "x", "carrier"]].compute()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    pd.testing.assert_frame_equal(d, a.iloc[1000:1500].reset_index(drop=True))


def test_explain_is_text(dir6):
    df = dir6.open()
    text = df[df.n > 500].groupby("ki").x.sum().explain()
    assert isinstance(text, str) and text.strip()
    assert "partition" in text.lower()


# --------------------------------------------------------------------------------------------
# HDF5 sources describe themselves like every other source (label, format): explain(), writers
# and planning errors use that, on every rank and with any root
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def h5_mismatch(shared_dir):
    """Two pandas HDF5 tables whose columns differ (b.h5 has no column "y"), and a UTC one."""
    import os

    import numpy as np

    from tests.helpers.mpi import rank, world

    d = os.path.join(shared_dir, "read_hdf5_describe")
    if rank() == 0:
        os.makedirs(d)
        df = pd.DataFrame(
            {
                "x": np.arange(6.0),
                "y": np.arange(6),
                "t": pd.date_range("2024-03-31", periods=6, freq="h", tz="UTC"),
            }
        )
        df.to_hdf(os.path.join(d, "a.h5"), key="df", format="table")
        df.drop(columns="y").to_hdf(os.path.join(d, "b.h5"), key="df", format="table")
    if world() is not None:
        world().Barrier()
    return d


@pytest.mark.parametrize("root", [None, 0])
def test_hdf5_planning_error_is_raised_on_every_rank(h5_mismatch, root):
    import os

    files = [os.path.join(h5_mismatch, n) for n in ("a.h5", "b.h5")]
    with pytest.raises(hf.DatasetError, match=r"b\.h5.*'y' is missing"):
        hf.read_hdf(files).x.sum().compute(root=root)


def test_hdf5_explain_and_utc_times(h5_mismatch):
    import os

    path = os.path.join(h5_mismatch, "a.h5")
    df = hf.read_hdf(path)
    assert "hdf5" in df.explain() and "a.h5" in df.explain()
    ref = pd.read_hdf(path)
    assert_same(df[df.t > ref.t.iloc[2]].compute(), ref[ref.t > ref.t.iloc[2]], reset_index=True, exact=True)


# --------------------------------------------------------------------------------------------
# discovery: sorted relative paths at any depth, non-regular files refused on every rank
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deep_tree(shared_dir):
    """Parquet files at several depths (x runs 0..29 over them in sorted-path order), and a
    copy of the tree holding a FIFO named like a data file."""
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers.mpi import rank, world

    d = os.path.join(shared_dir, "read_deep_tree")
    names = ["z.parquet", "a/x.parquet", "a.parquet", "a-b/y.parquet", "a/deep/c.parquet", "B/q.parquet"]
    if rank() == 0:
        for sub in ("ok", "fifo"):
            for i, name in enumerate(sorted(names)):
                path = os.path.join(d, sub, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                pq.write_table(
                    pa.table({"x": np.arange(5.0 * i, 5.0 * i + 5), "f": [name] * 5}), path, row_group_size=2
                )
        os.mkfifo(os.path.join(d, "fifo", "a", "pipe.parquet"))
    if world() is not None:
        world().Barrier()
    return d


def test_directory_is_read_in_sorted_path_order(deep_tree):
    import os

    path = os.path.join(deep_tree, "ok")
    ref = pd.read_parquet(path)
    df = hf.read_parquet(path)
    assert_same(df.compute(), ref, exact=True)
    assert_same(df.head(7).compute(), ref.head(7), exact=True)
    assert_same(df[df.x > 12].head(4).compute(), ref[ref.x > 12].head(4), exact=True, reset_index=True)


def test_fifo_in_a_dataset_is_refused_on_every_rank(deep_tree):
    import os

    path = os.path.join(deep_tree, "fifo")
    with pytest.raises(hf.DatasetError, match=r"pipe\.parquet is a FIFO"):
        hf.read_parquet(path).x.sum().compute()


# --------------------------------------------------------------------------------------------
# decimals reach pandas correctly rounded (== / isin with the float of the decimal find them)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decimals17(shared_dir):
    """decimal128(18, s) columns with 17 significant digits, over 3 files of 4 row groups."""
    import decimal
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers.mpi import rank, world

    d = os.path.join(shared_dir, "read_decimals17")
    if rank() == 0:
        os.makedirs(d)
        rng = np.random.default_rng(17)
        for f in range(3):
            ints = rng.integers(10**16, 10**17, 400) * rng.choice([-1, 1], 400)
            cols = {
                f"d{s}": pa.array([decimal.Decimal(int(v)).scaleb(-s) for v in ints], pa.decimal128(18, s))
                for s in (2, 9, 17)
            }
            cols["i"] = pa.array(np.arange(400) + 400 * f)
            pq.write_table(pa.table(cols), os.path.join(d, f"part{f}.parquet"), row_group_size=100)
    if world() is not None:
        world().Barrier()
    return d


def test_decimals_are_correctly_rounded_and_found_by_equality(decimals17):
    import decimal

    df = hf.read_parquet(decimals17)
    ref = pd.read_parquet(decimals17)
    for c in ("d2", "d9", "d17"):
        exact = ref[c].map(lambda v: float(decimal.Decimal(str(v))))  # pandas keeps Decimal
        got = df[c].compute()
        assert (got.to_numpy() == exact.to_numpy()).all(), c
        picks = exact.iloc[::97].tolist()
        assert df[df[c] == picks[0]].i.compute().tolist() == ref.i[exact == picks[0]].tolist()
        assert df[df[c].isin(picks)].i.compute().tolist() == ref.i[exact.isin(picks)].tolist()
        assert df[df[c] >= picks[1]].i.count().compute() == int((exact >= picks[1]).sum())


# --------------------------------------------------------------------------------------------
# head() after a filter that statistics cannot prune; hive values that need URL-decoding
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(shared_dir):
    """x = 0..9 in row groups of 2 rows; hive values that need URL-decoding."""
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers.mpi import barrier, rank

    d = os.path.join(shared_dir, "read_small")
    if rank() == 0:
        os.makedirs(d)
        pq.write_table(
            pa.table({"x": np.arange(10.0), "s": list("abcdefghij")}),
            os.path.join(d, "rg.parquet"),
            row_group_size=2,
        )
        pq.write_to_dataset(
            pa.table({"x": [1.0, 2.0, 3.0], "city": ["New York", "Paris", "a/b"]}),
            os.path.join(d, "hive"),
            partition_cols=["city"],
        )
    barrier()
    return d


def test_head_after_a_filter_statistics_cannot_prune(small):
    import os

    df = hf.read_parquet(os.path.join(small, "rg.parquet"))
    ref = pd.read_parquet(os.path.join(small, "rg.parquet"))
    assert_same(df[~(df.x <= 5)].head(3), ref[~(ref.x <= 5)].head(3), reset_index=True)
    assert_same(df[(df.x * 2.0) > 10].head(3), ref[(ref.x * 2.0) > 10].head(3), reset_index=True)


def test_hive_values_are_url_decoded(small):
    import os

    df = hf.read_parquet(os.path.join(small, "hive"))
    got = df[df.city == "New York"].x.sum().compute()
    assert got == 1.0
    assert sorted(df.city.value_counts().compute().index) == ["New York", "Paris", "a/b"]
