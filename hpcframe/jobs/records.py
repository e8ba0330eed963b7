"""Following jobs from anywhere: a per-user record of submitted jobs, and the scheduler's word
for jobs hpcframe did not submit.

``hpcframe submit`` writes one small JSON file per job into the user's state directory,
``$XDG_STATE_HOME/hpcframe/jobs/`` (default ``~/.local/state/hpcframe/jobs/``), named
``<scheduler>-<job id>.json`` and written atomically (a temporary file and a rename), so two
submits racing each other never touch the same file and a reader never sees half a record.
:func:`lookup` finds a job by id from any directory: a run directory path, the run directories
under ``$HPCFRAME_RUNS``/``./hpcframe-runs``, this record, and finally the scheduler itself
(``scontrol show job``/``sacct`` on SLURM, ``qstat -f`` on PBS/Torque) for jobs submitted by
hand. When a job is seen finished its final state is cached in the record, so ``hpcframe jobs``
still knows it after the scheduler forgot it (SLURM's MinJobAge).
"""

from __future__ import annotations

import getpass
import glob
import json
import os
import re
import shutil
import sys
import time as _time

from .base import CommandError, JobError, check_job_id, find_run_dir, run_command, scheduler_for, write_atomic
from .pbs import PBS_STATES

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
"""States a job task does not leave."""


class WaitTimeout(JobError):
    """:func:`wait_for`/:func:`follow` gave up after their ``timeout``: the job still runs."""


