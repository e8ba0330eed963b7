"""to_parquet / to_hdf / to_csv: read back equal, atomic, resumable."""

import json
import os

import pandas as pd
import pyarrow.dataset as ds
import pytest

import hpcframe as hf
from hpcframe.errors import ComputeError
from hpcframe.io.writers import LEAVES, MANIFEST, ParquetFormat, staging_of
from hpcframe.readers import read_csv
from hpcframe.writing import to_csv, to_hdf, to_parquet, write
from tests.helpers.ingest import compress, flights

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def src(tmp_path, small_blocks):
    frames = []
    for i in range(2):
        df = flights(5000, seed=i, year=2015 + i)
        p = str(tmp_path / f"flights-{i}.csv")
        df.to_csv(p, index=False)
        frames.append(pd.read_csv(p))  # what pandas makes of the file
        compress(p, "gz")
        os.remove(p)
    return str(tmp_path / "flights-*.csv.gz"), pd.concat(frames, ignore_index=True)


def sort(df, cols):
    return df.sort_values(cols, kind="mergesort").reset_index(drop=True)


def test_hive_parquet_read_back_by_hpcframe_pandas_and_pyarrow(tmp_path, src):
    pattern, exp = src
    out = str(tmp_path / "flights")
    s = to_parquet(
        read_csv(pattern, chunk_bytes=32 << 10), out, partition_by=["Year", "Month"], row_group_size=500
    )
    assert s["rows"] == len(exp) and s["leaves"] > 4
    assert os.path.isdir(os.path.join(out, "Year=2016", "Month=7"))
    assert not os.path.exists(staging_of(ParquetFormat(out)))
    assert sorted(os.listdir(tmp_path)) == ["flights", "flights-0.csv.gz", "flights-1.csv.gz"]
    manifest = json.load(open(os.path.join(out, MANIFEST)))
    assert manifest["rows"] == len(exp) and len(manifest["files"]) == s["files"]
    cols = list(exp.columns)
    got = hf.read_parquet(out).compute()[cols]
    pd.testing.assert_frame_equal(sort(got, cols), sort(exp, cols))
    via_pandas = pd.read_parquet(out)
    assert len(via_pandas) == len(exp) and set(via_pandas.columns) == set(cols)
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == len(exp)
    import pyarrow.parquet as pq

    meta = pq.read_metadata(os.path.join(out, manifest["files"][0]["path"]))
    assert meta.row_group(0).num_rows <= 500
    assert meta.row_group(0).column(0).statistics.has_min_max
    assert meta.row_group(0).column(0).compression == "ZSTD"
    # a query on the result equals pandas
    f = hf.read_parquet(out)
    q = f[f.Carrier == "AA"].groupby("Month")[["Flights"]].sum().compute()
    pd.testing.assert_frame_equal(q, exp[exp.Carrier == "AA"].groupby("Month")[["Flights"]].sum())


def test_hdf5_read_back_by_read_hdf(tmp_path, src):
    pattern, exp = src
    out = str(tmp_path / "flights.h5")
    s = to_hdf(read_csv(pattern, chunk_bytes=32 << 10), out)
    assert s["rows"] == len(exp) and s["files"] > 4
    got = hf.read_hdf(out).compute()
    pd.testing.assert_frame_equal(got, exp.fillna({"Origin": ""}))
    f = hf.read_hdf(out)
    assert f[f.Year == 2016].Flights.sum().compute() == exp[exp.Year == 2016].Flights.sum()


def test_csv_output_and_a_query_result(tmp_path, src):
    pattern, exp = src
    raw = read_csv(pattern, chunk_bytes=32 << 10)
    aa = raw[raw.Carrier == "AA"].assign(late=raw.Cancelled > 0.5)
    out = str(tmp_path / "aa")
    to_csv(aa, out)
    got = read_csv(out + "/*.csv").compute()
    e = exp[exp.Carrier == "AA"].assign(late=exp.Cancelled > 0.5).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, e)
    to_parquet(aa, str(tmp_path / "aa_pq"))
    pd.testing.assert_frame_equal(hf.read_parquet(str(tmp_path / "aa_pq")).compute(), e)


