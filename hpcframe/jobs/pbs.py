"""PBS Pro and Torque: ``#PBS`` directives, ``qsub``, ``qstat``, ``qdel``.

PBS Pro asks for chunks (``-l select=N:ncpus=C:mpiprocs=M``) and arrays with ``-J``; Torque
asks for ``-l nodes=N:ppn=M`` and arrays with ``-t``. Both start the body in ``$HOME``, so the
body changes to ``$PBS_O_WORKDIR`` (the directory ``qsub`` ran in) first.
"""

from __future__ import annotations

import dataclasses
import os
import re

from .base import ArraySpec, JobError, JobParams, Scheduler, run_command

_STATES = {
    "Q": "PENDING",
    "H": "PENDING",
    "W": "PENDING",
    "T": "PENDING",
    "S": "RUNNING",
    "R": "RUNNING",
    "E": "RUNNING",
    "B": "RUNNING",
    "X": "COMPLETED",
    "M": "RUNNING",
}


class PBSPro(Scheduler):
    """PBS Pro: ``-l select=...`` chunks, ``-J`` arrays, ``qstat -x`` for finished jobs."""

    name = "pbs"
    aliases: tuple[str, ...] = ("pbspro",)
    prefix = "#PBS"
    default_launcher = "mpiexec"
    managed = ("-N", "-l", "-q", "-A", "-o", "-e", "-J", "-t", "-W", "-r")  # CHECKPOINT: -r
    ntasks_shell = '"$(wc -l < "$PBS_NODEFILE")"'
    array_env = "PBS_ARRAY_INDEX"

    def check(self, p: JobParams) -> None:
        """Extra directives as :meth:`check_extra`; arrays must be ranges of two or more."""
        self.check_extra(p)
        if p.array is not None and not p.array.is_range:
            raise JobError(
                f"PBS Pro arrays (-J) take a range START-END[:STEP], not a list "
                f"({p.array.range_text()}): use --array {p.array.name}=START-END[:STEP]"
            )
        if p.array is not None and p.array.start == p.array.stop:
            raise JobError(
                "PBS Pro arrays need at least two indices (-J START-END with START < END): "
                "submit a single job instead"
            )

    def check_extra(self, p: JobParams) -> None:
        """Extra ``-l`` directives may add resources, not re-set the ones hpcframe renders."""
        own = ("select", "nodes", "ncpus", "mpiprocs", "ppn", "walltime", "mem", "place")
        for d in p.extra_directives:
            words = d.split()
            if words and words[0] == "-l":
                names = [r.split("=")[0].strip() for r in " ".join(words[1:]).split(",")]
                clash = [n for n in names if n in own]
                if clash:
                    raise JobError(
                        f"extra directive {d!r} sets {', '.join(clash)}, which hpcframe "
                        "renders from --nodes/--ntasks-per-node/--cpus-per-task/--time/"
                        "--mem: use those options (or profile keys) instead"
                    )
            elif words and words[0] in self.managed:
                raise JobError(
                    f"extra directive {d!r} sets {words[0]}, which hpcframe renders "
                    "from the job's options: use the matching option/profile key instead"
                )

    def resources(self, p: JobParams) -> list[tuple[str, ...]]:
        """The ``-l`` directives asking for nodes, cores and memory."""
        chunk = f"select={p.nodes}:ncpus={p.ntasks_per_node * p.cpus_per_task}:mpiprocs={p.ntasks_per_node}"
        if p.mem:
            chunk += f":mem={int(p.mem[:-1])}mb"
        return [("-l", chunk), ("-l", "place=scatter")]

    def directives(self, p: JobParams, run_dir: str) -> list[tuple[str, ...]]:
        """``(flag, value)`` pairs for ``p``; the logs go to ``run_dir``."""
        sub = ".^array_index^" if p.array is not None and self.name == "pbs" else ""
        d: list[tuple[str, ...]] = [
            ("-N", p.name),
            ("-l", f"walltime={p.time}"),
            ("-o", os.path.join(run_dir, f"stdout{sub}.log")),
            ("-e", os.path.join(run_dir, f"stderr{sub}.log")),
        ]
        d += self.resources(p)
        if p.partition:
            d.append(("-q", p.partition))
        if p.account:
            d.append(("-A", p.account))
        if p.array is not None:
            d.append(self.array_directive(p.array))
        if p.after:
            d.append(("-W", f"depend=afterok:{':'.join(p.after)}"))
        if p.requeue or p.retries:  # -- CHECKPOINT: rerunnable (qrerun) --
            d.append(("-r", "y"))
        return d

    # -- CHECKPOINT: the warning timer and the rerun of a checkpointed or failed run --
    def warning_timer(self, p: JobParams, name: str, seconds: int) -> list[str]:
        """PBS has no warning signal: a timer in the job script sends it to the batch shell."""
        from .checkpoint import warning_timer

        return warning_timer(name, seconds, p.time)

    def requeue_lines(self, p: JobParams) -> list[str]:
        """``qrerun $PBS_JOBID`` (the job is rerunnable: ``-r y``); where users may not rerun
        jobs (PBS Pro without operator rights), the same job script is submitted again."""
        return [
            'echo "hpcframe: rerunning job $PBS_JOBID" >&2',
            'qrerun "$PBS_JOBID" && exit 0',
            'echo "hpcframe: qrerun $PBS_JOBID refused; submitting $HPCFRAME_RUN_DIR/job.sh again" >&2',
            'qsub "$HPCFRAME_RUN_DIR/job.sh" && exit 0',
        ]

    # -- end CHECKPOINT --

    def array_directive(self, array: ArraySpec) -> tuple[str, str]:
        """The directive that makes ``array`` a job array (``-J 1-12``)."""
        return ("-J", array.range_text())

    def body_preamble(self, p: JobParams) -> list[str]:
        """Change to ``$PBS_O_WORKDIR`` (PBS starts the body in ``$HOME``)."""
        return ['cd "$PBS_O_WORKDIR"']

    def submit_command(self, script: str, p: JobParams) -> list[str]:
        """``qsub SCRIPT``."""
        return ["qsub", script]

    def parse_job_id(self, stdout: str) -> str:
        """``qsub`` prints ``1234.server`` (arrays: ``1234[].server``)."""
        m = re.search(r"^(\d+(\[\])?(\.[A-Za-z0-9_.-]+)?)\s*$", stdout.strip(), re.M)
        if not m:
            raise ValueError(f"cannot read a job id from qsub output {stdout!r}")
        return m.group(1)

    def status_command(self, job_id: str) -> list[str]:
        """``qstat -x -f JOB_ID`` (``-x`` includes finished jobs)."""
        return ["qstat", "-x", "-f", job_id]

    def status(self, job_id: str) -> list[tuple[str, str, str]]:
        """Rows from :meth:`status_command`'s output; UNKNOWN when it does not know the job."""
        proc = run_command(self.status_command(job_id), check=False)
        rows = parse_qstat_f(proc.stdout)
        return rows or [(job_id, "UNKNOWN", (proc.stderr or proc.stdout).strip())]

    def cancel_command(self, job_id: str) -> list[str]:
        """``qdel JOB_ID``."""
        return ["qdel", job_id]


