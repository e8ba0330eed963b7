"""Exact per-group order statistics (issue 10), compared with pandas: ``g.median()``,
``g[col].median()``, ``g.quantile(q)`` (a number or a list), ``median`` and functions of a
group's values inside ``agg`` together with the other aggregations (db-benchmark q6), the
per-group correlation ``g.x.corr(g.y)`` and ``apply`` (db-benchmark q9), and
``describe(percentiles=...)``.

Rows are shuffled by the keys and pandas computes every whole group, so the answers are
pandas' own (bit for bit) on any number of ranks. The results are lazy group results (a
Series or a Frame indexed by the keys: filter, assign, ``reset_index``) when their columns
are plain names; a result with MultiIndex columns is computed only.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import exact, materialize
from tests.helpers.frames import (
    assert_bits,
    by_index_values,
    keyed_frames,
    local,
    same,
    spmd_settings,
)

pytestmark = mpi.timeout(120)
PARTITIONS = 5


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", PARTITIONS)


STATS = {
    "x.median": lambda g: g.x.median(),
    "n.median": lambda g: g.n.median(),
    "frame.median": lambda g: g[["x", "n", "y"]].median(),
    "x.quantile": lambda g: g.x.quantile(0.9),
    "nn.quantile_list": lambda g: g.nn.quantile([0.75, 0.1, 0.5]),
    "frame.quantile": lambda g: g[["x", "n"]].quantile(0.25),
    "frame.quantile_list": lambda g: g[["x", "n"]].quantile([0.2, 0.8]),
    "frame.quantile_lower": lambda g: g[["x", "n"]].quantile(0.3, interpolation="lower"),
    "named": lambda g: g.agg(
        med=("x", "median"),
        sd=("x", "std"),
        total=("n", "sum"),
        rows=("x", "size"),
        p90=("y", lambda s: s.quantile(0.9)),
    ),
    "dict_lists": lambda g: g.agg({"x": ["median", "std"], "n": ["min", "median"]}),
    "dict": lambda g: g.agg({"x": "median", "n": "max"}),
    "list": lambda g: g.x.agg(["median", "mean"]),
    "corr": None,  # see CORR below
}

KEYSETS = {
    "str_with_nulls": (["carrier"], True, True),
    "str_with_nulls_dropna_false": (["carrier"], False, True),
    "two_keys": (["origin", "ki"], True, True),
    "two_keys_unsorted": (["origin", "ki"], True, False),
    "categorical": (["cat"], True, True),
    "float_with_nan_dropna_false": (["kf"], False, True),
}


@pytest.mark.parametrize("keyset", list(KEYSETS))
@pytest.mark.parametrize("as_index", [True, False])
def test_order_statistics(dir6, keyset, as_index):
    keys, dropna, sort = KEYSETS[keyset]
    df, ref = dir6.open(), dir6.pdf
    names = [k for k in STATS if STATS[k] is not None]
    if not as_index:  # pandas' as_index=False shapes of these are covered once
        names = ["x.median", "frame.median", "nn.quantile_list", "named", "dict_lists"]
    kw = dict(dropna=dropna, sort=sort, as_index=as_index)
    got = hf.compute(*[STATS[k](df.groupby(keys, **kw)) for k in names])
    for k, g in zip(names, got):
        exp = STATS[k](ref.groupby(keys, **kw))
        exact(g, exp, msg=f"{keyset} as_index={as_index} {k}")


def test_lazy_group_results(dir6):
    """A median is a lazy group result: filter it, compute with it, reset its index."""
    df, ref = dir6.open(), dir6.pdf

    def q(d):
        g = d.groupby(["origin", "ki"])
        m = g.x.median()
        f = g.agg(med=("x", "median"), sd=("x", "std"), n=("n", "sum"))
        return (
            m[m > 10],
            m * 2,
            m.sum(),
            f[f.n > 1000],
            f.assign(r=f.med / f.sd),
            f.reset_index(),
            f.reset_index().groupby("origin").med.max(),
        )

    got = hf.compute(*q(df))
    exp = q(ref)
    for i, (g, e) in enumerate(zip(got, exp)):
        if i == 2:
            assert_bits(float(g), float(e), msg="sum of medians")
            continue
        same(g, e, msg=f"case {i}")
    qs = df.groupby("carrier").x.quantile([0.1, 0.9])
    exact(qs[qs > 5].compute(), (lambda s: s[s > 5])(ref.groupby("carrier").x.quantile([0.1, 0.9])))


CORR = {
    "corr": lambda d: d.groupby(["origin", "ki"]).x.corr(d.groupby(["origin", "ki"]).y),
    "corr_by_name": lambda d: d.groupby("carrier").x.corr("n"),
}


def test_after_sort_values(dir6):
    """Functions of the group's values see its rows in the sorted order; ``sort=False``
    orders the groups by their first row in that order."""
    df, ref = dir6.open(), dir6.pdf
    s = df.sort_values(["ki", "y"], ascending=[False, True])
    rs = ref.sort_values(["ki", "y"], ascending=[False, True], kind="stable")

    def q(d, **kw):
        return d.groupby(["carrier"], **kw).agg(first=("x", lambda v: v.iloc[0]), m=("x", "median"))

    got = hf.compute(q(s), q(s, sort=False), s.groupby("origin", sort=False).n.quantile([0.5, 0.1]))
    exact(got[0], q(rs), "sorted keys")
    exact(got[1], q(rs, sort=False), "sort=False")
    exact(got[2], rs.groupby("origin", sort=False).n.quantile([0.5, 0.1]), "sort=False quantiles")


def test_corr_and_dbbench_q6_q9(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = hf.compute(*[f(df) for f in CORR.values()])
    exact(got[0], ref.groupby(["origin", "ki"]).apply(lambda d: d.x.corr(d.y)).rename("x"), "corr")
    exact(got[1], ref.groupby("carrier").apply(lambda d: d.x.corr(d.n)).rename("x"), "corr by name")

    def q6(d, **kw):
        return d.groupby(["origin", "ki"], **kw).agg(median_v3=("x", "median"), sd_v3=("x", "std"))

    def r2(g):
        return pd.Series({"r2": g["x"].corr(g["y"]) ** 2})

    def q9(d, **kw):
        return d[["origin", "ki", "x", "y"]].groupby(["origin", "ki"], **kw).apply(r2)

    kw = dict(sort=False, observed=True, dropna=False)  # db-benchmark's pandas solution
    hkw = dict(sort=False, dropna=False)
    got = hf.compute(q6(df), q9(df), q6(df, **hkw), q9(df, **hkw))
    exact(got[0], q6(ref), "q6")
    exact(got[1], q9(ref), "q9")
    exact(got[2], q6(ref, **kw), "q6 as db-benchmark")
    exact(got[3], q9(ref, **kw), "q9 as db-benchmark")


NASTY = {
    "str_median_v": lambda d: d.groupby("s").v.median(),
    "str_dropna_false_quantile_big": lambda d: d.groupby("s", dropna=False).big.quantile([0.5, 1.0]),
    "giant_median_f32": lambda d: d.groupby("one").f32.median(),
    "giant_quantile_n": lambda d: d.groupby("one").n.quantile(0.37),
    "bool_key_median_n": lambda d: d.groupby("kb").n.median(),
    "bool_key_dropna_false_named": lambda d: d.groupby("kb", dropna=False).agg(
        m=("v", "median"), n=("n", "max")
    ),
    "big_key_median_v": lambda d: d.groupby("big").v.median(),
    "f32_key_dropna_false_median": lambda d: d.groupby("f32", dropna=False)[["v", "n"]].median(),
    "date_cat_median_tz": lambda d: d.groupby(["d", "cat"]).tz.median(),
    "cat_median_d": lambda d: d.groupby("cat").d.median(),
    "tz_key_quantile_v": lambda d: d.groupby("tz").v.quantile([0.1, 0.9]),
    "s_named": lambda d: d.groupby("s").agg(m=("v", "median"), s=("big", "sum"), q=("f32", "median")),
    "s_median_inf": lambda d: d.assign(w=d.v * np.inf).groupby("s").w.median(),
}


def test_nasty(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    names = list(NASTY)
    got = hf.compute(*[NASTY[k](df) for k in names])
    for k, g in zip(names, got):
        exp = NASTY[k](ref)
        if k.startswith("bool_key"):  # pandas' order of bool keys with missing values
            g, exp = by_index_values(materialize(g)), by_index_values(exp)
        exact(g, exp, msg=k)


def test_empty_and_more_ranks_than_partitions(dir6, cfg):
    ref = dir6.pdf
    cfg(partitions=2)
    df = hf.from_pandas(ref, npartitions=1)
    e, re_ = df[df.n < 0], ref[ref.n < 0]
    names = ["x.median", "frame.median", "nn.quantile_list", "named"]
    got = hf.compute(
        *[STATS[k](df.groupby("carrier")) for k in names], *[STATS[k](e.groupby("carrier")) for k in names]
    )
    for k, g in zip(names, got[: len(names)]):
        exact(g, STATS[k](ref.groupby("carrier")), msg=f"one partition {k}")
    for k, g in zip(names, got[len(names) :]):
        exp = STATS[k](re_.groupby("carrier"))
        g = materialize(g)
        assert len(g) == 0, k
        assert type(g) is type(exp), k
        if isinstance(exp, pd.DataFrame):
            assert list(g.columns) == list(exp.columns), k
            assert list(g.dtypes) == list(exp.dtypes), k
        else:
            assert g.dtype == exp.dtype, k
        assert list(g.index.names) == list(exp.index.names), k


def test_all_keys_missing(dir6):
    df, ref = dir6.open(), dir6.pdf
    f, rf = df[df.carrier.isna()], ref[ref.carrier.isna()]
    got = hf.compute(f.groupby("carrier").x.median(), f.groupby("carrier", dropna=False).x.median())
    assert len(got[0]) == 0
    exact(got[1], rf.groupby("carrier", dropna=False).x.median(), "dropna=False")


def test_bit_identical_to_serial_engine(dir6, nasty, cfg):
    cfg(partitions=5)
    df = dir6.open()
    ndf = hf.read_parquet(nasty[0])
    queries = {
        "median": df.groupby(["origin", "ki"]).x.median(),
        "named": STATS["named"](df.groupby("carrier", dropna=False)),
        "quantile": df.groupby("cat").y.quantile([0.1, 0.5]),
        "nasty": NASTY["s_named"](ndf),
    }
    got = hf.compute(*queries.values())
    for (k, q), g in zip(queries.items(), got):
        assert_bits(g, local(q), msg=k)


def test_errors(dir6):
    df = dir6.open()
    with pytest.raises(ValueError, match="outside"):
        df.groupby("carrier").x.quantile(1.5)
    with pytest.raises(TypeError, match="median"):
        df.groupby("carrier")[["name"]].median()  # strings: pandas refuses
    with pytest.raises(TypeError, match="corr"):
        df.groupby("carrier").x.corr()
    with pytest.raises(hf.ColumnNotFoundError):
        df.groupby("carrier").agg(m=("nope", "median"))


# --------------------------------------------------------------------------------------------
# describe(percentiles=...)
# --------------------------------------------------------------------------------------------
PERCENTILES = [None, [0.1, 0.9], [], [0.05, 0.123456, 1.0, 0.0], [0.5]]


def test_describe_percentiles(dir6, nasty):
    df, ref = dir6.open(), dir6.pdf
    cols = ["x", "n", "nn", "y", "kf"]
    lazy = [df[cols].describe(percentiles=p) for p in PERCENTILES]
    lazy += [df.x.describe(percentiles=p) for p in PERCENTILES]
    ndf, nref = hf.read_parquet(nasty[0]), nasty[1]
    lazy += [ndf[["big", "f32", "v"]].describe(percentiles=[0.01, 0.99])]
    got = hf.compute(*lazy)
    exp = [ref[cols].describe(percentiles=p) for p in PERCENTILES]
    exp += [ref.x.describe(percentiles=p) for p in PERCENTILES]
    exp += [nref[["big", "f32", "v"]].describe(percentiles=[0.01, 0.99])]
    for i, (g, e) in enumerate(zip(got, exp)):
        if i == len(exp) - 1:  # (describe's std of float32 is computed in float64)
            same(g[["big", "v"]], e[["big", "v"]], msg=f"describe case {i}")
        else:
            same(g, e, msg=f"describe case {i}")
        g = materialize(g)
        labels = [x for x in e.index if x.endswith("%")]
        exact(g.loc[labels], e.loc[labels], msg=f"describe case {i}: exact percentiles")
    with pytest.raises(ValueError, match="duplicates"):
        df.describe(percentiles=[0.5, 0.5])
    with pytest.raises(ValueError, match="between 0 and 1"):
        df.x.describe(percentiles=[50])


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_GROUP_QUANTILE_EXAMPLES", "5"))

if st is not None:
    frames = keyed_frames([np.nan, -1.5, 0.0, 2.25, 1e15, 3.0, np.inf, -np.inf])
    _SETTINGS = spmd_settings(EXAMPLES)
    HOW = {
        "median": lambda g: g.v.median(),
        "quantile": lambda g: g.v.quantile(0.3),
        "quantile_list": lambda g: g.v.quantile([0.9, 0.2]),
        "named": lambda g: g.agg(m=("v", "median"), s=("v", "sum"), c=("v", "count")),
    }

    @_SETTINGS
    @given(
        frame=frames,
        keys=st.sampled_from([["k"], ["i"], ["k", "i"]]),
        how=st.sampled_from(sorted(HOW)),
        dropna=st.booleans(),
        sort=st.booleans(),
    )
    def test_order_statistics_hypothesis(frame, keys, how, dropna, sort):
        pdf, nparts = frame
        df = hf.from_pandas(pdf, npartitions=nparts)
        got = HOW[how](df.groupby(keys, dropna=dropna, sort=sort)).compute()
        exp = HOW[how](pdf.groupby(keys, dropna=dropna, sort=sort))
        msg = f"{keys} {how} dropna={dropna} sort={sort} npartitions={nparts}"
        if len(exp) == 0:
            assert len(got) == 0, msg
        else:
            exact(got, exp, msg=msg)


MIXED = {
    "x.median": lambda g: g.x.median(),
    "x.quantile": lambda g: g.x.quantile(0.3),
    "frame.quantile_list": lambda g: g[["x", "i"]].quantile([0.25, 0.75]),
    "named": lambda g: g.agg(med=("x", "median"), top=("x", "max")),
    "i.median": lambda g: g.i.median(),
}


@pytest.mark.parametrize("dropna", [True, False])
@pytest.mark.parametrize("sort", [True, False])
def test_categorical_key_with_other_categories_in_every_file(mixed_categories, dropna, sort):
    """A dictionary key whose files have other category lists (in another order, with unused
    ones; an empty file, a file where every key is missing) stays categorical with pandas'
    categories, the union in file order: a partition's rows come from several blocks and
    ranks, and were stacked as ``str``."""
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    names = list(MIXED)
    got = hf.compute(*[MIXED[k](df.groupby("k", dropna=dropna, sort=sort)) for k in names])
    for k, g in zip(names, got):
        exp = MIXED[k](ref.groupby("k", dropna=dropna, sort=sort))
        exact(g, exp, msg=f"{k} dropna={dropna} sort={sort}")
    two = df.groupby(["c", "k"], dropna=dropna, sort=sort).x.median()
    exact(two, ref.groupby(["c", "k"], dropna=dropna, sort=sort).x.median(), msg=f"two keys dropna={dropna}")
