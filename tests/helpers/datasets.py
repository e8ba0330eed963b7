"""Deterministic test data sets for the hpcframe correctness suite, and their pandas references.

``build_all(root)`` writes every data set under ``root`` (call it on ONE rank only);
``catalog(root)`` describes them without writing anything (call it on every rank). Each
:class:`Dataset` knows how to open itself with hpcframe (``ds.open()``) and what plain pandas
makes of the same data (``ds.pdf``, built with the documented type mapping, see
:func:`arrow_to_pandas`).

All data sets of kind "full" share one logical schema (see :func:`make_table`) so that the same
query can run against every layout; the HDF5 ones only have the numeric "core" columns.

Logical columns
---------------
id      int64, 0..n-1 in dataset order (unique; tells the row order)
carrier string key, ~3% missing            origin  string key, never missing
ki      int64 key 0..4                     kf      float64 key {0.5, 1.5, 2.5, NaN}
x       float64 ~N(10, 5), ~5% NaN         y       float64 U(0, 1)
n       int64 0..999                       nn      int64 with ~10% nulls
name    string of letters a-e, ~2% missing (for str.startswith / str.contains)
flag    bool                               cat     dictionary<int32, string> {hi, lo, mid}
price   decimal128(10, 2), ~5% null        day     date32
ts      timestamp[us]                      tsz     timestamp[ms, tz=Europe/Paris]
noisy   float64 1e9 + N(0, 1): ill-conditioned for var/std
ls      large_string                       sv      string_view
"""

from __future__ import annotations

import decimal
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240611
CARRIERS = ["AA", "B6", "DL", "EV", "MQ", "UA", "US", "WN"]
CATEGORIES = ["hi", "lo", "mid"]  # written so that every chunk meets them in this order first
CORE_COLUMNS = ["id", "ki", "kf", "x", "y", "n", "noisy"]  # what the HDF5 data sets have
INT_NULL_COLUMNS = {"nn"}  # ints with nulls: pandas gives float64; the spec leaves the dtype open
DECIMAL_COLUMNS = {"price"}
HIVE_COLUMNS = ["year", "month"]
DIR6_ROWS_PER_FILE = 500
DIR6_FILES = 6


