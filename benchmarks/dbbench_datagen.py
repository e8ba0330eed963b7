#!/usr/bin/env python
"""The h2oai db-benchmark group-by data (G1 layout) and join data (J1) as Parquet, made with NumPy.

    python benchmarks/dbbench_datagen.py --rows 1e7 --k 100 [--files 8] [--out /work/bench-data/dbbench]
    python benchmarks/dbbench_datagen.py --join --rows 1e7      # J1: see generate_join()

Follows ``_data/groupby-datagen.R`` of db-benchmark (``Rscript groupby-datagen.R N K 0 0``:
no missing values, random order) column by column:

=====  ======================================  ==============
id1    string ``"id%03d"``, K distinct         large groups
id2    string ``"id%03d"``, K distinct         large groups
id3    string ``"id%010d"``, N/K distinct      small groups
id4    int64 1..K                              large groups
id5    int64 1..K                              large groups
id6    int64 1..N/K                            small groups
v1     int64 1..5
v2     int64 1..15
v3     float64 uniform [0, 100), rounded to 6 digits
=====  ======================================  ==============

Every value is drawn uniformly with replacement, as R's ``sample(x, N, TRUE)``; the random
generator is NumPy's (seed 108, as the R script, but not R's stream, so the rows differ from
db-benchmark's CSV while the distribution is the same). The rows are split evenly over
``--files`` files (``part-00.parquet`` ...), each file drawn from its own child seed (so any
file can be regenerated alone), written in equal row groups of at most ``--row-group`` rows
(1e7 rows: 8 files of 2 row groups of 625,000 rows), Snappy, string
columns as plain Arrow strings (Parquet dictionary-encodes them on disk).

The dataset goes to ``OUT/G1_<N>_<K>_0_0/`` (db-benchmark's name, e.g. ``G1_1e7_1e2_0_0``),
written into a temporary folder and renamed, so an existing folder is complete and is reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

SEED = 108
DEFAULT_OUT = "/work/bench-data/dbbench"


def pretty_sci(n: int) -> str:
    """db-benchmark's short number: 10_000_000 -> "1e7", 100 -> "1e2", 5_000_000 -> "5e6"."""
    s = str(int(n))
    stripped = s.rstrip("0")
    return f"{stripped}e{len(s) - len(stripped)}" if len(stripped) == 1 else s


def dataset_dir(out: str, rows: int, k: int) -> str:
    """The folder of the G1 dataset of ``rows`` rows and ``k`` groups under ``out``."""
    return os.path.join(out, f"G1_{pretty_sci(rows)}_{pretty_sci(k)}_0_0")


def _labels(fmt: str, n: int):
    import pyarrow as pa

    return pa.array([fmt % i for i in range(1, n + 1)], type=pa.string())


