"""Unit tests of the partial-table machinery: the shuffle's routing hash depends on key
values only, and combines of partials keep pandas' NaN for ±inf."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe import aggregations as A
from hpcframe.execute import _route

SAME_VALUES = {
    "bool_vs_object_with_none": (
        pd.Series([False, True, False]),
        pd.Series([False, True, False], dtype=object),
    ),
    "int_vs_float": (pd.Series([1, -3, 2**40]), pd.Series([1.0, -3.0, 2.0**40])),
    "category_vs_str": (
        pd.Series(["a", "b", "a"], dtype="category"),
        pd.Series(["a", "b", "a"], dtype="str"),
    ),
    "str_vs_object": (pd.Series(["a", "b", "c"], dtype="str"), pd.Series(["a", "b", "c"], dtype=object)),
    "zero_signs": (pd.Series([0.0, 1.0]), pd.Series([-0.0, 1.0])),
    "missing_kinds": (pd.Series([None, None], dtype=object), pd.Series([np.nan, np.nan])),
    "datetime_units": (
        pd.Series(pd.to_datetime(["2020-01-01", "2021-05-06"]).as_unit("ms")),
        pd.Series(pd.to_datetime(["2020-01-01", "2021-05-06"]).as_unit("ns")),
    ),
}


@pytest.mark.parametrize("name", sorted(SAME_VALUES))
@pytest.mark.parametrize("size", [2, 3, 4, 7])
def test_route_depends_on_the_value_not_the_dtype(name, size):
    a, b = SAME_VALUES[name]
    ra = _route(pd.DataFrame({"k": a, "j": [1] * len(a)}), ["k", "j"], size)
    rb = _route(pd.DataFrame({"k": b, "j": [1.0] * len(b)}), ["k", "j"], size)
    assert ra.tolist() == rb.tolist()


def test_route_nulls_meet_across_dtypes():
    keys = [
        pd.Series([None, True], dtype=object),
        pd.Series([np.nan, 1.0]),
        pd.Series([None, "x"], dtype="str"),
        pd.Series([pd.NaT, pd.Timestamp(0)]),
    ]
    routes = {_route(pd.DataFrame({"k": k}), ["k"], 5)[0] for k in keys}
    assert len(routes) == 1


def test_route_spreads_distinct_keys():
    r = _route(pd.DataFrame({"k": np.arange(1000)}), ["k"], 4)
    assert set(np.bincount(r, minlength=4)) != {0} and min(np.bincount(r)) > 150


_NUMBERS = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 2**64 - 1), max_size=30).map(lambda v: np.array(v, dtype=np.uint64)),
    st.lists(st.integers(-5, 5), max_size=30).map(lambda v: np.array(v, dtype=np.int8)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30).map(np.array),
    st.lists(st.sampled_from([0.0, -0.0, np.nan, 1.5, -np.inf]), max_size=30).map(
        lambda v: np.array(v, dtype=np.float32)
    ),
    st.lists(st.booleans(), max_size=30).map(lambda v: np.array(v, dtype=bool)),
)


@settings(max_examples=200, deadline=None)
@given(_NUMBERS)
def test_key_hash_of_numbers_is_the_hash_of_their_float_value(values):
    """The routing hash of a NumPy number column is pandas' ``hash_array`` of its float64
    values (``-0.0`` as ``0.0``, every NaN one constant), bit for bit (the fast path mixes in
    place), and the same values as a categorical or as Python objects route alike."""
    from hpcframe.execute import _MISSING_HASH, _key_hash

    floats = values.astype(np.float64)
    missing = np.isnan(floats)
    expected = pd.util.hash_array(np.where(missing, 0.0, floats) + 0.0, categorize=False)
    expected[missing] = _MISSING_HASH
    got = _key_hash(pd.Series(values))
    assert got.dtype == np.uint64
    assert got.tolist() == expected.tolist()
    as_category = pd.Series(pd.Categorical(values))
    assert _key_hash(as_category).tolist() == expected.tolist()
    assert _key_hash(pd.Series(values.tolist(), dtype=object)).tolist() == expected.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=30))
def test_key_hash_of_a_categorical_is_the_hash_of_its_values(values):
    """A categorical key (each category hashed once) routes as the same strings do; a
    missing value as every missing value."""
    from hpcframe.execute import _key_hash

    strings = pd.Series(values, dtype="str")
    assert _key_hash(pd.Series(pd.Categorical(values))).tolist() == _key_hash(strings).tolist()
    unused = pd.Series(
        pd.Categorical(values, categories=sorted({v for v in values if v is not None} | {"zz-unused"}))
    )
    assert _key_hash(unused).tolist() == _key_hash(strings).tolist()


def _partial(values, inters):
    df = pd.DataFrame({A.ALL_KEY: np.zeros(len(values), dtype="int8"), "x": values})
    return A.chunk_partial(df, [A.ALL_KEY], inters, True)


@pytest.mark.parametrize(
    "blocks",
    [
        [[1.0, np.inf], [-np.inf, 2.0]],
        [[np.inf, -np.inf], [3.0]],
        [[5.0], [np.inf, -np.inf, 1.0], [2.0]],
        [[np.inf], [np.nan], [4.0]],
        [[-np.inf, 1.0], [-np.inf]],
    ],
)
def test_combined_sum_mean_var_match_pandas_with_inf(blocks):
    specs = [("x", "sum"), ("x", "mean"), ("x", "var"), ("x", "std")]
    inters = A.needed(specs)
    table = None
    for b in blocks:
        table = A.combine_partials(table, _partial(np.array(b), inters), [A.ALL_KEY])
    got = [s.iloc[0] for s in A.finalize_columns(table, specs)]
    whole = pd.Series(np.concatenate([np.array(b) for b in blocks]))
    exp = [whole.sum(), whole.mean(), whole.var(), whole.std()]
    for g, e, (_, how) in zip(got, exp, specs):
        assert (np.isnan(g) and np.isnan(e)) or g == pytest.approx(e), (how, g, e)


def test_mean_of_int64_near_the_limit_does_not_wrap():
    values = np.array([2**62, 2**62 + 5, 2**62 + 9], dtype=np.int64)
    specs = [("x", "mean"), ("x", "sum")]
    inters = A.needed(specs)
    table = A.combine_partials(_partial(values[:2], inters), _partial(values[2:], inters), [A.ALL_KEY])
    mean, total = (s.iloc[0] for s in A.finalize_columns(table, specs))
    assert mean == pytest.approx(pd.Series(values).mean(), rel=1e-15)
    assert total == pd.Series(values).sum()  # wraps around, as pandas' int64 sum does


def test_quantile_from_counts_is_numpys_linear_interpolation():
    from hpcframe.describe import quantile_from_counts

    rng = np.random.default_rng(5)
    for _ in range(2000):
        s = pd.Series(rng.choice([1.0, 2.0, 3.5, np.inf, -np.inf, 1e300, -1e-300], rng.integers(1, 12)))
        for q in (0.25, 0.5, 0.75):
            got = quantile_from_counts(s.value_counts().sort_index(), q)
            exp = s.quantile(q)
            assert (np.isnan(got) and np.isnan(exp)) or got == exp, (s.tolist(), q, got, exp)


# nunique's distinct (group, value) pairs by one packed int64 sort

_I64 = st.integers(-(2**63), 2**63 - 1)
_U64 = st.integers(0, 2**64 - 1)
_EXTREMES = {
    "int64": [-(2**63), -(2**63) + 1, -1, 0, 1, 2**63 - 2, 2**63 - 1],
    "uint64": [0, 1, 2**63 - 1, 2**63, 2**64 - 1],
}


def _pairs_reference(g, v):
    """The distinct (group, value) pairs, sorted, by Python sets (``-0.0 == 0.0``)."""
    ints = v.view(np.int64) if v.dtype.kind in "mM" else v
    return sorted(
        {(int(a), b.item() + 0 if v.dtype.kind != "f" else float(b) + 0.0) for a, b in zip(g, ints)}
    )


def _check_pairs(g, v):
    groups, values = A._distinct_pairs(np.asarray(g, dtype=np.int64), v)
    assert groups.dtype == np.int64 and values.dtype == v.dtype
    ints = values.view(np.int64) if v.dtype.kind in "mM" else values
    got = [(int(a), b.item() + 0 if v.dtype.kind != "f" else float(b) + 0.0) for a, b in zip(groups, ints)]
    assert (np.diff(groups) >= 0).all()  # by group; a group's values in any order
    assert len(set(got)) == len(got) and sorted(got) == _pairs_reference(g, v)


@st.composite
def _groups_and_values(draw):
    n = draw(st.integers(0, 40))
    gmax = draw(st.sampled_from([0, 3, 1000, 2**40, 2**62]))
    g = draw(st.lists(st.integers(0, gmax), min_size=n, max_size=n))
    if draw(st.booleans()):  # rows in group order (runs), as lineitem by l_orderkey
        g = sorted(g)
    dtype = draw(
        st.sampled_from(
            ["int64", "uint64", "int8", "uint32", "bool", "float64", "float32", "M8[ns]", "m8[s]"]
        )
    )
    if dtype in _EXTREMES:
        pool = st.one_of(st.sampled_from(_EXTREMES[dtype]), _I64 if dtype == "int64" else _U64)
        v = np.array(draw(st.lists(pool, min_size=n, max_size=n)), dtype=dtype)
    elif dtype == "bool":
        v = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    elif dtype in ("int8", "uint32"):
        info = np.iinfo(dtype)
        v = np.array(
            draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n)), dtype=dtype
        )
    elif dtype.startswith("float"):
        pool = st.one_of(
            st.sampled_from([0.0, -0.0, np.inf, -np.inf, 1.5]), st.floats(allow_nan=False, width=32)
        )
        v = np.array(draw(st.lists(pool, min_size=n, max_size=n)), dtype=dtype)
    else:  # datetimes, timedeltas (no NaT: missing values are dropped before)
        v = np.array(
            draw(st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=n, max_size=n)), dtype=np.int64
        )
        v = v.view(dtype)
    return g, v


@settings(max_examples=300, deadline=None)
@given(_groups_and_values())
def test_distinct_pairs_are_the_sorted_distinct_pairs(gv):
    _check_pairs(*gv)


@pytest.mark.parametrize(
    "g,v",
    [
        ([0, 0, 1, 1, 1], np.array([-(2**63), 2**63 - 1, 2**63 - 1, -(2**63), 0], dtype=np.int64)),
        ([5, 5, 5], np.array([2**64 - 1, 0, 2**64 - 1], dtype=np.uint64)),
        ([0, 1, 1, 1], np.array([2**63, 2**64 - 1, 2**63, 2**63 + 1], dtype=np.uint64)),  # min >= 2**63
        ([0, 2**62, 2**62, 0], np.array([-(2**63), 2**63 - 1, 2**63 - 1, 7], dtype=np.int64)),  # lexsort
        ([3, 3, 3, 4], np.array([-0.0, 0.0, np.inf, 0.0])),
        ([1, 1, 1], np.array([True, False, True])),
        ([], np.array([], dtype="M8[ms]")),
        ([7] * 40 + [8] * 3, np.arange(43) % 5),  # a run longer than RUN_LIMIT: sorted instead
        ([1, 1, 2, 2, 2], np.array([0.0, -0.0, np.inf, 1.0, np.inf])),  # runs
        ([0, 0, 0, 1], np.array([3, 1, 3, 3], dtype="m8[s]")),  # runs
    ],
)
def test_distinct_pairs_extremes(g, v):
    _check_pairs(g, v)


# the partition of a group's partials is carried through the last combine
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 80))
def test_combine_many_carries_a_column_of_the_keys(seed, n):
    """A carried column (each partial row's partition, from the hash of its keys) comes out
    of the combine as each group's value, with the groups and sums of the plain combine,
    and equals the partition the finished keys hash to (so they need not be hashed again)."""
    rng = np.random.default_rng(seed)
    names = np.array(["a", "bb", None, "ccc"], dtype=object)
    t = pd.DataFrame(
        {
            "k": rng.integers(0, 6, n).astype(np.int64),
            "s": pd.array(rng.choice(names, n), dtype="str"),
            "x" + A.SEP + "sum": rng.random(n),
        }
    )
    keys = ["k", "s"]
    t["__part"] = _route(t, keys, 5).astype(np.int32)
    plain = A.combine_many(t.drop(columns="__part"), keys, final=True)
    got = A.combine_many(t, keys, final=True, carried=["__part"])
    pd.testing.assert_frame_equal(got.drop(columns="__part"), plain, check_exact=True)
    assert np.array_equal(got["__part"].to_numpy(), _route(got, keys, 5))


# the combine of a group's partials does not depend on the other groups in its table
def _q5_india_partials() -> list[float]:
    """TPC-H q5's 8 partial revenue sums of one nation at SF 1 (one per lineitem block)."""
    return [
        float.fromhex(h)
        for h in (
            "0x1.c39e643c84b5cp+22",
            "0x1.04d2bcad7731bp+22",
            "0x1.0d8324f6a161fp+23",
            "0x1.017076350b0f3p+22",
            "0x1.0e4163a8240b5p+23",
            "0x1.38e9714a09031p+22",
            "0x1.00639a139c0ecp+23",
            "0x1.2ce39232617c0p+22",
        )
    ]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e12, max_value=1e12),
            st.sampled_from([0.1, -0.0, 1e16, -1e16, 3.0e-300]),
        ),
        min_size=1,
        max_size=12,
    ),
    others=st.integers(0, 3),
    layout=st.sampled_from(["alone", "together", "interleaved"]),
)
def test_a_groups_combined_sum_is_the_same_whichever_groups_share_its_table(values, others, layout):
    """Regression (TPC-H q5 at SF 1 differed in the last bit on 3 ranks): pandas sums a
    group-by by ``numpy.add.reduceat`` when every group's rows are together, else with
    Kahan compensation; ``combine_many`` must give a group's sum (and mean) the same bits
    alone, beside other groups' rows, or interleaved with them."""
    mine = pd.DataFrame({"k": "g", "x" + A.SEP + "sum": values, "x" + A.SEP + "size": 1})
    rest = pd.DataFrame(
        {
            "k": [f"o{i % max(others, 1)}" for i in range(3 * others)],
            "x" + A.SEP + "sum": 1.5,
            "x" + A.SEP + "size": 1,
        }
    )
    if layout == "alone" or not others:
        table = mine
    elif layout == "together":
        table = pd.concat([rest, mine], ignore_index=True)
    else:  # one of the others' rows after each of this group's rows
        pieces = [mine.iloc[[i]] for i in range(len(mine))]
        extra = [rest.iloc[[i % len(rest)]] for i in range(len(mine))]
        table = pd.concat([p for pair in zip(pieces, extra) for p in pair], ignore_index=True)
    got = A.combine_many(table, ["k"], final=True).set_index("k")
    reference = A.combine_many(
        pd.concat([mine.iloc[[0]].assign(k="z"), mine, mine.iloc[[0]].assign(k="z")], ignore_index=True),
        ["k"],
        final=True,
    ).set_index("k")
    assert got.loc["g", "x" + A.SEP + "sum"].hex() == reference.loc["g", "x" + A.SEP + "sum"].hex()
    assert got.loc["g", "x" + A.SEP + "size"] == len(values)


