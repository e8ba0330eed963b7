"""A slow computation that gets a checkpoint signal mid-run (used by
tests/engine/test_checkpoint_stop.py); run under mpiexec or alone.

``python checkpoint_stop.py MODE DATA [OUT]`` with ``HPCFRAME_CHECKPOINT_SIGNALS`` set. Every
block sleeps ``SLOW`` seconds (default 0.05) and prints ``block N rank R``. Modes:

* ``self``: the last rank sends itself SIGUSR1 while it computes its second block;
* ``drop``: the same, twice (the second signal drops the block in flight);
* ``wait``: no signal from inside; the test signals the ranks from outside;
* ``query``: a group-by of DATA written to OUT by rank 0, the last rank signalling itself after
  its second block (unless ``NOSIGNAL``); prints ``computed read N`` (blocks read, all ranks);
* ``convert``: converts DATA into OUT (Parquet), the last rank signalling itself as in ``self``
  unless ``NOSIGNAL`` is set; prints ``converted ROWS`` when done.

Prints ``rank-caught: TYPE: MESSAGE`` and exits with the exception's exit code, or prints
``result VALUE`` when it finished.
"""

import os
import signal
import sys
import time

import hpcframe as hf
from hpcframe.comm import get_comm
from hpcframe.errors import exit_code

mode, data = sys.argv[1], sys.argv[2]
comm = get_comm()
slow = float(os.environ.get("SLOW", "0.05"))
print(f"pid {comm.rank} {os.getpid()}", flush=True)
seen = [0]


def work(part):
    seen[0] += 1
    print(f"block {int(part['x'].iloc[0]) // 10} rank {comm.rank}", flush=True)
    last = comm.rank == comm.size - 1
    if last and seen[0] == 2 and mode in ("self", "drop", "convert") and not os.environ.get("NOSIGNAL"):
        os.kill(os.getpid(), signal.SIGUSR1)
        if mode == "drop":
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(30)  # dropped before this ends
    time.sleep(slow)
    return int(part["x"].sum())


try:
    if mode == "convert":
        from hpcframe import writing
        from hpcframe.convert import convert

        chunk = writing.WriteOutput.chunk

        def slow_chunk(self, df, leaf):  # the real write of each leaf, after work()
            if leaf.index not in self.done:
                work(df)
            return chunk(self, df, leaf)

        writing.WriteOutput.chunk = slow_chunk  # type: ignore[method-assign]
        summary = convert(data, sys.argv[3], to="parquet", comm=comm)
        print(f"converted {summary['rows']} skipped {summary['skipped']}", flush=True)
    elif mode == "query":  # a group-by (partials kept in HPCFRAME_CACHE_DIR), written by rank 0
        from hpcframe.callbacks import Callback

        class Slow(Callback):
            def on_leaf_done(self, run, leaf, times):
                seen[0] += 1
                print(f"block {leaf.index} rank {comm.rank}", flush=True)
                last = comm.rank == comm.size - 1
                if last and seen[0] == 2 and not os.environ.get("NOSIGNAL"):
                    os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(slow)

        frame = hf.read_parquet(data)
        with Slow():
            got = frame.groupby("k").agg(total=("x", "sum"), mean_y=("y", "mean"), n=("y", "count"))
            result = got.compute(comm=comm)
        read = sum(comm.allgather(hf.last_run_stats()["partitions_read"]))
        if comm.rank == 0:
            result.to_parquet(sys.argv[3])
        print(f"computed read {read}", flush=True)
    else:
        total = hf.read_parquet(data).map_partitions(work, combine=sum).compute(comm=comm)
        print(f"result {total}", flush=True)
except hf.ComputeError as exc:
    print(f"rank-caught: {type(exc).__name__}: {exc}", flush=True)
    sys.exit(exit_code(exc))
