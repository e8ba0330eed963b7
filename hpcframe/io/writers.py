"""Parallel, atomic, resumable writers: ``to_parquet``, ``to_hdf``, ``to_csv``.

Every rank writes the leaves (blocks of partitions, see :func:`hpcframe.execute.leaves_of`) it
reads, through :class:`WriteOutput` — an output whose ``chunk`` writes one leaf's rows to files
named after the leaf (``part-000012.parquet``) and returns their descriptors; ``combine``
concatenates the lists and the root rank finishes the dataset. No data passes through the root.

Atomicity and resume
    Files are written under ``<dst>/_hpcframe_staging/`` (readers skip names starting with
    ``_``), first to a temporary name, then renamed. When all files of a leaf are complete, a
    leaf record ``_hpcframe_staging/_leaves/leaf-000012.json`` is written (also by rename).
    When every leaf is done, the root moves the files into place and writes
    ``_hpcframe_manifest.json`` (files, rows, schema) *last*. A failed or killed run leaves only
    the staging folder: no manifest, nothing a reader takes for a complete dataset. Running the
    same write again skips (does not even read) the leaves that have a record. The staging
    folder remembers what was being written (``_plan.json``); a different write into the same
    folder is refused.

Layouts
    * Parquet: ``dst/part-<leaf>.parquet``, or hive folders ``dst/Year=2016/Month=1/part-<leaf>
      .parquet`` with ``partition_by`` (the partition columns are not stored in the files);
      ``row_group_size``, ``compression`` and min/max statistics per row group.
    * CSV: ``dst/part-<leaf>.csv`` (with header), same hive option.
    * HDF5: ``<dst>.d/part-<leaf>.h5`` (a group ``data`` of chunked, compressed 1-D column
      datasets) and ``dst`` itself: one file whose group ``data`` holds *virtual datasets*
      (h5py VDS) presenting all parts as one table, readable by ``hf.read_hdf(dst)``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from urllib.parse import quote

import pyarrow as pa

from ..outputs import Output
from .dataset import DatasetError

MANIFEST = "_hpcframe_manifest.json"
STAGING = "_hpcframe_staging"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


# --------------------------------------------------------------------------- target schema
def target_schema(meta) -> pa.Schema:
    """The Arrow schema every written file gets, from the frame's (empty) pandas ``meta``:
    strings as ``string``, categoricals as ``dictionary<int32, string>``. Partitions are cast
    to it, so that all files agree even where pandas typed one partition differently (an
    integer column with missing values arrives as float)."""
    base = pa.Schema.from_pandas(meta, preserve_index=False)
    fields = []
    for f in base:
        t = f.type
        if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: 0)(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = pa.dictionary(pa.int32(), pa.string())
        elif pa.types.is_null(t):
            t = pa.string()
        fields.append(pa.field(f.name, t))
    return pa.schema(fields)


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
                raise DatasetError(f"{where}: column {f.name!r} ({col.type}) cannot be written "
                                   f"as {f.type}: {exc}") from exc
        cols.append(col)
    # one chunk per column: the Parquet writer is about twice as fast on contiguous columns
    return pa.Table.from_arrays(cols, schema=schema).combine_chunks()


def _hive_dir(keys, values) -> str:
    parts = []
    for k, v in zip(keys, values):
        text = _HIVE_NULL if v is None or v != v else str(v)
        parts.append(f"{k}={quote(text, safe='')}")
    return os.path.join(*parts)


def _replace_atomic(write, final: str) -> None:
    """``write(tmp_path)`` then rename to ``final`` (a crash leaves only a ``.tmp`` name)."""
    tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- formats
class _Format:
    """How one leaf's rows become files, and how the root finishes the dataset."""

    name = suffix = ""

    def __init__(self, dst: str, partition_by=None):
        self.dst = os.path.abspath(os.fspath(dst))
        self.partition_by = list(partition_by or [])

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
            rel = os.path.join(rel_dir, f"part-{leaf:06d}{self.suffix}")
            final = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            _replace_atomic(lambda tmp, t=t: self.write_file(t, tmp), final)
            out.append({"path": rel, "rows": t.num_rows, "bytes": os.path.getsize(final),
                        "leaf": leaf})
        return out

    def write_file(self, table: pa.Table, path: str) -> None:
        raise NotImplementedError

    def finish(self, files: list[dict], schema: pa.Schema, staging: str) -> None:
        """Root only: move the staged files into place (they are already complete)."""
        for f in files:
            src, dst = os.path.join(staging, f["path"]), os.path.join(self.data_dir, f["path"])
            if os.path.exists(src):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(src, dst)
            elif not os.path.exists(dst):
                raise DatasetError(f"{src}: the staged file is missing (deleted during the "
                                   f"write?); remove {staging} and write again")

    def empty_file(self, schema: pa.Schema, staging: str) -> list[dict]:
        """The one file an empty result is written as (so that readers find a dataset)."""
        return self.write_leaf(schema.empty_table(), 0, staging) or [
            self._write_empty(schema, staging)]

    def _write_empty(self, schema, staging):
        rel = f"part-empty{self.suffix}"
        _replace_atomic(lambda tmp: self.write_file(schema.empty_table(), tmp),
                        os.path.join(staging, rel))
        return {"path": rel, "rows": 0, "bytes": os.path.getsize(os.path.join(staging, rel)),
                "leaf": -1}


