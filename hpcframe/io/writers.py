"""Transactional, resumable datasets on disk: the formats, the staging folder, the lock, the
manifest and the publish; the file side of ``to_parquet``, ``to_hdf`` and ``to_csv``.

The parallel driver that runs a frame through the engine and calls these functions is
:mod:`hpcframe.writing`: every rank writes the leaves it reads with :meth:`_Format.write_leaf`
(files named after the leaf, ``part-000012.parquet``) and records them
(:func:`record_leaf`); the root commits (:func:`commit`) and publishes. No data passes
through the root. This module imports nothing of the engine.

Writes are transactions
    A reader never sees a partial dataset. For a destination ``dst`` (a folder; for HDF5 the
    folder ``dst.d`` of part files plus the file ``dst``) everything is written *beside* it:

    * ``.<name>.hpcframe-lock`` — an exclusive lock (created atomically with ``link(2)``, which
      is reliable on NFS and Lustre, where ``fcntl``/``flock`` locks often are not). It holds
      host, pid, start time and command of the writer. A second writer into the same
      destination is refused with a message naming the holder. A lock left by a killed job on
      the same host (its pid is gone) is broken automatically; one from another host is
      reported and must be removed by hand once that job is known to be gone.
    * ``.<name>.hpcframe-staging/`` — the whole dataset, laid out as it will be published,
      plus bookkeeping (``_hpcframe_plan.json``: what is written; ``_hpcframe_leaves/``: one
      record per finished leaf). When every leaf is done, the root writes
      ``_hpcframe_manifest.json`` into it: the *commit point*. It then removes the
      bookkeeping and publishes the folder with **one rename** onto ``dst`` (an empty ``dst``
      folder is replaced by the rename). Replacing an existing dataset (``overwrite``) renames
      the old one to ``.<name>.hpcframe-old`` first, so there is a window of two renames in
      which ``dst`` does not exist (readers get "not found", never a mix), then deletes it.
    * HDF5: the staging folder becomes ``dst.d``; the virtual-dataset file ``dst`` is staged
      as ``dst.d/_hpcframe_vds.h5`` and renamed onto ``dst`` last (an existing ``dst`` is moved
      aside first, so that an old ``dst`` never points into a new ``dst.d``).

    Every interrupted state is resumable by running the same write again: before the commit
    the finished leaves are skipped (not even read); after it the publish is completed; after
    the publish the run reports that there is nothing to do. Symbolic links are never
    followed: a link where the staging folder, a folder inside it or the destination should
    be is refused with a clear error. Disk-full errors name the file that could not be
    written.

Layouts
    * Parquet: ``dst/part-<leaf>.parquet``, or hive folders ``dst/Year=2016/Month=1/part-<leaf>
      .parquet`` with ``partition_by`` (the partition columns are not stored in the files);
      ``row_group_size``, ``compression``, min/max statistics per row group and page CRC
      checksums.
    * CSV: ``dst/part-<leaf>.csv`` (with header), same hive option.
    * HDF5: ``<dst>.d/part-<leaf>.h5`` (a group ``data`` of chunked, compressed 1-D column
      datasets, encoded by :mod:`hpcframe.io.hdf5codec`) and ``dst`` itself: one file whose
      group ``data`` holds *virtual datasets* (h5py VDS) presenting all parts as one table,
      readable by ``hf.read_hdf(dst)``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import sys
import time
import uuid
from urllib.parse import quote

import pyarrow as pa

from .dataset import DatasetError
from .formats import CSV, HDF5, PARQUET
from .fs import NOFOLLOW, fsync_dir, named, process_gone, process_start, remove_file, replace_atomic
from .hdf5codec import GROUP, encode_arrow

MANIFEST = "_hpcframe_manifest.json"
#: The staging folder inside the destination used by hpcframe before 0.x (refused if found).
STAGING = "_hpcframe_staging"
PLAN = "_hpcframe_plan.json"
LEAVES = "_hpcframe_leaves"
VDS = "_hpcframe_vds.h5"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


# --------------------------------------------------------------------------- target schema
def target_schema(meta, known: pa.Schema | None = None) -> pa.Schema:
    """The Arrow schema every written file gets, from the frame's (empty) pandas ``meta``:
    strings as ``string``, categoricals as ``dictionary<int32, string>``. Partitions are cast
    to it, so that all files agree even where pandas typed one partition differently (an
    integer column with missing values arrives as float).

    ``known``: the source's Arrow types (with their pandas dtype flags) of the columns the
    frame passes through unchanged. A bool column with a missing value somewhere (flagged
    there: ``object`` in pandas, whose type in ``meta`` says nothing of its values, or a
    Parquet dataset's bool column with a null in a later file, ``bool`` in ``meta`` until
    its footers are read) is written as ``bool`` — as pandas writes it — and marked
    :data:`NULLABLE_BOOL`; another ``object`` column as ``string``."""
    from .types import DTYPE_KEY, NULLS, OBJECT

    base = pa.Schema.from_pandas(meta, preserve_index=False)
    fields = []
    for f in base:
        t = f.type
        held = known.field(f.name) if known is not None and f.name in known.names else None
        if held is not None and pa.types.is_boolean(held.type):
            flag = (held.metadata or {}).get(DTYPE_KEY)
            if (pa.types.is_null(t) or pa.types.is_boolean(t)) and flag in (NULLS, OBJECT):
                fields.append(pa.field(f.name, pa.bool_(), metadata={NULLABLE_BOOL: b"1"}))
                continue
        if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: 0)(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = pa.dictionary(pa.int32(), pa.string())
        elif pa.types.is_null(t):
            t = pa.string()
        fields.append(pa.field(f.name, t))
    return pa.schema(fields)


#: field metadata of :func:`target_schema`: a bool column with a missing value somewhere in
#: the frame (``object`` in pandas), stored alike in every file whether or not that file's
#: rows have one (HDF5: float64 with NaN, see :func:`~hpcframe.io.hdf5codec.encode_arrow`)
NULLABLE_BOOL = b"hpcframe.nullable_bool"


def to_arrow(df, schema: pa.Schema, where: str) -> pa.Table:
    """``df`` as an Arrow table of ``schema``; raises :class:`DatasetError` naming the column
    when a value does not fit (e.g. a fractional value in an integer column)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    cols = []
    for f in schema:
        col = table.column(f.name)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DatasetError(
                    f"{where}: column {f.name!r} ({col.type}) cannot be written as {f.type}: {exc}"
                ) from exc
        cols.append(col)
    # one chunk per column: the Parquet writer is about twice as fast on contiguous columns
    return pa.Table.from_arrays(cols, schema=schema).combine_chunks()


