"""A restricted parser for pandas-``query``-like strings: filters and column expressions.

``"carrier == 'AA' and dep_delay > 0"`` becomes an :mod:`hpcframe.expr` tree. The text is
parsed with :func:`ast.parse` (``mode="eval"``) and the tree is *walked*, never compiled or
run: only the node types listed in :data:`ALLOWED` are accepted, names must be columns, and the
only calls are a few column methods. Everything else raises :class:`QueryError` quoting the
offending piece and its column.

Grammar (as in ``pandas.DataFrame.query``):

* columns by name, or in backticks when the name is not an identifier: ```dep delay` > 0``
* literals: numbers, strings, ``True``, ``False``, ``None``; lists/tuples inside ``in``/``isin``
* ``and``/``or``/``not`` and ``&``/``|``/``~`` (element-wise), parentheses
* comparisons ``== != < <= > >=``, chained (``1 < x <= 5``), ``in``/``not in`` a list
  (``x == [..]`` is ``x in [..]`` as in pandas)
* arithmetic ``+ - * / // % **`` and unary minus
* calls: ``x.isna()``, ``x.notna()`` (``isnull``/``notnull``), ``x.isin([..])``,
  ``x.between(a, b[, inclusive=...])``, ``x.str.startswith('..')``, ``x.str.endswith('..')``,
  ``x.str.contains('..'[, case=..., regex=...])``

:func:`resolve` turns a parsed tree into the expression to run over given columns: constant
parts are folded, numbers checked, and strings compared with datetime columns converted as
pandas does (:func:`hpcframe.expr.datetime_literal`). :func:`apply_query` and
:func:`apply_expression` hand that expression to a lazy frame (``frame.expression``); this
module imports nothing of the frame API.
"""

from __future__ import annotations

import ast

from . import expr as E
from .errors import ColumnNotFoundError, HpcframeError

#: Longest accepted query text, in characters.
MAX_LENGTH = 10_000
#: Most AST nodes accepted in one query.
MAX_NODES = 2_000
#: Deepest nesting accepted: of the text (parentheses, operators, calls) and of the expression
#: tree it becomes. ``and``/``or``/``&``/``|`` chains and chained comparisons become balanced
#: trees, so hundreds of terms stay shallow; a chain of another operator (``a + b + c ...``) is
#: as deep as it is long. The engine evaluates trees recursively; this keeps it far from
#: Python's recursion limit on every rank.
MAX_DEPTH = 100
#: Integers (literals, and every constant the parser folds) must be below ``2 ** MAX_INT_BITS``
#: in size: larger ones fit no column type (float64 ends near 2**1024) and would make constant
#: folding slow (``15**25000 * 15**25000 * ...``).
MAX_INT_BITS = 1024

ALLOWED = (
    "column names, numbers, strings, True/False/None, and/or/not, & | ~, comparisons "
    "(== != < <= > >=, chained), in/not in [list], + - * / // % ** and unary minus, "
    "parentheses, and the calls x.isna(), x.notna(), x.isin([...]), x.between(a, b), "
    "x.str.startswith('..'), x.str.endswith('..'), x.str.contains('..')"
)

_CMP_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITH_OPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_PY = E.PYTHON_OPERATORS  # constant folding computes what evaluation would
_METHODS = {
    "isna": (0, ()),
    "isnull": (0, ()),
    "notna": (0, ()),
    "notnull": (0, ()),
    "isin": (1, ()),
    "between": (2, ("inclusive",)),
}
_STR_METHODS = {"startswith": (1, ()), "endswith": (1, ()), "contains": (1, ("case", "regex"))}
_BACKTICK = "_hfq_bt{}_"


class QueryError(HpcframeError, ValueError):
    """A query string uses syntax outside the allowed grammar, or is malformed.

    ``offset`` is the 0-based column of the offending piece in the text (or ``None``)."""

    exit_code = 2  # a usage error (see hpcframe.errors.exit_code)

    def __init__(self, message: str, text: str = "", offset: int | None = None):
        self.text, self.offset = text, offset
        super().__init__(message)


