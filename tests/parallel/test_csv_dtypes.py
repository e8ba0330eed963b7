"""CSV dtypes are properties of the dataset, not of the block.

pandas' reference for a CSV dataset is ``pd.concat([pd.read_csv(f) for f in files],
ignore_index=True)``: one empty field anywhere in an integer column makes that column
float64 in the whole frame (a bool column: object), so every result over it has pandas'
float64 (object) dtypes too — also a result whose rows all come from files or blocks
without any empty field (a filter, a group-by, a column reduction, a persisted frame).

The empty fields sit after the rows sampled for the schema (``sample_rows=50``), so they
are found while the blocks are read, not from the sample. Runs locally and under
``mpiexec -n 1..4`` (every test on every rank).
"""

from __future__ import annotations

import glob
import gzip
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

ROWS = 300  # rows per file of the multi-file datasets
NULL_FILE, NULL_ROW = 2, 200  # the one empty ``x`` and ``b`` field: file 2, data row 200
SAMPLE = 50  # rows sampled per file for the schema: the empty fields are not sampled


def _frame(seed: int, n: int, f: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "f": f,
            "row": np.arange(n),
            "k": rng.choice(list("abc"), n),
            "x": rng.integers(-50, 50, n),
            "b": rng.random(n) < 0.5,
            "y": rng.random(n).round(6),
        }
    )


def _write(path: str, df: pd.DataFrame, empty_row: int | None) -> None:
    """``df`` as CSV, with the ``x`` and ``b`` fields of data row ``empty_row`` left empty."""
    lines = df.to_csv(index=False).splitlines()
    if empty_row is not None:
        fields = lines[1 + empty_row].split(",")
        x, b = list(df.columns).index("x"), list(df.columns).index("b")
        fields[x] = fields[b] = ""
        lines[1 + empty_row] = ",".join(fields)
    text = "\n".join(lines) + "\n"
    if path.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        with open(path, "w") as fh:
            fh.write(text)


def _reference(folder: str) -> pd.DataFrame:
    files = sorted(glob.glob(os.path.join(folder, "*.csv*")))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def data(shared_dir, comm):
    """Folders of CSV files, written by rank 0:

    - ``multi``, ``multi_gz``: 4 files of ``ROWS`` rows, one empty ``x``/``b`` field in file
      ``NULL_FILE`` only (plain, and gzip-compressed: row chunks instead of byte ranges);
    - ``one``: one file of 3000 rows with one empty field at row 2500, read in byte ranges
      of 1 KiB (many blocks);
    - ``clean``: like ``multi`` without any empty field.
    """
    root = os.path.join(shared_dir, "csv-dtypes")
    if mpi.rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
        for name, suffix in (("multi", ".csv"), ("multi_gz", ".csv.gz"), ("clean", ".csv")):
            os.makedirs(os.path.join(root, name))
            for i in range(4):
                empty = NULL_ROW if (i == NULL_FILE and name != "clean") else None
                _write(os.path.join(root, name, f"m{i}{suffix}"), _frame(i, ROWS, i), empty)
        os.makedirs(os.path.join(root, "one"))
        _write(os.path.join(root, "one", "big.csv"), _frame(7, 3000, 0), 2500)
    if comm is not None:
        comm.Barrier()
    return {name: os.path.join(root, name) for name in ("multi", "multi_gz", "one", "clean")}


def _read(path, **kw):
    return hf.read_csv(path, sample_rows=SAMPLE, **kw)


def _nan_for_none(obj):
    """pandas.read_csv gives a missing bool in an object column as NaN, hpcframe as None
    (as ``pandas.read_parquet``): not what these tests are about."""
    if isinstance(obj, pd.DataFrame):
        return obj.assign(**{c: _nan_for_none(obj[c]) for c in obj.columns if obj[c].dtype == object})
    if isinstance(obj, pd.Series) and obj.dtype == object:
        return obj.where(obj.notna(), np.nan)
    return obj


def _same(got, exp):
    got, exp = _nan_for_none(got), _nan_for_none(exp)
    if isinstance(exp, pd.DataFrame):
        pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=1e-12)
    elif isinstance(exp, pd.Series):
        pd.testing.assert_series_equal(got, exp, check_exact=False, rtol=1e-12)
    else:
        assert type(got) is type(exp), (type(got), type(exp), got, exp)
        assert got == pytest.approx(exp, rel=1e-12), (got, exp)


@pytest.fixture(params=["multi", "multi_gz"])
def multi(request, data):
    return data[request.param], _reference(data[request.param])


def test_reference_is_float64_and_object(multi):
    _, ref = multi
    assert ref.x.dtype == "float64" and ref.b.dtype == object


