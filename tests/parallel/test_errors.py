"""Errors: bad column names, bad paths and files, failures inside user functions on one rank,
and that a multi-output compute reads every partition once."""

import os
import re
import socket

import numpy as np
import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.datasets import DIR6_FILES, DIR6_ROWS_PER_FILE
from tests.helpers.mpi import UNDER_MPI, allgather, allsum, timeout
from tests.parallel.conftest import DASK_ENGINE

pytestmark = timeout(60)


# --------------------------------------------------------------------------------------------
# column names
# --------------------------------------------------------------------------------------------
def test_unknown_column_keyerror(dir6):
    df = dir6.open()
    with pytest.raises(KeyError) as ei:
        df["nope"]
    assert "nope" in str(ei.value)
    assert isinstance(ei.value, hf.HpcframeError)


def test_unknown_column_suggests_close_name(dir6):
    df = dir6.open()
    with pytest.raises(KeyError, match="carrier") as ei:
        df["carier"]
    assert "carier" in str(ei.value)


@pytest.mark.parametrize(
    "query",
    [
        lambda d: d[["x", "nope"]],
        lambda d: d.groupby("nope"),
        lambda d: d.groupby("ki")[["nope"]],
        lambda d: d[d.n > 3]["nope"],
    ],
    ids=["projection", "groupby_key", "groupby_column", "after_filter"],
)
def test_unknown_column_in_other_places(dir6, query):
    with pytest.raises(KeyError, match="nope"):
        r = query(dir6.open())
        r.compute() if hasattr(r, "compute") else None


@pytest.mark.parametrize(
    "query",
    [
        lambda d: d[["x", "x"]],
        lambda d: d.sort_values("x")[["n", "x", "n"]],
        lambda d: d[d.n > 3][("x", "x")],
    ],
    ids=["plain", "after_sort", "after_filter"],
)
def test_a_column_selected_twice_is_refused_at_selection(dir6, query):
    """pandas returns the column twice; hpcframe's frames have unique names and refuse it
    where it is written (a clear ValueError), not with an AttributeError inside compute()."""
    with pytest.raises(ValueError, match=r"selected more than once"):
        query(dir6.open())


# --------------------------------------------------------------------------------------------
# paths and files
# --------------------------------------------------------------------------------------------
def test_missing_path(data_root):
    missing = os.path.join(data_root, "does-not-exist.parquet")
    with pytest.raises(FileNotFoundError, match=re.escape("does-not-exist.parquet")):
        hf.read_parquet(missing).compute()
    with pytest.raises(FileNotFoundError, match=re.escape("nothing.h5")):
        hf.read_hdf(os.path.join(data_root, "nothing.h5")).compute()


def test_not_a_parquet_file(layout):
    path = os.path.join(layout["errors"], "not_parquet.parquet")
    with pytest.raises(hf.DatasetError, match=re.escape("not_parquet.parquet")):
        hf.read_parquet(path).compute()


def test_not_a_parquet_file_inside_a_directory(layout):
    """The broken file's footer may be read by any rank; every rank must get the error."""
    with pytest.raises(hf.DatasetError, match="part-01.parquet"):
        hf.read_parquet(os.path.join(layout["errors"], "bad_member")).compute()


def test_schema_mismatch(layout):
    with pytest.raises(hf.DatasetError) as ei:
        hf.read_parquet(os.path.join(layout["errors"], "mismatch")).compute()
    msg = str(ei.value)
    assert "part-01.parquet" in msg
    assert re.search(r"\bx\b", msg), msg


# --------------------------------------------------------------------------------------------
# a user function fails on one partition only
# --------------------------------------------------------------------------------------------
LAST_ID = DIR6_FILES * DIR6_ROWS_PER_FILE - 1  # only in the last partition (part-05.parquet)


@timeout(30)
def test_failure_on_one_partition_raises_everywhere(dir6, layout, rank, size):
    failed_here = []

    def fn(part):
        if (part["id"] == LAST_ID).any():
            failed_here.append(True)
            raise ValueError("boom in the last partition")
        return part[["id"]]

    with pytest.raises(hf.ComputeError) as ei:
        dir6.open().map_partitions(fn).compute()
    msg = str(ei.value)

    failing = [r for r, f in enumerate(allgather(bool(failed_here))) if f]
    assert len(failing) == 1, f"the last partition ran on ranks {failing}"
    bad = failing[0]
    last_file = os.path.basename(layout["dir6"][-1])
    assert last_file in msg, msg
    assert "boom in the last partition" in msg, msg
    assert allgather(socket.gethostname())[bad] in msg, msg
    if UNDER_MPI:
        assert re.search(rf"\brank {bad}\b", msg), msg
    # every rank reports the same failure
    texts = allgather(msg)
    assert all(re.search(rf"\brank {bad}\b", t) or not UNDER_MPI for t in texts)
    failures = getattr(ei.value, "failures", None)
    if failures:
        assert [f[0] for f in failures] == [bad]

    # nothing is left hanging: the next query works on every rank
    assert dir6.open().n.sum().compute() == dir6.pdf.n.sum()


