"""A user's MPI script for the checkpoint/requeue tests: a slow group-by over a Parquet dataset
(every block computed sleeps SLOW seconds, default 0.5, and prints ``block N rank R run K``;
a block whose partial came from the checkpoint prints ``cached N rank R run K``); rank 0
writes the result and every run writes how many blocks it read.

    python checkpoint_job.py SRC OUT_DIR          # the group-by
    python checkpoint_job.py --fail-first OUT_DIR # fails on its first run, succeeds on a retry

``K`` is ``HPCFRAME_TEST_RUN`` or ``SLURM_RESTART_COUNT`` (0 on the first run, 1 after one requeue ...). A
``JobCheckpointed`` is left to propagate: the launcher turns it into exit status 75.
"""

import json
import os
import sys
import time

from mpi4py import MPI

import hpcframe as hf
from hpcframe.callbacks import Callback

comm = MPI.COMM_WORLD
run = int(os.environ.get("HPCFRAME_TEST_RUN") or os.environ.get("SLURM_RESTART_COUNT") or 0)

if sys.argv[1] == "--fail-first":
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    if run == 0:
        raise SystemExit(f"failing on purpose on run {run}")
    if comm.rank == 0:
        with open(os.path.join(out_dir, "ok.json"), "w") as fh:
            json.dump({"run": run}, fh)
    sys.exit(0)

src, out_dir = sys.argv[1], sys.argv[2]
slow = float(os.environ.get("SLOW", "0.5"))
os.makedirs(out_dir, exist_ok=True)


class Slow(Callback):
    def on_leaf_done(self, info, leaf, times):
        if times["rows"] == 0:  # nothing read: its partial came from the checkpoint
            print(f"cached {leaf.index} rank {comm.rank} run {run}", flush=True)
            return
        print(f"block {leaf.index} rank {comm.rank} run {run}", flush=True)
        time.sleep(slow)


frame = hf.read_parquet(src)
with Slow():
    result = frame.groupby("k").agg(total=("x", "sum"), mean_y=("y", "mean"), n=("y", "count")).compute()
read = sum(comm.allgather(hf.last_run_stats()["partitions_read"]))
if comm.rank == 0:
    result.to_parquet(os.path.join(out_dir, "result.parquet"))
    with open(os.path.join(out_dir, f"run{run}.json"), "w") as fh:
        json.dump({"run": run, "blocks_read": read, "ranks": comm.size}, fh)