def test_filter_of_null_free_files(multi):
    path, ref = multi
    df = _read(path)
    got = df[df.f != NULL_FILE].compute()
    exp = ref[ref.f != NULL_FILE].reset_index(drop=True)
    assert got.x.dtype == "float64" and got.b.dtype == object, got.dtypes.to_dict()
    _same(got, exp)


def test_whole_frame(multi):
    path, ref = multi
    _same(_read(path).compute(), ref)


def test_assign_from_widened_column(multi):
    path, ref = multi
    df = _read(path)
    sub = df[df.f != NULL_FILE]
    got = sub.assign(z=sub.x * 2 + 1)[["k", "z"]].compute()
    exp = ref[ref.f != NULL_FILE]
    exp = exp.assign(z=exp.x * 2 + 1)[["k", "z"]].reset_index(drop=True)
    _same(got, exp)


def test_column_reductions(multi):
    path, ref = multi
    df = _read(path)
    sub, exp = df[df.f != NULL_FILE], ref[ref.f != NULL_FILE]
    for name in ("sum", "min", "max", "mean"):
        got = getattr(sub.x, name)().compute()
        _same(got, getattr(exp.x, name)())
    _same(sub.x.count().compute(), exp.x.count())


@pytest.mark.parametrize("agg", ["sum", "mean", "min", "max", "count"])
def test_groupby_aggregates(multi, agg):
    path, ref = multi
    df = _read(path)
    got = getattr(df[df.f != NULL_FILE].groupby("k").x, agg)().compute()
    exp = getattr(ref[ref.f != NULL_FILE].groupby("k").x, agg)()
    _same(got, exp)


def test_groupby_agg_list_and_whole_dataset(multi):
    path, ref = multi
    df = _read(path)
    got = df[df.f != NULL_FILE].groupby("k").agg(x=("x", "sum"), y=("y", "sum")).compute()
    exp = ref[ref.f != NULL_FILE].groupby("k").agg(x=("x", "sum"), y=("y", "sum"))
    _same(got, exp)
    _same(df.groupby("k").x.sum().compute(), ref.groupby("k").x.sum())


def test_widened_group_key_and_value_counts(multi):
    path, ref = multi
    df = _read(path)
    sub, exp = df[df.f != NULL_FILE], ref[ref.f != NULL_FILE]
    _same(sub.groupby("x").y.sum().compute(), exp.groupby("x").y.sum())
    got = sub.x.value_counts().compute()
    want = exp.x.value_counts()
    assert got.index.dtype == want.index.dtype, (got.index.dtype, want.index.dtype)
    _same(got.sort_index(), want.sort_index())


def test_bool_column_is_object(multi):
    path, ref = multi
    df = _read(path)
    got = df[df.f != NULL_FILE].b.compute()
    exp = ref[ref.f != NULL_FILE].b.reset_index(drop=True)
    assert got.dtype == object
    _same(got, exp)


def test_persisted_frame(multi):
    path, ref = multi
    df = _read(path)
    sub = df[df.f != NULL_FILE].persist()
    try:
        exp = ref[ref.f != NULL_FILE]
        _same(sub.compute(), exp.reset_index(drop=True))
        _same(sub.groupby("k").x.sum().compute(), exp.groupby("k").x.sum())
    finally:
        sub.unpersist()
    whole = df.persist()
    try:
        got = whole[whole.f != NULL_FILE].x.compute()
        _same(got, ref[ref.f != NULL_FILE].x.reset_index(drop=True))
    finally:
        whole.unpersist()


def test_head(data):
    """``head(n)`` reads only the leading blocks. An empty field in the sampled rows is
    known at once; one further on once a computation has read the blocks holding it (see
    docs/design.md §10)."""
    ref = _reference(data["multi"])
    sampled = hf.read_csv(data["multi"])  # the default sample holds every row
    _same(sampled.head(5).compute(), ref.head(5))
    df = _read(data["multi"])
    df.x.sum().compute()  # reads every block of ``x``: its empty field is known from now on
    assert df.head(5).compute().x.dtype == "float64"
    df[["b"]].compute()  # and that of ``b``
    _same(df.head(5).compute(), ref.head(5))
    _same(df[df.f == 0].x.head(3).compute(), ref[ref.f == 0].x.head(3))


def test_one_file_in_many_blocks(data):
    path = data["one"]
    ref = pd.read_csv(os.path.join(path, "big.csv"))
    df = _read(path, chunk_bytes=1024)
    sub, exp = df[df.row < 1000], ref[ref.row < 1000]
    _same(sub.compute(), exp)
    _same(sub.x.sum().compute(), exp.x.sum())
    _same(sub.groupby("k").x.max().compute(), exp.groupby("k").x.max())
    _same(sub.groupby("k").b.count().compute(), exp.groupby("k").b.count())


