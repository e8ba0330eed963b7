"""Stage reuse across computations (:mod:`hpcframe.reuse`): a join (or another stage) computed
by one ``compute()`` is used again by the next computation reading the same frame, unless a
file below it changed, it holds too few columns, or it does not fit the memory budget.
Results are compared with pandas; ``hf.last_run_stats()["stages_reused"]`` shows the reuse.

Every test runs on every rank, locally and under ``mpiexec -n 1..4``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from hpcframe import reuse
from tests.helpers import mpi

pytestmark = mpi.timeout(120)


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setattr(hf.config, "partitions", 4)
    monkeypatch.setattr(hf.config, "block_rows", 50)
    monkeypatch.setattr(hf.config, "stage_reuse_bytes", 64 << 20)
    yield
    reuse.clear()


def _facts(seed: int, n: int = 400) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "k": rng.integers(0, 30, n),
            "part": rng.integers(0, 7, n),
            "x": rng.normal(size=n).round(3),
            "note": [f"n{i % 11}" for i in range(n)],
        }
    )


def _dims() -> pa.Table:
    return pa.table({"k": np.arange(0, 30, 2), "region": [f"r{i % 3}" for i in range(15)]})


def _write_facts(table: pa.Table, path: str) -> None:
    # plain encoding, no compression: a rewrite with other values keeps the file's layout
    # (the open source keeps the footers it read; see test_changed_file_computes_again)
    pq.write_table(table, path, row_group_size=100, compression="none", use_dictionary=False)


@pytest.fixture
def data(shared_dir, request):
    root = os.path.join(shared_dir, f"reuse_{request.node.name}")

    def write():
        os.makedirs(os.path.join(root, "facts"))
        os.makedirs(os.path.join(root, "dims"))
        for i in range(3):
            _write_facts(_facts(i), os.path.join(root, "facts", f"f{i}.parquet"))
        pq.write_table(_dims(), os.path.join(root, "dims", "d.parquet"))

    mpi.on_root(write)
    return root


def _pandas(root):
    facts = pd.concat(
        [pq.read_table(os.path.join(root, "facts", f"f{i}.parquet")).to_pandas() for i in range(3)],
        ignore_index=True,
    )
    dims = pq.read_table(os.path.join(root, "dims", "d.parquet")).to_pandas()
    return facts, dims


def _join(root):
    facts = hf.read_parquet(os.path.join(root, "facts"))
    dims = hf.read_parquet(os.path.join(root, "dims"))
    return facts.merge(dims, on="k")


def _expected(root):
    facts, dims = _pandas(root)
    return facts.merge(dims, on="k")


def test_join_reused_by_the_next_computation(data):
    j = _join(data)
    ref = _expected(data)
    total = j.x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 0
    assert total == pytest.approx(ref.x.sum(), rel=1e-12)
    # needs k and x: the held join (k, x, and the key) holds them
    g = j.groupby("k").x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 1
    pd.testing.assert_series_equal(g, ref.groupby("k").x.sum(), check_exact=False, rtol=1e-12)
    assert reuse.held_bytes() > 0


def test_more_columns_computes_again_then_reuses(data):
    j = _join(data)
    ref = _expected(data)
    j.x.sum().compute()
    got = j.groupby("region").x.sum().compute()  # region was left out the first time
    assert hf.last_run_stats()["stages_reused"] == 0
    pd.testing.assert_series_equal(got, ref.groupby("region").x.sum(), check_exact=False, rtol=1e-12)
    again = j.groupby("region").x.max().compute()
    assert hf.last_run_stats()["stages_reused"] == 1
    pd.testing.assert_series_equal(again, ref.groupby("region").x.max())


def test_changed_file_computes_again(data):
    j = _join(data)
    first = j.groupby("region").x.sum().compute()
    pd.testing.assert_series_equal(
        first, _expected(data).groupby("region").x.sum(), check_exact=False, rtol=1e-12
    )
    path = os.path.join(data, "facts", "f1.parquet")

    # same rows, row groups and byte layout, other values, a later modification time (a
    # frame keeps the footers its source read: only a same-layout rewrite can be read by it)
    def rewrite():
        t = _facts(1)
        t = t.set_column(2, "x", pa.array(np.asarray(t["x"]) + 100.0))
        st = os.stat(path)
        _write_facts(t, path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    # on_root: every rank has checked the first result (reading the files for its pandas
    # reference) before rank 0 rewrites one (a private helper without that barrier made a rank
    # still reading them compare the old result with the new file: CI on 3-4 ranks)
    mpi.on_root(rewrite)
    second = j.groupby("region").x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 0
    pd.testing.assert_series_equal(
        second, _expected(data).groupby("region").x.sum(), check_exact=False, rtol=1e-12
    )
    assert not second.equals(first)


def test_memory_budget(data, monkeypatch):
    monkeypatch.setattr(hf.config, "stage_reuse_bytes", 1)  # smaller than any stage
    j = _join(data)
    j.x.sum().compute()
    assert reuse.held_bytes() == 0
    j.x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 0
    # room for one join: the first one is evicted by the second
    monkeypatch.setattr(hf.config, "stage_reuse_bytes", 64 << 20)
    j.x.sum().compute()
    one = reuse.held_bytes()
    assert 0 < one
    monkeypatch.setattr(hf.config, "stage_reuse_bytes", one + one // 2)
    other = _join(data)[["k", "x"]].merge(hf.read_parquet(os.path.join(data, "dims")), on="k")
    other.x.sum().compute()
    assert reuse.held_bytes() <= one + one // 2
    j.x.sum().compute()  # evicted: computed again
    assert hf.last_run_stats()["stages_reused"] == 0
    j.x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 1


def test_off_and_pandas_inputs_are_not_kept(data, monkeypatch):
    facts, dims = _pandas(data)
    j = hf.read_parquet(os.path.join(data, "facts")).merge(hf.from_pandas(dims), on="k")
    j.x.sum().compute()
    j.x.sum().compute()  # a pandas side may be modified in place: never kept
    assert hf.last_run_stats()["stages_reused"] == 0
    monkeypatch.setattr(hf.config, "stage_reuse_bytes", 0)
    k = _join(data)
    k.x.sum().compute()
    got = k.x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 0
    assert got == pytest.approx(facts.merge(dims, on="k").x.sum(), rel=1e-12)


def test_group_result_used_as_a_frame_is_reused(data):
    # TPC-H q15's shape: the maximum of a group-by result, then a filter of that result
    facts, _ = _pandas(data)
    rev = hf.read_parquet(os.path.join(data, "facts")).groupby("k").agg(total=("x", "sum")).reset_index()
    top = rev.total.max().compute()
    best = rev[rev.total == top].compute()
    assert hf.last_run_stats()["stages_reused"] == 1
    ref = facts.groupby("k").agg(total=("x", "sum")).reset_index()
    assert top == ref.total.max()
    expected = ref[ref.total == ref.total.max()].reset_index(drop=True)
    pd.testing.assert_frame_equal(best.reset_index(drop=True), expected)


def test_other_communicator_computes_again(data):
    """A join held by the ranks of one communicator is not used by a serial computation in
    one of them (its partitions are spread over the ranks), and the answers are the same."""
    from tests.helpers.frames import assert_bits, local

    j = _join(data)
    total = j.x.sum()
    first = total.compute()
    serial = local(total)
    assert hf.last_run_stats()["stages_reused"] == 0 or mpi.size() == 1
    again = total.compute()
    assert_bits(again, first)
    assert serial == pytest.approx(first, rel=1e-12)


def test_reused_across_duplicated_communicators(data):
    """``compute()`` duplicates the communicator for every computation (``comm=None`` or an
    mpi4py communicator): a stage made under one duplicate serves the next computation."""
    j = _join(data)
    ref = _expected(data)
    first = j.x.sum().compute()  # the default communicator
    comm = mpi.world()
    second = j.x.sum().compute(comm=comm) if comm is not None else j.x.sum().compute()
    assert hf.last_run_stats()["stages_reused"] == 1
    assert first == second == pytest.approx(ref.x.sum(), rel=1e-12)


def test_a_rank_that_lost_the_stage_makes_every_rank_compute_it(data):
    """The ranks agree before reusing: when one rank no longer holds a kept stage (freed
    there only), every rank computes it again (no rank waits in a stage the others skip)."""
    j = _join(data)
    ref = _expected(data)
    j.x.sum().compute()
    if mpi.rank() == 0:
        reuse.clear()  # local: only rank 0 lets the join go
    got = j.groupby("k").x.sum().compute()
    reused = mpi.allgather(hf.last_run_stats()["stages_reused"])
    assert reused == [0] * mpi.size()
    pd.testing.assert_series_equal(got, ref.groupby("k").x.sum(), check_exact=False, rtol=1e-12)
    j.groupby("k").x.sum().compute()  # kept again by every rank
    assert mpi.allgather(hf.last_run_stats()["stages_reused"]) == [1] * mpi.size()


def test_a_computation_on_one_rank_alone_does_not_stop_reuse(data):
    """Regression: rank 0 computing a join alone (``MPI.COMM_SELF``) offers stages the other
    ranks never see. The numbers the ranks agree on count the stages per communicator, so
    the world's next computations still agree on their held join (with one count for every
    communicator, rank 0's numbers ran ahead and no stage was ever reused again)."""
    comm = mpi.world()
    if comm is not None and mpi.rank() == 0:
        from mpi4py import MPI

        alone = _join(data)
        assert alone.x.sum().compute(comm=MPI.COMM_SELF) == pytest.approx(_expected(data).x.sum(), rel=1e-12)
    j = _join(data)
    ref = _expected(data)
    j.x.sum().compute()
    got = j.groupby("k").x.sum().compute()
    assert mpi.allgather(hf.last_run_stats()["stages_reused"]) == [1] * mpi.size()
    pd.testing.assert_series_equal(got, ref.groupby("k").x.sum(), check_exact=False, rtol=1e-12)


