"""Randomized: a filter evaluated while reading (``Expr.to_arrow`` on the Arrow batch) gives
the mask pandas gives (``Expr.evaluate`` on the converted batch), or both raise; and min/max
statistics never prune a partition that has a matching row.

Data: ints near 2**53 and the int64/uint64 limits, ints with nulls, NaN, ±inf, float32,
decimals, dates, naive and tz-aware timestamps, bools with nulls, strings with nulls, dictionary
strings. Expressions: comparisons with literals of every kind and between columns,
arithmetic, isin (with missing values), between, isna, string methods, ``~``, ``&``, ``|``.

The fixed-seed run is part of the normal suite; a longer run:
``HPCFRAME_EXPR_EXAMPLES=20000 python -m pytest tests/unit/test_expr.py --timeout=0``.
"""

import datetime
import decimal
import io
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcframe import expr as E
from hpcframe.io.parquet import _stats
from hpcframe.io.types import filter_schema, normalize_table, to_pandas

EXAMPLES = int(os.environ.get("HPCFRAME_EXPR_EXAMPLES", "300"))
BIG = 2**53

INTS = [0, 1, -1, 7, BIG, BIG + 1, BIG - 1, 2**62, 2**63 - 1, -(2**63), 16777217]
UINTS = [0, 1, 7, 2**63, 2**63 + 5, 2**64 - 1]
FLOATS = [
    0.0,
    -0.0,
    0.1,
    1.5,
    -2.5,
    float(BIG),
    float(2**63),
    np.inf,
    -np.inf,
    np.nan,
    3.4e38,
    1e39,
    16777216.0,
    16777217.0,
]
DATES = [datetime.date(2013, 6, 30), datetime.date(2013, 7, 1), datetime.date(2013, 7, 2)]
TIMES = [
    pd.Timestamp("2013-07-01"),
    pd.Timestamp("2013-07-01 10:00"),
    pd.Timestamp("2013-06-30 23:59:59.999999999"),
]
DECIMALS = [decimal.Decimal(v) for v in ("0.00", "1.00", "-2.50", "0.10", "7.00", "9999999999.99")]
STRINGS = ["", "a", "ab", "abc", "b", "B", "a.b", "é", "a\nb", "é\n", "aa"]

COLUMNS = {
    "i": (pa.int64(), st.sampled_from(INTS)),
    "inull": (pa.int64(), st.one_of(st.none(), st.sampled_from(INTS))),
    "u": (pa.uint64(), st.sampled_from(UINTS)),
    "i8": (pa.int8(), st.one_of(st.none(), st.sampled_from([-128, -1, 0, 1, 7, 127]))),
    "u32": (pa.uint32(), st.sampled_from([0, 1, 7, 2**31, 2**32 - 1])),
    "f": (pa.float64(), st.one_of(st.none(), st.sampled_from(FLOATS))),
    "g": (pa.float32(), st.one_of(st.none(), st.sampled_from(FLOATS))),
    "d": (pa.date32(), st.one_of(st.none(), st.sampled_from(DATES))),
    "d2": (pa.date32(), st.one_of(st.none(), st.sampled_from(DATES))),
    "ts": (pa.timestamp("ns"), st.one_of(st.none(), st.sampled_from(TIMES))),
    "tsz": (
        pa.timestamp("us", tz="Europe/Paris"),
        st.one_of(st.none(), st.sampled_from([t.tz_localize("Europe/Paris") for t in TIMES[:2]])),
    ),
    "b": (pa.bool_(), st.booleans()),
    "bn": (pa.bool_(), st.one_of(st.none(), st.booleans())),
    "s": (pa.string(), st.one_of(st.none(), st.sampled_from(STRINGS))),
    "c": ("dict", st.one_of(st.none(), st.sampled_from(STRINGS[:5]))),
    "dec": (pa.decimal128(12, 2), st.one_of(st.none(), st.sampled_from(DECIMALS))),
}

