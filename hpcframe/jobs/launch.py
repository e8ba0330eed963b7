"""What runs inside a batch job, on every rank.

The rendered job script starts the ranks as::

    srun --mpi=pmi2 PYTHON -m mpi4py -m hpcframe.jobs.launch TARGET [ARGS...]

``python -m mpi4py`` turns an uncaught exception on any rank into ``MPI_Abort`` (no deadlock).
Then :func:`main`:

1. :func:`check_world` -- ``COMM_WORLD.size`` must equal what the scheduler granted;
2. for array tasks, sets ``HPCFRAME_ARRAY_INDEX`` (from ``SLURM_ARRAY_TASK_ID``,
   ``PBS_ARRAY_INDEX`` or ``PBS_ARRAYID``) and replaces ``{NAME}`` (``HPCFRAME_ARRAY_NAME``) in
   the arguments and in the job spec's text;
3. runs TARGET: a job spec (``.yaml``) with :func:`hpcframe.spec.run_job`, ``--command NAME``
   an hpcframe command (``hpcframe submit -- convert SRC DST`` runs ``hpcframe convert SRC DST``
   on every rank), else a Python script with :func:`runpy.run_path` as ``__main__`` with
   ``sys.argv = [script, *args]``.

Exit status (item 2 of issue 13). An exception on one rank makes ``python -m mpi4py`` call
``MPI_Abort``; under ``srun`` that cancels the whole step, every task is SIGKILLed and srun
exits ``128 + 9 = 137`` -- whatever the script said (``raise SystemExit("...")`` is exit status
1). So before the abort, the failing rank writes a failure record
(``$HPCFRAME_RUN_DIR/failure.<job>.rank<R>.json``: rank, host, exit status, the first lines of
its error, see :func:`record_failure`), and the job script ends the launch line with
``|| PYTHON -m hpcframe.jobs.launch --exit-status "$?"``, which exits with the recorded status
(:func:`exit_status_main`). The job's ExitCode is then the script's, and ``hpcframe status``
shows which rank failed and why.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import traceback

from ..errors import HpcframeError, exit_code

#: Lines of a rank's error kept in its failure record (and shown by ``hpcframe status``).
ERROR_LINES = 12


class LaunchError(HpcframeError):
    """The MPI world does not match the scheduler's allocation (or the target is unusable)."""


def expected_size(env=None) -> tuple[int, str] | None:
    """``(number of ranks the scheduler granted, where that number comes from)`` or None.

    SLURM: ``SLURM_NTASKS`` (or ``SLURM_NPROCS``); PBS/Torque: the number of non-empty lines
    of ``$PBS_NODEFILE`` (divided by ``HPCFRAME_CPUS_PER_TASK`` on Torque, whose nodefile
    lists every core). None outside a batch job.
    """
    env = os.environ if env is None else env
    for var in ("SLURM_NTASKS", "SLURM_NPROCS"):
        if env.get(var, "").strip().isdigit():
            return int(env[var]), f"{var}={env[var]}"
    nodefile = env.get("PBS_NODEFILE")
    if nodefile:
        try:
            with open(nodefile) as fh:
                n = sum(1 for ln in fh if ln.strip())
        except OSError as exc:
            raise LaunchError(f"PBS_NODEFILE={nodefile} cannot be read: {exc}") from None
        per = env.get("HPCFRAME_CPUS_PER_TASK", "1")
        per = int(per) if per.isdigit() and int(per) > 0 else 1
        if per > 1:
            return n // per, f"{n} lines in PBS_NODEFILE={nodefile} / {per} cpus per task"
        return n, f"{n} lines in PBS_NODEFILE={nodefile}"
    return None


def check_world(comm=None, env=None) -> int:
    """Check that the communicator's size equals what the scheduler granted; return the size.

    ``comm`` defaults to ``MPI.COMM_WORLD``. Outside a batch job nothing is checked. Raises
    :class:`LaunchError` naming both numbers and the likely cause when they differ.
    """
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    size = comm.Get_size()
    exp = expected_size(env)
    if exp is None or exp[0] == size:
        return size
    n, source = exp
    if size == 1:
        cause = (
            "each rank is an MPI singleton of size 1: the launcher did not wire up MPI. "
            "Under SLURM use `srun --mpi=pmi2` (plain srun with MpiDefault=none starts N "
            "separate singletons), or `mpiexec` from the same MPI library mpi4py was built "
            "with"
        )
    else:
        cause = (
            "the launcher started a different number of ranks than granted: check -n / "
            "--ntasks-per-node, and that the launcher belongs to the MPI library mpi4py uses"
        )
    raise LaunchError(
        f"MPI world size is {size} but the scheduler granted {n} tasks ({source}) "
        f"on rank {comm.Get_rank()}: {cause}"
    )


