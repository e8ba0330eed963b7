"""The restricted query parser: the same rows as ``pandas.DataFrame.query``, and nothing that
could run code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe import expr as E
from hpcframe.errors import ColumnNotFoundError, HpcframeError
from hpcframe.query import MAX_DEPTH, MAX_INT_BITS, QueryError, apply_expression, apply_query, parse_query


@pytest.fixture(scope="module")
def pdf() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 60
    x = rng.integers(-5, 10, n).astype(float)
    x[::7] = np.nan
    carriers = np.array(["AA", "UA", "DL", "B6", None], dtype=object)
    return pd.DataFrame(
        {
            "x": x,
            "y": rng.integers(0, 100, n),
            "carrier": pd.array(carriers[rng.integers(0, 5, n)], dtype="str"),
            "when": pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D"),
            "dep delay": rng.normal(0, 10, n),
        }
    )


@pytest.fixture(scope="module")
def frame(pdf):
    return hf.from_pandas(pdf, npartitions=3)


# (our query, the pandas query giving the same rows; None: the same text)
CASES = [
    ("x > 0", None),
    ("x >= 0 and y < 50", None),
    ("x > 0 & y < 50", None),
    ("(x > 0) | (y == 3)", None),
    ("x > 0 or carrier == 'AA'", None),
    ("not (x > 0)", None),
    ("~(y > 50) & ~(x < 0)", None),
    ("1 < x <= 5", None),
    ("0 <= y < 10 or y > 90", None),
    ("carrier in ['AA', 'UA']", None),
    ("carrier not in ('AA', 'UA')", None),
    ("carrier == ['DL', 'B6']", None),
    ("x * 2 + 1 > y / 10", None),
    ("y // 7 == 3 or y % 5 == 0", None),
    ("-x > 2", None),
    ("x ** 2 > 10", None),
    ("x != 3", None),
    ("when > '2013-02-01'", None),
    ("when >= '2013-01-15' and when < '2013-01-20'", None),
    ("`dep delay` > 5", None),
    ("`dep delay` > x", None),
    ("x.isna()", None),
    ("x.notna() and y > 20", None),
    ("carrier.isin(['AA', 'DL'])", None),
    ("y.between(10, 30)", None),
    ("y.between(10, 30, inclusive='neither')", None),
    ("carrier.str.startswith('A')", None),
    ("carrier.str.endswith('6')", None),
    ("carrier.str.contains('A|U')", None),
    ("carrier == 'AA' and x > 0 and y > 10", None),
    ("x > 1e0 and True", "x > 1"),
    ("y > 2 * 3 ** 2", None),
]


@pytest.mark.parametrize("text,pandas_text", CASES, ids=[c[0] for c in CASES])
def test_same_rows_as_pandas_query(pdf, frame, text, pandas_text):
    want = pdf.query(pandas_text or text, engine="python")
    got = apply_query(frame, text).compute()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


@pytest.mark.parametrize("text", [c[0] for c in CASES])
def test_expression_tree_evaluates_like_the_frame(pdf, text):
    """parse_query's tree, evaluated on the pandas frame, selects the same rows."""
    tree = parse_query(text, list(pdf.columns))
    mask = tree.evaluate(pdf)
    mask = mask.fillna(False).astype(bool) if mask.dtype != bool else mask
    want = pdf.query(dict(CASES)[text] or text, engine="python")
    assert list(pdf.index[mask.to_numpy()]) == list(want.index)


def test_expression_for_assign(pdf, frame):
    s = apply_expression(frame, "`dep delay` - x * 2")
    got = frame.assign(z=s)[["z"]].compute()["z"]
    np.testing.assert_allclose(got.to_numpy(), (pdf["dep delay"] - pdf.x * 2).to_numpy())


def test_tree_shapes():
    cols = ["x", "s"]
    assert (
        parse_query("1 < x <= 5", cols).key()
        == E.Bin("&", E.Bin("<", E.Lit(1), E.Col("x")), E.Bin("<=", E.Col("x"), E.Lit(5))).key()
    )
    assert isinstance(parse_query("s not in ['a']", cols), E.Not)
    assert parse_query("x > 2 ** 3", cols).key() == E.Bin(">", E.Col("x"), E.Lit(8)).key()
    assert parse_query("x > -2", cols).key() == E.Bin(">", E.Col("x"), E.Lit(-2)).key()


