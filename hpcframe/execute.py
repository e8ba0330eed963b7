"""Running outputs: one shared pass over each dataset, on every rank (SPMD).

For every Scan the outputs read: discover partitions (collectively), cut them into blocks
(:attr:`hpcframe.config.Config.block_rows`), prune blocks whose statistics exclude every
output's predicate, assign contiguous block ranges to ranks balanced by rows, then stream my
blocks: read once (only the needed columns), cast and filter in Arrow, run each output's
pandas steps and chunk function, and fold the partial into a :class:`~hpcframe.tree.TreeStack`.
Ranks agree on success before exchanging tree nodes, so a failure anywhere is raised on every
rank instead of leaving the others waiting. Every ``BaseException`` of user code (``sys.exit()``,
``KeyboardInterrupt``) reaches the agreement; a SIGINT is raised only while a rank reads or runs
user code, and kept for the next agreement while it is between collectives
(:func:`hpcframe.comm.interrupt_guard`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import aggregations as A
from . import callbacks
from . import expr as E
from . import plan as P
from .comm import (
    block_in_flight,
    checkpoint_failure,
    communicator,
    deferred,
    failure,
    install_checkpoint_handlers,
    interrupt_guard,
    interruptible,
    take_interrupt,
)
from .config import config, usable_cores
from .expr import evaluate_with_dictionaries
from .io.dataset import DatasetError
from .io.ranked import RankedData, agree_schema
from .io.sources import source_format, source_label, source_rows_exact
from .io.types import NULLS, OBJECT, block_to_pandas, dtype_flag, mask_to_numpy, normalize_table
from .outputs import (  # empty_meta, *_frame_dtypes, widen_*
    BlockCategories,
    Composite,
    Output,
    empty_meta,
    group_frame_dtypes,
    join_frame_dtypes,
    observed_categories,
    recode_pieces,
    stack_frames,
    widen_frame,
    widen_result,
)
from .physical import Leaf, partition_owners, plan_scan, scans_of
from .stages import POSITION, AggStage, JoinStage, PersistStage, ShuffleStage, SortStage
from .tree import TreeStack, finish

_last_stats: dict = {}


def last_run_stats() -> dict:
    """Counters of this rank's part in the last computation: ``partitions_total`` (blocks in
    the datasets), ``partitions_pruned``, ``partitions_read`` (blocks this rank read),
    ``rows_read``, ``shuffled_outputs`` (group-bys finished with a hash shuffle),
    ``exchanges_arrow`` and ``exchanges_pickled`` (data exchanges of shuffles and group-by
    results as Arrow buffers, or pickled because some value could not be Arrow),
    ``stage_columns_pruned`` (columns the stages computed in this run left out because no
    reader needs them, see :mod:`hpcframe.pruning`), ``stage_bytes`` (bytes of the
    partitions of those stages, over all ranks), ``stages_reused`` (stages held from an
    earlier computation and used again, see :mod:`hpcframe.reuse`), ``stages_released_early``
    (stages only other stages read, freed as soon as those were computed, see
    :func:`prepare`), ``seconds``.

    Returns
    -------
    dict
        A copy of the counters (empty before the first computation).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df, npartitions=2)
    >>> flights.len().compute()
    4
    >>> stats = hf.last_run_stats()
    >>> stats["partitions_read"], stats["rows_read"]
    (2, 4)
    """
    return dict(_last_stats)


def compute(outputs, comm=None, root=None):
    """Results of ``outputs`` (a list), computed together; see :func:`hpcframe.compute`."""
    install_checkpoint_handlers()  # HPCFRAME_CHECKPOINT_SIGNALS, if set
    with communicator(comm) as c, interrupt_guard(c), deferred(), stage_scope(), process_settings(c):
        if root is not None and not (0 <= root < c.size):
            raise ValueError(f"root={root} is not a rank of a communicator of size {c.size}")
        groups = scans_of(outputs)
        results: dict[int, object] = {}
        _last_stats.clear()
        _last_stats.update(
            partitions_total=0,
            partitions_pruned=0,
            partitions_read=0,
            rows_read=0,
            shuffled_outputs=0,
            exchanges_arrow=0,
            exchanges_pickled=0,
            stage_columns_pruned=0,
            stage_bytes=0,
            stages_reused=0,  # stages held from an earlier computation (hpcframe.reuse)
            stages_released_early=0,  # stages only other stages read, freed once those were computed
        )
        t0 = time.perf_counter()
        leaves = [o for outs in groups for o in outs]
        with scalars_resolved([o.node for o in leaves], c, [o.columns() for o in leaves]):
            # the stages they read, counted too, each with the columns these outputs need
            prepare([o.node for o in leaves], c, [o.columns() for o in leaves])
            for outs in groups:
                results.update(_run_scan(outs, c, root))
        _last_stats["seconds"] = time.perf_counter() - t0
        if root is not None and c.rank != root:
            return [None] * len(outputs)
        return [_finish(o, results) for o in outputs]


@contextlib.contextmanager
def scalars_resolved(nodes, comm, needs=None):
    """Collective: inside, every lazy scalar (:class:`hpcframe.expr.ScalarRef`) the chains
    ``nodes`` use — in their own expressions or in the stages below them — is computed and is
    a literal (see :func:`_resolve_scalars`; ``needs``: per node, the columns its reader takes,
    as for :func:`prepare`). Every computation that evaluates a plan runs inside one:
    :func:`compute`, writing a frame, ``persist``. No collective when none is used."""
    needs = [None] * len(nodes) if needs is None else list(needs)
    with E.resolving(_resolve_scalars(list(nodes), needs, comm)):
        yield


def _resolve_scalars(nodes, needs, comm) -> list:
    """Collective: the value of every lazy scalar the chains ``nodes`` use
    (``df[df.x > df.x.mean()]``), as ``(reference, value)`` pairs, on every rank: a scalar
    used by another's plan first. Stages the scalars and the chains both read (a join under a
    sum and a group-by) are computed once before, with the columns all of them need — except
    those that use a scalar themselves (computed later, by the computation that reads them).
    Empty when none is used (no collective)."""
    from .stages import scalar_refs_read, stage_scalar_refs, stages_below

    order: list = []

    def add(ref) -> None:
        for inner in scalar_refs_read([o.node for o in ref.output.leaves()]):
            add(inner)
        if all(ref is not r for r in order):
            order.append(ref)

    for ref in scalar_refs_read(nodes):
        if not ref.resolved:  # (resolved: by the computation this one runs inside)
            add(ref)
    if not order:
        return []
    every = list(zip(nodes, needs)) + [(o.node, o.columns()) for ref in order for o in ref.output.leaves()]
    ready = [(n, c) for n, c in every if not any(stage_scalar_refs(s) for s in stages_below([n]))]
    if ready:
        prepare([n for n, _ in ready], comm, [c for _, c in ready])
    outer = [n for n, _ in every]  # the stages they read stay held for the later prepares
    values: list = []
    for ref in order:
        with E.resolving(values):
            groups = scans_of([ref.output])
            got: dict[int, object] = {}
            mine = [o for outs in groups for o in outs]
            prepare([o.node for o in mine], comm, [o.columns() for o in mine], keep=outer)
            for outs in groups:
                got.update(_run_scan(outs, comm, None))
            values.append((ref, _finish(ref.output, got)))
    return values


_threads_set = False


@contextmanager
def process_settings(comm):
    """This process's settings while it computes on ``comm`` (every computation that
    evaluates a plan runs inside: :func:`compute`, writing a frame, ``persist``): Arrow's
    and numexpr's thread pools get this rank's share of the node's cores (:func:`_share_cores`,
    once per process), and NumPy asks for transparent huge pages as ``config.huge_pages``
    says — with "off" (the default), not until the computation ends, when NumPy's own
    choice is back; glibc's malloc takes even its largest buffers from the heap until then
    (:func:`_large_buffers_from_heap`).

    Why "off": NumPy advises huge pages (``madvise(MADV_HUGEPAGE)``) for arrays of 4 MiB
    and more. Where the kernel's ``transparent_hugepage/defrag`` is ``madvise`` (the usual
    default), such a fault compacts memory first when no huge page is free — after other
    processes have fragmented it, that stalls — and every huge page is zeroed whole. The
    engine allocates and frees arrays of that size per block; at TPC-H SF 10 on 2 ranks,
    asking for none took about 5 % off the CPU time of the longest queries
    (docs/benchmarks.md, "Session 27")."""
    _share_cores(comm)
    switch = _numpy_huge_pages_switch() if config.huge_pages == "off" else None
    with _large_buffers_from_heap():
        if switch is None:
            yield
            return
        before = switch(False)
        try:
            yield
        finally:
            switch(before)


def _numpy_huge_pages_switch():
    """NumPy's switch of its huge-page requests (``_set_madvise_hugepage(enabled)``, which
    returns the previous value; private, present since NumPy 1.20), or ``None`` where this
    NumPy has none."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return getattr(module, "_set_madvise_hugepage", None)
    return None


