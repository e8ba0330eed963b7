"""Persisted and stage data beyond the memory budget is spilled to Arrow IPC files in the
spill directory, read back equal to pandas, and removed when released; a spill directory that
cannot be written fails every rank with a clear message. Local and 1-4 ranks."""

import glob
import os

import pytest

import hpcframe as hf
from hpcframe.errors import ComputeError, DatasetError
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout, world

pytestmark = timeout(60)


@pytest.fixture
def spill(shared_dir, rank, monkeypatch):
    """A tiny memory budget and a per-rank spill directory (the default is $TMPDIR)."""
    folder = os.path.join(shared_dir, f"spill-rank{rank}")
    os.makedirs(folder, exist_ok=True)
    monkeypatch.setattr(hf.config, "memory_budget", 1)
    monkeypatch.setattr(hf.config, "spill_dir", folder)
    return folder


def _spill_files(folder):
    return glob.glob(os.path.join(folder, "hpcframe-spill-*", "*.arrow"))


def test_persist_over_budget_spills_and_equals_pandas(dir6, spill):
    df, ref = dir6.open(), dir6.pdf
    kept = df[df.x > 0].persist()
    data = kept.node.scan().source.data
    # every partition this rank holds with rows is in a spill file, none in memory
    assert data.memory_bytes == 0
    assert data.spilled == len(_spill_files(spill))
    assert_same(kept.groupby("carrier").x.sum(), ref[ref.x > 0].groupby("carrier").x.sum())
    assert_same(kept.len(), int((ref.x > 0).sum()), exact=True)
    kept.unpersist()
    assert _spill_files(spill) == []
    assert not glob.glob(os.path.join(spill, "hpcframe-spill-*"))


def test_a_group_by_result_used_as_a_frame_spills_and_is_released(dir6, spill):
    df, ref = dir6.open(), dir6.pdf
    groups = df.groupby(["origin", "carrier"]).agg(n=("x", "size"), m=("x", "mean"))
    expected = ref.groupby(["origin", "carrier"]).agg(n=("x", "size"), m=("x", "mean"))
    assert_same(groups[groups.n > 10], expected[expected.n > 10])
    # not persisted: released (spill files removed) when the computation ended
    assert not glob.glob(os.path.join(spill, "hpcframe-spill-*"))


def test_unwritable_spill_directory_fails_every_rank(dir6, shared_dir, monkeypatch):
    blocker = os.path.join(shared_dir, "not-a-directory")
    c = world()
    if c is None or c.Get_rank() == 0:
        with open(blocker, "w") as f:
            f.write("a file where the spill directory should be")
    if c is not None:
        c.Barrier()
    monkeypatch.setattr(hf.config, "memory_budget", 1)
    monkeypatch.setattr(hf.config, "spill_dir", os.path.join(blocker, "spill"))
    df = dir6.open()
    with pytest.raises((DatasetError, ComputeError)) as info:
        df[df.x > 0].persist()
    text = str(info.value)
    assert "spill" in text and "hf.config.spill_dir" in text


def test_using_an_unpersisted_frame_says_so(dir6):
    df = dir6.open()
    kept = df.persist()
    kept.unpersist()
    with pytest.raises((DatasetError, ComputeError), match="unpersisted"):
        kept.len().compute()
