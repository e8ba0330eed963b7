"""Group-by ``nunique`` with many groups, on the flat partials (issue 10, TPC-H q21 memory):
numbers, bools, datetimes and timedeltas keep their distinct values per group as one Arrow
list column (offsets + values), merged by one sort; groups met in one partial keep their
list as it is, groups shared by several partials are merged. Compared with pandas for
clustered keys (as ``l_orderkey`` in lineitem) and interleaved keys (every group in every
partition), NaN/NaT values, ``-0.0`` next to ``0.0``, infinities, missing keys with
``dropna`` both ways, categorical values, on the gather and the shuffle finish, locally and
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


def _frame(layout: str) -> pd.DataFrame:
    rng = np.random.default_rng(21)
    n = 3000
    ngroups = 700
    key = np.sort(rng.integers(0, ngroups, n)) if layout == "clustered" else rng.integers(0, ngroups, n)
    small = rng.integers(0, 5, n)
    f = rng.choice([0.0, -0.0, 1.5, np.inf, -np.inf, np.nan, 2.5], n)
    when = pd.to_datetime("2024-01-01") + pd.to_timedelta(small, unit="D")
    df = pd.DataFrame(
        {
            "k": key.astype(np.int64),
            "kf": np.where(rng.random(n) < 0.05, np.nan, key.astype(np.float64)),
            "i": small.astype(np.int64),
            "u": (small.astype(np.uint64) + np.uint64(2**63)),
            "i32": small.astype(np.int32),
            "f": f,
            "f32": f.astype(np.float32),
            "b": small % 2 == 0,
            "d": pd.Series(when).where(rng.random(n) > 0.1),
            "ms": pd.Series(when.astype("datetime64[ms]")),
            "td": pd.Series(pd.to_timedelta(small, unit="h")).where(rng.random(n) > 0.1),
            "c": pd.Categorical(small % 3),
        }
    )
    return df


VALUES = ["i", "u", "i32", "f", "f32", "b", "d", "ms", "td", "c"]


@pytest.mark.parametrize("layout", ["clustered", "interleaved"])
@pytest.mark.parametrize("shuffle", ["gather", "shuffle"])
@pytest.mark.parametrize("key,dropna", [("k", True), ("kf", True), ("kf", False)])
def test_nunique_many_groups_flat(cfg, layout, shuffle, key, dropna):
    cfg(shuffle=shuffle)
    ref = _frame(layout)
    df = hf.from_pandas(ref, npartitions=7)
    spec = {f"u_{c}": (c, "nunique") for c in VALUES}
    got = df.groupby(key, dropna=dropna).agg(**spec).compute(comm=mpi.world())
    exp = ref.groupby(key, dropna=dropna, observed=True).agg(**spec)
    same(got, exp, msg=f"nunique by {key} ({layout}, {shuffle}, dropna={dropna})")


def test_nunique_series_groupby_then_filter(cfg):
    """``groupby(k).col.nunique()`` used in a later filter and merge, as q21 does."""
    ref = _frame("clustered")
    df = hf.from_pandas(ref, npartitions=5)
    n = df.groupby("k").agg(n=("i", "nunique")).reset_index()
    got = df.merge(n, on="k")
    got = got[got.n > 1][["k", "i", "n"]].compute(comm=mpi.world())
    en = ref.groupby("k").agg(n=("i", "nunique")).reset_index()
    exp = ref.merge(en, on="k")
    exp = exp[exp.n > 1][["k", "i", "n"]]
    order = ["k", "i"]
    same(got.sort_values(order).reset_index(drop=True), exp.sort_values(order).reset_index(drop=True))


# the packed (group, value) sort, at the edges of its packing
def _edges() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    n = 2000
    key = np.sort(rng.integers(0, 400, n))
    pick = rng.integers(0, 4, n)
    wide = np.array([-(2**63), 2**63 - 1, 0, -1], dtype=np.int64)[pick]
    uwide = np.array([0, 2**64 - 1, 2**63, 2**63 - 1], dtype=np.uint64)[pick]
    when = pd.Series(pd.to_datetime("2024-06-01 01:30") + pd.to_timedelta(pick, unit="h"))
    return pd.DataFrame(
        {
            "k": key.astype(np.int64),
            "kf": np.where(rng.random(n) < 0.05, np.nan, key.astype(np.float64)),
            "wide": wide,
            "near": (np.int64(2**63 - 4) + pick).astype(np.int64),
            "uwide": uwide,
            "b": pd.array(np.where(rng.random(n) < 0.1, None, pick % 2 == 0), dtype="boolean"),
            "tz": when.dt.tz_localize("Europe/Berlin").where(rng.random(n) > 0.1),
            "c": pd.Categorical(np.array(["x", "y", "z", "w"])[pick]),
            "sel": rng.integers(0, 10, n),
        }
    )


EDGE_VALUES = ["wide", "near", "uwide", "b", "tz", "c"]


@pytest.mark.parametrize("npartitions", [1, 6])  # 1: more ranks than partitions
@pytest.mark.parametrize("where", ["all", "first_half", "none"])  # empty partitions, no rows
@pytest.mark.parametrize("key,dropna", [("k", True), ("kf", True), ("kf", False)])
def test_nunique_at_the_packing_edges(cfg, npartitions, where, key, dropna):
    cfg(shuffle="shuffle")
    ref = _edges()
    df = hf.from_pandas(ref, npartitions=npartitions)
    if where == "first_half":  # the later partitions (clustered keys) have no rows left
        ref, df = ref[ref.k < 150], df[df.k < 150]
    elif where == "none":
        ref, df = ref[ref.sel > 100], df[df.sel > 100]
    spec = {f"u_{c}": (c, "nunique") for c in EDGE_VALUES}
    got = df.groupby(key, dropna=dropna).agg(**spec).compute(comm=mpi.world())
    exp = ref.groupby(key, dropna=dropna, observed=True).agg(**spec)
    same(got, exp, msg=f"nunique by {key} ({npartitions} partitions, {where}, dropna={dropna})")
