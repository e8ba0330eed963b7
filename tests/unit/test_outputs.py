"""``hpcframe.outputs``' category helpers: the categories of a frame's blocks made one list
per column (:class:`BlockCategories`) and pieces recoded to it before they are stacked
(:func:`recode_pieces`), so that ``pd.concat`` keeps them categorical; the categories of a
categorical group key in a group-by result (:func:`observed_categories`)."""

from __future__ import annotations

import pandas as pd

from hpcframe.comm import Comm
from hpcframe.outputs import BlockCategories, observed_categories, recode_pieces


def _pieces() -> dict[int, pd.DataFrame]:
    """Blocks whose categorical column has different category lists (as Parquet row groups
    with their own dictionaries), one without rows, and a column that is not categorical."""
    return {
        0: pd.DataFrame({"c": pd.Categorical(["b", "a"], categories=["b", "a"]), "x": [1, 2]}),
        1: pd.DataFrame({"c": pd.Categorical(["c"], categories=["c", "a", "d"]), "x": [3]}),
        2: pd.DataFrame({"c": pd.Categorical([], categories=["e"]), "x": pd.Series([], dtype="int64")}),
    }


def test_block_categories_of_is_noting_each_block():
    frames = _pieces()
    noted = BlockCategories()
    for leaf, df in frames.items():
        noted.note(df, leaf)
    assert BlockCategories.of(frames).blocks == noted.blocks
    assert BlockCategories.of({0: pd.DataFrame({"x": [1]})}).blocks == {}


def test_recoded_pieces_stack_categorical_with_the_union():
    frames = _pieces()
    cats = BlockCategories.of(frames).union(Comm())
    assert list(cats) == ["c"]
    assert list(cats["c"].categories) == ["b", "a", "c", "d", "e"]  # leaf order, unused ones too
    pieces = recode_pieces(list(frames.values()), cats)
    assert all(p["c"].dtype == cats["c"] for p in pieces)
    stacked = pd.concat(pieces, ignore_index=True)
    assert isinstance(stacked["c"].dtype, pd.CategoricalDtype)
    assert list(stacked["c"].cat.categories) == ["b", "a", "c", "d", "e"]
    assert stacked["c"].tolist() == ["b", "a", "c"]
    assert stacked["x"].tolist() == [1, 2, 3]
    # without the recode, pandas stacks the different category lists as strings
    assert not isinstance(pd.concat(list(frames.values()))["c"].dtype, pd.CategoricalDtype)


def test_recode_pieces_keeps_pieces_without_categories():
    pieces = list(_pieces().values())
    assert recode_pieces(pieces, {}) is pieces
    same = recode_pieces(pieces[:1], {"c": pieces[0]["c"].dtype})
    assert same[0] is pieces[0]  # already those categories: not copied


def test_observed_categories_sorted_distinct_without_nulls():
    keys = pd.Series(["b", None, "a", "b", "c"], dtype="str")
    got = observed_categories(keys)
    assert list(got.categories) == ["a", "b", "c"] and not got.ordered
    # the same from the values of several ranks gathered (distinct, without nulls)
    assert observed_categories(list({"c", "a"} | {"b", "a"})) == got
    as_categorical = pd.Series(pd.Categorical(["z", "y", None], categories=["z", "y", "x"]))
    assert list(observed_categories(as_categorical).categories) == ["y", "z"]  # observed only
    assert list(observed_categories([3, 1, 2]).categories) == [1, 2, 3]
    assert len(observed_categories([]).categories) == 0
