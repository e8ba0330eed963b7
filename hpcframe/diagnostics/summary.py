"""The bottleneck analysis of a recorded run: where the time went (I/O, compute,
communication), how unequal the ranks were, and what to try (see :func:`summarize`).

Plain data in, plain data out: used by the store (a saved profile carries its summary) and by
the report (which draws it).
"""

from __future__ import annotations

import os

from ..io.formats import CSV_COMPRESSION

FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet", "hdf5": "HDF5", "pandas": "pandas"}
_COMPRESSED = tuple(CSV_COMPRESSION)
TASK_KINDS = ("planning", "read", "compute")  # drawn on the rank's row (collectives below it)
IMBALANCE = 1.25  # slowest rank busy / mean busy at or above this: load imbalance


def summarize(profile, top: int = 5) -> dict:
    """The bottleneck analysis of ``profile`` (JSON-serialisable): ``wall`` seconds,
    ``per_rank`` busy/read/compute/collective seconds, ``shares`` of I/O, compute and
    communication in the ranks' total time, ``imbalance`` (slowest rank's busy time / mean),
    ``slowest`` partitions and ``bottleneck``, one sentence naming the main cost."""
    tasks, colls, runs = profile.tasks, profile.collectives, profile.runs
    ranks = sorted(set(runs["rank"]) | set(tasks["rank"])) if len(runs) or len(tasks) else []
    plan = planning_times(runs)
    per_rank = []
    for r in ranks:
        t = tasks[tasks["rank"] == r]
        c = colls[colls["rank"] == r]
        read = float((t["read_end"] - t["start"]).sum())
        comp = float((t["end"] - t["read_end"]).sum())
        wait = float((c["end"] - c["start"]).sum())
        planning = float(plan[runs["rank"] == r].sum()) if len(runs) else 0.0
        per_rank.append(
            {
                "rank": int(r),
                "leaves": int(len(t)),
                "rows": int(t["rows"].sum()),
                "planning": planning,
                "read": read,
                "compute": comp,
                "busy": read + comp,
                "collective": wait,
            }
        )
    wall = 0.0
    if len(runs):  # from the start of the first scan's planning to the end of the last scan
        wall = float(runs["end"].max() - runs["start"].min())
    elif len(tasks):
        wall = float(tasks["end"].max() - tasks["start"].min())
    totals = {k: sum(p[k] for p in per_rank) for k in ("planning", "read", "compute", "collective")}
    spent = sum(totals.values())
    shares = {
        "io": totals["read"] / spent if spent else 0.0,
        "compute": totals["compute"] / spent if spent else 0.0,
        "communication": totals["collective"] / spent if spent else 0.0,
        "planning": totals["planning"] / spent if spent else 0.0,
    }
    busy = [p["busy"] for p in per_rank]
    mean = sum(busy) / len(busy) if busy else 0.0
    imbalance = max(busy) / mean if mean > 0 else 1.0
    slow_rank = per_rank[busy.index(max(busy))]["rank"] if busy else None
    slowest = []
    if len(tasks):
        dur = (tasks["end"] - tasks["start"]).rename("seconds")
        for i in dur.sort_values(ascending=False, kind="stable").index[:top]:
            row = tasks.loc[i]
            slowest.append(
                {
                    "partition": str(row["partition"]),
                    "rank": int(row["rank"]),
                    "seconds": float(dur[i]),
                    "rows": int(row["rows"]),
                    "read": float(row["read_end"] - row["start"]),
                }
            )
    result = {
        "ranks": len(ranks),
        "wall": wall,
        "planning": max([p["planning"] for p in per_rank], default=0.0),
        "per_rank": per_rank,
        "shares": shares,
        "formats": _formats(profile),
        "imbalance": imbalance,
        "slowest_rank": slow_rank,
        "mean_busy": mean,
        "slowest": slowest,
    }
    result["bottleneck"] = _bottleneck(result)
    return result


