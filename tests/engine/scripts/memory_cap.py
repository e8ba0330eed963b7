"""A group-by with millions of groups written with to_parquet, each rank under an address-space
cap: ``memory_cap.py DATA OUT CAP_BYTES``. Rank 0 prints every rank's ``groups ROWS maxrss MB``
line (gathered, so that mpiexec cannot interleave two ranks' output within a line)."""

import resource
import sys

from mpi4py import MPI  # (imported first: MPI maps its shared memory before the cap)

cap = int(float(sys.argv[3]))
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

import hpcframe as hf  # noqa: E402

df = hf.read_parquet(sys.argv[1])
summary = df.groupby(["k1", "k2"]).agg(total=("v", "sum"), n=("v", "size")).to_parquet(sys.argv[2])
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
lines = MPI.COMM_WORLD.gather(f"groups {summary['rows']} maxrss {maxrss} MB", root=0)
if MPI.COMM_WORLD.Get_rank() == 0:
    print("\n".join(lines), flush=True)
