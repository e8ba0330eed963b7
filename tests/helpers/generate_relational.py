"""Random data and random queries of the relational operators, for test_differential_relational.py.

The sibling of :mod:`tests.helpers.generate` (scans, filters, group-by aggregations), on the
same design: everything is a pure function of a :class:`RelSpec` (which holds a seed), so every
MPI rank builds the same data description, pandas reference and queries; only rank 0 writes
the files.

Data
----
Two tables, ``L`` (13 columns) and ``R`` (10 columns), sharing key columns ``k1`` (int with
nulls), ``k2`` (strings with None and ``""``) and ``kf`` (float: NaN, -0.0, inf), plus
pairs of columns of different names and the same values (``s``/``rs``, ``ts``/``rts``,
``d``/``rd``, ``i``/``ri`` near the int64 limits, ``cat``/``rcat`` of different category
lists, ``v``/``w``). Each side is written as several Parquet files (empty ones, one-row row
groups) or given as ``hf.from_pandas`` partitions; one side may be empty. The case also sets
``hf.config``: ``block_rows`` (down to 2, so that a few rows spread over 4 ranks),
``partitions`` (1: more ranks than hash partitions), ``broadcast_bytes`` (0: every join
without ``broadcast=True`` shuffles) and ``shuffle_rows``.

Queries
-------
A query is a list of bindings ``name = expression`` ending with ``out``. An expression is a
small tree (:class:`Name`, :class:`Attr`, :class:`Call`, :class:`Item`, :class:`Op`,
:class:`Fn`) that evaluates itself against a namespace and renders its own Python source: no
string is ever evaluated. A binding holds the hpcframe expression and, where pandas needs other
words for the same result (``kind="stable"``, ``observed=True``, ``len(x)``, ``sort_index``
after ``set_index``), the pandas one; a failing query prints both as a runnable repro
(:meth:`RelQuery.source`).

A query is a *source* frame (``L``; ``L`` filtered, possibly to nothing; a ``merge`` of every
``how`` and broadcast choice; a semi- or anti-join) followed by one *operation*: the merged
frame itself, ``len``, a filter, a group-by aggregation, ``sort_values`` (several keys,
per-key ascending, ``na_position``) and ``head``/``tail``, ``nlargest``/``nsmallest``, group
windows after a sort (``cumsum``, ``cumcount``, ``diff``, ``shift``, ``rank``, ``cummax``,
``cummin``), ``groupby().head/tail/nth``, ``set_index`` + ``.loc``, ``drop_duplicates``,
group ``median``/``quantile``, a semi/anti-join.

Each query records whether hpcframe's row labels are pandas' (``index``; a filter renumbers
the rows, see the user guide's "Differences from pandas") and how to compare values.
"""

from __future__ import annotations

import datetime
import decimal
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers.datasets import arrow_to_pandas

TIMEZONES = ["UTC", "Europe/Paris", "America/New_York"]
LAYOUTS = ("parquet", "parquet", "pandas", "mixed")  # mixed: L from Parquet, R from pandas