@timeout(30)
def test_failure_on_every_partition(dir6, rank):
    def fn(part):
        raise RuntimeError("always fails")

    with pytest.raises(hf.ComputeError, match="always fails"):
        dir6.open().map_partitions(fn, combine=lambda parts: parts).compute()
    assert dir6.open().x.count().compute() == dir6.pdf.x.count()


# --------------------------------------------------------------------------------------------
# sys.exit() and KeyboardInterrupt in user code: a failure of that rank, on every rank
# --------------------------------------------------------------------------------------------
BASE_EXCEPTIONS = [
    pytest.param(lambda: SystemExit(3), id="sys_exit"),
    pytest.param(KeyboardInterrupt, id="keyboard_interrupt"),
]


def _check_base_exception(ei, make, bad, where=None):
    """The error raised on this rank names the failing rank ``bad`` (and ``where``); every
    rank got the same; a KeyboardInterrupt stays one (JobInterrupted) everywhere."""
    msg = str(ei.value)
    interrupted = make is KeyboardInterrupt
    assert ("KeyboardInterrupt: interrupted" if interrupted else "SystemExit: sys.exit(3)") in msg
    assert isinstance(ei.value, KeyboardInterrupt) == interrupted
    assert isinstance(ei.value, hf.JobInterrupted) == interrupted
    if where is not None:
        assert where in msg, msg
    assert allgather(socket.gethostname())[bad] in msg, msg
    if UNDER_MPI:
        assert re.search(rf"\brank {bad}\b", msg), msg
    assert [f[0] for f in ei.value.failures] == [bad]
    assert len(set(allgather(msg))) == 1


@timeout(30)
@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_base_exception_in_map_partitions_on_one_partition(dir6, layout, make):
    failed_here = []

    def fn(part):
        if (part["id"] == LAST_ID).any():
            failed_here.append(True)
            raise make()
        return part[["id"]]

    with pytest.raises(hf.ComputeError) as ei:
        dir6.open().map_partitions(fn).compute()
    bad = [r for r, f in enumerate(allgather(bool(failed_here))) if f][0]
    _check_base_exception(ei, make, bad, os.path.basename(layout["dir6"][-1]))
    assert dir6.open().n.sum().compute() == dir6.pdf.n.sum()  # nothing left hanging


@timeout(30)
@pytest.mark.skipif(DASK_ENGINE, reason="the signal guard is part of the local and MPI engines")
def test_a_sigint_whose_keyboard_interrupt_is_swallowed_still_stops_the_computation(dir6, layout):
    """A SIGINT whose ``KeyboardInterrupt`` is swallowed where it is raised (inside code called
    from C that clears every error: NumPy's ctypes check in a dtype comparison, an ``io``
    object's finalizer asking ``closed``) still stops the computation: the guard keeps it
    until it has become a failure, and it is raised at the next block or agreement, as
    :class:`~hpcframe.JobInterrupted` on every rank. The signal is real (``raise_signal`` in
    the main thread); the swallowing C code is played by a ``try``/``except`` in user code."""
    import signal

    swallowed = []

    def fn(part):
        if (part["id"] == LAST_ID).any():  # one partition, on one rank
            try:
                signal.raise_signal(signal.SIGINT)  # the handler raises in here...
            except KeyboardInterrupt:
                swallowed.append(True)  # ...and the exception is gone
        return part[["id"]]

    with pytest.raises(hf.ComputeError) as ei:
        dir6.open().map_partitions(fn).compute()
    bad = [r for r, f in enumerate(allgather(bool(swallowed))) if f]
    assert len(bad) == 1  # the interrupt was raised, and swallowed, on one rank
    _check_base_exception(ei, KeyboardInterrupt, bad[0])
    assert "interrupted (SIGINT)" in str(ei.value)
    assert dir6.open().n.sum().compute() == dir6.pdf.n.sum()  # nothing kept pending


@timeout(30)
@pytest.mark.parametrize("root", [None, 0])
@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_base_exception_in_a_combine_on_one_rank(dir6, rank, size, make, root):
    """The combine runs on the last rank only (root=None: every rank finishes the tree; root=0:
    rank 0 finishes, the last rank combines its own partials when it holds two or more)."""
    bad = 0 if root == 0 else size - 1

    def combine(parts):
        if rank == bad:
            raise make()
        return sum(parts)

    with pytest.raises(hf.ComputeError) as ei:
        hf.compute(dir6.open().map_partitions(len, combine=combine), root=root)
    _check_base_exception(ei, make, bad)
    assert dir6.open().n.sum().compute() == dir6.pdf.n.sum()


@timeout(60)
def test_a_failure_stops_the_other_ranks_reading(dir6, rank, size):
    """Rank 0 fails on its first partition; the other ranks, slow on theirs, stop after the
    block they are in (told by rank 0) instead of reading their whole share first."""
    if size == 1:
        pytest.skip("needs other ranks")
    import time

    calls = []

    def fn(part):
        if rank == 0:
            raise ValueError("rank 0 fails at once")
        calls.append(len(part))
        time.sleep(0.5)
        return len(part)

    with _small_blocks():
        with pytest.raises(hf.ComputeError, match="rank 0 fails at once") as ei:
            dir6.open().map_partitions(fn, combine=sum).compute()
    assert [f[0] for f in ei.value.failures] == [0]
    shares = allgather(hf.last_run_stats()["partitions_read"])
    if rank != 0 and shares[rank]:
        assert len(calls) <= 2, f"rank {rank} read {len(calls)} blocks after rank 0 failed"


