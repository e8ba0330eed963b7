"""``hpcframe submit``, ``status``, ``logs``, ``cancel``, ``jobs``, ``wait``; :data:`hpcframe.cli.main`
adds them.

They parse options and delegate to :mod:`hpcframe.jobs`. Exit codes: 0 success, 1 a scheduler
command failed (its command, exit code and output are shown), 2 a usage error (bad option,
profile or value: the message says what to change), 3 (``status`` only) a task FAILED,
CANCELLED or TIMEOUT; ``wait`` exits with the job's own exit status.
"""

from __future__ import annotations

import sys

import click

from ..jobs import CommandError, JobError, find_run, log_files, make_params, render_job
from ..jobs import cancel as _cancel
from ..jobs import status as _status
from ..jobs import submit as _submit


def _usage(exc: Exception):
    return click.UsageError(str(exc))


# --cluster-profile / --array / --exclusive option parsing
def _cluster_profile(ctx, param, value):
    """Resolve an old profile name (``local`` -> ``slurm-local``), saying so on stderr."""
    if not value:
        return value
    from ..jobs.profiles import renamed

    new, message = renamed(value)
    if message:
        click.echo(f"hpcframe: {message}", err=True)
    return new


CLUSTER_PROFILE_HELP = (
    "Cluster profile: the scheduler settings (partition, nodes, ranks, launcher...) by name "
    "(see `hpcframe profiles`) or a YAML path. Not the performance record (that is "
    "`hpcframe run --profile-dir`). --profile and -P are the same option. [env: HPCFRAME_PROFILE]"
)
ARRAY_HELP = (
    "Job array, one task per value: NAME=START-END[:STEP] (month=1-12), integers "
    "NAME=V1,V2 (year=2019,2021) or strings NAME=A,B (carrier=AA,UA: tasks 0..n-1, task i "
    "gets the i-th string). {NAME} in the spec or script arguments becomes the task's value "
    "(also $HPCFRAME_ARRAY_INDEX). Strings: no , / quotes backslash or braces."
)
EXCLUSIVE_HELP = (
    "Whole nodes, shared with no other job (SLURM --exclusive, PBS Pro place=scatter:excl, "
    "Torque -n). --no-exclusive overrides a profile's exclusive: true."
)


# commands that cannot run inside a batch job
_NOT_SUBMITTABLE = ("submit", "status", "logs", "cancel", "jobs", "wait")


