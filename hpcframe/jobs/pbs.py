"""PBS Pro and Torque: ``#PBS`` directives, ``qsub``, ``qstat``, ``qdel``.

PBS Pro asks for chunks (``-l select=N:ncpus=C:mpiprocs=M``, placed with
``-l place=scatter[:excl]``) and arrays with ``-J``; Torque asks for ``-l nodes=N:ppn=M``
(``-n`` for whole nodes) and arrays with ``-t``. Both start the body in ``$HOME``, so the body
changes to ``$PBS_O_WORKDIR`` (the directory ``qsub`` ran in) first.

Arrays: PBS Pro's ``-J`` takes one range, so lists of values (integers or strings) are mapped
through indices ``0 .. n-1``; Torque takes integer lists natively and maps string lists. Each
PBS Pro task logs to ``stdout.INDEX.log`` (``^array_index^``); Torque cannot name ``-o`` files
per task, so the body of a Torque array task redirects its output to
``stdout.JOBID_INDEX.log`` (as SLURM's ``%A_%a``).

Torque's ``$PBS_NODEFILE`` lists every core (``ppn`` = ranks x cpus per task), so ``mpiexec``
is given ``-ppn RANKS_PER_NODE`` (MPICH/Hydra, Intel MPI, MVAPICH): without it, ranks would
fill the first node's lines before using the next node.
"""

from __future__ import annotations

import dataclasses
import os
import re

from .base import ArraySpec, JobError, JobParams, Scheduler, _split_words, run_command, task_order
from .checkpoint import Requeueable

#: qstat's job_state letters -> hpcframe's words (PBS Pro; Torque's C = completed; F = finished,
#: shown by ``qstat -x``)
PBS_STATES = {
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
    "F": "COMPLETED",
    "C": "COMPLETED",
}


