"""Caching benchmarks (issue 14): a daily-append job and a repeated interactive session.

::

    python benchmarks/cache_bench.py gen /tmp/cache-bench --days 30 --rows 100000
    python benchmarks/cache_bench.py daily /tmp/cache-bench --reps 5
    python benchmarks/cache_bench.py session /tmp/cache-bench --reps 5
    python benchmarks/cache_bench.py all /tmp/cache-bench --reps 5 --json results.json

``daily``: per repetition, a fresh cache directory is filled by yesterday's job (30 files,
``hpcframe run daily.yaml --cache-dir``), day 31 is written, and today's job runs once with
the cache and once without (in alternating order), each in a fresh process (the wall time of
the whole command, and the query time the summary prints). ``session``: an analyst's
session of 6 queries asked 3 times over the 31 files, in one process, with ``hf.Cache("2GB")``
and without (alternating order, fresh process each). The machine is shared: medians and
ratios of alternating runs are reported, with the load average before each repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SPEC = """
input: {{path: {data}}}
filter: "DepDelay.notna()"
groupby: [FlightDate, Carrier]
aggregate:
  DepDelay: [mean, max]
  Flights: sum
output: {{path: {out}, overwrite: true}}
"""


def _day(i: int, rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    delay = rng.normal(10, 35, rows).round(1)
    delay[rng.random(rows) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "FlightDate": pd.Timestamp("2026-01-01")
            + pd.Timedelta(days=i)
            + pd.to_timedelta(np.zeros(rows), "s"),
            "Carrier": pd.array(rng.choice(["AA", "UA", "DL", "WN", "B6", "AS", "NK"], rows), dtype="str"),
            "Origin": pd.array(rng.choice([f"A{j:02d}" for j in range(60)], rows), dtype="str"),
            "Flights": rng.integers(1, 4, rows).astype("int64"),
            "DepDelay": delay,
            "Distance": rng.uniform(80, 2800, rows).round(0),
        }
    )


def write_day(folder: str, i: int, rows: int) -> str:
    path = os.path.join(folder, f"day{i:02d}.parquet")
    _day(i, rows).to_parquet(path, row_group_size=rows // 2, index=False)
    return path


def gen(root: str, days: int, rows: int) -> None:
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    for i in range(days + 1):  # the last one is "tomorrow", kept aside
        write_day(root if i == days else data, i, rows)
    with open(os.path.join(root, "daily.yaml"), "w") as fh:
        fh.write(SPEC.format(data=data, out=os.path.join(root, "out.parquet")))
    print(f"wrote {days} + 1 daily files of {rows:,} rows under {root}")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    return env


def _hf(*args) -> tuple[float, float, str]:
    """Run ``hpcframe ARGS`` in a fresh process: (wall s, query s printed, output)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hpcframe.cli", *args], capture_output=True, text=True, env=_env(), check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"hpcframe {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    m = re.search(r"seconds:\s+([\d.]+)", proc.stdout)
    return wall, float(m.group(1)) if m else float("nan"), proc.stdout


def _load() -> float:
    return os.getloadavg()[0]


def daily(root: str, reps: int) -> dict:
    data, spec = os.path.join(root, "data"), os.path.join(root, "daily.yaml")
    extra = sorted(f for f in os.listdir(root) if f.endswith(".parquet") and f.startswith("day"))[0]
    rows = []
    for r in range(reps):
        cache = tempfile.mkdtemp(prefix="cache-bench-")
        tomorrow = os.path.join(data, extra)
        if os.path.exists(tomorrow):
            os.remove(tomorrow)
        load = _load()
        warm_wall, warm_q, _ = _hf("run", spec, "--cache-dir", cache)  # yesterday: 30 files
        shutil.copyfile(os.path.join(root, extra), tomorrow)
        order = ["cached", "plain"] if r % 2 == 0 else ["plain", "cached"]
        got = {}
        for which in order:
            args = ["run", spec] + (["--cache-dir", cache] if which == "cached" else [])
            got[which] = _hf(*args)
        assert "blocks:   1 read," in got["cached"][2], got["cached"][2]  # only the new file
        rows.append(
            {
                "rep": r,
                "load": load,
                "first_with_cache_wall": warm_wall,
                "first_with_cache_query": warm_q,
                "plain_wall": got["plain"][0],
                "plain_query": got["plain"][1],
                "cached_wall": got["cached"][0],
                "cached_query": got["cached"][1],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(cache, ignore_errors=True)
        os.remove(tomorrow)
    return {"daily": rows, "daily_summary": _summary(rows)}


SESSION = """
import json, sys, time
import hpcframe as hf
data, cached = sys.argv[1], sys.argv[2] == "1"
df = hf.read_parquet(data)
def queries():
    return [
        df.groupby("FlightDate").Flights.sum(),
        df[df.Carrier == "AA"].groupby("FlightDate").Flights.sum(),
        df.groupby("Carrier").DepDelay.mean(),
        df[df.Distance > 1000].groupby(["Carrier", "Origin"]).DepDelay.max(),
        df.groupby("Origin").agg({"DepDelay": ["mean", "count"], "Distance": "sum"}),
        df.DepDelay.mean(),
    ]
import contextlib
ctx = hf.Cache("2GB") if cached else contextlib.nullcontext()
rounds = []
with ctx:
    for r in range(3):
        t0 = time.perf_counter()
        for q in queries():
            q.compute()
        rounds.append(time.perf_counter() - t0)
print(json.dumps(rounds))
"""


def session(root: str, reps: int) -> dict:
    data = os.path.join(root, "data")
    extra = sorted(f for f in os.listdir(root) if f.endswith(".parquet") and f.startswith("day"))[0]
    if not os.path.exists(os.path.join(data, extra)):
        shutil.copyfile(os.path.join(root, extra), os.path.join(data, extra))
    rows = []
    for r in range(reps):
        load = _load()
        got = {}
        for which in ["cached", "plain"] if r % 2 == 0 else ["plain", "cached"]:
            proc = subprocess.run(
                [sys.executable, "-c", SESSION, data, "1" if which == "cached" else "0"],
                capture_output=True,
                text=True,
                env=_env(),
                check=True,
            )
            got[which] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "rep": r,
                "load": load,
                "plain_rounds": got["plain"],
                "cached_rounds": got["cached"],
                "plain_total": sum(got["plain"]),
                "cached_total": sum(got["cached"]),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    os.remove(os.path.join(data, extra))
    return {"session": rows, "session_summary": _summary(rows)}


def _summary(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("rep",) and isinstance(rows[0][k], (int, float))]
    out = {k: statistics.median(r[k] for r in rows) for k in keys}
    pairs = (("plain_wall", "cached_wall"), ("plain_query", "cached_query"), ("plain_total", "cached_total"))
    for a, b in pairs:
        if a in rows[0]:
            out[f"ratio_{a}_over_{b}"] = statistics.median(r[a] / r[b] for r in rows)
    if "plain_rounds" in rows[0]:
        for i in range(3):
            out[f"plain_round{i + 1}"] = statistics.median(r["plain_rounds"][i] for r in rows)
            out[f"cached_round{i + 1}"] = statistics.median(r["cached_rounds"][i] for r in rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["gen", "daily", "session", "all"])
    ap.add_argument("root")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    results: dict = {}
    if a.what in ("gen", "all"):
        gen(a.root, a.days, a.rows)
    if a.what in ("daily", "all"):
        results.update(daily(a.root, a.reps))
    if a.what in ("session", "all"):
        results.update(session(a.root, a.reps))
    for k, v in results.items():
        if k.endswith("summary"):
            print(k, json.dumps(v, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
