"""The broadcast side's hash index (:class:`hpcframe.joins.Probe`) against pandas.

A broadcast join merges every block of one side with the whole other side. The probe hashes
the whole side once and hands pandas the matching row positions; this file checks, block by
block, that its result is the one ``pandas.merge`` / ``isin`` give (:func:`merge_part`):
same rows, order, values and dtypes, for inner, left, right, semi and anti joins, one and
two keys of every dtype it accepts (ints, floats with NaN and -0.0, bools, datetimes with
NaT, timedeltas), duplicate keys on both sides, empty sides and the whole side on the left
or the right. The end-to-end merges (every strategy, on 1–4 ranks) are in
``tests/parallel/test_merge.py`` and ``test_semi_join.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import hpcframe as hf
from hpcframe import joins
from tests.helpers.frames import spmd_settings

KEYS = {
    "i": st.sampled_from([0, 1, 2, -(2**63), 2**63 - 1]),
    "f": st.sampled_from([np.nan, 0.0, -0.0, 1.5, np.inf, -np.inf]),
    "b": st.booleans(),
    "M": st.sampled_from([None, "2024-01-01", "2024-01-02 05:00:00"]),
    "m": st.sampled_from([None, 0, 3600]),
}


def _column(kind, values):
    if kind == "i":
        return np.array(values, dtype=np.int64)
    if kind == "f":
        return np.array(values, dtype=np.float64)
    if kind == "b":
        return np.array(values, dtype=bool)
    if kind == "M":
        stamps = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601")
        return stamps.astype("datetime64[ns]").to_numpy()
    return pd.to_timedelta(pd.Series(values, dtype="float64"), unit="s").to_numpy()


def _frame(kinds, rows, value):
    cols = {f"k{j}": _column(kind, [r[j] for r in rows]) for j, kind in enumerate(kinds)}
    cols[value] = np.arange(len(rows), dtype=np.int64) * 10
    return pd.DataFrame(cols)


def _stage(lp, rp, how, keys):
    lf, rf = hf.from_pandas(lp), hf.from_pandas(rp)
    if how in ("semi", "anti"):
        test = lf[keys[0]].isin(rf[keys[0]])
        node = lf[~test if how == "anti" else test].node
    else:
        node = lf.merge(rf, on=keys, how=how).node
    return node.scan().source


def _shaped(stage, which, df):
    pairs = stage.left_cols if which == "left" else stage.right_cols
    order = stage.left_order if which == "left" else stage.right_order
    return joins.shape_side(df, pairs, order, 0, stage.how)


def _check(stage, whole_side, lp, rp):
    block_side = "right" if whole_side == "left" else "left"
    whole = _shaped(stage, whole_side, lp if whole_side == "left" else rp)
    block = _shaped(stage, block_side, lp if block_side == "left" else rp)
    probe = joins.Probe(stage, whole_side, whole)
    assert probe.usable(block)
    got = probe.merge(block)
    if got is None:  # a left/right join with an unmatched row: pandas computes it
        assert stage.how in ("left", "right")
        return
    pair = (block, whole) if block_side == "left" else (whole, block)
    expected = joins.merge_part(stage, *pair)
    pd.testing.assert_frame_equal(joins._finish_part(stage, got), joins._finish_part(stage, expected))


@st.composite
def _case(draw):
    kinds = draw(st.sampled_from([["i"], ["f"], ["b"], ["M"], ["m"], ["i", "f"], ["M", "b"]]))
    row = st.tuples(*[KEYS[k] for k in kinds])
    return kinds, draw(st.lists(row, max_size=20)), draw(st.lists(row, max_size=20))


@spmd_settings(150)
@given(case=_case(), how=st.sampled_from(["inner", "left", "right"]))
def test_probe_merge_equals_pandas(case, how):
    kinds, left, right = case
    lp, rp = _frame(kinds, left, "a"), _frame(kinds, right, "b")
    keys = [f"k{j}" for j in range(len(kinds))]
    stage = _stage(lp, rp, how, keys)
    # the side whose every row is kept is never the broadcast one
    for whole_side in {"inner": ("left", "right"), "left": ("right",), "right": ("left",)}[how]:
        _check(stage, whole_side, lp, rp)


@spmd_settings(80)
@given(case=_case(), how=st.sampled_from(["semi", "anti"]))
def test_probe_isin_equals_pandas(case, how):
    kinds, left, right = case
    lp, rp = _frame(kinds[:1], left, "a"), _frame(kinds[:1], right, "b")
    stage = _stage(lp, rp, how, ["k0"])
    whole = joins.shape_side(rp, stage.right_cols, stage.right_order, 0, how)
    block = _shaped(stage, "left", lp)
    probe = joins.Probe(stage, "right", whole)
    assert probe.usable(block)
    pd.testing.assert_frame_equal(probe.merge(block), joins.merge_part(stage, block, whole))


def test_duplicates_on_both_sides_keep_pandas_order():
    """Every pair of duplicates meets, in pandas' order (left rows first, then right rows)."""
    lp = pd.DataFrame({"k0": [3, 1, 3, 2, 3, 1], "a": np.arange(6)})
    rp = pd.DataFrame({"k0": [1, 3, 3, 4, 1], "b": np.arange(5) * 10})
    stage = _stage(lp, rp, "inner", ["k0"])
    for whole_side in ("left", "right"):
        _check(stage, whole_side, lp, rp)


