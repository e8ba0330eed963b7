"""Projection through stages (``hpcframe/pruning.py``): a stage computes only the columns its
readers need, once per computation, and the answers are pandas' own.

A join read by a group-by, a reduction, a filter, another join, a sort, a shuffle
(``drop_duplicates``) or ``set_index`` carries only the columns these read (counted by
``last_run_stats()["stage_columns_pruned"]``, its size by ``["stage_bytes"]``); a join read
by two outputs of one ``hf.compute`` carries the union; a persisted frame keeps every
column; a stage held with fewer columns (earlier in the same ``stage_scope``) is computed
again when a later computation needs more. Results, row order and dtypes (a left join's
int columns of the right side become float64 when a row finds no match, as pandas decides
from the data) equal pandas.

Every test runs on every rank, locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe.execute import stage_scope
from tests.helpers import mpi
from tests.helpers.compare import close as check

pytestmark = mpi.timeout(120)


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 5)
    monkeypatch.setattr(hf.config, "block_rows", 40)


def _tables():
    rng = np.random.default_rng(7)
    n = 300
    left = pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "k": rng.integers(0, 40, n),
            "y": rng.integers(0, 6, n),
            "x": rng.normal(0, 10, n),
            "s": rng.choice(["a", "b", "c", "d"], n),
            "pad": [f"left row {i} " * 3 for i in range(n)],
        }
    )
    m = 30  # keys 30..39 of the left side find no match: w becomes float64 in a left join
    right = pd.DataFrame(
        {
            "k": np.arange(m, dtype="int64"),
            "z": rng.normal(0, 1, m),
            "w": rng.integers(-50, 50, m),
            "label": [f"right {i}" for i in range(m)],
            "note": [f"note {i} " * 4 for i in range(m)],
        }
    )
    third = pd.DataFrame({"y": np.arange(6, dtype="int64"), "region": list("uvwxyz"), "big": ["x" * 50] * 6})
    return left, right, third


@pytest.fixture
def data():
    """(left, right, third) as lazy frames and as pandas frames."""
    lref, rref, tref = _tables()
    lazy = (
        hf.from_pandas(lref, npartitions=4),
        hf.from_pandas(rref, npartitions=2),
        hf.from_pandas(tref, npartitions=1),
    )
    return lazy, (lref, rref, tref)


def stats():
    return hf.last_run_stats()


# --------------------------------------------------------------------------------------------
# one reader
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["inner", "left"])
def test_merge_then_groupby_agg(data, how):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k", how=how)
    got = m.groupby("y").agg(t=("z", "sum"), n=("w", "max"), c=("x", "count")).compute()
    e = lref.merge(rref, on="k", how=how).groupby("y").agg(t=("z", "sum"), n=("w", "max"), c=("x", "count"))
    check(got, e)
    # y, x, k (key) of the left side, z and w of the right one: id, s, pad, label, note left out
    assert stats()["stage_columns_pruned"] == 5
    pruned = stats()["stage_bytes"]
    full = m.compute()
    check(full, lref.merge(rref, on="k", how=how), "the whole merge")
    assert stats()["stage_columns_pruned"] == 0
    assert 0 < pruned < stats()["stage_bytes"] / 2


def test_merge_then_filter_then_reduction(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k", how="left")
    e = lref.merge(rref, on="k", how="left")
    check(m[m.x > m.z].w.sum().compute(), e[e.x > e.z].w.sum())  # reads both sides: not pushed
    assert stats()["stage_columns_pruned"] == 6  # id, y, s, pad, label, note
    check(m[m.x > 0].z.mean().compute(), e[e.x > 0].z.mean())  # pushed into the left side
    assert stats()["stage_columns_pruned"] > 0
    check(m.assign(w2=m.w * 2)[m.y < 3].w2.sum().compute(), (e.w * 2)[e.y < 3].sum())
    check(len(m), len(e))
    assert stats()["stage_columns_pruned"] == 9  # only the key is carried


def test_merge_then_merge_then_groupby(data):
    (a, b, c), (lref, rref, tref) = data
    m2 = a.merge(b, on="k", how="left").merge(c, on="y")
    got = m2.groupby("region").agg(t=("z", "sum"), n=("id", "count")).compute()
    e2 = lref.merge(rref, on="k", how="left").merge(tref, on="y")
    check(got, e2.groupby("region").agg(t=("z", "sum"), n=("id", "count")))
    # the second join: k, x, s, pad, w, label, note, big; the first one: x, s, pad, w, label, note
    assert stats()["stage_columns_pruned"] == 14
    check(m2.compute(), e2, "the whole double merge")


def test_merge_then_sort_values_then_head(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k")
    e = lref.merge(rref, on="k")
    got = m.sort_values(["z", "id"], ascending=[False, True])[["id", "z", "label"]].head(7).compute()
    check(got, e.sort_values(["z", "id"], ascending=[False, True])[["id", "z", "label"]].head(7))
    assert stats()["stage_columns_pruned"] == 6  # y, x, s, pad, w, note
    check(m.sort_values("w").head(5).compute(), e.sort_values("w", kind="stable").head(5))


def test_merge_then_drop_duplicates(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k", how="left")
    e = lref.merge(rref, on="k", how="left")
    d = m.drop_duplicates(["y", "s"])
    ed = e.drop_duplicates(["y", "s"])
    check(d.groupby("s").w.sum().compute(), ed.groupby("s").w.sum())
    # the join carries k, y, s, w; the shuffle y, s, w (and its position)
    assert stats()["stage_columns_pruned"] >= 6 + 6
    # (drop_duplicates gives a fresh RangeIndex)
    check(d[["y", "s", "z"]].compute(), ed[["y", "s", "z"]].reset_index(drop=True))
    check(d.compute(), ed.reset_index(drop=True), "every column, the shuffle's and the join's")
    assert stats()["stage_columns_pruned"] == 0
    everything = m.drop_duplicates()
    check(everything.x.sum().compute(), e.drop_duplicates().x.sum())  # every column is compared


def test_merge_then_set_index_and_quantile(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k")
    e = lref.merge(rref, on="k")
    check(m.set_index("id").loc[50:120].z.sum().compute(), e.set_index("id").loc[50:120].z.sum())
    assert stats()["stage_columns_pruned"] > 0
    check(m.z.quantile(0.3).compute(), e.z.quantile(0.3))
    assert stats()["stage_columns_pruned"] > 0


def test_semi_join_then_reduction(data):
    (a, b, _), (lref, rref, _) = data
    got = a[a.k.isin(b[b.w > 0].k)].x.sum().compute()
    check(got, lref[lref.k.isin(rref[rref.w > 0].k)].x.sum())
    assert stats()["stage_columns_pruned"] > 0


def test_group_by_result_of_a_merge_used_as_a_frame(data):
    (a, b, _), (lref, rref, _) = data
    g = a.merge(b, on="k").groupby("k").agg(t=("x", "sum"), m=("w", "max"))
    e = lref.merge(rref, on="k").groupby("k").agg(t=("x", "sum"), m=("w", "max"))
    check(g[g.t > 0].m.sum().compute(), e[e.t > 0].m.sum())
    assert stats()["stage_columns_pruned"] == 7  # id, y, s, pad, z, label, note


# --------------------------------------------------------------------------------------------
# several readers, persisted and held stages
# --------------------------------------------------------------------------------------------
def test_shared_join_two_outputs_need_different_columns(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k", how="left")
    e = lref.merge(rref, on="k", how="left")
    by_y, top, wmax = hf.compute(
        m.groupby("y").x.sum(), m.sort_values(["z", "id"])[["id", "label"]].head(3), m.w.max()
    )
    check(by_y, e.groupby("y").x.sum())
    check(top, e.sort_values(["z", "id"])[["id", "label"]].head(3))
    check(wmax, e.w.max())
    assert stats()["stage_columns_pruned"] == 3  # s, pad, note: computed once for all three


def test_persisted_join_keeps_every_column(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k", how="left")
    e = lref.merge(rref, on="k", how="left")
    p = m.persist()
    try:
        check(p.groupby("y").z.sum().compute(), e.groupby("y").z.sum())
        # the persisted rows are read; the join is not computed again
        assert stats()["stage_columns_pruned"] == 0 and stats()["stage_bytes"] == 0
        check(p.compute(), e, "every column kept")
        got = p.drop_duplicates(["s"])[["s", "note"]].compute()
        check(got, e.drop_duplicates(["s"])[["s", "note"]].reset_index(drop=True))
    finally:
        p.unpersist()


def test_held_stage_with_fewer_columns_is_computed_again(data):
    (a, b, _), (lref, rref, _) = data
    m = a.merge(b, on="k", how="left")
    e = lref.merge(rref, on="k", how="left")
    with stage_scope():  # stages computed inside stay held until it ends
        check(m.groupby("y").w.sum().compute(), e.groupby("y").w.sum())
        assert stats()["stage_columns_pruned"] > 0
        check(m.compute(), e, "needs every column: computed again")
        assert stats()["stage_columns_pruned"] == 0 and stats()["stage_bytes"] > 0
        check(m.x.sum().compute(), e.x.sum())  # held with every column: read as it is
        assert stats()["stage_bytes"] == 0


def test_written_group_by_of_a_merge(data, shared_dir):
    import os

    (a, b, _), (lref, rref, _) = data
    g = a.merge(b, on="k").groupby("y").agg(t=("z", "sum"))
    path = os.path.join(shared_dir, "pruning_written.parquet")
    g.reset_index().to_parquet(path, overwrite=True)
    got = hf.read_parquet(path).compute().sort_values("y").reset_index(drop=True)
    e = lref.merge(rref, on="k").groupby("y").agg(t=("z", "sum")).reset_index()
    check(got, e)
