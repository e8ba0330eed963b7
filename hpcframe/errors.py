"""Exceptions raised by hpcframe. All derive from :class:`HpcframeError`."""
from __future__ import annotations

import difflib


class HpcframeError(Exception):
    """Base class of every error hpcframe raises on purpose."""


class DatasetError(HpcframeError):
    """A dataset cannot be found, read, or its files disagree. The message names the path."""


class ComputeError(HpcframeError):
    """A rank failed while running a query. Raised on *every* rank of the communicator.

    ``failures`` lists ``(rank, host, partition, message)`` for each rank that failed.
    """

    def __init__(self, message: str, failures=()):
        super().__init__(message)
        self.failures = list(failures)


class JobInterrupted(ComputeError, KeyboardInterrupt):
    """A rank was interrupted (SIGINT, ``KeyboardInterrupt``) during a computation. Raised on
    *every* rank, like :class:`ComputeError`, after the ranks agreed; it is also a
    ``KeyboardInterrupt``, so a script stops on every rank unless it catches it."""


class ColumnNotFoundError(KeyError, HpcframeError):
    """A column name that the data does not have; the message suggests close names."""

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
    """A :class:`ComputeError` whose failing ranks all hit a :class:`DatasetError` (a bad or
    unreadable file): catchable as either."""
