"""Reading and validating a job spec: YAML (bounded, see :func:`load_yaml`) → ``--set``
overrides (:func:`apply_overrides`) → a :class:`JobSpec` (:func:`parse_spec`), or a
:class:`SpecError` naming the key, its value and what to do.
"""

from __future__ import annotations

import difflib
import os
import reprlib
from dataclasses import dataclass
from typing import Any, Literal, overload

from ..errors import HpcframeError
from ..io.formats import CSV, HDF5, PARQUET

PARQUET_SUFFIXES = PARQUET.suffixes  # from the format registry (hpcframe.io.formats)
HDF5_SUFFIXES = HDF5.suffixes
CSV_SUFFIXES = CSV.read_suffixes  # .csv, .tsv, .txt, .dat, each plain or compressed
INPUT_FORMATS = ("parquet", "hdf5", "csv")
OUTPUT_FORMATS = ("parquet", "hdf5", "csv")
TOP_KEYS = (
    "input",
    "filter",
    "assign",
    "groupby",
    "aggregate",
    "options",
    "subtotals",
    "output",
    "progress",
    "profile_dir",
)
INPUT_KEYS = ("path", "format", "key", "columns", "csv")
#: ``input.csv:`` keys, passed to :func:`hpcframe.read_csv` (which checks their values).
CSV_KEYS = (
    "sep",
    "header",
    "names",
    "dtype",
    "parse_dates",
    "date_format",
    "na_values",
    "keep_default_na",
    "true_values",
    "false_values",
    "quotechar",
    "escapechar",
    "doublequote",
    "encoding",
    "skip_blank_lines",
    "newlines_in_values",
    "on_bad_lines",
    "sample_rows",
    "chunk_bytes",
)
OUTPUT_KEYS = ("path", "format", "overwrite")
OPTION_KEYS = ("dropna", "sort")
NAMED_AGG_KEYS = ("column", "agg")
SUBTOTAL_AGGS = ("sum", "mean", "count", "min", "max", "var", "std")
# keys whose --set value is taken as text, never parsed as YAML
_TEXT_KEYS = (
    "filter",
    "input.path",
    "input.key",
    "input.format",
    "output.path",
    "output.format",
    "profile_dir",
)

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
        raise YAMLLimitError(
            "", f"the document is {len(text):,} characters long; the limit is {MAX_YAML_BYTES:,}"
        )
    # libyaml's parser, when present, is fast and refuses nesting deeper than 1,000 itself
    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except RecursionError:
        raise YAMLLimitError(
            "", f"lists or mappings are nested too deeply (the limit is {MAX_YAML_DEPTH} levels)"
        ) from None
    except ValueError as exc:  # an integer of more than 4,300 decimal digits
        raise YAMLLimitError(
            "",
            f"a value cannot be read: {_show(str(exc), 120)[1:-1]} "
            f"(integers must be below 2**{MAX_YAML_INT_BITS})",
        ) from None
    check_yaml_size(data)
    return data


def check_yaml_size(data) -> None:
    """Raise :class:`YAMLLimitError` naming the key if ``data`` (loaded YAML: dicts, lists and
    scalars, possibly sharing sub-objects through aliases) is over the limits of
    :func:`load_yaml`. Costs one visit per distinct object, never expands shared ones."""
    sizes: dict[int, int] = {}  # id -> size with aliases expanded (containers done)
    active: set[int] = set()  # containers on the current path (a cycle if met again)
    stack = [(data, "", 1, False)]
    while stack:
        obj, key, depth, done = stack.pop()
        if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj).bit_length() >= MAX_YAML_INT_BITS:
            raise YAMLLimitError(
                key,
                f"an integer of {abs(obj).bit_length()} bits is too "
                f"large; integers must be below 2**{MAX_YAML_INT_BITS}",
            )
        if not isinstance(obj, (dict, list, tuple, set)):
            continue
        oid = id(obj)
        if done:
            active.discard(oid)
            items = list(obj.items()) if isinstance(obj, dict) else [(None, v) for v in obj]
            total = 1 + sum((k is not None) + sizes.get(id(v), 1) for k, v in items)
            if total > MAX_YAML_VALUES:
                raise YAMLLimitError(
                    key,
                    f"holds {total:,} values or more once its aliases "
                    f"(*name) are expanded; the limit is {MAX_YAML_VALUES:,}: "
                    "write the values out, or use fewer aliases",
                )
            sizes[oid] = total
            continue
        if oid in sizes:
            continue
        if oid in active:
            raise YAMLLimitError(key, "refers to itself (a recursive YAML alias): write the value out")
        if depth > MAX_YAML_DEPTH:
            raise YAMLLimitError(key, f"lists or mappings are nested more than {MAX_YAML_DEPTH} levels deep")
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

    exit_code = 2  # a usage error (see hpcframe.errors.exit_code)

    def __init__(self, key: str, message: str, value: Any = None, source: str | None = None):
        self.key, self.value, self.source, self.detail = key, value, source, message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


