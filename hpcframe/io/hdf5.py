"""HDF5 source (h5py): partitions are chunk-aligned row ranges of one table per file.

Layouts, detected per file from the object that ``key`` names (default: the only object at the
root level):

1. **column group**: a group of equal-length 1-D datasets, one per column (in the group's
   iteration order: alphabetical, or creation order for groups made with ``track_order=True``).
   A single plain 1-D dataset is a one-column table named after the dataset.
2. **compound dataset**: a 1-D structured dataset; its fields are the columns.
3. **pandas table**: a group written by ``DataFrame.to_hdf(..., format="table")`` (PyTables),
   with or without ``data_columns``. Columns keep their pandas names and order; strings are
   decoded and the pandas missing-value placeholder (``nan_rep``) becomes null; datetime64,
   timedelta64 (with the stored unit: older pandas writes none, which means ns) and bool columns
   get their pandas types back, time zones included. The pandas *index* is stored as a field
   named ``index``: an unnamed integer index (the default RangeIndex, which restarts in every
   file and would be meaningless across a partitioned dataset) is dropped; any other index
   (named, or datetime/string/float) is exposed like ``DataFrame.reset_index()`` would, as a
   first column named after the index or ``"index"`` (unless a data column has that name).
   Categorical columns and ``format="fixed"`` files are refused with a clear message.

**No unpickling.** PyTables stores some attributes pickled, among them the pandas column names
of ``values_block_N`` fields (``values_block_N_kind``), the column order (``non_index_axes``)
and the index name / time zones (``info``). These are decoded by :func:`safe_unpickle`, which
walks the opcodes with :func:`pickletools.genops` and rebuilds only literals (str, bytes, numbers,
None/bool, lists, tuples, dicts, sets). Class references and calls (``GLOBAL``, ``REDUCE``, ...)
become inert :class:`Opaque` placeholders: nothing is imported, called or executed.
"""
from __future__ import annotations

import os
import pickletools
import re
from contextlib import contextmanager
from dataclasses import dataclass

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .dataset import DatasetError, Partition

DEFAULT_CHUNK_ROWS = 1_000_000


# --------------------------------------------------------------------------- safe pickle reading
@dataclass(frozen=True)
class Opaque:
    """Stands for a pickled object that :func:`safe_unpickle` refuses to build."""

    what: str


_MARK = object()
_LITERALS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BYTEARRAY8",
}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_EMPTY = {"EMPTY_LIST": list, "EMPTY_TUPLE": tuple, "EMPTY_DICT": dict, "EMPTY_SET": set}