LITERALS = (
    INTS
    + [2**64, -(2**70), 128, -129, 2**32]
    + FLOATS
    + [
        np.float32(0.1),
        np.float64(0.1),
        np.int64(BIG + 1),
        np.uint64(2**63),
        np.int8(-1),
        np.uint8(7),
        np.float16(0.1),
    ]
    + DATES
    + TIMES
    + [
        pd.Timestamp("2013-07-01", tz="UTC"),
        np.datetime64("2013-07-01"),
        datetime.datetime(2013, 7, 1),
        pd.NaT,
        "2013-07-01",
    ]
    + STRINGS
    + [True, False, None]
)


@st.composite
def tables(draw):
    n = draw(st.integers(0, 10))
    arrays = {}
    for name, (t, values) in COLUMNS.items():
        vals = draw(st.lists(values, min_size=n, max_size=n))
        if t == "dict":
            arrays[name] = pa.array(vals, pa.string()).dictionary_encode()
        elif t == pa.float32():
            with np.errstate(over="ignore"):
                arrays[name] = pa.array([None if v is None else np.float32(v) for v in vals], pa.float32())
        elif pa.types.is_timestamp(t):
            arrays[name] = pa.array([None if v is None else v for v in vals], t)
        else:
            arrays[name] = pa.array(vals, t)
    return pa.table(arrays)


cols = st.sampled_from(list(COLUMNS))
lits = st.sampled_from(LITERALS)


def _expressions():
    leaf_value = st.one_of(cols.map(E.Col), lits.map(E.Lit))
    arith = st.builds(
        lambda op, a, b: E.Bin(op, a, b),
        st.sampled_from(["+", "-", "*"]),
        cols.map(E.Col),
        st.one_of(cols.map(E.Col), lits.map(E.Lit)),
    )
    value = st.one_of(leaf_value, arith)
    cmp = st.builds(lambda op, a, b: E.Bin(op, a, b), st.sampled_from(list(E._CMP)), value, value)
    isin = st.builds(E.IsIn, cols.map(E.Col), st.lists(lits, max_size=3))
    between = st.builds(
        E.Between, cols.map(E.Col), lits, lits, st.sampled_from(["both", "neither", "left", "right"])
    )
    isna = st.builds(E.IsNa, cols.map(E.Col), st.booleans())
    strmatch = st.builds(
        E.StrMatch,
        st.sampled_from(["s", "c"]).map(E.Col),
        st.sampled_from(["startswith", "endswith", "contains"]),
        st.sampled_from(
            ["a", "b", ".", "^a", "B", "a.*b", "a|é", "[ab]c?", "(a|b)+.", "a$", "\\w", "a{2}", "(?i)a"]
        ),
        st.booleans(),
        st.booleans(),
    )
    bool_col = st.sampled_from(["b", "bn"]).map(E.Col)
    leaf = st.one_of(cmp, isin, between, isna, strmatch, bool_col)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(E.Not),
            st.builds(lambda op, a, b: E.Bin(op, a, b), st.sampled_from(["&", "|"]), inner, inner),
        ),
        max_leaves=4,
    )


def _pandas_mask(expr, table):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = to_pandas(table)
            return E.as_mask(expr.evaluate(df), table.num_rows, expr), None
    except Exception as exc:  # noqa: BLE001 - compared with the pushed evaluation
        return None, exc


def _pushed_mask(expr, table):
    """As the reader does it: each &-term translated against the filter schema, evaluated
    on the batch normalised with dates kept as dates (a term left untranslated runs in
    pandas)."""
    schema = filter_schema(table.schema)
    batch = normalize_table(table, keep_dates=True)
    mask = np.ones(table.num_rows, dtype=bool)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for term in E.conjuncts(expr):
                op = term.to_arrow(schema)
                if op is None:  # not pushed: runs in pandas after the conversion
                    m, exc = _pandas_mask(term, table)
                    if exc is not None:
                        raise exc
                    mask &= m
                    continue
                got = op(batch)
                assert got.null_count == 0, f"{op} gave nulls"
                mask &= np.asarray(got.to_numpy(zero_copy_only=False), dtype=bool)
        return mask, None
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001
        return None, exc