@dataclass(frozen=True)
class RelSpec:
    """Everything that determines a case; the rest is drawn from ``seed``.

    ``left_rows``/``right_rows``: rows of each file (0 = an empty file). ``row_group``: Parquet
    row-group size. ``block_rows``, ``partitions``, ``broadcast_bytes``, ``shuffle_rows``: the
    ``hf.config`` values the case runs with. ``specials``: probability of NaN/±inf/null
    values. ``big_ints``: ``i``/``ri`` hold values near the int64 limits.
    """

    seed: int
    layout: str = "parquet"
    left_rows: tuple = (40, 0, 25)
    right_rows: tuple = (12, 5)
    row_group: int = 8
    block_rows: int = 16
    partitions: int = 32
    broadcast_bytes: int = 64 << 20
    shuffle_rows: int = 200_000
    specials: float = 0.1
    big_ints: bool = False
    nqueries: int = 10

    @staticmethod
    def from_seed(seed: int, nqueries: int = 10) -> RelSpec:
        """A spec drawn from ``seed`` alone (for the fixed-seed parametrized cases)."""
        rng = np.random.default_rng([seed, 0x7E1])
        left = tuple(
            int(r)
            for r in rng.choice(
                [0, 1, 3, 17, 40, 90], int(rng.integers(1, 5)), p=[0.15, 0.1, 0.15, 0.2, 0.2, 0.2]
            )
        )
        right = tuple(
            int(r)
            for r in rng.choice([0, 1, 4, 12, 30], int(rng.integers(1, 4)), p=[0.15, 0.1, 0.25, 0.3, 0.2])
        )
        return RelSpec(
            seed=seed,
            layout=LAYOUTS[int(rng.integers(len(LAYOUTS)))],
            left_rows=left,
            right_rows=right,
            row_group=int(rng.choice([1, 4, 16, 64])),
            block_rows=max(int(rng.choice([2, 7, 16, 500])), -(-sum(left) // 24)),
            partitions=int(rng.choice([1, 3, 32])),
            broadcast_bytes=int(rng.choice([0, 64 << 20])),
            shuffle_rows=int(rng.choice([0, 200_000])),
            specials=float(rng.choice([0.0, 0.1, 0.3])),
            big_ints=bool(rng.random() < 0.4),
            nqueries=nqueries,
        )

    def config(self) -> dict:
        """The ``hf.config`` attributes of the case."""
        return dict(
            block_rows=self.block_rows,
            partitions=self.partitions,
            broadcast_bytes=self.broadcast_bytes,
            shuffle_rows=self.shuffle_rows,
        )


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
FRUIT = ["apple", "Banana", " cherry ", "date", "", "éclair", "fig"]
RS = ["a", "b", "apple", "fig", "", "z"]
BIG = [2**63 - 1, 2**63 - 2, -(2**63), -(2**63) + 1, 0, 1, -1, 2**53 + 1, 2**53]


def _masked(rng, values, p) -> list:
    """``values`` as a list with a fraction ``p`` of them None."""
    out = list(values)
    for j in np.flatnonzero(rng.random(len(out)) < p):
        out[j] = None
    return out


def _ints(rng, n, big):
    return rng.choice(np.array(BIG, dtype=np.int64), n) if big else rng.integers(-50, 50, n).astype(np.int64)


def _times(rng, n, tz, p):
    t0 = np.datetime64("2024-03-10T00:30:00", "us")  # a DST change in America/New_York
    ticks = (t0 + rng.integers(0, 40, n).astype("timedelta64[h]")).astype("int64")
    return pa.array(_masked(rng, ticks.tolist(), p), pa.timestamp("us", tz=tz))


def _dates(rng, n, p):
    days = (rng.integers(0, 8, n) + int(np.datetime64("2023-12-29", "D").astype("int64"))).tolist()
    return pa.array(_masked(rng, days, p), pa.int32()).cast(pa.date32())


def left_table(rng, n, spec: RelSpec, tz: str) -> pa.Table:
    p = spec.specials
    kf = [0.0, 1.0, 2.0, 2.5, -0.0] + ([np.nan, np.inf] if p else [])
    fl = [0.1, -1.5, 2.0, 3.25, 0.0, -7.0] + ([np.nan, np.inf, -np.inf, 1e300] if p else [])
    gl = [0.1, 0.2, -3.5, 7.0] + ([np.nan, np.inf, 1e30] if p else [])
    dec = [decimal.Decimal(int(x)).scaleb(-2) for x in rng.integers(-100000, 100000, n)]
    return pa.table(
        {
            "k1": pa.array(_masked(rng, rng.integers(0, 6, n).tolist(), p), pa.int64()),
            "k2": pa.array(_masked(rng, rng.choice(["a", "b", "c", "", "B"], n).tolist(), p), pa.string()),
            "kf": pa.array(rng.choice(kf, n), pa.float64()),
            "i": pa.array(_ints(rng, n, spec.big_ints), pa.int64()),
            "f": pa.array(_masked(rng, rng.choice(fl, n).tolist(), p / 2), pa.float64()),
            "g": pa.array(rng.choice(gl, n).astype(np.float32), pa.float32()),
            "b": pa.array(_masked(rng, (rng.random(n) < 0.5).tolist(), p), pa.bool_()),
            "cat": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, 4, n), pa.int32(), mask=rng.random(n) < p / 2),
                pa.array(["x", "y", "z", "w"]),
            ),
            "s": pa.array(
                _masked(rng, rng.choice(FRUIT, n).tolist(), p),
                pa.string(),
            ),
            "d": _dates(rng, n, p / 2),
            "ts": _times(rng, n, tz, p / 2),
            "dec": pa.array(_masked(rng, dec, p / 2), pa.decimal128(10, 2)),
            "v": pa.array(rng.integers(0, 10, n), pa.int64()),
        }
    )


def right_table(rng, n, spec: RelSpec, tz: str) -> pa.Table:
    p = spec.specials
    kf = [0.0, 1.0, 2.0, 3.0] + ([np.nan] if p else [])
    fl = [0.5, 4.0] + ([np.nan, -np.inf] if p else [])
    return pa.table(
        {
            "k1": pa.array(_masked(rng, rng.integers(0, 7, n).tolist(), p), pa.int64()),
            "k2": pa.array(_masked(rng, rng.choice(["a", "b", "c", "", "d"], n).tolist(), p), pa.string()),
            "kf": pa.array(rng.choice(kf, n), pa.float64()),
            "w": pa.array(rng.integers(-5, 100, n), pa.int64()),
            "ri": pa.array(_ints(rng, n, spec.big_ints), pa.int64()),
            "f": pa.array(rng.choice(fl, n), pa.float64()),
            "rs": pa.array(_masked(rng, rng.choice(RS, n).tolist(), p), pa.string()),
            "rts": _times(rng, n, tz, p),
            "rd": _dates(rng, n, p),
            "rb": pa.array(_masked(rng, (rng.random(n) < 0.5).tolist(), p), pa.bool_()),
            "rcat": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, 3, n), pa.int32()), pa.array(["y", "x", "q"])
            ),
        }
    )


@dataclass
class RelCase:
    """A generated pair of tables: where they live, how hpcframe opens them, what pandas
    makes of them."""

    spec: RelSpec
    root: str
    left_pdf: pd.DataFrame
    right_pdf: pd.DataFrame
    open_src: list  # Python source lines that bind L and R (for repros)
    write: Callable[[], None]  # writes the files (rank 0 only)
    open: Callable[[], tuple]  # (L, R) as hpcframe Frames