def test_unmatched_row_of_a_left_join_is_filled_as_pandas():
    """A left join whose block has an unmatched row: the probe's result has pandas' missing
    values and dtypes there (the other side's int columns become float64); every row
    matched: dtypes kept. An empty broadcast side and a right join with an unmatched row
    still go to pandas."""
    lp = pd.DataFrame({"k0": [1, 2], "a": [1, 2]})
    rp = pd.DataFrame({"k0": [1], "b": [7]})
    stage = _stage(lp, rp, "left", ["k0"])
    whole, block = _shaped(stage, "right", rp), _shaped(stage, "left", lp)
    probe = joins.Probe(stage, "right", whole)
    got = probe.merge(block)
    assert got is not None and got["b"].dtype == np.float64 and np.isnan(got["b"].iloc[1])
    pd.testing.assert_frame_equal(
        joins._finish_part(stage, got), joins._finish_part(stage, joins.merge_part(stage, block, whole))
    )
    assert probe.merge(block.iloc[:1]).b.dtype == np.int64
    assert joins.Probe(stage, "right", whole.iloc[:0]).merge(block) is None
    right = _stage(rp, lp, "right", ["k0"])
    whole, block = _shaped(right, "left", rp), _shaped(right, "right", lp)
    assert joins.Probe(right, "left", whole).merge(block) is None


@pytest.mark.parametrize(
    "left, right",
    [
        (np.array([1, 2], dtype=np.int64), np.array([1.0, 2.0])),  # int vs float keys
        (pd.array(["a"], dtype="str"), pd.array(["a"], dtype="str")),  # strings
        (pd.Categorical(["a"]), pd.Categorical(["a"])),  # categoricals
    ],
)
def test_other_key_types_are_not_probed(left, right):
    """Keys whose matching the probe does not reproduce exactly stay with pandas."""
    lp, rp = pd.DataFrame({"k0": left}), pd.DataFrame({"k0": right, "b": np.arange(len(right))})
    stage = _stage(lp, rp, "inner", ["k0"])
    probe = joins.Probe(stage, "right", _shaped(stage, "right", rp))
    assert not probe.usable(_shaped(stage, "left", lp))