def test_a_failure_leaves_no_dataset_and_rerun_resumes(tmp_path, src):
    pattern, exp = src
    out = str(tmp_path / "flights")
    raw = read_csv(pattern, chunk_bytes=32 << 10)
    with pytest.raises(ComputeError, match="simulated failure in leaf 3"):
        write(raw, ParquetFormat(out, ["Month"]), fail_leaf=3)
    assert not os.path.exists(out)  # nothing a reader would pick up
    with pytest.raises(FileNotFoundError):
        hf.read_parquet(out)
    done = os.listdir(os.path.join(staging_of(ParquetFormat(out)), LEAVES))
    assert len(done) == 3
    s = to_parquet(read_csv(pattern, chunk_bytes=32 << 10), out, partition_by=["Month"])
    assert s["skipped"] == 3 and s["rows"] == len(exp)
    assert s["rows_in"] < len(exp)  # finished leaves were not read again
    cols = [c for c in exp.columns if c != "Month"]
    got = hf.read_parquet(out).compute()
    pd.testing.assert_frame_equal(sort(got[cols], cols), sort(exp[cols], cols))
    again = to_parquet(read_csv(pattern, chunk_bytes=32 << 10), out, partition_by=["Month"])
    assert again["skipped"] == again["leaves"]  # complete: nothing to do


def _interrupted(out, frame):
    """A write of ``frame`` into ``out`` that fails in leaf 3 (leaves 0-2 done)."""
    with pytest.raises(ComputeError, match="simulated failure in leaf 3"):
        write(frame, ParquetFormat(out), fail_leaf=3)
    assert len(os.listdir(os.path.join(staging_of(ParquetFormat(out)), LEAVES))) == 3


def test_a_rerun_over_a_changed_input_starts_over(tmp_path, src, capfd):
    """Regression (session 38's failure probes): a re-run resumed an interrupted write by leaf
    number alone, so a file fixed, regenerated or appended in between gave a dataset of old
    and new rows (the documented "fix the bad line and re-run" lost a row). The plan now holds
    a digest of the input files (path, size, mtime, ranges): the write starts over."""
    pattern, exp = src
    out = str(tmp_path / "flights")
    _interrupted(out, read_csv(pattern, chunk_bytes=32 << 10))
    first = pattern.replace("*", "0")
    fixed = pd.read_csv(first)
    fixed.loc[0, "Carrier"] = "a much longer value that moves every byte range after it"
    fixed.to_csv(first, index=False, compression="gzip")
    s = to_parquet(read_csv(pattern, chunk_bytes=32 << 10), out)
    assert "changed since it was interrupted; starting it over" in capfd.readouterr().err
    assert s["skipped"] == 0
    want = pd.concat([pd.read_csv(first), pd.read_csv(pattern.replace("*", "1"))], ignore_index=True)
    pd.testing.assert_frame_equal(hf.read_parquet(out).compute(), want)
    # a finished write over an earlier version of the input is not "complete"
    fixed.loc[1, "Carrier"] = "ZZ"
    fixed.to_csv(first, index=False, compression="gzip")
    with pytest.raises(FileExistsError, match="earlier version of its input"):
        to_parquet(read_csv(pattern, chunk_bytes=32 << 10), out)


def test_a_rerun_with_other_read_options_or_another_function_starts_over(tmp_path, src):
    """The same for other read options (``na_values``) and another user function under the
    same chain text (``transform(<lambda>)``): the digest holds the source's options and
    the functions' code and closed-over values."""
    pattern, exp = src
    out = str(tmp_path / "opts")
    _interrupted(out, read_csv(pattern, chunk_bytes=32 << 10))
    s = to_parquet(read_csv(pattern, chunk_bytes=32 << 10, na_values=["AA"]), out)
    assert s["skipped"] == 0
    assert hf.read_parquet(out).Carrier.isna().sum().compute() == (exp.Carrier == "AA").sum()

    out = str(tmp_path / "fn")
    scale = 1
    raw = read_csv(pattern, chunk_bytes=32 << 10)
    _interrupted(out, raw.assign(F=raw.groupby("Carrier").Flights.transform(lambda v: v * scale)))
    scale = 1000
    s = to_parquet(raw.assign(F=raw.groupby("Carrier").Flights.transform(lambda v: v * scale)), out)
    assert s["skipped"] == 0
    assert hf.read_parquet(out).F.sum().compute() == 1000 * exp.Flights.sum()


