"""The exchanges of stages (group-by results used as frames, shuffled frames) when some ranks
send or receive nothing: few groups, a filter that keeps no row, values Arrow cannot hold (the
pickled path). Every rank must take the same path through the collectives (a regression: a
rank that received no group once took the pickled path alone and hung the others).
Local and 1-4 ranks."""

import decimal

import pandas as pd

import hpcframe as hf
from tests.helpers.compare import assert_same
from tests.helpers.mpi import timeout

pytestmark = timeout(60)


def test_two_groups_many_ranks(dir6):
    df, ref = dir6.open(), dir6.pdf
    got = df.groupby("flag").agg(n=("x", "size"), s=("x", "sum"))
    exp = ref.groupby("flag").agg(n=("x", "size"), s=("x", "sum"))
    assert_same(got[got.n > 0], exp[exp.n > 0])
    assert_same(got.s.sum(), exp.s.sum())
    assert hf.last_run_stats()["exchanges_pickled"] == 0


def test_no_row_passes_the_filter(dir6):
    df, ref = dir6.open(), dir6.pdf
    none = df[df.x > 1e300]
    got = none.groupby("carrier").agg(n=("x", "size"))
    exp = ref[ref.x > 1e300].groupby("carrier").agg(n=("x", "size"))
    assert_same(got[got.n > 1], exp[exp.n > 1])
    assert_same(none.drop_duplicates(["carrier"]).len(), 0, exact=True)


def test_values_arrow_cannot_hold_take_the_pickled_path_everywhere(size):
    """A user aggregation whose state is a Counter keyed by Decimals (Arrow has no such type:
    a map's keys would have to be names) travels pickled, on every rank alike."""
    from collections import Counter

    from hpcframe.aggregations import AGGREGATIONS, register_aggregation

    if "distinct_total" not in AGGREGATIONS:
        register_aggregation(
            "distinct_total",
            chunk=lambda g: g.agg(lambda s: Counter(decimal.Decimal(repr(v)) for v in s)),
            combine=lambda g: g.agg(lambda s: sum(s, Counter())),
            finalize=lambda p: p.map(lambda counts: float(sum(counts))),
        )
    pdf = pd.DataFrame({"k": list("abcab") * 40, "x": [0.5, 1.25, 2.0, 3.5, 4.0] * 40})
    frame = hf.from_pandas(pdf, npartitions=5)
    got = frame.groupby("k").agg(t=("x", "distinct_total"))
    exp = pdf.groupby("k").agg(t=("x", lambda s: float(sum(set(s)))))
    assert_same(got[got.t > 0], exp[exp.t > 0])
    assert hf.last_run_stats()["exchanges_pickled"] == (1 if size > 1 else 0)
