"""Column expressions: one small tree, three evaluations.

* :meth:`Expr.evaluate` — on a pandas DataFrame, with pandas semantics (the reference).
* :meth:`Expr.to_arrow` — the predicate evaluated while reading, on the predicate columns of
  the normalised Arrow batch, with *the same* mask (and the same errors) as ``evaluate`` on the
  converted batch: an :class:`ArrowOp` (pyarrow.compute calls, evaluated eagerly on a table:
  no query engine start-up per batch) where Arrow is exact — strings, ``isna``, dates against
  timestamps; nulls coalesced to behave like pandas' NaN (``NaN > 1`` is False, ``NaN != 1``
  is True) — else a :class:`PandasOp` that runs ``evaluate`` on those columns alone (numbers,
  whose pandas dtype depends on the batch and on NumPy's promotion rules; times; bools;
  categoricals), or ``None`` for a term over plain strings that Arrow cannot do: then pandas
  does it after the conversion.
* :meth:`Expr.may_match` — partition pruning from min/max statistics: ``False`` only when no
  row of a partition with those statistics can satisfy the predicate.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Stats = Mapping[str, tuple[Any, Any]]
"""Per-column ``(min, max)`` statistics of a partition; either bound may be ``None``."""

_T = TypeVar("_T")

_CMP = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITH = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
_LOGIC = {"&": operator.and_, "|": operator.or_}
#: The Python function of every comparison and arithmetic operator (``"+"`` -> ``operator.add``):
#: evaluation uses it, and so does the query parser's constant folding.
PYTHON_OPERATORS = {**_CMP, **_ARITH}

_ARROW_CMP = {
    "==": "equal",
    "!=": "not_equal",
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class _Pred:
    """Arrow-side nodes combine with ``&``, ``|`` and ``~`` into :class:`ArrowOp` trees."""

    def __call__(self, table: pa.Table) -> Any:
        """The node's value on ``table`` (each subclass says what it is)."""
        raise NotImplementedError

    def __and__(self, other: _Pred) -> ArrowOp:
        return ArrowOp("and_", self, other)

    def __or__(self, other: _Pred) -> ArrowOp:
        return ArrowOp("or_", self, other)

    def __invert__(self) -> ArrowOp:
        return ArrowOp("invert", self)


