"""``hpcframe submit``, ``status``, ``logs``, ``cancel``; :data:`hpcframe.cli.main` adds them.

They parse options and delegate to :mod:`hpcframe.jobs`. Exit codes: 0 success, 1 a scheduler
command failed (its command, exit code and output are shown), 2 a usage error (bad option,
profile or value: the message says what to change), 3 (``status`` only) a task FAILED,
CANCELLED or TIMEOUT.
"""

from __future__ import annotations

import sys

import click

from ..jobs import CommandError, JobError, log_files, make_params, render_job
from ..jobs import cancel as _cancel
from ..jobs import status as _status
from ..jobs import submit as _submit


def _usage(exc: Exception):
    return click.UsageError(str(exc))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--profile",
    "-P",
    envvar="HPCFRAME_PROFILE",
    help="Profile name (configs/, "
    "~/.config/hpcframe/profiles, $HPCFRAME_PROFILES) or a YAML path. [env: HPCFRAME_PROFILE]",
)
@click.option(
    "--scheduler", type=click.Choice(["slurm", "pbs", "torque"]), help="Override the profile's scheduler."
)
@click.option("--name", "-J", help="Job name (letters, digits, _ . + -).")
@click.option("--nodes", "-N", type=int, help="Number of nodes.")
@click.option("--ntasks-per-node", type=int, help="MPI ranks per node.")
@click.option("--cpus-per-task", type=int, help="Cores per rank (threads).")
@click.option("--time", "-t", "time_", help="Wall time, HH:MM:SS.")
@click.option("--mem", help="Memory per node, e.g. 16G.")
@click.option("--partition", "--queue", "-p", "partition", help="Partition (SLURM) / queue (PBS).")
@click.option("--account", "-A", help="Account / project to charge.")
@click.option(
    "--array",
    help="Job array: NAME=START-END[:STEP] or NAME=V1,V2; {NAME} in the spec "
    "or script arguments becomes each task's value.",
)
@click.option("--after", multiple=True, help="Start only after job ID finished OK (repeatable).")
@click.option(
    "--dask-config",
    type=click.Path(exists=True, dir_okay=False),
    help="Reuse jobqueue.slurm / jobqueue.pbs from this dask-jobqueue YAML file.",
)
@click.option("--launcher", help='How ranks start, e.g. "srun --mpi=pmi2" or "mpiexec".')
# -- CHECKPOINT: checkpoint and requeue (hpcframe.jobs.checkpoint) --
@click.option(
    "--requeue",
    is_flag=True,
    default=None,
    help="On the warning signal (or SIGTERM: time limit, preemption) every rank stops at a "
    "block boundary keeping finished blocks, and the job requeues itself and resumes.",
)
@click.option(
    "--signal",
    "signal_",
    metavar="NAME@SECONDS",
    help="Warning signal before the time limit: USR1@120 (default with --requeue/--retries), "
    "USR2@300, TERM@60. SLURM sends it; on PBS the job script does.",
)
@click.option(
    "--retries", type=int, help="Requeue a failed run (not a checkpoint) up to N times. [default: 0]"
)
# -- end CHECKPOINT --
@click.option("--dry-run", is_flag=True, help="Print the job script; submit nothing.")
def submit(
    target,
    args,
    profile,
    scheduler,
    name,
    nodes,
    ntasks_per_node,
    cpus_per_task,
    time_,
    mem,
    partition,
    account,
    array,
    after,
    dask_config,
    launcher,
    requeue,
    signal_,
    retries,
    dry_run,
):
    """Submit TARGET (a job spec .yaml, or your own MPI Python script) as a batch job.

    Arguments after `--` go to the script. Prints the job id (with --dry-run: the script).

    \b
      hpcframe submit job.yaml --profile mycluster --nodes 2 --time 01:00:00 --dry-run
      hpcframe submit analysis.py --profile mycluster -- --arg 1
      hpcframe submit job.yaml --profile slurm --array month=1-12 --after 1234
      hpcframe submit job.yaml --time 04:00:00 --requeue --signal USR1@120 --retries 2
    """
    overrides = {
        "name": name,
        "nodes": nodes,
        "ntasks_per_node": ntasks_per_node,
        "cpus_per_task": cpus_per_task,
        "time": time_,
        "mem": mem,
        "partition": partition,
        "account": account,
        "launcher": launcher,
        "requeue": requeue,  # -- CHECKPOINT --
        "signal": signal_,
        "retries": retries,
    }
    if not profile and not scheduler:
        import shutil

        scheduler = "slurm" if shutil.which("sbatch") else "pbs" if shutil.which("qsub") else None
        if scheduler is None:
            raise click.UsageError(
                "no cluster profile and neither sbatch nor qsub on PATH: pass "
                "--profile NAME (see configs/*.yaml) or --scheduler slurm|pbs|torque"
            )
    try:
        params = make_params(
            profile, overrides, array=array, after=after, dask_config=dask_config, scheduler=scheduler
        )
        if dry_run:
            click.echo(render_job(params, target, args, run_dir="<run-dir>"), nl=False)
            return
        info = _submit(target, params, args)
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"run directory: {info['run_dir']}", err=True)
    click.echo(info["job_id"])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_id")
def status(job_id):
    """Show the state of JOB_ID (or a run directory): one line per task.

    Exit code 3 if a task FAILED, was CANCELLED or hit its TIMEOUT.
    """
    try:
        info, rows = _status(job_id)
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    for tid, state, detail in rows:
        click.echo(f"{tid}\t{state}\t{detail}")
    click.echo(f"run directory: {info['run_dir']}", err=True)
    if any(state in ("FAILED", "CANCELLED", "TIMEOUT") for _, state, _ in rows):
        sys.exit(3)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_id")
@click.option("--stderr/--no-stderr", default=True, help="Include the stderr logs.")
def logs(job_id, stderr):
    """Print the stdout and stderr logs of JOB_ID (or a run directory)."""
    try:
        info, files = log_files(job_id)
    except JobError as exc:
        raise _usage(exc) from None
    files = [f for f in files if stderr or "stderr" not in f]
    if not files:
        click.echo(f"no logs yet in {info['run_dir']} (the job may still be pending)", err=True)
    for f in files:
        click.echo(f"==> {f} <==")
        with open(f, errors="replace") as fh:
            click.echo(fh.read(), nl=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_id")
def cancel(job_id):
    """Cancel JOB_ID (scancel / qdel)."""
    try:
        info = _cancel(job_id)
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"cancelled {info['job_id']}")


COMMANDS = [submit, status, logs, cancel]


def register(group: click.Group) -> None:
    """Add submit/status/logs/cancel to ``group`` (as :data:`hpcframe.cli.main` has them)."""
    for cmd in COMMANDS:
        group.add_command(cmd)
