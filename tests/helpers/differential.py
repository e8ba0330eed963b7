"""What the differential tests (test_differential.py, test_differential_relational.py) share:
the comparison of an hpcframe result with pandas' (:func:`compare_with_pandas`, with the
tolerances and the documented dtype freedoms), the bit-exact :func:`fingerprint` of a result,
writing a case's files from rank 0, and :func:`check_queries`, the loop that runs every query
with pandas, hpcframe and (under MPI) the local engine and collects the failures instead of
raising, so that an assertion never leaves another rank in a collective.

A query object given to :func:`compare_with_pandas` has the attributes ``exact``, ``ill``,
``f32``, ``sort_index``, ``value_counts``, ``int_nulls``, ``is_len`` and ``final_src`` (see
``generate.Query``).
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from tests.helpers import compare
from tests.helpers import mpi as support
from tests.helpers.compare import ATOL, ILL_RTOL, RTOL

# aggregates of float32 columns: pandas accumulates some of them in float32 (e.g. describe's
# mean), hpcframe in float64; compare values to float32 precision (the dtype is still checked)
F32_RTOL = 1e-5
# ill-conditioned aggregates (values near +-2**63): a tolerance on the scale of the values
ILL_ATOL = 2.0**63 * 1e-9


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------
class Mismatch(AssertionError):
    pass


def show(obj) -> str:
    """A short printout of a result (long frames are cut)."""
    with pd.option_context(
        "display.max_rows", 20, "display.min_rows", 10, "display.width", 160, "display.max_columns", 12
    ):
        text = str(obj)
    return text if len(text) < 3000 else text[:3000] + " ..."


def _canon(obj, hive, query):
    """Normalise what the spec leaves open (categorical -> values, hive -> int64, int with
    nulls -> float64) and the order of value_counts ties / categorical group keys."""
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        try:
            obj = compare.normalize(obj, hive)
        except (ValueError, TypeError):  # a hive name on a non-integral result (describe's std)
            obj = compare.normalize(obj, ())
        if isinstance(obj.index, pd.MultiIndex):
            # one representation of a missing key: pandas' group-bys keep it as a level value
            # or as a -1 code depending on the aggregation; the values are the same
            obj = obj.copy()
            obj.index = pd.MultiIndex.from_arrays(
                [obj.index.get_level_values(i) for i in range(obj.index.nlevels)], names=obj.index.names
            )
        if query.value_counts and isinstance(obj, pd.Series):
            frame = obj.rename("__n").reset_index()
            key = frame.columns[0]
            frame = frame.sort_values(
                ["__n", key], ascending=[False, True], na_position="last", kind="mergesort"
            )
            obj = frame.set_index(key)["__n"].rename(obj.name)
        elif query.sort_index:
            obj = _sort_by_index_values(obj)
    return obj


def _sort_by_index_values(obj):
    """``obj`` with its rows ordered by the index VALUES (missing last), whatever the order of
    a MultiIndex's levels: ``sort_index`` orders a level by its codes, and pandas lists the
    values of an unsortable level (bool with NaN) in order of first appearance."""
    idx = obj.index
    levels = [idx.get_level_values(i) for i in range(idx.nlevels)]
    keys = [[(pd.isna(v), str(v)) for v in level] for level in levels]
    order = sorted(range(len(idx)), key=lambda i: [k[i] for k in keys])
    return obj.iloc[order]


def _align_null_dtypes(got, exp):
    """The documented dtype freedom of columns with nulls: an int (bool) column arrives as
    float64 (object) from blocks that have nulls, so after a filter hpcframe may give int64
    (bool) where pandas, which typed the whole column, gives float64 (object). Give ``got`` the
    reference's dtype in exactly that case; every other dtype difference is reported."""

    def fix(g, e):
        if g.dtype.kind in "iu" and e.dtype == "float64":
            return g.astype("float64")
        if g.dtype == bool and e.dtype == object:
            return g.astype(object)
        return g

    def fix_index(g, e):
        if isinstance(g, pd.MultiIndex) or isinstance(e, pd.MultiIndex) or len(g) != len(e):
            return g
        return pd.Index(fix(pd.Series(g), pd.Series(e)), name=g.name)

    if isinstance(got, (pd.Series, pd.DataFrame)) and isinstance(exp, (pd.Series, pd.DataFrame)):
        got = got.set_axis(fix_index(got.index, exp.index))
    if isinstance(got, pd.Series) and isinstance(exp, pd.Series):
        return fix(got, exp)
    if isinstance(got, pd.DataFrame) and isinstance(exp, pd.DataFrame) and got.shape[1] == exp.shape[1]:
        out = got
        for j in range(got.shape[1]):
            new = fix(got.iloc[:, j], exp.iloc[:, j])
            if new is not got.iloc[:, j]:
                out = out.copy() if out is got else out
                out.isetitem(j, new)
        return out
    return got