class PBSPro(Requeueable, Scheduler):
    """PBS Pro: ``-l select=...`` chunks, ``-J`` arrays, ``qstat -x`` for finished jobs."""

    name = "pbs"
    aliases: tuple[str, ...] = ("pbspro",)
    prefix = "#PBS"
    default_launcher = "mpiexec"
    managed = ("-N", "-l", "-q", "-A", "-o", "-e", "-J", "-t", "-W", "-r")  # -r
    ntasks_shell = '"$(wc -l < "$PBS_NODEFILE")"'
    array_env = "PBS_ARRAY_INDEX"

    def check(self, p: JobParams) -> None:
        """Extra directives as :meth:`check_extra`; arrays need two or more tasks."""
        self.check_extra(p)
        if p.array is not None and len(p.array.task_values()) < 2:
            raise JobError(
                f"PBS Pro arrays (-J) need at least two tasks, but --array "
                f"{p.array.name}={p.array.range_text()} has one: submit a single job instead"
            )

    def array_mapped(self, array: ArraySpec) -> bool:
        """PBS Pro's ``-J`` takes one range: every list (integers too) is mapped."""
        return not array.is_range

    # exclusive placement
    ARRANGEMENTS = ("free", "pack", "scatter", "vscatter")
    SHARING = ("excl", "shared", "exclhost")

    def extra_place(self, p: JobParams) -> str | None:
        """The ``place=`` value of an extra ``-l place=...`` directive, or None."""
        for d in p.extra_directives:
            words = d.split()
            if len(words) == 2 and words[0] == "-l" and words[1].startswith("place="):
                return words[1].split("=", 1)[1]
        return None

    def absorb_place(self, p: JobParams) -> None:
        """Accept one extra ``-l place=ARRANGEMENT[:SHARING][:group=...]`` directive (it replaces
        hpcframe's ``place=scatter``; ``excl``/``exclhost`` turn on ``exclusive``); JobError for
        a malformed one, or one that shares nodes while ``exclusive`` is on."""
        places = [d for d in p.extra_directives if "place=" in d and d.split()[:1] == ["-l"]]
        if not places:
            return
        d = places[0]
        words = d.split()
        if len(places) > 1 or len(words) != 2 or "," in words[1] or not words[1].startswith("place="):
            raise JobError(
                f"extra directive {d!r}: write the placement as one directive of its own, "
                "e.g. '-l place=scatter:excl' (or set exclusive: true / --exclusive)"
            )
        parts = words[1].split("=", 1)[1].split(":")
        bad = [x for x in parts if x not in self.ARRANGEMENTS + self.SHARING and not x.startswith("group=")]
        if bad or not parts:
            raise JobError(
                f"extra directive {d!r}: {', '.join(bad) or 'empty placement'} is not a PBS "
                f"placement; use {'|'.join(self.ARRANGEMENTS)} and/or {'|'.join(self.SHARING)}, "
                "e.g. '-l place=scatter:excl'"
            )
        if "excl" in parts or "exclhost" in parts:
            p.exclusive = True
        elif p.exclusive:
            raise JobError(
                f"exclusive is on (--exclusive / exclusive: true) but extra directive {d!r} "
                "does not ask for excl: add :excl to it or drop it"
            )

    def check_extra(self, p: JobParams) -> None:
        """Extra ``-l`` directives may add resources, not re-set the ones hpcframe renders
        (``-l place=...`` is accepted: see :meth:`absorb_place`)."""
        own = ("select", "nodes", "ncpus", "mpiprocs", "ppn", "walltime", "mem")
        self.absorb_place(p)
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
        if self.extra_place(p) is not None:  # the user's own -l place=... (absorb_place)
            return [("-l", chunk)]
        return [("-l", chunk), ("-l", "place=scatter:excl" if p.exclusive else "place=scatter")]

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
        if p.requeue or p.retries:  # rerunnable (qrerun)
            d.append(("-r", "y"))
        return d

    # the warning timer and the rerun of a checkpointed or failed run
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

    def array_directive(self, array: ArraySpec) -> tuple[str, str]:
        """The directive that makes ``array`` a job array (``-J 1-12``; ``-J 0-N`` mapped)."""
        return ("-J", self.array_indices(array))

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
        rows = sorted(parse_qstat_f(proc.stdout), key=task_order)
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
        """Extra directives as :meth:`check_extra` (Torque takes any array). An extra ``-n``,
        or ``-l place=...:excl`` (e.g. from a PBS Pro dask-jobqueue section), turns on
        ``exclusive`` (rendered as ``-n``); other ``place=`` values are refused."""
        keep = []
        for d in p.extra_directives:
            words = d.split()
            if words == ["-n"]:
                p.exclusive = True
            elif len(words) == 2 and words[0] == "-l" and words[1].startswith("place="):
                parts = words[1].split("=", 1)[1].split(":")
                if not ("excl" in parts or "exclhost" in parts):
                    raise JobError(
                        f"extra directive {d!r}: Torque has no place= resource (only PBS Pro "
                        "has): drop it; for whole nodes set exclusive: true (-n)"
                    )
                p.exclusive = True
            else:
                keep.append(d)
        p.extra_directives = keep
        self.check_extra(p)

    def array_mapped(self, array: ArraySpec) -> bool:
        """Torque's ``-t`` takes integer lists: only string lists are mapped."""
        return array.is_strings

    def directives(self, p: JobParams, run_dir: str) -> list[tuple[str, ...]]:
        """As PBS Pro's, plus ``-n`` (whole nodes) when ``exclusive``."""
        d = super().directives(p, run_dir)
        return d + [("-n",)] if p.exclusive else d

    def array_lines(self, p: JobParams) -> list[str]:
        """As :meth:`Scheduler.array_lines`, then send the task's output to its own
        ``stdout.JOBID_INDEX.log``/``stderr...`` (Torque's ``-o`` is one file for all tasks;
        the job id is ``$PBS_JOBID`` up to its ``[`` or ``.``)."""
        log = '"$HPCFRAME_RUN_DIR/{}.${{HPCFRAME_JOB_ID}}_${{PBS_ARRAYID}}.log"'
        return super().array_lines(p) + [
            "# one log per array task (as SLURM's %A_%a); the -o/-e files keep Torque's own messages",
            'HPCFRAME_JOB_ID="${PBS_JOBID%%.*}"',
            'HPCFRAME_JOB_ID="${HPCFRAME_JOB_ID%%[*}"',
            'mkdir -p "$HPCFRAME_RUN_DIR"',
            f"exec >>{log.format('stdout')} 2>>{log.format('stderr')}",
        ]

    def launch_line(self, p: JobParams, program: list[str]) -> str:
        """As :meth:`Scheduler.launch_line`; ``mpiexec``/``mpirun`` also get ``-ppn
        RANKS_PER_NODE`` unless the launcher already says how to place ranks per node."""
        line = super().launch_line(p, program)
        launcher = _split_words("launcher", p.launcher or self.default_launcher)
        placed = {"-ppn", "-perhost", "--map-by", "-map-by", "-npernode", "--npernode", "-N"}
        if os.path.basename(launcher[0]) in ("mpiexec", "mpirun") and not placed & set(launcher):
            first = line.split(" ", 1)
            line = f"{first[0]} -ppn {p.ntasks_per_node} {first[1]}"
        return line

    def resources(self, p: JobParams) -> list[tuple[str, ...]]:
        """The ``-l`` directives asking for nodes, cores (ppn) and memory (for all nodes)."""
        d: list[tuple[str, ...]] = [("-l", f"nodes={p.nodes}:ppn={p.ntasks_per_node * p.cpus_per_task}")]
        if p.mem:
            d.append(("-l", f"mem={int(p.mem[:-1]) * p.nodes}mb"))
        return d

    def array_directive(self, array: ArraySpec) -> tuple[str, str]:
        """The directive that makes ``array`` a job array (``-t 1-12``, ``-t 1,4,7``; ``-t 0-N``
        for a string list)."""
        return ("-t", self.array_indices(array))

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
            state = PBS_STATES.get(st, "UNKNOWN")
        out.append((r["id"], state, f"job_state={st}" + (f" exit_status={code}" if code else "")))
    return out
