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
   get their pandas types back, time zones included (named zones; UTC and fixed offsets, which
   pandas stores as pickled ``datetime.timezone`` objects, are decoded from their arguments).
   The pandas *index* is stored as a field named ``index``: an unnamed integer index (the
   default RangeIndex, which restarts in every file and would be meaningless across a
   partitioned dataset) is dropped; any other index (named, or datetime/string/float) is
   exposed like ``DataFrame.reset_index()`` would, as a first column named after the index or
   ``"index"`` (unless a data column has that name).
   Categorical columns and ``format="fixed"`` files are refused with a clear message.

**No unpickling.** PyTables stores some attributes pickled, among them the pandas column names
of ``values_block_N`` fields (``values_block_N_kind``), the column order (``non_index_axes``)
and the index name / time zones (``info``). These are decoded by :func:`safe_unpickle`, which
walks the opcodes with :func:`pickletools.genops` and rebuilds only literals (str, bytes, numbers,
None/bool, lists, tuples, dicts, sets). Class references and calls (``GLOBAL``, ``REDUCE``, ...)
become inert :class:`Opaque` placeholders: nothing is imported, called or executed. The work is
bounded (see :func:`safe_unpickle`), so a crafted "pickle bomb" attribute is refused quickly.
"""

from __future__ import annotations

import os
import pickletools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dc_field

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .dataset import DatasetError, Partition, source_label
from .hdf5codec import decoded_type

DEFAULT_CHUNK_ROWS = 1_000_000


# --------------------------------------------------------------------------- safe pickle reading
@dataclass(frozen=True)
class Opaque:
    """Stands for a pickled object that :func:`safe_unpickle` refuses to build: ``what`` names
    the class or call (``"datetime timezone(...)"``), ``func`` the callable as ``"module name"``
    and ``args`` the plain-data arguments of the call (when the pickle gives them)."""

    what: str
    func: str | None = None
    args: tuple | None = dc_field(default=None, compare=False)  # may hold lists: not hashed


class PickleLimitError(ValueError):
    """A pickle that would take more than the allowed work or output to decode."""


#: Bounds of :func:`safe_unpickle`: the input size, the nesting depth, and the number of values
#: it may build or copy (a fixed allowance plus a few per input byte). A genuine PyTables
#: attribute is far below these; a "memo bomb" (a few hundred bytes that reference one list
#: again and again) reaches them after a few milliseconds.
MAX_PICKLE_BYTES = 16 * 1024 * 1024
MAX_PICKLE_DEPTH = 64
PICKLE_BASE_BUDGET = 10_000
PICKLE_BUDGET_PER_BYTE = 8

_LITERALS = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
    "BYTEARRAY8",
}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_EMPTY = {"EMPTY_LIST": list, "EMPTY_TUPLE": tuple, "EMPTY_DICT": dict, "EMPTY_SET": set}
_CONTAINERS = (list, tuple, dict, set, frozenset)


def safe_unpickle(data: bytes):
    """Decode the literal content of a pickle *without executing it* (never ``pickle.loads``).

    Uses :func:`pickletools.genops` to read opcodes and interprets only data-building ones;
    ``GLOBAL``/``STACK_GLOBAL``/``REDUCE``/``BUILD``/``NEWOBJ``/``INST``/``OBJ`` produce
    :class:`Opaque` placeholders. The work is bounded: the result is a tree (a value fetched
    again from the pickle memo is copied, never shared) and every value built or copied counts
    against a budget proportional to the input size (see ``PICKLE_BASE_BUDGET``), as does its
    nesting depth (``MAX_PICKLE_DEPTH``). Raises :class:`PickleLimitError` when a bound is
    exceeded and ``ValueError`` on any other unsupported or malformed input.
    """
    data = bytes(data)
    if len(data) > MAX_PICKLE_BYTES:
        raise PickleLimitError(
            f"pickle of {len(data):,} bytes is larger than the limit of {MAX_PICKLE_BYTES:,} bytes"
        )
    budget = [PICKLE_BASE_BUDGET + PICKLE_BUDGET_PER_BYTE * len(data)]
    depth: dict[int, int] = {}  # id(container) -> nesting depth (containers are never shared)

    def spend(n: int) -> None:
        budget[0] -= n
        if budget[0] < 0:
            raise PickleLimitError(
                f"pickle of {len(data):,} bytes expands to more values than allowed (it "
                "references the same objects over and over: a 'pickle bomb'?)"
            )

    def cost(v) -> int:
        return 1 + (len(v) // 64 if isinstance(v, (str, bytes, bytearray)) else 0)

    def nest(container, items):
        d = 1 + max((depth.get(id(x), 0) for x in items), default=0)
        if d > MAX_PICKLE_DEPTH:
            raise PickleLimitError(f"pickle nests containers more than {MAX_PICKLE_DEPTH} deep")
        if d > depth.get(id(container), 0):
            depth[id(container)] = d
        return container

    def copy(v, level=0):
        """A deep copy of ``v`` (an independent tree), paid for from the budget."""
        spend(cost(v))
        if not isinstance(v, _CONTAINERS):
            return v  # immutable leaf (str, bytes, numbers, None, Opaque)
        if level > MAX_PICKLE_DEPTH:
            raise PickleLimitError(f"pickle nests containers more than {MAX_PICKLE_DEPTH} deep")
        out: dict | list | tuple | set | frozenset
        if isinstance(v, dict):
            out = {copy(k, level + 1): copy(x, level + 1) for k, x in v.items()}
        else:
            out = type(v)([copy(x, level + 1) for x in v])
        depth[id(out)] = depth.get(id(v), 1)  # a copy is as deep as its original
        return out

    stack: list = []
    marks: list[int] = []
    memo: dict = {}

    def pop_mark() -> list:
        i = marks.pop()
        items = stack[i:]
        del stack[i:]
        return items

    def push(v):
        spend(cost(v))
        stack.append(v)

    def pairs(items):
        return zip(items[::2], items[1::2])

    try:
        for op, arg, _ in pickletools.genops(data):
            n = op.name
            if n in _LITERALS:
                push(arg)
            elif n in _CONSTANTS:
                push(_CONSTANTS[n])
            elif n in _EMPTY:
                push(_EMPTY[n]())
            elif n in ("PROTO", "FRAME"):
                pass
            elif n == "STOP":
                break
            elif n == "MARK":
                marks.append(len(stack))
            elif n in ("LIST", "TUPLE", "FROZENSET"):
                items = pop_mark()
                push(nest({"LIST": list, "TUPLE": tuple, "FROZENSET": frozenset}[n](items), items))
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                items = stack[-k:]
                if len(items) != k:
                    raise IndexError("stack underflow")
                del stack[-k:]
                push(nest(tuple(items), items))
            elif n == "DICT":
                items = pop_mark()
                push(nest(dict(pairs(items)), items))
            elif n == "APPEND":
                v = stack.pop()
                stack[-1].append(v)
                nest(stack[-1], [v])
            elif n == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
                nest(stack[-1], items)
            elif n == "SETITEM":
                v, k = stack.pop(), stack.pop()
                stack[-1][k] = v
                nest(stack[-1], [k, v])
            elif n == "SETITEMS":
                items = pop_mark()
                stack[-1].update(pairs(items))
                nest(stack[-1], items)
            elif n == "ADDITEMS":
                items = pop_mark()
                stack[-1].update(items)
                nest(stack[-1], items)
            elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif n == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif n in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(copy(memo[arg]))
            elif n == "POP":
                if marks and marks[-1] == len(stack):
                    marks.pop()  # POP of a MARK (the stack holds the mark positions apart)
                else:
                    stack.pop()
            elif n == "POP_MARK":
                pop_mark()
            elif n == "DUP":
                stack.append(copy(stack[-1]))
            elif n == "GLOBAL":
                push(Opaque(str(arg), str(arg)))
            elif n == "STACK_GLOBAL":
                name, mod = stack.pop(), stack.pop()
                push(Opaque(f"{mod} {name}", f"{mod} {name}"))
            elif n in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
                if n == "NEWOBJ_EX":
                    del stack[-1]  # keyword arguments
                args = stack.pop()
                func = stack.pop()
                what = getattr(func, "what", str(func))
                push(Opaque(f"{what}(...)", _callable_name(func), args if isinstance(args, tuple) else None))
            elif n == "BUILD":
                stack.pop()  # the state; the object below stays an Opaque
            elif n in ("INST", "OBJ"):
                pop_mark()
                push(Opaque(str(arg)))
            else:
                raise ValueError(f"unsupported pickle opcode {n}")
        if len(stack) != 1:
            raise ValueError("not a complete pickle")
        return stack[-1]
    except PickleLimitError:
        raise
    except RecursionError as e:
        raise PickleLimitError("pickle nests too deeply") from e
    except (AttributeError, IndexError, KeyError, TypeError) as e:
        raise ValueError(f"not a plain-data pickle: {e}") from e


def _callable_name(func) -> str | None:
    """``"module name"`` of a pickled callable: a ``GLOBAL``, or ``getattr(cls, "attr")``
    (how classmethods are pickled) as ``"module cls.attr"``."""
    if not isinstance(func, Opaque):
        return None
    if (
        func.func in ("builtins getattr", "__builtin__ getattr")
        and func.args
        and len(func.args) == 2
        and isinstance(func.args[1], str)
    ):
        owner = _callable_name(func.args[0])
        return f"{owner}.{func.args[1]}" if owner else None
    return func.func if func.args is None else None


def _attr(obj, name: str, path: str, default=None):
    """Attribute ``name`` of the HDF5 object ``obj`` (of the file ``path``) as plain Python:
    pickled bytes decoded safely, other bytes as str. A pickle that exceeds the decoding
    bounds is a :class:`DatasetError` naming the file, object and attribute."""
    attrs = obj.attrs
    if name not in attrs:
        return default
    v = attrs[name]
    if isinstance(v, (bytes, np.bytes_)):
        raw = bytes(v)
        if raw.endswith(b"."):  # the same test PyTables uses to recognise a pickle
            try:
                return safe_unpickle(raw)
            except PickleLimitError as e:
                raise DatasetError(
                    f"{path}: attribute {name!r} of {obj.name} is a pickle that cannot be "
                    f"decoded within the safety limits ({e}); the file is damaged or was "
                    "crafted, rewrite it with pandas.DataFrame.to_hdf"
                ) from e
            except ValueError:
                pass
        return raw.decode("utf-8", "replace")
    return v.item() if isinstance(v, np.generic) else v


def _str_attr(obj, name: str, path: str, default: str) -> str:
    """A text attribute (``encoding``, ``nan_rep``): a :class:`DatasetError` naming the file,
    object and attribute when it holds anything but text."""
    v = _attr(obj, name, path, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise DatasetError(
            f"{path}: attribute {name!r} of {obj.name} should be text but holds "
            f"{_describe_value(v)}; the file was not written by pandas/PyTables or is damaged"
        )
    return v


def _describe_value(v) -> str:
    if isinstance(v, Opaque):
        return f"a pickled Python object ({v.what})"
    if isinstance(v, bytes):
        text = f"{len(v)} opaque bytes"
    elif isinstance(v, np.void):  # a buffer of its item size (what bytes(v) would copy)
        text = f"{v.nbytes} opaque bytes"
    else:
        text = repr(v)
    return f"a {type(v).__name__} value {text[:60]}"


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
        """The Arrow schema of this file's table (column names and types, in order)."""
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
        raise DatasetError(
            f"{path}: dataset {ds.name} has shape {ds.shape}; only 1-D datasets "
            "(one per column) or 1-D compound datasets are supported"
        )