def safe_unpickle(data: bytes):
    """Decode the literal content of a pickle *without executing it* (never ``pickle.loads``).

    Uses :func:`pickletools.genops` to read opcodes and interprets only data-building ones;
    ``GLOBAL``/``STACK_GLOBAL``/``REDUCE``/``BUILD``/``NEWOBJ``/``INST``/``OBJ`` produce
    :class:`Opaque` placeholders. Raises ``ValueError`` on anything else or malformed input.
    """
    stack: list = []
    memo: dict = {}

    def pop_mark() -> list:
        i = len(stack) - 1
        while stack[i] is not _MARK:
            i -= 1
        items = stack[i + 1:]
        del stack[i:]
        return items

    def pairs(items):
        return zip(items[::2], items[1::2])

    try:
        for op, arg, _ in pickletools.genops(data):
            n = op.name
            if n in _LITERALS:
                stack.append(arg)
            elif n in _CONSTANTS:
                stack.append(_CONSTANTS[n])
            elif n in _EMPTY:
                stack.append(_EMPTY[n]())
            elif n in ("PROTO", "FRAME"):
                pass
            elif n == "STOP":
                break
            elif n == "MARK":
                stack.append(_MARK)
            elif n in ("LIST", "TUPLE", "FROZENSET"):
                items = pop_mark()
                stack.append({"LIST": list, "TUPLE": tuple, "FROZENSET": frozenset}[n](items))
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                items = tuple(stack[-k:])
                del stack[-k:]
                stack.append(items)
            elif n == "DICT":
                stack.append(dict(pairs(pop_mark())))
            elif n == "APPEND":
                v = stack.pop()
                stack[-1].append(v)
            elif n == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
            elif n == "SETITEM":
                v, k = stack.pop(), stack.pop()
                stack[-1][k] = v
            elif n == "SETITEMS":
                items = pop_mark()
                stack[-1].update(pairs(items))
            elif n == "ADDITEMS":
                items = pop_mark()
                stack[-1].update(items)
            elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif n == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif n in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif n == "POP":
                stack.pop()
            elif n == "POP_MARK":
                pop_mark()
            elif n == "DUP":
                stack.append(stack[-1])
            elif n == "GLOBAL":
                stack.append(Opaque(str(arg)))
            elif n == "STACK_GLOBAL":
                name, mod = stack.pop(), stack.pop()
                stack.append(Opaque(f"{mod} {name}"))
            elif n in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
                del stack[-(2 if n == "NEWOBJ_EX" else 1):]  # the arguments
                func = stack.pop()
                stack.append(Opaque(f"{getattr(func, 'what', func)}(...)"))
            elif n == "BUILD":
                stack.pop()  # the state; the object below stays an Opaque
            elif n in ("INST", "OBJ"):
                pop_mark()
                stack.append(Opaque(str(arg)))
            else:
                raise ValueError(f"unsupported pickle opcode {n}")
        return stack[-1]
    except (AttributeError, IndexError, KeyError, TypeError) as e:
        raise ValueError(f"not a plain-data pickle: {e}") from e


def _attr(attrs, name: str, default=None):
    """Attribute ``name`` as plain Python: pickled bytes decoded safely, other bytes as str."""
    if name not in attrs:
        return default
    v = attrs[name]
    if isinstance(v, (bytes, np.bytes_)):
        raw = bytes(v)
        if raw.endswith(b"."):  # the same test PyTables uses to recognise a pickle
            try:
                return safe_unpickle(raw)
            except ValueError:
                pass
        return raw.decode("utf-8", "replace")
    return v.item() if isinstance(v, np.generic) else v


# --------------------------------------------------------------------------- file layouts
@dataclass(frozen=True)
class _Col:
    name: str
    obj: str  # HDF5 path of the dataset holding the column
    field: str | None  # compound field, or None for a plain dataset
    sub: int | None  # position inside a pandas values_block field
    type: pa.DataType
    nan_rep: str | None = None  # pandas placeholder for missing strings
    encoding: str = "utf-8"


@dataclass(frozen=True)
class _Layout:
    piece: str  # HDF5 object path (Partition.piece)
    nrows: int
    chunk: int | None  # HDF5 chunk length along axis 0 (None: contiguous)
    row_bytes: int
    columns: tuple[_Col, ...]

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])


def _arrow_type(dt: np.dtype, what: str, path: str) -> pa.DataType:
    """Arrow type of a stored HDF5/numpy dtype."""
    if h5py.check_string_dtype(dt) is not None or dt.kind == "S":
        return pa.string()
    if dt.kind == "b":
        return pa.bool_()
    if dt.kind in "iuf":
        return pa.from_numpy_dtype(dt.newbyteorder("="))
    raise DatasetError(f"{path}: {what} has unsupported HDF5 type {dt}")


def _unit(s: str) -> str:
    m = re.search(r"\[(\w+)", s)
    return m.group(1) if m else "ns"


def _check_1d(ds, path: str):
    if ds.ndim != 1:
        raise DatasetError(f"{path}: dataset {ds.name} has shape {ds.shape}; only 1-D datasets "
                           "(one per column) or 1-D compound datasets are supported")


def _chunk(ds) -> int | None:
    return ds.chunks[0] if ds.chunks else None


