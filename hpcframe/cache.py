"""Caching: never compute the same block twice — in memory, on disk, across jobs.

Two levels, used by the engine (:mod:`hpcframe.execute`) while it reads a rank's blocks:

**In memory** (:class:`Cache` with a size, or ``hf.config.cache_bytes``): per rank, within
one program. It keeps the *decoded column chunks* of the blocks read (one Arrow array per
column and block: a later query needing those columns of that block reads only the others)
and the *per-block partials* of aggregations (a later identical aggregation of that block is
not computed at all). What stays is chosen by the cachey policy: every entry has a score
``cost / nbytes`` added at every use, weighted by a tick that grows at each access (so that
old uses decay); when the byte budget is full, the lowest scores go (an entry scoring below
every resident one is not admitted).

**On disk** (:class:`Cache` with ``dir=``, ``hf.config.cache_dir`` or
``hpcframe run --cache-dir``): per-block partials in an :class:`~hpcframe.io.partials.PartialStore`
shared by all ranks and jobs. A partial's key is the block's identity (its files' absolute
path, size and modification time in ns — or a SHA-256 of their content with
``hash_content=True`` — and the row groups / row ranges read) and a fingerprint of the plan
that produced it (the source's options and schema, every filter, assignment, projection and
sort of the chain with their literal values, the aggregation's keys and intermediates, the
dtypes, and the versions of hpcframe (and a hash of its source files), pandas, pyarrow and
NumPy), never the number of ranks: the combine tree is fed the stored partials in place of
computed ones, so results are identical to a fresh run on any rank count. Appending a file
adds blocks (only they are read); modifying or deleting a file changes the identity of its blocks only.

Only partials that round-trip exactly are cached: group-by and reduction partials
(``AggOutput`` with built-in aggregations) of chains of filters, assignments, projections and
sorts over files. A partial is written only if reading it back gives the same pandas object
(values, dtypes, index, names); everything else is computed as usual and counted as
*uncacheable* by the :class:`~hpcframe.diagnostics.CacheProfiler`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .units import parse_size

FORMAT = 1  # of the stored partials: part of every key

#: Counters of this process (all caches): ``{level: Counter}``, levels ``"memory partials"``,
#: ``"disk partials"``, ``"column chunks"``; read by the CacheProfiler.
STATS: dict[str, Counter] = {}
LEVELS = ("memory partials", "disk partials", "column chunks")
COUNTERS = ("hits", "misses", "uncacheable", "bytes", "stored", "evictions", "rejected")


def _count(level: str, name: str, n: int = 1) -> None:
    STATS.setdefault(level, Counter())[name] += n


def stats() -> dict[str, dict[str, int]]:
    """A copy of this process's cache counters, ``{level: {counter: value}}`` (see
    :data:`LEVELS` and :data:`COUNTERS`; ``bytes``: bytes served from the cache, ``stored``:
    bytes put into it)."""
    return {lv: {c: int(STATS.get(lv, Counter())[c]) for c in COUNTERS} for lv in LEVELS}


# ------------------------------------------------------------------------------------------
# the in-memory store: a byte budget and the cachey policy
# ------------------------------------------------------------------------------------------
class MemoryStore:
    """Values by key within ``available_bytes``, kept by score (cost × frequency / size).

    Parameters
    ----------
    available_bytes : int
        The budget; 0 keeps nothing.
    halflife : float, default 1000
        Accesses after which an old use counts half as much as a new one.
    level : str
        The counters this store updates (see :data:`LEVELS`).
    """

    def __init__(self, available_bytes: int, halflife: float = 1000.0, level: str = "memory partials"):
        self.available_bytes = int(available_bytes)
        self.level = level
        self.data: dict = {}
        self.nbytes: dict = {}
        self.cost: dict = {}
        self.score: dict = {}
        self.total_bytes = 0
        self.tick = 1.0
        self._decay = 1.0 + 1.0 / halflife
        self._lock = threading.Lock()

    def _bump(self, key) -> None:
        self.tick *= self._decay
        self.score[key] = self.score.get(key, 0.0) + self.cost[key] / max(self.nbytes[key], 1) * self.tick

    def get(self, key, default=None):
        """The value of ``key`` (counted as a use), or ``default``."""
        with self._lock:
            if key not in self.data:
                return default
            self._bump(key)
            return self.data[key]

    def __contains__(self, key) -> bool:
        return key in self.data

    def put(self, key, value, cost: float, nbytes: int) -> bool:
        """Keep ``value`` if its score earns it a place; evicts lower scores to make room.
        ``cost``: seconds it took to make; ``nbytes``: its size in memory."""
        nbytes = max(int(nbytes), 1)
        with self._lock:
            if key in self.data:
                return True
            if nbytes > self.available_bytes:
                return False
            self.cost[key], self.nbytes[key] = max(float(cost), 1e-9), nbytes
            self._bump(key)
            new = self.score[key]
            if self.total_bytes + nbytes > self.available_bytes:
                victims, freed = [], 0
                for k in sorted(self.data, key=self.score.__getitem__):
                    if self.score[k] >= new:
                        break
                    victims.append(k)
                    freed += self.nbytes[k]
                    if self.total_bytes - freed + nbytes <= self.available_bytes:
                        break
                if self.total_bytes - freed + nbytes > self.available_bytes:
                    del self.cost[key], self.nbytes[key], self.score[key]
                    return False
                for k in victims:
                    self._drop(k)
                    _count(self.level, "evictions")
            self.data[key] = value
            self.total_bytes += nbytes
            _count(self.level, "stored", nbytes)
            return True

    def _drop(self, key) -> None:
        self.data.pop(key, None)
        self.total_bytes -= self.nbytes.pop(key, 0)
        self.cost.pop(key, None)
        self.score.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self.data.clear()
            self.nbytes.clear()
            self.cost.clear()
            self.score.clear()
            self.total_bytes = 0


# ------------------------------------------------------------------------------------------
# the user's handle
# ------------------------------------------------------------------------------------------
_stack: list[Cache] = []
_from_config: dict = {}


class Cache:
    """Cache blocks' decoded columns and partials in memory (a byte budget per rank) and/or
    per-block partials on disk (a directory shared by ranks and jobs), for the computations
    run inside the ``with`` block (on every rank: use the same ``with`` in SPMD code).

    Without a ``with`` block, ``hf.config.cache_bytes`` and ``hf.config.cache_dir`` give the
    same for every computation (``hpcframe run --cache-dir DIR`` sets the latter).

    Parameters
    ----------
    size : int or str, default 0
        Bytes of memory per rank, a number or a size like ``"2GB"``; 0: no memory cache.
    dir : str or os.PathLike, optional
        A directory for the on-disk partial store (created if needed); see
        :mod:`hpcframe.cache` for the keys.
    hash_content : bool, default False
        Identify files by a SHA-256 of their bytes instead of (size, mtime): robust to
        files rewritten within the file system's timestamp resolution, or copied with new
        times, at the cost of reading each file once per computation (hashes are
        never remembered between computations: an in-place rewrite keeps size, times and inode).
    halflife : float, default 1000
        Accesses after which an old use counts half (the cachey policy's decay).

    Raises
    ------
    ValueError
        When ``size`` is not a size, or neither ``size`` nor ``dir`` is given.
    OSError
        When ``dir`` cannot be created.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> import hpcframe as hf
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame({"k": list("abab"), "x": [1, 2, 3, 4]}).to_parquet(os.path.join(folder, "d.parquet"))
    >>> df = hf.read_parquet(os.path.join(folder, "d.parquet"))
    >>> with hf.Cache("100MB"):
    ...     first = df.groupby("k").x.sum().compute()
    ...     again = df.groupby("k").x.sum().compute()   # no block read
    >>> hf.last_run_stats()["partitions_read"]
    0
    >>> again.equals(first)
    True
    """

    def __init__(self, size=0, dir=None, hash_content: bool = False, halflife: float = 1000.0):
        nbytes = int(parse_size(size)) if isinstance(size, str) else int(size or 0)
        if nbytes < 0:
            raise ValueError(f"Cache(size={size!r}): the size must be >= 0")
        if nbytes == 0 and dir is None:
            raise ValueError("Cache(): give a memory size (e.g. Cache('2GB')) and/or a directory (dir=...)")
        self.size = nbytes
        self.partials = MemoryStore(nbytes // 2, halflife, "memory partials") if nbytes else None
        self.chunks = MemoryStore(nbytes - nbytes // 2, halflife, "column chunks") if nbytes else None
        self.hash_content = bool(hash_content)
        self.store = None
        self.dir = None
        if dir is not None:
            from .io.partials import PartialStore

            self.dir = os.fspath(dir)
            # no fsync: entries are checksummed, so one torn by a crash is found and recomputed
            self.store = PartialStore(self.dir, fsync=False)

    def __enter__(self):
        _stack.append(self)
        return self

    def __exit__(self, *exc):
        if self in _stack:
            _stack.remove(self)
        return False

    def clear(self) -> None:
        """Empty the memory levels (the disk store is kept: see ``hpcframe cache clear``)."""
        for m in (self.partials, self.chunks):
            if m is not None:
                m.clear()

    def __repr__(self) -> str:
        return f"Cache(size={self.size}, dir={self.dir!r})"


def current() -> Cache | None:
    """The innermost active :class:`Cache`, else the one ``hf.config.cache_bytes`` /
    ``hf.config.cache_dir`` describe (made once per setting), else ``None``."""
    if _stack:
        return _stack[-1]
    from .config import config

    size = getattr(config, "cache_bytes", 0) or 0
    directory = getattr(config, "cache_dir", None) or None
    if not size and directory is None:
        return None
    key = (size, directory)
    if key not in _from_config:
        _from_config.clear()
        _from_config[key] = Cache(size, directory)
    return _from_config[key]


# ------------------------------------------------------------------------------------------
# keys: the block's identity and the plan's fingerprint
# ------------------------------------------------------------------------------------------
def _file_id(path: str, hash_content: bool):
    """``(size, mtime_ns)`` or ``("sha256", hex)`` of a file; ``None`` if not a file.

    The content hash is computed at every call, never remembered across computations by
    (path, size, mtime, inode): a file rewritten in place with the same size within the
    timestamp resolution (or with its times restored) keeps all four, and a remembered hash
    would serve its old partials — exactly what ``hash_content=True`` promises to prevent.
    (:class:`ScanCache` asks once per file and scan.)"""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not hash_content:
        return (st.st_size, st.st_mtime_ns)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for b in iter(lambda: fh.read(1 << 20), b""):
                h.update(b)
    except OSError:
        return None
    return ("sha256", h.hexdigest())


def block_identity(parts, hash_content: bool = False, files: dict | None = None, rows: bool = True):
    """The identity of the partitions ``parts`` (a block): per partition the file's absolute
    path and :func:`_file_id`, the piece (row group / HDF5 object / CSV byte range), the row
    range (``rows=False``: not, for sources whose row ranges are estimates that depend on the
    other files, e.g. CSV) and hive values. ``None`` when a partition is not a plain file
    (data held by the ranks, memory)."""
    files = {} if files is None else files
    out = []
    for p in parts:
        path = p.path
        if not isinstance(path, str) or path.startswith("<"):
            return None
        if path not in files:
            files[path] = _file_id(os.path.abspath(path), hash_content)
        fid = files[path]
        if fid is None:
            return None
        hive = sorted((str(k), repr(v)) for k, v in (p.hive or {}).items())
        span = (p.start, p.stop) if rows else None
        out.append((os.path.abspath(path), fid, repr(p.piece), span, hive))
    return out


_SIMPLE = (str, int, float, bool, type(None))


def _simple(value):
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_simple(v) for v in value]
    if isinstance(value, dict):
        return sorted((repr(k), _simple(v)) for k, v in value.items())
    return repr(value) if type(value).__repr__ is not object.__repr__ else type(value).__name__


def source_fingerprint(source):
    """The source's options that change what its blocks read as: its kind, format, public
    settings (not its list of files: appending a file must not change it) and Arrow schema
    with field metadata (a column's null flags, which the discovery of every file sets)."""
    settings = sorted(
        (k, _simple(v))
        for k, v in vars(source).items()
        # not "examined" either: CSV's record of how each file was sized (names every file)
        if not k.startswith("_") and k not in ("files", "label", "root", "path", "paths", "examined")
    )
    schema = source.schema()
    return (
        type(source).__module__,
        type(source).__name__,
        getattr(source, "format", ""),
        settings,
        # in full: to_string cuts names and types past 100 characters, metadata past ~80
        schema.to_string(
            show_field_metadata=True,
            show_schema_metadata=False,
            truncate_metadata=False,
            element_size_limit=1 << 30,
        ),
    )


@functools.lru_cache(maxsize=1)
def _version() -> str:
    """hpcframe's installed version and a SHA-256 of its own source files.

    The version alone is not enough: an editable install or a source tree keeps one version
    string across code changes, and entries made by older code (a partial computed
    differently before a fix) would be served to newer code as if they were right. Hashing
    the package's ``.py`` files (about 1 MB) costs a millisecond once per process."""
    from importlib import metadata

    try:
        version = metadata.version("hpcframe")
    except metadata.PackageNotFoundError:
        version = ""
    package = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for folder, dirs, names in os.walk(package):
        dirs.sort()
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, package).encode() + b"\0")
            try:
                with open(path, "rb") as fh:
                    h.update(fh.read())
            except OSError:
                h.update(b"<unreadable>")
    return f"{version}+{h.hexdigest()[:16]}"