def _chunk(ds) -> int | None:
    return ds.chunks[0] if ds.chunks else None


def _group_layout(g, path: str) -> _Layout:
    dsets = [(name, obj) for name, obj in g.items() if isinstance(obj, h5py.Dataset)]
    if not dsets:
        raise DatasetError(
            f"{path}: group {g.name} holds no datasets (members: "
            f"{', '.join(g.keys()) or 'none'}); pass key= naming a table"
        )
    for _, ds in dsets:
        _check_1d(ds, path)
    lengths = {name: ds.shape[0] for name, ds in dsets}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{n}={k}" for n, k in lengths.items())
        raise DatasetError(f"{path}: columns of group {g.name} have different lengths: {desc}")
    cols = tuple(
        _Col(
            name, ds.name, None, None, decoded_type(_arrow_type(ds.dtype, f"column {name!r}", path), ds.attrs)
        )
        for name, ds in dsets
    )
    chunks = [c for _, ds in dsets if (c := _chunk(ds))]
    return _Layout(
        g.name,
        dsets[0][1].shape[0],
        max(chunks) if chunks else None,
        sum(ds.dtype.itemsize for _, ds in dsets),
        cols,
    )


def _dataset_layout(ds, path: str) -> _Layout:
    _check_1d(ds, path)
    if ds.dtype.names is None:  # a lone 1-D dataset: one column
        name = ds.name.rsplit("/", 1)[-1]
        cols: tuple[_Col, ...] = (
            _Col(
                name,
                ds.name,
                None,
                None,
                decoded_type(_arrow_type(ds.dtype, f"column {name!r}", path), ds.attrs),
            ),
        )
    else:
        found: list[_Col] = []
        for f in ds.dtype.names:
            dt = ds.dtype.fields[f][0]
            if dt.shape:
                raise DatasetError(
                    f"{path}: field {f!r} of {ds.name} is an array {dt.shape}; "
                    "only scalar fields are supported"
                )
            found.append(_Col(f, ds.name, f, None, _arrow_type(dt, f"field {f!r}", path)))
        cols = tuple(found)
    return _Layout(ds.name, ds.shape[0], _chunk(ds), ds.dtype.itemsize, cols)