INJECTIONS = [
    "__import__('os').system('x')",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__",
    "x.__class__ == 1",
    "open('f')",
    "lambda: 1",
    "(lambda: 1)()",
    "[c for c in x]",
    "{c for c in x}",
    "x[0]",
    "f'{x}' == 'a'",
    "x if y else x",
    "(z := 1)",
    "x.apply(print)",
    "x.str.upper() == 'A'",
    "x.isin(x)",
    "x.between(y, 1)",
    "getattr(x, 'isna')()",
    "x.isin([1], **{'a': 1})",
    "x is None",
    "b'abc' == x",
    "1j == x",
    "'a' * 1000000000 == x",
    "2 ** 10 ** 10 > x",
    "x > " + "(" * 500 + "1" + ")" * 500,
    "x > " + " + ".join(["1"] * 3000),
    "x > 1 and " * 2000 + "x > 1",
]


@pytest.mark.parametrize("text", INJECTIONS, ids=[t[:40] for t in INJECTIONS])
def test_injection_attempts_are_rejected(text):
    with pytest.raises(QueryError) as info:
        parse_query(text, ["x", "y"])
    assert isinstance(info.value, HpcframeError) and isinstance(info.value, ValueError)


def test_error_quotes_piece_and_offset():
    with pytest.raises(QueryError) as info:
        parse_query("x > 1 and y.__class__ == 2", ["x", "y"])
    msg = str(info.value)
    assert "'y.__class__'" in msg and "at column 10" in msg and "allowed" in msg.lower()
    assert info.value.offset == 10


def test_offsets_count_in_the_users_text_with_backticks():
    with pytest.raises(QueryError) as info:
        parse_query("`a b` > 1 & open('x')", ["a b"])
    assert info.value.offset == 12
    assert "open('x')" in str(info.value)


@pytest.mark.parametrize("text", ["x in [1, 2] in [3]", "x in [1] == [2]", "x not in [1] in [2]"])
def test_chained_in_after_a_list_is_a_query_error(text):
    # regression: the list on the left of the second comparison crashed (AttributeError)
    with pytest.raises(QueryError, match="a list cannot be compared"):
        parse_query(text, ["x"])


def test_unknown_column_suggests_close_names():
    with pytest.raises(ColumnNotFoundError) as info:
        parse_query("carier == 'AA'", ["carrier", "x"])
    assert "'carrier'" in str(info.value) and "Did you mean" in str(info.value)


def test_syntax_errors_and_empty_text():
    for text in ["x >", "x > > 1", "", "   ", "x = 1", "(x > 1", "`x"]:
        with pytest.raises(QueryError):
            parse_query(text, ["x"])


def test_filter_must_be_a_condition(frame):
    with pytest.raises(QueryError, match="not a condition"):
        apply_query(frame, "x + 1")
    with pytest.raises(QueryError, match="does not use any column"):
        apply_query(frame, "1 == 1")


def test_strings_with_operators_inside_are_literals(pdf):
    df = pd.DataFrame({"s": ["a&b", "a|b", "`x`", "a"]})
    frame = hf.from_pandas(df)
    for v in ["a&b", "a|b", "`x`"]:
        got = apply_query(frame, f"s == '{v}'").compute()
        assert list(got.s) == [v]


# ---------------------------------------------------------------------------------------------
# resource limits: untrusted queries (job specs) are bounded in depth, size and integer size
# ---------------------------------------------------------------------------------------------
def _depth(e) -> int:
    return 1 + max((_depth(c) for c in e.children()), default=0)


def test_and_or_chains_become_balanced_trees():
    """390 and/or terms used to become a 390-deep tree (RecursionError in the engine)."""
    for op in (" and ", " or ", " & ", " | "):
        tree = parse_query(op.join(f"(y != {i})" for i in range(390)), ["y"])
        assert _depth(tree) <= 11
    tree = parse_query(" < ".join(["0"] + ["y"] * 100 + ["9"]), ["y"])
    assert _depth(tree) <= 10


