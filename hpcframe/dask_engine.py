"""The Dask engine: the same queries on a Dask cluster (``compute(engine=...)``).

One Dask task per leaf of the combine tree (a block of partitions): it reads the leaf, runs
every output's local pipeline and returns the leaf's partials -- the very code the local and
MPI engines run (:func:`hpcframe.execute._run_leaf`, planned by
:func:`hpcframe.physical.plan_scan` with a serial communicator). The partials are combined by
Dask tasks in the same fixed tree (node ``(level, i)`` = ``combine(node(level-1, 2i),
node(level-1, 2i+1))``, :mod:`hpcframe.tree`), so every floating-point operation is bracketed
as on the local and MPI engines: results are identical bit for bit. The root of the tree
comes back to the client, which finalises the results.

Stages (``persist``, shuffles, joins, sorts, group-by results used as frames) are not run on
Dask: they need the ranks' collective exchanges. A query that needs one raises
:class:`DaskEngineError` naming the operation; run it with ``engine="local"`` or under
``mpiexec``.

Engines (``engine=`` of :func:`hpcframe.compute`, or ``hpcframe.config.engine``):

- ``None`` / ``"local"`` / ``"mpi"``: the local engine, or MPI under ``mpiexec``;
- ``"dask"``: a ``distributed.LocalCluster`` on this machine, started on first use and kept
  until the process ends (or :func:`close_default`);
- a ``distributed.Client``, a Dask cluster (``LocalCluster``, ``SLURMCluster``, ...) or the
  cluster of :func:`hpcframe.cluster`.

Dask is imported only here, when such an engine is used.
"""

from __future__ import annotations

import socket
import time
import weakref

from . import callbacks
from .comm import Comm, RankFailure, failure
from .errors import ComputeError, DatasetComputeError, HpcframeError, JobInterrupted

#: engine names that mean "not Dask"
LOCAL_NAMES = ("local", "mpi")


class DaskEngineError(HpcframeError):
    """The Dask engine cannot run this query (or the engine setting is wrong)."""


def wants_dask(engine) -> bool:
    """Whether ``engine`` (``compute(engine=...)``, resolved against ``config.engine``) asks
    for the Dask engine."""
    if engine is None:
        from .config import config

        engine = config.engine
    if engine is None:
        return False
    if isinstance(engine, str):
        if engine in LOCAL_NAMES:
            return False
        if engine == "dask":
            return True
        raise DaskEngineError(
            f"engine={engine!r} is not known: use None or 'local' (the local engine, or MPI under "
            "mpiexec), 'dask' (a LocalCluster on this machine), a distributed.Client or a Dask cluster"
        )
    return True


# ------------------------------------------------------------------------------------ clients
_default: dict = {}  # "client", "cluster": the engine="dask" LocalCluster
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cluster -> Client


def default_client():
    """The client of the shared ``engine="dask"`` LocalCluster (started on first use, with
    one single-threaded worker process per core; its dashboard link is printed)."""
    client = _default.get("client")
    if client is not None and client.status == "running":
        return client
    import os

    from distributed import Client, LocalCluster

    n = max(1, min(os.cpu_count() or 1, 8))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster, set_as_default=False)
    _default.update(client=client, cluster=cluster)
    print(f"hpcframe: Dask engine on a LocalCluster of {n} worker(s); dashboard: {cluster.dashboard_link}")
    import atexit

    atexit.register(close_default)
    return client


