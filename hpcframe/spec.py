"""Declarative jobs: a YAML spec → a validated :class:`JobSpec` → one computation → a file.

.. code-block:: yaml

    input: {path: data/flights/, columns: [carrier, month, day, dep_delay]}
    filter: "carrier in ['AA', 'UA'] and dep_delay > 0"
    assign: {delay_h: "dep_delay / 60"}
    groupby: [carrier, month]
    aggregate:
      dep_delay: [mean, max]          # dict form: column → aggregation(s)
      n_flights: {column: dep_delay, agg: size}   # named form: output → column + aggregation
    options: {dropna: true, sort: true}
    output: {path: by_month.parquet, overwrite: false}

:func:`load_spec` reads and validates a file (raising :class:`SpecError` that names the key),
:func:`run_spec` runs a spec on every rank of the communicator (rank 0 writes the output
atomically, see :mod:`hpcframe.io.output`), :func:`run_job` does both collectively, as
``hpcframe run`` does. :func:`dataset_info` describes an input for ``hpcframe info``.
See ``docs/jobs-specs.md`` for the format.
"""
from __future__ import annotations

import difflib
import reprlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ColumnNotFoundError, HpcframeError

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
INPUT_FORMATS = ("parquet", "hdf5")
OUTPUT_FORMATS = ("parquet", "hdf5", "csv")
TOP_KEYS = ("input", "filter", "assign", "groupby", "aggregate", "options", "subtotals",
            "output")
INPUT_KEYS = ("path", "format", "key", "columns")
OUTPUT_KEYS = ("path", "format", "overwrite")
OPTION_KEYS = ("dropna", "sort")
NAMED_AGG_KEYS = ("column", "agg")
SUBTOTAL_AGGS = ("sum", "mean", "count", "min", "max", "var", "std")
# keys whose --set value is taken as text, never parsed as YAML
_TEXT_KEYS = ("filter", "input.path", "input.key", "input.format", "output.path",
              "output.format")

# Limits on YAML read from files that may come from someone else (job specs, profiles). YAML
# aliases let a few hundred bytes stand for millions of values ("billion laughs"): loading
# shares them, but anything that walks the result (validation, error messages) would not.
#: Largest job spec file, in bytes.
MAX_YAML_BYTES = 1 << 20
#: Most values a loaded document may hold when every alias is expanded (each scalar, list,
#: mapping and mapping key counts one).
MAX_YAML_VALUES = 100_000
#: Deepest nesting of lists and mappings.
MAX_YAML_DEPTH = 50
#: Integers must be below 2**MAX_YAML_INT_BITS (as in query strings: hpcframe.query.MAX_INT_BITS).
MAX_YAML_INT_BITS = 1024


class YAMLLimitError(ValueError):
    """A YAML document is over one of the limits above. ``key`` is the dotted key path of the
    offending value ('' for the whole document), ``detail`` says which limit and what to do."""

    def __init__(self, key: str, detail: str):
        self.key, self.detail = key, detail
        super().__init__(f"{key}: {detail}" if key else detail)