def parse_query(text: str, columns) -> E.Expr:
    """The expression tree of the query ``text`` over ``columns`` (the names it may use).

    Returns an :class:`hpcframe.expr.Expr` (a :class:`~hpcframe.expr.Lit` when the text has
    no column). Raises :class:`QueryError` for syntax outside the grammar (see the module
    docstring) and :class:`~hpcframe.errors.ColumnNotFoundError` for unknown names."""
    return _Parser(text, columns).parse()


def apply_query(frame, text: str):
    """``frame`` filtered by the query ``text``: ``apply_query(df, "x > 1 and y == 'a'")``
    is ``df[(df.x > 1) & (df.y == 'a')]``. Returns a lazy Frame. Raises :class:`QueryError`
    (bad syntax, or the text is not a condition on the columns) and
    :class:`~hpcframe.errors.ColumnNotFoundError` (unknown column)."""
    return apply_filter(frame, _Parser(text, list(frame.columns), "filter").parse(), text)


def apply_filter(frame, tree: E.Expr, text: str = ""):
    """``frame`` filtered by the parsed condition ``tree`` (from :func:`parse_query`; ``text``
    is quoted in errors). Returns a lazy Frame; raises :class:`QueryError` when ``tree`` is
    not a condition on the columns."""
    text = text or tree.text()
    meta = frame.node.meta
    mask, _ = _resolved(tree, meta, text, "filter")
    if not _is_series(mask):
        raise QueryError(
            f"filter {text!r} does not use any column: it is the constant "
            f'{mask!r}; write a condition on the columns, e.g. "x > 0"',
            text,
        )
    dtype = E.dtype_on(mask, meta)
    if getattr(dtype, "kind", None) != "b":
        raise QueryError(
            f"filter {text!r} is not a condition: it gives values of type "
            f'{dtype}, not True/False; compare it, e.g. "({text}) > 0"',
            text,
        )
    return frame[frame.expression(mask)]


def apply_expression(frame, text: str, what: str = "expression"):
    """The lazy Series (or a constant, when ``text`` names no column) that ``text``
    computes from the columns of ``frame``, e.g. ``"arr_delay - dep_delay"``. Raises as
    :func:`apply_query` does; type errors found on the (empty) schema raise
    :class:`QueryError` too."""
    tree = _Parser(text, list(frame.columns), what).parse()
    value, name = _resolved(tree, frame.node.meta, text, what)
    return frame.expression(value, name) if _is_series(value) else value


def resolve(tree: E.Expr, meta, text: str = "", what: str = "expression"):
    """The expression ``tree`` (from :func:`parse_query`) computes over the columns of the
    empty pandas frame ``meta``, or a Python constant when it uses no column. Constant parts
    are folded, strings compared with datetime columns become Timestamps (as in pandas).
    Raises :class:`QueryError` when it cannot be applied to these columns."""
    return _resolved(tree, meta, text or tree.text(), what)[0]


def _resolved(tree: E.Expr, meta, text: str, what: str):
    """``(expression or constant, name)`` of ``tree`` over ``meta`` (see :func:`resolve`);
    the name is the one pandas gives the resulting Series."""
    return _guarded(lambda: _Resolver(meta).visit(tree), text, what)


def _guarded(fn, text: str, what: str):
    try:
        return fn()
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        if isinstance(exc, HpcframeError):
            raise
        raise QueryError(
            f"{what} {_short(text)} cannot be applied to these columns: {_short(str(exc))}", text
        ) from exc


_MAX_FLOAT_INT = 2**1024  # integers from here on have no float64 value


def _check_number(value) -> None:
    """Refuse an int literal that does not fit float64 (compared with a column)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _MAX_FLOAT_INT:
        raise QueryError(
            f"the integer literal {_lit_text(value)} is too large to compare with "
            f"a column (it does not fit a float64); use a smaller number"
        )


def _check_text(arg, dtype, e) -> None:
    """``x.str.<method>`` needs a text column (``arg`` of ``dtype``): a clear
    :class:`QueryError` otherwise."""
    if not _is_series(arg):
        raise QueryError(f"x.str.{e.method} needs a text column, not the constant {_lit_text(arg)}")
    kind = getattr(dtype, "kind", None)
    if (
        dtype is None
        or kind in ("O", "U", "S")
        or str(dtype) in ("category", "string")
        or str(dtype).startswith(("str", "string"))
    ):
        return
    name = e.arg.name if isinstance(e.arg, E.Col) else e.arg.text()
    raise QueryError(
        f"x.str.{e.method} needs a text column; {name!r} is {dtype}; convert it "
        f"first, or compare numbers instead (e.g. {name} > 0)"
    )


def _lit_text(value) -> str:
    """A short text for a literal (huge integers are not printed in full)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_series(value) -> bool:
    """Whether a resolved value depends on the columns (an expression, not a constant)."""
    return isinstance(value, E.Expr)