def _statistics(table):
    """Per column (min, max) as hpcframe's Parquet reader gets them (one row group)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    meta = pq.read_metadata(io.BytesIO(buf.getvalue()))
    rg = meta.row_group(0)
    out = {}
    for j in range(meta.num_columns):
        s = _stats(rg.column(j).statistics)
        if s is not None:
            out[meta.schema.column(j).path] = (s.min, s.max)
    return out


@pytest.mark.timeout(600)
@settings(
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(table=tables(), expr=_expressions())
def test_arrow_evaluation_equals_pandas(table, expr):
    want, want_exc = _pandas_mask(expr, table)
    got, got_exc = _pushed_mask(expr, table)
    if want_exc is not None:
        assert got_exc is not None, f"{expr.text()}: pandas raises {want_exc!r}, pushed gives {got}"
        return
    assert got_exc is None, f"{expr.text()}: pandas gives {want}, pushed raises {got_exc!r}"
    assert got.tolist() == want.tolist(), f"{expr.text()}: pushed {got} != pandas {want}"
    if want.any():
        stats = _statistics(table)
        assert E.and_all(E.conjuncts(expr)).may_match(stats), (
            f"{expr.text()}: statistics {stats} prune rows that pass: {want}"
        )


@pytest.mark.parametrize(
    "expr, stats, may",
    [
        (E.Bin("==", E.Col("g"), E.Lit(0.1)), {"g": (float(np.float32(0.1)), 0.7)}, True),
        (E.Bin("<=", E.Col("g"), E.Lit(0.1)), {"g": (float(np.float32(0.1)), 0.7)}, True),
        (E.Bin("==", E.Col("i"), E.Lit(float(BIG))), {"i": (BIG + 1, BIG + 7)}, True),
        (E.Bin(">", E.Col("i"), E.Lit(float(BIG))), {"i": (BIG - 1, BIG + 1)}, True),
        (E.IsIn(E.Col("f"), [np.nan]), {"f": (0.0, 1.0)}, True),
        (E.IsIn(E.Col("s"), [None]), {"s": ("a", "b")}, True),
        (
            E.Bin("==", E.Col("d"), E.Lit(datetime.date(2013, 7, 1))),
            {"d": (pd.Timestamp("2013-06-01"), pd.Timestamp("2013-06-02"))},
            True,
        ),
        # still prunes where no domain can match
        (E.Bin("==", E.Col("g"), E.Lit(0.1)), {"g": (0.5, 0.7)}, False),
        (E.Bin(">", E.Col("i"), E.Lit(10)), {"i": (0, 5)}, False),
        (E.IsIn(E.Col("i"), [1, 2]), {"i": (5, 9)}, False),
    ],
)
def test_statistics_pruning_is_conservative(expr, stats, may):
    assert expr.may_match(stats) is may


# ------------------------------------------------------------------------------------------
# implied_by: the part of an | over both sides of a join that one side implies
# ------------------------------------------------------------------------------------------
_SIDE_A, _SIDE_B = {"a", "s"}, {"b"}


@st.composite
def _or_of_ands(draw):
    """``(t & t ...) | (t & ...) | ...`` with terms over the columns a, s (one side) and b."""

    def term():
        kind = draw(st.sampled_from(["a_cmp", "b_cmp", "s_eq", "a_between", "b_isin", "a_or_b", "a_isna"]))
        v = draw(st.sampled_from([-1.0, 0.0, 0.5, 2.0]))
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        if kind == "a_cmp":
            return E.Bin(op, E.Col("a"), E.Lit(v))
        if kind == "b_cmp":
            return E.Bin(op, E.Col("b"), E.Lit(v))
        if kind == "s_eq":
            return E.Bin(op if op in ("==", "!=") else "==", E.Col("s"), E.Lit("x"))
        if kind == "a_between":
            return E.Between(E.Col("a"), v, v + 1.0)
        if kind == "b_isin":
            return E.IsIn(E.Col("b"), [v, 2.0])
        if kind == "a_isna":
            return E.IsNa(E.Col("a"))
        return E.Bin("|", E.Bin(op, E.Col("a"), E.Lit(v)), E.Bin("<", E.Col("b"), E.Lit(v)))

    chains = []
    for _ in range(draw(st.integers(2, 4))):
        terms = [term() for _ in range(draw(st.integers(1, 3)))]
        chains.append(E.balanced(terms, lambda x, y: E.Bin("&", x, y)))
    return E.balanced(chains, lambda x, y: E.Bin("|", x, y))


@settings(max_examples=200, deadline=None)
@given(
    expr=_or_of_ands(),
    a=st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf]), min_size=8, max_size=8),
    b=st.lists(st.sampled_from([-1.0, 0.5, 2.0, np.nan, -np.inf]), min_size=8, max_size=8),
    s=st.lists(st.sampled_from(["x", "y", None]), min_size=8, max_size=8),
)
def test_implied_by_holds_wherever_the_condition_does(expr, a, b, s):
    """A row passing the condition passes what each side implies (pandas' evaluation, NaN
    and None included), and the implied predicate reads only that side's columns."""
    df = pd.DataFrame({"a": a, "b": b, "s": pd.Series(s, dtype=object)})
    whole = np.asarray(expr.evaluate(df), dtype=bool)
    for side in (_SIDE_A, _SIDE_B):
        derived = E.implied_by(expr, lambda t, c=side: bool(t.columns()) and t.columns() <= c)
        if derived is None:
            continue
        assert derived.columns() <= side
        part = np.asarray(derived.evaluate(df), dtype=bool)
        assert not (whole & ~part).any(), (expr.text(), derived.text())