def _bottleneck(s: dict) -> str:
    if not s["per_rank"] or s["mean_busy"] <= 0:
        return "nothing was read: no partition was processed (all pruned, or no computation)"
    slow = next(p for p in s["per_rank"] if p["rank"] == s["slowest_rank"])
    if s["ranks"] > 1 and s["imbalance"] >= IMBALANCE:
        return (
            f"load imbalance: rank {slow['rank']} was busy {slow['busy']:.2f} s, "
            f"{s['imbalance']:.2f}x the mean of {s['mean_busy']:.2f} s; the other ranks "
            "waited for it in collectives (more, smaller partitions or a lower "
            "hf.config.block_rows spread the work better)"
        )
    name, share = max(s["shares"].items(), key=lambda kv: kv[1])
    formats = s.get("formats") or []
    what = _format_text(formats)
    advice = {
        "io": f"reading {what} dominates: {_io_advice(formats)}",
        "compute": "pandas work dominates: simplify the expressions or use more ranks",
        "communication": "time in collectives dominates: the partial results are large "
        "(many groups) or the work per rank is too small",
        "planning": f"planning the scan (discovering the partitions of {what}) "
        f"dominates: {_planning_advice(formats)}",
    }[name]
    label = {"io": "I/O", "compute": "compute", "communication": "communication", "planning": "planning"}[
        name
    ]
    return f"{label}-bound: {share:.0%} of the ranks' time; {advice}"


def planning_times(runs):
    """Seconds of planning per row of ``runs`` (0 for profiles saved without ``read_start``)."""
    if not len(runs) or "read_start" not in runs:
        return runs["start"] * 0.0 if len(runs) else runs["start"]
    read_start = runs["read_start"].astype("float64").fillna(runs["start"].astype("float64"))
    return (read_start - runs["start"].astype("float64")).clip(lower=0.0)


def _formats(profile) -> list:
    """The formats of the sources read, e.g. ``["csv (xz-compressed)"]`` (from the runs'
    ``format`` column and, for compression, the paths of the partitions read)."""
    runs, tasks = profile.runs, profile.tasks
    if not len(runs) or "format" not in runs:
        return []
    out = []
    for fmt in dict.fromkeys(str(f) for f in runs["format"] if f):
        entry = fmt
        if fmt == "csv" and len(tasks) and "path" in tasks:
            exts = sorted(
                {
                    os.path.splitext(str(p))[1].lower()
                    for p in tasks["path"]
                    if str(p).lower().endswith(_COMPRESSED)
                }
            )
            if exts:
                entry = f"csv ({', '.join(e[1:] for e in exts)}-compressed)"
        out.append(entry)
    return out


def _format_text(formats) -> str:
    if not formats:
        return "the data"
    names = []
    for f in formats:
        base, _, rest = f.partition(" ")
        name = FORMAT_NAMES.get(base, base)
        names.append(f"{rest[1:-1].replace('-compressed', '')}-compressed {name}" if rest else name)
    return "/".join(names)


def _io_advice(formats) -> str:
    bases = {f.partition(" ")[0] for f in formats}
    if "csv" in bases:
        return (
            "CSV text is parsed in full (a compressed file is also decompressed, from "
            "its start); convert it once to Parquet (`hpcframe convert`) and query that, "
            "read fewer columns, or use more ranks/nodes"
        )
    if bases == {"parquet"}:
        return (
            "read fewer columns, filter on columns with Parquet statistics so partitions "
            "are pruned, or use more ranks/nodes for more bandwidth"
        )
    if bases == {"pandas"}:
        return "converting the in-memory DataFrame dominates: use more ranks"
    return "read fewer columns, or use more ranks/nodes for more bandwidth"


def _planning_advice(formats) -> str:
    bases = {f.partition(" ")[0] for f in formats}
    if "csv" in bases:
        return (
            "every CSV file is opened (and a compressed one partly decompressed) to "
            "estimate its rows; reuse the same frame for several queries (its partitions "
            "are discovered once), or convert to Parquet (`hpcframe convert`)"
        )
    return (
        "many files or row groups: reuse the same frame for several queries (its "
        "partitions are discovered once), or use fewer, larger files"
    )
