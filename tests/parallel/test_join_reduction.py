"""A join stage read by one side of an inner join is computed by that join, reduced by the
keys of its other side (``hpcframe.joins.deferrable_joins``, ``reduced_input``): TPC-H q2's
``part[filter].merge(partsupp.merge(suppliers))``. The answers equal pandas for the shapes
where the reduction applies (an inner child, a semi/anti child, a key of the same name on
both sides, nested joins, duplicate and absent keys, an empty side) and for those where it
must not (a left parent or child, float keys with NaN, a key the chain reassigns, a child
also read by an output); ``last_run_stats()`` says whether rows were dropped by it.

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
    rng = np.random.default_rng(7)
    n = 600
    fact = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "pk": pa.array(rng.integers(0, 60, n), pa.int64()),  # keys 50..59: no part
            "sk": pa.array(rng.integers(0, 20, n), pa.int64()),
            "fk": pa.array(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 60, n)), pa.float64()),
            "v": pa.array(rng.normal(0, 10, n), pa.float64()),
            "s": pa.array(rng.choice(["a", "b", "c"], n), pa.string()),
        }
    )
    pk = np.concatenate([np.arange(50), [3, 7, 7]])  # duplicate keys on the parent's side
    part = pa.table(
        {
            "pk": pa.array(pk, pa.int64()),
            "size": pa.array(rng.integers(0, 10, len(pk)), pa.int64()),
            "pname": pa.array([f"p{i}" for i in range(len(pk))], pa.string()),
            "pf": pa.array(np.where(pk % 9 == 0, np.nan, pk).astype("float64"), pa.float64()),
        }
    )
    supp = pa.table(
        {
            "sk": pa.array(np.arange(20), pa.int64()),
            "nation": pa.array(rng.integers(0, 4, 20), pa.int64()),
            "sname": pa.array([f"s{i}" for i in range(20)], pa.string()),
        }
    )
    return {"fact": fact, "part": part, "supp": supp}


@pytest.fixture(scope="module")
def data(shared_dir):
    """({name: path}, {name: pandas frame})."""
    root = os.path.join(shared_dir, "join_reduction")
    tables = _tables()
    mpi.on_root(lambda: write_tables(root, tables, pieces={"fact": 3}))
    return {k: os.path.join(root, k) for k in tables}, {k: arrow_to_pandas(t) for k, t in tables.items()}


@pytest.fixture
def t(data):
    paths, ref = data
    return {k: hf.read_parquet(p) for k, p in paths.items()}, ref


check = partial(close, exact=True, fresh_index=True)  # every bit, rows numbered 0..n-1


def stat(name):
    """A counter of the last computation: summed over the ranks (rows dropped), or the
    same on every rank (joins reduced)."""
    got = hf.last_run_stats().get(name, 0)
    return got if name == REDUCED else mpi.allsum(got)


def _q2_shape(d, lib):
    fact, part, supp = d["fact"], d["part"], d["supp"]
    s = supp[supp.nation < 3]
    ps = fact.merge(s, on="sk") if lib == "hf" else pd.merge(fact, s, on="sk")
    p = part[part["size"] < 3]
    return (p.merge(ps, on="pk") if lib == "hf" else pd.merge(p, ps, on="pk")), p


def test_the_keys_of_a_filtered_side_reduce_the_join_it_reads(t):
    """q2's shape: the child (fact ⋈ suppliers) is computed with only the fact rows whose
    part key is among the filtered parts' (duplicates among them); equal to pandas."""
    hft, ref = t
    got, _ = _q2_shape(hft, "hf")
    expected, p = _q2_shape(ref, "pd")
    check(got, expected)
    assert stat(REDUCED) == 1
    kept = ref["fact"].pk.isin(p.pk)
    assert stat(DROPPED) == int((~kept).sum())  # before the supplier keys: every such row


def test_nested_and_further_operations(t):
    """Three joins deep (the grandchild reduced by its own reader), then a group-by and a
    merge with it (q2's cheapest supplier per part): equal to pandas."""
    hft, ref = t

    def q(d, m):
        fact, part, supp = d["fact"], d["part"], d["supp"]
        nat = supp[supp.nation == 1][["sk", "sname"]]
        ps = m(fact, nat, on="sk")
        j = m(part[part["size"] == 2], ps, on="pk")
        low = j.groupby("pk").agg(low=("v", "min")).reset_index()
        j = m(j, low, on="pk")
        return j[j.v == j.low].sort_values(["v", "id"], ignore_index=True)

    def hf_merge(a, b, **kw):
        return a.merge(b, **kw)

    check(q(hft, hf_merge), q(ref, pd.merge))
    assert stat(REDUCED) >= 1


@pytest.mark.parametrize("negate", [False, True], ids=["semi", "anti"])
def test_semi_and_anti_children(t, negate):
    """q16's shape: ``fact[~fact.sk.isin(bad)]`` read by a merge with filtered parts: the
    rows of the filtered side are reduced (never the values of the isin)."""
    hft, ref = t

    def q(d, hfl):
        fact, part, supp = d["fact"], d["part"], d["supp"]
        bad = supp[supp.nation == 0].sk
        mask = fact.sk.isin(bad)
        f = fact[~mask if negate else mask]
        p = part[part["size"] > 6]
        return p.merge(f, on="pk") if hfl else pd.merge(p, f, on="pk")

    check(q(hft, True), q(ref, False))
    assert stat(REDUCED) == 1 and stat(DROPPED) > 0