# --------------------------------------------------------------------------------------------
# data generation
# --------------------------------------------------------------------------------------------
def make_table(n: int, seed: int, start_id: int = 0, block: int | None = None) -> pa.Table:
    """``n`` rows of the logical schema, deterministic in ``seed``.

    ``block``: the rows will be written in chunks (row groups) of this many rows; the first
    three rows of every chunk get the categories in sorted order so that every reader meets
    them in the same order (the category order then does not depend on how data is split).
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(start_id, start_id + n, dtype=np.int64)

    def missing(p):
        return rng.random(n) < p

    carrier = rng.choice(CARRIERS, n, p=[0.2, 0.15, 0.15, 0.1, 0.1, 0.12, 0.08, 0.1]).astype(object)
    carrier[missing(0.03)] = None
    origin = rng.choice(["EWR", "JFK", "LGA"], n)
    ki = rng.integers(0, 5, n).astype(np.int64)
    kf = rng.choice([0.5, 1.5, 2.5, np.nan], n, p=[0.3, 0.3, 0.3, 0.1])
    x = rng.normal(10.0, 5.0, n)
    x[missing(0.05)] = np.nan
    y = rng.random(n)
    nvals = rng.integers(0, 1000, n).astype(np.int64)
    nn = rng.integers(-50, 50, n).astype(np.int64)
    nn_mask = missing(0.10)
    letters = np.array(list("abcde"))
    lens = rng.integers(1, 6, n)
    name = np.array(["".join(rng.choice(letters, k)) for k in lens], dtype=object)
    name[missing(0.02)] = None
    flag = rng.random(n) < 0.4
    cat_codes = rng.integers(0, 3, n).astype(np.int32)
    if block:
        for b in range(0, n, block):
            for j in range(3):
                if b + j < n:
                    cat_codes[b + j] = j
    cents = rng.integers(0, 10**5, n)
    price = [decimal.Decimal(int(c)).scaleb(-2) for c in cents]
    price_mask = missing(0.05)
    price = [None if m else p for p, m in zip(price, price_mask)]
    day = np.datetime64("2013-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]")
    ts = np.datetime64("2013-01-01T00:00:00", "us") + rng.integers(0, 365 * 86400 * 10**6, n).astype(
        "timedelta64[us]"
    )
    tsz = np.datetime64("2013-01-01T00:00:00", "ms") + rng.integers(0, 365 * 86400 * 10**3, n).astype(
        "timedelta64[ms]"
    )
    noisy = 1e9 + rng.normal(0.0, 1.0, n)
    ls = np.array([f"v{k}" for k in ki], dtype=object)
    sv = np.array([f"w{k}{o}" for k, o in zip(ki, origin)], dtype=object)

    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "carrier": pa.array(carrier, pa.string()),
            "origin": pa.array(origin, pa.string()),
            "ki": pa.array(ki, pa.int64()),
            "kf": pa.array(kf, pa.float64()),  # NaN stays NaN (not null), like pandas
            "x": pa.array(x, pa.float64()),
            "y": pa.array(y, pa.float64()),
            "n": pa.array(nvals, pa.int64()),
            "nn": pa.array(nn, pa.int64(), mask=nn_mask),
            "name": pa.array(name, pa.string()),
            "flag": pa.array(flag, pa.bool_()),
            "cat": pa.DictionaryArray.from_arrays(pa.array(cat_codes, pa.int32()), pa.array(CATEGORIES)),
            "price": pa.array(price, pa.decimal128(10, 2)),
            "day": pa.array(day.astype("datetime64[D]"), pa.date32()),
            "ts": pa.array(ts, pa.timestamp("us")),
            "tsz": pa.array(tsz.astype("int64"), pa.timestamp("ms", tz="Europe/Paris")),
            "noisy": pa.array(noisy, pa.float64()),
            "ls": pa.array(ls, pa.large_string()),
            "sv": pa.array(sv, pa.string_view()),
        }
    )


def write_parquet_slices(directory: str, table: pa.Table, rows_per_file: int, row_group_size: int) -> str:
    """Write ``table`` on rank 0 as ``part0.parquet``, ``part1.parquet``, ... of
    ``rows_per_file`` rows each into the shared ``directory``; every rank waits, and a
    failure fails the test on every rank (:func:`tests.helpers.mpi.on_root`)."""
    from tests.helpers import mpi

    def write():
        os.makedirs(directory)
        for k, start in enumerate(range(0, table.num_rows, rows_per_file)):
            part = table.slice(start, rows_per_file)
            pq.write_table(part, os.path.join(directory, f"part{k}.parquet"), row_group_size=row_group_size)

    mpi.on_root(write)
    mpi.barrier()  # the files are there for every rank
    return directory


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """The documented Arrow -> pandas mapping: decimal -> float64, date -> datetime64[ms],
    string/large_string/string_view -> ``str``, dictionary -> category, timestamps keep unit
    and tz. Ints with nulls become float64 (pyarrow's default)."""
    out = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_decimal(t):
            # Python's float(Decimal) is correctly rounded; compare decimals with rtol anyway.
            s = pd.Series([np.nan if v is None else float(v) for v in col.to_pylist()], dtype="float64")
        elif pa.types.is_date(t):
            s = col.cast(pa.timestamp("ms")).to_pandas()
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            s = col.cast(pa.string()).to_pandas()
        else:
            s = col.to_pandas()
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            s = s.astype("str")
        out[name] = s.reset_index(drop=True)
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows))


