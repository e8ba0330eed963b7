"""Shared machinery of batch jobs: parameters, validation, rendering, run directories, commands.

A scheduler backend (:mod:`.slurm`, :mod:`.pbs`) subclasses :class:`Scheduler` and fills a few
hooks: the directive lines, how the ranks are started, the submit command, how to read the job
id from its output, and the status/cancel commands. Everything else lives here.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import shlex
import subprocess
import sys
import time as _time
from dataclasses import dataclass, field

from ..errors import HpcframeError


class JobError(HpcframeError):
    """A job cannot be rendered or submitted as asked (bad parameter, profile, combination)."""


class CommandFailed(HpcframeError):
    """An hpcframe command run inside a job (``hpcframe submit -- convert ...``) failed.

    Carries the command's own ``exit_code`` and, when ranks failed in a computation, their
    ``failures`` (as :class:`~hpcframe.errors.ComputeError` has them)."""

    def __init__(self, message: str, exit_code: int = 1, failures=()):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]
        self.failures = list(failures)


class CommandError(HpcframeError):
    """A scheduler command failed. Carries ``cmd``, ``returncode``, ``stdout`` and ``stderr``."""

    def __init__(self, cmd, returncode, stdout, stderr):
        self.cmd, self.returncode, self.stdout, self.stderr = list(cmd), returncode, stdout, stderr
        shown = " ".join(shlex.quote(c) for c in self.cmd)
        super().__init__(
            f"command `{shown}` failed with exit code {returncode}\n"
            f"stdout: {stdout.strip() or '(empty)'}\nstderr: {stderr.strip() or '(empty)'}"
        )


def run_command(cmd, *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd`` (a list, never a shell string) and return the completed process.

    Raises :class:`CommandError` (command, exit code, stdout, stderr) when it exits non-zero and
    ``check`` is true, when the program is missing, or when it runs longer than ``timeout``.
    """
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise CommandError(cmd, 127, "", f"{exc}: is the scheduler's client installed and on PATH?") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(cmd, -1, str(exc.stdout or ""), f"timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------
# Always used with ``fullmatch``: ``re.match`` with ``$`` accepts a trailing newline.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", re.ASCII)
MODULE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+/-]{0,127}", re.ASCII)
JOBID_RE = re.compile(r"[0-9]+(_[0-9]+)?(\[[0-9]*\])?(\.[A-Za-z0-9_.-]+)?", re.ASCII)

#: Characters refused in every value written into a job script (directives and body): the C0
#: controls (newline, carriage return, tab, NUL, escape ...), DEL and the C1 controls. A newline
#: ends a ``#SBATCH``/``#PBS`` comment line, so the rest of the value would run as a command;
#: the others break the scheduler's directive parsing or hide text on a terminal. Tabs are
#: refused too (write spaces), so that one rule covers everything.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _short(value, limit: int = 80) -> str:
    """``repr`` of a value for an error message, cut to about ``limit`` characters (cheaply:
    strings and numbers are shown, other objects -- which may be huge -- by their type)."""
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"<an integer of {value.bit_length()} bits>"
    if not isinstance(value, str):
        return f"<a {type(value).__name__}>"
    text = repr(value[: limit + 1])
    return text if len(value) <= limit else text[:limit] + "...'"


def check_printable(what: str, value) -> str:
    """Return ``value`` (a string) if it has no control character; else raise :class:`JobError`
    naming ``what``, the character and its position. See :data:`CONTROL_RE`."""
    m = CONTROL_RE.search(value)
    if m:
        ch = m.group()
        names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL"}
        raise JobError(
            f"{what} {_short(value)} contains {names.get(ch, 'a control character')}"
            f" ({ch!r} at position {m.start()}): values written into a job script may "
            "not contain newlines, tabs or other control characters (U+0000-U+001F, "
            "U+007F-U+009F); rename it or use a value without them"
        )
    return value


