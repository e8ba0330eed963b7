#!/usr/bin/env python
"""Per core: pyarrow's Parquet decoding of a TPC-H query's columns against Polars' whole query.

Usage (the Python that has polars; hpcframe is imported from ``--hf-path``)::

    /work/bench-venv/bin/python benchmarks/decode_bound.py DATA_DIR [RESULTS.json] \\
        [--queries q1,q6] [--rounds 5] [--files 8] [--hf-path REPO]

DATA_DIR is what ``tpchgen-cli parquet -s SF --parts=N --output-dir=DATA_DIR`` writes. The
script takes every other ``lineitem`` file, ``--files`` of them (default: half, one rank's share
on 2 ranks), and measures on **one core** (``POLARS_MAX_THREADS=1``, pyarrow's CPU and I/O pools
of one thread), in rounds that alternate the four measurements:

- ``pyarrow decode``: ``ParquetFile.read_row_groups`` of the query's columns, as hpcframe reads
  them (string columns dictionary-encoded), file by file: the decoding hpcframe cannot avoid,
  since every row group of these files holds rows the query keeps;
- ``polars decode``: ``polars.read_parquet`` of the same columns;
- ``polars query``: Polars' whole lazy query (``tpch_polars.py``, decimals cast to Float64 as
  ``tpch_all.py`` runs it) on the same files;
- ``hpcframe query``: hpcframe's query (``tpch_hf_queries.py``) on the same files, local
  engine, in this process (its read-ahead thread included).

Times are ``time.process_time()`` (CPU seconds of the whole process, every thread), median of
the rounds. If the pyarrow decoding alone takes longer than Polars' whole query, no work on
hpcframe's side of the decoding can bring the query to Polars' time per core: the ratio
``pyarrow decode / polars query`` is a floor of hpcframe's ratio to Polars. Prints a table and
writes RESULTS.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time

os.environ["POLARS_MAX_THREADS"] = "1"  # before polars is imported

HERE = os.path.dirname(os.path.abspath(__file__))

#: the lineitem columns each query reads, and those hpcframe reads dictionary-encoded
COLUMNS = {
    "q1": ["l_quantity", "l_extendedprice", "l_discount", "l_tax"]
    + ["l_returnflag", "l_linestatus", "l_shipdate"],
    "q6": ["l_quantity", "l_extendedprice", "l_discount", "l_shipdate"],
}
DICTIONARY = ["l_returnflag", "l_linestatus"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--queries", default="q1,q6")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=0, help="files to read (default: half of lineitem's)")
    parser.add_argument("--hf-path", default=os.path.dirname(HERE), help="the hpcframe tree to import")
    args = parser.parse_args()
    sys.path[:0] = [args.hf_path, HERE]

    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tpch_hf_queries
    import tpch_polars

    import hpcframe as hf

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    paths = sorted(glob.glob(os.path.join(args.data, "lineitem", "*.parquet")))
    if not paths:
        sys.exit(f"no lineitem/*.parquet under {args.data}")
    files = paths[::2][: args.files or None]

    def pyarrow_decode(q):
        for f in files:
            pfile = pq.ParquetFile(f, read_dictionary=[c for c in COLUMNS[q] if c in DICTIONARY])
            pfile.read_row_groups(range(pfile.num_row_groups), columns=COLUMNS[q], use_threads=False)

    def polars_decode(q):
        for f in files:
            pl.read_parquet(f, columns=COLUMNS[q])

    def polars_query(q):
        tables = {"lineitem": tpch_polars.scan(files)}
        getattr(tpch_polars, q)(tables).collect()

    def hpcframe_query(q):
        result = getattr(tpch_hf_queries, q)({"lineitem": hf.read_parquet(files)})
        return result.compute() if hasattr(result, "compute") else result

    engines = {
        "pyarrow decode": pyarrow_decode,
        "polars decode": polars_decode,
        "polars query": polars_query,
        "hpcframe query": hpcframe_query,
    }
    queries = args.queries.split(",")
    times: dict = {(q, e): [] for q in queries for e in engines}
    for q in queries:  # warm up: imports, the page cache, footers
        for fn in engines.values():
            fn(q)
    for _ in range(args.rounds):
        for q in queries:
            for name, fn in engines.items():
                c0 = time.process_time()
                fn(q)
                times[q, name].append(time.process_time() - c0)

    print(f"{len(files)} lineitem files, one core, median CPU seconds of {args.rounds} rounds")
    print(
        "| query | pyarrow decode | polars decode | polars query | hpcframe query"
        " | floor (pyarrow decode / polars query) | hpcframe / polars |"
    )
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for q in queries:
        m = {e: statistics.median(times[q, e]) for e in engines}
        floor = m["pyarrow decode"] / m["polars query"]
        ratio = m["hpcframe query"] / m["polars query"]
        summary[q] = {**m, "floor": floor, "ratio": ratio}
        cells = " | ".join(f"{m[e]:.3f}" for e in engines)
        print(f"| {q} | {cells} | {floor:.2f} | {ratio:.2f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                {
                    "files": files,
                    "rounds": args.rounds,
                    "versions": {"pyarrow": pa.__version__, "polars": pl.__version__},
                    "loadavg": os.getloadavg(),
                    "times": {f"{q} {e}": v for (q, e), v in times.items()},
                    "summary": summary,
                },
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
