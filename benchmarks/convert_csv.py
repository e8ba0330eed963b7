"""CSV → Parquet conversion throughput: hpcframe (1..N MPI ranks) vs a pandas chunk loop vs Dask.

Generate the input outside the repository, e.g.::

    /work/benchvenv/bin/tpchgen-cli csv -s 2 --tables=lineitem --output-dir /work/bench-data/csv2

Then run (each tool writes to a fresh folder under --out, removed afterwards)::

    .venv/bin/python benchmarks/convert_csv.py /work/bench-data/csv2/lineitem.csv \\
        --out /work/bench-data/convert-out --ranks 1,2 --tools hpcframe,pandas,dask \\
        --dask-python /work/benchvenv/bin/python

Prints one JSON line per run: tool, ranks, seconds, MB/s, MB/s per rank, output MB, the
machine's load average before the run. Every tool reads all columns with types inferred from
the data and writes zstd-compressed Parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

PANDAS_LOOP = r"""
import os, sys, pandas as pd
src, out, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out)
for i, df in enumerate(pd.read_csv(src, chunksize=chunk)):
    df.to_parquet(os.path.join(out, f"part-{i:06d}.parquet"), compression="zstd", index=False)
"""

DASK = r"""
import sys, dask, dask.dataframe as dd
src, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
dask.config.set(scheduler="processes", num_workers=workers)
dd.read_csv(src, blocksize="64MB").to_parquet(out, compression="zstd", write_index=False)
"""


def folder_bytes(path: str) -> int:
    total = 0
    for d, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, n)) for n in names)
    return total


def run(tool: str, cmd: list[str], src_bytes: int, out: str, ranks: int) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{tool} failed ({shlex.join(cmd)}):\n{proc.stderr[-2000:]}")
    mbs = src_bytes / 1e6 / secs
    result = {
        "tool": tool,
        "ranks": ranks,
        "seconds": round(secs, 2),
        "MB_per_s": round(mbs, 1),
        "MB_per_s_per_rank": round(mbs / ranks, 1),
        "out_MB": round(folder_bytes(out) / 1e6, 1),
        "load_before": round(load, 2),
        "command": shlex.join(cmd),
    }
    shutil.rmtree(out, ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--tools", default="hpcframe,pandas,dask")
    ap.add_argument("--dask-python", default=sys.executable)
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    size = os.path.getsize(args.src)
    os.makedirs(args.out, exist_ok=True)
    py = sys.executable
    mpiexec = os.path.join(os.path.dirname(py), "mpiexec")
    for tool in args.tools.split(","):
        for n in [int(r) for r in args.ranks.split(",")]:
            out = os.path.join(args.out, f"{tool}-{n}")
            shutil.rmtree(out, ignore_errors=True)
            if tool == "hpcframe":
                cmd = [mpiexec, "-n", str(n), py, "-m", "hpcframe.convert", args.src, out, "--to", "parquet"]
            elif tool == "pandas":
                if n != 1:
                    continue  # a pandas loop is one process
                cmd = [py, "-c", PANDAS_LOOP, args.src, out, str(args.chunk_rows)]
            elif tool == "dask":
                cmd = [args.dask_python, "-c", DASK, args.src, out, str(n)]
            else:
                raise SystemExit(f"unknown tool {tool!r}")
            print(json.dumps(run(tool, cmd, size, out, n)), flush=True)


if __name__ == "__main__":
    main()
