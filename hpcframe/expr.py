"""Column expressions: one small tree, three evaluations.

* :meth:`Expr.evaluate` — on a pandas DataFrame, with pandas semantics (the reference).
* :meth:`Expr.to_arrow` — an :class:`ArrowOp` (pyarrow.compute calls, evaluated eagerly on a
  table: no query engine start-up per batch) with *the same* result on the
  normalised Arrow table (nulls behave like pandas' NaN: ``NaN > 1`` is False, ``NaN != 1`` is
  True), or ``None`` when the expression cannot be translated faithfully; then pandas does it.
* :meth:`Expr.may_match` — partition pruning from min/max statistics: ``False`` only when no
  row of a partition with those statistics can satisfy the predicate.
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

_CMP = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
_LOGIC = {"&": operator.and_, "|": operator.or_}
_ARROW_CMP = {"==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal",
              ">": "greater", ">=": "greater_equal"}
_ARROW_ARITH = {"+": "add", "-": "subtract", "*": "multiply"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class AField:
    """A column of the table an :class:`ArrowOp` is evaluated on."""

    def __init__(self, name):
        self.name = name

    def __call__(self, table):
        return table.column(self.name)

    def __str__(self):
        return self.name


class AScalar:
    def __init__(self, value):
        self.value = value

    def __call__(self, table):
        return self.value

    def __str__(self):
        v = self.value
        return repr(v.as_py() if hasattr(v, "as_py") else v)


class ArrowOp:
    """``pyarrow.compute.<fn>(*args, **kw)`` over columns of a table, built once per query
    and evaluated per batch: ``op(table)`` returns an Arrow array."""

    def __init__(self, fn: str, *args, **kw):
        self.fn, self.args, self.kw = fn, args, kw

    def __call__(self, table):
        import pyarrow.compute as pc

        return getattr(pc, self.fn)(*(a(table) for a in self.args), **self.kw)

    def __and__(self, other):
        return ArrowOp("and_", self, other)

    def __or__(self, other):
        return ArrowOp("or_", self, other)

    def __invert__(self):
        return ArrowOp("invert", self)

    def __str__(self):
        args = [str(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kw.items()
                                              if k != "value_set"]
        if "value_set" in self.kw:
            args.append(f"value_set={self.kw['value_set'].to_pylist()!r}")
        return f"{self.fn}({', '.join(args)})"


class Expr:
    """Base class of expression nodes. Nodes are immutable and compared by ``key``."""

    def columns(self) -> set[str]:
        return set().union(*(c.columns() for c in self.children()))

    def children(self) -> tuple["Expr", ...]:
        return ()

    def evaluate(self, df):
        raise NotImplementedError

    def to_arrow(self, schema):
        return None

    def may_match(self, stats) -> bool:
        return True

    def key(self) -> tuple:
        return (type(self).__name__,) + tuple(c.key() for c in self.children())

    def __repr__(self) -> str:
        return self.text()

    def text(self) -> str:
        raise NotImplementedError


class Col(Expr):
    def __init__(self, name: str):
        self.name = name

    def columns(self):
        return {self.name}

    def evaluate(self, df):
        return df[self.name]

    def to_arrow(self, schema):
        import pyarrow.compute as pc

        return AField(self.name)

    def key(self):
        return ("Col", self.name)

    def text(self):
        return self.name if str(self.name).isidentifier() else f"`{self.name}`"


class Lit(Expr):
    def __init__(self, value: Any):
        self.value = value

    def evaluate(self, df):
        return self.value

    def to_arrow(self, schema):
        import pyarrow.compute as pc

        if isinstance(self.value, int) and not -2 ** 63 <= self.value < 2 ** 64:
            return None  # no Arrow integer holds it: pandas compares it (query.MAX_INT_BITS)
        if isinstance(self.value, (bool, int, float, str, np.integer, np.floating)):
            return AScalar(self.value)
        ts = _naive_timestamp(self.value)
        if ts is not None:
            import pyarrow as pa

            return AScalar(pa.scalar(ts.as_unit("ns").to_datetime64(), pa.timestamp("ns")))
        return None

    def key(self):
        return ("Lit", type(self.value).__name__, repr(self.value))

    def text(self):
        return repr(self.value)


class Bin(Expr):
    """A binary operation: comparison, arithmetic, or logical ``&``/``|``."""

    def __init__(self, op: str, left: Expr, right: Expr):
        if op not in _CMP and op not in _ARITH and op not in _LOGIC:
            raise ValueError(f"unknown operator {op!r}")
        self.op, self.left, self.right = op, left, right

    def children(self):
        return (self.left, self.right)

    def key(self):
        return ("Bin", self.op, self.left.key(), self.right.key())

    def text(self):
        return f"({self.left.text()} {self.op} {self.right.text()})"

    def evaluate(self, df):
        fn = _CMP.get(self.op) or _ARITH.get(self.op) or _LOGIC[self.op]
        left = self.left.evaluate(df)
        right = _coerce_literal(left, self.right.evaluate(df))
        left = _coerce_literal(right, left)
        return fn(left, right)

    def to_arrow(self, schema):
        import pyarrow.compute as pc

        left = self.left.to_arrow(schema)
        right = self.right.to_arrow(schema)
        if left is None or right is None:
            return None
        if self.op in _LOGIC:
            return (left & right) if self.op == "&" else (left | right)
        if self.op in _ARROW_CMP:
            dated = _date_comparison(self.op, self.left, self.right, schema)
            if dated is not False:
                return dated
            if not _arrow_comparable(self.left, self.right, schema):
                return None
            out = ArrowOp(_ARROW_CMP[self.op], left, right)
            # pandas: a comparison with NaN/None is False, except != which is True
            return ArrowOp("coalesce", out, AScalar(self.op == "!="))
        if self.op in _ARROW_ARITH and _all_float(self, schema):
            return ArrowOp(_ARROW_ARITH[self.op], left, right)
        return None

    def may_match(self, stats) -> bool:
        if self.op == "&":
            return self.left.may_match(stats) and self.right.may_match(stats)
        if self.op == "|":
            return self.left.may_match(stats) or self.right.may_match(stats)
        if self.op not in _CMP:
            return True
        op, col, lit = self.op, self.left, self.right
        if isinstance(col, Lit) and isinstance(lit, Col):
            op, col, lit = _FLIP[op], lit, col
        if not (isinstance(col, Col) and isinstance(lit, Lit)) or col.name not in stats:
            return True
        lo, hi = stats[col.name]
        v = lit.value
        try:
            if lo is None or hi is None:
                return True
            if op == "==":
                return bool(lo <= v <= hi)
            if op == "<":
                return bool(lo < v)
            if op == "<=":
                return bool(lo <= v)
            if op == ">":
                return bool(hi > v)
            if op == ">=":
                return bool(hi >= v)
        except TypeError:
            return True
        return True


class Not(Expr):
    def __init__(self, arg: Expr):
        self.arg = arg

    def children(self):
        return (self.arg,)

    def text(self):
        return f"~{self.arg.text()}"

    def evaluate(self, df):
        return ~self.arg.evaluate(df)

    def to_arrow(self, schema):
        inner = self.arg.to_arrow(schema)
        return None if inner is None or not _is_predicate(self.arg) else ~inner


class Neg(Expr):
    def __init__(self, arg: Expr):
        self.arg = arg

    def children(self):
        return (self.arg,)

    def text(self):
        return f"-{self.arg.text()}"

    def evaluate(self, df):
        return -self.arg.evaluate(df)


class IsIn(Expr):
    def __init__(self, arg: Expr, values):
        self.arg, self.values = arg, list(values)

    def children(self):
        return (self.arg,)

    def key(self):
        return ("IsIn", self.arg.key(), tuple(repr(v) for v in self.values))

    def text(self):
        return f"{self.arg.text()}.isin({self.values!r})"

    def evaluate(self, df):
        return self.arg.evaluate(df).isin(self.values)

    def to_arrow(self, schema):
        import pyarrow as pa
        import pyarrow.compute as pc

        if not isinstance(self.arg, Col) or any(_is_null(v) for v in self.values):
            return None
        ftype = schema.field(self.arg.name).type
        if not (pa.types.is_integer(ftype) or pa.types.is_floating(ftype)
                or pa.types.is_string(ftype) or pa.types.is_large_string(ftype)):
            return None
        try:
            values = pa.array(self.values).cast(ftype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return None
        return ArrowOp("coalesce", ArrowOp("is_in", AField(self.arg.name), value_set=values),
                       AScalar(False))

    def may_match(self, stats) -> bool:
        if not isinstance(self.arg, Col) or self.arg.name not in stats:
            return True
        lo, hi = stats[self.arg.name]
        if lo is None or hi is None:
            return True
        try:
            return any(lo <= v <= hi for v in self.values if not _is_null(v))
        except TypeError:
            return True


class Between(Expr):
    def __init__(self, arg: Expr, low, high, inclusive: str = "both"):
        if inclusive not in ("both", "neither", "left", "right"):
            raise ValueError("inclusive must be 'both', 'neither', 'left' or 'right'")
        self.arg, self.low, self.high, self.inclusive = arg, low, high, inclusive

    def _as_and(self) -> Expr:
        lo_op = ">=" if self.inclusive in ("both", "left") else ">"
        hi_op = "<=" if self.inclusive in ("both", "right") else "<"
        return Bin("&", Bin(lo_op, self.arg, Lit(self.low)), Bin(hi_op, self.arg, Lit(self.high)))

    def children(self):
        return (self.arg,)

    def key(self):
        return ("Between", self.arg.key(), repr(self.low), repr(self.high), self.inclusive)

    def text(self):
        return f"{self.arg.text()}.between({self.low!r}, {self.high!r})"

    def evaluate(self, df):
        return self.arg.evaluate(df).between(self.low, self.high, inclusive=self.inclusive)

    def to_arrow(self, schema):
        return self._as_and().to_arrow(schema)

    def may_match(self, stats):
        return self._as_and().may_match(stats)


class IsNa(Expr):
    def __init__(self, arg: Expr, negate: bool = False):
        self.arg, self.negate = arg, negate

    def children(self):
        return (self.arg,)

    def key(self):
        return ("IsNa", self.arg.key(), self.negate)

    def text(self):
        return f"{self.arg.text()}.{'notna' if self.negate else 'isna'}()"

    def evaluate(self, df):
        s = self.arg.evaluate(df)
        return s.notna() if self.negate else s.isna()

    def to_arrow(self, schema):
        import pyarrow.compute as pc

        if not isinstance(self.arg, Col):
            return None
        isnull = ArrowOp("is_null", AField(self.arg.name), nan_is_null=True)
        return ~isnull if self.negate else isnull


class StrMatch(Expr):
    """``str.startswith`` / ``str.endswith`` / ``str.contains`` on a string column."""

    def __init__(self, arg: Expr, method: str, pattern: str, regex: bool = True,
                 case: bool = True):
        if method not in ("startswith", "endswith", "contains"):
            raise ValueError(method)
        if not isinstance(pattern, str):
            raise TypeError(f"str.{method} expects a string pattern, got {type(pattern).__name__}")
        self.arg, self.method, self.pattern = arg, method, pattern
        self.regex, self.case = regex, case

    def children(self):
        return (self.arg,)

    def key(self):
        return ("StrMatch", self.arg.key(), self.method, self.pattern, self.regex, self.case)

    def text(self):
        flags = "".join([", case=False" if not self.case else "",
                         ", regex=False" if self.method == "contains" and not self.regex else ""])
        return f"{self.arg.text()}.str.{self.method}({self.pattern!r}{flags})"

    def evaluate(self, df):
        s = self.arg.evaluate(df)
        if self.method == "contains":
            out = s.str.contains(self.pattern, regex=self.regex, case=self.case, na=False)
        else:
            out = getattr(s.str, self.method)(self.pattern, na=False)
        return out.astype(bool)

    def to_arrow(self, schema):
        import pyarrow.compute as pc

        if not isinstance(self.arg, Col) or not self.case:
            return None
        field = AField(self.arg.name)
        if self.method == "startswith":
            out = ArrowOp("starts_with", field, pattern=self.pattern)
        elif self.method == "endswith":
            out = ArrowOp("ends_with", field, pattern=self.pattern)
        elif not self.regex or not any(ch in self.pattern for ch in ".^$*+?{}[]\\|()"):
            out = ArrowOp("match_substring", field, pattern=self.pattern)
        else:
            return None
        return ArrowOp("coalesce", out, AScalar(False))


def _naive_timestamp(v):
    """``v`` as a tz-naive pandas Timestamp if it is a date/time value, else None."""
    import datetime

    if isinstance(v, (datetime.date, np.datetime64)):
        import pandas as pd

        ts = pd.Timestamp(v)
        return ts if ts.tz is None else None
    return None


def _is_null(v) -> bool:
    try:
        return v is None or bool(np.isnan(v))
    except (TypeError, ValueError):
        return False


def _is_predicate(e: Expr) -> bool:
    return (isinstance(e, (Not, IsIn, Between, IsNa, StrMatch))
            or (isinstance(e, Bin) and (e.op in _CMP or e.op in _LOGIC)))


def _coerce_literal(other, value):
    """A string literal compared with a datetime column becomes a Timestamp (as in pandas)."""
    if isinstance(value, str) and hasattr(other, "dtype") and other.dtype.kind == "M":
        import pandas as pd

        return pd.Timestamp(value)
    return value


def _date_comparison(op, left, right, schema):
    """A date column compared with a timestamp literal, as a comparison of dates (no cast of
    the column): ``d <= 1998-09-02 10:00`` is ``d <= 1998-09-02``. ``False`` when the
    comparison is not of that form, ``None`` when it cannot be translated."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(left, Lit) and isinstance(right, Col):
        op, left, right = _FLIP[op], right, left
    if not (isinstance(left, Col) and isinstance(right, Lit)):
        return False
    t = _arrow_type(left, schema)
    if t is None or not pa.types.is_date(t):
        return False
    ts = _naive_timestamp(right.value)
    if ts is None:
        return None
    day = ts.normalize()
    exact = ts == day
    if op in ("==", "!=") and not exact:
        return None
    if op == "<" and not exact:
        op = "<="
    elif op == ">=" and not exact:
        op = ">"
    scalar = AScalar(pa.scalar(day.date(), t))
    out = ArrowOp(_ARROW_CMP[op], AField(left.name), scalar)
    return ArrowOp("coalesce", out, AScalar(op == "!="))


