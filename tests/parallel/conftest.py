"""Fixtures of the parallel suite. The same tests run without MPI (local engine) and under
``mpiexec -n N python -m pytest tests/parallel -p no:cacheprovider``; every test runs on every
rank.

- Data is written once, by rank 0, into a directory shared by all ranks (a fresh temporary
  directory, under $HPCFRAME_TEST_TMPDIR when set: use a shared file system for multi-node
  runs), whose path is broadcast; then all ranks meet at a barrier.
- Under MPI, a failing test on any rank prints its report and aborts the whole job, so that a
  failure on one rank never leaves the others blocked in the next collective
  (set HPCFRAME_TEST_NO_ABORT=1 to disable).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback

import pytest

import hpcframe
from tests.helpers import datasets, mpi


# --------------------------------------------------------------------------------------------
# abort on failure under MPI
# --------------------------------------------------------------------------------------------
def pytest_runtest_logreport(report):
    if not mpi.UNDER_MPI or not report.failed or os.environ.get("HPCFRAME_TEST_NO_ABORT") == "1":
        return
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    sys.stdout.flush()
    sys.stderr.write(
        f"\n{'=' * 30} rank {comm.Get_rank()}/{comm.Get_size()}: FAILED {report.nodeid} ({report.when}) "
        f"{'=' * 30}\n{report.longreprtext}\n"
        f"rank {comm.Get_rank()}: aborting MPI_COMM_WORLD so that the other ranks do not hang\n"
    )
    sys.stderr.flush()
    comm.Abort(1)


def pytest_report_header(config):
    if mpi.UNDER_MPI:
        return f"hpcframe tests: MPI rank {mpi.rank()} of {mpi.size()}"
    if DASK_ENGINE:
        return "hpcframe tests: Dask engine (a LocalCluster of 2 worker processes)"
    return "hpcframe tests: local engine (no MPI)"


# HPCFRAME_TEST_ENGINE=dask runs every query on the Dask engine
# One LocalCluster (2 single-threaded worker processes) for the session is hf.config.engine,
# so every compute() without comm= goes through hpcframe.dask_engine. A query that needs a
# stage (persist, shuffle, join, sort) must then raise the engine's clear DaskEngineError:
# such a test is reported as skipped with that message (any other failure fails).
DASK_ENGINE = os.environ.get("HPCFRAME_TEST_ENGINE") == "dask" and not mpi.UNDER_MPI


@pytest.fixture(scope="session", autouse=True)
def dask_engine():
    """The session's Dask client, set as ``hpcframe.config.engine`` (``None`` when the
    suite runs on the local or MPI engine)."""
    if not DASK_ENGINE:
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    client = Client(cluster, set_as_default=False)
    hpcframe.config.engine = client
    try:
        yield client
    finally:
        hpcframe.config.engine = None
        client.close()
        cluster.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not DASK_ENGINE or call.when != "call" or call.excinfo is None:
        return
    from hpcframe.dask_engine import DaskEngineError

    exc = call.excinfo.value
    if isinstance(exc, DaskEngineError) and "runs on the local and MPI engines" not in str(exc):
        return  # not the stage error: a real failure
    if isinstance(exc, DaskEngineError):
        report = outcome.get_result()
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1], f"Dask engine: {str(exc)[:200]}")


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Small blocks, so that the small test data sets still spread over up to 4 ranks, row
    groups are cut into blocks (the 2000-row HDF5 tables) and grouped (none: 400-row groups
    stay alone); small files are not grouped (every file its own blocks: the nasty data
    set's five files would be one block), except in the tests that ask for it
    (``cfg(group_files="on")``: test_tpch, test_small_files). Set per test, so that other
    folders run in the same process keep the default."""
    monkeypatch.setattr(hpcframe.config, "block_rows", 500)
    monkeypatch.setattr(hpcframe.config, "group_files", "off")


@pytest.fixture(scope="session")
def rank() -> int:
    return mpi.rank()


@pytest.fixture(scope="session")
def size() -> int:
    return mpi.size()


@pytest.fixture(scope="session")
def comm():
    """MPI.COMM_WORLD under mpiexec, else None."""
    return mpi.world()


@pytest.fixture(scope="session")
def shared_dir():
    """A fresh directory that every rank sees (written by rank 0 only)."""
    c = mpi.world()
    base = os.environ.get("HPCFRAME_TEST_TMPDIR")
    path = tempfile.mkdtemp(prefix="hpcframe-tests-", dir=base) if mpi.rank() == 0 else None
    if c is not None:
        path = c.bcast(path, root=0)
    yield path
    if c is not None:
        c.Barrier()
    if mpi.rank() == 0 and os.environ.get("HPCFRAME_TEST_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def nasty(shared_dir):
    """``(path, pandas reference)`` of the nasty dataset (see tests/helpers/frames.py): written
    once into the shared folder, the reference rebuilt per module (tests may change it)."""
    from tests.helpers.frames import nasty_dir, nasty_reference

    return nasty_dir(shared_dir), nasty_reference()


@pytest.fixture(scope="module")
def mixed_categories(shared_dir):
    """``(path, pandas reference)`` of a dataset whose dictionary columns have other
    categories in every file (see tests/helpers/frames.py): written once into the shared
    folder, the reference rebuilt per module."""
    from tests.helpers.frames import mixed_categories_dir, mixed_categories_reference

    path = mixed_categories_dir(shared_dir)
    return path, mixed_categories_reference(path)


@pytest.fixture(scope="session")
def data_root(shared_dir):
    """The data sets of tests/helpers/datasets.py, written by rank 0; all ranks wait for them."""
    root = os.path.join(shared_dir, "data")
    c = mpi.world()
    error = None
    if mpi.rank() == 0:
        try:
            datasets.build_all(root)
        except Exception:  # tell the other ranks instead of leaving them at the barrier
            error = traceback.format_exc()
    if c is not None:
        error = c.bcast(error, root=0)
    if error:
        pytest.fail(f"building the test data failed on rank 0:\n{error}")
    return root


@pytest.fixture(scope="session")
def catalog(data_root) -> dict:
    return datasets.catalog(data_root)


@pytest.fixture(scope="session")
def layout(catalog) -> dict:
    """File paths of the data sets (see tests.helpers.datasets._layout)."""
    return catalog["_layout"]


@pytest.fixture
def dataset(request, catalog) -> datasets.Dataset:
    """Indirectly parametrized: ``@pytest.mark.parametrize("dataset", [...], indirect=True)``."""
    return catalog[request.param]


@pytest.fixture
def dir6(catalog) -> datasets.Dataset:
    """The main data set: a directory of 6 Parquet files (6 partitions, 3000 rows)."""
    return catalog["dir6"]


@pytest.fixture
def cfg(monkeypatch):
    """Set ``hf.config`` attributes for one test: ``cfg(partitions=3, shuffle="gather")``
    (an unknown attribute is an error)."""

    def set_(**values):
        for k, v in values.items():
            monkeypatch.setattr(hpcframe.config, k, v)

    return set_