def _hive_dir(keys, values) -> str:
    parts = []
    for k, v in zip(keys, values):
        text = _HIVE_NULL if v is None or v != v else str(v)
        parts.append(f"{k}={quote(text, safe='')}")
    return os.path.join(*parts)


def _replace_atomic(write, final: str, stage: str = "part") -> None:
    """:func:`hpcframe.io.fs.replace_atomic` with the test fault point ``stage``."""
    replace_atomic(write, final, before=lambda path: _fault(stage, path))


def _real_dir(path: str, what: str) -> bool:
    """``True`` when ``path`` is a real folder (not a link), ``False`` when it does not exist;
    raises :class:`DatasetError` for a link or anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise DatasetError(
            f"{path} ({what}) is a symbolic link; hpcframe never writes "
            f"through links there. Remove the link (rm {path}) and re-run"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise DatasetError(f"{path} ({what}) exists and is not a folder; remove it and re-run")
    return True


def _makedirs_nofollow(base: str, rel: str) -> None:
    """Create ``base/rel`` folder by folder, refusing any existing component that is a link
    (``base`` itself must be a real folder)."""
    path = base
    for part in [p for p in rel.split(os.sep) if p]:
        path = os.path.join(path, part)
        try:
            os.mkdir(path)
        except FileExistsError:
            _real_dir(path, "a folder of the staged dataset")


def staging_of(fmt) -> str:
    """The staging folder of ``fmt``'s destination: ``.<name>.hpcframe-staging`` beside it."""
    return _beside(fmt.dst, "staging")


def lock_of(fmt) -> str:
    """The lock file of ``fmt``'s destination: ``.<name>.hpcframe-lock`` beside it."""
    return _beside(fmt.dst, "lock")


