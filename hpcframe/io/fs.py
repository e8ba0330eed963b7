"""File-system utilities of every writer: write beside, then rename into place; fsync; the
disk-full error that names the file.

A reader never sees a half-written file: :func:`replace_atomic` writes a temporary file next
to the target (created with ``O_EXCL | O_NOFOLLOW``, never through a link), fsyncs it and
renames it onto the target (the rename replaces a link instead of following it). A crash
leaves only a ``.<name>.<pid>.tmp`` file behind, which the next writer removes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def temporary_of(final: str) -> str:
    """The temporary name a write of ``final`` uses (``.<name>.<pid>.tmp`` beside it)."""
    return os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{os.getpid()}.tmp")


def replace_atomic(
    write: Callable[[str], None], final: str, before: Callable[[str], None] | None = None
) -> None:
    """``write(tmp_path)``, fsync, then rename onto ``final``. ``before(final)`` runs after
    the temporary file is created (the writers' fault-injection point). Raises the
    ``OSError`` of the write; a full disk as one that names ``final`` (:func:`named`)."""
    replace_all([(final, write)], before)


def replace_all(
    writes: Iterable[tuple[str, Callable[[str], None]]], before: Callable[[str], None] | None = None
) -> None:
    """Write every ``(final, write)`` to its temporary file first, then rename them all into
    place: a failure while writing leaves every target as it was. Raises as
    :func:`replace_atomic` does."""
    staged: list[tuple[str, str]] = []
    final = ""
    try:
        for final, write in writes:
            tmp = temporary_of(final)
            if os.path.lexists(tmp):
                os.unlink(tmp)  # left by a killed process with the same pid
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644))
            staged.append((tmp, final))
            if before is not None:
                before(final)
            write(tmp)
            fsync(tmp)
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as exc:
        raise named(exc, final) from exc
    finally:
        for tmp, _ in staged:
            if os.path.lexists(tmp):
                os.remove(tmp)


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (:func:`replace_atomic`); returns ``path``."""

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    replace_atomic(write, path)
    return path


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full."""
    return isinstance(exc, OSError) and (
        exc.errno in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in str(exc)
        or "quota exceeded" in str(exc).lower()
    )


def named(exc: OSError, path: str) -> OSError:
    """``exc`` as an error that names ``path`` and says what to do when the disk is full;
    other errors are returned unchanged."""
    if not disk_full(exc):
        return exc
    code = exc.errno if exc.errno in (errno.ENOSPC, errno.EDQUOT) else errno.ENOSPC
    return OSError(
        code,
        f"no space left on the device (or quota exceeded) while writing "
        f"{path}; free some space and re-run the same write to resume "
        f"(finished parts are kept)",
        path,
    )


def fsync(path: str) -> None:
    """Flush the file ``path`` to disk (never through a link)."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str) -> None:
    """Flush the folder ``directory`` (its new names) to disk, where the file system can."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    """Remove the file (or link) ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def process_state(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks since boot)`` of process ``pid`` from
    ``/proc/PID/stat``, or ``None`` where that cannot be read (not Linux, gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    # "pid (comm) state ..." where comm may hold spaces and parentheses: split after the last ")"
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """Process ``pid``'s start time in clock ticks since boot (``None`` off Linux)."""
    state = process_state(pid)
    return None if state is None else state[1]


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` of this host has ended: no such process, or a zombie (ended,
    not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    state = process_state(pid)
    return state is not None and state[0] in ("Z", "X")