# --------------------------------------------------------------------------------------------
# data set descriptions
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """One test data set: how to open it with hpcframe, and its pandas reference.

    kind: "full" (logical schema, see module doc) or "core" (numeric core columns only).
    hive: hive partition columns (their dtype is normalised to int64 before comparing).
    ordered_columns: whether hpcframe's column order is defined (False for an HDF5 group of
    1-D datasets, where the order of the datasets in the group is not specified).
    """

    name: str
    kind: str
    opener: Callable[[], object]
    reference: Callable[[], pd.DataFrame]
    nparts: int | None = None  # number of non-empty-or-empty partitions, when known
    hive: list = field(default_factory=list)
    ordered_columns: bool = True
    _pdf: pd.DataFrame | None = None

    def open(self):
        return self.opener()

    @property
    def pdf(self) -> pd.DataFrame:
        """The pandas reference (a fresh copy each time: tests may modify it)."""
        if self._pdf is None:
            self._pdf = self.reference()
        return self._pdf.copy()

    @property
    def full(self) -> bool:
        return self.kind == "full"

    def __repr__(self):  # shows up in test ids / messages
        return f"Dataset({self.name})"


def _read_ref(paths) -> pd.DataFrame:
    tables = [pq.read_table(p, partitioning=None) for p in paths]
    return arrow_to_pandas(pa.concat_tables(tables, promote_options="none")) if tables else None


def _layout(root: str) -> dict:
    """File names of every data set (shared by build_all and catalog)."""
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    return {
        "dir6": [j("dir6", f"part-{i:02d}.parquet") for i in range(DIR6_FILES)],
        "rowgroups": j("rowgroups.parquet"),
        "empty_parts": [j("empty_parts", f"part-{i:02d}.parquet") for i in range(5)],
        "glob": [j("globdir", f"part-{i:02d}.parquet") for i in range(4)],
        "one_part": j("one_part.parquet"),
        "two_parts": [j("two_parts", f"part-{i}.parquet") for i in range(2)],
        "hive": [
            (y, m, j("hive", f"year={y}", f"month={m}", "part.parquet"))
            for y in (2013, 2014)
            for m in (1, 2, 3)
        ],
        "h5_columns": j("columns.h5"),
        "h5_compound": j("compound.h5"),
        "h5_pandas": j("pandas_table.h5"),
        "h5_two_groups": j("two_groups.h5"),
        "errors": j("errors"),
    }