# int keys spanning a compact range are looked up in a table, not hashed
@spmd_settings(200)
@given(
    uniques=st.lists(st.one_of(st.integers(-5, 60), st.sampled_from([2**40])), max_size=30, unique=True),
    values=st.lists(
        st.one_of(st.integers(-8, 70), st.sampled_from([-(2**63), 2**63 - 1, 2**40, 2**40 + 1])), max_size=40
    ),
    dtype=st.sampled_from(["int64", "int32", "int8"]),
)
def test_dense_lookup_equals_index_get_indexer(uniques, values, dtype):
    """The table gives every value the position ``Index.get_indexer`` gives it (-1: absent),
    values outside the range and near the int64 limits included; none for a range too spread."""
    u = np.array([x for x in uniques if np.can_cast(np.min_scalar_type(x), dtype)], dtype=dtype)
    v = np.array([x for x in values if np.can_cast(np.min_scalar_type(x), dtype)], dtype=dtype)
    lookup = joins._DenseLookup.of(u)
    dense = joins._DenseLookup
    if not len(u) or int(u.max()) - int(u.min()) + 1 > max(dense.SPREAD * len(u), dense.SMALL):
        assert lookup is None
        return
    assert lookup is not None
    np.testing.assert_array_equal(lookup.get_indexer(v), pd.Index(u).get_indexer(v))


@pytest.mark.parametrize("how", ["inner", "left", "right", "semi", "anti"])
@pytest.mark.parametrize("nkeys", [1, 2])
def test_dense_keys_probe_equals_pandas(how, nkeys):
    """A broadcast side with compact int keys (TPC-H's part, supplier and order keys) is
    matched through the tables, per key and for the combined codes of two keys: pandas'
    result, duplicates and unmatched rows included."""
    rng = np.random.default_rng(7)
    lp = pd.DataFrame({"k0": rng.integers(90, 160, 400), "k1": rng.integers(0, 3, 400), "a": np.arange(400)})
    rp = pd.DataFrame({"k0": rng.integers(100, 150, 120), "k1": rng.integers(0, 4, 120), "b": np.arange(120)})
    keys = ["k0", "k1"][:nkeys]
    if how in ("semi", "anti"):
        stage = _stage(lp, rp, how, ["k0"])
        whole = joins.shape_side(rp, stage.right_cols, stage.right_order, 0, how)
        probe = joins.Probe(stage, "right", whole)
        block = _shaped(stage, "left", lp)
        assert probe._build().dense[0] is not None
        pd.testing.assert_frame_equal(probe.merge(block), joins.merge_part(stage, block, whole))
        return
    stage = _stage(lp, rp, how, keys)
    for whole_side in {"inner": ("left", "right"), "left": ("right",), "right": ("left",)}[how]:
        probe = joins.Probe(stage, whole_side, _shaped(stage, whole_side, lp if whole_side == "left" else rp))
        assert all(d is not None for d in probe._build().dense)
        _check(stage, whole_side, lp, rp)
        if how != "inner":  # rows without a match go to pandas: check a matched slice too
            matched = lp[lp.k0.between(100, 149)] if whole_side == "right" else lp
            other = rp if whole_side == "right" else rp[rp.k0.between(90, 159)]
            _check(stage, whole_side, matched.reset_index(drop=True), other.reset_index(drop=True))


# one int key whose values are all distinct (a primary key): no factorize pass
@spmd_settings(200)
@given(
    values=st.lists(
        st.one_of(st.integers(-20, 300), st.sampled_from([-(2**63), 2**63 - 1, 2**40])), max_size=40
    ),
    dtype=st.sampled_from(["int64", "int32", "uint8", "float64"]),
    repeat_at=st.one_of(st.none(), st.integers(0, 40)),
)
def test_distinct_index_equals_factorize(values, dtype, repeat_at):
    """Distinct integer keys get pandas' factorization (codes ``arange``, the values as
    uniques, one row per group) without hashing them for it; repeated keys, or keys that are
    not integers, get ``None`` (the general path)."""
    values = [v for v in values if v >= 0] if dtype == "uint8" else values
    arr = np.array([v % 256 if dtype == "uint8" else v for v in values], dtype="int64")
    if repeat_at is not None and len(arr):
        arr = np.insert(arr, min(repeat_at, len(arr)), arr[repeat_at % len(arr)])
    if dtype == "int32":
        arr = arr[(arr >= -(2**31)) & (arr < 2**31)]
    arr = arr.astype(dtype)
    got = joins._distinct_index(arr)
    distinct = len(pd.unique(arr)) == len(arr)
    if dtype == "float64" or len(arr) < 2 or not distinct:
        assert got is None
        return
    assert got is not None
    codes, uniques = pd.factorize(arr, use_na_sentinel=False)
    np.testing.assert_array_equal(got.uniques[0].to_numpy(), uniques)
    assert got.uniques[0].dtype == uniques.dtype and got.radices == [len(uniques)]
    np.testing.assert_array_equal(got.counts, np.bincount(codes, minlength=len(uniques)))
    np.testing.assert_array_equal(got.order, np.argsort(codes, kind="stable"))
    np.testing.assert_array_equal(got.starts, np.cumsum(got.counts) - got.counts)
    assert (got.dense[0] is None) == (joins._DenseLookup.of(uniques) is None)