def load_yaml(text: str):
    """``yaml.safe_load(text)``, bounded: raises :class:`YAMLLimitError` when the text is longer
    than :data:`MAX_YAML_BYTES`, or the document -- its aliases expanded -- holds more than
    :data:`MAX_YAML_VALUES` values, nests deeper than :data:`MAX_YAML_DEPTH`, refers to itself
    or has an integer of :data:`MAX_YAML_INT_BITS` bits or more. Raises ``yaml.YAMLError`` for
    invalid YAML. Loading is cheap whatever the input (aliases are shared, not copied)."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise YAMLLimitError("", f"the document is {len(text):,} characters long; the limit is "
                             f"{MAX_YAML_BYTES:,}")
    # libyaml's parser, when present, is fast and refuses nesting deeper than 1,000 itself
    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except RecursionError:
        raise YAMLLimitError("", f"lists or mappings are nested too deeply (the limit is "
                             f"{MAX_YAML_DEPTH} levels)") from None
    except ValueError as exc:  # an integer of more than 4,300 decimal digits
        raise YAMLLimitError("", f"a value cannot be read: {_show(str(exc), 120)[1:-1]} "
                             f"(integers must be below 2**{MAX_YAML_INT_BITS})") from None
    check_yaml_size(data)
    return data


def check_yaml_size(data) -> None:
    """Raise :class:`YAMLLimitError` naming the key if ``data`` (loaded YAML: dicts, lists and
    scalars, possibly sharing sub-objects through aliases) is over the limits of
    :func:`load_yaml`. Costs one visit per distinct object, never expands shared ones."""
    sizes: dict[int, int] = {}   # id -> size with aliases expanded (containers done)
    active: set[int] = set()      # containers on the current path (a cycle if met again)
    stack = [(data, "", 1, False)]
    while stack:
        obj, key, depth, done = stack.pop()
        if isinstance(obj, int) and not isinstance(obj, bool) \
                and abs(obj).bit_length() >= MAX_YAML_INT_BITS:
            raise YAMLLimitError(key, f"an integer of {abs(obj).bit_length()} bits is too "
                                 f"large; integers must be below 2**{MAX_YAML_INT_BITS}")
        if not isinstance(obj, (dict, list, tuple, set)):
            continue
        oid = id(obj)
        if done:
            active.discard(oid)
            items = list(obj.items()) if isinstance(obj, dict) else [(None, v) for v in obj]
            total = 1 + sum((k is not None) + sizes.get(id(v), 1) for k, v in items)
            if total > MAX_YAML_VALUES:
                raise YAMLLimitError(key, f"holds {total:,} values or more once its aliases "
                                     f"(*name) are expanded; the limit is {MAX_YAML_VALUES:,}: "
                                     "write the values out, or use fewer aliases")
            sizes[oid] = total
            continue
        if oid in sizes:
            continue
        if oid in active:
            raise YAMLLimitError(key, "refers to itself (a recursive YAML alias): write the "
                                 "value out")
        if depth > MAX_YAML_DEPTH:
            raise YAMLLimitError(key, f"lists or mappings are nested more than "
                                 f"{MAX_YAML_DEPTH} levels deep")
        active.add(oid)
        stack.append((obj, key, depth, True))
        if isinstance(obj, dict):
            for k, v in obj.items():
                stack.append((k, key, depth + 1, False))
                stack.append((v, _join(key, _show_key(k)), depth + 1, False))
        else:
            for i, v in enumerate(obj):
                stack.append((v, f"{key}[{i}]", depth + 1, False))


def _show_key(k) -> str:
    return k if isinstance(k, str) and len(k) <= 60 else _show(k)


class SpecError(HpcframeError, ValueError):
    """A job spec is invalid. ``key`` is the dotted key path (``aggregate.dep_delay``),
    ``value`` the offending value; the message says what to do."""

    def __init__(self, key: str, message: str, value: Any = None, source: str | None = None):
        self.key, self.value, self.source, self.detail = key, value, source, message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


@dataclass(frozen=True)
class InputSpec:
    path: str
    format: str  # parquet | hdf5
    key: str | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OutputSpec:
    path: str
    format: str  # parquet | hdf5 | csv
    overwrite: bool = False


@dataclass(frozen=True)
class AggSpec:
    """One output column: ``name`` = ``agg`` of ``column`` (``key``: where it was written)."""

    name: str
    column: str
    agg: str
    key: str


@dataclass(frozen=True)
class JobSpec:
    """A validated job spec (see the module docstring). ``source`` is the spec's file."""

    input: InputSpec
    filter: str | None = None
    assign: tuple[tuple[str, str], ...] = ()
    groupby: tuple[str, ...] = ()
    aggregate: tuple[AggSpec, ...] = ()
    dropna: bool = True
    sort: bool = True
    subtotals: bool = False
    output: OutputSpec | None = None
    source: str | None = None


@dataclass
class RunSummary:
    """What :func:`run_spec` did. ``result`` is the table on rank 0 (``None`` elsewhere)."""

    rank: int
    ranks: int
    rows_total: int | None
    rows_read: int
    partitions: int
    partitions_pruned: int
    rows_out: int | None
    output: str | None
    format: str | None
    seconds: float
    result: Any = field(default=None, repr=False)

    def text(self) -> str:
        """A few human-readable lines (on rank 0)."""
        total = f"{self.rows_total:,}" if self.rows_total is not None else "?"
        lines = [f"rows in:  {total} ({self.rows_read:,} read; {self.partitions_pruned} of "
                 f"{self.partitions} block(s) skipped by statistics)",
                 f"rows out: {self.rows_out:,}" if self.rows_out is not None else "rows out: ?",
                 f"output:   {self.output} ({self.format})" if self.output else
                 "output:   (none: printed above)",
                 f"seconds:  {self.seconds:.2f} on {self.ranks} rank(s)"]
        return "\n".join(lines)