def test_implied_by_needs_a_term_in_every_chain():
    a, b = E.Bin(">", E.Col("a"), E.Lit(1)), E.Bin("<", E.Col("b"), E.Lit(0))
    usable = lambda t: t.columns() <= {"a"}  # noqa: E731
    assert E.implied_by(E.Bin("|", E.Bin("&", a, b), b), usable) is None
    assert E.implied_by(E.Bin("&", a, b), usable) is None  # not an |: conjuncts move as they are
    got = E.implied_by(E.Bin("|", E.Bin("&", a, b), E.Bin("&", b, a)), usable)
    assert got is not None and got.text() == "((a > 1) | (a > 1))"


# string terms evaluated on the dictionaries of dictionary-encoded columns
def _dictionary_chunks(col: pa.Array, cuts: list[int], grow: bool) -> pa.ChunkedArray:
    """``col`` (strings) as dictionary chunks cut at ``cuts``, each with its own dictionary
    (as a Parquet reader hands row groups over); with ``grow`` one chunk's dictionary has
    more entries than the chunk has rows (the decoded path)."""
    bounds = sorted({0, len(col), *(c for c in cuts if 0 < c < len(col))})
    chunks = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        part = col.slice(a, b - a)
        if grow and i == 0:
            values = pa.array(list(STRINGS) + [v for v in part.to_pylist() if v is not None], pa.string())
            values = pc.unique(values)
            indices = pa.array(
                [None if v is None else values.to_pylist().index(v) for v in part.to_pylist()], pa.int32()
            )
            chunks.append(pa.DictionaryArray.from_arrays(indices, values))
        else:
            chunks.append(part.dictionary_encode())
    if not chunks:
        return pa.chunked_array([], pa.dictionary(pa.int32(), pa.string()))
    return pa.chunked_array(chunks)


def _as_read(table, cuts, grow):
    """``table`` as the reader sees it: the declared schema (``s`` and ``c`` strings), the
    decoded batch, and the batch with ``s`` and ``c`` as dictionary chunks (``cuts``, ``grow``:
    :func:`_dictionary_chunks`)."""
    declared = pa.schema(
        [pa.field(n, pa.string()) if n in ("s", "c") else table.schema.field(n) for n in table.column_names]
    )
    decoded = table.set_column(table.column_names.index("c"), "c", table.column("c").cast(pa.string()))
    encoded = decoded
    for name in ("s", "c"):
        col = decoded.column(name).combine_chunks()
        encoded = encoded.set_column(
            encoded.column_names.index(name), name, _dictionary_chunks(col, cuts, grow)
        )
    return declared, decoded, encoded


