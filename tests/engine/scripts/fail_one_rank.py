"""A user script in which one rank's partition raises (or the process dies, or calls
sys.exit(), or gets a SIGINT): run it under mpiexec; every rank must end promptly with the
error (used by tests/engine/test_rank_failures.py).

Modes: ``raise``, ``exit`` (os._exit), ``sysexit`` (sys.exit(3)), ``sigint`` (the rank sends
itself a SIGINT while it runs the function), ``sigint-stuck`` (the same, while rank 0 is stuck
in its own partition for minutes), ``wait-sigint`` (the last rank prints ``last-done`` and
waits in the agreement while rank 0 sleeps ``SLOW`` seconds; the test signals it),
``uncaught`` (rank 0 raises in the script itself, outside any hpcframe call, while the
others compute).
"""

import os
import signal
import sys
import time

import hpcframe as hf

mode, data = sys.argv[1], sys.argv[2]
df = hf.read_parquet(data)
print(f"pid {os.environ.get('PMI_RANK', 0)} {os.getpid()}", flush=True)


def bad(part):
    if len(part) and (part["x"] >= 700).any():  # only the last file has such rows
        if mode == "raise":
            raise ValueError("bad value in the last partition")
        if mode == "exit":
            os._exit(3)  # a crash without Python clean-up
        if mode == "sysexit":
            sys.exit(3)
        if mode in ("sigint", "sigint-stuck"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the KeyboardInterrupt comes first
        if mode == "wait-sigint":
            print("last-done", flush=True)
    if len(part) and (part["x"] < 100).any():  # the first file: rank 0
        if mode == "sigint-stuck":
            time.sleep(600)
        if mode == "wait-sigint":
            time.sleep(float(os.environ.get("SLOW", "5")))
    return part["x"].sum()


if mode == "uncaught" and os.environ.get("PMI_RANK", "0") == "0":
    raise ValueError("a bug in the script on rank 0")

try:
    df.map_partitions(bad, combine=sum).compute()
except hf.ComputeError as exc:
    print(f"rank-caught: {type(exc).__name__}: {exc}", flush=True)
    sys.exit(1)
print("no error", flush=True)
