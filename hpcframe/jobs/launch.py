"""What runs inside a batch job, on every rank.

The rendered job script starts the ranks as::

    srun --mpi=pmi2 PYTHON -m mpi4py -m hpcframe.jobs.launch TARGET [ARGS...]

``python -m mpi4py`` turns an uncaught exception on any rank into ``MPI_Abort`` (no deadlock).
Then :func:`main`:

1. :func:`check_world` -- ``COMM_WORLD.size`` must equal what the scheduler granted;
2. for array tasks, sets ``HPCFRAME_ARRAY_INDEX`` (from ``SLURM_ARRAY_TASK_ID``,
   ``PBS_ARRAY_INDEX`` or ``PBS_ARRAYID``) and replaces ``{NAME}`` (``HPCFRAME_ARRAY_NAME``) in
   the arguments and in the job spec's text;
3. runs TARGET: a job spec (``.yaml``) with :func:`hpcframe.spec.run_job`, else a Python script with
   :func:`runpy.run_path` as ``__main__`` with ``sys.argv = [script, *args]``.
"""

from __future__ import annotations

import os
import sys

from ..errors import HpcframeError, exit_code


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


def main(argv=None) -> None:
    """``python -m mpi4py -m hpcframe.jobs.launch TARGET [ARGS...]`` (see the module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    check_world()
    idx = array_index()
    if idx is not None:
        os.environ["HPCFRAME_ARRAY_INDEX"] = idx
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
            raise SystemExit(exit_code(exc)) from None
    else:
        run_script(target, args)


if __name__ == "__main__":
    # -- CHECKPOINT: a run stopped on a checkpoint signal leaves MPI cleanly with status 75 --
    from .checkpoint import exit_when_checkpointed

    with exit_when_checkpointed():
        main()