def build_case(spec: RelSpec, root: str) -> RelCase:
    """Describe the case of ``spec`` stored under ``root`` (writes nothing: ``case.write()``
    does). Deterministic in ``spec``."""
    import hpcframe as hf

    rng = np.random.default_rng([spec.seed, 1])
    tz = TIMEZONES[int(rng.integers(len(TIMEZONES)))]
    left = [left_table(rng, n, spec, tz) for n in spec.left_rows]
    right = [right_table(rng, n, spec, tz) for n in spec.right_rows]
    lpdf = arrow_to_pandas(pa.concat_tables(left))
    rpdf = arrow_to_pandas(pa.concat_tables(right))
    nparts = (int(rng.integers(1, 6)), int(rng.integers(1, 4)))
    on_files = {"L": spec.layout in ("parquet", "mixed"), "R": spec.layout == "parquet"}

    def write():
        for side, tables in (("L", left), ("R", right)):
            if not on_files[side]:
                continue
            os.makedirs(os.path.join(root, side), exist_ok=True)
            for j, t in enumerate(tables):
                path = os.path.join(root, side, f"part-{j:03d}.parquet")
                pq.write_table(t, path, row_group_size=spec.row_group)

    def open_side(side, j):
        if on_files[side]:
            return hf.read_parquet(os.path.join(root, side))
        return hf.from_pandas((lpdf, rpdf)[j].copy(), npartitions=nparts[j])

    src = []
    for j, side in enumerate(("L", "R")):
        if on_files[side]:
            src.append(f"{side} = hf.read_parquet({os.path.join(root, side)!r})")
        else:
            src.append(f"{side} = hf.from_pandas(case.{('left', 'right')[j]}_pdf, npartitions={nparts[j]})")
    return RelCase(spec, root, lpdf, rpdf, src, write, lambda: (open_side("L", 0), open_side("R", 1)))


# ---------------------------------------------------------------------------------------------
# expressions: evaluated as trees, rendered as source
# ---------------------------------------------------------------------------------------------
def lit(v) -> str:
    """The Python source of a constant."""
    if isinstance(v, (float, np.floating)) and not isinstance(v, np.float64) and isinstance(v, np.floating):
        return f"np.{type(v).__name__}({float(v)!r})"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if np.isnan(v):
            return "float('nan')"
        if np.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
        return repr(v)
    if isinstance(v, np.integer):
        return repr(int(v))
    if isinstance(v, pd.Timestamp):
        if v.tz is None:
            return f"pd.Timestamp({str(v)!r})"
        return f"pd.Timestamp({v.isoformat()!r}).tz_convert({str(v.tz)!r})"
    if isinstance(v, datetime.date):
        return f"datetime.date({v.year}, {v.month}, {v.day})"
    if isinstance(v, list):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, slice):
        return ("" if v.start is None else lit(v.start)) + ":" + ("" if v.stop is None else lit(v.stop))
    return repr(v)


def _ev(x, ns):
    return x.ev(ns) if isinstance(x, Node) else x


def _src(x):
    return x.src() if isinstance(x, Node) else lit(x)


class Node:
    def ev(self, ns):  # pragma: no cover - abstract
        raise NotImplementedError

    def src(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    # building helpers
    def a(self, name: str) -> Attr:
        return Attr(self, name)

    def c(self, meth: str, *args, **kwargs) -> Call:
        return Call(self, meth, args, kwargs)

    def __getitem__(self, key) -> Item:
        return Item(self, key)


@dataclass
class Name(Node):
    name: str

    def ev(self, ns):
        return ns[self.name]

    def src(self):
        return self.name


@dataclass
class Attr(Node):
    obj: Any
    name: str

    def ev(self, ns):
        return getattr(_ev(self.obj, ns), self.name)

    def src(self):
        return f"{_src(self.obj)}.{self.name}"


@dataclass
class Call(Node):
    obj: Any
    meth: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def ev(self, ns):
        fn = getattr(_ev(self.obj, ns), self.meth)
        return fn(*[_ev(a, ns) for a in self.args], **{k: _ev(v, ns) for k, v in self.kwargs.items()})

    def src(self):
        parts = [_src(a) for a in self.args] + [f"{k}={_src(v)}" for k, v in self.kwargs.items()]
        return f"{_src(self.obj)}.{self.meth}({', '.join(parts)})"


@dataclass
class Item(Node):
    obj: Any
    key: Any

    def ev(self, ns):
        key = self.key
        if isinstance(key, slice):
            key = slice(_ev(key.start, ns), _ev(key.stop, ns))
        return _ev(self.obj, ns)[_ev(key, ns)]

    def src(self):
        return f"{_src(self.obj)}[{_src(self.key)}]"


OPS: dict[str, Callable] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "&": lambda a, b: a & b,
    "|": lambda a, b: a | b,
}


@dataclass
class Op(Node):
    op: str
    left: Any
    right: Any = None

    def ev(self, ns):
        if self.op == "~":
            return ~_ev(self.left, ns)
        return OPS[self.op](_ev(self.left, ns), _ev(self.right, ns))

    def src(self):
        if self.op == "~":
            return f"~{_src(self.left)}"
        return f"({_src(self.left)} {self.op} {_src(self.right)})"


def psort(frame, by, ascending=True, na_position="last"):
    """pandas' ``frame.sort_values(by, ascending=..., na_position=..., kind="stable")``, except
    where pandas 3.1's several-key sort ties a NaN with -inf (ascending) or +inf (descending)
    in a key (the first one too): there the rows are ordered as by a chain of stable one-key
    sorts, the lexicographic order hpcframe documents (user guide, "Differences from
    pandas", "NaN against -inf in a later sort key")."""
    by = [by] if isinstance(by, str) else list(by)
    asc = list(ascending) if isinstance(ascending, (list, tuple)) else [ascending] * len(by)

    def nan_and_inf(c):
        col = frame[c]
        if col.dtype.kind != "f":
            return False
        return bool(col.isna().any() and np.isinf(col.to_numpy(dtype="float64", na_value=np.nan)).any())

    if len(by) == 1 or not any(nan_and_inf(c) for c in by):
        return frame.sort_values(by, ascending=asc, na_position=na_position, kind="stable")
    out = frame
    for b, a in reversed(list(zip(by, asc))):
        out = out.sort_values(b, ascending=a, kind="stable", na_position=na_position)
    return out


