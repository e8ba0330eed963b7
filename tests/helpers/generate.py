"""Random data sets and random queries for the differential tests (test_differential.py).

Everything here is a pure function of a :class:`Spec` (which holds a seed): every MPI rank
builds the same data description, the same pandas reference and the same queries, while only
rank 0 writes the files. Nothing reads global random state.

Data
----
A case is one logical table (see :data:`KINDS` for its columns) stored in one of the layouts
of :data:`LAYOUTS`: several Parquet files at several directory depths (some with zero rows,
some with empty row groups), hive ``key=value`` folders, ``pandas.DataFrame.to_hdf`` tables,
an h5py group of 1-D column datasets or an h5py compound dataset, or ``hf.from_pandas``.
Values are drawn to hit edge cases: int64 values near the limits, ±inf, NaN and nulls in
floats, float32 values that are not exact in float64 (0.1), ~17-digit decimal128 values, dates,
tz-aware timestamps, bools with nulls, dictionary (category) strings, strings with missing
values.

The pandas reference is what pandas makes of the same data under the documented type mapping
(``tests.helpers.datasets.arrow_to_pandas``: decimal -> float64 correctly rounded, date -> datetime64[ms],
dictionary -> category, int with nulls -> float64, bool with nulls -> object).

Queries
-------
A query is a small program over the public API, built as a list of :class:`Step` (each binds
a new frame name: a filter, an ``assign`` or a column selection) and a terminal operation (a
reduction, a group-by aggregation, ``head``, ``describe``, ``value_counts``, ``len`` or
``compute``). Each step and expression carries both the function that applies it (to an
hpcframe Frame or to a pandas DataFrame) and its Python source, so a failing query prints as
a runnable repro (:meth:`Query.source`). Constants are drawn from the values the current frame
actually holds (computed with pandas while generating), plus special values (NaN, None, ±inf,
0.1, 2**53 + 1, the int64 limits, ``datetime.date``).
"""

from __future__ import annotations

import datetime
import decimal
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers.datasets import arrow_to_pandas

# ---------------------------------------------------------------------------------------------
# specification of a case
# ---------------------------------------------------------------------------------------------
LAYOUTS = ("parquet", "rowgroups", "hive", "h5_pandas", "h5_columns", "pandas")
# column -> kind. "nn" is the int-with-nulls column (support.normalize relaxes its dtype).
KINDS = {
    "k": "int",  # small int key 0..4, no nulls
    "ks": "str",  # string key, missing values
    "i": "int",  # int64, small or near the limits
    "nn": "int",  # int64 with nulls
    "f": "float",  # float64 with NaN, nulls, +-inf
    "g": "f32",  # float32
    "dec": "dec",  # decimal128(18, s), ~17 digits
    "day": "date",  # date32 with nulls
    "ts": "ts",  # timestamp[us, tz] with nulls
    "b": "boolnull",  # bool with nulls
    "flag": "bool",  # bool, no nulls
    "cat": "cat",  # dictionary<int32, string> with nulls
    "s": "str",  # short strings with missing values
}
NUMERIC = ("int", "float", "f32", "dec", "num")
# what each HDF5 layout can hold (pandas' to_hdf cannot store object bools with nulls,
# categoricals or decimals; the column-group layout holds plain NumPy arrays)
H5_PANDAS_COLUMNS = ["k", "ks", "i", "f", "g", "day", "ts", "flag", "s"]
H5_COLUMNS_COLUMNS = ["flag", "f", "g", "i", "k", "s"]
TIMEZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
HIVE_VALUES = [[2013, 2014], [1, 2, 3], [0, -1, 7]]
HIVE_ODD_VALUES = ["1_000", "99999999999999999999", "x1", "007"]


