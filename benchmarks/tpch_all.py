#!/usr/bin/env python
"""All 22 TPC-H queries with hpcframe (under ``mpiexec -n N``), Polars, DuckDB and Dask, in one run.

Usage (run it with the Python that has polars, duckdb, dask and psutil; hpcframe runs from its
own venv through ``mpiexec``)::

    /work/bench-venv/bin/python benchmarks/tpch_all.py DATA_DIR [RESULTS.json] \\
        [--engines hpcframe-2,polars,duckdb,dask] [--queries q1,...,q22] [--reps 3] \\
        [--timeout 600] [--hf-python /work/main/.venv/bin/python] \\
        [--mpiexec /work/main/.venv/bin/mpiexec] [--hf-path REPO]

DATA_DIR is what ``tpchgen-cli parquet -s SF --parts=N --output-dir=DATA_DIR`` writes (one
folder per table). The queries: hpcframe and Dask run the pandas-API text of
``tpch_hf_queries.py`` (the same functions; Dask's ``read_parquet`` with the decimals cast to
float64 and dates to ``datetime64[ms]``, as hpcframe reads them), Polars the lazy queries of
``tpch_polars.py`` (decimals cast to Float64), DuckDB the SQL of ``tpch_sql.py`` (exact
decimals). Every answer is checked against DuckDB's (``tpch_sql.compare``: float tolerance,
dates and strings exact, ORDER BY columns row by row).

Each (engine, query, repetition) runs in a fresh process tree; a round runs every query on
every engine in turn (engines alternate, so a change of load hits all of them). The worker
measures the *query seconds* in process: from opening the tables (Parquet metadata) to the
answer in memory as pandas; imports, the DuckDB connection and the Dask cluster start are not
included. hpcframe's time is rank 0's, between barriers; its answer is computed on every rank
(the queries use ``compute()`` also in the middle, for scalars: Q11, Q14, Q15, Q17, Q22). The
parent measures the *process seconds* (start to exit) and polls the process tree every
``--poll-seconds`` (default 0.25 s) for the RSS of every process and of the tree
(``groupby_dbbench.run_polled``). Each poll walks /proc and takes CPU from the processes it
measures; at 20 ms it made hpcframe's small queries ~10 % slower (2 ranks on 2 cores), so
the peaks come from the processes themselves: each hpcframe rank's and the Polars/DuckDB
worker's own ``ru_maxrss`` (exact), the poll's figure where it is larger (Dask's worker
processes). A run longer than ``--timeout`` seconds is killed (``timeout``; not repeated);
a query that raises is recorded as ``error`` with the message.

Engine settings: Polars ``POLARS_MAX_THREADS=2``; DuckDB ``SET threads=2``; Dask
``LocalCluster(n_workers=2, threads_per_worker=1)``; hpcframe ``-n N`` ranks, default config.

Prints a table of median seconds per query and engine, the hpcframe/Polars and hpcframe/DuckDB
ratios and their geometric means (over the queries both finished correctly), and the peak RSS;
writes RESULTS.json (every run and the summary) and RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
QUERIES = tuple(f"q{i}" for i in range(1, 23))
ENGINES = ("hpcframe-2", "polars", "duckdb", "dask")
DEFAULT_HF_PYTHON = "/work/main/.venv/bin/python"
DEFAULT_MPIEXEC = "/work/main/.venv/bin/mpiexec"


# --------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------
def _answer(result):
    """An answer, normalised (numbers float, dates ``YYYY-MM-DD``), as JSON."""
    import pandas as pd
    import tpch_sql

    if isinstance(result, pd.Series):
        result = result.to_frame()
    if not isinstance(result, pd.DataFrame):
        value = None if result is None else float(result)
        return {"scalar": None if value is None or math.isnan(value) else value}
    df = tpch_sql.normalise(result.reset_index(drop=True))
    rows = [
        [None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in df.itertuples(False)
    ]
    return {"columns": [str(c) for c in df.columns], "data": rows}


def answer_frame(answer):
    """The pandas form of an :func:`_answer` (a scalar stays a scalar)."""
    import pandas as pd

    if "scalar" in answer:
        return answer["scalar"]
    return pd.DataFrame(answer["data"], columns=answer["columns"])


def _write(out_json, info):
    with open(out_json, "w") as fh:
        json.dump(info, fh)


def worker(engine: str, q: str, data: str, out_json: str) -> None:
    """Run query ``q`` with Polars, DuckDB or Dask; write the JSON record."""
    t_proc = time.perf_counter()
    sys.path.insert(0, HERE)
    import pandas  # noqa: F401  (imported before the clock starts: answers become pandas)
    import pyarrow  # noqa: F401
    from groupby_dbbench import own_peak_mb

    info: dict = {"engine": engine, "query": q}
    client = cluster = None
    if engine == "polars":
        import polars as pl
        import tpch_polars

        info["version"] = pl.__version__
        info["threads"] = pl.thread_pool_size()
        run = lambda: tpch_polars.run(q, tpch_polars.load(data))  # noqa: E731
    elif engine == "duckdb":
        import duckdb
        import tpch_sql

        con = duckdb.connect()
        con.execute("SET threads=2")
        info["version"] = duckdb.__version__
        info["threads"] = con.execute("select current_setting('threads')").fetchone()[0]

        def run():
            tpch_sql.create_views(con, data)
            return tpch_sql.run(con, q)

    elif engine == "dask":
        import dask
        import tpch_hf_queries as Q

        info["version"] = dask.__version__
        try:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)  # becomes the default scheduler
            info["scheduler"] = "distributed.LocalCluster(n_workers=2, threads_per_worker=1)"
            run = lambda: Q.run(q, Q.load_dask(data))  # noqa: E731
        except Exception as exc:  # pragma: no cover - fallback path
            info["scheduler"] = f"processes(num_workers=2) [LocalCluster failed: {exc!r}]"

            def run():
                with dask.config.set(scheduler="processes", num_workers=2):
                    return Q.run(q, Q.load_dask(data))

    else:
        raise SystemExit(f"unknown engine {engine}")
    t0 = time.perf_counter()
    try:
        result = run()
        info["seconds"] = time.perf_counter() - t0
        info["answer"] = _answer(result)
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        info["traceback"] = traceback.format_exc()[-3000:]
    info["process_seconds_in_worker"] = time.perf_counter() - t_proc
    info["ru_maxrss_mb"] = own_peak_mb()
    _write(out_json, info)
    if client is not None:
        client.close()
        cluster.close()


def hf_worker(q: str, data: str, out_json: str) -> None:
    """Run query ``q`` with hpcframe on every rank of ``COMM_WORLD``; rank 0 writes the JSON."""
    import resource

    t_proc = time.perf_counter()
    sys.path.insert(0, HERE)
    import tpch_hf_queries as Q

    import hpcframe as hf
    import hpcframe.execute  # noqa: F401  (lazy in `import hpcframe`: the engine, pandas and pyarrow
    import hpcframe.readers  # noqa: F401  are imported before the clock, as the other engines are)
    from hpcframe.comm import get_comm

    comm = get_comm()
    info: dict = {"engine": f"hpcframe-{comm.size}", "query": q, "ranks": comm.size}
    info["version"] = getattr(hf, "__version__", "?")
    info["partitions"] = hf.config.partitions
    comm.barrier()
    t0 = time.perf_counter()
    try:
        result = Q.run(q, Q.load_hpcframe(data), comm=comm)
        comm.barrier()
        info["seconds"] = time.perf_counter() - t0
        info["answer"] = _answer(result)
    except Exception as exc:  # the same on every rank (hpcframe raises ComputeError on all)
        info["error"] = f"{type(exc).__name__}: {exc}"
        info["traceback"] = traceback.format_exc()[-3000:]
    info["process_seconds_in_worker"] = time.perf_counter() - t_proc
    rss = comm.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if comm.rank == 0:
        info["ru_maxrss_mb_per_rank"] = [round(r, 1) for r in rss]
        _write(out_json, info)


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------
def measure(engine: str, q: str, args, tmp_json: str) -> dict:
    """One run in a fresh process tree, polled for time and RSS."""
    from groupby_dbbench import _uptime, merge_worker_record, run_polled

    env = dict(os.environ)
    env["POLARS_MAX_THREADS"] = "2"
    script = os.path.abspath(__file__)
    if engine.startswith("hpcframe-"):
        ranks = int(engine.split("-")[1])
        env["PYTHONPATH"] = args.hf_path + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [args.mpiexec, "-n", str(ranks), args.hf_python, script, "--hf-worker", q, args.data, tmp_json]
    else:
        cmd = [sys.executable, script, "--worker", engine, q, args.data, tmp_json]
    uptime_text, load = _uptime()
    print(f"  [{engine} {q}] {uptime_text}", flush=True)
    if os.path.exists(tmp_json):
        os.remove(tmp_json)
    with tempfile.TemporaryFile("w+") as err:
        polled = run_polled(cmd, env, args.timeout, err, os.path.exists, tmp_json, interval=args.poll_seconds)
        err.seek(0)
        stderr = err.read()
    status, proc, peaks = polled["status"], polled["proc"], polled["peaks"]
    rank_peaks = sorted((v["rank"], v["peak"]) for v in peaks.values() if v["rank"] is not None)
    rec = {
        "engine": engine,
        "query": q,
        "status": status,
        "returncode": proc.returncode,
        "process_seconds": polled["wall"],
        "peak_rss_tree_mb": round(polled["peak_tree"] / 2**20, 1),
        "peak_rss_largest_process_mb": round(max((v["peak"] for v in peaks.values()), default=0) / 2**20, 1),
        "peak_rss_per_rank_mb": [round(p / 2**20, 1) for _r, p in rank_peaks],
        "uptime": uptime_text,
        "loadavg_before": load,
        "command": cmd,
    }
    if status == "ok":
        with open(tmp_json) as fh:
            merge_worker_record(rec, json.load(fh))
        if "error" in rec:
            rec["status"] = "error"
    if rec["status"] not in ("ok", "error"):
        rec["stderr_tail"] = stderr[-3000:]
        print(rec["stderr_tail"], file=sys.stderr, flush=True)
    elif rec["status"] == "error":
        print(f"    {engine} {q}: {rec['error'][:300]}", flush=True)
    return rec


def check_answers(results) -> None:
    """Set ``check`` on every successful run: ``ok`` or the difference from DuckDB's answer."""
    import tpch_sql

    reference = {}
    for r in results:
        if r["engine"] == "duckdb" and r["status"] == "ok" and r["query"] not in reference:
            reference[r["query"]] = answer_frame(r["answer"])
    for r in results:
        if r["status"] != "ok":
            continue
        if r["query"] not in reference:
            r["check"] = "no DuckDB answer"
            continue
        try:
            tpch_sql.compare(r["query"], answer_frame(r["answer"]), reference[r["query"]])
            r["check"] = "ok"
        except AssertionError as exc:
            r["check"] = f"WRONG: {exc}"


