"""Boolean filters and projections: the same expression in pandas and hpcframe.

Each query is a function of a frame, written once and applied to both the pandas reference
and the hpcframe frame (``q(pdf)`` vs ``q(df).compute()``). compute() returns a RangeIndex,
so the reference index is reset before comparing.
"""

import pandas as pd
import pytest

from tests.helpers.compare import assert_same
from tests.helpers.datasets import ALL, DECIMAL_COLUMNS
from tests.helpers.mpi import timeout

pytestmark = timeout(60)

T0 = pd.Timestamp("2013-07-01")

FILTERS = {
    "comparisons": {
        "gt": lambda d: d[d.n > 500],
        "le_float_nan": lambda d: d[d.x <= 7.5],  # NaN compares False
        "eq_int": lambda d: d[d.ki == 2],
        "ne_int": lambda d: d[d.ki != 2],
        "ne_float_nan_key": lambda d: d[d.kf != 1.5],  # pandas: NaN != 1.5 is True
        "between": lambda d: d[d.n.between(100, 200)],  # inclusive on both ends
        "isin_int": lambda d: d[d.ki.isin([0, 4])],
    },
    "logic": {
        "and_not_isna": lambda d: d[(d.n > 300) & ~d.x.isna()],
        "or": lambda d: d[(d.ki == 1) | (d.y > 0.9)],
        "not_gt_keeps_nan": lambda d: d[~(d.x > 10)],  # rows with NaN x are kept
        "bool_column": lambda d: d[d.flag],
        "not_bool_and": lambda d: d[~d.flag & (d.y < 0.5)],
        "chained_filters": lambda d: (lambda e: e[e.y < 0.3])(d[d.n > 200]),  # filter of a filtered frame
    },
    "missing": {
        "isna_float": lambda d: d[d.x.isna()],
        "notna_float": lambda d: d[d.x.notna()],
        "isna_float_key": lambda d: d[d.kf.isna()],
        "isna_str": lambda d: d[d.carrier.isna()],
        "isna_int_nulls": lambda d: d[d.nn.isna()],
        "notna_int_nulls": lambda d: d[d.nn.notna()],
    },
    "strings": {
        "eq_str": lambda d: d[d.carrier == "UA"],
        "ne_str_missing": lambda d: d[d.carrier != "AA"],  # pandas: missing != "AA" is True
        "isin_str": lambda d: d[d.carrier.isin(["AA", "UA", "XX"])],
        "startswith": lambda d: d[d.name.str.startswith("ab")],  # missing -> False
        "contains": lambda d: d[d.name.str.contains("b")],
        "large_string_and_view": lambda d: d[d.ls.str.startswith("v1") | (d.sv == "w3JFK")],
    },
    "typed": {
        "category_eq": lambda d: d[d.cat == "lo"],
        "category_isin": lambda d: d[d.cat.isin(["hi", "mid"])],
        "decimal_gt": lambda d: d[d.price > 500],
        "date_ge": lambda d: d[d.day >= T0],
        "timestamp_lt": lambda d: d[d.ts < T0],
        "timestamp_tz": lambda d: d[d.tsz >= pd.Timestamp("2013-03-31 03:00", tz="Europe/Paris")],
    },
    "projection": {
        "then_project": lambda d: d[d.n > 800][["id", "carrier", "x"]],
        "project_then_filter_on_kept_column": lambda d: (lambda e: e[e.n < 50])(d[["id", "n", "y"]]),
        "nothing_matches": lambda d: d[d.n > 10**9],
    },
}


def _check(got, ref, hive=(), msg=""):
    dec = [c for c in ref.columns if c in DECIMAL_COLUMNS]
    assert_same(
        got.drop(columns=dec), ref.drop(columns=dec), hive=hive, exact=True, reset_index=True, msg=msg
    )
    assert_same(got[dec], ref[dec], hive=hive, reset_index=True, msg=msg)


@pytest.mark.parametrize("group", list(FILTERS), ids=list(FILTERS))
def test_filters(dir6, group):
    df, ref = dir6.open(), dir6.pdf
    for name, q in FILTERS[group].items():
        _check(q(df).compute(), q(ref), msg=name)


CORE_QUERY = lambda d: d[((d.n > 300) & ~(d.x > 12)) | (d.ki == 0)][["id", "ki", "x", "n"]]  # noqa: E731


@pytest.mark.parametrize("dataset", ALL, indirect=True)
def test_filter_every_layout(dataset):
    got = CORE_QUERY(dataset.open()).compute()
    assert_same(got, CORE_QUERY(dataset.pdf), exact=True, reset_index=True)


def test_filter_nothing_keeps_columns_and_dtypes(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = df[df.n < 0].compute()
    assert len(got) == 0
    assert list(got.columns) == list(ref.columns)
    for c in ref.columns:
        if isinstance(ref[c].dtype, pd.CategoricalDtype):
            assert isinstance(got[c].dtype, pd.CategoricalDtype), c
        elif c != "nn":
            assert got[c].dtype == ref[c].dtype, (c, got[c].dtype, ref[c].dtype)


@pytest.mark.parametrize(
    "query",
    [
        lambda d: d[d.year == 2014],
        lambda d: d[(d.year == 2013) & (d.month >= 2)][["id", "month", "x"]],
        lambda d: d[(d.month == 3) | (d.n < 10)],
    ],
    ids=["year_eq", "year_and_month", "month_or_value"],
)
def test_filter_on_hive_columns(catalog, query):
    ds = catalog["hive"]
    got = query(ds.open()).compute()
    ref = query(ds.pdf)
    dec = [c for c in ref.columns if c in DECIMAL_COLUMNS]
    assert_same(
        got.drop(columns=dec),
        ref.drop(columns=dec),
        hive=ds.hive,
        exact=True,
        reset_index=True,
        column_order=False,
    )


def test_filter_on_row_group_statistics_range(catalog):
    """Rows selected by an id range (prunable by row-group statistics) are still exact."""
    ds = catalog["rowgroups"]
    q = lambda d: d[(d.id >= 790) & (d.id < 1210)][["id", "x", "name"]]  # noqa: E731
    assert_same(q(ds.open()).compute(), q(ds.pdf), exact=True, reset_index=True)
