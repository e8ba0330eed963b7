"""Cluster profiles (YAML) and the user's dask-jobqueue settings.

A *cluster profile* says how to ask a batch scheduler for resources (scheduler, partition,
nodes, ranks per node, ...); it is unrelated to the *performance record* that ``hpcframe run
--profile-dir`` writes. A profile is a YAML mapping whose keys are
:class:`~hpcframe.jobs.base.JobParams` fields (``queue`` is accepted for ``partition``, ``-``
for ``_``) plus ``dask_jobqueue``: ``true`` (read ``jobqueue.<scheduler>`` from the user's Dask
configuration) or a path to a Dask config file. Precedence, lowest first: defaults <
dask-jobqueue settings < profile < command-line options.

Profiles are found by name in ``./configs``, ``~/.config/hpcframe/profiles``, the directories
of ``$HPCFRAME_PROFILES`` and, last, the profiles shipped inside the package
(``hpcframe/jobs/cluster_profiles``: ``slurm``, ``slurm-local``, ``pbs``, ``torque``; the
repository's ``configs/*.yaml`` are links to them). :func:`init_profile` writes a starting
profile from what ``sinfo`` or ``qstat -Q`` report.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import warnings

from .base import ArraySpec, CommandError, JobError, JobParams, check_keys, run_command, validate

SCHEDULERS = ("slurm", "pbs", "torque")

#: Where the shipped profiles live (package data; see pyproject.toml).
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster_profiles")

#: Old profile names -> their new names (the old name still works, with a message).
RENAMED = {"local": "slurm-local"}


class ProfileRenamedWarning(FutureWarning):
    """A shipped profile was asked for by its old name (``local`` is now ``slurm-local``)."""


def search_dirs(shipped: bool = True) -> list[str]:
    """Directories searched for ``NAME.yaml``, in order: ``./configs``,
    ``~/.config/hpcframe/profiles``, every directory of ``$HPCFRAME_PROFILES``
    (``:``-separated), then (if ``shipped``) the profiles shipped with hpcframe."""
    dirs = [os.path.abspath("configs"), os.path.expanduser("~/.config/hpcframe/profiles")]
    dirs += [d for d in os.environ.get("HPCFRAME_PROFILES", "").split(os.pathsep) if d]
    return dirs + [SHIPPED_DIR] if shipped else dirs


def _lookup(name: str) -> str | None:
    for d in search_dirs():
        for ext in (".yaml", ".yml"):
            path = os.path.join(d, name + ext)
            if os.path.isfile(path):
                return path
    return None


def renamed(name: str) -> tuple[str, str | None]:
    """``(name to use, message or None)`` for a profile asked for as ``name``.

    An old name of a shipped profile (:data:`RENAMED`) becomes the new one with a message --
    unless the user has a profile of their own by the old name, which is used as it is.
    """
    new = RENAMED.get(name)
    if new is None:
        return name, None
    path = _lookup(name)
    shipped = os.path.realpath(os.path.join(SHIPPED_DIR, new + ".yaml"))
    if path is not None and os.path.realpath(path) != shipped:
        return name, None  # the user's own "local" profile
    return new, (
        f"profile {name!r} was renamed {new!r} (it is a SLURM profile for a single machine); "
        f"use --cluster-profile {new}: the old name will stop working in a future release"
    )


def find_profile(name: str) -> str:
    """The path of profile ``name`` (a name or a path to a YAML file).

    An old name (``local``) finds the renamed profile with a :class:`ProfileRenamedWarning`.
    Raises :class:`JobError` listing the directories searched and the profiles found there.
    """
    if os.path.isfile(name):
        return os.path.abspath(name)
    if os.sep in name or name.endswith((".yaml", ".yml")):
        raise JobError(f"profile file {name!r} does not exist")
    name, message = renamed(name)
    if message:
        warnings.warn(message, ProfileRenamedWarning, stacklevel=2)
    path = _lookup(name)
    if path is not None:
        return path
    found = sorted({n for n, _, _ in list_profiles()})
    raise JobError(
        f"profile {name!r} not found in {', '.join(search_dirs())} "
        f"(available: {', '.join(found) or 'none'}); pass a name or a path to a YAML file, "
        "or write one with `hpcframe profiles init`"
    )


def list_profiles() -> list[tuple[str, str, str | None]]:
    """``[(name, path, shadowed by path or None)]`` for every profile in :func:`search_dirs`,
    in search order; a profile is *shadowed* when one of the same name is found earlier."""
    out: list[tuple[str, str, str | None]] = []
    first: dict[str, str] = {}
    for d in search_dirs():
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith((".yaml", ".yml")):
                continue
            name, path = f.rsplit(".", 1)[0], os.path.join(d, f)
            if name in first:
                out.append((name, path, first[name]))
            else:
                first[name] = path
                out.append((name, path, None))
    return out


def _normalise(raw: dict) -> dict:
    out = {}
    for k, v in raw.items():
        key = str(k).replace("-", "_")
        key = "partition" if key == "queue" else key
        out[key] = v
    return out


def _read_yaml(path: str):
    import yaml

    from ..spec import MAX_YAML_BYTES, YAMLLimitError, load_yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return load_yaml(fh.read(MAX_YAML_BYTES + 1)) or {}
    except yaml.YAMLError as exc:
        raise JobError(f"profile {path}: not valid YAML: {str(exc)[:300]}") from None
    except YAMLLimitError as exc:
        raise JobError(f"profile {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"profile {path} cannot be read: {exc}") from None


def load_profile(name: str, sources: dict | None = None) -> dict:
    """Read profile ``name`` (see :func:`find_profile`) into a dict of JobParams values.

    Merges in the dask-jobqueue section first when the profile asks for it (``dask_jobqueue``).
    If ``sources`` is a dict, it receives ``key -> where the value came from``. Raises
    :class:`JobError` naming the file for bad YAML, a non-mapping or an unknown key.
    """
    path = find_profile(name)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise JobError(f"profile {path}: expected a mapping of settings, got {type(raw).__name__}")
    values = _normalise(raw)
    dask = values.pop("dask_jobqueue", None)
    sched = values.get("scheduler", "slurm")
    if sched not in SCHEDULERS:
        raise JobError(f"profile {path}: scheduler {sched!r} is not one of {', '.join(SCHEDULERS)}")
    check_keys(values, f"profile {path} (also allowed: dask_jobqueue)")
    mine = {k: f"profile {path}" for k in values}
    if dask:
        base = from_dask_jobqueue(sched, None if dask is True else str(dask), sources)
        values = {**base, **values}
    if sources is not None:
        sources.update(mine)
    return values


def resolve(name: str | None, dask_config: str | None = None) -> tuple[JobParams, dict]:
    """``(validated JobParams, key -> where its value came from)`` for profile ``name``: what
    ``hpcframe profiles show`` prints. Sources: ``default``, ``scheduler default`` (the
    launcher), ``dask-jobqueue ...`` or ``profile PATH``."""
    sources: dict = {}
    values = load_profile(name, sources) if name else {}
    if dask_config:
        sched = values.get("scheduler") or "slurm"
        sources.update({k: v for k, v in _dask_sources(sched, dask_config).items() if k not in values})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfileRenamedWarning)
        params = make_params(name, dask_config=dask_config)
    out = {}
    for key in JobParams.fields():
        out[key] = sources.get(key, "default")
    if params.launcher is None:
        out["launcher"] = "scheduler default"
    if "workdir" not in sources:
        out["workdir"] = "default (the directory you submit from)"
    return params, out


def _dask_sources(sched: str, path: str) -> dict:
    src: dict = {}
    from_dask_jobqueue(sched, path, src)
    return src


# --------------------------------------------------------------------------------------------
# dask-jobqueue
# --------------------------------------------------------------------------------------------
def dask_memory(value, where: str) -> str:
    """dask-jobqueue's ``memory`` as a JobParams ``mem`` (``NNNM``, MiB rounded up).

    Dask reads sizes with :func:`dask.utils.parse_bytes`: ``4GB`` is 4,000,000,000 bytes and
    ``4GiB`` 4 x 2**30, so ``4GB`` becomes ``3815M`` (dask-jobqueue also renders that).
    """
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(value)
    except (ValueError, TypeError) as exc:
        raise JobError(f"{where}: memory {value!r} is not a size Dask can read ({exc})") from None
    if n <= 0:
        raise JobError(f"{where}: memory {value!r} must be more than zero")
    return f"{max(1, math.ceil(n / (1 << 20)))}M"


def resource_spec(spec: str, where: str) -> dict:
    """JobParams values from a dask-jobqueue PBS ``resource-spec`` (what ``qsub -l`` gets).

    PBS Pro ``select=N:ncpus=C[:mpiprocs=M][:mem=X]`` and Torque ``nodes=N:ppn=P`` (``mem=X``)
    become nodes, ntasks-per-node (``mpiprocs``, else ``ncpus``/``ppn``: one rank per core),
    cpus-per-task (``ncpus`` / ``mpiprocs``) and mem (per node, in PBS's binary units). Raises
    :class:`JobError` for any other resource rather than dropping it.
    """
    known = {"select": "nodes", "nodes": "nodes", "ncpus": None, "mpiprocs": None, "ppn": None, "mem": "mem"}
    items: dict = {}
    for part in re.split(r"[:,]", str(spec).strip()):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in known or not val.strip():
            raise JobError(
                f"{where}: resource-spec {spec!r}: {part!r} is not understood; hpcframe reads "
                "select=N:ncpus=C:mpiprocs=M:mem=X (PBS Pro) or nodes=N:ppn=P (Torque). Put "
                "other resources in job-extra-directives as '-l NAME=VALUE', or drop "
                "resource-spec and set nodes/ntasks_per_node/mem in a cluster profile"
            )
        items[key] = val.strip()
    out: dict = {}
    for k in ("select", "nodes"):
        if k in items:
            out["nodes"] = items[k]
    if "mem" in items:
        out["mem"] = items["mem"]
    ncpus = items.get("ncpus") or items.get("ppn")
    if "mpiprocs" in items:
        out["ntasks_per_node"] = items["mpiprocs"]
        if ncpus and ncpus.isdigit() and items["mpiprocs"].isdigit() and int(items["mpiprocs"]):
            per, rest = divmod(int(ncpus), int(items["mpiprocs"]))
            if rest or not per:
                raise JobError(
                    f"{where}: resource-spec {spec!r}: ncpus={ncpus} is not a multiple of "
                    f"mpiprocs={items['mpiprocs']}"
                )
            out["cpus_per_task"] = per
    elif ncpus:
        out["ntasks_per_node"] = ncpus
    return out


def from_dask_jobqueue(scheduler: str, path: str | None = None, sources: dict | None = None) -> dict:
    """JobParams values from the user's dask-jobqueue settings for ``scheduler``.

    Reads ``jobqueue.slurm`` (SLURM) or ``jobqueue.pbs`` (PBS Pro and Torque) with
    ``dask.config.collect`` -- from ``path`` if given, else Dask's own search path
    (``~/.config/dask``, ``/etc/dask``, ``$DASK_CONFIG`` and ``DASK_JOBQUEUE__...`` variables),
    exactly what ``dask_jobqueue`` would see, without Dask-jobqueue's defaults. Maps queue ->
    partition, account, walltime -> time, memory -> mem (Dask's units: ``4GB`` is 4e9 bytes, see
    :func:`dask_memory`), cores -> ntasks_per_node (one rank per core), resource-spec (PBS; see
    :func:`resource_spec`, it wins over cores/memory as in dask-jobqueue),
    job-extra-directives (or old job-extra) -> extra_directives, job-script-prologue (or old
    env-extra) -> setup. ``sources`` (a dict) receives where each value came from. Returns
    ``{}`` if there is no such section. Raises JobError if the file is missing or ``dask`` is
    not installed.
    """
    try:
        import dask.config
    except ImportError:
        raise JobError("reading the dask-jobqueue configuration needs dask: pip install dask") from None
    if path is not None and not os.path.exists(path):
        raise JobError(f"dask-jobqueue configuration {path!r} does not exist")
    try:
        cfg = dask.config.collect(paths=[path] if path else list(dask.config.paths))
    except Exception as exc:  # a YAML error inside a config file
        raise JobError(f"cannot read the Dask configuration {path or dask.config.paths}: {exc}") from None
    section_name = "slurm" if scheduler == "slurm" else "pbs"
    from ..spec import YAMLLimitError, check_yaml_size

    try:
        check_yaml_size(cfg.get("jobqueue"))
    except YAMLLimitError as exc:
        where = "jobqueue" + (f".{exc.key}" if exc.key else "")
        raise JobError(f"the Dask configuration {path or dask.config.paths}: {where}: {exc.detail}") from None
    jq = {str(k).replace("_", "-"): v for k, v in (cfg.get("jobqueue") or {}).items()}
    sec = jq.get(section_name) or {}
    sec = {str(k).replace("_", "-"): v for k, v in sec.items()}
    origin = f"{path}" if path else "Dask's configuration"
    where = f"dask-jobqueue jobqueue.{section_name} ({origin})"
    out: dict = {}
    src: dict = {}
    for key, dst in (
        ("queue", "partition"),
        ("account", "account"),
        ("walltime", "time"),
        ("memory", "mem"),
        ("cores", "ntasks_per_node"),
    ):
        if sec.get(key) not in (None, ""):
            out[dst] = dask_memory(sec[key], where) if key == "memory" else sec[key]
            src[dst] = f"dask-jobqueue jobqueue.{section_name}.{key} ({origin})"
    spec = sec.get("resource-spec")
    if spec not in (None, ""):
        if section_name != "pbs":
            raise JobError(f"{where}: resource-spec is a PBS setting; remove it from jobqueue.slurm")
        for k, v in resource_spec(str(spec), where).items():
            out[k] = v
            src[k] = f"dask-jobqueue jobqueue.pbs.resource-spec ({origin})"
    extra = sec.get("job-extra-directives") or sec.get("job-extra") or []
    if extra:
        out["extra_directives"] = [str(e) for e in extra]
        src["extra_directives"] = f"dask-jobqueue jobqueue.{section_name}.job-extra-directives ({origin})"
    prologue = sec.get("job-script-prologue") or sec.get("env-extra") or []
    if prologue:
        out["setup"] = [str(e) for e in prologue]
        src["setup"] = f"dask-jobqueue jobqueue.{section_name}.job-script-prologue ({origin})"
    if sources is not None:
        sources.update(src)
    return out


# --------------------------------------------------------------------------------------------
# profiles init: ask the scheduler what the cluster has
# --------------------------------------------------------------------------------------------
def detect_scheduler() -> str:
    """``slurm`` if ``sinfo`` is on PATH, else ``pbs``/``torque`` from ``qstat --version``;
    JobError if there is neither."""
    if shutil.which("sinfo"):
        return "slurm"
    if shutil.which("qstat"):
        proc = run_command(["qstat", "--version"], check=False)
        text = (proc.stdout + proc.stderr).lower()
        return "pbs" if "pbs_version" in text or "pbs pro" in text or "openpbs" in text else "torque"
    raise JobError(
        "neither sinfo (SLURM) nor qstat (PBS/Torque) is on PATH: run this on the cluster's "
        "login node, or pass --scheduler and edit the profile by hand"
    )


def _number(text: str) -> int | None:
    m = re.match(r"\d+", text.strip())
    return int(m.group()) if m else None


def parse_sinfo(text: str) -> list[dict]:
    """Partitions from ``sinfo -h -o '%P|%c|%m|%D|%l|%a'``: name, default, cpus (per node),
    mem_mb (per node), nodes, time limit, available."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6:
            continue
        name, cpus, mem, nodes, limit, avail = (p.strip() for p in parts)
        out.append(
            {
                "name": name.rstrip("*"),
                "default": name.endswith("*"),
                "cpus": _number(cpus),
                "mem_mb": _number(mem),
                "nodes": _number(nodes),
                "time_limit": limit,
                "available": avail == "up",
            }
        )
    return out


def parse_qstat_q(text: str) -> list[dict]:
    """Queues from ``qstat -Q`` (PBS Pro and Torque): name, enabled, started, type (E/R)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = next((ln.split() for ln in lines if ln.split()[:1] == ["Queue"]), None)
    if header is None:
        return []
    out = []
    for ln in lines:
        words = ln.split()
        if not words or words[0] in ("Queue",) or set(ln.strip()) <= {"-", " "}:
            continue
        row = dict(zip(header, words))
        typ = row.get("Type") or row.get("T") or ""
        out.append(
            {
                "name": words[0],
                "enabled": row.get("Ena", "yes").lower() in ("yes", "y"),
                "started": row.get("Str", "yes").lower() in ("yes", "y"),
                "type": typ[:1].upper(),
            }
        )
    return out


def _limit_time(limit: str) -> str:
    """One hour, or the partition's limit when it is shorter."""
    from .base import parse_time

    try:
        lim = parse_time(limit)
    except JobError:  # "infinite", "UNLIMITED", "n/a"
        return "01:00:00"
    h, m, s = map(int, lim.split(":"))
    return lim if h * 3600 + m * 60 + s < 3600 else "01:00:00"


def init_profile(scheduler: str | None = None, python: str | None = None) -> str:
    """The text of a starting profile for this cluster, from what ``sinfo`` (SLURM) or
    ``qstat -Q`` (PBS Pro/Torque) report: the default (or first usable) partition/queue, the
    cores of its nodes (SLURM), a wall time within its limit, the launcher, and this Python.
    Raises :class:`JobError` (or :class:`CommandError` when the command fails)."""
    sched = scheduler or detect_scheduler()
    python = python or sys.executable
    head = [f"# Written by `hpcframe profiles init` from what the {sched} scheduler reported."]
    body: list[str] = [f"scheduler: {sched}"]
    if sched == "slurm":
        parts = parse_sinfo(run_command(["sinfo", "-h", "-o", "%P|%c|%m|%D|%l|%a"]).stdout)
        usable = [p for p in parts if p["available"]] or parts
        if not usable:
            raise JobError("sinfo reported no partitions: is SLURM running (sinfo -s)?")
        part = next((p for p in usable if p["default"]), usable[0])
        head.append(
            "# Partitions (sinfo): "
            + ", ".join(
                f"{p['name']}{'*' if p['default'] else ''} ({p['nodes']} nodes x {p['cpus']} cpus, "
                f"limit {p['time_limit']})"
                for p in parts
            )
        )
        cpus = part["cpus"] or 1
        body += [
            f"partition: {part['name']}",
            "nodes: 1",
            f"ntasks_per_node: {cpus}           # one rank per core",
            "cpus_per_task: 1",
            f"node_cpus: {cpus}                 # cores per node: larger requests are refused",
            f'time: "{_limit_time(part["time_limit"])}"',
        ]
        if part["mem_mb"]:
            body.append(f"# mem: {part['mem_mb']}M               # all of a node's memory (per node)")
        body.append("launcher: srun --mpi=pmi2        # must match the MPI library mpi4py was built with")
    else:
        queues = parse_qstat_q(run_command(["qstat", "-Q"]).stdout)
        usable = [q for q in queues if q["enabled"] and q["started"] and q["type"] != "R"] or queues
        if not usable:
            raise JobError("qstat -Q reported no queues: is the PBS server running?")
        head.append("# Queues (qstat -Q): " + ", ".join(q["name"] for q in queues))
        body += [
            f"queue: {usable[0]['name']}",
            "nodes: 1",
            "ntasks_per_node: 1                 # set to the cores of a node (pbsnodes -a)",
            "cpus_per_task: 1",
            'time: "01:00:00"',
            "launcher: mpiexec",
        ]
    body += [
        f"python: {_yaml_str(python)}",
        "# modules: [python/3.11]          # `module load` before the ranks start",
        "# setup: [source $HOME/venv/bin/activate]",
        "# exclusive: true                  # whole nodes",
    ]
    return "\n".join(head + body) + "\n"


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a YAML string


def write_profile(text: str, path: str, force: bool = False) -> str:
    """Write profile ``text`` to ``path`` (after checking it loads and validates); refuse to
    replace an existing file unless ``force``. Returns the path."""
    from .base import write_atomic

    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not force:
        raise JobError(f"{path} exists: pass --force to replace it, or --output another path")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    check = path + ".check.yaml"
    write_atomic(check, text)
    try:
        make_params(check)
    finally:
        os.remove(check)
    write_atomic(path, text)
    return path


__all__ = [
    "CommandError",
    "ProfileRenamedWarning",
    "find_profile",
    "from_dask_jobqueue",
    "init_profile",
    "list_profiles",
    "load_profile",
    "renamed",
    "resolve",
    "search_dirs",
    "write_profile",
]


def make_params(
    profile: str | None = None,
    overrides: dict | None = None,
    *,
    array=None,
    after=(),
    dask_config: str | None = None,
    scheduler: str | None = None,
) -> JobParams:
    """Validated :class:`JobParams`: dask-jobqueue file < profile < ``overrides`` (None values
    are ignored) < ``scheduler``/``array``/``after``. Raises :class:`JobError`."""
    values: dict = load_profile(profile) if profile else {}
    sched = scheduler or values.get("scheduler") or "slurm"
    if dask_config:
        values = {**from_dask_jobqueue(sched, dask_config), **values}
    over = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}
    check_keys(over, "options")
    values.update(over)
    values["scheduler"] = sched
    values.setdefault("workdir", os.getcwd())
    if array:
        values["array"] = ArraySpec.parse(array) if isinstance(array, str) else array
    if after:
        values["after"] = list(values.get("after") or []) + list(after)
    return validate(JobParams.from_dict(values, f"profile {profile}" if profile else "options"))
