"""Turning what a user passes (a file, a directory, a glob, a list) into an ordered file list."""
from __future__ import annotations

import glob
import os
from typing import Iterable
from urllib.parse import unquote

_GLOB_CHARS = set("*?[")


def expand_paths(path: "str | os.PathLike | Iterable", suffixes: tuple[str, ...],
                 what: str) -> tuple[list[str], str | None]:
    """Return ``(files, root)``: the data files named by ``path`` in a stable order, and the
    directory hive partition values are read relative to (``None`` for plain files).

    Directories are searched recursively for files ending in ``suffixes``, skipping names that
    start with ``_`` or ``.`` (``_SUCCESS``, ``_metadata``, temporary files).
    Raises ``FileNotFoundError`` naming the path when nothing matches.
    """
    if isinstance(path, (list, tuple)):
        files: list[str] = []
        for p in path:
            files.extend(expand_paths(p, suffixes, what)[0])
        if not files:
            raise FileNotFoundError(f"no {what} files given (the list is empty)")
        return files, None
    path = os.fspath(path)
    if any(ch in path for ch in _GLOB_CHARS) and not os.path.exists(path):
        files = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not files:
            raise FileNotFoundError(f"no file matches the pattern {path!r}")
        return files, _glob_root(path)
    if os.path.isdir(path):
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
            for name in sorted(filenames):
                if name.startswith(("_", ".")):
                    continue
                if name.lower().endswith(suffixes):
                    files.append(os.path.join(dirpath, name))
        if not files:
            raise FileNotFoundError(
                f"directory {path!r} contains no {what} files (looked for names ending in "
                f"{', '.join(suffixes)})")
        return files, path
    if os.path.isfile(path):
        return [path], None
    raise FileNotFoundError(f"{what} path {path!r} does not exist")


def _glob_root(pattern: str) -> str | None:
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts:
        if any(ch in part for ch in _GLOB_CHARS):
            break
        fixed.append(part)
    root = os.sep.join(fixed)
    return root if root and os.path.isdir(root) else None


def hive_values(file: str, root: str | None) -> dict[str, str]:
    """``{"year": "2013", "month": "1"}`` for ``root/year=2013/month=1/part.parquet``."""
    if root is None:
        return {}
    rel = os.path.relpath(os.path.dirname(file), root)
    out = {}
    for part in rel.split(os.sep):
        if "=" in part:
            k, v = part.split("=", 1)
            # writers percent-encode values (pyarrow: "New York" -> New%20York)
            out[unquote(k)] = v if v == "__HIVE_DEFAULT_PARTITION__" else unquote(v)
    return out
