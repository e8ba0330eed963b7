"""compute() entry points: every rank gets the result, root=, several outputs in one pass,
sub-communicators, and results that are bit-identical on all ranks (and, optionally, across
configurations: set HPCFRAME_TEST_CROSSCHECK_DIR to a directory kept between the runs)."""

import json
import os

import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same, float_fingerprint
from tests.helpers.mpi import UNDER_MPI, allgather, timeout

pytestmark = timeout(60)


def test_every_rank_gets_the_result(dir6, rank, size):
    df, ref = dir6.open(), dir6.pdf
    got = df.groupby("carrier").x.sum().compute()
    assert_same(got, ref.groupby("carrier").x.sum())
    gathered = allgather(got.to_dict())
    assert len(gathered) == size and all(g == gathered[0] for g in gathered)


def test_compute_root(dir6, rank):
    df, ref = dir6.open(), dir6.pdf
    frame = df.groupby("origin")[["x", "n"]].sum().compute(root=0)
    scalar = df.n.sum().compute(root=0)
    if rank == 0:
        assert_same(frame, ref.groupby("origin")[["x", "n"]].sum())
        assert scalar == ref.n.sum()
    else:
        assert frame is None and scalar is None


def test_compute_several_outputs(dir6):
    df, ref = dir6.open(), dir6.pdf
    sel, rsel = df[df.y > 0.5], ref[ref.y > 0.5]
    a, b, c, d, e = hf.compute(
        sel.x.mean(), sel.groupby("ki")[["n"]].sum(), df.len(), sel[["id", "x"]], df.carrier.value_counts()
    )
    assert_same(a, rsel.x.mean())
    assert_same(b, rsel.groupby("ki")[["n"]].sum())
    assert c == len(ref)
    assert_same(d, rsel[["id", "x"]], reset_index=True, exact=True)
    assert int(e.sum()) == int(ref.carrier.count())


@pytest.mark.skipif(not UNDER_MPI, reason="needs MPI (mpiexec)")
def test_sub_communicator(dir6, comm, rank, size):
    """Two groups of ranks run different queries at the same time on their own communicator."""
    df, ref = dir6.open(), dir6.pdf
    color = rank % 2
    sub = comm.Split(color, rank)
    try:
        if color == 0:
            got = hf.compute(df.groupby("ki").x.sum(), comm=sub)
            exp = ref.groupby("ki").x.sum()
        else:
            got = hf.compute(df[df.n > 100].y.mean(), comm=sub)
            exp = ref[ref.n > 100].y.mean()
        if isinstance(got, tuple):  # hf.compute(r) may return a 1-tuple, like dask
            (got,) = got
        assert_same(got, exp)
        # the sub-communicator really was used: all members agree
        prints = sub.allgather(float_fingerprint(got))
        assert all(p == prints[0] for p in prints)
    finally:
        sub.Free()
    comm.Barrier()
    assert df.n.sum().compute() == ref.n.sum()  # COMM_WORLD still fine afterwards


QUERIES = {
    "x.sum": lambda d: d.x.sum(),
    "x.mean": lambda d: d.x.mean(),
    "noisy.var": lambda d: d.noisy.var(),
    "y.std": lambda d: d.y.std(),
    "gb.sum": lambda d: d.groupby(["origin", "carrier"])[["x", "y"]].sum(),
    "gb.var": lambda d: d.groupby("ki")[["x", "noisy"]].var(),
    "describe": lambda d: d.x.describe(),
}


def test_float_results_bit_identical(catalog, rank, size):
    """All ranks get bit-identical floats; optionally also all configurations of the suite."""
    prints = {}
    for name in ("dir6", "rowgroups", "hive"):
        df = catalog[name].open()
        for q, fn in QUERIES.items():
            prints[f"{name}:{q}"] = float_fingerprint(fn(df).compute())
    gathered = allgather(prints)
    assert all(g == gathered[0] for g in gathered), "ranks disagree on float results"

    folder = os.environ.get("HPCFRAME_TEST_CROSSCHECK_DIR")
    if not folder:
        return
    config = f"mpi{size}" if UNDER_MPI else "local"
    if rank == 0:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{config}.json"), "w") as f:
            json.dump(prints, f, indent=0, sort_keys=True)
    for other in sorted(os.listdir(folder)):
        if other.endswith(".json") and other != f"{config}.json":
            with open(os.path.join(folder, other)) as f:
                theirs = json.load(f)
            diff = [k for k in prints if k in theirs and theirs[k] != prints[k]]
            assert not diff, f"{config} differs from {other[:-5]} in {diff}"


def test_len_and_columns_are_cheap(dir6):
    df = dir6.open()
    assert list(df.columns) == list(dir6.pdf.columns)
    assert isinstance(df.dtypes, pd.Series)
    assert len(df[df.n > 500]) == int((dir6.pdf.n > 500).sum())