def make_table(rows: int, n_total: int, k: int, seed_seq):
    """One file's rows (``rows`` of them) of the G1 data of ``n_total`` rows, ``k`` groups."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed_seq)
    small = max(n_total // k, 1)  # N/K distinct values of id3 and id6
    lab_k = _labels("id%03d", k)
    lab_small = _labels("id%010d", small)

    def draw(n_values):  # sample(n_values, rows, TRUE): 1..n_values
        return rng.integers(1, n_values + 1, size=rows, dtype=np.int64)

    # strings by taking from the label array (0-based), so no Python string per row
    id1 = lab_k.take(pa.array(draw(k) - 1))
    id2 = lab_k.take(pa.array(draw(k) - 1))
    id3 = lab_small.take(pa.array(draw(small) - 1))
    cols = {
        "id1": id1,
        "id2": id2,
        "id3": id3,
        "id4": pa.array(draw(k)),
        "id5": pa.array(draw(k)),
        "id6": pa.array(draw(small)),
        "v1": pa.array(draw(5)),
        "v2": pa.array(draw(15)),
        "v3": pa.array(np.round(rng.uniform(0.0, 100.0, size=rows), 6)),
    }
    return pa.table(cols)


def generate(rows: int, k: int, out: str = DEFAULT_OUT, files: int = 8, row_group: int = 1 << 20) -> str:
    """Write the G1 dataset (see the module docstring) unless it is already there.

    Parameters
    ----------
    rows : int
        N, the number of rows.
    k : int
        K, the number of groups of the "large group" keys.
    out : str
        The parent folder.
    files : int
        How many Parquet files the rows are split into.
    row_group : int
        The most rows of a Parquet row group (a file's row groups are of equal size).

    Returns
    -------
    str
        The dataset folder.
    """
    import numpy as np
    import pyarrow.parquet as pq

    final = dataset_dir(out, rows, k)
    if os.path.isdir(final):
        return final
    os.makedirs(out, exist_ok=True)
    staging = final + f".tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    t0 = time.perf_counter()
    children = np.random.SeedSequence(SEED).spawn(files)
    bounds = [rows * i // files for i in range(files + 1)]
    for i in range(files):
        n = bounds[i + 1] - bounds[i]
        table = make_table(n, rows, k, children[i])
        groups = max(-(-n // row_group), 1)  # equal row groups of at most row_group rows
        size = -(-n // groups)
        pq.write_table(table, os.path.join(staging, f"part-{i:02d}.parquet"), row_group_size=size)
    os.rename(staging, final)
    print(f"generated {final}: {rows:,} rows in {files} files, {time.perf_counter() - t0:.1f} s", flush=True)
    return final


# --------------------------------------------------------------------------
# the join data (J1)
# --------------------------------------------------------------------------
def join_dir(out: str, rows: int) -> str:
    """The folder of the J1 data of ``rows`` rows under ``out`` (tables ``x``, ``small``,
    ``medium`` and ``big`` in subfolders)."""
    return os.path.join(out, f"J1_{pretty_sci(rows)}_NA_0_0")


def _split_xlr(rng, n: int):
    """db-benchmark's ``split_xlr``: a permutation of 1..1.1n split into keys common to both
    sides (0.9n), keys only on the left (0.1n) and only on the right (0.1n)."""
    import numpy as np

    key = rng.permutation(np.arange(1, int(n * 1.1) + 1, dtype=np.int64))
    a, b = int(n * 0.9), n
    return {"x": key[:a], "l": key[a:b], "r": key[b:]}


def _sample_all(rng, values, size: int):
    """db-benchmark's ``sample_all``: every value at least once, the rest drawn with
    replacement, shuffled."""
    import numpy as np

    extra = rng.choice(values, size=max(size - len(values), 0), replace=True)
    return rng.permutation(np.concatenate([values, extra]))


def _with_labels(cols: dict):
    """Add the string twins of the int keys (``id4 = "id" + id1`` ...), columns in
    db-benchmark's order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for i in ("id1", "id2", "id3"):
        if i in cols:
            out[i] = pa.array(cols[i])
    for i, s in (("id1", "id4"), ("id2", "id5"), ("id3", "id6")):
        if i in cols:
            out[s] = pc.binary_join_element_wise("id", pc.cast(out[i], pa.string()), "")
    for v in ("v1", "v2"):
        if v in cols:
            out[v] = pa.array(cols[v])
    return pa.table(out)


def generate_join(rows: int, out: str = DEFAULT_OUT, files: int = 8) -> str:
    """Write the J1 join data of ``rows`` rows (db-benchmark's ``join-datagen.R N 0 0 0``:
    no missing values, random order) unless it is there: ``x`` (N rows: id1..id3 int keys
    with N/1e6, N/1e3 and N distinct values, id4..id6 their ``"id<n>"`` strings, v1) and the
    right-hand tables ``small`` (N/1e6 rows: id1, id4, v2), ``medium`` (N/1e3 rows: id1, id2,
    id4, id5, v2) and ``big`` (N rows: id1..id6, v2). 90% of each key's values are on both
    sides, 10% only on the left and 10% only on the right; the right-hand key of each table
    is unique. ``x`` and ``big`` are split over ``files`` Parquet files.

    Returns
    -------
    str
        The dataset folder (tables in subfolders ``x/``, ``small/``, ``medium/``, ``big/``).
    """
    import numpy as np
    import pyarrow.parquet as pq

    if rows < 10**7:
        raise ValueError("the J1 data needs at least 1e7 rows, as db-benchmark's (small has N/1e6 rows)")
    final = join_dir(out, rows)
    if os.path.isdir(final):
        return final
    os.makedirs(out, exist_ok=True)
    staging = final + f".tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    keys = [_split_xlr(rng, rows // 10**6), _split_xlr(rng, rows // 10**3), _split_xlr(rng, rows)]

    def side(k, which):
        return np.concatenate([k[w] for w in which])

    def v(n):
        return np.round(rng.uniform(0.0, 100.0, size=n), 6)

    lhs = {f"id{j + 1}": _sample_all(rng, side(keys[j], "xl"), rows) for j in range(3)}
    lhs["v1"] = v(rows)
    tables = {"x": _with_labels(lhs)}
    del lhs
    for name, n, depth in (("small", rows // 10**6, 1), ("medium", rows // 10**3, 2), ("big", rows, 3)):
        cols = {f"id{j + 1}": _sample_all(rng, side(keys[j], "xr"), n) for j in range(depth)}
        cols["v2"] = v(n)
        tables[name] = _with_labels(cols)
    for name, table in tables.items():
        os.makedirs(os.path.join(staging, name))
        parts = files if table.num_rows >= 10**6 else 1
        bounds = [table.num_rows * i // parts for i in range(parts + 1)]
        for i in range(parts):
            piece = table.slice(bounds[i], bounds[i + 1] - bounds[i])
            target = os.path.join(staging, name, f"part-{i:02d}.parquet")
            pq.write_table(piece, target, row_group_size=1 << 20)
    os.rename(staging, final)
    print(f"generated {final}: x and big {rows:,} rows, {time.perf_counter() - t0:.1f} s", flush=True)
    return final


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1e7", help="N (accepts 1e7)")
    ap.add_argument("--k", default="100", help="K (accepts 1e2)")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--row-group", type=int, default=1 << 20)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--join", action="store_true", help="write the J1 join data instead of G1")
    args = ap.parse_args(argv)
    if args.join:
        path = generate_join(int(float(args.rows)), args.out, args.files)
    else:
        path = generate(int(float(args.rows)), int(float(args.k)), args.out, args.files, args.row_group)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