def test_hundreds_of_terms_give_pandas_rows(pdf, frame):
    text = " and ".join(f"y != {i}" for i in range(0, 390))
    mask = np.ones(len(pdf), dtype=bool)
    for i in range(390):
        mask &= (pdf.y != i).to_numpy()
    got = apply_query(frame, text).compute()
    pd.testing.assert_frame_equal(got, pdf[mask].reset_index(drop=True))


@pytest.mark.parametrize(
    "text",
    [
        " + ".join(["y"] * (MAX_DEPTH + 1)) + " > 0",
        "-" * MAX_DEPTH + "y > 0",
        "~" * MAX_DEPTH + "(y > 0)",
        "".join(["(y * "] * MAX_DEPTH) + "y" + ")" * MAX_DEPTH + " > 0",
        "".join(f"(y > {i} and " for i in range(MAX_DEPTH)) + "x > 0" + ")" * MAX_DEPTH,
    ],
)
def test_too_deep_is_refused_with_the_limit(text):
    with pytest.raises(QueryError, match=rf"nested \d+ levels deep; the limit is {MAX_DEPTH}"):
        parse_query(text, ["x", "y"])


@pytest.mark.parametrize(
    "text,what",
    [
        ("x.isin([15**25000])", "15 \\*\\* 25000 is too large"),
        ("x == 2**1024", "the result of 2 \\*\\* 1024 is too large \\(an integer of about 309 digits"),
        ("x == 2**1023 + 2**1023", "the result of .* \\+ .* is too large"),
        ("x == 2**600 * 2**600", "the result of .* \\* .* is too large"),
        ("x == -(2**1023) - 2**1023", "the result of .* - .* is too large"),
        ("x == 0x" + "f" * 300, "an integer literal is too large \\(an integer of about 362 digits"),
        ("x.between(0, 2**2000)", "too large"),
        ("x == " + " * ".join(["15**250"] * 90), "the result of .* \\* .* is too large"),
    ],
)
def test_integers_are_bounded_everywhere(text, what):
    with pytest.raises(QueryError, match=what) as info:
        parse_query(text, ["x"])
    assert f"below 2**{MAX_INT_BITS}" in str(info.value)


def test_constant_folding_stays_fast():
    """``15**25000 * 15**25000 * ...`` (200 factors) took 76 s on every rank."""
    import time

    for text in [
        "x == " + " * ".join(["15**25000"] * 200),  # too deep, and too large
        "x == " + " * ".join(["(15**250 // 7)"] * 99),
        "x == " + " + ".join(["2**1000"] * 99),
        "x.isin([" + ", ".join(["15**25000 * 15**25000"] * 150) + "])",
    ]:
        t0 = time.perf_counter()
        with pytest.raises(QueryError, match="too large|too deep|levels deep"):
            parse_query(text, ["x"])
        assert time.perf_counter() - t0 < 10.0  # not the minutes it took (a busy machine: generous)


def test_huge_decimal_literal_is_a_clear_error():
    with pytest.raises(
        QueryError,
        match=rf"integer literal that is too large: integers must be "
        rf"below 2\*\*{MAX_INT_BITS}",
    ) as info:
        parse_query("x == " + "1" * 5000, ["x"])
    assert len(str(info.value)) < 300


def test_complex_result_is_refused():
    with pytest.raises(QueryError, match="complex number"):
        parse_query("x > (-8) ** 0.5", ["x"])


def test_largest_allowed_integers_work(pdf, frame):
    """Integers up to 2**1024 - 1 are fine, also in isin (it gave OverflowError in Arrow)."""
    big = 2**1024 - 1
    assert parse_query(f"x < {big}", ["x"]).key() == E.Bin("<", E.Col("x"), E.Lit(big)).key()
    for text, ref in [
        ("y.isin([2**100, 3, 7])", pdf[pdf.y.isin([2**100, 3, 7])]),
        ("x.isin([2**70, 1.0])", pdf[pdf.x.isin([2**70, 1.0])]),
        ("x < 2**1000", pdf[pdf.x < 2**1000]),
        ("y < 2**100 and x != 2**64", pdf[(pdf.y < 2**100) & (pdf.x != 2**64)]),
    ]:
        got = apply_query(frame, text).compute()
        pd.testing.assert_frame_equal(got, ref.reset_index(drop=True))
