"""The block partial of a group-by on categorical keys computed on the category codes
(``aggregations._dense_partial``, the TPC-H Q1 path) against a plain reference written out
row by row: every float sum is the sequential sum of the group's non-NaN values in row order
starting from 0.0 (what ``numpy.bincount`` adds, and what the partials were before the scan
hot path shared one bincount between ``sum`` and ``fsum`` and took counts without NaN from
the group sizes) — or, in a block of at least ``_LANE_MIN_ROWS`` rows and few groups, that
sum per interleaved lane (row ``i`` of the kept rows in lane ``i % _LANES``), the lanes added
in order —, counts are pandas' ``notna`` counts, integer sums exact. Bit for bit, on
nasty data: NaN, ±inf, -0.0, huge and tiny floats, missing keys (both ``dropna``), columns
without any NaN next to columns with some, float32, bools, datetimes with NaT."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcframe.aggregations import SEP, _dense_partial

FLOATS = st.one_of(
    st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 0.1, 1 / 3]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)


@st.composite
def blocks(draw):
    n = draw(st.integers(0, 60))
    nkeys = draw(st.integers(1, 2))
    data, keys = {}, []
    for j in range(nkeys):
        cats = [f"c{j}{i}" for i in range(draw(st.integers(1, 4)))]
        codes = draw(st.lists(st.integers(-1, len(cats) - 1), min_size=n, max_size=n))
        name = f"k{j}"
        data[name] = pd.Categorical.from_codes(codes, categories=cats)
        keys.append(name)
    data["x"] = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64)
    clean = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n))
    data["y"] = np.array(clean, dtype=np.float64)  # never NaN: its counts are the sizes
    data["i"] = np.array(draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)), dtype=np.int64)
    f32 = st.one_of(st.just(np.nan), st.floats(allow_nan=True, allow_infinity=True, width=32))
    data["f"] = np.array(draw(st.lists(f32, min_size=n, max_size=n)), dtype=np.float32)
    data["b"] = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    stamps = draw(st.lists(st.one_of(st.none(), st.integers(0, 10**9)), min_size=n, max_size=n))
    data["t"] = pd.to_datetime([pd.NaT if s is None else s for s in stamps], unit="s")
    df = pd.DataFrame(data)
    if draw(st.booleans()):  # float sums (x, y) or integer sums (i): the two modes of the path
        sums = [("x", "sum"), ("x", "fsum"), ("y", "sum"), ("y", "fsum")]
    else:
        sums = [("i", "sum"), ("i", "fsum"), ("i", "min"), ("i", "max")]
    counts = [("x", "count"), ("y", "count"), ("i", "count"), ("f", "count"), ("b", "count"), ("t", "count")]
    pool = sums + counts + [("k0", "size")]
    inters = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    return df, keys, inters, draw(st.booleans())


def _reference(df, keys, inters, dropna, lanes=1):
    """The partial written out row by row (groups in code order, first key major); float sums
    over ``lanes`` interleaved lanes of the kept rows."""
    ks = [df[k].cat.codes.to_numpy().astype(np.int64) for k in keys]
    ns = [len(df[k].cat.categories) + 1 for k in keys]  # one more for the missing key
    groups: dict = {}
    lane: dict = {}  # row -> its lane: its position among the kept rows, modulo lanes
    for r in range(len(df)):
        codes = tuple(c[r] if c[r] >= 0 else n - 1 for c, n in zip(ks, ns))
        if dropna and any(c[r] < 0 for c in ks):
            continue
        lane[r] = len(lane) % lanes
        groups.setdefault(codes, []).append(r)
    order = sorted(groups)
    cols: dict = {}
    for j, k in enumerate(keys):
        cats = df[k].cat.categories
        cols[k] = pd.Series([cats[g[j]] if g[j] < len(cats) else np.nan for g in order], dtype=object)
    for col, inter in inters:
        name = col + SEP + inter
        out = []
        for g in order:
            rows = groups[g]
            if inter == "size":
                out.append(len(rows))
                continue
            v = df[col].iloc[rows]
            if inter == "count":
                out.append(int(v.notna().sum()))
            elif inter in ("min", "max"):
                out.append(int(v.min() if inter == "min" else v.max()))
            elif df[col].dtype == np.int64:
                total = sum(int(x) for x in v)
                out.append(total if inter == "sum" else float(total))
            else:
                accs = [0.0] * lanes
                for r, x in zip(rows, v.to_numpy()):
                    if not np.isnan(x):
                        accs[lane[r]] += float(x)
                total = accs[0]
                for a in accs[1:]:
                    total += a
                out.append(total)
        floats = inter == "fsum" or (inter == "sum" and df[col].dtype != np.int64)
        kind = np.float64 if floats else np.int64
        cols[name] = np.array(out, dtype=kind)
    return pd.DataFrame(cols)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_dense_partial_matches_row_by_row_reference(case):
    _check_against_reference(case, lanes=1)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_dense_partial_over_interleaved_lanes_matches_row_by_row_reference(case):
    """The same with every block on the interleaved lanes (``_LANE_MIN_ROWS`` and
    ``_LANE_MIN_REPEATS`` lowered to 0, as a block of TPC-H Q1's size and order takes them)."""
    import hpcframe.aggregations as A

    saved = A._LANE_MIN_ROWS, A._LANE_MIN_REPEATS
    A._LANE_MIN_ROWS, A._LANE_MIN_REPEATS = 0, 0.0
    try:
        _check_against_reference(case, lanes=A._LANES)
    finally:
        A._LANE_MIN_ROWS, A._LANE_MIN_REPEATS = saved


def _check_against_reference(case, lanes):
    df, keys, inters, dropna = case
    got = _dense_partial(df, keys, inters, dropna)
    assert got is not None  # these inputs are all on the code path
    want = _reference(df, keys, inters, dropna, lanes)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    if len(want) == 0:  # no group (e.g. every key missing, dropna): numpy's empty bincount is int
        return
    for k in keys:
        assert (
            got[k].astype(object).where(got[k].notna(), None).tolist()
            == want[k].where(want[k].notna(), None).tolist()
        )
    for col, inter in inters:
        name = col + SEP + inter
        g, w = got[name].to_numpy(), want[name].to_numpy()
        assert g.dtype == w.dtype, (name, g.dtype, w.dtype)
        if g.dtype == np.float64:  # bit for bit: NaN payloads aside, -0.0 vs 0.0 matters
            assert np.array_equal(np.isnan(g), np.isnan(w)), name
            ok = ~np.isnan(g)
            assert (g[ok].view(np.int64) == w[ok].view(np.int64)).all(), (name, g, w)
        else:
            assert (g == w).all(), (name, g, w)


def test_sum_and_fsum_of_one_column_are_separate_arrays():
    """``sum`` and ``fsum`` share one bincount but not one buffer (a later in-place change of
    one partial column must not change the other)."""
    df = pd.DataFrame({"k": pd.Categorical(["a", "b", "a"]), "x": [1.5, np.nan, 2.0]})
    got = _dense_partial(df, ["k"], [("x", "sum"), ("x", "fsum"), ("x", "count")], True)
    s, f = got["x" + SEP + "sum"].to_numpy(), got["x" + SEP + "fsum"].to_numpy()
    assert not np.shares_memory(s, f)
    assert s.tolist() == [3.5, 0.0] and got["x" + SEP + "count"].tolist() == [2, 0]


# integer keys of few values: the dense path on their offsets from the minimum
@st.composite
def int_key_blocks(draw):
    n = draw(st.integers(1, 60))
    nkeys = draw(st.integers(1, 2))
    data, keys = {}, []
    for j in range(nkeys):
        dtype = draw(st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint64"]))
        info = np.iinfo(dtype)
        width = draw(st.integers(0, 50))
        base = draw(st.sampled_from([int(info.min), max(int(info.min), int(info.max) - width), 0]))
        offsets = draw(st.lists(st.integers(0, min(width, int(info.max) - base)), min_size=n, max_size=n))
        data[f"k{j}"] = np.array([base + o for o in offsets], dtype=object).astype(dtype)
        keys.append(f"k{j}")
    if draw(st.booleans()):  # beside a categorical key (with missing values)
        codes = draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n))
        data["c"] = pd.Categorical.from_codes(codes, categories=["a", "b", "c"])
        keys.insert(draw(st.integers(0, len(keys))), "c")
    data["x"] = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64)
    data["i"] = np.array(draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)), dtype=np.int64)
    pool = [
        ("i", "sum"),
        ("i", "fsum"),
        ("i", "min"),
        ("i", "max"),
        ("x", "count"),
        ("i", "count"),
        ("x", "size"),
    ]
    inters = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique=True))
    return pd.DataFrame(data), keys, inters, draw(st.booleans())