class Torque(PBSPro):
    """Torque: ``-l nodes=N:ppn=M``, ``-t`` arrays (ranges or lists), plain ``qstat -f``."""

    name = "torque"
    aliases = ()
    array_env = "PBS_ARRAYID"

    def check(self, p: JobParams) -> None:
        """Extra directives as :meth:`check_extra` (Torque takes any array)."""
        self.check_extra(p)

    def resources(self, p: JobParams) -> list[tuple[str, ...]]:
        """The ``-l`` directives asking for nodes, cores (ppn) and memory (for all nodes)."""
        d: list[tuple[str, ...]] = [("-l", f"nodes={p.nodes}:ppn={p.ntasks_per_node * p.cpus_per_task}")]
        if p.mem:
            d.append(("-l", f"mem={int(p.mem[:-1]) * p.nodes}mb"))
        return d

    def array_directive(self, array: ArraySpec) -> tuple[str, str]:
        """The directive that makes ``array`` a job array (``-t 1-12`` or ``-t 1,4,7``)."""
        return ("-t", array.range_text())

    def ntasks_expr(self, p: JobParams) -> str:
        """Torque's nodefile lists every core (ppn = tasks x cpus-per-task): divide."""
        if p.cpus_per_task == 1:
            return self.ntasks_shell
        return f'"$(( $(wc -l < "$PBS_NODEFILE") / {p.cpus_per_task} ))"'

    def render(self, p: JobParams, program, run_dir: str) -> str:
        """As :meth:`Scheduler.render`, exporting ``HPCFRAME_CPUS_PER_TASK`` when it is not 1."""
        if p.cpus_per_task != 1:  # launch.check_world divides the nodefile's lines by this
            p = dataclasses.replace(p, env={**p.env, "HPCFRAME_CPUS_PER_TASK": str(p.cpus_per_task)})
        return super().render(p, program, run_dir)

    def status_command(self, job_id: str) -> list[str]:
        """``qstat -f JOB_ID`` (Torque has no ``-x``)."""
        return ["qstat", "-f", job_id]


def parse_qstat_f(text: str) -> list[tuple[str, str, str]]:
    """``[(job id, STATE, detail)]`` from ``qstat -f`` output (PBS Pro and Torque)."""
    rows, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^Job Id:\s*(\S+)", line)
        if m:
            cur = {"id": m.group(1)}
            rows.append(cur)
            continue
        m = re.match(r"^\s+(job_state|exit_status|Exit_status|comment)\s*=\s*(.*)$", line)
        if m and cur is not None:
            cur[m.group(1).lower()] = m.group(2).strip()
    out = []
    for r in rows:
        st, code = r.get("job_state", "?"), r.get("exit_status")
        if st in ("F", "C"):  # finished (PBS Pro -x) / completed (Torque)
            cancelled = code in ("271", "-1")
            state = "COMPLETED" if code in (None, "0") else ("CANCELLED" if cancelled else "FAILED")
        else:
            state = _STATES.get(st, "UNKNOWN")
        out.append((r["id"], state, f"job_state={st}" + (f" exit_status={code}" if code else "")))
    return out