def _group_layout(g, path: str) -> _Layout:
    dsets = [(name, obj) for name, obj in g.items() if isinstance(obj, h5py.Dataset)]
    if not dsets:
        raise DatasetError(f"{path}: group {g.name} holds no datasets (members: "
                           f"{', '.join(g.keys()) or 'none'}); pass key= naming a table")
    for _, ds in dsets:
        _check_1d(ds, path)
    lengths = {name: ds.shape[0] for name, ds in dsets}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{n}={k}" for n, k in lengths.items())
        raise DatasetError(f"{path}: columns of group {g.name} have different lengths: {desc}")
    cols = tuple(_Col(name, ds.name, None, None, _arrow_type(ds.dtype, f"column {name!r}", path))
                 for name, ds in dsets)
    chunks = [c for _, ds in dsets if (c := _chunk(ds))]
    return _Layout(g.name, dsets[0][1].shape[0], max(chunks) if chunks else None,
                   sum(ds.dtype.itemsize for _, ds in dsets), cols)


def _dataset_layout(ds, path: str) -> _Layout:
    _check_1d(ds, path)
    if ds.dtype.names is None:  # a lone 1-D dataset: one column
        name = ds.name.rsplit("/", 1)[-1]
        cols = (_Col(name, ds.name, None, None, _arrow_type(ds.dtype, f"column {name!r}", path)),)
    else:
        cols = []
        for f in ds.dtype.names:
            dt = ds.dtype.fields[f][0]
            if dt.shape:
                raise DatasetError(f"{path}: field {f!r} of {ds.name} is an array {dt.shape}; "
                                   "only scalar fields are supported")
            cols.append(_Col(f, ds.name, f, None, _arrow_type(dt, f"field {f!r}", path)))
        cols = tuple(cols)
    return _Layout(ds.name, ds.shape[0], _chunk(ds), ds.dtype.itemsize, cols)


def _pandas_type(base: np.dtype, dtype_str, tz, what: str, path: str) -> pa.DataType:
    dtype_str = dtype_str if isinstance(dtype_str, str) else ""
    if tz is not None and not isinstance(tz, str):
        raise DatasetError(f"{path}: {what} has a time zone stored as a Python object; "
                           "only named time zones are supported")
    if dtype_str.startswith("datetime64"):
        return pa.timestamp(_unit(dtype_str), tz=tz)
    if dtype_str.startswith("timedelta64"):
        return pa.duration(_unit(dtype_str))
    if dtype_str == "bool":
        return pa.bool_()
    return _arrow_type(base, what, path)


def _pandas_layout(g, path: str) -> _Layout:
    ptype = _attr(g.attrs, "pandas_type")
    if ptype in ("frame", "series"):
        raise DatasetError(f"{path}: {g.name} was written by pandas with format='fixed'; only "
                           "format='table' is supported (rewrite with to_hdf(..., format='table'))")
    if not (isinstance(ptype, str) and ptype.endswith("_table")) or "table" not in g:
        raise DatasetError(f"{path}: {g.name} has unsupported pandas_type {ptype!r}")
    ds = g["table"]
    _check_1d(ds, path)
    a = ds.attrs
    info = _attr(g.attrs, "info")
    info = info if isinstance(info, dict) else {}
    encoding = _attr(g.attrs, "encoding") or "utf-8"
    nan_default = _attr(g.attrs, "nan_rep") or "nan"
    cols: dict[str, _Col] = {}
    index = None
    for field in ds.dtype.names:
        dt = ds.dtype.fields[field][0]
        finfo = info.get(field, {}) if isinstance(info.get(field), dict) else {}
        if field == "index":
            name, kind = finfo.get("index_name"), _attr(a, "index_kind", "integer")
            if name is None and kind == "integer":
                continue
            name = "index" if name is None else str(name)
            typ = _pandas_type(dt.base, kind, finfo.get("tz"), "the index", path)
            index = _Col(name, ds.name, field, None, typ, None, encoding)
            continue
        if _attr(a, f"{field}_meta") == "category":
            raise DatasetError(f"{path}: field {field!r} of {ds.name} is categorical; "
                               "categorical columns are not supported")
        names = _attr(a, f"{field}_kind")
        width = dt.shape[0] if dt.shape else None
        if not isinstance(names, list) or len(names) != (width or 1):
            names = [field] if width is None else [f"{field}_{j}" for j in range(width)]
        typ = _pandas_type(dt.base, _attr(a, f"{field}_dtype"), finfo.get("tz"),
                           f"field {field!r}", path)
        nan_rep = _attr(a, f"{field}_nan_rep", nan_default) if typ == pa.string() else None
        for j, name in enumerate(names):
            cols[str(name)] = _Col(str(name), ds.name, field, None if width is None else j,
                                   typ, nan_rep, encoding)
    # pandas' column order: non_index_axes = [(1, [names...])]
    nia = _attr(g.attrs, "non_index_axes")
    try:
        order = [str(n) for n in nia[0][1]]
    except (TypeError, IndexError, KeyError):
        order = []
    ordered = [cols.pop(n) for n in order if n in cols] + list(cols.values())
    if index is not None and index.name not in {c.name for c in ordered}:
        ordered.insert(0, index)
    return _Layout(g.name, ds.shape[0], _chunk(ds), ds.dtype.itemsize, tuple(ordered))


