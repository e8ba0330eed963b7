"""``nunique`` group-by results used as frames (issue 10, q21's memory): a group-by result that
is a frame (``agg(...).reset_index()``, a merge side) is finished into hash partitions after
the exchange, where every partial of a group is on one rank, so its last combine counts the
distinct values instead of building merged lists (``aggregations._uniq_final``). Compared
with pandas on nasty data: NaN keys with ``dropna`` both ways, two keys with a missing
string, NaN/NaT/-0.0/inf values, strings (the object path), empty partitions, every row
filtered out, more ranks than partitions, groups straddling partitions, ``sort=False``; and
shuffle joins (whose exchange now frees the rows as it packs and splits them), locally and
under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.frames import same

pytestmark = mpi.timeout(120)


def _frame(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(10)
    key = np.sort(rng.integers(0, 300, n))  # clustered: groups straddle partitions
    small = rng.integers(0, 6, n)
    f = rng.choice([0.0, -0.0, 1.5, np.inf, -np.inf, np.nan], n)
    when = pd.to_datetime("2024-01-01") + pd.to_timedelta(small, unit="D")
    return pd.DataFrame(
        {
            "k": key.astype(np.int64),
            "kf": np.where(rng.random(n) < 0.05, np.nan, key.astype(np.float64)),
            "ks": pd.Series(np.array(["a", "b", "c"])[small % 3]).where(rng.random(n) > 0.1),
            "i": small.astype(np.int64),
            "f": f,
            "d": pd.Series(when).where(rng.random(n) > 0.1),
            "s": pd.Series([f"s{v}" for v in small]).where(rng.random(n) > 0.1),
            "b": small % 2 == 0,
        }
    )


SPEC = {"n_i": ("i", "nunique"), "n_f": ("f", "nunique"), "n_d": ("d", "nunique"), "n_s": ("s", "nunique")}


def _sorted(df: pd.DataFrame, keys) -> pd.DataFrame:
    return df.sort_values(keys, na_position="last", kind="mergesort").reset_index(drop=True)


@pytest.mark.parametrize("npartitions", [1, 2, 7])
@pytest.mark.parametrize(
    "keys,dropna", [(["k"], True), (["kf"], True), (["kf"], False), (["k", "ks"], False)]
)
def test_nunique_result_as_frame(cfg, npartitions, keys, dropna):
    """The group-by result as a frame (an AggStage), then filtered, equals pandas'."""
    cfg(partitions=5)
    ref = _frame()
    df = hf.from_pandas(ref, npartitions=npartitions)
    g = df.groupby(keys, dropna=dropna).agg(**SPEC).reset_index()
    got = g[g.n_i >= 0].compute(comm=mpi.world())
    exp = ref.groupby(keys, dropna=dropna).agg(**SPEC).reset_index()
    msg = f"nunique by {keys}, dropna={dropna}, {npartitions} parts"
    same(_sorted(got, keys), _sorted(exp, keys), msg=msg)


def test_nunique_result_sort_false_first_appearance(cfg):
    """``sort=False``: groups in order of first appearance, for any rank count."""
    ref = _frame().sample(frac=1.0, random_state=3).reset_index(drop=True)  # interleaved keys
    df = hf.from_pandas(ref, npartitions=6)
    got = df.groupby("k", sort=False).agg(n=("i", "nunique"), m=("f", "nunique")).reset_index()
    got = got[got.n > 0].compute(comm=mpi.world())
    exp = ref.groupby("k", sort=False).agg(n=("i", "nunique"), m=("f", "nunique")).reset_index()
    same(got.reset_index(drop=True), exp.reset_index(drop=True))


def test_nunique_result_empty_partitions_and_no_rows(cfg):
    """Partitions left empty by a filter, and a filter no row passes."""
    ref = _frame()
    df = hf.from_pandas(ref, npartitions=8)
    part = df[(df.k < 40) | (df.k > 260)]  # whole partitions without a row
    got = part.groupby("k").agg(n=("i", "nunique")).reset_index().compute(comm=mpi.world())
    rp = ref[(ref.k < 40) | (ref.k > 260)]
    same(_sorted(got, ["k"]), _sorted(rp.groupby("k").agg(n=("i", "nunique")).reset_index(), ["k"]))
    none = df[df.k < 0].groupby("k").agg(n=("i", "nunique")).reset_index().compute(comm=mpi.world())
    exp = ref[ref.k < 0].groupby("k").agg(n=("i", "nunique")).reset_index()
    assert len(none) == 0 and list(none.columns) == list(exp.columns)


def test_nunique_result_merged_back_as_q21(cfg):
    """q21's shape: two nunique results (all rows, late rows) merged onto the late rows."""
    ref = _frame()
    df = hf.from_pandas(ref, npartitions=7)
    late = df[df.f > 0]
    a = df.groupby("k").agg(n_all=("i", "nunique")).reset_index()
    b = late.groupby("k").agg(n_late=("i", "nunique")).reset_index()
    j = late[["k", "i"]].merge(a, on="k").merge(b, on="k", broadcast=False)
    got = j[(j.n_all > 1) & (j.n_late == 1)].compute(comm=mpi.world())
    rl = ref[ref.f > 0]
    ea = ref.groupby("k").agg(n_all=("i", "nunique")).reset_index()
    eb = rl.groupby("k").agg(n_late=("i", "nunique")).reset_index()
    ej = rl[["k", "i"]].merge(ea, on="k").merge(eb, on="k")
    exp = ej[(ej.n_all > 1) & (ej.n_late == 1)]
    order = ["k", "i"]
    same(_sorted(got, order), _sorted(exp, order))


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
def test_shuffle_join_nan_keys_and_objects(cfg, how):
    """A shuffle join (its exchange packs several pieces per partition): NaN keys, an object
    column (strings and None), more partitions than ranks and more ranks than partitions."""
    cfg(partitions=3)
    ref = _frame(600)
    right = pd.DataFrame({"kf": [np.nan, 1.0, 5.0, 7.0, 299.0, 1000.0], "w": ["x", None, "y", "z", "u", "v"]})
    left = hf.from_pandas(ref[["kf", "s", "i"]], npartitions=2)
    got = left.merge(hf.from_pandas(right, npartitions=1), on="kf", how=how, broadcast=False)
    got = got.compute(comm=mpi.world())
    exp = ref[["kf", "s", "i"]].merge(right, on="kf", how=how)
    order = ["kf", "i", "s", "w"]
    same(_sorted(got, order), _sorted(exp, order), msg=how)