def _share_cores(comm) -> None:
    """Ranks on one node share its cores: give Arrow's and numexpr's thread pools this rank's
    share (once per process), so that N ranks on N cores do not run N² threads."""
    global _threads_set
    if _threads_set or comm.size == 1:
        return
    local = comm.local_size
    _threads_set = True
    per_rank = max(1, (os.cpu_count() or 1) // max(local, 1))
    pa.set_cpu_count(per_rank)
    pa.set_io_thread_count(max(per_rank, 2))
    try:
        import numexpr

        numexpr.set_num_threads(per_rank)
    except ImportError:
        pass


def _finish(o, results):
    if isinstance(o, Composite):
        return o.finish([_finish(p, results) for p in o.parts])
    return results[id(o)]


def _run_scan(outs, comm, root):
    t_plan = time.perf_counter()  # planning (discovery, pruning) is part of the run's time
    source = outs[0].node.scan().source
    error = None
    scan = None
    try:  # not interruptible: discovery has collectives
        scan = plan_scan(outs, comm)
    except BaseException as exc:  # agree first: another rank may have failed too
        error = failure(comm, f"planning the scan of {source_label(source)}", exc)
    comm.agree(error or _interrupted(comm, lambda: f"planning the scan of {source_label(source)}"))
    assert scan is not None  # every rank planned (or every rank raised in agree)
    leaves, plans, wanted, costs = scan.leaves, scan.plans, scan.wanted, scan.costs
    mine = scan.ranks[comm.rank]
    read_cols = scan.read_columns()
    stacks = [TreeStack(len(leaves), o.combine) for o in outs]
    _add_stat("partitions_total", len(leaves))
    _add_stat("partitions_pruned", sum(1 for c in costs if c == 0))
    run = None
    if callbacks.active():
        context = "starting the diagnostics callbacks"
        try:
            run = _run_info(comm, source, outs, leaves, wanted, mine, t_plan)
        except BaseException as exc:
            error = failure(comm, context, exc)
        comm.agree(error or _interrupted(comm, context))
    cache = _ReadCache(source, read_cols)
    # blocks' partials and decoded columns kept by hpcframe.cache (issue 14)
    from .cache import for_scan

    cache.kept = for_scan(source, plans)
    # head(n): once this rank holds n rows, its later leaves cannot be among the first n
    # (not for an ordered output, a top-n: its first rows can be in any leaf)
    limits = [None if getattr(o, "ordered", False) else getattr(o, "limit", None) for o in outs]
    produced = [0] * len(outs)
    # a leaf's partitions are cut at n rows only where their row counts are exact (a CSV
    #    byte range's is an estimate: cut there, head(n) lost rows and skipped others)
    cache.rows_exact = source_rows_exact(source)
    # the same decision on every rank (local_size may be collective)
    _settle_reads()
    on = _readahead_on(source, cache, limits, comm)
    cache.ahead = _ReadAhead(bool(getattr(source, "concurrent_reads", False))) if on else None
    notices = comm.notices()  # a failing rank tells the others to stop reading
    try:
        error = _read_my_leaves(
            leaves, wanted, plans, stacks, limits, produced, cache, run, mine, comm, notices
        )
    except BaseException:
        notices.close()
        raise
    cache.clear()
    try:
        nodes = [s.nodes() for s in stacks]
        error = error or _interrupted(comm, lambda: f"reading {source_label(source)}")
        try:
            _collective(run, "agree", comm.agree, error or _unsendable(comm, nodes))
        except BaseException as exc:
            notices.close(getattr(exc, "_notices_to_me", 0))
            raise
        notices.close()
        widen = _agree_nulls(source, comm)
        spread = [isinstance(o, _Spread) for o in outs]
        shuffle = _shuffle_choice(outs, nodes, comm)
        plain = [[] if sh or sp else n for n, sh, sp in zip(nodes, shuffle, spread)]
        if root is None:
            everyone = _collective(run, "exchange", comm.allgather, plain)
        else:
            everyone = _collective(run, "exchange", comm.gather, plain, root)
        shuffled = {
            k: _collective(run, "shuffle", _shuffle_exchange, o, nodes[k], len(leaves), comm, root)
            for k, o in enumerate(outs)
            if shuffle[k]
        }
        for k, o in enumerate(outs):
            if spread[k]:
                shuffled[k] = _collective(run, "shuffle", o.spread, nodes[k], len(leaves), comm)
        results, error = {}, None
        if root is None or comm.rank == root:
            try:
                with interruptible():  # user combines/finalize: no collective inside
                    results = _finish_results(outs, shuffle, shuffled, everyone, len(leaves))
                    if widen:  # the dtypes of the whole dataset
                        results = {k: widen_result(o, results[k]) for k, o in ((id(o), o) for o in outs)}
            except BaseException as exc:
                error = failure(comm, f"finishing the results of {source_label(source)}", exc)
        error = error or _interrupted(comm, lambda: f"combining the results of {source_label(source)}")
        _collective(run, "agree", comm.agree, error)  # a root-only failure reaches every rank
    except BaseException as exc:
        if run is not None:
            try:
                callbacks.emit("on_run_end", run, exc)
            except BaseException as cb_exc:  # keep the (agreed) error of the computation
                import warnings

                warnings.warn(f"diagnostics callback on_run_end failed: {cb_exc!r}", stacklevel=2)
        raise
    if run is not None:  # a callback failing on one rank fails every rank, not just this one
        error = None
        try:
            callbacks.emit("on_run_end", run, None)
        except BaseException as exc:
            error = failure(comm, "running a diagnostics callback (on_run_end)", exc)
        comm.agree(error or _interrupted(comm, "running the diagnostics callbacks"))
    return results


# integer/bool columns with an empty field in some block of a CSV dataset
def _agree_nulls(source, comm) -> bool:
    """Collective for sources that learn while reading which integer or bool columns hold
    a null (CSV, :meth:`~hpcframe.io.csv.CSVSource.learned_nulls`; the same source on every
    rank, so every rank calls it, right after the agreement that follows the reads): the
    union over the ranks is flagged in the source's schema. Returns whether results must be
    cast (:func:`hpcframe.outputs.widen_result`): a column was flagged now, so blocks of
    this scan were converted without it (a flag known when the scan was planned made every
    block float64/object already). No collective for other sources."""
    learned = getattr(source, "learned_nulls", None)
    if learned is None:
        return False
    mine = sorted(learned())
    union = {c for got in comm.allgather(mine) for c in got} if comm.size > 1 else set(mine)
    return bool(source.adopt_nulls(union))


def _read_my_leaves(leaves, wanted, plans, stacks, limits, produced, cache, run, mine, comm, notices):
    """Read and compute this rank's leaves, folding partials into ``stacks``. Returns this
    rank's failure (``None`` if none). Stops at a failure (and tells the other ranks) or when
    another rank's notice says it failed."""
    # the leaf read after each leaf (the next one that reads anything); reads
    #    still happen one at a time, in leaf order, and the one in flight is waited for
    #    before this returns (a source's open streams are never used by two threads)
    ahead = cache.ahead
    upcoming = {}
    if ahead is not None:
        reading = [i for i in mine if any(wanted[i][0]) and wanted[i][1]]
        upcoming = {i: (leaves[j], wanted[j][1]) for i, j in zip(reading, reading[1:])}
    try:
        return _read_leaves(
            leaves, wanted, plans, stacks, limits, produced, cache, run, mine, comm, notices, upcoming
        )
    finally:
        if ahead is not None:
            ahead.drain()


def _read_leaves(leaves, wanted, plans, stacks, limits, produced, cache, run, mine, comm, notices, upcoming):
    """The loop of :func:`_read_my_leaves` (``upcoming``: leaf -> the leaf to read ahead)."""
    error = None
    for i in mine:
        leaf = leaves[i]
        # a checkpoint signal stops this rank here, at a block boundary
        error = checkpoint_failure(comm, f"starting partition {leaf.describe()}")
        if error is not None:
            break
        if notices.received():  # another rank failed: its error is raised at the agreement
            break
        t0 = time.perf_counter()
        cache.read_end, cache.rows, cache.rows_out = None, 0, None
        cache.upcoming = upcoming.get(i)  # read once this leaf's table is there
        wants, parts = wanted[i]
        wants = [w and (lim is None or n < lim) for w, lim, n in zip(wants, limits, produced)]
        if (
            cache.rows_exact
            and any(wants)
            and all(
                lim is not None and not plans[k].filters for k, (w, lim) in enumerate(zip(wants, limits)) if w
            )
        ):
            # only unfiltered head(n) outputs want this leaf: read just enough partitions
            need = max(lim - n for w, lim, n in zip(wants, limits, produced) if w)
            parts = _first_rows(parts, need)
        try:
            # reading and user code: a SIGINT stops it at once (and a 2nd checkpoint signal)
            with interruptible(), block_in_flight():
                partials = _run_leaf(leaf, plans, wants, parts, cache)
                t_computed = time.perf_counter()
                for k, (stack, p) in enumerate(zip(stacks, partials)):
                    stack.push(i, p)  # runs combines: user code, may raise
                    if limits[k] is not None and p is not None:
                        produced[k] += len(p)
        except BaseException as exc:  # sys.exit() and KeyboardInterrupt too
            error = failure(comm, f"processing partition {leaf.describe()}", exc)
            break
        if run is not None:
            try:
                callbacks.emit(
                    "on_leaf_done",
                    run,
                    leaf,
                    {
                        "start": t0,
                        "read_end": cache.read_end or t0,
                        "compute_end": t_computed,
                        "end": time.perf_counter(),
                        "rows": cache.rows,
                        "rows_out": cache.rows_out,
                        "nbytes": sum(p.nbytes for p in wanted[i][1]),
                    },
                )
            except BaseException as exc:
                error = failure(comm, "running a diagnostics callback (on_leaf_done)", exc)
                break
    if error is not None and notices.send():
        error = error.with_notice()
    return error


def _finish_results(outs, shuffle, shuffled, everyone, n):
    """The results of ``outs`` (on every rank, or on root), from the exchanged tree nodes or
    the shuffled tables."""
    results = {}
    for k, o in enumerate(outs):
        if isinstance(o, _Spread):
            results[id(o)] = shuffled[k]
        elif shuffle[k]:
            tables = [t for t in shuffled[k] if t is not None]
            # (each rank's groups: a categorical column has that rank's categories)
            results[id(o)] = o.shape_result(stack_frames(tables) if tables else None)
        else:
            all_nodes = [node for rank_nodes in everyone for node in rank_nodes[k]]
            results[id(o)] = o.finalize(finish(n, all_nodes, o.combine))
    return results


def _unsendable(comm, obj):
    """A failure if ``obj`` cannot be pickled (e.g. a map_partitions result holding a lambda):
    found before the exchange, so no rank is left waiting in it."""
    if not comm.is_mpi:  # the serial engine sends nothing (mpi4py pickles even on 1 rank)
        return None
    try:
        pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # a user __reduce__ may even call sys.exit()
        return failure(comm, "sending the partial results to the other ranks", exc)
    return None


def _shuffle_choice(outs, nodes, comm) -> list[bool]:
    """Collective: which group-by outputs are large enough to finish with a shuffle."""
    candidates = [
        bool(getattr(o, "keys", None)) and hasattr(o, "finish_table") and not isinstance(o, _Spread)
        for o in outs
    ]
    if comm.size == 1 or not any(candidates) or config.shuffle == "gather":
        return [False] * len(outs)
    if config.shuffle == "shuffle":
        return candidates
    local = [sum(len(p) for _, _, p in n if p is not None) if c else 0 for n, c in zip(nodes, candidates)]
    totals = [sum(x) for x in zip(*comm.allgather(local))]
    return [c and t >= config.shuffle_rows for c, t in zip(candidates, totals)]


def _route(table, keys, size):
    """Destination rank of every row of a partial table: a hash of its group keys' VALUES.
    One key column can arrive with different dtypes from different partitions (bool, or
    object with None where a block has nulls; int64, or float64 where it has NaN;
    categorical or str), so the hash must not depend on the dtype: see :func:`_key_hash`."""
    import numpy as np

    h = None
    with np.errstate(over="ignore"):
        for k in keys:
            kh = _key_hash(table[k])
            if h is None:  # (0 * P ^ kh: the first key's hash itself)
                h = kh
            else:
                np.multiply(h, np.uint64(0x100000001B3), out=h)
                np.bitwise_xor(h, kh, out=h)
    if h is None:
        h = np.zeros(len(table), dtype=np.uint64)
    return (h % np.uint64(size)).astype(np.int64)


#: :func:`_key_hash` of every missing value
_MISSING_HASH = np.uint64(0x9E3779B97F4A7C15)


def _mix64(v: np.ndarray) -> np.ndarray:
    """``pandas.util.hash_array``'s finaliser (splitmix64) of the uint64 array ``v``, in
    place (``v`` is returned): the same numbers, without a temporary array per step."""
    t = np.empty_like(v)
    with np.errstate(over="ignore"):
        np.right_shift(v, np.uint64(30), out=t)
        np.bitwise_xor(v, t, out=v)
        np.multiply(v, np.uint64(0xBF58476D1CE4E5B9), out=v)
        np.right_shift(v, np.uint64(27), out=t)
        np.bitwise_xor(v, t, out=v)
        np.multiply(v, np.uint64(0x94D049BB133111EB), out=v)
        np.right_shift(v, np.uint64(31), out=t)
        np.bitwise_xor(v, t, out=v)
    return v


def _number_hash(values: np.ndarray) -> np.ndarray:
    """:func:`_key_hash` of a NumPy bool, integer or float array: each value's float64 bits
    (``-0.0`` as ``0.0``) mixed as ``pandas.util.hash_array`` mixes them, NaN as
    :data:`_MISSING_HASH`."""
    if values.dtype.kind == "f":
        floats = values.astype(np.float64)  # (a copy: changed in place below)
        missing = np.isnan(floats)
        has_missing = bool(missing.any())
        if has_missing:
            floats[missing] = 0.0
        floats += 0.0  # -0.0 -> 0.0
        h = _mix64(floats.view(np.uint64))
        if has_missing:
            h[missing] = _MISSING_HASH
        return h
    return _mix64(values.astype(np.float64).view(np.uint64))


def _key_hash(col):
    """A uint64 per value that depends only on the value: numbers and bools are hashed as
    float64 (3, 3.0 and True/1.0 meet; -0.0 is 0.0), datetimes as UTC nanoseconds, strings
    as strings, and every kind of missing value (None, NaN, NaT) alike."""
    import numpy as np

    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":  # no missing value but NaN
        return _number_hash(col.to_numpy())
    if isinstance(dtype, pd.CategoricalDtype):  # each category hashed once
        codes = col.cat.codes.to_numpy()
        if not len(col.cat.categories):
            return np.full(len(col), _MISSING_HASH, dtype=np.uint64)
        by_code = np.append(_key_hash(pd.Series(col.cat.categories)), _MISSING_HASH)
        return by_code[codes]  # (code -1, a missing value: the last)
    missing = pd.isna(col).to_numpy()
    kind = getattr(col.dtype, "kind", "O")
    if kind in "biuf":
        values = col.to_numpy(dtype="float64", na_value=np.nan)
    elif kind == "M":
        values = col.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(col.dtype, "tz", None) else col
        values = values.astype("datetime64[ns]").to_numpy().view("int64").astype("float64")
    elif isinstance(col.dtype, pd.StringDtype):  # only strings and missing values
        # hash each distinct string once (factorize runs in Arrow for Arrow-backed strings):
        # no Python object per row
        codes, uniques = pd.factorize(col)
        unique_hashes = pd.util.hash_array(np.asarray(uniques, dtype=object), categorize=False)
        h = np.zeros(len(col), dtype=np.uint64)
        h[codes >= 0] = unique_hashes[codes[codes >= 0]]
        values = None
    else:  # object: numbers (bools with nulls) as floats, everything else as text
        arr = col.to_numpy(dtype=object)
        numbers = (bool, int, float, np.bool_, np.number)
        numeric = np.fromiter((isinstance(v, numbers) for v in arr), bool, len(arr))
        numeric &= ~missing
        h = np.zeros(len(arr), dtype=np.uint64)
        if numeric.any():
            h[numeric] = _number_hash(arr[numeric].astype("float64"))
        rest = ~numeric & ~missing
        if rest.any():
            text = np.array([v if isinstance(v, str) else repr(v) for v in arr[rest]], dtype=object)
            h[rest] = pd.util.hash_array(text, categorize=False)
        values = None
    if values is not None:  # numbers and times as float64, every missing one as NaN
        return _number_hash(np.where(missing, np.nan, values))
    return np.where(missing, _MISSING_HASH, h).astype(np.uint64)


def _shuffle_exchange(o, my_nodes, n, comm, root):
    """Finish output ``o`` with a hash shuffle: every tree node is split by group hash, each
    rank completes the (same, fixed) tree for its groups, and the finished tables meet on
    ``root`` (or everywhere): returns the list of tables there, ``None`` elsewhere. Per group
    the bracketing is the one of the plain path, so results are identical bit for bit."""
    _add_stat("shuffled_outputs", 1)
    sends = [[] for _ in range(comm.size)]
    for level, i, p in my_nodes:
        if p is None or len(p) == 0:
            for r in range(comm.size):
                sends[r].append((level, i, None))
            continue
        dest = _route(p, o.keys, comm.size)
        for r in range(comm.size):
            piece = p[dest == r]
            # an empty piece still carries the key dtypes (bool vs object with None), so
            # every rank concatenates the same dtypes as the plain path
            sends[r].append((level, i, piece.reset_index(drop=True)))
    received = _exchange_nodes(comm, sends, n)
    table, error = None, None
    context = "finishing the groups of a shuffled group-by"
    try:
        with interruptible():  # user combines: no collective inside
            table = o.finish_table(finish(n, [node for lst in received for node in lst], o.combine))
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or _interrupted(comm, context))
    if root is None:
        return comm.allgather(table)
    return comm.gather(table, root=root)


