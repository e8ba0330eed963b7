"""The ``read_*`` entry points: a lazy :class:`~hpcframe.Frame` over a data source.

Each builds a source from :mod:`hpcframe.io` and puts a :class:`~hpcframe.plan.Scan` over it;
nothing but metadata (a footer, a header, a sample) is read until a computation runs. The
sources are imported when used, so that ``import hpcframe`` stays light (h5py only with
:func:`read_hdf`).
"""

from __future__ import annotations

import os

from .frame import Frame
from .io.formats import HDF5
from .plan import Scan


def frame_of(source) -> Frame:
    """A lazy frame over all columns of ``source`` (any object of the source protocol)."""
    from .io.types import empty_frame

    return Frame(Scan(source, empty_frame(source.schema())))


def read_parquet(path, columns=None, hive: bool = True) -> Frame:
    """A lazy frame over Parquet data.

    Parameters
    ----------
    path : str, os.PathLike or list
        A file, a directory (searched recursively), a glob pattern, or a list of files.
    columns : list of str, optional
        The columns to keep (all by default).
    hive : bool, default True
        ``key=value`` folders become columns.

    Returns
    -------
    Frame
        Lazy; only the footers of the first file are read now.

    Raises
    ------
    FileNotFoundError
        When nothing matches ``path``.
    DatasetError
        When the first file is not Parquet.

    Examples
    --------
    >>> flights = hf.read_parquet("data/flights/", columns=["carrier", "dep_delay"])  # doctest: +SKIP
    """
    from .io.parquet import ParquetSource

    frame = frame_of(ParquetSource(path, hive=hive))
    return frame[list(columns)] if columns is not None else frame


def read_hdf(path, key: str | None = None, columns=None) -> Frame:
    """A lazy frame over HDF5 data (h5py).

    The object read is a group of equal-length 1-D column datasets, a compound dataset, or a
    table written by ``pandas.DataFrame.to_hdf(format="table")``.

    Parameters
    ----------
    path : str, os.PathLike or list
        A file, a glob pattern or a list of files.
    key : str, optional
        The object inside the files.
    columns : list of str, optional
        The columns to keep (all by default).

    Returns
    -------
    Frame
        Lazy; only metadata of the first file is read now.

    Raises
    ------
    FileNotFoundError
        When nothing matches ``path``.
    DatasetError
        When a file is not HDF5 or holds no table at ``key``.

    Examples
    --------
    >>> flights = hf.read_hdf("flights.h5", key="flights")  # doctest: +SKIP
    >>> delays = hf.read_hdf("runs/*.h5", key="flights", columns=["carrier", "dep_delay"])  # doctest: +SKIP
    """
    from .io.hdf5 import HDF5Source
    from .io.paths import expand_paths

    files, _ = expand_paths(path, HDF5.read_suffixes, "HDF5")
    frame = frame_of(HDF5Source(files, key=key, label=_given(path)))
    return frame[list(columns)] if columns is not None else frame


def _given(path):
    """The path the user passed, as text (for messages), or None for a list."""
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else None


def from_pandas(df, npartitions: int = 1) -> Frame:
    """A lazy frame over an in-memory pandas DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
        The data; under MPI every rank must hold the same frame (as in an SPMD script).
    npartitions : int, default 1
        The number of row ranges it is split into.

    Returns
    -------
    Frame
        Lazy.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA", "DL"], "dep_delay": [5.0, 12.0, -3.0, 7.0]})
    >>> flights = hf.from_pandas(df, npartitions=2)
    >>> list(flights.columns)
    ['carrier', 'dep_delay']
    >>> flights.groupby("carrier").dep_delay.mean().compute()
    carrier
    AA     1.0
    DL     7.0
    UA    12.0
    Name: dep_delay, dtype: float64
    """
    from .io.memory import PandasSource

    return frame_of(PandasSource(df, npartitions))


def read_csv(
    path,
    dtype=None,
    parse_dates=None,
    usecols=None,
    on_bad_lines="error",
    sample_rows: int = 10_000,
    chunk_bytes: int | None = None,
    comm=None,
    **options,
) -> Frame:
    """A lazy frame over CSV files: plain or compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``).

    Parameters
    ----------
    path : str, os.PathLike or list
        A file, a directory, a glob pattern or a list of files.
    dtype : dict, optional
        ``{column: dtype}`` overrides the inferred types (numpy dtype names, ``"str"``,
        ``"category"``, ``"datetime64[us]"`` or pyarrow types).
    parse_dates : list of str, optional
        Columns parsed as timestamps (``date_format=`` for non-ISO formats).
    usecols : list of str, optional
        The columns to keep.
    on_bad_lines : {"error", "skip", "warn"}
        ``"error"``: a :class:`DatasetError` naming file and line; ``"skip"``/``"warn"``:
        drop the line (with a warning).
    sample_rows : int, default 10000
        Rows per file read to infer the types.
    chunk_bytes : int, optional
        Target size of one partition (bounds the memory of a rank; default 64 MiB).
    comm : mpi4py communicator or hpcframe Comm, optional
        The ranks that share the type sample: each samples some of the files and the types
        are exchanged (one ``allgather``), so every rank gets the same schema without
        decompressing every sample file itself. By default, in a process started by an MPI
        launcher, the world communicator: then ``read_csv`` is collective, like
        :meth:`Frame.compute` — every rank calls it with the same arguments. Pass
        ``mpi4py.MPI.COMM_SELF`` to sample alone (e.g. a frame built on one rank only).
    **options
        ``sep``, ``header`` (0 or None), ``names``, ``quotechar``, ``escapechar``,
        ``doublequote``, ``na_values``, ``keep_default_na``, ``true_values``,
        ``false_values``, ``encoding``, ``skip_blank_lines``, ``newlines_in_values`` (quoted
        line breaks: files are then streamed, not split).

    Returns
    -------
    Frame
        Lazy; only a sample of the first files is read now.

    Raises
    ------
    FileNotFoundError
        When nothing matches.
    DatasetError
        When a file cannot be parsed or headers differ.
    TypeError, ValueError
        For unknown or invalid options.

    Examples
    --------
    >>> flights = hf.read_csv("data/flights/*.csv.gz", parse_dates=["date"])  # doctest: +SKIP
    >>> flights = hf.read_csv("flights.psv", sep="|", dtype={"carrier": "category"})  # doctest: +SKIP
    """
    from .io.csv import CSVSource

    source = CSVSource(
        path,
        dtype=dtype,
        parse_dates=parse_dates,
        usecols=usecols,
        on_bad_lines=on_bad_lines,
        sample_rows=sample_rows,
        chunk_bytes=chunk_bytes,
        **options,
    )
    # the type sample spread over the ranks of the job (issue 11)
    from .comm import launched_by_mpi

    if comm is not None or launched_by_mpi():
        from .comm import communicator

        with communicator(comm) as c:
            if c.size > 1:  # Arrow's threads shared by the ranks of a node, as in compute()
                from .execute import _share_cores

                _share_cores(c)
            source.infer_schema(c)
    return frame_of(source)