@contextmanager
def _open(path: str):
    """Open ``path`` read-only; any h5py/HDF5 failure becomes a :class:`DatasetError`."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file (paths must be existing local HDF5 files; "
                           "globs are expanded by the caller)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: cannot open as HDF5 ({e}); is it an HDF5 file "
                           "(.h5/.hdf5), complete and readable?") from e
    try:
        with f:
            yield f
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DatasetError(f"{path}: HDF5 error: {e}") from e


def _detect(f, key: str | None, path: str) -> _Layout:
    root = list(f.keys())
    if key is None:
        if len(root) != 1:
            raise DatasetError(f"{path}: {len(root)} candidate objects at the root level "
                               f"({', '.join(root) or 'file is empty'}); pass key= to choose one")
        key = root[0]
    if key not in f:
        raise DatasetError(f"{path}: no object {key!r} in the file (root level: "
                           f"{', '.join(root) or 'empty'})")
    obj = f[key]
    parent = obj.parent
    if isinstance(obj, h5py.Dataset) and "pandas_type" in parent.attrs and obj.name.endswith(
            "/table"):
        obj = parent  # key named a pandas table's inner dataset
    if isinstance(obj, h5py.Group):
        if "pandas_type" in obj.attrs:
            return _pandas_layout(obj, path)
        return _group_layout(obj, path)
    if isinstance(obj, h5py.Dataset):
        return _dataset_layout(obj, path)
    raise DatasetError(f"{path}: {key!r} is neither a group nor a dataset")


def _schema_diff(want: pa.Schema, got: pa.Schema) -> str:
    """A short description of the first column where ``got`` differs from ``want``."""
    for f in want:
        if f.name not in got.names:
            return f"column {f.name!r} is missing"
        if got.field(f.name).type != f.type:
            return f"column {f.name!r} has type {got.field(f.name).type}, expected {f.type}"
    extra = [n for n in got.names if n not in want.names]
    if extra:
        return f"column {extra[0]!r} is not in the first file"
    return f"columns are in a different order: {got.names}, expected {want.names}"


# --------------------------------------------------------------------------- reading
def _to_arrow(arr: np.ndarray, col: _Col) -> pa.Array:
    """One column's numpy slice as Arrow (zero-copy for contiguous native numeric data)."""
    t = col.type
    if pa.types.is_string(t):
        if arr.dtype.kind == "O":  # variable-length strings
            out = pa.array([x.decode(col.encoding) if isinstance(x, bytes) else x for x in arr],
                           type=pa.string())
        elif col.encoding.lower().replace("-", "") in ("utf8", "ascii"):
            out = pa.array(np.ascontiguousarray(arr)).cast(pa.string())  # NUL padding stripped
        else:
            out = pa.array(np.char.decode(arr, col.encoding).astype(object), type=pa.string())
        if col.nan_rep is not None:
            out = pc.if_else(pc.equal(out, col.nan_rep), pa.scalar(None, pa.string()), out)
        return out
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if pa.types.is_timestamp(t) or pa.types.is_duration(t):
        kind = "M8" if pa.types.is_timestamp(t) else "m8"
        return pa.array(arr.astype("int64", copy=False).view(f"{kind}[{t.unit}]"), type=t)
    if pa.types.is_boolean(t) and arr.dtype != bool:
        arr = arr.astype(bool)
    return pa.array(arr, type=t)


