"""Randomized differential tests: generated data and generated queries, hpcframe against pandas
and the local engine against the MPI engine.

Design
------
- :mod:`generate` turns a :class:`generate.Spec` (a seed plus a few shape parameters) into a
  data set in one of several layouts (multi-file Parquet at several directory depths with empty
  files and empty/tiny row groups, hive folders, pandas ``to_hdf`` tables, h5py column groups,
  ``from_pandas``), its pandas reference, and a list of queries over the public API (filters
  with comparisons/isin/between/str methods/&/|/~, ``assign``, column selection, then a
  reduction, group-by aggregation, ``head``, ``describe``, ``value_counts``, ``len`` or
  ``compute``). All of it is a pure function of the spec, so every MPI rank builds the same
  cases; rank 0 writes the files into the shared directory and the ranks meet at a barrier.
- Each case runs with its own ``block_rows`` (down to 2 rows, so that even small files spread
  over 4 ranks and every combine is exercised) and ``shuffle_rows`` (0 forces the group-by hash
  shuffle).
- Every query is run with pandas on the reference and with hpcframe; an exception on one side
  only, a different value or a different dtype is a failure. Under MPI the same query is also
  computed by the local engine in each rank (``comm=Comm()``) and the two must be
  **bit-identical** (the docs promise identical results for any rank count); finally the
  ranks exchange a digest of all results and must agree.
- Tolerances follow tests/helpers/compare.py: exact for counts, min/max, nunique, first/last,
  integer sums, head/compute/value_counts; ``rtol=1e-12`` for float sums and means. Looser only
  where pandas itself is not more exact: var/std/mean/describe of int columns holding values
  near the int64 limits (``ILL_RTOL`` and an absolute tolerance on the scale of 2**63), and
  floating-point aggregates of float32 columns (``F32_RTOL``: pandas accumulates some of them in
  float32). Dtypes are compared after the values (a "dtype only" failure); the one freedom is
  the documented one of int/bool columns with nulls (see ``_align_null_dtypes``).
- A query never stops a case early: all failures of a case are collected (each with a runnable
  repro, see ``Query.source``) and reported together at the end of the test, after the
  collectives, so that an assertion can never leave another rank waiting.

Two entry points:

- ``test_differential_case[seed]``: ``HPCFRAME_DIFF_EXAMPLES`` fixed-seed cases (default 6, the
  ``make test`` subset), locally and under ``mpiexec -n 1..4``;
- ``test_differential_hypothesis``: the same generator driven by Hypothesis (local engine only;
  ``derandomize=True``, no database, so runs are reproducible), which shrinks a failing case to
  a small spec. It runs ``HPCFRAME_DIFF_EXAMPLES`` examples (default 6); each case runs
  ``HPCFRAME_DIFF_QUERIES`` queries (default 12).

The long run is documented in docs/testing.md, e.g.
``HPCFRAME_DIFF_EXAMPLES=2000 python -m pytest tests/parallel/test_differential.py``.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

import hpcframe as hf
from tests.helpers import differential, generate
from tests.helpers import mpi as support

EXAMPLES = int(os.environ.get("HPCFRAME_DIFF_EXAMPLES", "6"))
SEED0 = int(os.environ.get("HPCFRAME_DIFF_SEED", "0"))
QUERIES = int(os.environ.get("HPCFRAME_DIFF_QUERIES", "12"))

CASE_TIMEOUT = int(os.environ.get("HPCFRAME_DIFF_TIMEOUT", "300"))  # seconds per case
pytestmark = support.timeout(CASE_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# running a case
# ---------------------------------------------------------------------------------------------
def run_case(spec: generate.Spec, root: str, comm=None) -> list[str]:
    """Build, write and query one case; return the failures (repro + difference) as text.
    Collective under MPI: every rank must call it with the same spec."""
    case = generate.build_case(spec, root)
    differential.write_shared(case, comm)
    queries = generate.make_queries(case, spec.nqueries)
    saved = (hf.config.block_rows, hf.config.shuffle_rows)
    hf.config.block_rows, hf.config.shuffle_rows = spec.block_rows, spec.shuffle_rows
    try:
        df = case.open()
        open_error = None
    except Exception as exc:
        open_error = exc
    if comm is not None:  # all ranks skip the queries together, or none does
        failed = comm.allgather(None if open_error is None else f"{type(open_error).__name__}: {open_error}")
        if open_error is None and any(failed):
            open_error = RuntimeError(f"opening the data failed on another rank: {failed}")

    def run_hpcframe(q, engine_comm):
        lazy = q.run(df, False)
        if not hasattr(lazy, "compute"):
            return lazy
        return lazy.compute() if engine_comm is None else lazy.compute(comm=engine_comm)

    try:
        return differential.check_queries(
            queries,
            run_pandas=lambda q: q.run(case.pdf.copy(), True),
            run_hpcframe=run_hpcframe,
            repro=lambda q: q.source(case.open_src),
            compare_one=lambda got, exp, q: differential.compare_with_pandas(got, exp, q, case.hive),
            comm=comm,
            open_error=open_error,
            header=str(spec),
        )
    finally:
        hf.config.block_rows, hf.config.shuffle_rows = saved


def _case_root(shared_dir, name):
    return os.path.join(shared_dir, "differential", name)


CASE_SEEDS = [SEED0 + j for j in range(EXAMPLES)]


@pytest.mark.parametrize("seed", CASE_SEEDS)
def test_differential_case(shared_dir, seed):
    spec = generate.Spec.from_seed(seed, nqueries=QUERIES)
    failures = run_case(spec, _case_root(shared_dir, f"case-{seed}"), support.world())
    assert not failures, f"{len(failures)} of {spec.nqueries} queries differ:\n\n" + "\n\n".join(failures)


# ---------------------------------------------------------------------------------------------
# Hypothesis (local engine only: shrinking is not collective)
# ---------------------------------------------------------------------------------------------
try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the "test" extra
    st = None


if st is not None:
    specs = st.builds(
        generate.Spec,
        seed=st.integers(0, 2**31 - 1),
        layout=st.sampled_from(generate.LAYOUTS),
        rows=st.lists(st.sampled_from([0, 1, 2, 5, 17, 60]), min_size=1, max_size=4).map(tuple),
        row_group=st.sampled_from([1, 3, 16, 64]),
        block_rows=st.sampled_from([2, 5, 16, 500]),
        shuffle_rows=st.sampled_from([0, 200_000]),
        specials=st.sampled_from([0.0, 0.1, 0.3]),
        big_ints=st.booleans(),
        nqueries=st.just(QUERIES),
    ).map(lambda sp: dataclasses.replace(sp, block_rows=max(sp.block_rows, -(-sum(sp.rows) // 24))))

    @differential.hypothesis_case_test(EXAMPLES, CASE_TIMEOUT)
    @given(spec=specs)
    def test_differential_hypothesis(spec):
        differential.run_in_a_temporary_folder(run_case, spec, "hpcframe-diff-")
