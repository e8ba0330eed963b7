"""Exceptions raised by hpcframe. All derive from :class:`HpcframeError`."""

from __future__ import annotations

import difflib
from typing import ClassVar


class HpcframeError(Exception):
    """Base class of every error hpcframe raises on purpose.

    Catch it to handle any of hpcframe's own errors; other exceptions (``FileNotFoundError``,
    ``TypeError``, ...) keep their Python type.

    Examples
    --------
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> frame = hf.from_pandas(pd.DataFrame({"dep_delay": [1.0, 2.0]}))
    >>> try:
    ...     frame["arr_delay"]
    ... except hf.HpcframeError as exc:
    ...     print(type(exc).__name__)
    ColumnNotFoundError
    """

    #: The exit code of a command that this error ends (see :func:`exit_code`): 1, the run
    #: failed; subclasses for wrong input (job spec, query, column) say 2, interruptions 130.
    exit_code: ClassVar[int] = 1


class DatasetError(HpcframeError):
    """A dataset cannot be found, read, or its files disagree. The message names the path.

    Raised while a dataset is discovered (``read_*``) or, inside a computation, as part of a
    :class:`DatasetComputeError`.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import hpcframe as hf
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.parquet")
    >>> with open(path, "w") as fh:
    ...     _ = fh.write("not Parquet")
    >>> try:
    ...     hf.read_parquet(path)
    ... except hf.DatasetError as exc:
    ...     print("is not a readable Parquet file" in str(exc))
    True
    """


class ComputeError(HpcframeError):
    """A rank failed while running a query. Raised on *every* rank of the communicator.

    Parameters
    ----------
    message : str
        The whole report: one entry per failed rank with its host, the partition it was
        processing and the original error.
    failures : iterable of tuple, optional
        ``(rank, host, partition, message)`` for each rank that failed.

    Attributes
    ----------
    failures : list of tuple
        ``(rank, host, partition, message)`` for each rank that failed.

    Examples
    --------
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> def check(block):
    ...     raise ValueError("bad block")
    >>> frame = hf.from_pandas(pd.DataFrame({"x": [1, 2]}))
    >>> try:
    ...     frame.map_partitions(check).compute()
    ... except hf.ComputeError as exc:
    ...     rank, host, partition, message = exc.failures[0]
    ...     print(rank, message.splitlines()[0])
    0 ValueError: bad block
    """

    def __init__(self, message: str, failures=()):
        super().__init__(message)
        self.failures = list(failures)


class JobInterrupted(ComputeError, KeyboardInterrupt):
    """A rank was interrupted (SIGINT, ``KeyboardInterrupt``) during a computation.

    Raised on *every* rank, like :class:`ComputeError`, after the ranks agreed; it is also a
    ``KeyboardInterrupt``, so a script stops on every rank unless it catches it. Takes the
    same parameters and has the same ``failures`` attribute as :class:`ComputeError`.

    Examples
    --------
    >>> import hpcframe as hf
    >>> issubclass(hf.JobInterrupted, hf.ComputeError), issubclass(hf.JobInterrupted, KeyboardInterrupt)
    (True, True)
    """

    exit_code = 130


# the agreed stop on a checkpoint signal (issue 13 item 7)
#: The exit code of a run that stopped on a checkpoint signal (SIGUSR1/SIGTERM of a batch job):
#: ``EX_TEMPFAIL`` of sysexits.h, "try again". The job script requeues the job on it.
CHECKPOINT_EXIT = 75


class JobCheckpointed(ComputeError):
    """Every rank stopped at a block boundary because a checkpoint signal arrived (SIGUSR1 or
    SIGTERM of a batch job; see ``HPCFRAME_CHECKPOINT_SIGNALS`` and docs/jobs.md).

    Raised on *every* rank, like :class:`ComputeError`, after the ranks agreed. Finished work
    is kept (a conversion's written parts, the partials in the checkpoint directory), so running
    the same command again resumes it. Its exit code is :data:`CHECKPOINT_EXIT` (75): the job
    script requeues the job on that code.

    Examples
    --------
    >>> import hpcframe.errors as E
    >>> issubclass(E.JobCheckpointed, E.ComputeError), E.exit_code(E.JobCheckpointed("stop"))
    (True, 75)
    """

    exit_code = CHECKPOINT_EXIT


class ColumnNotFoundError(KeyError, HpcframeError):
    """A column name that the data does not have; the message suggests close names.

    Also a ``KeyError``, as pandas raises for a missing column.

    Parameters
    ----------
    name : hashable
        The column asked for.
    available : sequence
        The columns there are (the first 20 are listed in the message).
    where : str, default "the data"
        What was searched, for the message (e.g. ``"the frame"``).

    Attributes
    ----------
    name : hashable
        The column asked for.
    message : str
        The message, also given by ``str()``.

    Examples
    --------
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> frame = hf.from_pandas(pd.DataFrame({"dep_delay": [1.0]}))
    >>> try:
    ...     frame["dep_dealy"]
    ... except hf.ColumnNotFoundError as exc:
    ...     print(exc)
    column 'dep_dealy' not found in the frame. Did you mean 'dep_delay'? Available columns: 'dep_delay'
    """

    exit_code = 2

    def __init__(self, name, available, where: str = "the data"):
        self.name = name
        close = difflib.get_close_matches(str(name), [str(a) for a in available], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        cols = ", ".join(repr(a) for a in list(available)[:20])
        more = " ..." if len(available) > 20 else ""
        self.message = f"column {name!r} not found in {where}.{hint} Available columns: {cols}{more}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError quotes its argument; show the sentence plainly
        return self.message


class DatasetComputeError(ComputeError, DatasetError):
    """A :class:`ComputeError` whose failing ranks all hit a :class:`DatasetError`.

    A bad or unreadable file found while computing (not while discovering the dataset):
    catchable as either. Takes the same parameters as :class:`ComputeError`.

    Examples
    --------
    Discovery reads the first file only; the broken second one fails the computation:

    >>> import os
    >>> import tempfile
    >>> import pandas as pd
    >>> import hpcframe as hf
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame({"x": [1, 2]}).to_parquet(os.path.join(folder, "part-0.parquet"))
    >>> with open(os.path.join(folder, "part-1.parquet"), "w") as fh:
    ...     _ = fh.write("not Parquet")
    >>> try:
    ...     hf.read_parquet(folder).x.sum().compute()
    ... except hf.DatasetError as exc:
    ...     print(type(exc).__name__, "part-1.parquet" in str(exc))
    DatasetComputeError True
    """


def exit_code(exc: BaseException) -> int:
    """The exit code of a command (``hpcframe run``, a batch job's ranks) that ``exc`` ends.

    Parameters
    ----------
    exc : BaseException
        The exception that ended the command.

    Returns
    -------
    int
        2 when the input is wrong (an invalid job spec, query or column), 130 when the run
        was interrupted (:class:`JobInterrupted`, ``KeyboardInterrupt``), 1 when it failed
        (unreadable data, a failed rank, an output that could not be written, anything else).
        For hpcframe's errors this is the class's ``exit_code``.

    Examples
    --------
    >>> from hpcframe.errors import ColumnNotFoundError, ComputeError, exit_code
    >>> exit_code(ColumnNotFoundError("x", ["y"])), exit_code(ComputeError("rank 1 failed"))
    (2, 1)
    >>> exit_code(KeyboardInterrupt()), exit_code(OSError("disk full"))
    (130, 1)
    """
    if isinstance(exc, HpcframeError):
        return exc.exit_code
    return 130 if isinstance(exc, KeyboardInterrupt) else 1