FUNCTIONS: dict[str, Callable] = {"len": len, "psort": psort}


@dataclass
class Fn(Node):
    """A call of a function of :data:`FUNCTIONS` (``len``, ``psort``)."""

    fn: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def ev(self, ns):
        kwargs = {k: _ev(v, ns) for k, v in self.kwargs.items()}
        return FUNCTIONS[self.fn](*[_ev(a, ns) for a in self.args], **kwargs)

    def src(self):
        parts = [_src(a) for a in self.args] + [f"{k}={_src(v)}" for k, v in self.kwargs.items()]
        return f"{self.fn}({', '.join(parts)})"


@dataclass
class Bind:
    """``name = expr`` (hpcframe) and ``name = pd_expr`` (pandas; default: the same)."""

    name: str
    expr: Node
    pd_expr: Node | None = None

    def for_pandas(self) -> Node:
        return self.expr if self.pd_expr is None else self.pd_expr


@dataclass
class RelQuery:
    """A query: bindings ending with ``out``, and how to compare its result with pandas'.

    The comparison attributes are those ``differential.compare_with_pandas`` reads. ``index``:
    hpcframe's row labels are pandas' (else both sides are renumbered 0..n-1 before comparing).
    """

    family: str
    binds: list
    exact: bool = True
    index: bool = True
    ill: bool = False
    f32: bool = False
    sort_index: bool = False
    value_counts: bool = False
    int_nulls: bool = False
    is_len: bool = False
    cat_key: bool = False  # see test_differential_relational.compare_one

    @property
    def final_src(self) -> str:
        return self.binds[-1].expr.src()

    def run(self, frames: dict, is_pandas: bool):
        ns = dict(frames)
        for b in self.binds:
            ns[b.name] = (b.for_pandas() if is_pandas else b.expr).ev(ns)
        return ns[self.binds[-1].name]

    def source(self, case: RelCase) -> str:
        sp = case.spec
        cfg = ", ".join(f"{k}={v!r}" for k, v in sp.config().items())
        lines = [
            "import datetime, numpy as np, pandas as pd, hpcframe as hf",
            "from tests.helpers.generate_relational import RelSpec, build_case, psort",
            f"case = build_case({sp!r}, {f'/tmp/hpcframe-repro-{sp.seed}'!r}); case.write()",
        ]
        lines += [f"for k, v in dict({cfg}).items(): setattr(hf.config, k, v)"]
        lines += [ln.replace(case.root, f"/tmp/hpcframe-repro-{sp.seed}") for ln in case.open_src]
        lines += ["Rp = case.right_pdf"]
        lines += [f"{b.name} = {b.expr.src()}" for b in self.binds]
        lines += ["got = out.compute() if hasattr(out, 'compute') else out", "# pandas"]
        lines += ["L, R = case.left_pdf.copy(), case.right_pdf.copy()"]
        lines += [f"{b.name} = {b.for_pandas().src()}" for b in self.binds]
        lines += ["print(got); print(out)"]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# query generation
# ---------------------------------------------------------------------------------------------
def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _sub(rng, seq, lo=1, hi=None):
    k = int(rng.integers(lo, (hi or len(seq)) + 1))
    return [seq[j] for j in rng.permutation(len(seq))[:k]]


def _kind(s: pd.Series) -> str:
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return "cat"
    if dt == np.dtype(bool):
        return "bool"
    if dt.kind in "iuf":
        return "num"
    if dt.kind == "M":
        return "time"
    if dt == np.dtype(object):
        return "obj"  # bools with None
    return "str"


def _kinds(pdf: pd.DataFrame) -> dict:
    return {c: _kind(pdf[c]) for c in pdf.columns}


@dataclass
class Source:
    """The frame a query operates on: bindings that build it, its name, pandas' value of it."""

    binds: list
    name: str
    pdf: pd.DataFrame | None
    labels: bool  # hpcframe's row labels are pandas' (no filter renumbered the rows)
    shuffled_merge: bool = False  # a merge that may have been shuffled
    merge_how: str = ""
    cat_key: bool = False  # a merge of a categorical key with another column


KEY_PAIRS = [
    ("k1", "kf"),
    ("kf", "k1"),
    ("k2", "rs"),
    ("s", "rs"),
    ("ts", "rts"),
    ("d", "rd"),
    ("cat", "k2"),
    ("v", "w"),
    ("k1", "w"),
    ("cat", "rcat"),
    ("i", "ri"),
    ("b", "rb"),
    (["k2", "v"], ["rs", "w"]),
    (["k1", "d"], ["k1", "rd"]),
]
SUFFIXES = [None, ("", "_r"), ("_l", "_r"), (None, "_rr")]


