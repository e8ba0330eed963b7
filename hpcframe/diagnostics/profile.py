"""Task profile: when every leaf was read and computed, on which rank, and collective waits.

Times are put on one clock for all ranks: in ``on_run_start`` (collective) the ranks meet at a
barrier, which they leave within microseconds of each other, and rank 0 broadcasts its wall
clock at that moment. Each rank then maps its ``time.perf_counter()`` values onto rank 0's
wall clock (:class:`Clock`). Everything is gathered to rank 0 in ``on_run_end`` (collective).
"""

from __future__ import annotations

import time

from ..callbacks import Callback
from .progress import safe_to_meet

TASK_COLUMNS = [
    "run",
    "source",
    "leaf",
    "rank",
    "host",
    "start",
    "read_end",
    "end",
    "rows",
    "bytes",
    "rows_out",
    "pruned",
    "path",
    "partition",
]
COLLECTIVE_COLUMNS = ["run", "rank", "host", "name", "start", "end"]
RUN_COLUMNS = [
    "run",
    "source",
    "rank",
    "host",
    "start",
    "end",
    "leaves",
    "rows",
    "bytes",
    "ok",
    "read_start",
    "format",
]


class Clock:
    """Maps this rank's clocks onto rank 0's wall clock (seconds since the epoch)."""

    def __init__(self, comm):
        if getattr(comm, "is_mpi", False) and comm.size > 1:
            comm.barrier()
        perf, wall = time.perf_counter(), time.time()
        wall0 = comm.bcast(wall, 0)
        self._perf_base, self._wall0 = perf, wall0
        #: add to this rank's ``time.time()`` values to get rank 0's wall clock
        self.skew = wall0 - wall

    def wall(self, perf: float) -> float:
        """Rank 0's wall-clock time of this rank's ``time.perf_counter()`` value ``perf``."""
        return self._wall0 + (perf - self._perf_base)


def clock(run) -> Clock:
    """The :class:`Clock` of ``run`` (collective the first time; shared by all profilers)."""
    clk = getattr(run, "_hf_clock", None)
    if clk is None:
        clk = Clock(run.comm)
        run._hf_clock = clk
    return clk


def empty_frame(columns):
    """An empty pandas DataFrame with the given ``columns`` (what ranks other than 0 return)."""
    import pandas as pd

    return pd.DataFrame({c: [] for c in columns})