@pytest.mark.parametrize("spread", [1, 1000], ids=["dense", "sparse"])
@pytest.mark.parametrize("repeat", [None, 3, 6000], ids=["distinct", "early-repeat", "late-repeat"])
@pytest.mark.parametrize("whole_side", ["left", "right"])
@pytest.mark.parametrize("ascending", [False, True], ids=["permuted", "ascending"])
def test_probe_of_a_primary_key_equals_pandas(spread, repeat, whole_side, ascending):
    """A broadcast side of 7000 rows with one int key, distinct (the unique-key index), or
    with one repeat early (seen by the sample) or late (beyond the sample of
    ``_DISTINCT_SAMPLE`` keys: only the Index's hash shows it); in any order or ascending
    (strictly ascending keys are distinct unchecked; a repeat makes them not strictly
    ascending): pandas' inner merge."""
    rng = np.random.default_rng(3)
    n = 7000
    keys = rng.permutation(n).astype(np.int64) * spread
    if ascending:
        keys = np.sort(keys)
    if repeat is not None:
        keys[repeat] = keys[repeat - 1]
    wp = pd.DataFrame({"k0": keys, "w": rng.normal(size=n)})
    bp = pd.DataFrame({"k0": rng.choice(keys, 3000) + rng.choice([0, 1], 3000), "a": np.arange(3000)})
    lp, rp = (wp, bp) if whole_side == "left" else (bp, wp)
    stage = _stage(lp, rp, "inner", ["k0"])
    probe = joins.Probe(stage, whole_side, _shaped(stage, whole_side, wp))
    index = probe._build()
    assert (index.combined is None) and (index.counts.max() == (1 if repeat is None else 2))
    _check(stage, whole_side, lp, rp)