class _Resolver:
    """Resolves a parsed tree over the columns of ``meta`` as pandas evaluates the same
    operations on Series and scalars: ``(value, name)`` per node, where value is an
    expression (it uses a column) or a Python constant (folded as Python computes it)."""

    def __init__(self, meta):
        self.meta = meta

    def dtype(self, value):
        return E.dtype_on(value, self.meta)

    def visit(self, e: E.Expr):
        if isinstance(e, E.Col):
            return e, e.name
        if isinstance(e, E.Lit):
            return e.value, None
        if isinstance(e, E.Bin):
            return self._bin(e.op, self.visit(e.left), self.visit(e.right))
        if isinstance(e, (E.Not, E.Neg)):
            arg, name = self.visit(e.arg)
            if not _is_series(arg):
                return (~arg if isinstance(e, E.Not) else -arg), None
            return type(e)(arg), name
        if not isinstance(e, (E.StrMatch, E.IsIn, E.Between, E.IsNa)):
            raise TypeError(f"unexpected expression node {type(e).__name__}")  # pragma: no cover
        arg, name = self.visit(e.arg)
        if isinstance(e, E.StrMatch):
            _check_text(arg, self.dtype(arg) if _is_series(arg) else None, e)
            if e.method == "contains":
                return E.StrMatch(arg, "contains", e.pattern, regex=e.regex, case=e.case), name
            return E.StrMatch(arg, e.method, e.pattern), name
        if not _is_series(arg):  # a method of a constant: the error Python gives
            method = {E.IsIn: "isin", E.Between: "between"}.get(type(e)) or (
                "notna" if getattr(e, "negate", False) else "isna"
            )
            getattr(arg, method)
        if isinstance(e, E.IsIn):
            return E.IsIn(arg, list(e.values)), name
        if isinstance(e, E.Between):
            _check_number(e.low)
            _check_number(e.high)
            return E.Between(arg, e.low, e.high, e.inclusive), name
        if isinstance(e, E.IsNa):
            return E.IsNa(arg, negate=e.negate), name
        raise TypeError(f"unexpected expression node {type(e).__name__}")  # pragma: no cover

    def _bin(self, op, left, right):
        (lv, ln), (rv, rn) = left, right
        for lit, other in ((lv, rv), (rv, lv)):
            if _is_series(other):
                _check_number(lit)
        if not _is_series(lv) and not _is_series(rv):
            if op in ("&", "|"):
                return ((lv & rv) if op == "&" else (lv | rv)), None
            return _PY[op](lv, rv), None
        if not _is_series(lv) and op in _FLIP:  # `1 < x` is pandas' `x > 1`
            op, (lv, ln), (rv, rn) = _FLIP[op], (rv, rn), (lv, ln)
        reverse = not _is_series(lv)
        series, sname = (rv, rn) if reverse else (lv, ln)
        other = lv if reverse else rv
        if op in _FLIP and isinstance(other, str):
            other = E.datetime_literal(other, self.dtype(series))
        o = other if _is_series(other) else E.Lit(other)
        name = sname if not _is_series(other) or (rn if not reverse else ln) == sname else None
        left_e, right_e = (o, series) if reverse else (series, o)
        return E.Bin(op, left_e, right_e), name


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class _Parser:
    """One parse: backticks replaced, tree walked, offsets mapped back to the user's text."""

    def __init__(self, text: str, columns, what: str = "query"):
        if not isinstance(text, str):
            raise QueryError(f"a {what} must be a string, not {type(text).__name__}")
        self.text, self.what = text, what
        self.columns = [str(c) for c in columns]
        self.names: dict[str, str] = {}  # placeholder -> backticked column name
        self.shifts: list[tuple[int, int, int, int]] = []  # (new, orig, new_len, orig_len)
        self.source = ""

    # -- entry -----------------------------------------------------------------------------
    def parse(self) -> E.Expr:
        text = self.text
        if len(text) > MAX_LENGTH:
            raise QueryError(
                f"{self.what} is {len(text):,} characters long; the limit is "
                f"{MAX_LENGTH:,}: split the work or simplify the condition",
                text,
            )
        if not text.strip():
            raise QueryError(f'empty {self.what}: write a condition such as "x > 0"', text)
        self.source = self._rewrite(text)
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            off = None
            if exc.offset:  # 1-based; 0 or None at the end of the text
                off = self._orig(self._line_offset(exc.lineno or 1, exc.offset - 1, chars=True))
            where = f" at column {off}" if off is not None else " at the end"
            if "integer string conversion" in str(exc.msg):  # > 4,300 decimal digits
                raise QueryError(
                    f"{self.what} {_short(text)} has an integer literal that is too large: {_INT_HINT}",
                    text,
                    off,
                ) from None
            raise QueryError(
                f"invalid syntax in {self.what} {_short(text, 200)}{where}: "
                f"{_short(str(exc.msg), 200)[1:-1]}; allowed: {ALLOWED}",
                text,
                off,
            ) from None
        except ValueError as exc:  # e.g. an int literal of more than 4,300 digits
            raise QueryError(
                f"{self.what} {_short(text)} cannot be parsed: {_short(str(exc), 200)[1:-1]}; {_INT_HINT}",
                text,
            ) from None
        except (RecursionError, MemoryError) as exc:
            raise QueryError(
                f"{self.what} cannot be parsed ({type(exc).__name__}: nested too "
                f"deeply); the limit is {MAX_DEPTH} levels: simplify it",
                text,
            ) from None
        count = sum(1 for _ in ast.walk(tree))
        if count > MAX_NODES:
            raise QueryError(
                f"{self.what} has {count:,} syntax elements; the limit is "
                f"{MAX_NODES:,}: simplify it (use x.isin([...]) for long lists)",
                text,
            )
        depth = _depth(tree.body, _ast_children)
        if depth > MAX_DEPTH:
            raise QueryError(
                f"{self.what} {_short(text)} is nested {depth} levels deep; the "
                f"limit is {MAX_DEPTH}: simplify it (e.g. fewer nested parentheses "
                "or a shorter chain of + - * /)",
                text,
            )
        try:
            out = self.visit(tree.body)
        except RecursionError:
            raise QueryError(
                f"{self.what} is nested too deeply; the limit is {MAX_DEPTH} levels: simplify it", text
            ) from None
        depth = _depth(out, lambda e: e.children())
        if depth > MAX_DEPTH:
            raise QueryError(
                f"{self.what} {_short(text)} becomes an expression {depth} levels "
                f"deep; the limit is {MAX_DEPTH}: simplify it",
                text,
            )
        return out

    # -- errors and positions ------------------------------------------------------------------
    def _line_offset(self, lineno: int, col: int, chars: bool = False) -> int:
        lines = self.source.split("\n")
        start = sum(len(line) + 1 for line in lines[: lineno - 1])
        line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
        if not chars:  # ast offsets count UTF-8 bytes
            col = len(line.encode("utf-8")[:col].decode("utf-8", "replace"))
        return start + col

    def _orig(self, off: int | None, end: bool = False) -> int | None:
        """A position in the parsed source mapped back to the user's text (``end``: an
        exclusive end position, so that a replaced piece is quoted whole)."""
        if off is None:
            return None
        delta = 0
        for new, orig, new_len, orig_len in self.shifts:
            if off < new or (end and off == new):
                break
            if off < new + new_len:
                return orig + orig_len if end else orig
            delta = (orig + orig_len) - (new + new_len)
        return off + delta

    def fail(self, node: ast.AST, problem: str, hint: str | None = None) -> QueryError:
        # the nodes passed here are expressions and keywords, which carry their positions
        start = self._line_offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self._line_offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        o_start, o_end = self._orig(start), self._orig(end, end=True)
        piece = self.text[o_start:o_end]
        if len(piece) > 60:
            piece = piece[:57] + "..."
        hint = hint or f"allowed: {ALLOWED}"
        return QueryError(
            f"{self.what} {_short(self.text)}: {problem} at column {o_start}: {piece!r}; {hint}",
            self.text,
            o_start,
        )

    def _rewrite(self, text: str) -> str:
        """Backticked names become placeholder identifiers; newlines outside strings become
        spaces (a query may span lines, e.g. a YAML block)."""
        out, i, n = [], 0, len(text)
        new_pos = 0
        while i < n:
            ch = text[i]
            if ch in "'\"":
                j = _string_end(text, i)
                out.append(text[i:j])
                new_pos += j - i
                i = j
            elif ch in "&|":
                # as in pandas.eval: & and | bind like `and`/`or`, not tighter than comparisons
                word = " and " if ch == "&" else " or "
                self.shifts.append((new_pos, i, len(word), 1))
                out.append(word)
                new_pos += len(word)
                i += 1
            elif ch == "`":
                j = text.find("`", i + 1)
                if j < 0:
                    raise QueryError(
                        f"{self.what} {_short(text)}: unclosed backtick at column "
                        f"{i}; write `column name` with a closing backtick",
                        text,
                        i,
                    )
                name = text[i + 1 : j]
                placeholder = next((p for p, v in self.names.items() if v == name), None)
                if placeholder is None:
                    placeholder = _BACKTICK.format(len(self.names))
                    self.names[placeholder] = name
                self.shifts.append((new_pos, i, len(placeholder), j + 1 - i))
                out.append(placeholder)
                new_pos += len(placeholder)
                i = j + 1
            else:
                out.append(" " if ch in "\r\n" else ch)
                new_pos += 1
                i += 1
        return "".join(out)

    # -- the walk ------------------------------------------------------------------------------
    def visit(self, node: ast.AST) -> E.Expr:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> E.Expr:
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool):
            self._check_int(v, node, "an integer literal")
        if v is None or isinstance(v, (bool, int, float, str)):
            return E.Lit(v)
        raise self.fail(
            node,
            f"a literal of type {type(v).__name__} is not allowed",
            "literals are numbers, strings, True, False and None",
        )

    def visit_Name(self, node: ast.Name) -> E.Expr:
        name = self.names.get(node.id, node.id)
        if node.id not in self.names and node.id.startswith("__"):
            raise self.fail(node, "a dunder name is not allowed")
        if name not in self.columns:
            where = "the data" if self.what == "query" else f"the data (in the {self.what})"
            raise ColumnNotFoundError(name, self.columns, where)
        return E.Col(name)

    def visit_BoolOp(self, node: ast.BoolOp) -> E.Expr:
        op = "&" if isinstance(node.op, ast.And) else "|"
        return self._balanced(op, [self.visit(v) for v in node.values], node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> E.Expr:
        arg = self.visit(node.operand)
        if isinstance(node.op, ast.UAdd):
            return arg
        if isinstance(node.op, ast.USub):
            if isinstance(arg, E.Lit):
                if isinstance(arg.value, (int, float)) and not isinstance(arg.value, bool):
                    return E.Lit(-arg.value)
                raise self.fail(node, "unary minus of a non-number")
            return E.Neg(arg)
        # not / ~
        if isinstance(arg, E.Lit):
            if isinstance(arg.value, bool):
                return E.Lit(not arg.value)
            raise self.fail(node, "not/~ of a non-boolean literal")
        return E.Not(arg)

    def visit_BinOp(self, node: ast.BinOp) -> E.Expr:
        op = _ARITH_OPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"the operator {type(node.op).__name__} is not allowed")
        return self._bin(op, self.visit(node.left), self.visit(node.right), node)

    def visit_Compare(self, node: ast.Compare) -> E.Expr:
        terms: list[E.Expr] = []
        left: E.Expr | None = self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)) or (
                isinstance(op, (ast.Eq, ast.NotEq)) and isinstance(right_node, (ast.List, ast.Tuple))
            ):
                values = self._literal_list(right_node)
                if left is None:  # a chain such as x in [1] in [2]: its left is a list
                    raise self.fail(node, "a list cannot be compared")
                if isinstance(left, E.Lit):
                    raise self.fail(node, "'in' needs a column on its left")
                term: E.Expr = E.IsIn(left, values)
                if isinstance(op, (ast.NotIn, ast.NotEq)):
                    term = E.Not(term)
                terms.append(term)
                left = None
                continue
            if isinstance(op, (ast.Is, ast.IsNot)):
                raise self.fail(
                    node,
                    "'is' comparisons are not allowed",
                    "use x.isna() / x.notna() to test for missing values",
                )
            if left is None:
                raise self.fail(node, "a list cannot be compared")
            right = self.visit(right_node)
            terms.append(self._bin(_CMP_OPS[type(op)], left, right, node))
            left = right
        return self._balanced("&", terms, node)

    def visit_Call(self, node: ast.Call) -> E.Expr:
        func = node.func
        if not isinstance(func, ast.Attribute):
            raise self.fail(
                node, "a function call is not allowed", "the only calls are column methods: " + _METHOD_LIST
            )
        receiver = func.value
        name = func.attr
        if isinstance(receiver, ast.Attribute) and receiver.attr == "str" and name in _STR_METHODS:
            target = self._receiver(receiver.value, node)
            args, kw = self._args(node, name, _STR_METHODS[name])
            pattern = args[0]
            if not isinstance(pattern, str):
                raise self.fail(node, f"str.{name} needs a string pattern")
            if name == "contains":
                return E.StrMatch(
                    target, name, pattern, regex=bool(kw.get("regex", True)), case=bool(kw.get("case", True))
                )
            return E.StrMatch(target, name, pattern)
        if name not in _METHODS:
            raise self.fail(
                node,
                f"the method {name!r} is not allowed",
                "the only calls are column methods: " + _METHOD_LIST,
            )
        target = self._receiver(receiver, node)
        args, kw = self._args(node, name, _METHODS[name])
        if name in ("isna", "isnull"):
            return E.IsNa(target)
        if name in ("notna", "notnull"):
            return E.IsNa(target, negate=True)
        if name == "isin":
            return E.IsIn(target, self._literal_list(node.args[0]))
        inclusive = kw.get("inclusive", "both")
        if inclusive not in ("both", "neither", "left", "right"):
            raise self.fail(
                node, f"inclusive={inclusive!r} is not understood", "use 'both', 'neither', 'left' or 'right'"
            )
        return E.Between(target, args[0], args[1], inclusive)

    def visit_Attribute(self, node: ast.Attribute) -> E.Expr:
        raise self.fail(
            node,
            "attribute access is not allowed",
            "columns are plain names (or `in backticks`); the only methods are " + _METHOD_LIST,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _receiver(self, node: ast.AST, call: ast.AST) -> E.Expr:
        target = self.visit(node)
        if isinstance(target, E.Lit):
            raise self.fail(
                call, "a method call on a literal is not allowed", "call methods on columns: " + _METHOD_LIST
            )
        return target

    def _args(self, node: ast.Call, name: str, shape) -> tuple[list, dict]:
        nargs, keywords = shape
        if len(node.args) != nargs or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}() takes {nargs} argument(s), got {len(node.args)}")
        kw = {}
        for k in node.keywords:
            if k.arg not in keywords:
                allowed = ", ".join(keywords) or "none"
                raise self.fail(
                    k.value if k.arg is None else node,
                    f"{name}() does not take the keyword {k.arg!r}",
                    f"keywords allowed: {allowed}",
                )
            kw[k.arg] = self._literal(k.value)
        if name == "isin":
            return [], kw
        return [self._literal(a) for a in node.args], kw

    def _literal(self, node: ast.AST):
        e = self.visit(node)
        if not isinstance(e, E.Lit):
            raise self.fail(node, "this argument must be a literal value")
        return e.value

    def _literal_list(self, node: ast.AST) -> list:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise self.fail(node, "expected a list of literals", "write e.g. x in ['a', 'b']")
        return [self._literal(el) for el in node.elts]

    def _balanced(self, op: str, terms: list, node: ast.AST) -> E.Expr:
        """``t0 op t1 op ... tn`` for an associative ``op`` (``&``/``|``) as a balanced tree:
        the same result as the left-to-right chain, ``log2(n)`` deep instead of ``n``."""
        if len(terms) == 1:
            return terms[0]
        mid = len(terms) // 2
        return self._bin(
            op, self._balanced(op, terms[:mid], node), self._balanced(op, terms[mid:], node), node
        )

    def _check_int(self, value: int, node: ast.AST, what: str) -> None:
        if abs(value).bit_length() > MAX_INT_BITS:
            raise self.fail(node, f"{what} is too large ({_lit_text(value)[1:-1]})", _INT_HINT)

    def _bin(self, op: str, left: E.Expr, right: E.Expr, node: ast.AST) -> E.Expr:
        if isinstance(left, E.Lit) and isinstance(right, E.Lit):
            return E.Lit(self._fold(op, left.value, right.value, node))
        return E.Bin(op, left, right)

    def _fold(self, op, a, b, node):
        """Constant folding, with guards against huge results (``10 ** 10 ** 10``)."""
        if op in ("&", "|"):
            if isinstance(a, bool) and isinstance(b, bool):
                return (a and b) if op == "&" else (a or b)
            raise self.fail(node, f"{op} between non-boolean literals")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if op in _PY and op not in _CMP_NAMES and not numeric:
            raise self.fail(
                node, "arithmetic on non-numbers", "arithmetic works on numbers and numeric columns"
            )
        if (
            op == "**"
            and isinstance(a, int)
            and isinstance(b, int)
            and b > 0
            and (abs(a).bit_length() - 1) * b > MAX_INT_BITS
        ):  # surely too large: refuse
            raise self.fail(node, f"{_lit_text(a)} ** {_lit_text(b)} is too large", _INT_HINT)
        try:
            out = _PY[op](a, b)  # operands are bounded (< 2**MAX_INT_BITS): this is quick
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise self.fail(node, f"cannot compute {_lit_text(a)} {op} {_lit_text(b)} ({exc})") from None
        if isinstance(out, complex):
            raise self.fail(node, f"{_lit_text(a)} {op} {_lit_text(b)} is a complex number")
        if isinstance(out, int) and not isinstance(out, bool):
            self._check_int(out, node, f"the result of {_lit_text(a)} {op} {_lit_text(b)}")
        return out


