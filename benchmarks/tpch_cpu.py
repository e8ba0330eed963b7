"""CPU seconds per rank of one TPC-H query (hpcframe), for A/B comparisons on a busy machine.

Usage::

    TREE=/path/to/hpcframe mpiexec -n 2 python benchmarks/tpch_cpu.py DATA_DIR q4 [--profile] [--cold]

``TREE`` is the hpcframe source tree to measure (default: this file's repository), so an old
and a new tree can alternate in one session. The tables are opened with
``tpch_hf_queries.load_hpcframe``; the query runs once to warm up (imports, footers), then
once more (``--cold``: the first run is measured, as ``tpch_all.py`` measures a fresh
process, and stages held by stage reuse do not serve it; MPI is started before the clock, as
``tpch_all.py`` starts it), and every rank prints its wall and ``time.process_time()`` seconds
(all of the process's threads; MPICH's busy polling inside collectives counts as CPU: an
upper bound of the work) and its peak RSS. ``--profile`` prints rank 0's cProfile of the second run (by
cumulative time; ``SORT=tottime`` and ``NPROF=N`` change the listing, ``PROFILE_OUT=FILE``
also writes the statistics to a file). On a machine other work keeps busy, compare CPU seconds,
not wall times.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.environ.get("TREE", os.path.dirname(HERE))
sys.path[:0] = [TREE, os.path.join(TREE, "benchmarks")]

import tpch_hf_queries as queries  # noqa: E402

import hpcframe.execute  # noqa: E402,F401  (the engine, imported before the clock)
from hpcframe.comm import launched_by_mpi  # noqa: E402

if launched_by_mpi():  # MPI started before the clock too, as tpch_all.py does (get_comm)
    from mpi4py import MPI  # noqa: F401


def main() -> None:
    """Run the query of ``sys.argv`` twice and print this rank's figures of the second run."""
    data, name = sys.argv[1], sys.argv[2]
    tables = queries.load_hpcframe(data)
    query = getattr(queries, name)

    def run():
        result = query(tables)
        return result.compute() if hasattr(result, "compute") else result

    if "--cold" not in sys.argv:
        run()
    rank = int(os.environ.get("PMI_RANK", "0"))
    profile = cProfile.Profile() if "--profile" in sys.argv and rank == 0 else None
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0, w0 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    run()
    if profile is not None:
        profile.disable()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    rss = r1.ru_maxrss / 1e3
    sys_s, faults = r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt
    print(
        f"{name} rank {rank}: wall {wall:.3f} s, cpu {cpu:.3f} s (system {sys_s:.3f} s, "
        f"{faults} page faults), peak rss {rss:.0f} MB",
        flush=True,
    )
    if profile is not None and os.environ.get("PROFILE_OUT"):
        profile.dump_stats(os.environ["PROFILE_OUT"])  # for pstats' print_callers
    if profile is not None:
        pstats.Stats(profile).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(
            int(os.environ.get("NPROF", "40"))
        )


if __name__ == "__main__":
    main()
