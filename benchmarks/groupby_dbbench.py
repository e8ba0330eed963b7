#!/usr/bin/env python
"""db-benchmark group-by (G1 layout) and join (J1) with hpcframe on 1 and 2 MPI ranks, Polars,
DuckDB, pandas and Dask, in one run.

Usage (run it with the Python that has polars, duckdb, dask, psutil; hpcframe runs from its own
venv through ``mpiexec``)::

    /work/bench-venv/bin/python benchmarks/groupby_dbbench.py [RESULTS.json] --rows 1e7 --reps 3 \
        [--engines hpcframe-1,hpcframe-2,polars,duckdb,pandas,dask] [--queries q1,q2,q3,q4,q5,q7,q10] \
        [--timeout 600] [--hf-python /work/main/.venv/bin/python] [--mpiexec /work/main/.venv/bin/mpiexec] \
        [--hf-path REPO]

The data (``benchmarks/dbbench_datagen.py``: N rows, K groups, no NAs, 8 Parquet files) is made
under ``--data-root`` unless it is there. The questions, as db-benchmark defines them:

====  ===============================================
q1    sum v1 by id1
q2    sum v1 by id1, id2
q3    sum v1, mean v3 by id3
q4    mean v1, v2, v3 by id4
q5    sum v1, v2, v3 by id6
q6    median v3, sd v3 by id4, id5
q7    max(v1) - min(v2) by id3
q8    largest two v3 by id6 (about N/K groups: ``sort_values(...).groupby(...).head(2)``)
q9    squared correlation of v1 and v2 by id2, id4 (hpcframe: ``g.v1.corr(g.v2) ** 2``)
q10   sum v3, count by id1..id6 (about N groups): every engine *writes Parquet* to a temp folder
j1    x ⋈ small on id1 (inner; int key, 1e1 right rows)
j2    x ⋈ medium on id2 (inner; int key, 1e4 right rows)
j3    x ⟕ medium on id2 (left)
j4    x ⋈ medium on id5 (inner; string key)
j5    x ⋈ big on id3 (inner; int key, N right rows)
====  ===============================================

The join questions (``--queries j1,...``) read the J1 data (``dbbench_datagen.py --join``, made
under ``--data-root`` unless it is there): every engine materialises the joined table (pandas:
in memory; Polars ``collect``; DuckDB ``CREATE TABLE``; Dask and hpcframe ``persist``: held on
the workers/ranks) and then computes its row count and the sums of v1 and v2, as db-benchmark
checks them.

Each (engine, question, repetition) runs in a fresh process tree; a round of repetitions runs
every question on every engine in turn (engines alternate, so a change of load hits all of them).
The worker measures the *query seconds* in process: from before opening the dataset to the
result in memory (q1–q7) or written (q10) — reading the Parquet files is included; imports,
the DuckDB connection and the Dask cluster start are not. hpcframe's time is rank 0's, between
barriers. The parent measures the *process seconds* (the whole ``mpiexec``/``python`` process,
start to exit), polls the process tree with psutil every ``--poll-seconds`` (0.25 s: each poll
takes CPU from the ranks) for the RSS of every process (hpcframe: per rank, plus each rank's own
``ru_maxrss``; Dask: scheduler process and each worker; each worker's own ``ru_maxrss`` where
the poll saw less) and of the tree's sum, and records the load average before each run. A run longer than
``--timeout`` seconds is killed and recorded as ``timeout`` (that engine's question is not
repeated).

Engine settings: Polars ``POLARS_MAX_THREADS=2``, lazy ``scan_parquet``; DuckDB ``SET threads=2``
on a view over ``read_parquet``; pandas one process, ``read_parquet`` of the needed columns;
Dask ``LocalCluster(n_workers=2, threads_per_worker=1)``, ``read_parquet`` of the needed columns
(q10 with ``split_out`` = number of partitions); hpcframe ``hf.read_parquet`` under ``mpiexec -n
1`` and ``-n 2``, results gathered on rank 0 (``compute(root=0)``), q10 written with
``to_parquet`` when a group-by result has it (else ``compute(root=0)``, marked in the output).

Writes RESULTS.json (every run) and RESULTS.md (the tables of medians) and prints the tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ENGINES = ("hpcframe-1", "hpcframe-2", "polars", "duckdb", "pandas", "dask")
QUERIES = ("q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10")
JOINS = {  # question: (right table, key, how)
    "j1": ("small", "id1", "inner"),
    "j2": ("medium", "id2", "inner"),
    "j3": ("medium", "id2", "left"),
    "j4": ("medium", "id5", "inner"),
    "j5": ("big", "id3", "inner"),
}
ALL_QUESTIONS = QUERIES + tuple(JOINS)
KEYS6 = ["id1", "id2", "id3", "id4", "id5", "id6"]
DEFAULT_DATA_ROOT = "/work/bench-data/dbbench"
DEFAULT_HF_PYTHON = "/work/main/.venv/bin/python"
DEFAULT_MPIEXEC = "/work/main/.venv/bin/mpiexec"


# --------------------------------------------------------------------------
# the questions, per engine
# --------------------------------------------------------------------------
def q_hpcframe(q, hf, path):
    """The lazy hpcframe result of question ``q`` (q7: the max/min per group; the difference
    is taken on the gathered result)."""
    x = hf.read_parquet(path)
    if q == "q1":
        return x.groupby("id1").agg(v1=("v1", "sum"))
    if q == "q2":
        return x.groupby(["id1", "id2"]).agg(v1=("v1", "sum"))
    if q == "q3":
        return x.groupby("id3").agg(v1=("v1", "sum"), v3=("v3", "mean"))
    if q == "q4":
        return x.groupby("id4").agg(v1=("v1", "mean"), v2=("v2", "mean"), v3=("v3", "mean"))
    if q == "q5":
        return x.groupby("id6").agg(v1=("v1", "sum"), v2=("v2", "sum"), v3=("v3", "sum"))
    if q == "q6":
        return x.groupby(["id4", "id5"]).agg(median_v3=("v3", "median"), sd_v3=("v3", "std"))
    if q == "q7":
        return x.groupby("id3").agg(v1=("v1", "max"), v2=("v2", "min"))
    if q == "q8":
        x = x[x.v3.notna()][["id6", "v3"]]
        return x.sort_values("v3", ascending=False).groupby("id6").head(2)
    if q == "q9":  # the per-group correlation of the API (as Polars' pl.corr); pandas'
        # solution, apply(_r2), runs too, but through a pandas object per group
        g = x[["id2", "id4", "v1", "v2"]].groupby(["id2", "id4"])
        return g.v1.corr(g.v2) ** 2
    if q == "q10":
        return x.groupby(KEYS6).agg(v3=("v3", "sum"), count=("v1", "size"))
    raise SystemExit(f"unknown question {q}")


def _r2(g):
    """db-benchmark's q9 per group: the squared correlation of v1 and v2."""
    import pandas as pd

    return pd.Series({"r2": g["v1"].corr(g["v2"]) ** 2})


