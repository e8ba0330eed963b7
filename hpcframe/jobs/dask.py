"""Dask clusters for the Dask engine: ``hf.cluster(profile=..., jobs=N)``.

A profile of ``hpcframe submit`` (:mod:`hpcframe.jobs.profiles`) becomes the keyword
arguments of dask-jobqueue's ``SLURMCluster`` or ``PBSCluster`` -- the mapping
:func:`~hpcframe.jobs.profiles.from_dask_jobqueue` reads, the other way round:

=====================================  ===============================================
profile (``hpcframe submit``)          dask-jobqueue
=====================================  ===============================================
``partition`` (``queue``)              ``queue``
``account``                            ``account``
``time``                               ``walltime``
``mem``                                ``memory`` (of one job, as MiB: both binary)
``ntasks_per_node`` x ``cpus_per_task``  ``cores`` (of one job)
``ntasks_per_node``                    ``processes`` (worker processes per job)
``extra_directives``                   ``job_extra_directives``
``modules``, ``setup``, ``env``        ``job_script_prologue`` (``module load``, the
                                       lines as written, ``export NAME=value``)
``workdir``                            ``job_script_prologue`` (``cd``)
``python``                             ``python``
``name``                               ``job_name``
=====================================  ===============================================

One dask-jobqueue job is one node's worth of workers (``nodes`` and ``launcher`` do not
apply); ``jobs=N`` starts N such jobs. Without a profile, :func:`cluster` starts a
``distributed.LocalCluster`` on this machine.
"""

from __future__ import annotations

import shlex

from .base import JobError, parse_mem


def jobqueue_kwargs(values: dict) -> dict:
    """dask-jobqueue keyword arguments from a profile's values (see the module docstring).

    Parameters
    ----------
    values : dict
        JobParams values, as :func:`~hpcframe.jobs.profiles.load_profile` returns them.

    Returns
    -------
    dict
        Keyword arguments for ``SLURMCluster``/``PBSCluster`` (without ``memory`` if the
        profile has no ``mem``).
    """
    out: dict = {}
    tasks = int(values.get("ntasks_per_node") or 1)
    cpus = int(values.get("cpus_per_task") or 1)
    out["cores"] = tasks * cpus
    out["processes"] = tasks
    for src, dst in (
        ("partition", "queue"),
        ("account", "account"),
        ("time", "walltime"),
        ("python", "python"),
        ("name", "job_name"),
    ):
        if values.get(src) not in (None, ""):
            out[dst] = str(values[src])
    if values.get("mem") not in (None, ""):
        # a profile's mem is binary (SLURM/PBS: 16G = 16 GiB); Dask reads "16G" as 16e9 bytes,
        # so it gets MiB, which it reads as binary too
        out["memory"] = f"{parse_mem(values['mem'])}MiB"
    if values.get("extra_directives"):
        out["job_extra_directives"] = [str(d) for d in values["extra_directives"]]
    prologue = [f"module load {shlex.quote(str(m))}" for m in values.get("modules") or []]
    prologue += [str(line) for line in values.get("setup") or []]
    for name, value in (values.get("env") or {}).items():
        if not str(name).isidentifier():
            raise JobError(f"env: {name!r} is not a valid environment variable name")
        prologue.append(f"export {name}={shlex.quote(str(value))}")
    if values.get("workdir"):
        prologue.append(f"cd {shlex.quote(str(values['workdir']))}")
    if prologue:
        out["job_script_prologue"] = prologue
    return out