def _arrow_type(e: Expr, schema):
    if isinstance(e, Col):
        return schema.field(e.name).type if e.name in schema.names else None
    return None


def _all_float(e: Expr, schema) -> bool:
    import pyarrow.types as pat

    if isinstance(e, Col):
        t = _arrow_type(e, schema)
        return t is not None and pat.is_floating(t)
    if isinstance(e, Lit):
        return isinstance(e.value, (float, np.floating))
    if isinstance(e, Bin) and e.op in _ARROW_ARITH:
        return _all_float(e.left, schema) and _all_float(e.right, schema)
    return False


def _arrow_comparable(left: Expr, right: Expr, schema) -> bool:
    """Only compare in Arrow where Arrow and pandas agree: numbers with numbers, strings with
    strings, timestamps with timestamps (string literals are converted by the caller)."""
    import pyarrow.types as pat

    def kind(e):
        t = _arrow_type(e, schema)
        if t is not None:
            if pat.is_integer(t) or pat.is_floating(t):
                return "num"
            if pat.is_string(t) or pat.is_large_string(t):
                return "str"
            if pat.is_timestamp(t) and t.tz is None:
                return "ts"
            return None
        if isinstance(e, Lit):
            v = e.value
            if isinstance(v, bool):
                return None
            if isinstance(v, (int, float, np.integer, np.floating)):
                return "num"
            if isinstance(v, str):
                return "str"
            return "ts" if _naive_timestamp(v) is not None else None
        if isinstance(e, Bin) and e.op in _ARROW_ARITH and _all_float(e, schema):
            return "num"
        return None

    kl, kr = kind(left), kind(right)
    return kl is not None and kl == kr


def conjuncts(e: Expr | None) -> list[Expr]:
    """The terms of a top-level ``&`` chain."""
    if e is None:
        return []
    if isinstance(e, Bin) and e.op == "&":
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def balanced(items: list, combine):
    """``combine`` (associative, e.g. ``&``) over ``items`` as a balanced tree: log2(n) deep,
    so that evaluating hundreds of terms recursively stays far from the recursion limit.
    ``None`` for no items."""
    items = list(items)
    if not items:
        return None
    while len(items) > 1:
        items = [combine(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def and_all(terms: list[Expr]) -> Expr | None:
    """The conjunction of ``terms`` (a balanced tree of ``&``), or None for no terms."""
    return balanced(terms, lambda a, b: Bin("&", a, b))