def _beside(path: str, what: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.hpcframe-{what}")


def _trash(path: str) -> str:
    return _beside(path, "old")


# --------------------------------------------------------------------------- test hooks
_FAULT_RANK = [0]


def start_faults(rank: int) -> None:
    """Start counting the test fault points (see :func:`_fault`) afresh, as rank ``rank``."""
    _FAULT_RANK[0] = rank
    _FAULT_COUNT.clear()


def _fault(stage: str, path: str) -> None:
    """Fault injection for the tests (``HPCFRAME_TEST_FAULT=stage:kind[:rank[:n]]``): at the
    ``n``-th time (default 1st) this rank reaches ``stage``, ``kill`` sends itself SIGKILL,
    ``enospc`` raises ``OSError(ENOSPC)`` for ``path``, ``fill`` fills the file system of
    ``$HPCFRAME_TEST_FILLER`` with that file (so that the real write that follows fails with
    the kernel's ENOSPC), ``pause`` sleeps ``$HPCFRAME_TEST_PAUSE`` seconds (default 3).
    Does nothing when the variable is unset."""
    spec = os.environ.get("HPCFRAME_TEST_FAULT")
    if not spec:
        return
    parts = spec.split(":")
    if parts[0] != stage or (len(parts) > 2 and parts[2] and int(parts[2]) != _FAULT_RANK[0]):
        return
    nth = int(parts[3]) if len(parts) > 3 else 1
    _FAULT_COUNT[stage] = _FAULT_COUNT.get(stage, 0) + 1
    if _FAULT_COUNT[stage] != nth:
        return
    kind = parts[1]
    if kind == "kill":
        import signal

        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device (injected)", path)
    elif kind == "pause":  # hold the lock for a while (races)
        time.sleep(float(os.environ.get("HPCFRAME_TEST_PAUSE", "3")))
    elif kind == "fill":
        fd = os.open(os.environ["HPCFRAME_TEST_FILLER"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)


_FAULT_COUNT: dict = {}


# --------------------------------------------------------------------------- formats
def part_name(leaf, suffix: str, tag: str = "") -> str:
    """The name of the file of leaf ``leaf`` (a number, or ``"empty"``) of a write whose plan
    gives ``tag``: ``part-TAG-000012.parquet``."""
    number = f"{leaf:06d}" if isinstance(leaf, int) else str(leaf)
    return f"part-{tag}-{number}{suffix}" if tag else f"part-{number}{suffix}"


class _Format:
    """How one leaf's rows become files, and how the root finishes the dataset."""

    name = suffix = ""
    #: part of every file name of one write (set from its plan, :func:`hpcframe.writing.write`):
    #: a reader holding the file list of an earlier dataset at this path finds none of its
    #: files replaced by another write's, instead of reading part of each
    tag = ""

    def __init__(self, dst: str, partition_by=None):
        self.dst = os.path.abspath(os.fspath(dst))
        self.partition_by = list(partition_by or [])

    def _part_name(self, leaf) -> str:
        return part_name(leaf, self.suffix, self.tag)

    @property
    def data_dir(self) -> str:
        return self.dst

    def options(self) -> dict:
        return {"partition_by": self.partition_by}

    def write_leaf(self, table: pa.Table, leaf: int, staging: str) -> list[dict]:
        """Write ``table`` (the leaf's rows) into ``staging``; return file descriptors."""
        if not self.partition_by:
            groups = [((), table)] if table.num_rows else []
        else:
            groups = _split_hive(table, self.partition_by)
        out = []
        for values, t in groups:
            rel_dir = _hive_dir(self.partition_by, values) if self.partition_by else ""
            rel = os.path.join(rel_dir, self._part_name(leaf))
            final = os.path.join(staging, rel)
            _makedirs_nofollow(staging, rel_dir)
            _replace_atomic(lambda tmp, t=t: self.write_file(t, tmp), final)
            out.append({"path": rel, "rows": t.num_rows, "bytes": os.path.getsize(final), "leaf": leaf})
        return out

    def write_file(self, table: pa.Table, path: str) -> None:
        raise NotImplementedError

    def finish(self, files: list[dict], schema: pa.Schema, staging: str) -> None:
        """Root only, before the commit: check that every staged file is there (and, for
        HDF5, stage the file that presents them as one table)."""
        for f in files:
            src = os.path.join(staging, f["path"])
            if not os.path.isfile(src) or os.path.islink(src):
                raise DatasetError(
                    f"{src}: the staged file is missing (deleted during the "
                    f"write?); remove {staging} and write again"
                )

    def empty_file(self, schema: pa.Schema, staging: str) -> list[dict]:
        """The one file an empty result is written as (so that readers find a dataset)."""
        return self.write_leaf(schema.empty_table(), 0, staging) or [self._write_empty(schema, staging)]

    def _write_empty(self, schema, staging):
        rel = self._part_name("empty")
        _replace_atomic(lambda tmp: self.write_file(schema.empty_table(), tmp), os.path.join(staging, rel))
        return {"path": rel, "rows": 0, "bytes": os.path.getsize(os.path.join(staging, rel)), "leaf": -1}


def _split_hive(table: pa.Table, keys: list[str]):
    """``[(values, table_without_keys)]`` per distinct key combination, in sorted order."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    groups = table.select(keys).group_by(keys, use_threads=False).aggregate([])
    rest = [c for c in table.column_names if c not in keys]
    out = []
    rows = sorted(groups.to_pylist(), key=lambda r: tuple((v is None, str(v)) for v in (r[k] for k in keys)))
    for row in rows:
        mask = None
        for k in keys:
            col = table.column(k)
            m = pc.is_null(col) if row[k] is None else pc.equal(col, pa.scalar(row[k], col.type))
            mask = m if mask is None else pc.and_(mask, m)
        out.append((tuple(row[k] for k in keys), table.filter(mask).select(rest)))
    return out


class ParquetFormat(_Format):
    """Parquet part files (statistics, page checksums), optionally in hive folders."""

    name, suffix = "parquet", PARQUET.suffixes[0]

    def __init__(
        self, dst, partition_by=None, row_group_size=1 << 20, compression="zstd", compression_level=None
    ):
        super().__init__(dst, partition_by)
        self.row_group_size, self.compression = row_group_size, compression
        self.compression_level = compression_level

    def options(self):
        """The options that make two writes the same write (recorded in the plan)."""
        return {**super().options(), "row_group_size": self.row_group_size, "compression": self.compression}

    def write_file(self, table, path):
        """Write the Arrow ``table`` as one file at ``path``."""
        import pyarrow.parquet as pq

        pq.write_table(
            table,
            path,
            row_group_size=self.row_group_size,
            compression=self.compression,
            compression_level=self.compression_level,
            write_statistics=True,
            write_page_checksum=True,
        )


class CSVFormat(_Format):
    """CSV part files (with header), optionally in hive folders."""

    name, suffix = "csv", CSV.suffixes[0]

    def write_file(self, table, path):
        """Write the Arrow ``table`` as one file at ``path``."""
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)


class HDF5Format(_Format):
    """Part files in ``<dst>.d/``; ``dst`` holds virtual datasets over them."""

    name, suffix = "hdf5", HDF5.suffixes[0]

    def __init__(self, dst, compression="gzip", chunk_rows=65536):
        super().__init__(dst)
        self.compression, self.chunk_rows = compression, chunk_rows

    @property
    def data_dir(self):
        """The folder that holds the dataset's files."""
        return self.dst + ".d"

    def options(self):
        """The options that make two writes the same write (recorded in the plan)."""
        return {"compression": self.compression}

    def write_file(self, table, path):
        """Write the Arrow ``table`` as one file at ``path``."""
        import h5py

        with h5py.File(path, "w") as f:
            g = f.create_group(GROUP, track_order=True)
            for field, col in zip(table.schema, table.columns):
                name = field.name
                nulls = NULLABLE_BOOL in (field.metadata or {})
                data, dtype, attrs = encode_arrow(col, name, nulls_elsewhere=nulls)
                chunks = (max(1, min(self.chunk_rows, len(data))),) if len(data) else None
                ds = g.create_dataset(
                    name,
                    data=data,
                    dtype=dtype,
                    chunks=chunks,
                    compression=self.compression if chunks else None,
                )
                ds.attrs.update(attrs)

    def finish(self, files, schema, staging):
        """Stage the virtual-dataset file as ``staging/_hpcframe_vds.h5`` (published onto
        ``dst`` after the folder; its sources are relative to ``dst``'s folder)."""
        import h5py

        super().finish(files, schema, staging)
        files = [f for f in files if f["rows"]] or files[:1]
        total = sum(f["rows"] for f in files)

        def write(tmp):
            with h5py.File(tmp, "w") as out:
                g = out.create_group(GROUP, track_order=True)
                with h5py.File(os.path.join(staging, files[0]["path"]), "r") as first:
                    cols = [(n, first[GROUP][n].dtype, dict(first[GROUP][n].attrs)) for n in first[GROUP]]
                for name, dtype, attrs in cols:
                    if total == 0:
                        ds = g.create_dataset(name, shape=(0,), dtype=dtype)
                    else:
                        layout = h5py.VirtualLayout(shape=(total,), dtype=dtype)
                        at = 0
                        for f in files:
                            rel = os.path.join(os.path.basename(self.data_dir), f["path"])
                            layout[at : at + f["rows"]] = h5py.VirtualSource(
                                rel, f"{GROUP}/{name}", shape=(f["rows"],)
                            )
                            at += f["rows"]
                        ds = g.create_virtual_dataset(name, layout)
                    ds.attrs.update(attrs)

        _replace_atomic(write, os.path.join(staging, VDS), "vds")


def record_leaf(staging: str, index: int, files: list[dict]) -> None:
    """Record (atomically) that leaf ``index`` is written as ``files``: a resumed write
    skips it (:func:`done_leaves`)."""
    record = os.path.join(staging, LEAVES, f"leaf-{index:06d}.json")
    _replace_atomic(lambda tmp: _write_json(tmp, files), record, "leaf-record")


def leaves_recorded(staging: str) -> int:
    """How many leaves of the write staged in ``staging`` are recorded as done (all ranks);
    0 while the staging folder is still being made (its record folder not there yet)."""
    try:
        return len(os.listdir(os.path.join(staging, LEAVES)))
    except FileNotFoundError:
        return 0


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)
        f.flush()


def _read_json(path):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- the lock
class DestinationLockedError(FileExistsError):
    """Another write into the same destination holds its lock."""


class Lock:
    """An exclusive lock on one destination: the file ``.<name>.hpcframe-lock`` beside it,
    created atomically with ``link(2)`` from a complete temporary file (so it always holds
    its owner: host, pid, start time, command and a random token). ``link`` is atomic on
    local file systems, NFS and Lustre, unlike ``fcntl``/``flock`` locks, which some parallel
    file systems ignore or do not share between nodes. File systems without hard links fall
    back to ``O_CREAT | O_EXCL``."""

    def __init__(self, path: str, token: str):
        self.path, self.token = path, token

    @classmethod
    def acquire(cls, path: str, target: str) -> Lock:
        """Take the lock or raise :class:`DestinationLockedError` naming its holder. A lock
        whose holder ran on this host and is gone (killed) is broken and taken."""
        token = uuid.uuid4().hex
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": token,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # the process's start (clock ticks since boot): a later process with the same
            #    pid is not the holder
            "pid_start": process_start(os.getpid()),
            "target": target,
            "command": " ".join(sys.argv)[:300],
        }
        tmp = f"{path}.{info['host']}.{info['pid']}.{token}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
            try:
                os.write(fd, json.dumps(info).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            _fault("lock", path)
        except OSError as exc:
            remove_file(tmp)
            raise named(exc, path) from exc
        try:
            for _ in range(5):
                if cls._link(tmp, path, info):
                    _sweep(path)
                    return cls(path, token)
                holder = _read_lock(path)
                if holder is None:
                    continue  # released meanwhile: try again
                if not _stale(holder):
                    raise DestinationLockedError(_locked_message(path, target, holder))
                _break(path, holder)
            raise DestinationLockedError(
                f"{target}: could not take the lock {path} (other writers keep taking it); try again later"
            )
        finally:
            remove_file(tmp)

    @staticmethod
    def _link(tmp: str, path: str, info: dict) -> bool:
        try:
            os.link(tmp, path)  # fails if path exists, even as a dangling link
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:  # no hard links here: exclusive create, then write the owner
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(info).encode())
        finally:
            os.close(fd)
        return True

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        holder = _read_lock(self.path)
        if holder is not None and holder.get("token") == self.token:
            remove_file(self.path)