def test_probe_result_keeps_every_value_dtype():
    """The probe's result built column by column (``_taken``) has pandas' merge values and
    dtypes for every kind of column on both sides (object, str, categorical, nullable ints,
    dates, tz-aware times, bools, float32), already in the result's column order."""
    n = 12
    rng = np.random.default_rng(5)

    def side(prefix, keys):
        s = rng.choice(["x", "y", None], len(keys)).astype(object)
        return pd.DataFrame(
            {
                "k0": keys,
                f"{prefix}o": s,
                f"{prefix}s": pd.array(s, dtype="str"),
                f"{prefix}c": pd.Categorical(rng.choice(["p", "q"], len(keys))),
                f"{prefix}I": pd.array(rng.choice([1, 2, None], len(keys)), dtype="Int64"),
                f"{prefix}d": np.datetime64("2024-01-01", "ms")
                + rng.integers(0, 9, len(keys)).astype("m8[h]"),
                f"{prefix}z": pd.date_range("2024-03-10", periods=len(keys), freq="h", tz="America/New_York"),
                f"{prefix}b": rng.random(len(keys)) < 0.5,
                f"{prefix}f": rng.random(len(keys)).astype("float32"),
            }
        )

    lp = side("l", rng.integers(0, 6, n))
    rp = side("r", np.arange(8, dtype=np.int64))
    stage = _stage(lp, rp, "inner", ["k0"])
    # a left join whose block rows miss a match: every kind of column filled as pandas does
    lpm = side("l", rng.integers(0, 12, n))
    left = _stage(lpm, rp, "left", ["k0"])
    whole, block = _shaped(left, "right", rp), _shaped(left, "left", lpm)
    got = joins.Probe(left, "right", whole).merge(block)
    assert got is not None and list(got.columns) == list(left.meta.columns)
    expected = joins._finish_part(left, joins.merge_part(left, block, whole))
    pd.testing.assert_frame_equal(joins._finish_part(left, got), expected)
    assert expected["rb"].dtype == object and expected["rI"].dtype == "Int64"
    for whole_side in ("left", "right"):
        block_side = "right" if whole_side == "left" else "left"
        whole = _shaped(stage, whole_side, lp if whole_side == "left" else rp)
        block = _shaped(stage, block_side, lp if block_side == "left" else rp)
        got = joins.Probe(stage, whole_side, whole).merge(block)
        assert list(got.columns) == list(stage.meta.columns)
        pair = (block, whole) if block_side == "left" else (whole, block)
        expected = joins._finish_part(stage, joins.merge_part(stage, *pair))
        pd.testing.assert_frame_equal(joins._finish_part(stage, got), expected)


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("index", ["default", "filtered"])
def test_block_rows_matching_a_primary_key_once_are_shared(how, index):
    """Every block row matching one row of the broadcast side (a primary key: TPC-H's joins
    with ``nation``) keeps the block's columns without a copy (as pandas' ``take`` of all
    rows in order does), also from a block whose index is not the default one (rows
    filtered without a reset); writing into the result leaves the block as it was."""
    rng = np.random.default_rng(11)
    lp = pd.DataFrame(
        {"k0": rng.integers(0, 25, 300), "a": rng.normal(size=300), "s": rng.choice(["x", "y"], 300)}
    )
    rp = pd.DataFrame({"k0": np.arange(25), "b": np.arange(25) * 3, "name": [f"n{i}" for i in range(25)]})
    stage = _stage(lp, rp, how, ["k0"])
    whole, block = _shaped(stage, "right", rp), _shaped(stage, "left", lp)
    if index == "filtered":
        block = block[block.k0 != 3]
    before = block.copy()
    got = joins.Probe(stage, "right", whole).merge(block)
    expected = joins.merge_part(stage, block.reset_index(drop=True), whole)
    pd.testing.assert_frame_equal(joins._finish_part(stage, got), joins._finish_part(stage, expected))
    assert np.shares_memory(got["a"].to_numpy(), block["a"].to_numpy())
    got.loc[0, "a"] = 1e9
    got.iloc[1, list(got.columns).index("k0")] = -1
    pd.testing.assert_frame_equal(block, before)


# a join side's rows that cannot match, dropped while read (before pandas)
INT_KEYS = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([-(2**63), -(2**63) + 1, 2**62, 2**63 - 2, 2**63 - 1, 2**29, -(2**29)]),
)


@st.composite
def _keys_and_block(draw):
    """The broadcast side's keys and a block's key column drawn mostly from them (and from
    their neighbours), with missing values in some blocks."""
    keys = draw(st.lists(INT_KEYS, min_size=1, max_size=12))
    near = st.tuples(st.sampled_from(keys), st.sampled_from([-1, 1])).map(
        lambda kd: min(max(kd[0] + kd[1], -(2**63)), 2**63 - 1)
    )
    value = st.one_of(st.sampled_from(keys), near, INT_KEYS)
    if draw(st.booleans()):
        value = st.one_of(st.none(), value)
    values = draw(st.lists(value, min_size=1, max_size=30))
    return keys, values, draw(st.integers(0, len(values)))