def _interrupted(comm, context):
    """A failure for the next agreement if a SIGINT arrived while this rank was between
    collectives (kept pending by :func:`hpcframe.comm.deferred`), else ``None``."""
    if take_interrupt():
        return failure(comm, context() if callable(context) else context, KeyboardInterrupt())
    return None


def _first_rows(parts, n):
    """The leading partitions of ``parts`` that hold at least ``n`` rows."""
    out, rows = [], 0
    for p in parts:
        if rows >= n:
            break
        out.append(p)
        rows += p.num_rows
    return out


def _collective(run, name, fn, *args):
    if run is None:
        return fn(*args)
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        try:
            callbacks.emit("on_collective", run, name, t0, time.perf_counter())
        except BaseException as exc:  # must not skip this rank's next collective
            import warnings

            warnings.warn(f"diagnostics callback on_collective failed: {exc!r}", stacklevel=2)


def _run_info(comm, source, outs, leaves, wanted, my_leaves, t_plan=None):
    mine = [i for i in my_leaves if wanted[i][1]]
    run = callbacks.RunInfo(
        comm=comm,
        source=source_label(source),
        outputs=[o.text() for o in outs],
        source_format=source_format(source),
        rows_exact=source_rows_exact(source),
        t_plan=t_plan,
        leaves_total=len(leaves),
        rows_total=sum(p.num_rows for _, ps in wanted for p in ps),
        bytes_total=sum(p.nbytes for _, ps in wanted for p in ps),
        my_leaves=mine,
        my_rows=sum(p.num_rows for i in mine for p in wanted[i][1]),
        my_bytes=sum(p.nbytes for i in mine for p in wanted[i][1]),
    )
    callbacks.emit("on_run_start", run)
    return run


class _ReadCache:
    """Reads a parent partition once for all its blocks (one parent in memory at a time)."""

    def __init__(self, source, columns):
        self.source, self.columns = source, columns
        self.parent, self.table = None, None
        self.read_end, self.rows, self.rows_out = None, 0, None
        self.kept = None  # a hpcframe.cache.ScanCache when a cache is active
        self.rows_exact = True  # the partitions' row counts are exact (not CSV estimates)
        # a _ReadAhead when on, and the (leaf, parts) to read after this one
        self.ahead: _ReadAhead | None = None
        self.upcoming = None

    def get(self, leaf: Leaf, parts):
        # decoded column chunks from hpcframe.cache when a cache is active
        kept, ahead = self.kept, self.ahead
        nxt = self._next_read(leaf) if ahead is not None else None
        if leaf.parent is None:
            if kept is not None:
                table = kept.read(parts, self.columns, lambda cols: read_parts(self.source, parts, cols))
            elif ahead is not None:  # read in the background, or now
                table = ahead.take(leaf.index, self._reader(leaf, parts), _paths(leaf, parts), nxt)
            else:
                table = read_parts(self.source, parts, self.columns)
        else:
            if self.parent is not leaf.parent:
                self.table = None
                if kept is not None:
                    parent = leaf.parent
                    self.table = kept.read(
                        (parent,), self.columns, lambda cols: self.source.read(parent, cols)
                    )
                elif ahead is not None:
                    self.table = ahead.take(leaf.index, self._reader(leaf, parts), _paths(leaf, parts), nxt)
                else:
                    self.table = self.source.read(leaf.parent, self.columns)
                self.parent = leaf.parent
            block = leaf.parts[0]
            table = self.table.slice(block.start - leaf.parent.start, block.num_rows)
        self.read_end, self.rows = time.perf_counter(), table.num_rows
        _add_stat("rows_read", table.num_rows)
        if ahead is not None and nxt is not None:  # read the next leaf meanwhile
            ahead.start(nxt)
        return table

    def _reader(self, leaf: Leaf, parts):
        """A function that reads what ``leaf`` needs: its partitions, or its parent's rows."""
        source, columns, parent = self.source, self.columns, leaf.parent
        if parent is None:
            return lambda: read_parts(source, parts, columns)
        return lambda: source.read(parent, columns)

    def _next_read(self, leaf: Leaf):
        """``(index, read, files)`` of the read after ``leaf``'s (``None``: nothing to read,
        e.g. the next leaf is another block of ``leaf``'s parent)."""
        upcoming, self.upcoming = self.upcoming, None
        if upcoming is None:
            return None
        nxt, parts = upcoming
        if nxt.parent is not None and nxt.parent is leaf.parent:
            return None
        return nxt.index, self._reader(nxt, parts), _paths(nxt, parts)

    def clear(self):
        self.parent, self.table = None, None