def test_no_empty_field_stays_int64_and_bool(data):
    path = data["clean"]
    ref = _reference(path)
    assert ref.x.dtype == "int64" and ref.b.dtype == bool
    df = _read(path)
    _same(df.compute(), ref)
    _same(df[df.f != 1].x.sum().compute(), ref[ref.f != 1].x.sum())
    _same(df.groupby("k").x.sum().compute(), ref.groupby("k").x.sum())
    _same(df.head(4).compute(), ref.head(4))


def test_group_by_result_used_as_a_frame(multi):
    path, ref = multi
    df = _read(path)
    g = df[df.f != NULL_FILE].groupby("k").agg(s=("x", "sum"), m=("x", "max"))
    e = ref[ref.f != NULL_FILE].groupby("k").agg(s=("x", "sum"), m=("x", "max"))
    _same(g[g.s < 10**9].compute(), e[e.s < 10**9])


def test_sorted_and_deduplicated(multi):
    path, ref = multi
    df = _read(path)
    sub, exp = df[df.f != NULL_FILE], ref[ref.f != NULL_FILE]
    # (row labels after a filter are not what this is about)
    got = sub.sort_values(["y", "row"]).head(7).compute().reset_index(drop=True)
    _same(got, exp.sort_values(["y", "row"]).head(7).reset_index(drop=True))
    got = sub.drop_duplicates("k").compute().reset_index(drop=True)
    _same(got, exp.drop_duplicates("k").reset_index(drop=True))


def test_merge_and_group_window(multi):
    path, ref = multi
    df = _read(path)
    sub, exp = df[df.f != NULL_FILE], ref[ref.f != NULL_FILE]
    other = df[df.f == 0][["row", "x", "b"]]
    got = sub.merge(other, on="row").compute()
    want = exp.merge(ref[ref.f == 0][["row", "x", "b"]], on="row")
    _same(
        got.sort_values(["f", "row"]).reset_index(drop=True),
        want.sort_values(["f", "row"]).reset_index(drop=True),
    )
    _same(sub.merge(other, on="row").x_y.sum().compute(), want.x_y.sum())
    # (row labels after a filter are not what this is about)
    got = sub.groupby("k").x.cumsum().compute().reset_index(drop=True)
    _same(got, exp.groupby("k").x.cumsum().reset_index(drop=True))


@pytest.mark.parametrize(
    "query",
    [
        lambda s: s[["x", "y"]].describe(),
        lambda s: s.nlargest(3, "y"),
        lambda s: s.tail(3),
        lambda s: s[s.x.isin([1, 2, 3])],
        lambda s: s[["x", "b"]].max(),
        lambda s: s.groupby("k").x.agg(["sum", "min", "count", "first", "std"]),
        lambda s: s.groupby(["k", "x"]).y.sum(),
        lambda s: s.groupby("k").b.sum(),
        lambda s: s.b.sum(),
        lambda s: s.x.median(),
    ],
    ids=[
        "describe",
        "nlargest",
        "tail",
        "isin",
        "frame-max",
        "agg-list",
        "two-keys",
        "bool-sum",
        "bool-total",
        "median",
    ],
)
def test_more_results(data, query):
    path = data["multi"]
    ref = _reference(path)
    df = _read(path)
    got = query(df[df.f != NULL_FILE])
    got = got.compute() if hasattr(got, "compute") else got
    exp = query(ref[ref.f != NULL_FILE])
    if isinstance(exp, pd.DataFrame) and "row" in exp.columns:  # rows: labels after a filter
        got, exp = got.reset_index(drop=True), exp.reset_index(drop=True)  # are not the point
    _same(got, exp)


def test_on_disk_cache_keeps_the_blocks_nulls(data, shared_dir):
    """A block whose partials come from the on-disk cache is not read: the columns in which
    it held a null are recorded with its partials, so a new process (here: a new source)
    answering from the cache alone still gives pandas' dtypes."""
    path = data["multi"]
    ref = _reference(path)
    exp = ref[ref.f != NULL_FILE].groupby("k").x.sum()
    store = os.path.join(shared_dir, "csv-dtypes-cache")
    for run in range(2):
        with hf.Cache(dir=store):
            df = _read(path)
            got = df[df.f != NULL_FILE].groupby("k").x.sum().compute()
        _same(got, exp)
        if run == 1:  # every partial from the cache: no block read
            assert hf.last_run_stats()["partitions_read"] == 0
