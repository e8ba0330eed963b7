"""Tunables, with environment overrides (``HPCFRAME_<NAME>``)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(f"HPCFRAME_{name.upper()}")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"HPCFRAME_{name.upper()}={raw!r} must be a whole number") from None
    if value <= 0:
        raise ValueError(f"HPCFRAME_{name.upper()}={raw!r} must be positive")
    return value


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
    shuffle_rows : int, default 200_000 (``HPCFRAME_SHUFFLE_ROWS``)
        A group-by whose partial tables hold at least this many rows in all is finished with
        a hash shuffle across the ranks instead of on every rank.
    shuffle_round_bytes : int, default 268_435_456 = 256 MiB (``HPCFRAME_SHUFFLE_ROUND_BYTES``)
        The shuffle moves rows between ranks in rounds; in one round no rank sends, nor
        receives, more than this many bytes (serialised Arrow data), so the exchange's send
        and receive buffers hold at most this much each. Larger values mean fewer rounds.

    Raises
    ------
    ValueError
        At import, when ``HPCFRAME_BLOCK_ROWS``, ``HPCFRAME_SHUFFLE_ROWS`` or
        ``HPCFRAME_SHUFFLE_ROUND_BYTES`` is not a positive whole number.

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
    #: A group-by whose partial tables hold at least this many rows in all (summed over the
    #: ranks) is finished with a hash shuffle: each rank completes the combine tree for the
    #: groups that hash to it (Alltoall), instead of every rank finishing every group.
    shuffle_rows: int = _env_int("shuffle_rows", 200_000)
    #: The shuffle's data exchange (:func:`hpcframe.exchange.exchange_tables`) runs in rounds;
    #: per round no rank sends or receives more than this many bytes of serialised Arrow data.
    shuffle_round_bytes: int = _env_int("shuffle_round_bytes", 256 << 20)


#: The engine's tunables (see :class:`Config`).
config = Config()
