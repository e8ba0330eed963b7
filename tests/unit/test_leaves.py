"""Leaves (blocks) of a dataset: small files grouped, large ones kept, never by rank count.

With ``config.group_files = "on"``, ``physical.leaves_of`` groups the row groups of
consecutive *small* Parquet files (at most ``block_rows / 2`` rows each) into leaves of
balanced sizes (SMALLQ: TPC-H's 16 supplier
files of 6,250 rows were 16 leaves, each a pandas frame, a join merge and a held partition
of every stage built from them). Sources that cannot read several files at once (CSV, HDF5,
held data) keep one file per leaf at least.
"""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hpcframe as hf
from hpcframe.comm import Comm
from hpcframe.config import config
from hpcframe.io.dataset import Partition
from hpcframe.io.parquet import ParquetSource
from hpcframe.physical import _small_file_runs, leaves_of


def _parts(files: list[list[int]]) -> list[Partition]:
    """Partitions of files given as their row groups' row counts."""
    return [Partition(f"f{i:03d}", g, 0, n) for i, groups in enumerate(files) for g, n in enumerate(groups)]


class _Fake:
    """A source of ready-made partitions (``reads_across_files`` as asked)."""

    format = "fake"

    def __init__(self, parts, across=True):
        self.parts, self.reads_across_files = parts, across

    def discover(self, comm):
        return list(self.parts)


@pytest.fixture
def limit(monkeypatch):
    monkeypatch.setattr(config, "block_rows", 1000)
    monkeypatch.setattr(config, "group_files", "on")
    return 1000


def _layout(leaves):
    return [[(p.path, p.piece, p.start, p.stop) for p in leaf.parts] for leaf in leaves]


def test_small_files_share_balanced_leaves(limit):
    # 16 files of 250 rows (two row groups each): 4,000 rows in four leaves of four files
    leaves = leaves_of(_Fake(_parts([[125, 125]] * 16)), Comm())
    assert [leaf.num_rows for leaf in leaves] == [1000] * 4
    assert [len({p.path for p in leaf.parts}) for leaf in leaves] == [4] * 4
    assert [leaf.row_offset for leaf in leaves] == [0, 1000, 2000, 3000]
    # 16 files of 90 rows: 1,440 rows in two leaves of 720, not 990 + 450
    leaves = leaves_of(_Fake(_parts([[90]] * 16)), Comm())
    assert [leaf.num_rows for leaf in leaves] == [720, 720]


def test_large_files_keep_their_leaves(limit):
    # files over half a leaf are not grouped (their leaves do not move): as before SMALLQ
    files = [[300, 300], [600], [400, 400, 400], [2500]]
    new = leaves_of(_Fake(_parts(files)), Comm())
    old = leaves_of(_Fake(_parts(files), across=False), Comm())
    assert _layout(new) == _layout(old)
    assert len(new) == 1 + 1 + 2 + 3  # the 2,500-row row group cut into three blocks


def test_sources_reading_one_file_at_a_time_keep_files_apart(limit):
    leaves = leaves_of(_Fake(_parts([[10]] * 5), across=False), Comm())
    assert len(leaves) == 5


def test_runs_of_small_files_between_large_ones(limit):
    files = [[100], [100], [900], [100], [200, 200], [100], [600]]
    leaves = leaves_of(_Fake(_parts(files)), Comm())
    assert _layout(leaves) == [
        [("f000", 0, 0, 100), ("f001", 0, 0, 100)],
        [("f002", 0, 0, 900)],
        [("f003", 0, 0, 100), ("f004", 0, 0, 200), ("f004", 1, 0, 200), ("f005", 0, 0, 100)],
        [("f006", 0, 0, 600)],
    ]
    assert [leaf.row_offset for leaf in leaves] == [0, 200, 1100, 1700]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 700), min_size=1, max_size=4), min_size=1, max_size=30))
def test_leaves_cover_the_data_in_order_within_the_limit(files):
    parts = _parts(files)
    runs = _small_file_runs(parts, 1000)
    for start, groups in runs.items():
        flat = [p for g in groups for p in g]
        assert flat == parts[start : start + len(flat)]  # whole files, in order
        assert all(sum(p.num_rows for p in g) <= 1000 for g in groups)
        assert all(len({p.path for p in g}) >= 1 for g in groups)
        # the fewest leaves balanced by rows: no two neighbours fit in one
        sizes = [sum(p.num_rows for p in g) for g in groups]
        total = sum(sizes)
        assert len(groups) >= -(-total // 1000)
    before = config.block_rows, config.group_files
    config.block_rows, config.group_files = 1000, "on"
    try:
        leaves = leaves_of(_Fake(parts), Comm())
    finally:
        config.block_rows, config.group_files = before
    flat = [(p.path, p.piece, p.start, p.stop) for leaf in leaves for p in leaf.parts]
    pieces = [(p.path, p.piece) for p in parts]
    assert [x[:2] for x in flat if x[2] == 0] == [x for x in pieces if x in {y[:2] for y in flat}]
    assert all(leaf.num_rows <= 1000 for leaf in leaves)
    assert sum(leaf.num_rows for leaf in leaves) == sum(map(sum, files))


def _write(folder, frames):
    os.makedirs(folder, exist_ok=True)
    for i, df in enumerate(frames):
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, os.path.join(folder, f"p{i:02d}.parquet"))
    return folder


def test_parquet_reads_small_files_together(tmp_path, limit):
    # strings read as dictionaries from one file and as plain strings from another
    # (io.parquet._plain_strings decides per file): one leaf, pandas' values
    frames = []
    for i in range(6):
        n = 40 + i
        if i % 2:
            words = [f"w{j % 3}" for j in range(n)]  # few distinct: dictionary pages
        else:
            words = [f"distinct value {i} {j} " * 3 for j in range(n)]  # many: plain pages
        keys = range(i * 100, i * 100 + n)
        frames.append(pd.DataFrame({"k": keys, "s": words, "x": [0.1 * j for j in range(n)]}))
    folder = _write(str(tmp_path / "d"), frames)
    source = ParquetSource(folder)
    leaves = leaves_of(source, Comm())
    assert len(leaves) == 1 and len({p.path for p in leaves[0].parts}) == 6
    table = source.read_many(list(leaves[0].parts), ["k", "s", "x"])
    want = pd.concat(frames, ignore_index=True)
    got = table.to_pandas()
    assert got["k"].tolist() == want["k"].tolist()
    assert [str(v) for v in got["s"]] == want["s"].tolist()
    assert got["x"].tolist() == want["x"].tolist()
    df = hf.read_parquet(folder)
    pd.testing.assert_frame_equal(
        df[df.s.str.startswith("w")].compute(),
        want[want.s.str.startswith("w")].reset_index(drop=True).astype({"s": df.dtypes["s"]}),
    )
    assert hf.last_run_stats()["partitions_read"] == 1


def test_group_files_off_keeps_every_file_apart(limit, monkeypatch):
    monkeypatch.setattr(config, "group_files", "off")
    leaves = leaves_of(_Fake(_parts([[125, 125]] * 16)), Comm())
    assert len(leaves) == 16 and all(len({p.path for p in leaf.parts}) == 1 for leaf in leaves)


def test_group_files_is_off_by_default():
    from hpcframe.config import Config

    assert Config().group_files == "off" or "HPCFRAME_GROUP_FILES" in os.environ
