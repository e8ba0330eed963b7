"""Turning what a user passes (a file, a directory, a glob, a list) into an ordered file list.

**Order.** A directory is read in the order of the files' paths relative to it, sorted as
strings (Unicode code points, ``/`` between folders), whatever their depth:
``root/B/q.parquet``, ``root/a-b/y.parquet``, ``root/a.parquet``, ``root/a/x.parquet``,
``root/z.parquet``. This is the order of ``pyarrow.dataset.dataset(root).files`` and so of
``pandas.read_parquet(root)``; it decides the row order of ``compute()``, ``head()`` and
first/last. A glob is read in the sorted order of the matching paths; a list in the order given.
Parquet, HDF5 and CSV discovery share this code.

**Which files.** Directories are searched recursively for names ending in one of the format's
suffixes (case-insensitive), skipping files and folders whose name starts with ``_`` or ``.``
(``_SUCCESS``, ``_metadata``, ``.crc``, temporary and staging files), as pyarrow does.
Symbolic links to regular files are followed (the link's name and place count for order and
hive values); symbolic links to directories are not descended into.

**Only regular files.** A FIFO, socket or device with a data-file name would block (a FIFO) or
misbehave when opened, so every candidate is checked with ``stat`` *before* anything opens it:
such a file, or a broken symbolic link, is refused with a :class:`NotARegularFileError` naming
it, whether it was found in a directory, matched by a glob or named directly.
"""

from __future__ import annotations

import glob
import os
import stat
from urllib.parse import unquote

from ..errors import DatasetError

_GLOB_CHARS = set("*?[")


class NotARegularFileError(DatasetError, OSError):
    """A path of a dataset that is not a regular file (a FIFO, socket, device, or a broken
    symbolic link): refused before it is opened."""


def expand_paths(
    path: str | os.PathLike | list | tuple, suffixes: tuple[str, ...], what: str
) -> tuple[list[str], str | None]:
    """Return ``(files, root)``: the data files named by ``path`` in a stable order (see the
    module docstring), and the directory hive partition values are read relative to (``None``
    for plain files and lists).

    Raises ``FileNotFoundError`` naming the path when nothing matches, and
    :class:`NotARegularFileError` when a candidate is not a regular file.
    """
    if isinstance(path, (list, tuple)):
        files: list[str] = []
        for p in path:
            files.extend(expand_paths(p, suffixes, what)[0])
        if not files:
            raise FileNotFoundError(f"no {what} files given (the list is empty)")
        return files, None
    path = os.fspath(path)
    if any(ch in path for ch in _GLOB_CHARS) and not os.path.lexists(path):
        files = sorted(
            p for p in glob.glob(path, recursive=True) if not os.path.isdir(p) and check_regular_file(p, what)
        )
        if not files:
            raise FileNotFoundError(f"no file matches the pattern {path!r}")
        return files, _glob_root(path)
    # one stat decides what the path is: a directory published (renamed into place) between
    # two separate checks must not be taken for a file that is "a directory"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            check_regular_file(path, what)  # raises: a broken symbolic link
        raise FileNotFoundError(f"{what} path {path!r} does not exist") from None
    if stat.S_ISDIR(mode):
        found = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
            for name in filenames:
                if name.startswith(("_", ".")) or not name.lower().endswith(suffixes):
                    continue
                full = os.path.join(dirpath, name)
                check_regular_file(full, what)
                found.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
        if not found:
            raise FileNotFoundError(
                f"directory {path!r} contains no {what} files (looked for names ending in "
                f"{', '.join(suffixes)})"
            )
        return [full for _, full in sorted(found)], path
    _refuse_unless_regular(path, mode, what)
    return [path], None


def check_regular_file(path: str, what: str) -> bool:
    """True when ``path`` is a regular file (following symbolic links); raises
    :class:`NotARegularFileError` naming it otherwise. Never opens the file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise NotARegularFileError(
                f"{path} is a broken symbolic link (to {os.readlink(path)!r}); fix or remove "
                f"it from the {what} dataset"
            ) from None
        raise
    _refuse_unless_regular(path, mode, what)
    return True


def _refuse_unless_regular(path: str, mode: int, what: str) -> None:
    """Raise :class:`NotARegularFileError` naming ``path`` unless ``mode`` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a directory"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    raise NotARegularFileError(
        f"{path} is {kind}, not a regular {what} file; it is refused without being opened "
        f"(reading it could block). Remove it from the dataset, or name the data files "
        f"explicitly"
    )


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