def test_q5s_partials_sum_alike_alone_and_among_other_nations():
    """The values that exposed it: alone (3 ranks) and among other nations (1, 2 ranks)."""
    values = _q5_india_partials()
    alone = pd.DataFrame({"n": "INDIA", "r" + A.SEP + "sum": values})
    mixed = pd.concat(
        [pd.DataFrame({"n": ["INDIA", "CHINA"], "r" + A.SEP + "sum": [v, 1.0]}) for v in values],
        ignore_index=True,
    )
    a = A.combine_many(alone, ["n"], final=True).iloc[0, 1]
    m = A.combine_many(mixed, ["n"], final=True).set_index("n").loc["INDIA"].iloc[0]
    assert a.hex() == m.hex()


def _with(setting, value, fn):
    """``fn()`` with the module setting ``A.<setting>`` (one a fast path checks) set to
    ``value``: the plain path, to compare the fast one with."""
    saved = getattr(A, setting)
    setattr(A, setting, value)
    try:
        return fn()
    finally:
        setattr(A, setting, saved)


# groups of one partial (the blocks of a sorted key hold disjoint ranges of it)
def _general_combine(table, keys):
    # (never the single-partial path)
    return _with("SINGLE_PARTIALS_MIN_GROUPS", 1 << 62, lambda: A.combine_many(table, keys, final=True))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    groups=st.integers(1030, 1600),
    repeated=st.integers(0, 40),
    string_keys=st.booleans(),
)
def test_groups_of_one_partial_combine_as_pandas_combines_them(seed, groups, repeated, string_keys):
    """A combine whose groups mostly have one partial row (TPC-H q18's order keys) takes
    each such row as its group's result and combines only the groups of several rows: the
    same values, dtypes and bits (a lone -0.0 sum is 0.0, NaN and ±inf stay) as the pandas
    group-by of the whole table, in the same group order."""
    rng = np.random.default_rng(seed)
    special = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, 1e16, 0.1, -3.5])
    ids = np.arange(groups)
    extra = rng.integers(0, groups, repeated)  # some groups get further partials, anywhere
    ids = np.concatenate([ids, extra])
    rng.shuffle(ids[: groups // 3])  # partly out of order
    n = len(ids)
    floats = np.where(rng.random(n) < 0.3, special[rng.integers(0, len(special), n)], rng.normal(0, 1e6, n))
    keys = np.array([f"k{i}" for i in ids], dtype=object) if string_keys else ids.astype(np.int64) * 7 - 3000
    table = pd.DataFrame(
        {
            "k": keys,
            "x" + A.SEP + "sum": floats,
            "i" + A.SEP + "sum": rng.integers(-(2**62), 2**62, n),
            "x" + A.SEP + "count": rng.integers(0, 5, n),
            "x" + A.SEP + "min": floats[::-1].copy(),
            "x" + A.SEP + "max": floats,
            "u" + A.SEP + "first": rng.integers(0, 2**64 - 1, n, dtype=np.uint64),
            A.FIRST_POS: np.arange(n, dtype=np.int64),
        }
    )
    got = A.combine_many(table, ["k"], final=True)
    want = _general_combine(table, ["k"])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name in got.columns:
        if got[name].dtype.kind == "f":  # the signs of zeros too
            np.testing.assert_array_equal(np.signbit(got[name]), np.signbit(want[name]))


def test_groups_of_several_partials_take_the_general_combine():
    """Where most rows are in groups of several partials (every block holds most keys:
    db-benchmark q3's 1e5 ids), the single-partial path steps aside — combining those rows
    apart would group nearly every row a second time — and the general combine answers."""
    n = 2 * A.SINGLE_PARTIALS_MIN_GROUPS
    rng = np.random.default_rng(3)
    k = np.concatenate([np.arange(n), rng.permutation(n)[: n - 10], np.arange(n, n + 5)])
    table = pd.DataFrame({"k": [f"id{i:08d}" for i in k], "x" + A.SEP + "sum": rng.normal(size=len(k))})
    ids, first = A.group_ids(table, ["k"])
    assert A._single_partial_groups(table, ids, first, ["k"], []) is None
    got = A.combine_many(table, ["k"])
    pd.testing.assert_frame_equal(got, _general_combine(table, ["k"]), check_exact=True)
    mostly_single = table.iloc[: n + 100]  # the first partial and 100 rows of the second
    ids, first = A.group_ids(mostly_single, ["k"])
    assert A._single_partial_groups(mostly_single, ids, first, ["k"], []) is not None


def test_a_lone_negative_zero_sum_combines_to_zero_as_in_pandas():
    """pandas' compensated group sum of a single -0.0 is 0.0 (it starts from 0; its plain
    ``reduceat`` sum, for groups in order, would keep -0.0: see ``_unsorted_ids``)."""
    n = A.SINGLE_PARTIALS_MIN_GROUPS
    table = pd.DataFrame({"k": np.arange(n, dtype=np.int64), "x" + A.SEP + "sum": np.full(n, -0.0)})
    got = A.combine_many(table, ["k"], final=True)["x" + A.SEP + "sum"]
    assert not np.signbit(got).any()
    compensated = table.iloc[::-1].groupby("k")["x" + A.SEP + "sum"].sum()  # (groups not in order)
    assert not np.signbit(compensated).any()


# whole-frame reductions: the partials of a block and their combines without pandas' group-by
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324, 0.1, 2.0**53]),
)
_INT64 = st.integers(-(2**63), 2**63 - 1)


