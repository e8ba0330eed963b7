"""A user script in which one rank's partition raises (or the process dies): run it under
mpiexec; every rank must end promptly with the error (used by tests/local/test_failures.py)."""
import os
import sys

import numpy as np
import pandas as pd

import hpcframe as hf

mode, data = sys.argv[1], sys.argv[2]
df = hf.read_parquet(data)


def bad(part):
    if len(part) and (part["x"] >= 700).any():  # only the last file has such rows
        if mode == "raise":
            raise ValueError("bad value in the last partition")
        if mode == "exit":
            os._exit(3)  # a crash without Python clean-up
    return part["x"].sum()


try:
    df.map_partitions(bad, combine=sum).compute()
except hf.ComputeError as exc:
    print(f"rank-caught: {type(exc).__name__}: {exc}", flush=True)
    sys.exit(1)
print("no error", flush=True)
