"""Checkpoint and requeue of batch jobs: ``hpcframe submit --requeue --signal USR1@120 --retries N``.

What a job rendered with these options does (docs/jobs.md, "Checkpoint and requeue"):

1. The scheduler warns the job before its time is up: SLURM with ``#SBATCH
   --signal=B:USR1@120`` (the batch shell gets SIGUSR1 120 s before the limit); PBS has no such
   option, so the job script starts a timer that sends the batch shell the signal 120 s before
   the wall time. The batch shell creates ``$HPCFRAME_CHECKPOINT_FILE`` (launchers such as
   Hydra's ``mpiexec`` do not forward SIGUSR1, and the ranks may run on other nodes); every
   rank looks for it at each block boundary. SIGTERM (the time limit, preemption,
   ``scancel``) reaches the ranks directly.
2. Every rank (``HPCFRAME_CHECKPOINT_SIGNALS=USR1,TERM``, see :mod:`hpcframe.comm`) finishes
   its block in flight, stops at the block boundary, the ranks agree, and every rank leaves
   MPI cleanly with exit status 75 (:data:`hpcframe.errors.CHECKPOINT_EXIT`). Finished blocks
   are kept: a conversion's written parts (its staging folder and per-part records), and a
   query's per-block partials in ``$HPCFRAME_CACHE_DIR`` (the job's ``checkpoint`` directory
   in its run directory, :mod:`hpcframe.cache`).
3. On status 75 the job script requeues the job (``scontrol requeue $SLURM_JOB_ID``; PBS
   ``qrerun $PBS_JOBID``, or a new ``qsub`` of the same script where users may not rerun);
   with ``--retries N`` a failed run (any other non-zero status) is requeued up to N times.
   The requeued job runs the same command, which resumes: finished blocks are read back,
   not computed again, and the result equals an uninterrupted run's.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

from ..errors import CHECKPOINT_EXIT
from .base import JobError, JobParams, _short

#: Signals that may warn a job (``--signal NAME@SECONDS``).
WARNING_SIGNALS = ("USR1", "USR2", "TERM")
#: Seconds before the time limit when ``--signal NAME`` has no ``@SECONDS``.
DEFAULT_WARNING = 120


def parse_signal(value) -> tuple[str, int]:
    """``(NAME, SECONDS)`` from ``USR1@120``, ``SIGUSR2@300``, ``B:USR1@120`` or ``USR1``
    (120 s). Raises :class:`JobError` naming the value and what is accepted."""
    text = str(value).strip()
    m = re.fullmatch(r"(?:B:)?(?:SIG)?([A-Za-z0-9]+)(?:@(\d+))?", text)
    name = m.group(1).upper() if m else ""
    if not m or name not in WARNING_SIGNALS:
        raise JobError(
            f"--signal {_short(text)} is not valid: use NAME@SECONDS with NAME one of "
            f"{', '.join(WARNING_SIGNALS)} (e.g. USR1@120: SIGUSR1 120 seconds before the time limit)"
        )
    seconds = int(m.group(2)) if m.group(2) else DEFAULT_WARNING
    if not 1 <= seconds <= 65535:
        raise JobError(f"--signal {text}: the warning time must be 1 to 65535 seconds, got {seconds}")
    return name, seconds


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def validate(p: JobParams) -> None:
    """Check and normalise ``requeue``/``signal``/``retries`` of ``p`` in place. ``--requeue``
    or ``--retries`` without ``--signal`` warn with ``USR1@120``; the warning must come before
    the wall time (``p.time``, already normalised). Raises :class:`JobError`."""
    if not isinstance(p.requeue, bool):
        raise JobError(f"requeue must be true or false, got {_short(p.requeue)}")
    try:
        retries = int(p.retries)
        if isinstance(p.retries, bool) or retries != float(p.retries) or retries < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise JobError(f"--retries must be a whole number of 0 or more, got {_short(p.retries)}") from None
    p.retries = retries
    if p.signal is None and (p.requeue or p.retries):
        p.signal = f"USR1@{DEFAULT_WARNING}"
    if p.signal is None:
        return
    name, seconds = parse_signal(p.signal)
    wall = _seconds(p.time)
    if seconds >= wall:
        raise JobError(
            f"--signal {name}@{seconds}: the warning comes {seconds} s before the time limit, but "
            f"the job's time is only {p.time} ({wall} s): give a shorter warning or a longer --time"
        )
    p.signal = f"{name}@{seconds}"


def active(p: JobParams) -> bool:
    """Whether the job checkpoints (any of ``--requeue``, ``--signal``, ``--retries``)."""
    return bool(p.signal or p.requeue or p.retries)


def environment(p: JobParams) -> dict:
    """The variables the ranks of a checkpointing job get (values are shell words, quoted
    where literal): the checkpoint signals, the request file and the resume store."""
    name, _ = parse_signal(p.signal)
    signals = ",".join(dict.fromkeys([name, "TERM"]))
    task = "${HPCFRAME_ARRAY_INDEX:+.$HPCFRAME_ARRAY_INDEX}"  # one per array task
    return {
        "HPCFRAME_CHECKPOINT_SIGNALS": signals,
        "HPCFRAME_CHECKPOINT_FILE": f'"$HPCFRAME_RUN_DIR/checkpoint{task}.request"',
        # the partials of finished blocks (hpcframe.cache); a user's own cache dir is kept
        "HPCFRAME_CACHE_DIR": f'"${{HPCFRAME_CACHE_DIR:-$HPCFRAME_RUN_DIR/checkpoint{task}}}"',
    }


def body_lines(sched, p: JobParams, launch: str) -> list[str]:
    """The job script lines that replace the launch line ``launch`` of a checkpointing job:
    the warning trap, the launch in the background, the wait, and the requeue or retry on its
    exit status (see the module docstring). ``sched`` gives the requeue command."""
    name, seconds = parse_signal(p.signal)
    env = environment(p)
    task = "${HPCFRAME_ARRAY_INDEX:+.$HPCFRAME_ARRAY_INDEX}"
    lines = ["# -- checkpoint and requeue (hpcframe submit --requeue/--signal/--retries; docs/jobs.md) --"]
    lines += [f"export {k}={v}" for k, v in env.items()]
    if p.retries:
        lines += [
            f"hpcframe_retries={p.retries}",
            f'hpcframe_count="$HPCFRAME_RUN_DIR/retries{task}.count"',
        ]
    lines += [
        'rm -f "$HPCFRAME_CHECKPOINT_FILE"',
        "hpcframe_checkpoint() {  # the warning: every rank stops at its next block boundary",
        '    echo "hpcframe: SIG$1 received: asking the ranks to checkpoint" >&2',
        '    : > "$HPCFRAME_CHECKPOINT_FILE"',
        "}",
        f"trap 'hpcframe_checkpoint {name}' {name}",
    ]
    if name != "TERM":
        lines.append("trap 'hpcframe_checkpoint TERM' TERM")
    timer = sched.warning_timer(p, name, seconds) if hasattr(sched, "warning_timer") else []
    lines += timer
    lines += [
        # an ERR trap set before the launch line (the failed rank's exit status) must not end
        # the script before the requeue decision: it is set again for the final exit
        'hpcframe_err_trap="$(trap -p ERR)"',
        "trap - ERR",
        "set +e",
        f"{launch} &",
        "hpcframe_pid=$!",
        'while kill -0 "$hpcframe_pid" 2>/dev/null; do wait "$hpcframe_pid"; done',
        'wait "$hpcframe_pid"',
        "hpcframe_status=$?",
        "set -e",
    ]
    if timer:
        lines.append('kill "$hpcframe_timer" 2>/dev/null || true')
    requeue = sched.requeue_lines(p) if hasattr(sched, "requeue_lines") else []
    lines += [
        f'if [ "$hpcframe_status" -eq {CHECKPOINT_EXIT} ]; then',
        '    echo "hpcframe: the ranks checkpointed (exit status 75)" >&2',
    ]
    if p.requeue:
        lines += ["    " + line for line in requeue]
    if p.retries:
        lines += [
            'elif [ "$hpcframe_status" -ne 0 ]; then',
            '    hpcframe_tries=$(cat "$hpcframe_count" 2>/dev/null || echo 0)',
            '    if [ "$hpcframe_tries" -lt "$hpcframe_retries" ]; then',
            '        echo $((hpcframe_tries + 1)) > "$hpcframe_count"',
            '        echo "hpcframe: the run failed (exit status $hpcframe_status): retry'
            ' $((hpcframe_tries + 1)) of $hpcframe_retries" >&2',
        ]
        lines += ["        " + line for line in requeue]
        lines.append("    fi")
    lines += [
        "fi",
        'eval "$hpcframe_err_trap"',
        '[ "$hpcframe_status" -eq 0 ] || (exit "$hpcframe_status")',
        'exit "$hpcframe_status"',
        "# -- end checkpoint and requeue --",
    ]
    return lines


def wrap(sched, p: JobParams, lines: list[str]) -> list[str]:
    """``lines`` of a rendered job script with the last one (the launch line) replaced by
    :func:`body_lines` when ``p`` checkpoints; unchanged otherwise."""
    if not active(p):
        return lines
    return lines[:-1] + body_lines(sched, p, lines[-1])


class Requeueable:
    """Mixin for the schedulers that can requeue a job (SLURM, PBS Pro, Torque): their
    :class:`~hpcframe.jobs.base.Scheduler` hooks for ``requeue``/``signal``/``retries`` are
    :func:`validate` and :func:`wrap` (the base scheduler refuses them)."""

    def check_checkpoint(self, p: JobParams) -> None:
        """Validate ``requeue``/``signal``/``retries`` (:func:`validate`)."""
        validate(p)

    def wrap_launch(self, p: JobParams, lines: list[str]) -> list[str]:
        """The launch line wrapped for checkpoint, requeue and retries (:func:`wrap`)."""
        return wrap(self, p, lines)


# --------------------------------------------------------------------------------------------
# inside the job: leave MPI cleanly after an agreed checkpoint
# --------------------------------------------------------------------------------------------
@contextmanager
def exit_when_checkpointed():
    """Around :func:`hpcframe.jobs.launch.main`: when every rank stopped on a checkpoint
    (:class:`~hpcframe.errors.JobCheckpointed`, or the exit status 75 it becomes), leave MPI
    cleanly (``MPI_Finalize``, not ``MPI_Abort``) with exit status 75 on every rank, so that
    the launcher returns 75 and the job script requeues the job."""
    from ..comm import checkpoint_agreed, install_checkpoint_handlers
    from ..errors import JobCheckpointed

    install_checkpoint_handlers()  # a signal before the first computation is kept too
    try:
        yield
    except (JobCheckpointed, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not (exc.code == CHECKPOINT_EXIT and checkpoint_agreed()):
            raise
        _leave(exc)


def _leave(exc: BaseException) -> None:
    mpi = sys.modules.get("mpi4py.MPI")
    rank = mpi.COMM_WORLD.Get_rank() if mpi is not None and mpi.Is_initialized() else 0
    if rank == 0:
        where = os.environ.get("HPCFRAME_CACHE_DIR")
        print(
            "hpcframe: checkpointed: every rank stopped at a block boundary; finished blocks are "
            f"kept{f' in {where}' if where else ''}; running the same command again resumes",
            file=sys.stderr,
            flush=True,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.COMM_WORLD.Barrier()
        mpi.Finalize()
    os._exit(CHECKPOINT_EXIT)


def warning_timer(name: str, seconds: int, wall: str) -> list[str]:
    """Shell lines that send this batch shell SIG``name`` ``seconds`` before the wall time
    ``wall`` (``HH:MM:SS``), for schedulers without a warning signal (PBS): a background
    timer, stopped when the run ends."""
    delay = max(_seconds(wall) - seconds, 1)
    return [
        f"# SIG{name} {seconds} s before the wall time {wall} (PBS has no warning signal)",
        f"( trap 'kill $hpcframe_sleep 2>/dev/null; exit 0' TERM; sleep {delay} & hpcframe_sleep=$!; "
        f'wait "$hpcframe_sleep" && kill -s {name} $$ ) &',
        "hpcframe_timer=$!",
    ]