def build_all(root: str) -> None:
    """Write every data set under ``root``. Deterministic. Call on one rank only."""
    L = _layout(root)
    os.makedirs(root, exist_ok=True)

    # dir6: 6 files x 500 rows, one row group each (the "6-partition" data set)
    os.makedirs(os.path.dirname(L["dir6"][0]), exist_ok=True)
    for i, p in enumerate(L["dir6"]):
        t = make_table(
            DIR6_ROWS_PER_FILE, SEED + i, start_id=i * DIR6_ROWS_PER_FILE, block=DIR6_ROWS_PER_FILE
        )
        pq.write_table(t, p)

    # rowgroups: a single file of 2600 rows in row groups of 400 (the last one partial)
    pq.write_table(make_table(2600, SEED + 100, block=400), L["rowgroups"], row_group_size=400)

    # empty_parts: empty files (first, middle, last) and a file with an empty middle row group
    os.makedirs(os.path.dirname(L["empty_parts"][0]), exist_ok=True)
    schema = make_table(1, 0).schema
    empty = schema.empty_table()
    pq.write_table(empty, L["empty_parts"][0])
    t1 = make_table(300, SEED + 200, start_id=0, block=150)
    with pq.ParquetWriter(L["empty_parts"][1], schema) as w:
        w.write_table(t1.slice(0, 150))
        w.write_table(empty)
        w.write_table(t1.slice(150))
    pq.write_table(empty, L["empty_parts"][2])
    pq.write_table(make_table(400, SEED + 201, start_id=300, block=400), L["empty_parts"][3])
    pq.write_table(empty, L["empty_parts"][4])

    # glob: part-*.parquet plus files the glob must NOT pick up
    gdir = os.path.dirname(L["glob"][0])
    os.makedirs(gdir, exist_ok=True)
    for i, p in enumerate(L["glob"]):
        pq.write_table(make_table(300, SEED + 300 + i, start_id=300 * i, block=300), p)
    pq.write_table(
        pa.table({"other": pa.array(["not", "part", "of", "it"])}), os.path.join(gdir, "extra-00.parquet")
    )
    with open(os.path.join(gdir, "notes.txt"), "w") as f:
        f.write("not a parquet file\n")

    # more ranks than partitions
    pq.write_table(make_table(250, SEED + 400, block=250), L["one_part"])
    os.makedirs(os.path.dirname(L["two_parts"][0]), exist_ok=True)
    for i, p in enumerate(L["two_parts"]):
        pq.write_table(make_table(150, SEED + 500 + i, start_id=150 * i, block=150), p)

    # hive: year=Y/month=M/part.parquet; year and month are NOT stored in the files
    for k, (_y, _m, p) in enumerate(L["hive"]):
        os.makedirs(os.path.dirname(p), exist_ok=True)
        pq.write_table(make_table(250, SEED + 600 + k, start_id=250 * k, block=250), p)

    # HDF5: a group of 1-D column datasets (chunked), created in alphabetical order
    core = arrow_to_pandas(make_table(2000, SEED + 700))[CORE_COLUMNS]
    with h5py.File(L["h5_columns"], "w") as f:
        g = f.create_group("flights")
        for c in sorted(CORE_COLUMNS):
            g.create_dataset(c, data=core[c].to_numpy(), chunks=(300,))

    # HDF5: one compound dataset
    core = arrow_to_pandas(make_table(1500, SEED + 701))[CORE_COLUMNS]
    rec = np.empty(len(core), dtype=[(c, core[c].dtype.str) for c in CORE_COLUMNS])
    for c in CORE_COLUMNS:
        rec[c] = core[c].to_numpy()
    with h5py.File(L["h5_compound"], "w") as f:
        f.create_dataset("table", data=rec, chunks=(250,))

    # HDF5: pandas to_hdf(format="table"), with a string column too
    core = arrow_to_pandas(make_table(1200, SEED + 702))[CORE_COLUMNS + ["carrier"]]
    core.to_hdf(L["h5_pandas"], key="flights", format="table", mode="w")

    # HDF5 with two groups, to check that ``key`` selects one
    a = arrow_to_pandas(make_table(100, SEED + 703))[CORE_COLUMNS]
    b = arrow_to_pandas(make_table(130, SEED + 704))[CORE_COLUMNS]
    with h5py.File(L["h5_two_groups"], "w") as f:
        for key, frame in (("a", a), ("b", b)):
            g = f.create_group(key)
            for c in sorted(CORE_COLUMNS):
                g.create_dataset(c, data=frame[c].to_numpy())

    # broken inputs for test_errors.py
    e = L["errors"]
    os.makedirs(os.path.join(e, "mismatch"), exist_ok=True)
    os.makedirs(os.path.join(e, "bad_member"), exist_ok=True)
    with open(os.path.join(e, "not_parquet.parquet"), "w") as f:
        f.write("this is plain text, not parquet\n" * 20)
    good = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "x": pa.array([1.0, 2.0, 3.0])})
    bad = pa.table({"a": pa.array([4, 5], pa.int64()), "x": pa.array(["four", "five"])})
    pq.write_table(good, os.path.join(e, "mismatch", "part-00.parquet"))
    pq.write_table(bad, os.path.join(e, "mismatch", "part-01.parquet"))
    pq.write_table(good, os.path.join(e, "bad_member", "part-00.parquet"))
    with open(os.path.join(e, "bad_member", "part-01.parquet"), "wb") as f:
        f.write(b"PAR1 but not really" * 10)


