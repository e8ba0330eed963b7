"""Writing a result table atomically: Parquet, HDF5 (h5py) or CSV.

The table is written to a temporary file in the target's directory, flushed and fsync'ed,
then moved into place in one step (``os.link`` when the target must not be replaced, else
``os.replace``). Readers never see a half-written file, a failed write leaves nothing behind,
and an existing output is replaced only when ``overwrite=True``. A full disk is an
``OSError(ENOSPC)`` naming the output. Parquet pages carry CRC checksums.

HDF5 output is a group (``/data``) of equal-length 1-D datasets, one per column, encoded as
:mod:`hpcframe.io.hdf5codec` says (the codec ``to_hdf`` uses and ``read_hdf`` reads back).
"""

from __future__ import annotations

import errno
import os
import tempfile

from .formats import FORMATS as _REGISTRY
from .formats import format_of
from .fs import disk_full, fsync, fsync_dir, remove_file
from .hdf5codec import GROUP, encode_pandas

#: Output file suffixes by format (from the registry, :mod:`hpcframe.io.formats`).
FORMATS = {name: fmt.suffixes for name, fmt in _REGISTRY.items()}
HDF5_GROUP = GROUP


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for."""


def check_writable(path: str, overwrite: bool = False) -> None:
    """Raise before any work is done if ``path`` cannot be written: :class:`OutputExistsError`
    when it exists (and ``overwrite`` is false) or is a directory, ``FileNotFoundError`` when
    its directory is missing, ``PermissionError`` when the directory is not writable."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputExistsError(
            f"output {path!r} is a directory; name a file, e.g. {os.path.join(path, 'result.parquet')!r}"
        )
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(
            f"output {path!r} exists already; choose another path, remove "
            "it, or allow replacing it (overwrite: true in the spec, "
            "--overwrite on the command line)"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"the directory of output {path!r} does not exist: create {directory!r} first"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write output {path!r}: directory {directory!r} is not writable")


def write_table(df, path: str, fmt: str | None = None, overwrite: bool = False) -> str:
    """Write the pandas DataFrame ``df`` (its columns; the index is not written: reset it
    first) to ``path`` atomically; return the path.

    ``fmt`` is ``"parquet"``, ``"hdf5"`` or ``"csv"`` (default: from the extension). Raises
    ``ValueError`` for an unknown format, :class:`OutputExistsError` when ``path`` exists and
    not ``overwrite``, and whatever the writer raises (after removing the temporary file)."""
    path = os.fspath(path)
    check_writable(path, overwrite)
    fmt = fmt or format_of(path)
    if fmt not in FORMATS:
        raise ValueError(
            f"cannot tell the output format of {path!r}: use a name ending in "
            f".parquet, .h5 or .csv, or give the format (parquet, hdf5, csv)"
        )
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        _WRITERS[fmt](df, tmp, path)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600: give it the usual mode
        fsync(tmp)
        _move(tmp, path, overwrite)
    except OSError as exc:
        remove_file(tmp)
        if disk_full(exc):
            raise OSError(
                exc.errno if exc.errno in (errno.ENOSPC, errno.EDQUOT) else errno.ENOSPC,
                f"no space left on the device (or quota exceeded) "
                f"while writing output {path}; free some space and run again "
                f"(nothing was written)",
                path,
            ) from exc
        raise
    except BaseException:
        remove_file(tmp)
        raise
    fsync_dir(directory)
    return path


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move(tmp: str, path: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:  # fails if the target appeared meanwhile: never replace a file by accident
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(
            f"output {path!r} was created by someone else while this job "
            "ran; nothing was replaced (the result was not written)"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.exists(path):  # a file system without hard links: check, then rename
            raise OutputExistsError(f"output {path!r} exists already") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _write_parquet(df, tmp: str, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, tmp, write_page_checksum=True)  # readers can detect corrupt pages


def _write_csv(df, tmp: str, path: str) -> None:
    compression = "infer"
    lower = path.lower()
    for suffix, kind in ((".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd"), (".xz", "xz")):
        if lower.endswith(suffix):
            compression = kind
    sep = "\t" if lower.endswith(".tsv") else ","
    df.to_csv(tmp, index=False, sep=sep, compression=compression)


def _write_hdf5(df, tmp: str, path: str, group: str = HDF5_GROUP) -> None:
    import h5py

    with h5py.File(tmp, "w", track_order=True) as f:
        g = f.create_group(group, track_order=True)  # columns read back in written order
        for name in df.columns:
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(
                    f"cannot write column {name!r} to HDF5: column names must be "
                    "non-empty strings without '/'"
                )
            data, attrs = encode_pandas(df[name], name)
            ds = g.create_dataset(name, data=data)
            for k, v in attrs.items():
                ds.attrs[k] = v


_WRITERS = {"parquet": _write_parquet, "csv": _write_csv, "hdf5": _write_hdf5}