def _sweep(path: str) -> None:
    """Remove the temporary lock files that killed writers on this host left beside
    ``path`` (``<lock>.<host>.<pid>.<token>.tmp`` whose pid is gone)."""
    folder, base = os.path.split(path)
    host = socket.gethostname()
    for name in os.listdir(folder or "."):
        if not (name.startswith(base + ".") and name.endswith(".tmp")):
            continue
        fields = name[len(base) + 1 : -4].rsplit(".", 2)
        if (
            len(fields) == 3
            and fields[0] == host
            and fields[1].isdigit()
            and _stale({"host": host, "pid": int(fields[1])})
        ):
            remove_file(os.path.join(folder, name))


def _read_lock(path: str):
    """The owner recorded in lock file ``path`` (``{}`` if unreadable), ``None`` if gone."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:  # a link, or unreadable
        return {}
    try:
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _stale(holder: dict) -> bool:
    """Whether the lock's holder is known to be gone: it ran on this host and its pid no
    longer exists. A holder on another host cannot be checked (never stale here)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    # (gone also when a zombie: a killed holder not yet reaped; after a whole-job kill the
    #    orphaned ranks wait for init)
    if process_gone(pid):
        return True
    # the pid is alive: the holder, or another process that got its pid since
    recorded = holder.get("pid_start")
    start = process_start(pid) if isinstance(recorded, int) else None
    return start is not None and start != recorded


