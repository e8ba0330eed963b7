"""The 22 TPC-H queries (benchmarks/tpch_hf_queries.py) on generated data at scale factor 0.01,
checked against DuckDB's answers to the standard SQL (benchmarks/tpch_sql.py).

The same query text runs on pandas DataFrames (a check of the query text itself) and on
hpcframe Frames, locally and under ``mpiexec -n 1..4``. The data are generated once by rank 0
with tpchgen-cli (from the test environment's bin directory) into the shared directory; DuckDB
answers on rank 0 and the answers are broadcast. Numbers are compared with a relative
tolerance (hpcframe reads the decimal money columns as float64), dates and strings exactly,
rows as a multiset plus the ORDER BY columns row by row.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import traceback

import pytest

from tests.helpers import mpi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
TPCHGEN = os.path.join(os.path.dirname(sys.executable), "tpchgen-cli")
SCALE = "0.01"
QUERIES = [f"q{i}" for i in range(1, 23)]

pytestmark = mpi.timeout(120)


def _module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


Q = _module("tpch_hf_queries")
S = _module("tpch_sql")


def _on_root(fn):
    """``fn()`` on rank 0, its result (or the reason it could not run) broadcast to all."""
    c = mpi.world()
    outcome = None
    if mpi.rank() == 0:
        try:
            outcome = ("ok", fn())
        except _Skip as exc:
            outcome = ("skip", str(exc))
        except Exception:  # tell the other ranks instead of leaving them at the broadcast
            outcome = ("error", traceback.format_exc())
    if c is not None:
        outcome = c.bcast(outcome, root=0)
    kind, value = outcome
    if kind == "skip":
        pytest.skip(value)
    if kind == "error":
        pytest.fail(f"rank 0 failed:\n{value}")
    return value


class _Skip(Exception):
    pass


@pytest.fixture(scope="session")
def tpch_dir(shared_dir):
    """TPC-H data at scale factor 0.01, four Parquet parts per table (tpchgen-cli)."""
    out = os.path.join(shared_dir, f"tpch-sf{SCALE}")

    def generate():
        if not os.path.exists(TPCHGEN):
            raise _Skip(f"tpchgen-cli is not installed next to {sys.executable} (pip install tpchgen-cli)")
        cmd = [TPCHGEN, "parquet", "-s", SCALE, "--parts=4", f"--output-dir={out}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        return out

    return _on_root(generate)


@pytest.fixture(scope="session")
def expected(tpch_dir):
    """DuckDB's answer to every query (computed on rank 0)."""

    def answers():
        try:
            import duckdb  # noqa: F401
        except ImportError as exc:
            raise _Skip(f"duckdb is not installed ({exc}): it gives the reference answers") from exc
        con = S.connect(tpch_dir)
        try:
            return {name: S.run(con, name) for name in QUERIES}
        finally:
            con.close()

    return _on_root(answers)


@pytest.fixture(scope="session")
def pandas_tables(tpch_dir):
    return Q.load_pandas(tpch_dir)


@pytest.mark.parametrize("name", QUERIES)
def test_pandas_query_matches_duckdb(name, pandas_tables, expected):
    """The query text on pandas DataFrames: checks the pandas version itself."""
    S.compare(name, Q.run(name, pandas_tables), expected[name])


@pytest.mark.parametrize("group_files", ["off", "on"], ids=["files-apart", "files-grouped"])
@pytest.mark.parametrize("name", QUERIES)
def test_hpcframe_query_matches_duckdb(name, group_files, tpch_dir, expected, cfg):
    """The same query text on hpcframe Frames, on this run's ranks: with the default
    configuration (every file its own blocks) and with the small files of the other tables
    sharing blocks (``group_files``, SMALLQ: other leaves, other partitions of every join
    built on them)."""
    # lineitem: 2 blocks per file; fewer, larger shuffle partitions
    cfg(block_rows=8000, partitions=8, group_files=group_files)
    tables = Q.load_hpcframe(tpch_dir)
    S.compare(name, Q.run(name, tables, comm=mpi.world()), expected[name])
