"""Lazy CSV datasets: plain or compressed files, one schema for all of them.

Partitions
    * A plain file is cut into **byte ranges** of about ``chunk_bytes`` (the Hadoop/Dask
      scheme): the range ``[start, end)`` owns every line that *starts* inside it. The reader
      seeks to ``start - 1``, skips to the end of that line, and reads whole lines until the
      one that crosses ``end``. Each rank reads only its own ranges; CRLF line ends and a
      missing final newline are handled.
    * A compressed file (``.gz``, ``.bz2``, ``.xz``, ``.zst``) cannot be entered in the
      middle: it is cut into **row chunks** of a fixed number of rows, streamed from the
      beginning with pyarrow's streaming CSV reader. A rank keeps its stream open from one
      chunk to the next, so reading a whole file costs one decompression; a rank whose share
      starts in the middle of a file decompresses (and discards) the rows before it. The
      number of chunks is estimated from the file's decompressed size: read from the
      file's own metadata where the format records it (the index of an ``.xz`` file, exact;
      the size field at the end of a ``.gz`` file), so that planning decompresses nothing,
      else (``.bz2``, ``.zst``, multi-member gzip) from the compression ratio of its first
      few MB. The last chunk reads to the end of the file.
    * Planning is done once per job: :meth:`CSVSource.discover` describes file ``i`` on rank
      ``i % size`` only and the descriptors are allgathered; :attr:`CSVSource.examined`
      records, per process, which files it described and how their size was found.
    * With ``newlines_in_values=True`` (quoted fields that contain line breaks) a plain file
      cannot be split on line boundaries either, and is streamed like a compressed one.

    Partition sizes are chosen so that no partition has more (estimated) rows than
    :attr:`hpcframe.config.Config.block_rows`: the engine never cuts a CSV partition by rows,
    and memory per rank is bounded by ``chunk_bytes``, not by the file size. ``start``/
    ``stop`` of a byte range are row numbers *estimated* from the sample (exact for row
    chunks, except the ``stop`` of a file's last chunk: the estimated row count of the file,
    not the chunk's capacity); they are used for load balancing, progress and ``explain()``
    only, which say that they are estimates (``CSVSource.exact_row_counts`` is False). CSV
    partitions have no column statistics.

Schema
    Types are inferred by pyarrow from the first ``sample_rows`` rows of up to
    :data:`SAMPLE_FILES` files spread evenly over the dataset (:meth:`CSVSource.sample_files`)
    and unified (int and float → float; anything else that
    disagrees → string). As in ``pandas.read_csv``, dates are only parsed for the columns in
    ``parse_dates``. ``dtype=`` overrides, ``usecols=`` selects. A value that does not fit is a
    :class:`DatasetError` naming the file, line, column and value — or, with
    ``on_bad_lines="skip"``/``"warn"``, the line is dropped (and reported). The sample of a
    compressed file leaves its stream open: the first read of that file in the process goes on
    from there (the sampled bytes replayed) instead of decompressing its start again, unless
    the file changed (size or modification time) in between; when the sample was parsed with
    the read's types (and ``on_bad_lines="error"``), its parsed rows are used and only the rest
    of the file is parsed.

    Under MPI the sample is read once per job (:meth:`CSVSource.infer_schema`, called
    by ``read_csv``, which is then collective): the sample files are split evenly over the
    ranks, each preferably to the rank that will read it (contiguous runs of files per rank, as
    the engine hands them out), the per-file results are allgathered and unified in file order
    on every rank — the schema one process would infer; each sample file is sampled once in the
    job, and a file its sampling rank reads is decompressed and parsed once.

Dtypes
    pandas' frame of a CSV dataset is ``pd.concat([pd.read_csv(f) for f in files])``: an
    integer column with one empty field anywhere is float64 in the whole frame, a bool
    column object. The schema flags such a column (``NULLS``, :mod:`hpcframe.io.types`), so
    that every block is converted that way, as soon as it is known:

    * from the sample: a column with an empty field in the sampled rows is flagged at once;
    * while reading: :meth:`CSVSource.read` notes the integer/bool columns of each block
      that hold a null (Arrow's ``null_count``); after the scan the engine gathers them from
      every rank (:meth:`CSVSource.learned_nulls`, one small allgather per CSV scan) and
      flags the union (:meth:`CSVSource.adopt_nulls`). The blocks of that scan that were
      converted before are made right by casting the results
      (:func:`hpcframe.outputs.widen_result`) and the blocks held by stages; later scans of
      the same frame convert every block as float64/object from the start.

    Columns a scan did not read, and blocks it did not read (``head(n)`` stops early),
    teach nothing: see docs/design.md, "Not done yet". A block whose partials come from
    the engine's partial cache is not read: the cache keeps the columns in which it held
    a null with them (:meth:`CSVSource.block_nulls`, :meth:`CSVSource.saw_nulls`).
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .dataset import DatasetError, Partition, discover_files
from .formats import CSV, CSV_COMPRESSION
from .paths import expand_paths

COMPRESSION = CSV_COMPRESSION
CSV_SUFFIXES = CSV.read_suffixes
SAMPLE_FILES = 8
DEFAULT_CHUNK_BYTES = 64 << 20
_CSV_OPTIONS = (
    "sep",
    "delimiter",
    "header",
    "names",
    "quotechar",
    "escapechar",
    "doublequote",
    "na_values",
    "keep_default_na",
    "true_values",
    "false_values",
    "encoding",
    "newlines_in_values",
    "skip_blank_lines",
    "date_format",
)


@dataclass(frozen=True)
class ByteRange:
    """``Partition.piece`` of a plain file: the lines starting in bytes ``[start, end)``."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"bytes {self.start}-{self.end}"


@dataclass(frozen=True)
class RowChunk:
    """``Partition.piece`` of a streamed file: the ``index``-th chunk of rows (the last one
    reads to the end of the file)."""

    index: int
    last: bool

    def __str__(self) -> str:
        return f"row chunk {self.index}{' (to end of file)' if self.last else ''}"


def read_csv_quietly(*args, **kwargs) -> pa.Table:
    """``pyarrow.csv.read_csv(*args, **kwargs)`` without pyarrow's own SIGINT handler. In the
    main thread pyarrow installs one for the read that hands a SIGINT to a helper thread to
    request a stop; a SIGINT that arrives as the read ends is lost when the read returns
    before the stop is requested (seen: about one Ctrl-C in 50 during CSV scans went
    unanswered). Without it the SIGINT is Python's (or :func:`hpcframe.comm.interrupt_guard`'s)
    and is raised as soon as this read, one block or one sample, returns. pyarrow's switch
    (``pyarrow.enable_signal_handlers``) is turned on again after the read: its default, and
    the only state it can be read back as."""
    import pyarrow.csv as pcsv

    if threading.current_thread() is not threading.main_thread():
        return pcsv.read_csv(*args, **kwargs)  # (pyarrow installs no handler here)
    pa.enable_signal_handlers(False)
    try:
        return pcsv.read_csv(*args, **kwargs)
    finally:
        pa.enable_signal_handlers(True)


def compression_of(path: str) -> str | None:
    """``"gzip"``, ``"bz2"``, ``"xz"``, ``"zstd"`` or ``None``, from the file name."""
    return COMPRESSION.get(os.path.splitext(path)[1].lower())