def _align_grouped_float32_mean(got, exp):
    """The documented dtype freedom of a group-by mean of a float32 column: pandas gives
    float64 when the rows arrive sorted by key (a fast path) and float32 otherwise; hpcframe
    always gives float32. Give ``got``'s float32 columns the reference's float64 in that case."""
    if isinstance(got, pd.Series) and isinstance(exp, pd.Series):
        return got.astype("float64") if got.dtype == "float32" and exp.dtype == "float64" else got
    if isinstance(got, pd.DataFrame) and isinstance(exp, pd.DataFrame) and got.shape[1] == exp.shape[1]:
        out = got.copy()
        for j in range(got.shape[1]):
            if got.iloc[:, j].dtype == "float32" and exp.iloc[:, j].dtype == "float64":
                out.isetitem(j, got.iloc[:, j].astype("float64"))
        return out
    return got


def _scalar_equal(got, exp, exact, rtol, atol):
    if compare._is_na(exp) or compare._is_na(got):
        return compare._is_na(exp) and compare._is_na(got)
    if isinstance(exp, (float, np.floating)) or isinstance(got, (float, np.floating)):
        try:
            g, e = float(got), float(exp)
        except (TypeError, ValueError):
            return False
        if np.isinf(e) or np.isinf(g):
            return g == e
        return g == e if exact else abs(g - e) <= rtol * abs(e) + atol
    if isinstance(exp, pd.Timestamp):
        if not isinstance(got, pd.Timestamp) or got.tz != exp.tz:
            return False
        # the mean of a datetime column may be one tick (one unit) apart: user guide
        return got == exp if exact else abs(got - exp) <= pd.Timedelta(1, unit=exp.unit)
    return bool(got == exp)


