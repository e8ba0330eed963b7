"""Cache profile: hits, misses, bytes, evictions of the caches (:mod:`hpcframe.cache`), per rank."""

from __future__ import annotations

from ..callbacks import Callback
from .progress import safe_to_meet

CACHE_COLUMNS = [
    "rank",
    "host",
    "level",
    "hits",
    "misses",
    "uncacheable",
    "bytes",
    "stored",
    "evictions",
    "rejected",
]


def _delta(now: dict, before: dict) -> dict:
    return {lv: {c: v - before.get(lv, {}).get(c, 0) for c, v in cs.items()} for lv, cs in now.items()}


class CacheProfiler(Callback):
    """Counts what the caches did while the ``with`` block runs, on every rank: per rank and
    cache level (``"memory partials"``, ``"disk partials"``, ``"column chunks"``) the
    ``hits``, ``misses``, ``uncacheable`` partials (computed as usual: not a built-in
    aggregation, or not exactly storable), ``bytes`` served from the cache, bytes ``stored``
    into it, ``evictions`` (memory) and ``rejected`` disk entries (corrupt, truncated or
    foreign: recomputed).

    The counts are gathered to rank 0 at the end of every computation (collective); after the
    block :attr:`results` on rank 0 is a DataFrame with one row per rank and level (empty on
    other ranks). Pass it to :func:`hpcframe.visualize` with the other profilers.

    Examples
    --------
    >>> import os, tempfile
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
    >>> pd.DataFrame({"k": list("abab"), "x": [1, 2, 3, 4]}).to_parquet(path)
    >>> df = hf.read_parquet(path)
    >>> with hf.Cache("10MB"), hf.CacheProfiler() as cprof:
    ...     for _ in range(3):
    ...         total = df.groupby("k").x.sum().compute()
    >>> row = cprof.results.set_index("level").loc["memory partials"]
    >>> int(row["hits"]), int(row["misses"])
    (2, 1)
    """

    def __init__(self):
        self.root = True
        self._gathered: list = []
        self._seen_run = False
        self._start: dict = {}
        self._who = (0, "")

    def __enter__(self):
        from ..cache import stats

        self._gathered, self._seen_run, self.root = [], False, True
        self._start, self._who = stats(), (0, _host())
        return super().__enter__()

    def __exit__(self, *exc):
        if not self._seen_run:  # no computation reported: this process's own counts
            self._gathered.extend(self._take())
        return super().__exit__(*exc)

    def _take(self) -> list:
        from ..cache import stats

        now = stats()
        delta, self._start = _delta(now, self._start), now
        rank, host = self._who
        return [(rank, host, lv, *(cs[c] for c in CACHE_COLUMNS[3:])) for lv, cs in delta.items()]

    # -- hooks ------------------------------------------------------------------------------
    def on_run_start(self, run) -> None:
        """Learn this rank's rank and host."""
        self._who = (run.comm.rank, run.comm.host)
        self.root, self._seen_run = run.comm.rank == 0, True

    def on_run_end(self, run, error) -> None:
        """Collective (unless this rank failed alone): gather the counts so far to rank 0."""
        mine = self._take()
        everyone = run.comm.gather(mine, 0) if safe_to_meet(error) else [mine]
        if everyone is not None:
            for part in everyone:
                self._gathered.extend(part)

    @property
    def results(self):
        """Per rank and level, the counts summed over the computations (see the class
        docstring), with ``hit_rate`` = hits / (hits + misses)."""
        import pandas as pd

        df = pd.DataFrame(self._gathered, columns=CACHE_COLUMNS)
        if len(df):
            df = df.groupby(["rank", "host", "level"], as_index=False, sort=True).sum()
        for c in CACHE_COLUMNS[3:]:
            df[c] = df[c].astype("int64")
        looked = df["hits"] + df["misses"]
        df["hit_rate"] = (df["hits"] / looked.where(looked > 0)).astype("float64")
        return df.reset_index(drop=True)

    def to_frame(self):
        """The same as :attr:`results`."""
        return self.results


def _host() -> str:
    import socket

    return socket.gethostname()