def test_a_damaged_record_is_written_again_and_a_damaged_plan_named(tmp_path, src):
    """Regression (session 38's failure probes): a damaged part record or plan of an
    unfinished write gave a bare JSON error. A damaged part record makes its leaf be written
    again; a damaged plan (what the folder holds cannot be known) is named, with the command
    that removes the unfinished write."""
    from hpcframe.errors import DatasetError
    from hpcframe.io.writers import PLAN

    pattern, exp = src
    out = str(tmp_path / "damaged")
    _interrupted(out, read_csv(pattern, chunk_bytes=32 << 10))
    staging = staging_of(ParquetFormat(out))
    record = os.path.join(staging, LEAVES, sorted(os.listdir(os.path.join(staging, LEAVES)))[1])
    with open(record, "w") as fh:
        fh.write('[{"path": "part-0')
    s = to_parquet(read_csv(pattern, chunk_bytes=32 << 10), out)
    assert s["skipped"] == 2 and s["rows"] == len(exp)
    pd.testing.assert_frame_equal(hf.read_parquet(out).compute(), exp)

    out = str(tmp_path / "damaged-plan")
    _interrupted(out, read_csv(pattern, chunk_bytes=32 << 10))
    staging = staging_of(ParquetFormat(out))
    with open(os.path.join(staging, PLAN), "w") as fh:
        fh.write("")
    with pytest.raises(DatasetError, match=f"is damaged.*rm -r {staging}"):
        to_parquet(read_csv(pattern, chunk_bytes=32 << 10), out)