# reading a rank's next block while it computes the current one (issue 11)
_READERS: list = []  # the pool of background reading threads of this process (when needed)
_IN_FLIGHT: list = []  # the reads started there and not yet waited for (Futures)


def _forget_readers_after_fork() -> None:
    """In a forked child the pool's threads do not exist (work submitted to the inherited
    pool would never run, and its reads in flight never finish): start afresh."""
    _READERS.clear()
    _IN_FLIGHT.clear()


os.register_at_fork(after_in_child=_forget_readers_after_fork)
#: sources that read files (decompressing, parsing, decoding releases the GIL); not memory
READAHEAD_FORMATS = ("csv", "parquet", "hdf5")


def _readahead_on(source, cache, limits, comm) -> bool:
    """Whether this scan reads ahead (:attr:`hpcframe.config.Config.readahead`): a file
    source, no cache (a cached block must not be read), no head(n) output (which may stop
    before the next block), and for ``"auto"`` a core to spare on this node. The same on
    every rank (``comm.local_size`` is collective the first time)."""
    mode = config.readahead
    if mode == "off" or cache.kept is not None or any(lim is not None for lim in limits):
        return False
    if source_format(source) not in READAHEAD_FORMATS:
        return False
    if mode == "on":
        return True
    local = comm.local_size if comm.size > 1 else 1
    return usable_cores() > local


def _settle_reads() -> None:
    """Wait for a read left running by an earlier scan (one interrupted while it waited for
    it): no two reads of one source ever run at once."""
    while _IN_FLIGHT:
        _wait(_IN_FLIGHT[-1])
        _forget(_IN_FLIGHT[-1])


def _wait(future) -> None:
    """Wait for ``future`` to end (its result or error is dropped)."""
    import concurrent.futures

    concurrent.futures.wait([future])