@dataclass(frozen=True)
class Spec:
    """Everything that determines a case; the rest is drawn from ``seed``.

    ``rows``: rows of each file (0 = an empty file). ``row_group``: Parquet row-group size.
    ``block_rows``/``shuffle_rows``: hpcframe.config values the case runs with (small blocks
    spread the data over ranks and exercise the combines; ``shuffle_rows=0`` forces the hash
    shuffle of group-bys). ``specials``: probability of NaN/±inf/null/limit values.
    ``big_ints``: the int column "i" holds values near the int64 limits.
    """

    seed: int
    layout: str = "parquet"
    rows: tuple = (50, 0, 30)
    row_group: int = 16
    block_rows: int = 16
    shuffle_rows: int = 200_000
    specials: float = 0.1
    big_ints: bool = False
    nqueries: int = 20

    @staticmethod
    def from_seed(seed: int, nqueries: int = 20) -> Spec:
        """A spec drawn from ``seed`` alone (for the fixed-seed parametrized cases)."""
        rng = np.random.default_rng([seed, 0x5EED])
        layout = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
        nfiles = int(rng.integers(1, 5))
        rows = tuple(
            int(r) for r in rng.choice([0, 1, 3, 17, 40, 90], nfiles, p=[0.15, 0.1, 0.15, 0.2, 0.2, 0.2])
        )
        # at most ~24 blocks per case: tiny blocks on small data, and a bounded run time
        block_rows = max(int(rng.choice([2, 7, 16, 500])), -(-sum(rows) // 24))
        return Spec(
            seed=seed,
            layout=layout,
            rows=rows,
            row_group=int(rng.choice([1, 4, 16, 64])),
            block_rows=block_rows,
            shuffle_rows=int(rng.choice([0, 200_000])),
            specials=float(rng.choice([0.0, 0.05, 0.2, 0.5])),
            big_ints=bool(rng.random() < 0.4),
            nqueries=nqueries,
        )


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _mask(rng, n, p):
    return rng.random(n) < p


def _ints(rng, n, big, specials):
    if not big:
        v = rng.integers(-100, 100, n)
    else:
        base = rng.choice([2**62, -(2**62), 2**63 - 1000, -(2**63) + 1000, 2**53], n)
        v = base + rng.integers(-500, 500, n)
    v = v.astype(np.int64)
    if specials and n:
        lim = _mask(rng, n, specials / 4)
        v[lim] = rng.choice(np.array([2**63 - 1, -(2**63), 2**53 + 1, 0], dtype=np.int64), int(lim.sum()))
    return v


def make_table(spec: Spec, nrows: int, rng, tz: str, scale: int) -> pa.Table:
    """One file's rows (all columns of :data:`KINDS`)."""
    n, p = nrows, spec.specials
    k = rng.integers(0, 5, n).astype(np.int64)
    ks = rng.choice(["a", "bb", "c"], n).astype(object)
    ks[_mask(rng, n, p)] = None
    i = _ints(rng, n, spec.big_ints, p)
    nn = rng.integers(-50, 50, n).astype(np.int64)
    nn_null = _mask(rng, n, max(p, 0.05))
    # dyadic floats (exact sums) mixed with continuous ones
    f = np.where(rng.random(n) < 0.5, rng.integers(-800, 800, n) / 8.0, rng.normal(30.0, 10.0, n))
    f_null = _mask(rng, n, p / 2)
    if p and n:
        sp = _mask(rng, n, p)
        f[sp] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300], int(sp.sum()))
    g = rng.choice(np.array([0.1, 0.5, 1.7, 2.0, -3.3, 100.25], dtype=np.float32), n)
    g = np.where(rng.random(n) < 0.3, rng.normal(0, 5, n).astype(np.float32), g).astype(np.float32)
    if p and n:
        g[_mask(rng, n, p / 2)] = np.nan
    digits = rng.integers(10**15, 10**17, n) * rng.choice([1, -1], n)
    dec = [decimal.Decimal(int(d)).scaleb(-scale) for d in digits]
    dec = [None if m else v for v, m in zip(dec, _mask(rng, n, p / 2))]
    day = np.datetime64("2020-01-01") + rng.integers(-400, 400, n).astype("timedelta64[D]")
    day_null = _mask(rng, n, p / 2)
    ts = (
        np.datetime64("2021-03-28T00:00:00", "us")
        + rng.integers(0, 3 * 86400 * 10**6, n).astype("timedelta64[us]")
    ).astype("int64")
    ts_null = _mask(rng, n, p / 2)
    b = rng.random(n) < 0.5
    b_null = _mask(rng, n, p)
    flag = rng.random(n) < 0.4
    cats = np.array(["hi", "lo", "mid"])
    codes = rng.integers(0, 3, n).astype(np.int32)
    cat_null = _mask(rng, n, p / 2)
    letters = np.array(list("abc"))
    s = np.array(["".join(rng.choice(letters, int(m))) for m in rng.integers(1, 4, n)], dtype=object)
    s[_mask(rng, n, p / 2)] = None
    return pa.table(
        {
            "k": pa.array(k, pa.int64()),
            "ks": pa.array(ks, pa.string()),
            "i": pa.array(i, pa.int64()),
            "nn": pa.array(nn, pa.int64(), mask=nn_null),
            "f": pa.array(f, pa.float64(), mask=f_null),
            "g": pa.array(g, pa.float32()),
            "dec": pa.array(dec, pa.decimal128(18, scale)),
            "day": pa.array(day.astype("datetime64[D]"), pa.date32(), mask=day_null),
            "ts": pa.array(ts, pa.timestamp("us", tz=tz), mask=ts_null),
            "b": pa.array(b, pa.bool_(), mask=b_null),
            "flag": pa.array(flag, pa.bool_()),
            "cat": pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32(), mask=cat_null), pa.array(cats)),
            "s": pa.array(s, pa.string()),
        }
    )


