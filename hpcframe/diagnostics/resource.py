"""Resource profile: CPU % and resident memory of every rank, sampled by a thread."""

from __future__ import annotations

import threading
import time

from ..callbacks import Callback
from .profile import clock, empty_frame
from .progress import safe_to_meet

RESOURCE_COLUMNS = ["rank", "host", "epoch", "cpu", "rss"]


class ResourceProfiler(Callback):
    """Samples this process's CPU % (of one core: 200 means two busy cores) and RSS (bytes)
    every ``dt`` seconds with psutil while the ``with`` block runs, on every rank.

    The samples are gathered to rank 0 at the end of every computation (collective); after the
    block :attr:`results` on rank 0 is a DataFrame ``rank, host, epoch`` (rank 0's wall clock),
    ``time`` (seconds since the first sample), ``cpu, rss``. Empty on other ranks.

    Parameters
    ----------
    dt : float, default 1.0
        Seconds between samples.

    Raises
    ------
    ValueError
        When ``dt`` is not positive.
    ImportError
        When the ``with`` block is entered and psutil is not installed
        (``pip install hpcframe[diagnostics]``).

    Examples
    --------
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> frame = hf.from_pandas(pd.DataFrame({"x": range(1000)}))
    >>> with hf.ResourceProfiler(dt=0.1) as rprof:
    ...     total = frame.x.sum().compute()
    >>> list(rprof.results.columns)
    ['rank', 'host', 'epoch', 'cpu', 'rss', 'time']
    >>> bool((rprof.results["rss"] > 0).all())
    True
    """

    def __init__(self, dt: float = 1.0):
        if not dt > 0:
            raise ValueError(f"ResourceProfiler(dt={dt!r}): the sampling interval must be > 0 s")
        self.dt = float(dt)
        self._samples: list = []
        self._gathered: list = []
        self._lock = threading.Lock()
        self._thread = None
        self.root, self._seen_run = True, False

    def __enter__(self):
        import psutil

        self._samples, self._gathered = [], []
        self.root, self._seen_run, self._skew, self._who = True, False, 0.0, (0, _host())
        self._stop = threading.Event()
        proc = psutil.Process()
        proc.cpu_percent(None)  # the first call only starts the measurement
        self._sample(proc)
        self._thread = threading.Thread(
            target=self._loop, args=(proc,), daemon=True, name="hpcframe-resources"
        )
        self._thread.start()
        return super().__enter__()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self._seen_run:  # no computation: this process's own samples
            self._gathered.extend(self._take())
        return super().__exit__(*exc)

    def _loop(self, proc) -> None:
        while not self._stop.wait(self.dt):
            self._sample(proc)

    def _sample(self, proc) -> None:
        try:
            cpu, rss = proc.cpu_percent(None), proc.memory_info().rss
        except Exception:  # noqa: BLE001 - a sample is never worth a failure
            return
        with self._lock:
            self._samples.append((time.time(), cpu, rss))

    def _take(self) -> list:
        with self._lock:
            samples, self._samples = self._samples, []
        rank, host = self._who
        return [(rank, host, t + self._skew, cpu, rss) for t, cpu, rss in samples]

    # -- hooks ------------------------------------------------------------------------------
    def on_run_start(self, run) -> None:
        """Collective: learn this rank's clock skew to rank 0, its rank and host."""
        self._skew = clock(run).skew
        self._who = (run.comm.rank, run.comm.host)
        self.root, self._seen_run = run.comm.rank == 0, True

    def on_run_end(self, run, error) -> None:
        """Collective (unless this rank failed alone): gather the samples so far to rank 0."""
        mine = self._take()
        everyone = run.comm.gather(mine, 0) if safe_to_meet(error) else [mine]
        if everyone is not None:
            for part in everyone:
                self._gathered.extend(part)

    @property
    def results(self):
        """The samples of all ranks (see the class docstring), sorted by rank and time."""
        import pandas as pd

        if not self._gathered:
            df = empty_frame(RESOURCE_COLUMNS)
            df["time"] = []
            return df
        df = pd.DataFrame(self._gathered, columns=RESOURCE_COLUMNS)
        df["time"] = df["epoch"] - df["epoch"].min()
        return df.sort_values(["rank", "epoch"], kind="stable").reset_index(drop=True)

    def to_frame(self):
        """The same as :attr:`results`."""
        return self.results


def _host() -> str:
    import socket

    return socket.gethostname()