def _time_zone(tz, what: str, path: str) -> str | None:
    """The Arrow time zone of a pandas ``info[...]["tz"]`` entry: a zone name (pandas stores
    named zones as text) or a pickled ``datetime.timezone(timedelta(...))`` (how pandas stores
    UTC and fixed offsets), decoded from its plain arguments without building the object."""
    if tz is None or isinstance(tz, str):
        return tz
    if isinstance(tz, Opaque) and tz.func in ("pytz _UTC", "pytz utc"):
        return "UTC"
    if (
        isinstance(tz, Opaque)
        and tz.func in ("zoneinfo ZoneInfo._unpickle", "pytz _p")
        and tz.args
        and isinstance(tz.args[0], str)
        and tz.args[0]
        and _zone_known(tz.args[0])
    ):
        return tz.args[0]  # ZoneInfo("Europe/Paris") / a pytz zone, pickled by name
    if isinstance(tz, Opaque) and tz.func == "datetime timezone" and tz.args:
        delta = tz.args[0]
        if (
            isinstance(delta, Opaque)
            and delta.func == "datetime timedelta"
            and delta.args is not None
            and len(delta.args) <= 3
            and all(isinstance(x, int) and not isinstance(x, bool) for x in delta.args)
        ):
            days, seconds, micros = (tuple(delta.args) + (0, 0, 0))[:3]
            if micros == 0 and -86400 < (total := days * 86400 + seconds) < 86400 and total % 60 == 0:
                if total == 0:
                    return "UTC"
                sign, total = ("+", total) if total > 0 else ("-", -total)
                return f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"
    raise DatasetError(
        f"{path}: {what} has a time zone stored as a Python object "
        f"({_describe_value(tz)}); only named time zones, UTC and fixed "
        "offsets in whole minutes are supported"
    )