def open_decompressed(path: str, raw=None):
    """A binary file object with the decompressed bytes of ``path`` (``raw``: an already
    opened binary file to read the compressed bytes from). Raises :class:`DatasetError` when
    the codec is not available."""
    comp = compression_of(path)
    raw = raw if raw is not None else open(path, "rb")
    if comp is None:
        return raw
    if comp == "xz":
        import lzma

        return lzma.open(raw, "rb")
    if pa.Codec.is_available(comp):
        stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), comp)
        return io.BufferedReader(_ArrowRaw(stream, raw), 1 << 20)
    if comp == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DatasetError(
                f"{path}: reading .zst files needs pyarrow built with zstd or "
                f"the 'zstandard' package (pip install zstandard)"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(raw)
    import bz2
    import gzip

    return gzip.open(raw, "rb") if comp == "gzip" else bz2.open(raw, "rb")


class _ArrowRaw(io.RawIOBase):
    """A pyarrow input stream as a Python raw file (for ``readline`` and buffering)."""

    def __init__(self, stream, raw):
        self.stream, self.raw = stream, raw

    def readable(self):
        return True

    def readinto(self, b):
        data = self.stream.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self):
        if not self.closed:
            self.stream.close()
            self.raw.close()
        super().close()


class _Prefixed(io.RawIOBase):
    """The bytes ``prefix``, then the rest of the binary stream ``f`` (closed with it)."""

    def __init__(self, prefix: bytes, f):
        self.prefix, self.pos, self.f = memoryview(prefix), 0, f

    def readable(self):
        return True

    def readinto(self, b):
        if self.pos < len(self.prefix):
            n = min(len(b), len(self.prefix) - self.pos)
            b[:n] = self.prefix[self.pos : self.pos + n]
            self.pos += n
            return n
        data = self.f.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self):
        if not self.closed:
            self.f.close()
            self.prefix = memoryview(b"")
        super().close()


def _identity(path: str) -> tuple:
    """What tells that a file changed: its size and modification time."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns)


class _Counting(io.RawIOBase):
    """A raw reader that counts the compressed bytes handed to the decompressor."""

    def __init__(self, f):
        self.f, self.count = f, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = self.f.readinto(b)
        self.count += n or 0
        return n

    def read(self, n=-1):
        data = self.f.read(n)
        self.count += len(data)
        return data


def _pandas_type(t, column: str) -> pa.DataType:
    """The Arrow type for a ``dtype=`` value (a pyarrow type, a numpy/pandas dtype or name)."""
    if isinstance(t, pa.DataType):
        return t
    import numpy as np
    import pandas as pd

    name = str(t)
    if name in ("str", "string", "object", "<class 'str'>", "string[python]", "string[pyarrow]"):
        return pa.string()
    if name == "category":
        return pa.dictionary(pa.int32(), pa.string())
    if name.startswith("datetime64"):
        unit = name[11:-1] if "[" in name else "us"
        return pa.timestamp(unit.split(",")[0].strip() or "us")
    try:
        return pa.from_numpy_dtype(np.dtype(pd.api.types.pandas_dtype(t)))
    except (TypeError, ValueError, pa.ArrowException):
        raise ValueError(
            f"dtype {t!r} for column {column!r} is not understood; use a numpy "
            f"dtype ('int64', 'float64', 'bool'), 'str', 'category' or "
            f"'datetime64[us]'"
        ) from None


def unify_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The type that holds values of both ``a`` and ``b`` (null < int < float; else string)."""
    if a.equals(b) or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    num = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in num) and any(f(b) for f in num):
        return pa.int64() if pa.types.is_integer(a) and pa.types.is_integer(b) else pa.float64()
    if pa.types.is_temporal(a) and pa.types.is_temporal(b):
        return pa.timestamp("us")
    return pa.string()