# ============================================================================ loading
def load_spec(path: str, overrides=(), check_paths: bool = True) -> JobSpec:
    """Read the YAML job spec at ``path``, apply ``overrides`` (``"KEY=VALUE"`` strings, see
    :func:`apply_overrides`) and validate it. Returns a :class:`JobSpec`. Raises
    :class:`SpecError` naming the key (and ``path``), also for unreadable files or bad YAML;
    with ``check_paths`` a missing input is an error too."""
    import yaml

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_YAML_BYTES + 1)
        data = load_yaml(text)
    except YAMLLimitError as exc:
        raise SpecError(exc.key, f"job spec {path!r} is over a limit: {exc.detail}",
                        None, path) from None
    except UnicodeDecodeError as exc:
        raise SpecError("", f"job spec {path!r} is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start})", path) from None
    except FileNotFoundError:
        raise SpecError("", f"job spec {path!r} does not exist", path) from None
    except OSError as exc:
        raise SpecError("", f"cannot read job spec {path!r}: {exc.strerror or exc}",
                        path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError("", f"job spec {path!r} is not valid YAML{where}: "
                        f"{_show(str(problem), 200)[1:-1]}", path) from None
    data = apply_overrides(data, overrides, source=path)
    return parse_spec(data, source=path, check_paths=check_paths)


def apply_overrides(data, overrides, source: str | None = None) -> dict:
    """``data`` (a spec mapping) with ``KEY=VALUE`` overrides applied: ``KEY`` is a dotted
    path (``filter``, ``output.path``, ``options.sort``, ``assign.z``); ``VALUE`` is read as
    YAML (``[a, b]``, ``true``, ``3``) except for text keys (filter, paths, formats, assign
    expressions), which are taken as written. Returns a new dict; raises :class:`SpecError`."""
    import copy

    import yaml

    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise SpecError("", f"a job spec must be a mapping of keys ({', '.join(TOP_KEYS)}), "
                        f"not {type(data).__name__}", data, source)
    for item in overrides or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError("--set", f"{item!r} is not KEY=VALUE; e.g. --set "
                            "filter=\"carrier == 'UA'\" or --set output.path=out.parquet", item)
        if key in _TEXT_KEYS or key.startswith("assign."):
            value = raw
        else:
            try:
                value = load_yaml(raw) if raw.strip() else None
            except yaml.YAMLError:
                value = raw
            except YAMLLimitError as exc:
                raise SpecError(_join(key, exc.key), f"--set {key}=...: {exc.detail}", None,
                                source) from None
        parts = key.split(".")
        target = data
        for i, part in enumerate(parts[:-1]):
            current = target.get(part)
            if isinstance(current, str) and part in ("input", "output"):
                current = {"path": current}  # shorthand "input: path" → mapping
            if current is None:
                current = {}
            if not isinstance(current, dict):
                raise SpecError(".".join(parts[:i + 1]), f"--set {key}=...: this key holds "
                                f"{type(current).__name__}, not a mapping", current, source)
            target[part] = current
            target = current
        target[parts[-1]] = value
    return data


def parse_spec(data, source: str | None = None, check_paths: bool = True) -> JobSpec:
    """Validate a spec mapping (as loaded from YAML) into a :class:`JobSpec`. Raises
    :class:`SpecError` naming the first wrong key, its value and what to do (also when
    ``data`` is over the limits of :func:`load_yaml`)."""
    try:
        check_yaml_size(data)
    except YAMLLimitError as exc:
        raise SpecError(exc.key, exc.detail, None, source) from None
    v = _Validator(source)
    data = v.mapping("", data, TOP_KEYS, required=("input",))
    inp = v.input(data["input"], check_paths)
    flt = data.get("filter")
    if flt is not None and not (isinstance(flt, str) and flt.strip()):
        raise v.error("filter", "must be a query string such as \"dep_delay > 0\"", flt)
    assign = v.assign(data.get("assign"))
    groupby = v.names("groupby", data.get("groupby"))
    options = v.mapping("options", data.get("options") or {}, OPTION_KEYS)
    dropna = v.boolean("options.dropna", options.get("dropna", True))
    sort = v.boolean("options.sort", options.get("sort", True))
    subtotals = v.boolean("subtotals", data.get("subtotals", False))
    aggs = v.aggregate(data.get("aggregate"), groupby)
    if groupby and not aggs:
        raise v.error("aggregate", "groupby needs an aggregate: e.g. aggregate: {dep_delay: "
                      "mean}", data.get("aggregate"))
    if subtotals:
        v.subtotals(aggs, groupby, sort)
    output = v.output(data.get("output"))
    return JobSpec(inp, flt, assign, groupby, aggs, dropna, sort, subtotals, output, source)


class _Validator:
    def __init__(self, source):
        self.source = source

    def error(self, key, message, value=None) -> SpecError:
        return SpecError(key, message, value, self.source)

    def mapping(self, key, value, allowed, required=()) -> dict:
        if not isinstance(value, dict):
            what = "the spec" if not key else key
            raise self.error(key, f"{what} must be a mapping with keys "
                             f"{', '.join(allowed)}; got {_show(value)}", value)
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1) if isinstance(k, str) else []
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise self.error(_join(key, k), f"unknown key.{hint} Valid keys"
                                 f"{' of ' + key if key else ''}: {', '.join(allowed)}", k)
        for k in required:
            if value.get(k) is None:
                raise self.error(_join(key, k), "is required", None)
        return value

    def boolean(self, key, value) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_show(value)}", value)
        return value

    def text(self, key, value, allow_none=True) -> str | None:
        if value is None and allow_none:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {_show(value)}", value)
        return value

    def names(self, key, value) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"must be a column name or a list of column names, got "
                             f"{_show(value)}", value)
        for i, name in enumerate(value):
            if not isinstance(name, str) or not name:
                raise self.error(f"{key}[{i}]", f"must be a column name, got {_show(name)}",
                                 name)
        if len(set(value)) != len(value):
            raise self.error(key, f"lists a column twice: {_show(value, 200)}", value)
        return tuple(value)

    def input(self, value, check_paths) -> InputSpec:
        if isinstance(value, str):
            value = {"path": value}
        value = self.mapping("input", value, INPUT_KEYS, required=("path",))
        path = self.text("input.path", value["path"], allow_none=False)
        fmt = self.text("input.format", value.get("format"))
        if fmt is not None and fmt not in INPUT_FORMATS:
            raise self.error("input.format", f"unknown format {fmt!r}; use one of "
                             f"{', '.join(INPUT_FORMATS)}", fmt)
        key = self.text("input.key", value.get("key"))
        columns = value.get("columns")
        columns = self.names("input.columns", columns) if columns is not None else None
        if fmt is None:
            fmt = self._detect(path, check_paths)
        elif check_paths:
            self._exists(path)
        if key is not None and fmt != "hdf5":
            raise self.error("input.key", "is only used with HDF5 input (it names the table "
                             "inside the files); remove it", key)
        return InputSpec(path, fmt, key, columns)

    def _exists(self, path):
        from .io.paths import expand_paths

        try:
            return expand_paths(path, PARQUET_SUFFIXES + HDF5_SUFFIXES, "Parquet or HDF5")[0]
        except FileNotFoundError as exc:
            raise self.error("input.path", f"{exc}; check the path (relative paths are "
                             f"relative to the current directory, {os.getcwd()!r})",
                             path) from None

    def _detect(self, path, check_paths) -> str:
        name = path.lower().rstrip("/*")
        for fmt, suffixes in (("parquet", PARQUET_SUFFIXES), ("hdf5", HDF5_SUFFIXES)):
            if name.endswith(suffixes):
                if check_paths:
                    self._exists(path)
                return fmt
        if not check_paths:
            return "parquet"
        files = self._exists(path)
        first = files[0].lower()
        if first.endswith(HDF5_SUFFIXES):
            return "hdf5"
        if first.endswith(PARQUET_SUFFIXES):
            return "parquet"
        raise self.error("input.format", f"cannot tell the format of {path!r}; add "
                         "format: parquet or format: hdf5", path)

    def assign(self, value) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            raise self.error("assign", "must map new column names to expressions, e.g. "
                             "assign: {gain: \"dep_delay - arr_delay\"}", value)
        out = []
        for name, text in value.items():
            if not isinstance(name, str) or not name:
                raise self.error("assign", f"column names must be strings, got {_show(name)}",
                                 name)
            if isinstance(text, (int, float)) and not isinstance(text, bool):
                text = repr(text)
            self.text(f"assign.{name}", text, allow_none=False)
            out.append((name, text))
        return tuple(out)

    def aggregate(self, value, groupby) -> tuple[AggSpec, ...]:
        from .aggregations import AGGREGATIONS

        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            raise self.error("aggregate", "must be a mapping: {column: agg or [aggs]} or "
                             "{output_name: {column: ..., agg: ...}}", value)
        known = sorted(AGGREGATIONS) + ["size"]
        out = []
        for key, spec in value.items():
            where = f"aggregate.{key}"
            if not isinstance(key, str) or not key:
                raise self.error("aggregate", f"keys must be column or output names, got "
                                 f"{_show(key)}", key)
            if isinstance(spec, dict):
                spec = self.mapping(where, spec, NAMED_AGG_KEYS, required=NAMED_AGG_KEYS)
                col = self.text(f"{where}.column", spec["column"], allow_none=False)
                agg = self._agg(f"{where}.agg", spec["agg"], known)
                out.append(AggSpec(key, col, agg, where))
            elif isinstance(spec, str):
                out.append(AggSpec(key, key, self._agg(where, spec, known), where))
            elif isinstance(spec, list) and spec:
                for i, a in enumerate(spec):
                    agg = self._agg(f"{where}[{i}]", a, known)
                    out.append(AggSpec(f"{key}_{agg}", key, agg, f"{where}[{i}]"))
            else:
                raise self.error(where, f"must be an aggregation name, a list of names, or "
                                 f"{{column: ..., agg: ...}}; got {_show(spec)}", spec)
        seen = {}
        for a in out:
            if a.name in seen or a.name in groupby:
                other = seen.get(a.name, "groupby")
                raise self.error(a.key, f"output column {a.name!r} is also produced by "
                                 f"{other}; use the named form {{column: ..., agg: ...}} "
                                 "under another name", a.name)
            seen[a.name] = a.key
        return tuple(out)

    def _agg(self, key, value, known) -> str:
        if not isinstance(value, str) or value not in known:
            close = difflib.get_close_matches(value, known, n=1) if isinstance(value, str) else []
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise self.error(key, f"unknown aggregation {_show(value)}.{hint} Known: "
                             f"{', '.join(known)}", value)
        return value

    def subtotals(self, aggs, groupby, sort):
        if not groupby:
            raise self.error("subtotals", "needs groupby (totals are per level of the group "
                             "keys)", True)
        if not sort:
            raise self.error("subtotals", "needs options.sort: true (totals are placed after "
                             "the rows they add up)", True)
        names = {a.agg for a in aggs}
        if len(names) != 1 or any(a.name != a.column for a in aggs):
            raise self.error("subtotals", "needs one aggregation for all columns in the dict "
                             "form, e.g. aggregate: {dep_delay: mean, arr_delay: mean}", True)
        agg = names.pop()
        if agg not in SUBTOTAL_AGGS:
            raise self.error("subtotals", f"does not support {agg!r}; use one of "
                             f"{', '.join(SUBTOTAL_AGGS)}", agg)

    def output(self, value) -> OutputSpec | None:
        from .io.output import format_of

        if value is None:
            return None
        if isinstance(value, str):
            value = {"path": value}
        value = self.mapping("output", value, OUTPUT_KEYS, required=("path",))
        path = self.text("output.path", value["path"], allow_none=False)
        fmt = self.text("output.format", value.get("format"))
        if fmt is not None and fmt not in OUTPUT_FORMATS:
            raise self.error("output.format", f"unknown format {fmt!r}; use one of "
                             f"{', '.join(OUTPUT_FORMATS)}", fmt)
        fmt = fmt or format_of(path)
        if fmt is None:
            raise self.error("output.path", f"cannot tell the format of {path!r} from its "
                             "name: end it in .parquet, .h5 or .csv, or add output.format",
                             path)
        overwrite = self.boolean("output.overwrite", value.get("overwrite", False))
        return OutputSpec(path, fmt, overwrite)


