"""Lazy scalars in expressions: ``df[df.x > df.x.mean()]``, ``df.x - df.x.mean()``,
``ps[ps.v > j.v.sum() * 0.01]`` (TPC-H q11, q15, q22) — the reduction is computed first, in
the same computation, and then used as a literal (pushdown and statistics pruning
included). Equal to pandas on the nasty dataset (NaN, float32, int64 near ±2**63,
decimals, dates, tz-aware times, empty files), with every row or none passing, through
joins and group-bys, nested, and across datasets; a stage both the scalar and the rows read
is computed once; a stage that uses a scalar is never reused with a stale value.

Every test runs on every rank, locally, under ``mpiexec -n 1..4`` and (the tests without
stages) on the Dask engine.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hpcframe as hf
from tests.helpers import mpi
from tests.helpers.compare import assert_same
from tests.helpers.datasets import write_tables
from tests.helpers.frames import spmd_settings

pytestmark = mpi.timeout(120)

OPS = {">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b}


@pytest.fixture
def nasty_frames(nasty):
    path, ref = nasty
    return hf.read_parquet(path), ref


@pytest.mark.parametrize(
    "col, agg, op",
    [
        ("v", "mean", ">"),  # float64 with NaN
        ("v", "max", "=="),  # the rows holding the maximum
        ("f32", "mean", "<="),  # float32 against a float64 scalar
        ("big", "max", "=="),  # int64 at 2**63 - 1: compared exactly, not as floats
        ("big", "min", ">"),
        ("n", "mean", ">"),  # int column against a float
        ("dec", "sum", "<="),  # decimals (read as float64)
        ("d", "max", "=="),  # dates: a Timestamp scalar
        ("tz", "min", ">"),  # tz-aware times
        ("v", "count", ">"),  # an int scalar against floats
    ],
)
def test_a_filter_by_a_reduction_equals_pandas(nasty_frames, col, agg, op):
    """``df[df[col] <op> df[col].<agg>()]`` as pandas, on the nasty data (some files empty,
    some ranks without rows)."""
    df, ref = nasty_frames
    got = df[OPS[op](df[col], getattr(df[col], agg)())]
    expected = ref[OPS[op](ref[col], getattr(ref[col], agg)())]
    assert_same(got, expected, exact=True, reset_index=True)


def test_no_row_passes_and_every_row_passes(nasty_frames):
    """A scalar that no row exceeds (an empty result of the frame's dtypes) and one every
    row passes; statistics pruning with the computed value drops nothing it needs."""
    df, ref = nasty_frames
    assert_same(df[df.n > df.n.max()], ref[ref.n > ref.n.max()], exact=True, reset_index=True)
    assert_same(df[df.n >= df.n.min()], ref[ref.n >= ref.n.min()], exact=True, reset_index=True)


def test_arithmetic_with_reductions(nasty_frames):
    """Columns combined with scalars and scalars with each other, both operand orders
    (sums and means within the documented float tolerance of pandas, min/max exact)."""
    df, ref = nasty_frames
    got = df.assign(c=df.v - df.v.mean(), share=df.n / df.n.sum(), back=1.0 - df.v.max() * df.v)
    expected = ref.assign(c=ref.v - ref.v.mean(), share=ref.n / ref.n.sum(), back=1.0 - ref.v.max() * ref.v)
    assert_same(got[["id", "c", "share", "back"]], expected[["id", "c", "share", "back"]])
    s = (df.v.sum() * 0.5 + df.n.max()) / (2 - df.f32.min())
    e = (ref.v.sum() * 0.5 + ref.n.max()) / (2 - ref.f32.min())
    assert_same(s, e)
    assert (df.big.max() // 3).compute() == ref.big.max() // 3  # int64 near 2**63, exactly
    assert (-df.n.max()).compute() == -ref.n.max()
    assert bool((df.v.max() > df.v.min()).compute()) is True


def test_where_and_mask_with_a_scalar(nasty_frames):
    """``where``/``mask`` with a lazy scalar as the replacement and in the condition."""
    df, ref = nasty_frames
    got = df.v.where(df.v < df.v.mean(), df.v.mean())
    expected = ref.v.where(ref.v < ref.v.mean(), ref.v.mean())
    assert_same(got, expected)
    assert_same(df.v.mask(df.v > df.v.mean()), ref.v.mask(ref.v > ref.v.mean()), exact=True)


def test_a_scalar_of_a_filtered_frame_used_in_another_filter(nasty_frames):
    """Nested: the mean of the rows above the mean, used to filter again."""
    df, ref = nasty_frames
    got = df[df.v > df[df.v > df.v.mean()].v.mean()]
    expected = ref[ref.v > ref[ref.v > ref.v.mean()].v.mean()]
    assert_same(got, expected, exact=True, reset_index=True)


def test_a_scalar_under_a_group_by(nasty_frames):
    """A filter by a scalar below a group-by (the rows reduced per group are those kept)."""
    df, ref = nasty_frames
    got = df[df.v > df.v.mean()].groupby("n").v.sum()
    expected = ref[ref.v > ref.v.mean()].groupby("n").v.sum()
    assert_same(got, expected)


def test_a_scalar_of_another_dataset(nasty_frames):
    """The scalar comes from another dataset (a pandas frame) than the rows it filters."""
    df, ref = nasty_frames
    other = pd.DataFrame({"w": [3.0, -1.0, 4.0, np.nan]})
    got = df[df.v > hf.from_pandas(other).w.mean()]
    assert_same(got, ref[ref.v > other.w.mean()], exact=True, reset_index=True)


def test_misuse_is_refused_clearly(nasty_frames):
    """No truth value before it is computed; methods that take constants say to compute."""
    df, _ = nasty_frames
    with pytest.raises(TypeError, match="truth value of a lazy scalar"):
        bool(df.v.mean() > 0)
    with pytest.raises(TypeError, match="compute a lazy scalar first"):
        df.v.clip(lower=df.v.mean())
    assert "lazy scalar" in repr(df.v.sum() * 2)


# -- joins: the scalar and the rows share a stage (TPC-H q11) -----------------------------------
def _write(root, tables):
    write_tables(root, tables, pieces={name: 2 for name in tables}, row_group_size=30)


def _tables(scale=1.0):
    rng = np.random.default_rng(11)
    n = 400
    fact = pa.table(
        {
            "k": pa.array(rng.integers(0, 40, n), pa.int64()),
            "s": pa.array(rng.integers(0, 10, n), pa.int64()),
            "v": pa.array(rng.normal(5, 3, n) * scale, pa.float64()),
        }
    )
    dim = pa.table(
        {"s": pa.array(np.arange(10), pa.int64()), "nation": pa.array(np.arange(10) % 3, pa.int64())}
    )
    return {"fact": fact, "dim": dim}


@pytest.fixture(scope="module")
def joined(shared_dir):
    root = os.path.join(shared_dir, "lazy_scalar")
    mpi.on_root(lambda: _write(root, _tables()))
    return root


def _rows_read():
    """Rows the last computation read (files and stages), summed over the ranks."""
    return mpi.allsum(hf.last_run_stats()["rows_read"])


def _q11(fact, dim, lib):
    d = dim[dim.nation == 1]
    j = fact.merge(d, on="s") if lib == "hf" else pd.merge(fact, d, on="s")
    g = j.groupby("k").agg(v=("v", "sum")).reset_index()
    return g[g.v > j.v.sum() * 0.05].sort_values("v", ascending=False), j


def test_a_join_read_by_the_scalar_and_the_rows_is_computed_once(joined, cfg):
    """q11's shape: the sum over a join filters the group-by of that join. Equal to pandas,
    and the join is computed once: the computation reads the fact table's rows once, where
    the sum and the group-by computed apart read them twice."""
    cfg(stage_reuse_bytes=0)  # nothing held from an earlier computation
    fact, dim = (hf.read_parquet(os.path.join(joined, t)) for t in ("fact", "dim"))
    ref = {k: t.to_pandas() for k, t in _tables().items()}
    got, j = _q11(fact, dim, "hf")
    expected, _ = _q11(ref["fact"], ref["dim"], "pd")
    assert_same(got.compute().reset_index(drop=True), expected.reset_index(drop=True))
    rows = _rows_read()  # files and stages
    value = j.v.sum().compute() * 0.05
    scalar_alone = _rows_read()
    g = j.groupby("k").agg(v=("v", "sum")).reset_index()
    g[g.v > value].compute()
    rows_alone = _rows_read()
    # computed apart, both read the 400 fact rows (and the join's): together, once
    assert rows + len(ref["fact"]) <= scalar_alone + rows_alone, (rows, scalar_alone, rows_alone)


def test_a_join_side_filtered_by_a_scalar(joined):
    """A scalar filters one side of a join (a stage that uses the scalar: computed after it)."""
    fact, dim = (hf.read_parquet(os.path.join(joined, t)) for t in ("fact", "dim"))
    ref = {k: t.to_pandas() for k, t in _tables().items()}
    got = fact[fact.v > fact.v.mean()].merge(dim, on="s").sort_values(["k", "v"])
    f = ref["fact"]
    expected = pd.merge(f[f.v > f.v.mean()], ref["dim"], on="s").sort_values(["k", "v"])
    assert_same(got.compute().reset_index(drop=True), expected.reset_index(drop=True))


def test_a_stage_using_a_scalar_is_not_reused_after_the_scalar_changes(shared_dir, cfg):
    """A join filtered by a scalar of *another* dataset: after that dataset is rewritten,
    the join is computed again with the new value (stage reuse checks only the join's own
    files, so it must not keep such a stage)."""
    cfg(stage_reuse_bytes=1 << 26)
    root = os.path.join(shared_dir, "lazy_scalar_reuse")
    mpi.on_root(lambda: _write(root, _tables()))
    thresholds = os.path.join(root, "thresholds")
    mpi.on_root(lambda: _write_thresholds(thresholds, 5.0))
    fact, dim = (hf.read_parquet(os.path.join(root, t)) for t in ("fact", "dim"))
    th = hf.read_parquet(thresholds)
    got = fact[fact.v > th.t.max()].merge(dim, on="s").sort_values(["k", "v"])  # one stage, twice
    ref = {k: t.to_pandas() for k, t in _tables().items()}
    for level in (5.0, 7.0):
        if level != 5.0:
            mpi.on_root(lambda level=level: _write_thresholds(thresholds, level))
        f = ref["fact"]
        expected = pd.merge(f[f.v > level], ref["dim"], on="s").sort_values(["k", "v"])
        assert_same(
            got.compute().reset_index(drop=True), expected.reset_index(drop=True), msg=f"threshold {level}"
        )


def _write_thresholds(path, level):
    os.makedirs(path, exist_ok=True)
    tmp = os.path.join(path, ".part-0.parquet.tmp")
    pq.write_table(pa.table({"t": pa.array([level - 1.0, level], pa.float64())}), tmp)
    os.replace(tmp, os.path.join(path, "part-0.parquet"))


# -- randomized: any reduction, comparison and factor, on columns with NaN/±inf/int edges ----
@st.composite
def _case(draw):
    kind = draw(st.sampled_from(["float", "int", "float32"]))
    if kind == "int":
        values = st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3)
    else:
        values = st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == "float32" else 64)
    xs = draw(st.lists(values, min_size=0, max_size=40))
    dtype = {"float": np.float64, "int": np.int64, "float32": np.float32}[kind]
    agg = draw(
        st.sampled_from(["min", "max", "mean", "sum", "count"] if kind != "int" else ["min", "max", "count"])
    )
    op = draw(st.sampled_from(sorted(OPS)))
    factor = draw(st.sampled_from([None, 1, 0.5, -2]))
    parts = draw(st.integers(1, 4))
    return np.array(xs, dtype=dtype), agg, op, factor, parts


@spmd_settings(max_examples=60)
@given(case=_case())
def test_any_filter_by_a_reduction_equals_pandas(case):
    """``df[df.x <op> df.x.<agg>() (* factor)]`` against pandas, the frame in 1–4 partitions
    (some empty): min/max/count exactly; mean/sum of floats with NaN and ±inf as pandas."""
    xs, agg, op, factor, parts = case
    ref = pd.DataFrame({"x": xs, "i": np.arange(len(xs))})
    df = hf.from_pandas(ref, npartitions=parts)
    value, want = getattr(df.x, agg)(), getattr(ref.x, agg)()
    if factor is not None:
        value, want = value * factor, want * factor
    with np.errstate(all="ignore"):
        expected = ref[OPS[op](ref.x, want)]
    assert_same(df[OPS[op](df.x, value)], expected, exact=True, reset_index=True)


def test_equality_of_a_scalar_is_lazy_too(nasty_frames):
    """``s == c`` and ``s != c`` are lazy scalars (not an identity test that is always False),
    with no truth value before they are computed."""
    df, ref = nasty_frames
    assert bool((df.n.max() == ref.n.max()).compute()) is True
    assert bool((df.n.max() != ref.n.max()).compute()) is False
    assert bool((df.v.count() == df.v.count()).compute()) is True
    with pytest.raises(TypeError, match="truth value of a lazy scalar"):
        bool(df.n.max() == 0)


def test_written_and_persisted_frames_use_the_value(joined, shared_dir):
    """Writing a frame and ``persist`` evaluate its plan outside ``compute``: a filter by a
    scalar — in the chain and in a join side — uses the computed value there too."""
    fact, dim = (hf.read_parquet(os.path.join(joined, t)) for t in ("fact", "dim"))
    ref = {k: t.to_pandas() for k, t in _tables().items()}
    f = ref["fact"]
    expected = pd.merge(f[f.v > f.v.mean()], ref["dim"], on="s")
    expected = expected[expected.v < expected.v.max()].sort_values(["k", "v"]).reset_index(drop=True)
    joined_rows = fact[fact.v > fact.v.mean()].merge(dim, on="s")
    frame = joined_rows[joined_rows.v < joined_rows.v.max()]
    out = os.path.join(shared_dir, "lazy_scalar_written")
    hf.to_parquet(frame, out)
    got = hf.read_parquet(out).compute().sort_values(["k", "v"]).reset_index(drop=True)
    assert_same(got, expected)
    kept = frame.persist()
    try:
        assert_same(kept.compute().sort_values(["k", "v"]).reset_index(drop=True), expected)
    finally:
        kept.unpersist()
