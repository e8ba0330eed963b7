"""A user script that fails on rank 1 only: python -m mpi4py must abort the whole job."""

import sys

from mpi4py import MPI

if MPI.COMM_WORLD.rank == MPI.COMM_WORLD.size - 1:
    raise RuntimeError("deliberate failure on the last rank (test)")
MPI.COMM_WORLD.Barrier()  # without mpi4py's abort-on-exception this would hang
print("unreachable", file=sys.stderr)