def test_a_join_only_another_join_reads_is_released_once_that_one_is_computed(data):
    """A chain of joins holds its last stages, not all of them: the inner join, which only
    the outer join reads, is freed as soon as the outer one is computed (so it is not kept
    for reuse either), while the outer one, which the output reads, is kept."""
    j = _join(data)
    outer = j.merge(hf.read_parquet(os.path.join(data, "dims")), on=["k", "region"])
    ref = _expected(data)
    ref_outer = ref.merge(_pandas(data)[1], on=["k", "region"])
    got = outer.groupby("k").x.sum().compute()
    assert hf.last_run_stats()["stages_released_early"] == 1
    pd.testing.assert_series_equal(got, ref_outer.groupby("k").x.sum(), check_exact=False, rtol=1e-12)
    again = outer.groupby("k").x.max().compute()  # the outer join was kept
    assert hf.last_run_stats()["stages_reused"] == 1
    pd.testing.assert_series_equal(again, ref_outer.groupby("k").x.max())
    inner = j.groupby("k").x.max().compute()  # the inner one was freed: computed again
    assert hf.last_run_stats()["stages_reused"] == 0
    pd.testing.assert_series_equal(inner, ref.groupby("k").x.max())


def test_a_join_the_output_reads_stays_while_a_scalar_computes_a_join_over_it(data):
    """Regression: the lazy scalar ``outer.x.sum()`` is resolved by a ``prepare`` of its
    own, which computes ``outer``: a join over ``j`` whose other side uses a scalar too (so
    the first ``prepare`` left it out). There only ``outer`` reads ``j``, but the output reads
    ``j`` as well: ``j`` stays held for it (``prepare(keep=...)``) instead of being freed and
    computed a second time."""
    j = _join(data)
    dims = hf.read_parquet(os.path.join(data, "dims"))
    outer = j.merge(dims[dims.k < j.k.max()], on=["k", "region"])
    got = j.assign(z=j.x - outer.x.sum()).groupby("k").z.sum().compute()
    assert hf.last_run_stats()["stages_released_early"] == 0
    ref, pdims = _expected(data), _pandas(data)[1]
    ref_outer = ref.merge(pdims[pdims.k < ref.k.max()], on=["k", "region"])
    want = ref.assign(z=ref.x - ref_outer.x.sum()).groupby("k").z.sum()
    pd.testing.assert_series_equal(got, want, check_exact=False, rtol=1e-9)