_CMP_NAMES = frozenset(("==", "!=", "<", "<=", ">", ">="))
_INT_DIGITS = int(MAX_INT_BITS * 0.30103) + 1
_INT_HINT = (
    f"integers must be below 2**{MAX_INT_BITS} (about {_INT_DIGITS} digits): larger "
    "ones fit no column type, not even float64"
)


def _ast_children(node):
    return [
        c
        for c in ast.iter_child_nodes(node)
        if not isinstance(c, (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop))
    ]


def _depth(root, children) -> int:
    """The depth of the tree at ``root`` (a lone node: 1), without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children(node))
    return deepest


_METHOD_LIST = (
    "x.isna(), x.notna(), x.isin([...]), x.between(a, b), x.str.startswith('..'), "
    "x.str.endswith('..'), x.str.contains('..')"
)


def _string_end(text: str, i: int) -> int:
    """Index just past the string literal starting at ``text[i]`` (a quote)."""
    q = text[i]
    triple = text[i : i + 3] == q * 3
    end = q * 3 if triple else q
    j = i + len(end)
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text.startswith(end, j):
            return j + len(end)
        j += 1
    return len(text)  # unterminated: ast.parse reports it


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _describe(node: ast.AST) -> str:
    names = {
        "Subscript": "indexing ([...])",
        "Lambda": "a lambda",
        "JoinedStr": "an f-string",
        "FormattedValue": "an f-string",
        "ListComp": "a comprehension",
        "SetComp": "a comprehension",
        "DictComp": "a comprehension",
        "GeneratorExp": "a generator expression",
        "IfExp": "an if/else expression",
        "NamedExpr": "an assignment (:=)",
        "Starred": "unpacking (*)",
        "Dict": "a dict",
        "List": "a list here",
        "Tuple": "a tuple here",
        "Set": "a set here",
        "Await": "await",
        "Yield": "yield",
        "YieldFrom": "yield",
        "Slice": "a slice",
    }
    return names.get(type(node).__name__, f"a {type(node).__name__} expression")
