"""Column dtypes are a property of the dataset, not of the block.

pandas reads a whole dataset at once, so an integer column with a single null anywhere is
float64 in every row, and a bool column with a null is object. hpcframe converts each block on
its own: a block without nulls must still get the dataset's dtype, or arithmetic runs in int64
(wrapping where pandas rounds in float64) and group keys differ between blocks. The data here
has its nulls in a few files / row groups only, ints near the int64 and uint64 limits, and
files without statistics; every query is compared with ``pd.read_parquet`` of the directory,
locally and on 1-4 ranks. ``from_pandas`` must accept any frame pandas holds (object columns
of bools with ``None``, Python ints with ``None``) and answer as pandas does on it.
"""

import os
import traceback
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.mpi import rank, timeout, world

pytestmark = timeout(120)

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _files():
    """File name -> (table, write options). Nulls: ``nn`` only in c.parquet (second row group,
    no statistics written), ``u`` only in d.parquet, ``b`` only in b.parquet; ``k``, ``ku``
    and ``kb`` never hold a null (they stay int64 / uint64 / bool). In a.parquet (no nulls)
    ``i - nn`` overflows int64 in its first row (``-2**63 - 5``): pandas gives -9.2e18 in
    float64, int64 would wrap to +9.2e18 (the maximum of the column)."""

    def t(i, nn, u, b, k, ku, kb):
        return pa.table(
            {
                "i": pa.array(i, pa.int64()),
                "nn": pa.array(nn, pa.int64()),
                "u": pa.array(u, pa.uint64()),
                "b": pa.array(b, pa.bool_()),
                "k": pa.array(k, pa.int64()),
                "ku": pa.array(ku, pa.uint64()),
                "kb": pa.array(kb, pa.bool_()),
            }
        )

    return {
        "a.parquet": (
            t(
                [I64_MIN + 5, 2**62, -(2**62), 2**53 + 1],
                [10, 3, -7, 1],
                [U64_MAX, 2**63 + 1, 5, 2**53 + 1],
                [True, False, True, True],
                [1, 2, 3, 4],
                [U64_MAX, 1, 2, 3],
                [True, False, True, False],
            ),
            {"row_group_size": 2},
        ),
        "b.parquet": (
            t(
                [7, 8, -9],
                [0, 1, 2],
                [1, 2, 3],
                [None, True, False],
                [5, 6, 7],
                [4, 5, 6],
                [True, True, False],
            ),
            {},
        ),
        "c.parquet": (
            t(
                [I64_MAX, 2**62 + 3, 11, I64_MIN],
                [2**62, 5, None, 6],
                [2**64 - 2, 7, 8, 9],
                [False, True, True, False],
                [8, 9, 10, 11],
                [7, 8, 9, 10],
                [False, True, False, True],
            ),
            {"row_group_size": 2, "write_statistics": False},
        ),
        "d.parquet": (
            t([12, -13], [8, 9], [None, U64_MAX - 1], [True, False], [12, 13], [11, 12], [True, True]),
            {},
        ),
    }


@pytest.fixture(scope="module")
def nulls_dir(shared_dir):
    """A directory of 4 Parquet files whose int/bool nulls sit in some files only."""
    root = os.path.join(shared_dir, "column_types", "nulls")
    c, error = world(), None
    if rank() == 0:
        try:
            os.makedirs(root, exist_ok=True)
            for name, (table, opts) in _files().items():
                pq.write_table(table, os.path.join(root, name), **opts)
        except Exception:
            error = traceback.format_exc()
    if c is not None:
        error = c.bcast(error, root=0)
        c.Barrier()
    if error:
        pytest.fail(f"writing the test data failed on rank 0:\n{error}")
    return root


def test_dtypes_follow_the_whole_dataset(nulls_dir):
    ref = pd.read_parquet(nulls_dir)
    assert ref["nn"].dtype == "float64" and ref["u"].dtype == "float64"  # the premise
    assert ref["b"].dtype == object and ref["k"].dtype == "int64"
    got = hf.read_parquet(nulls_dir).compute()
    assert_same(got, ref, exact=True)
    assert got.dtypes.to_dict() == ref.dtypes.to_dict()