def _join(key, k) -> str:
    return f"{key}.{k}" if key else str(k)


class _Repr(reprlib.Repr):
    """A repr that does bounded work whatever the value (lists shared through YAML aliases
    can stand for millions of items): few items per level, few levels, short strings."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxtuple, self.maxset = 3, 6, 4, 6, 6
        self.maxstring, self.maxother, self.maxlong = 60, 60, 40

    def repr_int(self, x, level):
        if abs(x).bit_length() > 128:
            return f"<an integer of {abs(x).bit_length()} bits>"
        return repr(x)


_REPR = _Repr()


def _show(value, limit: int = 60) -> str:
    """A short ``repr`` of ``value`` for an error message, in bounded time and memory."""
    if isinstance(value, str):
        text = repr(value[:limit + 1])
    else:
        text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ============================================================================ building
def open_input(inp: InputSpec):
    """The lazy frame of an input: ``hf.read_parquet``/``hf.read_hdf``, with its columns."""
    from . import read_hdf, read_parquet

    frame = read_hdf(inp.path, key=inp.key) if inp.format == "hdf5" else read_parquet(inp.path)
    if inp.columns is not None:
        frame = _at("input.columns", inp.columns, lambda: frame[list(inp.columns)])
    return frame


def _at(key, value, fn):
    """``fn()``, with column and query errors re-raised as :class:`SpecError` at ``key``."""
    from .query import QueryError

    try:
        return fn()
    except (ColumnNotFoundError, QueryError) as exc:
        raise SpecError(key, str(exc), value) from exc
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        if isinstance(exc, HpcframeError):
            raise
        raise SpecError(key, f"{type(exc).__name__}: {str(exc)[:300]}", value) from exc


def build(spec: JobSpec):
    """The lazy parts of a job: ``(input_frame, lazy_result, finish)`` where
    ``finish(computed) -> pandas.DataFrame`` gives the table to write. Reads only metadata.
    Raises :class:`SpecError` naming the key for unknown columns, bad expressions, or
    aggregations that do not apply to a column's type."""
    from .expr import and_all, conjuncts
    from .query import apply_expression, apply_filter, parse_query

    source = open_input(spec.input)
    frame = source
    assigned = {name for name, _ in spec.assign}
    early = late = None
    if spec.filter is not None:
        cols = list(frame.columns) + sorted(assigned - set(frame.columns))
        tree = _at("filter", spec.filter, lambda: parse_query(spec.filter, cols))
        # conditions on input columns go first (pushed into the reader, pruning partitions);
        # those that use assigned columns after the assignments
        terms = conjuncts(tree)
        early = and_all([t for t in terms if not t.columns() & assigned])
        late = and_all([t for t in terms if t.columns() & assigned])
    if early is not None:
        frame = _at("filter", spec.filter, lambda: apply_filter(frame, early, spec.filter))
    for name, text in spec.assign:
        value = _at(f"assign.{name}", text, lambda: apply_expression(frame, text, what="assign"))
        frame = frame.assign(**{name: value})
    if late is not None:
        frame = _at("filter", spec.filter, lambda: apply_filter(frame, late, spec.filter))
    if not spec.aggregate:
        return source, frame, lambda df: df.reset_index(drop=True)
    if spec.groupby:
        return source, *_grouped(spec, frame)
    return source, *_whole(spec, frame)


