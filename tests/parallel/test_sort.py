"""``sort_values`` (Frame and Series), ``head``/``tail`` after a sort, sorted frames under
group-wise operations, and sorted frames stored by the distributed sample sort
(``persist``, ``to_parquet``), compared with pandas' stable sort.

hpcframe's sort is always stable, so the reference is ``sort_values(..., kind="stable")``;
the result keeps the rows' labels (their positions in the unsorted collected frame), as
pandas does. The data is the nasty dataset (tests/helpers/frames.py): strings with nulls,
bools with nulls, float32, int64 at the ends of the range, dates, tz-aware times, a
categorical, NaN floats; an empty file and small row groups, so some blocks (and ranks) have
no rows. Runs locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.frames import keyed_frames, same, spmd_settings

pytestmark = mpi.timeout(120)


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 5)


def exact(got, exp, msg=""):
    same(got, exp, msg=msg, exact=True)


SORTS = {
    "float_nan": (["v"], True),
    "float_desc": (["v"], False),
    "str_nulls": (["s"], True),
    "two_keys_mixed": (["s", "n"], [False, True]),
    "ints_many_ties": (["n"], True),
    "int64_extremes": (["big", "id"], [False, True]),
    "float32": (["f32"], True),
    "bool_with_nulls": (["kb"], True),
    "dates": (["d", "n"], [True, False]),
    "tz_times": (["tz"], False),
    "categorical": (["cat", "v"], True),
    "all_equal": (["one"], True),
}


@pytest.mark.parametrize("na_position", ["last", "first"])
@pytest.mark.parametrize("case", list(SORTS))
def test_sort_values(nasty, case, na_position):
    path, ref = nasty
    by, asc = SORTS[case]
    df = hf.read_parquet(path)
    s = df.sort_values(by, ascending=asc, na_position=na_position)
    full, head, tail = hf.compute(s, s.head(7), s.tail(9))
    exp = ref.sort_values(by, ascending=asc, na_position=na_position, kind="stable")
    exact(full, exp, f"{case} {na_position}")
    exact(head, exp.head(7), f"{case} head")
    exact(tail, exp.tail(9), f"{case} tail")


def test_sort_is_stable_with_many_ties(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = df.sort_values("one").compute()
    exact(got, ref)  # every key equal: dataset order
    got = df.sort_values(["n"], ascending=False)[["id", "n"]].compute()
    exact(got, ref.sort_values("n", ascending=False, kind="stable")[["id", "n"]])


def test_sort_after_filter_and_filter_after_sort(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = df[df.n > 20].sort_values("v", na_position="first").compute()
    exp = ref[ref.n > 20].reset_index(drop=True).sort_values("v", na_position="first", kind="stable")
    exact(got, exp)
    s = df.sort_values(["s", "v"], ascending=[True, False])
    got = s[s.n % 3 == 0][["id", "v"]].head(11).compute()
    r = ref.sort_values(["s", "v"], ascending=[True, False], kind="stable")
    exact(got, r[r.n % 3 == 0][["id", "v"]].head(11))
    got = s.assign(w=s.v * 2).tail(4).compute()
    exact(got, r.assign(w=r.v * 2).tail(4))


def test_filter_after_sort_with_row_groups_pruned_inside_a_block(shared_dir):
    """Statistics prune row groups inside a block (one file of 1-row groups is one block):
    the rows after a pruned group keep their positions in the dataset as labels."""
    path = os.path.join(shared_dir, "sort_one_row_groups")
    ref = pd.DataFrame({"a": [5, 3, 9, 1, 7, 2, 8, 4], "v": [1, 9, 1, 9, 1, 9, 1, 9], "g": [0, 1] * 4})

    def write():
        os.makedirs(path, exist_ok=True)
        table = pa.Table.from_pandas(ref, preserve_index=False)
        pq.write_table(table, f"{path}/part-0.parquet", row_group_size=1)

    mpi.on_root(write)
    df = hf.read_parquet(path)
    s = df.sort_values("a")
    r = ref.sort_values("a", kind="stable")
    exact(s[s.v > 4].compute(), r[r.v > 4])
    exact(s[s.v > 4][["a"]].head(2).compute(), r[r.v > 4][["a"]].head(2))
    f = df[df.v > 4]
    exact(f.groupby("g").head(1).compute(), ref[ref.v > 4].groupby("g").head(1))


def test_sort_twice_keeps_the_first_sort_for_ties(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = df.sort_values("v", ascending=False).sort_values("s", na_position="first").compute()
    exp = ref.sort_values("v", ascending=False, kind="stable").sort_values(
        "s", na_position="first", kind="stable"
    )
    exact(got, exp)


def test_series_sort_values(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = hf.compute(
        df.v.sort_values(ascending=False),
        df.s.sort_values(na_position="first").head(5),
        (df.n * 2).sort_values().tail(3),
        df.tz.sort_values(ignore_index=True),
    )
    exact(got[0], ref.v.sort_values(ascending=False, kind="stable"))
    exact(got[1], ref.s.sort_values(na_position="first", kind="stable").head(5))
    exact(got[2], (ref.n * 2).sort_values(kind="stable").tail(3))
    exact(got[3], ref.tz.sort_values(ignore_index=True, kind="stable"))


def test_ignore_index(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    s = df.sort_values("v", ignore_index=True)
    full, tail = hf.compute(s, s.tail(4))
    exp = ref.sort_values("v", ignore_index=True, kind="stable")
    exact(full, exp)
    exact(tail, exp.tail(4))


def test_special_values():
    big = 2**63 - 1
    pdf = pd.DataFrame(
        {
            "x": [1.0, np.inf, np.nan, -np.inf, 0.0, -0.0, np.inf, np.nan, 2.5, -np.inf],
            "i": [big, -big - 1, 5, big - 1, 0, -1, big, 3, -big, 2],
            "t": pd.to_datetime(["2020-01-01", None, "2019-05-05", None, "2021-01-01"] * 2),
            "o": pd.array(["b", None, "a", "c", None, "a", "b", "c", None, "a"], dtype="str"),
        }
    )
    df = hf.from_pandas(pdf, npartitions=3)
    for by, asc, na in [
        ("x", True, "last"),
        ("x", False, "first"),
        ("i", False, "last"),
        (["t", "i"], [False, True], "first"),
        (["o", "x"], [True, False], "last"),
    ]:
        got = df.sort_values(by, ascending=asc, na_position=na).compute()
        exact(got, pdf.sort_values(by, ascending=asc, na_position=na, kind="stable"), f"{by}")


def test_empty_frames(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    none = df[df.n > 1000]
    got = hf.compute(none.sort_values("v"), none.sort_values("s").head(3), none.tail(2))
    r = ref[ref.n > 1000]
    exact(got[0], r.sort_values("v"))
    exact(got[1], r.sort_values("s").head(3))
    exact(got[2], r.tail(2))
    empty = pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype="int64")})
    e = hf.from_pandas(empty)
    exact(e.sort_values("a").compute(), empty)
    exact(e.sort_values("a").tail(3).compute(), empty)


def test_tail_without_a_sort(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    got = hf.compute(df.tail(3), df.tail(500), df[df.n < 10].tail(4), df.v.tail(2))
    exact(got[0], ref.tail(3))
    exact(got[1], ref.tail(500))
    exact(got[2], ref[ref.n < 10].reset_index(drop=True).tail(4))
    exact(got[3], ref.v.tail(2))


def test_sort_of_a_group_by_result(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    g = df.groupby("s").agg(total=("n", "sum"), m=("v", "max"))
    got = hf.compute(g.sort_values("total", ascending=False), g.sort_values("m").head(2))
    r = ref.groupby("s").agg(total=("n", "sum"), m=("v", "max"))
    exact(got[0], r.sort_values("total", ascending=False, kind="stable"))
    exact(got[1], r.sort_values("m", kind="stable").head(2))


def test_group_operations_see_the_sorted_order(nasty):
    """A shuffle of a sorted frame orders each partition by the sort (ties by position)."""
    path, ref = nasty
    df = hf.read_parquet(path)
    s = df.sort_values("v", ascending=False, na_position="first")
    r = ref.sort_values("v", ascending=False, na_position="first", kind="stable")
    first = s.drop_duplicates("s").compute()
    exact(first, r.drop_duplicates("s").reset_index(drop=True))
    cum = s.groupby("s", dropna=False).n.transform("cumsum").compute()
    exp = r.groupby("s", dropna=False).n.transform("cumsum").reset_index(drop=True)
    exact(cum, exp)


def test_persist_of_a_sorted_frame(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    p = df.sort_values(["s", "v"], ascending=[False, True], na_position="first").persist()
    try:
        exp = ref.sort_values(["s", "v"], ascending=[False, True], na_position="first", kind="stable")
        exact(p.compute(), exp.reset_index(drop=True))  # a new dataset: rows numbered from 0
        exact(p.head(4).compute(), exp.head(4).reset_index(drop=True))
        assert p.is_persisted
        # stored sorted: later sorts of the same keys keep it
        exact(p[p.n > 25].compute(), exp[exp.n > 25].reset_index(drop=True))
    finally:
        p.unpersist()


def test_sample_sort_of_categorical_strings_and_times(nasty):
    path, ref = nasty
    df = hf.read_parquet(path)
    for by, asc in [(["cat", "id"], [False, True]), (["s", "tz"], [True, False]), (["kb", "d", "f32"], True)]:
        p = df.sort_values(by, ascending=asc, na_position="first").persist()
        try:
            exp = ref.sort_values(by, ascending=asc, na_position="first", kind="stable").reset_index(
                drop=True
            )
            exact(p.compute(), exp, f"{by}")
        finally:
            p.unpersist()


def test_to_parquet_writes_sorted_row_groups_that_prune(nasty, shared_dir):
    path, ref = nasty
    df = hf.read_parquet(path)
    out = os.path.join(shared_dir, "sorted_by_n")
    df.sort_values("n").to_parquet(out)
    back = hf.read_parquet(out)
    exp = ref.sort_values("n", kind="stable").reset_index(drop=True)
    got = back.compute()
    exact(got[list(exp.columns)], exp)
    sel = back[back.n >= 45].compute()
    stats = hf.last_run_stats()
    exact(sel[list(exp.columns)], exp[exp.n >= 45].reset_index(drop=True))
    assert stats["partitions_pruned"] >= 3, stats  # 5 range partitions, only the last overlaps


def test_more_ranks_than_partitions(nasty, monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 2)
    path, ref = nasty
    df = hf.read_parquet(path)
    p = df.sort_values("v").persist()
    try:
        exact(p.compute(), ref.sort_values("v", kind="stable").reset_index(drop=True))
    finally:
        p.unpersist()
    small = hf.from_pandas(ref.head(3), npartitions=1)
    exact(
        small.sort_values("n").persist().compute(),
        ref.head(3).sort_values("n", kind="stable").reset_index(drop=True),
    )


def test_errors(nasty):
    path, _ = nasty
    df = hf.read_parquet(path)
    with pytest.raises(hf.ColumnNotFoundError):
        df.sort_values("nope")
    with pytest.raises(ValueError, match="Length of ascending"):
        df.sort_values(["v", "n"], ascending=[True])
    with pytest.raises(ValueError, match="na_position"):
        df.sort_values("v", na_position="middle")
    with pytest.raises(ValueError, match="kind"):
        df.sort_values("v", kind="bogo")
    g = df.groupby("s", as_index=False).agg(t=("n", "sum"))
    with pytest.raises(ValueError, match="ordered by the column 's'"):
        g.assign(s=g.s.str.upper())  # the rows would be re-ordered by the new keys


def test_assign_replaces_a_sort_key(nasty):
    """The rows keep the sorted order of the old values, as pandas' rows keep their place
    (a regression: replacing the column raised; a group result's key re-sorted the rows)."""
    path, ref = nasty
    df = hf.read_parquet(path)
    s = df.sort_values(["v", "id"], ascending=[False, True], na_position="first")
    r = ref.sort_values(["v", "id"], ascending=[False, True], na_position="first", kind="stable")
    got = hf.compute(s.assign(v=s.n, w=s.v * 2), s.assign(v=s.v.fillna(0)).head(7))
    exact(got[0], r.assign(v=r.n, w=r.v * 2))
    exact(got[1], r.assign(v=r.v.fillna(0)).head(7))
    g = df.groupby("s", as_index=False).agg(t=("n", "sum"))
    rg = ref.groupby("s", as_index=False).agg(t=("n", "sum"))
    exact(g.assign(t=g.t * 2).compute(), rg.assign(t=rg.t * 2))


def test_a_projection_of_a_sorted_frame_keeps_its_columns(nasty, shared_dir):
    """``df.sort_values("v")[["n", "s"]]`` keeps ``v`` for its order only: persisted,
    written or indexed it still shows ``n`` and ``s`` alone, in that order (a regression:
    the sort key came back as a column, first)."""
    path, ref = nasty
    df = hf.read_parquet(path)
    s = df.sort_values("v")[["n", "s"]]
    exp = ref.sort_values("v", kind="stable")[["n", "s"]].reset_index(drop=True)
    p = s.persist()
    try:
        assert p.columns.tolist() == ["n", "s"]
        exact(p.compute(), exp)
    finally:
        p.unpersist()
    out = os.path.join(shared_dir, "sorted_projection")
    s.to_parquet(out)
    exact(hf.read_parquet(out).compute(), exp)
    indexed = df.sort_values("v")[["n", "id"]].set_index("id")
    assert indexed.columns.tolist() == ["n"]
    exact(indexed.compute(), ref.sort_values("v", kind="stable")[["n", "id"]].set_index("id").sort_index())


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames, random keys, directions, NaN placement and head/tail
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_SORT_EXAMPLES", "6"))

if st is not None:
    frames = keyed_frames([np.nan, -1.5, 0.0, 2.25, np.inf, 3.0])
    # derandomized and not shrunk under MPI: every rank must draw the same examples
    _SETTINGS = spmd_settings(EXAMPLES)

    @_SETTINGS
    @given(
        frame=frames,
        by=st.sampled_from([["k"], ["i"], ["v"], ["k", "i"], ["v", "k"], ["i", "v", "k"]]),
        asc=st.lists(st.booleans(), min_size=3, max_size=3),
        na=st.sampled_from(["first", "last"]),
        n=st.integers(0, 12),
        keep=st.sampled_from(["first", "last", "all"]),
    )
    def test_sort_hypothesis(frame, by, asc, na, n, keep):
        pdf, nparts = frame
        df = hf.from_pandas(pdf, npartitions=nparts)
        a = asc[: len(by)]
        s = df.sort_values(by, ascending=a, na_position=na)
        num = [c for c in by if c != "k"] or ["i"]
        got = hf.compute(
            s, s.head(n), s.tail(n), df.nlargest(n, num, keep=keep), df.nsmallest(n, num, keep=keep)
        )
        exp = pdf.sort_values(by, ascending=a, na_position=na, kind="stable")
        msg = f"{by} {a} {na} n={n} npartitions={nparts}"
        exact(got[0], exp, msg)
        exact(got[1], exp.head(n), msg)
        exact(got[2], exp.tail(n), msg)
        exact(got[3], pdf.nlargest(n, num, keep=keep), msg + f" nlargest keep={keep}")
        exact(got[4], pdf.nsmallest(n, num, keep=keep), msg + f" nsmallest keep={keep}")


def test_persist_keeps_the_categories_of_every_file(mixed_categories):
    """A sorted frame whose dictionary columns have other category lists in every file
    (another order, unused ones; an empty file, a file where every key is missing) keeps
    pandas' categories, the union in file order, for the sort keys and the other columns
    (the pieces of a partition from several blocks and ranks were stacked as ``str``)."""
    path, ref = mixed_categories
    df = hf.read_parquet(path)
    for by in (["x"], ["k", "x"], ["c", "id"]):
        p = df.sort_values(by).persist()
        try:
            exp = ref.sort_values(by, kind="stable").reset_index(drop=True)
            pd.testing.assert_frame_equal(p.compute(), exp, check_exact=True, obj=f"by {by}")
        finally:
            p.unpersist()


def test_sort_and_median_of_a_float16_column():
    """A float16 column sorts and has a median, as in pandas. Regression: the check whether
    the rows were sorted already asked pandas whether the column is monotonic, which needs
    an Index, and pandas has no float16 Index ("float16 indexes are not supported")."""
    ref = pd.DataFrame({"k": [1, 1, 2, 2], "h": np.array([0.5, 60000.0, 1.5, np.nan], dtype="float16")})
    f = hf.from_pandas(ref, npartitions=2)
    got = f.sort_values("h").compute()
    pd.testing.assert_frame_equal(got, ref.sort_values("h", kind="stable"), check_index_type=False)
    assert f.h.median().compute() == ref.h.median()
