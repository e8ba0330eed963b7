"""The on-disk partial store (hpcframe.io.partials): round trips, atomicity, corrupt, truncated
and foreign entries, concurrent writers, info and clear."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pyarrow as pa
import pytest

from hpcframe.io.partials import MAGIC, PartialStore, digest


def _table(n=5, offset=0):
    return pa.table({"k": [f"g{i % 3}" for i in range(n)], "v": [float(i + offset) for i in range(n)]})


def test_round_trip_keeps_table_and_meta(tmp_path):
    store = PartialStore(tmp_path)
    t = _table().replace_schema_metadata({b"pandas": b"{}"})
    assert store.put("k1", t, {"kind": "frame", "n": 3})
    got, meta = store.get("k1")
    assert got.equals(t) and got.schema.metadata == {b"pandas": b"{}"}
    assert meta == {"kind": "frame", "n": 3}
    assert "k1" in store and "k2" not in store
    assert store.get("k2") is None
    assert store.keys() == ["k1"]


def test_empty_and_typed_tables(tmp_path):
    store = PartialStore(tmp_path)
    t = pa.table(
        {
            "d": pa.array(["a", None]).dictionary_encode(),
            "ts": pa.array([0, None], pa.timestamp("ms")),
        }
    )
    store.put("typed", t)
    assert store.get("typed")[0].equals(t)
    empty = t.slice(0, 0)
    store.put("empty", empty)
    got = store.get("empty")[0]
    assert got.num_rows == 0 and got.schema == empty.schema


def test_overwrite_replaces(tmp_path):
    store = PartialStore(tmp_path)
    store.put("k", _table(offset=0))
    store.put("k", _table(offset=10))
    assert store.get("k")[0].equals(_table(offset=10))
    assert store.info()["entries"] == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "magic"])
def test_corrupt_entries_are_rejected_and_removed(tmp_path, damage):
    store = PartialStore(tmp_path)
    store.put("k", _table(100))
    path = store.path_of("k")
    data = open(path, "rb").read()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        i = len(data) - 20
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    elif damage == "garbage":
        data = os.urandom(len(data))
    elif damage == "empty":
        data = b""
    else:
        data = b"XXXXXXXX" + data[len(MAGIC) :]
    with open(path, "wb") as fh:
        fh.write(data)
    assert store.get("k") is None
    assert store.rejected == 1
    assert not os.path.exists(path)
    assert store.put("k", _table(100)) and store.get("k")[0].equals(_table(100))


def test_foreign_entry_under_another_key_is_rejected(tmp_path):
    store = PartialStore(tmp_path)
    store.put("a", _table())
    os.makedirs(os.path.dirname(store.path_of("b")), exist_ok=True)
    os.replace(store.path_of("a"), store.path_of("b"))  # a valid file, but of key "a"
    assert store.get("b") is None and store.rejected == 1


def test_unwritable_directory_returns_false(tmp_path):
    store = PartialStore(tmp_path)
    blocker = os.path.dirname(store.path_of("k"))
    with open(blocker, "w") as fh:  # a file where the subfolder must go
        fh.write("x")
    assert store.put("k", _table()) is False
    assert store.get("k") is None
    assert not [n for n in os.listdir(store.root) if n.endswith(".tmp")]


def test_info_and_clear_older_than(tmp_path):
    store = PartialStore(tmp_path)
    for i in range(4):
        store.put(f"k{i}", _table(10, i))
    old = time.time() - 40 * 86400
    for i in range(2):
        os.utime(store.path_of(f"k{i}"), (old, old))
    info = store.info()
    assert info["entries"] == 4 and info["bytes"] > 0 and info["oldest"] <= old + 1
    # a hit refreshes the entry's last use: k0 stays
    assert store.get("k0") is not None
    removed, freed = store.clear(older_than=30 * 86400)
    assert removed == 1 and freed > 0
    assert sorted(store.keys()) == ["k0", "k2", "k3"]
    assert store.clear()[0] == 3
    assert store.info()["entries"] == 0


def test_clear_removes_stale_temporary_files(tmp_path):
    store = PartialStore(tmp_path)
    store.put("k", _table())
    stale = os.path.join(os.path.dirname(store.path_of("k")), ".dead.tmp")
    fresh = os.path.join(os.path.dirname(store.path_of("k")), ".alive.tmp")
    for p in (stale, fresh):
        open(p, "wb").close()
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    store.clear(older_than=10 * 86400)
    assert not os.path.exists(stale) and os.path.exists(fresh)
    assert store.info()["entries"] == 1


def test_digest_is_stable_and_typed():
    assert digest("p", 1, [0, 2]) == digest("p", 1, [0, 2])
    assert digest("p", 1) != digest("p", "1")
    assert len(digest()) == 64


def _writer(directory, worker, rounds):
    store = PartialStore(directory)
    for r in range(rounds):
        for k in range(8):
            # every writer writes the same content per key: any winner is a complete entry
            assert store.put(f"shared{k}", _table(200, k))
            got = store.get(f"shared{k}")
            assert got is not None and got[0].equals(_table(200, k))
        store.put(f"own{worker}-{r}", _table(5, worker))


def test_concurrent_processes_share_a_directory(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 5)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    store = PartialStore(tmp_path)
    for k in range(8):
        assert store.get(f"shared{k}")[0].equals(_table(200, k))
    assert store.rejected == 0
    assert store.info()["entries"] == 8 + 15
    tmp_left = [e.name for e in store._files() if e.name.endswith(".tmp")]
    assert tmp_left == []


def test_store_without_fsync_round_trips(tmp_path):
    store = PartialStore(tmp_path, fsync=False)
    assert store.put("k", _table(50)) and store.get("k")[0].equals(_table(50))


def test_an_entry_that_is_a_fifo_is_a_miss_not_a_hang(tmp_path):
    """Regression (session 38's failure probes): a FIFO in place of an entry blocked the
    computation in ``open()`` forever. Entries are opened without blocking and must be
    regular files; anything else is a miss."""
    store = PartialStore(tmp_path)
    assert store.put("k", pa.table({"x": [1]}))
    path = store.path_of("k")
    os.remove(path)
    os.mkfifo(path)
    assert store.get("k") is None
    assert store.keys() == []


def test_a_store_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "partials-v1").write_text("x")
    with pytest.raises(FileExistsError, match="partials-v1 exists and is not a folder"):
        PartialStore(tmp_path)
