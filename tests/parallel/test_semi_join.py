"""``isin`` with a lazy Series (issue 10): ``df[df.k.isin(other.col)]`` is a semi-join and
``df[~df.k.isin(other.col)]`` an anti-join, compared with pandas (NaN keys: pandas' ``isin``
finds NaN among values holding NaN), on both strategies (the values broadcast, or both sides
shuffled by the key), combined with other conditions by ``&``; any other use of such a mask
is refused with a message saying what is supported.

A filtered frame computes with a fresh RangeIndex (the user guide's differences from
pandas), so the reference is ``ref[mask].reset_index(drop=True)``.

Every test runs on every rank, locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import close
from tests.helpers.frames import assert_bits, local, spmd_settings

pytestmark = mpi.timeout(120)


@pytest.fixture(autouse=True)
def few_partitions(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 5)


@pytest.fixture(params=["broadcast", "shuffle"])
def strategy(request, monkeypatch):
    if request.param == "shuffle":
        monkeypatch.setattr(hf.config, "broadcast_bytes", 1)
    return request.param


def _data():
    rng = np.random.default_rng(7)
    n = 400
    s = rng.choice(["AA", "UA", "DL", "B6"], n).astype(object)
    s[rng.random(n) < 0.1] = None
    f = rng.choice([0.5, 1.5, 2.5, np.nan], n)
    flights = pd.DataFrame(
        {
            "id": np.arange(n),
            "tailnum": rng.integers(0, 60, n),
            "carrier": pd.array(s, dtype="str"),
            "f": f,
            "delay": rng.normal(0, 20, n),
        }
    )
    m = 50
    pc = rng.choice(["AA", "UA", "WN"], m).astype(object)
    pc[rng.random(m) < 0.2] = None
    planes = pd.DataFrame(
        {
            "tailnum": rng.integers(0, 80, m),
            "year": rng.integers(1980, 2020, m),
            "carrier": pd.array(pc, dtype="str"),
            "f": rng.choice([0.5, 3.5, np.nan], m),
        }
    )
    return flights, planes


@pytest.fixture
def frames():
    flights, planes = _data()
    return hf.from_pandas(flights, npartitions=7), hf.from_pandas(planes, npartitions=3), flights, planes


check = partial(close, fresh_index=True)  # a filtered frame's rows are numbered 0..n-1


def test_semi_join_issue_example(frames, strategy):
    flights, planes, fp, pp = frames
    got = flights[flights.tailnum.isin(planes[planes.year < 2000].tailnum)]
    check(got, fp[fp.tailnum.isin(pp[pp.year < 2000].tailnum)])
    stats = hf.last_run_stats()
    assert stats.get("joins_broadcast" if strategy == "broadcast" else "joins_shuffled") == 1


def test_anti_join(frames, strategy):
    flights, planes, fp, pp = frames
    got = flights[~flights.tailnum.isin(planes[planes.year < 2000].tailnum)]
    check(got, fp[~fp.tailnum.isin(pp[pp.year < 2000].tailnum)])


def test_after_a_sort_keeps_the_sorted_frames_labels(frames, strategy):
    """A semi/anti join is a filter: after a sort it keeps the sorted frame's labels (the
    rows' positions in the dataset), as a plain filter after a sort does, also through a
    head, another filter or sort, and nlargest."""
    flights, planes, fp, pp = frames
    s = flights.sort_values(["delay"])
    r = fp.sort_values(["delay"], kind="stable")
    old = planes[planes.year < 2000].tailnum
    rold = pp[pp.year < 2000].tailnum
    close(s[s.tailnum.isin(old)], r[r.tailnum.isin(rold)])
    close(s[~s.tailnum.isin(old)].head(9), r[~r.tailnum.isin(rold)].head(9))
    t, rt = s[s.tailnum.isin(old)], r[r.tailnum.isin(rold)]
    close(t[t.f > 1], rt[rt.f > 1])
    close(t.sort_values("id"), rt.sort_values("id", kind="stable"))
    close(t.nlargest(5, "tailnum"), rt.nlargest(5, "tailnum"))


@pytest.mark.parametrize("col", ["carrier", "f"])
def test_missing_values_match_as_pandas(frames, strategy, col):
    flights, planes, fp, pp = frames
    check(flights[flights[col].isin(planes[col])], fp[fp[col].isin(pp[col])])
    check(flights[~flights[col].isin(planes[col])], fp[~fp[col].isin(pp[col])])
    # without missing values among the values: missing keys are not found
    got = flights[flights[col].isin(planes[planes[col].notna()][col])]
    check(got, fp[fp[col].isin(pp[pp[col].notna()][col])])


def test_int_keys_float_values(frames, strategy):
    flights, planes, fp, pp = frames
    values = planes.assign(t=planes.tailnum * 1.0).t
    check(flights[flights.tailnum.isin(values)], fp[fp.tailnum.isin(pp.tailnum * 1.0)])


def test_combined_with_other_conditions(frames, strategy):
    flights, planes, fp, pp = frames
    old = planes[planes.year < 2000].tailnum
    got = flights[(flights.delay > 0) & flights.tailnum.isin(old)]
    check(got, fp[(fp.delay > 0) & fp.tailnum.isin(pp[pp.year < 2000].tailnum)])
    got = flights[flights.tailnum.isin(old) & (flights.delay > 0) & ~flights.carrier.isin(planes.carrier)]
    expected = fp[fp.tailnum.isin(pp[pp.year < 2000].tailnum) & (fp.delay > 0) & ~fp.carrier.isin(pp.carrier)]
    check(got, expected)


def test_expression_key_and_group_values(frames, strategy):
    flights, planes, fp, pp = frames
    check(flights[(flights.tailnum + 1).isin(planes.tailnum)], fp[(fp.tailnum + 1).isin(pp.tailnum)])
    top = planes.groupby("carrier").tailnum.max()
    check(flights[flights.tailnum.isin(top)], fp[fp.tailnum.isin(pp.groupby("carrier").tailnum.max())])


def test_empty_values_and_then_operations(frames, strategy):
    flights, planes, fp, pp = frames
    none = planes[planes.year > 3000].tailnum
    check(flights[flights.tailnum.isin(none)], fp[fp.tailnum.isin([])])
    check(flights[~flights.tailnum.isin(none)], fp)
    sub = flights[flights.tailnum.isin(planes.tailnum)]
    ref = fp[fp.tailnum.isin(pp.tailnum)]
    got = sub.groupby("carrier").delay.sum().compute()
    pd.testing.assert_series_equal(got, ref.groupby("carrier").delay.sum(), check_exact=False, rtol=1e-12)
    total = sub.delay.sum()
    assert_bits(total.compute(), local(total))
    assert sub.len().compute() == len(ref)


def test_empty_result_keeps_the_dtypes_of_the_rows(shared_dir, strategy, request):
    """A semi-join keeping no row has the dtypes of the filtered rows, as pandas (and a plain
    empty filter): an int64 column stays int64 though the values' dataset has an int column
    of the same name with nulls (float64 in pandas), whichever values column is used."""
    root = os.path.join(shared_dir, f"semi_empty_{request.node.name}")
    rows = pd.DataFrame({"x": np.arange(1, 4), "k": [7.0, 8.0, 9.0]})
    values = pd.DataFrame(
        {"x": pd.array([1, None, 2], dtype="Int64"), "y": pd.array([1, None, 2], dtype="Int64")}
    )

    def write():
        for name, df in (("rows", rows), ("values", values)):
            os.makedirs(os.path.join(root, name))
            df.to_parquet(os.path.join(root, name, "p0.parquet"), index=False)

    mpi.on_root(write)
    lf, rf = hf.read_parquet(os.path.join(root, "rows")), hf.read_parquet(os.path.join(root, "values"))
    pv = pd.read_parquet(os.path.join(root, "values"))
    for col in ("x", "y"):
        got = lf[lf.k.isin(rf[col])].compute()
        pd.testing.assert_frame_equal(got, rows[rows.k.isin(pv[col])].reset_index(drop=True))


def test_empty_result_then_drop_duplicates_keeps_bools_with_nulls_object(shared_dir, strategy, request):
    """A stage over an empty semi-join (drop_duplicates) keeps a bool column with nulls
    ``object``, as pandas and the semi-join itself (the stage declared ``bool``, from the
    first file's schema, and the empty result took it)."""
    root = os.path.join(shared_dir, f"semi_empty_bools_{request.node.name}")
    rows = pd.DataFrame({"k": ["a", "a", "b"], "f": [1.0, 2.0, 3.0], "b": [True, None, False]})

    def write():
        os.makedirs(os.path.join(root, "rows"))
        os.makedirs(os.path.join(root, "values"))
        rows.to_parquet(os.path.join(root, "rows", "p0.parquet"), index=False)
        pd.DataFrame({"f": [9.0]}).to_parquet(os.path.join(root, "values", "p0.parquet"), index=False)

    mpi.on_root(write)
    lf, rf = hf.read_parquet(os.path.join(root, "rows")), hf.read_parquet(os.path.join(root, "values"))
    pl = pd.read_parquet(os.path.join(root, "rows"))
    got = lf[lf.f.isin(rf.f)].drop_duplicates("k").compute()
    pd.testing.assert_frame_equal(got, pl[pl.f.isin([9.0])].drop_duplicates("k").reset_index(drop=True))


def test_empty_result_then_drop_duplicates_keeps_ints_with_nulls_float(shared_dir, strategy, request):
    """A stage over an empty anti-join (drop_duplicates, after a sort too) of a dataset whose
    int column has nulls in a later file only keeps it ``float64``, as pandas and the
    anti-join itself (the stage declared the first file's ``int64``; the anti-join held
    ``float64`` unflagged)."""
    root = os.path.join(shared_dir, f"semi_empty_ints_{request.node.name}")

    def write():
        os.makedirs(os.path.join(root, "rows"))
        os.makedirs(os.path.join(root, "values"))
        pd.DataFrame({"k": ["a", "b"], "x": [1, 2]}).to_parquet(os.path.join(root, "rows", "p0.parquet"))
        pd.DataFrame({"k": ["c"], "x": pd.array([None], dtype="Int64")}).to_parquet(
            os.path.join(root, "rows", "p1.parquet")
        )
        pd.DataFrame({"k": ["a", "b", "c"]}).to_parquet(os.path.join(root, "values", "p0.parquet"))

    mpi.on_root(write)
    lf, rf = hf.read_parquet(os.path.join(root, "rows")), hf.read_parquet(os.path.join(root, "values"))
    pl = pd.read_parquet(os.path.join(root, "rows"))
    assert pl.x.dtype == "float64"
    s, ps = lf.sort_values("k"), pl.sort_values("k", kind="stable")
    got = hf.compute(lf[~lf.k.isin(rf.k)].drop_duplicates("k"), s[~s.k.isin(rf.k)].drop_duplicates("x"))
    pd.testing.assert_frame_equal(got[0], pl[~pl.k.isin(["a", "b", "c"])].drop_duplicates("k"))
    pd.testing.assert_frame_equal(got[1], ps[~ps.k.isin(["a", "b", "c"])].drop_duplicates("x"))


def test_semi_join_of_a_merge(frames):
    flights, planes, fp, pp = frames
    m = flights.merge(planes[["tailnum", "year"]], on="tailnum", how="left")
    mp = pd.merge(fp, pp[["tailnum", "year"]], on="tailnum", how="left")
    check(m[m.carrier.isin(planes.carrier)], mp[mp.carrier.isin(pp.carrier)])


def test_unsupported_uses_say_what_is_supported(frames):
    flights, planes, _, _ = frames
    mask = flights.tailnum.isin(planes.tailnum)
    for use in (
        lambda: mask.compute(),
        lambda: mask | (flights.delay > 0),
        lambda: mask + 1,
        lambda: mask == True,  # noqa: E712
        lambda: ~(mask & (flights.delay > 0)),
        lambda: flights.assign(m=mask).compute(),
    ):
        with pytest.raises(TypeError, match="semi-join"):
            use()
    other = hf.from_pandas(pd.DataFrame({"tailnum": [1, 2]}))
    with pytest.raises(ValueError, match="same dataset"):
        other[mask]


# --------------------------------------------------------------------------------------------
# Hypothesis: small random frames
# --------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None

EXAMPLES = int(os.environ.get("HPCFRAME_SEMI_JOIN_EXAMPLES", "10"))

if st is not None:
    _rows = st.lists(
        st.tuples(
            st.sampled_from([np.nan, 0.0, 1.0, 2.0]), st.sampled_from([None, "a", "b"]), st.integers(-2, 2)
        ),
        max_size=25,
    )

    def _frame(rows):
        return pd.DataFrame(
            {
                "f": np.array([r[0] for r in rows], dtype=np.float64),
                "s": pd.array([r[1] for r in rows], dtype="str"),
                "i": np.array([r[2] for r in rows], dtype=np.int64),
            }
        )

    @spmd_settings(EXAMPLES)
    @given(
        left=_rows,
        right=_rows,
        nparts=st.tuples(st.integers(1, 4), st.integers(1, 3)),
        col=st.sampled_from(["f", "s", "i"]),
        negate=st.booleans(),
        shuffle=st.booleans(),
        cond=st.booleans(),
    )
    def test_semi_join_hypothesis(left, right, nparts, col, negate, shuffle, cond):
        lp, rp = _frame(left), _frame(right)
        old = hf.config.broadcast_bytes
        hf.config.broadcast_bytes = 1 if shuffle else old
        try:
            lf, rf = hf.from_pandas(lp, npartitions=nparts[0]), hf.from_pandas(rp, npartitions=nparts[1])
            mask = lf[col].isin(rf[rf.i >= 0][col])
            mask = ~mask if negate else mask
            got = lf[mask & (lf.i != 0) if cond else mask].compute()
        finally:
            hf.config.broadcast_bytes = old
        expected = lp[col].isin(rp[rp.i >= 0][col])
        expected = ~expected if negate else expected
        if cond:
            expected = expected & (lp.i != 0)
        pd.testing.assert_frame_equal(got, lp[expected].reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# few rows to filter, many values: the left side's keys broadcast (an EXISTS over a big table)
# --------------------------------------------------------------------------------------------
def _few_and_many(col):
    """20 rows to filter and 3,000 mostly distinct values, missing keys on both sides."""
    rng = np.random.default_rng(11)

    def frame(n, hi):
        f = rng.integers(0, hi, n).astype(float)
        f[rng.random(n) < 0.1] = np.nan
        s = np.array([f"k{int(v)}" if v == v else None for v in f], dtype=object)
        return pd.DataFrame(
            {"i": rng.integers(0, hi, n), "f": f, "s": pd.array(s, dtype="str"), "x": np.arange(n)}
        )

    return frame(20, 40), frame(3000, 6000)


@pytest.mark.parametrize("col", ["i", "f", "s"])
@pytest.mark.parametrize("negate", [False, True])
@pytest.mark.parametrize("nparts", [(1, 1), (3, 4), (7, 2)])
def test_few_rows_many_values_broadcast_the_keys(monkeypatch, col, negate, nparts):
    """The values do not fit ``broadcast_bytes``, the rows to filter do. They are read
    first, and where the probe matches keys exactly as ``isin`` (numbers: NaN finds NaN) their
    keys drop the values no row has while the values are read; what is left fits and is
    broadcast. Where it does not (strings), the keys are gathered, matched where the values
    are read, and the marks OR-ed over the ranks. The answer is pandas', with more ranks
    than blocks on either side."""
    lp, rp = _few_and_many(col)
    monkeypatch.setattr(hf.config, "broadcast_bytes", 20_000)
    lf, rf = hf.from_pandas(lp, npartitions=nparts[0]), hf.from_pandas(rp, npartitions=nparts[1])
    mask = lf[col].isin(rf[col])
    got = lf[~mask if negate else mask]
    expected = lp[col].isin(rp[col])
    expected = ~expected if negate else expected
    pd.testing.assert_frame_equal(got.compute(), lp[expected].reset_index(drop=True))
    reduced = col != "s"
    dropped = sum(mpi.allgather(hf.last_run_stats().get("join_rows_dropped_by_keys", 0)))
    assert (dropped > 0) == reduced, dropped
    assert got.node.scan().source.strategy == ("broadcast right" if reduced else "broadcast left")


@pytest.mark.parametrize("case", ["no rows", "no values", "int keys, float values", "then a group-by"])
def test_few_rows_many_values_edge_cases(monkeypatch, case):
    """No row to filter, no value (every value filtered out), keys and values of different
    number types (pandas' ``isin`` finds 1 among 1.0), and a reduction of the result (its
    partitions are the left side's blocks: the same answer on any number of ranks)."""
    lp, rp = _few_and_many("i")
    monkeypatch.setattr(hf.config, "broadcast_bytes", 20_000)
    lf, rf = hf.from_pandas(lp, npartitions=3), hf.from_pandas(rp, npartitions=4)
    lsel, rsel = lf, rf
    lref, rref = lp, rp
    key, vals = "i", "i"
    if case == "no rows":
        lsel, lref = lf[lf.i < 0], lp[lp.i < 0]
    elif case == "no values":
        rsel, rref = rf[rf.i < 0], rp[rp.i < 0]
    elif case == "int keys, float values":
        vals = "f"
    got = lsel[lsel[key].isin(rsel[vals])]
    expected = lref[lref[key].isin(rref[vals])].reset_index(drop=True)
    if case == "then a group-by":
        got = got.groupby("i").x.sum()
        expected = expected.groupby("i").x.sum()
        pd.testing.assert_series_equal(got.compute(), expected)
    else:
        pd.testing.assert_frame_equal(got.compute(), expected)


@pytest.fixture
def parquet_pair(shared_dir, request):
    """A Parquet table of rows to filter (int64 keys, 4 files) and one of values (int64,
    3 files, many more rows), written by rank 0; and their pandas frames."""
    root = os.path.join(shared_dir, f"semi_{request.node.name}")
    rng = np.random.default_rng(5)
    rows = pd.DataFrame({"k": rng.integers(-(2**62), 2**62, 300), "x": np.arange(300.0)})
    rows.loc[::7, "k"] = 2**63 - 1  # the largest int64, also among the values
    values = pd.DataFrame({"v": rng.choice(rows.k.to_numpy()[:100], 6000), "y": np.arange(6000)})
    values = pd.concat([values, pd.DataFrame({"v": rng.integers(-(2**63), 2**63 - 1, 6000), "y": 0})])
    values = values.sample(frac=1.0, random_state=3, ignore_index=True)

    def write():
        for name, df, n in (("rows", rows, 4), ("values", values, 3)):
            os.makedirs(os.path.join(root, name))
            for i, part in enumerate(np.array_split(np.arange(len(df)), n)):
                path = os.path.join(root, name, f"p{i}.parquet")
                df.iloc[part].to_parquet(path, index=False, row_group_size=500)

    mpi.on_root(write)
    return os.path.join(root, "rows"), os.path.join(root, "values"), rows, values


@pytest.mark.parametrize("negate", [False, True])
def test_values_read_against_the_keys_of_fewer_rows(parquet_pair, monkeypatch, negate):
    """Regression (TPC-H Q4, Q22): the rows to filter have the smaller estimate, so they are
    read first and their keys drop, while the values are read, every value no row has
    (Arrow ``is_in`` on int64 without missing values, as pandas' ``isin``); the few values
    left are broadcast. Semi and anti joins equal pandas'."""
    rows_dir, values_dir, rows, values = parquet_pair
    monkeypatch.setattr(hf.config, "broadcast_bytes", 40_000)  # the values alone do not fit
    lf, rf = hf.read_parquet(rows_dir), hf.read_parquet(values_dir)
    mask = lf.k.isin(rf.v)
    got = lf[~mask if negate else mask].compute()
    expected = rows.k.isin(values.v)
    check(got, rows[~expected if negate else expected])
    dropped = sum(mpi.allgather(hf.last_run_stats().get("join_rows_dropped_by_keys", 0)))
    assert dropped >= 6000, dropped  # the values of no row (counted where read)


@pytest.mark.parametrize("negate", [False, True])
def test_rows_streamed_past_few_values(parquet_pair, negate):
    """The values are few (broadcast) and the rows stream past them: a semi join's rows whose
    key is not among the values are dropped while read; an anti join keeps exactly those."""
    rows_dir, values_dir, rows, values = parquet_pair
    lf, rf = hf.read_parquet(rows_dir), hf.read_parquet(values_dir)
    few = rf[rf.y.between(1, 40)]
    mask = lf.k.isin(few.v)
    got = lf[~mask if negate else mask].compute()
    ref = values[values.y.between(1, 40)]
    expected = rows.k.isin(ref.v)
    check(got, rows[~expected if negate else expected])
    dropped = sum(mpi.allgather(hf.last_run_stats().get("join_rows_dropped_while_read", 0)))
    assert (dropped > 0) == (not negate), dropped


@pytest.mark.parametrize("join", ["semi", "merge"])
def test_group_first_last_after_a_shuffled_join_follow_the_frames_order(monkeypatch, join):
    """A shuffled join's rows are stored by hash partition of the key: group ``first``,
    ``last`` and ``sort=False`` (order-dependent) take the rows in the frame's order, not
    the first partition's first (found by the relational differential test: 2.0 instead of
    1.0 below)."""
    monkeypatch.setattr(hf.config, "block_rows", 3)
    monkeypatch.setattr(hf.config, "broadcast_bytes", 0)
    ref = pd.DataFrame(
        {
            "k": pd.array(["b", "a", "b", "a", "c", "a", "b", "a"], dtype="str"),
            "g": [1, 1, 1, 1, 2, 2, 2, 2],
            "f": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        }
    )
    values = pd.DataFrame({"k": pd.array(["a", "b", "c"], dtype="str")})
    df, other = hf.from_pandas(ref, npartitions=3), hf.from_pandas(values)
    x = df[df.k.isin(other.k)] if join == "semi" else df.merge(other, on="k", broadcast=False)
    xp = ref if join == "semi" else ref.merge(values, on="k")
    close(x.groupby("g").f.first(), xp.groupby("g").f.first(), exact=True)
    close(x.groupby("g").f.last(), xp.groupby("g").f.last(), exact=True)
    close(
        x.groupby("g").agg(a=("f", "first"), n=("f", "size")),
        xp.groupby("g").agg(a=("f", "first"), n=("f", "size")),
        exact=True,
    )
    close(x.groupby("k", sort=False).size(), xp.groupby("k", sort=False).size(), exact=True)