def _split_hive(table: pa.Table, keys: list[str]):
    """``[(values, table_without_keys)]`` per distinct key combination, in sorted order."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    groups = table.select(keys).group_by(keys, use_threads=False).aggregate([])
    rest = [c for c in table.column_names if c not in keys]
    out = []
    rows = sorted(groups.to_pylist(), key=lambda r: tuple((v is None, str(v)) for v in
                                                          (r[k] for k in keys)))
    for row in rows:
        mask = None
        for k in keys:
            col = table.column(k)
            m = pc.is_null(col) if row[k] is None else pc.equal(col, pa.scalar(row[k], col.type))
            mask = m if mask is None else pc.and_(mask, m)
        out.append((tuple(row[k] for k in keys), table.filter(mask).select(rest)))
    return out


class ParquetFormat(_Format):
    name, suffix = "parquet", ".parquet"

    def __init__(self, dst, partition_by=None, row_group_size=1 << 20, compression="zstd",
                 compression_level=None):
        super().__init__(dst, partition_by)
        self.row_group_size, self.compression = row_group_size, compression
        self.compression_level = compression_level

    def options(self):
        return {**super().options(), "row_group_size": self.row_group_size,
                "compression": self.compression}

    def write_file(self, table, path):
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=self.row_group_size,
                       compression=self.compression, compression_level=self.compression_level,
                       write_statistics=True)


class CSVFormat(_Format):
    name, suffix = "csv", ".csv"

    def write_file(self, table, path):
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)


class HDF5Format(_Format):
    """Part files in ``<dst>.d/``; ``dst`` holds virtual datasets over them."""

    name, suffix = "hdf5", ".h5"

    def __init__(self, dst, compression="gzip", chunk_rows=65536):
        super().__init__(dst)
        self.compression, self.chunk_rows = compression, chunk_rows

    @property
    def data_dir(self):
        return self.dst + ".d"

    def options(self):
        return {"compression": self.compression}

    def write_file(self, table, path):
        import h5py

        with h5py.File(path, "w") as f:
            g = f.create_group("data", track_order=True)
            for name, col in zip(table.column_names, table.columns):
                data, dtype, attrs = _hdf5_column(col, name, path)
                chunks = (max(1, min(self.chunk_rows, len(data))),) if len(data) else None
                ds = g.create_dataset(name, data=data, dtype=dtype, chunks=chunks,
                                      compression=self.compression if chunks else None)
                ds.attrs.update(attrs)

    def finish(self, files, schema, staging):
        import h5py

        super().finish(files, schema, staging)
        files = [f for f in files if f["rows"]] or files[:1]
        total = sum(f["rows"] for f in files)

        def write(tmp):
            with h5py.File(tmp, "w") as out:
                g = out.create_group("data", track_order=True)
                with h5py.File(os.path.join(self.data_dir, files[0]["path"]), "r") as first:
                    cols = [(n, first["data"][n].dtype, dict(first["data"][n].attrs))
                            for n in first["data"]]
                for name, dtype, attrs in cols:
                    if total == 0:
                        ds = g.create_dataset(name, shape=(0,), dtype=dtype)
                    else:
                        layout = h5py.VirtualLayout(shape=(total,), dtype=dtype)
                        at = 0
                        for f in files:
                            rel = os.path.relpath(os.path.join(self.data_dir, f["path"]),
                                                  os.path.dirname(self.dst))
                            layout[at:at + f["rows"]] = h5py.VirtualSource(
                                rel, f"data/{name}", shape=(f["rows"],))
                            at += f["rows"]
                        ds = g.create_virtual_dataset(name, layout)
                    ds.attrs.update(attrs)

        _replace_atomic(write, self.dst)


def _hdf5_column(col: pa.ChunkedArray, name: str, path: str):
    """(numpy data, h5py dtype, attributes) of one column. Timestamps are stored as int64
    with an ``hpcframe_type`` attribute; missing strings as ""; missing integers are refused."""
    import h5py
    import numpy as np

    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(pa.string()), pa.string()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        values = col.fill_null("").to_numpy(zero_copy_only=False).astype(object)
        return values, h5py.string_dtype("utf-8"), {}
    if pa.types.is_timestamp(t):
        return (col.cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(),
                np.int64, {"hpcframe_type": str(t)})
    if col.null_count and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
        raise DatasetError(f"{path}: column {name!r} ({t}) has missing values, which HDF5 "
                           f"integer/bool datasets cannot hold; cast it to float first")
    if col.null_count:
        col = col.fill_null(float("nan"))
    return col.to_numpy(), None, {}


# --------------------------------------------------------------------------- the output
class WriteOutput(Output):
    """Writes every leaf's rows with ``fmt`` into ``staging``; the partial is the list of
    file descriptors. Leaves in ``done`` (index → descriptors) are not written again."""

    def __init__(self, node, fmt: _Format, staging: str, done: dict, progress=None):
        self.node, self.fmt, self.staging, self.done = node, fmt, staging, done
        self.schema = target_schema(node.meta)
        self.progress = progress

    def columns(self):
        return set(self.node.meta.columns)

    def text(self):
        return f"write {self.fmt.name} {self.fmt.dst}"

    def chunk(self, df, leaf):
        if leaf.index in self.done:
            files = self.done[leaf.index]
        else:
            table = to_arrow(df, self.schema, leaf.describe())
            files = self.fmt.write_leaf(table, leaf.index, self.staging)
            record = os.path.join(self.staging, "_leaves", f"leaf-{leaf.index:06d}.json")
            _replace_atomic(lambda tmp: _write_json(tmp, files), record)
        if self.progress is not None:
            self.progress(leaf)
        return [{"leaf": leaf.index, "files": files, "rows_in": len(df),
                 "bytes_in": leaf.nbytes}]

    def combine(self, a, b):
        return (a or []) + (b or [])

    def finalize(self, files):
        return files or []


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)


def _read_json(path):
    with open(path) as f:
        return json.load(f)


class _SkipDone:
    """A source that reads nothing for partitions of finished leaves (resume)."""

    def __init__(self, inner, skip: set):
        self._inner, self._skip = inner, skip

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def read(self, part, columns):
        if _part_key(part) in self._skip:
            return pa.schema([self._inner.schema().field(c) for c in columns]).empty_table()
        return self._inner.read(part, columns)

    def read_many(self, parts, columns):
        if all(_part_key(p) in self._skip for p in parts):
            return self.read(parts[0], columns)
        from ..execute import read_parts

        return read_parts(self._inner, parts, columns)


def _part_key(p):
    return (p.path, str(p.piece), p.start, p.stop)


# --------------------------------------------------------------------------- driver
def write(frame, fmt: _Format, comm=None, overwrite: bool = False, progress: bool = False,
          fail_leaf=None) -> dict:
    """Write ``frame`` with ``fmt`` in parallel (collective under MPI); see the module
    docstring. Returns a summary dict (on every rank): ``files``, ``rows``, ``bytes_in``,
    ``bytes_out``, ``seconds``, ``ranks``, ``leaves``, ``skipped`` (leaves done earlier),
    ``path``. Raises ``FileExistsError`` when ``dst`` holds something else,
    :class:`~hpcframe.ComputeError` on every rank when a rank fails (the staging folder is
    kept, so that the next run resumes). ``fail_leaf`` (tests only) makes the write of that
    leaf raise, to simulate a crash mid-way."""
    from ..comm import communicator
    from ..execute import compute, leaves_of
    from ..frame import Frame

    node = frame._node if isinstance(frame, Frame) else None
    if node is None:
        raise TypeError(f"expected an hpcframe Frame, not {type(frame).__name__} (to write a "
                        f"pandas result, use pandas' own to_parquet/to_hdf)")
    missing = [k for k in getattr(fmt, "partition_by", []) if k not in node.meta.columns]
    if missing:
        from ..errors import ColumnNotFoundError

        raise ColumnNotFoundError(missing[0], list(node.meta.columns), "the frame to write")
    scan = node.scan()
    with communicator(comm) as c:
        t0 = time.perf_counter()
        leaves = leaves_of(scan.source, c)
        staging = os.path.join(fmt.data_dir, STAGING)
        plan = {"format": fmt.name, "source": scan.source.label, "leaves": len(leaves),
                "plan": [n.text() for n in node.chain()], "options": fmt.options(),
                "schema": str(target_schema(node.meta))}
        state = None
        if c.rank == 0:
            try:
                state = _prepare(fmt, staging, plan, overwrite)
            except Exception as exc:  # the others wait in bcast: send it to them
                state = _portable(exc)
        state = c.bcast(state)
        if isinstance(state, Exception):
            raise _rebuild(state)  # the same error on every rank
        if state == "complete":
            return _summary_from_manifest(fmt, c.size, time.perf_counter() - t0)
        done = _done_leaves(staging, len(leaves))
        skip = _skip_keys(leaves, done)
        counter = _Progress(c, len(leaves), staging) if progress else None
        out = WriteOutput(node, fmt, staging, done, counter)
        if fail_leaf is not None:  # testing hook: simulate a crash in one leaf
            inner = out.chunk

            def chunk(df, leaf):
                if leaf.index == fail_leaf:
                    raise RuntimeError(f"simulated failure in leaf {leaf.index}")
                return inner(df, leaf)
            out.chunk = chunk
        scan.source = _SkipDone(scan.source, skip)
        try:
            (files,) = compute([out], comm=c, root=0)
        finally:
            scan.source = scan.source._inner
        error = None
        summary = None
        if c.rank == 0:
            try:
                summary = _finish(fmt, files, out.schema, staging, plan, len(done), c.size,
                                  time.perf_counter() - t0)
            except Exception as exc:
                from ..comm import failure

                error = failure(c, f"finishing {fmt.dst}", exc)
        c.agree(error)
        return c.bcast(summary)


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
            raise DatasetError(f"{record}: refusing the file entry {f!r} ({exc}); hpcframe only "
                               f"touches files inside {base}. Remove {record} by hand or "
                               f"choose another path") from None
    return files


def _read_manifest(manifest: str, data_dir: str) -> dict:
    """The manifest at ``manifest`` after checking its shape (an object whose ``files`` is a
    list of entries inside ``data_dir``); raises :class:`DatasetError` otherwise."""
    try:
        old = _read_json(manifest)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{manifest} is not an hpcframe manifest ({exc}); remove it or "
                           f"choose another path") from None
    if not isinstance(old, dict) or not isinstance(old.get("files", []), list) or (
            "plan" in old and not isinstance(old["plan"], dict)):
        raise DatasetError(f"{manifest} is not an hpcframe manifest; remove it or choose "
                           f"another path")
    _checked_files(manifest, data_dir, old.get("files", []))
    return old


def _portable(exc: Exception) -> Exception:
    """``exc`` in a form that pickles for bcast (an ``OSError`` keeps errno, message and
    file name; other types that do not pickle become ``DatasetError`` with the message)."""
    if isinstance(exc, OSError):
        return type(exc)(exc.errno, exc.strerror or str(exc), exc.filename) \
            if exc.errno is not None or exc.filename is not None else type(exc)(str(exc))
    try:
        type(exc)(*exc.args)  # what unpickling does on the receiving ranks
        return exc
    except Exception:
        return DatasetError(f"{type(exc).__name__}: {exc}")


def _rebuild(exc: Exception) -> Exception:
    """A fresh copy of the broadcast error ``exc`` (so that every rank raises the same)."""
    if isinstance(exc, OSError) and (exc.errno is not None or exc.filename is not None):
        return type(exc)(exc.errno, exc.strerror, exc.filename)
    try:
        return type(exc)(*exc.args)
    except Exception:
        return exc


def _prepare(fmt, staging, plan, overwrite) -> str:
    """Root: check the destination; returns ``"complete"`` when the same write is done.
    Raises ``FileExistsError`` or :class:`DatasetError` (a malformed manifest, or one naming
    files outside the destination)."""
    manifest = os.path.join(fmt.data_dir, MANIFEST)
    if os.path.exists(manifest):
        old = _read_manifest(manifest, fmt.data_dir)
        if old.get("plan") == plan and not overwrite and (
                fmt.name != "hdf5" or os.path.exists(fmt.dst)):
            return "complete"
        if not overwrite:
            raise FileExistsError(f"{fmt.dst} already holds a dataset written by hpcframe "
                                  f"(from {old.get('plan', {}).get('source')!r}); pass "
                                  f"overwrite=True (--overwrite) or choose another path")
        for f in old.get("files", []):
            p = _inside(fmt.data_dir, f["path"])
            if os.path.isfile(p) or os.path.islink(p):
                os.remove(p)
        os.remove(manifest)
        if fmt.name == "hdf5" and os.path.exists(fmt.dst):
            os.remove(fmt.dst)
    elif fmt.name == "hdf5" and os.path.exists(fmt.dst):
        if not overwrite:
            raise FileExistsError(f"{fmt.dst} exists; pass overwrite=True (--overwrite) or "
                                  f"choose another path")
        os.remove(fmt.dst)
    if os.path.isdir(fmt.data_dir):
        others = [n for n in os.listdir(fmt.data_dir) if n != STAGING]
        if others:
            raise FileExistsError(f"{fmt.data_dir} exists and holds files that hpcframe did not "
                                  f"write ({', '.join(sorted(others)[:3])}); choose a new or "
                                  f"empty folder")
    elif os.path.exists(fmt.data_dir):
        raise FileExistsError(f"{fmt.data_dir} exists and is not a folder")
    plan_file = os.path.join(staging, "_plan.json")
    if os.path.exists(plan_file) and _read_json(plan_file) != plan:
        if not overwrite:
            raise FileExistsError(
                f"{staging} holds an unfinished write of something else (another source, "
                f"query or options); remove that folder, or pass overwrite=True")
        shutil.rmtree(staging)
    os.makedirs(os.path.join(staging, "_leaves"), exist_ok=True)
    if not os.path.exists(plan_file):
        _replace_atomic(lambda tmp: _write_json(tmp, plan), plan_file)
    return "ready"


def _done_leaves(staging, n) -> dict:
    done = {}
    folder = os.path.join(staging, "_leaves")
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.startswith("leaf-") and name.endswith(".json"):
            i = int(name[5:-5])
            record = os.path.join(folder, name)
            files = _checked_files(record, staging, _read_json(record))
            if i < n and all(os.path.exists(os.path.join(staging, f["path"])) for f in files):
                done[i] = files
    return done


def _skip_keys(leaves, done) -> set:
    skip = set()
    by_parent: dict = {}
    for leaf in leaves:
        if leaf.parent is None:
            if leaf.index in done:
                skip.update(_part_key(p) for p in leaf.parts)
        else:
            by_parent.setdefault(_part_key(leaf.parent), []).append(leaf.index in done)
    skip.update(k for k, flags in by_parent.items() if all(flags))
    return skip


class _Progress:
    """Rank 0 prints ``partitions done / total`` (counting every rank's leaf records)."""

    def __init__(self, comm, total, staging):
        self.rank, self.total, self.staging = comm.rank, total, staging
        self.last = 0.0

    def __call__(self, leaf):
        if self.rank != 0 or time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        n = len(os.listdir(os.path.join(self.staging, "_leaves")))
        print(f"hpcframe: {n}/{self.total} partitions written", flush=True)


def _finish(fmt, files, schema, staging, plan, skipped, size, seconds) -> dict:
    rows_in = sum(leaf["rows_in"] for leaf in files)
    bytes_in = sum(leaf["bytes_in"] for leaf in files)
    files = [f for leaf in files for f in leaf["files"]]
    if not files:
        files = fmt.empty_file(schema, staging)
    fmt.finish(files, schema, staging)
    manifest = {"format": fmt.name, "plan": plan, "files": files,
                "rows": sum(f["rows"] for f in files), "schema": [
                    {"name": f.name, "type": str(f.type)} for f in schema],
                "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _replace_atomic(lambda tmp: _write_json(tmp, manifest),
                    os.path.join(fmt.data_dir, MANIFEST))
    shutil.rmtree(staging, ignore_errors=True)
    return {"path": fmt.dst, "files": len(files), "rows": manifest["rows"],
            "rows_in": rows_in, "bytes_in": bytes_in,
            "bytes_out": sum(f["bytes"] for f in files), "seconds": seconds, "ranks": size,
            "leaves": plan["leaves"], "skipped": skipped}


def _summary_from_manifest(fmt, size, seconds) -> dict:
    m = _read_json(os.path.join(fmt.data_dir, MANIFEST))
    return {"path": fmt.dst, "files": len(m["files"]), "rows": m["rows"], "rows_in": 0,
            "bytes_in": 0, "bytes_out": sum(f["bytes"] for f in m["files"]),
            "seconds": seconds, "ranks": size, "leaves": m["plan"]["leaves"],
            "skipped": m["plan"]["leaves"]}


# --------------------------------------------------------------------------- public API
def to_parquet(frame, path, partition_by=None, row_group_size: int = 1 << 20,
               compression: str = "zstd", compression_level=None, comm=None,
               overwrite: bool = False, progress: bool = False) -> dict:
    """Write a lazy frame as a Parquet dataset in folder ``path`` (hive folders with
    ``partition_by``), in parallel, atomically and resumably (see the module docstring).
    Returns the summary dict of :func:`write`. Collective under MPI."""
    fmt = ParquetFormat(path, partition_by, row_group_size, compression, compression_level)
    return write(frame, fmt, comm=comm, overwrite=overwrite, progress=progress)


def to_hdf(frame, path, compression: str | None = "gzip", chunk_rows: int = 65536, comm=None,
           overwrite: bool = False, progress: bool = False) -> dict:
    """Write a lazy frame as HDF5: part files in ``<path>.d/`` and ``path`` presenting them as
    one table (virtual datasets), readable by ``hf.read_hdf(path)``. Timestamps are stored as
    int64 (attribute ``hpcframe_type``), missing strings as ""; integer columns with missing
    values are refused. Returns the summary dict of :func:`write`. Collective under MPI."""
    fmt = HDF5Format(path, compression, chunk_rows)
    return write(frame, fmt, comm=comm, overwrite=overwrite, progress=progress)


def to_csv(frame, path, partition_by=None, comm=None, overwrite: bool = False,
           progress: bool = False) -> dict:
    """Write a lazy frame as CSV files (with header) in folder ``path``. Returns the summary
    dict of :func:`write`. Collective under MPI."""
    return write(frame, CSVFormat(path, partition_by), comm=comm, overwrite=overwrite,
                 progress=progress)
