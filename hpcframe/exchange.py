"""The shuffle's data exchange: Arrow tables from every rank to every rank, on buffers.

:func:`exchange_tables` is the all-to-all of the shuffle. Every rank gives one table (or
``None``) per destination rank and gets back one table per source rank. Under MPI the tables
travel as Arrow IPC streams in ``uint8`` buffers through ``Alltoall`` (the byte counts) and
``Alltoallv`` (the bytes) with explicit counts and displacements; no Python object is
pickled. The serial engine (and one rank) hands the tables back untouched.

Rounds
------
Memory and MPI's ``int`` counts both bound one round: each (source, destination) byte stream
is cut into slices of a fixed length, its *chunk*, and round ``k`` moves slice ``k`` of every
stream. Chunks are chosen (:func:`plan_rounds`) so that in every round

* no rank sends more than ``cap`` bytes, and no rank receives more than ``cap`` bytes, where
  ``cap = min(budget, _MAX_COUNT)`` (``budget``: :attr:`hpcframe.config.shuffle_round_bytes`);
* hence every count, every displacement, and the end of every send and receive buffer is at
  most ``_MAX_COUNT`` = 2**31 - 1, the largest C ``int``: a stream of 10 GiB simply takes
  several rounds, so no count ever overflows (no derived datatypes are needed).

A sender splits its ``cap`` over its outgoing streams, a receiver over its incoming ones
(:func:`share_budget`: the smallest number of rounds ``r`` such that slices of
``ceil(length / r)`` bytes fit in ``cap``, so that large streams get large slices); the chunk of
a stream is the smaller of its sender's and its receiver's share, which both learn in one
``Alltoall`` of two ``int64`` per rank pair. The number of rounds (the most any stream needs)
is agreed with an ``Allreduce(MAX)``. Ranks that have nothing left still take part in every
round with zero counts.

A round copies the slices of several streams into one send buffer and out of one receive
buffer; a rank that sends (receives) a single slice in a round passes it in place. Derived
datatypes at absolute addresses (``Alltoallw`` with ``MPI.BOTTOM``) would avoid those copies,
but measured slower than packing with MPICH, and would not lift the ``int`` limits anyway.

Memory per rank: the serialised outgoing streams (each freed once fully sent), one send and
one receive buffer of at most ``cap`` bytes each, and the received streams, which the returned
tables use without a copy (Arrow IPC reads them in place).

Failures: an error on one rank (bad input, an unreadable stream, a SIGINT) is agreed with
:meth:`hpcframe.comm.Comm.agree` after the local phase in which it happened, so every rank
raises the same :class:`~hpcframe.errors.ComputeError` naming the failing rank, and no rank is
left waiting in a collective.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from .comm import Comm, RankFailure, deferred, failure, interruptible, take_interrupt
from .config import config
from .errors import HpcframeError

#: The largest count or displacement of one MPI call (a C ``int``): no count, displacement or
#: buffer end of any ``Alltoallv`` exceeds it. A module constant so that tests can lower it.
_MAX_COUNT = 2**31 - 1

_NOTHING = np.empty(0, dtype=np.uint8)


def share_budget(lengths, cap: int) -> np.ndarray:
    """Split ``cap`` bytes per round over byte streams of the given lengths.

    Parameters
    ----------
    lengths : array-like of int
        The byte length of each stream (0: no stream).
    cap : int
        Bytes per round that the streams may use together.

    Returns
    -------
    numpy.ndarray of int64
        The slice length of each stream (0 where the length is 0): ``ceil(length / r)`` for
        the smallest number of rounds ``r`` whose slices sum to at most ``cap``. Every stream
        then finishes within ``r`` rounds; all of them in one round when they fit in ``cap``.

    Raises
    ------
    ValueError
        When ``cap`` is smaller than the number of non-empty streams (one byte each is the
        least a round can move).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    share = np.zeros_like(lengths)
    live = lengths > 0
    n = int(live.sum())
    if n == 0:
        return share
    if cap < n:
        raise ValueError(f"a round of {cap} bytes cannot move {n} streams (at least one byte each)")
    total = int(lengths.sum())
    if total <= cap:
        return lengths.copy()
    sizes = lengths[live]
    lo, hi = -(-total // cap), int(sizes.max())  # slices of `hi` rounds: one byte each, n <= cap
    while lo < hi:  # the fewest rounds whose slices fit in cap
        mid = (lo + hi) // 2
        if int(((sizes + mid - 1) // mid).sum()) <= cap:
            hi = mid
        else:
            lo = mid + 1
    share[live] = (sizes + lo - 1) // lo
    return share


def round_cap(budget: int, size: int, max_count: int | None = None) -> int:
    """The bytes one rank may send (and receive) per round: ``min(budget, max_count)``,
    raised to ``size`` when ``budget`` is smaller (a round moves at least one byte per stream).

    Parameters
    ----------
    budget : int
        The memory budget per round (:attr:`hpcframe.config.shuffle_round_bytes`).
    size : int
        The number of ranks.
    max_count : int, optional
        The largest MPI count (default ``_MAX_COUNT``, read at call time).

    Returns
    -------
    int
    """
    max_count = _MAX_COUNT if max_count is None else max_count
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise HpcframeError(
            f"the shuffle's round budget must be a positive number of bytes, not {budget!r} "
            "(hpcframe.config.shuffle_round_bytes, HPCFRAME_SHUFFLE_ROUND_BYTES)"
        )
    if max_count < size:
        raise ValueError(f"max_count={max_count} is smaller than the number of ranks ({size})")
    return min(max(int(budget), size), max_count)


def round_counts(lengths: np.ndarray, chunks: np.ndarray, k: int) -> np.ndarray:
    """The bytes of each stream moved in round ``k`` (0-based): slice ``k`` of length
    ``chunks``, shorter for the last, 0 once the stream is done.

    Parameters
    ----------
    lengths, chunks : numpy.ndarray of int64
        Stream lengths and slice lengths (same shape).
    k : int
        The round.

    Returns
    -------
    numpy.ndarray of int64
    """
    return np.clip(lengths - k * chunks, 0, chunks)


def rounds_needed(lengths: np.ndarray, chunks: np.ndarray) -> int:
    """The rounds that streams of ``lengths`` bytes need in slices of ``chunks`` bytes.

    Parameters
    ----------
    lengths, chunks : numpy.ndarray of int64
        Stream lengths and slice lengths (same shape; a chunk is positive where its length is).

    Returns
    -------
    int
    """
    live = lengths > 0
    if not live.any():
        return 0
    return int(((lengths[live] + chunks[live] - 1) // chunks[live]).max())


def plan_rounds(sizes, budget: int, max_count: int | None = None) -> tuple[np.ndarray, int]:
    """The round plan of an exchange, as a pure function of the whole byte matrix.

    :func:`exchange_tables` computes the same plan, each rank its own row and column.

    Parameters
    ----------
    sizes : array-like of int, shape (P, P)
        ``sizes[s, d]``: bytes that rank ``s`` sends to rank ``d`` (the exchange puts 0 on the
        diagonal: a rank keeps its own table).
    budget : int
        Bytes per rank and round (see :func:`round_cap`).
    max_count : int, optional
        The largest MPI count (default ``_MAX_COUNT``).

    Returns
    -------
    chunks : numpy.ndarray of int64, shape (P, P)
        The slice length of each stream; round ``k`` moves
        ``round_counts(sizes, chunks, k)``.
    rounds : int
        The number of rounds (0 when nothing moves).

    Examples
    --------
    >>> chunks, rounds = plan_rounds([[0, 100], [5, 0]], budget=40)
    >>> chunks.tolist(), rounds
    ([[0, 34], [5, 0]], 3)
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    p = sizes.shape[0]
    if sizes.shape != (p, p) or (sizes < 0).any():
        raise ValueError(f"sizes must be a square matrix of byte counts, not shape {sizes.shape}")
    cap = round_cap(budget, p, max_count)
    by_sender = np.stack([share_budget(sizes[s], cap) for s in range(p)])
    by_receiver = np.stack([share_budget(sizes[:, d], cap) for d in range(p)], axis=1)
    chunks = np.minimum(by_sender, by_receiver)
    return chunks, rounds_needed(sizes, chunks)


def exchange_tables(
    comm: Comm,
    outgoing: Sequence[pa.Table | None],
    schema: pa.Schema | None = None,
    budget: int | None = None,
) -> list[pa.Table]:
    """Send ``outgoing[r]`` to rank ``r``; return the tables received, by source rank.

    Collective: every rank of ``comm`` calls it. See the module docstring for how the bytes
    move (Arrow IPC streams, ``Alltoallv`` in rounds bounded by ``budget``, counts below 2**31).

    Parameters
    ----------
    comm : hpcframe.comm.Comm
        hpcframe's communicator (:func:`hpcframe.comm.communicator`). With one rank the tables
        are returned as they are (no serialisation).
    outgoing : sequence of pyarrow.Table or None, length ``comm.size``
        The table for each destination rank; ``None`` sends nothing. A rank's own entry is
        returned to it without a copy.
    schema : pyarrow.Schema, optional
        The schema of every table (field names and types; metadata may differ). Given, every
        non-``None`` table must have it, and ``None`` arrives as an empty table of it. Without
        it, the tables of all ranks must share one schema, and a ``None`` arrives as an empty
        table of the sender's schema (that of its non-``None`` tables): pass ``schema``
        whenever a rank may have only ``None`` to send.
    budget : int, optional
        Bytes one rank may send, and receive, per round (default
        :attr:`hpcframe.config.shuffle_round_bytes`). Lower it to bound memory, raise it
        for fewer rounds.

    Returns
    -------
    list of pyarrow.Table, length ``comm.size``
        Element ``s`` is the table rank ``s`` sent to this rank (a 0-row table of the schema
        where it sent ``None``). Received tables use the receive buffers without a copy.

    Raises
    ------
    hpcframe.ComputeError
        On every rank, when any rank fails: ``outgoing`` of the wrong length, a table with a
        different schema, data that does not serialise or deserialise, an interrupt. The
        message names the rank(s) and the problem.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from hpcframe.comm import communicator
    >>> with communicator(None) as comm:  # serial here; the same code under mpiexec
    ...     got = exchange_tables(comm, [pa.table({"x": [1, 2]})] * comm.size)
    >>> got[0].num_rows
    2
    """
    size, me = comm.size, comm.rank
    budget = config.shuffle_round_bytes if budget is None else budget
    with deferred():  # a SIGINT between the collectives waits for the next agreement
        streams: list[pa.Buffer | None] = []
        ref: pa.Schema | None = None
        error = None
        try:
            with interruptible():
                ref = _check(outgoing, size, schema, comm)
                round_cap(budget, size)  # a bad budget fails here, on every rank alike
                if size > 1:
                    streams = [None if d == me else _serialise(outgoing[d], schema, ref) for d in range(size)]
        except BaseException as exc:
            error = failure(comm, "preparing the tables of a shuffle", exc)
        comm.agree(error or _interrupted(comm, "preparing the tables of a shuffle"))
        if size == 1:
            (own,) = outgoing
            if own is not None:
                return [own]
            assert ref is not None  # _check saw to it
            return [ref.empty_table()]
        received = _move(comm, streams, budget)
        tables: list[pa.Table] = []
        error = None
        try:
            with interruptible():
                tables = _read_all(comm, received, outgoing[me], schema, ref)
        except BaseException as exc:
            error = failure(comm, "reading the tables a shuffle brought to this rank", exc)
        comm.agree(error or _interrupted(comm, "reading the tables of a shuffle"))
        return tables


def _check(outgoing, size: int, schema: pa.Schema | None, comm: Comm) -> pa.Schema | None:
    """Validate this rank's ``outgoing``; return the schema of its tables (``schema`` if
    given, else that of its first table; ``None`` if it has none)."""
    if len(outgoing) != size:
        raise HpcframeError(
            f"a shuffle got {len(outgoing)} tables to send on rank {comm.rank}, but the "
            f"communicator has {size} ranks: give one table (or None) per rank"
        )
    ref = schema
    for d, t in enumerate(outgoing):
        if t is None:
            continue
        if not isinstance(t, pa.Table):
            raise HpcframeError(
                f"a shuffle can send only pyarrow Tables (or None), but the item for rank {d} "
                f"on rank {comm.rank} is a {type(t).__name__}"
            )
        if ref is None:
            ref = t.schema
        elif not t.schema.equals(ref, check_metadata=False):
            what = "the schema given" if schema is not None else "the other tables of this rank"
            raise HpcframeError(
                f"the table for rank {d} on rank {comm.rank} has columns {_describe(t.schema)}, "
                f"which differ from {what}: {_describe(ref)}; every table of a shuffle needs one schema"
            )
    if ref is None and size == 1:
        raise HpcframeError(
            "a shuffle on one rank got only None to send and no schema: pass schema= so that "
            "the result can be an empty table"
        )
    return ref


def _describe(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name}: {f.type}" for f in schema) + ")"


def _serialise(table: pa.Table | None, schema: pa.Schema | None, ref: pa.Schema | None) -> pa.Buffer | None:
    """``table`` as one Arrow IPC stream in a buffer of exactly its size (a first pass over a
    mock stream measures it, so the buffer is never regrown). ``None`` is sent as nothing when
    the receivers know the schema, else as an empty table of this rank's schema (or nothing
    when this rank has none)."""
    if table is None:
        if schema is not None or ref is None:
            return None
        table = ref.empty_table()
    mock = pa.MockOutputStream()
    with pa.ipc.new_stream(mock, table.schema) as writer:
        writer.write_table(table)
    n = mock.size()
    buf = pa.allocate_buffer(n)
    sink = pa.FixedSizeBufferWriter(buf)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    if sink.tell() != n:  # the IPC writer is deterministic: this never happens
        raise HpcframeError(f"the Arrow IPC stream of a shuffle took {sink.tell()} bytes, measured {n}")
    return buf


def _move(comm: Comm, streams: list[pa.Buffer | None], budget: int) -> list[pa.Buffer | None]:
    """Move every byte stream to its destination in rounds; return the streams that reached
    this rank, by source (``None`` where nothing came)."""
    from mpi4py import MPI

    mpi = comm.mpi  # type: ignore[attr-defined]
    size = comm.size
    send_len = np.array([0 if b is None else b.size for b in streams], dtype=np.int64)
    recv_len = np.empty(size, dtype=np.int64)
    mpi.Alltoall([send_len, MPI.INT64_T], [recv_len, MPI.INT64_T])

    # each side proposes a slice length per stream; a stream's chunk is the smaller proposal
    cap = round_cap(budget, size)
    mine = np.empty((size, 2), dtype=np.int64)
    mine[:, 0] = share_budget(send_len, cap)  # as sender, for the stream to rank d
    mine[:, 1] = share_budget(recv_len, cap)  # as receiver, for the stream from rank d
    theirs = np.empty((size, 2), dtype=np.int64)
    mpi.Alltoall([mine, MPI.INT64_T], [theirs, MPI.INT64_T])
    send_chunk = np.minimum(mine[:, 0], theirs[:, 1])
    recv_chunk = np.minimum(mine[:, 1], theirs[:, 0])
    local = np.array([rounds_needed(send_len, send_chunk)], dtype=np.int64)
    rounds = np.empty(1, dtype=np.int64)
    mpi.Allreduce([local, MPI.INT64_T], [rounds, MPI.INT64_T], op=MPI.MAX)

    received: list[pa.Buffer | None] = [pa.allocate_buffer(int(n)) if n > 0 else None for n in recv_len]
    recv_views = [None if b is None else np.frombuffer(b, dtype=np.uint8) for b in received]
    send_views = [None if b is None else np.frombuffer(b, dtype=np.uint8) for b in streams]
    # the packing buffers, made when a round moves slices of several streams (round 0 moves the
    # most: its totals size them, at most cap bytes each); a single slice moves in place
    sendbuf = recvbuf = _NOTHING
    zeros = [0] * size
    for k in range(int(rounds[0])):
        sc = round_counts(send_len, send_chunk, k)
        rc = round_counts(recv_len, recv_chunk, k)
        to, frm = np.flatnonzero(sc), np.flatnonzero(rc)
        if len(to) == 1:
            d = int(to[0])
            start = k * int(send_chunk[d])
            sbuf, sd = send_views[d][start : start + sc[d]], zeros  # type: ignore[index]
        else:
            if len(sendbuf) == 0 and len(to):
                sendbuf = np.empty(int(round_counts(send_len, send_chunk, 0).sum()), dtype=np.uint8)
            sbuf, sd = sendbuf, (np.cumsum(sc) - sc).tolist()
            for j in to.tolist():
                start = k * int(send_chunk[j])
                sendbuf[sd[j] : sd[j] + sc[j]] = send_views[j][start : start + sc[j]]
        if len(frm) == 1:
            s = int(frm[0])
            start = k * int(recv_chunk[s])
            rbuf, rd = recv_views[s][start : start + rc[s]], zeros  # type: ignore[index]
        else:
            if len(recvbuf) == 0 and len(frm):
                recvbuf = np.empty(int(round_counts(recv_len, recv_chunk, 0).sum()), dtype=np.uint8)
            rbuf, rd = recvbuf, (np.cumsum(rc) - rc).tolist()
        mpi.Alltoallv([sbuf, (sc.tolist(), sd), MPI.BYTE], [rbuf, (rc.tolist(), rd), MPI.BYTE])
        if len(frm) > 1:
            for j in frm.tolist():
                start = k * int(recv_chunk[j])
                recv_views[j][start : start + rc[j]] = recvbuf[rd[j] : rd[j] + rc[j]]
        for j in to.tolist():
            if (k + 1) * send_chunk[j] >= send_len[j]:  # fully sent: free it
                send_views[j] = None
                streams[j] = None
        del sbuf, rbuf
    return received


def _read_stream(buf: pa.Buffer) -> pa.Table:
    """The table in one Arrow IPC stream, read in place (the table uses ``buf``)."""
    return pa.ipc.open_stream(buf).read_all()


def _read_all(comm: Comm, received, own: pa.Table | None, schema: pa.Schema | None, ref: pa.Schema | None):
    """The tables received by this rank, by source: streams read, empty tables for nothing."""
    tables: list[pa.Table | None] = []
    for s, buf in enumerate(received):
        if s == comm.rank:
            tables.append(own)
        elif buf is None:
            tables.append(None)
        else:
            try:
                tables.append(_read_stream(buf))
            except Exception as exc:
                raise HpcframeError(
                    f"the {buf.size} bytes that rank {s} sent to rank {comm.rank} in a shuffle are not "
                    f"a readable Arrow IPC stream: {type(exc).__name__}: {exc}"
                ) from exc
    first = next((s for s, t in enumerate(tables) if t is not None), None)
    target = schema
    if target is None:
        target = ref if first is None else tables[first].schema  # type: ignore[union-attr]
    if target is None:
        raise HpcframeError(
            "a shuffle in which no rank sent a table (only None) needs schema= to make the "
            "empty tables it returns"
        )
    if schema is None and first is not None:
        for s, t in enumerate(tables):
            if t is not None and not t.schema.equals(target, check_metadata=False):
                raise HpcframeError(
                    f"in a shuffle, rank {s} sent rank {comm.rank} columns {_describe(t.schema)} but "
                    f"rank {first} sent {_describe(target)}: every rank must send tables of one "
                    "schema (pass schema= to check it where the tables are made)"
                )
    return [target.empty_table() if t is None else t for t in tables]


def _interrupted(comm: Comm, context: str) -> RankFailure | None:
    """A failure for the next agreement if a SIGINT arrived while it was kept pending."""
    if take_interrupt():
        return failure(comm, context, KeyboardInterrupt())
    return None
