"""A group-by with millions of groups written with to_parquet, each rank under an address-space
cap: ``memory_cap.py DATA OUT CAP_BYTES``. Prints ``groups ROWS maxrss MB`` on every rank."""

import resource
import sys

from mpi4py import MPI  # noqa: F401  (MPI maps its shared memory before the cap)

cap = int(float(sys.argv[3]))
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

import hpcframe as hf  # noqa: E402

df = hf.read_parquet(sys.argv[1])
summary = df.groupby(["k1", "k2"]).agg(total=("v", "sum"), n=("v", "size")).to_parquet(sys.argv[2])
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print("groups", summary["rows"], "maxrss", maxrss, "MB", flush=True)