class _small_blocks:
    """Blocks of 50 rows (several per partition), so every rank has many leaves."""

    def __enter__(self):
        from hpcframe.config import config

        self.old, config.block_rows = config.block_rows, 50

    def __exit__(self, *exc):
        from hpcframe.config import config

        config.block_rows = self.old


@timeout(30)
@pytest.mark.parametrize(
    "make", [pytest.param(lambda: RuntimeError("callback failed"), id="exception"), *BASE_EXCEPTIONS]
)
def test_a_callback_failing_at_the_end_of_a_run_fails_every_rank(dir6, rank, size, make):
    """on_run_end raising on the last rank only: every rank raises (no rank goes on alone to
    its next collective while the others return results)."""
    from hpcframe.callbacks import Callback

    class FailAtEnd(Callback):
        def on_run_end(self, run, error):
            if run.comm.rank == run.comm.size - 1:
                raise make()

    with FailAtEnd():
        with pytest.raises(hf.ComputeError, match="on_run_end") as ei:
            dir6.open().x.sum().compute()
    assert [f[0] for f in ei.value.failures] == [size - 1]
    assert dir6.open().n.sum().compute() == dir6.pdf.n.sum()


_REGISTERED: dict = {}


@timeout(30)
@pytest.mark.parametrize("shuffle", [False, True], ids=["gather", "shuffle"])
@pytest.mark.parametrize("make", BASE_EXCEPTIONS)
def test_base_exception_in_a_registered_aggregation_combine(dir6, rank, size, make, shuffle, monkeypatch):
    """The combine of a registered aggregation fails on the last rank only, on the plain path
    or while the ranks finish their groups of a hash shuffle."""
    from hpcframe.config import config

    if shuffle:
        monkeypatch.setattr(config, "shuffle_rows", 1)
    name = f"sum_failing_{'interrupt' if make is KeyboardInterrupt else 'exit'}_on_last_rank"
    state = _REGISTERED.setdefault(name, {})
    if not state:

        def combine(sgb):
            if state["rank"] == state["bad"]:
                raise state["make"]()
            return sgb.sum()

        hf.register_aggregation(name, lambda sgb: sgb.sum(), combine, lambda s: s)
    state.update(rank=rank, bad=size - 1, make=make)
    with pytest.raises(hf.ComputeError) as ei:
        dir6.open().groupby("carrier").agg({"n": name}).compute()
    _check_base_exception(ei, make, size - 1)
    assert dir6.open().n.sum().compute() == dir6.pdf.n.sum()


# --------------------------------------------------------------------------------------------
# several outputs, one pass
# --------------------------------------------------------------------------------------------
def test_multi_output_reads_each_partition_once(dir6):
    df, ref = dir6.open(), dir6.pdf
    a, b, c = hf.compute(df.x.sum(), df.groupby("carrier").n.sum(), df[df.n > 500].y.mean())
    assert_same(a, ref.x.sum())
    assert_same(b, ref.groupby("carrier").n.sum(), exact=True)
    assert_same(c, ref[ref.n > 500].y.mean())
    stats = hf.last_run_stats()
    assert allsum(stats["partitions_read"]) == DIR6_FILES
    assert stats["partitions_total"] == DIR6_FILES


def test_hive_filter_prunes_partitions(catalog):
    ds = catalog["hive"]
    df, ref = ds.open(), ds.pdf
    got = df[(df.year == 2014) & (df.month == 2)].x.sum().compute()
    assert got == pytest.approx(ref[(ref.year == 2014) & (ref.month == 2)].x.sum(), rel=1e-12)
    stats = hf.last_run_stats()
    assert allsum(stats["partitions_read"]) == 1
    assert stats["partitions_total"] == 6


# --------------------------------------------------------------------------------------------
# partial results that cannot be sent, callbacks failing on one rank
# --------------------------------------------------------------------------------------------
def _eight_partitions():
    return hf.from_pandas(pd.DataFrame({"x": np.arange(80.0)}), npartitions=8)


def test_unpicklable_partial_fails_on_every_rank():
    query = _eight_partitions().map_partitions(lambda part: lambda: len(part), combine=len)
    if not UNDER_MPI:
        assert query.compute() == 8  # the local engine sends nothing: works
    else:
        with pytest.raises(hf.ComputeError, match="sending the partial results"):
            query.compute()


def test_a_failing_callback_fails_every_rank():
    from hpcframe.callbacks import Callback

    class FailOnLastRank(Callback):
        def on_leaf_done(self, run, leaf, times):
            if run.comm.rank == run.comm.size - 1:
                raise RuntimeError("callback failed")

    df = _eight_partitions()  # every rank of up to 4 has partitions
    with FailOnLastRank():
        with pytest.raises(hf.ComputeError, match="callback failed"):
            df.x.sum().compute()
