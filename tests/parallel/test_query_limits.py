"""Queries at the parser's limits run correctly on every rank: the deepest allowed nesting of
every shape (operator chains, unary chains, nested parentheses, nested and/or) and hundreds of
and/or terms give the same rows as pandas, with no RecursionError in the engine (which
evaluates expression trees recursively, also on the Arrow path and for pruning)."""

import functools
import operator

import pytest

from hpcframe.query import MAX_DEPTH, QueryError, apply_query, parse_query
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

# text of a query nested ``k`` levels; the largest k the parser accepts is MAX_DEPTH - 1 or - 2
SHAPES = {
    "plus_chain": (lambda k: " + ".join(["y"] * k) + " > 30", MAX_DEPTH - 1),
    "unary_minus_chain": (lambda k: "-" * k + "x > 1", MAX_DEPTH - 2),
    "nested_negation": (lambda k: "".join(["-("] * k) + "x" + ")" * k + " > 1", MAX_DEPTH - 2),
    "invert_chain": (lambda k: "~" * k + "(x > 10)", MAX_DEPTH - 2),
    "nested_and_or": (
        lambda k: "".join(f"(n > {7 * i} {'and' if i % 2 else 'or'} " for i in range(k)) + "x > 12" + ")" * k,
        MAX_DEPTH - 2,
    ),
    "nested_products": (lambda k: "".join(["(y * "] * k) + "2" + ")" * k + " > 1e-30", MAX_DEPTH - 2),
}


def reference(pdf, text):
    return pdf.query(text, engine="python")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_deepest_allowed_query_matches_pandas(dir6, shape):
    make, k = SHAPES[shape]
    text = make(k)
    got = apply_query(dir6.open(), text).compute()
    assert_same(got, reference(dir6.pdf, text), reset_index=True)
    with pytest.raises(QueryError, match=f"limit is {MAX_DEPTH}"):
        parse_query(make(k + 1), dir6.pdf.columns)


@pytest.mark.parametrize("op,n", [("and", 390), ("or", 390), ("&", 300), ("|", 300)])
def test_hundreds_of_and_or_terms_match_pandas(dir6, op, n):
    """390 terms used to raise RecursionError in the engine ('computation failed'). pandas'
    own query() cannot parse that many; the reference combines the masks one by one."""
    pdf = dir6.pdf
    if op in ("and", "&"):
        terms, masks = [f"n != {i}" for i in range(n)], [pdf.n != i for i in range(n)]
        combine = operator.and_
    else:
        terms, masks = [f"n == {3 * i}" for i in range(n)], [pdf.n == 3 * i for i in range(n)]
        combine = operator.or_
    text = f" {op} ".join(f"({t})" if op in "&|" else t for t in terms)
    got = apply_query(dir6.open(), text).compute()
    assert_same(got, pdf[functools.reduce(combine, masks)], reset_index=True)


def test_many_chained_comparisons_match_pandas(dir6):
    text = " < ".join(["0"] + ["n"] * 60 + ["900"])
    got = apply_query(dir6.open(), text).compute()
    assert_same(got, reference(dir6.pdf, text), reset_index=True)
