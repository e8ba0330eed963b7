"""Parquet datasets: a file, a directory (with hive ``key=value`` folders), a glob or a list.

Partitions are row groups; schema, row counts, byte sizes and min/max statistics come from the
footers. Page CRC checksums, where the writer stored them, are verified on every read: a
corrupt page is a :class:`DatasetError` naming the file and row group. Under MPI the footers
are read by all ranks (file ``i`` by rank ``i % size``) and the descriptors exchanged with one
``allgather``.
"""

from __future__ import annotations

import datetime
import decimal
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq

from .dataset import (
    ColumnStats,
    DatasetError,
    Partition,
    by_file,
    discover_files,
    mark_dataset_types,
    source_label,
)
from .formats import PARQUET
from .paths import expand_paths, hive_values
from .types import is_string, strip_flags

_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class ParquetSource:
    """A Parquet dataset (see the module docstring)."""

    format = "parquet"

    def __init__(self, path, hive: bool = True):
        self.files, self.root = expand_paths(path, PARQUET.read_suffixes, "Parquet")
        self.label = source_label(path, self.files, "Parquet")
        self._hive = {f: hive_values(f, self.root) for f in self.files} if hive else {}
        self._hive_types = _hive_types(self._hive)
        self._schema = None
        # path -> (file identity, ParquetFile, its string_view columns read as plain strings)
        self._open: dict[str, tuple] = {}

    def __getstate__(self):
        # the source travels to Dask workers; open files stay behind
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    # -- the source protocol ------------------------------------------------------------
    def schema(self) -> pa.Schema:
        """The dataset schema: the first file's columns, then the hive partition columns."""
        if self._schema is None:
            base = strip_flags(_file_schema(self.files[0]))
            fields = [f for f in base if f.name not in self._hive_types]
            fields += [pa.field(k, t) for k, t in self._hive_types.items()]
            self._schema = pa.schema(fields)
        return self._schema

    def discover(self, comm) -> list[Partition]:
        """Every row group of every file (collective under MPI). Also decides the dataset-level
        dtypes (:func:`~hpcframe.io.dataset.mark_dataset_types`): afterwards :meth:`schema`
        flags the integer and bool columns that hold a null in any row group."""
        schema = self.schema()
        parts = discover_files(comm, self.files, lambda f: self._file_partitions(f, schema))
        self._schema, parts = mark_dataset_types(schema, parts)
        return parts

    def read(self, part: Partition, columns: list[str]) -> pa.Table:
        """The rows of one partition (see :meth:`read_many`); raises DatasetError if unreadable."""
        return self.read_many([part], columns)

    #: a leaf may hold the small row groups of several consecutive files
    #: (:func:`hpcframe.physical.leaves_of`): :meth:`read_many` reads them file by file
    reads_across_files = True

    def read_many(self, parts: list[Partition], columns: list[str]) -> pa.Table:
        """Rows of several consecutive partitions as one table: those of one file read with
        one call (parallel decoding of the column chunks), the files' tables concatenated
        in order (:func:`_concat_files`); a single partition may be a row range of its row
        group."""
        if parts[0].path == parts[-1].path:
            return self._read_file(parts, columns)
        return _concat_files([self._read_file(run, columns) for run in by_file(parts)])

    def _read_file(self, parts: list[Partition], columns: list[str]) -> pa.Table:
        """Rows of contiguous partitions of one file (see :meth:`read_many`)."""
        part = parts[0]
        file_cols = [c for c in columns if c not in self._hive_types]
        try:
            pf, views = self._file_and_views(part.path)
            table = pf.read_row_groups([p.piece for p in parts], columns=file_cols, use_threads=True)
            for c in views.intersection(file_cols):  # (Arrow cannot take or filter string_view)
                i = table.schema.get_field_index(c)
                table = table.set_column(
                    i,
                    table.schema.field(i).with_type(pa.large_string()),
                    table.column(i).cast(pa.large_string()),
                )
        except (OSError, pa.ArrowException) as exc:
            raise self._read_error(parts, file_cols, exc) from exc
        if len(parts) == 1 and (part.start or part.stop < table.num_rows):
            table = table.slice(part.start, part.num_rows)
        if len(file_cols) == len(columns):
            return table
        arrays = []
        for c in columns:
            if c in self._hive_types:
                value = _hive_value(part.hive.get(c), self._hive_types[c])
                arrays.append(pa.array([value] * table.num_rows, self._hive_types[c]))
            else:
                arrays.append(table.column(c))
        return pa.table(arrays, names=list(columns))

    # -- helpers ------------------------------------------------------------------------
    def _read_error(self, parts: list[Partition], file_cols, exc) -> DatasetError:
        """The error of a failed read, naming the file and the row group: when several row
        groups were read at once, each is read again alone to find the one at fault."""
        bad = parts[0]
        if len(parts) > 1:
            for p in parts:
                try:
                    self._file(p.path).read_row_groups([p.piece], columns=file_cols, use_threads=False)
                except (OSError, pa.ArrowException) as again:
                    bad, exc = p, again
                    break
        where = f"{bad.path}, row group {bad.piece}"
        if "checksum" in str(exc).lower() or "crc" in str(exc).lower():
            return DatasetError(
                f"{where} is corrupt: a data page does not match the CRC checksum written with "
                f"it ({exc}). The file was damaged after it was written; restore it from a "
                f"copy or rewrite it"
            )
        return DatasetError(f"cannot read {where} (rows {bad.start}:{bad.stop}): {exc}")

    def _file(self, path: str) -> pq.ParquetFile:
        return self._file_and_views(path)[0]

    def _file_and_views(self, path: str) -> tuple[pq.ParquetFile, frozenset]:
        # a handle is kept while its file is the one it opened: a file replaced or rewritten
        # since (another inode, size or modification time) is opened again, never read stale
        try:
            st = os.stat(path)
            ident = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            ident = None
        kept = self._open.get(path)
        if kept is not None and kept[0] == ident:
            return kept[1], kept[2]
        self._open.pop(path, None)
        if len(self._open) >= 4:
            self._open.pop(next(iter(self._open)))
        # strings come as dictionaries (no string materialised until pandas needs it)
        strings = [f.name for f in self.schema() if f.name not in self._hive_types and is_string(f.type)]
        # ... except those whose pages are mostly not dictionary-encoded
        meta = pq.read_metadata(path) if strings else None
        views: frozenset = frozenset()
        if meta is not None:
            plain = _plain_strings(meta, strings)
            strings = [c for c in strings if c not in plain]
            # a plain string_view column is cast to large_string when read (Arrow has no
            # take for string_view; a dictionary of ~1e5 distinct values per row group,
            # built by hashing every value, cost twice as much: TPC-H's comments, names,
            # addresses and phones)
            types = {f.name: f.type for f in self.schema()}
            views = frozenset(c for c in plain if pa.types.is_string_view(types[c]))
        # pages written with a CRC checksum are verified (those without are read as they
        # are): a corrupt page is an error, never silently wrong values. No pre-buffering:
        # each column chunk is still read with one call, but not first copied whole into
        # fresh memory (at TPC-H SF 10 that copy cost ~9 % of a scan query's CPU per rank and
        # ~90 MB of peak memory; see docs/benchmarks.md, "Session 25")
        pf = pq.ParquetFile(
            path,
            metadata=meta,
            read_dictionary=strings,
            page_checksum_verification=True,
            pre_buffer=False,
        )
        self._open[path] = (ident, pf, views)
        return pf, views

    def _file_partitions(self, path: str, schema: pa.Schema) -> list[Partition]:
        try:
            meta = pq.read_metadata(path)
            file_schema = meta.schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(_not_parquet(path, exc)) from exc
        _check_schema(path, file_schema, schema, set(self._hive_types))
        hive = {k: _hive_value(v, self._hive_types[k]) for k, v in self._hive.get(path, {}).items()}
        names = [meta.schema.column(j).path for j in range(meta.num_columns)]
        # integer and bool columns: the dataset's pandas dtype depends on whether any row
        # group holds a null, so their null counts must be known (see mark_dataset_types)
        counted = {f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)}
        parts = []
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            # a null hive value (__HIVE_DEFAULT_PARTITION__) is a null in every row
            stats = {
                k: ColumnStats(v, v, 0) if v is not None else ColumnStats(None, None, rg.num_rows)
                for k, v in hive.items()
            }
            for j, name in enumerate(names):
                s = _stats(rg.column(j).statistics)
                if name in counted and (s is None or s.null_count is None):
                    s = ColumnStats(
                        s.min if s else None, s.max if s else None, _null_count(path, meta, g, j, name)
                    )
                if s is not None:
                    stats[name] = s
            parts.append(Partition(path, g, 0, rg.num_rows, rg.total_byte_size, stats, hive))
        return parts