def _text(what: str, value) -> str:
    """``value`` as a string, if it is a string or a number; JobError naming ``what`` else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise JobError(f"{what} must be a string, got {type(value).__name__}")
    return str(value)


def check_name(what: str, value, pattern=NAME_RE) -> str:
    """Return ``value`` if it is a safe name for ``what``; raise :class:`JobError` otherwise."""
    value = _text(what, value)
    if not pattern.fullmatch(value):
        raise JobError(
            f"{what} {_short(value)} is not allowed: use letters, digits and _ . + -"
            f"{' /' if pattern is MODULE_RE else ''} (at most "
            f"{64 if pattern is NAME_RE else 128} characters, starting with a letter or digit)"
        )
    return value


def check_job_id(job_id) -> str:
    """Return ``job_id`` as a string if it looks like a SLURM/PBS job id, else raise JobError."""
    job_id = _text("job id", job_id).strip()
    if not JOBID_RE.fullmatch(job_id):
        raise JobError(
            f"job id {_short(job_id)} is not valid: expected digits, e.g. 1234, 1234_5 or 1234.server (PBS)"
        )
    return job_id


def parse_time(value) -> str:
    """Normalise a wall time to ``HH:MM:SS`` (hours may exceed 24).

    Accepts ``HH:MM:SS``, ``MM:SS``, ``D-HH:MM:SS``, ``D-HH`` and whole minutes (``90``).
    Raises :class:`JobError` on anything else or a zero time.
    """
    text = _text("time", value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise JobError(
            f"time {_short(text)} is not valid: use HH:MM:SS (e.g. 01:30:00), D-HH:MM:SS or whole minutes"
        )
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = int(a), int(b or 0), int(c or 0)
        h += 24 * int(days)
    elif b is None:  # minutes
        h, mi, s = 0, int(a), 0
    elif c is None:  # MM:SS
        h, mi, s = 0, int(a), int(b)
    else:
        h, mi, s = int(a), int(b), int(c)
    if s > 59 or (mi > 59 and (c is not None or days is not None)):  # MM:SS may exceed 59 min
        raise JobError(f"time {text!r} is not valid: minutes and seconds must be below 60")
    total = h * 3600 + mi * 60 + s
    if total <= 0:
        raise JobError(f"time {text!r} must be longer than zero")
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def parse_mem(value) -> int:
    """Memory per node in MiB from ``4G``, ``4GB``, ``4 GiB``, ``500M``, ``4096`` (MiB).

    Units are binary (as SLURM and PBS read them). Raises :class:`JobError` if unreadable or zero.
    """
    from ..units import parse_size

    text = _text("mem", value).strip()
    try:
        mib = parse_size(text, default_unit="m") / (1 << 20)
    except ValueError:
        mib = 0
    if mib <= 0:
        raise JobError(f"mem {_short(text)} is not valid: use a size such as 4G, 500M or 16GB (per node)")
    return max(1, int(-(-mib // 1)))


# arrays of integers or strings
#: Characters a string array value may not contain: ``,`` separates values, ``/`` would make the
#: per-task file names (``spec.VALUE.yaml``) paths, quotes and ``{}`` would break the ``{NAME}``
#: substitution into a job spec. Everything else is shell-quoted where it is written.
_BAD_LABEL_RE = re.compile(r"[,/'\"{}\\]")


@dataclass(frozen=True)
class ArraySpec:
    """A job array: one task per value of ``name``.

    Accepted forms: ``month=1-12`` and ``part=0-9:3`` (ranges), ``year=2019,2021`` (integers)
    and ``carrier=AA,UA`` (strings; any list that is not all integers). Inside each task
    ``HPCFRAME_ARRAY_NAME`` is ``name``, ``HPCFRAME_ARRAY_INDEX`` the task's value, and ``{name}``
    in the spec file or the script arguments is replaced by that value. String lists (and, on PBS
    Pro, integer lists) are *mapped*: the scheduler runs tasks ``0 .. n-1`` and task ``i`` gets
    the ``i``-th value through a shell array in the job script (see :meth:`Scheduler.render`).
    """

    name: str
    start: int | None = None
    stop: int | None = None
    step: int = 1
    values: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ArraySpec:
        """Parse ``NAME=START-END[:STEP]``, ``NAME=1,4,7`` or ``NAME=AA,UA``; JobError if invalid."""
        raw = _text("array", text).strip()
        name, sep, rng = raw.partition("=")
        if not sep:
            name, rng = "array", raw
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", name):
            raise JobError(f"array {raw!r}: name {name!r} must be an identifier such as month")
        usage = (
            "use NAME=START-END[:STEP] (e.g. month=1-12), NAME=V1,V2,... with integers "
            "(e.g. year=2019,2021) or strings (e.g. carrier=AA,UA)"
        )
        m = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?", rng)
        if m:
            a, b, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
            if b < a or s < 1:
                raise JobError(f"array {raw!r}: the range must go up (START <= END, STEP >= 1)")
            return cls(name, a, b, s)
        items = rng.split(",")
        if not rng.strip() or any(not v.strip() for v in items):
            raise JobError(f"array {raw!r} has an empty value: {usage}")
        if len(set(v.strip() for v in items)) != len(items):
            raise JobError(f"array {raw!r}: values repeat")
        if all(re.fullmatch(r"\d+", v.strip(), re.ASCII) for v in items):
            return cls(name, values=tuple(int(v) for v in items))
        if not sep:  # a bare word is a mistake (``--array month``), not a one-string array
            raise JobError(f"array {raw!r} is not valid: {usage}")
        labels = tuple(v.strip() for v in items)
        for v in labels:
            check_printable(f"array {name} value", v)
            if _BAD_LABEL_RE.search(v) or len(v) > 128:
                raise JobError(
                    f"array {raw!r}: value {v!r} is not allowed (at most 128 characters, "
                    "no , / quotes backslash or braces): " + usage
                )
        return cls(name, labels=labels)

    @property
    def is_range(self) -> bool:
        """True for ``START-END[:STEP]``, False for a list of values."""
        return not self.values and not self.labels

    @property
    def is_strings(self) -> bool:
        """True for a list of strings (always mapped through an index)."""
        return bool(self.labels)

    def task_values(self) -> list:
        """The value of every task, in order (integers, or strings for a string list)."""
        if self.labels:
            return list(self.labels)
        if self.values:
            return list(self.values)
        assert self.start is not None and self.stop is not None, "a range has start and stop"
        return list(range(self.start, self.stop + 1, self.step))

    def range_text(self) -> str:
        """The values as written: ``1-12``, ``0-9:3``, ``1,4,7`` or ``AA,UA``."""
        if self.labels:
            return ",".join(self.labels)
        if self.values:
            return ",".join(map(str, self.values))
        return f"{self.start}-{self.stop}" + (f":{self.step}" if self.step != 1 else "")

    def index_text(self) -> str:
        """The scheduler's indices of a mapped array: ``0-N`` (N = number of values - 1)."""
        return f"0-{len(self.task_values()) - 1}"