@pytest.mark.parametrize(
    "bitset", ["flags", True, "passes", False], ids=["flags", "bitset", "bitset-in-passes", "hash"]
)
@spmd_settings(max_examples=200)
@example(data=([1, 2**62], [1, 2, 0, 2**62, 2**62 + 1], 2))
@example(data=([2**63 - 1, -(2**63)], [2**63 - 1, -(2**63), 0], 1))
@given(data=_keys_and_block())
def test_key_term_keeps_exactly_the_rows_merge_can_match(bitset, data, monkeypatch):
    """``KeyIn`` (the Arrow-side filter of a join side read against a broadcast side) keeps
    a row exactly when pandas' inner merge on that int64 key could match it: its key is
    among the other side's keys; a block with a missing key (float64 in pandas, matched by
    rounded value) is kept whole. Every lookup (one flag per key of a compact key range —
    values outside it, even near ±2**63, wrap modulo 2**64 to the last flag —, the bitset of
    a wider range — built in one pass, or 8 bits per pass as a range wider than
    ``BITSET_PASS`` is —, the hash of the keys), keys near ±2**63, blocks in two chunks."""
    import pyarrow as pa

    from hpcframe.expr import KeyIn

    keys, values, cut = data
    if bitset != "flags":
        monkeypatch.setattr(KeyIn, "FLAGS_MAX", 0)
    if not bitset:
        monkeypatch.setattr(KeyIn, "BITSET_MAX", 0)
    if bitset == "passes":  # a small range, so that 8 bits per pass stays a few passes
        monkeypatch.setattr(KeyIn, "BITSET_MAX", 1 << 12)
        monkeypatch.setattr(KeyIn, "BITSET_PASS", 8)
    index = pd.Index(pd.unique(np.array(keys, dtype=np.int64)))
    term = KeyIn("k", index)
    span = int(index.max()) - int(index.min()) + 1
    assert (term.flags is not None) == (bitset == "flags" and span <= KeyIn.FLAGS_MAX)
    assert (term.bits is not None) == (bitset not in (False, "flags") and span <= KeyIn.BITSET_MAX)
    col = pa.array(values, pa.int64())
    table = pa.table({"k": pa.chunked_array([col.slice(0, cut), col.slice(cut)], pa.int64())})
    got = term(table).to_numpy(zero_copy_only=False)
    if None in values:  # pandas: a float64 column, matched by rounded value: all kept
        want = np.ones(len(values), dtype=bool)
    else:
        left = pd.DataFrame({"k": np.array(values, dtype=np.int64), "pos": range(len(values))})
        right = pd.DataFrame({"k": index.to_numpy()})
        matched = pd.merge(left, right, on="k")["pos"].unique()
        want = np.isin(np.arange(len(values)), matched)
    assert got.tolist() == want.tolist()
    assert term.dropped == len(values) - int(want.sum())


# the cheap lower bound of a side's distinct key bytes (the key filter's give-up)
@st.composite
def _key_blocks(draw):
    kind = draw(st.sampled_from(["int64", "uint64", "int32", "M8[ns]", "m8[s]", "float64", "str", "two"]))
    nblocks = draw(st.integers(0, 4))
    pool = st.integers(-5, 40) if kind not in ("uint64",) else st.integers(0, 2**64 - 1)
    blocks = []
    for _ in range(nblocks):
        vals = draw(st.lists(pool, max_size=12))
        if draw(st.booleans()):
            vals = sorted(vals)
        if kind in ("M8[ns]", "m8[s]"):
            col = pd.Series(np.array(vals, dtype=np.int64).view(kind))
            if vals and draw(st.booleans()):
                col.iloc[0] = None  # NaT (the smallest int64), first
        elif kind == "str":
            col = pd.Series([str(v) for v in vals], dtype=object)
        elif kind in ("float64", "two"):
            col = pd.Series(vals, dtype="float64")
        else:
            col = pd.Series(np.array(vals, dtype=kind))
        frame = pd.DataFrame({"k": col})
        if kind == "two":
            frame = pd.DataFrame({"k": np.array(vals, dtype=np.int64), "j": np.zeros(len(vals), np.int64)})
        blocks.append(frame)
    return blocks