def catalog(root: str) -> dict[str, Dataset]:
    """Every data set, keyed by name. Writes nothing; opening needs ``hpcframe``."""
    L = _layout(root)

    def hf():
        import hpcframe

        return hpcframe

    def hive_ref():
        parts = []
        for y, m, p in L["hive"]:
            d = arrow_to_pandas(pq.read_table(p, partitioning=None))
            d["year"] = np.int64(y)
            d["month"] = np.int64(m)
            parts.append(d)
        return pd.concat(parts, ignore_index=True)

    def h5_columns_ref(path, key):
        with h5py.File(path, "r") as f:
            g = f[key]
            return pd.DataFrame({c: g[c][()] for c in sorted(CORE_COLUMNS)})

    def h5_compound_ref():
        with h5py.File(L["h5_compound"], "r") as f:
            rec = f["table"][()]
        return pd.DataFrame({c: rec[c] for c in CORE_COLUMNS})

    def from_pandas_ref():
        return _read_ref(L["dir6"])

    ds = [
        Dataset(
            "dir6",
            "full",
            lambda: hf().read_parquet(os.path.dirname(L["dir6"][0])),
            lambda: _read_ref(L["dir6"]),
            nparts=DIR6_FILES,
        ),
        Dataset(
            "rowgroups",
            "full",
            lambda: hf().read_parquet(L["rowgroups"]),
            lambda: _read_ref([L["rowgroups"]]),
            nparts=7,
        ),
        Dataset(
            "empty_parts",
            "full",
            lambda: hf().read_parquet(os.path.dirname(L["empty_parts"][0])),
            lambda: _read_ref(L["empty_parts"]),
        ),
        Dataset(
            "glob",
            "full",
            lambda: hf().read_parquet(os.path.join(os.path.dirname(L["glob"][0]), "part-*.parquet")),
            lambda: _read_ref(L["glob"]),
            nparts=4,
        ),
        Dataset(
            "filelist",
            "full",
            lambda: hf().read_parquet([L["dir6"][1], L["dir6"][3], L["dir6"][4]]),
            lambda: _read_ref([L["dir6"][1], L["dir6"][3], L["dir6"][4]]),
            nparts=3,
        ),
        Dataset(
            "one_part",
            "full",
            lambda: hf().read_parquet(L["one_part"]),
            lambda: _read_ref([L["one_part"]]),
            nparts=1,
        ),
        Dataset(
            "two_parts",
            "full",
            lambda: hf().read_parquet(os.path.dirname(L["two_parts"][0])),
            lambda: _read_ref(L["two_parts"]),
            nparts=2,
        ),
        Dataset(
            "hive",
            "full",
            lambda: hf().read_parquet(os.path.join(root, "hive")),
            hive_ref,
            nparts=6,
            hive=list(HIVE_COLUMNS),
        ),
        Dataset(
            "from_pandas",
            "full",
            lambda: hf().from_pandas(from_pandas_ref(), npartitions=4),
            from_pandas_ref,
            nparts=4,
        ),
        Dataset(
            "h5_columns",
            "core",
            lambda: hf().read_hdf(L["h5_columns"]),
            lambda: h5_columns_ref(L["h5_columns"], "flights"),
            ordered_columns=False,
        ),
        Dataset("h5_compound", "core", lambda: hf().read_hdf(L["h5_compound"]), h5_compound_ref),
        Dataset(
            "h5_pandas",
            "core",
            lambda: hf().read_hdf(L["h5_pandas"], key="flights"),
            lambda: pd.read_hdf(L["h5_pandas"], "flights").reset_index(drop=True),
        ),
    ]
    out = {d.name: d for d in ds}
    out["_layout"] = L  # paths, for tests that need a file name
    return out


# names, for parametrization: FULL have the logical schema, HDF5 only the numeric core columns
FULL = [
    "dir6",
    "rowgroups",
    "empty_parts",
    "glob",
    "filelist",
    "one_part",
    "two_parts",
    "hive",
    "from_pandas",
]
HDF5 = ["h5_columns", "h5_compound", "h5_pandas"]
ALL = FULL + HDF5


def write_tables(root: str, tables: dict, pieces: dict | None = None, row_group_size: int = 40) -> None:
    """Each Arrow table of ``tables`` as a Parquet folder ``root/<name>/part-<i>.parquet``, cut
    into ``pieces[name]`` files (default 1) of ``row_group_size``-row groups. Call on one rank
    (``tests.helpers.mpi.on_root``); a folder already there is left as it is."""
    for name, t in tables.items():
        folder = os.path.join(root, name)
        if os.path.exists(folder):
            continue
        os.makedirs(folder)
        n = (pieces or {}).get(name, 1)
        step = -(-t.num_rows // n)
        for i in range(n):
            pq.write_table(
                t.slice(i * step, step),
                os.path.join(folder, f"part-{i}.parquet"),
                row_group_size=row_group_size,
            )