def _pandas_partial(df, keys, inters, dropna):
    """``chunk_partial`` with integer keys kept off the dense path: pandas' group-by."""
    import hpcframe.aggregations as A

    saved = A.DENSE_INT_KEY_SPAN
    A.DENSE_INT_KEY_SPAN = 0
    try:
        return A.chunk_partial(df, keys, inters, dropna)
    finally:
        A.DENSE_INT_KEY_SPAN = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(int_key_blocks())
def test_integer_keys_dense_equal_pandas_partial(block):
    """Integer keys of few values (every dtype, at both ends of its range, beside a
    categorical key) go the dense way for counts, sizes, integer sums, mins and maxes: the
    same groups, keys (values and dtypes) and aggregates, bit for bit, as pandas' group-by
    of the block, in the keys' order (the pandas partial is in order of first appearance).
    A float sum is never taken this way (pandas' compensated sum differs from bincount's)."""
    import hpcframe.aggregations as A

    df, keys, inters, dropna = block
    got = A.chunk_partial(df, keys, inters, dropna)
    assert A._dense_partial(df, keys, inters, dropna) is not None
    want = _pandas_partial(df, keys, inters, dropna)
    order = want.sort_values(keys, kind="mergesort", na_position="last").index
    want = want.loc[order].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_exact=True)
    assert A._dense_partial(df, keys, [("x", "sum")], dropna) is None