def close_default() -> None:
    """Shut down the shared ``engine="dask"`` LocalCluster, if one was started."""
    client, cluster = _default.pop("client", None), _default.pop("cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


def client_of(engine):
    """The ``distributed.Client`` to run on for ``engine`` (see the module docstring)."""
    if engine is None:
        from .config import config

        engine = config.engine
    if isinstance(engine, str):
        return default_client()
    from distributed import Client

    if isinstance(engine, Client):
        return engine
    own = getattr(engine, "hpcframe_client", None)  # hpcframe.cluster()
    if callable(own):
        return own()
    if hasattr(engine, "scheduler_address"):  # a Dask cluster object
        client = _clients.get(engine)
        if client is None or client.status != "running":
            client = _clients[engine] = Client(engine, set_as_default=False)
        return client
    raise DaskEngineError(
        f"engine must be None, 'local', 'dask', a distributed.Client or a Dask cluster, "
        f"not {type(engine).__name__}"
    )


# ------------------------------------------------------------------------------------- tasks
class _TaskFailed(Exception):
    """Raised by a task: carries the failure record (picklable) to the client."""


def _where() -> str:
    try:
        from distributed import get_worker

        return f"Dask worker {get_worker().address}"
    except (ImportError, ValueError):
        return socket.gethostname()


class _TaskComm(Comm):
    """A serial communicator for failure records made inside a task (rank = leaf)."""

    def __init__(self, rank: int):
        self.rank, self.host = rank, _where()


_plans: dict = {}  # on a worker: id(scattered outputs) -> (outputs, their OutputPlans)


def _worker_plans(source, outs):
    """The outputs' plans, made on this worker from the outputs it received: a plan refers
    to plan nodes by ``id()`` (:func:`hpcframe.plan.run_pandas`'s ``after``), which pickling
    does not keep. Made once per scan and worker (the entry holds the outputs, so their id
    is not reused while it is cached)."""
    from .physical import OutputPlan

    entry = _plans.get(id(outs))
    if entry is None or entry[0] is not outs:
        while len(_plans) >= 8:
            _plans.pop(next(iter(_plans)))
        entry = _plans[id(outs)] = (outs, [OutputPlan(o, source.schema()) for o in outs])
    return entry[1]


_threads_set: list = []  # on a worker: the Arrow thread count set (once per process)


def _share_cores(host_threads: dict) -> None:
    """As the MPI engine does per rank: the tasks running at once on this node share its
    cores, so Arrow's thread pools get cores ÷ (worker threads on this node) threads each,
    not one per core each (``host_threads``: Dask threads per host, from the scheduler)."""
    import os

    try:
        from distributed import get_worker

        worker = get_worker()
        if worker.address.startswith("inproc"):  # threads of the client's process: leave it
            return
        mine = worker.state.nthreads
        host = worker.address.split("://")[-1].rsplit(":", 1)[0]
    except (ImportError, ValueError, AttributeError):
        return
    total = max(host_threads.get(host, mine), mine, 1)
    per = max(1, (os.cpu_count() or 1) // total)
    if _threads_set == [per]:
        return
    import pyarrow as pa

    pa.set_cpu_count(per)
    pa.set_io_thread_count(max(per, 2))
    _threads_set[:] = [per]


def _leaf_task(source, leaf, outs, wants, parts, read_cols, host_threads=None):
    """One leaf: read, local pipeline, partials (exactly the local engine's
    :func:`hpcframe.execute._run_leaf`). Returns ``(partials, times)``."""
    from .execute import _ReadCache, _run_leaf

    _share_cores(host_threads or {})

    # a copy as pickling makes it (no open files), own to this task: tasks of one worker may
    # run in threads, and a source keeps open files
    if hasattr(source, "__dict__"):
        getstate = getattr(source, "__getstate__", None)  # object has none before Python 3.11
        state = getstate() if getstate is not None else vars(source)
        if isinstance(state, dict):
            copy = object.__new__(type(source))
            copy.__dict__.update(state)
            source = copy
    plans = _worker_plans(source, outs)
    cache = _ReadCache(source, read_cols)
    cache.read_end, cache.rows, cache.rows_out = None, 0, None
    t0 = time.perf_counter()
    try:
        partials = _run_leaf(leaf, plans, wants, parts, cache)
    except BaseException as exc:  # sys.exit() and KeyboardInterrupt in user code too
        context = f"processing partition {leaf.describe()}"
        raise _TaskFailed(failure(_TaskComm(leaf.index), context, exc)) from None
    t1 = time.perf_counter()
    wall = time.time() - t1  # the times travel as wall-clock times (another process's clock)
    times = {
        "start": t0 + wall,
        "read_end": (cache.read_end or t0) + wall,
        "compute_end": t1 + wall,
        "end": t1 + wall,
        "rows": cache.rows,
        "rows_out": cache.rows_out,
        "nbytes": sum(p.nbytes for p in parts),
    }
    return partials, times


def _node(x):
    """``(partials, rows of each leaf read)`` of a tree node: a leaf task's result
    ``(partials, times)`` or a combine task's."""
    partials, extra = x
    return partials, [extra["rows"]] if isinstance(extra, dict) else extra


#: tree levels one combine task completes: 8 consecutive nodes of one level -> one node 3
#: levels up (fewer, larger tasks; the bracketing is the tree's, see _fold)
FAN_IN = 8


def _fold(outs, nodes):
    """The node ``log2(FAN_IN)`` levels above ``nodes`` (consecutive nodes of one level,
    starting at a multiple of FAN_IN): pairs ``(2i, 2i+1)`` combined level by level, a lone
    last node promoted unchanged -- exactly :func:`hpcframe.tree.finish`'s bracketing, since
    the groups are aligned and only the dataset's last group can be incomplete."""
    level = [_node(x) for x in nodes]
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), 2):
            if j + 1 == len(level):
                nxt.append(level[j])
            else:
                (a, ra), (b, rb) = level[j], level[j + 1]
                nxt.append(([o.combine(x, y) for o, x, y in zip(outs, a, b)], ra + rb))
        level = nxt
    return level[0]


