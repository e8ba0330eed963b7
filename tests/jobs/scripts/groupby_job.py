"""A user's MPI script, as a batch job would run it: a groupby over a Parquet dataset with
hpcframe on every rank; rank 0 writes the result; every rank writes what it saw.

    python groupby_job.py SRC OUT_DIR [TAG]
"""

import json
import os
import sys

from mpi4py import MPI

import hpcframe as hf

src, out_dir = sys.argv[1], sys.argv[2]
tag = sys.argv[3] if len(sys.argv) > 3 else "run"
comm = MPI.COMM_WORLD
os.makedirs(out_dir, exist_ok=True)
flights = hf.read_parquet(src)
res = flights.groupby("carrier")["delay"].sum().compute()
if comm.rank == 0:
    res.to_frame().to_parquet(os.path.join(out_dir, f"{tag}.parquet"))
with open(os.path.join(out_dir, f"{tag}.rank{comm.rank}.json"), "w") as fh:
    json.dump(
        {
            "rank": comm.rank,
            "size": comm.size,
            "argv": sys.argv[1:],
            "array_index": os.environ.get("HPCFRAME_ARRAY_INDEX"),
        },
        fh,
    )
