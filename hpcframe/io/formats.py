"""The file formats hpcframe reads and writes, and the file names that say which is which.

The one home of these facts: the command line, the job spec, ``read_hdf`` and the writers all
ask this registry instead of keeping their own suffix lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Compressions of CSV files, by suffix (the codec name Python's modules use).
CSV_COMPRESSION = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
}


@dataclass(frozen=True)
class Format:
    """One file format.

    ``suffixes`` name a file of this format (what :func:`format_of` recognises and what an
    output file is called); ``read_suffixes`` are the files a reader picks from a folder (for
    CSV also ``.txt``/``.dat`` and every compression); ``source`` is the reader's class as
    ``"module:Class"`` (imported only when used).
    """

    name: str
    suffixes: tuple[str, ...]
    read_suffixes: tuple[str, ...]
    source: str

    def source_class(self):
        """The reader (source) class of this format."""
        import importlib

        module, name = self.source.split(":")
        return getattr(importlib.import_module(module), name)


PARQUET = Format(
    "parquet", (".parquet", ".parq", ".pq"), (".parquet", ".parq", ".pq"), "hpcframe.io.parquet:ParquetSource"
)
HDF5 = Format(
    "hdf5", (".h5", ".hdf5", ".hdf", ".he5"), (".h5", ".hdf5", ".hdf", ".he5"), "hpcframe.io.hdf5:HDF5Source"
)
CSV = Format(
    "csv",
    (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.xz", ".tsv"),
    tuple(f"{ext}{c}" for ext in (".csv", ".tsv", ".txt", ".dat") for c in ("", *CSV_COMPRESSION)),
    "hpcframe.io.csv:CSVSource",
)

#: Every format by name, in the order they are offered to users.
FORMATS: dict[str, Format] = {f.name: f for f in (PARQUET, HDF5, CSV)}


def suffixes(name: str) -> tuple[str, ...]:
    """The file suffixes of format ``name``. Raises ``KeyError`` for an unknown format."""
    return FORMATS[name].suffixes


def format_of(path) -> str | None:
    """``"parquet"``, ``"hdf5"`` or ``"csv"`` from the file name's suffix, else ``None``."""
    lower = os.fspath(path).lower()
    for fmt in FORMATS.values():
        if lower.endswith(fmt.suffixes):
            return fmt.name
    return None
