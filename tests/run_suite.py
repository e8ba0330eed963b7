"""Run the whole test suite: the README's test command (``make test``) calls this.

1. ``pytest tests/local`` and ``pytest tests/mpi`` in one process (local engine, no MPI);
   then ``tests/cli``, ``tests/diagnostics``, ``tests/ingest`` and ``tests/jobs`` (real SLURM),
   each in its own process (they start mpiexec, Chromium or SLURM themselves);
2. ``mpiexec -n N python -m pytest tests/mpi`` once per rank count N = 1, 2, 3, 4 (the suite
   launched once per rank count, as Heat and mpi4py do). Rank 0 prints; the other ranks write
   to log files that are shown if the run fails. Every run has a hard timeout, so a hang fails
   the suite instead of CI.

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


def run(name: str, cmd: list[str], logs: list[str] = ()) -> dict[str, int]:
    print(f"\n=== {name}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=TIMEOUT)
        text, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text += f"\n!!! {name} timed out after {TIMEOUT} s (a hang): killed\n"
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
    extra = argv
    py = sys.executable
    total: dict[str, int] = {}

    def add(c):
        for k, v in c.items():
            total[k] = total.get(k, 0) + v

    env_ranks = os.environ.get("HPCFRAME_TEST_RANKS", "1 2 3 4").split()
    add(run("local engine", [py, "-m", "pytest", "tests/local", "tests/mpi", "-q",
                             "-p", "no:cacheprovider", *extra]))
    # folders whose tests start mpiexec (and services) themselves; one process per folder, as
    # each has its own conftest and helper modules
    for folder in ("cli", "diagnostics", "ingest"):
        if os.path.isdir(os.path.join(ROOT, "tests", folder)):
            add(run(f"tests/{folder}", [py, "-m", "pytest", f"tests/{folder}", "-q",
                                        "-p", "no:cacheprovider", *extra]))
    # batch jobs: renders, PBS bodies, and a real single-node SLURM brought up by the fixture
    add(run("batch jobs (real SLURM)", [py, "-m", "pytest", "tests/jobs", "-q",
                                        "-p", "no:cacheprovider", *extra]))
    mpiexec = os.path.join(BIN, "mpiexec")
    logdir = tempfile.mkdtemp(prefix="hpcframe-test-logs-")
    for n in env_ranks:
        logs = [os.path.join(logdir, f"n{n}-rank{r}.log") for r in range(int(n))]
        inner = (f'if [ "${{PMI_RANK:-0}}" = 0 ]; then exec {shlex.quote(py)} -m pytest tests/mpi '
                 f'-q -p no:cacheprovider {" ".join(map(shlex.quote, extra))}; else exec '
                 f'{shlex.quote(py)} -m pytest tests/mpi -q -p no:cacheprovider '
                 f'{" ".join(map(shlex.quote, extra))} > {shlex.quote(logdir)}/n{n}-rank$PMI_RANK.log 2>&1; fi')
        add(run(f"mpiexec -n {n}", [mpiexec, "-n", n, "sh", "-c", inner], logs))
    failed = total.get("failed", 0) + total.get("error", 0)
    print(f"\nsuite: {total.get('passed', 0)} passed, {failed} failed, "
          f"{total.get('skipped', 0)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
