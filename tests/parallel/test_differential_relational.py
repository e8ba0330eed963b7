"""Randomized differential tests of the relational operators: generated pairs of tables and
generated queries (merge, semi/anti-joins, sorts with head/tail, nlargest/nsmallest, group
windows, groupby().head/nth, set_index + .loc, drop_duplicates, group median/quantile),
hpcframe against pandas and the local engine against the MPI engine.

The design is test_differential.py's (see its docstring), with the generator of
:mod:`tests.helpers.generate_relational` and the comparison and query loop of
:mod:`tests.helpers.differential`:

- a :class:`~generate_relational.RelSpec` (a seed and a few shape parameters) gives two tables
  ``L`` and ``R`` (Parquet files with empty files and one-row row groups, or ``from_pandas``;
  NaN/None/duplicate keys, ints near 2**63, float32, ±inf, bools with nulls, categoricals,
  dates, tz-aware timestamps, empty sides), their pandas references, the ``hf.config`` of the
  case (``block_rows`` down to 2, ``partitions`` down to 1, ``broadcast_bytes=0`` to shuffle
  every join, ``shuffle_rows``) and its queries; rank 0 writes the files;
- each query binds a source frame (``L``, a filter, a ``merge`` with a forced or free
  broadcast, a semi/anti-join) and applies one operation; pandas' reference of a query is
  written in pandas' words (``kind="stable"``, ``observed=True``, ...) and printed beside
  hpcframe's in the repro;
- values are compared exactly, except floating-point results of arithmetic (median, quantile,
  cumsum, diff, rank: ``rtol=1e-12``, float32 ``1e-5``); row labels are compared wherever the
  user guide promises pandas' labels (not after a filter, for group windows or
  ``drop_duplicates``). Shapes whose difference from pandas the user guide documents are
  not generated or are compared by the documented rule; each place says which entry.

Entry points, as test_differential.py: ``test_relational_case[seed]`` runs
``HPCFRAME_DIFF_REL_EXAMPLES`` fixed-seed cases (default 3) of ``HPCFRAME_DIFF_REL_QUERIES``
queries (default 8) locally and under ``mpiexec -n 1..4``; ``test_relational_hypothesis``
runs the same number of Hypothesis examples on the local engine (``derandomize=True``, no
database). ``HPCFRAME_DIFF_REL_SEED`` moves the fixed seeds. The long run is in docs/testing.md.
"""

from __future__ import annotations

import dataclasses
import os

import pandas as pd
import pytest

import hpcframe as hf
from tests.helpers import differential
from tests.helpers import generate_relational as gen
from tests.helpers import mpi as support  # named in the Hypothesis test's decorators (see there)

EXAMPLES = int(os.environ.get("HPCFRAME_DIFF_REL_EXAMPLES", "3"))
SEED0 = int(os.environ.get("HPCFRAME_DIFF_REL_SEED", "0"))
QUERIES = int(os.environ.get("HPCFRAME_DIFF_REL_QUERIES", "8"))

CASE_TIMEOUT = int(os.environ.get("HPCFRAME_DIFF_TIMEOUT", "300"))  # seconds per case
pytestmark = support.timeout(CASE_TIMEOUT)


def _relabel(obj):
    """``obj`` numbered 0..n-1 (where hpcframe's labels are not pandas')."""
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return obj.reset_index(drop=True)
    return obj


def _categorical_key(got, exp):
    """After a merge of a categorical key with a non-categorical column: ``got`` with pandas'
    dtype where hpcframe gives ``object`` and pandas ``category`` (an empty result: pandas
    keeps the category, and gives str once a row is there) or ``str`` (after a group-by that
    regroups whole rows, ``head``/``nth``). Not fixed, listed in docs/testing.md."""
    if not isinstance(got, pd.DataFrame) or not isinstance(exp, pd.DataFrame):
        return got
    fix = [
        c
        for c in exp.columns
        if c in got.columns
        and got[c].dtype == object
        and (pd.api.types.is_string_dtype(exp[c].dtype) and exp[c].dtype != object or not len(exp))
    ]
    if not fix:
        return got
    got = got.copy()
    for c in fix:
        got[c] = got[c].astype(exp[c].dtype)
    return got