def _combine_task(outs, where, *nodes):
    """Tree nodes ``nodes`` folded into their ancestor (every output's ``combine``)."""
    try:
        return _fold(outs, nodes)
    except BaseException as exc:
        raise _TaskFailed(failure(_TaskComm(0), f"combining the partial results of {where}", exc)) from None


def _times(x):
    return x[1]


# ------------------------------------------------------------------------------------ compute
def _unsupported(nodes) -> None:
    """Raise :class:`DaskEngineError` if the plan ``nodes`` need a stage."""
    from .stages import stages_below

    stages = stages_below(nodes)
    if stages:
        what = "; ".join(dict.fromkeys(s.label for s in stages))
        raise DaskEngineError(
            f"the Dask engine cannot run this query: it needs {what}, a stage (persist, shuffle, "
            "join, sort, or a group-by result used as a frame), which runs on the local and MPI "
            "engines only. Use engine='local' (or hf.config.engine = None), or run the script "
            "under mpiexec"
        )


def compute(outputs, engine=None) -> list:
    """Results of ``outputs`` computed on the Dask cluster of ``engine`` (see the module
    docstring); identical to the local and MPI engines' results.

    Parameters
    ----------
    outputs : list of Output
        The outputs to compute together (one pass over each dataset).
    engine : str, distributed.Client or Dask cluster, optional
        Default: ``hpcframe.config.engine``.

    Returns
    -------
    list
        One result per output.

    Raises
    ------
    DaskEngineError
        When the query needs a stage (persist, shuffle, join, sort).
    ComputeError
        When a task fails (the message names the partition and the worker).
    """
    from . import execute as X
    from .physical import plan_scan, scans_of
    from .stages import StageSource

    groups = scans_of(outputs)
    leaves_all = [o for outs in groups for o in outs]
    _unsupported([o.node for o in leaves_all])
    if any(isinstance(outs[0].node.scan().source, StageSource) for outs in groups):
        _unsupported([outs[0].node for outs in groups])  # pragma: no cover - stages_below finds them
    client = client_of(engine)
    stats: dict[str, float] = dict.fromkeys(
        (
            "partitions_total",
            "partitions_pruned",
            "partitions_read",
            "rows_read",
            "shuffled_outputs",
            "exchanges_arrow",
            "exchanges_pickled",
            "stage_columns_pruned",
            "stage_bytes",
        ),
        0,
    )
    t0 = time.perf_counter()
    results: dict[int, object] = {}
    # lazy scalars the rows use (df[df.x > df.x.mean()]): computed first (their own scalars
    # by the same call), then literals; a plan goes to the workers with their values in it
    from . import expr as E
    from .stages import scalar_refs_read

    refs = [r for r in scalar_refs_read([o.node for o in leaves_all]) if not r.resolved]
    values = compute([r.output for r in refs], engine) if refs else []
    with E.resolving(zip(refs, values)):
        for outs in groups:
            results.update(_run_scan(outs, client, stats, plan_scan))
    stats["seconds"] = time.perf_counter() - t0
    X._last_stats.clear()
    X._last_stats.update(stats)
    return [X._finish(o, results) for o in outputs]