def join_tables(q, read, path):
    """``(x, right, key, how)`` of join question ``q``, tables read with ``read(folder)``."""
    right, key, how = JOINS[q]
    return read(os.path.join(path, "x")), read(os.path.join(path, right)), key, how


def q_polars(q, pl, path):
    x = pl.scan_parquet(os.path.join(path, "*.parquet"))
    if q == "q1":
        return x.group_by("id1").agg(pl.col("v1").sum())
    if q == "q2":
        return x.group_by(["id1", "id2"]).agg(pl.col("v1").sum())
    if q == "q3":
        return x.group_by("id3").agg(pl.col("v1").sum(), pl.col("v3").mean())
    if q == "q4":
        return x.group_by("id4").agg(pl.col("v1", "v2", "v3").mean())
    if q == "q5":
        return x.group_by("id6").agg(pl.col("v1", "v2", "v3").sum())
    if q == "q6":
        return x.group_by(["id4", "id5"]).agg(
            pl.col("v3").median().alias("median_v3"), pl.col("v3").std().alias("sd_v3")
        )
    if q == "q7":
        return x.group_by("id3").agg((pl.col("v1").max() - pl.col("v2").min()).alias("range_v1_v2"))
    if q == "q8":
        return (
            x.drop_nulls("v3")
            .group_by("id6")
            .agg(pl.col("v3").top_k(2).alias("largest2_v3"))
            .explode("largest2_v3")
        )
    if q == "q9":
        return x.group_by(["id2", "id4"]).agg((pl.corr("v1", "v2") ** 2).alias("r2"))
    if q == "q10":
        return x.group_by(KEYS6).agg(pl.col("v3").sum(), pl.len().alias("count"))
    raise SystemExit(f"unknown question {q}")


DUCKDB_SQL = {
    "q1": "SELECT id1, sum(v1) AS v1 FROM x GROUP BY id1",
    "q2": "SELECT id1, id2, sum(v1) AS v1 FROM x GROUP BY id1, id2",
    "q3": "SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM x GROUP BY id3",
    "q4": "SELECT id4, avg(v1) AS v1, avg(v2) AS v2, avg(v3) AS v3 FROM x GROUP BY id4",
    "q5": "SELECT id6, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3 FROM x GROUP BY id6",
    "q6": "SELECT id4, id5, median(v3) AS median_v3, stddev(v3) AS sd_v3 FROM x GROUP BY id4, id5",
    "q7": "SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM x GROUP BY id3",
    "q8": "SELECT id6, largest2_v3 FROM (SELECT id6, v3 AS largest2_v3, row_number() OVER "
    "(PARTITION BY id6 ORDER BY v3 DESC) AS order_v3 FROM x WHERE v3 IS NOT NULL) sub WHERE order_v3 <= 2",
    "q9": "SELECT id2, id4, pow(corr(v1, v2), 2) AS r2 FROM x GROUP BY id2, id4",
    "q10": "SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS count FROM x "
    "GROUP BY id1, id2, id3, id4, id5, id6",
}

