"""``hpcframe info``'s data: :func:`dataset_info` describes a dataset from its metadata only."""

from __future__ import annotations

from .build import open_input
from .validate import SpecError, _Validator


def dataset_info(path: str, format: str | None = None, key: str | None = None) -> dict:
    """What ``hpcframe info`` shows about a dataset, from metadata only (Parquet footers,
    HDF5 shapes): ``format``, ``files``, ``partitions`` (a list of dicts: path, piece, rows,
    bytes), ``rows``, ``bytes``, ``hive`` (hive column names) and ``columns`` (a list of
    dicts: name, arrow, pandas, min, max, nulls; statistics ``None`` where unknown). Raises
    :class:`SpecError` (key ``path``/``format``) for a missing path or an unknown format and
    :class:`~hpcframe.errors.DatasetError` for unreadable files."""
    from ..comm import Comm
    from ..io.types import empty_frame

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
    frame = open_input(inp, Comm())  # (serial: discovered below with a serial Comm too)
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
        columns.append(
            {
                "name": f.name,
                "arrow": str(f.type),
                "pandas": str(meta[f.name].dtype),
                "min": lo,
                "max": hi,
                "nulls": nulls,
            }
        )
    return {
        "path": path,
        "format": inp.format,
        "key": inp.key,
        "files": len({p.path for p in parts}),
        "partitions": [
            {"path": p.path, "piece": p.piece, "rows": p.num_rows, "bytes": p.nbytes} for p in parts
        ],
        "rows": sum(p.num_rows for p in parts),
        "bytes": sum(p.nbytes for p in parts),
        "hive": hive,
        "columns": columns,
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