def _break(path: str, holder: dict) -> None:
    """Remove the stale lock ``path`` (whose content was ``holder``) without removing a
    fresh lock another writer took meanwhile: move it aside atomically, check what was moved,
    and put it back if it was not the stale one."""
    aside = f"{path}.stale.{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    moved = _read_lock(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        try:
            os.link(aside, path)  # a fresh lock: give it back
        except OSError:
            pass
    remove_file(aside)


def _locked_message(path: str, target: str, holder: dict) -> str:
    if not holder:
        return (
            f"{target} is locked by {path}, which does not say who holds it (a writer "
            f"killed while taking it?). If no other hpcframe write into {target} is "
            f"running, remove the lock (rm {path}) and re-run"
        )
    who = (
        f"pid {holder.get('pid')} on host {holder.get('host')}, since "
        f"{holder.get('started')}, command: {holder.get('command')}"
    )
    if holder.get("host") == socket.gethostname():
        return (
            f"{target} is being written by another hpcframe job ({who}); wait for it to "
            f"finish, or stop it and re-run this write (its lock {path} is then cleared "
            f"automatically). If pid {holder.get('pid')} is not an hpcframe job (the pid "
            f"was reused), the lock is stale: remove it (rm {path}) and re-run"
        )
    return (
        f"{target} is being written by another hpcframe job ({who}); wait for it to "
        f"finish. If that job is no longer running (killed), remove its lock "
        f"(rm {path}) and re-run: the write resumes"
    )