@given(_key_blocks())
@spmd_settings(max_examples=300)
def test_distinct_key_bytes_lower_bound(blocks):
    """Never more than the bytes of the distinct keys that the key filter would gather (so
    giving up on it early decides as before); exactly those bytes for one int/datetime key
    whose blocks are each ascending and do not overlap (lineitem's by ``l_orderkey``)."""
    kept = [b for b in blocks if len(b)]
    floor = joins.distinct_bytes_at_least(kept)
    exact = 0
    if kept:
        exact = int(
            pd.concat(kept, ignore_index=True).drop_duplicates().memory_usage(deep=True, index=False).sum()
        )
    assert 0 <= floor <= exact
    if not kept or len(kept[0].columns) != 1 or kept[0].k.dtype.kind not in "iumM":
        assert floor == 0
        return
    ints = [b.k.to_numpy().view(np.int64) if b.k.dtype.kind in "mM" else b.k.to_numpy() for b in kept]
    ascending = all((a[1:] >= a[:-1]).all() for a in ints)
    spans = sorted((int(a[0]), int(a[-1])) for a in ints)
    if ascending and all(x[1] < y[0] for x, y in zip(spans, spans[1:])):
        assert floor == exact


def test_distinct_key_bytes_of_sorted_disjoint_blocks_are_exact():
    blocks = [pd.DataFrame({"k": np.repeat(np.arange(s, s + 50, dtype=np.int64), 3)}) for s in (100, 0, 300)]
    assert joins.distinct_bytes_at_least(blocks) == 150 * 8
    blocks.append(pd.DataFrame({"k": np.arange(20, 30, dtype=np.int64)}))  # overlaps [0, 50)
    assert joins.distinct_bytes_at_least(blocks) == 50 * 8  # the largest block's


# the distinct keys of a join side (the key filter), found without hashing rows
_KEY = st.one_of(st.integers(-5, 30), st.sampled_from([-(2**63), 2**63 - 1]))


@spmd_settings(200)
@given(
    values=st.lists(_KEY, max_size=30),
    ascending=st.booleans(),
    dtype=st.sampled_from(["int64", "uint8", "float64"]),
)
def test_distinct_rows_and_factorize_equal_pandas(values, ascending, dtype):
    """One key column: the distinct values of ``drop_duplicates``, integers sorted (so that
    ``_factorize`` takes them by their runs), other dtypes in pandas' order; and
    ``_factorize`` of distinct values equals ``pd.factorize``."""
    if ascending:
        values = sorted(values)
    if dtype == "uint8":
        values = [v % 256 for v in values]
    frame = pd.DataFrame({"k": np.array(values, dtype=dtype)})
    got, want = joins._distinct_rows(frame), frame.drop_duplicates(ignore_index=True)
    if dtype == "float64":
        pd.testing.assert_frame_equal(got, want)
    else:
        pd.testing.assert_frame_equal(got, want.sort_values("k", ignore_index=True))
    uniques = frame.k.drop_duplicates().to_numpy()
    codes, got_u = joins._factorize(uniques)
    want_codes, want_u = pd.factorize(uniques, use_na_sentinel=False)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(got_u, want_u)
    assert got_u.dtype == want_u.dtype


@spmd_settings(200)
@given(
    rows=st.lists(st.tuples(_KEY, _KEY, st.integers(0, 3)), max_size=30),
    dtypes=st.tuples(*[st.sampled_from(["int64", "int32", "uint64", "uint8", "float64"])] * 3),
    width=st.integers(2, 3),
    runs=st.integers(1, 3),
)
def test_distinct_rows_of_several_key_columns_equal_drop_duplicates(rows, dtypes, width, runs):
    """Several key columns (q9's (supplier, part) pairs): ``drop_duplicates``' rows in its
    order, with the columns' dtypes — by packed codes where the columns' ranges fit one
    int64, else by pandas; also gathered from several ranks (repeated runs)."""
    cols = {}
    for i, dtype in enumerate(dtypes[:width]):
        vals = [r[i] for r in rows] * runs
        if dtype == "int32":
            vals = [max(min(v, 2**31 - 1), -(2**31)) for v in vals]
        elif dtype == "uint8":
            vals = [v % 256 for v in vals]
        elif dtype == "uint64":
            vals = [v % 2**64 for v in vals]
        cols[f"k{i}"] = np.array(vals, dtype=dtype)
    frame = pd.DataFrame(cols)
    pd.testing.assert_frame_equal(joins._distinct_rows(frame), frame.drop_duplicates(ignore_index=True))