def _merge_source(rng, case: RelCase, frames_pd: dict) -> Source:
    L, R = Name("L"), Name("R")
    binds = []
    hows = ["inner", "left", "right", "outer"]
    how = _pick(rng, ["inner", "inner", "left", "right", "outer", "cross"] if rng.random() < 0.1 else hows)
    # the left side: whole, filtered, some columns (keys kept), nothing
    lchoice = _pick(rng, ["L", "L", "filter", "cols", "empty"])
    if how == "cross":
        lside, rside = L[["v", "k2"]][Op(">", L.a("v"), 6)], R[["w", "rs"]][Op(">", R.a("w"), 60)]
        kw: dict = {}
    else:
        if rng.random() < 0.45:
            on = _sub(rng, ["k1", "k2", "kf"], 1, 3)
            kw = {"on": on if len(on) > 1 or rng.random() < 0.5 else on[0]}
            lkeys = on
        else:
            lk, rk = _pick(rng, KEY_PAIRS)
            kw = {"left_on": lk, "right_on": rk}
            lkeys = lk if isinstance(lk, list) else [lk]
        if lchoice == "filter":
            lside = L[Op(">", L.a("v"), int(rng.integers(-1, 8)))]
        elif lchoice == "cols":
            cols = list(dict.fromkeys(lkeys + _sub(rng, ["v", "f", "s", "ts", "cat", "b", "i", "g"], 1, 4)))
            lside = L[cols]
        elif lchoice == "empty":
            lside = L[Op(">", L.a("v"), 100)]
        else:
            lside = L
        rchoice = _pick(rng, ["R", "R", "filter", "empty", "Rp"])
        if rchoice == "filter":
            rside = R[Op(">", R.a("w"), int(rng.integers(0, 90)))]
        elif rchoice == "empty":
            rside = R[Op("<", R.a("w"), -100)]
        elif rchoice == "Rp":
            rside = Name("Rp")  # a pandas DataFrame (hpcframe wraps it)
        else:
            rside = R
    sfx = _pick(rng, SUFFIXES)
    if sfx is not None:
        kw["suffixes"] = sfx
    ind = _pick(rng, [False, False, True, "src"])
    if ind:
        kw["indicator"] = ind
    bc = _pick(rng, [None, None, True, False])
    if (how == "outer" and bc is True) or (how == "cross" and bc is False):
        bc = None
    hkw = dict(kw, broadcast=bc) if bc is not None else kw
    binds.append(Bind("m", lside.c("merge", rside, how=how, **hkw), lside.c("merge", rside, how=how, **kw)))
    try:
        pdf = binds[0].for_pandas().ev(frames_pd)
    except Exception:  # pandas refuses (key types): hpcframe must refuse too
        pdf = None
    shuffled = how == "outer" or bc is False or (bc is None and case.spec.broadcast_bytes == 0)
    cat_key = any(k == "cat" for k in (kw.get("left_on"), kw.get("right_on"))) and how != "cross"
    return Source(binds, "m", pdf, labels=True, shuffled_merge=shuffled, merge_how=how, cat_key=cat_key)


def _semi_mask(rng, x: Node, pdf: pd.DataFrame, binds: list) -> Op:
    """``x.c.isin(values)`` with values a lazy Series of R or of L (maybe filtered), maybe
    negated, maybe and-ed with another condition."""
    pairs = [(a, b) for a, b in KEY_PAIRS if isinstance(a, str) and a in pdf.columns and a != "b"]
    pairs += [(c, c) for c in ("k1", "k2", "kf") if c in pdf.columns]
    if not pairs:
        pairs = [("v", "w")] if "v" in pdf.columns else []
    lk, rk = _pick(rng, pairs) if pairs else (pdf.columns[0], "k1")
    R = Name("R")
    src = _pick(rng, ["R", "R", "filter", "empty", "self"])
    if src == "filter":
        binds.append(Bind("r", R[Op(">", R.a("w"), int(rng.integers(0, 90)))]))
        values = Name("r").a(rk)
    elif src == "empty":
        binds.append(Bind("r", R[Op("<", R.a("w"), -100)]))
        values = Name("r").a(rk)
    elif src == "self":
        L = Name("L")
        col = lk if lk in ("k1", "k2", "kf", "s", "v", "i", "d", "ts", "cat") else "k2"
        binds.append(Bind("r", L[Op("<", L.a("v"), int(rng.integers(0, 6)))]))
        values = Name("r").a(col)
    else:
        values = R.a(rk)
    mask: Node = x.a(lk).c("isin", values)
    if rng.random() < 0.5:
        mask = Op("~", mask)
    extra = _pick(rng, [None, None, "v", "f"])
    if extra == "v" and "v" in pdf.columns:
        mask = Op("&", mask, Op(">", x.a("v"), 2))
    elif extra == "f" and "f" in pdf.columns:
        mask = Op("&", mask, x.a("f").c("notna"))
    return mask


def _source(rng, case: RelCase, frames_pd: dict) -> Source:
    r = rng.random()
    L = Name("L")
    if r < 0.35:
        return Source([], "L", case.left_pdf, labels=True)
    if r < 0.5:
        c = int(rng.choice([-1, 2, 5, 100]))  # 100: every row filtered out
        b = Bind("x", L[Op(">", L.a("v"), c)])
        return Source([b], "x", b.expr.ev(frames_pd), labels=False)
    if r < 0.85:
        return _merge_source(rng, case, frames_pd)
    binds: list = []
    mask = _semi_mask(rng, L, case.left_pdf, binds)
    binds.append(Bind("x", L[mask]))
    ns = dict(frames_pd)
    for b in binds:
        ns[b.name] = b.expr.ev(ns)
    # (a semi-join shuffles both sides when broadcast_bytes is 0)
    return Source(binds, "x", ns["x"], labels=False, shuffled_merge=case.spec.broadcast_bytes == 0)