@pytest.mark.parametrize(
    "query",
    [
        "max_diff",
        "sum_diff",
        "filter_diff",
        "filter_nn",
        "u_sum",
        "u_max",
        "u_plus",
        "k_sum",
        "ku_max",
        "kb_sum",
        "group_nn",
        "group_b",
        "group_diff",
    ],
)
def test_arithmetic_in_the_dataset_dtype(nulls_dir, query):
    df, p = hf.read_parquet(nulls_dir), pd.read_parquet(nulls_dir)
    q = {
        # int64 - (int64 with nulls elsewhere): pandas computes in float64, never wraps
        "max_diff": lambda d: (d.i - d.nn).max(),
        "sum_diff": lambda d: (d.i - d.nn).sum(),
        "filter_diff": lambda d: d[d.i - d.nn > 0].i.count(),  # pushed down to Arrow
        "filter_nn": lambda d: d[d.nn > 2].i.max(),
        "u_sum": lambda d: d.u.sum(),
        "u_max": lambda d: d.u.max(),
        "u_plus": lambda d: (d.u + 1).max(),
        "k_sum": lambda d: d.k.sum(),  # no nulls anywhere: stays int64
        "ku_max": lambda d: d.ku.max(),
        "kb_sum": lambda d: d.kb.sum(),
        "group_nn": lambda d: d.groupby("nn").k.sum(),
        "group_b": lambda d: d.groupby("b").k.sum(),
        "group_diff": lambda d: d.assign(g=d.i - d.nn).groupby("g").k.count(),
    }[query]
    assert_same(q(df), q(p), exact=True)


def test_every_block_sees_the_dataset_dtypes(nulls_dir):
    ref = pd.read_parquet(nulls_dir)
    per_block = (
        hf.read_parquet(nulls_dir)
        .map_partitions(
            lambda f: [{c: str(t) for c, t in f.dtypes.items()}],
            combine=lambda parts: [d for p in parts for d in p],
        )
        .compute()
    )
    assert len(per_block) >= 4
    want = {c: str(t) for c, t in ref.dtypes.items()}
    assert all(d == want for d in per_block), per_block


def test_pruning_uses_the_float_values(nulls_dir):
    """``i == float(2**63 - 1)``: pandas compares float64 values (2**63 - 3 and 2**63 - 1 both
    round to 2**63), so statistics in int64 must not prune the row groups holding them."""
    df, p = hf.read_parquet(nulls_dir), pd.read_parquet(nulls_dir)
    # i has no nulls (int64): exact ints; nn - i is float64 because of nn
    assert_same(df[df.nn == 3.0].i.count(), p[p.nn == 3.0].i.count(), exact=True)
    assert_same(df[df.u == float(U64_MAX)].k.count(), p[p.u == float(U64_MAX)].k.count(), exact=True)


# --------------------------------------------------------------------------- from_pandas
def _object_frame():
    return pd.DataFrame(
        {
            "b": pd.Series([True, None, False, True, None, False, True], dtype=object),
            "o": pd.Series([1, None, 2**62, -3, 5, None, 2**62], dtype=object),
            "x": np.arange(7, dtype="int64"),
        }
    )


@pytest.mark.parametrize("query", ["count", "frame", "group_b", "filter_b", "o_sum", "o_max", "b_sum"])
@pytest.mark.parametrize("npartitions", [1, 3])
def test_from_pandas_object_columns(query, npartitions):
    pdf = _object_frame()
    df = hf.from_pandas(pdf, npartitions=npartitions)
    q = {
        "count": lambda d: d.b.count(),
        "frame": lambda d: d,
        "group_b": lambda d: d.groupby("b").x.sum(),
        "filter_b": lambda d: d[d.b == True].x.sum(),  # noqa: E712  (elementwise ==)
        "o_sum": lambda d: d.o.sum(),
        "o_max": lambda d: d.o.max(),
        "b_sum": lambda d: d.b.sum(),
    }[query]
    got, want = q(df), q(pdf)
    if query == "frame":
        got = got.compute()
        assert got.dtypes.to_dict() == pdf.dtypes.to_dict()
        assert got["b"].tolist() == pdf["b"].tolist() and got["o"].tolist() == pdf["o"].tolist()
    assert_same(got, want, exact=True)


