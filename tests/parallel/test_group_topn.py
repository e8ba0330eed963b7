"""Per-group top-n (issue 11, db-benchmark q8): ``sort_values(...).groupby(keys).head(n)``,
``tail(n)`` and ``nth(...)``, compared with plain pandas (``sort_values(kind="stable")``).

Each block keeps only the first/last rows of every group in the frame's sorted order
(ties by the rows' global position) before the shuffle by the keys; the answer must be
pandas' own, rows, order and labels, on any number of ranks: ties across blocks and ranks,
missing keys (``dropna`` both ways), NaN in the sort column (``na_position``), ±inf,
-0.0, ints near 2**63, float32, categorical keys, empty blocks, every row filtered out,
more ranks than partitions. The stable NumPy sort behind it (:mod:`hpcframe.fastsort`) is
checked against pandas' stable sort directly too.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe import fastsort
from hpcframe.fastsort import stable_argsort
from tests.helpers import mpi
from tests.helpers.compare import exact, materialize
from tests.helpers.frames import assert_bits, local, spmd_settings

pytestmark = mpi.timeout(120)
PARTITIONS = 5


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", PARTITIONS)


PICKS = {
    "head1": lambda g: g.head(1),
    "head2": lambda g: g.head(2),
    "head0": lambda g: g.head(0),
    "head_-1": lambda g: g.head(-1),  # not reduced per block (every row may be kept)
    "tail2": lambda g: g.tail(2),
    "nth0": lambda g: g.nth(0),
    "nth-1": lambda g: g.nth(-1),
    "nth_mixed": lambda g: g.nth([1, -2]),
    "nth_slice": lambda g: g.nth(slice(0, 2)),
}


def tied_frame(n: int = 600, seed: int = 5) -> pd.DataFrame:
    """Few distinct sort values (ties across blocks), NaN values and keys, ±inf and -0.0,
    ints near 2**63, float32, a categorical key."""
    rng = np.random.default_rng(seed)
    v = rng.choice(np.array([np.nan, -0.0, 0.0, 1.5, 2.0, np.inf, -np.inf, 7.0]), n)
    k = rng.choice(np.array(["a", "b", "c", "d", None], dtype=object), n)
    big = np.int64(2**63 - 8) + rng.integers(0, 6, n)
    return pd.DataFrame(
        {
            "k": pd.array(k, dtype="str"),
            "ki": rng.integers(0, 40, n).astype(np.int64),
            "kf": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 5, n).astype(float)),
            "cat": pd.Categorical(rng.choice(["x", "y", "z"], n), categories=["z", "y", "x", "w"]),
            "v": v,
            "f32": v.astype(np.float32),
            "big": big,
            "row": np.arange(n, dtype=np.int64),
        }
    )


SORTS = {
    "v_desc": (["v"], False, "last"),
    "v_asc_na_first": (["v"], True, "first"),
    "f32_desc_na_first": (["f32"], False, "first"),
    "big_desc": (["big"], False, "last"),
    "two_keys": (["big", "v"], [True, False], "last"),
    "k_string": (["k", "v"], [False, True], "last"),
}
GROUPS = {
    "str_dropna": (["k"], True),
    "str_keep_na": (["k"], False),
    "int": (["ki"], True),
    "float_keep_na": (["kf"], False),
    "cat_and_int": (["cat", "ki"], True),
}


@pytest.mark.parametrize("sort", list(SORTS))
def test_topn_after_sort(sort):
    ref = tied_frame()
    df = hf.from_pandas(ref, npartitions=7)
    by, asc, na = SORTS[sort]
    s = df.sort_values(by, ascending=asc, na_position=na)
    rs = ref.sort_values(by, ascending=asc, na_position=na, kind="stable")
    # (head(0) is left out here: an empty result loses a categorical column's categories,
    # a known difference of every empty hpcframe result, not of the top-n)
    # every pick with two of the key sets (rotating), to keep the test short
    picks = [p for p in PICKS if p != "head0"]
    names = list(GROUPS)
    cases = [(names[(i + j) % len(names)], p) for i, p in enumerate(picks) for j in range(2)]
    lazy = [PICKS[p](s.groupby(GROUPS[g][0], dropna=GROUPS[g][1])) for g, p in cases]
    lazy += [s.groupby("ki").v.head(2), s.groupby("k")[["v", "big"]].tail(1)]
    got = hf.compute(*lazy)
    exp = [PICKS[p](rs.groupby(GROUPS[g][0], dropna=GROUPS[g][1], observed=True)) for g, p in cases]
    exp += [rs.groupby("ki").v.head(2), rs.groupby("k")[["v", "big"]].tail(1)]
    for (g, p), out, e in zip(cases + [("ki", "v.head2"), ("k", "tail1 cols")], got, exp):
        exact(out, e, msg=f"{sort} {g} {p}")


def test_topn_q8_shape():
    """db-benchmark q8 as the benchmark writes it: filter, select, sort desc, head(2)."""
    ref = tied_frame(900, seed=11)
    df = hf.from_pandas(ref, npartitions=6)

    def q(x, **kind):
        x = x[x.v.notna()][["ki", "v"]]
        return x.sort_values("v", ascending=False, **kind)

    got = q(df).groupby("ki").head(2).compute()
    exp = q(ref, kind="stable").groupby("ki").head(2)
    exact(got, exp)
    # the same answer from the serial engine, bit for bit (any rank count)
    assert_bits(local(q(df).groupby("ki").head(2)), exp)


def test_head_drops_the_rows_behind_n_others_before_the_sort(monkeypatch):
    """Groups of many rows per block (q8's shape): each block first drops the rows that
    at least ``n`` rows of their group are strictly ahead of (``fastsort.group_top_rows``,
    before the block's sort), and the answers are still pandas' (ties, NaN, -0.0, ±inf in
    the sort column; missing keys both ways; ``nth`` of leading positions)."""
    real, dropped = fastsort.group_top_rows, []

    def counting(*args):
        keep = real(*args)
        dropped.append(0 if keep is None else int((~keep).sum()))
        return keep

    monkeypatch.setattr(fastsort, "group_top_rows", counting)
    ref = tied_frame(2000, seed=8)
    cases = [
        (("v", False, "last"), "ki", True, lambda g: g.head(2)),
        (("v", True, "first"), "k", False, lambda g: g.head(1)),
        (("big", False, "last"), "kf", False, lambda g: g.nth([0, 2])),
        (("f32", True, "last"), "cat", True, lambda g: g.head(3)),
    ]
    lazy, exp = sorted_picks(hf.from_pandas(ref, npartitions=4), ref, cases)
    for i, (out, e) in enumerate(zip(hf.compute(*lazy), exp)):
        exact(out, e, msg=f"case {i}")
    assert mpi.allsum(sum(dropped)) > 0  # (a rank may hold no block: summed over ranks)


def sorted_picks(df, ref, cases):
    """``(lazy, expected)``: for each case ``((column, ascending, na_position), key,
    dropna, pick)``, ``pick`` of the group-by of the frame sorted by the column, with
    hpcframe and with pandas (a stable sort)."""
    lazy, exp = [], []
    for (col, asc, na), key, dropna, pick in cases:
        lazy.append(pick(df.sort_values(col, ascending=asc, na_position=na).groupby(key, dropna=dropna)))
        rs = ref.sort_values(col, ascending=asc, na_position=na, kind="stable")
        exp.append(pick(rs.groupby(key, dropna=dropna, observed=True)))
    return lazy, exp


def test_a_rank_merges_its_blocks_candidates_before_the_exchange(monkeypatch):
    """Blocks that each keep a few rows of groups they all hold (q8's shape): a rank merges
    its blocks' candidates of a partition and keeps the first ``n`` of their union before
    the exchange (``_Rows.merge_pieces``), and their stacked sorted runs are merged, not
    sorted again (``fastsort.runs_argsort``). The answers are pandas' (ties across
    blocks, NaN, -0.0, ±inf, missing keys, a categorical key, ``drop_duplicates``)."""
    from hpcframe import execute

    real_merge, merged = execute._Rows.merge_pieces, []
    real_runs, runs = fastsort.runs_argsort, []

    def merging(self, pieces):
        out = real_merge(self, pieces)
        merged.append(sum(len(p) for p in pieces) - len(out[0]))
        return out

    def counting(*args):
        got = real_runs(*args)
        runs.append(got is not None)
        return got

    monkeypatch.setattr(execute._Rows, "merge_pieces", merging)
    monkeypatch.setattr(fastsort, "runs_argsort", counting)
    monkeypatch.setattr(fastsort, "RUNS_DESCENT_RATIO", 4)  # (small blocks: few rows per run)
    ref = tied_frame(4000, seed=11)
    df = hf.from_pandas(ref, npartitions=16)
    cases = [
        (("v", False, "last"), "ki", True, lambda g: g.head(2)),
        (("v", True, "first"), "k", False, lambda g: g.head(1)),
        (("big", False, "last"), "cat", True, lambda g: g.nth([0, 1])),
    ]
    lazy, exp = sorted_picks(df, ref, cases)
    lazy.append(df.drop_duplicates(["ki"]))
    exp.append(ref.drop_duplicates(["ki"]).reset_index(drop=True))  # (a fresh index: user guide)
    for i, (out, e) in enumerate(zip(hf.compute(*lazy), exp)):
        exact(out, e, msg=f"case {i}")
    assert mpi.allsum(sum(merged)) > 0  # rows dropped by the merges (summed over ranks)
    assert mpi.allsum(sum(runs)) > 0  # sorts done by merging runs


def test_topn_empty_and_more_ranks(cfg):
    ref = tied_frame(50, seed=2)
    cfg(partitions=2)  # fewer partitions than ranks under mpiexec -n 3 or 4
    df = hf.from_pandas(ref, npartitions=1)
    none, rnone = df[df.row < 0], ref[ref.row < 0]
    got = hf.compute(
        df.sort_values("v", ascending=False).groupby("k").head(2),
        none.sort_values("v").groupby("k").head(2),
        none.sort_values("v").groupby("k").nth([0, -1]),
    )
    exact(got[0], ref.sort_values("v", ascending=False, kind="stable").groupby("k").head(2))
    for out, e in zip(got[1:], [rnone.groupby("k").head(2), rnone.groupby("k").nth([0, -1])]):
        out = materialize(out)
        assert len(out) == 0 and list(out.columns) == list(e.columns)


def test_topn_all_keys_missing():
    ref = tied_frame(200, seed=4).assign(k=pd.array([None] * 200, dtype="str"))
    df = hf.from_pandas(ref, npartitions=3)
    s, rs = df.sort_values("v"), ref.sort_values("v", kind="stable")
    got = hf.compute(s.groupby("k").head(2), s.groupby("k", dropna=False).tail(2))
    exact(got[1], rs.groupby("k", dropna=False).tail(2))
    assert len(materialize(got[0])) == 0


def test_topn_unsorted_frame_and_nasty(nasty):
    """Without a sort: the frame's own order (positions); the nasty data set's columns
    (dates with a time zone, bools with nulls, decimals) sorted by pandas' order."""
    path, ref = nasty
    df = hf.read_parquet(path)
    lazy = [
        df.groupby("s").head(2),
        df.groupby("cat", dropna=False).tail(1),
        df.sort_values("tz", ascending=False).groupby("s").head(1),
        df.sort_values(["d", "big"], na_position="first").groupby("kb").nth(-1),
        df.sort_values("f32").groupby("cat").tail(2),
    ]
    exp = [
        ref.groupby("s").head(2),
        ref.groupby("cat", dropna=False, observed=True).tail(1),
        ref.sort_values("tz", ascending=False, kind="stable").groupby("s").head(1),
        ref.sort_values(["d", "big"], na_position="first", kind="stable").groupby("kb").nth(-1),
        ref.sort_values("f32", kind="stable").groupby("cat", observed=True).tail(2),
    ]
    for i, (out, e) in enumerate(zip(hf.compute(*lazy), exp)):
        exact(out, e, msg=f"nasty case {i}")


# --------------------------------------------------------------------------------------------
# the stable NumPy sort, against pandas' stable sort
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype", ["float64", "float32", "int64", "uint64", "int8", "bool", "datetime64[ns]", "timedelta64[s]"]
)
def test_stable_argsort_is_pandas_order(dtype):
    rng = np.random.default_rng(1)
    if dtype.startswith("float"):
        pool = np.array([np.nan, -0.0, 0.0, 1.5, -np.inf, np.inf, 3.0, -2.0], dtype=dtype)
    elif dtype == "bool":
        pool = np.array([True, False])
    elif dtype[0] in "dt":
        pool = np.array([np.iinfo(np.int64).min, 0, 5, -5, 7, np.iinfo(np.int64).max]).view(dtype)
    else:
        info = np.iinfo(dtype)
        pool = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1], dtype=dtype)
    for n in [0, 1, 2, 3, 17, 300]:
        for _ in range(5):
            v = pool[rng.integers(0, len(pool), n)]
            for asc in (True, False):
                for na in ("last", "first"):
                    exp = pd.Series(v).sort_values(ascending=asc, na_position=na, kind="stable").index
                    got = stable_argsort(v, asc, na == "last")
                    np.testing.assert_array_equal(got, exp.to_numpy(), err_msg=f"{dtype} {asc} {na}")
    assert stable_argsort(np.array(["a", "b"], dtype=object)) is None
    assert stable_argsort(pd.array([1, None], dtype="Int64")) is None


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_GROUP_TOPN_EXAMPLES", "8"))