def array_index(env=None) -> str | None:
    """The array task's index from the scheduler's variable, or None outside an array."""
    env = os.environ if env is None else env
    for var in ("HPCFRAME_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID"):
        if env.get(var, "").strip():
            return env[var].strip()
    return None


def substitute(text: str, env=None) -> str:
    """Replace ``{NAME}`` (``HPCFRAME_ARRAY_NAME``) by the array index in ``text``."""
    env = os.environ if env is None else env
    name, idx = env.get("HPCFRAME_ARRAY_NAME"), array_index(env)
    if not name or idx is None:
        return text
    return text.replace("{" + name + "}", idx)


def run_spec(path: str) -> None:
    """Run job spec ``path`` (its ``{NAME}`` array placeholders filled) on every rank, as
    ``hpcframe run SPEC`` does, through :func:`hpcframe.spec.run_job`; rank 0 logs what it
    did (and the result table when the spec has no output). Raises as ``run_job`` does, on
    every rank (:func:`main` turns that into a one-line error and an exit code)."""
    with open(path) as fh:
        text = fh.read()
    filled = substitute(text)
    if filled != text:  # an array task: a per-task copy beside the logs
        from .base import write_atomic

        run_dir = os.environ.get("HPCFRAME_RUN_DIR") or os.path.dirname(path)
        task_path = os.path.join(run_dir, f"spec.{array_index()}.yaml")
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_rank() == 0:
            write_atomic(task_path, filled)
        MPI.COMM_WORLD.Barrier()
        path = task_path
    from ..comm import world_interrupt_guard
    from ..spec import run_job  # lazy: hpcframe.spec (and pandas) load only here

    with world_interrupt_guard():  # SIGINT to one rank stops every rank
        summary = run_job(path)
    if summary.rank != 0:
        return
    if summary.result is not None:
        print(summary.result.to_string(max_rows=60), flush=True)
    rows_in = "?" if summary.rows_total is None else f"{summary.rows_total:,}"
    rows_out = "?" if summary.rows_out is None else f"{summary.rows_out:,}"
    where = f"{summary.output} ({summary.format})" if summary.output else "(none: printed above)"
    print(
        f"{path}: rows in: {rows_in}; rows out: {rows_out}; output: {where}; "
        f"{summary.seconds:.2f} s on {summary.ranks} rank(s)",
        flush=True,
    )


def run_script(path: str, args) -> None:
    """Run a user script as ``__main__`` with ``sys.argv = [path, *args]``."""
    import runpy

    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")


def run_command_in_job(name: str, args) -> None:
    """Run ``hpcframe NAME ARGS`` (``convert``, ``run``, ``info`` ...) on this rank, as the
    command line would under ``mpiexec``/``srun`` (its errors printed as it prints them).
    Raises :class:`~hpcframe.jobs.base.CommandFailed` with the command's exit code and
    message when it fails or is unknown."""
    from ..cli import main as cli_main
    from ..cli.jobs import run_in_job

    run_in_job(cli_main, name, list(args))


# --------------------------------------------------------------------------------------------
# failure records: which rank failed, why, with which exit status
# --------------------------------------------------------------------------------------------
def job_key(env=None) -> str:
    """The key of this job (array task) in failure record names: ``123``, ``123_4`` (SLURM
    array task), the PBS job id with unsafe characters replaced, or ``local``."""
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        key = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    else:
        key = env.get("SLURM_JOB_ID") or env.get("PBS_JOBID") or "local"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _attempt(env=None) -> int:
    env = os.environ if env is None else env
    value = env.get("SLURM_RESTART_COUNT") or env.get("PBS_RUN_COUNT") or "0"
    return int(value) if value.isdigit() else 0


def status_of(exc: BaseException) -> int:
    """The exit status a process ended by ``exc`` has: ``SystemExit``'s code (1 for a message,
    as Python does; 0 for ``None``), else :func:`hpcframe.errors.exit_code`. Kept in 1..255
    for failures."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        if not isinstance(code, int) or isinstance(code, bool):
            return 1
        return code & 0xFF or (1 if code else 0)
    return exit_code(exc) & 0xFF or 1


def _error_lines(exc: BaseException) -> list[str]:
    """The first :data:`ERROR_LINES` lines of ``exc`` as the user sees it (for SystemExit the
    message), then where it was raised in the user's code or hpcframe."""
    if isinstance(exc, SystemExit):
        lines = [f"SystemExit: {exc.code}"]
    else:
        lines = f"{type(exc).__name__}: {exc}".rstrip().splitlines()
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "site-packages" not in f.filename or f"{os.sep}hpcframe{os.sep}" in f.filename
    ]
    lines = lines[:ERROR_LINES]
    if frames and not isinstance(exc, HpcframeError):
        f = frames[-1]
        lines.append(f"  at {f.filename}:{f.lineno} in {f.name}")
    return [ln[:300] for ln in lines]