@dataclass
class Case:
    """A generated data set: where it lives, how hpcframe opens it, what pandas makes of it."""

    spec: Spec
    root: str
    pdf: pd.DataFrame
    kinds: dict
    open_src: str  # Python source that opens it (for repros)
    write: Callable[[], None]  # writes the files (rank 0 only)
    open: Callable[[], Any]  # the hpcframe Frame
    hive: list = field(default_factory=list)
    nfiles: int = 0


def _hive_ref_column(values):
    """int64 if every value is a decimal integer that fits int64, else str (the docs' rule)."""

    def fits(v):
        t = str(v)
        return t.lstrip("-").isdigit() and -(2**63) <= int(t) < 2**63

    if all(fits(v) for v in values):
        return "int64"
    return "str"


def build_case(spec: Spec, root: str) -> Case:
    """Describe the case of ``spec`` stored under ``root`` (writes nothing; ``case.write()``
    does). Deterministic in ``spec``."""
    import hpcframe as hf

    rng = np.random.default_rng([spec.seed, 1])
    tz = TIMEZONES[int(rng.integers(len(TIMEZONES)))]
    scale = int(rng.choice([0, 2, 6, 9]))
    tables = [make_table(spec, n, rng, tz, scale) for n in spec.rows]
    layout = spec.layout
    kinds = dict(KINDS)
    hive: list = []

    if layout in ("parquet", "rowgroups"):
        # files at several depths; the reader's order is the sorted relative path
        rels = []
        for j in range(len(tables)):
            depth = int(rng.integers(0, 3))
            parts = [f"d{int(rng.integers(0, 3))}" for _ in range(depth)]
            rels.append(os.path.join(*parts, f"part-{j}.parquet") if parts else f"z{j}.parquet")
        order = sorted(range(len(tables)), key=lambda j: rels[j].split(os.sep))
        empty_rg = layout == "rowgroups"

        def write():
            for j, t in enumerate(tables):
                path = os.path.join(root, rels[j])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if empty_rg:  # row groups of irregular sizes, with empty ones in between
                    with pq.ParquetWriter(path, t.schema) as w:
                        start = 0
                        r = np.random.default_rng([spec.seed, 2, j])
                        while start < t.num_rows:
                            step = int(r.integers(1, max(2, spec.row_group * 2)))
                            w.write_table(t.slice(start, step), row_group_size=max(1, step))
                            if r.random() < 0.3:
                                w.write_table(t.schema.empty_table())
                            start += step
                        if t.num_rows == 0:
                            w.write_table(t.schema.empty_table())
                else:
                    pq.write_table(t, path, row_group_size=spec.row_group)

        full = pa.concat_tables([tables[j] for j in order])
        pdf = arrow_to_pandas(full)
        open_src = f"df = hf.read_parquet({root!r})"
        opener = lambda: hf.read_parquet(root)  # noqa: E731
        nfiles = len(tables)
    elif layout == "hive":
        odd = rng.random() < 0.25
        keys = ["hk", "hj"][: int(rng.integers(1, 3))]
        choices = []
        for _ in range(len(tables)):
            vals = []
            for key_i in range(len(keys)):
                pool = list(HIVE_VALUES[(spec.seed + key_i) % len(HIVE_VALUES)])
                if odd and key_i == 0:
                    pool = pool + HIVE_ODD_VALUES[: 1 + int(rng.integers(len(HIVE_ODD_VALUES)))]
                vals.append(pool[int(rng.integers(len(pool)))])
            choices.append(vals)
        # each file goes to its own folder (j keeps paths distinct)
        rels = [
            os.path.join(*[f"{k}={v}" for k, v in zip(keys, vals)], f"part-{j}.parquet")
            for j, vals in enumerate(choices)
        ]
        order = sorted(range(len(tables)), key=lambda j: rels[j].split(os.sep))

        def write():
            for j, t in enumerate(tables):
                path = os.path.join(root, rels[j])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                pq.write_table(t, path, row_group_size=spec.row_group)

        pdf = arrow_to_pandas(pa.concat_tables([tables[j] for j in order]))
        for key_i, key in enumerate(keys):
            values = [choices[j][key_i] for j in order]
            per_row = (
                # (object: a file without rows adds a float64 [], which made -1 "-1.0")
                np.concatenate(
                    [np.array([values[m]] * tables[j].num_rows, dtype=object) for m, j in enumerate(order)]
                )
                if len(pdf)
                else np.array([], dtype=object)
            )
            if _hive_ref_column([choices[j][key_i] for j in range(len(tables))]) == "int64":
                pdf[key] = pd.Series(per_row.astype(np.int64) if len(per_row) else [], dtype="int64")
                kinds[key] = "int"
            else:
                pdf[key] = pd.Series([str(v) for v in per_row], dtype="str")
                kinds[key] = "str"
        hive = [k for k in keys if kinds[k] == "int"]  # int64 hive columns (normalised)
        open_src = f"df = hf.read_parquet({root!r})"
        opener = lambda: hf.read_parquet(root)  # noqa: E731
        nfiles = len(tables)
    elif layout == "h5_pandas":
        cols = H5_PANDAS_COLUMNS
        # pandas writes no table for an empty frame (nothing to read back): non-empty files only
        tables = [t for t in tables if t.num_rows] or [make_table(spec, 1, rng, tz, scale)]
        frames = [arrow_to_pandas(t.select(cols)) for t in tables]
        for fr in frames:
            fr["day"] = fr["day"].astype("datetime64[ns]")  # what to_hdf stores
            for c in ("ks", "s"):
                fr[c] = fr[c].astype(object)
        paths = [os.path.join(root, f"part-{j}.h5") for j in range(len(tables))]

        def write():
            os.makedirs(root, exist_ok=True)
            for pth, fr in zip(paths, frames):
                fr.to_hdf(
                    pth, key="t", format="table", mode="w", data_columns=["k", "i"] if spec.seed % 2 else None
                )

        pdf = pd.concat(frames, ignore_index=True) if frames else None
        for c in ("ks", "s"):
            pdf[c] = pdf[c].astype("str")
        kinds = {c: KINDS[c] for c in cols}
        open_src = f"df = hf.read_hdf({paths!r}, key='t')"
        opener = lambda: hf.read_hdf(paths, key="t")  # noqa: E731
        nfiles = len(tables)
    elif layout == "h5_columns":
        import h5py

        cols = sorted(H5_COLUMNS_COLUMNS)  # the group's (alphabetical) order
        frames = []
        for t in tables:
            fr = arrow_to_pandas(t.select(cols))
            fr["f"] = fr["f"].astype("float64")
            fr["s"] = fr["s"].where(fr["s"].notna(), "").astype("str")  # no nulls in S bytes
            frames.append(fr)
        paths = [os.path.join(root, f"part-{j}.h5") for j in range(len(tables))]
        chunk = max(1, spec.row_group)
        compound = bool(rng.random() < 0.4)

        def write():
            os.makedirs(root, exist_ok=True)
            for pth, fr in zip(paths, frames):
                arrays = {
                    c: np.array([v.encode() for v in fr[c]], dtype="S4") if c == "s" else fr[c].to_numpy()
                    for c in cols
                }
                with h5py.File(pth, "w") as fh:
                    if compound:  # one 1-D structured dataset, its fields are the columns
                        rec = np.zeros(len(fr), dtype=[(c, arrays[c].dtype) for c in cols])
                        for c in cols:
                            rec[c] = arrays[c]
                        fh.create_dataset("t", data=rec, shape=(len(fr),), chunks=(chunk,), maxshape=(None,))
                        continue
                    grp = fh.create_group("t")
                    for c in cols:  # a group of equal-length 1-D datasets
                        grp.create_dataset(
                            c,
                            data=arrays[c],
                            shape=(len(fr),),
                            dtype=arrays[c].dtype,
                            chunks=(chunk,),
                            maxshape=(None,),
                        )

        pdf = pd.concat(frames, ignore_index=True)
        kinds = {c: KINDS[c] for c in cols}
        open_src = f"df = hf.read_hdf({paths!r}, key='t')"
        opener = lambda: hf.read_hdf(paths, key="t")  # noqa: E731
        nfiles = len(tables)
    elif layout == "pandas":
        pdf = arrow_to_pandas(pa.concat_tables(tables))
        nparts = int(rng.integers(1, 6))
        src_df = pdf.copy()
        open_src = f"df = hf.from_pandas(pdf, npartitions={nparts})  # pdf: the reference frame"
        opener = lambda: hf.from_pandas(src_df, npartitions=nparts)  # noqa: E731
        write = lambda: None  # noqa: E731
        nfiles = 0
    else:  # pragma: no cover
        raise ValueError(layout)
    pdf = pdf.reset_index(drop=True)
    return Case(spec, root, pdf, kinds, open_src, write, opener, hive, nfiles)