class AField(_Pred):
    """A column of the table an :class:`ArrowOp` is evaluated on."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, table: pa.Table) -> Any:
        """The column ``name`` of ``table`` (a ``pyarrow.ChunkedArray``); raises ``KeyError``
        when the table has no such column."""
        return table.column(self.name)

    def __str__(self) -> str:
        return self.name


class AScalar:
    """A constant argument of an :class:`ArrowOp` (a Python value or a ``pyarrow.Scalar``),
    the same for every batch."""

    def __init__(self, value: Any):
        self.value = value

    def __call__(self, table: pa.Table) -> Any:
        """The constant ``value``, whatever ``table`` is."""
        return self.value

    def __str__(self) -> str:
        v = self.value
        return repr(v.as_py() if hasattr(v, "as_py") else v)


class ArrowOp(_Pred):
    """``pyarrow.compute.<fn>(*args, **kw)`` over columns of a table, built once per query
    and evaluated per batch: ``op(table)`` returns an Arrow array."""

    def __init__(self, fn: str, *args: Any, **kw: Any):
        # args: AField, AScalar or nested predicates, each called with the table
        self.fn, self.args, self.kw = fn, args, kw

    def __call__(self, table: pa.Table) -> Any:
        """``pyarrow.compute.<fn>`` applied to the arguments evaluated on ``table``: an Arrow
        array (a bool mask for a predicate); Arrow's errors (``ArrowInvalid``, ...) pass through."""
        import pyarrow.compute as pc

        return getattr(pc, self.fn)(*(a(table) for a in self.args), **self.kw)

    def __str__(self) -> str:
        args = [str(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kw.items() if k != "value_set"]
        if "value_set" in self.kw:
            args.append(f"value_set={self.kw['value_set'].to_pylist()!r}")
        return f"{self.fn}({', '.join(args)})"


class PandasOp(_Pred):
    """A predicate that Arrow cannot evaluate exactly as pandas does (numbers, whose pandas
    dtype depends on the batch: an integer column with nulls is float64; float32 against a
    Python float; dates; tz-aware times; bools; categoricals; mixed kinds), evaluated while
    reading with :meth:`Expr.evaluate` on the predicate columns of the batch only, converted
    to pandas exactly as the rest of the batch will be. Same answer, same errors, as running
    the filter after the conversion; the other columns are still cut before conversion."""

    def __init__(self, expr: Expr):
        self.expr = expr

    def __call__(self, table: pa.Table) -> pa.Array:
        """The mask of ``expr`` on ``table`` as an Arrow bool array of ``table.num_rows``;
        raises what :meth:`Expr.evaluate` and :func:`as_mask` raise on the converted columns."""
        from .io.types import block_to_pandas, mask_to_arrow, normalize_table

        cols = [c for c in table.column_names if c in self.expr.columns()]
        t = normalize_table(table.select(cols))
        if cols:
            df = block_to_pandas(t)  # the dataset-level dtypes, as the rest of the block
        else:
            import pandas as pd

            df = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
        return mask_to_arrow(as_mask(self.expr.evaluate(df), table.num_rows, self.expr))

    def __str__(self) -> str:
        return f"pandas({self.expr.text()})"


class NumCmp(_Pred):
    """``column <op> number`` in Arrow where, for the batch at hand, it is exactly NumPy's
    (hence pandas') comparison: a float64 column with a number that float64 holds exactly, or
    an integer column without nulls with an integer of its range. An integer column with
    nulls in the batch is float64 in pandas: then ``fallback`` (a :class:`PandasOp`) runs."""

    def __init__(self, op: str, name: str, value: pa.Scalar, fallback: PandasOp):
        self.op, self.name, self.value, self.fallback = op, name, value, fallback

    def __call__(self, table: pa.Table) -> Any:
        """The bool mask of ``name <op> value`` on ``table`` (missing values give False, or True
        for ``!=``), from ``fallback`` when the integer column has nulls in this batch."""
        import pyarrow.compute as pc
        import pyarrow.types as pat

        col = table.column(self.name)
        if pat.is_integer(col.type) and col.null_count:
            return self.fallback(table)
        out = getattr(pc, _ARROW_CMP[self.op])(col, self.value)
        # pandas: a comparison with NaN/None is False, except != which is True
        return pc.coalesce(out, self.op == "!=")

    def __str__(self) -> str:
        return f"coalesce({_ARROW_CMP[self.op]}({self.name}, {self.value.as_py()!r}), {self.op == '!='})"


def as_mask(mask: Any, n: int, expr: Expr | None = None) -> np.ndarray:
    """A filter's value as a NumPy bool array of length ``n``, as pandas' ``df[mask]`` takes
    it: missing values of a nullable ``boolean`` mask are False, but an object mask with
    missing values (a bool column with nulls) is refused, as pandas refuses it."""
    import pandas as pd

    if isinstance(mask, pd.Series):
        if mask.dtype == bool:
            return mask.to_numpy()
        if mask.dtype == object and bool(mask.isna().any()):
            what = f" `{expr.text()}`" if expr is not None else ""
            raise ValueError(
                f"Cannot mask with non-boolean array containing NA / NaN values: the filter"
                f"{what} has missing values (a bool column with nulls), which pandas refuses "
                f"too. Say what missing means, e.g. `df[s == True]` (missing is False) or "
                f"`df[s.isna() | (s == True)]`."
            )
        return mask.fillna(False).astype(bool).to_numpy()
    return np.full(n, bool(mask))


class Expr:
    """Base class of expression nodes. Nodes are immutable and compared by ``key``."""

    def columns(self) -> set[str]:
        """The names of the columns this expression reads."""
        return set().union(*(c.columns() for c in self.children()))

    def children(self) -> tuple[Expr, ...]:
        """The direct sub-expressions (none for a leaf)."""
        return ()

    def evaluate(self, df: pd.DataFrame) -> Any:
        """The value on ``df`` as pandas computes it: a Series, or a scalar for a literal.

        Raises what pandas raises (``KeyError`` for a missing column, ``TypeError`` for
        operands pandas cannot combine); ``NotImplementedError`` on the base class."""
        raise NotImplementedError

    def to_arrow(self, schema: pa.Schema) -> _Pred | None:
        """This predicate evaluated while reading, on the batch's predicate columns: exact
        ``pyarrow.compute`` calls where Arrow gives pandas' answer (see :meth:`_exact_arrow`),
        else a :class:`PandasOp` (no string column: those are cheaper to filter after the
        conversion); ``None`` (run in pandas after the conversion) otherwise."""
        import pyarrow.types as pat

        if _reads_nullable_extension(self, schema):
            # pandas' nullable dtypes answer NA (not NaN's False/True) and ~NA is NA: pandas
            #    evaluates the term on the converted columns (the mask drops NA rows)
            return PandasOp(self)
        exact = self._exact_arrow(schema)
        if exact is not None:
            return exact
        if not self.columns() <= set(schema.names):
            return None
        if any(
            pat.is_string(schema.field(c).type) or pat.is_large_string(schema.field(c).type)
            for c in self.columns()
        ):
            # converting strings for pandas is the costly part of a read: such a term (regex,
            # case=False, strings against numbers) runs after the conversion, on fewer rows
            return None
        return PandasOp(self)

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        """The predicate as ``pyarrow.compute`` calls whose result is, for every input, the
        mask pandas gives, or ``None``."""
        return None

    def _arrow_value(self, schema: pa.Schema) -> AField | AScalar | None:
        """This operand as an argument of an :class:`ArrowOp` (a column or a string literal),
        or ``None`` when it is not one."""
        return None

    def may_match(self, stats: Stats) -> bool:
        """Whether a partition with these ``(min, max)`` statistics may hold a row for which
        this predicate is true: ``False`` only when none can; ``True`` when unsure."""
        return True

    def key(self) -> tuple:
        """A hashable identity: two expressions with equal keys compute the same thing."""
        return (type(self).__name__,) + tuple(c.key() for c in self.children())

    def __repr__(self) -> str:
        return self.text()

    def text(self) -> str:
        """The expression as readable query-like text (``(x > 1)``, ``s.isin([...])``) for
        reprs, ``explain`` and error messages; ``NotImplementedError`` on the base class."""
        raise NotImplementedError


def _reads_nullable_extension(expr: Expr, schema: pa.Schema) -> bool:
    """Whether ``expr`` reads a column that pandas holds in a nullable extension dtype
    (``Int64``, ``Float64``, ``boolean``...: a ``from_pandas`` frame's, flagged on ``schema``)."""
    from .io.types import EXTENSION, dtype_flag

    names = set(schema.names)
    return any(
        (dtype_flag(schema.field(c)) or b"").startswith(EXTENSION) for c in expr.columns() if c in names
    )


class Col(Expr):
    """A column by name: ``df[name]`` in pandas."""

    def __init__(self, name: str):
        self.name = name

    def columns(self) -> set[str]:
        """``{name}``."""
        return {self.name}

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``df[name]``; raises ``KeyError`` when ``df`` has no such column."""
        return df[self.name]

    def _arrow_value(self, schema: pa.Schema) -> AField:
        return AField(self.name)

    def key(self) -> tuple:
        """``("Col", name)``."""
        return ("Col", self.name)

    def text(self) -> str:
        """The name, in backquotes when it is not a Python identifier."""
        return self.name if str(self.name).isidentifier() else f"`{self.name}`"


class Lit(Expr):
    """A constant (number, string, date, ...), broadcast by pandas against the column it
    meets."""

    def __init__(self, value: Any):
        self.value = value

    def evaluate(self, df: pd.DataFrame) -> Any:
        """The constant itself, whatever ``df`` is."""
        return self.value

    def _arrow_value(self, schema: pa.Schema) -> AScalar | None:
        return AScalar(self.value) if isinstance(self.value, str) else None

    def key(self) -> tuple:
        """``("Lit", type name, repr)``: ``1`` and ``1.0`` are different literals."""
        return ("Lit", type(self.value).__name__, repr(self.value))

    def text(self) -> str:
        """``repr`` of the constant."""
        return repr(self.value)


class ScalarRef(Lit):
    """A lazy scalar (a reduction such as ``df.x.mean()``, see :class:`hpcframe.Scalar`) used
    in an expression: ``df[df.x > df.x.mean()]``. Its value is computed before the rows that
    use it (:func:`hpcframe.execute.compute` resolves every reference of a computation first,
    with :func:`resolving`); from then on, within that computation, it is a literal
    (:class:`Lit`) in every evaluation — pandas', Arrow's and the statistics'. Before that,
    ``evaluate`` gives ``placeholder`` (a value of the reduction's dtype: the frames' empty
    ``meta`` are checked with it), and pushdown and pruning treat it as unknown.

    ``output``: the :class:`hpcframe.outputs.Output` that computes the value; ``label``: how
    it is shown (``sum(x)``)."""

    def __init__(self, output: Any, placeholder: Any, label: str):
        self.output, self.placeholder, self.label = output, placeholder, label

    @property
    def resolved(self) -> bool:
        """Whether the value is known (inside the computation that resolved it)."""
        return id(self) in _RESOLVED

    @property
    def value(self) -> Any:
        """The computed value, or ``placeholder`` while it is not known."""
        got = _RESOLVED.get(id(self))
        return got[1] if got is not None else self.placeholder

    def evaluate(self, df: pd.DataFrame) -> Any:
        """The computed value; ``placeholder`` on a frame without rows (the empty ``meta``
        a frame is checked with when written). Raises ``RuntimeError`` on rows while it is
        not computed (a plan evaluated outside :func:`hpcframe.execute.scalars_resolved`:
        an hpcframe bug, never a silent placeholder)."""
        if not self.resolved and len(df):
            raise RuntimeError(
                f"internal error: the lazy scalar {self.label} is used on rows before it is "
                f"computed; please report it (compute the scalar first as a workaround)"
            )
        return self.value

    def key(self) -> tuple:
        """A resolved reference is keyed as the literal of its value; an unresolved one by
        identity (two references of one reduction are the same only when resolved)."""
        if self.resolved:
            return super().key()
        return ("ScalarRef", id(self))

    def _arrow_value(self, schema: pa.Schema) -> AScalar | None:
        return super()._arrow_value(schema) if self.resolved else None

    def __reduce__(self):
        # sent to another process (a Dask worker) as the literal of its value: the
        # resolution (_RESOLVED) is of this process and this computation only
        if not self.resolved:
            raise TypeError(f"the lazy scalar {self.text()} is sent elsewhere before it is computed")
        return (Lit, (self.value,))

    def text(self) -> str:
        """``<sum(x)>``: the reduction it stands for (its value once resolved, as ``repr``)."""
        return repr(self.value) if self.resolved else f"<{self.label}>"


#: {id(ScalarRef): (the reference, its value)} of the computations running (see resolving)
_RESOLVED: dict[int, tuple[ScalarRef, Any]] = {}


def _known(e: Expr) -> TypeGuard[Lit]:
    """A literal whose value is known now (a resolved :class:`ScalarRef` is one)."""
    return isinstance(e, Lit) and (not isinstance(e, ScalarRef) or e.resolved)


@contextlib.contextmanager
def resolving(values: Mapping[ScalarRef, Any] | Iterable[tuple[ScalarRef, Any]]):
    """Inside, each :class:`ScalarRef` of ``values`` (pairs of reference and value) is a
    literal of that value; outside, it is unresolved again (a later computation computes it
    anew: the data may have changed). Nests (a reference resolved by an outer computation
    stays so)."""
    pairs = list(values.items()) if isinstance(values, Mapping) else list(values)
    added = [id(ref) for ref, _ in pairs if id(ref) not in _RESOLVED]
    for ref, value in pairs:
        if id(ref) not in _RESOLVED:
            _RESOLVED[id(ref)] = (ref, value)
    try:
        yield
    finally:
        for key in added:
            _RESOLVED.pop(key, None)


def scalar_refs(expr: Expr) -> list[ScalarRef]:
    """The :class:`ScalarRef` in ``expr``, each once, in the order met (depth first)."""
    out: list[ScalarRef] = []

    def visit(e: Expr) -> None:
        if isinstance(e, ScalarRef):
            if all(e is not r for r in out):
                out.append(e)
            return
        for c in e.children():
            visit(c)

    visit(expr)
    return out


class Bin(Expr):
    """A binary operation: comparison, arithmetic, or logical ``&``/``|``."""

    def __init__(self, op: str, left: Expr, right: Expr):
        if op not in _CMP and op not in _ARITH and op not in _LOGIC:
            raise ValueError(f"unknown operator {op!r}")
        self.op, self.left, self.right = op, left, right

    def children(self) -> tuple[Expr, ...]:
        """``(left, right)``."""
        return (self.left, self.right)

    def key(self) -> tuple:
        """``("Bin", op, left key, right key)``."""
        return ("Bin", self.op, self.left.key(), self.right.key())

    def text(self) -> str:
        """``(left op right)``, parenthesised."""
        return f"({self.left.text()} {self.op} {self.right.text()})"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``left <op> right`` as pandas computes it (a string compared with a datetime column
        is read as a Timestamp); raises what pandas raises, e.g. ``TypeError``."""
        fn = _CMP.get(self.op) or _ARITH.get(self.op) or _LOGIC[self.op]
        left = self.left.evaluate(df)
        right = _coerce_literal(left, self.right.evaluate(df))
        left = _coerce_literal(right, left)
        return fn(left, right)

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        if self.op in _LOGIC:
            left, right = self.left._exact_arrow(schema), self.right._exact_arrow(schema)
            if left is None or right is None:
                return None
            return (left & right) if self.op == "&" else (left | right)
        if self.op not in _ARROW_CMP:
            return None
        dated = _date_comparison(self.op, self.left, self.right, schema)
        if dated is not False:
            return dated
        fast = _number_comparison(self, schema)
        if fast is not None:
            return fast
        # strings with strings only: numbers, times and bools go to pandas (PandasOp), whose
        # dtypes depend on the batch (ints with nulls are float64) and on NumPy's promotion
        if (
            not (_is_plain_string(self.left, schema) and _is_plain_string(self.right, schema))
            or not self.columns()
        ):
            return None
        out = ArrowOp(_ARROW_CMP[self.op], self.left._arrow_value(schema), self.right._arrow_value(schema))
        # pandas: a comparison with NaN/None is False, except != which is True
        return ArrowOp("coalesce", out, AScalar(self.op == "!="))

    def may_match(self, stats: Stats) -> bool:
        """``&``/``|`` of the operands' answers; for ``column <cmp> literal`` (either side), whether
        ``[min, max]`` may hold a passing value in any dtype pandas may compare in; else True."""
        if self.op == "&":
            return self.left.may_match(stats) and self.right.may_match(stats)
        if self.op == "|":
            return self.left.may_match(stats) or self.right.may_match(stats)
        if self.op not in _CMP:
            return True
        op, col, lit = self.op, self.left, self.right
        if _known(col) and isinstance(lit, Col):
            op, col, lit = _FLIP[op], lit, col
        if not (isinstance(col, Col) and _known(lit)) or col.name not in stats:
            return True
        lo, hi = stats[col.name]
        if lo is None or hi is None:
            return True
        return any(_range_may_pass(op, a, b, v) for a, b, v in _domains(lo, hi, lit.value))


class Not(Expr):
    """``~arg``: the negation of a bool mask (bitwise NOT on integers, as in pandas)."""

    def __init__(self, arg: Expr):
        self.arg = arg

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def text(self) -> str:
        """``~arg``."""
        return f"~{self.arg.text()}"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``~arg`` on ``df``; raises ``TypeError`` where pandas does (e.g. on floats)."""
        return ~self.arg.evaluate(df)

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        inner = self.arg._exact_arrow(schema)
        return None if inner is None or not _is_predicate(self.arg) else ~inner


class Neg(Expr):
    """``-arg``: arithmetic negation."""

    def __init__(self, arg: Expr):
        self.arg = arg

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def text(self) -> str:
        """``-arg``."""
        return f"-{self.arg.text()}"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``-arg`` on ``df``; raises ``TypeError`` where pandas does (e.g. on strings)."""
        return -self.arg.evaluate(df)


class IsIn(Expr):
    """``arg.isin(values)``: pandas' membership test (``NaN`` in ``values`` finds missing
    values)."""

    def __init__(self, arg: Expr, values: Iterable[Any]):
        self.arg, self.values = arg, list(values)

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def key(self) -> tuple:
        """``("IsIn", arg key, reprs of the values)``."""
        return ("IsIn", self.arg.key(), tuple(repr(v) for v in self.values))

    def text(self) -> str:
        """``arg.isin([...])``."""
        return f"{self.arg.text()}.isin({self.values!r})"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``Series.isin(values)``: a bool Series, False for missing values unless ``values``
        holds one."""
        return self.arg.evaluate(df).isin(self.values)

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        import pyarrow as pa

        # strings in a string column only: pandas' isin on numbers compares in float64 where
        # ``==`` compares in float32, matches NaN but not None, ...: PandasOp does it
        if (
            not _is_plain_string(self.arg, schema)
            or not isinstance(self.arg, Col)
            or not all(isinstance(v, str) for v in self.values)
        ):
            return None
        values = pa.array(self.values, pa.large_string())
        return ArrowOp("coalesce", ArrowOp("is_in", AField(self.arg.name), value_set=values), AScalar(False))

    def may_match(self, stats: Stats) -> bool:
        """Whether some value lies in the column's ``[min, max]``; True when unsure or when
        ``values`` holds a missing value (statistics do not count those)."""
        if not isinstance(self.arg, Col) or self.arg.name not in stats:
            return True
        lo, hi = stats[self.arg.name]
        if lo is None or hi is None or any(_is_null(v) for v in self.values):
            return True  # isin([nan]) / isin([None]) finds the missing values: no stats on them
        return any(_range_may_pass("==", a, b, w) for v in self.values for a, b, w in _domains(lo, hi, v))


class Between(Expr):
    """``arg.between(low, high, inclusive)``: pandas' range test, the same mask as
    ``(arg >= low) & (arg <= high)`` with the bounds chosen by ``inclusive``."""

    def __init__(self, arg: Expr, low: Any, high: Any, inclusive: str = "both"):
        if inclusive not in ("both", "neither", "left", "right"):
            raise ValueError("inclusive must be 'both', 'neither', 'left' or 'right'")
        self.arg, self.low, self.high, self.inclusive = arg, low, high, inclusive

    def _as_and(self) -> Expr:
        lo_op = ">=" if self.inclusive in ("both", "left") else ">"
        hi_op = "<=" if self.inclusive in ("both", "right") else "<"
        return Bin("&", Bin(lo_op, self.arg, Lit(self.low)), Bin(hi_op, self.arg, Lit(self.high)))

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def key(self) -> tuple:
        """``("Between", arg key, repr(low), repr(high), inclusive)``."""
        return ("Between", self.arg.key(), repr(self.low), repr(self.high), self.inclusive)

    def text(self) -> str:
        """``arg.between(low, high)``."""
        return f"{self.arg.text()}.between({self.low!r}, {self.high!r})"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``Series.between(low, high, inclusive)``; raises ``TypeError`` where pandas cannot
        compare the column with the bounds."""
        return self.arg.evaluate(df).between(self.low, self.high, inclusive=self.inclusive)

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        return self._as_and()._exact_arrow(schema)

    def may_match(self, stats: Stats) -> bool:
        """As for the equivalent ``(arg >= low) & (arg <= high)``."""
        return self._as_and().may_match(stats)


class IsNa(Expr):
    """``arg.isna()`` (or ``arg.notna()`` with ``negate``): pandas' missing-value test, where
    None, NaN, NaT and pd.NA are all missing."""

    def __init__(self, arg: Expr, negate: bool = False):
        self.arg, self.negate = arg, negate

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def key(self) -> tuple:
        """``("IsNa", arg key, negate)``."""
        return ("IsNa", self.arg.key(), self.negate)

    def text(self) -> str:
        """``arg.isna()`` or ``arg.notna()``."""
        return f"{self.arg.text()}.{'notna' if self.negate else 'isna'}()"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``Series.isna()`` (``notna()`` with ``negate``): a bool Series."""
        s = self.arg.evaluate(df)
        return s.notna() if self.negate else s.isna()

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        if not isinstance(self.arg, Col) or self.arg.name not in schema.names:
            return None
        isnull = ArrowOp("is_null", AField(self.arg.name), nan_is_null=True)
        return ~isnull if self.negate else isnull


class StrMatch(Expr):
    """``str.startswith`` / ``str.endswith`` / ``str.contains`` on a string column."""

    def __init__(self, arg: Expr, method: str, pattern: str, regex: bool = True, case: bool = True):
        if method not in ("startswith", "endswith", "contains"):
            raise ValueError(method)
        if not isinstance(pattern, str):
            raise TypeError(f"str.{method} expects a string pattern, got {type(pattern).__name__}")
        self.arg, self.method, self.pattern = arg, method, pattern
        self.regex, self.case = regex, case

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def key(self) -> tuple:
        """``("StrMatch", arg key, method, pattern, regex, case)``."""
        return ("StrMatch", self.arg.key(), self.method, self.pattern, self.regex, self.case)

    def text(self) -> str:
        """``arg.str.<method>(pattern[, case=False][, regex=False])``."""
        flags = "".join(
            [
                ", case=False" if not self.case else "",
                ", regex=False" if self.method == "contains" and not self.regex else "",
            ]
        )
        return f"{self.arg.text()}.str.{self.method}({self.pattern!r}{flags})"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``Series.str.<method>(pattern)`` as a bool Series, missing values False; raises
        ``AttributeError`` on a column that is not strings, ``re.error`` on a bad regex."""
        s = self.arg.evaluate(df)
        if self.method == "contains":
            out = s.str.contains(self.pattern, regex=self.regex, case=self.case, na=False)
        else:
            out = getattr(s.str, self.method)(self.pattern, na=False)
        return out.astype(bool)

    def _exact_arrow(self, schema: pa.Schema) -> _Pred | None:
        # a dictionary (category) column goes to PandasOp: pandas' .str on the categories
        if not isinstance(self.arg, Col) or not self.case or not _is_plain_string(self.arg, schema):
            return None
        field = AField(self.arg.name)
        if self.method == "startswith":
            out = ArrowOp("starts_with", field, pattern=self.pattern)
        elif self.method == "endswith":
            out = ArrowOp("ends_with", field, pattern=self.pattern)
        elif not self.regex or not any(ch in self.pattern for ch in ".^$*+?{}[]\\|()"):
            out = ArrowOp("match_substring", field, pattern=self.pattern)
        elif _same_in_re2(self.pattern):
            out = ArrowOp("match_substring_regex", field, pattern=self.pattern)
        else:
            return None
        return ArrowOp("coalesce", out, AScalar(False))


#: regex patterns that Python's ``re`` and Arrow's RE2 read alike: literal characters,
#: ``.``, ``*``, ``+``, ``?``, ``|``, groups, classes and ``^`` — no escapes (``\\s``, ``\\w``,
#: ``\\d``, ``\\b`` differ on non-ASCII data), no ``$`` (Python also matches before a final
#: newline), no ``{}`` and no ``(?`` constructs (lookaround, flags: RE2 has none or others)
_RE2_ALIKE = r"[^\\${}]*"


def _same_in_re2(pattern: str) -> bool:
    """Whether ``str.contains(pattern)`` (case-sensitive) finds the same strings with
    Arrow's RE2 as with Python's ``re`` (pandas' Arrow-backed strings use RE2 for these
    patterns too); a pattern ``re`` refuses is left to pandas (its error)."""
    import re

    if "(?" in pattern or not re.fullmatch(_RE2_ALIKE, pattern):
        return False
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


#: Accessor members that are properties in pandas (read, not called).
PROPERTIES = {
    "dt": frozenset(
        {
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "weekday",
            "dayofweek",
            "day_of_week",
            "dayofyear",
            "day_of_year",
            "quarter",
            "date",
        }
    )
}
#: The pandas methods :class:`Method` may call, by accessor ("" for the Series itself):
#: element-wise ones only, so that every block computes its rows as the whole frame would.
METHODS = {
    "": frozenset({"abs", "round", "clip", "fillna", "astype"}),
    "dt": PROPERTIES["dt"] | {"floor", "ceil", "normalize"},
    "str": frozenset({"len", "lower", "upper", "strip", "slice", "replace"}),
}


class Method(Expr):
    """An element-wise pandas method of the values, with constant arguments:
    ``arg.abs()``, ``arg.round(2)``, ``arg.dt.year``, ``arg.str.slice(0, 3)``, ... (the
    names in :data:`METHODS`). Evaluated in pandas (a filter on it runs while reading, on
    the block's pandas values)."""

    def __init__(self, arg: Expr, accessor: str, name: str, args: tuple = (), kwargs: tuple = ()):
        if name not in METHODS.get(accessor, ()):
            where = f".{accessor}" if accessor else ""
            raise AttributeError(f"hpcframe does not offer Series{where}.{name}")
        self.arg, self.accessor, self.name = arg, accessor, name
        self.args, self.kwargs = tuple(args), tuple(sorted(kwargs))
        for value in self.args + tuple(v for _, v in self.kwargs):
            if isinstance(value, Expr):
                raise TypeError(f"{name}() takes constants here, not a column expression")

    def children(self) -> tuple[Expr, ...]:
        """``(arg,)``."""
        return (self.arg,)

    def key(self) -> tuple:
        """``("Method", arg key, accessor, name, args, kwargs)`` (constants by ``repr``)."""
        return ("Method", self.arg.key(), self.accessor, self.name, repr(self.args), repr(self.kwargs))

    def text(self) -> str:
        """``arg.name(args)`` or ``arg.dt.year``."""
        where = f".{self.accessor}" if self.accessor else ""
        if self.name in PROPERTIES.get(self.accessor, ()):
            return f"{self.arg.text()}{where}.{self.name}"
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{self.arg.text()}{where}.{self.name}({', '.join(parts)})"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """The pandas method on the values; raises what pandas raises (``AttributeError``
        for ``.dt`` on a column that is not times, ``TypeError`` for ``abs`` of strings...)."""
        values = self.arg.evaluate(df)
        owner = getattr(values, self.accessor) if self.accessor else values
        member = getattr(owner, self.name)
        if self.name in PROPERTIES.get(self.accessor, ()):
            return member
        return member(*self.args, **dict(self.kwargs))


class Where(Expr):
    """``arg.where(cond, other)`` (``arg.mask(cond, other)`` with ``mask``): the values where
    ``cond`` is true (false), else ``other`` (a constant or an expression; NaN by default)."""

    def __init__(self, arg: Expr, cond: Expr, other: Expr, mask: bool = False):
        self.arg, self.cond, self.other, self.mask = arg, cond, other, mask

    def children(self) -> tuple[Expr, ...]:
        """``(arg, cond, other)``."""
        return (self.arg, self.cond, self.other)

    def key(self) -> tuple:
        """``("Where", arg, cond, other, mask)`` keys."""
        return ("Where", self.arg.key(), self.cond.key(), self.other.key(), self.mask)

    def text(self) -> str:
        """``arg.where(cond, other)`` or ``arg.mask(cond, other)``."""
        name = "mask" if self.mask else "where"
        return f"{self.arg.text()}.{name}({self.cond.text()}, {self.other.text()})"

    def evaluate(self, df: pd.DataFrame) -> Any:
        """``Series.where``/``Series.mask`` as pandas computes them."""
        values, cond, other = self.arg.evaluate(df), self.cond.evaluate(df), self.other.evaluate(df)
        return values.mask(cond, other) if self.mask else values.where(cond, other)


def _naive_timestamp(v):
    """``v`` as a tz-naive pandas Timestamp if it is a date/time value, else None."""
    import datetime

    if isinstance(v, (datetime.date, np.datetime64)):
        import pandas as pd

        ts = pd.Timestamp(v)
        return ts if ts.tz is None else None
    return None


def _domains(lo, hi, v):
    """``(lo, hi, v)`` in each domain pandas may compare a column with these statistics and
    the literal ``v`` in, as the statistics do not say the column's dtype: as they are (ints
    exactly), in float64 (ints against floats, or an int column with nulls, which pandas holds
    as float64: ``float()`` is monotonic, so the range stays a bound), and with a Python number
    rounded to float32 (a float32 column: NumPy converts the Python scalar to float32)."""
    out = [(lo, hi, v)]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return out
    try:
        with np.errstate(over="ignore"):
            f = float(v)
            out.append((float(lo), float(hi), f))
            if isinstance(v, (int, float)):  # weak Python scalars: float32 column's dtype
                out.append((lo, hi, float(np.float32(f))))
    except (TypeError, ValueError, OverflowError):
        return [(None, None, None)]  # unknown: may match
    return out


def _range_may_pass(op, lo, hi, v) -> bool:
    """Whether a value in ``[lo, hi]`` may satisfy ``value <op> v``."""
    if lo is None or hi is None:
        return True
    try:
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
    except (TypeError, ValueError, OverflowError):
        return True
    return True


def _is_null(v) -> bool:
    """None, NaN, NaT, pd.NA: a value that statistics (which skip missing values) cannot
    bound."""
    import pandas as pd

    try:
        r = pd.isna(v)
        return bool(r) if np.ndim(r) == 0 else False
    except (TypeError, ValueError):
        return False


def _is_predicate(e: Expr) -> bool:
    """Whether ``e`` always gives a bool mask without missing values (a comparison, not a
    bool column: ``bn & (x > 0)`` is not ``bn`` and ``x > 0`` filtered one after the other
    when ``bn`` has nulls, which pandas refuses as a mask but treats as False in ``&``)."""
    if isinstance(e, Not):
        return _is_predicate(e.arg)
    if isinstance(e, Bin) and e.op in _LOGIC:
        return _is_predicate(e.left) and _is_predicate(e.right)
    return isinstance(e, (IsIn, Between, IsNa, StrMatch)) or (isinstance(e, Bin) and e.op in _CMP)


def _coerce_literal(other, value):
    """A string literal compared with a datetime column becomes a Timestamp (as in pandas)."""
    return datetime_literal(value, getattr(other, "dtype", None))


def datetime_literal(value, dtype):
    """``value`` as pandas reads it when compared with a column of ``dtype``: a string
    compared with a datetime column is a Timestamp, localized to the column's time zone when
    it names none. Anything else, and a string that is not a date, is returned unchanged
    (pandas then finds such a string equal to nothing and refuses ``<``)."""
    if not isinstance(value, str) or getattr(dtype, "kind", None) != "M":
        return value
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return value
    if ts is pd.NaT:
        return value
    tz = getattr(dtype, "tz", None)
    if tz is not None and ts.tz is None:
        ts = ts.tz_localize(tz)
    return ts


def dtype_on(expr: Expr, meta):
    """The dtype ``expr`` has over the columns of the empty frame ``meta`` (evaluated there:
    raises the ``TypeError`` pandas raises for operands that do not fit)."""
    import pandas as pd

    value = expr.evaluate(meta)
    return value.dtype if isinstance(value, pd.Series) else np.asarray(value).dtype


def _date_comparison(op, left, right, schema):
    """A date column compared with a timestamp literal, as a comparison of dates (no cast of
    the column): ``d <= 1998-09-02 10:00`` is ``d <= 1998-09-02``; or with another date
    column of the same type (pandas compares the two ``datetime64[ms]`` columns, whose values
    are those dates at midnight: the same order; a missing date compares False, or True for
    ``!=``). ``False`` when the comparison is not of that form, ``None`` when it cannot be
    translated."""
    import datetime

    import pandas as pd
    import pyarrow as pa

    if isinstance(left, Col) and isinstance(right, Col):
        t = _arrow_type(left, schema)
        if t is None or not pa.types.is_date(t) or _arrow_type(right, schema) != t:
            return False
        out = ArrowOp(_ARROW_CMP[op], AField(left.name), AField(right.name))
        return ArrowOp("coalesce", out, AScalar(op == "!="))
    if _known(left) and isinstance(right, Col):
        op, left, right = _FLIP[op], right, left
    if not (isinstance(left, Col) and _known(right)):
        return False
    t = _arrow_type(left, schema)
    if t is None or not pa.types.is_date(t):
        return False
    v = right.value
    if isinstance(v, datetime.date) and not isinstance(v, datetime.datetime):
        return None  # pandas: a datetime64 column is not comparable with a datetime.date
    ts = _naive_timestamp(v)
    if ts is None or ts is pd.NaT:
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


def _number_comparison(e: Bin, schema: pa.Schema) -> NumCmp | None:
    """A :class:`NumCmp` for ``column <op> literal`` when Arrow's comparison is NumPy's, else
    None: a float64 column with a float that float64 holds (not a ``np.longdouble`` between two
    float64 values), or an int that float64 holds exactly (NumPy converts it to float64); an
    integer column (not uint64) with a Python or signed NumPy integer in
    the column's range (NumPy compares exactly)."""
    import pyarrow as pa
    import pyarrow.types as pat

    op, col, lit = e.op, e.left, e.right
    if _known(col) and isinstance(lit, Col):
        op, col, lit = _FLIP[op], lit, col
    if not (isinstance(col, Col) and _known(lit)):
        return None
    t, v = _arrow_type(col, schema), lit.value
    if t is None or isinstance(v, (bool, np.bool_)):
        return None
    if pat.is_float64(t):
        # (a float wider than float64, np.longdouble, compares in its own precision)
        exact = (
            isinstance(v, float)
            or (isinstance(v, np.floating) and (v.dtype.itemsize <= 8 or float(v) == v))
            or (isinstance(v, (int, np.signedinteger)) and abs(int(v)) <= 2**53)
        )
        if not exact:
            return None
        value = pa.scalar(float(v), pa.float64())
    elif pat.is_integer(t) and not pat.is_uint64(t):
        if not isinstance(v, (int, np.signedinteger)):
            return None
        info = np.iinfo(t.to_pandas_dtype())
        if not info.min <= int(v) <= info.max:
            return None
        value = pa.scalar(int(v), pa.int64())
    else:
        return None
    return NumCmp(op, col.name, value, PandasOp(Bin(op, col, lit)))