def failure_record(exc: BaseException, rank: int, size: int) -> dict:
    """What :func:`record_failure` writes for ``exc`` on ``rank`` of ``size``.

    ``origin`` is the rank whose own error this is: this rank, or -- for an error every rank
    raises because another one failed (:class:`~hpcframe.errors.ComputeError`, "rank N
    failed: ...") -- the first failed rank, with ``origin_error`` its error."""
    record = {
        "rank": rank,
        "size": size,
        "host": socket.gethostname(),
        "exit_status": status_of(exc),
        "kind": type(exc).__name__,
        "error": _error_lines(exc),
        "origin": rank,
        "origin_error": None,
        "job": job_key(),
        "attempt": _attempt(),
    }
    failures = getattr(exc, "failures", None)
    if failures:
        first = failures[0]
        record["origin"] = int(first[0])
        record["origin_error"] = str(first[3]).splitlines()[:ERROR_LINES]
    else:
        m = re.match(r"(?:.*: )?rank (\d+) failed: (.*)", str(exc), re.S)
        if m and int(m.group(1)) != rank:
            record["origin"] = int(m.group(1))
            record["origin_error"] = m.group(2).splitlines()[:ERROR_LINES]
    return record


_recorded = False


def record_failure(exc: BaseException, run_dir: str | None = None) -> str | None:
    """Write this rank's failure record for ``exc`` into the run directory (default
    ``$HPCFRAME_RUN_DIR``); return its path, or None outside a batch job, for a clean exit
    (``SystemExit(0)``/``SystemExit(None)``) or when it cannot be written (the job's own
    error matters more than its record) and for a checkpoint. Written atomically."""
    from ..errors import CHECKPOINT_EXIT

    global _recorded
    run_dir = run_dir or os.environ.get("HPCFRAME_RUN_DIR")
    # a checkpoint (every rank stopped on request, status 75) is not a failure: the job requeues
    if _recorded or not run_dir or status_of(exc) in (0, CHECKPOINT_EXIT):
        return None
    rank, size = _rank_size()
    record = failure_record(exc, rank, size)
    path = os.path.join(run_dir, f"failure.{record['job']}.rank{rank}.json")
    try:
        from .base import write_atomic

        write_atomic(path, json.dumps(record, indent=1) + "\n")
    except OSError:
        return None
    _recorded = True
    return path


def _rank_size() -> tuple[int, int]:
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank(), mpi.COMM_WORLD.Get_size()
    for var in ("PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), int(os.environ.get("SLURM_NTASKS", "0") or 0)
    return 0, 1


def exit_status_main(status: str, env=None) -> int:
    """``--exit-status N``: the last step of a job script after the ranks failed with status N.

    Returns the exit status recorded by the failed rank (:func:`record_failure`), else N, and
    says on stderr which rank failed. N is what the launcher returned: 137 when srun killed
    the step after an ``MPI_Abort``."""
    env = os.environ if env is None else env
    code = int(status) if status.isdigit() else 1
    run_dir = env.get("HPCFRAME_RUN_DIR")
    from .records import describe_failure, read_failures

    records = read_failures(run_dir, job_key(env)) if run_dir else []
    if records:
        recorded = int(records[0]["exit_status"])
        lines = describe_failure(records)
        print(f"hpcframe: the launcher exited with {code}; " + "\n".join(lines), file=sys.stderr, flush=True)
        return recorded or code
    return code or 1


def main(argv=None) -> None:
    """``python -m mpi4py -m hpcframe.jobs.launch TARGET [ARGS...]`` (see the module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--exit-status"] and len(argv) == 2:
        raise SystemExit(exit_status_main(argv[1]))
    try:
        _main(argv)
    except BaseException as exc:  # write the failure record; mpi4py then aborts every rank
        record_failure(exc)
        raise


def _main(argv) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    check_world()
    idx = array_index()
    if idx is not None:
        os.environ["HPCFRAME_ARRAY_INDEX"] = idx
    if argv[0] == "--command" and len(argv) >= 2:
        run_command_in_job(argv[1], [substitute(a) for a in argv[2:]])
        return
    target, args = argv[0], [substitute(a) for a in argv[1:]]
    if not os.path.isfile(target):
        raise LaunchError(f"{target} does not exist on this node: is it on a shared filesystem?")
    if target.endswith((".yaml", ".yml")):
        try:
            run_spec(target)
        except HpcframeError as exc:  # raised on every rank: rank 0 says it in one line
            from mpi4py import MPI

            if MPI.COMM_WORLD.Get_rank() == 0:
                print(f"Error: {exc}", file=sys.stderr, flush=True)
            record_failure(exc)
            raise SystemExit(exit_code(exc)) from None
    else:
        run_script(target, args)


if __name__ == "__main__":
    # a run stopped on a checkpoint signal leaves MPI cleanly with status 75
    from .checkpoint import exit_when_checkpointed

    with exit_when_checkpointed():
        main()