def plan_fingerprint(plan, source) -> str | None:
    """The fingerprint of the partial one output plan makes of a block (see the module
    docstring), or ``None`` when that partial is not cacheable (not a built-in aggregation,
    a chain step that is not a filter, assignment, projection or sort)."""
    from . import aggregations as A
    from . import plan as P
    from .outputs import AggOutput

    out = plan.out
    if type(out) is not AggOutput or any(a not in A.BUILTIN for _, a in out.specs):
        return None
    steps = []
    node: Any = out.node
    for n in node.chain()[1:]:
        if type(n) not in (P.Filter, P.Assign, P.Project, P.ResetIndex, P.Sort):
            return None
        expr = getattr(n, "expr", None)
        steps.append(
            (
                type(n).__name__,
                n.text(),
                expr.key() if expr is not None else None,
                [(str(c), str(t)) for c, t in n.meta.dtypes.items()],
            )
        )
    pandas_steps = [(type(s).__name__, s.expr.key() if hasattr(s, "expr") else s.text()) for s in plan.steps]
    return hashlib.sha256(
        repr(
            (
                FORMAT,
                _version(),
                pd.__version__,
                pa.__version__,
                np.__version__,
                source_fingerprint(source),
                steps,
                "AggOutput",
                out.keys,
                out.specs,
                out.dropna,
                out.sort,
                repr(out.inters),
                str(plan.arrow_pred),
                sorted(plan.pred_columns),
                list(plan.pandas_columns),
                sorted(plan.keep_dict),
                pandas_steps,
            )
        ).encode()
    ).hexdigest()