def _whole(name, inter, value, dtype, key_dtype):
    return pd.DataFrame(
        {A.ALL_KEY: np.zeros(1, dtype=key_dtype), name + A.SEP + inter: np.array([value], dtype=dtype)}
    )


def _same_table(got, want):
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for c in want.columns:  # bit for bit, signed zeros and NaN included
        assert got[c].to_numpy().tobytes() == want[c].to_numpy().tobytes(), c


@settings(max_examples=300, deadline=None)
@given(a=_FLOATS, b=_FLOATS, inter=st.sampled_from(["sum", "fsum"]), key=st.sampled_from(["int8", "int64"]))
def test_whole_frame_float_combine_is_pandas_groupby_sum(a, b, inter, key):
    pa_, pb = _whole("x", inter, a, np.float64, key), _whole("x", inter, b, np.float64, key)
    fast = A._combine_whole(pa_, pb)
    assert fast is not None
    _same_table(fast, A.combine_many(pd.concat([pa_, pb], ignore_index=True), [A.ALL_KEY]))


@settings(max_examples=300, deadline=None)
@given(a=_INT64, b=_INT64, inter=st.sampled_from(["sum", "count", "size", "min", "max"]))
def test_whole_frame_int_combine_is_pandas_groupby(a, b, inter):
    pa_, pb = _whole("x", inter, a, np.int64, "int64"), _whole("x", inter, b, np.int64, "int64")
    fast = A._combine_whole(pa_, pb)
    if fast is None:  # only a sum that leaves int64 (pandas would wrap) is left to pandas
        assert inter in ("sum", "count", "size") and not -(2**63) <= a + b < 2**63
        return
    _same_table(fast, A.combine_many(pd.concat([pa_, pb], ignore_index=True), [A.ALL_KEY]))