def _geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summarize(results, engines, queries) -> dict:
    """Medians per (engine, query), ratios and their geometric means."""
    rows = {}
    for e in engines:
        for q in queries:
            runs = [r for r in results if r["engine"] == e and r["query"] == q]
            if not runs:
                continue
            ok = [r for r in runs if r["status"] == "ok"]
            wrong = [r for r in ok if r.get("check", "ok") != "ok" and r.get("check") != "no DuckDB answer"]
            row = {
                "status": ("wrong" if wrong else "ok") if ok else runs[0]["status"],
                "median_seconds": statistics.median(r["seconds"] for r in ok) if ok else None,
                "all_seconds": [round(r["seconds"], 3) for r in ok],
                "median_process_seconds": statistics.median(r["process_seconds"] for r in ok) if ok else None,
                "peak_rss_largest_process_mb": max(r["peak_rss_largest_process_mb"] for r in runs),
                "peak_rss_tree_mb": max(r["peak_rss_tree_mb"] for r in runs),
                "check": wrong[0]["check"] if wrong else (ok[0].get("check") if ok else None),
                "error": next((r.get("error") for r in runs if r.get("error")), None),
            }
            if e.startswith("hpcframe-"):
                per_rank = [r.get("ru_maxrss_mb_per_rank") or r["peak_rss_per_rank_mb"] for r in runs]
                per_rank = [p for p in per_rank if p]
                row["peak_rss_per_rank_mb"] = [max(v) for v in zip(*per_rank)] if per_rank else []
            rows[f"{e} {q}"] = row
    ratios: dict = {}
    for e in engines:
        if not e.startswith("hpcframe-"):
            continue
        for other in ("polars", "duckdb"):
            if other not in engines:
                continue
            per_query = {}
            for q in queries:
                a, b = rows.get(f"{e} {q}"), rows.get(f"{other} {q}")
                if a and b and a["status"] == b["status"] == "ok" and b["median_seconds"]:
                    per_query[q] = a["median_seconds"] / b["median_seconds"]
            ratios[f"{e}/{other}"] = {
                "per_query": per_query,
                "geomean": _geomean(list(per_query.values())),
                "n_queries": len(per_query),
            }
    return {"rows": rows, "ratios": ratios}