def task_order(row) -> tuple:
    """Sort key of a status row: job id, then array task id as a number (``12_2`` before
    ``12_10``); a pending remainder such as ``12_[3-9]`` after the tasks listed one by one.
    Also reads PBS ids (``12[3].server``)."""
    text = str(row[0])
    m = re.fullmatch(r"(\d+)(?:_(\d+)|_\[(.*)\]|\[(\d*)\])?(\..*)?", text)
    if not m:
        return (1, 0, 0, text)
    task = m.group(2) or m.group(4)
    rest = m.group(3) or ""
    return (0, int(m.group(1)), int(task) if task else (10**18 if rest else -1), rest)


# --------------------------------------------------------------------------------------------
# parameters: defined once; unknown keys are errors listing the valid ones
# --------------------------------------------------------------------------------------------
@dataclass
class JobParams:
    """Everything a job script depends on. Profiles and command-line options fill it."""

    scheduler: str = "slurm"
    name: str = "hpcframe"
    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    time: str = "01:00:00"
    mem: str | None = None
    partition: str | None = None
    account: str | None = None
    node_cpus: int | None = None  # cores of one node, if known: checked against the request
    modules: list = field(default_factory=list)
    setup: list = field(default_factory=list)  # shell lines from the profile, run before the ranks
    launcher: str | None = None  # "srun --mpi=pmi2", "mpiexec", ... (None: scheduler's)
    python: str = sys.executable
    extra_directives: list = field(default_factory=list)
    array: ArraySpec | None = None
    after: list = field(default_factory=list)
    env: dict = field(default_factory=dict)  # extra NAME: value exports (values quoted)
    workdir: str | None = None  # where the ranks run (SLURM --chdir); None: submit dir
    exclusive: bool = False  # whole nodes: SLURM --exclusive, PBS Pro place=...:excl, Torque -n
    # checkpoint and requeue (hpcframe.jobs.checkpoint)
    requeue: bool = False  # a checkpointed run (exit status 75) requeues the job
    signal: str | None = None  # warning signal before the time limit, NAME@SECONDS (USR1@120)
    retries: int = 0  # a failed run is requeued up to this many times

    @classmethod
    def fields(cls) -> list[str]:
        """The parameter names, in declaration order (the valid profile and option keys)."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, where: str = "job parameters") -> JobParams:
        """Build from a dict; raise JobError naming ``where`` for an unknown key."""
        check_keys(values, where)
        return cls(**values)

    @property
    def ntasks(self) -> int:
        """The number of ranks asked for: nodes x tasks per node."""
        return self.nodes * self.ntasks_per_node


def check_keys(values: dict, where: str) -> None:
    """Raise JobError naming ``where`` if ``values`` has a key JobParams does not know."""
    valid = JobParams.fields()
    bad = sorted(k for k in values if k not in valid)
    if bad:
        raise JobError(f"{where}: unknown key(s) {', '.join(bad)}; valid keys: {', '.join(valid)}")


def _positive_int(what, value) -> int:
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        n = int(value)
        if n != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise JobError(f"{what} must be a whole number, got {_short(value)}") from None
    if n < 1:
        raise JobError(f"{what} must be at least 1, got {n}")
    return n


def _split_words(what: str, value: str) -> list[str]:
    """``shlex.split(value)``; raises :class:`JobError` naming ``what`` and the value when its
    quotes do not balance."""
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise JobError(
            f"{what} {value!r} cannot be split into words ({exc}): close the quote or escape it"
        ) from None


def validate(p: JobParams) -> JobParams:
    """Check and normalise ``p`` in place; return it. Raises :class:`JobError` naming the value.

    Rejects unsafe names, bad numbers/times/sizes, more tasks × cpus than a node has (when the
    profile gives ``node_cpus``), array lists the scheduler cannot express, bad job ids in
    ``after`` and extra directives that repeat a resource hpcframe sets itself.
    """
    sched = scheduler_for(p.scheduler)
    check_name("job name", p.name)
    for attr in ("nodes", "ntasks_per_node", "cpus_per_task"):
        setattr(p, attr, _positive_int(attr.replace("_", "-"), getattr(p, attr)))
    p.time = parse_time(p.time)
    if p.mem is not None:
        p.mem = f"{parse_mem(p.mem)}M"
    if p.partition is not None:
        check_name("partition/queue", p.partition)
    if p.account is not None:
        check_name("account", p.account)
    if p.node_cpus is not None:
        p.node_cpus = _positive_int("node_cpus", p.node_cpus)
        need = p.ntasks_per_node * p.cpus_per_task
        if need > p.node_cpus:
            raise JobError(
                f"ntasks-per-node {p.ntasks_per_node} x cpus-per-task {p.cpus_per_task} "
                f"= {need} CPUs, but a node has {p.node_cpus} (node_cpus in the "
                "profile): lower --ntasks-per-node or add --nodes"
            )
    p.modules = [check_name("module", m, MODULE_RE) for m in _as_list(p.modules, "modules")]
    p.setup = [_one_line("setup line", s) for s in _as_list(p.setup, "setup")]
    p.extra_directives = [
        _one_line("extra directive", d) for d in _as_list(p.extra_directives, "extra_directives")
    ]
    for d in p.extra_directives:
        _split_words("extra directive", d)
    p.after = [check_job_id(j) for j in _as_list(p.after, "after")]
    if isinstance(p.array, str):
        p.array = ArraySpec.parse(p.array)
    if p.array is not None and not isinstance(p.array, ArraySpec):
        raise JobError(f"array must be NAME=START-END[:STEP] or NAME=V1,V2,..., got {_short(p.array)}")
    if not isinstance(p.exclusive, bool):
        raise JobError(f"exclusive must be true or false, got {_short(p.exclusive)}")
    if not isinstance(p.env, dict):
        raise JobError(f"env must be a mapping of NAME: value, got {type(p.env).__name__}")
    for k, v in p.env.items():
        if not (isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k, re.ASCII)):
            raise JobError(f"env name {_short(k)} is not a valid shell variable name")
        check_printable(f"env value of {k}", _text(f"env value of {k}", v))
    if p.launcher is not None:
        p.launcher = _one_line("launcher", p.launcher)
        if not _split_words("launcher", p.launcher):
            raise JobError("launcher is empty; give a command such as 'srun' or 'mpiexec'")
    p.python = check_printable("python", _text("python", p.python))
    if p.workdir is not None:
        p.workdir = check_printable(
            "working directory (workdir, default: the directory you submit from)", _text("workdir", p.workdir)
        )
    sched.check_checkpoint(p)
    sched.check(p)
    return p


def _as_list(value, what) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise JobError(f"{what} must be a list, got {type(value).__name__}")
    return [_text(f"an item of {what}", v) if not isinstance(v, str) else v for v in value]


def _one_line(what, value) -> str:
    """``value`` as a string of one line without control characters; JobError otherwise."""
    value = _text(what, value)
    if "\n" in value or "\r" in value:
        raise JobError(f"{what} {_short(value)} must be a single line")
    return check_printable(what, value)


# --------------------------------------------------------------------------------------------
# the schedulers' common base
# --------------------------------------------------------------------------------------------
_SCHEDULERS: dict[str, type[Scheduler]] = {}


def scheduler_for(name: str) -> Scheduler:
    """The :class:`Scheduler` for ``slurm``, ``pbs`` (PBS Pro) or ``torque``; JobError otherwise.

    Scheduler classes register themselves by their ``name`` (and ``aliases``) when their module
    is imported; :mod:`hpcframe.jobs` imports every built-in one."""
    try:
        return _SCHEDULERS[str(name).lower()]()
    except KeyError:
        known = ", ".join(sorted(_SCHEDULERS)) or "none registered"
        raise JobError(f"scheduler {name!r} is not supported: use one of {known}") from None


class Scheduler:
    """One batch system. Subclasses fill the hooks; :meth:`render` is shared."""

    name = "?"
    aliases: tuple[str, ...] = ()  # other names that select it (e.g. "pbspro")
    prefix = "#?"  # directive prefix, e.g. "#SBATCH"
    default_launcher = "mpiexec"
    managed: tuple[str, ...] = ()  # directive words hpcframe sets itself (extra ones may not)
    ntasks_shell = "1"  # shell expression: the number of ranks granted
    array_env = ""  # variable holding the array task's index

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for n in (cls.name, *cls.aliases):
            _SCHEDULERS[n] = cls

    # hooks ------------------------------------------------------------------
    # schedulers that can requeue a job (SLURM, PBS) override these two with
    # hpcframe.jobs.checkpoint's validate and wrap (which import this module, not the reverse)
    def check_checkpoint(self, p: JobParams) -> None:
        """Validate ``requeue``/``signal``/``retries``; this scheduler cannot requeue jobs."""
        if p.requeue or p.signal or p.retries:
            raise JobError(
                f"{self.name} jobs cannot be requeued: --requeue, --signal and --retries need SLURM or PBS"
            )

    def wrap_launch(self, p: JobParams, lines: list[str]) -> list[str]:
        """The job script's lines, the launch line last, wrapped for checkpoint and requeue."""
        return lines

    def check(self, p: JobParams) -> None:
        """Scheduler-specific validation (raise JobError)."""
        for d in p.extra_directives:
            word = re.split(r"[\s=]", d.strip(), maxsplit=1)[0]
            if word in self.managed:
                raise JobError(
                    f"extra directive {d!r} sets {word}, which hpcframe renders from "
                    "the job's options: use the matching option/profile key instead"
                )

    def directives(self, p: JobParams, run_dir: str) -> list[tuple[str, ...]]:
        """Directive words for ``p`` (each tuple becomes one quoted directive line)."""
        raise NotImplementedError

    def body_preamble(self, p: JobParams) -> list[str]:
        """Shell lines at the start of the body (e.g. ``cd "$PBS_O_WORKDIR"``)."""
        return []

    def submit_command(self, script: str, p: JobParams) -> list[str]:
        """The command that submits the job script ``script``."""
        raise NotImplementedError

    def parse_job_id(self, stdout: str) -> str:
        """The job id in the submit command's output; ``ValueError`` if there is none."""
        raise NotImplementedError

    def status(self, job_id: str) -> list[tuple[str, str, str]]:
        """``[(task id, STATE, detail)]``; STATE is one of PENDING RUNNING COMPLETED FAILED
        CANCELLED TIMEOUT UNKNOWN (scheduler words are mapped onto these)."""
        raise NotImplementedError

    def cancel_command(self, job_id: str) -> list[str]:
        """The command that cancels ``job_id``."""
        raise NotImplementedError

    def ntasks_expr(self, p: JobParams) -> str:
        """Shell expression for the number of ranks the scheduler granted."""
        return self.ntasks_shell

    # mapped arrays
    def array_mapped(self, array: ArraySpec) -> bool:
        """True if ``array``'s values reach the tasks through an index (``0 .. n-1``) and a
        shell array in the script rather than as the scheduler's own task ids: string lists
        always; subclasses add lists their scheduler cannot express (PBS Pro)."""
        return array.is_strings

    def array_indices(self, array: ArraySpec) -> str:
        """The scheduler's task ids for ``array``: ``0-N`` when mapped, else its own values."""
        return array.index_text() if self.array_mapped(array) else array.range_text()

    def array_lines(self, p: JobParams) -> list[str]:
        """Body lines that export ``HPCFRAME_ARRAY_INDEX`` (the task's value)."""
        assert p.array is not None
        task = f"${{{self.array_env}}}"
        if not self.array_mapped(p.array):
            return [f'export HPCFRAME_ARRAY_INDEX="{task}"']
        values = " ".join(shlex.quote(str(v)) for v in p.array.task_values())
        return [
            f"# task i of the array gets the i-th value of {p.array.name}",
            f"HPCFRAME_ARRAY_VALUES=({values})",
            f'export HPCFRAME_ARRAY_TASK_ID="{task}"',
            f'export HPCFRAME_ARRAY_INDEX="${{HPCFRAME_ARRAY_VALUES[{task}]}}"',
        ]

    # shared -----------------------------------------------------------------
    def launch_line(self, p: JobParams, program: list[str]) -> str:
        """The line that starts the ranks: launcher + python -m mpi4py + program."""
        launcher = _split_words("launcher", p.launcher or self.default_launcher)
        words = [shlex.quote(w) for w in launcher]
        counted = "-n" in launcher or "-np" in launcher
        if os.path.basename(launcher[0]) in ("mpiexec", "mpirun") and not counted:
            words += ["-n", '"$HPCFRAME_NTASKS"']
        words += [shlex.quote(p.python), "-m", "mpi4py"] + [shlex.quote(a) for a in program]
        return " ".join(words)

    def exit_status_lines(self, p: JobParams, program: list[str]) -> list[str]:
        """Before the launch line of an hpcframe program: an ERR trap that replaces the
        launcher's exit status (137 after srun killed the step of a rank that called
        ``MPI_Abort``) by the status the failed rank recorded (``hpcframe.jobs.launch
        --exit-status``). Nothing for other programs."""
        if program[:2] != ["-m", "hpcframe.jobs.launch"]:
            return []
        status = shlex.quote(f'exec {shlex.quote(p.python)} -m hpcframe.jobs.launch --exit-status "$?"')
        return ["# if a rank fails, the job exits with that rank's own exit status", f"trap {status} ERR"]

    def query(self, job_id: str) -> list[dict]:
        """What the scheduler knows of ``job_id`` (a job hpcframe has no record of): one dict
        per task with ``job_id``, ``name``, ``state``, ``exit_status``, ``elapsed``,
        ``stdout``, ``stderr``, ``workdir`` (None where unknown). Empty when it does not know
        the job. The default asks nothing."""
        return []

    def render(self, p: JobParams, program: list[str], run_dir: str) -> str:
        """The job script text: a pure function of ``p``, ``program`` and ``run_dir``.

        ``program`` is what follows ``python -m mpi4py`` (e.g. ``-m hpcframe.jobs.launch
        job.yaml``). Every value is shell-quoted; directives come in sorted order. Raises
        :class:`JobError` naming the value if any value has a control character (a newline in a
        directive would end the comment line and run the rest as a command).
        """
        self.check_rendered(p, program, run_dir)
        lines = ["#!/bin/bash", f"# hpcframe job script ({self.name}); rendered by hpcframe submit"]
        for words in sorted(self.directives(p, run_dir)):
            lines.append(" ".join([self.prefix, *(shlex.quote(w) for w in words)]))
        for d in p.extra_directives:
            lines.append(
                " ".join([self.prefix, *(shlex.quote(w) for w in _split_words("extra directive", d))])
            )
        lines += ["", "set -eo pipefail"]
        lines += self.body_preamble(p)
        if p.modules:
            lines.append("module load " + " ".join(shlex.quote(m) for m in p.modules))
        if p.setup:
            lines.append("# set-up lines from the profile")
            lines += p.setup
        env = {"HPCFRAME_RUN_DIR": run_dir, **{k: str(v) for k, v in p.env.items()}}
        if p.array is not None:
            env["HPCFRAME_ARRAY_NAME"] = p.array.name
        for k in sorted(env):
            lines.append(f"export {k}={shlex.quote(env[k])}")
        lines.append(f"export HPCFRAME_NTASKS={self.ntasks_expr(p)}")
        if p.array is not None:
            lines += self.array_lines(p)
        lines += self.exit_status_lines(p, program)
        lines.append(self.launch_line(p, program))
        lines = self.wrap_launch(p, lines)  # requeue/signal/retries
        for i, line in enumerate(lines, 1):  # a net under the checks above: one value, one line
            if CONTROL_RE.search(line):
                raise JobError(
                    f"line {i} of the job script would contain a control character: "
                    f"{_short(line)}; remove newlines, tabs and other control "
                    "characters from the job's options, profile and paths"
                )
        return "\n".join(lines) + "\n"

    def check_rendered(self, p: JobParams, program: list[str], run_dir: str) -> None:
        """Raise :class:`JobError` naming the parameter if a value written into the script
        has a control character (newline, CR, tab, ...; see :data:`CONTROL_RE`)."""
        check_printable(
            "run directory (under $HPCFRAME_RUNS, default ./hpcframe-runs in the directory you submit from)",
            _text("run directory", run_dir),
        )
        check_printable(
            "working directory (workdir, default: the directory you submit from)",
            _text("workdir", p.workdir or os.getcwd()),
        )
        for what, value in (
            ("job name", p.name),
            ("partition/queue", p.partition),
            ("account", p.account),
            ("launcher", p.launcher),
            ("python", p.python),
            ("time", p.time),
            ("mem", p.mem),
        ):
            if value is not None:
                check_printable(what, _text(what, value))
        for what, values in (
            ("module", p.modules),
            ("setup line", p.setup),
            ("extra directive", p.extra_directives),
            ("after", p.after),
        ):
            for v in values or ():
                check_printable(what, _text(what, v))
        for k, v in (p.env or {}).items():
            check_printable("env name", _text("env name", k))
            check_printable(f"env value of {k}", _text(f"env value of {k}", v))
        for i, word in enumerate(program):
            what = (
                "job target path"
                if i == 2 and program[:2] == ["-m", "hpcframe.jobs.launch"]
                else f"script argument {i - 2}"
                if i > 2
                else "program"
            )
            check_printable(what, _text(what, word))


