"""One HDF5 codec: what write_table and to_hdf write, read_hdf reads back with its dtype."""

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.io.output import write_table

pytest.importorskip("h5py")


def frame():
    return pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype="int64"),
            "i32": np.array([4, 5, 6], dtype="int32"),
            "b": [True, False, True],
            "t": pd.to_datetime(["2013-01-01 00:00", "2013-01-02 10:00", None]),
            "tz": pd.to_datetime(["2013-01-01", "2013-01-02", "2013-01-03"]).tz_localize("UTC"),
            "s": ["a", "b", "ünï"],
            "f": [1.5, np.nan, 3.0],
        }
    )


def check(got, df):
    assert list(got.columns) == list(df.columns)
    for c in df.columns:
        assert got[c].dtype == df[c].dtype or (c == "s" and got[c].dtype.kind in "OUT"), (
            c,
            got[c].dtype,
            df[c].dtype,
        )
        assert got[c].tolist() == df[c].tolist() or c in ("t", "f"), c
    pd.testing.assert_series_equal(got.t, df.t, check_dtype=False)
    np.testing.assert_array_equal(got.f.to_numpy(), df.f.to_numpy())


def test_write_table_reads_back_with_dtypes(tmp_path):
    df = frame()
    write_table(df, tmp_path / "o.h5")
    check(hf.read_hdf(str(tmp_path / "o.h5")).compute(), df)


def test_to_hdf_reads_back_with_dtypes(tmp_path):
    df = frame()
    hf.to_hdf(hf.from_pandas(df, npartitions=2), str(tmp_path / "o.h5"))
    check(hf.read_hdf(str(tmp_path / "o.h5")).compute(), df)


def test_missing_integers_are_floats_in_both_writers(tmp_path):
    df = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    write_table(df, tmp_path / "a.h5")
    got = hf.read_hdf(str(tmp_path / "a.h5")).compute()
    assert got.n.dtype == np.float64 and np.isnan(got.n[1])


def test_the_reader_understands_older_attributes(tmp_path):
    import h5py

    path = tmp_path / "old.h5"
    values = pd.to_datetime(["2020-01-01", "2020-01-02"]).to_numpy().view("int64")
    with h5py.File(path, "w") as f:
        g = f.create_group("result")
        g.create_dataset("a", data=values).attrs["hpcframe_dtype"] = "datetime64[ns]"
        g.create_dataset("b", data=values).attrs["hpcframe_type"] = "timestamp[ns]"
        g.create_dataset("c", data=values).attrs["hpcframe_dtype"] = "nonsense"
    got = hf.read_hdf(str(path)).compute()
    assert got.a.dtype.kind == "M" and got.b.dtype.kind == "M" and got.c.dtype == np.int64