def _zone_known(name: str) -> bool:
    try:
        pa.timestamp("us", tz=name).to_pandas_dtype()
        return True
    except (pa.ArrowException, ValueError, KeyError, TypeError):  # unknown zone name
        return False


def _pandas_type(base: np.dtype, dtype_str, tz, what: str, path: str) -> pa.DataType:
    dtype_str = dtype_str if isinstance(dtype_str, str) else ""
    tz = _time_zone(tz, what, path)
    if dtype_str.startswith("datetime64"):
        return pa.timestamp(_unit(dtype_str), tz=tz)
    if dtype_str.startswith("timedelta64"):
        return pa.duration(_unit(dtype_str))
    if dtype_str == "bool":
        return pa.bool_()
    return _arrow_type(base, what, path)


def _encoding(g, path: str) -> str:
    """The text encoding of a pandas table (its ``encoding`` attribute, default UTF-8),
    checked to be a codec Python knows."""
    import codecs

    enc = _str_attr(g, "encoding", path, "utf-8")
    try:
        codecs.lookup(enc)
    except LookupError:
        raise DatasetError(
            f"{path}: attribute 'encoding' of {g.name} names an unknown text "
            f"encoding {enc[:60]!r}; the file is damaged or was not written "
            "by pandas"
        ) from None
    return enc