def _grouped(spec: JobSpec, frame):
    keys = list(spec.groupby)
    gb = _at("groupby", keys, lambda: frame.groupby(keys, dropna=spec.dropna, sort=spec.sort))
    for a in spec.aggregate:
        _at(a.key, a.column, lambda: frame[a.column])
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
            raise SpecError(a.key, f"{a.agg!r} needs groupby; without groupby use min, max, "
                            "sum, mean, count, var, std, nunique or size", a.agg)
        series = _at(a.key, a.column, lambda: frame[a.column])
        parts.append(getattr(series, a.agg)())
    lazy = _Many(parts)

    def finish(values):
        import pandas as pd

        return pd.DataFrame({a.name: [v] for a, v in zip(spec.aggregate, values)})

    return lazy, finish


def _check_type(frame, a: AggSpec):
    import pandas as pd

    from .aggregations import AGGREGATIONS

    if a.agg == "size" or a.column not in frame.columns:
        return
    agg = AGGREGATIONS.get(a.agg)
    dtype = frame.dtypes[a.column]
    if agg is not None and (agg.numeric_only or a.agg == "sum") \
            and not pd.api.types.is_numeric_dtype(dtype):
        raise SpecError(a.key, f"{a.agg} needs a numeric column; {a.column!r} is {dtype} "
                        "(use count, nunique, min, max, first or last)", a.agg)