def test_from_pandas_refuses_mixed_objects_by_name():
    pdf = pd.DataFrame({"m": pd.Series([1, "a", None], dtype=object)})
    with pytest.raises(Exception, match="'m'") as info:
        hf.from_pandas(pdf)
    assert "astype" in str(info.value)


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
def test_from_pandas_warns_of_the_string_dtype_held_as_str(storage):
    """pandas' ``string`` dtype (missing values ``pd.NA``) is held as ``str`` (missing values
    NaN), so its missing values compare as NaN does (found by session 38's randomized
    expression runs): ``from_pandas`` says so, naming the column; ``str`` columns are quiet."""
    pdf = pd.DataFrame({"s": pd.array(["a", None], dtype=pd.StringDtype(storage)), "t": ["x", None]})
    with pytest.warns(UserWarning, match=r"'s' have pandas' 'string' dtype.*astype\('str'\)"):
        df = hf.from_pandas(pdf)
    assert str(df.compute()["s"].dtype) == "str"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf.from_pandas(pdf.astype({"s": "str"}))


def _nullable_frame():
    """pandas nullable dtypes with NA in the middle partition only (of 3)."""
    return pd.DataFrame(
        {
            "I": pd.array([1, 2, None, -3, 2**62, 7], dtype="Int64"),
            "B": pd.array([True, False, None, True, True, False], dtype="boolean"),
            "F": pd.array([1.5, 2.0, None, 3.25, 4.0, 0.5], dtype="Float64"),
            "x": np.arange(6, dtype="int64"),
        }
    )


@pytest.mark.parametrize(
    "query",
    [
        "frame",
        "I_sum",
        "I_max",
        "F_sum",
        "B_sum",
        "I_count",
        "group_B",
        "group_I",
        "filter_I",
        "group_x_I",
        "I_plus",
    ],
)
@pytest.mark.parametrize("shuffle_rows", [None, 0])
def test_from_pandas_nullable_dtypes(query, shuffle_rows, monkeypatch):
    """Every block keeps the frame's Int64 / boolean / Float64 dtype (not int64 in blocks
    without NA and float64/object in the others)."""
    if shuffle_rows is not None:
        monkeypatch.setattr(hf.config, "shuffle_rows", shuffle_rows)
    pdf = _nullable_frame()
    df = hf.from_pandas(pdf, npartitions=3)
    q = {
        "frame": lambda d: d,
        "I_sum": lambda d: d.I.sum(),
        "I_max": lambda d: d.I.max(),
        "F_sum": lambda d: d.F.sum(),
        "B_sum": lambda d: d.B.sum(),
        "I_count": lambda d: d.I.count(),
        "group_B": lambda d: d.groupby("B").x.sum(),
        "group_I": lambda d: d.groupby("I").x.sum(),
        "filter_I": lambda d: d[d.I > 1].x.sum(),
        "group_x_I": lambda d: d.groupby("x").I.sum(),
        "I_plus": lambda d: (d.I + 1).sum(),
    }[query]
    got, want = q(df), q(pdf)
    if query == "frame":
        got = got.compute()
        assert got.dtypes.to_dict() == pdf.dtypes.to_dict()
    assert_same(got, want, exact=True)


def test_stored_dtype_flags_are_not_trusted(shared_dir):
    """A file written from a flagged schema (``hpcframe.pandas: nulls`` in its field metadata)
    holds no null: the column is int64, decided from this dataset's own null counts."""
    from hpcframe.io.types import NULLS, flag_fields

    root = os.path.join(shared_dir, "column_types", "stale_flag")
    c = world()
    if rank() == 0:
        os.makedirs(root, exist_ok=True)
        t = pa.table({"i": pa.array([1, 2**62 + 1], pa.int64())})
        pq.write_table(t.cast(flag_fields(t.schema, {"i": NULLS})), os.path.join(root, "x.parquet"))
    if c is not None:
        c.Barrier()
    ref = pd.read_parquet(root)
    got = hf.read_parquet(root).compute()
    assert got["i"].dtype == ref["i"].dtype == "int64"
    assert_same(got, ref, exact=True)


def test_pushed_filter_sees_the_dataset_dtypes_of_a_pandas_frame():
    """A filter evaluated in pandas while reading (PandasOp) converts the predicate columns with
    the same dataset-level dtypes as the rest of the block: an ``Int64`` column keeps its
    extension dtype, so ``I + 1`` does not wrap in int64 in a block without NA."""
    pdf = pd.DataFrame({"I": pd.array([2**63 - 1, None, 5], dtype="Int64"), "x": [1, 2, 3]})
    for nparts in (1, 3):
        d = hf.from_pandas(pdf, npartitions=nparts)
        assert d[(d.I + 1) < 0].x.sum().compute() == pdf[(pdf.I + 1) < 0].x.sum()