def _arrow_type(e: Expr, schema: pa.Schema) -> pa.DataType | None:
    if isinstance(e, Col):
        return schema.field(e.name).type if e.name in schema.names else None
    return None


def _is_plain_string(e: Expr, schema: pa.Schema) -> bool:
    """A string literal, or a (non-dictionary) string column of ``schema``."""
    import pyarrow.types as pat

    if _known(e):
        return isinstance(e.value, str)
    t = _arrow_type(e, schema)
    return t is not None and (pat.is_string(t) or pat.is_large_string(t))


def conjuncts(e: Expr | None) -> list[Expr]:
    """The terms of a top-level ``&`` chain."""
    if e is None:
        return []
    if isinstance(e, Bin) and e.op == "&" and _is_predicate(e.left) and _is_predicate(e.right):
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def disjuncts(e: Expr) -> list[Expr]:
    """The terms of a top-level ``|`` chain of predicates (``[e]`` when ``e`` is not one)."""
    if isinstance(e, Bin) and e.op == "|" and _is_predicate(e.left) and _is_predicate(e.right):
        return disjuncts(e.left) + disjuncts(e.right)
    return [e]


def implied_by(e: Expr, usable: Callable[[Expr], bool]) -> Expr | None:
    """A predicate over the terms that ``usable`` accepts which is true wherever ``e`` is
    (``None`` when there is none): for ``e`` an ``|`` of ``&`` chains (each a predicate,
    see :func:`_is_predicate`), the ``|`` over each chain's usable terms — every chain must
    have one. A row passing ``e`` passes one chain, so every term of it, so the result: a
    filter on one side of a join derived from a condition over both (TPC-H Q19)."""
    chains = disjuncts(e)
    if len(chains) < 2:
        return None
    parts: list[Expr] = []
    for chain in chains:
        terms = [t for t in conjuncts(chain) if usable(t)]
        if not terms:
            return None
        parts.append(balanced(terms, _and))  # type: ignore[arg-type]  # terms is not empty
    return balanced(parts, _or)