class _Many:
    """Several lazy results computed in one pass (whole-frame aggregations)."""

    def __init__(self, parts):
        self.parts = parts


# ============================================================================ running
def run_spec(spec: JobSpec, comm=None, output: str | None = None,
             overwrite: bool | None = None) -> RunSummary:
    """Run ``spec`` on every rank of ``comm`` (``None``: ``COMM_WORLD`` under an MPI launcher,
    else the local engine). Collective: call it on every rank. ``output``/``overwrite``
    override the spec's. Rank 0 writes the output atomically (or keeps the table in
    ``summary.result`` when the spec has no output). Returns a :class:`RunSummary` on every
    rank. Raises, on every rank: :class:`SpecError` (bad columns/expressions, output exists),
    :class:`~hpcframe.errors.ComputeError` (a rank failed), ``OSError`` (writing failed)."""
    from .comm import communicator

    with communicator(comm) as c:
        return _run(spec, c, output, overwrite)


def run_job(path: str, overrides=(), output: str | None = None, overwrite: bool | None = None,
            comm=None) -> RunSummary:
    """Load the spec file ``path`` (with ``overrides``, see :func:`load_spec`) and run it,
    collectively: if loading fails on any rank, every rank raises. See :func:`run_spec`."""
    from .comm import communicator

    with communicator(comm) as c:
        spec = _together(c, lambda: load_spec(path, overrides))
        return _run(spec, c, output, overwrite)