class Profiler(Callback):
    """Records every leaf (a block of partitions) read on every rank, and the time each rank
    spends in collectives, for all computations in the ``with`` block.

    Use the same ``with`` on every rank (SPMD): the records are gathered to rank 0 at the end
    of each computation. Times of all ranks are put on rank 0's clock.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per leaf, times in seconds since :attr:`t0` (see :attr:`results`).
    collectives : pandas.DataFrame
        One row per collective per rank.
    runs : pandas.DataFrame
        One row per scan and rank.
    t0 : float or None
        Rank 0's wall clock (seconds since the epoch) when the first scan's planning began.
    root : bool
        False on ranks other than 0, whose frames above are empty (their records were sent
        to rank 0).

    Examples
    --------
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> frame = hf.from_pandas(pd.DataFrame({"x": range(1000)}), npartitions=4)
    >>> with hf.Profiler() as prof:
    ...     total = frame.x.sum().compute()
    >>> len(prof.results), list(prof.results["rows"])
    (4, [250, 250, 250, 250])
    >>> sorted(set(prof.collectives["name"]))
    ['agree', 'exchange']
    """

    def __init__(self):
        self._reset()

    def _reset(self):
        self._tasks, self._colls, self._runs = [], [], []
        self._local = None
        self.t0 = None  # rank 0's wall clock at the start of the first scan
        self.root = True  # becomes False on ranks other than 0
        self.nranks = 1
        self._run_no = 0

    def __enter__(self):
        self._reset()
        return super().__enter__()

    # -- hooks ------------------------------------------------------------------------------
    def on_run_start(self, run) -> None:
        """Collective: put this rank on rank 0's clock and open the scan's records."""
        clk = clock(run)
        comm = run.comm
        self.root, self.nranks = comm.rank == 0, comm.size
        self._run_no += 1
        # the run starts when its planning (partition discovery, pruning) started
        read_start = clk.wall(run.t0)
        t_plan = getattr(run, "t_plan", None)
        start = min(clk.wall(t_plan), read_start) if t_plan is not None else read_start
        if self.t0 is None:
            self.t0 = start
        self._my_leaves = set(run.my_leaves)
        self._local = {
            "tasks": [],
            "colls": [],
            "clock": clk,
            "run": [
                self._run_no,
                run.source,
                comm.rank,
                comm.host,
                start,
                None,
                len(run.my_leaves),
                run.my_rows,
                run.my_bytes,
                True,
                read_start,
                getattr(run, "source_format", "") or "",
            ],
        }

    def on_leaf_done(self, run, leaf, times) -> None:
        """Record one leaf: where it was read and when it was read and computed."""
        loc = self._local
        wall = loc["clock"].wall
        first = leaf.parts[0] if leaf.parts else None
        loc["tasks"].append(
            (
                self._run_no,
                run.source,
                leaf.index,
                run.comm.rank,
                run.comm.host,
                wall(times["start"]),
                wall(times["read_end"]),
                wall(times["end"]),
                int(times.get("rows", 0)),
                int(times.get("nbytes", 0)),
                times.get("rows_out"),
                leaf.index not in self._my_leaves,
                getattr(first, "path", ""),
                leaf.describe(),
            )
        )

    def on_collective(self, run, name, start, end) -> None:
        """Record the time this rank spent in the collective ``name``."""
        loc = self._local
        wall = loc["clock"].wall
        loc["colls"].append((self._run_no, run.comm.rank, run.comm.host, name, wall(start), wall(end)))

    def on_run_end(self, run, error) -> None:
        """Collective (unless this rank failed alone): gather the records to rank 0."""
        loc = self._local
        if loc is None:
            return
        loc["run"][5] = loc["clock"].wall(time.perf_counter())
        loc["run"][9] = error is None
        mine = (loc["tasks"], loc["colls"], loc["run"])
        if safe_to_meet(error):
            everyone = run.comm.gather(mine, 0)
        else:  # a failure on this rank only: keep what we have, never start a collective
            everyone = [mine]
        if everyone is not None:
            for tasks, colls, info in everyone:
                self._tasks.extend(tasks)
                self._colls.extend(colls)
                self._runs.append(info)
        self._local = None

    # -- results ----------------------------------------------------------------------------
    def _frame(self, rows, columns, time_columns):
        import pandas as pd

        if not rows:
            return empty_frame(columns)
        df = pd.DataFrame(rows, columns=columns)
        for c in time_columns:
            df[c] = df[c].astype("float64") - (self.t0 or 0.0)
        return df

    @property
    def results(self):
        """One row per leaf: ``run, source, leaf, rank, host, start, read_end, end`` (seconds
        since :attr:`t0`), ``rows, bytes, rows_out, pruned, path, partition``; sorted by run,
        rank and start. Empty on ranks other than 0."""
        df = self._frame(self._tasks, TASK_COLUMNS, ("start", "read_end", "end"))
        if len(df):
            df["rows_out"] = df["rows_out"].astype("Float64")
            df = df.sort_values(["run", "rank", "start"], kind="stable").reset_index(drop=True)
        return df

    def to_frame(self):
        """The same as :attr:`results`."""
        return self.results

    @property
    def collectives(self):
        """One row per collective per rank: ``run, rank, host, name, start, end``."""
        return self._frame(self._colls, COLLECTIVE_COLUMNS, ("start", "end"))

    @property
    def runs(self):
        """One row per scan and rank: ``run, source, rank, host, start, end, leaves, rows,
        bytes, ok, read_start, format`` (leaves/rows/bytes this rank was assigned; ``start``
        is when the scan's planning began, ``read_start`` when reading began: the time
        between them is planning, e.g. discovering the partitions; ``format`` is the
        source's format, e.g. ``csv``)."""
        return self._frame(self._runs, RUN_COLUMNS, ("start", "end", "read_start"))
