"""Test data and comparisons for the distributed-frame tests (issue 9): group-by results that
are lazy frames, persist, ``groupby().apply``/``transform``, ``drop_duplicates``.

- :func:`build_nasty` writes (on one rank) a small Parquet dataset whose columns are the
  awkward cases: string keys with nulls, one giant group, bools with nulls, float32, int64
  values at the edges of the range, decimals, dates, tz-aware times, a dictionary column; one
  file is empty and the others are cut into small row groups, so that some blocks (and, under
  MPI, some ranks) have no rows. :func:`nasty_reference` is what pandas makes of it (the
  documented type mapping of :func:`tests.helpers.datasets.arrow_to_pandas`).
- :func:`local` computes a lazy object with the serial engine in this process, for the
  bit-identity checks (same ``hf.config``, one rank).
- :func:`assert_bits` compares two computed results exactly (every float bit, NaN == NaN).
- :func:`by_index_values` orders rows by their index values (missing last), for the one case
  where pandas' group order is not defined by sorting (bool keys with missing values).
"""

from __future__ import annotations

import decimal
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers.compare import assert_same, materialize, normalize
from tests.helpers.datasets import arrow_to_pandas

NASTY_FILES = [(120, 1), (0, 2), (90, 3), (1, 4), (150, 5)]  # (rows, seed) per file
NASTY_ROW_GROUP = 40
CATEGORIES = ["hi", "lo", "mid"]
BIG = [2**63 - 1, 2**63 - 2, -(2**63), -(2**63) + 1, 2**62 + 3]


def nasty_table(n: int, seed: int, start: int) -> pa.Table:
    """``n`` rows of the nasty schema (deterministic in ``seed``); ``id`` starts at ``start``."""
    rng = np.random.default_rng(seed)
    s = rng.choice(["p", "q", "r", "s"], n).astype(object)
    s[rng.random(n) < 0.15] = None
    kb = rng.random(n) < 0.5
    kb_mask = rng.random(n) < 0.2
    f32 = rng.choice([0.5, 1.25, -3.0, np.nan, 7.75], n).astype(np.float32)
    big = rng.choice(np.array(BIG, dtype=np.int64), n)
    cents = rng.integers(-500, 500, n)
    dec = [None if rng.random() < 0.1 else decimal.Decimal(int(c)).scaleb(-3) for c in cents]
    day = np.datetime64("2024-02-27") + rng.integers(0, 4, n).astype("timedelta64[D]")  # a leap day
    tz = np.datetime64("2024-03-10T06:00:00", "us") + rng.integers(0, 4, n).astype("timedelta64[h]")
    codes = rng.integers(0, 3, n).astype(np.int32)
    v = rng.normal(0.0, 10.0, n)
    v[rng.random(n) < 0.1] = np.nan
    return pa.table(
        {
            "id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "s": pa.array(s, pa.string()),
            "one": pa.array(["all"] * n, pa.string()),
            "kb": pa.array(kb, pa.bool_(), mask=kb_mask),
            "f32": pa.array(f32, pa.float32()),
            "big": pa.array(big, pa.int64()),
            "dec": pa.array(dec, pa.decimal128(12, 3)),
            "d": pa.array(day.astype("datetime64[D]"), pa.date32()),
            # across the 2024 DST change of New York (2024-03-10 07:00 UTC)
            "tz": pa.array(tz.astype("int64"), pa.timestamp("us", tz="America/New_York")),
            "cat": pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(CATEGORIES)),
            "v": pa.array(v, pa.float64()),
            "n": pa.array(rng.integers(0, 50, n), pa.int64()),
        }
    )


def _tables() -> list[pa.Table]:
    out, start = [], 0
    for rows, seed in NASTY_FILES:
        out.append(nasty_table(rows, seed, start))
        start += rows
    return out


def build_nasty(path: str) -> None:
    """Write the nasty dataset into the folder ``path`` (call on one rank only)."""
    os.makedirs(path)
    for i, t in enumerate(_tables()):
        pq.write_table(t, os.path.join(path, f"part-{i:02d}.parquet"), row_group_size=NASTY_ROW_GROUP)


def nasty_reference() -> pd.DataFrame:
    """What pandas makes of the nasty dataset (RangeIndex, documented type mapping)."""
    return arrow_to_pandas(pa.concat_tables(_tables()))