# ---------------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------------
@dataclass
class Ex:
    """An expression over the current frame ``{d}``: source template and evaluator
    ``fn(frame, is_pandas)``; ``kind`` as in :data:`KINDS` ("mask" for boolean masks)."""

    src: str
    fn: Callable
    kind: str

    def code(self, d: str) -> str:
        return self.src.replace("{d}", d)


@dataclass
class Step:
    src: str  # "{d}" = current frame name
    fn: Callable  # (frame, is_pandas) -> frame
    kinds: dict  # the column kinds after this step


@dataclass
class Query:
    steps: list
    final_src: str
    final: Callable  # (frame, is_pandas) -> result
    exact: bool  # exact comparison (else rtol)
    ill: bool = False  # ill-conditioned (var/std of huge ints): looser rtol
    sort_index: bool = False  # row order not specified (categorical keys)
    value_counts: bool = False
    f32: bool = False  # a floating-point aggregate over float32 values
    int_nulls: bool = False  # aggregates "nn" (int64 with nulls)

    @property
    def is_len(self) -> bool:
        """``frame.len()`` (a lazy int) is compared with pandas' ``len(frame)`` (a Python int)."""
        return self.final_src == "{d}.len()"

    def run(self, frame, is_pandas: bool):
        for st in self.steps:
            frame = st.fn(frame, is_pandas)
        return self.final(frame, is_pandas)

    def source(self, open_src: str = "df = ...") -> str:
        lines = ["import datetime, numpy as np, pandas as pd, hpcframe as hf", open_src]
        d = "df"
        for j, st in enumerate(self.steps):
            new = f"d{j + 1}"
            lines.append(f"{new} = {st.src.replace('{d}', d)}")
            d = new
        lines.append(f"print({self.final_src.replace('{d}', d)})")
        return "\n".join(lines)


