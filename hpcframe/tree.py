"""A combine tree fixed by the number of partitions, not by the number of ranks.

Leaves ``0..n-1`` are the partitions in dataset order. Node ``(level, i)`` covers leaves
``[i·2^level, (i+1)·2^level) ∩ [0, n)`` and equals ``combine(node(level-1, 2i),
node(level-1, 2i+1))``, or just its left child when the right one would be empty. Each rank
owns a contiguous range of leaves; :class:`TreeStack` folds them as they stream by and keeps
only the maximal nodes inside that range (O(log n) partials). After one exchange,
:func:`finish` completes the same tree from everyone's nodes. The bracketing of every
floating-point operation is therefore the same for 1, 2, 3 or 64 ranks and in local mode:
results are identical bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TreeStack:
    """The maximal tree nodes of one rank's contiguous leaves, folded with ``combine`` as the
    leaves are pushed (at most O(log n) partials held)."""

    def __init__(self, n: int, combine: Callable[[Any, Any], Any]):
        self.n, self.combine = n, combine
        self.stack: list[tuple[int, int, Any]] = []

    def push(self, leaf: int, partial) -> None:
        """Add the partial of leaf ``leaf``; leaves must come in increasing, contiguous order."""
        self.stack.append((0, leaf, partial))
        while True:
            level, i, p = self.stack[-1]
            if (1 << level) >= self.n and i == 0:  # the root
                return
            if i % 2 == 1:
                if len(self.stack) >= 2 and self.stack[-2][:2] == (level, i - 1):
                    _, _, left = self.stack[-2]
                    del self.stack[-2:]
                    self.stack.append((level + 1, i // 2, self.combine(left, p)))
                    continue
                return
            if (i + 1) << level >= self.n:  # right sibling is empty: promote
                self.stack[-1] = (level + 1, i // 2, p)
                continue
            return

    def nodes(self) -> list[tuple[int, int, Any]]:
        """The nodes kept so far, as ``(level, index, partial)``, for :func:`finish`."""
        return list(self.stack)


def finish(n: int, nodes, combine: Callable[[Any, Any], Any]):
    """The root of the tree over ``n`` leaves, from the nodes every rank kept."""
    if n == 0:
        return None
    known = {(level, i): p for level, i, p in nodes}
    top = max(0, (n - 1).bit_length())

    def get(level, i):
        if (level, i) in known:
            return known[(level, i)]
        if level == 0:
            raise RuntimeError(f"combine tree: leaf {i} of {n} is missing")
        left = get(level - 1, 2 * i)
        if (2 * i + 1) << (level - 1) >= n:
            return left
        return combine(left, get(level - 1, 2 * i + 1))

    return get(top, 0)