COLUMNS = {
    "q1": ["id1", "v1"],
    "q2": ["id1", "id2", "v1"],
    "q3": ["id3", "v1", "v3"],
    "q4": ["id4", "v1", "v2", "v3"],
    "q5": ["id6", "v1", "v2", "v3"],
    "q6": ["id4", "id5", "v3"],
    "q7": ["id3", "v1", "v2"],
    "q8": ["id6", "v3"],
    "q9": ["id2", "id4", "v1", "v2"],
    "q10": KEYS6 + ["v1", "v3"],
}


#: q1-q5: (keys, {column: aggregation}), the same for pandas and Dask (db-benchmark's solutions)
SIMPLE = {
    "q1": ("id1", {"v1": "sum"}),
    "q2": (["id1", "id2"], {"v1": "sum"}),
    "q3": ("id3", {"v1": "sum", "v3": "mean"}),
    "q4": ("id4", {"v1": "mean", "v2": "mean", "v3": "mean"}),
    "q5": ("id6", {"v1": "sum", "v2": "sum", "v3": "sum"}),
}


def q_pandas(q, pd, x):
    """db-benchmark's pandas solution (``sort=False, observed=True, dropna=False``)."""
    kw = dict(sort=False, observed=True, dropna=False)
    if q in SIMPLE:
        keys, aggs = SIMPLE[q]
        return x.groupby(keys, **kw).agg(aggs)
    if q == "q6":
        return x.groupby(["id4", "id5"], **kw).agg(median_v3=("v3", "median"), sd_v3=("v3", "std"))
    if q == "q7":
        r = x.groupby("id3", **kw).agg({"v1": "max", "v2": "min"})
        return (r["v1"] - r["v2"]).rename("range_v1_v2").to_frame()
    if q == "q8":
        x = x[~x["v3"].isna()][["id6", "v3"]]
        return x.sort_values("v3", ascending=False).groupby("id6", **kw).head(2)
    if q == "q9":
        return x[["id2", "id4", "v1", "v2"]].groupby(["id2", "id4"], **kw).apply(_r2)
    if q == "q10":
        return x.groupby(KEYS6, **kw).agg(v3=("v3", "sum"), count=("v1", "size"))
    raise SystemExit(f"unknown question {q}")


def q_dask(q, x):
    """db-benchmark's dask solution (``dropna=False, observed=True``); q10 ``split_out``."""
    kw = dict(dropna=False, observed=True)
    if q in SIMPLE:
        keys, aggs = SIMPLE[q]
        return x.groupby(keys, **kw).agg(aggs)
    if q == "q6":  # as db-benchmark's dask solution: an exact median needs a shuffle
        return x.groupby(["id4", "id5"], **kw).agg({"v3": ["median", "std"]}, shuffle_method="tasks")
    if q == "q7":
        r = x.groupby("id3", **kw).agg({"v1": "max", "v2": "min"})
        return r.assign(range_v1_v2=r["v1"] - r["v2"])[["range_v1_v2"]]
    if q == "q8":
        return (
            x[~x["v3"].isna()][["id6", "v3"]]
            .groupby("id6", **kw)
            .apply(lambda g: g.nlargest(2, "v3"), meta={"id6": "int64", "v3": "float64"})
        )
    if q == "q9":
        return x[["id2", "id4", "v1", "v2"]].groupby(["id2", "id4"], **kw).apply(_r2, meta={"r2": "float64"})
    if q == "q10":
        r = x.groupby(KEYS6, **kw).agg({"v3": "sum", "v1": "size"}, split_out=x.npartitions)
        return r.rename(columns={"v1": "count"})
    raise SystemExit(f"unknown question {q}")


# --------------------------------------------------------------------------
# worker side (one process per run; hpcframe: every rank)
# --------------------------------------------------------------------------
def join_check(rows, v1, v2) -> dict:
    """A join question's answer check, as db-benchmark's: the rows and the sums of v1 and v2."""
    return {"rows": int(rows), "sums": sorted([float(v1), float(v2)])}


def fingerprint(df) -> dict:
    """Rows and the sum of every value column of a pandas result (keys excluded), sorted, to
    compare engines (a join question's check is passed through)."""
    import pandas as pd

    if isinstance(df, dict):
        return df

    if isinstance(df, pd.Series):
        df = df.to_frame()
    df = df.reset_index(drop=False)
    sums = []
    for c in df.columns:
        name = c if isinstance(c, str) else str(c)
        if name.startswith("id") or name == "index":
            continue
        try:  # DuckDB's sum of integers is a HUGEINT: decimal objects in pandas
            col = df[c].astype("float64")
        except (TypeError, ValueError):
            continue
        sums.append(float(col.sum()))
    return {"rows": int(len(df)), "sums": sorted(sums)}