def test_whole_frame_combine_leaves_other_partials_to_pandas():
    mean = pd.DataFrame({A.ALL_KEY: [0], "x" + A.SEP + "count": [2], "x" + A.SEP + "mean": [1.5]})
    assert A._combine_whole(mean, mean) is None  # mean/m2 are merged with their count
    floats_min = _whole("x", "min", 1.0, np.float64, "int64")
    assert A._combine_whole(floats_min, floats_min) is None  # NaN and signed zeros: pandas' rules
    two = pd.concat([floats_min, floats_min], ignore_index=True)
    assert A._combine_whole(two, floats_min) is None


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(_FLOATS, min_size=1, max_size=40),
    ints=st.integers(0, 2**40),
    specs=st.sampled_from(
        [[("x", "fsum")], [("x", "sum"), ("x", "count")], [("n", "sum"), ("x", "size")], [("n", "min")]]
    ),
)
def test_whole_partial_is_the_partial_with_the_key_column(values, ints, specs):
    df = pd.DataFrame({"x": values, "n": np.arange(len(values), dtype=np.int64) * ints})
    keyed = df.assign(**{A.ALL_KEY: np.zeros(len(df), dtype="int8")})
    want = A.chunk_partial(keyed, [A.ALL_KEY], specs, True)
    got = A.whole_partial(df, specs)
    if got is None:
        return  # not the dense path's case (chunk_partial took pandas' group-by too)
    _same_table(got, want)