def explain_job(path: str, overrides=(), comm=None) -> str:
    """The plan of the job spec at ``path`` (see :meth:`hpcframe.Frame.explain`), without
    running it. Collective under MPI. Raises as :func:`load_spec` and :func:`build`."""
    from .comm import communicator

    with communicator(comm) as c:
        spec = _together(c, lambda: load_spec(path, overrides))
        _, lazy, _ = _together(c, lambda: build(spec))
        objs = lazy.parts if isinstance(lazy, _Many) else [lazy]
        return "\n".join(o.explain(comm=c) for o in objs)


def _with_output(spec: JobSpec, output, overwrite) -> JobSpec:
    """``spec`` with the command line's ``--output``/``--overwrite``. A ``--output`` path is
    replaced only with ``--overwrite`` (the spec's ``overwrite: true`` was meant for the
    spec's own output). Raises :class:`SpecError` for a ``--output`` whose extension is not
    one of the writers' suffixes, or ``--overwrite`` without any output."""
    from .io.output import FORMATS, format_of

    out = spec.output
    if output is not None:
        fmt = format_of(output)
        if fmt is None:
            suffixes = ", ".join(x for fmts in FORMATS.values() for x in fmts)
            raise SpecError("--output", f"cannot tell the format of {output!r}: end the name "
                            f"in one of {suffixes}", output, spec.source)
        out = OutputSpec(output, fmt, False)
    if overwrite is not None:
        if out is None:
            raise SpecError("--overwrite", "there is no output to overwrite; give --output "
                            "or output: in the spec", overwrite, spec.source)
        out = replace(out, overwrite=bool(overwrite))
    return replace(spec, output=out)


def _together(c, fn):
    """``fn()`` on every rank; if it raised on any rank, raise on every rank (the rank's own
    error where it failed, a summary of the first failure elsewhere)."""
    from .query import QueryError

    try:
        value, error = fn(), None
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        value, error = None, exc
    if c.size == 1:
        if error is not None:
            raise error
        return value
    usage = (SpecError, QueryError, ColumnNotFoundError)
    brief = None if error is None else (str(error), isinstance(error, usage))
    gathered = c.allgather(brief)
    if error is not None:
        raise error
    for rank, item in enumerate(gathered):
        if item is not None:
            message, is_usage = item
            if is_usage:
                raise SpecError("", message)
            raise HpcframeError(f"rank {rank} failed: {message}")
    return value


def _run(spec: JobSpec, c, output, overwrite) -> RunSummary:
    from .execute import last_run_stats
    from .frame import compute
    from .io.output import OutputExistsError, check_writable, write_table
    from .io.sources import known_partitions

    t0 = time.perf_counter()
    spec = _with_output(spec, output, overwrite)
    source, lazy, finish = _together(c, lambda: build(spec))
    out = spec.output

    def check():
        if out is not None and c.rank == 0:
            try:
                check_writable(out.path, out.overwrite)
            except OutputExistsError as exc:
                raise SpecError("output.path", str(exc), out.path, spec.source) from None
            except OSError as exc:
                raise SpecError("output.path", str(exc), out.path, spec.source) from None

    _together(c, check)
    objs = lazy.parts if isinstance(lazy, _Many) else [lazy]
    values = compute(*objs, comm=c, root=0)
    stats = c.gather(last_run_stats(), root=0)
    table = None

    def write():  # finish and write on rank 0; a failure of either reaches every rank
        nonlocal table
        if c.rank == 0:
            table = finish(list(values) if isinstance(lazy, _Many) else values[0])
            if out is not None:
                write_table(table, out.path, out.format, overwrite=out.overwrite)

    _together(c, write)
    rows_total = None
    parts = known_partitions(source.node.scan().source)  # discovered by execute
    if parts is not None:
        rows_total = sum(p.num_rows for p in parts)
    first = stats[0] if stats else {}
    return RunSummary(
        rank=c.rank, ranks=c.size, rows_total=rows_total,
        rows_read=sum(s.get("rows_read", 0) for s in stats) if stats else 0,
        partitions=first.get("partitions_total", 0),
        partitions_pruned=first.get("partitions_pruned", 0),
        rows_out=len(table) if table is not None else None,
        output=out.path if out is not None else None,
        format=out.format if out is not None else None,
        seconds=time.perf_counter() - t0,
        result=table if (c.rank == 0 and out is None) else None)