def parquet_fingerprint(path) -> dict:
    """Rows and the sums of ``v3`` and ``count`` of a written q10 result (after the timing)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = []
    for root, _dirs, names in os.walk(path):
        files += [os.path.join(root, n) for n in names if n.endswith(".parquet")]
    t = ds.dataset(sorted(files), format="parquet").to_table(columns=["v3", "count"])
    sums = [float(pc.sum(t["v3"]).as_py() or 0), float(pc.sum(t["count"]).as_py() or 0)]
    return {"rows": int(t.num_rows), "sums": sorted(sums), "files": len(files)}


def worker(engine: str, q: str, data: str, out_json: str, tmp: str) -> None:
    t_proc = time.perf_counter()
    info: dict = {"engine": engine, "query": q}
    client = cluster = None
    if engine == "polars":
        import polars as pl

        info["version"] = pl.__version__
        info["threads"] = pl.thread_pool_size()

        def run():
            if q in JOINS:
                x, r, key, how = join_tables(q, lambda p: pl.scan_parquet(os.path.join(p, "*.parquet")), data)
                ans = x.join(r, on=key, how=how, suffix="_r").collect()
                return join_check(ans.height, ans["v1"].sum(), ans["v2"].sum())
            lf = q_polars(q, pl, data)
            if q == "q10":
                target = os.path.join(tmp, "q10.parquet")
                try:
                    lf.sink_parquet(target)
                    info["q10_write"] = "LazyFrame.sink_parquet"
                except Exception as exc:  # an engine that cannot stream this plan
                    lf.collect().write_parquet(target)
                    info["q10_write"] = f"collect().write_parquet (sink_parquet failed: {exc!r:.200})"
                return None
            return lf.collect().to_pandas()

    elif engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads=2")
        info["version"] = duckdb.__version__
        info["threads"] = con.execute("SELECT current_setting('threads')").fetchone()[0]

        def run():
            if q in JOINS:
                right, key, how = JOINS[q]
                for t in ("x", right):
                    g = os.path.join(data, t, "*.parquet").replace("'", "''")
                    con.execute(f"CREATE OR REPLACE VIEW {t} AS SELECT * FROM read_parquet('{g}')")
                join = "JOIN" if how == "inner" else "LEFT JOIN"
                con.execute(f"CREATE OR REPLACE TABLE ans AS SELECT * FROM x {join} {right} USING ({key})")
                return join_check(*con.execute("SELECT count(*), sum(v1), sum(v2) FROM ans").fetchone())
            glob = os.path.join(data, "*.parquet").replace("'", "''")
            con.execute(f"CREATE OR REPLACE VIEW x AS SELECT * FROM read_parquet('{glob}')")
            if q == "q10":
                target = os.path.join(tmp, "q10.parquet").replace("'", "''")
                con.execute(f"COPY ({DUCKDB_SQL[q]}) TO '{target}' (FORMAT parquet)")
                info["q10_write"] = "COPY (query) TO file (FORMAT parquet)"
                return None
            return con.execute(DUCKDB_SQL[q]).to_arrow_table().to_pandas()

    elif engine == "pandas":
        import pandas as pd

        info["version"] = pd.__version__

        def run():
            if q in JOINS:
                x, r, key, how = join_tables(q, pd.read_parquet, data)
                ans = x.merge(r, on=key, how=how)
                return join_check(len(ans), ans["v1"].sum(), ans["v2"].sum())
            x = pd.read_parquet(data, columns=COLUMNS[q])
            r = q_pandas(q, pd, x)
            if q == "q10":
                r.reset_index().to_parquet(os.path.join(tmp, "q10.parquet"), index=False)
                info["q10_write"] = "reset_index().to_parquet(file)"
                return None
            return r

    elif engine == "dask":
        import dask
        import dask.dataframe as dd

        info["version"] = dask.__version__
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)  # the default scheduler from now on
        info["dask_scheduler"] = "distributed.LocalCluster(n_workers=2, threads_per_worker=1)"

        def run():
            if q in JOINS:
                x, r, key, how = join_tables(q, dd.read_parquet, data)
                ans = x.merge(r, on=key, how=how).persist()
                return join_check(*dask.compute(ans.shape[0], ans["v1"].sum(), ans["v2"].sum()))
            x = dd.read_parquet(data, columns=COLUMNS[q])
            r = q_dask(q, x)
            if q == "q10":
                r.to_parquet(os.path.join(tmp, "q10"))
                info["q10_write"] = f"to_parquet(dir) with split_out={x.npartitions}"
                return None
            return r.compute()

    else:
        raise SystemExit(f"unknown engine {engine}")

    t0 = time.perf_counter()
    result = run()
    info["seconds"] = time.perf_counter() - t0
    info["process_seconds_in_worker"] = time.perf_counter() - t_proc
    info["check"] = parquet_fingerprint(tmp) if q == "q10" else fingerprint(result)
    info["ru_maxrss_mb"] = own_peak_mb()
    with open(out_json, "w") as fh:
        json.dump(info, fh)
    if client is not None:
        client.close()
        cluster.close()


def hf_worker(q: str, data: str, out_json: str, tmp: str) -> None:
    """Run question ``q`` with hpcframe on every rank of ``COMM_WORLD``; rank 0 writes the JSON."""
    import resource

    t_proc = time.perf_counter()
    import hpcframe as hf
    import hpcframe.execute  # noqa: F401  (lazy in `import hpcframe`: the engine, pandas and pyarrow
    import hpcframe.readers  # noqa: F401  are imported before the clock, as the other engines are)
    from hpcframe.comm import get_comm

    comm = get_comm()
    info: dict = {"engine": f"hpcframe-{comm.size}", "query": q, "ranks": comm.size}
    info["version"] = getattr(hf, "__version__", "?")
    comm.barrier()
    t0 = time.perf_counter()
    res = None if q in JOINS else q_hpcframe(q, hf, data)
    result = None
    if q in JOINS:
        x, r, key, how = join_tables(q, hf.read_parquet, data)
        ans = x.merge(r, on=key, how=how).persist(comm=comm)
        result = join_check(*hf.compute(ans.len(), ans.v1.sum(), ans.v2.sum(), comm=comm))
        ans.unpersist()
    elif q == "q10" and hasattr(res, "to_parquet"):
        res.to_parquet(os.path.join(tmp, "q10"))
        info["q10_write"] = "GroupBy result .to_parquet(dir): every rank writes its groups"
    else:
        result = res.compute(comm=comm, root=0)
        if q == "q10":
            info["q10_write"] = (
                "FALLBACK compute(root=0): this hpcframe has no to_parquet on a group-by result "
                "(the result is gathered on rank 0, nothing is written)"
            )
        if q == "q7" and result is not None:
            result = (result["v1"] - result["v2"]).rename("range_v1_v2").to_frame()
        if q == "q8" and result is not None:  # the values of the answer, as the others give them
            result = result[["v3"]]
    comm.barrier()
    info["seconds"] = time.perf_counter() - t0
    info["process_seconds_in_worker"] = time.perf_counter() - t_proc
    rss = comm.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if comm.rank == 0:
        info["ru_maxrss_mb_per_rank"] = [round(r, 1) for r in rss]
        if q == "q10" and result is None:
            info["check"] = parquet_fingerprint(os.path.join(tmp, "q10"))
        else:
            info["check"] = fingerprint(result)
        with open(out_json, "w") as fh:
            json.dump(info, fh)


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------
def _uptime() -> tuple[str, list[float]]:
    try:
        text = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        text = ""
    return text, [round(x, 2) for x in os.getloadavg()]


def _kill_tree(proc, ps, seen) -> None:
    """Kill the run's process group and every process of its tree seen while polling."""
    import psutil

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    left = []
    for pid in seen:
        try:
            p = psutil.Process(pid)
            p.kill()
            left.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    proc.wait()
    psutil.wait_procs(left, timeout=10)