def _concat_files(tables: list[pa.Table]) -> pa.Table:
    """The tables of consecutive files as one: a string column read as a dictionary from
    one file and as plain strings from another (:func:`_plain_strings` decides per file) is
    decoded to the plain type in all (the values are the same, and so are the pandas
    values; every other type is the dataset's, :func:`_check_schema`)."""
    first = tables[0].schema
    if any(not t.schema.equals(first) for t in tables[1:]):
        plain: dict[str, pa.DataType] = {}
        for t in tables:
            for f in t.schema:
                if not pa.types.is_dictionary(f.type):
                    plain.setdefault(f.name, f.type)
        fixed = []
        for t in tables:
            for i, f in enumerate(t.schema):
                if pa.types.is_dictionary(f.type) and f.name in plain:
                    t = t.set_column(i, f.with_type(plain[f.name]), t.column(i).cast(plain[f.name]))
            fixed.append(t.replace_schema_metadata(None))
        tables = fixed
    return pa.concat_tables(tables)


def _null_count(path: str, meta, g: int, j: int, name: str) -> int:
    """The nulls of column ``j`` in row group ``g`` when the writer stored no statistics: none
    for a ``required`` column (no definition levels), else the column is read (only that
    column of that row group) and its nulls counted."""
    if meta.schema.column(j).max_definition_level == 0 or meta.row_group(g).num_rows == 0:
        return 0
    try:
        return pq.ParquetFile(path).read_row_group(g, columns=[name]).column(0).null_count
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(
            f"cannot read column {name!r} of {path}, row group {g}, to count its "
            f"nulls (the file has no statistics for it): {exc}"
        ) from exc


