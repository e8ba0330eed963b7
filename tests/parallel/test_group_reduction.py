"""A group-by result read by one side of an inner join on its group keys is computed by
that join, its input reduced by the keys of the join's other side while read
(``hpcframe.joins._pushable_group_keys``, ``reduced_input``): TPC-H q20's lineitem rows
grouped by (part, supplier), joined with the partsupp rows of the filtered parts. The answers
equal pandas where the reduction applies (one key or several, several aggregations, a
filter on the groups, first-appearance order, duplicate and absent keys, an empty side) and
where it must not (a left join, float keys with NaN, a key the chain reassigns, a join key
that is not a group key, a group-by result also read by an output); ``last_run_stats()``
says whether rows were dropped by it.

Every test runs on every rank, locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import close
from tests.helpers.datasets import arrow_to_pandas, write_tables

pytestmark = mpi.timeout(120)

REDUCED = "joins_reduced_by_reading_join"
DROPPED = "join_rows_dropped_by_reading_join"


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 5)
    monkeypatch.setattr(hf.config, "block_rows", 50)


def _tables():
    rng = np.random.default_rng(11)
    n = 900
    fact = pa.table(
        {
            "pk": pa.array(rng.integers(0, 60, n), pa.int64()),  # keys 50..59: no part
            "sk": pa.array(rng.integers(0, 20, n), pa.int64()),
            "day": pa.array(rng.integers(0, 10, n), pa.int64()),
            "fk": pa.array(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 60, n)), pa.float64()),
            "q": pa.array(rng.integers(1, 50, n).astype("float64"), pa.float64()),
            "v": pa.array(rng.normal(0, 10, n), pa.float64()),
            "s": pa.array(rng.choice(["a", "b", "c"], n), pa.string()),
        }
    )
    pk = np.concatenate([np.repeat(np.arange(50), 3), [3, 7, 7]])  # duplicate pairs too
    ps = pa.table(
        {
            "pk": pa.array(pk, pa.int64()),
            "sk": pa.array(rng.integers(0, 20, len(pk)), pa.int64()),
            "avail": pa.array(rng.integers(0, 100, len(pk)), pa.int64()),
        }
    )
    part = pa.table(
        {
            "pk": pa.array(np.arange(50), pa.int64()),
            "size": pa.array(rng.integers(0, 10, 50), pa.int64()),
            "pf": pa.array(np.where(np.arange(50) % 9 == 0, np.nan, np.arange(50)), pa.float64()),
        }
    )
    return {"fact": fact, "ps": ps, "part": part}


@pytest.fixture(scope="module")
def data(shared_dir):
    """({name: path}, {name: pandas frame})."""
    root = os.path.join(shared_dir, "group_reduction")
    tables = _tables()
    mpi.on_root(lambda: write_tables(root, tables, pieces={"fact": 3}))
    return {k: os.path.join(root, k) for k in tables}, {k: arrow_to_pandas(t) for k, t in tables.items()}


@pytest.fixture
def t(data):
    paths, ref = data
    return {k: hf.read_parquet(p) for k, p in paths.items()}, ref


check = partial(close, fresh_index=True)  # a join's rows are numbered 0..n-1


def same_as_unreduced(frame, got, group_result):
    """``got`` (the reduced computation of ``frame``) is bit for bit the answer computed
    without the reduction (``group_result`` read by a second output: computed in full)."""
    full, _ = hf.compute(frame, group_result)
    assert hf.last_run_stats().get(REDUCED, 0) == 0
    pd.testing.assert_frame_equal(got, full, check_exact=True)


def stat(name):
    """A counter of the last computation: summed over the ranks (rows dropped), or the
    same on every rank (joins reduced)."""
    got = hf.last_run_stats().get(name, 0)
    return got if name == REDUCED else mpi.allsum(got)


def m(a, b, **kw):
    return pd.merge(a, b, **kw) if isinstance(a, pd.DataFrame) else a.merge(b, **kw)


def _q20_shape(d, with_groups=False):
    fact, ps, part = d["fact"], d["ps"], d["part"]
    f = fact[fact.day < 6]
    shipped = f.groupby(["pk", "sk"]).agg(sum_q=("q", "sum"), v=("v", "sum")).reset_index()
    p = part[part["size"] < 3][["pk"]]
    j = m(ps, p, on="pk")  # the other side: a join of a filtered side (no filter of its own)
    j = m(j, shipped, on=["pk", "sk"])
    j = j[j.avail > 0.5 * j.sum_q]
    return (j, shipped) if with_groups else j


def test_q20_the_keys_of_a_join_reduce_the_group_by_it_reads(t):
    """q20's shape: the group-by reads only the fact rows whose (part, supplier) keys may
    match the other side's (each key filtered alone); equal to pandas, and every other
    row of the group-by's input is dropped while read."""
    hft, ref = t
    frame, groups = _q20_shape(hft, True)
    got = check(frame, _q20_shape(ref))
    assert stat(REDUCED) == 1
    dropped = stat(DROPPED)
    same_as_unreduced(frame, got, groups)
    f = ref["fact"][ref["fact"].day < 6]
    other = pd.merge(ref["ps"], ref["part"][ref["part"]["size"] < 3][["pk"]], on="pk")
    kept = f.pk.isin(other.pk) & f.sk.isin(other.sk)
    assert 0 < dropped == int((~kept).sum())