# (rows, key categories, the ones used, value categories) per file: each file has its own
#    category lists, in another order, with unused entries; one file is empty, in one every
#    key is missing
MIXED_FILES = [
    (40, ["mid", "lo", "zz"], ["mid", "lo"], ["p", "q", "unused"]),
    (0, ["e", "lo"], [], ["e"]),
    (35, ["hi", "lo"], ["hi", "lo"], ["t", "q", "p"]),
    (12, ["q"], None, ["p"]),
    (30, ["lo", "mid", "ab"], ["lo", "mid", "ab"], ["q", "u"]),
]
MIXED_ROW_GROUP = 7


def mixed_categories_tables() -> list[pa.Table]:
    """The files of the mixed-categories dataset: a dictionary key ``k`` (~15% missing) and a
    dictionary value ``c`` whose category lists differ from file to file, ``x`` (float64,
    distinct), ``i`` (int64 0..3) and ``id`` (the row order)."""
    out, start = [], 0
    for seed, (n, cats, used, value_cats) in enumerate(MIXED_FILES):
        rng = np.random.default_rng(100 + seed)
        if used is None:  # every key missing
            k = pd.Categorical([None] * n, categories=cats)
        else:
            k = pd.Categorical(rng.choice(used, n) if used else [], categories=cats)
            k[rng.random(n) < 0.15] = None
        c = pd.Categorical(rng.choice(value_cats[:2], n), categories=value_cats)
        frame = pd.DataFrame(
            {
                "id": np.arange(start, start + n, dtype=np.int64),
                "k": k,
                "c": c,
                "x": rng.permutation(n) + 0.5 + start,
                "i": rng.integers(0, 4, n).astype(np.int64),
            }
        )
        out.append(pa.Table.from_pandas(frame, preserve_index=False))
        start += n
    return out


def mixed_categories_reference(path: str) -> pd.DataFrame:
    """What pandas makes of the mixed-categories files in ``path`` (``pd.read_parquet`` of
    the folder): each categorical column has the union of the files' categories in file order
    (Arrow unifies the dictionaries), unused ones included (an empty file stores none)."""
    files = sorted(os.listdir(path))
    return arrow_to_pandas(pa.concat_tables([pq.read_table(os.path.join(path, f)) for f in files]))


def local(lazy):
    """``lazy`` computed by the serial engine in this process (same ``hf.config``)."""
    import hpcframe as hf
    from hpcframe.comm import Comm

    return hf.compute(lazy, comm=Comm())[0]


def assert_bits(got, expected, msg: str = "") -> None:
    """Exact equality of two computed results: values (every float bit), dtypes and index."""
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=msg or "DataFrame")
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(got, expected, check_exact=True, obj=msg or "Series")
    else:
        same = (pd.isna(got) and pd.isna(expected)) or got == expected
        assert same, f"{got!r} != {expected!r} {msg}"
        if isinstance(expected, (float, np.floating)) and not pd.isna(expected):
            assert float(got).hex() == float(expected).hex(), (
                f"{float(got).hex()} != {float(expected).hex()} {msg}"
            )


def by_index_values(obj):
    """``obj`` with rows ordered by the values of its index (missing last), level by level."""
    idx = obj.index
    levels = [idx.get_level_values(i) for i in range(idx.nlevels)]
    keys = [[(bool(pd.isna(v)), str(v)) for v in level] for level in levels]
    order = sorted(range(len(idx)), key=lambda i: [k[i] for k in keys])
    return obj.iloc[order]


def nasty_dir(shared_dir: str) -> str:
    """The nasty dataset under ``shared_dir`` (written by rank 0 the first time; every rank
    waits for it)."""
    return _written_once(os.path.join(shared_dir, "distributed_frames_nasty"), build_nasty, "nasty")


def mixed_categories_dir(shared_dir: str) -> str:
    """The mixed-categories dataset (:func:`mixed_categories_tables`) under ``shared_dir``, in
    ``MIXED_ROW_GROUP``-row groups (written by rank 0 the first time; every rank waits)."""

    def build(path):
        os.makedirs(path)
        for i, t in enumerate(mixed_categories_tables()):
            pq.write_table(t, os.path.join(path, f"part-{i:02d}.parquet"), row_group_size=MIXED_ROW_GROUP)

    return _written_once(os.path.join(shared_dir, "mixed_categories"), build, "mixed-categories")


