"""SLURM: ``#SBATCH`` directives, ``sbatch --parsable``, ``squeue``/``scontrol``, ``scancel``."""

from __future__ import annotations

import os
import re

from .base import CommandError, JobError, JobParams, Scheduler, run_command, task_order
from .checkpoint import Requeueable

# scheduler words -> hpcframe's states
_STATES = {
    "PENDING": "PENDING",
    "CONFIGURING": "RUNNING",
    "RUNNING": "RUNNING",
    "COMPLETING": "RUNNING",
    "SUSPENDED": "RUNNING",
    "REQUEUED": "PENDING",
    "RESIZING": "RUNNING",
    "COMPLETED": "COMPLETED",
    "FAILED": "FAILED",
    "NODE_FAIL": "FAILED",
    "OUT_OF_MEMORY": "FAILED",
    "BOOT_FAIL": "FAILED",
    "DEADLINE": "TIMEOUT",
    "PREEMPTED": "CANCELLED",
    "CANCELLED": "CANCELLED",
    "TIMEOUT": "TIMEOUT",
}


class Slurm(Requeueable, Scheduler):
    """SLURM: ``#SBATCH`` directives, ranks started with ``srun --mpi=pmi2``."""

    name = "slurm"
    prefix = "#SBATCH"
    default_launcher = "srun --mpi=pmi2"
    managed = (
        "--job-name",
        "-J",
        "--nodes",
        "-N",
        "--ntasks-per-node",
        "--ntasks",
        "-n",
        "--cpus-per-task",
        "-c",
        "--time",
        "-t",
        "--mem",
        "--partition",
        "-p",
        "--account",
        "-A",
        "--output",
        "-o",
        "--error",
        "-e",
        "--array",
        "-a",
        "--dependency",
        "-d",
        "--chdir",
        "-D",
        "--requeue",  # --requeue/--retries/--signal set these
        "--no-requeue",
        "--signal",
        "--open-mode",
    )
    ntasks_shell = '"${SLURM_NTASKS:-${SLURM_NPROCS:-1}}"'
    array_env = "SLURM_ARRAY_TASK_ID"

    # exclusive nodes
    def check(self, p: JobParams) -> None:
        """As :meth:`Scheduler.check`; an extra ``--exclusive`` directive turns on
        ``exclusive`` (rendered once), ``--exclusive=...`` variants cannot be combined with it."""
        if "--exclusive" in p.extra_directives:
            p.extra_directives = [d for d in p.extra_directives if d != "--exclusive"]
            p.exclusive = True
        if p.exclusive and any(d.startswith("--exclusive=") for d in p.extra_directives):
            raise JobError(
                "exclusive is on (--exclusive) and an extra directive sets --exclusive=...: keep one"
            )
        super().check(p)

    def directives(self, p: JobParams, run_dir: str) -> list[tuple[str, ...]]:
        """``--option=value`` words for ``p``; the logs go to ``run_dir``."""
        log = "%A_%a" if p.array is not None else "%j"
        d: list[tuple[str, ...]] = [
            (f"--job-name={p.name}",),
            (f"--nodes={p.nodes}",),
            (f"--ntasks-per-node={p.ntasks_per_node}",),
            (f"--cpus-per-task={p.cpus_per_task}",),
            (f"--time={p.time}",),
            (f"--output={os.path.join(run_dir, f'stdout.{log}.log')}",),
            (f"--error={os.path.join(run_dir, f'stderr.{log}.log')}",),
            (f"--chdir={p.workdir or os.getcwd()}",),
        ]
        if p.mem:
            d.append((f"--mem={p.mem}",))
        if p.partition:
            d.append((f"--partition={p.partition}",))
        if p.account:
            d.append((f"--account={p.account}",))
        if p.array is not None:
            d.append((f"--array={self.array_indices(p.array)}",))
        if p.exclusive:
            d.append(("--exclusive",))
        if p.after:
            d.append((f"--dependency=afterok:{':'.join(p.after)}",))
        # requeueable, the warning signal to the batch shell, logs appended
        if p.requeue or p.retries:
            d.append(("--requeue",))
        if p.signal:
            d.append((f"--signal=B:{p.signal}",))
            d.append(("--open-mode=append",))  # a requeued run adds to the same logs
        return d

    # how a checkpointed or failed run requeues the job (hpcframe.jobs.checkpoint)
    def requeue_lines(self, p: JobParams) -> list[str]:
        """``scontrol requeue $SLURM_JOB_ID`` (the job needs ``--requeue``); SLURM then ends
        this run and starts the job again with the same id and run directory."""
        return [
            'echo "hpcframe: requeueing job $SLURM_JOB_ID" >&2',
            'scontrol requeue "$SLURM_JOB_ID" && exit 0',
            'echo "hpcframe: scontrol requeue $SLURM_JOB_ID failed; submit the job again" >&2',
        ]

    def submit_command(self, script: str, p: JobParams) -> list[str]:
        """``sbatch --parsable SCRIPT``."""
        return ["sbatch", "--parsable", script]

    def parse_job_id(self, stdout: str) -> str:
        """``sbatch --parsable`` prints ``ID`` or ``ID;cluster``."""
        m = re.search(r"^(\d+)(;\S+)?\s*$", stdout.strip(), re.M)
        if not m:
            raise ValueError(f"cannot read a job id from sbatch output {stdout!r}")
        return m.group(1)

    def status(self, job_id: str):
        """Rows from ``scontrol show job`` (which also knows jobs finished in the last
        MinJobAge seconds); falls back to ``squeue``; UNKNOWN when neither knows the job."""
        proc = run_command(["scontrol", "show", "job", "--oneliner", job_id], check=False)
        rows = parse_scontrol(proc.stdout) if proc.returncode == 0 else []
        if rows:
            return rows
        try:
            out = run_command(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%r"]).stdout
        except CommandError:
            out = ""
        rows = sorted(
            (
                (i, _STATES.get(s, s), r)
                for i, s, r in (ln.split("|", 2) for ln in out.splitlines() if ln.count("|") == 2)
            ),
            key=task_order,
        )
        return rows or [
            (
                job_id,
                "UNKNOWN",
                "not known to scontrol/squeue any more (finished long ago?): see `hpcframe logs`",
            )
        ]

    def cancel_command(self, job_id: str) -> list[str]:
        """``scancel JOB_ID``."""
        return ["scancel", job_id]

    # jobs hpcframe has no record of (submitted by hand with sbatch)
    def query(self, job_id: str) -> list[dict]:
        """``scontrol show job`` (jobs finished less than MinJobAge ago included), else
        ``sacct`` when accounting is on (no log paths there). See :meth:`Scheduler.query`."""
        proc = run_command(["scontrol", "show", "job", "--oneliner", job_id], check=False)
        tasks = parse_scontrol_tasks(proc.stdout) if proc.returncode == 0 else []
        if tasks:
            return tasks
        proc = run_command(
            ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,JobName,State,ExitCode,Elapsed,WorkDir"],
            check=False,
        )
        return parse_sacct(proc.stdout) if proc.returncode == 0 else []

    def query_all(self) -> list[dict]:
        """Every job ``scontrol show job`` knows (all users), as :meth:`query` describes them."""
        proc = run_command(["scontrol", "show", "job", "--oneliner"], check=False)
        return parse_scontrol_tasks(proc.stdout) if proc.returncode == 0 else []


def _scontrol_jobs(text: str):
    """``(task id, {field: value})`` per job line of ``scontrol show job --oneliner`` output;
    array tasks are ``A_T``."""
    for line in text.splitlines():
        kv: dict[str, str] = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" not in kv:
            continue
        tid = kv["JobId"]
        if kv.get("ArrayJobId") and kv.get("ArrayTaskId"):
            tid = f"{kv['ArrayJobId']}_{kv['ArrayTaskId']}"
        yield tid, kv


def parse_scontrol(text: str) -> list[tuple[str, str, str]]:
    """``[(task id, STATE, detail)]`` from ``scontrol show job --oneliner`` output."""
    rows = []
    for tid, kv in _scontrol_jobs(text):
        state = kv.get("JobState", "UNKNOWN")
        detail = f"Reason={kv.get('Reason', '')} ExitCode={kv.get('ExitCode', '')}"
        rows.append((tid, _STATES.get(state, state), detail))
    return sorted(rows, key=task_order)  # scontrol lists array tasks last first


# scontrol/sacct fields -> task dicts
def exit_status(text: str) -> int | None:
    """The shell-style exit status of SLURM's ``ExitCode=N:S``: N, or 128+S when a signal
    ended it (``0:9`` -> 137); None if unreadable."""
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not m:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return code if code or not sig else 128 + sig


def parse_scontrol_tasks(text: str) -> list[dict]:
    """One dict per task of ``scontrol show job --oneliner`` output: ``job_id`` (``A_T`` for
    array tasks), ``name``, ``state`` (hpcframe's word), ``exit_status``, ``elapsed``,
    ``stdout``, ``stderr``, ``workdir``, ``user``, ``reason``."""
    tasks = []
    for tid, kv in _scontrol_jobs(text):
        state = kv.get("JobState", "UNKNOWN")
        tasks.append(
            {
                "job_id": tid,
                "name": kv.get("JobName") or None,
                "state": _STATES.get(state, state),
                "exit_status": exit_status(kv.get("ExitCode", "")),
                "elapsed": kv.get("RunTime") or None,
                "stdout": kv.get("StdOut") or None,
                "stderr": kv.get("StdErr") or None,
                "workdir": kv.get("WorkDir") or None,
                "user": (kv.get("UserId") or "").split("(")[0] or None,
                "reason": kv.get("Reason") or None,
            }
        )
    return tasks


def parse_sacct(text: str) -> list[dict]:
    """Task dicts (as :func:`parse_scontrol_tasks`) from ``sacct -n -P -o
    JobID,JobName,State,ExitCode,Elapsed,WorkDir``; sacct does not know the log paths."""
    tasks = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 6 or not parts[0]:
            continue
        state = parts[2].split()[0] if parts[2] else "UNKNOWN"
        tasks.append(
            {
                "job_id": parts[0],
                "name": parts[1] or None,
                "state": _STATES.get(state, state),
                "exit_status": exit_status(parts[3]),
                "elapsed": parts[4] or None,
                "stdout": None,
                "stderr": None,
                "workdir": parts[5] or None,
                "user": None,
                "reason": None,
            }
        )
    return tasks
