"""Convert SRC (CSV) to DST (Parquet) on every rank, then print this rank's peak memory.

usage: convert_report.py SRC DST CHUNK_BYTES [FAIL_LEAF]
FAIL_LEAF: a leaf index whose write raises (simulates a crash mid-way).
"""

import resource
import sys

from hpcframe.comm import communicator
from hpcframe.errors import ComputeError
from hpcframe.io.writers import ParquetFormat
from hpcframe.readers import read_csv
from hpcframe.writing import write

src, dst, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
fail = int(sys.argv[4]) if len(sys.argv) > 4 else None
with communicator() as comm:
    rank = comm.rank
    try:
        s = write(read_csv(src, chunk_bytes=chunk), ParquetFormat(dst), comm=comm, fail_leaf=fail)
        print(f"rank {rank}: rows={s['rows']} leaves={s['leaves']} skipped={s['skipped']}")
    except ComputeError as exc:
        print(f"rank {rank}: ComputeError {str(exc).splitlines()[0]}")
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"rank {rank}: maxrss_mb={peak_mb:.0f}", flush=True)
