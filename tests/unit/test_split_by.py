"""``execute.split_by``: the rows of every wanted bucket, in the frame's order, as a boolean
mask would pick them (one take of the wanted rows, then slices: the shuffle's split of a
block into its hash partitions and of received rows into theirs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcframe.execute import split_by


@settings(max_examples=100, deadline=None)
@given(
    buckets=st.lists(st.integers(0, 6), max_size=60),
    wanted=st.lists(st.integers(0, 8), unique=True, max_size=9),
    big=st.booleans(),
)
def test_equals_a_mask_per_bucket(buckets, wanted, big):
    bucket = np.array(buckets, dtype=np.int64) + (2**20 if big else 0)  # beyond the uint16 sort
    wanted = np.array(wanted, dtype=np.int64) + (2**20 if big else 0)
    n = len(bucket)
    df = pd.DataFrame(
        {
            "s": pd.Series([f"k{i % 5}" if i % 7 else None for i in range(n)], dtype="str"),
            "i": np.arange(n, dtype=np.int64) * 3,
            "f": np.linspace(0, 1, n),
        },
        index=np.arange(n)[::-1] + 100,  # not a RangeIndex: the pieces get a fresh one
    )
    got = split_by(df, bucket, wanted)
    want = {int(b): df[bucket == b].reset_index(drop=True) for b in wanted if (bucket == b).any()}
    assert list(got) == list(want)
    for b in want:
        pd.testing.assert_frame_equal(got[b], want[b])


def test_pieces_are_independent_of_each_other():
    """A piece is a slice of one taken frame: writing to one leaves the others (and the
    input) as they were (pandas' copy-on-write)."""
    df = pd.DataFrame({"x": np.arange(6, dtype=np.int64)})
    got = split_by(df, np.array([1, 0, 1, 0, 1, 0]), np.array([0, 1]))
    got[0].loc[0, "x"] = -1
    assert got[0].x.tolist() == [-1, 3, 5] and got[1].x.tolist() == [0, 2, 4]
    assert df.x.tolist() == list(range(6))


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.dictionaries(st.integers(0, 9), st.lists(st.integers(0, 5), max_size=3), max_size=6),
    as_list=st.booleans(),
)
def test_stacked_partitions_slice_back_to_the_same_frames(sizes, as_list):
    """``_stacked`` puts a destination's partitions one after another (increasing partition
    order, empty ones left out) and ``_sliced`` cuts them out again by their row counts —
    what the shuffle sends and what the receiver gets, without a tag per row."""
    from hpcframe.execute import _sliced, _stacked

    d, want, at = {}, {}, 0
    for b, lengths in sizes.items():
        frames = []
        for n in lengths:
            strings = pd.Series([f"v{j}" for j in range(at, at + n)], dtype="str")
            frames.append(pd.DataFrame({"i": np.arange(at, at + n), "s": strings}))
            at += n
        if frames:
            d[b] = frames if as_list or len(frames) > 1 else frames[0]
            if sum(lengths):
                want[b] = pd.concat(frames, ignore_index=True)
    df, counts = _stacked(dict(d))
    assert [b for b, _ in counts] == sorted(want)
    if not want:
        assert df is None
        return
    got = _sliced(df, counts)
    assert list(got) == sorted(want)
    for b in want:
        pd.testing.assert_frame_equal(got[b], want[b])
