"""A dataset into another format (Parquet, HDF5, CSV), in parallel, atomically and resumably
(see :mod:`hpcframe.io.writers`).

:func:`convert` does it; :func:`plan` says beforehand which rank writes which part. Both are
collective under MPI (run under ``mpiexec -n N`` to spread the work over N ranks). Bad
options raise ``ValueError``; the command ``hpcframe convert`` (:mod:`hpcframe.cli.convert`)
maps errors to messages and exit codes.
"""

from __future__ import annotations

import os

FORMATS = ("parquet", "hdf5", "csv")
#: The ``--compression`` values each ``--to`` format accepts (the first is the default).
COMPRESSIONS = {
    "parquet": ("zstd", "snappy", "gzip", "brotli", "lz4", "none"),
    "hdf5": ("gzip", "lzf", "none"),
    "csv": (),
}


def check_compression(to: str, compression) -> str | None:
    """The codec to pass to the writer for ``--to to --compression compression`` (``None``
    for "none"; the format's default when ``compression`` is ``None``). Raises
    ``ValueError`` naming ``--compression`` and the accepted values otherwise."""
    allowed = COMPRESSIONS.get(to, ())
    if compression is None:
        return allowed[0] if allowed else None
    value = str(compression).strip().lower()
    if not allowed:
        raise ValueError(
            f"--compression {compression!r}: --to {to} output is not compressed; leave --compression out"
        )
    if value not in allowed:
        raise ValueError(
            f"--compression {compression!r} is not supported with --to {to}; use one of {', '.join(allowed)}"
        )
    return None if value == "none" else value


def open_source(src, comm=None, **csv_options):
    """A lazy frame over ``src``: Parquet (``.parquet`` files or a folder of them), HDF5
    (``.h5``/``.hdf5``) or CSV (anything else, compressed or not). Raises
    ``FileNotFoundError`` when nothing matches. ``comm``: the ranks converting (a CSV type
    sample is collective over them, see :func:`hpcframe.read_csv`)."""
    import hpcframe as hf

    from .io.formats import HDF5, PARQUET
    from .io.paths import expand_paths
    from .readers import read_csv

    first = src[0] if isinstance(src, (list, tuple)) else str(src)
    low = first.lower()
    if low.endswith(PARQUET.suffixes) or (os.path.isdir(first) and _has(first, PARQUET.suffixes)):
        return hf.read_parquet(src)
    if low.endswith(HDF5.suffixes):
        files, _ = expand_paths(src, HDF5.suffixes, "HDF5")
        return hf.read_hdf(files)
    return read_csv(src, comm=comm, **csv_options)


def _has(folder, suffixes) -> bool:
    for _, _, names in os.walk(folder):
        if any(n.lower().endswith(suffixes) for n in names):
            return True
    return False


def plan(frame, to: str, ranks: int, comm=None) -> dict:
    """The ``--dry-run`` plan of converting ``frame`` into format ``to`` on ``ranks`` ranks:
    which partitions each rank reads and the files it writes. Reads only metadata (and a
    sample of CSV files). Collective under MPI.

    Returns a dict: ``source`` (a label), ``files``, ``partitions``, ``rows``, ``bytes`` (of
    the input) and ``ranks``, a list with one list per rank of ``(description, rows,
    file_name)`` for each output part it writes (empty: the rank is idle).
    """
    from .comm import communicator
    from .io import writers as W
    from .outputs import CollectOutput
    from .physical import plan_scan

    if to not in FORMATS:
        raise ValueError(f"unknown output format {to!r}; use one of {', '.join(FORMATS)}")
    suffix = {"parquet": W.ParquetFormat.suffix, "hdf5": W.HDF5Format.suffix, "csv": W.CSVFormat.suffix}[to]
    source = frame.node.scan().source
    with communicator(comm) as c:
        scan = plan_scan([CollectOutput(frame.node)], c, ranks)  # what the write will run
    parts, leaves = scan.partitions, scan.leaves
    per_rank = [
        # (TAG: the write's plan names its files, W.part_name)
        [
            (leaves[i].describe(), leaves[i].num_rows, W.part_name(leaves[i].index, suffix, "TAG"))
            for i in held
        ]
        for held in scan.ranks
    ]
    return {
        "source": source.label,
        "files": len({p.path for p in parts}),
        "partitions": len(parts),
        "rows": sum(p.num_rows for p in parts),
        "bytes": sum(p.nbytes for p in parts),
        "ranks": per_rank,
    }


def convert(
    src,
    dst,
    to: str = "parquet",
    partition_by=None,
    comm=None,
    overwrite=False,
    progress=False,
    compression=None,
    row_group_size: int = 1 << 20,
    **csv_options,
) -> dict:
    """Convert ``src`` (see :func:`open_source`) into ``dst`` in format ``to``. Returns the
    summary of :func:`hpcframe.writing.write` (rows, files, bytes in/out, seconds, ranks).
    Collective under MPI. Raises ``ValueError`` for an unknown format, ``FileExistsError``
    when ``dst`` holds something else or another write into it is running
    (:class:`~hpcframe.io.writers.DestinationLockedError`), :class:`~hpcframe.ComputeError`
    when a rank fails (re-running resumes; so does re-running after a kill or a full disk)."""
    from . import writing
    from .io import writers as W

    if to not in FORMATS:
        raise ValueError(f"unknown output format {to!r}; use one of {', '.join(FORMATS)}")
    codec = check_compression(to, compression)
    if partition_by and to == "hdf5":
        raise ValueError("partition_by is only for --to parquet or csv (HDF5 output is one table)")
    frame = open_source(src, comm, **csv_options)
    fmt: W.ParquetFormat | W.CSVFormat | W.HDF5Format
    if to == "parquet":
        fmt = W.ParquetFormat(dst, partition_by, row_group_size, codec or "none")
    elif to == "csv":
        fmt = W.CSVFormat(dst, partition_by)
    else:
        if partition_by:
            raise ValueError("partition_by is only for --to parquet or csv (HDF5 output is one table)")
        fmt = W.HDF5Format(dst, codec)
    return writing.write(frame, fmt, comm=comm, overwrite=overwrite, progress=progress)


def parse_size(text: str) -> int:
    """``"64MB"``, ``"4 MiB"``, ``"1g"``, ``"65536"`` → bytes; raises ``ValueError``."""
    from .units import parse_size as size

    return int(size(text))