class CSVSource:
    """CSV files (see the module docstring). Build it with :func:`read_csv`."""

    format = "csv"
    #: partition row counts are estimates (from a sample and the compression ratio), not
    #: known counts: progress is measured in bytes and explain() labels the rows estimated
    exact_row_counts = False
    #: two files may be read at once by two threads (one stream per file, see
    #: :meth:`_read_chunk`; byte ranges share nothing): the engine's read-ahead
    #: (hpcframe.execute._ReadAhead) then decompresses the next file while this one is read
    concurrent_reads = True

    def __init__(
        self,
        path,
        dtype=None,
        parse_dates=None,
        usecols=None,
        on_bad_lines="error",
        sample_rows: int = 10_000,
        chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
        **options,
    ):
        unknown = sorted(set(options) - set(_CSV_OPTIONS))
        if unknown:
            raise TypeError(
                f"read_csv got unsupported option(s) {', '.join(unknown)}; "
                f"supported: {', '.join(_CSV_OPTIONS)}"
            )
        if on_bad_lines not in ("error", "skip", "warn"):
            raise ValueError(f"on_bad_lines={on_bad_lines!r}: use 'error', 'skip' or 'warn'")
        if chunk_bytes is not None and chunk_bytes < 1024:
            raise ValueError(f"chunk_bytes={chunk_bytes} is too small (at least 1024)")
        if sample_rows < 1:
            raise ValueError(f"sample_rows must be positive, got {sample_rows}")
        for name in ("sep", "delimiter"):
            if name in options and options[name] is None:
                raise ValueError(
                    f"read_csv: {name}=None (guessing the separator) is not supported; "
                    f"give the separator, e.g. sep=';'"
                )
        for name in ("sep", "delimiter", "quotechar", "escapechar"):
            value = options.get(name)
            if value is not None and (not isinstance(value, str) or len(value) != 1):
                raise ValueError(
                    f"read_csv: {name}={value!r} must be one character (Arrow's CSV reader, "
                    f"which hpcframe uses, has no regular-expression or multi-character "
                    f"separators{'; for a tab write sep=chr(9)' if value == chr(92) + 't' else ''})"
                )
        if dtype is not None and not isinstance(dtype, dict):
            raise TypeError(
                f"read_csv: dtype must be a dict {{column: dtype}}, not {type(dtype).__name__} "
                f"(one dtype for every column is not supported: name the columns)"
            )
        self.files, _ = expand_paths(path, CSV_SUFFIXES, "CSV")
        self.label = str(path) if not isinstance(path, (list, tuple)) else f"{len(self.files)} CSV files"
        self.dtype = {k: _pandas_type(v, k) for k, v in (dtype or {}).items()}
        self.parse_dates = list(parse_dates or [])
        self.usecols = list(usecols) if usecols is not None else None
        self.on_bad_lines = on_bad_lines
        self.sample_rows = sample_rows
        self.chunk_bytes = chunk_bytes or DEFAULT_CHUNK_BYTES
        self.options = options
        self.newlines_in_values = bool(options.get("newlines_in_values", False))
        # as pandas: names= without header= means the files have no header line
        self.header = options.get("header", None if options.get("names") is not None else 0)
        if self.header not in (0, None):
            raise ValueError(f"header={self.header!r}: use 0 (first line) or None (no header)")
        self._schema = None
        self._names: list[str] | None = None  # every column of the files, in file order
        self._row_bytes = 100.0
        # the open streams, one per file (at most _CURSORS): the engine may
        #    read two files at once (hpcframe.execute._ReadAhead), never one file twice
        self._cursors: dict[str, _Cursor] = {}
        # path -> (file identity, decompressed bytes read by the sample, the open stream after
        # them): the first read of a sampled compressed file goes on from where the sample
        # stopped instead of decompressing its start again (see :meth:`_sample`)
        self._kept: dict[str, tuple[tuple, bytes, Any]] = {}
        # path -> (the sample parsed, its bytes, its lines) of a kept stream: the first
        # read goes on from the end of the sample instead of parsing it again (see _resume)
        self._kept_parsed: dict[str, tuple[pa.Table, int, int]] = {}
        # integer/bool columns known to hold an empty field somewhere in the
        #    dataset (from the sample, or agreed by the ranks after a scan): flagged NULLS in
        #    :meth:`schema`; and those this process saw while reading, not agreed yet
        self._nulls: frozenset[str] = frozenset()
        self._seen_nulls: set[str] = set()
        # (path, piece) of a partition read -> its int/bool columns with a null (see
        # block_nulls; popped by the engine when its partial cache is active)
        self._part_nulls: dict[tuple, frozenset[str]] = {}
        #: path -> how this process found the decompressed size of the file when it described
        #: it in :meth:`discover` ("plain", "xz index", "gzip trailer" or "probe N bytes"): each
        #: file is described by one rank only, so the keys of all ranks are disjoint
        self.examined: dict[str, str] = {}
        # the files this process read a type sample of (see :attr:`sampled`); private:
        # the partial cache's fingerprint of the source (vars()) must not depend on it
        self._sampled: list[str] = []

    @property
    def sampled(self) -> list[str]:
        """The files this process read a type sample of: :meth:`infer_schema` spreads
        them over the ranks, so each sample file is sampled by one rank of the job."""
        return list(self._sampled)

    def partition_token(self):
        """What the engine's cache of :meth:`discover` depends on (see
        :mod:`hpcframe.io.sources`): ``config.block_rows``. Partitions are sized for it, and
        one with more estimated rows than ``block_rows`` would be cut by rows, which
        estimates cannot do."""
        from ..config import config

        return config.block_rows

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cursors"] = {}
        state["_kept"] = {}
        state["_kept_parsed"] = {}
        state["_part_nulls"] = {}
        return state

    # -- the source protocol ------------------------------------------------------------
    def schema(self) -> pa.Schema:
        """The unified schema inferred from a sample (see the module docstring), with the
        integer and bool columns known to hold an empty field flagged (see "Dtypes" in the
        module docstring)."""
        if self._schema is None:
            self._schema = self._infer()
        return self._schema

    # dtypes of the dataset, learned while reading
    def learned_nulls(self) -> frozenset[str]:
        """The integer and bool columns in which this process read an empty field that
        :meth:`schema` does not flag yet (to be agreed by the ranks: :meth:`adopt_nulls`)."""
        return frozenset(self._seen_nulls - self._nulls)

    def adopt_nulls(self, columns) -> bool:
        """Flag ``columns`` (integer or bool columns with an empty field somewhere, agreed by
        every rank) in :meth:`schema` from now on: float64 (object) in every block, as
        ``pandas.read_csv`` of the files gives them. Returns whether anything changed."""
        schema = self.schema()
        new = {c for c in columns if c in schema.names and _nullable_narrow(schema.field(c).type)}
        new -= self._nulls
        self._seen_nulls -= new
        if not new:
            return False
        from .types import NULLS, flag_fields

        self._nulls = self._nulls | new
        self._schema = flag_fields(schema, dict.fromkeys(new, NULLS))
        return True

    def _note_nulls(self, part: Partition, table: pa.Table) -> pa.Table:
        """Record the integer/bool columns of a partition read that hold a null (Arrow's
        ``null_count``: no pass over the data)."""
        found = frozenset(
            n for n, c in zip(table.column_names, table.columns) if c.null_count and _nullable_narrow(c.type)
        )
        # two threads may read two files at once (concurrent_reads): one at a time here
        with _CURSORS_LOCK:
            self._seen_nulls.update(found - self._nulls)
            # popped by the engine when a partial cache is active; else only the latest are kept
            self._part_nulls[(part.path, part.piece)] = found
            if len(self._part_nulls) > 1024:
                del self._part_nulls[next(iter(self._part_nulls))]
        return table

    def block_nulls(self, parts) -> frozenset[str] | None:
        """The integer/bool columns holding a null in the partitions ``parts`` (a block)
        read from their files by this process, forgotten once asked; ``None`` when one of
        them was not read from its file (e.g. its columns came from a memory cache). The
        engine's partial cache keeps it with the block's partials
        (:meth:`hpcframe.cache.ScanCache.keep_block_nulls`): a block answered from the cache
        is not read."""
        found: set[str] = set()
        missing = False
        for p in parts:
            got = self._part_nulls.pop((p.path, p.piece), None)
            if got is None:
                missing = True
            else:
                found |= got
        return None if missing else frozenset(found)

    def saw_nulls(self, columns) -> None:
        """Count ``columns`` as read with a null by this process (a cached block's record)."""
        self._seen_nulls.update(c for c in columns if c not in self._nulls)

    def discover(self, comm) -> list[Partition]:
        """Byte ranges of plain files and row chunks of streamed ones, in file order.
        Collective: file ``i`` is examined by rank ``i % size``."""
        self.schema()
        return discover_files(comm, self.files, self._file_partitions)

    def read(self, part: Partition, columns: list[str]) -> pa.Table:
        """The rows of ``part`` (only ``columns``, typed by :meth:`schema`). Raises
        :class:`DatasetError` with file and line for a value that does not fit."""
        columns = list(columns)
        try:
            if isinstance(part.piece, ByteRange):
                return self._note_nulls(part, self._read_range(part, columns))
            return self._note_nulls(part, self._read_chunk(part, columns))
        except (OSError, EOFError) as exc:
            raise DatasetError(f"cannot read {part.describe()}: {exc}") from exc

    # -- options --------------------------------------------------------------------------
    def _parse_options(self, handler=None):
        import pyarrow.csv as pcsv

        o = self.options
        return pcsv.ParseOptions(
            delimiter=o.get("sep", o.get("delimiter", ",")),
            quote_char=o.get("quotechar", '"'),
            double_quote=o.get("doublequote", True),
            escape_char=o.get("escapechar") or False,
            newlines_in_values=self.newlines_in_values,
            ignore_empty_lines=o.get("skip_blank_lines", True),
            invalid_row_handler=handler,
        )

    def _convert_options(self, types: dict, columns=None):
        import pyarrow.csv as pcsv

        o = self.options
        nulls = _na_values(o.get("na_values"))
        if o.get("keep_default_na", True):
            nulls += pcsv.ConvertOptions().null_values + _MORE_DEFAULT_NA
        # pandas' words for bools, and the caller's added to them (Arrow's defaults also take
        #    "1"/"0", which made a column of 1, True, 0 bools where pandas keeps strings)
        kw = {
            "true_values": _TRUE + [str(v) for v in o.get("true_values") or []],
            "false_values": _FALSE + [str(v) for v in o.get("false_values") or []],
        }
        if o.get("date_format"):
            kw["timestamp_parsers"] = [o["date_format"]]
        return pcsv.ConvertOptions(
            column_types=types,
            include_columns=columns,
            null_values=nulls,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            **kw,
        )

    def _read_options(self, skip_header: bool, block_size: int | None = None):
        import pyarrow.csv as pcsv

        kw = {"block_size": block_size} if block_size else {}
        return pcsv.ReadOptions(
            column_names=self._names,
            skip_rows=1 if skip_header else 0,
            encoding=self.options.get("encoding", "utf8"),
            **kw,
        )

    # -- schema inference -----------------------------------------------------------------
    def _sample(self, path: str) -> bytes:
        """The first ``sample_rows`` lines (plus the header) of ``path``, decompressed."""
        want = self.sample_rows + (1 if self.header == 0 else 0)  # lines
        blocks: list[bytes] = []
        seen = 0
        identity = _identity(path)
        f = open_decompressed(path)
        try:
            # blocks, not readline(): a Python call per line cost more than the decompression
            while True:
                block = f.read(1 << 16)
                if not block:
                    return b"".join(blocks)
                n = block.count(b"\n")
                blocks.append(block)
                if seen + n >= want:  # the line ``want`` ends in this block: cut after it
                    at = -1
                    for _ in range(want - seen):
                        at = block.index(b"\n", at + 1)
                    read = b"".join(blocks)
                    if compression_of(path) is not None:  # keep the stream for the first read
                        old = self._kept.pop(path, None)
                        if old is not None:
                            old[2].close()
                        self._kept[path] = (identity, read, f)
                        f = None
                    return read[: len(read) - len(block) + at + 1]
                seen += n
        finally:
            if f is not None:
                f.close()

    # the first read of a sampled file goes on from the sample's parsed rows
    def _resume(self, path: str, types: dict):
        """``(the sample's rows of columns types, the decompressed stream after them, lines
        before it)`` when the sample of ``path`` left its stream open, the file is unchanged
        and the sample was parsed with exactly ``types`` for those columns (its rows are then
        what reading them again gives); else ``None`` (the file is read from its start)."""
        parsed = self._kept_parsed.pop(path, None)
        kept = self._kept.get(path)
        if parsed is None or kept is None or self.on_bad_lines != "error":
            return None
        table, cut, lines = parsed
        identity, read, f = kept
        names = table.column_names
        if (
            identity != _identity(path)
            or names != self._names
            or any(not table.schema.field(c).type.equals(t) for c, t in types.items())
        ):
            return None
        del self._kept[path]
        rest = read[cut:] + f.read(1 << 16)  # empty: the file ends with the sample
        if not rest:
            f.close()
            return table.select(list(types)), None, lines
        return table.select(list(types)), io.BufferedReader(_Prefixed(rest, f), 1 << 20), lines

    def _open(self, path: str):
        """The decompressed stream of ``path`` from its start: the one the sample left open
        (its bytes replayed first) when there is one and the file is unchanged, else a new
        one."""
        self._kept_parsed.pop(path, None)
        kept = self._kept.pop(path, None)
        if kept is not None:
            identity, read, f = kept
            if identity == _identity(path):
                return io.BufferedReader(_Prefixed(read, f), 1 << 20)
            f.close()
        return open_decompressed(path)

    # the type sample's files decompressed two at a time
    def _samples(self, paths: list[str]) -> dict:
        """``{path: function returning the sample of path}`` (:meth:`_sample`; its error
        raised by the function): started two files at a time in background threads as
        :attr:`hpcframe.config.Config.readahead` says (``"auto"``: when the process may run
        on more cores than the launcher put ranks on this node; decompression releases the
        GIL), else read when called."""
        from ..config import config, usable_cores

        cores = usable_cores()
        # ranks of this job on this node, as the MPI launcher tells (read_csv has no
        # communicator): with no core to spare, one file at a time ("on" forces threads)
        local = 1
        for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
            if os.environ.get(var, "").isdigit():
                local = int(os.environ[var])
                break
        spare = config.readahead == "on" or cores > local
        if config.readahead == "off" or cores < 2 or not spare or len(paths) < 2:
            return {p: (lambda p=p: self._sample(p)) for p in paths}
        if not _SAMPLERS:
            from concurrent.futures import ThreadPoolExecutor

            _SAMPLERS.append(ThreadPoolExecutor(2, thread_name_prefix="hpcframe-sample"))
        return {p: _SAMPLERS[0].submit(self._sample, p).result for p in paths}

    # the type sample spread over the ranks (issue 11, "planning once")
    def infer_schema(self, comm) -> pa.Schema:
        """Infer :meth:`schema` collectively: the sample files are split over the ranks of
        ``comm`` (an :class:`hpcframe.comm.Comm`), each rank samples its share (preferably the
        files it will read: their streams stay open for that read) and the per-file results are
        exchanged with one ``allgather``. Every rank then unifies them in file order, so the
        schema is the one a single process gets. Collective (every rank of ``comm`` calls it
        with the same files); an error in any sample file is raised on every rank."""
        if self._schema is None:
            self._schema = self._infer(comm)
        return self._schema

    def sample_files(self) -> list[str]:
        """The files whose first ``sample_rows`` rows give the types: up to
        :data:`SAMPLE_FILES` of them, spread evenly over the dataset in file order (the first
        file always among them; every file when there are no more). The same files on any
        number of ranks, so the schema is too; spread, so that under MPI each rank can sample
        files it reads itself (:meth:`_sample_owners`) and its read goes on from the sample
        instead of another rank decompressing the sample's rows again."""
        n = len(self.files)
        count = min(n, SAMPLE_FILES)
        return [self.files[i * n // count] for i in range(count)]

    def _sample_owners(self, size: int) -> list[int]:
        """The rank that samples each sample file. Balanced first: a rank samples at most
        ``ceil(sample files / size)`` of them (the others wait for the slowest in the exchange);
        within that, a file goes to the rank that will probably read it (the engine hands out
        contiguous runs of files, balanced by size; here every file counts the same), so that
        its sample's open stream and parsed rows are used by that read. The files left over go
        to the ranks with the fewest, lowest rank first."""
        n = len(self.files)
        count = min(n, SAMPLE_FILES)
        cap = -(-count // size)
        load = [0] * size
        owners: list[int] = []
        left = []
        for i in range(count):
            at = i * n // count  # the sample file's place among all files
            r = min(size - 1, int((at + 0.5) * size // n))
            if load[r] < cap:
                load[r] += 1
                owners.append(r)
            else:
                owners.append(-1)
                left.append(i)
        for i in left:
            r = min(range(size), key=lambda k: (load[k], k))
            load[r] += 1
            owners[i] = r
        return owners

    def _sample_file(self, path: str, sample) -> tuple:
        """What the type sample of one file says: ``(names, [(column, type)], columns with an
        empty field, whether a string value holds a line break, bytes, rows)``. ``sample()``
        returns the sample's bytes. Raises :class:`DatasetError`."""
        import pyarrow.csv as pcsv

        try:
            data = sample()  # the file's own error, raised here
            if b"\r" in data and b"\n" not in data:  # (read as one line: no rows, no error)
                raise DatasetError(
                    f"{path}: its lines end with '\\r' alone (old Mac line ends), which "
                    f"hpcframe does not read; convert the file first, e.g. "
                    f"tr '\\r' '\\n' < {os.path.basename(path)} > fixed.csv"
                )
            names = self.options.get("names")
            ropts = pcsv.ReadOptions(
                column_names=list(names) if names else None,
                autogenerate_column_names=self.header is None and not names,
                skip_rows=1 if (names and self.header == 0) else 0,
                encoding=self.options.get("encoding", "utf8"),
            )
            bad: list[Any] = []  # pyarrow InvalidRow objects
            table = read_csv_quietly(
                pa.BufferReader(data),
                read_options=ropts,
                parse_options=self._parse_options(self._handler(bad)),
                convert_options=self._convert_options({k: v for k, v in self.dtype.items()}),
            )
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: cannot read ({exc})") from exc
        except pa.ArrowException as exc:
            if bad:
                at = _find_line(data, bad[0].text.encode("utf8", "replace"))
                line = data.count(b"\n", 0, at) + 1 if at >= 0 else "?"
                raise DatasetError(self._fields_message(path, line, bad[0])) from None
            raise DatasetError(
                f"{path}: cannot parse the first {self.sample_rows} rows as "
                f"CSV ({exc}); check sep=, header=, encoding=" + _newline_hint(exc)
            ) from exc
        dups = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
        if dups:
            raise DatasetError(
                f"{path}: the header names {', '.join(map(repr, dups))} more than once "
                f"(pandas renames the repeats 'a.1', ...); pass names=[...] with distinct "
                f"names (and header=0 to skip the file's own header)"
            )
        self._sampled.append(path)
        newline = False
        if not self.newlines_in_values:
            # quoted line breaks: lines are not rows, so stream instead of split
            newline = any(
                pa.types.is_string(f.type) and pc_any_newline(table.column(f.name)) for f in table.schema
            )
        if path in self._kept and not newline and self.on_bad_lines == "error":
            self._kept_parsed[path] = (table, len(data), data.count(b"\n"))
        return (
            [str(n) for n in table.column_names],
            [(f.name, f.type) for f in table.schema],
            {f.name for f in table.schema if table.column(f.name).null_count},
            newline,
            len(data),
            table.num_rows,
        )

    def _sample_all(self, sample_files: list[str], comm):
        """The :meth:`_sample_file` result of each sample file, in file order (an error: its
        message, a string): all of them here (one by one, as the caller unifies them, so that
        the first error in file order is raised), or spread over the ranks of ``comm``."""
        if comm is None or comm.size == 1:
            samples = self._samples(sample_files)  # two files at a time
            return (self._sample_file(p, samples[p]) for p in sample_files)
        owners = self._sample_owners(comm.size)
        mine = [i for i, r in enumerate(owners) if r == comm.rank]
        samples = self._samples([sample_files[i] for i in mine])
        found: dict[int, Any] = {}
        for i in mine:
            path = sample_files[i]
            try:
                found[i] = self._sample_file(path, samples[path])
            except DatasetError as exc:
                found[i] = str(exc)
                break
            except Exception as exc:  # anything else must not leave the other ranks waiting
                found[i] = f"{path}: cannot sample it for its types ({type(exc).__name__}: {exc})"
                break
        merged: dict[int, Any] = {}
        for part in comm.allgather(found):
            merged.update(part)
        out = []
        for i in range(len(sample_files)):
            if i not in merged:  # after an earlier error of the rank that owns it
                break
            out.append(merged[i])
            if isinstance(merged[i], str):
                break
        return out

    def _infer(self, comm=None) -> pa.Schema:
        first = self.files[0]
        sample_files = self.sample_files()
        unified: dict[str, pa.DataType] = {}
        sampled_nulls: set[str] = set()
        nbytes = nrows = 0
        for path, got in zip(sample_files, self._sample_all(sample_files, comm)):
            if isinstance(got, str):  # the first error in file order, the same on every rank
                raise DatasetError(got)
            names, types, nulls, newline, size, rows = got
            if self._names is None:
                self._names = names
            elif names != self._names:
                raise DatasetError(_header_mismatch(path, names, first, self._names))
            for name, t in types:
                unified[name] = unify_types(unified.get(name, pa.null()), t)
            sampled_nulls |= nulls  # an empty field in the sample
            self.newlines_in_values = self.newlines_in_values or newline
            nbytes += size
            nrows += rows
        self._row_bytes = max(1.0, nbytes / max(nrows, 1))
        assert self._names is not None  # set by the first sample file (files is never empty)
        wanted = self.usecols if self.usecols is not None else self._names
        missing = [c for c in list(wanted) + self.parse_dates + list(self.dtype) if c not in self._names]
        if missing:
            raise DatasetError(
                f"{first}: no column {missing[0]!r} (columns: "
                f"{', '.join(self._names)}); check usecols=/dtype=/parse_dates="
            )
        fields = []
        for name in self._names:
            if name not in wanted:
                continue
            t = unified[name]
            if name in self.dtype:
                t = self.dtype[name]
            elif name in self.parse_dates:
                t = pa.timestamp("us")
            elif pa.types.is_temporal(t) or pa.types.is_null(t):
                t = pa.string()  # like pandas: dates only when asked for
            fields.append(pa.field(name, t))
        schema = pa.schema(fields)
        # an integer/bool column with an empty field in the sample is float64
        #    (object) in every block from the start
        nulls = {f.name for f in schema if f.name in sampled_nulls and _nullable_narrow(f.type)}
        if nulls:
            from .types import NULLS, flag_fields

            self._nulls = frozenset(nulls)
            schema = flag_fields(schema, dict.fromkeys(nulls, NULLS))
        return schema

    # -- partitions -----------------------------------------------------------------------
    def _rows_per_part(self) -> int:
        from ..config import config

        return max(1, min(config.block_rows, int(self.chunk_bytes / self._row_bytes)))

    def _file_partitions(self, path: str) -> list[Partition]:
        size = os.path.getsize(path)
        self._check_header(path)
        if compression_of(path) is None:
            self.examined[path] = "plain"
            if not self.newlines_in_values:
                return self._ranges(path, size)
        total = self._decompressed_size(path, size) if compression_of(path) else size
        per = self._rows_per_part()
        est_rows = max(1, int(total / self._row_bytes))
        n = max(1, -(-est_rows // per))
        # every chunk but the last holds exactly ``per`` rows (if the file is that long); the
        # last one reads to the end of the file and holds an *estimate* of the rest, not its
        # capacity (``stop`` of a last chunk is never used to read)
        return [
            Partition(
                path,
                RowChunk(k, k == n - 1),
                k * per,
                (k + 1) * per if k < n - 1 else max(k * per + 1, est_rows),
                int(size / n) if k < n - 1 else size - (n - 1) * int(size / n),
            )
            for k in range(n)
        ]

    def _ranges(self, path: str, size: int) -> list[Partition]:
        step = max(1024, min(self.chunk_bytes, int(self._rows_per_part() * self._row_bytes)))
        parts, row = [], 0
        for s in range(0, max(size, 1), step):
            e = min(s + step, size)
            rows = min(max(1, round((e - s) / self._row_bytes)), self._rows_per_part())
            parts.append(Partition(path, ByteRange(s, e), row, row + rows, e - s))
            row += rows
        return parts

    def _check_header(self, path: str) -> None:
        if self.header != 0 or self.options.get("names"):
            return
        if path in self.sample_files():  # compared by the type sample already
            return
        import pyarrow.csv as pcsv

        with open_decompressed(path) as f:
            first = f.readline()
        try:
            names = read_csv_quietly(
                pa.BufferReader(first),
                parse_options=self._parse_options(),
                read_options=pcsv.ReadOptions(encoding=self.options.get("encoding", "utf8")),
            ).column_names
        except pa.ArrowException:
            names = []
        if [str(n) for n in names] != self._names:
            raise DatasetError(_header_mismatch(path, names, self.files[0], self._names))

    def _decompressed_size(self, path: str, size: int) -> float:
        """The (estimated) decompressed size of the compressed file ``path`` (``size`` bytes):
        from the file's metadata when it has it, else from the ratio of its first few MB."""
        comp = compression_of(path)
        exact = None
        try:
            if comp == "xz":
                exact = xz_decompressed_size(path)
                how = "xz index"
            elif comp == "gzip":
                exact = gzip_decompressed_size(path, size)
                how = "gzip trailer"
        except OSError:
            exact = None
        if exact is not None:
            self.examined[path] = how
            return float(exact)
        ratio, nbytes = self._ratio(path)
        self.examined[path] = f"probe {nbytes} bytes"
        return size * ratio

    def _ratio(self, path: str) -> tuple[float, int]:
        """Decompressed / compressed size, measured on the first few MB of ``path``, and the
        number of bytes decompressed to measure it."""
        with open(path, "rb") as raw:
            counting = _Counting(raw)
            with open_decompressed(path, io.BufferedReader(counting, 1 << 16)) as f:
                out = 0
                while out < (8 << 20):
                    block = f.read(1 << 20)
                    if not block:
                        break
                    out += len(block)
            return out / max(counting.count, 1), out

    # -- reading a byte range -------------------------------------------------------------
    def _range_bytes(self, path: str, r: ByteRange) -> tuple[pa.Buffer, int]:
        """The lines owned by ``r`` (zero-copy from a memory map) and their first byte."""
        with pa.memory_map(path) as mm:
            size = mm.size()
            pos = 0 if r.start == 0 else _line_end(mm, r.start - 1, size)
            if pos >= min(r.end, size):
                return pa.py_buffer(b""), pos
            stop = _line_end(mm, r.end - 1, size)
            mm.seek(pos)
            return mm.read_buffer(stop - pos), pos

    def _check_quotes(self, part: Partition, buf: pa.Buffer) -> None:
        """Refuse a byte range whose last line ends inside a quoted field: a quoted field with
        a line break that the type sample did not see crosses the range's end (each range is
        parsed alone; read on, such a row came back as two rows without an error). Only with
        pandas' default quoting (``doublequote``, no ``escapechar``)."""
        o = self.options
        quote = o.get("quotechar", '"')
        if self.newlines_in_values or not quote or not o.get("doublequote", True) or o.get("escapechar"):
            return
        tail = buf.slice(max(0, buf.size - (1 << 16))).to_pybytes().rstrip(b"\r\n")
        line = tail[tail.rfind(b"\n") + 1 :]
        sep = o.get("sep", o.get("delimiter", ","))
        if _ends_in_quotes(line, sep.encode(), quote.encode()):
            raise DatasetError(
                f"{part.path}: {part.piece} has a quoted field with a line break in it, after "
                f"the rows sampled for the types; pass newlines_in_values=True to read_csv so "
                f"that the file is read as one stream"
            )

    def _read_range(self, part: Partition, columns: list[str]) -> pa.Table:
        buf, pos = self._range_bytes(part.path, part.piece)
        if pos == 0 and self.header == 0:  # the header is not data (every range uses names)
            nl = buf.slice(0, min(buf.size, 1 << 20)).to_pybytes().find(b"\n")
            buf = buf.slice(nl + 1) if nl >= 0 else pa.py_buffer(b"")
            pos += nl + 1 if nl >= 0 else 0
        if buf.size == 0 or (buf.size < 4096 and not buf.to_pybytes().strip()):
            return self._empty(columns)
        data = _LazyBytes(buf)  # bytes only for error messages
        self._check_quotes(part, buf)
        types = self._types(columns)
        bad: list[Any] = []  # pyarrow InvalidRow objects
        try:
            table = read_csv_quietly(
                pa.BufferReader(buf),
                read_options=self._read_options(False),
                parse_options=self._parse_options(self._handler(bad)),
                convert_options=self._convert_options(types, columns),
            )
        except pa.ArrowInvalid as exc:
            if bad and self.on_bad_lines == "error":
                raise DatasetError(self._bad_line_message(part, data.get(), pos, bad[0])) from None
            if "conversion error" not in str(exc):
                raise DatasetError(
                    f"{part.path}: cannot parse {part.piece} as CSV ({exc})" + _newline_hint(exc)
                ) from None
            strings = read_csv_quietly(
                pa.BufferReader(buf),
                read_options=self._read_options(False),
                parse_options=self._parse_options(self._handler([])),
                convert_options=self._convert_options({c: pa.string() for c in columns}, columns),
            )
            first_line = _line_of(part.path, pos)
            table = self._cast_checked(strings, types, part.path, lambda i: first_line + i)
        self._report(bad, part.path, lambda b: _line_in(data.get(), pos, b, part.path))
        return table.select(columns) if table.num_columns else table

    def _types(self, columns) -> dict:
        s = self.schema()
        return {c: s.field(c).type for c in columns}

    def _empty(self, columns) -> pa.Table:
        return pa.schema([self.schema().field(c) for c in columns]).empty_table()

    def _handler(self, bad: list):
        def handler(row):
            bad.append(row)
            return "error" if self.on_bad_lines == "error" else "skip"

        return handler

    def _report(self, bad, path, line_of) -> None:
        if bad and self.on_bad_lines == "warn":
            shown = "; ".join(f"line {line_of(b)}: {b.text[:60]!r}" for b in bad[:5])
            warnings.warn(
                f"{path}: skipped {len(bad)} line(s) with a wrong number of fields ({shown})", stacklevel=3
            )

    def _bad_line_message(self, part, data, pos, row) -> str:
        return self._fields_message(part.path, _line_in(data, pos, row, part.path), row)

    def _fields_message(self, path, line, row) -> str:
        return (
            f"{path}, line {line}: expected {row.expected_columns} fields, found "
            f"{row.actual_columns}: {row.text[:200]!r}. Fix the line, or pass "
            f"on_bad_lines='skip' (or 'warn') to drop such lines"
            + (
                "; if quoted fields contain line breaks, pass newlines_in_values=True"
                if row.actual_columns < row.expected_columns
                else ""
            )
        )

    def _cast_checked(self, strings: pa.Table, types: dict, path: str, line_of) -> pa.Table:
        """Cast a table of strings to ``types``: bad values raise (file, line, column, value)
        or drop their rows per ``on_bad_lines``."""
        import pyarrow.compute as pc

        keep = None
        problems = []
        for name, t in types.items():
            col = strings.column(name)
            if pa.types.is_string(t):
                continue
            try:
                col.cast(_cast_target(t))
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
            bad_values = [v for v in pc.unique(col).to_pylist() if v is not None and not _fits(v, t)]
            mask = pc.is_in(col, value_set=pa.array(bad_values, pa.string()))
            idx = pc.indices_nonzero(mask).to_pylist()
            problems.append((idx[0], name, t, strings.column(name)[idx[0]].as_py(), len(idx)))
            bad_rows = pc.invert(pc.fill_null(mask, False))
            keep = bad_rows if keep is None else pc.and_(keep, bad_rows)
        if problems:
            assert keep is not None  # every problem column narrowed keep
            problems.sort()
            i, name, t, value, _ = problems[0]
            if self.on_bad_lines == "error":
                raise DatasetError(
                    f"{path}, line {line_of(i)}: value {value!r} in column {name!r} is not "
                    f"{t} (the type inferred from the first {self.sample_rows} rows of "
                    f"{min(len(self.files), SAMPLE_FILES)} file(s)). Pass dtype={{{name!r}: "
                    f"'str'}} (or 'float64'), or on_bad_lines='skip' to drop such lines"
                )
            if self.on_bad_lines == "warn":
                n = len(keep) - pc.sum(keep).as_py()
                warnings.warn(
                    f"{path}: skipped {n} line(s) with values that do not fit the "
                    f"schema (first: line {line_of(i)}, column {name!r}, value "
                    f"{value!r}, expected {t})",
                    stacklevel=4,
                )
            strings = strings.filter(keep)
        arrays = [
            strings.column(n).cast(_cast_target(types[n])) if n in types else strings.column(n)
            for n in strings.column_names
        ]
        arrays = [
            a if a.type.equals(types.get(n, a.type)) else a.cast(types[n])
            for a, n in zip(arrays, strings.column_names)
        ]
        return pa.table(arrays, names=strings.column_names)

    # -- reading a row chunk (streamed) ---------------------------------------------------
    def _read_chunk(self, part: Partition, columns: list[str]) -> pa.Table:
        # the file's cursor is out of ``_cursors`` while it reads, so two threads
        #    reading two files never share one, and only idle ones are closed
        key = (part.path, tuple(columns))
        with _CURSORS_LOCK:
            cur = self._cursors.pop(part.path, None)
        if cur is None or cur.key != key or cur.row > part.start:
            if cur is not None:
                cur.close()
            cur = _Cursor(self, part.path, columns, key)
        stop = None if part.piece.last else part.stop
        try:
            table = cur.take(part.start, stop, part)
        except BaseException:
            cur.close()
            raise
        if cur.reader is None and cur.pending is None:  # at the end of the file: done
            cur.close()
            return table
        with _CURSORS_LOCK:
            self._cursors[part.path] = cur
            while len(self._cursors) > _CURSORS:
                self._cursors.pop(next(iter(self._cursors))).close()
        return table


_CURSORS = 2  # open streams kept per source: this rank's thread and the read-ahead's
_CURSORS_LOCK = threading.Lock()
_SAMPLERS: list = []  # the threads that read type samples (made when first needed)
# a forked child has none of the pool's threads: it makes its own, and its own lock
os.register_at_fork(after_in_child=_SAMPLERS.clear)


def _new_cursors_lock_after_fork() -> None:
    global _CURSORS_LOCK
    _CURSORS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_cursors_lock_after_fork)


class _Cursor:
    """An open streaming reader over one file, positioned after ``row`` data rows."""

    def __init__(self, source: CSVSource, path: str, columns, key):
        import pyarrow.csv as pcsv

        self.source, self.path, self.columns, self.key = source, path, columns, key
        self.row = 0
        self.pending = None
        self.bad: list[Any] = []  # pyarrow InvalidRow objects
        self.strict = source.on_bad_lines == "error"
        self.types = source._types(columns)
        self.lines = 0  # lines of the file before the stream (a resumed sample's)
        resumed = source._resume(path, self.types) if self.strict else None
        skip_header = source.header == 0
        if resumed is not None:  # the sample's rows first, then the rest of the file
            self.pending, stream, self.lines = resumed
            skip_header = False
            if stream is None:
                self.file, self.reader = io.BytesIO(), None
                return
            self.file = stream
        else:
            self.file = source._open(path)
        read_types = self.types if self.strict else {c: pa.string() for c in columns}
        try:
            self.reader = pcsv.open_csv(
                self.file,
                read_options=source._read_options(skip_header, 4 << 20),
                parse_options=source._parse_options(source._handler(self.bad)),
                convert_options=source._convert_options(read_types, columns),
            )
        except pa.ArrowInvalid as exc:
            if resumed is not None and "Empty CSV file" in str(exc):  # blank lines left
                self.reader = None
                return
            self._fail(exc, 0 if resumed is None else resumed[0].num_rows)
        except StopIteration:
            self.reader = None

    def close(self):
        self.file.close()

    def _next(self) -> pa.Table | None:
        if self.pending is not None:
            t, self.pending = self.pending, None
            return t
        if self.reader is None:
            return None
        try:
            batch = self.reader.read_next_batch()
        except StopIteration:
            self.reader = None
            return None
        except pa.ArrowInvalid as exc:
            self._fail(exc, self.row)
        t = pa.Table.from_batches([batch])
        if not self.strict:
            base = self.row
            header = 1 if self.source.header == 0 else 0
            t = self.source._cast_checked(
                t, self.types, self.path, lambda i, base=base: base + i + 1 + header
            )
        self.source._report(self.bad, self.path, lambda b: b.number or "?")
        self.bad.clear()
        return t

    def take(self, start: int, stop: int | None, part: Partition) -> pa.Table:
        out = []
        while stop is None or self.row < stop:
            t = self._next()
            if t is None:
                break
            lo = max(0, start - self.row)
            hi = t.num_rows if stop is None else min(t.num_rows, stop - self.row)
            if hi < t.num_rows:
                self.pending = t.slice(hi)
            if hi > lo:
                out.append(t.slice(lo, hi - lo))
            self.row += hi
        if not out:
            return self.source._empty(self.columns)
        return pa.concat_tables(out).combine_chunks()

    def _fail(self, exc, row):
        """Raise a DatasetError for a parse/conversion error near data row ``row``."""
        src = self.source
        if self.bad:
            b = self.bad[0]
            line = b.number + self.lines if b.number else "?"  # after a resumed sample
            raise DatasetError(
                f"{self.path}, line {line}: expected {b.expected_columns} fields, "
                f"found {b.actual_columns}: {b.text[:200]!r}. Fix the line, or pass "
                f"on_bad_lines='skip' (or 'warn') to drop such lines"
            ) from None
        if "conversion error" in str(exc):
            # find the value: stream the file again as strings, from this chunk on
            import pyarrow.csv as pcsv

            header = 1 if src.header == 0 else 0
            with open_decompressed(self.path) as f:
                reader = pcsv.open_csv(
                    f,
                    read_options=src._read_options(header == 1, 4 << 20),
                    parse_options=src._parse_options(),
                    convert_options=src._convert_options(
                        {c: pa.string() for c in self.columns}, self.columns
                    ),
                )
                seen = 0
                for batch in reader:
                    t = pa.Table.from_batches([batch])
                    if seen + t.num_rows > row:
                        base = seen
                        src._cast_checked(
                            t, self.types, self.path, lambda i, base=base: base + i + 1 + header
                        )
                    seen += t.num_rows
        raise DatasetError(
            f"{self.path}: cannot parse as CSV near data row {row} ({exc})" + _newline_hint(exc)
        ) from None


_XZ_HEADER = b"\xfd7zXZ\x00"


def _multibyte(data: bytes, pos: int) -> tuple[int, int]:
    """An xz variable-length integer at ``data[pos:]``: ``(value, position after it)``."""
    value = shift = 0
    for i in range(9):
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("bad xz integer")


def xz_decompressed_size(path: str) -> int | None:
    """The exact decompressed size of the ``.xz`` file ``path``, from the indexes at the end
    of its streams (no decompression: a few small reads), or ``None`` when the file does not
    look like a well-formed xz file (then the caller measures instead).

    Reads, from the end: stream padding, the 12-byte stream footer (its backward size locates
    the index), the index (one record per block: unpadded and uncompressed size), and so on
    for every concatenated stream (the xz file format, section 2 and 4)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        total = 0
        while end > 0:
            while end >= 4:  # stream padding: zero bytes, a multiple of four
                f.seek(end - 4)
                if f.read(4) != b"\0\0\0\0":
                    break
                end -= 4
            if end < 32:
                return None
            f.seek(end - 12)
            footer = f.read(12)
            if footer[10:12] != b"YZ":
                return None
            backward = (int.from_bytes(footer[4:8], "little") + 1) * 4
            index_start = end - 12 - backward
            if index_start < 12:
                return None
            f.seek(index_start)
            index = f.read(backward)
            if len(index) != backward or index[0] != 0:
                return None
            try:
                records, pos = _multibyte(index, 1)
                blocks = 0
                for _ in range(records):
                    unpadded, pos = _multibyte(index, pos)
                    uncompressed, pos = _multibyte(index, pos)
                    blocks += -(-unpadded // 4) * 4
                    total += uncompressed
            except (ValueError, IndexError):
                return None
            end = index_start - blocks - 12
            if end < 0:
                return None
            f.seek(end)
            if f.read(6) != _XZ_HEADER:
                return None
        return total


def gzip_decompressed_size(path: str, size: int) -> int | None:
    """The decompressed size of the ``.gz`` file ``path`` (``size`` bytes) from its trailer
    (ISIZE: the size modulo 2**32 of the last member), or ``None`` when that cannot be
    trusted: a file of 512 MiB or more (the size may have wrapped) or a ratio below 1 or
    above 64 (several members, or a wrapped size); the caller then measures instead."""
    if size < 18 or size >= (512 << 20):
        return None
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return None
        f.seek(size - 4)
        isize = int.from_bytes(f.read(4), "little")
    return isize if size <= isize <= 64 * size else None


def _line_end(mm, at: int, size: int) -> int:
    """The position just after the first ``\\n`` at or after byte ``at`` (or ``size``)."""
    while at < size:
        block = mm.read_at(min(1 << 16, size - at), at)
        nl = block.find(b"\n")
        if nl >= 0:
            return at + nl + 1
        at += len(block)
    return size


class _LazyBytes:
    """A buffer's bytes, copied only when asked for (error messages)."""

    def __init__(self, buf):
        self.buf, self.data = buf, None

    def get(self) -> bytes:
        if self.data is None:
            self.data = self.buf.to_pybytes()
        return self.data


def pc_any_newline(col) -> bool:
    """True when a string column holds a value with a line break."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.match_substring_regex(col, "[\\r\\n]")).as_py())


def _nullable_narrow(t: pa.DataType) -> bool:
    """Whether pandas gives a column of Arrow type ``t`` another dtype when it holds a null:
    integers (float64) and bools (object)."""
    return pa.types.is_integer(t) or pa.types.is_boolean(t)


def _cast_target(t: pa.DataType) -> pa.DataType:
    return pa.string() if pa.types.is_dictionary(t) else t


def _fits(value: str, t: pa.DataType) -> bool:
    try:
        pa.array([value], pa.string()).cast(_cast_target(t))
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _line_of(path: str, pos: int) -> int:
    """1-based line number of the line starting at byte ``pos`` of a plain file."""
    n = 0
    with open(path, "rb") as f:
        left = pos
        while left > 0:
            block = f.read(min(left, 1 << 24))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n + 1


def _ends_in_quotes(line: bytes, sep: bytes, quote: bytes) -> bool:
    """Whether the CSV ``line`` ends inside a quoted field: a field that starts with
    ``quote`` and is not closed by a ``quote`` before the line's end (a doubled quote inside
    is one quote character). A quote elsewhere in a field (``12" pipe``) is a character."""
    i, n = 0, len(line)
    while i <= n:
        if line[i : i + 1] == quote:  # a quoted field
            i += 1
            while True:
                j = line.find(quote, i)
                if j < 0:
                    return True
                if line[j + 1 : j + 2] == quote:  # an escaped quote
                    i = j + 2
                    continue
                i = j + 1
                break
        j = line.find(sep, i)  # the rest of the field
        if j < 0:
            return False
        i = j + len(sep)
    return False


def _find_line(data: bytes, text: bytes) -> int:
    """Where ``text`` is a whole line of ``data`` (its first occurrence), or -1: not as part
    of a longer line (a short row's text is often the start of an earlier, longer one)."""
    at = data.find(text)
    while at >= 0:
        end = at + len(text)
        if (at == 0 or data[at - 1 : at] == b"\n") and (
            end == len(data) or data[end : end + 1] in (b"\n", b"\r")
        ):
            return at
        at = data.find(text, at + 1)
    return -1


def _line_in(data: bytes, pos: int, row, path: str):
    """Line number of an invalid row (pyarrow's InvalidRow) found in ``data`` at ``pos``."""
    at = _find_line(data, row.text.encode("utf8", "replace")) if row.text else -1
    if at < 0:
        return row.number or "?"
    return _line_of(path, pos) + data.count(b"\n", 0, at)


def _newline_hint(exc) -> str:
    return (
        "; if quoted fields contain line breaks, pass newlines_in_values=True"
        if "Expected" in str(exc)
        else ""
    )


#: pandas' default missing-value words that Arrow's default ``null_values`` lack
_MORE_DEFAULT_NA = ["<NA>", "None"]
#: pandas' default words for bools
_TRUE = ["True", "TRUE", "true"]
_FALSE = ["False", "FALSE", "false"]


def _na_values(given) -> list[str]:
    """``na_values`` as a list of words: one string is one word (not its characters), numbers
    are their text; a dict (per column, in pandas) is refused with a ``ValueError``."""
    if given is None:
        return []
    if isinstance(given, dict):
        raise ValueError(
            "read_csv: na_values per column (a dict) is not supported; pass one list of "
            "words for every column, or clean the column after reading (e.g. with where)"
        )
    if isinstance(given, (str, bytes)):
        given = [given]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in given]


def _header_mismatch(path, got, first, want) -> str:
    return (
        f"{path}: the header {', '.join(map(str, got))} differs from the header of "
        f"{first} ({', '.join(map(str, want))}); all files of a dataset must have the "
        f"same columns in the same order — read them as separate datasets"
    )
