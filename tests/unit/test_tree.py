"""Unit tests of the fixed combine tree (hpcframe.tree): the tree is fixed by the number of
leaves, not by how they are split over ranks, so every split gives the same bracketing (hence
bit-identical floating-point results) and each rank keeps only O(log n) partials."""

from __future__ import annotations

import itertools
import operator

import numpy as np
import pytest

from hpcframe.tree import TreeStack, finish


def bracket(a, b):
    """A combine that records its bracketing: ``(a b)``."""
    return f"({a} {b})"


def defined_tree(leaves):
    """The tree as hpcframe.tree's docstring defines it: node (level, i) covers leaves
    [i·2^level, (i+1)·2^level) and is its left child alone when the right one is empty."""
    n = len(leaves)

    def node(level, i):
        if level == 0:
            return leaves[i]
        left = node(level - 1, 2 * i)
        if (2 * i + 1) << (level - 1) >= n:
            return left
        return bracket(left, node(level - 1, 2 * i + 1))

    return node(max(0, (n - 1).bit_length()), 0) if n else None


def run(leaves, ranges, combine):
    """Fold ``leaves`` on one TreeStack per contiguous ``[start, stop)`` range (one per rank),
    then finish from everyone's nodes. Returns (root, largest stack of any rank)."""
    n, nodes, peak = len(leaves), [], 0
    for start, stop in ranges:
        stack = TreeStack(n, combine)
        for i in range(start, stop):
            stack.push(i, leaves[i])
            peak = max(peak, len(stack.nodes()))
        nodes += stack.nodes()
    return finish(n, nodes, combine), peak


def splits(n, ranks):
    """Every split of leaves 0..n-1 into ``ranks`` contiguous ranges (some may be empty)."""
    for cuts in itertools.combinations_with_replacement(range(n + 1), ranks - 1):
        bounds = (0, *cuts, n)
        yield list(zip(bounds, bounds[1:]))


def random_split(rng, n, ranks):
    cuts = sorted(rng.integers(0, n + 1, ranks - 1).tolist())
    bounds = (0, *cuts, n)
    return list(zip(bounds, bounds[1:]))


@pytest.mark.parametrize("n", range(0, 40))
def test_one_rank_builds_the_defined_tree(n):
    leaves = [f"L{i}" for i in range(n)]
    root, _ = run(leaves, [(0, n)], bracket)
    assert root == defined_tree(leaves)


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
@pytest.mark.parametrize("n", range(1, 13))
def test_every_split_over_ranks_gives_the_same_bracketing(n, ranks):
    leaves = [f"L{i}" for i in range(n)]
    expected = defined_tree(leaves)
    for ranges in splits(n, ranks):
        root, _ = run(leaves, ranges, bracket)
        assert root == expected, ranges


@pytest.mark.parametrize("n", [1, 2, 7, 64, 100, 1000, 1025])
def test_float_sums_are_bit_identical_for_any_split(n):
    """Values of very different magnitudes, where the summation order changes the bits."""
    rng = np.random.default_rng(n)
    leaves = (rng.normal(size=n) * 10.0 ** rng.integers(-8, 12, n)).tolist()
    one, _ = run(leaves, [(0, n)], operator.add)
    for ranks in (2, 3, 4, 7, 64):
        for _ in range(20):
            got, _ = run(leaves, random_split(rng, n, ranks), operator.add)
            assert got.hex() == one.hex()


def test_the_tree_is_not_the_left_fold():
    """The check above has teeth: on these leaves the fixed tree and a left-to-right sum
    differ in the last bits, so a split-dependent order would be caught."""
    leaves = [1e16, 1.0, -1e16, 1.0]
    root, _ = run(leaves, [(0, 4)], operator.add)
    assert root != sum(leaves)
    assert root == (1e16 + 1.0) + (-1e16 + 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 100, 1000, 4097])
def test_each_rank_keeps_o_log_n_partials(n):
    """Whatever range a rank owns, its stack never holds more than about 2·log2(n) nodes."""
    rng = np.random.default_rng(n)
    bound = 2 * max(1, (n - 1).bit_length()) + 1
    leaves = [0] * n
    candidates = [(0, n), (1, n), (0, n - 1), (1, max(1, n - 1))]
    candidates += [tuple(sorted(rng.integers(0, n + 1, 2).tolist())) for _ in range(30)]
    for start, stop in candidates:
        _, peak = run(leaves, [(0, start), (start, stop), (stop, n)], operator.add)
        assert peak <= bound, (start, stop, peak, bound)


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_no_work_is_done_twice(ranks):
    """n leaves take exactly n - 1 combines in all, however they are split."""
    n = 37
    calls = []

    def counting(a, b):
        calls.append(1)
        return a + b

    for ranges in itertools.islice(splits(n, ranks), 200):
        calls.clear()
        root, _ = run(list(range(n)), ranges, counting)
        assert root == sum(range(n)) and len(calls) == n - 1, ranges


def test_no_leaves_give_none():
    assert finish(0, [], operator.add) is None


def test_a_missing_leaf_is_an_error_naming_it():
    stack = TreeStack(4, operator.add)
    for i in (0, 1, 2):  # leaf 3 never arrives (its rank sent nothing)
        stack.push(i, float(i))
    with pytest.raises(RuntimeError, match="leaf 3 of 4 is missing"):
        finish(4, stack.nodes(), operator.add)
