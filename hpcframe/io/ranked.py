"""Data held by the ranks: the partitions of a persisted or shuffled frame, as Arrow tables.

A :class:`RankedData` is a dataset whose partitions live in the memory of the ranks that
computed them (or in a per-rank spill directory when they exceed the memory budget) instead
of in files. It implements the source protocol of :mod:`hpcframe.io.dataset` (``schema``,
``discover``, ``read``) with two differences the engine honours:

* every partition has an **owner** rank (:meth:`RankedData.owner_of`), and only that rank can
  read it: the engine gives each rank exactly the partitions it owns;
* partitions are never cut into blocks (``splittable = False``): a partition of a shuffled
  frame holds whole groups, and per-group functions must see all of a group's rows.

The number of partitions and their order depend only on the data and on
:attr:`hpcframe.config.Config.partitions`, never on the number of ranks (owners do), so that
a reduction over them combines in the same order on any number of ranks.

The data is bound to the communicator size it was built with; using it with another one is
refused. Spill files are Arrow IPC files (never pickles) in a private directory under
:attr:`hpcframe.config.Config.spill_dir` (default: ``$TMPDIR``), removed by
:meth:`RankedData.release`, when the data is garbage-collected and at interpreter exit.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
import weakref

import numpy as np
import pyarrow as pa

from ..config import config
from .dataset import DatasetError, Partition
from .fs import process_gone

_serials = itertools.count()


class RankedData:
    """Partitions ``0..nparts-1`` held by their owner ranks (see the module docstring).

    Build it collectively with :meth:`build`; the constructor is for that method only.
    """

    format = "memory"
    splittable = False
    files: list[str] = []

    def __init__(self, label, owners, local, schema, size, rows, nbytes, spill_dir):
        self.label = label
        self.serial = next(_serials)  # tells one computation of a stage from another
        self.owners = list(owners)
        self.size = size
        self._local = local  # index -> pa.Table, or str (the path of its spill file)
        self._schema = schema
        self._rows, self._nbytes = rows, nbytes
        self._spill_dir = spill_dir
        self._cleanup = weakref.finalize(self, _remove, spill_dir) if spill_dir else None
        self.released = False

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        comm,
        label: str,
        owners: list[int],
        frames: dict,
        empty=None,
        budget: int | None = None,
        object_like_empty: bool = False,
    ):
        """Collective: ``frames`` maps the indices of the partitions this rank owns to pandas
        DataFrames (missing ones are empty; each is removed from the dict once converted).
        Converts them to Arrow with one schema agreed
        over the ranks (the first rank's non-null type of every column), keeps them in memory
        up to ``budget`` bytes (default ``config.memory_budget``) and spills the rest to Arrow
        IPC files. ``empty`` (an empty DataFrame of the columns) gives the schema when no
        rank has a row. Every rank must call it (the schema and the sizes are exchanged)."""
        me = comm.rank
        mine = [i for i, o in enumerate(owners) if o == me]
        local_frames = [df for _, df in sorted(frames.items()) if df is not None and len(df)]
        schema, errors = agree_schema(comm, local_frames or ([empty] if empty is not None else []))
        _raise_any(label, errors)
        if schema is None:
            raise DatasetError(f"{label}: no rank produced a table to learn the columns from")
        if empty is not None and object_like_empty:
            schema = with_meta_flags(schema, empty)
        error = None
        budget = config.memory_budget if budget is None else budget
        local: dict[int, object] = {}
        sizes: dict[int, tuple[int, int]] = {}
        spill_dir = None
        used = 0
        try:
            for i in mine:
                df = frames.pop(i, None)  # the pandas partition is freed once converted
                if df is None or not len(df):
                    table = schema.empty_table()
                else:
                    # integers of a column that is float64 on another rank (NaN there): cast
                    # as pandas casts them (rounded beyond 2**53, where Arrow would refuse)
                    ints = {
                        c: df[c].astype("float64")
                        for c in df.columns
                        if df[c].dtype.kind in "iu"
                        and c in schema.names
                        and pa.types.is_floating(schema.field(c).type)
                    }
                    table = pa.Table.from_pandas(
                        df.assign(**ints) if ints else df, schema=schema, preserve_index=False
                    )
                used += table.nbytes
                sizes[i] = (table.num_rows, table.nbytes)
                if used > budget and table.num_rows:
                    if spill_dir is None:
                        spill_dir = _spill_dir()
                    local[i] = _spill(table, spill_dir, i)
                else:
                    local[i] = table
        except Exception as exc:
            error = f"rank {me}: {exc}"
        everyone = comm.allgather((sizes, error))
        if any(e for _, e in everyone):
            if spill_dir is not None:
                _remove(spill_dir)
            _raise_any(label, [e for _, e in everyone])
        rows = [0] * len(owners)
        nbytes = [0] * len(owners)
        for part, _ in everyone:
            for i, (r, b) in part.items():
                rows[i], nbytes[i] = r, b
        return cls(label, owners, local, schema, comm.size, rows, nbytes, spill_dir)

    # -- the source protocol -----------------------------------------------------------------
    def schema(self) -> pa.Schema:
        """The Arrow schema shared by every partition (with pandas dtype flags)."""
        return self._schema

    def discover(self, comm) -> list[Partition]:
        """One partition per index, with its row count (known on every rank)."""
        self._check(comm)
        return [
            Partition(f"<{self.label} partition {i}>", i, 0, self._rows[i], self._nbytes[i])
            for i in range(len(self.owners))
        ]

    def owner_of(self, part: Partition) -> int:
        """The rank that holds ``part``."""
        return self.owners[part.piece]

    def read(self, part: Partition, columns: list[str]) -> pa.Table:
        """The rows of ``part`` (held by this rank), restricted to ``columns``."""
        if self.released:
            raise DatasetError(f"{self.label} was released (unpersist): compute it again from its source")
        held = self._local.get(part.piece)
        if held is None:
            raise DatasetError(
                f"{self.label}: partition {part.piece} is held by rank {self.owners[part.piece]}, "
                f"not by this one"
            )
        if isinstance(held, str):
            with pa.memory_map(held) as source:
                table = pa.ipc.open_file(source).read_all()
        else:
            table = held
        return table.select(list(columns))

    # -- state ---------------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """Rows over all ranks."""
        return sum(self._rows)

    @property
    def spilled(self) -> int:
        """How many of this rank's partitions are in spill files."""
        return sum(1 for t in self._local.values() if isinstance(t, str))

    @property
    def memory_bytes(self) -> int:
        """Bytes of this rank's partitions held in memory."""
        return sum(t.nbytes for t in self._local.values() if isinstance(t, pa.Table))

    def release(self) -> None:
        """Drop this rank's partitions and spill files (local: no collective)."""
        self._local = {}
        self.released = True
        if self._cleanup is not None:
            self._cleanup()

    def _check(self, comm) -> None:
        if self.released:
            raise DatasetError(f"{self.label} was released (unpersist): compute it again from its source")
        if comm.size != self.size:
            raise DatasetError(
                f"{self.label} is held by {self.size} rank(s) and cannot be used with a "
                f"communicator of {comm.size}: compute it with the communicator it was made with"
            )


def agree_schema(comm, frames) -> tuple[pa.Schema | None, list[str]]:
    """Collective: one Arrow schema (with pandas dtype flags, see :mod:`hpcframe.io.types`)
    for the pandas ``frames`` of every rank (a DataFrame, a list of them, or ``None``), and
    the ranks' errors (a column Arrow cannot hold). See :func:`merge_schemas`.

    Only frames with rows decide the types: a rank with none passes an empty frame whose
    dtypes are declared (a stage's planned meta), not what its computation made; its types
    serve only a column that has no value anywhere else. A merge of keys categorical on
    both sides with other categories makes the left key ``str`` where it ran, while the
    declared frame says ``category`` (a regression: on 3 ranks the key came back
    ``category``, and the rows of an outer join, sorted by it, in the categories' order);
    a right join's key from an int64 right key is int64, while the declared frame, from a
    float64 left key, says ``float64`` (a regression: on 2 ranks, float64 by the rule for
    ints and floats together)."""
    if frames is None:
        frames = []
    elif not isinstance(frames, list):
        frames = [frames]
    error, local = None, None
    rows = any(df is not None and len(df) for df in frames)
    try:
        local = merge_schemas(_distinct_schemas(frames, _marked_schema))
    except Exception as exc:  # every rank must reach the allgather
        error = f"rank {comm.rank}: {exc}"
    gathered = comm.allgather((local, error, rows))
    errors = [e for _, e, _ in gathered if e]
    if errors:
        return None, errors
    seen = merge_schemas([s for s, _, r in gathered if r])
    said = merge_schemas([s for s, _, r in gathered if not r])
    if seen is None:
        return _unmarked(said), errors
    if said is not None:  # a column without values where the rows are: the declared type
        fields = [said.field(f.name) if _is_empty_type(f.type) and f.name in said.names else f for f in seen]
        seen = pa.schema(fields, metadata=seen.metadata)
    return _unmarked(seen), errors


#: field metadata :func:`agree_schema` puts on a column whose values are all missing in a
#: frame *with rows* (an ``object`` column of NaN: the bools of a join's unmatched rows), so
#: that :func:`merge_schemas` can tell it from an empty frame's column, which says nothing
_ALL_MISSING = b"hpcframe.allmissing"


def _any_all_missing(fields) -> bool:
    """Whether one of ``fields`` is marked :data:`_ALL_MISSING`."""
    return any(_ALL_MISSING in (g.metadata or {}) for g in fields)


def _marked_schema(df) -> pa.Schema:
    """:func:`hpcframe.io.memory._frame_schema` of ``df``, its entirely missing ``object``
    columns marked (:data:`_ALL_MISSING`) when ``df`` has rows."""
    from .memory import _frame_schema
    from .types import OBJECT, dtype_flag

    schema = _frame_schema(df)
    if not len(df):
        return schema
    fields = [
        f.with_metadata({**(f.metadata or {}), _ALL_MISSING: b"1"})
        if _is_empty_type(f.type) and dtype_flag(f) == OBJECT
        else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def _unmarked(schema: pa.Schema | None) -> pa.Schema | None:
    """``schema`` without :data:`_ALL_MISSING` marks."""
    if schema is None or not _any_all_missing(schema):
        return schema
    fields = []
    for f in schema:
        meta = {k: v for k, v in (f.metadata or {}).items() if k != _ALL_MISSING}
        fields.append(f.with_metadata(meta) if meta else f.remove_metadata())
    return pa.schema(fields, metadata=schema.metadata)


def _distinct_schemas(frames, schema_of) -> list[pa.Schema]:
    """The schemas of ``frames`` (``None`` entries skipped), each computed once per distinct
    set of column names and dtypes when no column is ``object`` (whose Arrow type depends on
    the values): a join or a shuffle holds many blocks of the same dtypes, and building a
    schema with its pandas metadata costs about a millisecond each."""
    from pandas.api.types import is_object_dtype

    out, seen = [], set()
    for df in frames:
        if df is None:
            continue
        dtypes = tuple(df.dtypes)
        if any(is_object_dtype(d) for d in dtypes):
            out.append(schema_of(df))
            continue
        key = (tuple(df.columns), dtypes)
        if key not in seen:
            seen.add(key)
            out.append(schema_of(df))
    return out


def _raise_any(label, errors) -> None:
    errors = [e for e in errors if e]
    if errors:
        raise DatasetError(f"{label}: cannot keep the data as Arrow tables: {'; '.join(errors)}")


def merge_schemas(schemas) -> pa.Schema | None:
    """One schema for data described by ``schemas`` (``None`` entries: no data), in the
    first one's column order. Per column: the first type that is not null; integers and
    floats together are float64 (as pandas makes a column with NaN somewhere); a dtype flag
    of any of them that has values is kept; bools with a column of only missing values in
    a frame with rows (marked by :func:`agree_schema`) are flagged ``object``, as pandas
    has them."""
    present = [s for s in schemas if s is not None]
    if not present:
        return None
    base = present[0]
    fields = []
    for f in base:
        others = [s.field(f.name) for s in present if f.name in s.names]
        types = [g.type for g in others if not _is_empty_type(g.type)]
        if types:
            chosen = types[0]
            if any(t != chosen for t in types):
                numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)
                if numeric and any(pa.types.is_floating(t) for t in types):
                    chosen = pa.float64()
                elif numeric:  # integers of other widths: one that holds them all (int8 and
                    # int64: int64, as pandas concatenates them; a group cumsum of int8 is
                    # int64 only where it overflowed int8)
                    chosen = pa.from_numpy_dtype(np.result_type(*(t.to_pandas_dtype() for t in types)))
            f = f.with_type(chosen)
        flagged = next((g for g in others if g.metadata and not _is_empty_type(g.type)), None)
        if flagged is not None:
            f = f.with_metadata(flagged.metadata)
        elif types and pa.types.is_boolean(f.type) and _any_all_missing(others):
            # bools here, only missing values in a frame with rows there (a join's unmatched
            # rows): pandas makes such a column object in every piece, wherever the missing
            # values are (a filter that drops them keeps it object)
            from .types import DTYPE_KEY, OBJECT

            f = f.with_metadata({DTYPE_KEY: OBJECT})
        elif types:  # the flags of a column without values say nothing
            f = f.remove_metadata()
        fields.append(f)
    return pa.schema(fields, metadata=base.metadata)


def _is_empty_type(t: pa.DataType) -> bool:
    """A type that says nothing about the values: null, or a dictionary of nulls (a
    categorical column without categories)."""
    return pa.types.is_null(t) or (pa.types.is_dictionary(t) and pa.types.is_null(t.value_type))


def with_meta_flags(schema: pa.Schema, meta) -> pa.Schema:
    """``schema`` with the ``object`` flag on the columns that ``meta`` (an empty pandas frame
    of the dataset-level dtypes) holds as ``object`` but the data typed otherwise (bools with
    a null somewhere else: object in every partition, as pandas has them)."""
    from .types import OBJECT, dtype_flag, flag_fields, is_string

    flags = {}
    for f in schema:
        if f.name in meta.columns and str(meta[f.name].dtype) == "object":
            if dtype_flag(f) is None and not is_string(f.type):
                flags[f.name] = OBJECT
    return flag_fields(schema, flags) if flags else schema


def _spill_prefix() -> str:
    """The start of this host's spill folder names, ``hpcframe-spill-HOST-`` (a PID follows)."""
    return f"hpcframe-spill-{socket.gethostname()}-"


def _sweep_spills(base: str) -> None:
    """Remove the spill folders in ``base`` of this host's processes that have ended (one
    killed with SIGKILL or SIGTERM cannot remove its own)."""
    prefix = _spill_prefix()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and int(pid) != os.getpid() and process_gone(int(pid)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _spill_dir() -> str:
    base = config.spill_dir or os.environ.get("TMPDIR") or tempfile.gettempdir()
    try:
        os.makedirs(base, exist_ok=True)
        _sweep_spills(base)
        return tempfile.mkdtemp(prefix=f"{_spill_prefix()}{os.getpid()}-", dir=base)
    except OSError as exc:
        raise DatasetError(
            f"cannot create a spill directory in {base}: {exc}. The data beyond "
            f"hf.config.memory_budget ({config.memory_budget:,} bytes per rank) is spilled there: "
            f"set hf.config.spill_dir (HPCFRAME_SPILL_DIR) to a writable local directory, or "
            f"raise the budget"
        ) from exc


def _spill(table: pa.Table, folder: str, index: int) -> str:
    path = os.path.join(folder, f"part-{index:06d}.arrow")
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except OSError as exc:
        raise DatasetError(
            f"cannot spill a partition of {table.num_rows} rows to {path}: {exc}. Set "
            f"hf.config.spill_dir (HPCFRAME_SPILL_DIR) to a local directory with space, or raise "
            f"hf.config.memory_budget"
        ) from exc
    return path


def _remove(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
