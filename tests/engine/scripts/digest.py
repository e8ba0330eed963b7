"""Print a digest of float results (bit patterns) of several queries, on rank 0."""

import hashlib
import sys

import numpy as np
import pandas as pd

import hpcframe as hf

hf.config.block_rows = 700  # many leaves, row groups cut into blocks
df = hf.read_parquet(sys.argv[1])
f = df[df.x > -1.5]
# group-by results used as frames, and shuffled frames: stages held by the ranks in
# hf.config.partitions hash partitions, whatever the number of ranks
groups = df.groupby(["k", "c"]).agg(s=("x", "sum"), m=("y", "mean"))
kept = groups[groups.m > 1e9 - 0.1]
uniq = df.drop_duplicates(["k", "c"])
results = hf.compute(
    kept.s.sum(),
    kept.assign(r=kept.s / kept.m).r.var(),
    kept.groupby("k").s.mean(),
    uniq.x.sum(),
    df.assign(t=df.groupby("k").x.transform("mean")).t.sum(),
    f.groupby("k").agg(s=("x", "sum"), m=("x", "mean"), v=("y", "var"), sd=("x", "std")),
    f.groupby(["k", "c"]).y.sum(),
    df.x.sum(),
    df.y.var(),
    df[["x", "y"]].mean(),
    df.describe(),
    root=0,
)
if results[0] is not None:
    h = hashlib.sha256()
    for r in results:
        values = (
            np.asarray(r, dtype="float64").ravel()
            if not isinstance(r, (pd.Series, pd.DataFrame))
            else r.to_numpy(dtype="float64").ravel()
        )
        h.update(values.tobytes())
    print("digest", h.hexdigest(), flush=True)