def compare_one(got, exp, q: gen.RelQuery):
    if not q.index:
        got, exp = _relabel(got), _relabel(exp)
    if q.cat_key:
        got = _categorical_key(got, exp)
    differential.compare_with_pandas(got, exp, q, ())


def run_case(spec: gen.RelSpec, root: str, comm=None) -> list[str]:
    """Build, write and query one case; return the failures (repro + difference) as text.
    Collective under MPI: every rank must call it with the same spec."""
    case = gen.build_case(spec, root)
    differential.write_shared(case, comm)
    queries = gen.make_queries(case, spec.nqueries)
    saved = {k: getattr(hf.config, k) for k in spec.config()}
    for k, v in spec.config().items():
        setattr(hf.config, k, v)
    try:
        L, R = case.open()
        open_error = None
    except Exception as exc:
        open_error = exc
    if comm is not None:  # all ranks skip the queries together, or none does
        failed = comm.allgather(None if open_error is None else f"{type(open_error).__name__}: {open_error}")
        if open_error is None and any(failed):
            open_error = RuntimeError(f"opening the data failed on another rank: {failed}")

    def run_pandas(q):
        frames = {"L": case.left_pdf.copy(), "R": case.right_pdf.copy(), "Rp": case.right_pdf.copy()}
        return q.run(frames, True)

    def run_hpcframe(q, engine_comm):
        lazy = q.run({"L": L, "R": R, "Rp": case.right_pdf.copy()}, False)
        if not hasattr(lazy, "compute"):
            return lazy
        return lazy.compute() if engine_comm is None else lazy.compute(comm=engine_comm)

    try:
        return differential.check_queries(
            queries,
            run_pandas=run_pandas,
            run_hpcframe=run_hpcframe,
            repro=lambda q: f"[{q.family}]\n{q.source(case)}",
            compare_one=compare_one,
            comm=comm,
            open_error=open_error,
            header=str(spec),
        )
    finally:
        for k, v in saved.items():
            setattr(hf.config, k, v)


CASE_SEEDS = [SEED0 + j for j in range(EXAMPLES)]


@pytest.mark.parametrize("seed", CASE_SEEDS)
def test_relational_case(shared_dir, seed):
    spec = gen.RelSpec.from_seed(seed, nqueries=QUERIES)
    root = os.path.join(shared_dir, "differential-relational", f"case-{seed}")
    failures = run_case(spec, root, support.world())
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
        gen.RelSpec,
        seed=st.integers(0, 2**31 - 1),
        layout=st.sampled_from(gen.LAYOUTS),
        left_rows=st.lists(st.sampled_from([0, 1, 2, 5, 17, 60]), min_size=1, max_size=4).map(tuple),
        right_rows=st.lists(st.sampled_from([0, 1, 3, 12, 30]), min_size=1, max_size=3).map(tuple),
        row_group=st.sampled_from([1, 3, 16, 64]),
        block_rows=st.sampled_from([2, 5, 16, 500]),
        partitions=st.sampled_from([1, 3, 32]),
        broadcast_bytes=st.sampled_from([0, 64 << 20]),
        shuffle_rows=st.sampled_from([0, 200_000]),
        specials=st.sampled_from([0.0, 0.1, 0.3]),
        big_ints=st.booleans(),
        nqueries=st.just(QUERIES),
    ).map(lambda sp: dataclasses.replace(sp, block_rows=max(sp.block_rows, -(-sum(sp.left_rows) // 24))))

    @differential.hypothesis_case_test(EXAMPLES, CASE_TIMEOUT)
    @given(spec=specs)
    def test_relational_hypothesis(spec):
        differential.run_in_a_temporary_folder(run_case, spec, "hpcframe-diff-rel-")
