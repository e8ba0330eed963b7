"""Unit tests of the partial-table machinery: the shuffle's routing hash depends on key
values only, and combines of partials keep pandas' NaN for ±inf."""

import numpy as np
import pandas as pd
import pytest

from hpcframe import aggregations as A
from hpcframe.execute import _route

SAME_VALUES = {
    "bool_vs_object_with_none": (
        pd.Series([False, True, False]),
        pd.Series([False, True, False], dtype=object),
    ),
    "int_vs_float": (pd.Series([1, -3, 2**40]), pd.Series([1.0, -3.0, 2.0**40])),
    "category_vs_str": (
        pd.Series(["a", "b", "a"], dtype="category"),
        pd.Series(["a", "b", "a"], dtype="str"),
    ),
    "str_vs_object": (pd.Series(["a", "b", "c"], dtype="str"), pd.Series(["a", "b", "c"], dtype=object)),
    "zero_signs": (pd.Series([0.0, 1.0]), pd.Series([-0.0, 1.0])),
    "missing_kinds": (pd.Series([None, None], dtype=object), pd.Series([np.nan, np.nan])),
    "datetime_units": (
        pd.Series(pd.to_datetime(["2020-01-01", "2021-05-06"]).as_unit("ms")),
        pd.Series(pd.to_datetime(["2020-01-01", "2021-05-06"]).as_unit("ns")),
    ),
}


@pytest.mark.parametrize("name", sorted(SAME_VALUES))
@pytest.mark.parametrize("size", [2, 3, 4, 7])
def test_route_depends_on_the_value_not_the_dtype(name, size):
    a, b = SAME_VALUES[name]
    ra = _route(pd.DataFrame({"k": a, "j": [1] * len(a)}), ["k", "j"], size)
    rb = _route(pd.DataFrame({"k": b, "j": [1.0] * len(b)}), ["k", "j"], size)
    assert ra.tolist() == rb.tolist()


def test_route_nulls_meet_across_dtypes():
    keys = [
        pd.Series([None, True], dtype=object),
        pd.Series([np.nan, 1.0]),
        pd.Series([None, "x"], dtype="str"),
        pd.Series([pd.NaT, pd.Timestamp(0)]),
    ]
    routes = {_route(pd.DataFrame({"k": k}), ["k"], 5)[0] for k in keys}
    assert len(routes) == 1


def test_route_spreads_distinct_keys():
    r = _route(pd.DataFrame({"k": np.arange(1000)}), ["k"], 4)
    assert set(np.bincount(r, minlength=4)) != {0} and min(np.bincount(r)) > 150


def _partial(values, inters):
    df = pd.DataFrame({A.ALL_KEY: np.zeros(len(values), dtype="int8"), "x": values})
    return A.chunk_partial(df, [A.ALL_KEY], inters, True)


@pytest.mark.parametrize(
    "blocks",
    [
        [[1.0, np.inf], [-np.inf, 2.0]],
        [[np.inf, -np.inf], [3.0]],
        [[5.0], [np.inf, -np.inf, 1.0], [2.0]],
        [[np.inf], [np.nan], [4.0]],
        [[-np.inf, 1.0], [-np.inf]],
    ],
)
def test_combined_sum_mean_var_match_pandas_with_inf(blocks):
    specs = [("x", "sum"), ("x", "mean"), ("x", "var"), ("x", "std")]
    inters = A.needed(specs)
    table = None
    for b in blocks:
        table = A.combine_partials(table, _partial(np.array(b), inters), [A.ALL_KEY])
    got = [s.iloc[0] for s in A.finalize_columns(table, specs)]
    whole = pd.Series(np.concatenate([np.array(b) for b in blocks]))
    exp = [whole.sum(), whole.mean(), whole.var(), whole.std()]
    for g, e, (_, how) in zip(got, exp, specs):
        assert (np.isnan(g) and np.isnan(e)) or g == pytest.approx(e), (how, g, e)


def test_mean_of_int64_near_the_limit_does_not_wrap():
    values = np.array([2**62, 2**62 + 5, 2**62 + 9], dtype=np.int64)
    specs = [("x", "mean"), ("x", "sum")]
    inters = A.needed(specs)
    table = A.combine_partials(_partial(values[:2], inters), _partial(values[2:], inters), [A.ALL_KEY])
    mean, total = (s.iloc[0] for s in A.finalize_columns(table, specs))
    assert mean == pytest.approx(pd.Series(values).mean(), rel=1e-15)
    assert total == pd.Series(values).sum()  # wraps around, as pandas' int64 sum does


def test_quantile_from_counts_is_numpys_linear_interpolation():
    from hpcframe.describe import quantile_from_counts

    rng = np.random.default_rng(5)
    for _ in range(2000):
        s = pd.Series(rng.choice([1.0, 2.0, 3.5, np.inf, -np.inf, 1e300, -1e-300], rng.integers(1, 12)))
        for q in (0.25, 0.5, 0.75):
            got = quantile_from_counts(s.value_counts().sort_index(), q)
            exp = s.quantile(q)
            assert (np.isnan(got) and np.isnan(exp)) or got == exp, (s.tolist(), q, got, exp)


def _distinct_pairs_by_lexsort(g, v):
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    new = np.ones(len(g), dtype=bool)
    if len(g) > 1:
        new[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    return g[new], v[new]


@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint8", "uint64", "float64", "bool"])
@pytest.mark.parametrize("n", [0, 1, 2, 500])
def test_distinct_pairs_equal_the_lexsort_of_both_arrays(dtype, n):
    """``_distinct_pairs`` (integers: one sort of a combined int64 code; others: lexsort)
    gives the distinct (group, value) pairs sorted by group then value, in the input
    dtypes, for any range of values (int64 and uint64 extremes: the lexsort path)."""
    rng = np.random.default_rng(n)
    g = rng.integers(0, 9, n).astype(np.int64)
    if dtype == "bool":
        v = rng.random(n) < 0.5
    elif dtype == "float64":
        v = rng.choice([-0.0, 0.0, 1.5, -2.0], n)
    else:
        info = np.iinfo(dtype)
        v = rng.integers(info.min, info.max, n, endpoint=True, dtype=dtype)
        if n > 1:
            v[:2] = [info.min, info.max]
    for vals in (v, v % 7 if dtype not in ("bool", "float64") else v):
        got = A._distinct_pairs(g, vals)
        want = _distinct_pairs_by_lexsort(g, vals)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