def _raise(failures, n_tasks) -> None:
    cls: type[ComputeError]
    if any(f.kind == "KeyboardInterrupt" for f in failures):
        cls = JobInterrupted
    elif all(f.kind == "DatasetError" for f in failures):
        cls = DatasetComputeError
    else:
        cls = ComputeError
    lines = [f"{len(failures)} of {n_tasks} Dask task(s) failed:"]
    for f in failures:
        _, host, context, message = tuple(f)[:4]
        lines.append(f"- on {host}, while {context}:\n    " + message.replace("\n", "\n    "))
    raise cls("\n".join(lines), [tuple(f)[:4] for f in failures])


def _result(future, what: str, n_tasks: int):
    """``future.result()``, with a task's failure raised as :class:`ComputeError`."""
    try:
        return future.result()
    except _TaskFailed as exc:
        _raise([RankFailure(*exc.args[0])], n_tasks)
    except (KeyboardInterrupt, ComputeError):
        raise
    except Exception as exc:  # the cluster itself: a worker died (KilledWorker), lost data
        raise ComputeError(
            f"the Dask cluster failed while {what}: {type(exc).__name__}: {exc} "
            "(a worker out of memory is killed: give the workers more memory or lower "
            "hpcframe.config.block_rows)",
            [],
        ) from exc


