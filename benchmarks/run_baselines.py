#!/usr/bin/env python
"""Baseline timings for TPC-H Q1/Q6 on lineitem with Dask, Polars, DuckDB and
naive pandas.

Usage::

    python benchmarks/run_baselines.py RESULTS.json \
        [--data-dir /work/bench-data/sf10/lineitem] \
        [--engines duckdb,polars,pandas,dask] [--queries q1,q6] [--reps 3] \
        [--single-run-above 120]

Each (engine, query, repetition) runs in a fresh subprocess (this script with
``--worker``).  The worker times only the query itself (reading Parquet +
computing the result; imports, DuckDB connection and Dask cluster start-up
are excluded, and reported separately as ``process_seconds``).  The parent
polls the worker's whole process tree with psutil every 20 ms and records the
peak of the summed RSS (includes Dask's worker processes; shared pages are
counted once per process) and the peak single-process RSS.

Before every measurement the parent runs ``uptime`` and stores the load
average, since the machine has 2 cores and may be shared.

Engine settings:
  duckdb  ``SET threads=2``
  polars  ``POLARS_MAX_THREADS=2`` (checked via ``polars.thread_pool_size()``),
          ``scan_parquet`` + lazy query + ``collect``
  pandas  one process; every file read (pyarrow, decimals cast to float64),
          concatenated, then filter/groupby
  dask    ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``;
          falls back to ``scheduler="processes", num_workers=2`` if the
          cluster cannot start (recorded in the JSON as ``dask_scheduler``)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = "/work/bench-data/sf10/lineitem"
ENGINES = ("duckdb", "polars", "pandas", "dask")


# --------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------
def _jsonable_frame(df):
    rows = []
    for rec in df.to_dict(orient="records"):
        rows.append({k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in rec.items()})
    return rows


def worker(engine: str, query: str, data_dir: str, out_path: str) -> None:
    t_proc = time.perf_counter()
    sys.path.insert(0, HERE)
    import tpch_queries as q

    info: dict = {}
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads=2")
        info["duckdb_version"] = duckdb.__version__
        info["threads"] = con.execute("select current_setting('threads')").fetchone()[0]
        run = lambda: q.duckdb_query(con, query, data_dir)  # noqa: E731
    elif engine == "polars":
        import polars as pl

        info["polars_version"] = pl.__version__
        info["threads"] = pl.thread_pool_size()
        run = lambda: q.polars_query(query, data_dir)  # noqa: E731
    elif engine == "pandas":
        import pandas as pd
        import pyarrow as pa

        info["pandas_version"] = pd.__version__
        info["pyarrow_version"] = pa.__version__
        run = lambda: q.pandas_query(query, data_dir)  # noqa: E731
    elif engine == "dask":
        import dask

        info["dask_version"] = dask.__version__
        try:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)  # noqa: F841  (becomes the default scheduler)
            info["dask_scheduler"] = "distributed.LocalCluster(n_workers=2, threads_per_worker=1)"
            run = lambda: q.dask_query(query, data_dir)  # noqa: E731
        except Exception as exc:  # pragma: no cover - fallback path
            info["dask_scheduler"] = f"processes(num_workers=2) [LocalCluster failed: {exc!r}]"

            def run():
                with dask.config.set(scheduler="processes", num_workers=2):
                    return q.dask_query(query, data_dir)
    else:
        raise SystemExit(f"unknown engine {engine}")

    t0 = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t0
    info.update(
        engine=engine,
        query=query,
        seconds=seconds,
        process_seconds=time.perf_counter() - t_proc,
        result=_jsonable_frame(result),
        result_text=result.to_string(),
    )
    with open(out_path, "w") as fh:
        json.dump(info, fh)
    if engine == "dask":
        client.close()
        cluster.close()


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------
def _uptime() -> tuple[str, list[float]]:
    try:
        text = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        text = ""
    return text, [round(x, 2) for x in os.getloadavg()]


def measure(engine: str, query: str, data_dir: str, tmp_json: str) -> dict:
    import psutil

    env = dict(os.environ)
    env["POLARS_MAX_THREADS"] = "2"
    uptime_text, load = _uptime()
    print(f"  [{engine} {query}] {uptime_text}", flush=True)
    if os.path.exists(tmp_json):
        os.remove(tmp_json)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", engine, query, data_dir, tmp_json],
        env=env,
    )
    ps = psutil.Process(proc.pid)
    peak_tree = peak_single = 0
    while proc.poll() is None:
        try:
            procs = [ps] + ps.children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            peak_single = max(peak_single, rss)
        peak_tree = max(peak_tree, total)
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    rec = {
        "engine": engine,
        "query": query,
        "returncode": proc.returncode,
        "subprocess_wall_seconds": wall,
        "peak_rss_tree_mb": peak_tree / 2**20,
        "peak_rss_single_mb": peak_single / 2**20,
        "uptime": uptime_text,
        "loadavg_before": load,
    }
    if proc.returncode == 0 and os.path.exists(tmp_json):
        with open(tmp_json) as fh:
            rec.update(json.load(fh))
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_json", nargs="?")
    ap.add_argument("--data-dir", default=DEFAULT_DATA)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--queries", default="q1,q6")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--single-run-above",
        type=float,
        default=120.0,
        help="if the first repetition's query time exceeds this many seconds, do not repeat it",
    )
    ap.add_argument("--worker", nargs=4, metavar=("ENGINE", "QUERY", "DATA_DIR", "OUT"))
    args = ap.parse_args(argv)

    if args.worker:
        worker(*args.worker)
        return 0
    if not args.out_json:
        ap.error("out_json is required")

    tmp_json = args.out_json + ".worker.tmp"
    results = []
    for engine in [e for e in args.engines.split(",") if e]:
        for query in [x for x in args.queries.split(",") if x]:
            for rep in range(args.reps):
                rec = measure(engine, query, args.data_dir, tmp_json)
                rec["rep"] = rep
                results.append(rec)
                print(
                    f"  -> {engine} {query} rep{rep}: rc={rec['returncode']} "
                    f"query={rec.get('seconds', float('nan')):.2f}s "
                    f"proc={rec['subprocess_wall_seconds']:.2f}s "
                    f"peak_rss_tree={rec['peak_rss_tree_mb']:.0f}MB",
                    flush=True,
                )
                if rec["returncode"] != 0:
                    break
                if rep == 0 and rec.get("seconds", 0) > args.single_run_above:
                    print(f"  (single run: {rec['seconds']:.1f}s > {args.single_run_above}s)", flush=True)
                    break
            with open(args.out_json, "w") as fh:
                json.dump({"data_dir": args.data_dir, "runs": results}, fh, indent=1)
    if os.path.exists(tmp_json):
        os.remove(tmp_json)

    # summary
    summary = []
    keys = []
    for r in results:
        k = (r["engine"], r["query"])
        if k not in keys:
            keys.append(k)
    print()
    print(
        "| engine | query | wall s (best) | all runs s | n | peak RSS MB (tree, max over runs) "
        "| peak RSS MB (largest process) | load avg before (1m) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in keys:
        runs = [r for r in results if (r["engine"], r["query"]) == k]
        ok = [r for r in runs if r["returncode"] == 0 and "seconds" in r]
        best = min((r["seconds"] for r in ok), default=float("nan"))
        row = {
            "engine": k[0],
            "query": k[1],
            "best_seconds": best,
            "all_seconds": [round(r["seconds"], 3) for r in ok],
            "n_runs": len(runs),
            "failed_runs": len(runs) - len(ok),
            "peak_rss_tree_mb": max(r["peak_rss_tree_mb"] for r in runs),
            "peak_rss_single_mb": max(r["peak_rss_single_mb"] for r in runs),
            "loadavg_1m_before": [r["loadavg_before"][0] for r in runs],
        }
        summary.append(row)
        print(
            f"| {k[0]} | {k[1]} | {best:.2f} | {', '.join(f'{s:.2f}' for s in row['all_seconds'])} | "
            f"{len(ok)}/{len(runs)} | {row['peak_rss_tree_mb']:.0f} | {row['peak_rss_single_mb']:.0f} | "
            f"{', '.join(str(x) for x in row['loadavg_1m_before'])} |"
        )
    with open(args.out_json, "w") as fh:
        json.dump({"data_dir": args.data_dir, "summary": summary, "runs": results}, fh, indent=1)

    for engine in ("duckdb", "polars", "pandas", "dask"):
        q1 = [r for r in results if r["engine"] == engine and r["query"] == "q1" and "result_text" in r]
        if q1:
            print(f"\nQ1 result ({engine}):")
            print(q1[0]["result_text"])
            break
    q6 = [r for r in results if r["query"] == "q6" and "result" in r]
    seen = set()
    for r in q6:
        if r["engine"] not in seen:
            seen.add(r["engine"])
            print(f"Q6 revenue ({r['engine']}): {r['result'][0]['revenue']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
