"""A group-by result on several keys, used as a frame and collected sorted (TPC-H q10's
shape: ``groupby([id, name, address, ...]).agg(...).reset_index().sort_values(v).head(n)``),
compared with plain pandas: rows, labels (each group's position in the key order) and
values, on any number of ranks.

The collected rows are ordered without sorting the key columns after a key whose values
are all distinct, and only the returned rows are taken (Q10SORT); the stage's groups reach
their partitions by the hash computed when their partials were routed (Q10ROUTE). Ties in
the sorted value, NaN values, keys that do not decide alone (a name shared by several
ids), ``head``/``tail`` with any ``n`` and the full sorted frame are checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import exact

pytestmark = mpi.timeout(120)


def orders(n: int = 3000, seed: int = 10) -> pd.DataFrame:
    """Rows of customers: ``name``/``addr`` depend on ``id``; ``city`` does not (several
    per id); ``v`` has many ties and some NaN."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 400, n).astype(np.int64)
    names = np.array([f"Customer#{i % 150:04d}" for i in range(400)], dtype=object)
    addrs = np.array([f"{'xyz' * (i % 7)} street {i}" for i in range(400)], dtype=object)
    v = rng.integers(0, 6, n).astype(float)
    v[rng.random(n) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "id": ids,
            "name": pd.array(names[ids], dtype="str"),
            "addr": pd.array(addrs[ids], dtype="str"),
            "city": pd.array(rng.choice(np.array(["b", "a", "c"], dtype=object), n), dtype="str"),
            "bal": (ids % 13).astype(float) - 6.0,
            "v": v,
        }
    )


KEYS = {
    "id_first": ["id", "name", "bal", "addr"],  # the id decides alone
    "name_first": ["name", "addr", "id"],  # a name repeats: the next keys decide
    "not_unique": ["id", "city", "name"],  # an id repeats (one group per city)
}
PICKS = {
    "head7": lambda f: f.head(7),
    "tail5": lambda f: f.tail(5),
    "head_-3": lambda f: f.head(-3),
    "all": lambda f: f,
}


@pytest.mark.parametrize("keys", list(KEYS))
@pytest.mark.parametrize("ascending", [False, True])
def test_sorted_group_result_is_pandas(keys, ascending, cfg):
    cfg(partitions=5, shuffle_rows=1)
    ref = orders()
    df = hf.from_pandas(ref, npartitions=7)
    by = KEYS[keys]

    def q(t, **kind):
        g = t.groupby(by).agg(total=("v", "sum"), n=("v", "count")).reset_index()
        g = g[by[::-1] + ["total", "n"]]
        return g.sort_values("total", ascending=ascending, **kind)

    lazy = [PICKS[p](q(df)) for p in PICKS]
    got = hf.compute(*lazy)
    for p, out in zip(PICKS, got):
        exact(out, PICKS[p](q(ref, kind="stable")), msg=f"{keys} {p}")


def test_two_sort_keys_and_nan_first(cfg):
    cfg(partitions=3)
    ref = orders(2000, seed=4)
    df = hf.from_pandas(ref, npartitions=5)

    def q(t, **kind):
        g = t.groupby(["id", "name", "addr"]).agg(total=("v", "max")).reset_index()
        return g.sort_values(["total", "name"], ascending=[False, True], na_position="first", **kind).head(30)

    exact(q(df).compute(), q(ref, kind="stable"))


# ------------------------------------------------------------------------------------------
# Series.reset_index of a group result (found by the session-31 differential fuzzer: the
# lazy group Series had no reset_index, pandas' most common follow-up of g.x.sum())
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build",
    [
        lambda f: f.groupby("a").x.sum().reset_index(),
        lambda f: f.groupby(["a", "b"]).x.sum().reset_index(),
        lambda f: f.groupby("a", dropna=False).x.mean().reset_index(name="m"),
        lambda f: f.groupby("a").x.sum().reset_index(drop=True),
        lambda f: f.groupby("b").x.median().reset_index(),
        lambda f: f.groupby("b").x.nunique().reset_index(),
        lambda f: f.groupby("b").size().reset_index(name="n"),
        lambda f: f.groupby("b", sort=False).x.max().reset_index(),
        lambda f: (lambda s: s[s > 2].reset_index())(f.groupby("b").x.sum()),
        lambda f: f.groupby("a").x.sum().reset_index().assign(y=lambda d: d.x * 2),
    ],
    ids=[
        "sum",
        "two-keys",
        "name-dropna",
        "drop",
        "median",
        "nunique",
        "size",
        "sort-false",
        "filtered",
        "assign",
    ],
)
def test_group_series_reset_index_equals_pandas(build, cfg):
    cfg(partitions=3)
    pdf = pd.DataFrame(
        {
            "a": [1.0, 1.0, 2.0, np.nan, 3.0, 2.0],
            "b": ["u", "v", "u", "u", "v", "w"],
            "x": [1.0, 2.0, 3.0, 4.0, np.nan, 6.0],
        }
    )
    got = build(hf.from_pandas(pdf, npartitions=4)).compute()
    want = build(pdf)
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want)
    else:
        pd.testing.assert_series_equal(got, want)


def test_group_series_reset_index_refuses_unnamed_values_and_a_key_name():
    g = hf.from_pandas(pd.DataFrame({"b": ["u", "v"], "x": [1.0, 2.0]})).groupby("b")
    with pytest.raises(TypeError, match="name='n'"):
        g.size().reset_index()
    with pytest.raises(ValueError, match="already exists"):
        g.x.sum().reset_index(name="b")