def _lit(v) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return "float('nan')"
        if np.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
        return repr(v)
    if isinstance(v, np.floating):
        return f"np.{type(v).__name__}({float(v)!r})"
    if isinstance(v, pd.Timestamp):
        return f"pd.Timestamp({str(v)!r})"
    if isinstance(v, datetime.date):
        return f"datetime.date({v.year}, {v.month}, {v.day})"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    return repr(v)


def _col(c, kind):
    return Ex(f"{{d}}.{c}", lambda d, p, c=c: d[c], kind)


def _sample_values(series: pd.Series, rng, k):
    vals = series.dropna()
    if len(vals) == 0:
        return []
    picks = vals.iloc[rng.integers(0, len(vals), k)]
    return list(picks)


def _py(v):
    """numpy scalar -> Python scalar (as a user would type it)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _const_for(kind, series, rng):
    vals = _sample_values(series, rng, 1)
    r = rng.random()
    if kind in ("int", "nn"):
        specials = [0, 1.5, 2**53 + 1, 2**63 - 1, -(2**63), 4611686018427387904]
    elif kind in ("float", "num", "dec"):
        specials = [0.0, float("inf"), -float("inf"), float("nan"), 0.1, 12.5]
    elif kind == "f32":
        specials = [0.1, 1.7, float(np.float32(0.1)), 0.5, -3.3]
    elif kind == "date":
        specials = [datetime.date(2020, 1, 1), pd.Timestamp("2020-01-01")]
        if vals and rng.random() < 0.5:
            return datetime.date(vals[0].year, vals[0].month, vals[0].day)
    elif kind == "ts":
        specials = [pd.Timestamp("2021-03-29 12:00", tz="UTC")]
    elif kind in ("str", "cat"):
        specials = ["a", "zz", "hi"]
    else:
        specials = [True]
    if vals and r < 0.7:
        v = _py(vals[0])
        if kind == "dec":
            return float(v)
        return v
    return specials[int(rng.integers(len(specials)))]


OPS = ["==", "!=", "<", "<=", ">", ">="]
_OPF = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _leaf_mask(rng, kinds, pdf) -> Ex:
    cols = [c for c in kinds if kinds[c] != "mask"]
    c = cols[int(rng.integers(len(cols)))]
    kind = kinds[c]
    col = _col(c, kind)
    r = rng.random()
    if kind == "bool":
        if r < 0.6:
            return Ex(col.src, col.fn, "mask")
        return Ex(f"({col.src} == True)", lambda d, p: col.fn(d, p) == True, "mask")  # noqa: E712
    if kind == "boolnull":
        if r < 0.4:
            return Ex(f"({col.src} == True)", lambda d, p: col.fn(d, p) == True, "mask")  # noqa: E712
        if r < 0.7:
            return Ex(f"{col.src}.isna()", lambda d, p: col.fn(d, p).isna(), "mask")
        return Ex(f"{col.src}.isin([False])", lambda d, p: col.fn(d, p).isin([False]), "mask")
    if r < 0.1:
        return Ex(f"{col.src}.isna()", lambda d, p: col.fn(d, p).isna(), "mask")
    if r < 0.15:
        return Ex(f"{col.src}.notna()", lambda d, p: col.fn(d, p).notna(), "mask")
    if r < 0.3:
        vals = [_const_for(kind, pdf[c], rng) for _ in range(int(rng.integers(1, 4)))]
        if kind in ("float", "f32", "num", "dec", "str", "cat") and rng.random() < 0.3:
            vals.append([float("nan"), None][int(rng.integers(2))])
        vals = [v for v in vals if not isinstance(v, datetime.date) or isinstance(v, datetime.datetime)]
        return Ex(f"{col.src}.isin({_lit(vals)})", lambda d, p, v=vals: col.fn(d, p).isin(v), "mask")
    if kind in ("str", "cat") and r < 0.5:
        meth = ["startswith", "endswith", "contains"][int(rng.integers(3))]
        pat = ["a", "b", "h", "o", "bb", "i"][int(rng.integers(6))]

        def strf(d, p, meth=meth, pat=pat):
            acc = col.fn(d, p).str
            if p:  # hpcframe documents na=False; for a category pandas gives NaN otherwise
                return getattr(acc, meth)(pat, na=False).astype(bool)
            return getattr(acc, meth)(pat)

        return Ex(f"{col.src}.str.{meth}({pat!r})", strf, "mask")
    if kind in ("int", "float", "f32", "num", "dec") and r < 0.4:
        a, b = sorted(
            [_const_for(kind, pdf[c], rng) for _ in range(2)],
            key=lambda v: (np.isnan(v) if isinstance(v, float) else False, v),
        )
        return Ex(
            f"{col.src}.between({_lit(a)}, {_lit(b)})",
            lambda d, p, a=a, b=b: col.fn(d, p).between(a, b),
            "mask",
        )
    op = OPS[int(rng.integers(len(OPS)))]
    if kind in ("int", "float", "f32", "num", "dec") and r < 0.55:
        others = [o for o in cols if kinds[o] in NUMERIC and o != c]
        if others:
            o = others[int(rng.integers(len(others)))]
            oc = _col(o, kinds[o])
            return Ex(
                f"({col.src} {op} {oc.src})", lambda d, p, op=op: _OPF[op](col.fn(d, p), oc.fn(d, p)), "mask"
            )
    if kind in ("str", "cat", "boolnull") and op not in ("==", "!="):
        op = "=="
    v = _const_for(kind, pdf[c], rng)
    return Ex(f"({col.src} {op} {_lit(v)})", lambda d, p, op=op, v=v: _OPF[op](col.fn(d, p), v), "mask")


def _mask_expr(rng, kinds, pdf, depth=0) -> Ex:
    r = rng.random()
    if depth >= 2 or r < 0.45:
        return _leaf_mask(rng, kinds, pdf)
    if r < 0.65:
        a, b = _mask_expr(rng, kinds, pdf, depth + 1), _mask_expr(rng, kinds, pdf, depth + 1)
        return Ex(f"({a.src} & {b.src})", lambda d, p: a.fn(d, p) & b.fn(d, p), "mask")
    if r < 0.85:
        a, b = _mask_expr(rng, kinds, pdf, depth + 1), _mask_expr(rng, kinds, pdf, depth + 1)
        return Ex(f"({a.src} | {b.src})", lambda d, p: a.fn(d, p) | b.fn(d, p), "mask")
    a = _mask_expr(rng, kinds, pdf, depth + 1)
    return Ex(f"~{a.src}", lambda d, p: ~a.fn(d, p), "mask")


def _num_expr(rng, kinds, pdf) -> Ex:
    nums = [c for c in kinds if kinds[c] in NUMERIC]
    a = nums[int(rng.integers(len(nums)))]
    ca = _col(a, kinds[a])
    r = rng.random()
    op = ["+", "-", "*"][int(rng.integers(3))]
    f = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}[op]
    if r < 0.5:
        b = nums[int(rng.integers(len(nums)))]
        cb = _col(b, kinds[b])
        kind = "int" if kinds[a] == kinds[b] == "int" else "num"
        if kinds[a] == kinds[b] == "f32":
            kind = "f32"
        return Ex(f"({ca.src} {op} {cb.src})", lambda d, p: f(ca.fn(d, p), cb.fn(d, p)), kind)
    v = [2, 0.5, -1, 3][int(rng.integers(4))]
    kind = "int" if kinds[a] == "int" and isinstance(v, int) else "f32" if kinds[a] == "f32" else "num"
    return Ex(f"({ca.src} {op} {v!r})", lambda d, p: f(ca.fn(d, p), v), kind)


def _step(rng, kinds, pdf):
    """A filter, an assign or a column selection over the current frame (or None)."""
    r = rng.random()
    if r < 0.55:
        m = _mask_expr(rng, kinds, pdf)
        return Step(f"{{d}}[{m.src}]", lambda d, p: d[m.fn(d, p)], dict(kinds))
    if r < 0.85:
        if rng.random() < 0.7:
            e = _num_expr(rng, kinds, pdf)
        else:
            e = _mask_expr(rng, kinds, pdf)
            e = Ex(e.src, e.fn, "bool")
        name = f"z{int(rng.integers(0, 3))}"
        new = dict(kinds)
        new[name] = e.kind
        return Step(f"{{d}}.assign({name}={e.code('{d}')})", lambda d, p: d.assign(**{name: e.fn(d, p)}), new)
    keep = [c for c in kinds if rng.random() < 0.6] or [list(kinds)[0]]
    new = {c: kinds[c] for c in keep}
    return Step(f"{{d}}[{keep!r}]", lambda d, p: d[keep], new)


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _terminal(rng, kinds, big_ints):
    """(source, fn, exact, ill, sort_index, value_counts). ``ill``: a floating-point aggregate
    of int columns holding values near the int64 limits (or expressions of them), where any
    summation order loses digits: compared with a tolerance relative to the values' scale."""
    cols = list(kinds)
    nums = [c for c in cols if kinds[c] in NUMERIC]
    ordered = [c for c in cols if kinds[c] in NUMERIC + ("date", "ts", "str")]
    r = rng.random()
    big = lambda c: big_ints and kinds[c] in ("int", "num")  # noqa: E731  (see make_queries)
    fl = ("mean", "var", "std", "sum")
    if r < 0.3 and (nums or ordered):
        c = _pick(rng, ordered or nums)
        aggs = ["count", "nunique", "min", "max"]
        if kinds[c] in NUMERIC:
            aggs += ["sum", "mean", "var", "std", "sum", "mean"]
        if kinds[c] == "date" or kinds[c] == "ts":
            aggs += ["mean"]
        a = _pick(rng, aggs)
        exact = a in ("count", "nunique", "min", "max") or kinds[c] == "int" and a == "sum"
        return (
            f"{{d}}.{c}.{a}()",
            lambda d, p: getattr(d[c], a)(),
            exact,
            a in fl and not exact and big(c),
            False,
            False,
        )
    if r < 0.4 and nums:
        sel = [c for c in nums if rng.random() < 0.6] or nums[:1]
        a = _pick(rng, ["sum", "mean", "min", "max", "count", "var", "std", "nunique"])
        exact = a in ("count", "nunique", "min", "max")
        return (
            f"{{d}}[{sel!r}].{a}()",
            lambda d, p: getattr(d[sel], a)(),
            exact,
            a in fl and any(big(c) for c in sel),
            False,
            False,
        )
    if r < 0.7:
        keyable = [
            c
            for c in cols
            if kinds[c] in ("int", "str", "cat", "boolnull", "bool", "date", "ts", "float", "f32")
        ]
        if not keyable:
            return ("{d}.len()", lambda d, p: len(d) if p else d.len(), True, False, False, False)
        keys = [_pick(rng, keyable)]
        if rng.random() < 0.4:
            k2 = _pick(rng, keyable)
            if k2 not in keys:
                keys.append(k2)
        dropna = bool(rng.random() < 0.6)
        vals = [c for c in cols if c not in keys and kinds[c] in NUMERIC + ("str",)]
        a = _pick(
            rng, ["sum", "mean", "min", "max", "count", "var", "std", "nunique", "size", "first", "last"]
        )
        if a in ("sum", "mean", "var", "std"):
            vals = [c for c in vals if kinds[c] in NUMERIC]
        sel = [c for c in vals if rng.random() < 0.5] or vals[:1]
        # row order unspecified: categorical keys, and (documented in the user guide's differences
        # from pandas) bool keys with nulls kept by dropna=False, whose groups pandas cannot sort
        # and leaves in order of first appearance, where hpcframe sorts them (False, True, NaN)
        sort_index = any(kinds[k] == "cat" or (kinds[k] == "boolnull" and not dropna) for k in keys)
        exact = a in ("count", "nunique", "min", "max", "size", "first", "last")
        ill = a in fl and any(big(c) for c in sel)
        kw = "" if dropna else ", dropna=False"
        by = keys[0] if len(keys) == 1 and rng.random() < 0.5 else keys
        if a == "size" or not sel:
            return (
                f"{{d}}.groupby({by!r}{kw}).size()",
                lambda d, p: d.groupby(by, dropna=dropna).size(),
                True,
                False,
                sort_index,
                False,
            )
        if len(sel) == 1 and rng.random() < 0.5:
            s = sel[0]
            return (
                f"{{d}}.groupby({by!r}{kw}).{s}.{a}()",
                lambda d, p: getattr(d.groupby(by, dropna=dropna)[s], a)(),
                exact,
                ill,
                sort_index,
                False,
            )
        if rng.random() < 0.3 and len(sel) >= 1:
            spec = {c: [a, "count"] if a != "count" else ["count"] for c in sel}
            return (
                f"{{d}}.groupby({by!r}{kw}).agg({spec!r})",
                lambda d, p: d.groupby(by, dropna=dropna).agg(spec),
                False if not exact else exact,
                ill,
                sort_index,
                False,
            )
        return (
            f"{{d}}.groupby({by!r}{kw})[{sel!r}].{a}()",
            lambda d, p: getattr(d.groupby(by, dropna=dropna)[sel], a)(),
            exact,
            ill,
            sort_index,
            False,
        )
    if r < 0.78:
        n = int(rng.choice([0, 1, 3, 10, 1000]))
        return (
            f"{{d}}.head({n})",
            lambda d, p: d.head(n).reset_index(drop=True) if p else d.head(n),
            True,
            False,
            False,
            False,
        )
    if r < 0.85 and nums:
        if rng.random() < 0.5:
            sel = [c for c in nums if rng.random() < 0.6] or nums[:1]
            return (
                f"{{d}}[{sel!r}].describe()",
                lambda d, p: _describe(d[sel], p),
                False,
                any(big(c) for c in sel),
                False,
                False,
            )
        c = _pick(rng, nums)
        return (f"{{d}}.{c}.describe()", lambda d, p: _describe(d[c], p), False, big(c), False, False)
    if r < 0.9:
        c = _pick(rng, [c for c in cols if kinds[c] not in ("num",)] or cols)
        dropna = bool(rng.random() < 0.7)
        kw = "" if dropna else "dropna=False"
        return (
            f"{{d}}.{c}.value_counts({kw})",
            lambda d, p: d[c].value_counts(dropna=dropna),
            True,
            False,
            False,
            True,
        )
    if r < 0.93:
        return ("{d}.len()", lambda d, p: len(d) if p else d.len(), True, False, False, False)
    return ("{d}.compute()", lambda d, p: d.reset_index(drop=True) if p else d, True, False, False, False)