class _ReadAhead:
    """This rank's reads, at most one leaf ahead of the leaf it computes, in a background
    thread pool: :meth:`take` returns a leaf's rows (or raises its read's error, as if read
    here) and :meth:`start` begins reading the next leaf. Two reads run at once only when the
    source allows it (``concurrent_reads``) and for leaves of different files (a file's open
    stream is never read by two threads); a leaf nothing was started for is read by the
    calling thread. Reading (decompression, parsing, decoding) mostly releases the GIL, so it
    runs on the spare core while this rank computes. Memory: the leaf computed and the next
    one (a leaf's rows are dropped when it is computed)."""

    def __init__(self, concurrent: bool = False):
        self.pending: dict = {}  # leaf index -> Future of its rows
        #: the source may read two files at once (``concurrent_reads``, e.g. CSV's streams);
        #: otherwise one read at a time (overlapping only the computation)
        self.concurrent = concurrent

    def start(self, nxt) -> None:
        """Start reading ``nxt`` (``(index, read, files)``) unless it is started already."""
        index, read, _ = nxt
        if index in self.pending:
            return
        if not _READERS:
            import concurrent.futures

            _READERS.append(concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hpcframe-readahead"))
        future = _READERS[0].submit(read)
        _IN_FLIGHT.append(future)
        self.pending[index] = future

    def take(self, index: int, read, files, nxt):
        """The rows of leaf ``index`` (``read``: how to read them, from ``files``): read ahead
        (waiting for them), or read now. ``nxt``: the read after this one, started at once
        when it reads other files (both reads then run at once)."""
        future = self.pending.pop(index, None)
        if future is None:
            self.drain()  # (nothing else is expected in flight)
        if self.concurrent and nxt is not None and files and nxt[2] and not files & nxt[2]:
            self.start(nxt)
        if future is None:
            return read()
        try:
            return future.result()  # the read's own error, if it failed
        finally:
            if future.done():
                _forget(future)
            else:  # interrupted while waiting: drain() waits for it
                self.pending[index] = future

    def drain(self) -> None:
        """Wait for the reads in flight and drop them (the scan stops, or they were not
        needed): no read of this scan runs once this returns."""
        while self.pending:
            future = self.pending.pop(next(iter(self.pending)))
            _wait(future)
            _forget(future)


def _paths(leaf: Leaf, parts):
    """The files a leaf's read opens (``None``: not known; read alone)."""
    paths = {getattr(p, "path", None) for p in ([leaf.parent] if leaf.parent is not None else parts)}
    return None if None in paths else paths


def _forget(future) -> None:
    try:
        _IN_FLIGHT.remove(future)
    except ValueError:
        pass


def read_parts(source, parts, columns):
    """The rows of ``parts`` (contiguous partitions of one file) as one Arrow table."""
    many = getattr(source, "read_many", None)
    if many is not None:
        return many(parts, columns)
    import pyarrow as pa

    return pa.concat_tables([source.read(p, columns) for p in parts])


def _run_leaf(leaf: Leaf, plans, wants, parts, cache) -> list:
    if not any(wants):
        return [None] * len(plans)
    # partials of this block found in hpcframe.cache are not computed again
    kept, found = cache.kept, {}
    if kept is not None:
        t_start = time.perf_counter()
        found = kept.lookup(leaf, parts, wants)
        # a CSV block's nulls are recorded with its partials (or it is read)
        if found and hasattr(cache.source, "saw_nulls"):
            nulls = kept.block_nulls(parts, cache.columns)
            if nulls is None:
                found = {}
            else:
                cache.source.saw_nulls(nulls)
        if found:
            wants = [w and k not in found for k, w in enumerate(wants)]
            if not any(wants):
                cache.read_end = time.perf_counter()
                return [found.get(k) for k in range(len(plans))]
    out = _compute_leaf(leaf, plans, wants, parts, cache)
    if kept is not None:
        kept.keep(leaf, out, time.perf_counter() - t_start)
        read = cache.source.block_nulls(parts) if hasattr(cache.source, "saw_nulls") else None
        if read is not None:  # read from the file (not from memory): record
            kept.keep_block_nulls(parts, cache.columns, read)
        out = [found[k] if k in found else p for k, p in enumerate(out)]
    return out


# the scan hot path (issue 11, item 1): _compute_leaf, _no_rows, _arrow_mask
#    and the allocator setting below
_MALLOC_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters (malloc.h)
_MMAP_MAX_DEFAULT = 65536  # glibc's default M_MMAP_MAX (DEFAULT_MMAP_MAX)


_GLIBC: list = []  # the C library once looked up: [CDLL] with glibc, [None] without


def _glibc():
    """This process's glibc (``ctypes.CDLL``), or ``None`` elsewhere (musl's ``mallopt`` and
    ``malloc_trim`` do nothing or do not exist; other systems have neither)."""
    if not _GLIBC:
        libc = None
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                libc = ctypes.CDLL(None)
                libc.gnu_get_libc_version  # noqa: B018 -- glibc only
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            except (OSError, AttributeError):
                libc = None
        _GLIBC.append(libc)
    return _GLIBC[0]


def _tunable_glibc():
    """This process's glibc when hpcframe may tune its ``malloc`` (decided once per process),
    else ``None``: not with ``HPCFRAME_MALLOC_TUNE=0``, nor when the environment already tunes
    malloc (``GLIBC_TUNABLES`` with ``malloc``, ``MALLOC_*_`` variables), nor without glibc."""
    if not _TUNABLE:
        env = os.environ
        off = env.get("HPCFRAME_MALLOC_TUNE", "1").strip() in ("0", "false", "no", "off")
        tuned = "malloc" in env.get("GLIBC_TUNABLES", "") or any(
            k.startswith("MALLOC_") and k.endswith("_") for k in env
        )
        _TUNABLE.append(None if off or tuned else _glibc())
    return _TUNABLE[0]


_TUNABLE: list = []  # [glibc or None], once per process


def _keep_block_buffers() -> None:
    """Let glibc's malloc keep freed block-sized buffers for the next block (once per process).

    Every block allocates NumPy arrays of up to 8 MB per column (1,048,576 rows): by default
    glibc returns such memory to the system when freed (``mmap``, or trimming the heap) and
    every next block faults it in again page by page — at TPC-H SF 10 that was as much system
    time as computing (875,000 page faults for Q1 on one rank). Buffers up to 32 MB now come
    from the heap, and up to 256 MB of free heap is kept for reuse. Peak memory is unchanged
    (those buffers were live at the peak); the memory is returned by glibc later, not at once.
    Results are unaffected. Not done where :func:`_tunable_glibc` says no. While a computation
    runs, larger buffers come from the heap too (:func:`_large_buffers_from_heap`).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    libc = _tunable_glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)


_heap_only_depth = 0  # computations running inside _large_buffers_from_heap
_heap_only_lock = threading.Lock()


@contextmanager
def _large_buffers_from_heap():
    """While a computation runs, glibc's malloc takes every buffer from the heap, however
    large (``mallopt(M_MMAP_MAX, 0)``); when the outermost computation ends, buffers of 32 MB
    and more are ``mmap``-ed again (glibc's default count) and the free memory is returned to
    the system (:func:`release_memory`).

    :func:`_keep_block_buffers` keeps freed buffers of up to 32 MB for reuse — glibc allows no
    larger ``mmap`` threshold. A stage's whole-partition columns, exchange buffers and hash
    tables are larger (240 MB for 30 million int64 keys) and were each ``mmap``-ed, faulted in
    page by page and unmapped when freed, for every one of them again: at TPC-H SF 10 on 2
    ranks, q21 had 1.5 million page faults and 4-6 s of system time per rank. From the heap,
    a freed one is reused by the next (q21: ~1.2 million faults; CPU 0.98x over ten queries,
    q18 0.89x; see docs/benchmarks.md, "Session 31"). Peak memory is the same: those buffers were live at the
    peak, and each stage's end returns the free memory (``malloc_trim``). Results are
    unaffected. Not done where :func:`_tunable_glibc` says no."""
    global _heap_only_depth
    libc = _tunable_glibc()
    if libc is None:
        yield
        return
    with _heap_only_lock:
        if _heap_only_depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
        _heap_only_depth += 1
    try:
        yield
    finally:
        with _heap_only_lock:
            _heap_only_depth -= 1
            last = _heap_only_depth == 0
            if last:
                libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
        if last:
            release_memory()


def _compute_leaf(leaf: Leaf, plans, wants, parts, cache) -> list:
    _keep_block_buffers()
    table = cache.get(leaf, parts)
    _add_stat("partitions_read", 1)
    declared = plans[0].declared
    frames: dict = {}
    filtered: dict = {}
    positions = None  # the rows' positions in the leaf, found when first needed
    out: list = []  # per plan: its chunk of this leaf, or None
    for plan, want in zip(plans, wants):
        if not want:
            out.append(None)
            continue
        df = frames.get(plan.key)
        if df is None:
            pk = str(plan.arrow_pred)
            mask = filtered.get(pk)
            if mask is None:
                mask = filtered[pk] = _arrow_mask(table, plan, declared)
            t = table.select(plan.pandas_columns)
            if mask is not None and 2 * (pc.sum(mask).as_py() or 0) > t.num_rows:
                # most rows pass: cast first (elementwise, so the same values), then filter
                # the narrower columns (float64, not 16-byte decimals)
                t = _filter_columns(normalize_table(t, declared, plan.keep_dict), mask)
            elif mask is not None:
                kept = t.filter(mask)
                if kept.num_rows == 0 and t.num_rows:
                    t = _no_rows(t, declared, plan.keep_dict)
                else:
                    t = normalize_table(kept, declared, plan.keep_dict)
            else:
                t = normalize_table(t, declared, plan.keep_dict)
            if plan.pandas_columns:
                base = block_to_pandas(t, declared)
            else:  # only rows are counted
                base = pd.DataFrame(index=pd.RangeIndex(t.num_rows))
            if positions is None:
                positions = _read_positions(leaf, parts)
            if len(base) and (mask is not None or positions is not False):
                # rows keep their position in the block, as a pandas filter keeps labels (a
                # shuffle orders rows by it; apply shows it as the index; outputs add the
                # leaf's row_offset to it): partitions pruned inside the block count too
                kept_rows = np.flatnonzero(mask_to_numpy(mask)) if mask is not None else None
                if positions is not False:
                    kept_rows = positions if kept_rows is None else positions[kept_rows]
                base.index = pd.Index(kept_rows)
            df = frames[plan.key] = P.run_pandas(base, plan.steps, plan.after)
            if cache.rows_out is None:
                cache.rows_out = len(df)
        out.append(plan.out.chunk(df, leaf))
    return out


def _filter_columns(table: pa.Table, mask) -> pa.Table:
    """``table.filter(mask)`` column by column: each column keeps its own chunks (a table's
    filter cuts every column at the chunk boundaries of all, so a column made one array by
    the cast — decimals as float64 — came back in as many pieces as the row groups'
    dictionary columns, and pandas copied it to join them)."""
    if not table.num_columns:  # only rows are counted: a table of no columns keeps its length
        return table.filter(mask)
    return pa.Table.from_arrays([c.filter(mask) for c in table.columns], schema=table.schema)


def _read_positions(leaf: Leaf, parts):
    """The position in ``leaf`` of every row read from ``parts`` (int64), or ``False`` when
    they are the leaf's first rows (``0..n-1``). ``parts`` are the leaf's partitions that were
    read, in order: statistics may prune partitions inside a leaf, and the rows after a
    pruned partition keep the positions they have in the dataset (a filter's labels, the
    rows' order in a sort or a shuffle)."""
    i, start, pieces = 0, 0, []
    for p in parts:  # the leaf's own Partition objects (physical.wanted_parts)
        while leaf.parts[i] is not p:
            start += leaf.parts[i].num_rows
            i += 1
        pieces.append((start, p.num_rows))
        start += p.num_rows
        i += 1
    if i == len(pieces):  # no partition skipped before the last one read
        return False
    return np.concatenate([np.arange(s, s + n, dtype="int64") for s, n in pieces])


def _no_rows(table, declared, keep_dict):
    """``table`` normalized with no rows, but with every chunk's dictionary: pandas gives a
    filter that keeps no row all the categories (Arrow's filter and cast drop empty chunks)."""
    one = pa.Table.from_batches(
        [b.slice(0, 1) for b in table.to_batches() if b.num_rows], schema=table.schema
    )
    one = normalize_table(one, declared, keep_dict)
    return pa.Table.from_batches([b.slice(0, 0) for b in one.to_batches()], schema=one.schema)


def _arrow_mask(table, plan, declared):
    """The rows of ``table`` that pass ``plan``'s Arrow predicate (a boolean array), or
    ``None`` without one. Only the predicate's columns are cast (dates stay dates)."""
    if plan.arrow_pred is None:
        return None
    cols = [c for c in table.column_names if c in plan.pred_columns]
    # string terms on the dictionaries, not on every decoded string
    return evaluate_with_dictionaries(
        plan.arrow_pred,
        table.select(cols),
        lambda t: normalize_table(t, declared, keep_dates=True),
        plan.string_columns,
    )


def _add_stat(name, value):
    _last_stats[name] = _last_stats.get(name, 0) + value


# ------------------------------------------------------------------------------------------
# stages: sources computed by an earlier part of the plan (see hpcframe.stages)
# ------------------------------------------------------------------------------------------
_scopes: list[list] = []


@contextmanager
def stage_scope():
    """Stages materialised inside (and not persisted) are released when the outermost
    scope ends, on success or failure (a local operation on every rank)."""
    _scopes.append([])
    ok = False
    try:
        yield
        ok = True
    finally:
        made = _scopes.pop()
        if _scopes:
            _scopes[-1].extend(made)
        else:
            # stages retained for later computations (hpcframe.reuse)
            from . import reuse

            for stage in made:
                if not stage.persisted and not (ok and reuse.keep(stage)):
                    stage.release()


def _in_scope(stage) -> bool:
    """Whether ``stage`` was materialised in the current (outermost) stage scope."""
    return any(stage is s for scope in _scopes for s in scope)


def prepare(nodes, comm, needs=None, keep=()) -> None:
    """Collective: materialise every stage the plan ``nodes`` read (inputs first), in the
    same order on every rank. Each is computed once per scope (see :func:`stage_scope`),
    with only the columns its readers need (:mod:`hpcframe.pruning`): ``needs`` gives, per
    node, the columns its reader takes from it (an output's ``columns()``; default: every
    column). A stage held already with fewer columns than now needed is computed again; a
    stage nothing reads now (the input of a held stage) is not computed.

    A stage computed here that only other stages read is released as soon as the last of
    them is computed (:func:`_consumed`), not when the scope ends: a chain of joins holds
    one or two of its stages at a time, not all of them (TPC-H q9 at scale 10: five joins
    of 110-185 MiB per rank). The stages the ``nodes`` read stay held, and so do those of
    ``keep`` (plan nodes an enclosing computation reads: :func:`_resolve_scalars`)."""
    from . import reuse
    from .pruning import HELD, UNREAD, plan_stages
    from .stages import stages_below

    # stages an earlier computation left held, if every rank can reuse them
    below = stages_below(nodes)
    candidates = [s for s in below if s.ready and not s.persisted and not _in_scope(s)]
    if any(not s.persisted for s in below):
        reuse.agree(candidates, comm)
    stages, runs = plan_stages(nodes, needs)
    _add_stat("stages_reused", sum(1 for s in candidates if runs.get(id(s)) is HELD))
    # joins computed by the join reading them, with its other side's keys
    from .joins import deferrable_joins

    planned = [(s, runs[id(s)]) for s in stages if runs[id(s)] is not HELD and runs[id(s)] is not UNREAD]
    deferred = deferrable_joins(planned, nodes)
    _deferred.update(deferred)
    try:
        for at, stage in enumerate(stages):
            run = runs[id(stage)]
            if run is HELD or run is UNREAD or id(stage) in deferred:
                continue
            _materialise_planned(stage, run, comm)
            for done in _consumed(stages, at, list(nodes) + list(keep), deferred):
                done.release()
                _add_stat("stages_released_early", 1)
    finally:
        for key in deferred:
            _deferred.pop(key, None)


def _consumed(stages, at: int, nodes, deferred) -> list:
    """The stages of ``stages`` (in :func:`prepare`'s order) whose rows nothing reads any
    more once ``stages[at]`` is computed: materialised in this scope, held, not persisted,
    read by no plan node of ``nodes`` and by stages that are all computed. A stage the join
    reading it computes (``deferred``) counts as computed only with that reader (it reads
    its inputs then). Local and the same on every rank (from the plan only), so every rank
    releases the same stages at the same point."""
    from .stages import stage_of

    kept = {id(stage_of(n)) for n in nodes}
    readers: dict[int, list] = {}
    for reader in stages:
        for node in reader.inputs():
            st = stage_of(node)
            if st is not None:
                readers.setdefault(id(st), []).append(reader)
    place = {id(s): i for i, s in enumerate(stages)}

    def computed(stage) -> bool:
        if place[id(stage)] > at:
            return False
        if id(stage) in deferred:  # computed inside its reader
            return all(computed(r) for r in readers.get(id(stage), ()))
        return True

    return [
        s
        for s in stages[: at + 1]
        if id(s) not in kept
        and s.ready
        and not s.persisted
        and _in_scope(s)
        and id(s) in readers
        and all(computed(r) for r in readers[id(s)])
    ]


def _materialise_planned(stage, run, comm) -> None:
    """Collective: materialise ``stage`` as :func:`prepare` planned it (``run``: the
    stage narrowed for this computation), in the current stage scope."""
    from . import reuse

    if stage.dropped:
        raise DatasetError(
            f"{stage.label} was unpersisted: persist the frame again (or use the frame it was made from)"
        )
    if stage.ready:  # held with fewer columns (an earlier computation of this scope)
        stage.release()
    materialise(stage, comm, run)
    reuse.made_with(stage, comm)
    if _scopes:
        _scopes[-1].append(stage)


# a join stage read only by one side of an inner join is computed by that join
# (hpcframe.joins.deferrable_joins): {id(stage): (stage, run)} while prepare() runs
_deferred: dict[int, tuple] = {}


def deferred_run(stage):
    """The run (narrowed stage) of ``stage`` when its materialisation was left to the join
    reading it, else ``None`` (local; the same on every rank)."""
    got = _deferred.get(id(stage)) if stage is not None else None
    return got[1] if got is not None and got[0] is stage else None


def materialise_deferred(stage, comm) -> None:
    """Collective: compute a deferred ``stage`` in full, as :func:`prepare` would have."""
    _stage, run = _deferred.pop(id(stage))
    _materialise_planned(stage, run, comm)


def forget_deferred(stage) -> None:
    """``stage`` is computed by its reader in a reduced form (local): not by prepare."""
    _deferred.pop(id(stage), None)


def materialise(stage, comm, run=None) -> None:
    """Collective: compute ``stage`` and keep its partitions on the ranks. ``run``: the
    stage narrowed for this computation (:func:`hpcframe.pruning.narrowed`; default: the
    stage itself, every column): it is computed, and the stage holds its data."""
    dropped = 0
    if run is None or run is stage:
        run = stage
    else:
        dropped = len(stage.meta.columns) - len(run.meta.columns)
    if isinstance(stage, PersistStage):
        keep = _Keep(stage.node, comm.rank)
        owners_of_leaves = _run_scan([keep], comm, None)[id(keep)]
        read = sorted(owners_of_leaves)
        owners = [owners_of_leaves[leaf] for leaf in read]
        frames = {j: keep.frames[leaf] for j, leaf in enumerate(read) if leaf in keep.frames}
        if not owners:  # nothing read (no rows, or every partition pruned): one empty partition
            owners, frames = [0], ({0: stage.node.meta.iloc[:0]} if comm.rank == 0 else {})
    elif isinstance(stage, AggStage):
        spread = _Spread(stage, config.partitions, comm)
        frames = _run_scan([spread], comm, None)[id(spread)]
        if spread.terms:  # a copy reduced by the keys of the join reading it
            _add_stat("join_rows_dropped_by_reading_join", sum(t.dropped for t in spread.terms))
        owners = partition_owners(config.partitions, comm.size)
    elif isinstance(stage, ShuffleStage):
        rows = _Rows(run, config.partitions)
        _run_scan([rows], comm, None)
        node = run.node  # the rows in the dataset's dtypes before the stage's functions
        if hasattr(node.scan().source, "learned_nulls"):
            wide, narrow = empty_meta(node), node.meta
            rows.outbox = {b: [widen_frame(p, wide, narrow) for p in ps] for b, ps in rows.outbox.items()}
        frames = _exchange_rows(rows, comm)
        owners = partition_owners(config.partitions, comm.size)
    elif isinstance(stage, SortStage):
        from .sorting import sample_sort

        frames, owners, stage.divisions = sample_sort(
            run, comm, config.partitions, _run_scan, _exchange_partitions, _interrupted
        )
    elif isinstance(stage, JoinStage):
        from .joins import materialise_join

        owners, frames = materialise_join(run, comm, sys.modules[__name__])
        stage.strategy, stage.sizes, stage.partitioning = run.strategy, run.sizes, run.partitioning
    else:  # pragma: no cover - every stage kind is listed above
        raise TypeError(f"unknown stage {type(stage).__name__}")
    declared = _declared_meta(run)
    # blocks read before their CSV dataset's nulls were known: its dtypes
    csv_input = any(hasattr(n.scan().source, "learned_nulls") for n in run.inputs())
    if csv_input and isinstance(stage, JoinStage):
        wide, narrow = join_frame_dtypes(run)
        frames = {j: widen_frame(df, wide, narrow) for j, df in frames.items()}
    elif csv_input and not isinstance(stage, AggStage):
        frames = {j: widen_frame(df, declared, run.meta) for j, df in frames.items()}
    elif isinstance(stage, AggStage) and (typed := group_frame_dtypes(run.output, run.labels)) is not None:
        # (also from Parquet: the max of a bool column with nulls in a later file is object in
        #    pandas, as the collected result has it, while the combine's values are bools;
        #    a Parquet dataset's keys are read with its dtypes, then typed by their values
        #    as a pandas group index; blocks of CSV read before its nulls were known: keys too)
        if not csv_input:
            typed = tuple(t[[c for c in run.labels if c in t.columns]] for t in typed)
        frames = {j: widen_frame(df, *typed) for j, df in frames.items()}
    stage.data = RankedData.build(
        comm,
        stage.label,
        owners,
        frames,
        empty=declared,
        object_like_empty=not isinstance(stage, AggStage),  # group results: typed by values
    )
    _add_stat("stage_columns_pruned", dropped)
    _add_stat("stage_bytes", sum(p.nbytes for p in stage.data.discover(comm)))
    if isinstance(stage, JoinStage):  # its dtypes as the data decided them (as pandas)
        from .joins import adopt_schema

        adopt_schema(stage)
    release_memory()


# give the memory a finished stage freed back to the system
def release_memory() -> None:
    """Return the free memory of this process's allocators to the operating system: Arrow's
    memory pool (mimalloc or jemalloc keep freed pages for reuse) and, with glibc, the C
    heap where numpy and pandas allocate (``malloc_trim``). A stage's temporaries (its
    exchange buffers, partials, hash tables) are freed when it ends, but the pages stay in
    the process, counted in its RSS, and the next stage starts from that level: at TPC-H
    SF 10, q21 on 2 ranks, ~0.9-1.2 GB per rank between stages. Cheap (milliseconds)."""
    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _declared_meta(stage):
    """The empty frame of a stage that keeps its input's rows, with the dtypes its input
    datasets have now that they are discovered: an int or bool column with a null in any
    partition is float64 or object in every one (see hpcframe.io.types), which the schema of
    the first file cannot tell (nor the declared dtypes of a stage built before the stage it
    reads ran: bools with nulls somewhere are flagged ``OBJECT`` in its held data)."""
    meta = stage.meta.iloc[:0].copy()
    if isinstance(stage, AggStage):  # group keys are typed by their values, as a pandas index
        return meta
    by_values = set(getattr(stage, "typed_by_values", ()))  # group keys made by the stage
    for node, names in zip(stage.inputs(), _result_names(stage)):
        source = node.scan().source
        schema = getattr(stage, "input_schemas", {}).get(id(source)) or source.schema()
        flagged = []  # (input column, the result column it becomes)
        for f in schema:
            result = f.name if names is None else names.get(f.name)
            if result not in meta.columns or result in by_values:
                continue
            if dtype_flag(f) in (NULLS, OBJECT) or _passed_on_widened(meta[result].dtype, f, node):
                flagged.append((f.name, result))
        if flagged:
            declared = block_to_pandas(normalize_table(schema.empty_table(), schema), schema)
            for c, r in flagged:
                meta[r] = declared[c]
    return meta


def _passed_on_widened(declared, field: pa.Field, node) -> bool:
    """Whether a stage's result column declared ``declared`` (its dtype in the stage's meta)
    takes the dtype its input holds, ``field`` of the input ``node``'s schema, instead: an
    int column (int or uint) that the input holds as floats (it had nulls there) and that
    the stage passes on unchanged (the input declares the same dtype under the same name).

    Why both halves: an anti-join's empty result of a dataset whose int column has nulls
    keeps float64, as pandas does (the held float64, not the declared int64); but a column
    the stage's function computes under an input column's name is not passed on (a group
    nunique of a float column named like it is int64, not the input's float64)."""
    return (
        declared.kind in "iu"
        and pa.types.is_floating(field.type)
        and field.name in node.meta.columns
        and node.meta[field.name].dtype == declared
    )


def _result_names(stage) -> list:
    """Per input of ``stage``: ``{input column: result column}`` for a join (``None``: the
    stage keeps its input's column names). A join's result names its columns after the side
    they come from (suffixes), and a key both sides share is the left side's column: the
    right key's dtype (float64 when it has nulls) is not the result's (pandas keeps the left
    int64 key of an inner or left join)."""
    if not isinstance(stage, JoinStage):
        return [None] * len(stage.inputs())
    left = {c: r for c, r in stage.left_cols + stage.left_order if c is not None}
    taken = set(left.values())
    right = {c: r for c, r in stage.right_cols + stage.right_order if c is not None and r not in taken}
    return [left, right]


class _Keep(Output):
    """Keeps each leaf's rows on the rank that read it (``persist``); the partial maps
    leaves to the rank that read them, so that every rank learns who holds what."""

    def __init__(self, node, rank):
        self.node, self.rank, self.frames = node, rank, {}
        self.cols = list(node.meta.columns)

    def columns(self):
        """Every column of the frame."""
        return set(self.cols)

    def text(self):
        """``persist`` (for explain and errors)."""
        return "persist"

    def chunk(self, df, leaf):
        """Keep ``df`` (this leaf's rows)."""
        self.frames[leaf.index] = df[self.cols].reset_index(drop=True)
        return {leaf.index: self.rank}

    def combine(self, a, b):
        """Merge the leaf → rank maps."""
        return {**(a or {}), **(b or {})}

    def finalize(self, owners):
        """Every read leaf's rank."""
        return owners or {}


class _Spread:
    """A group-by output finished into hash partitions held by the ranks (an AggStage).

    Unlike a gathered result, no rank combines partials before the exchange: every leaf's
    partial travels (split by the partition of its groups) to the rank holding them, which
    combines all of a group's partials at once, in leaf order
    (:func:`hpcframe.aggregations.combine_many`). The order depends only on the data, so
    results are identical on any number of ranks, and each partial row is combined once
    instead of once per tree level."""

    limit = None

    def __init__(self, stage, nparts, comm):
        self.stage, self.inner, self.nparts = stage, stage.output, nparts
        self.owners = np.asarray(partition_owners(nparts, comm.size))
        self.outbox: list[list] = [[] for _ in range(comm.size)]  # per rank: (leaf, rows)
        self.terms: list | None = None

    def key_terms(self, declared) -> list:
        """The Arrow filters of the read of a group-by result computed for the
        inner join reading it (``stage.pushed``, see :func:`hpcframe.joins.reduced_input`):
        the rows whose group key is not among that join's other side's keys are dropped
        (on keys that are int64 columns of the source, not reassigned)."""
        if self.terms is None:
            from .expr import KeyIn
            from .joins import _int64_source_column

            node, pushed = self.inner.node, self.stage.pushed
            self.terms = [
                KeyIn(col, keys) for col, keys in pushed if _int64_source_column(node, col, declared)
            ]
        return self.terms

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def leaves(self):
        """Itself."""
        return [self]

    def chunk(self, df, leaf):
        """This leaf's partial, split at once by the rank holding each group's partition
        (into the outbox: nothing is kept in the combine tree)."""
        p = self.inner.chunk(df, leaf)
        if p is not None and len(p):
            part = _route(p, self.inner.keys, self.nparts)
            dest = self.owners[part]
            # each row's partition travels with it (a hidden column carried
            #    through the combine), so the finished groups are not hashed again
            p = p.assign(**{_PART: part.astype(np.int32)})
            for r, piece in split_by(p, dest, np.unique(dest)).items():
                self.outbox[r].append((leaf.index, piece))
        return None

    def combine(self, a, b):
        """Nothing to combine before the exchange."""
        return None

    def spread(self, my_nodes, n, comm) -> dict:
        """Collective: send every leaf partial's groups to the ranks holding their partitions;
        there, combine them and split the groups into partitions."""
        o, keys = self.inner, self.inner.keys
        sends, self.outbox = self.outbox, [[] for _ in range(comm.size)]
        stacked = _exchange_leaf_partials(comm, sends)
        del sends
        frames: dict = {}
        error = None
        context = "finishing the groups of a group-by result"
        try:
            with interruptible():  # user combines: no collective inside
                # drop each intermediate as soon as the next exists (millions of groups)
                table = (
                    None
                    if stacked is None
                    else A.combine_many(stacked, keys or [A.ALL_KEY], final=True, carried=[_PART])
                )
                del stacked
                parts = None if table is None else table[_PART].to_numpy()
                finished = o.finish_table(table)
                del table
                release_memory()  # the combine's temporaries
                frames = self.partitions(finished, comm.rank, self.owners, parts)
        except BaseException as exc:
            error = failure(comm, context, exc)
        comm.agree(error or _interrupted(comm, context))
        return self._categorical_keys(frames, comm)

    def _categorical_keys(self, frames: dict, comm) -> dict:
        """Collective: ``frames`` with the categorical group keys categorical again (the
        combine made them strings), their categories the observed values of every rank
        sorted, as a collected group-by result has them
        (:func:`hpcframe.outputs.observed_categories`)."""
        keys = [k for k in self.inner.keys if isinstance(self.inner.node.dtype_now(k), pd.CategoricalDtype)]
        if not keys:
            return frames
        mine: dict[str, object] = {k: [] for k in keys}
        if frames:
            mine = {k: pd.unique(pd.concat([df[k] for df in frames.values()]).dropna()) for k in keys}
        seen: dict[str, set] = {k: set() for k in keys}
        for got in comm.allgather(mine):
            for k in keys:
                seen[k].update(got[k])
        dtypes = {k: observed_categories(list(seen[k])) for k in keys}
        return {j: df.astype(dtypes) for j, df in frames.items()}

    def partitions(self, table, rank, owners, parts) -> dict:
        """This rank's partitions of the finished ``table``: the stage's columns, each
        partition in the order of first appearance (the same on any number of ranks).
        ``parts``: each row's partition (the hash of its keys, computed when its partials
        were routed)."""
        if table is None or len(table) == 0:
            return {}
        keys, stage = self.inner.keys, self.stage
        extra = [c for c in stage.hidden if c in table.columns]
        frame = table[keys + extra + [f"__result{j}" for j in range(len(stage.labels))]]
        frame.columns = keys + extra + list(stage.labels)
        for label in stage.labels:  # a registered aggregation's floats in an object column
            if frame[label].dtype == object:
                frame[label] = frame[label].infer_objects()
        return split_by(frame, np.asarray(parts, dtype=np.int64), np.flatnonzero(owners == rank))


class _Rows(Output):
    """A frame's rows split by the hash partition of their keys (a ShuffleStage's first
    half): every block's rows get their position, are reduced by the stage's ``local``
    function and put into this rank's outbox, per partition."""

    def __init__(self, stage, nparts):
        from .pruning import shuffle_columns

        self.stage, self.node, self.nparts = stage, stage.node, nparts
        self.cols = shuffle_columns(stage)
        self.outbox: dict[int, list] = {}
        self.categories = BlockCategories()  # made one list per column before the exchange
        self.local_in = self.local_out = 0  # a block's rows, and those ``local`` kept

    def columns(self):
        """The columns of the frame the stage carries (every one unless narrowed)."""
        return set(self.cols)

    def text(self):
        """``shuffle by keys`` (for explain and errors)."""
        return f"shuffle by {self.stage.keys}"

    def chunk(self, df, leaf):
        """Put this block's rows into the outbox."""
        df = df[self.cols]
        self.categories.note(df, leaf.index)
        if POSITION not in df.columns:
            df = df.assign(**{POSITION: np.int64(leaf.row_offset) + df.index.to_numpy(dtype="int64")})
        if self.stage.local is not None:
            self.local_in += len(df)
            if self.stage.prefilter is not None:  # (before the sort: fewer rows to put in order)
                df = self.stage.prefilter(df)
            if P.last_sort(self.stage.node) is not None:  # the block in the frame's sorted order
                df = P.sort_rows(df, P.only_columns(P.source_sort(self.stage), df.columns))
            df = self.stage.local(df)
            self.local_out += len(df)
        if len(df) == 0:
            return None
        bucket = _route(df, self.stage.keys, self.nparts)
        wanted = np.flatnonzero(np.bincount(bucket))  # O(n), not np.unique's sort
        for b, piece in split_by(df, bucket, wanted).items():
            self.outbox.setdefault(b, []).append(piece)
        return None

    def merge_pieces(self, pieces: list) -> list:
        """This rank's ``pieces`` of one partition (each a block's rows after ``local``, in
        block order, with the same categories) as one, reduced by ``local`` again: what
        ``local`` keeps of the whole partition is among what it kept of each block, so
        applying it to their union in the frame's order keeps every row ``per_partition``
        needs. The pieces are each in that order already: the union is put in order by
        merging them (:func:`hpcframe.plan.sort_order`), without ``prefilter`` (slower
        than the merge here). db-benchmark q8 (the top two of ~1e5 groups that every block
        holds): a rank's eight blocks keep 1.6 M candidates, their union 0.2 M, and only
        those are exchanged and put in order again."""
        stage = self.stage
        df = pd.concat(pieces, ignore_index=True)
        spec = P.input_order(stage)
        if spec.columns != [POSITION] or not df[POSITION].is_monotonic_increasing:
            df = P.sort_rows(df, P.only_columns(spec, df.columns))
        return [stage.local(df)]

    def combine(self, a, b):
        """Nothing to combine (the rows travel in the exchange)."""
        return None

    def finalize(self, _):
        """Nothing (the rows travel in the exchange)."""
        return None


def exchange_frames(comm, outgoing: list, tag: str, stacked: bool = False, consume: bool = False):
    """Collective: ``outgoing[r]`` (a pandas DataFrame or ``None``; every non-``None`` one
    with the same columns) goes to rank ``r``, as Arrow IPC buffers (``Alltoallv`` in
    bounded rounds, :func:`hpcframe.exchange.exchange_tables`); returns what every rank
    sent here, by source rank, with the same pandas dtypes (``None`` where it sent nothing).
    Returns ``None`` on every rank when some rank's frames cannot be Arrow tables (a column
    of mixed Python objects, a user aggregation's state): the caller then sends them pickled.
    ``tag`` names the exchange in errors. ``stacked``: return one DataFrame of everything
    received, in rank order (empty if nothing arrived), converted to pandas once.
    ``consume``: the caller gives up ``outgoing``: its frames are dropped from the list
    once every rank's frames are Arrow tables, so that a frame, its table and its
    serialised stream are not all held at once."""
    from .exchange import exchange_tables

    if comm.size == 1:  # nothing travels: no conversion
        if stacked:
            return outgoing[0] if outgoing[0] is not None else pd.DataFrame()
        return list(outgoing)
    present = [df for df in outgoing if df is not None and len(df)]
    schema, errors = agree_schema(comm, present or [df for df in outgoing if df is not None][:1])
    if errors:
        return None
    if schema is None:  # no rank sends anything
        return pd.DataFrame() if stacked else [None] * comm.size
    tables, bad = [], False
    try:
        for df in outgoing:
            table = (
                None
                if df is None or not len(df)
                else pa.Table.from_pandas(df, schema=schema, preserve_index=False)
            )
            tables.append(table)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        bad = True
    if comm.any_true(bad):  # one rank's value does not fit the agreed type: all pickle
        return None
    # hold each piece of data once: frames dropped once they are tables (consume),
    #    received tables dropped one by one as they become frames
    if consume:
        outgoing[:] = [None] * len(outgoing)
    _add_stat("exchanges_arrow", 1)
    received = exchange_tables(comm, tables, schema=schema)
    del tables
    if stacked:  # never None here: None means "not Arrow" to the caller
        rows = [t for t in received if t.num_rows]
        del received
        stack = block_to_pandas(pa.concat_tables(rows), schema) if rows else pd.DataFrame()
        del rows
        release_memory()  # the exchange's Arrow buffers
        return stack
    out = []
    for s in range(len(received)):
        table, received[s] = received[s], None
        out.append(block_to_pandas(table, schema) if table.num_rows else None)
        del table
    release_memory()
    return out


def split_by(df, bucket, wanted) -> dict:
    """``{b: rows of df whose bucket is b}`` for the buckets ``wanted`` that have rows, each
    keeping the rows' order (one stable sort instead of a mask per bucket)."""
    # small non-negative buckets sorted as uint16 (NumPy's stable radix sort)
    small = len(bucket) and bucket.dtype.kind in "iu" and bucket.min() >= 0 and bucket.max() < 2**16
    order = np.argsort(bucket.astype(np.uint16) if small else bucket, kind="stable")
    # one take of the whole frame in bucket order, then a slice per bucket (zero-copy
    #    views under copy-on-write): a take per column instead of one per column and bucket
    #    (Arrow strings' take has a large cost per call; q9's 32 buckets: 0.2 -> 0.1 s a block)
    #    Only the rows of the wanted buckets are taken.
    sorted_buckets = bucket[order]
    present = [
        (int(b), lo, hi)
        for b in wanted
        for lo, hi in [np.searchsorted(sorted_buckets, [b, b + 1])]
        if hi > lo
    ]
    if not present:
        return {}
    runs = [(lo, hi) for _, lo, hi in present]
    if runs != sorted(runs) or sum(hi - lo for lo, hi in runs) < len(order):  # not all, in order
        order = np.concatenate([order[lo:hi] for lo, hi in runs])
    whole = df.take(order).reset_index(drop=True)
    out, at = {}, 0
    for b, lo, hi in present:
        out[b] = whole.iloc[at : at + hi - lo].reset_index(drop=True)
        at += hi - lo
    return out


_PART = "__hpcframe_partition__"
_NODE = "__hpcframe_tree_node__"


def _exchange_nodes(comm, sends: list[list], n: int) -> list[list]:
    """Collective: ``sends[r]`` (``[(level, i, partial or None)]``, tree nodes' rows for
    rank ``r``) to rank ``r``; returns the lists received, by source rank. The rows travel
    as Arrow buffers tagged with their node (pickled only when a partial cannot be Arrow,
    e.g. a user aggregation's state); which nodes each rank kept is allgathered (small)."""
    ids = [(level, i) for level, i, _ in sends[0]] if sends else []
    width = n + 1
    frames = []
    for lst in sends:
        pieces = [p.assign(**{_NODE: np.int64(level * width + i)}) for level, i, p in lst if p is not None]
        frames.append(pd.concat(pieces, ignore_index=True) if pieces else None)
    got = exchange_frames(comm, frames, "the partial results of a group-by")
    if got is None:
        _add_stat("exchanges_pickled", 1)
        return comm.alltoall(sends)
    everyone = comm.allgather(ids)
    out: list[list] = []
    for src, df in enumerate(got):
        tags = df[_NODE].to_numpy() if df is not None and len(df) else np.empty(0, dtype=np.int64)
        by_node = split_by(df.drop(columns=[_NODE]), tags, np.unique(tags)) if len(tags) else {}
        out.append([(level, i, by_node.get(level * width + i)) for level, i in everyone[src]])
    return out


def _exchange_leaf_partials(comm, sends: list[list]):
    """Collective: ``sends[r]`` (``[(leaf, partial rows)]`` in leaf order) to rank ``r``, as
    Arrow buffers (pickled only when a partial cannot be Arrow, e.g. a user aggregation's
    state). Returns every received row stacked in leaf order (``None``: nothing arrived):
    ranks hold increasing leaf ranges, so rank order is leaf order."""
    # each rank's pieces are released once packed (``sends`` is emptied)
    frames = []
    for lst in sends:
        frames.append(pd.concat([p for _, p in lst], ignore_index=True) if lst else None)
        lst.clear()
    release_memory()  # the pieces just stacked
    got = exchange_frames(comm, frames, "the partial results of a group-by", stacked=True, consume=True)
    if got is None:
        _add_stat("exchanges_pickled", 1)
        # each frame holds its sender's leaves in leaf order, and ranks hold increasing
        # leaf ranges: source-rank order is leaf order
        pieces = [p for p in comm.alltoall(frames) if p is not None]
        return pd.concat(pieces, ignore_index=True) if pieces else None
    return got if len(got) else None


def _exchange_partitions(comm, sends: list[dict], tag: str) -> list[dict]:
    """Collective: ``sends[r]`` (``{partition: DataFrame}``, or a list of DataFrames to be
    stacked) to rank ``r``, on Arrow buffers
    (pickled only when some frame cannot be Arrow, see :func:`exchange_frames`); returns the
    dicts received, by source rank. Each destination's frames travel as one frame, its
    partitions one after another; their row counts go ahead in a small ``alltoall``, and
    the receiver slices the partitions out (no tag per row, no sort)."""
    # the caller's frames are released as they are packed (``sends`` is emptied),
    #    and each received frame as soon as it is split: one copy of the rows at a time
    frames, counts = [], []
    for d in sends:
        df, c = _stacked(d) if d else (None, [])
        frames.append(df)
        counts.append(c)
        d.clear()
    release_memory()  # the pieces just stacked
    got_counts = comm.alltoall(counts)
    got = exchange_frames(comm, frames, tag, consume=True)
    if got is None:
        _add_stat("exchanges_pickled", 1)
        return comm.alltoall([{} if df is None else _sliced(df, c) for df, c in zip(frames, counts)])
    del frames
    out: list[dict] = []
    for s in range(len(got)):
        df, got[s] = got[s], None
        out.append({} if df is None or not len(df) else _sliced(df, got_counts[s]))
        del df
    return out


def _stacked(d: dict):
    """``(frame, counts)``: the frames of ``d`` (``{partition: DataFrame or list of
    DataFrames}``) stacked in one, partition after partition in increasing order (one copy
    of the rows), and ``[(partition, rows)]`` in that order (partitions without rows left
    out); ``(None, [])`` when no partition has a row."""
    pieces: list = []
    counts: list[tuple[int, int]] = []
    for b in sorted(d):
        frames = d[b] if isinstance(d[b], list) else [d[b]]
        n = sum(len(df) for df in frames)
        if n:
            pieces.extend(df for df in frames if len(df))
            counts.append((b, n))
    if not pieces:  # every partition empty: nothing to send
        return None, []
    out = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0].reset_index(drop=True)
    return out, counts


def _sliced(df, counts) -> dict:
    """``{partition: rows}`` of a frame :func:`_stacked` made, by its ``counts`` (views of
    ``df``, no copy)."""
    out, at = {}, 0
    for b, n in counts:
        out[b] = df.iloc[at : at + n].reset_index(drop=True)
        at += n
    if at != len(df):  # pragma: no cover - the counts travel with the frame
        raise RuntimeError(f"a shuffle received {len(df)} rows, its partitions count {at}")
    return out


def _exchange_rows(rows: _Rows, comm) -> dict:
    """Collective: send every partition's rows to the rank holding it; there, order each
    partition by the frame's row order and run the stage's per-partition function."""
    stage = rows.stage
    owners = partition_owners(rows.nparts, comm.size)
    # every piece's categorical columns with the same categories (the union of every
    #    block's, as pandas reading the files has them): stacked, they stay categorical
    cats = rows.categories.union(comm)
    sends: list[dict] = [{} for _ in range(comm.size)]
    # a rank's blocks' rows of a partition merged first where ``local`` halved the blocks
    #    (_Rows.merge_pieces), until a merge keeps more than 3/4 of its rows (groups that
    #    blocks do not share: merging the others would sort them twice for little)
    merging = stage.local is not None and 2 * rows.local_out <= rows.local_in
    error = None
    try:
        for b, pieces in rows.outbox.items():
            # stacked once, by _stacked (not here and there)
            pieces = recode_pieces(pieces, cats)
            if merging and len(pieces) > 1:
                before = sum(len(p) for p in pieces)
                pieces = rows.merge_pieces(pieces)
                merging = 4 * len(pieces[0]) <= 3 * before
            sends[owners[b]][b] = pieces
    except BaseException as exc:
        error = failure(comm, f"running {stage.label} on this rank's blocks", exc)
    comm.agree(error or _interrupted(comm, f"running {stage.label} on this rank's blocks"))
    rows.outbox = {}
    received = _exchange_partitions(comm, sends, f"the rows of {stage.label}")
    frames: dict = {}
    error = None
    context = f"running {stage.label} on its partitions"
    try:
        with interruptible():  # user functions: no collective inside
            for b in [p for p, o in enumerate(owners) if o == comm.rank]:
                pieces = [got[b] for got in received if b in got]
                if not pieces:
                    continue
                pieces = recode_pieces(pieces, cats)  # (again on arrival)
                df = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
                # pieces arrive in rank order, each in position order: already in the frame's
                # order unless that is a sort (a group-by result's keys, a sort_values)
                # (a stage whose own order differs from its input's tells the input's)
                spec = P.input_order(stage)
                if spec.columns != [POSITION] or not df[POSITION].is_monotonic_increasing:
                    df = P.sort_rows(df, spec)
                df.index = pd.Index(df[POSITION].to_numpy(), name=None)
                if stage.per_partition is not None:
                    df = stage.per_partition(df)
                frames[b] = df.reset_index(drop=True)
    except BaseException as exc:
        error = failure(comm, context, exc)
    comm.agree(error or _interrupted(comm, context))
    return frames


# the engine's parts are imported with the engine, not inside the first
#    computation. Each TPC-H query of benchmarks/tpch_all.py runs in a fresh process
#    (imports before the clock, as for the other engines): these lazy imports (Parquet
#    reader and file systems, joins, pruning, exchange, cache, Arrow's pandas conversion)
#    cost 0.1-0.3 s inside the first query of every process. ``import hpcframe`` stays light:
#    it does not import this module.
def _import_engine_parts() -> None:
    import importlib

    for name in ("pyarrow.pandas_compat", "pyarrow.parquet"):
        importlib.import_module(name)
    for name in ("cache", "exchange", "joins", "pruning", "reuse", "io.memory", "io.parquet"):
        importlib.import_module(f".{name}", __package__)


_import_engine_parts()
