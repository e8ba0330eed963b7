"""A filter evaluated in Arrow while reading, at every selectivity: the scan casts a block's
columns for pandas after filtering when few rows pass and before filtering when most do
(``execute._compute_leaf``), and either way the rows, the values and the dtypes equal pandas'
on the same data -- no row kept, a few, most, all. The columns are the awkward ones:
decimals with nulls (precision 15, 18 with values beyond 2**53, 38), ints near 2**63, ints
and bools with nulls (float64 / object for the whole dataset), float32, NaN and ±inf, dates,
tz-aware timestamps, dictionary and plain strings with nulls. Hypothesis draws the cut-off
and the columns; every rank draws the same examples."""

import decimal
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.datasets import arrow_to_pandas, write_parquet_slices
from tests.helpers.frames import spmd_settings
from tests.helpers.mpi import timeout

pytestmark = timeout(300)

N = 320  # 4 files of 2 row groups of 40 rows


def _table() -> pa.Table:
    rng = np.random.default_rng(11)
    sel = rng.permutation(N) / N  # the filter column: a cut-off q keeps about q * N rows
    d15 = [
        None if k % 9 == 4 else decimal.Decimal(int(v)).scaleb(-2)
        for k, v in enumerate(rng.integers(-(10**14), 10**14, N))
    ]
    d18 = [
        None if k % 7 == 2 else decimal.Decimal(int(v)).scaleb(-4)
        for k, v in enumerate(rng.integers(-(10**17), 10**17, N))
    ]
    d38 = [decimal.Decimal(int(v)).scaleb(-10) * 10**20 for v in rng.integers(-(10**9), 10**9, N)]
    big = rng.integers(-50, 50, N).astype(object)
    big[::5] = 2**63 - 1
    big[1::5] = -(2**63)
    inull = [None if k % 6 == 1 else int(v) for k, v in enumerate(rng.integers(-(2**62), 2**62, N))]
    f = rng.normal(0, 1e3, N)
    f[::11] = np.nan
    f[3::17] = np.inf
    f[5::19] = -np.inf
    g = rng.normal(0, 10, N).astype(np.float32)
    g[::13] = np.float32(0.1)
    bn = [None if k % 8 == 6 else bool(v) for k, v in enumerate(rng.random(N) < 0.5)]
    day = np.datetime64("1998-01-01") + rng.integers(0, 900, N).astype("timedelta64[D]")
    tsz = pd.to_datetime("2013-07-01") + pd.to_timedelta(rng.integers(-(10**6), 10**6, N), "s")
    cats = ["A", "N", "R", None]
    key = [cats[k] for k in rng.integers(0, len(cats), N)]
    strs = ["ab", None, "", "xyz"]
    s = [strs[k] for k in rng.integers(0, len(strs), N)]
    return pa.table(
        {
            "sel": pa.array(sel, pa.float64()),
            "d15": pa.array(d15, pa.decimal128(15, 2)),
            "d18": pa.array(d18, pa.decimal128(18, 4)),
            "d38": pa.array(d38, pa.decimal128(38, 10)),
            "big": pa.array(list(big), pa.int64()),
            "inull": pa.array(inull, pa.int64()),
            "f": pa.array(f, pa.float64()),
            "g": pa.array(g, pa.float32()),
            "bn": pa.array(bn, pa.bool_()),
            "day": pa.array(day.astype("datetime64[D]"), pa.date32()),
            "tsz": pa.array(tsz.tz_localize("Europe/Paris"), pa.timestamp("us", tz="Europe/Paris")),
            "key": pa.array(key, pa.string()).dictionary_encode(),
            "s": pa.array(s, pa.string()),
        }
    )


@pytest.fixture(scope="module")
def data(shared_dir):
    table = _table()
    d = write_parquet_slices(os.path.join(shared_dir, "scan_selectivity"), table, 80, row_group_size=40)
    return d, arrow_to_pandas(table)


COLUMNS = ["d15", "d18", "d38", "big", "inull", "f", "g", "bn", "day", "tsz", "key", "s"]
# q = 0: statistics prune every file (sel >= 0), the empty result still has the dataset's dtypes
CUTS = st.one_of(st.sampled_from([0.0, 0.001, 0.3, 0.5, 0.51, 0.9, 1.0, 1.5]), st.floats(0.0, 1.1))


@spmd_settings(25)
@given(q=CUTS, cols=st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5, unique=True))
def test_filtered_rows_at_any_selectivity(data, q, cols):
    path, ref = data
    df = hf.read_parquet(path)
    got = df[df.sel < q][cols].compute()
    want = ref[ref.sel < q][cols].reset_index(drop=True)
    assert_same(got, want, exact=True, reset_index=True, msg=f"sel < {q} {cols}")


@spmd_settings(15)
@given(q=CUTS)
def test_group_by_and_projection_at_any_selectivity(data, q):
    """The TPC-H Q1 shape: a pushed-down filter, a projection of decimals, sums, means and
    counts by a dictionary key (with nulls) -- counts exact, float sums within the tolerance
    pandas' own summation order allows."""
    path, ref = data
    df = hf.read_parquet(path)

    def q1(d):
        f = d[d.sel < q]
        f = f.assign(p=f.d15 * (1 - f.g), r=f.d18 + f.f)
        return f.groupby("key", dropna=False).agg(
            sp=("p", "sum"), mr=("r", "mean"), n=("d15", "count"), c=("inull", "count"), s=("d15", "sum")
        )

    got = q1(df).compute()
    want = q1(ref)
    assert_same(got, want, msg=f"sel < {q}")


@pytest.mark.parametrize(
    "cols", [["d15", "d18", "d38", "big", "f", "g"], ["inull", "bn", "day", "tsz", "key", "s"]]
)
def test_no_row_passes_in_blocks_that_are_read(data, cols):
    """A filter no row passes but the statistics cannot rule out: every block is read and
    keeps no row; the empty result has pandas' dtypes (and the dictionary's categories)."""
    path, ref = data
    df = hf.read_parquet(path)
    got = df[df.sel == 0.123456789][cols].compute()
    want = ref[ref.sel == 0.123456789][cols].reset_index(drop=True)
    assert_same(got, want, exact=True, reset_index=True)


@pytest.mark.parametrize(
    "cols", [["d15", "d18", "d38", "big", "f", "g"], ["inull", "bn", "day", "tsz", "key", "s"]]
)
def test_every_file_pruned(data, cols):
    """A filter the statistics rule out in every file (sel >= 0): no block is read; the
    empty result has pandas' dtypes (ints and bools with nulls: float64, object)."""
    path, ref = data
    df = hf.read_parquet(path)
    got = df[df.sel < 0][cols].compute()
    want = ref[ref.sel < 0][cols].reset_index(drop=True)
    assert_same(got, want, exact=True, reset_index=True)