# ------------------------------------------------------------------------------------------
# partials <-> Arrow, exactly
# ------------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if type(a) is not type(b) or not isinstance(a, pd.DataFrame):
        return False
    try:  # names, dtypes, index (kind, dtype, labels) and values (NaN equal to NaN)
        return (
            list(a.columns) == list(b.columns)
            and type(a.columns) is type(b.columns)
            and a.columns.dtype == b.columns.dtype
            and list(a.dtypes) == list(b.dtypes)
            and type(a.index) is type(b.index)
            and a.index.dtype == b.index.dtype
            and a.index.names == b.index.names
            and a.index.equals(b.index)
            and a.equals(b)
        )
    except (TypeError, ValueError):
        return False


def encode_partial(partial):
    """``(table, meta)`` of a partial that reads back identical, or ``None``."""
    if partial is None:
        return pa.table({}), {"kind": "none"}
    if type(partial) is not pd.DataFrame:
        return None
    try:
        table = pa.Table.from_pandas(partial, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    meta = {"kind": "frame"}
    if not _same(decode_partial(table, meta), partial):
        return None
    return table, meta


def decode_partial(table, meta):
    """The pandas partial of a stored ``(table, meta)``."""
    if meta.get("kind") == "none":
        return None
    return table.to_pandas()


def _nbytes(partial) -> int:
    if partial is None:
        return 64
    try:  # not memory_usage(deep=True) (slow): a Python object counts 56 bytes
        total = 64 + int(partial.index.nbytes)
        for _, col in partial.items():
            total += int(col.array.nbytes) + (48 * len(col) if col.dtype == object else 0)
        return total
    except (AttributeError, TypeError):
        return 1 << 20


def _shallow(partial):
    # copy-on-write pandas: a shallow copy is safe against in-place changes downstream
    return None if partial is None else partial.copy(deep=False)


# ------------------------------------------------------------------------------------------
# the engine's view of one scan
# ------------------------------------------------------------------------------------------
_MISS = object()


class ScanCache:
    """What :mod:`hpcframe.execute` uses while reading one scan's blocks on this rank: which
    output partials of a block are known (:meth:`lookup`), keeping new ones (:meth:`keep`),
    and reading decoded column chunks (:meth:`read`)."""

    def __init__(self, cache: Cache, source, plans):
        self.cache, self.source = cache, source
        self.files: dict = {}
        self.fingerprints = [plan_fingerprint(p, source) for p in plans]
        self.sort = [getattr(p.out, "sort", True) for p in plans]
        self.pending: dict = {}
        self.partials = cache.partials is not None or cache.store is not None
        from .io.sources import source_rows_exact

        self.rows = bool(source_rows_exact(source))  # CSV: row ranges are estimates
        self.source_id: str | None = None
        try:
            self.source_id = repr(source_fingerprint(source))
        except Exception:  # noqa: BLE001 - an unusual source is simply not cached
            self.source_id = None

    # -- partials ---------------------------------------------------------------------------
    def _keys(self, leaf, parts, wants):
        ident = block_identity(parts, self.cache.hash_content, self.files, self.rows)
        keys: list = []
        for k, w in enumerate(wants):
            fp = self.fingerprints[k]
            if not w or fp is None or ident is None:
                keys.append(None)
                continue
            offset = None if self.sort[k] else leaf.row_offset  # unsorted group-bys number rows
            keys.append(hashlib.sha256(repr((fp, ident, offset)).encode()).hexdigest())
        return keys

    def lookup(self, leaf, parts, wants) -> dict:
        """``{output index: partial}`` of the outputs whose partial of this block is cached
        (in memory or on disk); remembers the keys of the others for :meth:`keep`."""
        if not self.partials:
            return {}
        keys = self._keys(leaf, parts, wants)
        found, missing = {}, {}
        mem, store = self.cache.partials, self.cache.store
        for k, (w, key) in enumerate(zip(wants, keys)):
            if not w:
                continue
            if key is None:
                if mem is not None:
                    _count("memory partials", "uncacheable")
                if store is not None:
                    _count("disk partials", "uncacheable")
                continue
            value = mem.get(key, _MISS) if mem is not None else _MISS
            if value is not _MISS and mem is not None:
                _count("memory partials", "hits")
                _count("memory partials", "bytes", mem.nbytes.get(key, 0))
                found[k] = _shallow(value)
                continue
            if mem is not None:
                _count("memory partials", "misses")
            if store is not None:
                rejected = store.rejected
                got = store.get(key)
                if store.rejected != rejected:
                    _count("disk partials", "rejected", store.rejected - rejected)
                if got is not None:
                    try:
                        partial = decode_partial(*got)
                    except (pa.ArrowException, ValueError, TypeError, KeyError):
                        store.delete(key)
                        _count("disk partials", "rejected")
                        got = None
                if got is not None:
                    _count("disk partials", "hits")
                    _count("disk partials", "bytes", got[0].nbytes)
                    if mem is not None:
                        mem.put(key, partial, 1e-3, _nbytes(partial))
                    found[k] = _shallow(partial)
                    continue
                _count("disk partials", "misses")
            missing[k] = key
        self.pending[leaf.index] = missing
        return found

    def keep(self, leaf, partials, seconds: float) -> None:
        """Keep the partials just computed for this block (``partials[k]`` for the outputs
        :meth:`lookup` found missing); ``seconds``: what computing them cost."""
        missing = self.pending.pop(leaf.index, {})
        if not missing:
            return
        mem, store = self.cache.partials, self.cache.store
        cost = seconds / len(missing)
        for k, key in missing.items():
            partial = partials[k]
            if mem is not None:
                mem.put(key, _shallow(partial), cost, _nbytes(partial))
            if store is not None:
                encoded = encode_partial(partial)
                if encoded is None:
                    _count("disk partials", "uncacheable")
                    continue
                if store.put(key, encoded[0], encoded[1]):
                    _count("disk partials", "stored", encoded[0].nbytes)

    # which int/bool columns of a CSV block hold a null (hpcframe.io.csv)
    def _nulls_key(self, parts, columns) -> str | None:
        ident = block_identity(parts, self.cache.hash_content, self.files, self.rows)
        if ident is None or self.source_id is None:
            return None
        return hashlib.sha256(
            repr(("csv nulls", self.source_id, ident, sorted(columns))).encode()
        ).hexdigest()

    def block_nulls(self, parts, columns) -> list[str] | None:
        """The columns (of ``columns``, the columns read) in which this block held a null
        when its partials were computed, or ``None`` if that is not recorded: a CSV
        source learns its dtypes from the blocks it reads, and a block whose partials come
        from the cache is not read."""
        key = self._nulls_key(parts, columns)
        if key is None:
            return None
        mem, store = self.cache.partials, self.cache.store
        value = mem.get(key, _MISS) if mem is not None else _MISS
        if isinstance(value, tuple):
            return list(value)
        got = store.get(key) if store is not None else None
        if got is None or not isinstance(got[1], dict) or got[1].get("kind") != "nulls":
            return None
        names = [str(n) for n in got[1].get("nulls", [])]
        if mem is not None:
            mem.put(key, tuple(names), 1e-3, 64)
        return names

    def keep_block_nulls(self, parts, columns, names) -> None:
        """Record ``names``: the columns in which this block, just read, held a null."""
        key = self._nulls_key(parts, columns)
        if key is None:
            return
        mem, store = self.cache.partials, self.cache.store
        if mem is not None:
            mem.put(key, tuple(sorted(names)), 1e-3, 64)
        if store is not None:
            store.put(key, pa.table({}), {"kind": "nulls", "nulls": sorted(names)})

    # -- column chunks ----------------------------------------------------------------------
    def read(self, parts, columns, reader: Callable):
        """The table of ``columns`` of the block ``parts``: the cached decoded columns, and
        ``reader(missing columns)`` for the others (then kept)."""
        mem = self.cache.chunks
        if mem is None or self.source_id is None or not columns:
            return reader(columns)
        ident = block_identity(parts, self.cache.hash_content, self.files, self.rows)
        if ident is None:
            return reader(columns)
        base = repr((self.source_id, ident))
        have = {}
        for c in columns:
            got = mem.get((base, c))
            if got is not None:
                have[c] = got
        missing = [c for c in columns if c not in have]
        _count("column chunks", "hits", len(have))
        _count("column chunks", "misses", len(missing))
        _count("column chunks", "bytes", sum(f.nbytes for _, f in have.values()))
        if not missing:
            fields, arrays = zip(*(have[c] for c in columns))
            return pa.Table.from_arrays(list(arrays), schema=pa.schema(list(fields)))
        t0 = time.perf_counter()
        table = reader(missing if have else columns)
        seconds = time.perf_counter() - t0
        total = max(table.nbytes, 1)
        for c in missing:
            if c not in table.column_names:
                return reader(columns)  # a source that answers differently: do not mix
            col = table.column(c)
            field = table.schema.field(c)
            mem.put((base, c), (field, col), seconds * col.nbytes / total, col.nbytes)
        if not have:
            return table
        for c in missing:
            have[c] = (table.schema.field(c), table.column(c))
        fields, arrays = zip(*(have[c] for c in columns))
        return pa.Table.from_arrays(list(arrays), schema=pa.schema(list(fields)))


def for_scan(source, plans) -> ScanCache | None:
    """The :class:`ScanCache` of a scan when a cache is active (:func:`current`), else
    ``None``. Sources held by the ranks (stages) and in memory are never cached."""
    cache = current()
    if cache is None:
        return None
    if getattr(source, "owner_of", None) is not None:
        return None
    return ScanCache(cache, source, plans)