if st is not None:
    _VALUES = [np.nan, -1.5, 0.0, -0.0, 2.25, 3.0, np.inf, -np.inf]
    _rows = st.lists(
        st.tuples(
            st.sampled_from([None, "a", "b", "c"]),
            st.integers(-2, 2),
            st.sampled_from(_VALUES),
            st.integers(2**63 - 4, 2**63 - 1),
        ),
        max_size=50,
    )

    def _frame(rows):
        return pd.DataFrame(
            {
                "k": pd.array([r[0] for r in rows], dtype="str"),
                "i": np.array([r[1] for r in rows], dtype=np.int64),
                "v": np.array([r[2] for r in rows], dtype=np.float64),
                "g": np.array([r[3] for r in rows], dtype=np.int64),
            }
        )

    @spmd_settings(EXAMPLES)
    @given(
        rows=_rows,
        nparts=st.integers(1, 5),
        keys=st.sampled_from([["k"], ["i"], ["k", "i"]]),
        by=st.sampled_from([["v"], ["g"], ["v", "i"], ["i", "g"]]),
        asc=st.booleans(),
        na=st.sampled_from(["first", "last"]),
        pick=st.sampled_from(sorted(PICKS)),
        dropna=st.booleans(),
    )
    def test_topn_hypothesis(rows, nparts, keys, by, asc, na, pick, dropna):
        pdf = _frame(rows)
        df = hf.from_pandas(pdf, npartitions=nparts)
        got = PICKS[pick](df.sort_values(by, ascending=asc, na_position=na).groupby(keys, dropna=dropna))
        rs = pdf.sort_values(by, ascending=asc, na_position=na, kind="stable")
        exp = PICKS[pick](rs.groupby(keys, dropna=dropna))
        exact(got.compute(), exp, msg=f"{keys} by {by} asc={asc} {na} {pick} dropna={dropna} n={nparts}")


# --------------------------------------------------------------------------------------------
# per-group median and standard deviation (db-benchmark q6), exactly as pandas
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("dropna", [True, False])
def test_median_std_q6_shape(sort, dropna):
    ref = tied_frame(700, seed=8)
    df = hf.from_pandas(ref, npartitions=6)
    named = dict(
        median_v=("v", "median"), sd_v=("v", "std"), med_f32=("f32", "median"), q_big=("big", "median")
    )
    got = hf.compute(
        df.groupby(["k", "ki"], sort=sort, dropna=dropna).agg(**named),
        df.sort_values("v", ascending=False).groupby("kf", sort=sort, dropna=dropna).agg(**named),
        df[df.row < 0].groupby("k", sort=sort).agg(**named),
    )
    exp = [
        ref.groupby(["k", "ki"], sort=sort, dropna=dropna).agg(**named),
        ref.sort_values("v", ascending=False, kind="stable")
        .groupby("kf", sort=sort, dropna=dropna)
        .agg(**named),
    ]
    for i, (out, e) in enumerate(zip(got, exp)):
        exact(out, e, msg=f"q6 case {i} sort={sort} dropna={dropna}")
    assert len(materialize(got[2])) == 0