def state_dir(env=None) -> str:
    """``$XDG_STATE_HOME/hpcframe`` (default ``~/.local/state/hpcframe``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(os.path.abspath(base), "hpcframe")


def _record_path(scheduler: str, job_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(job_id))
    return os.path.join(state_dir(), "jobs", f"{scheduler}-{safe}.json")


def _base_id(job_id) -> str:
    return re.split(r"[_\[.]", str(job_id))[0]


def save(info: dict) -> str | None:
    """Write ``info`` (a ``job.json`` record with a ``job_id``) into the state directory;
    return its path. Never fails the submit: if the directory cannot be written a warning
    goes to stderr and None is returned."""
    if not info.get("job_id"):
        return None
    path = _record_path(info["scheduler"], info["job_id"])
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, json.dumps(info, indent=2) + "\n")
    except OSError as exc:
        print(
            f"warning: cannot record job {info['job_id']} in {os.path.dirname(path)} "
            f"({exc.strerror or exc}); follow it from this directory or with its run "
            "directory; set XDG_STATE_HOME to a writable place",
            file=sys.stderr,
        )
        return None
    return path


def all_records() -> list[dict]:
    """Every recorded job, newest first (unreadable files are skipped)."""
    out = []
    for path in glob.glob(os.path.join(glob.escape(state_dir()), "jobs", "*.json")):
        try:
            with open(path) as fh:
                info = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("job_id"):
            out.append(info)
    out.sort(key=lambda i: (str(i.get("submitted_at") or ""), _numeric(i["job_id"])), reverse=True)
    return out


def _numeric(job_id) -> int:
    base = _base_id(job_id)
    return int(base) if base.isdigit() else -1


def load(job_id: str) -> dict | None:
    """The recorded job ``job_id`` (any task id of an array selects the array), or None."""
    base = _base_id(job_id)
    for info in all_records():
        if _base_id(info["job_id"]) == base:
            return info
    return None


def _schedulers_on_path() -> list[str]:
    names = []
    if shutil.which("scontrol"):
        names.append("slurm")
    if shutil.which("qstat"):
        names.append("pbs")
    return names


def lookup(job_id: str) -> dict:
    """The record of ``job_id`` from wherever it is known (see the module doc).

    A job only the scheduler knows gets a record with ``"source": "scheduler"``,
    ``"run_dir"`` (the folder of its stdout, when an hpcframe job script wrote failure records
    there, else None) and ``"logs"`` (its stdout/stderr paths). Raises :class:`JobError`
    saying where it looked."""
    job_id = str(job_id)
    try:
        return find_run_dir(job_id)
    except JobError as exc:
        local_error = str(exc)
    job_id = check_job_id(job_id)
    info = load(job_id)
    if info is not None:
        return info
    for name in _schedulers_on_path():
        tasks = query(name, job_id)
        if tasks:
            first = tasks[0]
            logs = sorted({p for t in tasks for p in (t.get("stdout"), t.get("stderr")) if p})
            folder = os.path.dirname(first.get("stdout") or "") or None
            if folder and not (
                os.path.isfile(os.path.join(folder, "job.json"))
                or glob.glob(os.path.join(glob.escape(folder), "failure.*.json"))
            ):
                folder = None  # not an hpcframe run directory (its failure records are there)
            return {
                "scheduler": name,
                "job_id": _base_id(first["job_id"]) if "_" in first["job_id"] else first["job_id"],
                "name": first.get("name"),
                "run_dir": folder,
                "logs": logs,
                "cwd": first.get("workdir"),
                "source": "scheduler",
            }
    looked = ", ".join(_schedulers_on_path()) or "no scheduler client on PATH"
    raise JobError(
        f"job {job_id} is unknown: {local_error}; not in the job record {os.path.join(state_dir(), 'jobs')}; "
        f"and the scheduler ({looked}) does not know it (finished long ago, or another cluster?)"
    )


# --------------------------------------------------------------------------------------------
# asking the scheduler
# --------------------------------------------------------------------------------------------
def query(scheduler: str, job_id: str) -> list[dict]:
    """Task dicts (``job_id``, ``name``, ``state``, ``exit_status``, ``elapsed``, ``stdout``,
    ``stderr``, ``workdir``) from the scheduler; empty if it does not know the job."""
    if scheduler in ("pbs", "torque"):
        return query_pbs(job_id, torque=scheduler == "torque")
    return scheduler_for(scheduler).query(job_id)


def query_pbs(job_id: str, torque: bool = False) -> list[dict]:
    """:func:`query` for PBS Pro (``qstat -x -f``) and Torque (``qstat -f``)."""
    cmd = ["qstat", "-f", job_id] if torque else ["qstat", "-x", "-f", job_id]
    try:
        proc = run_command(cmd, check=False)
    except CommandError:
        return []
    return parse_qstat_full(proc.stdout) if proc.returncode == 0 else []


def parse_qstat_full(text: str) -> list[dict]:
    """Task dicts from ``qstat -f`` output (continuation lines joined); a finished job with
    a non-zero ``Exit_status`` is FAILED (PBS says F/C whatever the status was)."""
    tasks: list[dict] = []
    cur: dict[str, str] | None = None
    last = None
    for raw in text.splitlines():
        m = re.match(r"Job Id:\s*(\S+)", raw)
        if m:
            cur = {"Job Id": m.group(1)}
            tasks.append(cur)
            last = None
            continue
        if cur is None:
            continue
        field = re.match(r"\s+([\w.]+) = (.*)$", raw)
        if field:
            last = field.group(1)
            cur[last] = field.group(2)
        elif last and raw.startswith("\t"):
            cur[last] += raw.strip()
    out = []
    for kv in tasks:
        state = PBS_STATES.get(kv.get("job_state", ""), "UNKNOWN")
        code = kv.get("Exit_status", "").strip()
        status = int(code) if re.fullmatch(r"-?\d+", code) else None
        if status is not None and status < 0:
            state, status = "FAILED", 1  # PBS: negative statuses are the server's own failures
        elif state == "COMPLETED" and status:
            state = "FAILED" if status < 256 else "CANCELLED"
            status = status if status < 256 else status - 128
        wd = re.search(r"PBS_O_WORKDIR=([^,]*)", kv.get("Variable_List", ""))
        out.append(
            {
                "job_id": kv["Job Id"],
                "name": kv.get("Job_Name"),
                "state": state,
                "exit_status": status,
                "elapsed": kv.get("resources_used.walltime"),
                "stdout": kv.get("Output_Path", "").split(":", 1)[-1] or None,
                "stderr": kv.get("Error_Path", "").split(":", 1)[-1] or None,
                "workdir": wd.group(1) if wd else None,
                "user": (kv.get("Job_Owner") or "").split("@")[0] or None,
                "reason": kv.get("comment"),
            }
        )
    return out


def tasks_of(info: dict, task: str | None = None) -> list[dict]:
    """The job's task dicts (see :func:`query`), from the scheduler or, once it forgot the
    job, from the final state cached in the record (``UNKNOWN`` if there is none). A final
    answer is cached in the record. ``task``: only that array task (``123_4``)."""
    tasks = query(info["scheduler"], task or str(info["job_id"]))
    if (
        task is None
        and tasks
        and all(t["state"] in FINAL for t in tasks)
        and info.get("source") != "scheduler"
    ):
        if info.get("final") != tasks:
            info["final"] = tasks
            save(info)
    if not tasks:
        cached = info.get("final") or []
        tasks = [t for t in cached if task is None or t["job_id"] == task]
    if not tasks:
        tasks = [
            {
                "job_id": task or str(info["job_id"]),
                "name": info.get("name"),
                "state": "UNKNOWN",
                "exit_status": None,
                "elapsed": None,
                "stdout": None,
                "stderr": None,
                "workdir": info.get("cwd"),
            }
        ]
    return tasks


# failure records (written by hpcframe.jobs.launch.record_failure on the failed rank)
def read_failures(run_dir: str, job: str) -> list[dict]:
    """The failure records of job (array task) ``job`` in ``run_dir``, of its latest attempt,
    the rank whose own error it is first (see :func:`hpcframe.jobs.launch.failure_record`)."""
    import glob

    key = re.sub(r"[^A-Za-z0-9_.-]", "_", str(job))
    records = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), f"failure.{key}.rank*.json")):
        try:
            with open(path) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("rank"), int):
            records.append(rec)
    if not records:
        return []
    last = max(r.get("attempt", 0) for r in records)
    records = [r for r in records if r.get("attempt", 0) == last]
    # a rank's own error first, then lowest rank
    records.sort(key=lambda r: (r.get("origin") != r["rank"], r["rank"]))
    return records


def describe_failure(records: list[dict]) -> list[str]:
    """Lines for ``hpcframe status``: which rank failed, with which exit status, and why."""
    if not records:
        return []
    first = records[0]
    origin = first.get("origin", first["rank"])
    lines = (
        first["error"] if origin == first["rank"] or not first.get("origin_error") else first["origin_error"]
    )
    same = [r["rank"] for r in records if r.get("origin") == r["rank"] and r["error"] == first["error"]]
    if origin == first["rank"] and len(same) > 1:  # e.g. a bad job spec: every rank says so
        ranks = ", ".join(map(str, sorted(same)))
        head = f"ranks {ranks} of {first.get('size', '?')} failed (exit status {first['exit_status']})"
    else:
        head = f"rank {origin} of {first.get('size', '?')} failed (exit status {first['exit_status']})"
    if origin == first["rank"]:
        head += f" on {first.get('host', '?')}"
    return [head + ":", *("    " + ln for ln in lines)]


def failures(info: dict, task_id: str) -> list[dict]:
    """The failure records the ranks of task ``task_id`` wrote (see :func:`read_failures`);
    empty without a run directory."""
    run_dir = info.get("run_dir")
    return read_failures(run_dir, task_id) if run_dir and os.path.isdir(run_dir) else []


def job_exit_status(info: dict, tasks: list[dict]) -> int:
    """One exit status for the job: 0 if every task COMPLETED, else the first failed task's
    (the status its failed rank recorded, else the scheduler's; 1 if neither is known)."""
    for t in tasks:
        if t["state"] == "COMPLETED":
            continue
        recs = failures(info, t["job_id"])
        if recs and recs[0].get("exit_status"):
            return int(recs[0]["exit_status"])
        return int(t.get("exit_status") or 1)
    return 0


def wait_for(
    info: dict, timeout: float | None = None, poll: float = 2.0, task: str | None = None
) -> list[dict]:
    """Block until every task of the job is finished; return the final task dicts. Raises
    :class:`WaitTimeout` after ``timeout`` seconds (None: wait as long as it takes), JobError when the
    job is UNKNOWN to the scheduler and has no cached final state."""
    deadline = None if timeout is None else _time.monotonic() + timeout
    unknown = 0
    while True:
        tasks = tasks_of(info, task)
        states = {t["state"] for t in tasks}
        if states <= set(FINAL):
            return tasks
        if states == {"UNKNOWN"}:
            unknown += 1
            if unknown >= 3:
                raise JobError(
                    f"job {task or info['job_id']} is not known to {info['scheduler']} any more and "
                    "its final state was never seen: see `hpcframe logs` for what it printed"
                )
        if deadline is not None and _time.monotonic() > deadline:
            raise WaitTimeout(
                f"job {task or info['job_id']} is still {'/'.join(sorted(states))} after {timeout:g} s"
            )
        _time.sleep(poll)


def log_paths(info: dict, task: str | None = None) -> list[str]:
    """The job's stdout/stderr files that exist (run directory logs, or the scheduler's
    StdOut/StdErr for a job submitted by hand), sorted; ``task``: only that array task's."""
    if info.get("run_dir") and info.get("source") != "scheduler":
        files = sorted(glob.glob(os.path.join(glob.escape(info["run_dir"]), "std*.log")))
        if task:
            files = [f for f in files if f".{task}." in os.path.basename(f)]
        return files
    return [p for p in info.get("logs") or [] if os.path.isfile(p) and (not task or task in p)]


def follow(
    info: dict,
    write,
    poll: float = 1.0,
    timeout: float | None = None,
    task: str | None = None,
    stderr: bool = True,
) -> list[dict]:
    """``tail -f`` the job's logs until it has finished: ``write(text)`` gets new output (and
    a ``==> file <==`` line when the file changes; ``stderr=False``: stdout only); returns
    the final task dicts. Raises :class:`WaitTimeout` after ``timeout`` seconds."""
    offsets: dict[str, int] = {}
    current = None
    deadline = None if timeout is None else _time.monotonic() + timeout

    def drain():
        nonlocal current
        for path in log_paths(info, task):
            if not stderr and "stderr" in os.path.basename(path):
                continue
            try:
                with open(path, "rb") as fh:
                    fh.seek(offsets.get(path, 0))
                    data = fh.read()
            except OSError:
                continue
            if not data:
                continue
            offsets[path] = offsets.get(path, 0) + len(data)
            if path != current:
                write(f"==> {path} <==\n")
                current = path
            write(data.decode("utf-8", errors="replace"))

    while True:
        tasks = tasks_of(info, task)
        done = all(t["state"] in FINAL for t in tasks) or {t["state"] for t in tasks} == {"UNKNOWN"}
        if done:
            _time.sleep(min(poll, 0.5))  # the last lines land after the state changes
        drain()
        if done:
            return tasks
        if deadline is not None and _time.monotonic() > deadline:
            raise WaitTimeout(f"job {task or info['job_id']} still running after {timeout:g} s")
        _time.sleep(poll)


# --------------------------------------------------------------------------------------------
# hpcframe jobs
# --------------------------------------------------------------------------------------------
def _summary(tasks: list[dict]) -> tuple[str, str]:
    states = [t["state"] for t in tasks]
    if len(set(states)) == 1:
        state = states[0]
    else:
        state = ",".join(f"{s}x{states.count(s)}" for s in sorted(set(states)))
    elapsed = max((t.get("elapsed") or "" for t in tasks), key=lambda e: (len(e), e), default="")
    return state, elapsed or "-"


def job_table(limit: int | None = 20, include_scheduler: bool = True) -> list[dict]:
    """Rows of ``hpcframe jobs``: ``job_id``, ``name``, ``state``, ``elapsed``, ``output``
    (run directory, or the stdout file of a job submitted by hand), newest first. One
    scheduler query for all jobs (``scontrol show job``); jobs it no longer knows show their
    cached final state. With ``include_scheduler``, the user's jobs the scheduler knows but
    hpcframe did not submit are listed too."""
    records = all_records()
    if limit is not None:
        records = records[:limit]
    live: dict[str, list[dict]] = {}
    slurm_tasks: list[dict] = []
    if shutil.which("scontrol"):
        slurm_tasks = scheduler_for("slurm").query_all()  # type: ignore[attr-defined]
        for t in slurm_tasks:
            live.setdefault(_base_id(t["job_id"]), []).append(t)
    rows = []
    seen = set()
    for info in records:
        base = _base_id(info["job_id"])
        seen.add(base)
        if info["scheduler"] == "slurm" and (base in live or info.get("final")):
            tasks = live.get(base) or info["final"]
            if base in live and all(t["state"] in FINAL for t in tasks) and info.get("final") != tasks:
                info["final"] = tasks
                save(info)
        elif info["scheduler"] == "slurm":
            tasks = [{"state": "UNKNOWN", "elapsed": None}]
        else:
            tasks = tasks_of(info)
        state, elapsed = _summary(tasks)
        rows.append(
            {
                "job_id": str(info["job_id"]),
                "name": info.get("name") or "-",
                "state": state,
                "elapsed": elapsed,
                "output": info.get("run_dir") or "-",
            }
        )
    if include_scheduler:
        me = getpass.getuser()
        for base, tasks in sorted(live.items(), key=lambda kv: -_numeric(kv[0])):
            if base in seen or tasks[0].get("user") not in (me, None):
                continue
            state, elapsed = _summary(tasks)
            rows.append(
                {
                    "job_id": base,
                    "name": tasks[0].get("name") or "-",
                    "state": state,
                    "elapsed": elapsed,
                    "output": tasks[0].get("stdout") or "-",
                }
            )
    return rows
