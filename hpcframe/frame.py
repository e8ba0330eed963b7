"""The lazy, pandas-like API: Frame, Series, GroupBy and lazy results.

Nothing here reads data. Every operation builds a plan node (:mod:`hpcframe.plan`) or an
output (:mod:`hpcframe.outputs`); ``.compute()`` or :func:`compute` runs them. Column names are
checked when the operation is written, against the schema known from the dataset's metadata.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from . import expr as E
from . import plan as P
from .aggregations import AGGREGATIONS, get_aggregation
from .errors import ColumnNotFoundError
from .outputs import AggOutput, CollectOutput, Composite, MapOutput, Output
from .stages import POSITION, ShuffleStage

_VALUE = "__hpcframe_value__"
#: ``Series.reset_index(name=...)`` not given: the Series' own name
_SERIES_NAME = object()
#: an argument not given (``dropna``'s ``how`` and ``thresh``, which cannot both be given)
_NO_DEFAULT = object()


def compute(*objs, comm=None, root=None, engine=None):
    """Compute several lazy objects with one pass over each dataset they read.

    ``comm``: an mpi4py communicator (hpcframe works on a duplicate), or ``None`` for
    ``COMM_WORLD`` under an MPI launcher and the local engine otherwise. ``root``: ``None``
    returns results on every rank; a rank number returns them there and ``None`` elsewhere.
    Returns a tuple with one result per object. Raises :class:`~hpcframe.ComputeError` on
    every rank if any rank fails.

    Parameters
    ----------
    *objs : Frame, Series or Result
        The lazy objects to compute.
    comm : mpi4py communicator, optional
        As above.
    root : int, optional
        As above.
    engine : None, "local", "dask", distributed.Client or Dask cluster, optional
        Where to run: default ``hpcframe.config.engine`` (``None``: the local engine, or
        MPI under mpiexec); ``"dask"``, a Client or a cluster (:func:`hpcframe.cluster`):
        the Dask engine (``docs/dask.md``), whose results are identical.

    Returns
    -------
    tuple
        One pandas result per object (``None`` on ranks other than ``root``).

    Raises
    ------
    ComputeError
        On every rank if any rank fails.
    TypeError
        For an object that is not an hpcframe lazy object.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df)
    >>> mean, n = hf.compute(flights.dep_delay.mean(), flights.len())
    >>> float(mean), n
    (5.25, 4)
    """
    from .config import config
    from .execute import compute as run

    outputs = [_as_output(o) for o in objs]
    # compute(engine=...) / config.engine on a Dask cluster (hpcframe.dask_engine)
    if engine is not None or config.engine is not None:
        from . import dask_engine

        if dask_engine.wants_dask(engine):
            if comm is not None:
                raise dask_engine.DaskEngineError(
                    "compute() got both comm= (the MPI engine) and a Dask engine: pass one of them"
                )
            return tuple(dask_engine.compute(outputs, engine))
    return tuple(run(outputs, comm=comm, root=root))


def _as_output(obj) -> Output:
    if isinstance(obj, Lazy):
        return obj._output()
    raise TypeError(f"hf.compute() takes hpcframe lazy objects, not {type(obj).__name__}")


class Lazy:
    """Anything that can be computed."""

    def _output(self) -> Output:
        raise NotImplementedError

    def compute(self, comm=None, root=None, engine=None):
        """The pandas result (see :func:`compute` for ``comm``, ``root`` and ``engine``)."""
        return compute(self, comm=comm, root=root, engine=engine)[0]

    def explain(self, comm=None, ranks: int | None = None) -> str:
        """The plan, the pushed-down columns and predicates, the pruned partitions and each
        rank's share (for ``ranks`` ranks, default: the communicator's size)."""
        from .explain import explain

        return explain(self._output(), comm=comm, ranks=ranks)


class Result(Lazy):
    """A lazy result of a reduction, group-by, value_counts, describe or map_partitions.

    Made by the methods of :class:`Frame`, :class:`Series` and :class:`GroupBy`, not directly.

    Parameters
    ----------
    output : Output
        The output (:mod:`hpcframe.outputs`) that computes it.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df)
    >>> by_carrier = flights.groupby("carrier").dep_delay.mean()
    >>> by_carrier
    <hpcframe lazy groupby mean: mean(dep_delay) by ['carrier']; call .compute()>
    >>> by_carrier.compute()
    carrier
    AA     1.0
    DL     7.0
    UA    12.0
    Name: dep_delay, dtype: float64
    """

    def __init__(self, output: Output):
        self._out = output

    def _output(self):
        return self._out

    def __repr__(self):
        return f"<hpcframe lazy {self._out.text()}; call .compute()>"


class _Operators:
    """Python's comparison and arithmetic operators (both operand orders) as ``self._bin(op,
    other, reverse)``: the one list for lazy columns (:class:`Series`) and lazy scalars
    (:class:`Scalar`)."""

    #: NumPy scalars and arrays defer to these operators instead of converting the lazy
    #: operand (``np.datetime64(...) > s`` reaches ``s < np.datetime64(...)`` with the NumPy
    #: scalar intact, as for a pandas Series)
    __array_ufunc__ = None

    def _bin(self, op, other, reverse=False):
        raise NotImplementedError

    def __eq__(self, o):
        return self._bin("==", o)

    def __ne__(self, o):
        return self._bin("!=", o)

    def __lt__(self, o):
        return self._bin("<", o)

    def __le__(self, o):
        return self._bin("<=", o)

    def __gt__(self, o):
        return self._bin(">", o)

    def __ge__(self, o):
        return self._bin(">=", o)

    def __add__(self, o):
        return self._bin("+", o)

    def __radd__(self, o):
        return self._bin("+", o, True)

    def __sub__(self, o):
        return self._bin("-", o)

    def __rsub__(self, o):
        return self._bin("-", o, True)

    def __mul__(self, o):
        return self._bin("*", o)

    def __rmul__(self, o):
        return self._bin("*", o, True)

    def __truediv__(self, o):
        return self._bin("/", o)

    def __rtruediv__(self, o):
        return self._bin("/", o, True)

    def __floordiv__(self, o):
        return self._bin("//", o)

    def __rfloordiv__(self, o):
        return self._bin("//", o, True)

    def __mod__(self, o):
        return self._bin("%", o)

    def __rmod__(self, o):
        return self._bin("%", o, True)

    def __pow__(self, o):
        return self._bin("**", o)

    def __rpow__(self, o):
        return self._bin("**", o, True)


class Scalar(_Operators, Result):
    """A lazy scalar: a reduction of a column (``df.x.sum()``, ``.mean()``, ``.max()`` ...),
    or arithmetic and comparisons of such reductions and constants (``df.x.sum() * 0.01``).

    ``.compute()`` gives the value pandas gives. Like a number, it can be used in the
    expressions of a frame, in any computation over any dataset:
    ``df[df.x > df.x.mean()]``, ``df.assign(share=df.x / df.x.sum())``,
    ``df.x.where(df.x < df.x.max(), 0)`` — the value is computed first, in the same computation
    (stages both read, such as a join, are computed once), and then used as a literal, also
    for pushdown and statistics pruning. It has no truth value (``if s > 0`` raises): compute
    it to decide in Python.

    Examples
    --------
    >>> import pandas as pd
    >>> df = hf.from_pandas(pd.DataFrame({"x": [1.0, 2.0, 6.0]}))
    >>> df[df.x > df.x.mean()].compute()  # (a fresh index, see the user guide)
         x
    0  6.0
    >>> (df.x.sum() * 0.5).compute()
    np.float64(4.5)
    """

    def __init__(self, expr: E.Expr, output: Output):
        super().__init__(output)
        self._expr = expr

    @classmethod
    def _of(cls, output: Output, placeholder, label: str) -> Scalar:
        return cls(E.ScalarRef(output, placeholder, label), output)

    def __repr__(self):
        return f"<hpcframe lazy scalar {self._expr.text()}; call .compute()>"

    def __bool__(self):
        raise TypeError(
            f"the truth value of a lazy scalar ({self._expr.text()}) is not known before it is "
            f"computed: use .compute() to decide in Python, or use it in a frame's expression"
        )

    def _bin(self, op, other, reverse=False):
        if isinstance(other, Series):
            return NotImplemented  # the Series' reflected operator: a column expression
        if isinstance(other, Scalar):
            o = other._expr
        elif isinstance(other, Lazy) or not (other is None or np.ndim(other) == 0):
            return NotImplemented  # (== then compares identities, as for other objects)
        else:
            o = E.Lit(other)
        left, right = (o, self._expr) if reverse else (self._expr, o)
        return _derived_scalar(E.Bin(op, left, right))

    def __neg__(self):
        return _derived_scalar(E.Neg(self._expr))

    __hash__ = Result.__hash__


def _derived_scalar(expr: E.Expr) -> Scalar:
    """A :class:`Scalar` computed from the lazy scalars in ``expr`` (and constants)."""
    refs = E.scalar_refs(expr)

    def finish(values):
        with E.resolving(zip(refs, values)):
            return expr.evaluate(_EMPTY)

    return Scalar(expr, Composite([r.output for r in refs], finish, label=expr.text()))


_EMPTY = pd.DataFrame()


class Frame(Lazy):
    """A lazy DataFrame. Build it with :func:`hpcframe.read_parquet` and friends.

    Parameters
    ----------
    node : hpcframe.plan.Node
        The plan node the frame is the result of.

    Raises
    ------
    ColumnNotFoundError
        When an operation names a column the frame does not have (``frame["x"]``,
        ``frame.groupby("x")``); ``AttributeError`` for ``frame.x``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df)
    >>> late = flights[flights.dep_delay > 0]
    >>> late
    <hpcframe Frame [carrier: str, dep_delay: float64] from Scan pandas pandas DataFrame 4x2>
    >>> late.compute()
      carrier  dep_delay
    0      AA        5.0
    1      UA       12.0
    2      DL        7.0
    >>> flights.assign(hours=flights.dep_delay / 60).head(2).compute()
      carrier  dep_delay     hours
    0      AA        5.0  0.083333
    1      UA       12.0  0.200000
    """

    def __init__(self, node: P.Node):
        self._node = node

    @property
    def node(self) -> P.Node:
        """The plan node this frame is the result of (read-only; its ``scan().source`` is
        the data source)."""
        return self._node

    # -- metadata --------------------------------------------------------------------------
    @property
    def columns(self) -> pd.Index:
        """The column names (from the schema; nothing is read). A group-by result's keys
        are its index, not columns (as in pandas)."""
        return pd.Index(P.visible_columns(self._node))

    @property
    def dtypes(self) -> pd.Series:
        """The pandas dtype of each column (from the schema; nothing is read). A join's
        columns whose dtype pandas decides from the data show it once the join ran."""
        out = self._node.meta.dtypes[P.visible_columns(self._node)].copy()
        out[:] = [self._node.dtype_now(c) for c in out.index]
        return out

    def __repr__(self):
        cols = ", ".join(f"{c}: {t}" for c, t in self.dtypes.items())
        return f"<hpcframe Frame [{cols}] from {self._node.scan().text()}>"

    def _output(self):
        return CollectOutput(self._node)

    # -- selection -------------------------------------------------------------------------
    def __getitem__(self, key):
        if isinstance(key, _SemiMask):  # isin with a lazy Series (joins region below)
            return _semi_filter(self, key)
        if isinstance(key, Series) and not isinstance(key, _TransformSeries):
            pushed = _join_filter(self, key)  # a filter moved into a join's sides
            if pushed is not None:
                return pushed
        if isinstance(key, (list, tuple, pd.Index)):
            _check_unique_selection(key)
            pruned = _join_project(self, key)  # a join computing fewer columns
            if pruned is not None:
                return pruned
        if isinstance(key, Series):
            if isinstance(key, _TransformSeries) and key._base is self._node:
                # df[df.x > df.groupby(k).x.transform("mean")]: filter the transform's rows
                return Frame(P.Project(P.Filter(key._node, key._expr), P.visible_columns(self._node)))
            if key._node.scan() is not self._node.scan():
                raise ValueError("a boolean mask must come from the same dataset as the frame")
            return Frame(P.Filter(self._node, key._expr))
        if isinstance(key, (list, tuple, pd.Index)):
            return Frame(P.Project(self._node, list(key)))
        self._node.check_columns([key])
        return Series(self._node, E.Col(key), key)

    def __getattr__(self, name):
        # a column whose name starts with "_" is an attribute too (merge's "_merge"), as in
        # pandas; not the frame's own private names or dunders (copy, pickle look them up)
        if name.startswith("__") or name == "_node":
            raise AttributeError(name)
        try:  # (not through __getattr__ again: a GroupFrame's node is a property)
            node = object.__getattribute__(self, "_node")
        except (AttributeError, TypeError):
            node = None
        if node is not None and name in node.meta.columns and name not in P.hidden_columns(node):
            return Series(node, E.Col(name), name)
        raise AttributeError(f"Frame has no attribute or column {name!r}")

    def assign(self, **columns):
        """New columns from expressions of existing ones (``df.assign(c=df.a * 2)``), or
        from a group-wise ``transform`` of this frame (rows stay aligned, as in pandas).
        A column the frame is sorted by may be replaced (the order keeps the old values, as
        pandas' rows keep their place); one that orders the rows of the frame's source (a
        group-by result's key) raises ``ValueError``: the rows would be re-ordered."""
        node = self._node
        shown = P.visible_columns(node)
        replaced = [c for c in columns if c in shown]
        node, copied = _free_columns(node, replaced, verb="assign")
        # a lazy Series is the frame's values before the call (pandas computed it already):
        # one reading a column this call replaces is computed first, into a column of its own
        early: dict[str, str] = {}
        for i, (name, value) in enumerate(columns.items()):
            if type(value) is Series and value._expr.columns() & set(replaced):
                early[name] = _fresh_name(node, f"__hpcframe_assign_{i}__")
                node = P.Assign(node, early[name], value._expr)
        visible = None
        for name, value in columns.items():
            if name in early:
                node = P.Assign(node, name, E.Col(early[name]))
                continue
            if callable(value) and not isinstance(value, Series):
                value = value(Frame(node))
            if isinstance(value, _TransformSeries):
                if value._base is not self._node:
                    raise ValueError(
                        "assign() takes a transform of the same frame (df.assign(x=df.groupby(k).c"
                        ".transform(f))); this one was made from another frame"
                    )
                if visible is None:
                    visible = P.visible_columns(node)
                value = value._rebuilt(node)
                node = P.Assign(value._node, name, value._expr)
                visible = visible + ([name] if name not in visible else [])
                node = P.Project(node, visible)
                continue
            node = P.Assign(node, name, _expr_of(value))
        if copied or early:  # the order copies and early values out of sight
            node = P.Project(node, shown + [c for c in columns if c not in shown])
        return Frame(node)

    def reset_index(self, drop: bool = False) -> Frame:
        """The index (a group-by result's keys) as ordinary columns in front, as pandas;
        ``drop=True`` drops it. A frame without such an index is returned unchanged."""
        if not P.frame_index(self._node):
            return self
        return Frame(P.ResetIndex(self._node, drop))

    # -- pandas' column verbs: drop, rename, dropna, fillna, astype, pipe (helpers: VERBS) -----
    def drop(self, labels=None, *, axis=0, index=None, columns=None, errors="raise") -> Frame:
        """The frame without some columns, as pandas' ``DataFrame.drop(columns=...)``.

        Parameters
        ----------
        labels : str or list of str, optional
            Columns to drop, with ``axis=1`` (or ``"columns"``).
        axis : {0, 1, "index", "columns"}
            What ``labels`` names. Rows (``axis=0``, the default, or ``index=``) raise
            ``NotImplementedError``: hpcframe frames have no row labels to drop by; select
            rows with a filter (``df[df.carrier != "AA"]``).
        columns : str or list of str, optional
            Columns to drop (instead of ``labels``).
        errors : {"raise", "ignore"}
            ``"ignore"``: names that are not columns are skipped.

        Returns
        -------
        Frame
            The other columns, in their order (a merged frame then computes fewer columns).

        Raises
        ------
        ColumnNotFoundError
            For a name that is not a column (a ``KeyError``, as pandas raises).

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0], "c": ["x", "y"]}))
        >>> df.drop(columns=["b"]).compute()
           a  c
        0  1  x
        1  2  y
        """
        if labels is not None and (index is not None or columns is not None):
            raise ValueError("Cannot specify both 'labels' and 'index'/'columns'")
        if labels is not None:
            if _axis_number(axis) == 1:
                columns = labels
            else:
                index = labels
        if index is not None:
            raise NotImplementedError(
                "drop() of rows: hpcframe frames have no row labels to drop by (a computed "
                "result's index is made when it is computed); select the rows to keep with a "
                "filter, e.g. df[~df.carrier.isin(['AA'])], or drop columns with "
                "drop(columns=...)"
            )
        if columns is None:
            raise ValueError("Need to specify at least one of 'labels', 'index' or 'columns'")
        _check_errors(errors)
        names = _label_list(columns)
        visible = P.visible_columns(self._node)
        _check_labels(names, visible, errors)
        gone = set(names)
        return self[[c for c in visible if c not in gone]]

    def rename(self, mapper=None, *, index=None, columns=None, axis=None, errors="ignore") -> Frame:
        """The frame with columns renamed, as pandas' ``DataFrame.rename(columns=...)``.

        Columns keep their place, values and dtype; a swap (``{"a": "b", "b": "a"}``) works,
        and a frame sorted by a renamed column keeps its order.

        Parameters
        ----------
        mapper : dict or callable, optional
            With ``axis=1`` (or ``"columns"``): as ``columns``. With ``axis=0`` (pandas'
            default) it would rename row labels: ``NotImplementedError``.
        index : dict or callable, optional
            Row labels: ``NotImplementedError`` (hpcframe frames have none to rename; a
            computed result's index can be renamed after ``compute()``).
        columns : dict or callable, optional
            Old name → new name (names not in the frame are ignored, unless
            ``errors="raise"``), or a function of a name giving the new one.
        axis : {0, 1, "index", "columns"}, optional
            What ``mapper`` renames.
        errors : {"ignore", "raise"}
            ``"raise"``: a key of ``columns`` that is not a column raises
            :class:`~hpcframe.ColumnNotFoundError` (a ``KeyError``, as pandas).

        Returns
        -------
        Frame
            The renamed frame. A group-by result's keys are its index, not columns: they
            keep their names (as in pandas; ``reset_index()`` first to rename them).

        Raises
        ------
        ValueError
            When two columns would get one name (pandas allows it; hpcframe frames have
            unique column names), or a column would get the name of the index (a group-by
            key) or of a column the rows are ordered by (a group-by result's key).
        TypeError
            For a new name that is not a string.

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"a": [2, 1], "b": [3.0, 4.0]}))
        >>> df.sort_values("a").rename(columns={"a": "b", "b": "a"}).compute()
           b    a
        1  1  4.0
        0  2  3.0
        >>> df.rename(columns=str.upper).columns.tolist()
        ['A', 'B']
        """
        if mapper is None and index is None and columns is None:
            raise TypeError("must pass an index to rename")
        if mapper is not None:
            if index is not None or columns is not None:
                raise TypeError("Cannot specify both 'mapper' and any of 'index' or 'columns'")
            if _axis_number(0 if axis is None else axis) == 1:
                columns = mapper
            else:
                index = mapper
        elif axis is not None:
            _axis_number(axis)
        if index is not None:
            raise NotImplementedError(
                "rename() of row labels (rename(mapper) renames the index in pandas, as "
                "axis=0 is its default): hpcframe frames have no row labels to rename. To "
                "rename columns use rename(columns=mapper) or rename(mapper, axis=1); a "
                "computed result's index can be renamed after compute()"
            )
        _check_errors(errors)
        return _rename(self, columns, errors)

    def dropna(self, *, axis=0, how=_NO_DEFAULT, thresh=_NO_DEFAULT, subset=None) -> Frame:
        """The rows without missing values (None, NaN, NaT), as pandas' ``DataFrame.dropna``.

        A filter of ``notna()`` terms: ``how="any"`` keeps the rows where every column of
        ``subset`` is present (read and filtered while reading, as ``df[df.x.notna()]``).

        Parameters
        ----------
        axis : {0, "index"}
            Rows only: ``axis=1`` (drop the columns holding a missing value) raises
            ``NotImplementedError``, as which columns depends on the data.
        how : {"any", "all"}
            Drop a row when any / all of the ``subset`` columns are missing.
        thresh : int, optional
            Keep the rows with at least ``thresh`` present values (not with ``how``).
        subset : str or list of str, optional
            The columns to look at (default: every column).

        Returns
        -------
        Frame
            The rows kept (a fresh index once computed, as any filter's result).

        Raises
        ------
        ColumnNotFoundError
            For a ``subset`` name that is not a column.

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"a": [1.0, None, 3.0], "b": ["x", "y", None]}))
        >>> df.dropna(subset=["a"]).compute()
             a    b
        0  1.0    x
        1  3.0  NaN
        """
        if _axis_number(axis) == 1:
            raise NotImplementedError(
                "dropna(axis=1) drops the columns holding a missing value, which depends on "
                "the data; hpcframe knows a frame's columns before reading it. Count first: "
                "n = df.count().compute(); df.drop(columns=n.index[n < len(df)])"
            )
        if how is not _NO_DEFAULT and thresh is not _NO_DEFAULT:
            raise TypeError("You cannot set both the how and thresh arguments at the same time.")
        how = "any" if how is _NO_DEFAULT else how
        if how not in ("any", "all"):
            raise ValueError(f"invalid how option: {how}")
        visible = P.visible_columns(self._node)
        cols = visible if subset is None else _label_list(subset)
        _check_labels(cols, visible, "raise")
        mask = _present_mask(cols, how, None if thresh is _NO_DEFAULT else thresh)
        if mask is None:
            return Frame(self._node)
        return self[Series(self._node, mask)]

    def fillna(self, value=None, *, method=None, axis=None, limit=None) -> Frame:
        """Missing values replaced, as pandas' ``DataFrame.fillna``: by one constant in
        every column, or per column with a dict (``{"x": 0, "s": "none"}``; a value may be
        a lazy Series of this frame, as for :meth:`Series.fillna`; names that are not
        columns are ignored, as pandas).

        A constant a column cannot hold (a number in a ``str`` or datetime column) raises
        ``TypeError`` when written, whether or not the column has missing values: pandas 3
        turns such a column into ``object`` with a ``Pandas4Warning`` (an error in pandas
        4). Fill those with a dict. A value that is not a category of a categorical column
        fails the computation where a value is missing (``ComputeError``; pandas: the
        ``TypeError``), as the categories are known from the data.

        Parameters
        ----------
        value : scalar or dict
            The fill value, or column → fill value.
        method, limit : optional
            Not supported (``method=`` is gone from pandas 3; filling from neighbouring rows
            depends on the row order across partitions): ``NotImplementedError``. Within
            groups, in the frame's order:
            ``df.assign(x=df.groupby(k).x.transform(lambda s: s.ffill()))``.
        axis : {0, "index"}, optional
            ``axis=1`` (fill along rows) raises ``NotImplementedError``.

        Returns
        -------
        Frame
            The frame with the same columns (each column's dtype as pandas gives it).

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"a": [1.0, None], "b": [None, 2.0]}))
        >>> df.fillna({"a": 0.0}).compute()
             a    b
        0  1.0  NaN
        1  0.0  2.0
        """
        if method is not None or limit is not None:
            what = "method" if method is not None else "limit"
            raise NotImplementedError(_ORDER_FILL.format(what=f"fillna({what}=...)"))
        if axis is not None and _axis_number(axis) == 1:
            raise NotImplementedError("fillna(axis=1) fills along rows: not supported; fill per column")
        if value is None:
            raise ValueError("Must specify a fill 'value'.")
        visible = P.visible_columns(self._node)
        if isinstance(value, pd.DataFrame) or isinstance(value, Frame):
            raise NotImplementedError("fillna() with a DataFrame: fill per column with a dict of constants")
        if isinstance(value, (dict, pd.Series)) or _is_mapping(value):
            items = {c: v for c, v in dict(value).items() if c in visible}
        elif isinstance(value, Lazy):
            raise TypeError(
                "a frame's fillna() takes a constant or a dict column -> value; a lazy Series "
                "or scalar fills one column: fillna({'x': df.y}), or compute the scalar first"
            )
        elif pd.api.types.is_list_like(value):
            raise TypeError(
                f'"value" parameter must be a scalar or dict, but you passed a "{type(value).__name__}"'
            )
        else:
            items = dict.fromkeys(visible, value)
        return _replace_columns(self, items, "fillna", _filled)

    def ffill(self, *args, **kwargs):
        """Not supported (``NotImplementedError``): filling from the previous row depends on
        the row order across partitions. Per group, in the frame's order:
        ``df.assign(x=df.groupby(k).x.transform(lambda s: s.ffill()))``."""
        raise NotImplementedError(_ORDER_FILL.format(what="ffill()"))

    def bfill(self, *args, **kwargs):
        """Not supported (``NotImplementedError``), as :meth:`ffill`."""
        raise NotImplementedError(_ORDER_FILL.format(what="bfill()"))

    def astype(self, dtype, copy=None, errors="raise") -> Frame:
        """The columns converted, as pandas' ``DataFrame.astype``: every column to
        ``dtype``, or per column with a dict (``{"n": "float64", "s": "category"}``).

        Parameters
        ----------
        dtype : str, dtype or dict
            As :meth:`Series.astype` takes it, or column → dtype.
        copy : optional
            Accepted for pandas compatibility (a lazy frame is always new).
        errors : {"raise"}
            ``"ignore"`` (keep a column whose conversion fails) raises
            ``NotImplementedError``: lazily, a failure is found block by block, and a
            column would come back with two dtypes.

        Returns
        -------
        Frame
            The frame with the converted columns, in place.

        Raises
        ------
        ColumnNotFoundError
            For a key of the dict that is not a column (a ``KeyError``, as pandas).

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"n": [1, 2], "s": ["a", "b"]}))
        >>> df.astype({"n": "float32"}).dtypes.tolist()
        [dtype('float32'), <StringDtype(na_value=nan)>]
        """
        if errors == "ignore":
            raise NotImplementedError(
                "astype(errors='ignore') keeps a column whose conversion fails; lazily, that "
                "is found block by block (a column could come back with two dtypes): convert "
                "the columns that convert, or compute() first"
            )
        if errors != "raise":
            raise ValueError(
                f"Expected value of kwarg 'errors' to be one of ['raise', 'ignore']. Supplied "
                f"value is '{errors}'"
            )
        visible = P.visible_columns(self._node)
        if isinstance(dtype, (dict, pd.Series)) or _is_mapping(dtype):
            items = dict(dtype)
            for c in items:
                if c not in visible:
                    raise ColumnNotFoundError(c, visible, "the frame (astype's dict names columns)")
        else:
            items = dict.fromkeys(visible, dtype)
        return _replace_columns(self, items, "astype", lambda s, t: s.astype(t))

    def pipe(self, func, *args, **kwargs):
        """``func(self, *args, **kwargs)``, as pandas' ``pipe``: chains functions of frames.
        ``func`` may be a ``(callable, "keyword")`` tuple: the frame is then passed as that
        keyword argument.

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"x": [1.0, -2.0]}))
        >>> def positive(d, column):
        ...     return d[d[column] > 0]
        >>> df.pipe(positive, "x").compute()
             x
        0  1.0
        """
        return _pipe(self, func, args, kwargs)

    # -- writing -------------------------------------------------------------------------------
    def to_parquet(self, path, **options) -> dict:
        """Write the frame as a Parquet dataset: every rank writes the rows it holds or
        reads, nothing is gathered (see :func:`hpcframe.to_parquet` for the options)."""
        from .writing import to_parquet

        return to_parquet(_stored_sorted(self), path, **options)

    def to_hdf(self, path, **options) -> dict:
        """Write the frame as HDF5 (see :func:`hpcframe.to_hdf` for the options)."""
        from .writing import to_hdf

        return to_hdf(_stored_sorted(self), path, **options)

    def to_csv(self, path, **options) -> dict:
        """Write the frame as CSV files (see :func:`hpcframe.to_csv` for the options)."""
        from .writing import to_csv

        return to_csv(_stored_sorted(self), path, **options)

    # -- distributed operations ----------------------------------------------------------------
    def persist(self, comm=None) -> Frame:
        """Compute this frame once and keep its rows on the ranks (Arrow tables; beyond
        ``hf.config.memory_budget`` bytes per rank they are spilled to
        ``hf.config.spill_dir``). Later queries on the returned frame read no file.
        Collective under MPI; release the memory with :meth:`unpersist`."""
        from .comm import communicator
        from .execute import prepare, process_settings, scalars_resolved, stage_scope
        from .stages import PersistStage, SortStage, StageSource

        stage: StageSource
        src = self._node.scan().source
        if isinstance(src, SortStage) and self._node is self._node.scan() and not src.ready:
            stage = src  # set_index(): keep its sorted partitions and divisions
            stage.persisted = True
        elif P.last_sort(self._node) is not None:  # sort_values(): stored sorted (sample sort)
            stage = SortStage(self._node)
            stage.persisted = True
        else:
            stage = PersistStage(self._node)
        node = P.Scan(stage, stage.meta)
        with communicator(comm) as c, stage_scope(), process_settings(c), scalars_resolved([node], c):
            prepare([node], c)
        return Frame(node)

    def unpersist(self) -> None:
        """Release the rows :meth:`persist` kept (on this rank; call it on every rank).
        Using the frame afterwards raises an error saying so."""
        from .stages import PersistStage, SortStage

        src = self._node.scan().source
        if not isinstance(src, (PersistStage, SortStage)) or not src.persisted:
            raise ValueError("unpersist() is for a frame returned by persist()")
        src.release()
        src.dropped = True

    @property
    def is_persisted(self) -> bool:
        """Whether this frame's rows are held on the ranks (by :meth:`persist`)."""
        from .stages import PersistStage, SortStage

        src = self._node.scan().source
        return isinstance(src, (PersistStage, SortStage)) and src.persisted and src.ready

    def drop_duplicates(self, subset=None, keep="first") -> Frame:
        """The rows without duplicates of ``subset`` (default: every column), keeping the
        ``"first"`` or ``"last"`` of each, or none of them (``keep=False``), as pandas.
        Rows are shuffled by a hash of ``subset`` (each rank first drops the duplicates
        of its own blocks), so memory per rank stays bounded for any number of distinct
        rows. The result keeps the frame's row order."""
        cols = P.visible_columns(self._node)
        subset = cols if subset is None else ([subset] if isinstance(subset, str) else list(subset))
        if not subset:
            raise ValueError("drop_duplicates: subset is empty")
        self._node.check_columns(subset)
        if keep not in ("first", "last", False):
            raise ValueError(f"keep must be 'first', 'last' or False, not {keep!r}")
        from .stages import ShuffleStage

        def dedupe(df):
            return df.drop_duplicates(subset, keep=keep)

        stage = ShuffleStage(
            self._node,
            subset,
            f"drop_duplicates({subset}, keep={keep!r})",
            local=dedupe if keep else None,
            per_partition=dedupe,
        )
        stage.reads = list(subset)  # the other columns pass through (projection, hpcframe.pruning)
        return Frame(P.Scan(stage, stage.meta))

    def expression(self, expr: E.Expr, name=None) -> Series:
        """A lazy Series computing ``expr`` (an :mod:`hpcframe.expr` tree over this frame's
        columns, e.g. from :func:`hpcframe.query.parse_query`); raises
        :class:`~hpcframe.ColumnNotFoundError` for a name that is not a column."""
        self._node.check_columns(expr.columns())
        return Series(self._node, expr, name)

    def query(self, text: str) -> Frame:
        """Rows matching a pandas-style query string (``"carrier == 'AA' and dep_delay > 0"``),
        parsed by a restricted parser (:mod:`hpcframe.query`; never ``eval``). Raises
        :class:`hpcframe.QueryError` for anything outside the grammar."""
        from .query import apply_query

        return apply_query(self, text)

    # -- grouping and reductions -------------------------------------------------------------
    def groupby(self, by, dropna: bool = True, sort: bool = True, as_index: bool = True):
        """Group rows by one or several columns; aggregations return lazy results."""
        keys = [by] if isinstance(by, str) else list(by)
        if not keys:
            raise ValueError("No group keys passed!")  # as pandas
        self._node.check_columns(keys)
        return GroupBy(
            self._node, keys, dropna=dropna, sort=sort, as_index=as_index, by_list=not isinstance(by, str)
        )

    def len(self) -> Result:
        """The number of rows, lazily."""
        return _scalar(self._node, "", "size", lambda m: len(m))

    def __len__(self) -> int:
        return int(self.len().compute())

    def _reduce(self, agg, numeric_only=False, **kw):
        cols = _reduce_columns(P.visible_meta(self._node), agg, numeric_only)
        specs = [(c, agg) for c in cols]

        def shape(values, keys):
            # one value per column, in the common dtype pandas gives them (int64 and uint8
            # maxima are int64, float32 means of float32 columns stay float32, ...)
            parts = [v.iloc[:1].reset_index(drop=True) for v in values]
            return pd.concat(parts, ignore_index=True).set_axis(pd.Index(cols)).rename(None)

        def pandas_fn(m):
            return getattr(m[cols], agg)(**kw)

        return Result(AggOutput(self._node, [], specs, shape, pandas_fn, label=f"frame {agg}"))

    def sum(self, numeric_only=False):
        """The sum of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("sum", numeric_only)

    def mean(self, numeric_only=False):
        """The mean of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("mean", numeric_only)

    def count(self):
        """The count of non-missing values of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("count")

    def min(self, numeric_only=False):
        """The minimum of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("min", numeric_only)

    def max(self, numeric_only=False):
        """The maximum of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("max", numeric_only)

    def var(self, numeric_only=False):
        """The variance (ddof=1) of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("var", numeric_only)

    def std(self, numeric_only=False):
        """The standard deviation (ddof=1) of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("std", numeric_only)

    def nunique(self):
        """The number of distinct values of each column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._reduce("nunique")

    def describe(self, percentiles=None) -> Result:
        """count, mean, std, min, quartiles (or the ``percentiles`` given, as pandas) and max
        of the numeric columns (exact quantiles)."""
        from .describe import describe_frame

        return Result(describe_frame(self._node, percentiles))

    def head(self, n: int = 5) -> Result:
        """The first ``n`` rows in the frame's order (dataset order, or its ``sort_values``:
        then a top-n, each block keeps only its first ``n`` rows)."""
        return Result(CollectOutput(self._node, limit=int(n)))

    def map_partitions(self, fn: Callable, combine: Callable | None = None) -> Result:
        """``fn(pandas_df)`` on every partition. Results are combined in partition order:
        ``combine(list_of_results)`` if given, else concatenated (DataFrame/Series results)
        or returned as a list."""
        return Result(MapOutput(self._node, fn, combine))

    # -- sort: sorting, top-n, set_index/.loc, order statistics (see hpcframe.sorting) ----------
    def sort_values(self, by, ascending=True, na_position="last", kind=None, ignore_index=False) -> Frame:
        """The rows sorted by ``by`` (a column or a list), as pandas' ``sort_values``.

        Always a stable sort: rows that tie keep the frame's order (pandas with
        ``kind="stable"``; pandas' default quicksort may order ties of a single key
        differently). Lazy: the order is applied when the frame is collected
        (``compute``, ``head``, ``tail``), by a group-wise operation after it, or by a
        distributed sample sort when the rows must be stored sorted (``persist``,
        ``to_parquet``).

        Parameters
        ----------
        by : str or list of str
            The columns to sort by.
        ascending : bool or list of bool
            One for all keys or one per key.
        na_position : {"last", "first"}
            Where missing values go (NaN, None, NaT).
        kind : str, optional
            Accepted for pandas compatibility; the sort is always stable.
        ignore_index : bool
            The collected result gets a fresh ``RangeIndex`` instead of the rows' labels.

        Returns
        -------
        Frame
            The sorted lazy frame.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
        >>> hf.from_pandas(df).sort_values("dep_delay", ascending=False).head(2).compute()
          carrier  dep_delay
        1      UA       12.0
        3      DL        7.0
        """
        _check_kind(kind)
        return Frame(P.Sort(self._node, by, ascending, na_position, ignore_index))

    def tail(self, n: int = 5) -> Result:
        """The last ``n`` rows in the frame's order (each block keeps only its last ``n``)."""
        return Result(CollectOutput(self._node, limit=int(n), tail=True))

    def nlargest(self, n: int, columns, keep: str = "first") -> Result:
        """The ``n`` rows with the largest values of ``columns``, as pandas' ``nlargest``
        (``keep``: ``"first"``, ``"last"`` or ``"all"`` ties), without sorting the frame:
        each block keeps only its candidates."""
        return _top(self._node, n, columns, keep, True)

    def nsmallest(self, n: int, columns, keep: str = "first") -> Result:
        """The ``n`` rows with the smallest values of ``columns``, as pandas' ``nsmallest``
        (see :meth:`nlargest`)."""
        return _top(self._node, n, columns, keep, False)

    def set_index(self, keys, drop: bool = True, sorted: bool = False) -> Frame:
        """The column ``keys`` as the index, with the rows **sorted by it** (as Dask: sorted
        partitions with known divisions, unlike pandas, which keeps the row order: the
        collected result equals pandas' ``set_index(keys).sort_index(kind="stable")``).

        ``sorted=False`` sorts by a distributed sample sort (computed when first used);
        ``sorted=True`` promises the frame is already in index order: no splitters, the
        blocks are cut into partitions in dataset order (a ``ValueError`` when their ranges
        overlap: the rows were not sorted). Each partition's
        min/max (its *division*) is recorded, so ``.loc[a:b]`` reads only the partitions
        whose range overlaps ``[a, b]``."""
        return _set_index(self, keys, drop, sorted)

    @property
    def loc(self):
        """Label selection on a frame made by :meth:`set_index`: ``.loc[a:b]`` (both ends
        included, as pandas; a string is parsed as a time for a datetime index, and a
        partial date covers its whole period) and ``.loc[label]``."""
        return _Loc(self)

    def quantile(self, q=0.5, numeric_only: bool = False) -> Result:
        """Exact quantiles of each column (linear interpolation, missing values skipped), as
        pandas' ``DataFrame.quantile``: a Series for a scalar ``q``, a DataFrame indexed by
        ``q`` for a list. Each column is sample-sorted over the ranks; only the values next
        to each quantile are gathered (bounded memory)."""
        return _frame_quantile(self, q, numeric_only, median=False)

    def median(self, numeric_only: bool = False) -> Result:
        """The exact median of each column, as pandas' ``DataFrame.median``."""
        return _frame_quantile(self, 0.5, numeric_only, median=True)

    # -- end of sort ---------------------------------------------------------------------------


def _reduce_columns(meta, agg, numeric_only):
    a = AGGREGATIONS.get(agg)
    cols = []
    for c in meta.columns:
        numeric = pd.api.types.is_numeric_dtype(meta[c].dtype)
        if numeric_only and not numeric:
            continue
        if agg == "mean" and getattr(meta[c].dtype, "kind", "") in "mM":
            cols.append(c)  # as pandas: the mean of a datetime column is a Timestamp
            continue
        if a is not None and (a.numeric_only or agg == "sum") and not numeric:
            raise TypeError(
                f"cannot compute {agg} of non-numeric column {c!r} "
                f"({meta[c].dtype}); select numeric columns or pass "
                f"numeric_only=True"
            )
        cols.append(c)
    return cols


_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")


class Series(_Operators, Lazy):
    """A lazy column, or an expression over the columns of one frame.

    Made by selecting a column of a :class:`Frame` (``frame.col`` or ``frame["col"]``) and
    by operators on such columns, not directly.

    Parameters
    ----------
    node : hpcframe.plan.Node
        The plan node of the frame the columns belong to.
    expr : hpcframe.expr.Expr
        The expression over its columns.
    name : str, optional
        The name of the computed pandas Series.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df)
    >>> minutes = flights.dep_delay * 60
    >>> minutes
    <hpcframe Series (dep_delay * 60)>
    >>> minutes.head(2).compute()
    0    300.0
    1    720.0
    Name: dep_delay, dtype: float64
    >>> float(flights.dep_delay.max().compute())
    12.0
    """

    def __init__(self, node: P.Node, expr: E.Expr, name=None):
        self._node, self._expr, self.name = node, expr, name

    def __repr__(self):
        return f"<hpcframe Series {self._expr.text()}>"

    def __getitem__(self, mask):
        """The values where a boolean lazy Series of the same frame is true (``s[s > 0]``)."""
        if not isinstance(mask, Series):
            raise TypeError("a lazy Series is indexed by a boolean lazy Series of its frame, e.g. s[s > 0]")
        if mask._node.scan() is not self._node.scan():
            raise ValueError("a boolean mask must come from the same frame as the Series")
        return Series(P.Filter(self._node, mask._expr), self._expr, self.name)

    @property
    def dtype(self):
        """The pandas dtype of the values (from the schema; nothing is read)."""
        return E.dtype_on(self._expr, self._node.meta)

    def reset_index(self, drop: bool = False, name=_SERIES_NAME):
        """As pandas' ``Series.reset_index`` (``g.x.sum().reset_index()``): a group-by
        result's keys (its index) as columns in front of the values, a lazy :class:`Frame`
        whose value column is ``name`` (default: the Series' name); ``drop=True`` drops the
        keys and returns a Series numbered from 0. A Series without such an index (a column
        of a frame read from files) becomes a one-column frame, or is returned unchanged with
        ``drop=True``, as :meth:`Frame.reset_index` leaves such frames.

        Raises ``TypeError`` when the value column would have no string name (``g.size()``:
        pandas calls it ``0``; give one, ``reset_index(name="n")``) and ``ValueError`` when it
        is also the name of a key, as pandas does."""
        index = P.frame_index(self._node)
        if drop:
            if not index:
                return self
            node = P.Project(P.Assign(self._node, _VALUE, self._expr), [_VALUE])
            return Series(P.ResetIndex(node, True), E.Col(_VALUE), self.name)
        label = self.name if name is _SERIES_NAME else name
        if not isinstance(label, str):
            what = "have no name (pandas calls the column 0)" if label is None else f"are named {label!r}"
            raise TypeError(
                f"reset_index(): the values {what}, and hpcframe's columns are named by strings: "
                f"give one, e.g. .reset_index(name='n')"
            )
        if label in index:
            raise ValueError(f"cannot insert {label}, already exists (a key of the index has that name)")
        node = P.Project(P.Assign(self._node, label, self._expr), [label])
        return Frame(P.ResetIndex(node, False)) if index else Frame(node)

    def rename(self, index=None):
        """The same values named ``index`` (a scalar name), as pandas' ``Series.rename``. A
        dict or function renames index labels in pandas: ``NotImplementedError`` here
        (hpcframe Series have no row labels before they are computed).

        Examples
        --------
        >>> import pandas as pd
        >>> df = hf.from_pandas(pd.DataFrame({"x": [1.0, 2.0]}))
        >>> (df.x * 2).rename("double").compute()
        0    2.0
        1    4.0
        Name: double, dtype: float64
        """
        if callable(index) or _is_mapping(index) or pd.api.types.is_list_like(index):
            raise NotImplementedError(
                "Series.rename() with a dict, function or list renames index labels: hpcframe "
                "Series have none before compute(); pass a scalar to rename the Series"
            )
        return self._new(self._expr, index)

    def pipe(self, func, *args, **kwargs):
        """``func(self, *args, **kwargs)``, as pandas' ``pipe`` (see :meth:`Frame.pipe`)."""
        return _pipe(self, func, args, kwargs)

    def _output(self):
        node, col = self._as_column()
        out = CollectOutput(P.Project(node, [col]))
        name = self.name
        finish = lambda r: r[0][col].rename(name)
        return Composite([out], finish, f"collect {self._expr.text()}")

    def _as_column(self):
        if isinstance(self._expr, E.Col):
            return self._node, self._expr.name
        return P.Assign(self._node, _VALUE, self._expr), _VALUE

    def _new(self, expr, name="__same__"):
        return Series(self._node, expr, self.name if name == "__same__" else name)

    def _bin(self, op, other, reverse=False):
        if isinstance(other, Series) and other._node.scan() is not self._node.scan():
            # a column of a frame and a transform of that frame: computed on the transform's
            # rows, which carry every column of the frame
            if isinstance(other, _TransformSeries) and self._node is other._base:
                return other._lift(self)._bin(op, other, reverse)
            if isinstance(self, _TransformSeries) and other._node is self._base:
                return self._bin(op, self._lift(other), reverse)
            raise ValueError(
                "cannot combine columns of different datasets (or two transforms: assign "
                "one of them to the frame first)"
            )
        if isinstance(other, str) and op in _COMPARISONS:
            other = E.datetime_literal(other, self.dtype)
        o = _expr_of(other)
        left, right = (o, self._expr) if reverse else (self._expr, o)
        name = self.name if not isinstance(other, Series) or other.name == self.name else None
        return self._new(E.Bin(op, left, right), name)

    # comparisons and arithmetic: _Operators; logic
    def __and__(self, o):
        return self._bin("&", o)

    def __rand__(self, o):
        return self._bin("&", o, True)

    def __or__(self, o):
        return self._bin("|", o)

    def __ror__(self, o):
        return self._bin("|", o, True)

    def __invert__(self):
        return self._new(E.Not(self._expr))

    def __neg__(self):
        return self._new(E.Neg(self._expr))

    def __bool__(self):
        raise TypeError(
            "the truth value of a lazy hpcframe Series is unknown; use & | ~ "
            "instead of and/or/not, and .compute() to get values"
        )

    __hash__ = None  # type: ignore[assignment]

    def isin(self, values):
        """Whether each value is one of ``values`` (lazy; as pandas). ``values`` may be a lazy
        Series: the result then filters this Series' frame as a semi-join (``~``: anti-join)."""
        if isinstance(values, Series):
            return _isin_lazy(self, values)
        return self._new(E.IsIn(self._expr, list(values)))

    def between(self, left, right, inclusive="both"):
        """Whether each value lies between ``left`` and ``right`` (lazy; as pandas)."""
        return self._new(E.Between(self._expr, left, right, inclusive))

    def isna(self):
        """Whether each value is missing (lazy; as pandas)."""
        return self._new(E.IsNa(self._expr))

    isnull = isna

    def notna(self):
        """Whether each value is present (lazy; as pandas)."""
        return self._new(E.IsNa(self._expr, negate=True))

    notnull = notna

    @property
    def str(self):
        """String methods: ``startswith``, ``endswith``, ``contains``, ``len``, ``lower``,
        ``upper``, ``strip``, ``slice``, ``replace`` and ``[start:stop]``."""
        return _StrAccessor(self)

    @property
    def dt(self):
        """Date/time fields and rounding, as pandas' ``.dt``: ``year``, ``month``, ``day``,
        ``hour``, ``minute``, ``second``, ``weekday``/``dayofweek``, ``dayofyear``,
        ``quarter``, ``date``, ``floor(freq)``, ``ceil(freq)``, ``normalize()``."""
        return _DtAccessor(self)

    # element-wise methods (lazy, as pandas computes them)
    def _method(self, name, *args, **kwargs):
        if any(isinstance(v, Lazy) for v in (*args, *kwargs.values())):
            raise TypeError(
                f"{name}() takes constants here, not a lazy column or scalar: compute a lazy "
                f"scalar first (.compute())"
            )
        return self._new(E.Method(self._expr, "", name, args, tuple(kwargs.items())))

    def abs(self):
        """The absolute values (lazy; as pandas)."""
        return self._method("abs")

    def __abs__(self):
        return self.abs()

    def round(self, decimals: int = 0):
        """The values rounded to ``decimals`` places, half to even (lazy; as pandas)."""
        return self._method("round", decimals)

    def clip(self, lower=None, upper=None):
        """The values limited to ``[lower, upper]`` (lazy; as pandas)."""
        return self._method("clip", lower=lower, upper=upper)

    def fillna(self, value):
        """Missing values replaced by ``value``, a constant or a lazy Series of the same
        frame (lazy; as pandas)."""
        if isinstance(value, Series):
            return self._new(E.Where(self._expr, E.IsNa(self._expr, negate=True), _expr_of(value)))
        return self._method("fillna", value)

    def astype(self, dtype):
        """The values converted to ``dtype`` (a name such as ``"float64"``, ``"int32"``,
        ``"str"``, ``"category"``; lazy; as pandas)."""
        return self._method(
            "astype", dtype if isinstance(dtype, str) else str(pd.api.types.pandas_dtype(dtype))
        )

    def where(self, cond, other=float("nan")):
        """The values where ``cond`` (a boolean lazy Series of the same frame) is true, else
        ``other`` (a constant or a lazy Series; NaN by default), as pandas."""
        return self._new(E.Where(self._expr, _expr_of(cond), _expr_of(other)))

    def mask(self, cond, other=float("nan")):
        """The values where ``cond`` is false, else ``other``, as pandas."""
        return self._new(E.Where(self._expr, _expr_of(cond), _expr_of(other), mask=True))

    # reductions
    def _agg(self, agg, **kw):
        node, col = self._as_column()
        return _scalar(node, col, agg, lambda m: getattr(m[col], agg)(**kw))

    def sum(self):
        """The sum of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("sum")

    def mean(self):
        """The mean of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("mean")

    def count(self):
        """The count of non-missing values of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("count")

    def min(self):
        """The minimum of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("min")

    def max(self):
        """The maximum of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("max")

    def var(self):
        """The variance (ddof=1) of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("var")

    def std(self):
        """The standard deviation (ddof=1) of the column, as pandas computes it (lazy: a :class:`Result`)."""
        return self._agg("std")

    def nunique(self, dropna: bool = True):
        """The number of distinct values of the column, as pandas computes it (lazy: a
        :class:`Result`). Any number of distinct values: they are shuffled by hash over the
        ranks (after each block drops its own duplicates), so no rank holds them all."""
        from .stages import ShuffleStage

        node, col = self._as_column()
        node = P.Project(node, [col])

        def dedupe(df):
            return df.drop_duplicates([col])

        stage = ShuffleStage(node, [col], f"distinct values of {col}", local=dedupe, per_partition=dedupe)
        scan = P.Scan(stage, stage.meta)

        def shape(values, keys):
            return int(values[0].iloc[0])

        def pandas_fn(m):
            return m[col].nunique(dropna=dropna)

        agg = "count" if dropna else "size"
        return Result(AggOutput(scan, [], [(col if dropna else "", agg)], shape, pandas_fn, label="nunique"))

    def describe(self, percentiles=None) -> Result:
        """Summary statistics as pandas' ``describe`` (``percentiles`` too; lazy: a
        :class:`Result`)."""
        from .describe import describe_series

        node, col = self._as_column()
        return Result(describe_series(node, col, self.name, percentiles))

    def value_counts(
        self, dropna: bool = True, sort: bool = True, ascending: bool = False, normalize: bool = False
    ) -> Result:
        """Counts of distinct values, like ``pandas.Series.value_counts``."""
        node, col = self._as_column()
        name = self.name

        def shape(values, keys):
            counts = values[0]
            if normalize:
                counts = counts / counts.sum()
            index = pd.Index(keys[col], name=name)
            out = pd.Series(counts.to_numpy(), index=index, name="proportion" if normalize else "count")
            if sort:
                out = out.sort_values(ascending=ascending, kind="stable")
            return out

        def pandas_fn(m):
            out = m[col].value_counts(dropna=dropna, sort=sort, ascending=ascending, normalize=normalize)
            return out.rename_axis(name)

        if P.last_sort(node) is not None or P.source_sort(node.scan().source):
            # values listed by their first row in the frame's order (also the order of equal
            # counts), which a sort_values (or a stage's stored order) decides, not the
            # dataset's: the group-by that follows it
            sizes = GroupBy(node, [col], dropna=dropna, sort=False).size()

            def listed(results):
                counts = results[0]
                if normalize:
                    counts = counts / counts.sum()
                out = pd.Series(counts.to_numpy(), index=pd.Index(counts.index, name=name))
                out = out.rename("proportion" if normalize else "count")
                return out.sort_values(ascending=ascending, kind="stable") if sort else out

            return Result(Composite([sizes._output()], listed, "value_counts"))
        return Result(
            AggOutput(
                node, [col], [("", "size")], shape, pandas_fn, dropna=dropna, sort=False, label="value_counts"
            )
        )

    def head(self, n=5) -> Result:
        """The first ``n`` values in the frame's order (lazy: a :class:`Result`)."""
        node, col = self._as_column()
        out = CollectOutput(P.Project(node, [col]), limit=int(n))
        name = self.name
        return Result(Composite([out], lambda r: r[0][col].rename(name), f"head({n})"))

    # -- sort: Series sorting, top-n, order statistics (see hpcframe.sorting) -------------------
    def sort_values(self, ascending=True, na_position="last", kind=None, ignore_index=False) -> Series:
        """The values sorted, as pandas' ``Series.sort_values`` with ``kind="stable"`` (ties
        keep the frame's order); lazy, see :meth:`Frame.sort_values`."""
        _check_kind(kind)
        if isinstance(ascending, (list, tuple)):
            if len(ascending) != 1:
                raise ValueError(f"Length of ascending ({len(ascending)}) must be 1 for Series")
            ascending = ascending[0]
        node, col = self._as_column()
        return Series(P.Sort(node, [col], ascending, na_position, ignore_index), E.Col(col), self.name)

    def tail(self, n=5) -> Result:
        """The last ``n`` values in the frame's order (lazy: a :class:`Result`)."""
        node, col = self._as_column()
        out = CollectOutput(P.Project(node, [col]), limit=int(n), tail=True)
        name = self.name
        return Result(Composite([out], lambda r: r[0][col].rename(name), f"tail({n})"))

    def nlargest(self, n: int = 5, keep="first") -> Result:
        """The ``n`` largest values, as pandas' ``Series.nlargest`` (without a full sort)."""
        return self._top(n, keep, True)

    def nsmallest(self, n: int = 5, keep="first") -> Result:
        """The ``n`` smallest values, as pandas' ``Series.nsmallest`` (without a full sort)."""
        return self._top(n, keep, False)

    def _top(self, n, keep, largest):
        node, col = self._as_column()
        name = self.name
        probe = node.meta[col]
        getattr(probe, "nlargest" if largest else "nsmallest")(int(n), keep=keep)  # pandas' errors
        inner = _top(P.Project(node, [col]), n, [col], keep, largest)._output()
        label = f"{'nlargest' if largest else 'nsmallest'}({n})"
        return Result(Composite([inner], lambda r: r[0][col].rename(name), label))

    def quantile(self, q=0.5) -> Result:
        """The exact ``q`` quantile(s) (linear interpolation, missing values skipped), as
        pandas' ``Series.quantile``: a scalar for a scalar ``q``, a Series indexed by ``q``
        for a list. The column is sample-sorted over the ranks and only the values next
        to each quantile are gathered."""
        return _series_quantile(self, q, median=False)

    def median(self) -> Result:
        """The exact median (missing values skipped), as pandas' ``Series.median``."""
        return _series_quantile(self, 0.5, median=True)

    # -- end of sort ---------------------------------------------------------------------------


class _StrAccessor:
    def __init__(self, s: Series):
        self._s = s

    def startswith(self, pat):
        return self._s._new(E.StrMatch(self._s._expr, "startswith", pat))

    def endswith(self, pat):
        return self._s._new(E.StrMatch(self._s._expr, "endswith", pat))

    def contains(self, pat, case=True, regex=True):
        return self._s._new(E.StrMatch(self._s._expr, "contains", pat, regex=regex, case=case))

    def _call(self, name, *args, **kwargs):
        return self._s._new(E.Method(self._s._expr, "str", name, args, tuple(kwargs.items())))

    def len(self):
        """The length of each string (lazy; as pandas)."""
        return self._call("len")

    def lower(self):
        """Lower-cased strings (lazy; as pandas)."""
        return self._call("lower")

    def upper(self):
        """Upper-cased strings (lazy; as pandas)."""
        return self._call("upper")

    def strip(self, to_strip=None):
        """Strings without leading and trailing whitespace or ``to_strip`` (lazy)."""
        return self._call("strip", to_strip)

    def slice(self, start=None, stop=None, step=None):
        """Substrings ``[start:stop:step]`` (lazy; as pandas)."""
        return self._call("slice", start, stop, step)

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("str[...] takes a slice, e.g. s.str[:3]")
        return self.slice(key.start, key.stop, key.step)

    def replace(self, pat, repl, regex: bool = False, case=None):
        """``pat`` replaced by ``repl`` in each string (a plain string unless ``regex``)."""
        return self._call("replace", pat, repl, regex=regex, case=case)


class _DtAccessor:
    def __init__(self, s: Series):
        self._s = s

    def _get(self, name, *args):
        return self._s._new(E.Method(self._s._expr, "dt", name, args))

    def __getattr__(self, name):
        if name in E.PROPERTIES["dt"]:
            return self._get(name)
        if name in E.METHODS["dt"]:
            return lambda *args: self._get(name, *args)
        raise AttributeError(f"hpcframe does not offer Series.dt.{name}")


def _expr_of(value) -> E.Expr:
    if isinstance(value, Series):
        return value._expr
    if isinstance(value, Scalar):
        return value._expr
    if isinstance(value, (Frame, Lazy)):
        raise TypeError("expected a column expression or a scalar")
    return E.Lit(value)


def _scalar(node, col, agg, pandas_fn) -> Scalar:
    # a nullable (masked) dtype, Int64, Float64, boolean...: pandas answers <NA> where the
    #    reduction comes out NaN (no value, one value for var/std, inf - inf). (No column:
    #    the frame's size.)
    dtype = node.meta[col].dtype if col in node.meta.columns else None
    masked = dtype is not None and getattr(dtype, "na_value", None) is pd.NA and dtype.kind in "iufb"

    def shape(values, keys):
        value = values[0].iloc[0]
        if agg in ("nunique", "size"):  # pandas: a Python int
            return int(value)
        if masked and isinstance(value, (float, np.floating)) and np.isnan(value):
            return pd.NA
        return value

    output = AggOutput(node, [], [(col, agg)], shape, pandas_fn, label=agg)
    # a value of the result's dtype for the frames' empty meta: pandas' answer on no rows
    return Scalar._of(output, pandas_fn(node.meta), f"{agg}({col})")


class GroupBy:
    """``frame.groupby(keys)``: pick columns with ``[...]`` and aggregate.

    Made by :meth:`Frame.groupby`, not directly; its aggregations return a lazy
    :class:`Result` holding what pandas' group-by returns.

    Parameters
    ----------
    node : hpcframe.plan.Node
        The plan node of the grouped frame.
    keys : list of str
        The group keys.
    dropna, sort, as_index : bool, default True
        As for ``pandas.DataFrame.groupby``.
    selection : list of str, optional
        The columns picked with ``[...]`` (all other columns by default).
    series : bool, default False
        One column was picked as ``["col"]`` (results are Series).
    by_list : bool, default False
        The keys were given as a list (as pandas, results then have tuple keys).

    Raises
    ------
    ColumnNotFoundError
        When a key or a picked column is not a column of the frame.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df)
    >>> by_carrier = flights.groupby("carrier")
    >>> by_carrier.dep_delay.mean().compute()
    carrier
    AA     1.0
    DL     7.0
    UA    12.0
    Name: dep_delay, dtype: float64
    >>> by_carrier.size().compute()
    carrier
    AA    2
    DL    1
    UA    1
    dtype: int64
    """

    def __init__(
        self, node, keys, dropna=True, sort=True, as_index=True, selection=None, series=False, by_list=False
    ):
        self._node, self._keys = node, keys
        self._dropna, self._sort, self._as_index = dropna, sort, as_index
        self._selection, self._series = selection, series
        self._by_list = by_list or len(keys) > 1

    def __getitem__(self, cols):
        if isinstance(cols, str):
            self._node.check_columns([cols])
            return GroupBy(
                self._node,
                self._keys,
                self._dropna,
                self._sort,
                self._as_index,
                [cols],
                series=True,
                by_list=self._by_list,
            )
        cols = list(cols)
        self._node.check_columns(cols)
        return GroupBy(
            self._node, self._keys, self._dropna, self._sort, self._as_index, cols, by_list=self._by_list
        )

    def __iter__(self):
        """``(key, pandas DataFrame or Series)`` per group, like iterating a pandas GroupBy.

        This computes every row of the frame (on every rank, so under MPI every rank must
        iterate, as with any computation) and groups it with pandas: use it for small results
        only; aggregate with ``agg`` or filter first for large data."""
        node = self._node
        if self._selection is not None:  # read only the keys and the selected columns
            node = P.Project(node, self._keys + [c for c in self._selection if c not in self._keys])
        rows = Frame(node).compute()
        g = rows.groupby(
            self._keys if self._by_list else self._keys[0],
            dropna=self._dropna,
            sort=self._sort,
            observed=True,
        )
        if self._selection is not None:
            g = g[self._selection[0] if self._series else self._selection]
        return iter(g)

    def __getattr__(self, name):
        if name.startswith("__") or name == "_node":  # (see Frame.__getattr__)
            raise AttributeError(name)
        if name in P.visible_columns(self._node):  # a key too (g.k.count()), as g["k"] and pandas
            return self[name]
        raise AttributeError(f"GroupBy has no attribute or column {name!r}")

    def _follows_sort(self, aggs) -> bool:
        """Whether aggregations ``aggs`` (names) of this group-by depend on the order of the
        rows while that order is a ``sort_values`` upstream, not dataset order: ``first`` and
        ``last`` (a group's first/last row) and ``sort=False`` (groups listed by their first
        row). The partials of the built-in aggregations follow dataset order (a row's
        position), so such a group-by is computed on whole groups in the sorted order
        (:func:`_exact`), as pandas computes it on the sorted frame. The same holds for the
        rows of a stage stored in another order than the one pandas shows (a join or
        semi-join stored by hash partition, which declares its order): ``first`` of a
        shuffled join's rows took the first row of the first partition."""
        if P.last_sort(self._node) is None and not P.source_sort(self._node.scan().source):
            return False
        return not self._sort or any(a in ("first", "last") for a in aggs)

    def _value_columns(self):
        """The aggregated columns: those picked, else every column the user sees but the keys
        (not the index, nor a join's hidden row-order columns)."""
        if self._selection is not None:
            return self._selection
        return [c for c in P.visible_columns(self._node) if c not in self._keys]

    def _pandas_groupby(self, m):
        visible = set(P.visible_columns(self._node)) | set(self._keys)
        hidden = [c for c in m.columns if c not in visible]
        if hidden:  # pandas aggregates every column it is given
            m = m.drop(columns=hidden)
        g = m.groupby(
            self._keys if len(self._keys) > 1 else self._keys[0],
            dropna=self._dropna,
            sort=self._sort,
            as_index=self._as_index,
            observed=True,
        )
        if self._selection is not None:
            g = g[self._selection[0] if self._series else self._selection]
        return g

    def _result(self, specs, labels, pandas_fn, series_name="__none__", label="groupby"):
        keys, as_index = self._keys, self._as_index
        node = self._node
        counted = _counted_before_join(node, keys, specs, pandas_fn)
        if counted is not None:
            node, specs, pandas_fn = counted
            label = f"{label} (the counts taken per key before the join)"

        def shape(values, key_frame):
            if as_index:
                if len(keys) == 1:
                    index = pd.Index(key_frame[keys[0]], name=keys[0])
                else:
                    index = pd.MultiIndex.from_frame(key_frame)
                if series_name != "__none__":  # .array keeps categoricals and time zones
                    return pd.Series(values[0].array, index=index, name=series_name)
                data = {i: v.array for i, v in enumerate(values)}
                out = pd.DataFrame(data, index=index)
                out.columns = labels
                return out
            data = {i: v for i, v in enumerate(values)}
            out = pd.DataFrame(data)
            out.columns = labels if labels is not None else [series_name]
            if isinstance(out.columns, pd.MultiIndex):  # as pandas: keys become (key, "")
                key_frame = key_frame.copy()
                key_frame.columns = pd.MultiIndex.from_tuples([(k, "") for k in keys])
            return pd.concat([key_frame, out], axis=1)

        out = AggOutput(
            node, keys, specs, shape, pandas_fn, dropna=self._dropna, sort=self._sort, label=label
        )
        if series_name != "__none__":
            return GroupSeries(out, series_name)
        return GroupFrame(out, labels, as_index)

    def agg(self, func=None, **named):
        """Aggregate like pandas: a name, a list of names, a dict ``{column: name or list}``,
        or named aggregation ``agg(total=("x", "sum"))``. ``median``, ``quantile`` and
        functions of a group's Series (``("x", lambda s: s.quantile(0.9))``) are computed
        exactly on whole groups (see :meth:`median`), together with the other aggregations."""
        if _wants_whole_groups(func, named) or self._follows_sort(_agg_names(func, named)):
            return _exact_agg(self, func, named)
        if named:
            if func is not None:
                raise TypeError("pass either a function spec or named aggregations, not both")
            specs, labels = [], []
            for out_name, spec in named.items():
                if not (isinstance(spec, tuple) and len(spec) == 2):
                    raise TypeError(
                        f"named aggregation {out_name}= must be a (column, aggregation) tuple, got {spec!r}"
                    )
                col, agg = spec
                self._node.check_columns([col])
                specs.append((col, _check_agg(agg)))
                labels.append(out_name)
            return self._result(
                specs, pd.Index(labels), lambda m: self._pandas_groupby(m).agg(**named), label="groupby agg"
            )
        if isinstance(func, str):
            return self._simple(func)
        if isinstance(func, dict):
            multi = any(isinstance(v, (list, tuple)) for v in func.values())
            specs, labels = [], []
            for col, aggs in func.items():
                self._node.check_columns([col])
                for agg in [aggs] if isinstance(aggs, str) else aggs:
                    specs.append((col, _check_agg(agg)))
                    labels.append((col, agg) if multi else col)
            labels = pd.MultiIndex.from_tuples(labels) if multi else pd.Index(labels)
            return self._result(
                specs, labels, lambda m: self._pandas_groupby(m).agg(func), label="groupby agg"
            )
        if isinstance(func, (list, tuple)):
            aggs = [_check_agg(a) for a in func]
            cols = self._value_columns()
            if self._series:
                specs = [(cols[0], a) for a in aggs]
                labels = pd.Index(aggs)
            else:
                specs = [(c, a) for c in cols for a in aggs]
                labels = pd.MultiIndex.from_tuples([(c, a) for c in cols for a in aggs])
            return self._result(
                specs, labels, lambda m: self._pandas_groupby(m).agg(list(func)), label="groupby agg"
            )
        raise TypeError(
            f"agg() takes a name, a list, a dict or named aggregations, not {type(func).__name__}"
        )

    aggregate = agg

    def _simple(self, agg, subtotals=False, margins_name="All"):
        _check_agg(agg)
        cols = self._value_columns()
        if agg == "size":
            return self.size()
        if not subtotals and self._follows_sort([agg]):
            return _exact(self, lambda g: getattr(g, agg)(), agg)
        if subtotals:
            from .subtotals import rollup

            return Result(
                rollup(
                    self._node,
                    self._keys,
                    agg,
                    cols,
                    margins_name,
                    dropna=self._dropna,
                    sort=self._sort,
                    as_index=self._as_index,
                    series=self._series,
                )
            )
        specs = [(c, agg) for c in cols]
        if self._series:
            return self._result(
                specs,
                None,
                lambda m: getattr(self._pandas_groupby(m), agg)(),
                series_name=cols[0],
                label=f"groupby {agg}",
            )
        return self._result(
            specs, pd.Index(cols), lambda m: getattr(self._pandas_groupby(m), agg)(), label=f"groupby {agg}"
        )

    def sum(self, subtotals=False, margins_name="All"):
        """The sum per group, as pandas computes it (lazy: a :class:`Result`); ``subtotals=True`` adds a
        total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("sum", subtotals, margins_name)

    def mean(self, subtotals=False, margins_name="All"):
        """The mean per group, as pandas computes it (lazy: a :class:`Result`); ``subtotals=True`` adds a
        total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("mean", subtotals, margins_name)

    def count(self, subtotals=False, margins_name="All"):
        """The count of non-missing values per group, as pandas computes it (lazy: a :class:`Result`);
        ``subtotals=True`` adds a total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("count", subtotals, margins_name)

    def min(self, subtotals=False, margins_name="All"):
        """The minimum per group, as pandas computes it (lazy: a :class:`Result`); ``subtotals=True`` adds a
        total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("min", subtotals, margins_name)

    def max(self, subtotals=False, margins_name="All"):
        """The maximum per group, as pandas computes it (lazy: a :class:`Result`); ``subtotals=True`` adds a
        total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("max", subtotals, margins_name)

    def var(self, subtotals=False, margins_name="All"):
        """The variance (ddof=1) per group, as pandas computes it (lazy: a :class:`Result`);
        ``subtotals=True`` adds a total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("var", subtotals, margins_name)

    def std(self, subtotals=False, margins_name="All"):
        """The standard deviation (ddof=1) per group, as pandas computes it (lazy: a :class:`Result`);
        ``subtotals=True`` adds a total per level of the keys (see :mod:`hpcframe.subtotals`)."""
        return self._simple("std", subtotals, margins_name)

    def first(self):
        """The first value per group, as pandas computes it (lazy: a :class:`Result`)."""
        return self._simple("first")

    def last(self):
        """The last value per group, as pandas computes it (lazy: a :class:`Result`)."""
        return self._simple("last")

    def nunique(self):
        """The number of distinct values per group, as pandas computes it (lazy: a :class:`Result`)."""
        return self._simple("nunique")

    def size(self):
        """The number of rows per group, as pandas computes it (lazy: a :class:`Result`)."""
        specs = [("", "size")]
        if self._follows_sort(["size"]):  # sort=False: groups in the order of the sort
            if self._as_index:
                return _exact(self, lambda g: g.size(), "size")
            return _exact(self, lambda g: g.size().rename("size").to_frame(), "size")
        if self._as_index:  # pandas names it after the column of a SeriesGroupBy, else None
            name = self._selection[0] if self._series else None
            return self._result(
                specs, None, lambda m: self._pandas_groupby(m).size(), series_name=name, label="groupby size"
            )
        return self._result(
            specs, pd.Index(["size"]), lambda m: self._pandas_groupby(m).size(), label="groupby size"
        )

    def apply(self, fn, *args, **kwargs) -> Result:
        """``fn`` on every group's pandas DataFrame (or Series, after ``[col]``), results
        shaped as pandas' ``groupby().apply`` shapes them (lazy: a :class:`Result`). Rows
        are shuffled by the keys so that every group is whole on one rank; a failing ``fn``
        fails every rank, naming the group. ``fn`` sees the group's rows in the frame's
        order, indexed by their row positions."""
        return _apply(self, fn, args, kwargs)

    def transform(self, func, *args, **kwargs):
        """``func`` (an aggregation name such as ``"mean"``, or a function of a group's
        Series) on every group, broadcast back to the group's rows, as in pandas: after
        ``[col]`` a lazy Series with one value per row in the frame's order (usable in
        ``frame.assign(...)``), else a lazy Frame of the transformed value columns. Rows are
        shuffled by the keys (whole groups on one rank)."""
        return _transform(self, func, args, kwargs)

    # group windows, head/tail/nth, exact per-group order statistics
    # (helpers: _window, _group_rows, _exact below; all run pandas on whole groups after a
    # hash shuffle of the rows by the keys, in the frame's row order)
    def cumsum(self):
        """The running sum within each group, as pandas (lazy, aligned with the frame's rows:
        a Series after ``[col]``, else a Frame of the value columns). Rows with a missing
        key get NaN (``dropna=True``), as in pandas."""
        return _window(self, "cumsum", {})

    def cumprod(self):
        """The running product within each group, as pandas (lazy, aligned with the frame)."""
        return _window(self, "cumprod", {})

    def cummax(self):
        """The running maximum within each group, as pandas (lazy, aligned with the frame)."""
        return _window(self, "cummax", {})

    def cummin(self):
        """The running minimum within each group, as pandas (lazy, aligned with the frame)."""
        return _window(self, "cummin", {})

    def cumcount(self, ascending: bool = True):
        """The number of each row within its group (0, 1, ...; from the end with
        ``ascending=False``), as pandas: a lazy int64 Series aligned with the frame (float64
        with NaN where a key is missing, as pandas gives it)."""
        return _window(self, "cumcount", {"ascending": bool(ascending)})

    def diff(self, periods: int = 1):
        """The difference with the row ``periods`` before in the same group, as pandas (lazy,
        aligned with the frame; the frame's row order, e.g. after ``sort_values``)."""
        return _window(self, "diff", {"periods": int(periods)})

    def shift(self, periods: int = 1, fill_value=None):
        """The value ``periods`` rows before (negative: after) in the same group, as pandas
        (lazy, aligned with the frame); ``fill_value`` replaces what is shifted in."""
        kw: dict = {"periods": int(periods)}
        if fill_value is not None:
            kw["fill_value"] = fill_value
        return _window(self, "shift", kw)

    def pct_change(self, periods: int = 1):
        """The relative change to the row ``periods`` before in the same group, as pandas'
        ``pct_change(fill_method=None)`` (lazy, aligned with the frame)."""
        return _window(self, "pct_change", {"periods": int(periods)})

    def rank(
        self, method: str = "average", ascending: bool = True, na_option: str = "keep", pct: bool = False
    ):
        """The rank of each value within its group, as pandas (float64; lazy, aligned with the
        frame). ``method``: average, min, max, first (frame order breaks ties), dense."""
        if method not in ("average", "min", "max", "first", "dense"):
            raise ValueError(f"rank(method={method!r}): use average, min, max, first or dense")
        if na_option not in ("keep", "top", "bottom"):
            raise ValueError(f"rank(na_option={na_option!r}): use keep, top or bottom")
        kw = {"method": method, "ascending": bool(ascending), "na_option": na_option, "pct": bool(pct)}
        return _window(self, "rank", kw)

    def head(self, n: int = 5):
        """The first ``n`` rows of each group (negative: all but the last ``-n``), as pandas:
        a lazy Frame (a Series after ``[col]``) in the frame's row order whose computed result
        keeps the rows' labels (their positions in the frame)."""
        return _group_rows(self, "head", int(n))

    def tail(self, n: int = 5):
        """The last ``n`` rows of each group, as pandas (lazy, see :meth:`head`)."""
        return _group_rows(self, "tail", int(n))

    def nth(self, n):
        """The ``n``-th row of each group (an int, negative from the end, or a list of them),
        as pandas 2+: a filter keeping the rows' labels (lazy, see :meth:`head`)."""
        if isinstance(n, (list, tuple)):
            n = [int(i) for i in n]
        elif isinstance(n, slice):
            pass
        else:
            n = int(n)
        return _group_rows(self, "nth", n)

    def median(self, numeric_only: bool = False):
        """The exact median per group, as pandas: rows are shuffled by the keys and pandas
        computes every whole group (a lazy group result: filter, assign, reset_index or
        ``.compute()``)."""
        return _exact(self, lambda g: g.median(numeric_only=numeric_only), "median")

    def quantile(self, q=0.5, interpolation: str = "linear", numeric_only: bool = False):
        """The exact ``q`` quantile(s) per group, as pandas (``q`` a number or a list: then
        one row per group and ``q``, as pandas' MultiIndex). Lazy, as :meth:`median`."""
        qs = [float(x) for x in q] if isinstance(q, (list, tuple, np.ndarray, pd.Index)) else float(q)
        for x in qs if isinstance(qs, list) else [qs]:
            if not 0 <= x <= 1:
                raise ValueError(f"quantile q={x} is outside [0, 1]")

        def run(g):
            return g.quantile(qs, interpolation=interpolation, numeric_only=numeric_only)

        return _exact(self, run, "quantile", qlevel=isinstance(qs, list))

    def corr(self, other=None):
        """Per-group correlation: ``g.x.corr(g.y)`` (or ``g.x.corr("y")``) is the Pearson
        correlation of two columns within each group, one value per group (as
        ``g.apply(lambda d: d.x.corr(d.y))`` in pandas; exact, whole groups)."""
        if not self._series or other is None:
            raise TypeError("per-group correlation is g.x.corr(g.y) or g.x.corr('y') (two columns)")
        if isinstance(other, GroupBy):
            if not other._series or other._keys != self._keys:
                raise TypeError("g.x.corr(other): other must be a column of the same group-by, as g.y")
            other = other._selection[0]
        self._node.check_columns([other])
        x = self._selection[0]
        base = GroupBy(
            self._node,
            self._keys,
            self._dropna,
            self._sort,
            self._as_index,
            [x, other],
            by_list=self._by_list,
        )

        from .groupstats import corr_per_group, fast_corr_dtype

        # numeric columns: pandas' arithmetic per group on NumPy slices (bit-identical,
        # without a pandas object per group); other dtypes: pandas' apply
        fast = all(fast_corr_dtype(self._node.meta[c].dtype) for c in (x, other))

        def run(g):
            if fast:
                return corr_per_group(g, x, other)
            out = g.apply(lambda d: d[x].corr(d[other]))
            if not isinstance(out, pd.Series):  # no group: pandas gives an empty frame
                out = pd.Series([], index=g.size().index, dtype="float64")
            return out.astype("float64").rename(x)

        return _exact(base, run, "corr", series_name=x)


def _check_agg(agg):
    if agg == "size":
        return agg
    get_aggregation(agg)
    return agg


# ------------------------------------------------------------------------------------------
# group-by results as frames, group-wise functions
# ------------------------------------------------------------------------------------------
#: a group-by by left columns of a join counting only right-side columns counts per key
#: before the join (:func:`_counted_before_join`); ``False`` joins first (tests compare both)
COUNT_BEFORE_JOIN = True

_COUNT = "__hpcframe_count{}__"


def _counted_before_join(node, keys, specs, pandas_fn):
    """``(node, specs, pandas_fn)`` of the same group-by with the counts taken before the join,
    or ``None`` where that does not apply.

    ``left.merge(right, how="left" or "inner").groupby(left columns)`` counting only
    columns of ``right`` (TPC-H q13: orders per customer) needs no row of ``right`` after
    the join, only how many non-missing values each key has there. ``right`` is grouped by
    its keys first (``dropna=False``: a missing key matches a missing key, as in pandas'
    merge), the counts are joined to ``left`` (a left row without a match gets 0) and
    summed per group: a left row with ``m`` matches contributes the ``m`` rows' count
    either way, so the groups, their order and the counts are pandas'. The large side is
    then not shuffled for the join, only its per-key counts. Applies only where every
    aggregation is ``count`` of a non-key column of the right side, no group key comes from
    the right side alone, and the join is not computed or persisted yet (``COUNT_BEFORE_JOIN``
    turns it off); the group keys must keep their dtypes, and no join key may be categorical
    on both sides."""
    from .stages import JoinStage

    if not COUNT_BEFORE_JOIN or not specs or not keys or not isinstance(node, P.Scan):
        return None
    stage = node.source
    if not isinstance(stage, JoinStage) or stage.how not in ("inner", "left"):
        return None
    if stage.indicator or stage.join_keys or stage.ready or stage.persisted:
        return None
    origins = stage.origins
    for k in keys:  # a left column under its own name (a key of both sides is the left one)
        origin = origins.get(k)
        if origin is None or origin[0] not in ("left", "both") or origin[1] != k:
            return None
    lkeys = [origins[k][1] for k in stage.left_keys]
    rkeys = [origins[k][-1] for k in stage.right_keys]
    if len(set(lkeys)) != len(lkeys) or len(set(rkeys)) != len(rkeys):
        return None
    for lk, rk in zip(lkeys, rkeys):
        # categorical on both sides: the join's key stays categorical only when the two
        #    sides' categories are equal (pandas), which the data decides
        #    (joins.adopt_schema); joined with the counts instead it would not be
        if isinstance(stage.left.meta[lk].dtype, pd.CategoricalDtype) and isinstance(
            stage.right.meta[rk].dtype, pd.CategoricalDtype
        ):
            return None
    counted: dict = {}  # result column -> (right column, count column)
    for col, agg in specs:
        origin = origins.get(col)
        if agg != "count" or origin is None or origin[0] != "right" or origin[1] in rkeys:
            return None
        counted.setdefault(col, (origin[1], _COUNT.format(len(counted))))
    try:
        pre = (
            Frame(stage.right)
            .groupby(rkeys, dropna=False, as_index=False)
            .agg(**{name: (c, "count") for c, name in counted.values()})
        )
        joined = Frame(stage.left).merge(
            pre,
            how=stage.how,
            left_on=lkeys,
            right_on=rkeys,
            suffixes=("", "__hpcframe_right"),
            broadcast=stage.broadcast,
        )
        if stage.how == "left":  # a left row without a match has no count: 0
            joined = joined.assign(
                **{name: joined[name].fillna(0).astype("int64") for _, name in counted.values()}
            )
    except (ValueError, TypeError, KeyError, pd.errors.MergeError):  # pandas refuses: join first
        return None
    meta = joined._node.meta
    if any(meta[k].dtype != node.meta[k].dtype for k in keys):
        return None
    original = node.meta.iloc[:0]

    def in_pandas(m):  # the original query on the original columns (empty frames: dtypes)
        base = original.copy()
        for k in keys:
            base[k] = pd.Series(m[k].iloc[:0].array, index=base.index[:0])
        return pandas_fn(base)

    return joined._node, [(counted[col][1], "sum") for col, _ in specs], in_pandas


def _group_stage(output: AggOutput, labels, as_index: bool):
    """The Scan of a group-by result as a frame: its groups hash-partitioned over the ranks
    (an :class:`hpcframe.stages.AggStage`). Raises TypeError for results whose columns are
    not plain names (a MultiIndex of ``(column, aggregation)``)."""
    from .aggregations import FIRST_POS
    from .stages import AggStage

    labels = list(labels) if labels is not None else []
    if not labels or not all(isinstance(x, str) for x in labels):
        raise TypeError(
            "this group-by result has MultiIndex columns, so it cannot be used as a frame; use "
            "named aggregation (g.agg(total=('x', 'sum'), n=('x', 'size'))) or .compute() it"
        )
    clash = [x for x in labels if x in output.keys]
    if clash or len(set(labels)) != len(labels):
        raise ValueError(
            f"the group-by result would have the column {(clash or labels)[0]!r} twice (a key and "
            f"a value, or two values); rename it with named aggregation"
        )
    node = output.node
    assert node is not None  # every AggOutput reads a plan chain
    try:  # pandas tells the result dtypes (of the builtin aggregations)
        empty = output.pandas_fn(node.meta)
        if isinstance(empty, pd.Series):
            values = [empty]
        else:  # the value columns are the last ones (as_index=False puts the keys in front)
            values = [empty.iloc[:, j - len(labels)] for j in range(len(labels))]
    except Exception:  # a registered aggregation pandas does not know: types known once run
        values = [pd.Series([], dtype=object) for _ in labels]
    meta = node.meta[output.keys].iloc[:0].reset_index(drop=True)
    if not output.sort:
        meta[FIRST_POS] = pd.Series([], dtype="int64")
    for label, v in zip(labels, values):
        meta[label] = pd.Series([], dtype=v.dtype)
    stage = AggStage(output, labels, meta, as_index)
    return P.Scan(stage, meta)


class GroupFrame(Frame):
    """A group-by result shaped as a DataFrame (``g.agg(...)``, ``g.sum()``, ...): lazy,
    and a :class:`Frame` too. ``compute()`` gathers it exactly as pandas returns it; every
    frame operation (filter, assign, select, group again, ``to_parquet``, ``persist``) runs
    on its groups hash-partitioned over the ranks, so nothing is gathered.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df)
    >>> stats = flights.groupby("carrier").agg(n=("dep_delay", "size"), delay=("dep_delay", "mean"))
    >>> stats[stats.n > 1].compute()
             n  delay
    carrier
    AA       2    1.0
    """

    def __init__(self, output: AggOutput, labels, as_index: bool = True):
        self._out, self._labels, self._as_index = output, labels, as_index
        self._scan = None

    @property
    def _node(self):
        if self._scan is None:
            self._scan = _group_stage(self._out, self._labels, self._as_index)
        return self._scan

    def _output(self):
        return self._out

    def __repr__(self):
        return f"<hpcframe lazy {self._out.text()}; a Frame: filter, assign, group, write or .compute()>"


class GroupSeries(Series):
    """A group-by result shaped as a Series (``g.col.sum()``, ``g.size()``): lazy, and a
    :class:`Series` too (``s[s > 3]``, ``s * 2``, ``s.sum()``). ``compute()`` gathers it as
    pandas returns it; other operations run on its groups hash-partitioned over the ranks."""

    def __init__(self, output: AggOutput, name):
        self._out, self.name, self._out_name = output, name, name
        self._expr = E.Col(_VALUE)
        self._scan = None

    @property
    def _node(self):
        if self._scan is None:
            self._scan = _group_stage(self._out, [_VALUE], True)
        return self._scan

    def rename(self, index=None):
        """The same group-by result named ``index`` (see :meth:`Series.rename`)."""
        super().rename(index)  # pandas' arguments checked
        import copy

        out = copy.copy(self)
        out.name = index
        return out

    def _output(self):
        if self.name is self._out_name or self.name == self._out_name:
            return self._out
        name = self.name
        return Composite([self._out], lambda r: r[0].rename(name), f"{self._out.text()} named {name!r}")

    def __repr__(self):
        return f"<hpcframe lazy {self._out.text()}; call .compute()>"


class _TransformSeries(Series):
    """``g.col.transform(func)``: one value per row of the grouped frame (``base``), in its
    order, and expressions combining it with that frame's columns. It lives on a shuffle
    stage of the frame (``build(base)``) whose rows carry every column of the frame."""

    def __init__(self, base, build, name, expr=None, node=None):
        self._base, self._build = base, build
        super().__init__(build(base) if node is None else node, expr or E.Col(_TRANSFORMED), name)

    def _new(self, expr, name="__same__"):
        name = self.name if name == "__same__" else name
        return _TransformSeries(self._base, self._build, name, expr, self._node)

    def _lift(self, other: Series) -> _TransformSeries:
        """A column expression of the base frame, evaluated on this stage's rows."""
        return _TransformSeries(self._base, self._build, other.name, other._expr, self._node)

    def _rebuilt(self, node) -> _TransformSeries:
        """The same expression over ``node`` (the grouped frame with earlier assigns)."""
        return self if node is self._base else _TransformSeries(node, self._build, self.name, self._expr)


_TRANSFORMED = "__hpcframe_transformed__"


def _apply(self: GroupBy, fn, args, kwargs) -> Result:
    """``groupby(keys).apply(fn)``: rows shuffled by the keys, pandas' apply on each hash
    partition (whole groups), the partition results ordered as pandas orders groups."""
    from .stages import POSITION, ShuffleStage

    keys, by = self._keys, (self._keys if self._by_list else self._keys[0])
    name = getattr(fn, "__name__", "fn")
    node = self._node
    if self._selection is not None:
        node = P.Project(node, keys + [c for c in self._selection if c not in keys])
    stage = ShuffleStage(node, keys, f"groupby({keys}).apply({name})")
    scan = P.Scan(stage, stage.meta)
    hidden = P.hidden_columns(scan)
    nkeys = len(keys)
    selection, series = self._selection, self._series
    dropna, sort = self._dropna, self._sort
    # sort=False lists the groups by their first row in the frame's order: after a
    #    sort_values, by that row's sort columns, then its position (as _exact does)
    parent = [(c, a, na) for c, a, na in zip(*P.row_sort(node)) if c != POSITION]
    firsts = None
    if not sort and parent:
        cols, asc, nas = (list(x) for x in zip(*parent))
        firsts = P.RowSort(cols + [POSITION], asc + [True], nas + ["last"])

    def guarded(group, *a, **kw):
        try:
            return fn(group, *a, **kw)
        except Exception as exc:  # same type if it takes a message, so callers can catch it
            message = f"{name} failed on the group {group.name!r}: {exc}"
            try:
                named = type(exc)(message)
            except Exception:
                named = RuntimeError(f"{type(exc).__name__}: {message}")
            raise named from exc

    def grouped(df):
        g = df.groupby(by, dropna=dropna, sort=sort, observed=True)
        if selection is not None:
            g = g[selection[0] if series else selection]
        return g

    def per_partition(df):
        positions = df[POSITION].to_numpy()
        if firsts is not None:  # (the partition's rows are in the frame's order)
            heads = df.groupby(by, dropna=dropna, sort=False, observed=True).head(1)
            at = pd.MultiIndex.from_frame(heads[keys]) if nkeys > 1 else pd.Index(heads[keys[0]])
            first = heads[firsts.columns].set_axis(at)  # (a sort column may be a key too)
        else:
            first = df.groupby(by, dropna=dropna, sort=False, observed=True)[POSITION].min()
        df = df.drop(columns=[c for c in hidden if c in df.columns])
        df.index = pd.Index(positions)
        return grouped(df).apply(guarded, *args, **kwargs), first

    def combine(parts):
        parts = [(r, f) for r, f in parts if r is not None and len(f)]
        if not parts:
            return grouped(node.meta.drop(columns=[c for c in hidden if c in node.meta.columns])).apply(
                fn, *args, **kwargs
            )
        results = [r for r, _ in parts]
        out = pd.concat(results) if len(results) > 1 else results[0]
        if len(results) == 1 and sort:
            return out
        # as pandas: groups sorted by key (NaN last), or by their first row (sort=False)
        levels = out.index.to_frame(index=False).iloc[:, :nkeys]
        levels.columns = [f"k{i}" for i in range(nkeys)]
        if sort:
            order = levels.sort_values(list(levels.columns), na_position="last", kind="mergesort").index
        else:
            lookup = pd.concat([f for _, f in parts])  # group -> its first row's position
            keys_of_rows = pd.MultiIndex.from_frame(levels) if nkeys > 1 else pd.Index(levels["k0"])
            if isinstance(lookup, pd.DataFrame):  # its sort columns, then its position
                rows = lookup.reindex(keys_of_rows).reset_index(drop=True)
                order = P.sort_order(rows, firsts)
            else:
                pos = lookup.reindex(keys_of_rows).to_numpy()
                order = pd.Series(pos).sort_values(kind="mergesort").index
        return out.iloc[np.asarray(order)]

    return Result(MapOutput(scan, per_partition, combine))


def _transform(self: GroupBy, func, args, kwargs):
    """``groupby(keys)[col].transform(func)`` as a lazy Series aligned with the frame, or
    ``groupby(keys).transform(func)`` as a lazy Frame of the transformed value columns."""
    from .stages import POSITION, ShuffleStage

    keys, by = self._keys, (self._keys if self._by_list else self._keys[0])
    cols = self._value_columns()
    dropna = self._dropna
    fname = func if isinstance(func, str) else getattr(func, "__name__", "fn")
    single = self._series

    def transformed(df):
        """The transformed value columns of one partition (whole groups), aligned with it.
        With ``dropna``, rows with a missing key get NaN, as pandas gives them (computed on
        the other rows: pandas fails on a frame whose every key is missing)."""
        data = df.drop(columns=[POSITION])
        pick = cols[0] if single else cols
        if dropna:
            valid = data[keys].notna().all(axis=1).to_numpy()
            if not valid.all():
                rest = data[valid]
                if not len(rest):  # missing values of each column's own kind (NaN, NaT)
                    nothing = data[pick]
                    return nothing.where(np.zeros(nothing.shape, dtype=bool))
                out = rest.groupby(by, sort=False, observed=True)[pick].transform(func, *args, **kwargs)
                return out.reindex(data.index)
        g = data.groupby(by, dropna=dropna, sort=False, observed=True)
        return g[pick].transform(func, *args, **kwargs)

    def dtypes_of(node) -> dict:
        probe = node.meta.groupby(by, dropna=dropna, observed=True)
        out = {c: node.meta[c].dtype for c in cols}
        if isinstance(func, str):  # pandas tells the dtypes of a named transform
            try:
                empty = probe[cols].transform(func, *args, **kwargs)
                out.update({c: empty[c].dtype for c in cols})
            except Exception:
                pass
        return out

    label = f"groupby({keys}){'.' + cols[0] if single else ''}.transform({fname})"

    if single:

        def build(node):
            def per_partition(df):
                return df.assign(**{_TRANSFORMED: transformed(df)})

            meta = node.meta.assign(**{_TRANSFORMED: pd.Series([], dtype=dtypes_of(node)[cols[0]])})
            stage = ShuffleStage(node, keys, label, per_partition=per_partition, meta=meta)
            return P.Scan(stage, stage.meta)

        return _TransformSeries(self._node, build, cols[0])

    node = self._node

    def per_partition(df):
        values = transformed(df)
        return df.assign(**{c: values[c] for c in cols})

    types = dtypes_of(node)
    meta = node.meta.assign(**{c: pd.Series([], dtype=types[c]) for c in cols})
    stage = ShuffleStage(node, keys, label, per_partition=per_partition, meta=meta)
    return Frame(P.Project(P.Scan(stage, stage.meta), cols))


# ------------------------------------------------------------------------------------------
# sort: helpers of sort_values, nlargest/nsmallest and .loc
# ------------------------------------------------------------------------------------------
_SORT_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")


def _check_kind(kind) -> None:
    if kind not in _SORT_KINDS:
        raise ValueError(
            f"kind must be one of {list(_SORT_KINDS[1:])}, not {kind!r} (hpcframe's sort is always stable)"
        )


def _top(node, n, columns, keep, largest) -> Result:
    from .outputs import TopOutput

    cols = [columns] if isinstance(columns, str) else list(columns)
    node.check_columns(cols)
    if keep not in ("first", "last", "all"):
        raise ValueError('keep must be either "first", "last" or "all"')
    probe = node.meta
    getattr(probe, "nlargest" if largest else "nsmallest")(int(n), cols, keep=keep)  # pandas' errors
    return Result(TopOutput(node, int(n), cols, keep, largest))


class _Loc:
    """``frame.loc[...]`` of a frame indexed by :meth:`Frame.set_index`."""

    def __init__(self, frame: Frame):
        self._frame = frame

    def __getitem__(self, key):
        return _loc(self._frame, key)


def _stored_sorted(frame: Frame) -> Frame:
    """A sorted frame as its rows stored in order (a SortStage: sample sort), for writing;
    any other frame unchanged."""
    from .stages import SortStage

    if P.last_sort(frame._node) is None:
        return frame
    stage = SortStage(frame._node)
    return Frame(P.Scan(stage, stage.meta))


def _set_index(frame: Frame, keys, drop: bool, presorted: bool) -> Frame:
    """``frame.set_index(keys)``: a SortStage of the frame by the key, which becomes the
    index (the old index is dropped, as pandas does), with divisions recorded."""
    from .stages import SortStage

    key = keys if isinstance(keys, str) else (list(keys)[0] if len(list(keys)) == 1 else None)
    if key is None:
        raise NotImplementedError("set_index takes one column (a MultiIndex is not supported)")
    if not drop:
        raise NotImplementedError("set_index(drop=False) is not supported: assign a copy of the column first")
    node = frame._node
    node.check_columns([key], "the frame to index")
    old = [c for c in P.frame_index(node) if c != key]
    # rows with equal keys keep the frame's row order (pandas' set_index then a stable
    # sort_index): its sort_values keys and its source's order (a merged frame's rows are
    # stored by hash partition), then the position
    order = P.row_sort(node)
    ties = [i for i, c in enumerate(order.columns) if c != key]
    spec = P.RowSort(
        [key] + [order.columns[i] for i in ties],
        [True] + [order.ascending[i] for i in ties],
        ["last"] + [order.na_position[i] for i in ties],
    )
    stage = SortStage(node, spec, index=[key], drop=old, divisions_column=key)
    stage.presorted = bool(presorted)  # no splitters: blocks cut into partitions in order
    return Frame(P.Scan(stage, stage.meta))


_RESO_FREQ = {
    "year": "Y",
    "quarter": "Q",
    "month": "M",
    "day": "D",
    "hour": "h",
    "minute": "min",
    "second": "s",
    "millisecond": "ms",
    "microsecond": "us",
    "nanosecond": "ns",
}


def _time_bounds(text: str, dtype) -> tuple:
    """``(first, last)`` instants of the period a date string names (pandas' partial string
    indexing: "2013-06" is all of June), in the index's time zone."""
    from pandas._libs.tslibs.parsing import parse_datetime_string_with_reso

    try:
        parsed, reso = parse_datetime_string_with_reso(text)
    except (ValueError, TypeError) as exc:
        raise KeyError(f"{text!r} is not a date or time the datetime index can be compared with") from exc
    period = pd.Period(parsed.replace(tzinfo=None), freq=_RESO_FREQ.get(reso, "ns"))
    lo, hi = period.start_time, period.end_time
    tz = getattr(dtype, "tz", None)
    if tz is not None:
        lo, hi = lo.tz_localize(tz), hi.tz_localize(tz)
    return lo, hi


def _index_value(value, dtype, side: str):
    """A bound of a label slice in the index's type (a string is a time for a datetime
    index: the start, or the end, of the period it names)."""
    if value is None:
        return None
    if getattr(dtype, "kind", "") == "M":
        if isinstance(value, str):
            lo, hi = _time_bounds(value, dtype)
            return lo if side == "left" else hi
        value = pd.Timestamp(value)
        tz = getattr(dtype, "tz", None)
        if tz is not None and value.tzinfo is None:
            value = value.tz_localize(tz)
    return value


def _loc(frame: Frame, key):
    node = frame._node
    index = P.frame_index(node)
    if len(index) != 1:
        raise TypeError(".loc needs a frame indexed by one column: use set_index(column) first")
    col = index[0]
    dtype = node.meta[col].dtype
    s = Series(node, E.Col(col), col)
    if isinstance(key, slice):
        if key.step is not None:
            raise ValueError(".loc[a:b:step] is not supported (no step)")
        lo, hi = _index_value(key.start, dtype, "left"), _index_value(key.stop, dtype, "right")
        mask = None
        if lo is not None:
            mask = s >= lo
        if hi is not None:
            mask = (s <= hi) if mask is None else (mask & (s <= hi))
        elif lo is not None and not (getattr(dtype, "kind", "") == "M" and isinstance(key.start, str)):
            # pandas slices an index with missing labels (sorted last, after every label)
            # by position: loc[a:] runs to the end, over the missing labels too. Not for a
            # time string, which pandas resolves by value (partial string indexing)
            mask = mask | s.isna()
        return frame if mask is None else Frame(P.Filter(node, mask._expr))
    if getattr(dtype, "kind", "") == "M" and isinstance(key, str):
        return _loc(frame, slice(key, key))  # a date string selects its whole period: a frame
    value = _index_value(key, dtype, "left")
    out = CollectOutput(P.Filter(node, (s == value)._expr))

    def finish(r):
        df = r[0]
        if not len(df):
            raise KeyError(key)
        return df.iloc[0] if len(df) == 1 else df

    return Result(Composite([out], finish, f"loc[{key!r}]"))


def _quantiles(q) -> tuple[list[float], bool]:
    scalar = np.ndim(q) == 0
    qs = [q] if scalar else list(q)
    for v in qs:
        if not 0 <= float(v) <= 1:
            raise ValueError("percentiles should all be in the interval [0, 1]")
    return [float(v) for v in qs], scalar


def _quantile_output(node, col, qs, finish):
    """The :class:`hpcframe.sorting.QuantileOutput` of column ``col``: its non-missing
    values sample-sorted over the ranks (a SortStage), the neighbours of each quantile read."""
    from .sorting import QuantileOutput
    from .stages import SortStage

    projected = P.Project(node, [col])
    others = [c for c in projected.meta.columns if c != col]
    spec = P.RowSort([col], [True], ["last"])  # missing values last, counted by the divisions
    stage = SortStage(
        projected, spec, index=[], drop=others, divisions_column=col, label=f"sorted values of {col}"
    )
    return QuantileOutput(P.Scan(stage, stage.meta), stage, col, qs, finish)


def _series_quantile(series: Series, q, median: bool) -> Result:
    node, col = series._as_column()
    name = series.name
    probe = node.meta[col]
    if median:
        probe.median()  # pandas' type errors (strings, ...)

        return Result(_quantile_output(node, col, None, lambda values, dtype: values[0]))
    qs, scalar = _quantiles(q)
    probe.quantile(q)

    def finish(values, dtype):
        if scalar:
            return values[0].iloc[0]
        return pd.concat(values).set_axis(pd.Index(qs, dtype="float64")).rename(name)

    return Result(_quantile_output(node, col, qs, finish))


def _frame_quantile(frame: Frame, q, numeric_only: bool, median: bool) -> Result:
    node = frame._node
    meta = P.visible_meta(node)
    if median:
        probe = meta.median(numeric_only=numeric_only)
        qs, scalar = [0.5], True
    else:
        qs, scalar = _quantiles(q)
        probe = meta.quantile(q, numeric_only=numeric_only)
    cols = list(probe.index if scalar else probe.columns)
    parts: list[Output] = [
        _quantile_output(node, c, None if median else qs, (lambda values, dtype: (values, dtype)))
        for c in cols
    ]

    def finish(results):
        # a column whose data turns out not numeric (bools with nulls are objects): left out
        # by numeric_only, as pandas leaves it out
        kept = [
            (c, v)
            for c, (v, dtype) in zip(cols, results)
            if not numeric_only or (pd.api.types.is_numeric_dtype(dtype) and len(v))
        ]
        index = pd.Index([c for c, _ in kept], dtype=probe.index.dtype if scalar else probe.columns.dtype)
        if median or scalar:
            values = [v[0] if median else v[0].iloc[0] for _, v in kept]
            dtype = probe.dtype if len(kept) == len(cols) else None
            if median and dtype == "float64" and values and all(isinstance(v, np.floating) for v in values):
                # the probe's columns are empty (their median is a float64 NaN); pandas' median
                # of rows keeps each float column's type: float32 columns give a float32 result
                dtype = np.result_type(*values)
            out = pd.Series(values, index=index, dtype=dtype, name=probe.name)
            return out.astype("float64") if out.dtype == object and len(out) and numeric_only else out
        if not kept:
            return probe[[]]
        out = pd.concat([pd.concat(v).set_axis(probe.index).rename(c) for c, v in kept], axis=1)
        out.index = probe.index
        out.columns = index
        return out

    return Result(Composite(parts, finish, "median" if median else f"quantile({q})"))


# joins: merge, isin with a lazy Series (semi/anti-join)
# ------------------------------------------------------------------------------------------
def _merge(
    self: Frame,
    right,
    how="inner",
    on=None,
    left_on=None,
    right_on=None,
    suffixes=("_x", "_y"),
    indicator=False,
    broadcast=None,
) -> Frame:
    """Join with ``right`` (a Frame or a pandas DataFrame) on key columns, as ``pandas.merge``.

    Parameters
    ----------
    right : Frame or pandas.DataFrame
        The other frame (a pandas DataFrame is wrapped with :func:`hpcframe.from_pandas`;
        under MPI every rank must hold the same one).
    how : {"inner", "left", "right", "outer", "cross"}, default "inner"
        As pandas: the rows kept, and their order (left order for inner and left, right
        order for right, the keys sorted for outer; duplicate matches in the other side's
        order). ``cross``: every pair of rows.
    on, left_on, right_on : str or list of str, optional
        The key columns (default: the columns the frames have in common). A group-by result
        merges on its index levels by name, as pandas.
    suffixes : (str or None, str or None), default ("_x", "_y")
        Added to the names of non-key columns both frames have.
    indicator : bool or str, default False
        Add a categorical column ``_merge`` (or this name): ``left_only``, ``right_only`` or
        ``both``.
    broadcast : bool or None, default None
        ``None``: copy the small side to every rank when it holds at most
        ``hf.config.broadcast_bytes`` bytes (measured when the join runs), else shuffle both
        sides by the keys; ``True``/``False`` force either (``explain()`` shows the choice).

    Returns
    -------
    Frame
        Lazy; the result has a fresh RangeIndex, as pandas.

    Raises
    ------
    ColumnNotFoundError
        For a key column a frame does not have.
    ValueError
        For key columns pandas cannot match (numbers with strings or dates, ...), naming
        both, and for invalid ``how``, ``suffixes`` or ``broadcast``.

    Examples
    --------
    >>> import pandas as pd
    >>> flights = hf.from_pandas(pd.DataFrame({"carrier": ["AA", "UA", "AA"], "delay": [5, 12, -3]}))
    >>> names = pd.DataFrame({"carrier": ["AA", "UA"], "name": ["American", "United"]})
    >>> flights.merge(names, on="carrier", how="left").compute()
      carrier  delay      name
    0      AA      5  American
    1      UA     12    United
    2      AA     -3  American
    """
    from .joins import build_merge

    if isinstance(right, pd.DataFrame):
        right = _from_pandas(right)
    if not isinstance(right, Frame):
        raise TypeError(
            f"merge: right must be an hpcframe Frame or a pandas DataFrame, not {type(right).__name__}"
        )
    stage = build_merge(self._node, right._node, how, on, left_on, right_on, suffixes, indicator, broadcast)
    return Frame(P.Scan(stage, stage.meta))


Frame.merge = _merge  # type: ignore[attr-defined]


def merge(
    left,
    right,
    how="inner",
    on=None,
    left_on=None,
    right_on=None,
    suffixes=("_x", "_y"),
    indicator=False,
    broadcast=None,
):
    """``left.merge(right, ...)`` (see :meth:`Frame.merge`); either may be a pandas DataFrame.

    Examples
    --------
    >>> import pandas as pd
    >>> a = hf.from_pandas(pd.DataFrame({"k": [1, 2, 3], "x": [10, 20, 30]}))
    >>> hf.merge(a, pd.DataFrame({"k": [3, 1], "y": ["c", "a"]}), on="k").compute()
       k   x  y
    0  1  10  a
    1  3  30  c
    """
    if isinstance(left, pd.DataFrame):
        left = _from_pandas(left)
    if not isinstance(left, Frame):
        raise TypeError(
            f"merge: left must be an hpcframe Frame or a pandas DataFrame, not {type(left).__name__}"
        )
    return left.merge(right, how, on, left_on, right_on, suffixes, indicator, broadcast)


def _from_pandas(df) -> Frame:
    """``hf.from_pandas(df)`` (without importing the readers, which import this module)."""
    from .io.memory import PandasSource
    from .io.types import empty_frame

    source = PandasSource(df, 1)
    return Frame(P.Scan(source, empty_frame(source.schema())))


_SEMI_HELP = (
    "isin with a lazy Series is a semi-join: use it to filter the frame its column comes from, "
    "df[df.k.isin(other.col)] or df[~df.k.isin(other.col)] (an anti-join), alone or combined "
    "with & and other conditions; compute the Series first (.compute()) for any other use"
)


class _SemiMask(Series):
    """``s.isin(lazy_series)``: usable only as a filter of the frame ``s`` comes from (a
    semi-join; ``~``: an anti-join), alone or with ``&``."""

    def __init__(self, node, terms, rest=None):
        self._node, self._terms, self._rest = node, list(terms), rest
        self.name = None

    @property
    def _expr(self):
        """Refused: the mask is no expression over its frame's columns (see _SEMI_HELP)."""
        raise TypeError(_SEMI_HELP)

    def __repr__(self):
        return f"<hpcframe semi-join filter ({len(self._terms)} isin term(s)); use it as df[mask]>"

    def _unsupported(self, *args, **kwargs):
        raise TypeError(_SEMI_HELP)

    _bin = _new = _output = __getitem__ = _unsupported

    def __invert__(self):
        if len(self._terms) != 1 or self._rest is not None:
            raise TypeError(_SEMI_HELP + " (~ applies to one isin, not to a combination)")
        key, values, negate = self._terms[0]
        return _SemiMask(self._node, [(key, values, not negate)])

    def __and__(self, other):
        if isinstance(other, _SemiMask):
            if other._node.scan() is not self._node.scan():
                raise ValueError("a boolean mask must come from the same dataset as the frame")
            rest = E.and_all([e for e in (self._rest, other._rest) if e is not None])
            return _SemiMask(self._node, self._terms + other._terms, rest)
        if isinstance(other, Series) and not isinstance(other, _TransformSeries):
            if other._node.scan() is not self._node.scan():
                raise ValueError("a boolean mask must come from the same dataset as the frame")
            rest = other._expr if self._rest is None else E.Bin("&", self._rest, other._expr)
            return _SemiMask(self._node, self._terms, rest)
        raise TypeError(_SEMI_HELP)

    __rand__ = __and__

    def __or__(self, other):
        raise TypeError(_SEMI_HELP + " (| with an isin of a lazy Series is not supported)")

    __ror__ = __or__


def _isin_lazy(self: Series, values: Series) -> _SemiMask:
    if isinstance(self, (_TransformSeries, _SemiMask)) or isinstance(values, (_TransformSeries, _SemiMask)):
        raise TypeError(_SEMI_HELP + " (not with a transform)")
    return _SemiMask(self._node, [(self._expr, values, False)])


def _semi_filter(frame: Frame, mask: _SemiMask) -> Frame:
    from .joins import semi_join

    if mask._node.scan() is not frame._node.scan():
        raise ValueError("a boolean mask must come from the same dataset as the frame")
    node = frame._node
    if mask._rest is not None:
        pushed = _join_filter(frame, Series(mask._node, mask._rest))
        node = pushed._node if pushed is not None else P.Filter(node, mask._rest)
    for key, values, negate in mask._terms:
        vnode, vcol = values._as_column()
        stage, visible = semi_join(node, key, vnode, vcol, negate)
        node = P.Project(P.Scan(stage, stage.meta), visible)
    return Frame(node)


def _join_chain(node):
    """``(join stage, steps above its Scan)`` when ``node`` is a not-yet-computed join with
    only filters and projections on it, else ``(None, None)``."""
    from .stages import JoinStage

    chain = node.chain()
    src = chain[0].source
    if not isinstance(src, JoinStage) or src.ready or src.persisted:
        return None, None
    steps = chain[1:]
    if not all(isinstance(n, (P.Filter, P.Project)) for n in steps):
        return None, None
    return src, steps


def _rebuild(stage, steps):
    node = P.Scan(stage, stage.meta)
    for n in steps:
        node = P.Filter(node, n.expr) if isinstance(n, P.Filter) else P.Project(node, n.user_columns)
    return node


def _join_filter(frame: Frame, mask: Series) -> Frame | None:
    """A filter on a merged frame, its one-sided conjuncts moved into the join's sides
    (``None``: nothing to move)."""
    from .joins import push_filter

    stage, steps = _join_chain(frame._node)
    if stage is None or mask._node.scan() is not frame._node.scan():
        return None
    new, rest = push_filter(stage, mask._expr)
    if new is None:
        return None
    node = _rebuild(new, steps)
    term = E.and_all(rest)
    return Frame(P.Filter(node, term) if term is not None else node)


def _check_unique_selection(columns) -> None:
    """Raise ``ValueError`` for a column named twice in ``frame[[...]]``. pandas returns the
    column twice, but a frame with two columns of one name is one that later steps cannot
    address (``df["v"]`` would be a frame, sorts and group-bys by ``v`` fail in pandas too),
    and hpcframe's plans name every column once: refuse it here, where the user wrote it,
    rather than fail inside a computation."""
    seen, repeated = set(), []
    for c in columns:
        if c in seen and c not in repeated:
            repeated.append(c)
        seen.add(c)
    if repeated:
        raise ValueError(
            f"column(s) {repeated} selected more than once in {list(columns)}: hpcframe frames "
            "have unique column names (select each once, and repeat it after compute() or with "
            "assign(other_name=df[col]))"
        )


def _join_project(frame: Frame, columns) -> Frame | None:
    """A projection of a merged frame: the join computes only the columns kept (``None``:
    nothing to leave out)."""
    from .joins import prune

    stage, steps = _join_chain(frame._node)
    if stage is None:
        return None
    columns = list(columns)
    frame._node.check_columns(columns)
    needed = set(columns)
    for n in steps:
        if isinstance(n, P.Filter):
            needed |= n.expr.columns()
    if any(isinstance(n, P.Project) for n in steps):  # an earlier projection already pruned
        return None
    new = prune(stage, sorted(needed))
    if new is None:
        return None
    return Frame(P.Project(_rebuild(new, steps), columns))


# VERBS: helpers of Frame.drop/rename/dropna/fillna/astype/pipe
# ------------------------------------------------------------------------------------------
_ORDER_FILL = (
    "{what}: filling from neighbouring rows depends on the row order across partitions and "
    "is not supported. Fill with a value (fillna(0), fillna({{'x': 0}})), or per group in the "
    "frame's order: df.assign(x=df.groupby(k).x.transform(lambda s: s.ffill()))"
)


def _axis_number(axis) -> int:
    """0 for the rows (``0``, ``"index"``, ``"rows"``), 1 for the columns, as pandas."""
    if axis in (0, "index", "rows"):
        return 0
    if axis in (1, "columns"):
        return 1
    raise ValueError(f"No axis named {axis} for object type DataFrame")


def _check_errors(errors) -> None:
    if errors not in ("raise", "ignore"):
        raise ValueError(f"errors must be 'raise' or 'ignore', not {errors!r}")


def _label_list(labels) -> list:
    """One column name or a list of them, as a list (pandas' list-likes)."""
    return list(labels) if pd.api.types.is_list_like(labels) else [labels]


def _check_labels(names, visible, errors) -> None:
    """Raise :class:`~hpcframe.ColumnNotFoundError` (a ``KeyError``, as pandas) for the
    ``names`` that are not columns, unless ``errors="ignore"``."""
    missing = [c for c in names if c not in visible]
    if missing and errors == "raise":
        raise ColumnNotFoundError(missing[0] if len(missing) == 1 else missing, visible, "the frame")


def _is_mapping(value) -> bool:
    from collections.abc import Mapping

    return isinstance(value, Mapping)


def _present_mask(cols, how: str, thresh) -> E.Expr | None:
    """The filter of ``dropna``: rows with every (``how="any"``) / some (``"all"``) of
    ``cols`` present, or at least ``thresh`` of them; ``None``: every row is kept."""
    present: list[E.Expr] = [E.IsNa(E.Col(c), negate=True) for c in cols]
    if thresh is not None:
        if not present:
            return None if thresh <= 0 else E.Lit(False)
        counts: list[E.Expr] = [E.Method(p, "", "astype", ("int64",)) for p in present]
        total = E.balanced(counts, lambda a, b: E.Bin("+", a, b))
        assert total is not None
        return E.Bin(">=", total, E.Lit(int(thresh)))
    if how == "any":
        return E.and_all(present)
    if not present:
        return E.Lit(False)  # pandas: no column present, so all (none) are missing
    return E.balanced(present, lambda a, b: E.Bin("|", a, b))


def _fresh_name(node: P.Node, base: str) -> str:
    name, i = base, 0
    while name in node.meta.columns:
        i += 1
        name = f"{base}{i}"
    return name


def _free_columns(node: P.Node, replaced, left=(), verb: str = "") -> tuple[P.Node, bool]:
    """``(node, copied)``: ``node`` with an order copy of each column among ``replaced``
    (columns a verb gives new values) and ``left`` (columns it renames away) that a
    ``sort_values`` of the chain sorts by, so that the frame keeps its order (``copied``:
    one was made; project the copies away). Raises ``ValueError`` for a ``replaced`` column
    that orders the rows of the frame's source (a group-by result's key, a persisted sorted
    frame): the rows would be re-ordered by the new values."""
    base = P.source_sort(node.scan().source).columns
    for c in replaced:
        if c in base and c in node.meta.columns:
            raise ValueError(
                f"{verb}: the rows of this frame are ordered by the column {c!r} (a group-by "
                f"result's key, or a persisted sorted frame); giving it new values would "
                f"re-order them. Change the column before the group-by (or the persist), or "
                f"after compute()"
            )
    keys = P.sort_keys(node)
    copied = False
    for c in dict.fromkeys([*replaced, *left]):
        if c in keys:
            node = P.Assign(node, _fresh_name(node, f"__hpcframe_order_{c}__"), E.Col(c), order_copy=True)
            copied = True
    return node, copied


def _replace_columns(frame: Frame, items: dict, verb: str, convert: Callable) -> Frame:
    """``frame`` with each column ``c`` of ``items`` replaced, in place, by
    ``convert(frame[c], items[c])`` (a lazy Series of the frame); values computed from other
    columns read them before any is replaced, as pandas computes them."""
    node = frame._node
    if not items:
        return Frame(node)
    visible = P.visible_columns(node)
    exprs = {c: convert(Series(node, E.Col(c), c), v)._expr for c, v in items.items()}
    node, copied = _free_columns(node, list(exprs), verb=verb)
    crossed = any((e.columns() - {c}) & set(exprs) for c, e in exprs.items())
    if crossed:  # each value first into a column of its own
        temps = {}
        for i, (c, e) in enumerate(exprs.items()):
            temps[c] = _fresh_name(node, f"__hpcframe_{verb}_{i}__")
            node = P.Assign(node, temps[c], e)
        exprs = {c: E.Col(t) for c, t in temps.items()}
    for c, e in exprs.items():
        node = P.Assign(node, c, e)
    return Frame(P.Project(node, visible) if copied or crossed else node)


def _filled(s: Series, value) -> Series:
    """``s.fillna(value)``; a constant the column cannot hold raises ``TypeError`` now
    (:meth:`Frame.fillna`), whether or not a block has a missing value."""
    if isinstance(value, Series):
        if value._node.scan() is not s._node.scan():
            raise ValueError("fillna(): a lazy Series value must come from the same frame")
        return s.fillna(value)
    if isinstance(value, Lazy):
        raise TypeError("fillna() takes constants or lazy Series of the frame; compute a lazy scalar first")
    import warnings

    column = s._node.meta[s.name]
    dtype = column.dtype
    # numbers and bools cannot hold a missing value; a categorical's categories are known
    # only from the data (its blocks' dictionaries), when the schema does not list them
    unknown = isinstance(dtype, pd.CategoricalDtype) and not len(dtype.categories)
    if not (unknown or (isinstance(dtype, np.dtype) and dtype.kind in "iub")):
        probe = column.iloc[:0].reindex([0])  # one missing value of the column's dtype
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                warnings.simplefilter("error", FutureWarning)
                probe.fillna(value)
        except (TypeError, ValueError, DeprecationWarning, FutureWarning) as exc:
            raise TypeError(
                f"fillna(): {value!r} cannot fill the column {s.name!r} ({column.dtype}): "
                f"{exc} (pandas 3 raises this or warns that it will; fill it with a value of "
                f"its type, e.g. fillna({{...}}) per column)"
            ) from exc
    return s.fillna(value)


def _rename(frame: Frame, mapper, errors: str) -> Frame:
    """``frame.rename(columns=mapper)``: each renamed column copied into a fresh column
    first, then into its new name (swaps), then a projection to the new names in order."""
    node = frame._node
    visible = P.visible_columns(node)
    if isinstance(mapper, (dict, pd.Series)) or _is_mapping(mapper):
        mapping = dict(mapper)
        _check_labels(list(mapping), visible, errors)
        new = [mapping.get(c, c) for c in visible]
    elif callable(mapper):
        new = [mapper(c) for c in visible]
    else:
        what = type(mapper).__name__
        raise TypeError(f"rename(columns=...) takes a dict or a function of a name, not {what}")
    pairs = [(o, n) for o, n in zip(visible, new) if o != n]
    for o, n in pairs:
        if not isinstance(n, str):
            raise TypeError(f"rename(): hpcframe's columns are named by strings; {o!r} would be named {n!r}")
    repeated = sorted({n for n in new if new.count(n) > 1}, key=new.index)
    if repeated:
        raise ValueError(
            f"rename() would give the frame the column(s) {repeated} twice: hpcframe frames have "
            f"unique column names (pandas allows duplicates); rename or drop the other column too"
        )
    if not pairs:
        return Frame(node)
    index, hidden = P.frame_index(node), P.hidden_columns(node)
    for _, n in pairs:
        if n in index or n in hidden:
            what = "the index (a group-by key)" if n in index else "an internal column"
            raise ValueError(
                f"rename(): {n!r} is the name of {what} of this frame; hpcframe keeps the index "
                f"and the columns in one namespace (pandas allows it): reset_index() first, or "
                f"choose another name"
            )
    replaced = [n for _, n in pairs if n in node.meta.columns]
    node, _ = _free_columns(node, replaced, [o for o, _ in pairs], "rename()")
    temps = {}
    for i, (o, n) in enumerate(pairs):
        temps[n] = _fresh_name(node, f"__hpcframe_rename_{i}__")
        node = P.Assign(node, temps[n], E.Col(o))
    for _, n in pairs:
        node = P.Assign(node, n, E.Col(temps[n]))
    return Frame(P.Project(node, new))


def _pipe(obj, func, args, kwargs):
    """pandas' ``pipe``: ``func(obj, *args, **kwargs)``, or ``obj`` as the keyword ``target``
    of a ``(func, target)`` tuple."""
    if isinstance(func, tuple):
        func, target = func
        if target in kwargs:
            raise ValueError(f"{target} is both the pipe target and a keyword argument")
        return func(*args, **{**kwargs, target: obj})
    return func(obj, *args, **kwargs)


# GROUPWIN: group windows, groupby head/tail/nth, exact per-group order statistics
# ------------------------------------------------------------------------------------------
# All of them shuffle the frame's rows by the group keys (a ShuffleStage: whole groups per
# hash partition, each partition in the frame's row order) and let pandas compute every
# whole group, so the answers are pandas' own and do not depend on the number of ranks.
_ORDER_STATS = frozenset({"median", "quantile"})
_QLEVEL = "__hpcframe_q__"  # the quantile level of g.quantile([...]) (an index level)
_QPOS = "__hpcframe_qpos__"  # its place in the list (orders a group's rows)


def _group_by_arg(keys):
    return keys if len(keys) > 1 else keys[0]


def _data_columns(df, node_hidden):
    """``df`` without the internal columns of its stage (row positions, ...)."""
    drop = [c for c in list(node_hidden) + [POSITION, _QPOS] if c in df.columns]
    return df.drop(columns=drop) if drop else df


def _window(self: GroupBy, method: str, kwargs: dict):
    """``g.cumsum()``, ``g.x.shift(1)``, ...: pandas' group window ``method`` on every
    partition's whole groups, aligned with the frame's rows (a lazy Series like a transform
    result, or a lazy Frame of the value columns)."""
    keys = self._keys
    by = _group_by_arg(keys)
    dropna, selection, series = self._dropna, self._selection, self._series

    def run(data, as_float=()):
        if as_float:  # as pandas when some key is missing anywhere: the ints become floats first
            data = data.assign(**{c: data[c].astype("float64") for c in as_float})
        g = data.groupby(by, dropna=dropna, sort=False, observed=True)
        if selection is not None:
            g = g[selection[0] if series else selection]
        return getattr(g, method)(**kwargs)

    def shuffle(node, label, per_partition, meta):
        """The stage (and, for sums, products and ranks of ints, the stage telling whether a key is
        missing anywhere: pandas then sums floats, which differs beyond 2**53)."""
        value_cols = selection if selection is not None else [c for c in node.meta.columns if c not in keys]
        ints = [c for c in value_cols if c in node.meta.columns and node.meta[c].dtype.kind in "iu"]
        nullable = [k for k in keys if node.meta[k].dtype.kind not in "iub"]
        if not (dropna and method in ("cumsum", "cumprod", "rank") and ints and nullable):
            return ShuffleStage(node, keys, label, per_partition=lambda df: per_partition(df, ()), meta=meta)
        missing = None
        for k in nullable:
            m = E.IsNa(E.Col(k))
            missing = m if missing is None else E.Bin("|", missing, m)
        probe = P.Filter(P.Project(node, keys), missing)
        flag = ShuffleStage(probe, keys, f"missing keys of {label}", local=lambda df: df.head(1))
        flag_node = P.Scan(flag, flag.meta)

        def flagged(df):
            return per_partition(df, ints if flag.data is not None and flag.data.num_rows else ())

        return _GroupStage(node, keys, label, per_partition=flagged, meta=meta, after=[flag_node])

    def visible_meta(node):
        return _data_columns(node.meta, P.hidden_columns(node)).iloc[:0]

    try:  # pandas tells the shape, names and (empty) dtypes; and rejects wrong columns now
        probe = run(visible_meta(self._node))
    except Exception as exc:
        raise TypeError(f"groupby({keys}).{method}() cannot run on these columns: {exc}") from exc
    what = f"{selection[0]}." if series and selection else ""
    label = f"groupby({keys}).{what}{method}()"

    if isinstance(probe, pd.Series):
        name = probe.name
        dtype = probe.dtype

        def build(node):
            hidden = P.hidden_columns(node)

            def per_partition(df, as_float):
                return df.assign(**{_TRANSFORMED: run(_data_columns(df, hidden), as_float)})

            meta = node.meta.assign(**{_TRANSFORMED: pd.Series([], dtype=dtype)})
            stage = shuffle(node, label, per_partition, meta)
            return P.Scan(stage, stage.meta)

        return _TransformSeries(self._node, build, name)

    node = self._node
    hidden = P.hidden_columns(node)
    cols = [c for c in probe.columns]

    def per_partition(df, as_float):
        values = run(_data_columns(df, hidden), as_float)
        return df.assign(**{c: values[c] for c in cols})

    meta = node.meta.assign(**{c: pd.Series([], dtype=probe[c].dtype) for c in cols})
    stage = shuffle(node, label, per_partition, meta)
    return Frame(P.Project(P.Scan(stage, stage.meta), cols))


class _GroupStage(ShuffleStage):
    """A ShuffleStage of this module's group functions: materialised after the stages read
    by the plan nodes ``after`` (its per-partition function may look at their sizes);
    ``typed_by_values``: key columns whose dtype the stage's values decide (a group index)."""

    def __init__(self, *args, after=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.after = list(after)
        self.typed_by_values: list[str] = []
        self.input_sort = None  # the order of the input rows, when not the stage's own

    def inputs(self):
        """The plans of the stages it waits for, then the shuffled frame's plan."""
        return self.after + [self.node]


def _group_rows(self: GroupBy, method: str, n):
    """``g.head(n)``, ``g.tail(n)``, ``g.nth(n)``: pandas' row selection on every
    partition's whole groups, a lazy Frame (Series after ``[col]``) in the frame's row order
    whose rows keep their labels (positions in the frame) as pandas keeps them."""
    keys = self._keys
    by = _group_by_arg(keys)
    dropna = self._dropna
    node = _ranked_rows(self._node)

    def per_partition(df):
        g = df.groupby(by, dropna=dropna, sort=False, observed=True)
        return getattr(g, method)(n)

    index = P.frame_index(node) or [POSITION]
    stage = ShuffleStage(
        node, keys, f"groupby({keys}).{method}({n!r})", per_partition=per_partition, index=index
    )
    reach = _rows_reach(method, n)
    if reach is not None:  # per-group top-n: each block sends only its candidate rows
        stage.local = _candidates(stage, by, dropna, *reach)
        if reach[0] and not reach[1]:  # (a head: what is behind n others goes first)
            stage.prefilter = _top_rows(stage, by, reach[0])
    if index == [POSITION]:  # a ResetIndex in the chain: the parent's index is a column now
        stage.index = [POSITION]
    scan = P.Scan(stage, stage.meta)
    if self._selection is None:
        return Frame(scan)
    if self._series:
        col = self._selection[0]
        return Series(scan, E.Col(col), col)
    return Frame(P.Project(scan, list(self._selection)))


def _ranked_rows(node: P.Node) -> P.Node:
    """``node``'s chain reading its source's rows in their own order, stored in it, when
    the source is stored in another (a shuffled join's hash partitions, each sorted by the
    join's row order): a frame's labels are its rows' ranks in that order, which a row's
    storage position is not. A sample sort of the source by its order (a SortStage) makes
    every row's position its rank, so the rows ``groupby().head``/``tail``/``nth`` keep
    carry pandas' labels. ``node`` itself when positions are the labels already, or the
    frame has an index or labels of its own."""
    from .outputs import row_labels
    from .stages import SortStage

    scan = node.scan()
    if P.frame_index(node) or row_labels(node) is not None or not P.source_sort(scan.source):
        return node
    ordered = SortStage(scan, label=f"{scan.source.label} in its row order (labels)")
    return P.with_source(node, ordered)


def _rows_reach(method: str, n) -> tuple[int, int] | None:
    """``(first, last)``: ``g.head(n)``/``tail(n)``/``nth(n)`` picks rows only among the
    first ``first`` and the last ``last`` rows of each group (``None``: it may pick any row,
    e.g. ``head(-2)`` or a slice)."""
    if method == "head":
        return (n, 0) if n >= 0 else None
    if method == "tail":
        return (0, n) if n >= 0 else None
    if method != "nth" or isinstance(n, slice):
        return None
    picks = n if isinstance(n, list) else [n]
    return (max([i + 1 for i in picks if i >= 0], default=0), max([-i for i in picks if i < 0], default=0))


def _candidates(stage, by, dropna: bool, first: int, last: int) -> Callable:
    """The ``local`` function of a ShuffleStage of ``g.head``/``tail``/``nth``: a block's
    rows in the frame's order (its sort, ties by position) reduced to the first ``first``
    and last ``last`` rows of every group. The rows a group keeps in the whole frame are
    among those its blocks keep (a stable order by the sort keys and the global position:
    ties keep the frame's order across blocks and ranks), so the exchange carries at most
    ``first + last`` rows per group and block instead of every row (a top-n per group
    without sorting the frame). The block is left whole when a column of the order is
    not in it."""

    def local(df):
        if len(df) == 0:
            return df
        spec = P.input_order(stage)
        if not set(spec.columns) <= set(df.columns):
            return df
        if P.last_sort(stage.node) is None:  # the engine sorted it only after a sort_values
            df = P.sort_rows(df, spec)
        g = df.groupby(by, dropna=dropna, sort=False, observed=True)
        keep = np.zeros(len(df), dtype=bool)
        if first:
            keep |= g.cumcount().to_numpy() < first
        if last:
            keep |= g.cumcount(ascending=False).to_numpy() < last
        return df[keep]  # a row with a missing key (dropna): in no group, not kept

    return local


def _top_rows(stage, by, n: int) -> Callable:
    """The ``prefilter`` function of a ShuffleStage of ``g.head(n)`` (``nth`` of positions
    below ``n``): a block without the rows that cannot be among the first ``n`` of their
    group in the frame's order (:func:`fastsort.group_top_rows` on the order's first
    column), when its groups average more than ``2 n`` rows (db-benchmark q8: about six rows
    per group and block, a third kept, so the block's sort and ``cumcount`` run on a third
    of it). The rows kept keep their order and their ranks in their groups; the block is
    left whole when that column is not a NumPy number or time column."""

    def prefilter(df):
        from .aggregations import group_codes
        from .fastsort import TOP_ROWS_MAX_N, group_top_rows

        spec = P.input_order(stage)
        if not spec or n > TOP_ROWS_MAX_N or spec.columns[0] not in df.columns:
            return df
        col = df[spec.columns[0]]
        if not isinstance(col.dtype, np.dtype) or col.dtype.kind not in "fiuMm":
            return df
        ids, width = group_codes(df, by if isinstance(by, list) else [by])
        groups = width if 2 * n * width < len(df) else np.count_nonzero(np.bincount(ids, minlength=width))
        if 2 * n * groups >= len(df):
            return df
        keep = group_top_rows(col.to_numpy(), ids, width, n, spec.ascending[0])
        return df if keep is None or keep.all() else df[keep]

    return prefilter


def _exact(self: GroupBy, run: Callable, name: str, qlevel: bool = False, series_name="__auto__"):
    """A group-by result that pandas computes on whole groups: ``run(pandas_groupby)``
    (as_index=True) on every hash partition of the keys. Returned as a lazy group result
    (a Series or Frame over the partitions: filter, assign, reset_index, compute) when its
    columns are plain names, else as a computed :class:`Result` of pandas' shape."""
    keys, as_index, sort, dropna = self._keys, self._as_index, self._sort, self._dropna
    by = _group_by_arg(keys)
    selection, series = self._selection, self._series
    node = self._node
    if selection is not None:
        node = P.Project(node, keys + [c for c in selection if c not in keys])
    # sort=False orders groups by their first row in the frame's order: after a sort_values,
    # by copies of the sort's columns (then the position) taken from each group's first row
    parent = P.row_sort(node)
    copies: list[tuple[str, str]] = []  # (copy, column of the frame)
    copy_sort: list[tuple[bool, str]] = []
    if not sort:
        for j, (c, a, na) in enumerate(zip(*parent)):
            if c != POSITION:
                copies.append((f"__hpcframe_o{j}__", c))
                copy_sort.append((a, na))
    hidden = P.hidden_columns(node)

    def grouped(data, group_sort=True, base=None):
        g = data.groupby(by, dropna=dropna, sort=group_sort, observed=True) if base is None else base
        if selection is not None:
            g = g[selection[0] if series else selection]
        return g

    try:
        probe = run(grouped(_data_columns(node.meta, hidden).iloc[:0]))
    except Exception as exc:
        raise TypeError(f"groupby({keys}).{name}() cannot run on these columns: {exc}") from exc
    is_series = isinstance(probe, pd.Series)
    labels = [probe.name] if is_series else list(probe.columns)
    reserved = set(keys) | {POSITION, _QLEVEL, _QPOS}
    plain = all(isinstance(x, str) and x not in reserved for x in labels) and len(set(labels)) == len(labels)
    flat = list(labels) if plain else [f"__hpcframe_v{j}__" for j in range(len(labels))]
    qname = _QLEVEL if as_index else f"level_{len(keys)}"
    meta = node.meta[keys].iloc[:0].reset_index(drop=True)
    if dropna:  # a key of Python objects without its missing values is typed by its values,
        # as pandas types a group index (bools with a null elsewhere: a bool index)
        for k in keys:
            if meta[k].dtype == object:
                meta[k] = pd.Series([], dtype="bool")
    if qlevel:
        meta[qname] = pd.Series([], dtype="float64")
        meta[_QPOS] = pd.Series([], dtype="int64")
    probe_frame = probe.to_frame() if is_series else probe
    for f, j in zip(flat, range(len(labels))):
        meta[f] = pd.Series([], dtype=probe_frame.iloc[:, j].dtype)
    meta[POSITION] = pd.Series([], dtype="int64")
    for c, src in copies:
        meta[c] = node.meta[src].iloc[:0].reset_index(drop=True)
    columns = list(meta.columns)

    by_values = [k for k in keys if node.meta[k].dtype in (object, bool)]  # see typed_by_values

    def per_partition(df):
        data = df  # in the frame's row order (sort_values, else positions): input_sort below
        # each group's first row (orders groups for sort=False), in the groups' sorted order
        # one grouping of the rows, for the group numbers and for ``run`` (pandas keeps the
        # group codes in it: the keys are factorized once)
        values = _data_columns(data, hidden)
        base = values.groupby(by, dropna=dropna, sort=True, observed=True)
        ng = base.ngroup()
        ng = ng.fillna(-1).to_numpy(dtype="int64")
        # the first row of every group (O(n): no sort of the group numbers)
        grouped_rows = np.flatnonzero(ng >= 0)
        at = np.full(int(ng.max(initial=-1)) + 1, len(ng), dtype="int64")
        np.minimum.at(at, ng[grouped_rows], grouped_rows)
        first_rows = data.iloc[at].reset_index(drop=True)
        first = first_rows[POSITION].to_numpy()
        res = run(grouped(values, base=base))
        table = res.to_frame() if isinstance(res, pd.Series) else res.copy()
        table.columns = flat
        table.index = table.index.set_names(keys + ([qname] if qlevel else []))
        table = table.reset_index()
        for k in keys:  # as pandas types a group index: by its values (bools: bool)
            if table[k].dtype == object:
                table[k] = table[k].infer_objects()
            elif k in by_values and table[k].dtype.kind == "f" and bool(table[k].isna().all()):
                # only the missing key of a bool-or-object key in this partition: pandas made
                # it a float64 NaN, whose type would win over the other partitions' bools
                # (True became 1.0); as a missing object it has no type of its own
                table[k] = pd.Series([None] * len(table), dtype=object, index=table.index)
        per_group = len(table) // len(first) if len(first) else 0
        if len(table) != len(first) * per_group:  # pragma: no cover - pandas' shape changed
            raise RuntimeError(f"groupby({keys}).{name}: {len(table)} result rows for {len(first)} groups")
        if qlevel:  # pandas lists each group's quantiles in the order of q
            table[_QPOS] = np.tile(np.arange(per_group, dtype="int64"), len(first))
        table[POSITION] = np.repeat(first.astype("int64"), per_group)
        repeat = np.repeat(np.arange(len(first_rows)), per_group)
        for c, src in copies:
            table[c] = first_rows[src].iloc[repeat].reset_index(drop=True)
        return table[columns]

    index = (keys + ([qname] if qlevel else [])) if as_index else []
    stage = _GroupStage(
        node,
        keys,
        f"groupby({keys}).{name}",
        per_partition=per_partition,
        meta=meta,
        index=index,
    )
    # keys that may hold bools with nulls: typed by their values, as a pandas group index
    stage.typed_by_values = by_values
    # the input rows are put in the frame's order (per_partition sees it in each group) ...
    stage.input_sort = P.source_sort(stage)
    # ... and the order of the result: its groups sorted, or by their first row
    order = [(k, True, "last") for k in keys] if sort else []
    order += [(c, a, na) for (c, _), (a, na) in zip(copies, copy_sort)]
    if not sort:
        order.append((POSITION, True, "last"))
    if qlevel:
        order.append((_QPOS, True, "last"))
    stage.order = [c for c, _, _ in order]
    stage.order_ascending = [a for _, a, _ in order]
    stage.na_position = [na for _, _, na in order]
    stage.hidden = [POSITION] + ([_QPOS] if qlevel else []) + [c for c, _ in copies]
    scan = P.Scan(stage, stage.meta)
    if plain:
        if is_series and as_index:
            return Series(scan, E.Col(flat[0]), labels[0] if series_name == "__auto__" else series_name)
        return Frame(scan)

    out = CollectOutput(scan)
    nkeys = len(keys)

    def finish(results):
        df = results[0]
        if as_index:
            if is_series:
                return df.iloc[:, 0].rename(labels[0])
            df.columns = probe.columns
            return df
        cols = list(df.columns)
        tail = cols[nkeys + (1 if qlevel else 0) :]
        if isinstance(probe.columns, pd.MultiIndex):
            head = [(c, "") for c in cols[: len(cols) - len(tail)]]
            df.columns = pd.MultiIndex.from_tuples(head + list(probe.columns))
        else:
            df.columns = cols[: len(cols) - len(tail)] + list(probe.columns)
        return df

    return Result(Composite([out], finish, f"groupby({keys}).{name}"))


def _is_whole_group_agg(a) -> bool:
    return (callable(a) and not isinstance(a, str)) or (isinstance(a, str) and a in _ORDER_STATS)


def _wants_whole_groups(func, named) -> bool:
    """Whether an ``agg`` call has an aggregation that needs whole groups (an order
    statistic or a function of the group's values)."""
    return any(_is_whole_group_agg(a) for a in _agg_names(func, named))


def _agg_names(func, named) -> list:
    """The aggregations an ``agg`` call names (names and functions, as given)."""
    if named:
        return [v[1] for v in named.values() if isinstance(v, tuple) and len(v) == 2]
    if isinstance(func, dict):
        return [a for v in func.values() for a in (v if isinstance(v, (list, tuple)) else [v])]
    if isinstance(func, (list, tuple)):
        return list(func)
    return [] if func is None else [func]


def _exact_agg(self: GroupBy, func, named):
    """``g.agg(...)`` with an order statistic or a function: every aggregation of the call
    computed by pandas on whole groups (see :func:`_exact`)."""
    if named:
        for out_name, spec in named.items():
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise TypeError(
                    f"named aggregation {out_name}= must be a (column, aggregation) tuple, got {spec!r}"
                )
            self._node.check_columns([spec[0]])
        cols = list(dict.fromkeys(spec[0] for spec in named.values()))
        base = GroupBy(
            self._node, self._keys, self._dropna, self._sort, self._as_index, cols, by_list=self._by_list
        )
        return _exact(base, lambda g: g.agg(**named), "agg")
    if isinstance(func, dict):
        self._node.check_columns(list(func))
        base = GroupBy(
            self._node,
            self._keys,
            self._dropna,
            self._sort,
            self._as_index,
            list(func),
            by_list=self._by_list,
        )
        return _exact(base, lambda g: g.agg(func), "agg")
    return _exact(self, lambda g: g.agg(func), "agg")