@pytest.mark.parametrize(
    "keys, inters",
    [(["c", "k0"], [("i", "sum"), ("i", "fsum")]), (["c"], [("x", "sum"), ("x", "fsum")])],
    ids=["int-sums", "float-sums"],
)
def test_dense_partial_of_a_block_whose_rows_are_all_dropped_types_sums_as_pandas(keys, inters):
    """Regression (found by ``test_integer_keys_dense_equal_pandas_partial``): when ``dropna``
    drops every row of a block, NumPy's ``bincount`` with weights returns int64 zeros; the
    dense partial's float sums (``fsum`` of an int column, sums of a float column) stay
    float64, as pandas' group-by types them."""
    import hpcframe.aggregations as A

    df = pd.DataFrame(
        {
            "k0": np.array([-128, 5], dtype="int8"),
            "c": pd.Categorical.from_codes([-1, -1], categories=["a", "b"]),
            "x": [np.nan, 1.5],
            "i": np.array([0, 7], dtype=np.int64),
        }
    )
    got = A._dense_partial(df, keys, inters, True)
    assert got is not None and len(got) == 0
    want = _pandas_partial(df, keys, inters, True)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()


def test_lanes_are_taken_only_where_rows_of_a_group_follow_each_other():
    """``_Bins`` interleaves lanes for a long block of few groups whose rows come in runs, not
    for groups in random order (where the extra pass costs more than it saves), nor for a
    short block; the counts are the same either way."""
    import hpcframe.aggregations as A

    rng = np.random.default_rng(0)
    runs = np.repeat(rng.integers(0, 4, 2000), 50)
    shuffled = rng.integers(0, 4, len(runs))
    assert A._Bins(runs, 4).lanes == A._LANES
    assert A._Bins(shuffled, 4).lanes == 1
    assert A._Bins(runs[:100], 4).lanes == 1
    assert A._Bins(runs, A._LANE_MAX_GROUPS + 1).lanes == 1
    for codes in (runs, shuffled):
        assert (A._Bins(codes, 4).count() == np.bincount(codes, minlength=4)).all()