class HDF5Source:
    """HDF5 files (one table each, same columns) read with h5py, partitioned by HDF5 chunks.

    ``paths`` are existing files, in dataset order; ``key`` names the table inside each file
    (default: the only object at the root level); ``chunk_rows`` is the target partition size
    (default 1,000,000), rounded to a whole number of HDF5 chunks. See the module docstring for
    the supported layouts. Metadata is cached per file; no file handle is kept open, so the
    source pickles cleanly to other ranks.
    """

    def __init__(self, paths: list[str], key: str | None = None, chunk_rows: int | None = None):
        if not paths:
            raise DatasetError("HDF5 dataset: no files given")
        if chunk_rows is not None and chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        self.paths = [os.fspath(p) for p in paths]
        self.key = key
        self.chunk_rows = chunk_rows or DEFAULT_CHUNK_ROWS
        self._layouts: dict[str, _Layout] = {}

    def _layout(self, path: str) -> _Layout:
        if path not in self._layouts:
            with _open(path) as f:
                self._layouts[path] = _detect(f, self.key, path)
        return self._layouts[path]

    def schema(self) -> pa.Schema:
        """Columns and Arrow types of the first file (metadata only, no data read)."""
        return self._layout(self.paths[0]).schema()

    def discover(self, comm) -> list[Partition]:
        """Chunk-aligned row ranges of every file, in file order.

        HDF5 metadata is cheap, so every rank reads it itself and ``comm`` is not used.
        Raises :class:`DatasetError` naming the file whose columns differ from the first file's.
        """
        want = self.schema()
        parts = []
        for path in self.paths:
            lay = self._layout(path)
            got = lay.schema()
            if not got.equals(want):
                raise DatasetError(f"{path}: columns differ from {self.paths[0]}: "
                                   f"{_schema_diff(want, got)}")
            step = self.chunk_rows
            if lay.chunk:
                step = max(1, (step + lay.chunk // 2) // lay.chunk) * lay.chunk
            for s in range(0, lay.nrows, step):
                e = min(s + step, lay.nrows)
                parts.append(Partition(path, lay.piece, s, e, (e - s) * lay.row_bytes))
        return parts

    def read(self, part: Partition, columns: list[str]) -> pa.Table:
        """Rows ``[part.start, part.stop)`` of ``columns``, in that order.

        One h5py read per dataset: per column for a column group, or of only the needed
        fields of a compound dataset. Raises :class:`DatasetError` for an unknown column.
        """
        lay = self._layout(part.path)
        by_name = {c.name: c for c in lay.columns}
        for name in columns:
            if name not in by_name:
                raise DatasetError(f"{part.path}: no column {name!r} in {lay.piece} "
                                   f"(available: {', '.join(by_name)})")
        needed: dict[str, list[_Col]] = {}
        for name in dict.fromkeys(columns):
            needed.setdefault(by_name[name].obj, []).append(by_name[name])
        arrays: dict[str, pa.Array] = {}
        with _open(part.path) as f:
            for obj, cols in needed.items():
                ds = f[obj]
                fields = list(dict.fromkeys(c.field for c in cols))
                rows = slice(part.start, part.stop)
                if fields == [None]:
                    data = {None: ds[rows]}
                elif len(fields) == 1:
                    data = {fields[0]: ds.fields(fields[0])[rows]}
                else:
                    rec = ds.fields(fields)[rows]
                    data = {fl: rec[fl] for fl in fields}
                for c in cols:
                    arr = data[c.field]
                    arrays[c.name] = _to_arrow(arr if c.sub is None else arr[:, c.sub], c)
        return pa.table([arrays[n] for n in columns], names=list(columns))