class Cluster:
    """A Dask cluster for ``compute(engine=...)``, with its client; a context manager.

    Made by :func:`cluster`. Everything the wrapped Dask cluster has (``adapt``,
    ``job_script()``, ``workers``, ...) is available on this object too; ``close()`` (or the
    end of the ``with`` block) closes the client and shuts the cluster (and its jobs) down.

    Parameters
    ----------
    cluster : distributed.deploy.Cluster
        The Dask cluster (``SLURMCluster``, ``PBSCluster`` or ``LocalCluster``).
    kind : str
        ``"slurm"``, ``"pbs"`` or ``"local"``.
    """

    def __init__(self, cluster, kind: str):
        self.cluster, self.kind = cluster, kind
        self._client = None

    def hpcframe_client(self):
        """The ``distributed.Client`` the Dask engine runs on (made on first use)."""
        if self._client is None or self._client.status != "running":
            from distributed import Client

            self._client = Client(self.cluster, set_as_default=False)
        return self._client

    @property
    def client(self):
        """The cluster's ``distributed.Client`` (see :meth:`hpcframe_client`)."""
        return self.hpcframe_client()

    @property
    def dashboard_link(self) -> str:
        """The address of the live Dask dashboard."""
        return self.cluster.dashboard_link

    def scale(self, jobs: int | None = None, **kwargs):
        """Ask for ``jobs`` batch jobs (a LocalCluster: ``jobs`` workers); other keywords
        as the Dask cluster's ``scale`` (``n`` workers, ``memory``, ``cores``)."""
        if self.kind == "local":
            return self.cluster.scale(jobs if jobs is not None else kwargs.pop("n", 0), **kwargs)
        if jobs is not None:
            kwargs["jobs"] = jobs
        return self.cluster.scale(**kwargs)

    def adapt(self, minimum_jobs: int | None = None, maximum_jobs: int | None = None, **kwargs):
        """Scale between ``minimum_jobs`` and ``maximum_jobs`` with the load (a LocalCluster:
        workers); other keywords as Dask's ``adapt`` (``interval``, ``wait_count``, ...)."""
        if self.kind == "local":
            if minimum_jobs is not None:
                kwargs["minimum"] = minimum_jobs
            if maximum_jobs is not None:
                kwargs["maximum"] = maximum_jobs
        else:
            if minimum_jobs is not None:
                kwargs["minimum_jobs"] = minimum_jobs
            if maximum_jobs is not None:
                kwargs["maximum_jobs"] = maximum_jobs
        return self.cluster.adapt(**kwargs)

    def wait_for_workers(self, n: int = 1, timeout: float | None = None) -> None:
        """Block until ``n`` workers are connected (``timeout`` seconds at most)."""
        self.hpcframe_client().wait_for_workers(n, timeout=timeout)

    def close(self) -> None:
        """Close the client and shut the cluster down (cancels its batch jobs)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __getattr__(self, name):
        if name in ("cluster", "kind", "_client"):  # not set yet (during unpickling)
            raise AttributeError(name)
        return getattr(self.cluster, name)

    def __repr__(self) -> str:
        return f"<hpcframe Dask cluster ({self.kind}): {self.cluster!r}; dashboard {self.dashboard_link}>"


def cluster(profile: str | None = None, jobs: int | None = None, quiet: bool = False, **kwargs) -> Cluster:
    """Start a Dask cluster for the Dask engine (``compute(engine=cluster)``).

    Parameters
    ----------
    profile : str, optional
        A profile of ``hpcframe submit`` (a name in ``./configs``,
        ``~/.config/hpcframe/profiles``, ``$HPCFRAME_PROFILES``, or a YAML path): a
        dask-jobqueue ``SLURMCluster`` (``scheduler: slurm``) or ``PBSCluster`` (``pbs``,
        ``torque``) whose jobs have the profile's resources (see the module docstring).
        ``None``: a ``distributed.LocalCluster`` on this machine.
    jobs : int, optional
        Batch jobs to start now (``LocalCluster``: worker processes; default one per core,
        at most 8). Scale later with ``scale(jobs=...)`` or ``adapt(...)``.
    quiet : bool, default False
        Do not print the dashboard link.
    **kwargs
        Passed to the Dask cluster class, over the profile's values (e.g. ``memory="4GB"``,
        ``interface="ib0"``, ``log_directory=...``, ``processes=False`` for a LocalCluster).

    Returns
    -------
    Cluster
        The cluster, with its client; use it as a context manager to shut it down.

    Raises
    ------
    JobError
        For a missing or invalid profile, a profile without ``mem`` (and no ``memory=``),
        or when dask-jobqueue is not installed.

    Examples
    --------
    >>> import hpcframe as hf
    >>> with hf.cluster(jobs=2, processes=False, quiet=True) as c:  # doctest: +SKIP
    ...     flights.dep_delay.mean().compute(engine=c)
    """
    if profile is None:
        try:
            from distributed import LocalCluster
        except ImportError:
            raise JobError("hf.cluster() needs distributed: pip install 'hpcframe[dask]'") from None
        import os

        n = jobs if jobs is not None else max(1, min(os.cpu_count() or 1, 8))
        opts = {"n_workers": n, "threads_per_worker": 1, "dashboard_address": ":0", **kwargs}
        if opts.get("processes") is False:
            opts.setdefault("silence_logs", 40)
        out = Cluster(LocalCluster(**opts), "local")
    else:
        from .profiles import load_profile

        values = load_profile(profile)
        kind = "slurm" if values.get("scheduler", "slurm") == "slurm" else "pbs"
        try:
            import dask_jobqueue
        except ImportError:
            raise JobError(
                "hf.cluster(profile=...) needs dask-jobqueue: pip install 'hpcframe[dask]'"
            ) from None
        opts = {**jobqueue_kwargs(values), **kwargs}
        # a free port for the dashboard (several clusters on one login node)
        opts["scheduler_options"] = {"dashboard_address": ":0", **(opts.get("scheduler_options") or {})}
        if not opts.get("memory"):
            raise JobError(
                f"profile {profile!r} has no mem: dask-jobqueue needs the memory of one job; "
                "add mem: 8G to the profile or pass memory='8GB'"
            )
        cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
        try:
            out = Cluster(cls(**opts), kind)
        except (TypeError, ValueError) as exc:
            raise JobError(
                f"profile {profile!r}: dask-jobqueue rejected the settings {opts}: {exc}"
            ) from None
        if jobs:
            out.scale(jobs=jobs)
    if not quiet:
        print(f"hpcframe: Dask {out.kind} cluster; dashboard: {out.dashboard_link}")
    return out
