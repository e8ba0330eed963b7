"""groupby(...).agg(subtotals=True): ROLLUP, like pivot_table(margins=True).

For keys [k1, k2] the result holds the normal groups, then after the rows of each k1 value a
subtotal row (k1, "All"), and last the grand total ("All", "All"). The index levels are object
dtype. With dropna=True rows whose keys are missing are left out everywhere (also from the
totals): this suite's reading of "NaN keys excluded when dropna=True".
"""

import pandas as pd
import pytest

from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


def rollup(ref: pd.DataFrame, keys, cols, how, margins_name="All", dropna=True) -> pd.DataFrame:
    """pandas reference of ROLLUP(keys) with aggregation ``how`` over ``cols``."""
    data = ref.dropna(subset=keys) if dropna else ref
    total = object()  # placeholder for margins_name while ordering
    rows = {}
    for level in range(len(keys), -1, -1):
        if level == 0:
            vals = getattr(data[cols], how)()
            rows[(total,) * len(keys)] = vals
            continue
        part = getattr(data.groupby(keys[:level], sort=True, dropna=dropna)[cols], how)()
        for idx, vals in part.iterrows():
            idx = idx if isinstance(idx, tuple) else (idx,)
            rows[tuple(idx) + (total,) * (len(keys) - level)] = vals
    # order: by key values, each level's total after the values it totals
    order = []
    for k in keys:
        uniq = pd.Index(data[k].dropna().unique()).sort_values()
        order.append({v: j for j, v in enumerate(uniq)})
    na_rank = max((len(o) for o in order), default=0)

    def sort_key(t):
        out = []
        for i, v in enumerate(t):
            if v is total:
                out.append((2, 0))
            elif pd.isna(v):
                out.append((1, na_rank))
            else:
                out.append((0, order[i][v]))
        return out

    tuples = sorted(rows, key=sort_key)
    frame = pd.DataFrame([rows[t] for t in tuples], columns=cols)
    for c in cols:  # iterrows loses int dtypes; restore them from the plain groupby
        frame[c] = frame[c].astype(getattr(data.groupby(keys)[cols], how)()[c].dtype)
    levels = [
        pd.Index([margins_name if t[i] is total else t[i] for t in tuples], dtype=object, name=k)
        for i, k in enumerate(keys)
    ]
    frame.index = levels[0] if len(keys) == 1 else pd.MultiIndex.from_arrays(levels)
    return frame


def _check(got, exp, exact):
    got = got.compute()
    idx = got.index
    levels = [idx.get_level_values(i) for i in range(idx.nlevels)]
    assert all(lv.dtype == object for lv in levels), [lv.dtype for lv in levels]
    assert_same(got, exp, exact=exact)


@pytest.mark.parametrize("how", ["sum", "mean", "count"])
def test_subtotals_two_keys(dir6, how):
    df, ref = dir6.open(), dir6.pdf
    got = getattr(df.groupby(["origin", "ki"])[["x", "n"]], how)(subtotals=True)
    exp = rollup(ref, ["origin", "ki"], ["x", "n"], how)
    assert exp.index[-1] == ("All", "All") and exp.index[5] == ("EWR", "All")
    _check(got, exp, exact=how == "count")


def test_subtotals_one_key(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = df.groupby(["ki"])[["x"]].sum(subtotals=True)
    exp = rollup(ref, ["ki"], ["x"], "sum")
    assert list(exp.index)[-1] == "All"
    _check(got, exp, exact=False)


def test_subtotals_three_keys(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = df.groupby(["origin", "flag", "ki"])[["n"]].sum(subtotals=True)
    _check(got, rollup(ref, ["origin", "flag", "ki"], ["n"], "sum"), exact=True)


def test_subtotals_with_missing_keys(dir6):
    """carrier and kf have missing values: those rows are in no group and no total."""
    df, ref = dir6.open(), dir6.pdf
    got = df.groupby(["carrier", "kf"])[["x", "n"]].sum(subtotals=True)
    _check(got, rollup(ref, ["carrier", "kf"], ["x", "n"], "sum"), exact=False)


def test_subtotals_margins_name_and_filter(catalog):
    ds = catalog["hive"]
    df, ref = ds.open(), ds.pdf
    got = df[df.n > 100].groupby(["origin", "ki"])[["y"]].sum(subtotals=True, margins_name="Total")
    exp = rollup(ref[ref.n > 100], ["origin", "ki"], ["y"], "sum", margins_name="Total")
    _check(got, exp, exact=False)