# --------------------------------------------------------------------------- checks
def _inside(base: str, rel) -> str:
    """``base/rel`` when ``rel`` is a relative path that stays inside ``base`` (after
    resolving ``..`` and symbolic links); raises ``ValueError`` otherwise."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or "\0" in rel:
        raise ValueError(f"{rel!r} is not a relative path")
    if ".." in rel.replace("\\", "/").split("/"):
        raise ValueError(f"{rel!r} contains '..'")
    root = os.path.realpath(base)
    full = os.path.realpath(os.path.join(base, rel))
    if full == root or os.path.commonpath([root, full]) != root:
        raise ValueError(f"{rel!r} points outside {base}")
    return os.path.join(base, rel)


def _checked_files(record: str, base: str, files) -> list:
    """``files`` (a list of file descriptors read from ``record``) after checking that every
    ``path`` stays inside ``base``; raises :class:`DatasetError` naming the record and the
    entry otherwise."""
    if not isinstance(files, list):
        raise DatasetError(f"{record}: 'files' is not a list; remove it or choose another path")
    for f in files:
        try:
            if not isinstance(f, dict):
                raise ValueError("an entry is not an object")
            _inside(base, f.get("path"))
        except ValueError as exc:
            raise DatasetError(
                f"{record}: refusing the file entry {f!r} ({exc}); hpcframe only "
                f"touches files inside {base}. Remove {record} by hand or "
                f"choose another path"
            ) from None
    return files


def _read_plan(plan_file: str, staging: str):
    """The plan recorded in a staging folder; a :class:`DatasetError` naming it and what to
    do when it is not JSON (a damaged file: what the folder holds cannot be known)."""
    try:
        return _read_json(plan_file)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{plan_file}, the plan of an unfinished write, is damaged ({exc}); remove the "
            f"unfinished write (rm -r {staging}) and re-run"
        ) from None


def _read_manifest(manifest: str, data_dir: str) -> dict:
    """The manifest at ``manifest`` after checking its shape (an object whose ``files`` is a
    list of entries inside ``data_dir``); raises :class:`DatasetError` otherwise."""
    try:
        old = _read_json(manifest)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{manifest} is not an hpcframe manifest ({exc}); remove it or choose another path"
        ) from None
    if (
        not isinstance(old, dict)
        or not isinstance(old.get("files", []), list)
        or ("plan" in old and not isinstance(old["plan"], dict))
    ):
        raise DatasetError(f"{manifest} is not an hpcframe manifest; remove it or choose another path")
    _checked_files(manifest, data_dir, old.get("files", []))
    return old


def _remove_tree(path: str) -> None:
    """Remove ``path``: a link or file is unlinked (never followed), a folder removed."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        remove_file(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _remove_temporaries(staging: str) -> None:
    """Remove the ``.<name>.<pid>.tmp`` files that killed writers left in ``staging`` (only
    called while no rank writes into it)."""
    for root, _, names in os.walk(staging):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                remove_file(os.path.join(root, name))


def _check_replaceable(final: str, old: dict) -> None:
    """Raise ``FileExistsError`` when the hpcframe dataset in ``final`` (manifest ``old``)
    holds files its manifest does not list: replacing the folder would delete them."""
    listed = {os.path.normpath(f["path"]) for f in old.get("files", [])} | {MANIFEST, VDS}
    foreign = []
    for root, dirs, names in os.walk(final):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = os.path.relpath(os.path.join(root, name), final)
            if rel not in listed:
                foreign.append(rel)
    if foreign:
        raise FileExistsError(
            f"{final} holds files that are not part of the dataset hpcframe "
            f"wrote there ({', '.join(sorted(foreign)[:3])}); overwriting "
            f"replaces the whole folder, so move them away first (or choose "
            f"another path)"
        )