@dataclass(frozen=True)
class InputSpec:
    """The ``input:`` of a job spec: where to read, in which format, which columns."""

    path: str
    format: str  # parquet | hdf5 | csv
    key: str | None = None
    columns: tuple[str, ...] | None = None
    csv: dict | None = None  # read_csv options (input.csv:), CSV input only


@dataclass(frozen=True)
class OutputSpec:
    """The ``output:`` of a job spec: where to write, in which format, whether to replace."""

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
    progress: bool = False  # progress: true -- as hpcframe run --progress
    profile_dir: str | None = None  # profile_dir: DIR -- as hpcframe run --profile-dir DIR


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
        raise SpecError(exc.key, f"job spec {path!r} is over a limit: {exc.detail}", None, path) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            "", f"job spec {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start})", path
        ) from None
    except FileNotFoundError:
        raise SpecError("", f"job spec {path!r} does not exist", path) from None
    except OSError as exc:
        raise SpecError("", f"cannot read job spec {path!r}: {exc.strerror or exc}", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            "", f"job spec {path!r} is not valid YAML{where}: {_show(str(problem), 200)[1:-1]}", path
        ) from None
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
        raise SpecError(
            "",
            f"a job spec must be a mapping of keys ({', '.join(TOP_KEYS)}), not {type(data).__name__}",
            data,
            source,
        )
    for item in overrides or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(
                "--set",
                f"{item!r} is not KEY=VALUE; e.g. --set "
                "filter=\"carrier == 'UA'\" or --set output.path=out.parquet",
                item,
            )
        value: Any  # the text as given, or what YAML makes of it
        if key in _TEXT_KEYS or key.startswith("assign."):
            value = raw
        else:
            try:
                value = load_yaml(raw) if raw.strip() else None
            except yaml.YAMLError:
                value = raw
            except YAMLLimitError as exc:
                raise SpecError(_join(key, exc.key), f"--set {key}=...: {exc.detail}", None, source) from None
        parts = key.split(".")
        target = data
        for i, part in enumerate(parts[:-1]):
            current = target.get(part)
            if isinstance(current, str) and part in ("input", "output"):
                current = {"path": current}  # shorthand "input: path" → mapping
            if current is None:
                current = {}
            if not isinstance(current, dict):
                raise SpecError(
                    ".".join(parts[: i + 1]),
                    f"--set {key}=...: this key holds {type(current).__name__}, not a mapping",
                    current,
                    source,
                )
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
        raise v.error("filter", 'must be a query string such as "dep_delay > 0"', flt)
    assign = v.assign(data.get("assign"))
    groupby = v.names("groupby", data.get("groupby"))
    options = v.mapping("options", data.get("options") or {}, OPTION_KEYS)
    dropna = v.boolean("options.dropna", options.get("dropna", True))
    sort = v.boolean("options.sort", options.get("sort", True))
    subtotals = v.boolean("subtotals", data.get("subtotals", False))
    aggs = v.aggregate(data.get("aggregate"), groupby)
    if groupby and not aggs:
        raise v.error(
            "aggregate",
            "groupby needs an aggregate: e.g. aggregate: {dep_delay: mean}",
            data.get("aggregate"),
        )
    if subtotals:
        v.subtotals(aggs, groupby, sort)
    output = v.output(data.get("output"))
    progress = v.boolean("progress", data.get("progress", False))
    profile_dir = v.text("profile_dir", data.get("profile_dir"))
    return JobSpec(
        inp, flt, assign, groupby, aggs, dropna, sort, subtotals, output, source, progress, profile_dir
    )