# --------------------------------------------------------------------------------------------
# run directories
# --------------------------------------------------------------------------------------------
def runs_root() -> str:
    """Where run directories go: ``$HPCFRAME_RUNS`` or ``./hpcframe-runs``."""
    return os.path.abspath(os.environ.get("HPCFRAME_RUNS") or "hpcframe-runs")


def new_run_dir(name: str, root: str | None = None) -> str:
    """Create and return ``<root>/<YYYYmmdd-HHMMSS>-<name>[-N]/``."""
    root = root or runs_root()
    check_printable(
        "run directory root ($HPCFRAME_RUNS, default ./hpcframe-runs in the directory you submit from)", root
    )
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{stamp}-{check_name('job name', name)}")
    path, n = base, 1
    while True:
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            n += 1
            path = f"{base}-{n}"


def write_atomic(path: str, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename
    (:func:`hpcframe.io.fs.replace_atomic`); ``mode`` is set before the rename, so a job script
    is never visible without its permissions."""
    from ..io.fs import replace_atomic

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, mode)

    replace_atomic(write, path)


def find_run(job_id: str, roots=None) -> dict:
    """The ``job.json`` record of ``job_id`` (a job id, ``ID_N`` array task, or a run dir path).

    Looks in ``roots`` (default: :func:`runs_root`). Raises JobError when none matches.
    :func:`hpcframe.jobs.find_run` also looks in the per-user job record and asks the scheduler.
    """
    return find_run_dir(job_id, roots)


def find_run_dir(job_id: str, roots=None) -> dict:
    """:func:`find_run` in the run directories only: ``job_id`` is a run directory or a job
    recorded under ``roots`` (default :func:`runs_root`). Raises JobError when none matches."""
    if os.path.isfile(os.path.join(str(job_id), "job.json")):
        with open(os.path.join(job_id, "job.json")) as fh:
            return json.load(fh)
    job_id = check_job_id(job_id)
    base = re.split(r"[_\[.]", job_id)[0]
    roots = [runs_root()] if roots is None else list(roots)
    for root in roots:
        if not os.path.isdir(root):
            continue
        for entry in sorted(os.listdir(root), reverse=True):
            rec = os.path.join(root, entry, "job.json")
            if os.path.isfile(rec):
                with open(rec) as fh:
                    info = json.load(fh)
                if re.split(r"[_\[.]", str(info.get("job_id")))[0] == base:
                    return info
    raise JobError(
        f"no run directory records job {job_id} under {', '.join(roots)}: run the "
        "command from the directory you submitted from, set HPCFRAME_RUNS, or pass "
        "the run directory instead of the job id"
    )


def wait(job_id: str, scheduler: Scheduler, timeout: float = 120, poll: float = 1.0) -> list:
    """Poll until every task of ``job_id`` has finished; return the final :meth:`status` rows.

    Raises :class:`JobError` if it is still pending/running after ``timeout`` seconds.
    """
    deadline = _time.monotonic() + timeout
    while True:
        rows = scheduler.status(job_id)
        if rows and all(state not in ("PENDING", "RUNNING") for _, state, _ in rows):
            return rows
        if _time.monotonic() > deadline:
            raise JobError(f"job {job_id} not finished after {timeout} s: {rows}")
        _time.sleep(poll)