@pytest.mark.parametrize("far", [False, True], ids=["bitset", "hash"])
def test_key_filter_tests_one_int64_key_in_a_bitset(far):
    """A key filter of one int64 key keeps exactly the rows whose key is among its keys
    (by the bitset of a :class:`~hpcframe.expr.KeyIn`; keys spread too far: its hash
    table), counting the others."""
    keys = [5, 1, 9, 3] + ([2**62] if far else [])
    lp = pd.DataFrame({"k0": np.array(keys, dtype=np.int64), "a": np.arange(len(keys))})
    rp = pd.DataFrame({"k0": np.arange(-2, 12, dtype=np.int64), "b": np.arange(14)})
    stage = _stage(lp, rp, "inner", ["k0"])
    whole = _shaped(stage, "left", lp)[["k0"]]
    keep = joins._KeyFilter(joins.Probe(stage, "left", whole))
    block = _shaped(stage, "right", rp)
    got = keep.keep(block)
    pd.testing.assert_frame_equal(got, block[block.k0.isin(lp.k0)].reset_index(drop=True))
    assert keep.dropped == 10
    assert (keep._member.bits is None and keep._member.flags is None) == far  # flags or bits


# a block of a join side: result names, hidden order columns (shape_side)
def _shape_side_reference(df, pairs, order, row_offset, how):
    """The plain pandas formulation of ``joins.shape_side``."""
    out = df[[c for c, _ in pairs]].set_axis([r for _, r in pairs], axis=1).reset_index(drop=True)
    for c, h in order:
        if c is None:
            out[h] = np.int64(row_offset) + df.index.to_numpy(dtype="int64")
        else:
            out[h] = df[c].reset_index(drop=True)
    if how in ("semi", "anti") and joins._SEMI_VALUE in out.columns:
        out = out.drop_duplicates(joins._SEMI_VALUE, ignore_index=True)
    return out


_SIDE = pd.DataFrame(
    {
        "a": [3, 1, 2, 5, 1],
        "b": pd.Categorical(["x", "y", "x", None, "y"]),
        "c": ["p", None, "q", "r", "p"],
        "d": [True, None, False, True, True],
        "e": pd.to_datetime(["2020-01-01", None, "2021-01-01", "2022-01-01", "2020-01-01"]),
        "f": [1.5, np.nan, 2.0, 3.0, 1.5],
        "g": pd.array([1, None, 3, 4, 1], dtype="Int64"),
    },
    index=[7, 2, 9, 11, 12],  # a filtered block keeps its rows' positions as labels
)


@pytest.mark.parametrize(
    "rows", [slice(None), slice(0, 0), [1], [0, 2, 4]], ids=["all", "none", "one", "filtered"]
)
@pytest.mark.parametrize(
    "pairs, order",
    [
        ([(c, c) for c in _SIDE.columns], [(None, "__o")]),
        ([("a", "x_a"), ("c", "c"), ("b", "bb")], [(None, "__o"), ("f", "__o2")]),
        ([("a", "a")], []),
        ([("a", joins._SEMI_VALUE), ("c", "c")], [(None, "__o")]),
    ],
    ids=["every-column", "renamed", "no-order", "semi-value"],
)
@pytest.mark.parametrize("how", ["inner", "semi"])
def test_shape_side_equals_the_pandas_formulation(rows, pairs, order, how):
    """``shape_side`` (one concat of the renamed columns) gives the select / rename / reset /
    insert formulation's frame exactly — values, dtypes, column labels, RangeIndex — and a
    write into its result leaves the block as it was (copy-on-write, no shared buffer)."""
    df = _SIDE.iloc[rows]
    got = joins.shape_side(df, pairs, order, 100, how)
    want = _shape_side_reference(df, pairs, order, 100, how)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.columns.dtype == want.columns.dtype
    assert isinstance(got.index, pd.RangeIndex)
    if len(got):
        before = df.copy()
        got.iloc[0, 0] = got.iloc[-1, 0]
        pd.testing.assert_frame_equal(df, before)