class _Validator:
    def __init__(self, source):
        self.source = source

    def error(self, key, message, value=None) -> SpecError:
        return SpecError(key, message, value, self.source)

    def mapping(self, key, value, allowed, required=()) -> dict:
        if not isinstance(value, dict):
            what = "the spec" if not key else key
            raise self.error(
                key, f"{what} must be a mapping with keys {', '.join(allowed)}; got {_show(value)}", value
            )
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1) if isinstance(k, str) else []
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise self.error(
                    _join(key, k),
                    f"unknown key.{hint} Valid keys{' of ' + key if key else ''}: {', '.join(allowed)}",
                    k,
                )
        for k in required:
            if value.get(k) is None:
                raise self.error(_join(key, k), "is required", None)
        return value

    def boolean(self, key, value) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_show(value)}", value)
        return value

    @overload
    def text(self, key, value, allow_none: Literal[False]) -> str: ...
    @overload
    def text(self, key, value, allow_none: bool = True) -> str | None: ...

    def text(self, key, value, allow_none: bool = True) -> str | None:
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
            raise self.error(
                key, f"must be a column name or a list of column names, got {_show(value)}", value
            )
        for i, name in enumerate(value):
            if not isinstance(name, str) or not name:
                raise self.error(f"{key}[{i}]", f"must be a column name, got {_show(name)}", name)
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
            raise self.error(
                "input.format", f"unknown format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}", fmt
            )
        key = self.text("input.key", value.get("key"))
        columns = value.get("columns")
        columns = self.names("input.columns", columns) if columns is not None else None
        csv = value.get("csv")
        if csv is not None:
            csv = dict(self.mapping("input.csv", csv, CSV_KEYS))
        if fmt is None:
            fmt = self._detect(path, check_paths)
        elif check_paths:
            self._exists(path, fmt)
        if key is not None and fmt != "hdf5":
            raise self.error(
                "input.key",
                "is only used with HDF5 input (it names the table inside the files); remove it",
                key,
            )
        if csv is not None and fmt != "csv":
            raise self.error(
                "input.csv", f"read_csv options are for CSV input, but the input is {fmt}; remove them", csv
            )
        return InputSpec(path, fmt, key, columns, csv)

    def _exists(self, path, fmt=None):
        from ..io.paths import expand_paths

        suffixes = {"parquet": PARQUET_SUFFIXES, "hdf5": HDF5_SUFFIXES, "csv": CSV_SUFFIXES}
        what = {"parquet": "Parquet", "hdf5": "HDF5", "csv": "CSV"}
        try:
            if fmt is not None:
                return expand_paths(path, suffixes[fmt], what[fmt])[0]
            return expand_paths(
                path, PARQUET_SUFFIXES + HDF5_SUFFIXES + CSV_SUFFIXES, "Parquet, HDF5 or CSV"
            )[0]
        except FileNotFoundError as exc:
            raise self.error(
                "input.path",
                f"{exc}; check the path (relative paths are "
                f"relative to the current directory, {os.getcwd()!r})",
                path,
            ) from None

    def _detect(self, path, check_paths) -> str:
        name = path.lower().rstrip("/*")
        for fmt, suffixes in (("parquet", PARQUET_SUFFIXES), ("hdf5", HDF5_SUFFIXES), ("csv", CSV_SUFFIXES)):
            if name.endswith(suffixes):
                if check_paths:
                    self._exists(path, fmt)
                return fmt
        if not check_paths:
            return "parquet"
        files = [f.lower() for f in self._exists(path)]
        # a folder: Parquet or HDF5 files decide over stray text files (a README.txt)
        for fmt, suffixes in (("parquet", PARQUET_SUFFIXES), ("hdf5", HDF5_SUFFIXES), ("csv", CSV_SUFFIXES)):
            if any(f.endswith(suffixes) for f in files):
                return fmt
        raise self.error(
            "input.format",
            f"cannot tell the format of {path!r}; add format: parquet, format: hdf5 or format: csv",
            path,
        )

    def assign(self, value) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            raise self.error(
                "assign",
                'must map new column names to expressions, e.g. assign: {gain: "dep_delay - arr_delay"}',
                value,
            )
        out = []
        for name, text in value.items():
            if not isinstance(name, str) or not name:
                raise self.error("assign", f"column names must be strings, got {_show(name)}", name)
            if isinstance(text, (int, float)) and not isinstance(text, bool):
                text = repr(text)
            self.text(f"assign.{name}", text, allow_none=False)
            out.append((name, text))
        return tuple(out)

    def aggregate(self, value, groupby) -> tuple[AggSpec, ...]:
        from ..aggregations import AGGREGATIONS

        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            raise self.error(
                "aggregate",
                "must be a mapping: {column: agg or [aggs]} or {output_name: {column: ..., agg: ...}}",
                value,
            )
        known = sorted(AGGREGATIONS) + ["size"]
        out = []
        for key, spec in value.items():
            where = f"aggregate.{key}"
            if not isinstance(key, str) or not key:
                raise self.error("aggregate", f"keys must be column or output names, got {_show(key)}", key)
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
                raise self.error(
                    where,
                    f"must be an aggregation name, a list of names, or "
                    f"{{column: ..., agg: ...}}; got {_show(spec)}",
                    spec,
                )
        seen: dict[str, str] = {}  # output name -> the key that produces it
        for a in out:
            if a.name in seen or a.name in groupby:
                other = seen.get(a.name, "groupby")
                raise self.error(
                    a.key,
                    f"output column {a.name!r} is also produced by "
                    f"{other}; use the named form {{column: ..., agg: ...}} "
                    "under another name",
                    a.name,
                )
            seen[a.name] = a.key
        return tuple(out)

    def _agg(self, key, value, known) -> str:
        if not isinstance(value, str) or value not in known:
            close = difflib.get_close_matches(value, known, n=1) if isinstance(value, str) else []
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise self.error(
                key, f"unknown aggregation {_show(value)}.{hint} Known: {', '.join(known)}", value
            )
        return value

    def subtotals(self, aggs, groupby, sort):
        if not groupby:
            raise self.error("subtotals", "needs groupby (totals are per level of the group keys)", True)
        if not sort:
            raise self.error(
                "subtotals", "needs options.sort: true (totals are placed after the rows they add up)", True
            )
        names = {a.agg for a in aggs}
        if len(names) != 1 or any(a.name != a.column for a in aggs):
            raise self.error(
                "subtotals",
                "needs one aggregation for all columns in the dict "
                "form, e.g. aggregate: {dep_delay: mean, arr_delay: mean}",
                True,
            )
        agg = names.pop()
        if agg not in SUBTOTAL_AGGS:
            raise self.error(
                "subtotals", f"does not support {agg!r}; use one of {', '.join(SUBTOTAL_AGGS)}", agg
            )

    def output(self, value) -> OutputSpec | None:
        from ..io.output import format_of

        if value is None:
            return None
        if isinstance(value, str):
            value = {"path": value}
        value = self.mapping("output", value, OUTPUT_KEYS, required=("path",))
        path = self.text("output.path", value["path"], allow_none=False)
        fmt = self.text("output.format", value.get("format"))
        if fmt is not None and fmt not in OUTPUT_FORMATS:
            raise self.error(
                "output.format", f"unknown format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}", fmt
            )
        fmt = fmt or format_of(path)
        if fmt is None:
            raise self.error(
                "output.path",
                f"cannot tell the format of {path!r} from its "
                "name: end it in .parquet, .h5 or .csv, or add output.format",
                path,
            )
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
        text = repr(value[: limit + 1])
    else:
        text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
