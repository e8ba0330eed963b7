"""Building a job: a validated :class:`~hpcframe.spec.JobSpec` → the lazy frames and
results it computes (:func:`build`), reading only metadata.
"""

from __future__ import annotations

from ..errors import ColumnNotFoundError, HpcframeError
from .validate import AggSpec, InputSpec, JobSpec, SpecError


def open_input(inp: InputSpec, comm=None):
    """The lazy frame of an input: ``hf.read_parquet``/``hf.read_hdf``/``hf.read_csv`` (with
    the spec's ``input.csv`` options), with its columns. ``comm``: the ranks that run the job
    (``read_csv`` is collective over them)."""
    from .. import read_csv, read_hdf, read_parquet

    if inp.format == "csv":
        options = dict(inp.csv or {})
        frame = _at("input.csv", options, lambda: read_csv(inp.path, comm=comm, **options))
    elif inp.format == "hdf5":
        frame = read_hdf(inp.path, key=inp.key)
    else:
        frame = read_parquet(inp.path)
    if inp.columns is not None:
        frame = _at("input.columns", inp.columns, lambda: frame[list(inp.columns)])
    return frame


def _at(key, value, fn):
    """``fn()``, with column and query errors re-raised as :class:`SpecError` at ``key``."""
    from ..query import QueryError

    try:
        return fn()
    except (ColumnNotFoundError, QueryError) as exc:
        raise SpecError(key, str(exc), value) from exc
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        if isinstance(exc, HpcframeError):
            raise
        raise SpecError(key, f"{type(exc).__name__}: {str(exc)[:300]}", value) from exc


def build(spec: JobSpec, comm=None):
    """The lazy parts of a job: ``(input_frame, lazy_result, finish)`` where
    ``finish(computed) -> pandas.DataFrame`` gives the table to write. Reads only metadata.
    Raises :class:`SpecError` naming the key for unknown columns, bad expressions, or
    aggregations that do not apply to a column's type. ``comm``: the ranks that run the job
    (a CSV input's type sample is collective over them)."""
    from ..expr import and_all, conjuncts
    from ..query import apply_expression, apply_filter, parse_query

    source = open_input(spec.input, comm)
    frame = source
    assigned = {name for name, _ in spec.assign}
    early = late = None
    condition = spec.filter or ""  # the filter's text, quoted in errors
    if spec.filter is not None:
        cols = list(frame.columns) + sorted(assigned - set(frame.columns))
        tree = _at("filter", spec.filter, lambda: parse_query(spec.filter, cols))
        # conditions on input columns go first (pushed into the reader, pruning partitions);
        # those that use assigned columns after the assignments
        terms = conjuncts(tree)
        early = and_all([t for t in terms if not t.columns() & assigned])
        late = and_all([t for t in terms if t.columns() & assigned])
    if early is not None:
        frame = _at("filter", spec.filter, lambda: apply_filter(frame, early, condition))
    for name, text in spec.assign:
        value = _at(f"assign.{name}", text, lambda: apply_expression(frame, text, what="assign"))  # noqa: B023 - called at once
        frame = frame.assign(**{name: value})
    if late is not None:
        frame = _at("filter", spec.filter, lambda: apply_filter(frame, late, condition))
    if not spec.aggregate:
        return source, frame, lambda df: df.reset_index(drop=True)
    if spec.groupby:
        return source, *_grouped(spec, frame)
    return source, *_whole(spec, frame)


def _grouped(spec: JobSpec, frame):
    keys = list(spec.groupby)
    gb = _at("groupby", keys, lambda: frame.groupby(keys, dropna=spec.dropna, sort=spec.sort))
    for a in spec.aggregate:
        _at(a.key, a.column, lambda: frame[a.column])  # noqa: B023 - called at once
        _check_type(frame, a)
    if spec.subtotals:
        cols = [a.column for a in spec.aggregate]
        agg = spec.aggregate[0].agg
        lazy = _at("subtotals", True, lambda: getattr(gb[cols], agg)(subtotals=True))

        def finish(df):
            out = df.reset_index()
            for k in keys:  # key columns mix values and "All": write them as text
                out[k] = out[k].map(lambda v: v if isinstance(v, str) or v is None else str(v))
                out[k] = out[k].astype("str")
            return out

        return lazy, finish
    named = {a.name: (a.column, a.agg) for a in spec.aggregate}
    lazy = _at("aggregate", None, lambda: gb.agg(**named))
    return lazy, lambda df: df.reset_index()


def _whole(spec: JobSpec, frame):
    parts = []
    for a in spec.aggregate:
        _check_type(frame, a)
        if a.agg == "size":
            parts.append(frame.len())
            continue
        if a.agg in ("first", "last"):
            raise SpecError(
                a.key,
                f"{a.agg!r} needs groupby; without groupby use min, max, "
                "sum, mean, count, var, std, nunique or size",
                a.agg,
            )
        series = _at(a.key, a.column, lambda: frame[a.column])  # noqa: B023 - called at once
        parts.append(getattr(series, a.agg)())
    lazy = _Many(parts)

    def finish(values):
        import pandas as pd

        return pd.DataFrame({a.name: [v] for a, v in zip(spec.aggregate, values)})

    return lazy, finish


def _check_type(frame, a: AggSpec):
    import pandas as pd

    from ..aggregations import AGGREGATIONS

    if a.agg == "size" or a.column not in frame.columns:
        return
    agg = AGGREGATIONS.get(a.agg)
    dtype = frame.dtypes[a.column]
    if agg is not None and (agg.numeric_only or a.agg == "sum") and not pd.api.types.is_numeric_dtype(dtype):
        raise SpecError(
            a.key,
            f"{a.agg} needs a numeric column; {a.column!r} is {dtype} "
            "(use count, nunique, min, max, first or last)",
            a.agg,
        )


class _Many:
    """Several lazy results computed in one pass (whole-frame aggregations)."""

    def __init__(self, parts):
        self.parts = parts