def prepare(fmt, staging, plan, overwrite) -> str:
    """Root, holding the lock: check the destination and bring any interrupted earlier write
    to a known state. Returns ``"complete"`` (the same write is published: nothing to do),
    ``"publish"`` (the same write is committed, only the publish is left) or ``"ready"`` (the
    staging folder holds the plan and any finished leaves). Raises ``FileExistsError`` or
    :class:`DatasetError` (a link where hpcframe writes, a malformed manifest, or one naming
    files outside the destination)."""
    final = fmt.data_dir
    hdf5 = fmt.name == "hdf5"
    staged = _real_dir(staging, "the staging folder of this write")
    legacy = os.path.join(final, STAGING)
    if _real_dir(final, "the destination") and os.path.lexists(legacy):
        if os.path.islink(legacy):
            raise DatasetError(
                f"{legacy} is a symbolic link; hpcframe never writes through "
                f"links. Remove it (rm {legacy}) and re-run"
            )
        raise FileExistsError(
            f"{legacy} is an unfinished write by an older hpcframe version; "
            f"remove it (rm -r {legacy}) and re-run"
        )
    if os.path.ismount(final):
        raise FileExistsError(
            f"{final} is a mount point: hpcframe publishes a dataset by renaming a folder onto "
            f"its path, which a mount point cannot be replaced by; write into a folder inside "
            f"it (e.g. {os.path.join(final, 'data')})"
        )
    manifest = os.path.join(final, MANIFEST)
    old = _read_manifest(manifest, final) if os.path.exists(manifest) else None

    # a committed write that was not (completely) published
    staged_manifest = os.path.join(staging, MANIFEST)
    if staged and os.path.exists(staged_manifest):
        committed = _read_manifest(staged_manifest, staging)
        if committed.get("plan") != plan:
            if not overwrite:
                if _same_but_inputs(committed.get("plan"), plan):
                    raise FileExistsError(
                        f"{staging} holds a finished write of this query into {fmt.dst} over "
                        f"an earlier version of its input, interrupted while publishing; pass "
                        f"overwrite=True (--overwrite) to discard it and write the current input"
                    )
                raise FileExistsError(
                    f"{staging} holds a finished write of "
                    f"{committed.get('plan', {}).get('source')!r} into {fmt.dst} that was "
                    f"interrupted while publishing; re-run that write to publish it, or pass "
                    f"overwrite=True (--overwrite) to discard it"
                )
            shutil.rmtree(staging)
            staged = False
        elif old is not None and old.get("plan") != plan and not overwrite:
            raise FileExistsError(
                f"{fmt.dst} already holds a dataset written by hpcframe "
                f"(from {old.get('plan', {}).get('source')!r}); pass "
                f"overwrite=True (--overwrite) to replace it"
            )
        else:
            return "publish"
    if hdf5 and old is not None and old.get("plan") == plan and os.path.lexists(os.path.join(final, VDS)):
        return "publish"  # the folder is in place, the file dst not yet

    # a swap interrupted before the new folder was in place: put the old dataset back
    for path in [final, fmt.dst] if hdf5 else [final]:
        trash = _trash(path)
        if os.path.lexists(trash):
            if not os.path.lexists(path):
                os.rename(trash, path)
            else:
                _remove_tree(trash)
    if old is None and os.path.exists(manifest):
        old = _read_manifest(manifest, final)

    # the destination
    if old is not None:
        if old.get("plan") == plan and not overwrite and (not hdf5 or os.path.isfile(fmt.dst)):
            return "complete"
        if not overwrite:
            earlier = (
                "the same query over an earlier version of its input"
                if _same_but_inputs(old.get("plan"), plan)
                else repr(old.get("plan", {}).get("source"))
            )
            raise FileExistsError(
                f"{fmt.dst} already holds a dataset written by hpcframe (from {earlier}); "
                f"pass overwrite=True (--overwrite) or choose another path"
            )
        _check_replaceable(final, old)
    elif _real_dir(final, "the destination"):
        others = sorted(os.listdir(final))
        if others:
            raise FileExistsError(
                f"{final} exists and holds files that hpcframe did not "
                f"write ({', '.join(others[:3])}); choose a new or empty "
                f"folder"
            )
    if hdf5 and os.path.lexists(fmt.dst):
        if os.path.islink(fmt.dst) or not os.path.isfile(fmt.dst):
            raise FileExistsError(
                f"{fmt.dst} exists and is not a file (a folder or a link); remove it or choose another path"
            )
        if old is None:
            # not hpcframe's (its files are beside their manifest): a user's file may hold
            #    other tables, which an overwrite would delete
            raise FileExistsError(
                f"{fmt.dst} exists and was not written by hpcframe; overwrite=True replaces "
                f"only files hpcframe wrote. Choose another path, or remove the file yourself "
                f"if nothing in it is needed"
            )
        if not overwrite:
            raise FileExistsError(
                f"{fmt.dst} exists; pass overwrite=True (--overwrite) or choose another path"
            )

    # the staging folder
    plan_file = os.path.join(staging, PLAN)
    if staged:
        _remove_temporaries(staging)
        current = _read_plan(plan_file, staging) if os.path.isfile(plan_file) else None
        if current != plan:
            if _same_but_inputs(current, plan):
                # the same write over an input that changed since it was interrupted (a file
                #    edited, appended or replaced; other read options; another user
                #    function): its finished leaves hold old rows, so it starts over
                print(
                    f"hpcframe: the input of the unfinished write into {fmt.dst} changed "
                    f"since it was interrupted; starting it over",
                    file=sys.stderr,
                    flush=True,
                )
            elif current is not None and not overwrite:
                source = current.get("source") if isinstance(current, dict) else None
                raise FileExistsError(
                    f"{staging} holds an unfinished write of something else into {fmt.dst} "
                    f"(from {source!r}, or another query or options); re-run that write to "
                    f"finish it, remove the folder (rm -r {staging}), or pass overwrite=True "
                    f"(--overwrite) to discard it"
                )
            shutil.rmtree(staging)
            staged = False
    if not staged:
        os.mkdir(staging)
    _makedirs_nofollow(staging, LEAVES)
    if not os.path.isfile(plan_file):
        _replace_atomic(lambda tmp: _write_json(tmp, plan), plan_file, "plan")
    return "ready"


def _same_but_inputs(recorded, plan) -> bool:
    """Whether the ``recorded`` plan of an earlier write is ``plan`` but for its inputs."""
    if not isinstance(recorded, dict) or recorded.get("inputs") == plan.get("inputs"):
        return False
    others = {k: v for k, v in plan.items() if k != "inputs"}
    return {k: v for k, v in recorded.items() if k != "inputs"} == others


