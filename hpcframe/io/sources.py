"""What every data source offers beyond the read protocol: its name in messages, and the
partitions the engine discovered for it (discovered once per source, then cached here).

A source implements :class:`hpcframe.io.dataset.Source` (``schema()``, ``discover(comm)``,
``read(part, columns)``; see :mod:`hpcframe.io.parquet`, :mod:`hpcframe.io.hdf5`,
:mod:`hpcframe.io.csv`, :mod:`hpcframe.io.memory`, :mod:`hpcframe.io.ranked`). The functions
here are the only readers and writers of the partition cache, so that the engine, ``explain``
and the command line agree on it. The cache lives here, keyed weakly by the source: the engine
sets no attribute on a source.
"""

from __future__ import annotations

import weakref
from typing import Any

from .dataset import Partition

# source -> (partitions, the source's partition_token() when they were discovered). Weak: a
# source that is no longer used drops its entry; no attribute is ever set on a source.
_CACHE: weakref.WeakKeyDictionary[Any, tuple[list[Partition], Any]] = weakref.WeakKeyDictionary()


def _token(source):
    """What the cached partitions of ``source`` depend on besides the source itself (its
    optional ``partition_token()``; e.g. a CSV source's block size, a stage's data)."""
    fn = getattr(source, "partition_token", None)
    return fn() if fn is not None else None


def known_partitions(source) -> list[Partition] | None:
    """The partitions discovered for ``source`` by an earlier run, ``explain`` or
    :func:`partitions_of`, or ``None`` when none was discovered yet (reads no file)."""
    entry = _CACHE.get(source)
    if entry is None or entry[1] != _token(source):
        return None
    return entry[0]


def partitions_of(source, comm) -> list[Partition]:
    """The partitions of ``source``: discovered (collectively under MPI) on the first call,
    from the cache after. Raises what the source's ``discover`` raises."""
    parts = known_partitions(source)
    if parts is None:
        parts = source.discover(comm)
        _CACHE[source] = (parts, _token(source))
    return parts


def source_format(source) -> str:
    """The format of a data source for messages: its ``format`` attribute when it has one
    ("parquet", "csv", "pandas"), else its class name without ``Source`` ("hdf5" for
    ``HDF5Source``). Works for every source: it needs nothing but the object's class."""
    fmt = getattr(source, "format", None)
    if isinstance(fmt, str) and fmt:
        return fmt
    name = type(source).__name__
    return (name[: -len("Source")] if name.endswith("Source") and name != "Source" else name).lower()


def source_label(source) -> str:
    """A short human label of a data source: its ``label`` attribute when it has one, else
    its file(s) (``files``/``paths``/``path``), else its format. Never raises: error messages
    are built with it while the other ranks wait in an agreement."""
    try:
        return _describe(source)
    except Exception:
        return type(source).__name__


def _describe(source) -> str:
    label = getattr(source, "label", None)
    if isinstance(label, str) and label:
        return label
    for attr in ("files", "paths", "path"):
        value = getattr(source, attr, None)
        if isinstance(value, (list, tuple)) and value:
            first = str(value[0])
            return first if len(value) == 1 else f"{len(value)} files ({first}, ...)"
        if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
            return str(value)
    return f"{source_format(source)} source"


def source_rows_exact(source) -> bool:
    """False when the source's partition row counts are estimates (``exact_row_counts``
    False, e.g. CSV files); True otherwise (Parquet, HDF5, pandas know their row counts)."""
    return bool(getattr(source, "exact_row_counts", True))