@pytest.mark.parametrize("blocks", [[[1.5, -0.0], [np.inf]], [[-0.0], [-0.0]], [[1e308], [1e308], [-np.inf]]])
def test_whole_frame_sum_over_blocks_is_unchanged(blocks):
    # the partials of the blocks folded left to right, as a rank's TreeStack folds them
    specs = [("x", "fsum"), ("x", "count")]
    key = {A.ALL_KEY: 0}
    old = new = None
    for values in blocks:
        df = pd.DataFrame({"x": values})
        slow = A.chunk_partial(df.assign(**key), [A.ALL_KEY], specs, True)
        old = slow if old is None else A.combine_many(pd.concat([old, slow], ignore_index=True), [A.ALL_KEY])
        new = A.combine_partials(new, A.whole_partial(df, specs), [A.ALL_KEY])
    _same_table(new, old)


# keys that depend on the integer keys (an id and its descriptive columns): grouped by the id
def _plain(fn):
    return _with("GROUP_BY_DETERMINING_KEYS", False, fn)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 60),
    groups=st.integers(1, 12),
    breaks=st.sampled_from([None, "differs", "missing"]),
    dropna=st.booleans(),
    order=st.sampled_from(["ak", "ka", "kak"]),
    sampled=st.booleans(),
)
def test_keys_determined_by_the_integer_keys_group_as_all_keys(
    seed, n, groups, breaks, dropna, order, sampled
):
    """TPC-H q10 groups by ``c_custkey`` and six customer columns: grouped by the integer
    key alone (the others taken from each group's first row) when they are constant within
    its groups, the partial table (keys in order, dtypes, values, bits) and the group ids are
    the plain group-by's; a key that varies within a group, or a missing value, takes the
    plain path. ``sampled``: every table is first checked on every 8th row (as tables of
    131,072 rows and more are), whether or not the break falls among them."""
    if sampled:
        return _with(
            "DETERMINED_SAMPLE_MIN_ROWS", 2, lambda: _determined_case(seed, n, groups, breaks, dropna, order)
        )
    _determined_case(seed, n, groups, breaks, dropna, order)