def _written_once(path: str, build, name: str) -> str:
    """``path`` after rank 0 ran ``build(path)`` unless it exists; a failure fails every rank."""
    from tests.helpers import mpi

    error = None
    if mpi.rank() == 0 and not os.path.exists(path):
        try:
            build(path)
        except Exception as exc:  # tell the other ranks instead of leaving them at the barrier
            error = f"{type(exc).__name__}: {exc}"
    c = mpi.world()
    if c is not None:
        error = c.bcast(error, root=0)
    if error:
        raise RuntimeError(f"writing the {name} dataset failed on rank 0: {error}")
    return path


def canon(obj):
    """One representation of a MultiIndex with missing keys: pandas' group-bys keep a missing
    key either as a level value or as a ``-1`` code (the user guide's differences from
    pandas); rebuilt from the level values, both compare equal when the values are."""
    if isinstance(obj, (pd.DataFrame, pd.Series)) and isinstance(obj.index, pd.MultiIndex):
        idx = obj.index
        arrays = [idx.get_level_values(i) for i in range(idx.nlevels)]
        obj = obj.set_axis(pd.MultiIndex.from_arrays(arrays, names=idx.names))
    return obj


def same(got, expected, msg="", **kw):
    """``assert_same`` (floats within rtol), then every integer column / index exactly."""
    got, expected = canon(materialize(got)), canon(expected)
    assert_same(got, expected, msg=msg, **kw)
    got, expected = normalize(got), normalize(expected)
    if isinstance(expected, pd.DataFrame) and not kw.get("reset_index") and not kw.get("sort_index"):
        for c in expected.columns:
            if expected[c].dtype.kind in "iu":
                pd.testing.assert_series_equal(
                    got[c], expected[c], check_exact=True, obj=f"{msg} column {c!r}"
                )
    elif isinstance(expected, pd.Series) and expected.dtype.kind in "iu" and not kw.get("sort_index"):
        pd.testing.assert_series_equal(got, expected, check_exact=True, obj=msg or "Series")


# Hypothesis: strategies and settings shared by the differential tests of tests/parallel
def spmd_settings(max_examples: int):
    """Hypothesis settings every rank draws alike: derandomized, no example database, no
    deadline, and not shrunk under MPI (ranks must run the same examples in step)."""
    from hypothesis import HealthCheck, Phase, settings

    from tests.helpers import mpi

    phases = [Phase.explicit, Phase.generate]
    if not mpi.UNDER_MPI:
        phases.append(Phase.shrink)
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        phases=phases,
    )


def keyed_frames(values):
    """A strategy of ``(frame, npartitions)``: up to 40 rows of a string key ``k`` (a, b, c
    or missing), an int64 ``i`` in [-2, 2] and a float64 ``v`` drawn from ``values``, split
    into 1-4 partitions."""
    from hypothesis import strategies as st

    rows = st.lists(
        st.tuples(st.sampled_from([None, "a", "b", "c"]), st.integers(-2, 2), st.sampled_from(list(values))),
        max_size=40,
    )
    return st.builds(
        lambda rows, nparts: (
            pd.DataFrame(
                {
                    "k": pd.array([r[0] for r in rows], dtype="str"),
                    "i": np.array([r[1] for r in rows], dtype=np.int64),
                    "v": np.array([r[2] for r in rows], dtype=np.float64),
                }
            ),
            nparts,
        ),
        rows,
        st.integers(1, 4),
    )


def merge_key_rows(max_size: int = 25):
    """Hypothesis strategy: the rows ``(k1, k2, n)`` of small random frames to merge, a float
    key that may be NaN (pandas' merge matches NaN with NaN), a string key that may be None
    and a small int (test_merge, test_count_before_join)."""
    from hypothesis import strategies as st

    return st.lists(
        st.tuples(
            st.sampled_from([np.nan, 0.0, 1.0, 2.0, 3.0]),
            st.sampled_from([None, "a", "b"]),
            st.integers(-3, 3),
        ),
        max_size=max_size,
    )