def _is_command(target: str) -> bool:
    """True if ``target`` names an hpcframe command (and is not a file): ``submit -- convert``."""
    import os

    if os.path.exists(target):
        return False
    if target in _NOT_SUBMITTABLE:
        raise click.UsageError(f"`hpcframe {target}` follows jobs; it cannot itself be submitted")
    ctx = click.get_current_context().find_root()
    root = ctx.command
    # the group loads its commands lazily: ask it for their names, not .commands
    return isinstance(root, click.Group) and target in root.list_commands(ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--cluster-profile",
    "--profile",
    "-P",
    "profile",
    envvar="HPCFRAME_PROFILE",
    callback=_cluster_profile,
    help=CLUSTER_PROFILE_HELP,
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
@click.option("--array", help=ARRAY_HELP)
@click.option("--exclusive/--no-exclusive", default=None, help=EXCLUSIVE_HELP)
@click.option("--after", multiple=True, help="Start only after job ID finished OK (repeatable).")
@click.option(
    "--dask-config",
    type=click.Path(exists=True, dir_okay=False),
    help="Reuse jobqueue.slurm / jobqueue.pbs from this dask-jobqueue YAML file.",
)
@click.option("--launcher", help='How ranks start, e.g. "srun --mpi=pmi2" or "mpiexec".')
# checkpoint and requeue (hpcframe.jobs.checkpoint)
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
    exclusive,
    after,
    dask_config,
    launcher,
    requeue,
    signal_,
    retries,
    dry_run,
):
    """Submit TARGET (a job spec .yaml, your own MPI Python script, or any hpcframe command)
    as a batch job.

    Arguments after `--` go to the script; `-- COMMAND ARGS` runs `hpcframe COMMAND ARGS` on
    every rank. Prints the job id (with --dry-run: the script). Follow it from any directory
    with `hpcframe status/logs/wait JOBID` and `hpcframe jobs`.

    \b
      hpcframe submit job.yaml --profile mycluster --nodes 2 --time 01:00:00 --dry-run
      hpcframe submit analysis.py --profile mycluster -- --arg 1
      hpcframe submit job.yaml --profile slurm --array month=1-12 --after 1234
      hpcframe submit job.yaml --cluster-profile slurm-local --array carrier=AA,UA
      hpcframe submit --profile mycluster -- convert data/*.csv.xz flights/ --to parquet
      hpcframe submit --profile mycluster -- run job.yaml --profile-dir prof/
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
        "exclusive": exclusive,
        "requeue": requeue,
        "signal": signal_,
        "retries": retries,
    }
    if not profile and not scheduler:
        import shutil

        scheduler = "slurm" if shutil.which("sbatch") else "pbs" if shutil.which("qsub") else None
        if scheduler is None:
            raise click.UsageError(
                "no cluster profile and neither sbatch nor qsub on PATH: pass "
                "--cluster-profile NAME (see `hpcframe profiles`) or --scheduler slurm|pbs|torque"
            )
    try:
        params = make_params(
            profile, overrides, array=array, after=after, dask_config=dask_config, scheduler=scheduler
        )
        command = _is_command(target)
        if dry_run:
            click.echo(render_job(params, target, args, run_dir="<run-dir>", command=command), nl=False)
            return
        info = _submit(target, params, args, command=command)
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"run directory: {info['run_dir']}", err=True)
    click.echo(info["job_id"])


# status, logs, jobs, wait
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_id")
def status(job_id):
    """Show the state of JOB_ID (or a run directory): one line per task, from any directory.

    For a failed task: which rank failed, its exit status and the first lines of its error.
    Jobs submitted by hand (sbatch/qsub) are asked of the scheduler. Exit code 3 if a task
    FAILED, was CANCELLED or hit its TIMEOUT.
    """
    from ..jobs import records

    try:
        info, rows = _status(job_id)
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    for tid, state, detail in rows:
        click.echo(f"{tid}\t{state}\t{detail}")
        if state in ("FAILED", "CANCELLED", "TIMEOUT"):
            for line in records.describe_failure(records.failures(info, tid)):
                click.echo(f"  {line}")
    click.echo(f"run directory: {info.get('run_dir') or '(none: submitted outside hpcframe)'}", err=True)
    if any(state in ("FAILED", "CANCELLED", "TIMEOUT") for _, state, _ in rows):
        sys.exit(3)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_id")
@click.option("--stderr/--no-stderr", default=True, help="Include the stderr logs.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ends.")
@click.option(
    "--poll", type=float, default=1.0, show_default=True, help="Seconds between checks with --follow."
)
def logs(job_id, stderr, follow, poll):
    """Print the stdout and stderr logs of JOB_ID (or a run directory), from any directory.

    With --follow: wait for the job to start, print its output as it comes and stop when the
    job has ended (like `tail -f`).
    """
    import re

    from ..jobs import records

    try:
        info, files = log_files(job_id)
        if follow:
            task = str(job_id) if re.fullmatch(r"\d+_\d+", str(job_id)) else None
            records.follow(
                info, lambda text: click.echo(text, nl=False), poll=max(poll, 0.1), task=task, stderr=stderr
            )
            return
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    files = [f for f in files if stderr or "stderr" not in f]
    if not files:
        where = info.get("run_dir") or "the scheduler's StdOut/StdErr"
        click.echo(f"no logs yet in {where} (the job may still be pending)", err=True)
    for f in files:
        click.echo(f"==> {f} <==")
        with open(f, errors="replace") as fh:
            click.echo(fh.read(), nl=False)


@click.command("jobs", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--limit", "-n", type=int, default=20, show_default=True, help="Show the N newest recorded jobs."
)
@click.option("--all", "show_all", is_flag=True, help="Show every recorded job.")
@click.option("--mine-only", is_flag=True, help="Only jobs submitted with hpcframe (not others from squeue).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def jobs(limit, show_all, mine_only, as_json):
    """List your jobs: id, name, state, elapsed time and where the output goes.

    Jobs submitted with `hpcframe submit` (recorded in $XDG_STATE_HOME/hpcframe/jobs, default
    ~/.local/state/hpcframe/jobs) and, on SLURM, your other jobs the scheduler still knows.
    """
    import json

    from ..jobs import records

    try:
        rows = records.job_table(None if show_all else limit, include_scheduler=not mine_only)
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    cols = [
        ("job_id", "JOBID"),
        ("name", "NAME"),
        ("state", "STATE"),
        ("elapsed", "ELAPSED"),
        ("output", "OUTPUT"),
    ]
    width = {k: max([len(h)] + [len(str(r[k])) for r in rows]) for k, h in cols[:-1]}
    click.echo("  ".join(h.ljust(width.get(k, 0)) for k, h in cols).rstrip())
    for r in rows:
        click.echo("  ".join(str(r[k]).ljust(width.get(k, 0)) for k, _ in cols).rstrip())
    if not rows:
        click.echo(f"(no jobs recorded in {records.state_dir()}/jobs)", err=True)


@click.command("wait", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_id")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit code 124).")
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between checks.")
def wait_cmd(job_id, timeout, poll):
    """Block until JOB_ID has ended; exit with the job's exit status.

    0 when every task COMPLETED; otherwise the failed task's own exit status (what its script
    raised: `raise SystemExit("...")` is 1), with the failed rank and its error on stderr.
    124 on --timeout.
    """
    import re

    from ..jobs import records

    try:
        info = find_run(job_id)
        task = str(job_id) if re.fullmatch(r"\d+_\d+", str(job_id)) else None
        tasks = records.wait_for(info, timeout=timeout, poll=max(poll, 0.1), task=task)
    except records.WaitTimeout as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(124)
    except JobError as exc:
        raise _usage(exc) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    code = records.job_exit_status(info, tasks)
    for t in tasks:
        click.echo(f"{t['job_id']}\t{t['state']}\texit status {t.get('exit_status')}")
        if t["state"] != "COMPLETED":
            for line in records.describe_failure(records.failures(info, t["job_id"])):
                click.echo(f"  {line}", err=True)
    sys.exit(code)


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


# an hpcframe command inside a batch job (hpcframe.jobs.launch --command)
def run_in_job(cli_main: click.Group, name: str, args: list[str]) -> None:
    """Run ``hpcframe NAME ARGS`` (``cli_main``: the ``hpcframe`` group, which imports this
    module) on this rank of a batch job; errors are printed as the
    command line prints them, then raised as :class:`hpcframe.jobs.base.CommandFailed`
    (exit code, message, failed ranks) so the launcher records which rank failed and why."""
    from ..jobs.base import CommandFailed

    names = cli_main.list_commands(click.Context(cli_main))  # loaded lazily: not all in .commands
    if name not in names or name in _NOT_SUBMITTABLE:
        known = ", ".join(sorted(c for c in names if c not in _NOT_SUBMITTABLE))
        raise CommandFailed(f"hpcframe has no command {name!r} to run in a job; commands: {known}", 2)
    try:
        cli_main.main(args=[name, *args], prog_name="hpcframe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise CommandFailed(f"hpcframe {name} exited with {exc.exit_code}", exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        cause = getattr(exc, "cause", None)
        raise CommandFailed(
            f"hpcframe {name}: {exc.format_message()}", exc.exit_code, getattr(cause, "failures", ())
        ) from None
    except click.Abort:
        raise CommandFailed(f"hpcframe {name}: aborted", 1) from None


COMMANDS = [submit, status, logs, cancel, jobs, wait_cmd]


def register(group: click.Group) -> None:
    """Add submit/status/logs/cancel/jobs/wait to ``group`` (as :data:`hpcframe.cli.main` has them)."""
    for cmd in COMMANDS:
        group.add_command(cmd)
