"""The shuffle's data exchange (hpcframe.exchange): Arrow tables from every rank to every rank
with Alltoallv on buffers, in rounds bounded by a byte budget and by MPI's int counts.

Every table is generated from (source, destination) alone, so each receiver rebuilds what each
source sent and checks it bit for bit. Runs locally (one rank) and under mpiexec -n 1..4."""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pytest

from hpcframe import exchange as X
from hpcframe.comm import communicator
from hpcframe.errors import ComputeError, HpcframeError
from tests.helpers import mpi
from tests.helpers.mpi import timeout

pytestmark = timeout(120)

TZ_TS = pa.timestamp("ns", tz="Europe/Paris")
SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("d", pa.dictionary(pa.int32(), pa.string())),
        ("t", TZ_TS),
        ("dec", pa.decimal128(20, 4)),
        ("b", pa.bool_()),
        ("day", pa.date32()),
        ("l", pa.list_(pa.int32())),
        ("u8", pa.uint8()),
        ("f32", pa.float32()),
    ]
)


def make_table(src: int, dst: int, n: int, seed: int = 0) -> pa.Table:
    """A table of n rows with nasty values, the same wherever it is made."""
    rng = np.random.default_rng([seed, src, dst, n])
    null = rng.random(n) < 0.2
    f = rng.normal(size=n)
    f[rng.random(n) < 0.2] = np.nan
    f[rng.random(n) < 0.05] = -0.0
    words = np.array(["a", "bb", "", "ünï", "x" * 40, "naN", "None"], dtype=object)
    s = words[rng.integers(0, len(words), n)]
    s[null] = None
    cats = pa.array(list(words[rng.integers(0, 3, n)]), pa.string())
    h = n // 2  # two chunks with different dictionaries (dictionary replacement in the stream)
    dcol = pa.chunked_array([cats[:h].dictionary_encode(), cats[h:][::-1].dictionary_encode()[::-1]])
    ts = rng.integers(-(2**62), 2**62, n)
    dec = [
        None if m else decimal.Decimal(int(v)).scaleb(-4)
        for v, m in zip(rng.integers(-(10**15), 10**15, n), null)
    ]
    b = rng.random(n) < 0.5
    lists = [None if m else list(range(int(k))) for k, m in zip(rng.integers(0, 4, n), null)]
    cols = [
        pa.array(rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)),
        pa.array(f, mask=rng.random(n) < 0.1),
        pa.array(list(s), pa.string()),
        dcol,
        pa.array(ts, TZ_TS, mask=null),
        pa.array(dec, pa.decimal128(20, 4)),
        pa.array(b, mask=rng.random(n) < 0.3),
        pa.array(rng.integers(-100_000, 100_000, n).astype(np.int32), pa.date32()),
        pa.array(lists, pa.list_(pa.int32())),
        pa.array(rng.integers(0, 256, n).astype(np.uint8)),
        pa.array(rng.normal(size=n).astype(np.float32), mask=null),
    ]
    table = pa.Table.from_arrays(cols, schema=SCHEMA)
    if n > 4:  # several chunks, with different dictionaries, one of them a slice
        table = pa.concat_tables([table.slice(0, n // 3), table.slice(n // 3)])
    return table


def _bits(col: pa.ChunkedArray) -> pa.Array:
    """The column as one array; floats as their bit patterns (Arrow's equals says NaN != NaN)."""
    arr = col.combine_chunks()
    if pa.types.is_float64(arr.type):
        return arr.view(pa.int64())
    if pa.types.is_float32(arr.type):
        return arr.view(pa.int32())
    return arr


def assert_same(got: pa.Table, want: pa.Table, what: str) -> None:
    assert isinstance(got, pa.Table), what
    assert got.schema.equals(want.schema), f"{what}: schema\n{got.schema}\n!=\n{want.schema}"
    assert got.num_rows == want.num_rows, f"{what}: {got.num_rows} rows, want {want.num_rows}"
    for name in want.column_names:
        a, b = _bits(got[name]), _bits(want[name])
        if pa.types.is_dictionary(a.type):  # dictionaries may differ by chunk: compare values
            a, b = a.dictionary_decode(), b.dictionary_decode()
        assert a.equals(b), f"{what}: column {name} differs"


def rows_for(src: int, dst: int) -> int | None:
    """Rows src sends to dst (None: sends nothing, 0: an empty table)."""
    k = (3 * src + 5 * dst) % 7
    if k == 3:
        return None
    if k == 5:
        return 0
    return 50 + 37 * k + 11 * src


def exchange_and_check(rows, schema=SCHEMA, budget=None, seed=0):
    with communicator(None) as comm:
        me, p = comm.rank, comm.size
        outgoing = [None if rows(me, d) is None else make_table(me, d, rows(me, d), seed) for d in range(p)]
        got = X.exchange_tables(comm, outgoing, schema=schema, budget=budget)
        assert len(got) == p
        for s in range(p):
            n = rows(s, me)
            want = schema.empty_table() if n is None else make_table(s, me, n, seed)
            assert_same(got[s], want, f"rank {me} from rank {s}")
        assert got[me] is outgoing[me] or outgoing[me] is None  # a rank's own table: no copy
        return got


# ------------------------------------------------------------------------------- the plan
def check_plan(sizes, budget, max_count):
    sizes = np.asarray(sizes, dtype=np.int64)
    chunks, rounds = X.plan_rounds(sizes, budget, max_count)
    cap = X.round_cap(budget, len(sizes), max_count)
    moved = np.zeros_like(sizes)
    for k in range(rounds):
        counts = X.round_counts(sizes, chunks, k)
        assert (counts.sum(axis=1) <= cap).all(), "a rank sends more than the cap in one round"
        assert (counts.sum(axis=0) <= cap).all(), "a rank receives more than the cap in one round"
        # Alltoallv of each rank: its counts, displacements and buffer ends fit in max_count
        assert counts.sum(axis=1).max() <= max_count and counts.sum(axis=0).max() <= max_count
        assert (counts[:, :] >= 0).all()
        if k == rounds - 1:
            assert counts.any(), "a round that moves nothing"
        moved += counts
    assert (moved == sizes).all(), "the rounds do not move every byte exactly once"
    assert (X.round_counts(sizes, chunks, rounds) == 0).all()
    # no more rounds than the busiest sender or receiver needs (+ rounding of the slices)
    lines = list(sizes) + list(sizes.T)
    if sizes.any():
        lower = max(-(-int(line.sum()) // cap) for line in lines)
        upper = max(-(-int(line.sum()) // (cap - int((line > 0).sum()))) for line in lines)
        assert lower <= rounds <= upper, (lower, rounds, upper)
    else:
        assert rounds == 0
    return chunks, rounds


@pytest.mark.parametrize("p", [1, 2, 3, 4, 7])
def test_plan_random_matrices(p):
    rng = np.random.default_rng(p)
    for _ in range(40):
        sizes = rng.integers(0, 5000, (p, p)) * (rng.random((p, p)) < 0.7)
        np.fill_diagonal(sizes, 0)
        if rng.random() < 0.3:  # one rank sends 100x more
            sizes[rng.integers(p)] *= 100
        budget = int(rng.integers(p + 10, 20_000))
        check_plan(sizes, budget, max_count=int(rng.choice([100, 2**31 - 1])) + p)


def test_plan_over_2gib_streams_keeps_every_count_an_int():
    gib = 2**30
    sizes = np.array([[0, 5 * gib + 3, 7], [2 * gib, 0, 3 * gib + 1], [1, 9 * gib, 0]])
    chunks, rounds = check_plan(sizes, budget=64 * gib, max_count=2**31 - 1)  # the budget allows more
    assert chunks.max() < 2**31 and rounds >= (12 * gib) // (2**31 - 1)
    # the default budget: 256 MiB rounds
    chunks, rounds = check_plan(sizes, budget=256 * 2**20, max_count=2**31 - 1)
    assert rounds >= 9 * gib // (256 * 2**20)


def test_plan_small_cases():
    assert X.plan_rounds([[0]], 10)[1] == 0
    chunks, rounds = X.plan_rounds([[0, 100], [5, 0]], budget=40)
    assert chunks.tolist() == [[0, 34], [5, 0]] and rounds == 3
    chunks, rounds = X.plan_rounds([[0, 10], [10, 0]], budget=1 << 20)
    assert chunks.tolist() == [[0, 10], [10, 0]] and rounds == 1  # fits: one round
    # the receiver limits too: three senders to one rank share its cap
    chunks, rounds = check_plan([[0, 0, 0, 90], [0, 0, 0, 90], [0, 0, 0, 90], [0, 0, 0, 0]], 90, 10**9)
    assert rounds == 3
    assert X.share_budget([0, 0], 5).tolist() == [0, 0]
    with pytest.raises(ValueError, match="at least one byte"):
        X.share_budget([1, 1, 1], 2)
    assert X.round_cap(3, 5, 100) == 5  # at least a byte per rank
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(HpcframeError, match="positive number of bytes"):
            X.round_cap(bad, 2)


# ------------------------------------------------------------------------------- exchanges
def test_exchange_many_types():
    exchange_and_check(rows_for)


def test_exchange_in_many_rounds_with_a_tiny_budget(monkeypatch):
    seen = _spy_rounds(monkeypatch)
    exchange_and_check(lambda s, d: None if (s + d) % 4 == 3 else 120 + 13 * s + d, budget=997)
    if mpi.size() > 1:
        assert seen["rounds"] > 10 and seen["max_total"] <= 997


def test_exchange_with_mpi_counts_limited_as_if_over_2gib(monkeypatch):
    """_MAX_COUNT lowered to 1000: tens of kB take many rounds and no count or displacement of
    any Alltoallv exceeds it, as no real count ever exceeds 2**31 - 1 with > 2 GiB streams."""
    monkeypatch.setattr(X, "_MAX_COUNT", 1000)
    seen = _spy_rounds(monkeypatch)
    exchange_and_check(lambda s, d: 400 + 50 * s + 7 * d, seed=3)  # ~35 kB per stream
    if mpi.size() > 1:
        assert seen["rounds"] > 20 and seen["max_total"] <= 1000


def test_exchange_uneven_one_rank_sends_100x_more(monkeypatch):
    seen = _spy_rounds(monkeypatch)
    exchange_and_check(lambda s, d: 3000 if s == 0 else (30 if d != 1 else None), budget=50_000, seed=1)
    if mpi.size() > 1:
        assert seen["rounds"] > 1 and seen["max_total"] <= 50_000


def test_exchange_nothing_sent():
    got = exchange_and_check(lambda s, d: None)
    assert all(t.num_rows == 0 for t in got)
    exchange_and_check(lambda s, d: 0)  # empty tables, not None
    exchange_and_check(lambda s, d: 20 if s == 0 else None)  # only rank 0 sends


def test_exchange_without_schema_learns_it_from_the_senders():
    rows = lambda s, d: 20 + s if s == 0 or d == 0 else None  # noqa: E731
    with communicator(None) as comm:
        me = comm.rank
        outgoing = [None if rows(me, d) is None else make_table(me, d, rows(me, d)) for d in range(comm.size)]
        got = X.exchange_tables(comm, outgoing)
        for s in range(comm.size):
            n = rows(s, me)
            assert_same(got[s], SCHEMA.empty_table() if n is None else make_table(s, me, n), f"from {s}")


def test_exchange_only_none_without_schema_fails_on_every_rank():
    with communicator(None) as comm:
        with pytest.raises(ComputeError, match="schema="):
            X.exchange_tables(comm, [None] * comm.size)


def test_exchange_metadata_kept_and_large_values():
    """Schema metadata (pandas') travels; a column of large strings spanning many rounds."""
    with communicator(None) as comm:
        me, p = comm.rank, comm.size
        big = "z" * 10_000
        mk = lambda s, d: pa.table({"v": [big, None, str(s * 10 + d)]}).replace_schema_metadata(  # noqa: E731
            {"from": str(s)}
        )
        got = X.exchange_tables(comm, [mk(me, d) for d in range(p)], budget=3000)
        for s in range(p):
            assert got[s].equals(mk(s, me)) and got[s].schema.metadata == {b"from": str(s).encode()}


# ------------------------------------------------------------------------------- failures
def test_wrong_number_of_tables_on_one_rank_fails_every_rank():
    with communicator(None) as comm:
        last = comm.size - 1
        n = comm.size + (1 if comm.rank == last else 0)
        with pytest.raises(ComputeError, match=f"(?s)rank {last}.*{comm.size + 1} tables"):
            X.exchange_tables(comm, [None] * n, schema=SCHEMA)
        exchange_and_check(rows_for)  # the communicator is clean afterwards


def test_schema_mismatch_fails_every_rank():
    with communicator(None) as comm:
        other = pa.table({"i": pa.array([1], pa.int32())})
        outgoing = [make_table(comm.rank, d, 5) for d in range(comm.size)]
        if comm.rank == 0:
            outgoing[-1] = other
        with pytest.raises(ComputeError, match=r"(?s)rank 0.*\(i: int32\).*one schema"):
            X.exchange_tables(comm, outgoing, schema=SCHEMA)
        if comm.size > 1:  # no schema: the tables of one rank must agree
            with pytest.raises(ComputeError, match=r"(?s)rank 0.*\(i: int32\).*one schema"):
                X.exchange_tables(comm, outgoing)


def test_schemas_differing_between_ranks_fail_every_rank():
    """Without schema=, rank 0 sends other columns than the rest: the receivers see it."""
    with communicator(None) as comm:
        if comm.size == 1:
            pytest.skip("needs two ranks")
        if comm.rank == 0:
            outgoing = [pa.table({"i": pa.array([1], pa.int32())})] * comm.size
        else:
            outgoing = [make_table(comm.rank, d, 5) for d in range(comm.size)]
        with pytest.raises(ComputeError, match=r"(?s)rank 1.*rank 1 sent rank 1 columns.*but rank 0 sent"):
            X.exchange_tables(comm, outgoing)
        exchange_and_check(rows_for)


def test_unreadable_stream_on_one_rank_fails_every_rank(monkeypatch):
    """A rank that cannot read what it received fails after the last round: every rank raises
    the same error naming it, and the next exchange works."""
    with communicator(None) as comm:
        if comm.size == 1:
            pytest.skip("one rank reads nothing")
        bad = comm.size - 1

        def broken(buf):
            raise pa.ArrowInvalid("Expected to read 1330795073 metadata bytes, but only read 12")

        if comm.rank == bad:
            monkeypatch.setattr(X, "_read_stream", broken)
        outgoing = [make_table(comm.rank, d, 30) for d in range(comm.size)]
        with pytest.raises(ComputeError, match=f"(?s)rank {bad}.*not a readable Arrow IPC stream") as info:
            X.exchange_tables(comm, outgoing, budget=500)
        assert "ArrowInvalid" in str(info.value)
        monkeypatch.undo()
        exchange_and_check(rows_for)


def test_bad_budget_fails_every_rank():
    with communicator(None) as comm:
        with pytest.raises(ComputeError, match="positive number of bytes"):
            X.exchange_tables(comm, [None] * comm.size, schema=SCHEMA, budget=0)


def test_serial_returns_the_tables_unchanged():
    from hpcframe.comm import Comm

    t = make_table(0, 0, 10)
    assert X.exchange_tables(Comm(), [t])[0] is t
    assert X.exchange_tables(Comm(), [None], schema=SCHEMA)[0].equals(SCHEMA.empty_table())


# ------------------------------------------------------------------------------- helpers
def _spy_rounds(monkeypatch):
    """Record the rounds of this rank's exchange and the most bytes one round sent or received
    (wraps X.round_counts, which _move calls for every round, sends and receives)."""
    seen = {"rounds": 0, "max_total": 0}
    real = X.round_counts

    def spy(lengths, chunks, k):
        counts = real(lengths, chunks, k)
        seen["rounds"] = max(seen["rounds"], k + 1)
        seen["max_total"] = max(seen["max_total"], int(counts.sum()))
        return counts

    monkeypatch.setattr(X, "round_counts", spy)
    return seen


@pytest.mark.skipif(mpi.UNDER_MPI, reason="starts a Python subprocess")
def test_round_budget_from_the_environment():
    import os
    import subprocess
    import sys

    code = "import hpcframe as hf; print(hf.config.shuffle_round_bytes)"
    env = {k: v for k, v in os.environ.items() if k != "HPCFRAME_SHUFFLE_ROUND_BYTES"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == str(256 * 2**20)
    env["HPCFRAME_SHUFFLE_ROUND_BYTES"] = "12345"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "12345"
    env["HPCFRAME_SHUFFLE_ROUND_BYTES"] = "0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "HPCFRAME_SHUFFLE_ROUND_BYTES='0' must be positive" in out.stderr


@pytest.mark.parametrize("empty_rank", [0, -1], ids=["first_rank_empty", "last_rank_empty"])
def test_agreed_schema_takes_the_types_of_frames_with_rows(empty_rank):
    """``agree_schema``: a rank without rows passes a frame of the planned dtypes (here a
    ``category`` key); the ranks whose merge ran made it ``str``. The types of frames with
    rows decide, whichever rank has none (a regression: the first rank's declared type won,
    and a merge of keys categorical with other categories came back ``category`` on 3
    ranks, sorted in the categories' order). With no rows anywhere the declared types are
    the schema."""
    import pandas as pd

    from hpcframe.io.ranked import agree_schema

    declared = pd.DataFrame(
        {"k": pd.Categorical([], categories=["y", "x"]), "v": pd.Series([], dtype="int64")}
    )
    seen = pd.DataFrame({"k": pd.array(["x", None], dtype="str"), "v": [1, 2]})
    with communicator(None) as comm:
        empty = empty_rank % comm.size
        schema, errors = agree_schema(comm, declared if comm.rank == empty else seen)
        assert not errors
        key = schema.field("k").type
        if comm.size > 1:  # another rank has rows: their str wins
            assert pa.types.is_string(key) or pa.types.is_large_string(key), key
        else:  # the one rank has none: the declared dictionary
            assert pa.types.is_dictionary(key), key
        schema, _ = agree_schema(comm, declared)
        assert pa.types.is_dictionary(schema.field("k").type)