def _run_scan(outs, client, stats, plan_scan):
    from .io.sources import source_label

    t_plan = time.perf_counter()
    comm = Comm()
    source = outs[0].node.scan().source
    label = source_label(source)
    try:
        scan = plan_scan(outs, comm)
    except BaseException as exc:
        comm.agree(failure(comm, f"planning the scan of {label}", exc))
        raise  # pragma: no cover - agree raised
    leaves, plans, wanted, costs = scan.leaves, scan.plans, scan.wanted, scan.costs
    n = len(leaves)
    stats["partitions_total"] += n
    stats["partitions_pruned"] += sum(1 for c in costs if c == 0)
    read_cols = scan.read_columns()
    run = None
    if callbacks.active():
        from .execute import _run_info

        try:
            run = _run_info(comm, source, outs, leaves, wanted, list(range(n)), t_plan)
        except BaseException as exc:
            comm.agree(failure(comm, "starting the diagnostics callbacks", exc))
    none = ([None] * len(outs), [])  # a tree node no leaf below was read for
    held: list = []  # the small futures (times of each leaf, the root): cancelled on failure
    error = None
    try:
        # the scan's shared objects travel to the workers once, not once per task
        src_f, outs_f = client.scatter([source, list(outs)], hash=False)
        host_threads: dict = {}
        for w in client.scheduler_info().get("workers", {}).values():
            host = str(w.get("host", ""))
            host_threads[host] = host_threads.get(host, 0) + int(w.get("nthreads", 1))
        level: list = []
        timing: dict = {}  # with diagnostics: leaf -> future of its times (partials stay there)
        # head(n) without a filter: as the local engine, the leaves after the first n rows are
        # not read, and the last one only as far as needed (row counts known from metadata)
        from .execute import _first_rows
        from .io.sources import source_rows_exact

        exact = source_rows_exact(source)
        limits = [
            None
            if getattr(o, "ordered", False) or not exact or plans[k].filters
            else getattr(o, "limit", None)
            for k, o in enumerate(outs)
        ]
        produced = [0] * len(outs)
        n_tasks = 0
        for i, leaf in enumerate(leaves):
            wants, parts = wanted[i]
            wants = [w and (lim is None or n < lim) for w, lim, n in zip(wants, limits, produced)]
            if any(wants) and all(lim is not None for w, lim in zip(wants, limits) if w):
                need = max(lim - n for w, lim, n in zip(wants, limits, produced) if w)
                parts = _first_rows(parts, need)
            rows = sum(p.num_rows for p in parts)
            produced = [n + rows if w else n for w, n in zip(wants, produced)]
            if any(wants):
                f = client.submit(
                    _leaf_task,
                    src_f,
                    leaf,
                    outs_f,
                    list(wants),
                    list(parts),
                    read_cols,
                    host_threads,
                    pure=False,
                )
                if run is not None:
                    timing[i] = client.submit(_times, f, pure=False)
                level.append(f)
                n_tasks += 1
            else:
                level.append(none)
        held.extend(timing.values())
        # the fixed tree of hpcframe.tree: node (L, i) = combine(node(L-1, 2i), node(L-1, 2i+1)),
        # a lone left child promoted unchanged; one task folds FAN_IN nodes (3 levels)
        while len(level) > 1:
            nxt = []
            for j in range(0, len(level), FAN_IN):
                group = level[j : j + FAN_IN]
                if all(isinstance(x, tuple) for x in group):  # no leaf read below: here
                    nxt.append(_fold(outs, group))
                elif len(group) == 1:
                    nxt.append(group[0])
                else:
                    nxt.append(client.submit(_combine_task, outs_f, label, *group, pure=False))
                    n_tasks += 1
            level = nxt
        root = level[0] if level else none
        del level
        if not isinstance(root, tuple):
            held.append(root)
        if run is not None:
            _follow(client, timing, leaves, run, n_tasks)
        if not isinstance(root, tuple):
            root = _result(root, f"computing {label}", n_tasks)
        partials, rows = _node(root)
        stats["partitions_read"] += len(rows)
        stats["rows_read"] += sum(rows)
        results = {}
        try:
            for o, p in zip(outs, partials):
                # finish(): None with no leaves, else the root of the tree
                results[id(o)] = o.finalize(None if n == 0 else p)
        except BaseException as exc:
            comm.agree(failure(comm, f"finishing the results of {label}", exc))
    except KeyboardInterrupt as exc:  # Ctrl-C in the notebook: stop the tasks, as the ranks stop
        error = exc
        if held:
            client.cancel(held)
        raise JobInterrupted(
            f"interrupted while computing {label} on Dask; its tasks were cancelled",
            [(0, comm.host, f"computing {label}", "KeyboardInterrupt")],
        ) from None
    except BaseException as exc:
        error = exc
        if held:
            client.cancel(held)
        raise
    finally:
        if run is not None:
            try:
                callbacks.emit("on_run_end", run, error)
            except BaseException as cb_exc:
                if error is None:
                    raise
                import warnings

                warnings.warn(f"diagnostics callback on_run_end failed: {cb_exc!r}", stacklevel=2)
    return results


def _follow(client, timing, leaves, run, n_tasks) -> None:
    """Report every finished leaf to the diagnostics callbacks, as the tasks complete."""
    from distributed import as_completed

    small = {f: i for i, f in timing.items()}
    for f in as_completed(list(small), loop=client.loop):
        i = small[f]
        times = dict(_result(f, f"processing partition {leaves[i].describe()}", n_tasks))
        shift = time.perf_counter() - time.time()  # the worker's wall clock -> this perf_counter
        for key in ("start", "read_end", "compute_end", "end"):
            times[key] += shift
        callbacks.emit("on_leaf_done", run, leaves[i], times)