def publish(fmt, staging) -> None:
    """Root, holding the lock: publish the committed ``staging`` folder onto the destination
    with one rename (an existing dataset is renamed aside first and deleted after), then, for
    HDF5, the file ``dst``. Each step can be interrupted: :func:`prepare` recognises every
    state and the next run completes it."""
    try:
        _publish_steps(fmt, staging)
    except OSError as exc:
        raise named(exc, getattr(exc, "filename", None) or fmt.dst) from exc


def _publish_steps(fmt, staging) -> None:
    final = fmt.data_dir
    hdf5 = fmt.name == "hdf5"
    parent = os.path.dirname(final)
    if _real_dir(staging, "the staging folder") and os.path.isfile(os.path.join(staging, MANIFEST)):
        _fault("cleanup", staging)
        _remove_temporaries(staging)
        shutil.rmtree(os.path.join(staging, LEAVES), ignore_errors=True)
        remove_file(os.path.join(staging, PLAN))
        fsync_dir(staging)
        replacing = os.path.exists(os.path.join(final, MANIFEST))  # the old dataset
        if replacing:
            _check_replaceable(final, _read_manifest(os.path.join(final, MANIFEST), final))
        if hdf5 and os.path.lexists(fmt.dst):
            os.rename(fmt.dst, _trash(fmt.dst))  # an old dst must never see the new parts
        moved = False
        if replacing:
            _remove_tree(_trash(final))
            os.rename(final, _trash(final))
            moved = True
        _fault("publish", final)
        try:
            os.rename(staging, final)  # replaces an empty folder; fails on anything else
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            if moved:
                os.rename(_trash(final), final)
            raise FileExistsError(
                f"{final} was created by someone else while this write ran; "
                f"the finished dataset is kept in {staging}: move {final} "
                f"away and re-run the same write to publish it"
            ) from None
        fsync_dir(parent)
        _fault("published", final)
    if hdf5 and os.path.lexists(os.path.join(final, VDS)):
        os.replace(os.path.join(final, VDS), fmt.dst)
        fsync_dir(parent)
    for path in [final, fmt.dst] if hdf5 else [final]:
        try:
            _remove_tree(_trash(path))
        except OSError:
            pass  # a leftover the next write removes


def done_leaves(staging, n) -> dict:
    """The leaves an interrupted earlier run finished (index -> file descriptors), of ``n``."""
    done = {}
    folder = os.path.join(staging, LEAVES)
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.startswith("leaf-") and name.endswith(".json"):
            i = int(name[5:-5])
            record = os.path.join(folder, name)
            try:
                content = _read_json(record)
            except (ValueError, UnicodeDecodeError):
                # a damaged record (the disk, a hand edit): that leaf is written again (its
                #    record is replaced when it is)
                continue
            files = _checked_files(record, staging, content)
            if i < n and all(os.path.isfile(os.path.join(staging, f["path"])) for f in files):
                done[i] = files
    return done


def commit(fmt, files, schema, staging, plan, skipped, size, seconds) -> dict:
    """Root: stage what is left (an empty result's file, the HDF5 table file), commit (the
    manifest, written last into the staging folder) and publish."""
    rows_in = sum(leaf["rows_in"] for leaf in files)
    bytes_in = sum(leaf["bytes_in"] for leaf in files)
    files = [f for leaf in files for f in leaf["files"]]
    if not files:
        files = fmt.empty_file(schema, staging)
    fmt.finish(files, schema, staging)
    manifest = {
        "format": fmt.name,
        "plan": plan,
        "files": files,
        "rows": sum(f["rows"] for f in files),
        "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _replace_atomic(lambda tmp: _write_json(tmp, manifest), os.path.join(staging, MANIFEST), "manifest")
    fsync_dir(staging)
    publish(fmt, staging)
    return {
        "path": fmt.dst,
        "files": len(files),
        "rows": manifest["rows"],
        "rows_in": rows_in,
        "bytes_in": bytes_in,
        "bytes_out": sum(f["bytes"] for f in files),
        "seconds": seconds,
        "ranks": size,
        "leaves": plan["leaves"],
        "skipped": skipped,
        "state": "written",
    }


def summary_from_manifest(fmt, size, seconds, state) -> dict:
    """The summary of a write published earlier, from its manifest."""
    m = _read_json(os.path.join(fmt.data_dir, MANIFEST))
    return {
        "path": fmt.dst,
        "files": len(m["files"]),
        "rows": m["rows"],
        "rows_in": 0,
        "bytes_in": 0,
        "bytes_out": sum(f["bytes"] for f in m["files"]),
        "seconds": seconds,
        "ranks": size,
        "leaves": m["plan"]["leaves"],
        "skipped": m["plan"]["leaves"],
        "state": state,
        "written": m.get("written"),
    }