def _determined_case(seed, n, groups, breaks, dropna, order):
    rng = np.random.default_rng(seed)
    a = rng.integers(-3, groups, n).astype(np.int64)
    b = (a % 2).astype(np.uint8)
    name = pd.array([f"n{x}" for x in a], dtype="str")
    when = pd.to_datetime(a, unit="D").tz_localize("Europe/Paris")
    score = a * 0.5 - 0.0
    flag = a > 2
    if breaks == "differs" and n > 1:
        name[int(rng.integers(0, n))] = "other"
    elif breaks == "missing" and n:
        score = score.copy()
        score[int(rng.integers(0, n))] = np.nan
    v = np.where(
        rng.random(n) < 0.2, np.array([np.nan, -0.0, np.inf])[rng.integers(0, 3, n)], rng.normal(0, 1e3, n)
    )
    df = pd.DataFrame({"a": a, "b": b, "name": name, "when": when, "score": score, "flag": flag, "v": v})
    keys = {
        "ak": ["a", "name", "when", "score", "flag"],
        "ka": ["name", "b", "a", "score"],
        "kak": ["when", "a", "name", "b"],
    }[order]
    inters = [("v", "sum"), ("v", "count"), ("v", "min"), ("v", "max"), ("v", "size"), ("v", "first")]
    got = A.chunk_partial(df, keys, inters, dropna)
    want = _plain(lambda: A.chunk_partial(df, keys, inters, dropna))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for c in got.columns:
        if got[c].dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(got[c]), np.signbit(want[c]))
    ids, first = A.group_ids(df, keys)
    want_ids, want_first = _plain(lambda: A.group_ids(df, keys))
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(first, want_first)


