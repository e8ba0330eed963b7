"""An on-disk store of Arrow tables by key: per-block partial results shared by ranks and jobs.

The engine's partial cache (:mod:`hpcframe.cache`) and the checkpoint of a stopped job keep
finished blocks' partials here, so that a later run (another job, a resumed job, another rank
count) reads them instead of recomputing them. The store knows nothing about plans or
partials: a key is any string (the caller builds it from the block's identity and the plan's
fingerprint, see :func:`digest`), a value is a :class:`pyarrow.Table` plus a small JSON-able
``meta`` dict.

API
---
``store = PartialStore(directory, fsync=True)``
    Opens (creates) the store. Many processes, ranks and concurrent jobs may share one
    directory, also on a shared file system. ``fsync=False`` skips flushing each entry to
    the disk before the rename (faster; an entry torn by a machine crash is still detected
    by its checksum and treated as absent).
``store.put(key, table, meta=None) -> bool``
    Writes the entry atomically (a uniquely named temporary file beside it, fsynced, then
    renamed into place): a reader sees the old entry, the new one or none, never a partial
    one. Two writers of the same key both leave a complete entry (the last rename wins).
    Returns ``False`` (and writes nothing) when the disk is full or the directory is not
    writable: a cache must not fail a computation.
``store.get(key) -> (table, meta) or None``
    ``None`` when the key is absent. An entry that is truncated, corrupt (checksum), of
    another format or version, or stored under another key (a foreign file, a hash
    collision) is never trusted: it is removed and counted in ``store.rejected``, and
    ``None`` is returned so that the caller recomputes it. A hit refreshes the entry's
    modification time (``clear(older_than=...)`` removes entries not *used* for a while).
``key in store``, ``store.delete(key)``, ``store.keys()``
``store.info() -> dict``
    ``entries``, ``bytes``, ``oldest``/``newest`` (epoch seconds of last use), ``directory``.
``store.clear(older_than=None) -> (entries, bytes)``
    Removes every entry (or those not used for ``older_than`` seconds) and stale temporary
    files of dead writers; returns what it removed.

On disk: ``<directory>/partials-v1/<2 hex>/<sha256 of key>.arrow``, each file::

    b"HPFPART1" | 32-byte SHA-256 of the payload | 8-byte little-endian payload length | payload

where the payload is an Arrow IPC stream whose schema metadata holds the key and ``meta``
(never pickle). The store is only a cache: deleting the directory is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import stat
import struct
import time
from collections.abc import Iterator

import pyarrow as pa

MAGIC = b"HPFPART1"
_HEADER = struct.Struct("<8s32sQ")
_LAYOUT = "partials-v1"
_META_KEY = b"hpcframe.partial.key"
_META_META = b"hpcframe.partial.meta"
_SUFFIX = ".arrow"
_TMP_MAX_AGE = 24 * 3600.0  # a temporary file older than this was left by a dead writer


def digest(*parts) -> str:
    """A stable SHA-256 hex digest of ``parts`` (strings, numbers, tuples/lists of them,
    ``None``): a convenient store key from a block's identity and a plan's fingerprint.

    Examples
    --------
    >>> from hpcframe.io.partials import digest
    >>> digest("a.parquet", 123, (0, 10)) == digest("a.parquet", 123, (0, 10))
    True
    >>> digest("a", 1) == digest("a", "1")
    False
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def _read_entry(path: str) -> bytes | None:
    """The bytes of the entry file ``path``, or ``None`` when it is absent, unreadable or not
    a regular file (a FIFO there would block a plain ``open``; a folder cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


class PartialStore:
    """Arrow tables by key in a shared directory (see the module docstring for the API).

    Parameters
    ----------
    directory : str or os.PathLike
        The store's folder, created if missing. Share it between ranks and jobs.
    fsync : bool, default True
        Flush every entry to the disk before renaming it into place.

    Attributes
    ----------
    rejected : int
        Entries found corrupt, truncated or foreign since the store was opened (removed).

    Examples
    --------
    >>> import tempfile, pyarrow as pa
    >>> from hpcframe.io.partials import PartialStore
    >>> store = PartialStore(tempfile.mkdtemp())
    >>> store.put("block 0 | sum(x)", pa.table({"x": [1, 2]}), {"kind": "frame"})
    True
    >>> table, meta = store.get("block 0 | sum(x)")
    >>> table.column("x").to_pylist(), meta
    ([1, 2], {'kind': 'frame'})
    >>> store.get("another key") is None
    True
    """

    def __init__(self, directory, fsync: bool = True) -> None:
        self.directory = os.fspath(directory)
        self.fsync = bool(fsync)
        self.root = os.path.join(self.directory, _LAYOUT)
        try:
            os.makedirs(self.root, exist_ok=True)
        except FileExistsError:
            raise FileExistsError(
                f"cache directory {self.directory}: {self.root} exists and is not a folder; "
                f"remove it or choose another cache directory"
            ) from None
        self.rejected = 0

    # -- paths ---------------------------------------------------------------------------
    def path_of(self, key: str) -> str:
        """The file holding ``key``'s entry."""
        h = hashlib.sha256(key.encode()).hexdigest()
        return os.path.join(self.root, h[:2], h + _SUFFIX)

    def _files(self) -> Iterator[os.DirEntry]:
        try:
            subdirs = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for sub in subdirs:
            if not sub.is_dir(follow_symlinks=False):
                continue
            try:
                entries = list(os.scandir(sub.path))
            except FileNotFoundError:
                continue
            yield from entries

    # -- reading -------------------------------------------------------------------------
    def get(self, key: str):
        """``(table, meta)`` of ``key``, or ``None`` (absent, or rejected and removed)."""
        path = self.path_of(key)
        data = _read_entry(path)
        if data is None:
            return None
        found = _decode(data, key)
        if found is None:
            self.rejected += 1
            self._remove(path)
            return None
        try:
            os.utime(path)  # last use, for clear(older_than=...)
        except OSError:
            pass
        return found

    def __contains__(self, key: str) -> bool:
        return os.path.isfile(self.path_of(key))

    def keys(self) -> list[str]:
        """The keys of the entries (read from each file's header; unreadable files are
        skipped)."""
        out = []
        for entry in self._files():
            if not entry.name.endswith(_SUFFIX):
                continue
            data = _read_entry(entry.path)
            if data is None:
                continue
            key = _key_of(data)
            if key is not None:
                out.append(key)
        return out

    # -- writing -------------------------------------------------------------------------
    def put(self, key: str, table: pa.Table, meta: dict | None = None) -> bool:
        """Store ``table`` (and the JSON-able ``meta``) under ``key`` atomically. Returns
        ``False`` when nothing could be written (disk full, read-only directory)."""
        payload = _encode(key, table, meta or {})
        path = self.path_of(key)
        tmp = os.path.join(
            os.path.dirname(path),
            f".{os.path.basename(path)}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp",
        )
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload)))
                    fh.write(payload)
                    if self.fsync:
                        fh.flush()
                        os.fsync(fh.fileno())
            except BaseException:
                self._remove(tmp)
                raise
            os.replace(tmp, path)
        except OSError:
            self._remove(tmp)
            return False
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``'s entry; whether there was one."""
        return self._remove(self.path_of(key))

    @staticmethod
    def _remove(path: str) -> bool:
        try:
            os.remove(path)
            return True
        except OSError:
            return False

    # -- maintenance ---------------------------------------------------------------------
    def info(self) -> dict:
        """``{"directory", "entries", "bytes", "oldest", "newest"}`` (times: epoch seconds of
        the last use of the least and most recently used entries; ``None`` when empty)."""
        entries, size, times = 0, 0, []
        for entry in self._files():
            if not entry.name.endswith(_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            entries += 1
            size += st.st_size
            times.append(st.st_mtime)
        return {
            "directory": self.directory,
            "entries": entries,
            "bytes": size,
            "oldest": min(times) if times else None,
            "newest": max(times) if times else None,
        }

    def clear(self, older_than: float | None = None) -> tuple[int, int]:
        """Remove every entry, or only those not used for ``older_than`` seconds, and the
        temporary files of writers that died (older than a day). Returns ``(entries,
        bytes)`` removed. Safe while other jobs use the store (they recompute what is gone)."""
        now = time.time()
        removed, freed = 0, 0
        for entry in self._files():
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            age = now - st.st_mtime
            if entry.name.startswith("."):  # a temporary file
                if age > _TMP_MAX_AGE:
                    self._remove(entry.path)
                continue
            if older_than is not None and age < older_than:
                continue
            if self._remove(entry.path):
                removed += 1
                freed += st.st_size
        return removed, freed


def _encode(key: str, table: pa.Table, meta: dict) -> bytes:
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[_META_KEY] = key.encode()
    schema_meta[_META_META] = json.dumps(meta, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _payload(data: bytes) -> bytes | None:
    """The verified payload of a file's bytes, or ``None``."""
    if len(data) < _HEADER.size:
        return None
    magic, checksum, length = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != checksum:
        return None
    return payload


def _key_of(data: bytes) -> str | None:
    payload = _payload(data)
    if payload is None:
        return None
    try:
        schema = pa.ipc.open_stream(payload).schema
        return (schema.metadata or {})[_META_KEY].decode()
    except (pa.ArrowException, KeyError, UnicodeDecodeError):
        return None


def _decode(data: bytes, key: str):
    payload = _payload(data)
    if payload is None:
        return None
    try:
        table = pa.ipc.open_stream(payload).read_all()
        schema_meta = dict(table.schema.metadata or {})
        if schema_meta.pop(_META_KEY, None) != key.encode():
            return None  # another key's entry (foreign file, or a digest collision)
        meta = json.loads(schema_meta.pop(_META_META, b"{}"))
    except (pa.ArrowException, ValueError, UnicodeDecodeError):
        return None
    return table.replace_schema_metadata(schema_meta or None), meta