def _read_terms(table, cuts, grow, exprs):
    """:func:`_as_read` of ``table`` (the decoded and the dictionary-encoded batch), the
    Arrow terms of the conjuncts of ``exprs`` on its declared schema, and the reader's
    normalization of a batch."""
    declared, decoded, encoded = _as_read(table, cuts, grow)
    schema = filter_schema(declared)
    terms = [t.to_arrow(schema) for e in exprs for t in E.conjuncts(e)]

    def normalize(t):
        return normalize_table(t, declared, keep_dates=True)

    return decoded, encoded, [t for t in terms if t is not None], normalize


@pytest.mark.timeout(600)
@settings(
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    table=tables(),
    expr=_expressions(),
    cuts=st.lists(st.integers(0, 10), max_size=3),
    grow=st.booleans(),
)
def test_string_terms_on_dictionaries_equal_the_decoded_evaluation(table, expr, cuts, grow):
    """The reader's mask (``evaluate_with_dictionaries``: single-column string terms on each
    chunk's dictionary, taken by the indices, a null index taking a null entry's answer)
    equals the predicate on the decoded, normalized batch, element for element — nulls,
    ``~isin``, ``!=``, startswith/contains, several chunks each with its own dictionary,
    a dictionary bigger than its chunk."""
    decoded, encoded, terms, normalize = _read_terms(table, cuts, grow, [expr])
    if not terms:
        return
    pred = E.balanced(terms, lambda a, b: a & b)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = pred(normalize(decoded))
    except Exception as exc:  # noqa: BLE001 - both must raise
        with pytest.raises(type(exc)):
            E.evaluate_with_dictionaries(pred, encoded, normalize, {"s", "c"})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = E.evaluate_with_dictionaries(pred, encoded, normalize, {"s", "c"})
    assert got.to_pylist() == want.to_pylist(), f"{pred}: dictionaries {got} != decoded {want}"


@pytest.mark.timeout(600)
@settings(
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    table=tables(),
    exprs=st.lists(_expressions(), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 10), max_size=3),
    keys=st.one_of(st.none(), st.lists(st.sampled_from(INTS), max_size=4, unique=True)),
)
def test_terms_in_any_order_equal_the_whole_evaluation(table, exprs, cuts, keys):
    """The reader's mask evaluates the &-terms in its own order — dictionary terms, then the
    terms that see the whole batch, then the row-wise terms over decimals and strings on the
    rows kept so far, then a join-key term on the rows kept — and still equals the
    conjunction on the whole decoded, normalized batch, element for element (a missing
    answer as False), or raises as it raises: ints with nulls (pandas' float64 decides
    there), decimals, string columns compared with each other, few or no rows kept."""
    decoded, encoded, terms, normalize = _read_terms(table, cuts, False, exprs)
    key = None if keys is None else E.KeyIn("i", pd.Index(keys, dtype="int64"))
    if not terms:
        return
    pred = E.balanced(terms + ([key] if key is not None else []), lambda a, b: a & b)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = pc.fill_null(E.balanced(terms, lambda a, b: a & b)(normalize(decoded)), False)
            if key is not None:
                want = pc.and_(want, pc.is_in(decoded.column("i"), value_set=pa.array(keys, pa.int64())))
    except Exception as exc:  # noqa: BLE001 - both must raise
        with pytest.raises(type(exc)):
            E.evaluate_with_dictionaries(pred, encoded, normalize, {"s", "c"})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = E.evaluate_with_dictionaries(pred, encoded, normalize, {"s", "c"})
    got = pc.fill_null(got, False)
    assert got.to_pylist() == want.to_pylist(), f"{pred}: in order {got} != whole {want}"


