"""Run the whole test suite: the README's test command (``make test``) calls this.

1. ``pytest tests/unit tests/engine tests/parallel`` in one process (unit tests, engine runs
   under a real mpiexec, and the parallel suite on the local engine, no MPI);
2. ``pytest tests/cli tests/diagnostics tests/ingest tests/jobs`` in one process: the
   end-to-end tests, which start mpiexec, Chromium or a real SLURM themselves;
3. ``HPCFRAME_TEST_ENGINE=dask pytest tests/dask`` and the query files of tests/parallel
   (:data:`DASK_FILES`): the same queries on the Dask engine, with a LocalCluster;
4. ``mpiexec -n N python -m pytest tests/parallel`` once per rank count N = 1, 2, 3, 4 (the
   suite launched once per rank count, as Heat and mpi4py do). Rank 0 prints; the other ranks
   write to log files that are shown if the run fails.

Every run has a hard timeout (``HPCFRAME_TEST_TIMEOUT`` seconds per folder it runs), so a hang
fails the suite instead of CI.

Extra arguments are passed to every pytest run (e.g. ``-k groupby``). ``HPCFRAME_TEST_RANKS``
(e.g. ``"2 3"``) picks the rank counts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
TIMEOUT = int(os.environ.get("HPCFRAME_TEST_TIMEOUT", "600"))


def _counts(text: str) -> dict[str, int]:
    """The counts from pytest's closing line (``3 failed, 120 passed, 2 skipped in 4.2s``)."""
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    out: dict[str, int] = {}
    if lines:
        for n, what in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed)", lines[-1]):
            what = "error" if what.startswith("error") else what
            out[what] = out.get(what, 0) + int(n)
    return out


# the folders run without MPI, one pytest process per group; tests/parallel runs again under
# mpiexec. The groups are separate processes only so that a crash or hang in one does not hide
# the results of the other; their conftests and helpers no longer clash (tests is a package).
GROUPS = {
    "unit, engine and parallel (local engine)": ["unit", "engine", "parallel"],
    "end to end (cli, diagnostics, ingest, jobs with a real SLURM)": ["cli", "diagnostics", "ingest", "jobs"],
}
PARALLEL = "tests/parallel"
# the files of tests/parallel run again with HPCFRAME_TEST_ENGINE=dask (the Dask
# engine): reductions, group-bys, assign/expressions, dtypes, head/top-n, filters and pushdown,
# special values, subtotals (tests/dask covers map_partitions, errors, diagnostics); about 3–4
# minutes on the 2-core machine
DASK_FILES = [
    "test_reductions",
    "test_groupby",
    "test_assign",
    "test_column_types",
    "test_expression_methods",
    "test_topn",
    "test_filter",
    "test_special_values",
    "test_reduction_types",
    "test_subtotals",
    "test_pushdown_types",
    "test_lazy_scalar",
]


def run(name: str, cmd: list[str], logs: list[str] = (), timeout: int = TIMEOUT) -> dict[str, int]:
    """Run ``cmd`` from the repository root with a hard timeout; print its output and return
    pytest's counts (a crash or a hang without a summary counts as one error)."""
    print(f"\n=== {name}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.time()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        text, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text += f"\n!!! {name} timed out after {timeout} s (a hang): killed\n"
        code = -1
    print(text, end="" if text.endswith("\n") else "\n")
    counts = _counts(text)
    if code not in (0, 5):
        if not counts.get("failed") and not counts.get("error"):
            counts["error"] = 1  # crashed or hung without a pytest summary
        for log in logs:
            if os.path.exists(log):
                with open(log) as fh:
                    body = fh.read()
                if body.strip():
                    print(f"--- {os.path.basename(log)} ---\n{body[-20000:]}")
    print(f"=== {name}: exit {code} in {time.time() - t0:.1f} s", flush=True)
    return counts


def main(argv: list[str]) -> int:
    """Run every group, then the parallel suite per rank count; 1 when anything failed."""
    extra = argv
    py = sys.executable
    total: dict[str, int] = {}

    def add(c):
        for k, v in c.items():
            total[k] = total.get(k, 0) + v

    env_ranks = os.environ.get("HPCFRAME_TEST_RANKS", "1 2 3 4").split()
    for name, folders in GROUPS.items():
        paths = [f"tests/{f}" for f in folders if os.path.isdir(os.path.join(ROOT, "tests", f))]
        add(
            run(
                name,
                [py, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider", *extra],
                timeout=TIMEOUT * len(paths),
            )
        )
    # the query tests again on the Dask engine (one LocalCluster of 2 worker processes
    # per run; stage queries must raise its clear error, see tests/parallel/conftest.py)
    import importlib.util

    if importlib.util.find_spec("distributed") is not None:
        files = ["tests/dask"] + [f"{PARALLEL}/{f}.py" for f in DASK_FILES]
        cmd = ["env", "HPCFRAME_TEST_ENGINE=dask", py, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider"]
        add(run("parallel queries on the Dask engine (LocalCluster)", cmd + list(extra), timeout=2 * TIMEOUT))
    else:
        print("\n=== Dask engine: skipped (distributed is not installed: pip install -e '.[test]')")
    mpiexec = os.path.join(BIN, "mpiexec")
    logdir = tempfile.mkdtemp(prefix="hpcframe-test-logs-")
    pytest = f"{shlex.quote(py)} -m pytest {PARALLEL} -q -p no:cacheprovider " + " ".join(
        map(shlex.quote, extra)
    )
    for n in env_ranks:
        logs = [os.path.join(logdir, f"n{n}-rank{r}.log") for r in range(int(n))]
        log = f"{shlex.quote(logdir)}/n{n}-rank$PMI_RANK.log"
        inner = f'if [ "${{PMI_RANK:-0}}" = 0 ]; then exec {pytest}; else exec {pytest} > {log} 2>&1; fi'
        # more ranks than cores share them: -n 3 and -n 4 of tests/parallel took ~515 s alone
        # on 2 cores (session 25), too close to one folder's TIMEOUT for a busy machine
        add(run(f"mpiexec -n {n}", [mpiexec, "-n", n, "sh", "-c", inner], logs, timeout=TIMEOUT * 3 // 2))
    failed = total.get("failed", 0) + total.get("error", 0)
    print(f"\nsuite: {total.get('passed', 0)} passed, {failed} failed, {total.get('skipped', 0)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
