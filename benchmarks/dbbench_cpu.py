"""CPU seconds per rank of one db-benchmark group-by question (hpcframe), for A/B comparisons
on a busy machine — the db-benchmark counterpart of ``tpch_cpu.py``.

Usage::

    TREE=/path/to/hpcframe mpiexec -n 2 python benchmarks/dbbench_cpu.py DATA_DIR q3 [--runs 3] [--profile]

``DATA_DIR`` is a G1 folder made by ``dbbench_datagen.py`` (for example
``/work/bench-data/dbbench/G1_1e7_1e2_0_0``); the question is ``groupby_dbbench.py``'s own
(``q_hpcframe``), computed with ``compute(root=0)``, q10 written with ``to_parquet`` into a
temporary folder (removed afterwards), as the benchmark does. ``TREE`` is the hpcframe source
tree to measure (default: this file's repository), so an old and a new tree can alternate in
one session. The question runs ``--runs`` times (default 3) in one process; every rank prints
the wall and ``time.process_time()`` seconds of each run (all of the process's threads;
MPICH's busy polling inside collectives counts as CPU) and its peak RSS. The first run pays
the first computation's costs; compare the later ones. ``--profile`` prints rank 0's cProfile
of the last run (``SORT=tottime`` and ``NPROF=N`` change the listing). On a machine other
work keeps busy, compare CPU seconds, not wall times.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.environ.get("TREE", os.path.dirname(HERE))
sys.path[:0] = [TREE, os.path.join(TREE, "benchmarks")]

from groupby_dbbench import q_hpcframe  # noqa: E402

import hpcframe as hf  # noqa: E402
import hpcframe.execute  # noqa: E402,F401  (the engine, imported before the clock)
from hpcframe.comm import get_comm  # noqa: E402


def main() -> None:
    """Run the question of ``sys.argv`` ``--runs`` times; every rank prints its figures."""
    data, q = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
    comm = get_comm()
    for run in range(runs):
        last = run == runs - 1
        profile = cProfile.Profile() if "--profile" in sys.argv and comm.rank == 0 and last else None
        target = comm.bcast(tempfile.mkdtemp(prefix="dbbench-cpu-") if comm.rank == 0 else None, root=0)
        comm.barrier()
        c0, w0 = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        result = q_hpcframe(q, hf, data)
        if q == "q10":
            result.to_parquet(os.path.join(target, "q10"))
        else:
            result.compute(comm=comm, root=0)
        if profile is not None:
            profile.disable()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        comm.barrier()
        if comm.rank == 0:
            shutil.rmtree(target, ignore_errors=True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        print(
            f"{q} run {run} rank {comm.rank}: wall {wall:.3f} s, cpu {cpu:.3f} s, peak rss {rss:.0f} MB",
            flush=True,
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(
                int(os.environ.get("NPROF", "40"))
            )


if __name__ == "__main__":
    main()
