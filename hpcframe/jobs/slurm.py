"""SLURM: ``#SBATCH`` directives, ``sbatch --parsable``, ``squeue``/``scontrol``, ``scancel``."""

from __future__ import annotations

import os
import re

from .base import CommandError, JobParams, Scheduler, run_command

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


class Slurm(Scheduler):
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
        "--requeue",  # -- CHECKPOINT: --requeue/--retries/--signal set these --
        "--no-requeue",
        "--signal",
        "--open-mode",
    )
    ntasks_shell = '"${SLURM_NTASKS:-${SLURM_NPROCS:-1}}"'
    array_env = "SLURM_ARRAY_TASK_ID"

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
            d.append((f"--array={p.array.range_text()}",))
        if p.after:
            d.append((f"--dependency=afterok:{':'.join(p.after)}",))
        # -- CHECKPOINT: requeueable, the warning signal to the batch shell, logs appended --
        if p.requeue or p.retries:
            d.append(("--requeue",))
        if p.signal:
            d.append((f"--signal=B:{p.signal}",))
            d.append(("--open-mode=append",))  # a requeued run adds to the same logs
        # -- end CHECKPOINT --
        return d

    # -- CHECKPOINT: how a checkpointed or failed run requeues the job (hpcframe.jobs.checkpoint) --
    def requeue_lines(self, p: JobParams) -> list[str]:
        """``scontrol requeue $SLURM_JOB_ID`` (the job needs ``--requeue``); SLURM then ends
        this run and starts the job again with the same id and run directory."""
        return [
            'echo "hpcframe: requeueing job $SLURM_JOB_ID" >&2',
            'scontrol requeue "$SLURM_JOB_ID" && exit 0',
            'echo "hpcframe: scontrol requeue $SLURM_JOB_ID failed; submit the job again" >&2',
        ]

    # -- end CHECKPOINT --

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
        rows = [
            (i, _STATES.get(s, s), r)
            for i, s, r in (ln.split("|", 2) for ln in out.splitlines() if ln.count("|") == 2)
        ]
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


def parse_scontrol(text: str) -> list[tuple[str, str, str]]:
    """``[(task id, STATE, detail)]`` from ``scontrol show job --oneliner`` output."""
    rows = []
    for line in text.splitlines():
        kv: dict[str, str] = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" not in kv:
            continue
        tid = kv["JobId"]
        if kv.get("ArrayJobId") and kv.get("ArrayTaskId"):
            tid = f"{kv['ArrayJobId']}_{kv['ArrayTaskId']}"
        state = kv.get("JobState", "UNKNOWN")
        detail = f"Reason={kv.get('Reason', '')} ExitCode={kv.get('ExitCode', '')}"
        rows.append((tid, _STATES.get(state, state), detail))
    return rows