@pytest.mark.parametrize("at, checks", [(8 * 3, 1), (8 * 3 + 5, 2)], ids=["among-every-8th", "elsewhere"])
def test_determined_keys_sample_rejects_early_and_never_wrongly(monkeypatch, at, checks):
    """A large table is checked on every 8th row before the whole check: a name that varies
    within an id among those rows rejects the id-only grouping at once (one check); a name
    that varies elsewhere passes the sample and is found by the whole check (two checks).
    Either way the group ids are the plain group-by's."""
    n = 64
    a = np.arange(n, dtype=np.int64) % 4
    name = pd.array([f"n{x}" for x in a], dtype="str")
    name[at] = "other"  # row `at` has id at % 4 == 0 or 1, with another name
    df = pd.DataFrame({"a": a, "name": name})
    calls = []
    real = A._ids_if_determined
    monkeypatch.setattr(A, "_ids_if_determined", lambda *args: calls.append(len(args[0])) or real(*args))
    monkeypatch.setattr(A, "DETERMINED_SAMPLE_MIN_ROWS", 32)
    ids, first = A.group_ids(df, ["a", "name"])
    assert calls == [8, n][:checks]
    want_ids, want_first = _plain(lambda: A.group_ids(df, ["a", "name"]))
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(first, want_first)


# one integer key: numbered by its offset from the minimum (few values) or by a sort
@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 80),
    width=st.integers(1, 400),
    dtype=st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint32", "uint64"]),
    edge=st.sampled_from(["low", "high", "zero"]),
    runs=st.booleans(),
)
def test_one_integer_key_ids_dense_and_sorted_equal_factorize(seed, n, width, dtype, edge, runs):
    """``group_ids`` of one integer key equals ``pd.factorize``'s numbering (first
    appearance) and first rows, whether the keys are numbered densely (a span below
    ``DENSE_IDS_SPAN`` per row) or sorted; keys at either end of their dtype (offsets that
    wrap when subtracted) and sorted runs (the stacked partials of a shuffle)."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    base = {"low": lo, "high": max(lo, hi - width), "zero": max(lo, 0)}[edge]
    offsets = rng.integers(0, min(width, hi - base) + 1, n)
    if runs:
        offsets = np.concatenate([np.sort(part) for part in np.array_split(offsets, 3)])
    x = np.array([base + int(o) for o in offsets], dtype=object).astype(dtype)
    df = pd.DataFrame({"k": x})
    codes, _ = pd.factorize(x)
    want_first = np.array([np.flatnonzero(codes == g)[0] for g in range(codes.max() + 1)])
    for span in (0, 10**6):  # sorted only / dense wherever it may
        ids, first = _with("DENSE_IDS_SPAN", span, lambda: A.group_ids(df, ["k"]))
        np.testing.assert_array_equal(ids, codes)
        np.testing.assert_array_equal(first, want_first)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    distinct=st.integers(1, 300),
    dtype=st.sampled_from(["int64", "uint64", "int32"]),
    spread=st.sampled_from(["full", "top", "narrow"]),
)
def test_sorted_ids_packed_or_argsorted_equal_factorize(seed, n, distinct, dtype, spread):
    """``sorted_ids`` numbers rows as ``pd.factorize`` and finds each group's first row both
    ways: values whose offsets and row numbers fit one 64-bit integer (one sort of the
    packed integers) and values spread over the whole dtype (an argsort, ties in any
    order: each group's first row is its smallest)."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    if spread == "full":
        pool = rng.integers(info.min, info.max, distinct, dtype=dtype, endpoint=True)
        pool[:2] = [info.min, info.max][: len(pool[:2])]
    elif spread == "top":
        pool = np.array(
            [int(info.max) - int(v) for v in rng.integers(0, 1000, distinct)], dtype=object
        ).astype(dtype)
    else:
        pool = rng.integers(0, 3, distinct).astype(dtype)
    x = pool[rng.integers(0, distinct, n)]
    codes, _ = pd.factorize(x)
    ids, first = A.sorted_ids(x)
    np.testing.assert_array_equal(ids, codes)
    np.testing.assert_array_equal(first, [np.flatnonzero(codes == g)[0] for g in range(codes.max() + 1)])
    assert [len(a) for a in A.sorted_ids(x[:0])] == [0, 0]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), groups=st.integers(1, 200))