def _and(a: Expr, b: Expr) -> Expr:
    return Bin("&", a, b)


def _or(a: Expr, b: Expr) -> Expr:
    return Bin("|", a, b)


def balanced(items: Iterable[_T], combine: Callable[[_T, _T], _T]) -> _T | None:
    """``combine`` (associative, e.g. ``&``) over ``items`` as a balanced tree: log2(n) deep,
    so that evaluating hundreds of terms recursively stays far from the recursion limit.
    ``None`` for no items."""
    items = list(items)
    if not items:
        return None
    while len(items) > 1:
        items = [
            combine(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
    return items[0]


def and_all(terms: list[Expr]) -> Expr | None:
    """The conjunction of ``terms`` (a balanced tree of ``&``), or None for no terms."""
    return balanced(terms, lambda a, b: Bin("&", a, b))


# string predicates evaluated on the dictionaries of dictionary-encoded columns
def _pred_columns(p: Any) -> set[str] | None:
    """The columns an Arrow-side predicate node reads; ``None`` for a node it cannot tell."""
    if isinstance(p, AField):
        return {p.name}
    if isinstance(p, AScalar):
        return set()
    if isinstance(p, ArrowOp):
        out: set[str] = set()
        for a in p.args:
            got = _pred_columns(a)
            if got is None:
                return None
            out |= got
        return out
    if isinstance(p, PandasOp):
        return set(p.expr.columns())
    if isinstance(p, NumCmp):
        return {p.name} | set(p.fallback.expr.columns())
    if isinstance(p, KeyIn):
        return {p.name}
    return None


def _arrow_only(p: Any) -> bool:
    """Whether ``p`` is made of Arrow compute calls, columns and constants only (each an
    elementwise function of its row: no pandas evaluation, no per-batch dtype choice)."""
    if isinstance(p, (AField, AScalar)):
        return True
    return isinstance(p, ArrowOp) and all(_arrow_only(a) for a in p.args)


def _and_terms(p: Any) -> list:
    """The operands of a (balanced) tree of ``and_`` nodes."""
    if isinstance(p, ArrowOp) and p.fn == "and_" and not p.kw:
        return [t for a in p.args for t in _and_terms(a)]
    return [p]


#: the Arrow functions of :class:`ArrowOp` trees whose answer for a row depends on that row
#: alone and which raise no error that depends on a value (only, e.g., on a regex pattern):
#: a term made of them gives each row the same answer on any subset of the batch
_ROWWISE = frozenset(
    {
        "and_",
        "or_",
        "invert",
        "coalesce",
        "is_in",
        "is_null",
        "equal",
        "not_equal",
        "less",
        "less_equal",
        "greater",
        "greater_equal",
        "starts_with",
        "ends_with",
        "match_substring",
        "match_substring_regex",
    }
)


def _rowwise(p: Any, table: pa.Table) -> bool:
    """Whether the Arrow-side predicate node ``p`` answers each row of ``table`` from that row
    alone, the same on any subset of the rows (so it may be evaluated on the rows the other
    terms keep): Arrow calls of :data:`_ROWWISE`, and a :class:`NumCmp` unless its column is
    an integer column with nulls in this batch (then pandas' float64 evaluation of the whole
    batch decides; a subset without nulls would compare exactly)."""
    import pyarrow.types as pat

    if isinstance(p, (AField, AScalar)):
        return True
    if isinstance(p, ArrowOp):
        return p.fn in _ROWWISE and all(_rowwise(a, table) for a in p.args)
    if isinstance(p, NumCmp):
        col = table.column(p.name)
        return not (pat.is_integer(col.type) and col.null_count)
    return False


def _costly(table: pa.Table, cols: set[str]) -> bool:
    """Whether reading ``cols`` of ``table`` for a predicate costs a conversion per row
    (decimals become float64, dictionary-encoded strings are decoded)."""
    import pyarrow.types as pat

    from .io.types import is_string

    for name in cols:
        t = table.schema.field(name).type
        if pat.is_decimal(t) or is_string(t) or pat.is_dictionary(t):
            return True
    return False


def _as_numpy_mask(answer: Any, n: int) -> np.ndarray:
    """An Arrow predicate's answer (array, chunked array or constant) as a NumPy bool array
    of ``n`` rows, a missing answer False (a filter drops the row either way)."""
    import pyarrow as pa

    from .io.types import mask_to_numpy

    if isinstance(answer, (pa.Array, pa.ChunkedArray)):
        return mask_to_numpy(answer)
    value = answer.as_py() if hasattr(answer, "as_py") else answer
    return np.full(n, bool(value), dtype=bool)


def evaluate_with_dictionaries(pred: _Pred, table: pa.Table, normalize: Callable, strings) -> Any:
    """``pred(normalize(table))`` — the mask of an Arrow predicate on a batch read with
    dictionary-encoded string columns — without decoding the dictionaries, or converting
    other columns, where it need not. ``strings`` names the dataset's string columns (a
    reader hands them over as dictionaries; a dictionary column of another declared type, a
    pandas categorical, is left alone). The mask is a bool array; a row whose answer is
    missing is False in it (a filter drops it either way).

    The ``&``-terms are evaluated in this order, each and-ed into the mask:

    1. a term that reads only one dictionary-encoded column and is made of Arrow calls only
       (each elementwise: ``==``, ``isin``, ``startswith``, ...) is evaluated once per entry
       of each chunk's dictionary, plus one null entry, and the answers are taken by the
       chunk's indices (a null index takes the null entry's answer): the same values,
       element for element, as evaluating it on the decoded strings, at the cost of the
       dictionary. A dictionary larger than its chunk is decoded instead (nothing to save);
    2. a term whose answer for a row may depend on the other rows of the batch (a
       :class:`PandasOp`; a :class:`NumCmp` on an integer column with nulls: see
       :func:`_rowwise`), and a row-wise term over columns that need no conversion (dates,
       numbers), sees the whole batch, normalized as usual;
    3. the other row-wise terms (over decimals or strings, which normalizing converts) see
       only the rows kept so far, when they are fewer than half: a row-wise term gives
       those rows the same answers there, and the conversion is paid for them alone. When
       no row is kept they see the first row (any error of the term is raised as the whole
       batch would raise it; its answers are not used);
    4. join-key terms (:class:`KeyIn`) come last, on the rows the other terms keep (their
       hash lookups are the costly part, and their count of dropped rows is then the
       join's)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    from .io.types import is_string, mask_to_arrow, mask_to_numpy

    terms = _and_terms(pred)
    n = table.num_rows
    encoded = {
        name
        for name, c in zip(table.column_names, table.columns)
        if name in strings and pat.is_dictionary(c.type) and is_string(c.type.value_type)
    }
    keys, on_dicts, trees, whole, later = [], [], [], [], []
    for term in terms:
        if isinstance(term, KeyIn):
            keys.append(term)
            continue
        cols = _pred_columns(term)
        if cols is not None and len(cols) == 1 and cols <= encoded and _arrow_only(term):
            on_dicts.append((term, next(iter(cols))))
        elif _dictionary_tree(term, encoded):
            trees.append(term)
        elif cols is not None and _rowwise(term, table) and _costly(table, cols):
            later.append((term, cols))
        else:
            whole.append((term, cols))
    if not keys and not on_dicts and not trees and not later:
        return pred(normalize(table))  # nothing to order
    if not on_dicts and not trees and not whole and not later:
        return balanced([k(table) for k in keys], pc.and_)
    mask: np.ndarray | None = None  # None: every row kept so far
    for term, name in on_dicts:
        got = _on_dictionary(term, name, table.column(name), normalize)
        mask = got if mask is None else mask & got
    for term in trees:
        got = _on_tree(term, table, normalize, encoded)
        mask = got if mask is None else mask & got
    if whole:  # one Arrow evaluation of their conjunction, one conversion of its answer
        conj = balanced([term for term, _ in whole], lambda a, b: a & b)
        assert conj is not None
        got = _as_numpy_mask(conj(normalize(table.select(_needed(table, [c for _, c in whole])))), n)
        mask = got if mask is None else mask & got
    if later:
        needed = _needed(table, [cols for _, cols in later])
        kept = n if mask is None else int(np.count_nonzero(mask))
        if 2 * kept >= n:
            sub = normalize(table.select(needed))
            for term, _ in later:
                got = _as_numpy_mask(term(sub), n)
                mask = got if mask is None else mask & got
        elif kept:
            assert mask is not None
            where = np.flatnonzero(mask)
            sub = normalize(table.select(needed).filter(mask_to_arrow(mask)))
            answers = np.ones(kept, dtype=bool)
            for term, _ in later:
                answers &= _as_numpy_mask(term(sub), kept)
            mask[where] = answers
        else:
            sub = normalize(table.select(needed).slice(0, 1))
            for term, _ in later:
                term(sub)  # for its errors only; no row is kept
    for k in keys:  # join keys last, looked up only for the rows the other terms keep
        if mask is None:
            mask = _as_numpy_mask(k(table), n)
            continue
        where = np.flatnonzero(mask)
        mask[where] = mask_to_numpy(k(table.select([k.name]).take(pa.array(where))))
    assert mask is not None
    return mask_to_arrow(mask)


def _null_free(p: Any) -> bool:
    """Whether the Arrow-side predicate node ``p`` never answers null: a ``coalesce`` whose
    last argument is a bool constant (how comparisons, ``isin`` and string tests are built:
    missing values answer as pandas answers them), a :class:`NumCmp` (coalesced too, or its
    pandas fallback's bool mask), and ``and_``/``or_`` of such nodes."""
    if isinstance(p, NumCmp):
        return True
    if not isinstance(p, ArrowOp) or p.kw:
        return False
    if p.fn == "coalesce" and p.args and isinstance(p.args[-1], AScalar):
        last = p.args[-1].value
        return isinstance(last.as_py() if hasattr(last, "as_py") else last, bool)
    return p.fn in ("and_", "or_") and all(_null_free(a) for a in p.args)


def _one_dictionary(p: Any, encoded: set) -> str | None:
    """The dictionary-encoded column ``p`` alone reads when it is made of Arrow calls only
    (evaluable on that column's dictionaries: :func:`_on_dictionary`), else ``None``."""
    cols = _pred_columns(p)
    if cols is not None and len(cols) == 1 and cols <= encoded and _arrow_only(p):
        return next(iter(cols))
    return None


def _dictionary_tree(p: Any, encoded: set) -> bool:
    """Whether ``p`` is an ``and_``/``or_`` tree that never answers null (:func:`_null_free`)
    with a branch over one dictionary-encoded column (TPC-H q19's part predicate: an ``|`` of
    ``&``-chains over ``p_brand``, ``p_container`` and ``p_size``): :func:`_on_tree` then
    evaluates those branches on the dictionaries instead of decoding the strings."""
    if not (isinstance(p, ArrowOp) and p.fn in ("and_", "or_") and _null_free(p)):
        return False

    def has_branch(q: Any) -> bool:
        if _one_dictionary(q, encoded) is not None:
            return True
        return isinstance(q, ArrowOp) and q.fn in ("and_", "or_") and any(has_branch(a) for a in q.args)

    return has_branch(p)


def _on_tree(p: Any, table: pa.Table, normalize: Callable, encoded: set) -> np.ndarray:
    """A :func:`_dictionary_tree` predicate on the whole batch as a NumPy bool array: each
    branch over one dictionary-encoded column on its dictionaries (:func:`_on_dictionary`),
    each other branch on its own columns of the normalized batch, the ``and_``/``or_``
    nodes as NumPy ``&``/``|``. No node answers null (:func:`_null_free`), so these are
    Arrow's ``and_``/``or_`` element for element."""
    name = _one_dictionary(p, encoded)
    if name is not None:
        return _on_dictionary(p, name, table.column(name), normalize)
    if isinstance(p, ArrowOp) and p.fn in ("and_", "or_"):
        parts = [_on_tree(a, table, normalize, encoded) for a in p.args]
        out = parts[0]
        for got in parts[1:]:
            out = out & got if p.fn == "and_" else out | got
        return out
    cols = _pred_columns(p)
    sub = normalize(table.select(_needed(table, [cols])))
    return _as_numpy_mask(p(sub), table.num_rows)


def _needed(table: pa.Table, column_sets: list) -> list[str]:
    """The columns of ``table`` (in its order) that the terms reading ``column_sets`` need
    (all of them when one set is ``None``: a term that cannot tell)."""
    if any(cols is None for cols in column_sets):
        return list(table.column_names)
    want = set().union(*column_sets)
    return [c for c in table.column_names if c in want]


def _on_dictionary(term: _Pred, name: str, col: pa.ChunkedArray, normalize: Callable) -> np.ndarray:
    """``term`` (elementwise over column ``name``) on each chunk of the dictionary column
    ``col``, through the chunk's dictionary (see :func:`evaluate_with_dictionaries`), as a
    NumPy bool array (a missing answer False)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for chunk in col.chunks:
        values = chunk.dictionary
        if len(values) > len(chunk):
            decoded = pa.table({name: chunk.dictionary_decode()})
            out.append(_as_numpy_mask(term(normalize(decoded)), len(chunk)))
            continue
        entries = pa.concat_arrays([values, pa.nulls(1, values.type)])
        answers = _as_numpy_mask(term(normalize(pa.table({name: entries}))), len(entries))
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, pa.scalar(len(values), indices.type))
        out.append(np.take(answers, indices.to_numpy(zero_copy_only=False)))
    if not out:
        return _as_numpy_mask(term(normalize(pa.table({name: col}))), len(col))
    return np.concatenate(out) if len(out) > 1 else out[0]


class KeyIn(_Pred):
    """The rows whose int64 key ``name`` is among ``keys`` (a ``pandas.Index``: the distinct
    keys of the other side of a join, where the other rows cannot change its result — the
    broadcast side or key filter of an inner join, the rows to filter of a semi/anti join,
    the reading join of a reduced join; see ``joins._Side.key_term`` and ``key_terms``). A
    block with a missing key is kept whole. Counts the rows it drops in ``dropped``. Keys
    spanning a compact range are looked up in a table of one flag per key of the range (one
    ``take`` per block), or for a wider range in a bitset of the range (a few vector
    operations per row); others in the Index's hash table, built once for all blocks (Arrow's
    ``is_in`` would hash the keys again for every block)."""

    #: a bitset is used when the keys' range is at most this many bits (64 MiB of bits)
    BITSET_MAX = 1 << 29
    #: the bitset is built this many bits at a time (a multiple of 8; a 64 MiB bool array)
    BITSET_PASS = 1 << 26
    #: a range of at most this many keys gets one bool per key instead (16 MiB): a block's
    #: mask is then one ``take`` (a twentieth of the bitset's time on 500,000 rows)
    FLAGS_MAX = 1 << 24

    def __init__(self, name: str, keys: pd.Index):
        self.name, self.keys, self.dropped = name, keys, 0
        values = keys.to_numpy()
        self.low = int(values.min()) if len(values) else 0
        span = int(values.max()) - self.low + 1 if len(values) else 0
        self.bits = self.flags = None
        if 0 < span <= self.FLAGS_MAX:
            # flags[k - low] for key k, and a last False for every value outside the range
            flags = np.zeros(span + 1, dtype=bool)
            flags[values.astype(np.int64) - np.int64(self.low)] = True
            self.flags, self.span = flags, span
        elif 0 < span <= self.BITSET_MAX:
            off = values.astype(np.int64) - np.int64(self.low)
            # one byte more: bit ``span`` (every value outside the range, see member) is 0
            bits = np.zeros((span + 7) // 8 + 1, dtype=np.uint8)
            for start in range(0, span, self.BITSET_PASS):  # a bool array of one pass at a time
                stop = min(span, start + self.BITSET_PASS)
                flags = np.zeros(stop - start, dtype=bool)
                flags[off[(off >= start) & (off < stop)] - start] = True
                bits[start // 8 : (stop + 7) // 8] = np.packbits(flags, bitorder="little")
            self.bits, self.span = bits, span

    def __call__(self, table: pa.Table) -> Any:
        """The bool mask of ``table``'s rows whose key may match."""
        import pyarrow as pa

        from .io.types import mask_to_arrow

        col = table.column(self.name)
        n = table.num_rows
        if col.type != pa.int64() or col.null_count:
            # a file storing a narrower type, or missing keys (pandas makes the column
            # float64, whose merge with int64 keys matches by rounded value): the join decides
            return mask_to_arrow(np.ones(n, dtype=bool))
        mask = self.member(col.to_numpy())
        self.dropped += n - int(np.count_nonzero(mask))
        return mask_to_arrow(mask)

    def member(self, values: np.ndarray) -> np.ndarray:
        """Whether each of the int64 ``values`` is among the keys (bool array)."""
        if self.flags is None and self.bits is None:
            return self.keys.get_indexer(values) >= 0
        # value - low modulo 2**64 is below span exactly for the values in the range
        # (low + span <= 2**63); every other value is sent to the last flag or bit, False
        off = values.view(np.uint64) - np.uint64(self.low % (1 << 64))
        np.minimum(off, np.uint64(self.span), out=off)
        if self.flags is not None:
            return self.flags.take(off.view(np.int64))
        assert self.bits is not None
        byte = self.bits.take((off >> np.uint64(3)).view(np.int64))  # bit ``span`` is 0
        np.right_shift(byte, (off & np.uint64(7)).astype(np.uint8), out=byte)
        np.bitwise_and(byte, 1, out=byte)
        return byte.view(bool)

    def __str__(self) -> str:
        return f"key_in({self.name}, {len(self.keys)} keys, #{id(self):x})"


# the share of a partition's rows a range filter keeps, from its statistics
def range_of(term: Expr) -> tuple[str, Any, Any] | None:
    """``(column, low, high)`` when ``term`` bounds one column by constants
    (``col < v``, ``v <= col``, ``col.between(a, b)``; ``None`` for an open end), else
    ``None``. Only for estimates: inclusive and exclusive ends are not told apart."""
    if isinstance(term, Between) and isinstance(term.arg, Col):
        return term.arg.name, term.low, term.high
    if not isinstance(term, Bin) or term.op not in ("<", "<=", ">", ">="):
        return None
    op, left, right = term.op, term.left, term.right
    if _known(left) and isinstance(right, Col):
        op, left, right = _FLIP[op], right, left
    if not (isinstance(left, Col) and _known(right)):
        return None
    return (left.name, None, right.value) if op in ("<", "<=") else (left.name, right.value, None)


def line_position(v: Any) -> float | None:
    """``v`` on a number line shared by the statistics of a column and its literals
    (numbers as floats, dates and times as nanoseconds), or ``None``."""
    import datetime

    if v is None or isinstance(v, (bool, np.bool_, str, bytes)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        return f if np.isfinite(f) else None
    if isinstance(v, (datetime.date, np.datetime64)):
        import pandas as pd

        try:
            ts = pd.Timestamp(v)
        except (ValueError, OverflowError):
            return None
        if ts is pd.NaT:
            return None
        return float((ts.tz_convert(None) if ts.tz is not None else ts).value)
    return None


def range_share(bounds: tuple[Any, Any], stats: tuple[Any, Any] | None) -> float:
    """The share of a partition's rows whose column lies in ``bounds`` (``(low, high)``,
    ``None`` open), if its values were spread evenly between the statistics' ``(min,
    max)``; 1.0 when that cannot be told."""
    if stats is None:
        return 1.0
    lo, hi = line_position(stats[0]), line_position(stats[1])
    if lo is None or hi is None or hi < lo:
        return 1.0
    a = lo if bounds[0] is None else line_position(bounds[0])
    b = hi if bounds[1] is None else line_position(bounds[1])
    if a is None or b is None:
        return 1.0
    a, b = max(a, lo), min(b, hi)
    if b < a:
        return 0.0
    if hi == lo:
        return 1.0
    return (b - a) / (hi - lo)