def _cell(row, fmt="{:.2f}"):
    if row is None:
        return "–"
    if row["status"] != "ok":
        return row["status"]
    return fmt.format(row["median_seconds"])


def table(summary, engines, queries) -> str:
    rows, ratios = summary["rows"], summary["ratios"]
    ratio_cols = list(ratios)
    hf_engines = [e for e in engines if e.startswith("hpcframe-")]
    head = (
        ["query"] + [f"{e} s" for e in engines] + ratio_cols + [f"{e} peak RSS/rank MB" for e in hf_engines]
    )
    head += ["largest process MB (" + ", ".join(e for e in engines if not e.startswith("hpcframe-")) + ")"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for q in queries:
        cells = [q] + [_cell(rows.get(f"{e} {q}")) for e in engines]
        for name in ratio_cols:
            v = ratios[name]["per_query"].get(q)
            cells.append(f"{v:.2f}" if v is not None else "–")
        for e in hf_engines:
            r = rows.get(f"{e} {q}")
            cells.append(" + ".join(f"{v:.0f}" for v in r.get("peak_rss_per_rank_mb", [])) if r else "–")
        others = []
        for e in engines:
            r = rows.get(f"{e} {q}")
            if r and not e.startswith("hpcframe-"):
                others.append(f"{r['peak_rss_largest_process_mb']:.0f}")
        cells.append(", ".join(others))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for name, v in ratios.items():
        g = v["geomean"]
        out.append(
            f"geometric mean {name}: "
            + (f"{g:.2f}" if g is not None else "–")
            + f" over {v['n_queries']} queries"
        )
    problems = [
        f"- {key}: {r['status']}: {(r['error'] or r['check'] or '')[:400]}"
        for key, r in rows.items()
        if r["status"] != "ok"
    ]
    if problems:
        out += ["", "Not ok:"] + problems
    return "\n".join(out) + "\n"


def compile_hpcframe(python: str, hf_path: str) -> None:
    """Write the bytecode of the hpcframe tree at ``hf_path`` (``compileall``), as ``pip
    install`` does: the workers then import it as users of an installed hpcframe do, not
    compiling a module on its first import inside the timed query (with
    ``PYTHONDONTWRITEBYTECODE`` set, as on the benchmark machine, every process would)."""
    import subprocess

    subprocess.run([python, "-m", "compileall", "-q", os.path.join(hf_path, "hpcframe")], check=True)


def main(argv=None) -> int:
    sys.path.insert(0, HERE)
    from groupby_dbbench import add_poll_option

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="the tpchgen-cli output folder")
    ap.add_argument("out_json", nargs="?", help="default benchmarks/results-tpch-<date>.json")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--queries", default=",".join(QUERIES))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--hf-python", default=DEFAULT_HF_PYTHON)
    ap.add_argument("--mpiexec", default=DEFAULT_MPIEXEC)
    ap.add_argument("--hf-path", default=REPO, help="the hpcframe checkout put on the workers' PYTHONPATH")
    add_poll_option(ap)
    ap.add_argument("--worker", nargs=4, metavar=("ENGINE", "QUERY", "DATA", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--hf-worker", nargs=3, metavar=("QUERY", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.hf_worker:
        hf_worker(*args.hf_worker)
        return 0
    if not args.data:
        ap.error("DATA (the tpchgen-cli output folder) is required")
    sys.path.insert(0, HERE)
    compile_hpcframe(args.hf_python, args.hf_path)
    engines = [e for e in args.engines.split(",") if e]
    queries = [q for q in args.queries.split(",") if q]
    for e in engines:
        if e not in ("polars", "duckdb", "dask") and not (e.startswith("hpcframe-") and e[9:].isdigit()):
            ap.error(f"--engines: unknown engine {e!r} (hpcframe-N, polars, duckdb, dask)")
    for q in queries:
        if q not in QUERIES:
            ap.error(f"--queries: unknown query {q!r} (q1 .. q22)")
    out_json = args.out_json or os.path.join(HERE, f"results-tpch-{datetime.date.today().isoformat()}.json")
    results: list[dict] = []
    dropped: set = set()
    tmp_json = os.path.join(tempfile.mkdtemp(prefix="tpch-all-"), "run.json")
    for rep in range(args.reps):
        print(f"round {rep + 1} of {args.reps}", flush=True)
        for q in queries:
            for e in engines:
                if (e, q) in dropped:
                    continue
                rec = measure(e, q, args, tmp_json)
                rec["rep"] = rep
                results.append(rec)
                if rec["status"] in ("timeout", "error"):
                    dropped.add((e, q))  # not repeated
    check_answers(results)
    for r in results:  # the answers were for the check; the JSON keeps their size
        answer = r.pop("answer", None)
        if answer is not None:
            r["answer_rows"] = 1 if "scalar" in answer else len(answer["data"])
    summary = summarize(results, engines, queries)
    text = table(summary, engines, queries)
    meta = {
        "data": os.path.abspath(args.data),
        "engines": engines,
        "queries": queries,
        "reps": args.reps,
        "timeout": args.timeout,
        "poll_seconds": args.poll_seconds,
        "hf_python": args.hf_python,
        "mpiexec": args.mpiexec,
        "hf_path": args.hf_path,
        "command": " ".join([sys.executable] + sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(out_json, "w") as fh:
        json.dump({"meta": meta, "summary": summary, "runs": results}, fh, indent=1, default=str)
    with open(os.path.splitext(out_json)[0] + ".md", "w") as fh:
        fh.write(f"TPC-H on {meta['data']} ({meta['date']}; `{meta['command']}`)\n\n{text}")
    print(text)
    print(
        json.dumps(
            {k: {"geomean": v["geomean"], "n_queries": v["n_queries"]} for k, v in summary["ratios"].items()}
        )
    )
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