def own_peak_mb() -> float:
    """This process's peak RSS in MB (``getrusage``: exact, where a poll only samples)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def add_poll_option(ap) -> None:
    """The ``--poll-seconds`` option of the benchmark scripts (the interval of
    :func:`run_polled`; ``tpch_all.py`` and ``compare.py`` too)."""
    ap.add_argument(
        "--poll-seconds",
        type=float,
        default=0.25,
        help="interval of the RSS polls of each run's processes (each poll takes CPU from them; "
        "the peaks come from the workers' own getrusage)",
    )


def merge_worker_record(rec: dict, worker: dict) -> dict:
    """``rec`` (the parent's record of a run) updated with the worker's own record; the
    largest process's peak is at least the worker's own ``ru_maxrss`` (exact, where the
    parent's polls only sample). Used by ``tpch_all.py`` and ``compare.py`` too."""
    rec.update(worker)
    if rec.get("ru_maxrss_mb"):
        rec["peak_rss_largest_process_mb"] = max(rec["peak_rss_largest_process_mb"], rec["ru_maxrss_mb"])
    return rec


def run_polled(
    cmd, env, timeout, stderr, done=None, done_arg=None, rank_flag="--hf-worker", interval=0.25
) -> dict:
    """Run ``cmd`` in a new session and poll its process tree with psutil every ``interval``
    seconds (the scripts' ``--poll-seconds``, 0.25 s: each poll walks /proc and takes CPU from
    the measured processes, so the exact peaks come from the workers' own ``getrusage``,
    :func:`merge_worker_record`): the peak
    RSS of every process (MPI ranks, those whose command line has ``rank_flag``, are told by
    ``PMI_RANK``) and of the tree's sum. Killed after ``timeout`` seconds (status ``timeout``);
    else the status is ``ok`` when ``done(done_arg)`` is true (the worker wrote its result; no
    ``done``: exit code 0), ``failed`` otherwise. Also used by ``tpch_all.py``."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=stderr)
    ps = psutil.Process(proc.pid)
    peak_tree = 0
    peaks: dict[int, dict] = {}  # pid -> {"name", "rank", "peak"}
    status = None
    while proc.poll() is None:
        if time.perf_counter() - t0 > timeout:
            _kill_tree(proc, ps, list(peaks))
            status = "timeout"
            break
        try:
            procs = [ps] + ps.children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
                if p.pid not in peaks:
                    cmdline = p.cmdline()
                    rank = None
                    if rank_flag in cmdline and "PMI_RANK" in (environ := p.environ()):
                        rank = int(environ["PMI_RANK"])
                    peaks[p.pid] = {
                        "name": os.path.basename(cmdline[0]) if cmdline else p.name(),
                        "rank": rank,
                    }
                    peaks[p.pid]["peak"] = 0
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, IndexError):
                continue
            total += rss
            peaks[p.pid]["peak"] = max(peaks[p.pid]["peak"], rss)
        peak_tree = max(peak_tree, total)
        time.sleep(interval)
    wall = time.perf_counter() - t0
    if status is None:
        # the worker writes its result once measured; an error while shutting down (a Dask
        # cluster, MPI) after that is kept in the return code but does not void the run
        ok = done(done_arg) if done is not None else proc.returncode == 0
        status = "ok" if ok else "failed"
    return {"status": status, "proc": proc, "wall": wall, "peak_tree": peak_tree, "peaks": peaks}


def measure(engine: str, q: str, args, tmp_json: str) -> dict:
    env = dict(os.environ)
    env["POLARS_MAX_THREADS"] = "2"
    tmp = tempfile.mkdtemp(prefix=f"{engine}-{q}-", dir=args.scratch)
    data = args.data_join if q in JOINS else args.data
    script = os.path.abspath(__file__)
    if engine.startswith("hpcframe-"):
        ranks = int(engine.split("-")[1])
        env["PYTHONPATH"] = args.hf_path + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [
            args.mpiexec,
            "-n",
            str(ranks),
            args.hf_python,
            script,
            "--hf-worker",
            q,
            data,
            tmp_json,
            tmp,
        ]
    else:
        cmd = [sys.executable, script, "--worker", engine, q, data, tmp_json, tmp]
    uptime_text, load = _uptime()
    print(f"  [{engine} {q}] {uptime_text}", flush=True)
    if os.path.exists(tmp_json):
        os.remove(tmp_json)
    err_path = os.path.join(tmp, "stderr.txt")
    err = open(err_path, "w")
    polled = run_polled(cmd, env, args.timeout, err, os.path.exists, tmp_json, interval=args.poll_seconds)
    err.close()
    status, proc, wall = polled["status"], polled["proc"], polled["wall"]
    peak_tree, peaks = polled["peak_tree"], polled["peaks"]
    rank_peaks = sorted((v["rank"], v["peak"]) for v in peaks.values() if v["rank"] is not None)
    rec = {
        "engine": engine,
        "query": q,
        "status": status,
        "returncode": proc.returncode,
        "process_seconds": wall,
        "peak_rss_tree_mb": round(peak_tree / 2**20, 1),
        "peak_rss_largest_process_mb": round(max((v["peak"] for v in peaks.values()), default=0) / 2**20, 1),
        "peak_rss_per_process_mb": {
            f"{v['name']}[{pid}]" + (f" rank {v['rank']}" if v["rank"] is not None else ""): round(
                v["peak"] / 2**20, 1
            )
            for pid, v in peaks.items()
        },
        "peak_rss_per_rank_mb": [round(p / 2**20, 1) for _r, p in rank_peaks],
        "uptime": uptime_text,
        "loadavg_before": load,
        "command": cmd,
    }
    if status == "ok":
        with open(tmp_json) as fh:
            merge_worker_record(rec, json.load(fh))
    if status != "ok" or proc.returncode != 0:
        with open(err_path, errors="replace") as fh:
            rec["stderr_tail"] = fh.read()[-3000:]
        print(rec["stderr_tail"], file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return rec


def _median(xs):
    return statistics.median(xs) if xs else None


def summarize(results, engines, queries) -> tuple[list[dict], str]:
    """Medians per (engine, question) and the markdown tables."""
    summary = []
    for e in engines:
        for q in queries:
            runs = [r for r in results if r["engine"] == e and r["query"] == q]
            if not runs:
                continue
            ok = [r for r in runs if r["status"] == "ok"]
            bad = [r["status"] for r in runs if r["status"] != "ok"]
            row = {
                "engine": e,
                "query": q,
                "n_ok": len(ok),
                "n_runs": len(runs),
                "status": "ok" if ok else bad[0],
                "median_seconds": _median([r["seconds"] for r in ok]),
                "all_seconds": [round(r["seconds"], 3) for r in ok],
                "median_process_seconds": _median([r["process_seconds"] for r in ok]),
                "peak_rss_tree_mb": max(r["peak_rss_tree_mb"] for r in runs),
                "peak_rss_largest_process_mb": max(r["peak_rss_largest_process_mb"] for r in runs),
                "loadavg_1m_before": [r["loadavg_before"][0] for r in runs],
                "q10_write": next((r["q10_write"] for r in ok if "q10_write" in r), None),
                "check": ok[0].get("check") if ok else None,
            }
            if e.startswith("hpcframe-") and ok:
                per_rank = [r.get("ru_maxrss_mb_per_rank") or r["peak_rss_per_rank_mb"] for r in ok]
                row["peak_rss_per_rank_mb"] = [max(v) for v in zip(*per_rank)]
            summary.append(row)
    return summary, tables(summary, engines, queries)


def _cell(row, key, fmt="{:.2f}"):
    if row is None:
        return "–"
    if row["status"] != "ok":
        return row["status"]
    v = row[key]
    return fmt.format(v) if v is not None else "–"


def tables(summary, engines, queries) -> str:
    get = {(r["engine"], r["query"]): r for r in summary}
    head = "| engine | " + " | ".join(queries) + " |\n|---|" + "---|" * len(queries) + "\n"
    out = ["Median query seconds (reading the Parquet files included):\n", head]
    for e in engines:
        out.append(
            f"| {e} | " + " | ".join(_cell(get.get((e, q)), "median_seconds") for q in queries) + " |\n"
        )
    for e in ("hpcframe-1", "hpcframe-2"):
        if e not in engines or "polars" not in engines:
            continue
        cells = []
        for q in queries:
            a, b = get.get((e, q)), get.get(("polars", q))
            ok = a and b and a["status"] == b["status"] == "ok" and b["median_seconds"]
            cells.append(f"{a['median_seconds'] / b['median_seconds']:.2f}" if ok else "–")
        out.append(f"| {e} / Polars | " + " | ".join(cells) + " |\n")
    out += ["\nMedian whole-process seconds (start to exit, imports and cluster start included):\n", head]
    for e in engines:
        out.append(
            f"| {e} | "
            + " | ".join(_cell(get.get((e, q)), "median_process_seconds") for q in queries)
            + " |\n"
        )
    out += [
        "\nPeak RSS MB (max over runs): hpcframe per rank (rank 0 + rank 1, `ru_maxrss`); "
        "others the largest process, and for Dask also the sum over all its processes:\n",
        head,
    ]
    for e in engines:
        cells = []
        for q in queries:
            r = get.get((e, q))
            if r is None:
                cells.append("–")
            elif e.startswith("hpcframe-") and r.get("peak_rss_per_rank_mb"):
                cells.append(" + ".join(f"{v:.0f}" for v in r["peak_rss_per_rank_mb"]))
            elif e == "dask":
                cells.append(f"{r['peak_rss_largest_process_mb']:.0f} (Σ {r['peak_rss_tree_mb']:.0f})")
            else:
                cells.append(f"{r['peak_rss_largest_process_mb']:.0f}")
        out.append(f"| {e} | " + " | ".join(cells) + " |\n")
    loads = [x for r in summary for x in r["loadavg_1m_before"]]
    if loads:
        out.append(f"\nLoad average (1 min) before the runs: {min(loads):.2f}–{max(loads):.2f}.\n")
    # consistency of the answers
    notes = []
    for q in queries:
        checks = [(r["engine"], r["check"]) for r in summary if r["query"] == q and r.get("check")]
        if not checks:
            continue
        ref_e, ref = checks[0]
        for e, c in checks[1:]:
            same = c["rows"] == ref["rows"] and len(c["sums"]) == len(ref["sums"])
            same = same and all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(c["sums"], ref["sums"]))
            if not same:
                notes.append(f"{q}: {e} {c} differs from {ref_e} {ref}")
    if any(r.get("check") for r in summary):
        out.append(
            "\nAnswers: " + ("rows and column sums agree across engines.\n" if not notes else "MISMATCH\n")
        )
    out += [f"- {n}\n" for n in notes]
    q10 = [(r["engine"], r["q10_write"]) for r in summary if r["query"] == "q10" and r.get("q10_write")]
    if q10:
        out.append("\nq10 output per engine:\n")
        out += [f"- {e}: {w}\n" for e, w in q10]
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_json", nargs="?", help="default benchmarks/results-dbbench-<N>-<date>.json")
    ap.add_argument("--rows", default="1e7", help="N (accepts 1e7)")
    ap.add_argument("--k", default="100", help="K (accepts 1e2)")
    ap.add_argument("--files", type=int, default=8, help="Parquet files of a new dataset")
    ap.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    ap.add_argument("--scratch", default=None, help="temp folders for q10's output (default DATA_ROOT/tmp)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--queries", default=",".join(QUERIES))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run before it is killed")
    add_poll_option(ap)
    ap.add_argument(
        "--single-run-above", type=float, default=120.0, help="do not repeat a run whose query took longer"
    )
    ap.add_argument("--hf-python", default=DEFAULT_HF_PYTHON, help="the Python with hpcframe's dependencies")
    ap.add_argument("--mpiexec", default=DEFAULT_MPIEXEC)
    ap.add_argument("--hf-path", default=REPO, help="put on PYTHONPATH for hpcframe (default: this repo)")
    ap.add_argument("--worker", nargs=5, metavar=("ENGINE", "QUERY", "DATA", "OUT", "TMP"))
    ap.add_argument("--hf-worker", nargs=4, metavar=("QUERY", "DATA", "OUT", "TMP"))
    args = ap.parse_args(argv)

    if args.worker:
        worker(*args.worker)
        return 0
    if args.hf_worker:
        hf_worker(*args.hf_worker)
        return 0

    sys.path.insert(0, HERE)
    from dbbench_datagen import generate, generate_join, pretty_sci

    rows, k = int(float(args.rows)), int(float(args.k))
    engines = [e for e in args.engines.split(",") if e]
    queries = [q for q in args.queries.split(",") if q]
    for e in engines:
        if e not in ENGINES and not e.startswith("hpcframe-"):
            ap.error(f"unknown engine {e!r}; known: {', '.join(ENGINES)} (hpcframe-N for N ranks)")
    for q in queries:
        if q not in ALL_QUESTIONS:
            ap.error(f"unknown question {q!r}; known: {', '.join(ALL_QUESTIONS)}")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out_json = args.out_json or os.path.join(
        HERE, f"results-dbbench-{pretty_sci(rows)}-{stamp:%Y-%m-%d}.json"
    )
    out_md = os.path.splitext(out_json)[0] + ".md"
    args.data = generate(rows, k, args.data_root, args.files) if set(queries) - set(JOINS) else None
    args.data_join = generate_join(rows, args.data_root, args.files) if set(queries) & set(JOINS) else None
    args.scratch = args.scratch or os.path.join(args.data_root, "tmp")
    os.makedirs(args.scratch, exist_ok=True)
    tmp_json = out_json + ".worker.tmp"

    hf_commit = subprocess.run(
        ["git", "-C", args.hf_path, "log", "-1", "--format=%h %s", "--", "hpcframe"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", args.hf_path, "status", "--porcelain", "--", "hpcframe"], capture_output=True, text=True
    ).stdout.strip()
    if dirty:
        hf_commit += " (+ uncommitted changes in hpcframe/)"
    meta = {
        "data": args.data,
        "data_join": args.data_join,
        "rows": rows,
        "k": k,
        "started_utc": stamp.isoformat(timespec="seconds"),
        "argv": sys.argv,
        "hf_python": args.hf_python,
        "mpiexec": args.mpiexec,
        "hf_path": args.hf_path,
        "hf_commit": hf_commit,
    }
    results: list[dict] = []
    skip: set[tuple[str, str]] = set()
    for rep in range(args.reps):
        print(f"round {rep + 1}/{args.reps}", flush=True)
        for q in queries:
            for e in engines:
                if (e, q) in skip:
                    continue
                rec = measure(e, q, args, tmp_json)
                rec["rep"] = rep
                results.append(rec)
                secs = rec.get("seconds")
                query_s = f"{secs:.2f}" if secs is not None else "-"
                print(
                    f"  -> {e} {q} rep{rep}: {rec['status']} query={query_s}s "
                    f"proc={rec['process_seconds']:.2f}s "
                    f"rss largest={rec['peak_rss_largest_process_mb']:.0f}MB "
                    f"tree={rec['peak_rss_tree_mb']:.0f}MB"
                    + (f" ranks={rec.get('ru_maxrss_mb_per_rank')}" if e.startswith("hpcframe-") else ""),
                    flush=True,
                )
                if rec["status"] != "ok" or (secs or 0) > args.single_run_above:
                    skip.add((e, q))
                with open(out_json, "w") as fh:
                    json.dump({"meta": meta, "runs": results}, fh, indent=1)
    if os.path.exists(tmp_json):
        os.remove(tmp_json)

    summary, md = summarize(results, engines, queries)
    meta["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(out_json, "w") as fh:
        json.dump({"meta": meta, "summary": summary, "runs": results}, fh, indent=1)
    header = (
        f"db-benchmark group-by, G1 N={rows:,} K={k}, {args.reps} round(s), "
        f"{meta['started_utc']} – {meta['finished_utc']}, hpcframe/ last changed in {meta['hf_commit']}\n\n"
    )
    with open(out_md, "w") as fh:
        fh.write(header + md)
    print()
    print(header + md)
    print(f"wrote {out_json} and {out_md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