def _sortable(kinds, exclude=()) -> list:
    # not categoricals: hpcframe sorts them in their categories' order of first appearance
    # over the partitions (user guide, "Sorting by a categorical column"); not object bools
    return [c for c, k in kinds.items() if k in ("num", "time", "str", "bool") and c not in exclude]


GROUP_KEYS = ["k1", "k2", "kf", "v", "cat", "d", "rs", "w", "s"]


def _group_keys(rng, kinds, exclude=(), allow_cat=True) -> list:
    cands = [c for c in GROUP_KEYS if c in kinds and c not in exclude and (allow_cat or kinds[c] != "cat")]
    cands = [c for c in cands if kinds[c] in ("num", "str", "time", "cat")]
    return _sub(rng, cands, 1, 2) if cands else []


def _sort_bind(rng, x: Node, kinds, name="y"):
    by = _sub(rng, _sortable(kinds), 1, 3)
    asc = _pick(rng, [True, False, "mixed"])
    ascending: Any = [bool(rng.random() < 0.5) for _ in by] if asc == "mixed" else asc
    na = _pick(rng, ["last", "first"])
    byv: Any = by[0] if len(by) == 1 and rng.random() < 0.5 else by
    return Bind(
        name,
        x.c("sort_values", byv, ascending=ascending, na_position=na),
        Fn("psort", (x, byv), dict(ascending=ascending, na_position=na)),
    )


def _ordered_value_col(rng, kinds, exclude=()) -> str | None:
    cands = [c for c, k in kinds.items() if k in ("num", "time") and c not in exclude]
    return _pick(rng, cands) if cands else None


def _op_compute(rng, s: Source, x: Node, kinds):
    return [Bind("out", x)], dict(index=s.labels)


def _op_len(rng, s, x, kinds):
    return [Bind("out", x.c("len"), Fn("len", (x,)))], dict(is_len=True)


def _op_filter(rng, s, x, kinds):
    cands = [c for c, k in kinds.items() if k == "num"]
    if not cands:
        return _op_len(rng, s, x, kinds)
    c = _pick(rng, cands)
    vals = s.pdf[c].dropna()
    v = vals.iloc[int(rng.integers(len(vals)))] if len(vals) else 0
    cols = _sub(rng, list(kinds), 1, 4)
    return [Bind("out", x[Op(_pick(rng, [">", "<=", "=="]), x.a(c), v)][cols])], dict(index=False)


def _op_groupagg(rng, s, x, kinds):
    keys = _group_keys(rng, kinds)
    vals = [c for c, k in kinds.items() if k == "num" and c not in keys]
    if not keys or not vals:
        return _op_len(rng, s, x, kinds)
    c = _pick(rng, vals)
    a = _pick(rng, ["size", "sum", "count", "max", "nunique", "median", "first", "min"])
    dropna = bool(rng.random() < 0.7)
    by: Any = keys if len(keys) > 1 else keys[0]
    g = x.c("groupby", by, dropna=dropna)
    gp = x.c("groupby", by, dropna=dropna, observed=True)
    if a == "size":
        h, p = g.c("size"), gp.c("size")
    else:
        h, p = g.a(c).c(a), gp.a(c).c(a)
    exact = a not in ("sum", "median") or kinds[c] == "num" and s.pdf[c].dtype.kind in "iu" and a == "sum"
    return [Bind("out", h, p)], dict(
        exact=exact,
        sort_index=any(kinds[k] == "cat" for k in keys),
        f32=not exact and s.pdf[c].dtype == "float32",
        ill=not exact and c in ("i", "ri"),
    )


def _op_sort(rng, s, x, kinds):
    if rng.random() < 0.2:  # a Series
        c = _pick(rng, _sortable(kinds))
        asc, na, n = bool(rng.random() < 0.5), _pick(rng, ["last", "first"]), int(rng.integers(0, 30))
        h = x.a(c).c("sort_values", ascending=asc, na_position=na).c(_pick(rng, ["head", "tail"]), n)
        p = x.a(c).c("sort_values", ascending=asc, na_position=na, kind="stable").c(h.meth, n)
        return [Bind("out", h, p)], dict(index=s.labels)
    sb = _sort_bind(rng, x, kinds)
    y = Name("y")
    post = _pick(rng, ["head", "head", "tail", "compute", "filter", "cols"])
    n = int(rng.integers(0, 40))
    if post in ("head", "tail"):
        out = Bind("out", y.c(post, n))
    elif post == "filter" and "v" in kinds:
        out = Bind("out", y[Op(">", y.a("v"), 4)])
        # a filter after the sort of a merged frame renumbers the rows (user guide, "Results
        # come back with a fresh index"): only a scan's rows keep their positions there
        return [sb, out], dict(index=s.labels and not s.merge_how)
    elif post == "cols":
        out = Bind("out", y[_sub(rng, list(kinds), 1, 3)].c("head", n))
    else:
        out = Bind("out", y)
    # (the labels of a sorted frame from a shuffled merge are compared too: session 32's first
    # runs saw them differ, seed 68; 100 seeds locally and 25 on 3 ranks agree since the fixes)
    return [sb, out], dict(index=s.labels)


