"""Saving and loading a run's profile: a directory of Parquet files plus ``run.json``.

Layout of a profile directory (every file loads with pandas / any Parquet reader)::

    run.json               summary: version, t0 (epoch seconds), ranks, hosts, sources, status,
                           and the bottleneck analysis of :func:`hpcframe.diagnostics.summary.summarize`
    tasks.parquet          one row per leaf  (Profiler.results; times in s since t0)
    collectives.parquet    one row per collective per rank
    runs.parquet           one row per scan per rank (``start``: planning began,
                           ``read_start``: reading began; ``format`` of the source)
    resources.parquet      CPU % / RSS samples (ResourceProfiler.results, plus ``time`` since t0)
    cache.parquet          optional: cache counts per rank and level (CacheProfiler.results)

Files are written under temporary names and renamed, ``run.json`` last: a directory with a
``run.json`` is complete.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from ..io.fs import replace_all
from .profile import COLLECTIVE_COLUMNS, RUN_COLUMNS, TASK_COLUMNS, Profiler, empty_frame
from .resource import RESOURCE_COLUMNS, ResourceProfiler
from .summary import summarize

FORMAT_VERSION = 1
_TABLES = ("tasks", "collectives", "runs", "resources")


@dataclass
class RunProfile:
    """Everything recorded about one run, as pandas DataFrames (see the module docstring)."""

    tasks: object
    collectives: object
    runs: object
    resources: object
    meta: dict = field(default_factory=dict)
    cache: object = None  # CacheProfiler.results, or None

    @property
    def t0(self) -> float:
        """The start of the run (seconds of the profiler's clock)."""
        return float(self.meta.get("t0") or 0.0)


def collect(profilers, status: str = "ok") -> RunProfile:
    """A :class:`RunProfile` from :class:`Profiler` / :class:`ResourceProfiler` objects (any
    of them may be missing). Raises ``TypeError`` for anything else."""
    from .cacheprof import CacheProfiler

    prof = rprof = cprof = None
    for p in profilers:
        if isinstance(p, CacheProfiler):
            cprof = p
        elif isinstance(p, Profiler):
            prof = p
        elif isinstance(p, ResourceProfiler):
            rprof = p
        else:
            raise TypeError(
                f"cannot report on {type(p).__name__}: pass Profiler, ResourceProfiler "
                "and/or CacheProfiler objects, a RunProfile or a profile directory"
            )
    tasks = prof.results if prof else empty_frame(TASK_COLUMNS)
    colls = prof.collectives if prof else empty_frame(COLLECTIVE_COLUMNS)
    runs = prof.runs if prof else empty_frame(RUN_COLUMNS)
    res = rprof.results if rprof else empty_frame(RESOURCE_COLUMNS + ["time"])
    t0 = prof.t0 if prof and prof.t0 is not None else (float(res["epoch"].min()) if len(res) else time.time())
    if len(res):
        res = res.assign(time=res["epoch"] - t0)
    hosts = sorted(set(runs["host"])) if len(runs) else []
    meta = {
        "version": FORMAT_VERSION,
        "t0": t0,
        "status": status,
        "ranks": int(runs["rank"].max()) + 1
        if len(runs)
        else (int(res["rank"].max()) + 1 if len(res) else 1),
        "hosts": hosts,
        "sources": list(dict.fromkeys(runs["source"])) if len(runs) else [],
        "formats": [f for f in dict.fromkeys(runs["format"]) if f] if len(runs) and "format" in runs else [],
        "leaves": int(len(tasks)),
        "rows": int(tasks["rows"].sum()) if len(tasks) else 0,
        "dt": rprof.dt if rprof else None,
    }
    return RunProfile(tasks, colls, runs, res, meta, cache=cprof.results if cprof else None)


def save(profile: RunProfile, directory) -> str:
    """Write ``profile`` into ``directory`` (created if needed); returns the directory.
    Raises ``OSError`` naming the directory when it cannot be written."""
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the profile directory {directory!r}: {exc.strerror}; "
            "pass a writable --profile-dir"
        ) from exc
    meta = dict(profile.meta, created=time.time(), summary=summarize(profile))

    def table(name):
        return lambda tmp: getattr(profile, name).to_parquet(tmp, index=False)

    def run_json(tmp):
        with open(tmp, "w") as fh:
            json.dump(meta, fh, indent=1, default=str)

    # every file is written before any is renamed into place
    replace_all(
        [(os.path.join(directory, f"{name}.parquet"), table(name)) for name in _TABLES]
        + ([(os.path.join(directory, "cache.parquet"), table("cache"))] if profile.cache is not None else [])
        + [(os.path.join(directory, "run.json"), run_json)]
    )
    return directory


def load(directory) -> RunProfile:
    """The :class:`RunProfile` saved in ``directory``. Raises ``FileNotFoundError`` when it
    is not a profile directory (no ``run.json``) and ``ValueError`` for an unknown version."""
    import pandas as pd

    directory = os.fspath(directory)
    meta_path = os.path.join(directory, "run.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(
            f"{directory!r} is not a profile directory (no run.json in it): create one with "
            "`hpcframe run JOB --profile-dir DIR` or hpcframe.diagnostics.profiling(DIR)"
        )
    with open(meta_path) as fh:
        try:
            meta = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"{meta_path} is not valid JSON ({exc}); re-run the job") from None
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path} has profile format version {meta.get('version')!r}; "
            f"this hpcframe reads version {FORMAT_VERSION}"
        )
    tables = {}
    for name in _TABLES:
        path = os.path.join(directory, f"{name}.parquet")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing from the profile directory; re-run the job")
        tables[name] = pd.read_parquet(path)
    runs = tables["runs"]
    if "read_start" not in runs:  # saved before planning was recorded: none is known
        runs["read_start"] = runs["start"] if len(runs) else []
    if "format" not in runs:
        runs["format"] = "" if len(runs) else []
    cache_path = os.path.join(directory, "cache.parquet")  # optional
    cache = pd.read_parquet(cache_path) if os.path.isfile(cache_path) else None
    return RunProfile(meta=meta, cache=cache, **tables)
