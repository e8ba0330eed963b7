"""Cluster profiles (YAML) and the user's dask-jobqueue settings.

A profile is a YAML mapping whose keys are :class:`~hpcframe.jobs.base.JobParams` fields
(``queue`` is accepted for ``partition``, ``-`` for ``_``) plus ``dask_jobqueue``: ``true``
(read ``jobqueue.<scheduler>`` from the user's Dask configuration) or a path to a Dask config
file. Precedence, lowest first: dask-jobqueue settings < profile < command-line options.
"""

from __future__ import annotations

import os

from .base import JobError, check_keys

SCHEDULERS = ("slurm", "pbs", "torque")


def search_dirs() -> list[str]:
    """Directories searched for ``NAME.yaml``: ``./configs``, ``~/.config/hpcframe/profiles``,
    then every directory of ``$HPCFRAME_PROFILES`` (``:``-separated)."""
    dirs = [os.path.abspath("configs"), os.path.expanduser("~/.config/hpcframe/profiles")]
    dirs += [d for d in os.environ.get("HPCFRAME_PROFILES", "").split(os.pathsep) if d]
    return dirs


def find_profile(name: str) -> str:
    """The path of profile ``name`` (a name or a path to a YAML file).

    Raises :class:`JobError` listing the directories searched and the profiles found there.
    """
    if os.path.isfile(name):
        return os.path.abspath(name)
    if os.sep in name or name.endswith((".yaml", ".yml")):
        raise JobError(f"profile file {name!r} does not exist")
    found = []
    for d in search_dirs():
        for ext in (".yaml", ".yml"):
            path = os.path.join(d, name + ext)
            if os.path.isfile(path):
                return path
        if os.path.isdir(d):
            found += sorted(f.rsplit(".", 1)[0] for f in os.listdir(d) if f.endswith((".yaml", ".yml")))
    raise JobError(
        f"profile {name!r} not found in {', '.join(search_dirs())} "
        f"(available: {', '.join(found) or 'none'}); pass a name or a path to a YAML file"
    )


def _normalise(raw: dict, where: str) -> dict:
    out = {}
    for k, v in raw.items():
        key = str(k).replace("-", "_")
        key = "partition" if key == "queue" else key
        out[key] = v
    return out


def load_profile(name: str) -> dict:
    """Read profile ``name`` (see :func:`find_profile`) into a dict of JobParams values.

    Merges in the dask-jobqueue section first when the profile asks for it (``dask_jobqueue``).
    Raises :class:`JobError` naming the file for bad YAML, a non-mapping or an unknown key.
    """
    import yaml

    from ..spec import MAX_YAML_BYTES, YAMLLimitError, load_yaml

    path = find_profile(name)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = load_yaml(fh.read(MAX_YAML_BYTES + 1)) or {}
    except yaml.YAMLError as exc:
        raise JobError(f"profile {path}: not valid YAML: {str(exc)[:300]}") from None
    except YAMLLimitError as exc:
        raise JobError(f"profile {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(f"profile {path} cannot be read: {exc}") from None
    if not isinstance(raw, dict):
        raise JobError(f"profile {path}: expected a mapping of settings, got {type(raw).__name__}")
    values = _normalise(raw, path)
    dask = values.pop("dask_jobqueue", None)
    sched = values.get("scheduler", "slurm")
    if sched not in SCHEDULERS:
        raise JobError(f"profile {path}: scheduler {sched!r} is not one of {', '.join(SCHEDULERS)}")
    check_keys(values, f"profile {path} (also allowed: dask_jobqueue)")
    if dask:
        base = from_dask_jobqueue(sched, None if dask is True else str(dask))
        values = {**base, **values}
    return values


def from_dask_jobqueue(scheduler: str, path: str | None = None) -> dict:
    """JobParams values from the user's dask-jobqueue settings for ``scheduler``.

    Reads ``jobqueue.slurm`` (SLURM) or ``jobqueue.pbs`` (PBS Pro and Torque) with
    ``dask.config.collect`` -- from ``path`` if given, else Dask's own search path
    (``~/.config/dask``, ``/etc/dask``, ``$DASK_CONFIG`` and ``DASK_JOBQUEUE__...`` variables),
    exactly what ``dask_jobqueue`` would see, without Dask-jobqueue's defaults. Maps queue ->
    partition, account, walltime -> time, memory -> mem, cores -> ntasks_per_node (one rank per
    core), job-extra-directives (or old job-extra) -> extra_directives, job-script-prologue (or
    old env-extra) -> setup. Returns ``{}`` if there is no such section. Raises JobError if the
    file is missing or ``dask`` is not installed.
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
    out: dict = {}
    for src, dst in (
        ("queue", "partition"),
        ("account", "account"),
        ("walltime", "time"),
        ("memory", "mem"),
        ("cores", "ntasks_per_node"),
    ):
        if sec.get(src) not in (None, ""):
            out[dst] = sec[src]
    extra = sec.get("job-extra-directives") or sec.get("job-extra") or []
    if extra:
        out["extra_directives"] = [str(e) for e in extra]
    prologue = sec.get("job-script-prologue") or sec.get("env-extra") or []
    if prologue:
        out["setup"] = [str(e) for e in prologue]
    return out