def _op_topn(rng, s, x, kinds):
    which = _pick(rng, ["nlargest", "nsmallest"])
    n = int(rng.integers(0, 25))
    keep = _pick(rng, ["first", "last", "all"])
    cands = [c for c, k in kinds.items() if k in ("num", "time")]
    if not cands:
        return _op_len(rng, s, x, kinds)
    if rng.random() < 0.4:
        h = x.a(_pick(rng, cands)).c(which, n, keep=keep)
    else:
        h = x.c(which, n, _sub(rng, cands, 1, 2), keep=keep)
    return [Bind("out", h)], dict(index=s.labels)


def _op_window(rng, s, x, kinds):
    binds = []
    y = x
    if rng.random() < 0.7:
        binds.append(_sort_bind(rng, x, kinds))
        y = Name("y")
    keys = _group_keys(rng, kinds)
    col = _ordered_value_col(rng, kinds, exclude=keys)
    if not keys or col is None:
        return _op_len(rng, s, x, kinds)
    op = _pick(rng, ["cumsum", "cumcount", "diff", "shift", "rank", "rank", "cummax", "cummin"])
    time = kinds[col] == "time"
    if time and op == "cumsum":
        op = "shift"
    dropna = bool(rng.random() < 0.6)
    if time and op in ("rank", "cummax", "cummin") and dropna and s.pdf[keys].isna().any().any():
        # user guide, "Group rank/cummax/cummin of a datetime column with NaT": pandas 3.1
        # ranks NaT rows (carries the running value over them) when missing-key rows are dropped
        dropna = False
    by: Any = keys if len(keys) > 1 else keys[0]
    g = y.c("groupby", by, dropna=dropna)
    gp = y.c("groupby", by, dropna=dropna, observed=True)
    if op == "cumcount":
        kw = {"ascending": False} if rng.random() < 0.5 else {}
        h, p = g.c("cumcount", **kw), gp.c("cumcount", **kw)
    elif op in ("diff", "shift"):
        periods = int(rng.integers(-2, 3))
        h, p = g.a(col).c(op, periods), gp.a(col).c(op, periods)
    elif op == "rank":
        kw = {}
        if rng.random() < 0.7:
            kw = dict(
                method=_pick(rng, ["average", "min", "max", "first", "dense"]),
                ascending=bool(rng.random() < 0.5),
                na_option=_pick(rng, ["keep", "top", "bottom"]),
                pct=bool(rng.random() < 0.3),
            )
        h, p = g.a(col).c("rank", **kw), gp.a(col).c("rank", **kw)
    else:
        h, p = g.a(col).c(op), gp.a(col).c(op)
    binds.append(Bind("out", h, p))
    floating = s.pdf[col].dtype.kind == "f" and op in ("cumsum", "diff")
    # group windows come back with a fresh index (user guide, "Results come back with a fresh index")
    return binds, dict(index=False, exact=not floating and op != "rank", f32=s.pdf[col].dtype == "float32")


def _op_grouprows(rng, s, x, kinds):
    binds = []
    y = x
    if rng.random() < 0.7:
        binds.append(_sort_bind(rng, x, kinds))
        y = Name("y")
    keys = _group_keys(rng, kinds)
    if not keys:
        return _op_len(rng, s, x, kinds)
    dropna = bool(rng.random() < 0.6)
    by: Any = keys if len(keys) > 1 else keys[0]
    op = _pick(rng, ["head", "tail", "nth", "nth_list", "nth_neg"])
    n = int(rng.integers(1, 4))
    args = {"head": (n,), "tail": (n,), "nth": (n - 1,), "nth_list": ([0, -1],), "nth_neg": (-2,)}[op]
    meth = "nth" if op.startswith("nth") else op
    sel = _pick(rng, [None, None, "cols", "col"])
    vals = [c for c in kinds if c not in keys]

    cols = _sub(rng, vals, 1, 2) if vals else []

    def build(g):
        if sel == "cols" and cols:
            g = g[cols]
        elif sel == "col" and cols:
            g = g.a(cols[0])
        return g.c(meth, *args)

    h = build(y.c("groupby", by, dropna=dropna))
    p = build(y.c("groupby", by, dropna=dropna, observed=True))
    binds.append(Bind("out", h, p))
    # labels: pandas' unless a filter renumbered the rows (also after a merge: the join's
    # rows are sample-sorted into the merged frame's order first, frame._ranked_rows)
    return binds, dict(index=s.labels)


def _op_setindex(rng, s, x, kinds):
    cands = ("v", "k1", "i", "ts", "d", "f", "kf", "k2", "s", "w")
    cands = [c for c in cands if c in kinds and kinds[c] in ("num", "time", "str")]
    if not cands:
        return _op_len(rng, s, x, kinds)
    c = _pick(rng, cands)
    binds = []
    pdf = s.pdf
    if pdf[c].isna().any():
        # an index with missing values: pandas raises KeyError for .loc[a:b] where hpcframe
        # selects by value (user guide, "set_index(column) sorts the rows by the index")
        binds.append(Bind("z", x[x.a(c).c("notna")]))
        x = Name("z")
        pdf = pdf[pdf[c].notna()]
    vals = list(pdf[c].drop_duplicates())
    extra = {"num": [-10, 0, 3, 1e9], "time": [], "str": ["a", "c", "zz", ""]}[kinds[c]]
    pool = vals + extra

    def pick():
        return _pick(rng, pool) if pool else None

    a, b = pick(), pick()
    if a is not None and b is not None:
        try:
            if b < a:
                a, b = b, a
        except TypeError:
            pass
    counts = pdf[c].value_counts()
    unique = [v for v in vals if counts.get(v, 0) == 1]
    forms = ["slice", "slice", "from", "to"] + (["label"] if unique else [])
    form = _pick(rng, forms)
    key: Any = {"slice": slice(a, b), "from": slice(a, None), "to": slice(None, b)}.get(form)
    if form == "label":
        key = _pick(rng, unique)  # a unique label: a Series in both (hpcframe gives a Series for one match)
    ix = x.c("set_index", c)
    ixp = x.c("set_index", c).c("sort_index", kind="stable")
    if rng.random() < 0.3:
        other = [k for k in kinds if k != c][:1]
        if other and form != "label":
            ix, ixp = ix[other], ixp[other]
    binds.append(Bind("out", ix.a("loc")[key], ixp.a("loc")[key]))
    return binds, dict(index=True)


