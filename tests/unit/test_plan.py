"""Unit tests of the optimiser passes of hpcframe.plan, on hand-built chains over a Scan:
column pruning (``required_columns``), the predicate split between Arrow and pandas
(``split_filters``), the predicate tested against partition statistics
(``prune_predicate``), and the pandas part of a chain (``run_pandas``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hpcframe import plan as P
from hpcframe.errors import ColumnNotFoundError
from hpcframe.expr import Bin, Col, IsIn, Lit, StrMatch

SCHEMA = pa.schema([("x", pa.float64()), ("y", pa.int64()), ("s", pa.string()), ("z", pa.float64())])
COLUMNS = SCHEMA.names


class FakeSource:
    """What a Scan needs of a source to describe itself."""

    format, label = "parquet", "fake"


@pytest.fixture
def pdf() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    x = rng.normal(size=n)
    x[::9] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "y": rng.integers(-5, 5, n),
            "s": pd.array(rng.choice(["ab", "b", "axb", "c"], n), dtype="str"),
            "z": rng.normal(size=n),
        }
    )


@pytest.fixture
def scan(pdf) -> P.Scan:
    return P.Scan(FakeSource(), pdf.iloc[:0])


def gt(col, value):
    return Bin(">", Col(col), Lit(value))


def lt(col, value):
    return Bin("<", Col(col), Lit(value))


def both(a, b):
    return Bin("&", a, b)


# --------------------------------------------------------------------------------------------
# nodes
# --------------------------------------------------------------------------------------------
def test_chain_runs_from_the_scan_and_meta_follows_the_nodes(scan):
    a = P.Assign(scan, "w", Bin("*", Col("x"), Lit(2.0)))
    p = P.Project(P.Filter(a, gt("w", 0.0)), ["w", "y"])
    assert [type(n).__name__ for n in p.chain()] == ["Scan", "Assign", "Filter", "Project"]
    assert p.scan() is scan
    assert list(p.meta.columns) == ["w", "y"] and str(p.meta["w"].dtype) == "float64"


@pytest.mark.parametrize(
    "make",
    [
        lambda s: P.Filter(s, gt("nope", 1)),
        lambda s: P.Assign(s, "w", Col("nope")),
        lambda s: P.Project(s, ["x", "nope"]),
    ],
)
def test_unknown_columns_are_refused_when_the_node_is_built(scan, make):
    with pytest.raises(ColumnNotFoundError, match="nope"):
        make(scan)


# --------------------------------------------------------------------------------------------
# column pruning
# --------------------------------------------------------------------------------------------
def test_only_the_columns_an_output_needs_are_read_in_source_order(scan):
    node = P.Project(P.Filter(scan, gt("x", 0.0)), ["z", "y"])
    columns, _ = P.required_columns(node.chain()[1:], {"z"}, COLUMNS)
    assert columns == ["x", "z"]  # the filter's column too; y is projected but not needed


def test_an_assign_nobody_reads_is_dead(scan):
    dead = P.Assign(scan, "w", Bin("*", Col("z"), Lit(2.0)))
    node = P.Project(dead, ["y"])
    columns, after = P.required_columns(node.chain()[1:], {"y"}, COLUMNS)
    assert columns == ["y"]
    assert "w" not in after[id(dead)]  # run_pandas skips it


def test_an_assign_needs_its_inputs_not_its_name(scan):
    node = P.Assign(scan, "w", Bin("+", Col("z"), Col("x")))
    columns, after = P.required_columns(node.chain()[1:], {"w"}, COLUMNS)
    assert columns == ["x", "z"] and "w" in after[id(node)]


def test_an_assign_that_redefines_a_source_column_does_not_read_it(scan):
    node = P.Assign(scan, "x", Bin("*", Col("y"), Lit(2)))
    columns, _ = P.required_columns(node.chain()[1:], {"x"}, COLUMNS)
    assert columns == ["y"]


def test_a_filter_after_an_assign_reads_the_assigns_inputs(scan):
    node = P.Filter(P.Assign(scan, "w", Bin("-", Col("z"), Col("x"))), gt("w", 0.0))
    columns, _ = P.required_columns(node.chain()[1:], {"y"}, COLUMNS)
    assert columns == ["x", "y", "z"]


# --------------------------------------------------------------------------------------------
# predicate split: Arrow while reading, pandas after
# --------------------------------------------------------------------------------------------
def test_leading_filters_are_split_into_arrow_and_pandas_terms(scan):
    regex = StrMatch(Col("s"), "contains", r"a\d")  # \d: RE2 and re differ on non-ASCII: pandas
    node = P.Filter(P.Filter(scan, both(gt("x", 0.0), regex)), lt("y", 3))
    pred, pred_columns, rest = P.split_filters(node, SCHEMA)
    assert pred is not None and pred_columns == {"x", "y"}
    assert [type(s).__name__ for s in rest] == ["_BareFilter"]
    assert rest[0].expr is regex


def test_string_terms_arrow_does_exactly_are_pushed(scan):
    node = P.Filter(scan, both(StrMatch(Col("s"), "startswith", "a"), IsIn(Col("s"), ["b", "c"])))
    pred, pred_columns, rest = P.split_filters(node, SCHEMA)
    assert pred_columns == {"s"} and rest == []
    # a regex RE2 reads as Python's re does (as pandas' Arrow-backed strings evaluate it)
    pred, pred_columns, rest = P.split_filters(P.Filter(scan, StrMatch(Col("s"), "contains", "a.*b")), SCHEMA)
    assert pred_columns == {"s"} and rest == []


def test_a_filter_after_an_assign_stays_in_pandas(scan):
    a = P.Assign(scan, "w", Bin("*", Col("x"), Lit(2.0)))
    node = P.Filter(a, gt("x", 0.0))
    pred, pred_columns, rest = P.split_filters(node, SCHEMA)
    assert pred is None and pred_columns == set()
    assert rest == [a, node]


def test_a_filter_after_a_projection_is_still_pushed(scan):
    proj = P.Project(scan, ["x", "y"])
    node = P.Filter(proj, gt("x", 0.0))
    pred, _, rest = P.split_filters(node, SCHEMA)
    assert pred is not None and rest == [proj]


def test_an_or_is_one_term_and_is_not_split(scan):
    """``x > 0 | s.str.contains(regex)``: Arrow could do the left side, not the right one,
    and an or cannot be cut in two: the whole term runs in pandas after the conversion."""
    term = Bin("|", gt("x", 0.0), StrMatch(Col("s"), "contains", r"a\d"))
    pred, pred_columns, rest = P.split_filters(P.Filter(scan, term), SCHEMA)
    assert pred is None and pred_columns == set()
    assert len(rest) == 1 and rest[0].expr is term


@pytest.mark.parametrize(
    "text",
    [
        "x > 0",
        "x > 0 & y < 3",
        "s.str.contains('a.*b') & z < 0",
        "s.str.contains('a\\\\d') & z < 0",
        "s == 'b' & y >= 0",
        "y.isin([1, 2]) & x < 1",
    ],
)
def test_arrow_and_pandas_parts_together_give_the_pandas_rows(scan, pdf, text):
    from hpcframe.query import parse_query

    node = P.Filter(scan, parse_query(text, list(pdf.columns)))
    pred, _, rest = P.split_filters(node, SCHEMA)
    table = pa.Table.from_pandas(pdf, preserve_index=False)
    if pred is not None:
        table = table.filter(pred(table))
    got = P.run_pandas(table.to_pandas(), rest, {}).reset_index(drop=True)
    expected = pdf.query(text.replace("&", "and"), engine="python").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_hundreds_of_conjuncts_make_a_shallow_predicate(scan, pdf):
    node = scan
    for i in range(400):
        node = P.Filter(node, gt("x", -10.0 - i))
    pred, _, rest = P.split_filters(node, SCHEMA)
    table = pa.Table.from_pandas(pdf, preserve_index=False)
    assert rest == [] and table.filter(pred(table)).num_rows == int((pdf.x > -10).sum())


# --------------------------------------------------------------------------------------------
# statistics pruning
# --------------------------------------------------------------------------------------------
def test_the_pruning_predicate_is_the_conjunction_of_the_filters(scan):
    node = P.Filter(P.Filter(scan, gt("x", 5.0)), lt("y", 0))
    prune = P.prune_predicate(node)
    assert prune.columns() == {"x", "y"}
    assert not prune.may_match({"x": (0.0, 4.0), "y": (-3, 3)})  # no x > 5
    assert not prune.may_match({"x": (0.0, 9.0), "y": (1, 3)})  # no y < 0
    assert prune.may_match({"x": (0.0, 9.0), "y": (-3, 3)})
    assert prune.may_match({"x": (None, None), "y": (-3, 3)})  # unknown: may match
    assert prune.may_match({"y": (-3, 3)})  # no stats for x


def test_a_term_over_an_assigned_column_never_prunes(scan):
    a = P.Assign(scan, "x", Bin("*", Col("z"), Lit(100.0)))  # x redefined from z
    node = P.Filter(P.Filter(a, gt("x", 5.0)), lt("y", 0))
    prune = P.prune_predicate(node)
    assert prune.columns() == {"y"}
    assert prune.may_match({"x": (0.0, 1.0), "y": (-3, 3)})  # x's stats are not x's values


def test_a_filter_before_the_assign_still_prunes(scan):
    node = P.Assign(P.Filter(scan, gt("x", 5.0)), "x", Col("z"))
    assert not P.prune_predicate(node).may_match({"x": (0.0, 1.0)})


def test_no_filter_no_pruning(scan):
    assert P.prune_predicate(P.Project(scan, ["x"])) is None


def test_an_or_prunes_only_when_both_sides_cannot_match(scan):
    prune = P.prune_predicate(P.Filter(scan, Bin("|", gt("x", 5.0), lt("y", 0))))
    assert not prune.may_match({"x": (0.0, 3.0), "y": (0, 10)})
    assert prune.may_match({"x": (0.0, 3.0), "y": (-1, 10)})
    assert prune.may_match({"x": (0.0, 6.0), "y": (0, 10)})


# --------------------------------------------------------------------------------------------
# the pandas part of a chain
# --------------------------------------------------------------------------------------------
def test_run_pandas_is_the_pandas_chain(scan, pdf):
    a = P.Assign(scan, "w", Bin("-", Col("z"), Col("x")))
    f = P.Filter(a, gt("w", 0.0))
    node = P.Project(f, ["w", "s"])
    _, after = P.required_columns(node.chain()[1:], {"w", "s"}, COLUMNS)
    got = P.run_pandas(pdf, node.chain()[1:], after)
    ref = pdf.assign(w=pdf.z - pdf.x)
    pd.testing.assert_frame_equal(got, ref[ref.w > 0][["w", "s"]])


def test_run_pandas_skips_dead_assigns(scan, pdf):
    dead = P.Assign(scan, "w", Bin("/", Col("x"), Lit(0.0)))
    node = P.Filter(dead, lt("y", 0))
    _, after = P.required_columns(node.chain()[1:], {"y"}, COLUMNS)
    got = P.run_pandas(pdf, node.chain()[1:], after)
    assert "w" not in got.columns and len(got) == int((pdf.y < 0).sum())
