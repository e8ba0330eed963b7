"""``string_view`` Parquet columns whose pages are mostly PLAIN (many distinct values: names,
comments, phone numbers, as TPC-H's files store them) are read as plain strings and cast to
``large_string``, not as dictionaries built by hashing every value (twice the read's CPU);
those with dictionary pages stay dictionaries. Filtered before and after the conversion
(Arrow has no take for ``string_view``), string predicates, group keys, join columns;
compared with pandas."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

N_FILES, ROWS, ROW_GROUP = 3, 1200, 500


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = ROWS
    sv = np.array([f"Customer#{seed:02d}{i:07d} {'x' * (i % 13)}" for i in range(n)], dtype=object)
    sv[rng.random(n) < 0.05] = None
    low = np.array(["AUTOMOBILE", "BUILDING", "FURNITURE", None], dtype=object)[rng.integers(0, 4, n)]
    return pd.DataFrame(
        {
            "k": rng.integers(0, 400, n).astype("int64"),
            "sv": sv,  # distinct values: PLAIN pages
            "lv": low,  # four values: dictionary pages
            "t": rng.integers(0, 1000, n).astype("int64"),
            "x": rng.normal(size=n),
        }
    )


@pytest.fixture(scope="module")
def views(shared_dir):
    """``(folder, pandas frame)`` of files with ``string_view`` columns ``sv`` (no dictionary
    pages) and ``lv`` (dictionary pages)."""
    frames = [_frame(i) for i in range(N_FILES)]
    path = os.path.join(shared_dir, "string-views")

    def write():
        os.makedirs(path, exist_ok=True)
        for i, fr in enumerate(frames):
            table = pa.Table.from_pandas(fr, preserve_index=False)
            for c in ("sv", "lv"):
                j = table.schema.get_field_index(c)
                view = table.column(c).cast(pa.string_view())
                table = table.set_column(j, pa.field(c, pa.string_view()), view)
            file = os.path.join(path, f"part-{i}.parquet")
            pq.write_table(table, file, row_group_size=ROW_GROUP, use_dictionary=["lv"])

    mpi.on_root(write)
    return path, pd.concat(frames, ignore_index=True)


def test_plain_string_view_is_read_as_large_string(views):
    """The reader hands ``sv`` over as ``large_string`` (was a dictionary, hashed while
    reading) and ``lv`` as a dictionary, with the same values."""
    from hpcframe.comm import Comm
    from hpcframe.io.parquet import ParquetSource

    path, _ = views
    source = ParquetSource(path)
    file = os.path.join(path, "part-0.parquet")
    part = next(p for p in source.discover(Comm()) if p.path == file)
    got = source.read(part, ["sv", "lv", "k"])
    assert got.schema.field("sv").type == pa.large_string()
    assert pa.types.is_dictionary(got.schema.field("lv").type)
    want = pq.read_table(file).slice(0, part.num_rows)
    assert got.column("sv").to_pylist() == want.column("sv").to_pylist()
    assert got.column("lv").to_pylist() == want.column("lv").to_pylist()


@pytest.mark.parametrize("cut", [900, 100], ids=["few-rows-pass", "most-rows-pass"])
def test_filtered_rows_equal_pandas(views, cut):
    """A filter dropping most rows (the raw block is filtered before its cast) or few."""
    path, ref = views
    df = hf.read_parquet(path)
    got = df[df.t > cut][["k", "sv", "lv", "t"]]
    expected = ref[ref.t > cut][["k", "sv", "lv", "t"]]
    assert_same(got, expected, reset_index=True, msg=f"t > {cut}")


def test_string_predicates_and_keys_equal_pandas(views):
    path, ref = views
    df = hf.read_parquet(path)
    got = df[df.sv.str.startswith("Customer#01") & (df.t < 700)][["sv", "x"]]
    expected = ref[ref.sv.str.startswith("Customer#01", na=False) & (ref.t < 700)][["sv", "x"]]
    assert_same(got, expected, reset_index=True, msg="startswith")
    got = df[df.t < 300].groupby("sv").agg(x=("x", "sum"), n=("t", "count"))
    expected = ref[ref.t < 300].groupby("sv").agg(x=("x", "sum"), n=("t", "count"))
    assert_same(got, expected, msg="group by sv")
    got = df.groupby("lv", dropna=False).agg(s=("sv", "count"))
    expected = ref.groupby("lv", dropna=False).agg(s=("sv", "count"))
    assert_same(got, expected, msg="group by lv")


def test_join_carries_plain_string_view_equal_pandas(views):
    path, ref = views
    df = hf.read_parquet(path)
    small = df[df.t < 50][["k", "sv"]]
    got = df[df.t > 500][["k", "lv", "t"]].merge(small, on="k")
    rs = ref[ref.t < 50][["k", "sv"]]
    expected = ref[ref.t > 500][["k", "lv", "t"]].merge(rs, on="k")
    assert_same(got, expected, reset_index=True, msg="merge")