def compare_with_pandas(got, exp, query, hive):
    """Raise Mismatch (value or dtype) when hpcframe's ``got`` differs from pandas' ``exp``."""
    rtol = ILL_RTOL if query.ill else F32_RTOL if query.f32 else RTOL
    atol = ILL_ATOL if query.ill else ATOL
    if isinstance(exp, (pd.DataFrame, pd.Series)):
        if not isinstance(got, type(exp)):
            raise Mismatch(
                f"type: pandas {type(exp).__name__}, hpcframe {type(got).__name__}\n"
                f"pandas:\n{show(exp)}\nhpcframe:\n{show(got)}"
            )
        if isinstance(exp, pd.DataFrame) and list(map(str, got.columns)) != list(map(str, exp.columns)):
            raise Mismatch(f"columns: pandas {list(exp.columns)}, hpcframe {list(got.columns)}")
        if query.value_counts and isinstance(exp.index.dtype, pd.CategoricalDtype):
            exp = exp[exp != 0]  # documented: value_counts() of a categorical omits zero counts
        g, e = _canon(got, hive, query), _canon(exp, hive, query)
        g = _align_null_dtypes(g, e)
        if ".groupby(" in query.final_src and "mean" in query.final_src:
            g = _align_grouped_float32_mean(g, e)
        kw = dict(check_exact=True) if query.exact else dict(check_exact=False, rtol=rtol, atol=atol)
        cmp = pd.testing.assert_frame_equal if isinstance(e, pd.DataFrame) else pd.testing.assert_series_equal
        loose = dict(check_dtype=False, check_index_type=False)
        if isinstance(e, pd.DataFrame):
            loose["check_column_type"] = False
        try:
            cmp(g, e, **loose, **kw)
        except AssertionError as exc:
            raise Mismatch(
                f"values: {str(exc)[:1500]}\npandas:\n{show(exp)}\nhpcframe:\n{show(got)}"
            ) from None
        try:
            cmp(g, e, check_dtype=True, check_index_type="equiv" if len(e) else False, **kw)
        except AssertionError as exc:
            raise Mismatch(
                f"dtype only: {str(exc).splitlines()[0:6]}\npandas dtypes:\n"
                f"{getattr(exp, 'dtypes', getattr(exp, 'dtype', None))}\nhpcframe dtypes:\n"
                f"{getattr(got, 'dtypes', getattr(got, 'dtype', None))}"
            ) from None
        return
    if isinstance(got, (pd.DataFrame, pd.Series)) or np.ndim(got) != 0:
        raise Mismatch(f"type: pandas scalar {exp!r}, hpcframe {type(got).__name__}:\n{got}")
    if not _scalar_equal(got, exp, query.exact, rtol, atol):
        raise Mismatch(
            f"values: pandas {exp!r} ({type(exp).__name__}), hpcframe {got!r} ({type(got).__name__})"
        )
    if query.int_nulls and isinstance(exp, float) and isinstance(got, (int, np.integer)):
        return  # an int column with nulls: pandas sums float64, hpcframe may sum int64 blocks
    if type(exp) is not type(got) and not (query.is_len and isinstance(got, (int, np.integer))):
        # float vs np.float64 are one type family (np.float64 is a float); int vs np.int64 are not
        fam = lambda v: "float" if isinstance(v, (float, np.floating)) else type(v).__name__  # noqa: E731
        if fam(exp) != fam(got) or (
            isinstance(exp, np.floating) and isinstance(got, np.floating) and exp.dtype != got.dtype
        ):
            raise Mismatch(
                f"dtype only: pandas {exp!r} ({type(exp).__name__}), hpcframe {got!r} ({type(got).__name__})"
            )


def fingerprint(obj) -> str:
    """A bit-exact text form of a result (floats as hex, NaN and NaT kept apart)."""
    if isinstance(obj, BaseException):
        return f"error {type(obj).__name__}"
    if isinstance(obj, pd.Series):
        obj = obj.to_frame("__value__")
    if isinstance(obj, pd.DataFrame):
        parts = [repr(list(obj.columns)), repr(obj.index.tolist()), repr(list(map(str, obj.dtypes)))]
        for c in range(obj.shape[1]):
            col = obj.iloc[:, c]
            if col.dtype.kind == "f":
                parts.append(",".join("nan" if v != v else float(v).hex() for v in col.to_numpy()))
            else:
                parts.append(repr(col.tolist()))
        return "|".join(parts)
    if isinstance(obj, (float, np.floating)):
        return f"{type(obj).__name__}:{'nan' if obj != obj else float(obj).hex()}"
    return f"{type(obj).__name__}:{obj!r}"


# ---------------------------------------------------------------------------------------------
# running a case
# ---------------------------------------------------------------------------------------------
def write_shared(case, comm):
    """Rank 0 writes the case's files; every rank learns whether that worked."""
    error = None
    if support.rank() == 0:
        try:
            case.write()
        except Exception:
            error = traceback.format_exc()
    if comm is not None:
        error = comm.bcast(error, root=0)
    if error:
        pytest.fail(f"writing case {case.spec} failed on rank 0:\n{error}")


def _pandas_internal_failure(exc) -> bool:
    """Whether pandas failed inside Arrow (``ArrowInvalid`` from its own Arrow-backed
    columns, as pandas 3.1 on an outer merge of two empty frames with string keys): a pandas
    bug, not an answer hpcframe must reproduce."""
    if exc is None:
        return False
    import pyarrow as pa

    return isinstance(exc, pa.ArrowException)