def _aggregated_columns(src: str) -> set:
    """Column names a terminal's source aggregates (``.c.``, ``'c'``; group keys excluded)."""
    src = re.sub(r"groupby\((\[[^\]]*\]|'[^']*')", "groupby(", src)
    return {a or b for a, b in re.findall(r"\.(\w+)\.|'(\w+)'", src)}


def make_queries(case: Case, n: int) -> list[Query]:
    """``n`` random queries for ``case`` (deterministic in the case's seed)."""
    rng = np.random.default_rng([case.spec.seed, 3])
    out = []
    for _ in range(n):
        kinds, pdf, steps = dict(case.kinds), case.pdf, []
        for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
            st = _step(rng, kinds, pdf)
            try:
                pdf = st.fn(pdf, True)
            except Exception:  # pandas refuses: keep the step, the query then expects an error
                steps.append(st)
                break
            steps.append(st)
            kinds = st.kinds
        src, fn, exact, ill, sort_index, vc = _terminal(  # ill: int64 limits
            rng, kinds, case.spec.big_ints or case.spec.specials > 0
        )
        f32 = not exact and any(kinds.get(c) == "f32" for c in _aggregated_columns(src))
        out.append(Query(steps, src, fn, exact, ill, sort_index, vc, f32, "nn" in _aggregated_columns(src)))
    return out


def _describe(obj, pandas_side):
    """``obj.describe()``; on the pandas side, int64 columns are described as float64 first.

    pandas interpolates the quartiles of an int64 column in int64, where ``b - a`` wraps for
    values more than 2**63 apart (its 25% can then exceed its 50%): hpcframe interpolates in
    float64, as pandas does for a float64 column. The oracle is pandas on the float64 values,
    which is what pandas gives wherever int64 does not wrap."""
    if not pandas_side:
        return obj.describe()
    if isinstance(obj, pd.Series):
        return obj.astype("float64").describe() if obj.dtype.kind in "iu" else obj.describe()
    ints = [c for c in obj.columns if obj[c].dtype.kind in "iu"]
    return obj.astype({c: "float64" for c in ints}).describe()
