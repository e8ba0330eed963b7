"""Batch jobs: render, submit, follow and cancel hpcframe work on SLURM, PBS Pro and Torque.

The library behind ``hpcframe submit/status/logs/cancel`` (:mod:`.commands`)::

    params = make_params(profile="slurm", overrides={"nodes": 2}, array="month=1-12")
    text = render_job(params, "job.yaml", run_dir="/tmp/x")      # what --dry-run prints
    info = submit("job.yaml", params)                            # -> job.json record
    status(info["job_id"]); cancel(info["job_id"])
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re

from . import base, pbs, records, slurm  # noqa: F401,E402  (the built-in schedulers register themselves)
from .base import (
    ArraySpec,
    CommandError,
    JobError,
    JobParams,
    Scheduler,
    check_printable,
    new_run_dir,
    run_command,
    scheduler_for,
    wait,
    write_atomic,
)
from .profiles import make_params

__all__ = [
    "ArraySpec",
    "CommandError",
    "JobError",
    "JobParams",
    "Scheduler",
    "scheduler_for",
    "make_params",
    "program_for",
    "render_job",
    "submit",
    "status",
    "cancel",
    "log_files",
    "find_run",
    "wait",
]


def program_for(target: str, args=(), command: bool = False) -> list[str]:
    """What follows ``python -m mpi4py`` in the job: ``-m hpcframe.jobs.launch TARGET ARGS``.

    ``target`` is a job spec (``.yaml``/``.yml``) or a Python script; it must exist. With
    ``command``, ``target`` is an hpcframe command (``convert``, ``run`` ...) run on every
    rank: ``-m hpcframe.jobs.launch --command NAME ARGS``. Raises JobError if the target does
    not exist, or if arguments are given for a spec.
    """
    for i, a in enumerate(args, 1):
        check_printable(f"script argument {i}", str(a))
    if command:  # any hpcframe command
        if not re.fullmatch(r"[a-z][a-z0-9-]*", str(target)):
            raise JobError(f"{target!r} is not an hpcframe command name")
        return ["-m", "hpcframe.jobs.launch", "--command", str(target), *[str(a) for a in args]]
    path = os.path.abspath(target)
    if not os.path.isfile(path):
        raise JobError(
            f"{target!r} does not exist: give a job spec (.yaml), a Python script, or an hpcframe "
            "command after -- (e.g. hpcframe submit --profile P -- convert SRC DST --to parquet)"
        )
    if path.endswith((".yaml", ".yml")) and args:
        raise JobError(
            f"arguments after -- are for a user script, not for the job spec {target}: put "
            "progress: true / profile_dir: DIR in the spec, or submit the command itself: "
            f"hpcframe submit ... -- run {target} {' '.join(map(str, args))}"
        )
    check_printable("job target path", path)
    return ["-m", "hpcframe.jobs.launch", path, *[str(a) for a in args]]


def render_job(
    params: JobParams, target: str, args=(), run_dir: str = "RUN_DIR", command: bool = False
) -> str:
    """The job script text for running ``target`` with ``args`` under ``params``."""
    return scheduler_for(params.scheduler).render(params, program_for(target, args, command), run_dir)


def submit(
    target: str, params: JobParams, args=(), runs_root: str | None = None, command: bool = False
) -> dict:
    """Render, write and submit the job; return its ``job.json`` record (also on disk, and in
    the per-user job record, :mod:`hpcframe.jobs.records`, so it can be followed from anywhere).

    Creates a run directory holding ``job.sh`` (the script), ``job.json`` and later the logs.
    ``command``: ``target`` is an hpcframe command (see :func:`program_for`). Raises
    :class:`CommandError` if the submit command fails (the run directory is kept, with
    ``job.json`` saying ``"job_id": null``).
    """
    sched = scheduler_for(params.scheduler)
    program = program_for(target, args, command)
    run_dir = new_run_dir(params.name, runs_root)
    script = os.path.join(run_dir, "job.sh")
    write_atomic(script, sched.render(params, program, run_dir), 0o755)
    cmd = sched.submit_command(script, params)
    info = {
        "scheduler": sched.name,
        "job_id": None,
        "name": params.name,
        "run_dir": run_dir,
        "script": script,
        "submit_command": cmd,
        "target": f"hpcframe {target}" if command else program[2],
        "args": list(args),
        "array": params.array.range_text() if params.array else None,
        "array_name": params.array.name if params.array else None,
        "after": params.after,
        "ntasks": params.ntasks,
        "cwd": os.getcwd(),
        "submitted_at": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    record = os.path.join(run_dir, "job.json")
    try:
        out = run_command(cmd).stdout
        info["job_id"] = sched.parse_job_id(out)
    finally:
        write_atomic(record, json.dumps(info, indent=2) + "\n")
    records.save(info)
    return info


def status(job_id: str) -> tuple[dict, list]:
    """``(record, [(task id, STATE, detail)])`` for a job submitted from anywhere (or by hand:
    see :func:`hpcframe.jobs.records.lookup`)."""
    info = find_run(job_id)
    task = str(job_id) if re.fullmatch(r"\d+_\d+", str(job_id)) else str(info["job_id"])
    rows = scheduler_for(info["scheduler"]).status(task)
    if rows and all(state == "UNKNOWN" for _, state, _ in rows) and info.get("final"):
        rows = [  # the scheduler forgot the job; its final state was recorded
            (t["job_id"], t["state"], f"ExitStatus={t.get('exit_status')} (recorded)")
            for t in info["final"]
            if task == str(info["job_id"]) or t["job_id"] == task
        ] or rows
    return info, rows


def cancel(job_id: str) -> dict:
    """Cancel the job (``scancel``/``qdel``); return its record. Raises CommandError on failure."""
    info = find_run(job_id)
    run_command(scheduler_for(info["scheduler"]).cancel_command(str(info["job_id"])))
    return info


def find_run(job_id: str, roots=None) -> dict:
    """The record of ``job_id`` (a job id, ``ID_N`` array task, or a run directory path).

    With ``roots``: only the run directories under them. Default: the run directories under
    ``$HPCFRAME_RUNS``/``./hpcframe-runs``, then -- from any directory -- the per-user job
    record and the scheduler (:func:`hpcframe.jobs.records.lookup`). Raises JobError.
    """
    if roots is not None:
        return base.find_run_dir(job_id, roots)
    return records.lookup(job_id)


def log_files(job_id: str) -> tuple[dict, list[str]]:
    """``(record, sorted paths of the job's stdout/stderr logs)``: those in its run directory,
    or what the scheduler says for a job submitted by hand (``ID_N``: that task's only)."""
    info = find_run(job_id)
    task = str(job_id) if re.fullmatch(r"\d+_\d+", str(job_id)) else None
    return info, records.log_paths(info, task)