def check_queries(
    queries,
    *,
    run_pandas: Callable,
    run_hpcframe: Callable,
    repro: Callable,
    compare_one: Callable,
    comm=None,
    open_error: BaseException | None = None,
    header: str = "",
) -> list[str]:
    """Run every query with pandas and hpcframe and return the failures (repro + difference).

    ``run_pandas(q)`` gives pandas' result; ``run_hpcframe(q, comm)`` hpcframe's, computed
    (``comm=None``: the default engine, else that communicator: the local engine's
    ``Comm()``); ``compare_one(got, exp, q)`` raises :class:`Mismatch`; ``repro(q)`` is the
    query's runnable source. An exception on one side only is a failure, on both sides none.
    Under MPI (``comm`` given) each query is also computed by the local engine in this rank,
    which must give the same bits, and the ranks compare a digest of all results at the end:
    collective, every rank must call it with the same queries. ``open_error``: the data could
    not be opened (every query then fails the same way on every rank).
    """
    from hpcframe.comm import Comm

    failures, digests = [], []
    for q in queries:
        try:
            exp, exp_err = run_pandas(q), None
        except Exception as exc:
            exp, exp_err = None, exc
        if open_error is not None:
            got, got_err = None, open_error
        else:
            try:
                got, got_err = run_hpcframe(q, None), None
            except Exception as exc:
                got, got_err = None, exc
        problem = None
        if _pandas_internal_failure(exp_err):
            pass  # pandas has no answer to compare with (e.g. an outer merge of two empty frames)
        elif exp_err is not None and got_err is None:
            problem = f"pandas raises {type(exp_err).__name__}: {exp_err}; hpcframe returns:\n{show(got)}"
        elif got_err is not None and exp_err is None:
            problem = (
                f"hpcframe raises {type(got_err).__name__}: {str(got_err)[:600]}\n"
                f"pandas returns:\n{show(exp)}"
            )
        elif got_err is None:
            try:
                compare_one(got, exp, q)
            except Mismatch as exc:
                problem = str(exc)
        digests.append(fingerprint(got_err if got_err is not None else got))
        if comm is not None and open_error is None:
            # the local engine in this process must give the same bits as the MPI engine
            try:
                loc = run_hpcframe(q, Comm())
            except Exception as exc:
                loc = exc
            a, b = fingerprint(loc), digests[-1]
            if a != b and problem is None:
                problem = (
                    f"local engine differs from {comm.Get_size()} ranks:\nlocal: {a[:800]}\nmpi:   {b[:800]}"
                )
        if problem is not None:
            failures.append(f"--- {header}\n{repro(q)}\n{problem}")
    if comm is not None:
        mine = hashlib.sha256("\n".join(digests).encode()).hexdigest()
        every = comm.allgather(mine)
        if len(set(every)) != 1:
            failures.append(f"--- {header}\nranks disagree on the results: {every}")
    return failures


# ---------------------------------------------------------------------------------------------
# the Hypothesis entry points
# ---------------------------------------------------------------------------------------------
def hypothesis_case_test(examples: int, case_timeout: int) -> Callable:
    """The decorators of a differential test's Hypothesis entry point (put above
    ``@given``): ``examples`` derandomized examples (Hypothesis seeds them from the test
    function's source), no database, no deadline, a timeout for them all, local engine only
    (shrinking is not collective). No shrinking unless ``HPCFRAME_DIFF_SHRINK=1``: every
    failing query prints its own repro, and shrinking would rerun the case hundreds of times
    inside ``make test``."""
    import os

    from hypothesis import HealthCheck, Phase, settings

    phases = [Phase.explicit, Phase.generate]
    if os.environ.get("HPCFRAME_DIFF_SHRINK") == "1":
        phases.append(Phase.shrink)

    def decorate(test: Callable) -> Callable:
        test = settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
            phases=phases,
            report_multiple_bugs=False,
        )(test)
        test = support.timeout(case_timeout * max(1, examples))(test)
        return pytest.mark.skipif(support.UNDER_MPI, reason="Hypothesis drives the local engine only")(test)

    return decorate


def run_in_a_temporary_folder(run_case: Callable, spec, prefix: str) -> None:
    """``run_case(spec, folder)`` in a fresh temporary folder (removed afterwards); fails
    with every failing query's repro."""
    import os
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix=prefix)
    try:
        failures = run_case(spec, os.path.join(root, "case"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert not failures, f"{len(failures)} of {spec.nqueries} queries differ:\n\n" + "\n\n".join(failures)