def _op_dedup(rng, s, x, kinds):
    binds = []
    y = x
    if rng.random() < 0.4:
        binds.append(_sort_bind(rng, x, kinds))
        y = Name("y")
    subset = _sub(rng, [c for c in ("k1", "k2", "kf", "cat", "s", "v", "d", "w") if c in kinds], 1, 2)
    keep = _pick(rng, ["first", "last", False])
    binds.append(Bind("out", y.c("drop_duplicates", subset if subset else None, keep=keep)))
    return binds, dict(index=False)  # a fresh index (user guide)


def _op_quantile(rng, s, x, kinds):
    nums = [c for c, k in kinds.items() if k == "num"]
    if not nums:
        return _op_len(rng, s, x, kinds)
    c = _pick(rng, nums)
    q = _pick(rng, [0.0, 0.1, 0.5, 0.75, 1.0, 0.333, [0.1, 0.5, 0.9]])
    med = rng.random() < 0.4
    keys = _group_keys(rng, kinds, exclude=(c,)) if rng.random() < 0.8 else []
    f32 = s.pdf[c].dtype == "float32"
    ill = c in ("i", "ri")
    if not keys:
        h = x.a(c).c("median") if med else x.a(c).c("quantile", q)
        return [Bind("out", h)], dict(exact=False, f32=f32, ill=ill)
    dropna = bool(rng.random() < 0.7)
    by: Any = keys if len(keys) > 1 else keys[0]
    g, gp = x.c("groupby", by, dropna=dropna), x.c("groupby", by, dropna=dropna, observed=True)
    if rng.random() < 0.3:  # named aggregations
        spec = dict(med=(c, "median"), n=(c, "count"))
        h, p = g.c("agg", **spec), gp.c("agg", **spec)
    elif med:
        h, p = g.a(c).c("median"), gp.a(c).c("median")
    else:
        h, p = g.a(c).c("quantile", q), gp.a(c).c("quantile", q)
    cat = any(kinds[k] == "cat" for k in keys)
    return [Bind("out", h, p)], dict(exact=False, f32=f32, ill=ill, sort_index=cat)


def _op_semi(rng, s, x, kinds):
    binds: list = []
    mask = _semi_mask(rng, x, s.pdf, binds)
    binds.append(Bind("t", x[mask]))
    t = Name("t")
    post = _pick(rng, ["compute", "len", "size", "sum", "sorthead"])
    if post == "len":
        binds.append(Bind("out", t.c("len"), Fn("len", (t,))))
        return binds, dict(is_len=True)
    if post == "size" and "k2" in kinds:
        binds.append(Bind("out", t.c("groupby", "k2").c("size")))
        return binds, {}
    if post == "sum" and "v" in kinds:
        binds.append(Bind("out", t.a("v").c("sum")))
        # v of a merge may have nulls (float64 in pandas): the documented int-with-nulls freedom
        return binds, dict(int_nulls=bool(s.merge_how))
    if post == "sorthead":
        sb = _sort_bind(rng, t, kinds, name="u")
        binds += [sb, Bind("out", Name("u").c("head", int(rng.integers(0, 12))))]
        return binds, dict(index=False)
    binds.append(Bind("out", t))
    return binds, dict(index=False)


OPERATIONS = [
    (_op_compute, 2),
    (_op_len, 1),
    (_op_filter, 1),
    (_op_groupagg, 2),
    (_op_sort, 4),
    (_op_topn, 2),
    (_op_window, 4),
    (_op_grouprows, 3),
    (_op_setindex, 2),
    (_op_dedup, 2),
    (_op_quantile, 2),
    (_op_semi, 3),
]


def make_queries(case: RelCase, n: int) -> list[RelQuery]:
    """``n`` random queries for ``case`` (deterministic in the case's seed)."""
    rng = np.random.default_rng([case.spec.seed, 3])
    frames_pd = {"L": case.left_pdf, "R": case.right_pdf, "Rp": case.right_pdf}
    weights = np.array([w for _, w in OPERATIONS], dtype=float)
    out = []
    for _ in range(n):
        s = _source(rng, case, frames_pd)
        if s.pdf is None:  # pandas refuses the merge: hpcframe must raise too
            out.append(RelQuery("merge-error", s.binds + [Bind("out", Name(s.name))]))
            continue
        op = OPERATIONS[int(rng.choice(len(OPERATIONS), p=weights / weights.sum()))][0]
        binds, kw = op(rng, s, Name(s.name), _kinds(s.pdf))
        family = (s.merge_how and f"merge[{s.merge_how}]+" or "") + op.__name__[4:]
        out.append(RelQuery(family, s.binds + binds, cat_key=s.cat_key, **kw))
    return out