def test_a_term_over_ints_with_nulls_sees_the_whole_batch():
    """An integer column with nulls in the batch is float64 in pandas (2**53 + 1 becomes
    2**53): a term comparing it is evaluated on the whole batch, not on the rows a string
    term kept (which have no null: Arrow would compare them exactly), even when it also
    reads a decimal column."""
    table = pa.table(
        {
            "inull": pa.array([None, BIG + 1, 5], pa.int64()),
            "s": pa.array(["b", "a", "b"]).dictionary_encode(),
            "dec": pa.array([decimal.Decimal("1.00")] * 3, pa.decimal128(12, 2)),
        }
    )
    declared = pa.schema([("inull", pa.int64()), ("s", pa.string()), ("dec", pa.decimal128(12, 2))])
    either = E.Bin("|", E.Bin("==", E.Col("inull"), E.Lit(BIG)), E.Bin("<", E.Col("dec"), E.Lit(0)))
    expr = E.Bin("&", E.Bin("==", E.Col("s"), E.Lit("a")), either)
    schema = filter_schema(declared)
    pred = E.balanced([t.to_arrow(schema) for t in E.conjuncts(expr)], lambda a, b: a & b)
    got = E.evaluate_with_dictionaries(
        pred, table, lambda t: normalize_table(t, declared, keep_dates=True), {"s"}
    )
    df = to_pandas(normalize_table(table, declared))
    want = E.as_mask(expr.evaluate(df), 3, expr)
    assert want.tolist() == [False, True, False]
    assert got.to_pylist() == want.tolist()


@pytest.mark.parametrize("op", sorted(E._CMP))
def test_date_columns_compared_in_arrow_as_pandas_compares_them(op):
    """Two date columns compared while reading (Arrow, dates kept as dates) give pandas'
    answer on the ``datetime64[ms]`` columns: a missing date compares False, except with
    ``!=`` (True)."""
    d = [datetime.date(2013, 7, 1), datetime.date(2013, 7, 2), None, None]
    e = [datetime.date(2013, 7, 2), datetime.date(2013, 7, 2), datetime.date(2013, 7, 2), None]
    table = pa.table({"a": pa.array(d, pa.date32()), "b": pa.array(e, pa.date32())})
    expr = E.Bin(op, E.Col("a"), E.Col("b"))
    term = expr.to_arrow(filter_schema(table.schema))
    assert isinstance(term, E.ArrowOp), term  # no pandas evaluation
    got = term(normalize_table(table, keep_dates=True))
    want = E.as_mask(expr.evaluate(to_pandas(table)), 4, expr)
    assert got.to_pylist() == want.tolist()


# the share of rows a range filter keeps, estimated from min/max
@pytest.mark.parametrize(
    "term, want",
    [
        (E.Bin("<", E.Col("x"), E.Lit(5)), ("x", None, 5)),
        (E.Bin(">=", E.Col("x"), E.Lit(5)), ("x", 5, None)),
        (E.Bin(">", E.Lit(5), E.Col("x")), ("x", None, 5)),  # 5 > x: x < 5
        (E.Between(E.Col("x"), 1, 2), ("x", 1, 2)),
        (E.Bin("==", E.Col("x"), E.Lit(5)), None),
        (E.Bin("<", E.Col("x"), E.Col("y")), None),
    ],
)
def test_range_of_reads_constant_bounds(term, want):
    assert E.range_of(term) == want


@pytest.mark.parametrize(
    "bounds, stats, share",
    [
        ((40, 42), (0, 100), 0.02),
        ((None, 50), (0, 100), 0.5),
        ((200, None), (0, 100), 0.0),
        ((None, None), (0, 100), 1.0),
        ((5, 5), (5, 5), 1.0),  # one value: kept whole
        ((pd.Timestamp("1995-09-01"), pd.Timestamp("1995-10-01")), (DATES[0], DATES[0]), 0.0),
        (
            (pd.Timestamp("2013-06-30"), pd.Timestamp("2013-07-01")),
            (datetime.date(2013, 6, 30), datetime.date(2013, 7, 2)),
            0.5,
        ),
        (("a", "b"), ("a", "z"), 1.0),  # strings: not told
        ((0, 1), (None, 5), 1.0),  # unknown statistics
        ((0, 1), (0.0, np.inf), 1.0),
    ],
)
def test_range_share_assumes_values_spread_evenly(bounds, stats, share):
    assert E.range_share(bounds, stats) == pytest.approx(share)