def _pandas_layout(g, path: str) -> _Layout:
    ptype = _attr(g, "pandas_type", path)
    if ptype in ("frame", "series"):
        raise DatasetError(
            f"{path}: {g.name} was written by pandas with format='fixed'; only "
            "format='table' is supported (rewrite with to_hdf(..., format='table'))"
        )
    if not (isinstance(ptype, str) and ptype.endswith("_table")) or "table" not in g:
        raise DatasetError(f"{path}: {g.name} has unsupported pandas_type {ptype!r}")
    ds = g["table"]
    _check_1d(ds, path)
    info = _attr(g, "info", path)
    info = info if isinstance(info, dict) else {}
    encoding = _encoding(g, path)
    nan_default = _str_attr(g, "nan_rep", path, "nan")
    cols: dict[str, _Col] = {}
    index = None
    for field in ds.dtype.names:
        dt = ds.dtype.fields[field][0]
        finfo = info.get(field, {}) if isinstance(info.get(field), dict) else {}
        if field == "index":
            name, kind = finfo.get("index_name"), _attr(ds, "index_kind", path, "integer")
            if name is None and kind == "integer":
                continue
            name = "index" if name is None else str(name)
            typ = _pandas_type(dt.base, kind, finfo.get("tz"), "the index", path)
            index = _Col(name, ds.name, field, None, typ, None, encoding)
            continue
        if _attr(ds, f"{field}_meta", path) == "category":
            raise DatasetError(
                f"{path}: field {field!r} of {ds.name} is categorical; categorical columns are not supported"
            )
        names = _attr(ds, f"{field}_kind", path)
        width = dt.shape[0] if dt.shape else None
        if not isinstance(names, list) or len(names) != (width or 1):
            names = [field] if width is None else [f"{field}_{j}" for j in range(width)]
        typ = _pandas_type(
            dt.base, _attr(ds, f"{field}_dtype", path), finfo.get("tz"), f"field {field!r}", path
        )
        nan_rep = _str_attr(ds, f"{field}_nan_rep", path, nan_default) if typ == pa.string() else None
        for j, name in enumerate(names):
            cols[str(name)] = _Col(
                str(name), ds.name, field, None if width is None else j, typ, nan_rep, encoding
            )
    # pandas' column order: non_index_axes = [(1, [names...])]
    nia = _attr(g, "non_index_axes", path)
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
    """Open ``path`` read-only; any h5py/HDF5 failure becomes a :class:`DatasetError`. A FIFO,
    socket or device is refused before it is opened (see :mod:`hpcframe.io.paths`)."""
    from .paths import check_regular_file

    if not os.path.lexists(path):
        raise DatasetError(
            f"{path}: no such file (paths must be existing local HDF5 files; "
            "globs are expanded by the caller)"
        )
    check_regular_file(path, "HDF5")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(
            f"{path}: cannot open as HDF5 ({e}); is it an HDF5 file (.h5/.hdf5), complete and readable?"
        ) from e
    try:
        with f:
            yield f
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DatasetError(f"{path}: HDF5 error: {e}") from e


def _detect(f, key: str | None, path: str) -> _Layout:
    root = list(f.keys())
    if key is None:
        if len(root) != 1:
            raise DatasetError(
                f"{path}: {len(root)} candidate objects at the root level "
                f"({', '.join(root) or 'file is empty'}); pass key= to choose one"
            )
        key = root[0]
    if key not in f:
        raise DatasetError(
            f"{path}: no object {key!r} in the file (root level: {', '.join(root) or 'empty'})"
        )
    obj = f[key]
    parent = obj.parent
    if isinstance(obj, h5py.Dataset) and "pandas_type" in parent.attrs and obj.name.endswith("/table"):
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
            out = pa.array(
                [x.decode(col.encoding) if isinstance(x, bytes) else x for x in arr], type=pa.string()
            )
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

    format = "hdf5"

    def __init__(
        self,
        paths: list[str],
        key: str | None = None,
        chunk_rows: int | None = None,
        label: str | None = None,
    ):
        if not paths:
            raise DatasetError("HDF5 dataset: no files given")
        if chunk_rows is not None and chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        self.paths = [os.fspath(p) for p in paths]
        self.files = self.paths  # the name the other sources use
        self.key = key
        #: what the user named (a path, a glob, "3 HDF5 files"), for messages and explain()
        self.label = source_label(label, self.paths, "HDF5") + (f" (key {key!r})" if key is not None else "")
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
                raise DatasetError(f"{path}: columns differ from {self.paths[0]}: {_schema_diff(want, got)}")
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
                raise DatasetError(
                    f"{part.path}: no column {name!r} in {lay.piece} (available: {', '.join(by_name)})"
                )
        needed: dict[str, list[_Col]] = {}
        for name in dict.fromkeys(columns):
            needed.setdefault(by_name[name].obj, []).append(by_name[name])
        arrays: dict[str, pa.Array] = {}
        with _open(part.path) as f:
            for obj, cols in needed.items():
                ds = f[obj]
                fields = list(dict.fromkeys(c.field for c in cols))
                rows = slice(part.start, part.stop)
                data: dict[str | None, np.ndarray]  # compound field (None: the whole dataset)
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
