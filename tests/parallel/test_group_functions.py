"""Operations that need all the rows of a group (issue 9), compared with pandas:
``groupby().apply(fn)``, ``groupby().col.transform(name or fn)``, ``drop_duplicates(subset,
keep)``.

The reference is plain pandas on the same data with a ``RangeIndex``: hpcframe passes ``fn``
the group's rows as a pandas object indexed by the rows' positions in the frame that is
grouped (pandas 3 leaves the grouping columns out of it), so ``ref.groupby(k).apply(fn)`` is
the exact expected result, index and order included. ``transform`` results line up with the
frame's rows, so they can be assigned to it. A frame made by a filter computes with a fresh
``RangeIndex`` (so the reference of a filtered frame is ``ref[mask].reset_index(drop=True)``).

A user function that raises on one group fails every rank with :class:`hf.ComputeError`
naming the rank and the group.

Hypothesis drives ``drop_duplicates`` and ``transform`` over a few small random frames
(derandomized, no shrinking under MPI, so that every rank draws the same examples).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import materialize
from tests.helpers.frames import (
    assert_bits,
    keyed_frames,
    local,
    same,
    spmd_settings,
)

pytestmark = mpi.timeout(120)
# hash partitions of grouped/shuffled frames in these tests, unless a test sets another value:
# more than the ranks (some hold two, with 3 ranks), far fewer than the default 32, whose
# per-partition overhead would dominate on data this small (tests of the default set it)
PARTITIONS = 5


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", PARTITIONS)


# --------------------------------------------------------------------------------------------
# groupby().apply
# --------------------------------------------------------------------------------------------
APPLY_FNS = {
    # the example: needs the group's rows in dataset order
    "scalar_diff_mean": lambda g: g.sort_values("ts").x.diff().mean(),
    "int_scalar": lambda g: int(g.n.sum()),
    "series": lambda g: pd.Series({"rows": len(g), "xsum": g.x.sum(), "nmax": g.n.max()}),
    "frame_top2": lambda g: g.nlargest(2, "n")[["id", "n", "x"]],
    "frame_same_rows": lambda g: g[["id", "x"]].assign(c=g.x - g.x.mean()),
    "frame_typed_columns": lambda g: g.head(3)[["day", "tsz", "cat", "price", "flag"]],
}

APPLY_KEYS = {
    "str_with_nulls": (["carrier"], True),
    "str_with_nulls_dropna_false": (["carrier"], False),
    "two_keys": (["origin", "ki"], True),
    "categorical": (["cat"], True),
    "float_with_nan_dropna_false": (["kf"], False),
}


# every function on the first key set, a few on the others (the suite runs 5 times in CI)
APPLY_CASES = {
    "str_with_nulls": list(APPLY_FNS),
    "str_with_nulls_dropna_false": ["scalar_diff_mean", "frame_top2"],
    "two_keys": ["series", "frame_same_rows"],
    "categorical": ["int_scalar", "frame_top2"],
    "float_with_nan_dropna_false": ["series", "frame_typed_columns"],
}


@pytest.mark.parametrize("keyset", list(APPLY_KEYS))
def test_apply_shapes(dir6, keyset):
    keys, dropna = APPLY_KEYS[keyset]
    df, ref = dir6.open(), dir6.pdf
    fns = {k: APPLY_FNS[k] for k in APPLY_CASES[keyset]}
    names = list(fns)
    got = hf.compute(*[df.groupby(keys, dropna=dropna).apply(fns[k]) for k in names])
    for k, g in zip(names, got):
        exp = ref.groupby(keys, dropna=dropna).apply(fns[k])
        same(g, exp, msg=f"{keyset} {k}")


def test_apply_on_filtered_and_selected_frames(dir6):
    df, ref = dir6.open(), dir6.pdf
    # as pandas: the rows of a filtered frame keep their labels (positions in the whole frame)
    f, rf = df[df.n > 500], ref[ref.n > 500]
    s, rs = df[["carrier", "x", "n", "id"]], ref[["carrier", "x", "n", "id"]]
    cases = {
        "filtered_scalar": (f.groupby("carrier").apply(lambda g: g.x.max() - g.x.min()), rf),
        "filtered_frame": (f.groupby("origin").apply(lambda g: g.nsmallest(2, "x")[["id", "x"]]), rf),
        "selected": (s.groupby("carrier").apply(lambda g: g.n.mean()), rs),
    }
    refs = {
        "filtered_scalar": lambda r: r.groupby("carrier").apply(lambda g: g.x.max() - g.x.min()),
        "filtered_frame": lambda r: r.groupby("origin").apply(lambda g: g.nsmallest(2, "x")[["id", "x"]]),
        "selected": lambda r: r.groupby("carrier").apply(lambda g: g.n.mean()),
    }
    got = hf.compute(*[c[0] for c in cases.values()])
    for (k, (_, r)), g in zip(cases.items(), got):
        same(g, refs[k](r), msg=k)


NASTY_APPLY = {
    "giant_group": (["one"], True),
    "str_with_nulls_dropna_false": (["s"], False),
    "bool_with_nulls": (["kb"], True),
    "int_near_2_63": (["big"], True),
    "float32_dropna_false": (["f32"], False),
    "date_and_categorical": (["d", "cat"], True),
}
NASTY_FNS = {
    "int_scalar": lambda g: g.n.max(),
    "float_scalar": lambda g: g.v.sum(),
    "frame_head": lambda g: g.head(2)[["id", "tz", "dec", "v"]],
    "series": lambda g: pd.Series({"rows": float(len(g)), "v": g.v.mean()}),
}


@pytest.mark.parametrize("keyset", list(NASTY_APPLY))
def test_apply_nasty_keys(nasty, keyset):
    path, ref = nasty
    keys, dropna = NASTY_APPLY[keyset]
    df = hf.read_parquet(path)
    i = list(NASTY_APPLY).index(keyset)
    names = [list(NASTY_FNS)[i % 4], list(NASTY_FNS)[(i + 1) % 4]]  # two per key set, each fn 3 times
    got = hf.compute(*[df.groupby(keys, dropna=dropna).apply(NASTY_FNS[k]) for k in names])
    for k, g in zip(names, got):
        exp = ref.groupby(keys, dropna=dropna).apply(NASTY_FNS[k])
        if "kb" in keys and not dropna:
            g, exp = materialize(g).sort_index(), exp.sort_index()
        same(g, exp, msg=f"{keyset} {k}")


def test_apply_more_ranks_than_partitions_and_empty(dir6, cfg):
    ref = dir6.pdf
    cfg(partitions=2)
    df = hf.from_pandas(ref, npartitions=1)
    fn = APPLY_FNS["frame_top2"]
    got = df.groupby("carrier").apply(fn).compute()
    same(got, ref.groupby("carrier").apply(fn), msg="one partition")
    # a filter that keeps no row: an empty result with the key as its index
    e = df[df.n < 0]
    for name in ("int_scalar", "frame_top2"):
        res = e.groupby("carrier").apply(APPLY_FNS[name]).compute()
        assert len(res) == 0, name
        assert list(res.index.names)[:1] == ["carrier"], name


@pytest.mark.parametrize("keys,bad", [(["carrier"], "UA"), (["origin", "ki"], ("JFK", 3))])
def test_apply_bad_function_fails_every_rank(dir6, keys, bad):
    df, ref = dir6.open(), dir6.pdf
    # the ids of the bad group's rows (the key columns are not in the frame fn gets)
    bad_ids = set(ref.set_index(keys).loc[[bad]].id) if len(keys) > 1 else set(ref[ref[keys[0]] == bad].id)

    def fn(g):
        if g.id.isin(bad_ids).any():
            raise ValueError(f"bad group on purpose: {len(g)} rows")
        return len(g)

    with pytest.raises(hf.ComputeError) as ei:
        df.groupby(keys).apply(fn).compute()
    text = str(ei.value)
    assert "bad group on purpose" in text
    assert "rank" in text
    for part in bad if isinstance(bad, tuple) else (bad,):
        assert str(part) in text, f"the group {bad!r} is not named in:\n{text}"
    assert ei.value.failures, "ComputeError.failures is empty"


# --------------------------------------------------------------------------------------------
# transform
# --------------------------------------------------------------------------------------------
NAMED = ["mean", "sum", "count", "min", "max", "std", "size", "first"]
FUNCS = {
    "demean": lambda s: s - s.mean(),
    "cumsum": lambda s: s.cumsum(),
    "rank": lambda s: s.rank(method="first"),
    "fill_median": lambda s: s.fillna(s.median()),
}


# most transforms on the first key set, a few on the others
TRANSFORM_CASES = {
    "str_with_nulls": [f"x.{n}" for n in NAMED] + ["n.sum", "x.demean", "x.fill_median"],
    "str_with_nulls_dropna_false": ["x.mean", "x.size", "x.demean", "x.cumsum"],
    "two_keys": ["n.sum", "x.std", "x.rank", "x.first"],
    "categorical": ["x.max", "n.max", "x.fill_median"],
}


@pytest.mark.parametrize("keyset", list(TRANSFORM_CASES))
def test_transform(dir6, keyset):
    keys, dropna = APPLY_KEYS[keyset]
    df, ref = dir6.open(), dir6.pdf
    cases = {f"x.{n}": (lambda d, n=n: d.groupby(keys, dropna=dropna).x.transform(n)) for n in NAMED}
    cases["n.sum"] = lambda d: d.groupby(keys, dropna=dropna).n.transform("sum")
    cases["n.max"] = lambda d: d.groupby(keys, dropna=dropna).n.transform("max")
    for k, f in FUNCS.items():
        cases[f"x.{k}"] = lambda d, f=f: d.groupby(keys, dropna=dropna).x.transform(f)
    names = TRANSFORM_CASES[keyset]
    got = hf.compute(*[cases[k](df) for k in names])
    for k, g in zip(names, got):
        exp = cases[k](ref)
        assert isinstance(materialize(g).index, pd.RangeIndex), k
        same(g, exp, msg=f"{keyset} {k}")


def test_transform_assigned_to_the_frame(dir6):
    df, ref = dir6.open(), dir6.pdf

    def q(d):
        return d.assign(
            carrier_mean=d.groupby("carrier").x.transform("mean"),
            total=d.groupby(["origin", "ki"]).n.transform("sum"),
            centred=d.groupby("origin").y.transform(lambda s: s - s.mean()),
        )

    def q_filtered(d):
        a = q(d)
        return a[a.x > a.carrier_mean][["id", "carrier", "x", "carrier_mean", "total"]]

    def q_after_filter(d):
        f = d[d.n > 500]
        return f.assign(
            m=f.groupby(["origin", "ki"]).x.transform("mean"), c=f.groupby("carrier").n.transform("count")
        )

    got = hf.compute(q(df), q_filtered(df), q_after_filter(df), q_filtered(df).len())
    same(got[0], q(ref), msg="assign")
    same(got[1], q_filtered(ref).reset_index(drop=True), msg="assign then filter")
    same(got[2], q_after_filter(ref).reset_index(drop=True), msg="filter then transform")
    assert got[3] == len(q_filtered(ref))


def test_transform_in_an_expression(dir6):
    """A transform result combined with a column of the frame it came from."""
    df, ref = dir6.open(), dir6.pdf

    def q(d):
        return d.assign(share=d.n / d.groupby(["origin", "ki"]).n.transform("sum"))

    same(q(df).compute(), q(ref), msg="column / transform")
    got = (df.x - df.groupby("carrier", dropna=False).x.transform("mean")).compute()
    same(got, ref.x - ref.groupby("carrier", dropna=False).x.transform("mean"), msg="column - transform")


NASTY_TRANSFORMS = {
    "str_dropna_false_mean": lambda d: d.groupby("s", dropna=False).v.transform("mean"),
    "str_demean": lambda d: d.groupby("s").v.transform(lambda s: s - s.mean()),
    "giant_sum": lambda d: d.groupby("one").v.transform("sum"),
    "giant_cumsum": lambda d: d.groupby("one").n.transform(lambda s: s.cumsum()),
    "big_key_max": lambda d: d.groupby("big").n.transform("max"),
    "big_values_min": lambda d: d.groupby("d").big.transform("min"),
    "bool_key_f32_max": lambda d: d.groupby("kb").f32.transform("max"),
    "cat_key_dec_sum": lambda d: d.groupby("cat").dec.transform("sum"),
    "tz_key_count": lambda d: d.groupby("tz").v.transform("count"),
    "f32_key_dropna_false": lambda d: d.groupby("f32", dropna=False).n.transform("sum"),
}


def test_transform_nasty(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    names = list(NASTY_TRANSFORMS)
    got = hf.compute(*[NASTY_TRANSFORMS[k](df) for k in names])
    for k, g in zip(names, got):
        same(g, NASTY_TRANSFORMS[k](ref), msg=k)


def test_transform_empty_and_one_partition(dir6, cfg):
    ref = dir6.pdf
    cfg(partitions=3)
    df = hf.from_pandas(ref, npartitions=1)
    e, re_ = df[df.n < 0], ref[ref.n < 0].reset_index(drop=True)
    got = hf.compute(
        df.groupby("carrier").x.transform("mean"),
        e.groupby("carrier").x.transform("mean"),
        e.assign(m=e.groupby("carrier").n.transform("sum")),
    )
    same(got[0], ref.groupby("carrier").x.transform("mean"), msg="one partition")
    same(got[1], re_.groupby("carrier").x.transform("mean"), msg="empty", check_index_type=False)
    same(
        got[2],
        re_.assign(m=re_.groupby("carrier").n.transform("sum")),
        msg="empty assign",
        check_index_type=False,
    )


def test_group_functions_bit_identical_to_serial_engine(dir6, nasty, cfg):
    """Float results of apply/transform/drop_duplicates do not depend on the rank count: the
    same bits as one process with the same ``hf.config.partitions``."""
    cfg(partitions=5)
    df = dir6.open()
    ndf = hf.read_parquet(nasty[0])
    queries = {
        "transform_mean": df.groupby(["origin", "ki"]).x.transform("mean"),
        "transform_std": df.groupby("carrier", dropna=False).y.transform("std"),
        "transform_fn": df.groupby("carrier").x.transform(FUNCS["demean"]),
        "apply_series": df.groupby("origin").apply(APPLY_FNS["series"]),
        "apply_scalar": df.groupby("carrier").apply(APPLY_FNS["scalar_diff_mean"]),
        "nasty_transform": NASTY_TRANSFORMS["str_dropna_false_mean"](ndf),
        "drop_duplicates": df.drop_duplicates(["carrier", "ki"], keep="last"),
    }
    got = hf.compute(*queries.values())
    for (k, q), g in zip(queries.items(), got):
        assert_bits(g, local(q), msg=k)


# --------------------------------------------------------------------------------------------
# drop_duplicates
# --------------------------------------------------------------------------------------------
KEEPS = ["first", "last", False]


def test_drop_duplicates(dir6):
    df, ref = dir6.open(), dir6.pdf
    cols = ["id", "carrier", "origin", "kf", "day", "flag", "x", "tsz"]
    narrow, rnarrow = df[cols], ref[cols]
    lazy, exp = [], []
    for i, sub in enumerate((["carrier", "origin"], ["kf"], ["day", "flag"])):
        for keep in (KEEPS[i], KEEPS[(i + 1) % 3]):  # each keep twice
            d = narrow.drop_duplicates(sub, keep=keep)
            assert isinstance(d, hf.Frame)
            r = rnarrow.drop_duplicates(sub, keep=keep)
            lazy.append(d)
            exp.append((f"{sub} keep={keep}", r.reset_index(drop=True)))
    full = df.drop_duplicates(["ki", "origin"], keep="last")  # every column
    lazy += [full, full.len()]
    r = ref.drop_duplicates(["ki", "origin"], keep="last")
    exp += [("all columns", r.reset_index(drop=True)), ("all columns len", len(r))]
    sel = df[["origin", "ki", "kf"]]
    lazy += [sel.drop_duplicates(), df.drop_duplicates("origin")]
    exp += [
        ("no subset", ref[["origin", "ki", "kf"]].drop_duplicates().reset_index(drop=True)),
        ("subset as a string", ref.drop_duplicates("origin").reset_index(drop=True)),
    ]
    got = hf.compute(*lazy)
    for g, (msg, e) in zip(got, exp):
        if isinstance(e, pd.DataFrame):
            same(g, e, msg=msg)
        else:
            assert g == e, f"{msg}: {g} != {e}"


def test_drop_duplicates_then_more(dir6):
    df, ref = dir6.open(), dir6.pdf

    def q(d):
        f = d[d.x > 10]
        u = f.drop_duplicates(["carrier", "ki"], keep="last")
        return u, u.groupby("origin").n.sum(), u.assign(z=u.n * 2)[["id", "z"]]

    got = hf.compute(*q(df))
    exp = q(ref)
    same(got[0], exp[0].reset_index(drop=True), msg="filtered")
    same(got[1], exp[1], msg="grouped after")
    same(got[2], exp[2].reset_index(drop=True), msg="assigned after")


def test_drop_duplicates_nasty(nasty, cfg):
    path, ref = nasty
    cfg(partitions=3)
    df = hf.read_parquet(path)
    subsets = [["s"], ["kb"], ["f32"], ["big"], ["tz"], ["dec"], ["cat"], ["d", "s"], ["one"]]
    lazy, exp = [], []
    for i, sub in enumerate(subsets):
        for keep in (KEEPS[i % 2], False):  # "first" or "last", and False, per subset
            lazy.append(df.drop_duplicates(sub, keep=keep))
            exp.append((f"{sub} keep={keep}", ref.drop_duplicates(sub, keep=keep).reset_index(drop=True)))
    empty = df[df.n < 0]
    lazy += [empty.drop_duplicates(["s"]), empty.drop_duplicates(["s"]).len()]
    got = hf.compute(*lazy)
    for g, (msg, e) in zip(got, exp):
        same(g, e, msg=msg, check_index_type=len(e) > 0)
    assert len(materialize(got[-2])) == 0 and got[-1] == 0
    one = hf.from_pandas(ref, npartitions=1)
    for keep in KEEPS:
        same(
            one.drop_duplicates(["s", "kb"], keep=keep).compute(),
            ref.drop_duplicates(["s", "kb"], keep=keep).reset_index(drop=True),
            msg=f"one partition keep={keep}",
        )


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_GROUP_FN_EXAMPLES", "4"))

if st is not None:
    frames = keyed_frames([np.nan, -1.5, 0.0, 2.25, 1e15, 3.0])
    # derandomized and not shrunk under MPI: every rank must draw the same examples
    _SETTINGS = spmd_settings(EXAMPLES)

    @_SETTINGS
    @given(
        frame=frames,
        subset=st.sampled_from([["k"], ["i"], ["v"], ["k", "i"], ["k", "v"]]),
        keep=st.sampled_from(KEEPS),
    )
    def test_drop_duplicates_hypothesis(frame, subset, keep):
        pdf, nparts = frame
        df = hf.from_pandas(pdf, npartitions=nparts)
        d = df.drop_duplicates(subset, keep=keep)
        got, n = hf.compute(d, d.len())
        exp = pdf.drop_duplicates(subset, keep=keep).reset_index(drop=True)
        same(got, exp, msg=f"{subset} keep={keep} npartitions={nparts}", check_index_type=len(exp) > 0)
        assert n == len(exp)

    @_SETTINGS
    @given(
        frame=frames,
        keys=st.sampled_from([["k"], ["i"], ["k", "i"]]),
        how=st.sampled_from(["mean", "sum", "count", "max", "size", "demean"]),
        dropna=st.booleans(),
    )
    def test_transform_hypothesis(frame, keys, how, dropna):
        pdf, nparts = frame
        df = hf.from_pandas(pdf, npartitions=nparts)
        fn = FUNCS["demean"] if how == "demean" else how
        got = df.assign(t=df.groupby(keys, dropna=dropna).v.transform(fn)).compute()
        exp = pdf.assign(t=pdf.groupby(keys, dropna=dropna).v.transform(fn))
        same(
            got, exp, msg=f"{keys} {how} dropna={dropna} npartitions={nparts}", check_index_type=len(exp) > 0
        )


def test_categorical_columns_with_other_categories_in_every_file(mixed_categories):
    """``apply`` and ``drop_duplicates`` on a dictionary key and value whose files have other
    category lists (another order, unused ones; an empty file, a file where every key is
    missing): the rows keep pandas' categories, the union in file order (a partition's rows
    come from several blocks and ranks, and were stacked as ``str``)."""
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    cases = {
        "apply rows": lambda f: f.groupby("k").apply(lambda d: d.head(2)),
        "apply scalar": lambda f: f.groupby("k", dropna=False).apply(lambda d: d.x.sum() + len(d)),
        "apply by the value": lambda f: f.groupby(["c", "i"]).apply(lambda d: d.tail(1)),
        "drop_duplicates key": lambda f: f.drop_duplicates("k"),
        "drop_duplicates last": lambda f: f.drop_duplicates(["k", "c"], keep="last"),
        "drop_duplicates all": lambda f: f[["k", "c", "i"]].drop_duplicates(),
    }
    got = hf.compute(*[fn(df) for fn in cases.values()])
    for (name, fn), g in zip(cases.items(), got):
        e = fn(ref)
        if name.startswith("drop_duplicates"):  # a new frame: rows numbered from 0
            e = e.reset_index(drop=True)
        if isinstance(e, pd.DataFrame):
            pd.testing.assert_frame_equal(g, e, check_exact=True, obj=name)
        else:
            pd.testing.assert_series_equal(g, e, check_exact=True, obj=name)