def _or_of_string_ands():
    """``|`` of ``&``-chains mixing terms over the dictionary string columns ``s`` and ``c``
    with terms over other columns (TPC-H q19's shape), ``~`` here and there."""
    string_term = st.one_of(
        st.builds(
            lambda op, col, v: E.Bin(op, E.Col(col), E.Lit(v)),
            st.sampled_from(["==", "!="]),
            st.sampled_from(["s", "c"]),
            st.sampled_from(STRINGS),
        ),
        st.builds(
            lambda col, vs: E.IsIn(E.Col(col), vs),
            st.sampled_from(["s", "c"]),
            st.lists(st.sampled_from(STRINGS), max_size=3),
        ),
        st.builds(
            lambda col, how, pat: E.StrMatch(E.Col(col), how, pat, False, False),
            st.sampled_from(["s", "c"]),
            st.sampled_from(["startswith", "endswith", "contains"]),
            st.sampled_from(["a", "b", "é"]),
        ),
    )
    other_term = st.one_of(
        st.builds(
            lambda op, v: E.Bin(op, E.Col("i"), E.Lit(v)),
            st.sampled_from(list(E._CMP)),
            st.sampled_from(INTS),
        ),
        st.builds(
            lambda op, v: E.Bin(op, E.Col("f"), E.Lit(v)),
            st.sampled_from(list(E._CMP)),
            st.sampled_from(FLOATS),
        ),
        st.builds(
            lambda lo, hi: E.Between(E.Col("inull"), lo, hi, "both"),
            st.sampled_from(INTS),
            st.sampled_from(INTS),
        ),
    )
    term = st.one_of(string_term, other_term, string_term.map(E.Not))

    @st.composite
    def build(draw):
        chains = []
        for _ in range(draw(st.integers(1, 3))):
            terms = [draw(term) for _ in range(draw(st.integers(1, 3)))]
            chains.append(E.balanced(terms, lambda x, y: E.Bin("&", x, y)))
        return E.balanced(chains, lambda x, y: E.Bin("|", x, y))

    return build()


@pytest.mark.timeout(600)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    table=tables(),
    expr=_or_of_string_ands(),
    more=st.lists(_or_of_string_ands(), max_size=1),
    cuts=st.lists(st.integers(0, 10), max_size=3),
    grow=st.booleans(),
)
def test_or_of_ands_on_dictionaries_equals_the_decoded_evaluation(table, expr, more, cuts, grow):
    """An ``|`` of ``&``-chains over dictionary string columns and other columns (TPC-H q19's
    part predicate) is evaluated branch by branch — string branches on each chunk's
    dictionary, the others on their columns, combined in NumPy — and equals the predicate on
    the decoded, normalized batch, element for element (nulls, ``!=``, ``~``, several
    chunks, a dictionary bigger than its chunk)."""
    decoded, encoded, terms, normalize = _read_terms(table, cuts, grow, [expr, *more])
    if not terms:
        return
    pred = E.balanced(terms, lambda a, b: a & b)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = pc.fill_null(pred(normalize(decoded)), False)
    except Exception as exc:  # noqa: BLE001 - both must raise
        with pytest.raises(type(exc)):
            E.evaluate_with_dictionaries(pred, encoded, normalize, {"s", "c"})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = pc.fill_null(E.evaluate_with_dictionaries(pred, encoded, normalize, {"s", "c"}), False)
    assert got.to_pylist() == want.to_pylist(), f"{pred}: branch by branch {got} != decoded {want}"


def test_q19s_part_predicate_is_a_dictionary_tree():
    """The shape the reader evaluates branch by branch: TPC-H q19's part predicate."""
    schema = pa.schema([("p_brand", pa.string()), ("p_container", pa.string()), ("p_size", pa.int32())])
    chain = [
        E.Bin("==", E.Col("p_brand"), E.Lit("Brand#12")),
        E.IsIn(E.Col("p_container"), ["SM CASE", "SM BOX"]),
        E.Between(E.Col("p_size"), 1, 5, "both"),
    ]
    expr = E.Bin(
        "|", E.balanced(chain, lambda x, y: E.Bin("&", x, y)), E.Bin("==", E.Col("p_brand"), E.Lit("B"))
    )
    term = expr.to_arrow(schema)
    assert E._dictionary_tree(term, {"p_brand", "p_container"})
    assert not E._dictionary_tree(term, set())  # no dictionary column: the usual path
