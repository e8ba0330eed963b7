"""Tunables, with environment overrides (``HPCFRAME_<NAME>``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .units import parse_size  # HPCFRAME_CACHE_BYTES=2GB


def _env_int(name: str, default: int, size: bool = False) -> int:
    """A positive whole number from ``HPCFRAME_<NAME>``; with ``size``, a byte count that may
    be written as a size such as ``512MB`` or ``2GiB`` (as ``HPCFRAME_CACHE_BYTES`` takes)."""
    raw = os.environ.get(f"HPCFRAME_{name.upper()}")
    if raw is None:
        return default
    try:
        value = int(parse_size(raw)) if size else int(raw)
    except ValueError as exc:
        why = f": {exc}" if size else " must be a whole number"
        raise ValueError(f"HPCFRAME_{name.upper()}={raw!r}{why}") from None
    if value <= 0:
        raise ValueError(f"HPCFRAME_{name.upper()}={raw!r} must be positive")
    return value


def _env_str(name: str, default, choices=None):
    raw = os.environ.get(f"HPCFRAME_{name.upper()}")
    if raw is None or raw == "":
        return default
    if choices is not None and raw not in choices:
        raise ValueError(f"HPCFRAME_{name.upper()}={raw!r} must be one of {', '.join(choices)}")
    return raw


#: how group-bys are finished (:attr:`Config.shuffle`)
SHUFFLE_CHOICES = ("auto", "shuffle", "gather")
#: when the next block is read while this one is computed (:attr:`Config.readahead`)
READAHEAD_CHOICES = ("auto", "on", "off")
#: whether consecutive small files share blocks (:attr:`Config.group_files`)
GROUP_FILES_CHOICES = ("on", "off")
#: whether NumPy asks for transparent huge pages during a computation (:attr:`Config.huge_pages`)
HUGE_PAGES_CHOICES = ("on", "off")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (e.g. a SLURM allocation), else
    every core of the machine. Read-ahead (``readahead="auto"``) compares it with the ranks
    of the job on the node."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class Config:
    """Tunables of the engine; the one instance is ``hpcframe.config``.

    Each value starts from the environment variable ``HPCFRAME_<NAME>`` (read when hpcframe
    is imported) or its default; assigning a new value takes effect at the next ``compute``
    or ``explain``. Set the same value on every rank.

    Attributes
    ----------
    block_rows : int, default 1_048_576 (``HPCFRAME_BLOCK_ROWS``)
        Partitions (row groups, HDF5 row ranges) longer than this are cut into blocks of at
        most this many rows; the blocks are the leaves of the combine tree.
    group_files : str, default "off" (``HPCFRAME_GROUP_FILES``)
        ``"on"``: consecutive small Parquet files (at most ``block_rows / 2`` rows each)
        share blocks of up to ``block_rows`` rows, of balanced sizes, so that a dataset of
        many small files costs a few blocks, not one per file (see ``docs/design.md`` §3);
        ``"off"``: every file has its own blocks (more ranks get work on a small dataset,
        ``map_partitions`` sees one file at a time, and a file added to a dataset leaves
        the other files' blocks, and their cached partials, as they were).
    shuffle_rows : int, default 200_000 (``HPCFRAME_SHUFFLE_ROWS``)
        A group-by whose partial tables hold at least this many rows in all is finished with
        a hash shuffle across the ranks instead of on every rank.
    shuffle : str, default "auto" (``HPCFRAME_SHUFFLE``)
        How a computed group-by is finished: ``"auto"`` decides collectively from the size
        of the partial tables (``shuffle_rows``), ``"shuffle"`` always hash-shuffles,
        ``"gather"`` always combines every partial on every rank (or on ``root``).
    partitions : int, default 32 (``HPCFRAME_PARTITIONS``)
        Hash partitions of a group-by result used as a frame, and of a shuffled frame
        (``drop_duplicates``, ``groupby().apply``, ``transform``). Independent of the number
        of ranks, so that later reductions combine in the same order on any number of ranks.
    memory_budget : int, default 2 GiB (``HPCFRAME_MEMORY_BUDGET``: bytes, or a size such as ``512MB``)
        Bytes of persisted or shuffled data a rank keeps in memory; the rest is spilled to
        Arrow IPC files in ``spill_dir``.
    spill_dir : str or None (``HPCFRAME_SPILL_DIR``)
        Where spill files go (a private folder per process, removed when the data is
        released and at exit); default ``$TMPDIR`` or the system's temporary directory.
    shuffle_round_bytes : int, default 268_435_456 = 256 MiB (``HPCFRAME_SHUFFLE_ROUND_BYTES``)
        The shuffle moves rows between ranks in rounds; in one round no rank sends, nor
        receives, more than this many bytes (serialised Arrow data), so the exchange's send
        and receive buffers hold at most this much each. Larger values mean fewer rounds.
    cache_bytes : int, default 0 (``HPCFRAME_CACHE_BYTES``)
        Memory per rank for caching blocks' decoded columns and partials (see
        :class:`hpcframe.Cache`, which overrides it inside its ``with`` block); 0: off.
    stage_reuse_bytes : int, default 268_435_456 = 256 MiB (``HPCFRAME_STAGE_REUSE_BYTES``)
        Memory per rank for the stages (joins, shuffles, sorts, group-by results used as
        frames) a computation keeps for later computations of frames built on them (see
        :mod:`hpcframe.reuse`); 0: every stage is released when its computation ends.
    cache_dir : str or None (``HPCFRAME_CACHE_DIR``)
        A directory of per-block partials shared by ranks and jobs (``hpcframe run
        --cache-dir``); ``None``: off. See docs/caching.md.
    broadcast_bytes : int, default 67_108_864 = 64 MiB (``HPCFRAME_BROADCAST_BYTES``)
        ``merge(..., broadcast=None)`` copies the small side of a join to every rank (and
        leaves the other side's rows where they are read) when that side's rows, as read
        and measured in memory (summed over the ranks), take at most this many bytes;
        otherwise both sides are hash-shuffled by the keys. Every rank then holds the small
        side once, so keep it well below the memory of one rank.
    readahead : str, default "auto" (``HPCFRAME_READAHEAD``)
        Whether a rank reads (decompresses, parses, decodes) its next block of a CSV,
        Parquet or HDF5 file in a background thread while it computes the current one:
        ``"auto"`` when this rank has a core to spare (fewer ranks on the node than cores
        this process may run on), ``"on"`` always, ``"off"`` never. At most one block is
        read ahead (one more block in memory); not with a cache or a ``head(n)``.
    huge_pages : str, default "off" (``HPCFRAME_HUGE_PAGES``)
        NumPy asks the kernel for transparent huge pages (2 MiB) for large arrays. Where
        the kernel defragments memory on such a request (``defrag`` is ``madvise``, the
        usual default), a fault may wait for memory to be compacted, and each huge page is
        zeroed whole. ``"off"`` turns NumPy's request off while hpcframe computes (and
        back to NumPy's own choice afterwards); ``"on"`` leaves NumPy's choice. At TPC-H
        SF 10 on 2 ranks "off" took about 5 % off the CPU time of the longest queries
        (docs/benchmarks.md, "Session 27"). The local and MPI engines only.
    engine : None, str, distributed.Client or Dask cluster, default None
        The engine of ``compute()`` calls without ``engine=``: ``None`` (local, or MPI under
        mpiexec), ``"dask"`` (a LocalCluster on this machine), a Client or a Dask cluster
        (see :func:`hpcframe.cluster` and ``docs/dask.md``).

    Raises
    ------
    ValueError
        At import, when a ``HPCFRAME_<NAME>`` number is not a positive whole number, or
        ``HPCFRAME_SHUFFLE`` is not one of ``auto``, ``shuffle``, ``gather``,
        ``HPCFRAME_READAHEAD`` is not one of ``auto``, ``on``, ``off``, or
        ``HPCFRAME_GROUP_FILES`` or ``HPCFRAME_HUGE_PAGES`` is not one of ``on``, ``off``.

    Examples
    --------
    >>> import hpcframe as hf
    >>> before = hf.config.block_rows
    >>> hf.config.block_rows = 100_000   # spread a few large row groups over more ranks
    >>> hf.config.block_rows
    100000
    >>> hf.config.block_rows = before
    """

    #: A partition (row group, HDF5 row range) longer than this is cut into blocks of at most
    #: this many rows. Blocks are the leaves of the combine tree: the cut depends only on the
    #: data, so results are identical for any number of ranks. Lower it to spread a dataset
    #: with few, large row groups over more ranks.
    block_rows: int = _env_int("block_rows", 1 << 20)
    #: "on" or "off": consecutive small Parquet files (at most ``block_rows / 2`` rows each)
    #: share blocks (:func:`hpcframe.physical.leaves_of`). ``HPCFRAME_GROUP_FILES``.
    group_files: str = _env_str("group_files", "off", GROUP_FILES_CHOICES)
    #: A group-by whose partial tables hold at least this many rows in all (summed over the
    #: ranks) is finished with a hash shuffle: each rank completes the combine tree for the
    #: groups that hash to it (Alltoall), instead of every rank finishing every group.
    shuffle_rows: int = _env_int("shuffle_rows", 200_000)
    #: "auto", "shuffle" or "gather": how a computed group-by is finished (see above).
    shuffle: str = _env_str("shuffle", "auto", SHUFFLE_CHOICES)
    #: Hash partitions of grouped and shuffled frames (independent of the number of ranks).
    partitions: int = _env_int("partitions", 32)
    #: Bytes of persisted/shuffled data kept in memory per rank before spilling.
    memory_budget: int = _env_int("memory_budget", 2 << 30, size=True)
    #: Folder for spill files (default: $TMPDIR or the system's temporary directory).
    spill_dir: str | None = _env_str("spill_dir", None)
    #: The shuffle's data exchange (:func:`hpcframe.exchange.exchange_tables`) runs in rounds;
    #: per round no rank sends or receives more than this many bytes of serialised Arrow data.
    shuffle_round_bytes: int = _env_int("shuffle_round_bytes", 256 << 20, size=True)
    #: A join side of at most this many bytes (measured, over all ranks) is broadcast.
    broadcast_bytes: int = _env_int("broadcast_bytes", 64 << 20, size=True)
    # issue 14 (see hpcframe.cache)
    #: Bytes of memory per rank for the cache of blocks' decoded columns and partials when
    #: no ``hf.Cache`` block is active (0: none). ``HPCFRAME_CACHE_BYTES``.
    cache_bytes: int = int(parse_size(_env_str("cache_bytes", "0")))
    #: A directory of per-block partials shared by ranks and jobs when no ``hf.Cache`` block
    #: is active (``None``: none). ``HPCFRAME_CACHE_DIR``; ``hpcframe run --cache-dir``.
    cache_dir: str | None = _env_str("cache_dir", None)
    # stage reuse across computations (see hpcframe.reuse)
    #: Bytes per rank of computed stages (joins, group-by results used as frames, shuffles,
    #: sorts) kept after a computation for later ones reading the same frame (0: off).
    #: ``HPCFRAME_STAGE_REUSE_BYTES``.
    stage_reuse_bytes: int = int(parse_size(_env_str("stage_reuse_bytes", "256MiB")))
    # issue 11 (see hpcframe.execute._ReadAhead)
    #: "auto", "on" or "off": read the next block in a background thread while this one is
    #: computed (auto: when the node has more cores than ranks). ``HPCFRAME_READAHEAD``.
    readahead: str = _env_str("readahead", "auto", READAHEAD_CHOICES)
    #: "on" or "off": whether NumPy asks the kernel for transparent huge pages
    #: (``madvise(MADV_HUGEPAGE)``) for the arrays a computation allocates. "off" (the
    #: default) turns NumPy's request off while hpcframe computes (see
    #: :func:`hpcframe.execute.process_settings`); "on" leaves NumPy's own choice.
    #: ``HPCFRAME_HUGE_PAGES``.
    huge_pages: str = _env_str("huge_pages", "off", HUGE_PAGES_CHOICES)

    # the engine setting (hpcframe.dask_engine)
    #: Where ``compute()`` runs when no ``engine=`` is given: ``None`` (the local engine, or
    #: MPI under mpiexec), ``"dask"`` (a LocalCluster), a ``distributed.Client`` or a Dask
    #: cluster (e.g. :func:`hpcframe.cluster`). Not read from the environment
    #: (``HPCFRAME_ENGINE=local|mpi`` chooses between the local and MPI engines).
    engine: object = None


#: The engine's tunables (see :class:`Config`).
config = Config()