def _file_schema(path: str) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(_not_parquet(path, exc)) from exc


#: a string column chunk larger than this many bytes per row (uncompressed) is mostly in
#: PLAIN pages: dictionary-encoded pages take at most 4 bytes per row (the index)
_DICT_BYTES_PER_ROW = 6


def _plain_strings(meta: pq.FileMetaData, names: list[str]) -> set[str]:
    """The string columns ``names`` of a file read as plain strings, not as dictionaries:
    those whose pages are mostly PLAIN (the writer's dictionary outgrew its page limit, as
    with ~1e5 distinct values per row group). Arrow would build their dictionary by hashing
    every value of those pages while reading; a group-by key among them is encoded after the
    read instead (:func:`~hpcframe.io.types.encode_strings`, faster for equal-length values),
    and other string columns need plain strings anyway."""
    if meta.num_rows == 0:
        return set()
    wanted = set(names)
    where = {}
    for j in range(meta.num_columns):
        path = meta.schema.column(j).path
        if path in wanted:
            where[path] = j
    plain = set()
    for name, j in where.items():
        size = sum(meta.row_group(g).column(j).total_uncompressed_size for g in range(meta.num_row_groups))
        if size > _DICT_BYTES_PER_ROW * meta.num_rows:
            plain.add(name)
    return plain


def _not_parquet(path, exc) -> str:
    return (
        f"{path} is not a readable Parquet file ({exc}). Check the path, or remove the "
        f"file from the dataset directory."
    )


def _check_schema(path: str, got: pa.Schema, want: pa.Schema, hive: set[str]) -> None:
    for field in want:
        if field.name in hive:
            continue
        idx = got.get_field_index(field.name)
        if idx < 0:
            raise DatasetError(
                f"{path} has no column {field.name!r}, which the dataset's first "
                f"file has; all files of a dataset must have the same columns"
            )
        if not got.field(idx).type.equals(field.type):
            raise DatasetError(
                f"column {field.name!r} is {got.field(idx).type} in {path} but {field.type} in "
                f"the dataset's first file; rewrite the file with the same type, or read the "
                f"files as separate datasets"
            )


def _hive_types(hive: dict[str, dict[str, str]]) -> dict[str, pa.DataType]:
    values: dict[str, list[str]] = {}
    for kv in hive.values():
        for k, v in kv.items():
            values.setdefault(k, []).append(v)
    types = {}
    for k, vs in values.items():
        real = [v for v in vs if v != _HIVE_NULL]
        types[k] = pa.int64() if real and all(_is_int(v) for v in real) else pa.string()
    return types


_INT_TEXT = re.compile(r"-?[0-9]{1,19}")


def _is_int(v: str) -> bool:
    """True when the hive value ``v`` is a plain ASCII decimal integer (optional ``-``, no
    ``+``, underscores, spaces or non-ASCII digits: pyarrow keeps those as strings) that fits
    int64. Anything else makes the hive column a string column."""
    return _INT_TEXT.fullmatch(v) is not None and -(2**63) <= int(v) < 2**63


def _hive_value(v, t):
    if v is None or v == _HIVE_NULL:
        return None
    return int(v) if pa.types.is_integer(t) else v


def _stats(s) -> ColumnStats | None:
    """Statistics in the value domain pandas will see (decimals as float, dates as Timestamp)."""
    if s is None:
        return None
    nulls = s.null_count if s.has_null_count else None
    if not s.has_min_max:
        return ColumnStats(None, None, nulls)
    try:
        return ColumnStats(_py(s.min), _py(s.max), nulls)
    except (ValueError, TypeError):  # stats of a type we do not understand: do not use them
        return ColumnStats(None, None, nulls)


def _py(v):
    import pandas as pd

    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        ts = pd.Timestamp(v)
        return ts if ts.tz is None else None
    if isinstance(v, bytes):
        return None
    return v