@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "first_appearance"])
def test_one_key_several_aggregations_and_a_filter_on_the_groups(t, sort):
    """The group-by on one key with sum, mean, min, size, count, nunique and first, a filter
    on its values before the join, the group order of ``sort=False``; the group-by result on
    the left side of the join."""
    hft, ref = t

    def q(d):
        fact, part = d["fact"], d["part"]
        g = fact.groupby("pk", sort=sort).agg(
            tot=("v", "sum"),
            avg=("v", "mean"),
            low=("q", "min"),
            n=("q", "size"),
            c=("fk", "count"),
            u=("s", "nunique"),
            f=("s", "first"),
        )
        g = g.reset_index()
        h = g[g.n > 12]
        return m(h, part[part["size"] >= 7], on="pk"), g

    frame, groups = q(hft)
    got = check(frame, q(ref)[0])
    assert stat(REDUCED) == 1 and stat(DROPPED) > 0
    same_as_unreduced(frame, got, groups)


def test_an_empty_side_reduces_the_group_by_to_nothing(t):
    hft, ref = t

    def q(d):
        g = d["fact"].groupby(["pk", "sk"]).agg(sum_q=("q", "sum")).reset_index()
        return m(d["part"][d["part"]["size"] > 100], g, on="pk")

    check(q(hft), q(ref))
    assert stat(REDUCED) == 1 and stat(DROPPED) == len(ref["fact"])


CASES = ["left_join", "float_keys", "nan_group_keys", "reassigned", "not_a_group_key", "unfiltered", "forced"]


@pytest.mark.parametrize("case", CASES)
def test_where_it_must_not_apply(t, case):
    """A left join (groups without a match are in its result), float keys with NaN on the
    other side or in the group keys (pandas matches NaN), a key the group-by's input
    reassigns, a join on a value of the groups, an other side without a filter, a forced
    strategy: nothing is reduced; equal to pandas."""
    hft, ref = t

    def q(d):
        fact, part = d["fact"], d["part"]
        p = part[part["size"] < 3]
        g = fact.groupby(["pk", "sk"]).agg(n=("q", "size"), tot=("v", "sum")).reset_index()
        if case == "left_join":
            return m(p, g, on="pk", how="left")
        if case == "float_keys":
            return m(p[["pf", "size"]], g, left_on="pf", right_on="pk")
        if case == "nan_group_keys":
            gf = fact.groupby("fk", dropna=False).agg(tot=("v", "sum")).reset_index()
            return m(p[["pf", "size"]], gf, left_on="pf", right_on="fk")
        if case == "reassigned":
            f = fact.assign(pk=fact.pk + 1)
            g = f.groupby(["pk", "sk"]).agg(n=("q", "size")).reset_index()
            return m(p, g, on="pk")
        if case == "not_a_group_key":
            return m(p, g, left_on="size", right_on="n")
        if case == "unfiltered":
            return m(part, g, on="pk")
        kw = {} if isinstance(p, pd.DataFrame) else {"broadcast": True}
        return m(p, g, on="pk", **kw)

    check(q(hft), q(ref), case)
    assert stat(REDUCED) == 0 and stat(DROPPED) == 0


def test_a_group_by_read_elsewhere_is_computed_in_full(t):
    """The group-by result read also by another output of the computation is computed once
    in full (not reduced); a reduced one is never kept for a later computation."""
    hft, ref = t

    def q(d):
        g = d["fact"].groupby("pk").agg(tot=("v", "sum")).reset_index()
        return m(d["part"][d["part"]["size"] < 3], g, on="pk"), g

    parent, g = q(hft)
    rparent, rg = q(ref)
    a, b = hf.compute(parent, g)
    check(a, rparent)
    check(b, rg)
    assert stat(REDUCED) == 0
    parent2, g2 = q(hft)
    check(parent2, rparent)
    assert stat(REDUCED) == 1
    check(g2, rg)  # computed again, in full
    assert stat(REDUCED) == 0


def test_q20_then_a_semi_join_of_its_keys(t):
    """q20's end: the rows of a small table whose key is among the reduced join's."""
    hft, ref = t

    def q(d):
        j = _q20_shape(d)
        part = d["part"]
        return part[part.pk.isin(j.pk)]

    check(q(hft), q(ref))
    assert stat(REDUCED) == 1


def test_a_semi_join_as_the_other_side_counts_as_filtered(t):
    """The other side is the rows of a semi join (``isin`` of a lazy Series: a filter with
    no Filter step of its own): its keys reduce the group-by."""
    hft, ref = t

    def q(d):
        part, ps = d["part"], d["ps"]
        p = part[part.pk.isin(ps[ps.avail > 90].pk)]
        g = d["fact"].groupby("pk").agg(tot=("q", "sum"), n=("q", "size")).reset_index()
        return m(p, g, on="pk")

    check(q(hft), q(ref))
    assert stat(REDUCED) == 1 and stat(DROPPED) > 0
