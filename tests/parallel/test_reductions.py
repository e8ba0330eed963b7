"""Whole-column and whole-frame reductions, describe(), value_counts(), and the empty case."""

import statistics

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.compare import ILL_RTOL, assert_same, canon_value_counts, materialize
from tests.helpers.datasets import ALL
from tests.helpers.mpi import timeout

pytestmark = timeout(60)

# name -> (query, exact?)
SCALARS = {
    "x.sum": (lambda d: d.x.sum(), False),
    "x.mean": (lambda d: d.x.mean(), False),
    "x.count": (lambda d: d.x.count(), True),
    "x.min": (lambda d: d.x.min(), True),
    "x.max": (lambda d: d.x.max(), True),
    "x.var": (lambda d: d.x.var(), False),
    "x.std": (lambda d: d.x.std(), False),
    "y.var": (lambda d: d.y.var(), False),
    "n.sum": (lambda d: d.n.sum(), True),
    "n.mean": (lambda d: d.n.mean(), False),
    "n.min": (lambda d: d.n.min(), True),
    "n.max": (lambda d: d.n.max(), True),
    "ki.nunique": (lambda d: d.ki.nunique(), True),
    "kf.nunique": (lambda d: d.kf.nunique(), True),  # NaN not counted
    "(n>500).sum": (lambda d: (d.n > 500).sum(), True),
    "(x>10).mean": (lambda d: (d.x > 10).mean(), False),
    "noisy.mean": (lambda d: d.noisy.mean(), False),
}


@pytest.mark.parametrize("dataset", ALL, indirect=True)
def test_scalar_reductions_one_pass(dataset):
    df, ref = dataset.open(), dataset.pdf
    names = list(SCALARS)
    results = hf.compute(*[SCALARS[k][0](df) for k in names])
    assert len(results) == len(names)
    for k, r in zip(names, results):
        q, exact = SCALARS[k]
        assert_same(r, q(ref), exact=exact, msg=k)


@pytest.mark.parametrize("dataset", ["dir6", "empty_parts"], indirect=True)
def test_typed_reductions(dataset):
    df, ref = dataset.open(), dataset.pdf
    queries = {
        "price.sum": lambda d: d.price.sum(),  # decimal -> float64
        "price.mean": lambda d: d.price.mean(),
        "price.min": lambda d: d.price.min(),
        "price.max": lambda d: d.price.max(),
        "price.count": lambda d: d.price.count(),
        "day.min": lambda d: d.day.min(),
        "day.max": lambda d: d.day.max(),
        "ts.min": lambda d: d.ts.min(),
        "ts.max": lambda d: d.ts.max(),
        "tsz.max": lambda d: d.tsz.max(),
        "nn.sum": lambda d: d.nn.sum(),  # int with nulls
        "nn.count": lambda d: d.nn.count(),
        "nn.min": lambda d: d.nn.min(),
        "nn.mean": lambda d: d.nn.mean(),
        "carrier.nunique": lambda d: d.carrier.nunique(),
        "carrier.count": lambda d: d.carrier.count(),
        "name.nunique": lambda d: d.name.nunique(),
        "cat.nunique": lambda d: d.cat.nunique(),
        "flag.sum": lambda d: d.flag.sum(),
    }
    names = list(queries)
    results = hf.compute(*[queries[k](df) for k in names])
    for k, r in zip(names, results):
        exp = queries[k](ref)
        assert_same(r, exp, msg=k)
        if isinstance(exp, pd.Timestamp):
            assert materialize(r).tz == exp.tz, k


@pytest.mark.parametrize("dataset", ["dir6", "h5_columns"], indirect=True)
def test_frame_reductions(dataset):
    """Frame reductions over numeric columns give a pandas Series indexed by column name."""
    hows = ["sum", "mean", "min", "max", "count", "std", "var"]
    cols = ["x", "y", "n"]
    sel = dataset.open()[cols]
    results = hf.compute(*[getattr(sel, how)() for how in hows])
    for how, got in zip(hows, results):
        exp = getattr(dataset.pdf[cols], how)()
        # the index holds column labels: object or str dtype are both fine
        assert_same(got, exp, exact=how in ("min", "max", "count"), check_index_type=False, msg=how)


def test_reductions_when_everything_is_filtered_out(dir6):
    df, ref = dir6.open(), dir6.pdf
    e, r = df[df.n > 10**6], ref[ref.n > 10**6]
    queries = {
        "x.sum": lambda d: d.x.sum(),  # 0.0
        "n.sum": lambda d: d.n.sum(),  # 0
        "x.mean": lambda d: d.x.mean(),  # NaN
        "x.count": lambda d: d.x.count(),  # 0
        "x.min": lambda d: d.x.min(),  # NaN
        "x.var": lambda d: d.x.var(),  # NaN
        "x.std": lambda d: d.x.std(),
        "x.nunique": lambda d: d.x.nunique(),  # 0
        "len": lambda d: d.len() if hasattr(d, "len") else len(d),
        "frame.sum": lambda d: d[["x", "n"]].sum(),  # zeros
        "frame.mean": lambda d: d[["x", "n"]].mean(),  # NaNs
    }
    names = list(queries)
    results = hf.compute(*[queries[k](e) for k in names])
    for k, got in zip(names, results):
        assert_same(got, queries[k](r), msg=k)


def naive_var(values) -> float:
    """The textbook one-pass formula (sum of squares): useless on 1e9 + N(0, 1)."""
    a = np.asarray(values, dtype="float64")
    return float((np.sum(a * a) - np.sum(a) ** 2 / len(a)) / (len(a) - 1))


def test_var_std_ill_conditioned(dir6):
    """1e9 + N(0,1): a naive sum-of-squares variance is off by orders of magnitude."""
    df, ref = dir6.open(), dir6.pdf
    exact_var = float(statistics.variance(ref.noisy.tolist()))  # exact rational arithmetic
    assert abs(naive_var(ref.noisy) - exact_var) > 0.01 * exact_var  # the data is nasty enough
    var, std = hf.compute(df.noisy.var(), df.noisy.std())
    assert var == pytest.approx(exact_var, rel=ILL_RTOL)
    assert std == pytest.approx(np.sqrt(exact_var), rel=ILL_RTOL)


@pytest.mark.parametrize("dataset", ["dir6", "h5_compound"], indirect=True)
def test_describe(dataset):
    df, ref = dataset.open(), dataset.pdf
    assert_same(df.x.describe().compute(), ref.x.describe())
    assert_same(df[["x", "y", "n"]].describe().compute(), ref[["x", "y", "n"]].describe())


VALUE_COUNTS = {
    "str": lambda d: d.carrier.value_counts(),
    "str_dropna_false": lambda d: d.carrier.value_counts(dropna=False),
    "float_key_dropna_false": lambda d: d.kf.value_counts(dropna=False),
    "int": lambda d: d.ki.value_counts(),
    "many_ties": lambda d: d.name.value_counts(),
    "after_filter": lambda d: d[d.n > 700].origin.value_counts(),
}


def test_value_counts(dir6, catalog):
    for name, q in VALUE_COUNTS.items():
        got = materialize(q(dir6.open()))
        assert_same(canon_value_counts(got), canon_value_counts(q(dir6.pdf)), exact=True, msg=name)
    h5 = catalog["h5_pandas"]
    got = materialize(h5.open().carrier.value_counts())
    assert_same(
        canon_value_counts(got), canon_value_counts(h5.pdf.carrier.value_counts()), exact=True, msg="hdf5"
    )