# ============================================================================ hpcframe info
def dataset_info(path: str, format: str | None = None, key: str | None = None) -> dict:
    """What ``hpcframe info`` shows about a dataset, from metadata only (Parquet footers,
    HDF5 shapes): ``format``, ``files``, ``partitions`` (a list of dicts: path, piece, rows,
    bytes), ``rows``, ``bytes``, ``hive`` (hive column names) and ``columns`` (a list of
    dicts: name, arrow, pandas, min, max, nulls; statistics ``None`` where unknown). Raises
    :class:`SpecError` (key ``path``/``format``) for a missing path or an unknown format and
    :class:`~hpcframe.errors.DatasetError` for unreadable files."""
    from .comm import Comm
    from .io.types import empty_frame

    data = {"path": path}
    if format is not None:
        data["format"] = format
    if key is not None:
        data["key"] = key
    try:
        inp = _Validator(None).input(data, check_paths=True)
    except SpecError as exc:  # name the command's arguments, not spec keys
        names = {"input.path": "PATH", "input.format": "--format", "input.key": "--key"}
        raise SpecError(names.get(exc.key, exc.key), exc.detail, exc.value) from None
    frame = open_input(inp)
    src = frame.node.scan().source
    schema = src.schema()
    parts = src.discover(Comm())
    meta = empty_frame(schema)
    hive = list(getattr(src, "_hive_types", {}) or {})
    columns = []
    for f in schema:
        lo, hi, nulls = _column_stats(parts, f.name)
        if f.name in hive and parts:
            values = [p.hive.get(f.name) for p in parts]
            known = [v for v in values if v is not None]
            lo, hi = (min(known), max(known)) if known else (None, None)
        columns.append({"name": f.name, "arrow": str(f.type), "pandas": str(meta[f.name].dtype),
                        "min": lo, "max": hi, "nulls": nulls})
    return {
        "path": path, "format": inp.format, "key": inp.key,
        "files": len({p.path for p in parts}),
        "partitions": [{"path": p.path, "piece": p.piece, "rows": p.num_rows,
                        "bytes": p.nbytes} for p in parts],
        "rows": sum(p.num_rows for p in parts), "bytes": sum(p.nbytes for p in parts),
        "hive": hive, "columns": columns,
    }


def _column_stats(parts, name):
    lo = hi = None
    nulls = 0
    for p in parts:
        s = p.stats.get(name)
        if s is None:
            return None, None, None
        try:
            if s.min is not None:
                lo = s.min if lo is None else min(lo, s.min)
            if s.max is not None:
                hi = s.max if hi is None else max(hi, s.max)
        except TypeError:
            return None, None, None
        nulls = None if nulls is None or s.null_count is None else nulls + s.null_count
    return lo, hi, nulls


def format_info(info: dict, partitions: bool = False) -> str:
    """``dataset_info(...)`` as the text ``hpcframe info`` prints."""
    parts = info["partitions"]
    kind = "row groups" if info["format"] == "parquet" else "row ranges"
    lines = [
        f"path        {info['path']}",
        f"format      {info['format']}" + (f" (key {info['key']})" if info.get("key") else ""),
        f"files       {info['files']:,}",
        f"partitions  {len(parts):,} ({kind})",
        f"rows        {info['rows']:,}",
        f"bytes       {_bytes(info['bytes'])}",
        f"columns     {len(info['columns'])}",
        f"hive        {', '.join(info['hive']) if info['hive'] else '-'}",
        "",
    ]
    head = ("column", "arrow type", "pandas dtype", "nulls", "min", "max")
    rows = [(c["name"] + (" (hive)" if c["name"] in info["hive"] else ""), c["arrow"],
             c["pandas"], "-" if c["nulls"] is None else f"{c['nulls']:,}",
             _compact(c["min"]), _compact(c["max"])) for c in info["columns"]]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if partitions:
        lines += ["", "partitions:"]
        for i, p in enumerate(parts):
            lines.append(f"  {i:>4}  {p['path']} [{p['piece']}]  {p['rows']:,} rows  "
                         f"{_bytes(p['bytes'])}")
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _compact(v, width: int = 22) -> str:
    import datetime

    if v is None:
        return "-"
    if isinstance(v, float):
        text = f"{v:.6g}"
    elif isinstance(v, (datetime.datetime, datetime.date)):
        text = v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v.isoformat()
    elif isinstance(v, bytes):
        text = v.decode("utf-8", "replace")
    else:
        text = str(v)
    return text if len(text) <= width else text[:width - 3] + "..."