def test_several_keys_of_many_groups_numbered_by_a_sort_as_by_a_hash(seed, n, groups):
    """``group_ids`` of several keys numbers their combined integer by a sort when a sample
    suggests many groups (``SORTED_IDS_MIN_GROUPS``): the same numbers and first rows as the
    hash table's; the sample's estimate itself decides only the path."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, groups, n)
    df = pd.DataFrame(
        {
            "s": pd.Series([f"k{g % 7}" for g in pick], dtype="str"),
            "i": (pick * 2**40).astype(np.int64),
            "f": (pick % 5).astype(np.float64),
        }
    )
    want = _with("SORTED_IDS_MIN_GROUPS", 10**9, lambda: A.group_ids(df, ["s", "i", "f"], determined=False))
    got = _with("SORTED_IDS_MIN_GROUPS", 1, lambda: A.group_ids(df, ["s", "i", "f"], determined=False))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # 20 rows of one value: about 20² / (2 · 19) ≈ 10 values; of 20 values: no repeat, many
    assert _with("SORTED_IDS_MIN_GROUPS", 16, lambda: A._many_groups(np.zeros(20, dtype=np.int64))) is False
    assert _with("SORTED_IDS_MIN_GROUPS", 16, lambda: A._many_groups(np.arange(20, dtype=np.int64))) is True


# partials of several NumPy keys grouped by one group number (db-benchmark q10)
_KEY_POOLS = {
    "i": np.array([0, 1, -5, 2**62, -(2**63)], dtype=np.int64),
    "f": np.array([np.nan, -0.0, 0.0, 1.5, np.inf], dtype=np.float64),
    "b": np.array([True, False]),
    "t": np.array(["NaT", "2001-01-01", "1999-12-31"], dtype="datetime64[ns]"),
    "u": np.array([0, 2**64 - 1, 7], dtype=np.uint64),
    "c": np.array([0, 1, 2, -1]),  # a categorical's codes (-1: missing)
    "n": np.array([np.nan]),  # a float key without a value
    "h": np.array([np.nan, 2.5, -0.0], dtype=np.float32),
}


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 80),
    kinds=st.lists(st.sampled_from(list(_KEY_POOLS)), min_size=2, max_size=4),
    dropna=st.booleans(),
    inters=st.lists(
        st.sampled_from(
            [("x", "sum"), ("x", "fsum"), ("x", "count"), ("x", "min"), ("x", "max"), ("x", "first")]
            + [("x", "last"), ("x", "mean"), ("x", "m2"), ("i", "sum"), ("i", "uniq"), ("x", "size")]
        ),
        min_size=1,
        max_size=5,
        unique=True,
    ),
)
def test_partials_of_several_numpy_keys_by_one_group_number_are_pandas_partials(
    seed, n, kinds, dropna, inters
):
    """``chunk_partial`` of two to four NumPy keys (ints near ±2**63, floats with NaN and
    -0.0, bools, datetimes with NaT, uint64, categoricals) groups by one integer per group
    (``_numbered_groups``): the same table — keys, dtypes, group order, every aggregate bit
    for bit — as pandas' own multi-key group-by, with ``dropna`` either way."""
    rng = np.random.default_rng(seed)
    data = {}
    keys = []
    for j, kind in enumerate(kinds):
        pool = _KEY_POOLS[kind]
        values = pool[rng.integers(0, len(pool), n)]
        if kind == "c":
            values = pd.Categorical.from_codes(values, categories=["p", "q", "r"])
        data[f"k{j}"] = values
        keys.append(f"k{j}")
    special = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 1e16, 0.1])
    noise = rng.normal(0, 1e3, n)
    data["x"] = np.where(rng.random(n) < 0.4, special[rng.integers(0, len(special), n)], noise)
    data["i"] = rng.integers(-(2**40), 2**40, n)
    df = pd.DataFrame(data)
    got = A.chunk_partial(df, keys, inters, dropna)
    want = _with("_numbered_groups", lambda *args: None, lambda: A.chunk_partial(df, keys, inters, dropna))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name in got.columns:
        if got[name].dtype.kind == "f":
            assert got[name].to_numpy().tobytes() == want[name].to_numpy().tobytes(), name


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(-5, 5), st.integers(-(2**63), 2**63 - 1)),
            st.sampled_from([0.5, np.nan, -0.0, 0.0]),
            st.sampled_from(["a", "b", None]),
        ),
        max_size=40,
    ),
    st.sampled_from([["i"], ["f"], ["s"], ["i", "s"], ["f", "s", "i"]]),
)
def test_group_codes_are_equal_exactly_for_equal_keys(rows, keys):
    """``group_codes``: a number in ``[0, width)`` per row, the same for two rows exactly
    when their keys are equal (missing values equal each other, ``-0.0`` equals ``0.0``),
    as pandas' ``groupby(dropna=False)`` groups them."""
    t = pd.DataFrame(rows, columns=["i", "f", "s"]).astype({"i": "int64", "f": "float64", "s": "str"})
    codes, width = A.group_codes(t, keys)
    assert len(codes) == len(t) and (len(t) == 0 or (codes.min() >= 0 and codes.max() < width))
    expected = t.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    for a in range(len(t)):
        for b in range(len(t)):
            assert (codes[a] == codes[b]) == (expected[a] == expected[b]), (keys, a, b)