def test_an_hdf5_file_hpcframe_did_not_write_is_never_overwritten(tmp_path, src):
    """Regression (session 38's failure probes): ``to_hdf(overwrite=True)`` replaced a user's
    HDF5 file, deleting its other tables. Like a Parquet folder holding others' files, it is
    refused, with or without ``overwrite``, and left as it was; a file hpcframe wrote is
    still replaced."""
    import h5py
    import numpy as np

    pattern, _ = src
    user = str(tmp_path / "data.h5")
    with h5py.File(user, "w") as f:
        f.create_dataset("precious/y", data=np.arange(5.0))
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not written by hpcframe"):
            to_hdf(read_csv(pattern, chunk_bytes=32 << 10), user, overwrite=overwrite)
    with h5py.File(user, "r") as f:
        assert list(f["precious/y"][:]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    ours = str(tmp_path / "ours.h5")
    raw = read_csv(pattern, chunk_bytes=32 << 10)
    to_hdf(raw, ours)
    s = to_hdf(raw[raw.Year == 2016], ours, overwrite=True)
    assert hf.read_hdf(ours).len().compute() == s["rows"]


def test_a_reader_of_the_old_dataset_fails_instead_of_reading_the_new_ones_files(tmp_path, src):
    """Regression (session 38's failure probes): files were named by part number alone, so a
    reader that had listed a dataset before an overwrite opened the new dataset's files of
    the same names and returned part of it (300,000 of 900,000 rows). Each write's files
    carry a tag of its plan: the old list names files that are gone."""
    pattern, exp = src
    out = str(tmp_path / "swapped")
    raw = read_csv(pattern, chunk_bytes=32 << 10)
    to_parquet(raw[raw.Year == 2015], out)
    reader = hf.read_parquet(out)
    assert reader.len().compute() == (exp.Year == 2015).sum()  # listed (and read)
    to_parquet(raw, out, overwrite=True)
    with pytest.raises((FileNotFoundError, ComputeError)):
        reader.compute()
    assert hf.read_parquet(out).len().compute() == len(exp)
    again = to_parquet(raw, out)  # the same write: the same names, nothing to do
    assert again["state"] == "complete"


def test_destination_checks(tmp_path, src):
    pattern, _ = src
    raw = read_csv(pattern, chunk_bytes=32 << 10)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        to_parquet(raw, str(foreign))
    out = str(tmp_path / "out")
    to_parquet(raw, out)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_parquet(raw[raw.Year == 2016], out)
    s = to_parquet(raw[raw.Year == 2016], out, overwrite=True)
    assert hf.read_parquet(out).len().compute() == s["rows"] < 10000
    with pytest.raises(KeyError, match="Yaer"):
        to_parquet(raw, str(tmp_path / "x"), partition_by=["Yaer"])


def test_parquet_copy_keeps_large_ints_of_a_column_with_nulls_elsewhere(tmp_path):
    """Queries see an int column with a null in any file as float64 (as pandas does); a copy
    must still write the stored integers exactly (2**53 + 1 and 2**64 - 1 are not floats)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    exact = pa.table(
        {"i": pa.array([2**53 + 1, 2**62 + 1], pa.int64()), "u": pa.array([2**64 - 1, 3], pa.uint64())}
    )
    holes = pa.table({"i": pa.array([None, 5], pa.int64()), "u": pa.array([None, 3], pa.uint64())})
    pq.write_table(exact, src / "a.parquet")
    pq.write_table(holes, src / "b.parquet")
    assert hf.read_parquet(str(src)).compute()["i"].dtype == "float64"  # the query dtype
    out = str(tmp_path / "out")
    to_parquet(hf.read_parquet(str(src)), out)
    got = pd.read_parquet(out, dtype_backend="pyarrow")
    want = pd.read_parquet(str(src), dtype_backend="pyarrow")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["i"].tolist()[:2] == [2**53 + 1, 2**62 + 1] and got["u"].tolist()[0] == 2**64 - 1


@pytest.mark.parametrize("shape", ["frame", "persisted", "group result"])
def test_object_bools_with_none_are_written_as_bools(tmp_path, shape):
    """An ``object`` column of bools with ``None`` (``from_pandas``, after ``persist()``, or a
    group result's ``first``) is written as a Parquet ``bool`` column with nulls, as pandas
    writes it. Regression: its pandas dtype says nothing of its values, the files' schema
    made it ``string``, and the values were written as "true"/"false" (found by a
    randomized run)."""
    import pyarrow.parquet as pq

    ref = pd.DataFrame({"b": pd.Series([True, None, False], dtype=object), "x": [1, 2, 3]})
    frame = hf.from_pandas(ref, npartitions=2)
    if shape == "persisted":
        frame = frame.persist()
    elif shape == "group result":
        frame = frame.groupby("x").agg(b=("b", "first")).reset_index()
    out = str(tmp_path / "out")
    to_parquet(frame, out)
    files = [f for f in os.listdir(out) if f.endswith(".parquet")]
    assert {str(pq.read_schema(os.path.join(out, f)).field("b").type) for f in files} == {"bool"}
    got = pd.read_parquet(out).sort_values("x", ignore_index=True)
    assert got.b.tolist() == [True, None, False]


def test_hdf5_of_a_bool_column_with_a_null_in_a_later_file(tmp_path):
    """A Parquet dataset whose bool column has a null only in its second file is written to
    HDF5 as float64 with NaN in every part file, so the virtual dataset reads back.
    Regression: the first part file stored bools, the second float64, and reading failed
    ("no appropriate function for conversion path")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.table({"b": pa.array([True, False]), "x": [4, 5]}), src / "a.parquet")
    pq.write_table(pa.table({"b": pa.array([True, None, False]), "x": [1, 2, 3]}), src / "b.parquet")
    out = str(tmp_path / "out.h5")
    to_hdf(hf.read_parquet(str(src)), out)
    got = hf.read_hdf(out).compute()
    assert got.b.tolist()[:3] == [1.0, 0.0, 1.0] and pd.isna(got.b[3]) and got.x.tolist() == [4, 5, 1, 2, 3]
