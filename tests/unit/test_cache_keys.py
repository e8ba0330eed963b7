"""hpcframe.cache without running queries: the cachey policy of the memory store, block
identities, plan fingerprints (what changes them and what must not), exact partial round trips."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from hpcframe import aggregations as A
from hpcframe.cache import (
    MemoryStore,
    block_identity,
    decode_partial,
    encode_partial,
    plan_fingerprint,
    stats,
)
from hpcframe.io.dataset import Partition
from hpcframe.physical import OutputPlan


# -- the memory store ------------------------------------------------------------------------
def test_memory_store_keeps_within_budget_and_evicts_lowest_score():
    m = MemoryStore(1000, level="memory partials")
    before = stats()["memory partials"]["evictions"]
    assert m.put("cheap", "a", cost=0.001, nbytes=400)
    assert m.put("dear", "b", cost=1.0, nbytes=400)
    assert m.put("new", "c", cost=0.5, nbytes=400)  # evicts the lowest score: "cheap"
    assert "cheap" not in m and "dear" in m and "new" in m
    assert m.total_bytes == 800 <= m.available_bytes
    assert stats()["memory partials"]["evictions"] == before + 1


def test_memory_store_frequency_counts():
    m = MemoryStore(1000)
    m.put("used", 1, cost=0.01, nbytes=500)
    for _ in range(50):
        assert m.get("used") == 1
    m.put("other", 2, cost=0.01, nbytes=500)
    # same cost and size: the much-used entry stays, the newer one replaces the older one
    assert m.put("third", 3, cost=0.01, nbytes=500)
    assert "used" in m and "third" in m and "other" not in m
    # a cheap entry scoring below every resident one is not admitted
    assert m.put("trivial", 4, cost=1e-9, nbytes=500) is False
    assert "trivial" not in m


def test_memory_store_refuses_what_never_fits():
    m = MemoryStore(100)
    assert m.put("big", 1, cost=10.0, nbytes=101) is False
    assert m.get("big") is None and m.total_bytes == 0
    assert MemoryStore(0).put("x", 1, 1.0, 1) is False


def test_cache_arguments():
    with pytest.raises(ValueError, match="give a memory size"):
        hf.Cache()
    with pytest.raises(ValueError, match="not a size"):
        hf.Cache("lots")
    c = hf.Cache("2GB")
    assert c.size == 2 << 30 and c.store is None


# -- block identity --------------------------------------------------------------------------
def test_block_identity_follows_size_mtime_and_content(tmp_path):
    path = str(tmp_path / "f.parquet")
    pd.DataFrame({"x": [1, 2, 3]}).to_parquet(path)
    part = Partition(path, 0, 0, 3)
    a = block_identity([part])
    assert a == block_identity([part])
    assert block_identity([Partition(path, 0, 0, 2)]) != a  # another row range
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert block_identity([part]) != a  # touched
    h = block_identity([part], hash_content=True)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5))
    assert block_identity([part], hash_content=True)[0][1] == h[0][1]  # same bytes
    assert block_identity([Partition("<persisted frame>", 0, 0, 3)]) is None
    assert block_identity([Partition(str(tmp_path / "gone.parquet"), 0, 0, 3)]) is None


# -- plan fingerprints -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fp") / "d.parquet")
    pd.DataFrame({"k": ["a", "b", "a"], "x": [1, 2, 3], "y": [0.5, 1.5, 2.5]}).to_parquet(path)
    return path


def _fingerprint(obj):
    """The fingerprint of the (single) output ``obj`` computes."""
    outs = obj._output().leaves()
    assert len(outs) == 1
    out = outs[0]
    source = out.node.scan().source
    return plan_fingerprint(OutputPlan(out, source.schema()), source)


def test_fingerprints_change_with_the_plan_only(data):
    df = hf.read_parquet(data)
    base = _fingerprint(df[df.x > 1].groupby("k").y.sum())
    assert base is not None
    again = hf.read_parquet(data)
    assert _fingerprint(again[again.x > 1].groupby("k").y.sum()) == base  # rebuilt: same
    others = [
        df[df.x > 2].groupby("k").y.sum(),  # literal
        df[df.x >= 1].groupby("k").y.sum(),  # operator
        df.groupby("k").y.sum(),  # no filter
        df[df.x > 1].groupby("k").y.mean(),  # aggregation
        df[df.x > 1].groupby("k").x.sum(),  # column
        df[df.x > 1].groupby("x").y.sum(),  # keys
        df[df.x > 1].groupby("k", dropna=False).y.sum(),  # options
        df.assign(y=df.y.astype("float32"))[df.x > 1].groupby("k").y.sum(),  # dtype
        df.assign(y=df.y * 2)[df.x > 1].groupby("k").y.sum(),  # assignment
    ]
    prints = [_fingerprint(o) for o in others]
    assert None not in prints
    assert len({base, *prints}) == len(prints) + 1


def test_fingerprint_does_not_depend_on_ranks(data, monkeypatch):
    df = hf.read_parquet(data)
    q = df.groupby("k").y.sum()
    a = _fingerprint(q)
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setattr(hf.config, "shuffle", "shuffle")
    assert _fingerprint(q) == a


def test_user_aggregations_and_collects_are_not_fingerprinted(data):
    df = hf.read_parquet(data)
    assert _fingerprint(df[df.x > 1]) is None  # collect
    A.register_aggregation(
        "test_cache_span", chunk=lambda s: s.max(), combine=lambda s: s.max(), finalize=lambda s: s
    )
    assert _fingerprint(df.groupby("k").agg({"y": "test_cache_span"})) is None


# -- partial round trips ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"k": pd.array(["a", None, "c"], dtype="str"), "x\x00sum": [1, 2, 3]}),
        pd.DataFrame({"k": [1.5, np.nan, -0.0], "v": pd.to_datetime([1, 2, None], unit="ms")}),
        pd.DataFrame({"k": [True, False], "n": np.array([1, 2], dtype="int8")}),
        pd.DataFrame({"k": pd.Categorical(["x", "y"]), "v": [0.1, 0.2]}),
        pd.DataFrame({"k": [], "v": []}),
    ],
)
def test_partials_round_trip_exactly(frame):
    table, meta = encode_partial(frame)
    back = decode_partial(table, meta)
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_index_type=True)
    assert list(back.dtypes) == list(frame.dtypes)


def test_partials_that_do_not_round_trip_are_refused():
    assert encode_partial(pd.DataFrame({"v": [1, "a", 2.5]})) is None  # mixed objects
    assert encode_partial(pd.Series([1, 2])) is None
    assert encode_partial([1, 2]) is None
    table, meta = encode_partial(None)
    assert decode_partial(table, meta) is None