def test_a_key_of_the_same_name_on_both_sides_of_the_child(t):
    """The child's key column comes from both of its sides: both are reduced."""
    hft, ref = t
    fact, part = hft["fact"], hft["part"]
    child = fact.merge(part[["pk", "pname"]], on="pk")
    got = part[part["size"] == 5][["pk", "size"]].merge(child, on="pk")
    rchild = pd.merge(ref["fact"], ref["part"][["pk", "pname"]], on="pk")
    rp = ref["part"]
    check(got, pd.merge(rp[rp["size"] == 5][["pk", "size"]], rchild, on="pk"))
    assert stat(REDUCED) == 1 and stat(DROPPED) > 0


def test_an_empty_side_reduces_the_child_to_nothing(t):
    hft, ref = t
    fact, part, supp = hft["fact"], hft["part"], hft["supp"]
    rf, rpart, rsupp = ref["fact"], ref["part"], ref["supp"]
    got = part[part["size"] > 100].merge(fact.merge(supp, on="sk"), on="pk")
    expected = pd.merge(rpart[rpart["size"] > 100], pd.merge(rf, rsupp, on="sk"), on="pk")
    check(got, expected)
    assert stat(REDUCED) == 1 and stat(DROPPED) == len(rf)


@pytest.mark.parametrize(
    "case", ["left_parent", "left_child", "float_keys", "reassigned", "forced", "unfiltered"]
)
def test_where_it_must_not_apply(t, case):
    """A left parent (unmatched rows are in its result), a left child, float keys with NaN,
    a key the reading chain reassigns, a forced strategy, an other side without a filter
    (its keys would hardly reduce): nothing is reduced; equal to pandas."""
    hft, ref = t

    def q(d, hfl):
        fact, part, supp = d["fact"], d["part"], d["supp"]

        def m(a, b, **kw):
            return a.merge(b, **kw) if hfl else pd.merge(a, b, **kw)

        p = part[part["size"] < 3]
        if case == "left_parent":
            return m(p, m(fact, supp, on="sk"), on="pk", how="left")
        if case == "left_child":
            return m(p, m(fact, supp, on="sk", how="left"), on="pk")
        if case == "float_keys":
            return m(p[["pf", "pname"]], m(fact, supp, on="sk"), left_on="pf", right_on="fk")
        if case == "reassigned":
            child = m(fact, supp, on="sk")
            child = child.assign(pk=child.pk + 1)
            return m(p, child, on="pk")
        if case == "unfiltered":
            return m(part, m(fact, supp, on="sk"), on="pk")
        kw = {"broadcast": True} if hfl else {}
        return m(p, m(fact, supp, on="sk"), on="pk", **kw)

    check(q(hft, True), q(ref, False), case)
    assert stat(REDUCED) == 0 and stat(DROPPED) == 0


def test_a_child_read_elsewhere_is_computed_in_full(t):
    """The child read also by another output of the computation is computed once in full
    (not reduced); and a reduced child is never kept for a later computation."""
    hft, ref = t
    fact, part, supp = hft["fact"], hft["part"], hft["supp"]
    rf, rpart, rsupp = ref["fact"], ref["part"], ref["supp"]
    child = fact.merge(supp, on="sk")
    parent = part[part["size"] < 3].merge(child, on="pk")
    rchild = pd.merge(rf, rsupp, on="sk")
    rparent = pd.merge(rpart[rpart["size"] < 3], rchild, on="pk")
    a, b = hf.compute(parent, child)
    check(a, rparent)
    check(b, rchild)
    assert stat(REDUCED) == 0
    child2 = fact.merge(supp, on="sk")
    parent2 = part[part["size"] < 3].merge(child2, on="pk")
    check(parent2, rparent)
    assert stat(REDUCED) == 1
    check(child2, rchild)  # computed again, in full
    assert stat(REDUCED) == 0


def _q21_shape(d, m):
    """TPC-H q21's shape: per order (``pk``) the number of suppliers of all its rows and of
    its "late" rows, joined back to the late rows, then to the suppliers of one nation."""
    fact, supp = d["fact"][["pk", "sk", "v"]], d["supp"]
    n_supp = fact.groupby("pk").agg(n_supp=("sk", "nunique")).reset_index()
    late = fact[fact.v > 0]
    n_late = late.groupby("pk").agg(n_late=("sk", "nunique")).reset_index()
    j = m(m(late, n_supp, on="pk"), n_late, on="pk")
    j = j[(j.n_supp > 1) & (j.n_late == 1)]
    j = m(j, supp[supp.nation == 1][["sk", "sname"]], on="sk")
    g = j.groupby("sname").agg(n=("pk", "count")).reset_index()
    return g.sort_values(["n", "sname"], ascending=[False, True], ignore_index=True)


def test_keys_pushed_by_a_reader_reach_the_joins_and_group_bys_below(t):
    """q21's shape: the suppliers of one nation, pushed into the join of the late rows
    with the counts, reach the join that makes those rows (``pushed_input``) and then the
    late rows' read; their few orders reduce both group-by results (deferred both, each a
    side of one join). Equal to pandas; every fact row of another supplier and every
    group of another order is dropped while read (regression: the counts of every order
    were computed, and the late rows joined with them, before the supplier keys applied)."""
    hft, ref = t

    def hf_merge(a, b, **kw):
        return a.merge(b, **kw)

    check(_q21_shape(hft, hf_merge), _q21_shape(ref, pd.merge))
    assert stat(REDUCED) == 4
    fact, supp = ref["fact"], ref["supp"]
    late = fact[fact.v > 0]
    mine = late[late.sk.isin(supp[supp.nation == 1].sk)]
    orders = fact.pk.isin(mine.pk)
    # late rows of other suppliers; rows of other orders, read for each group-by
    dropped = len(late) - len(mine) + int((~orders).sum()) + int((~orders[fact.v > 0]).sum())
    assert stat(DROPPED) == dropped, (stat(DROPPED), dropped)
