"""Stage reuse: a stage computed by one computation serves the next ones of the same program.

A computation materialises the stages its outputs read (joins, group-bys used as frames,
shuffles, sorts; :mod:`hpcframe.stages`) and used to release them when it ended. A program
often computes twice from the same lazy frame: TPC-H q11 and q14 compute a scalar from a
join and then use the same join again (``threshold = ps.value.sum().compute()`` then
``ps.groupby(...)``), q15 takes the maximum of a group-by result and then filters that
result. Each later computation recomputed the stage from the files.

Now the stages a computation made are *retained* when it ends, within a byte budget per rank
(:attr:`hpcframe.config.Config.stage_reuse_bytes`, default 256 MiB; 0: off), and a later
computation reading the same stage object (a frame built on it) uses the held partitions
when they hold every column it needs (:mod:`hpcframe.pruning`); otherwise the stage is
computed again, as before. The design choices:

* **Key: the stage object**, i.e. the plan node of the lazy frame, not a structural hash of
  the plan. A frame rebuilt from new ``read_parquet`` frames is a new stage and is computed
  again. Structural keys would need fingerprints of user functions and in-memory pandas
  inputs; identity is exact and free. The registry holds the stages *weakly*: when the user
  drops the last frame built on a stage, its partitions are freed as before.
* **Kinds**: joins, group-by results used as frames and shuffles; not sorts (a sorted
  frame's ``persist()`` and ``.loc`` take over the sort's own partitions and divisions).
* **Only stages over files** are retained: every source below the stage (recursively
  through the stages it reads) is a Parquet or HDF5 dataset. A pandas input
  (``from_pandas``, ``merge`` with a DataFrame) may be modified in place by the user; a CSV
  dataset learns its dtypes while it is read. Stages over them are released as before.
* **Communicator**: a stage is reused only by a computation over the same processes in the
  same rank order (``compute()`` duplicates its communicator every time: duplicates match),
  so partitions held by 3 ranks never serve a serial computation (``hpcframe.comm.Comm()``) in one of them.
* **Invalidation**: at retention the size and modification time (ns) of every file below the
  stage are recorded; a computation about to reuse the stage compares them again, and a
  file modified, replaced or deleted makes it compute the stage again.
* **Memory**: a stage's size is the largest share of its partitions any rank holds (known
  alike on every rank). Retained stages are evicted least recently used first to stay within
  the budget; a stage larger than the budget, or spilled to disk, is released at once.
* **Collective safety**: what each rank holds could differ (a stage freed by the garbage
  collector on one rank only, a file changed between two ranks' checks), so before a
  computation uses any retained stage the ranks agree (one ``allgather`` per computation
  that reads stages, of the numbers the stages have on their communicator) on the stages
  every one of them can reuse; the others are released and computed again. Results are
  those of a fresh computation on any rank count: a stage's partitions depend only on the
  plan and the files.

``hf.last_run_stats()["stages_reused"]`` counts the stages a computation took from an earlier
one; :func:`clear` releases every retained stage.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict

from .config import config

# (the communicator's processes, sequence number) -> entry. The number counts the stages
# offered on that communicator: the same on each of its ranks, which offer the same stages in
# plan order. (One count for all communicators would differ between ranks as soon as one
# rank computes alone, e.g. with ``MPI.COMM_SELF``: the ranks' numbers for one stage would
# then differ, and a number could even name different stages on two ranks.)
_entries: OrderedDict[tuple, _Entry] = OrderedDict()
_offered: dict[tuple, int] = {}


# stage -> the communicator it was last materialised with (see made_with)
_made_with: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Entry:
    __slots__ = ("ref", "nbytes", "files", "serial", "comm")

    def __init__(self, stage, nbytes: int, files: tuple, serial: int, comm):
        self.ref = weakref.ref(stage)
        self.nbytes = nbytes
        self.files = files
        self.serial = serial  # of the RankedData held when retained
        self.comm = comm  # _comm_key of the communicator that computed it


def _comm_key(comm) -> tuple:
    """What identifies a communicator for held partitions: which processes, in which rank
    order (their ranks in ``MPI.COMM_WORLD``), and this rank. ``compute()`` duplicates the
    communicator it is given (or ``COMM_WORLD``) for every computation: the duplicates of one
    communicator have the same key, so a stage made by one serves the next; a stage made on 3
    ranks does not serve a serial computation (``hpcframe.comm.Comm()``), nor a sub-communicator."""
    raw = getattr(comm, "_comm", None)
    if raw is None or not hasattr(raw, "Get_group"):
        return (type(comm).__name__, comm.size, comm.rank)
    from mpi4py import MPI

    group, world = raw.Get_group(), MPI.COMM_WORLD.Get_group()
    try:
        ranks = tuple(group.Translate_ranks(list(range(comm.size)), world))
    finally:
        group.Free()
        world.Free()
    return ("mpi", ranks, comm.rank)


def made_with(stage, comm) -> None:
    """Record that ``stage`` was just materialised with ``comm`` (local)."""
    _made_with[stage] = _comm_key(comm)


def _budget() -> int:
    return int(getattr(config, "stage_reuse_bytes", 0) or 0)


def file_identity(stage) -> tuple | None:
    """``((path, size, mtime_ns), ...)`` of every file below ``stage`` (through the stages it
    reads), or ``None`` when a source below it is not a Parquet or HDF5 dataset of plain
    files (or a file is missing), or when a stage uses a lazy scalar."""
    from .stages import StageSource, stage_scalar_refs

    out: list[tuple] = []
    seen: set[int] = set()

    def visit(st) -> bool:
        if id(st) in seen:
            return True
        seen.add(id(st))
        if stage_scalar_refs(st):  # a lazy scalar's value may come from other files
            return False
        for node in st.inputs():
            src = node.scan().source
            if isinstance(src, StageSource):
                if not visit(src):
                    return False
                continue
            files = getattr(src, "files", None)
            if getattr(src, "format", None) not in ("parquet", "hdf5") or not isinstance(files, list):
                return False
            if hasattr(src, "learned_nulls"):
                return False
            for f in files:
                if not isinstance(f, str):
                    return False
                try:
                    st_ = os.stat(f)
                except OSError:
                    return False
                out.append((os.path.abspath(f), st_.st_size, st_.st_mtime_ns))
        return True

    return tuple(out) if visit(stage) else None


def _rank_bytes(data) -> int:
    """The largest number of bytes of ``data``'s partitions one rank holds (the same on
    every rank: sizes and owners are exchanged when a stage is built)."""
    per: dict[int, int] = {}
    for owner, nbytes in zip(data.owners, data._nbytes):
        per[owner] = per.get(owner, 0) + int(nbytes)
    return max(per.values(), default=0)


def _alive(entry: _Entry):
    stage = entry.ref()
    if stage is None or not stage.ready or stage.persisted or stage.data.serial != entry.serial:
        return None
    return stage


def _evict(seq: tuple) -> None:
    entry = _entries.pop(seq)
    stage = _alive(entry)
    if stage is not None:
        stage.release()


def keep(stage) -> bool:
    """Retain ``stage`` (just computed, not persisted) for later computations, evicting the
    least recently used retained stages to stay within the budget. Local (every rank offers
    the same stages in the same order). Returns False when it is not retained: the caller
    releases it."""
    made = _made_with.get(stage)
    group = () if made is None else made[:2]  # which processes, not this rank
    _offered[group] = _offered.get(group, 0) + 1
    seq = (group, _offered[group])
    for old in [s for s, e in _entries.items() if e.ref() is stage]:
        del _entries[old]  # computed again (with more columns): the new data replaces it
    from .stages import SortStage

    budget = _budget()
    data = stage.data
    if isinstance(stage, SortStage):  # its divisions and persist() path expect a fresh sort
        return False
    if budget <= 0 or data is None or data.released or getattr(data, "_spill_dir", None):
        return False
    nbytes = _rank_bytes(data)
    if nbytes > budget:
        return False
    files = file_identity(stage)
    if files is None or made is None:
        return False
    for old in [s for s, e in _entries.items() if _alive(e) is None]:
        del _entries[old]
    while _entries and sum(e.nbytes for e in _entries.values()) + nbytes > budget:
        _evict(next(iter(_entries)))
    _entries[seq] = _Entry(stage, nbytes, files, data.serial, made)
    return True


def agree(stages, comm) -> int:
    """Collective (one ``allgather`` on more than one rank, even when this rank holds
    nothing: another may): of the ``stages`` (held stages a computation reads, made by an
    earlier computation) the retained ones every rank still holds with unchanged files stay
    held; the others are released here (they are computed again). Returns the number kept.
    Call it before :func:`hpcframe.pruning.plan_stages`, on every rank, whenever the plan
    reads a stage that is not persisted (a decision the same on every rank)."""
    here = _comm_key(comm)
    mine = []
    for seq, entry in list(_entries.items()):
        stage = _alive(entry)
        if stage is None or not any(stage is s for s in stages):
            continue
        if entry.comm != here or file_identity(stage) != entry.files:
            _evict(seq)
            continue
        mine.append(seq)
    if comm.size > 1:
        common = set(mine)
        for theirs in comm.allgather(mine):
            common &= set(theirs)
    else:
        common = set(mine)
    for seq in mine:
        if seq in common:
            _entries.move_to_end(seq)  # used now: the least recently used go first
        else:
            _evict(seq)
    # whatever else is held here without being agreed is computed again, as on the others
    agreed = [_entries[seq].ref() for seq in common]
    for stage in stages:
        if stage.ready and not stage.persisted and not any(stage is a for a in agreed):
            stage.release()
    return len(common)


def retained(stage) -> bool:
    """Whether ``stage`` is held from an earlier computation (local)."""
    return any(_alive(e) is stage for e in _entries.values())


def held_bytes() -> int:
    """Bytes per rank of the retained stages still alive (see :func:`keep`)."""
    return sum(e.nbytes for e in _entries.values() if _alive(e) is not None)


def clear() -> None:
    """Release every retained stage (local; call it on every rank)."""
    for seq in list(_entries):
        _evict(seq)


__all__ = ["keep", "agree", "retained", "held_bytes", "clear", "file_identity"]
