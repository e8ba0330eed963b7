"""What every ``hpcframe`` command shares: help settings, exit codes, and the mapping of
library errors to one-line messages and exit codes (:func:`handle_errors`).

Exit codes (from :func:`hpcframe.errors.exit_code`): 0 success, 1 the run failed (data,
computation, writing), 2 the command line or the job spec is wrong, 130 interrupted. Errors
are one line on stderr (plus one line per failing rank), with a traceback only under
``--debug`` or ``HPCFRAME_DEBUG=1``. Under MPI only rank 0 prints.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback

import click

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the run failed: unreadable data, a rank failed, the output could not be written
  2  usage error: bad option, invalid job spec or filter, unknown column, output exists
  130  interrupted (SIGINT / Ctrl-C on any rank: every rank stops)
\b
Set HPCFRAME_DEBUG=1 (or pass --debug) for Python tracebacks."""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def debug() -> bool:
    """Whether tracebacks are wanted: ``--debug`` on the root command or ``HPCFRAME_DEBUG``."""
    ctx = click.get_current_context(silent=True)
    flag = bool(ctx and ctx.find_root().params.get("debug"))
    return flag or os.environ.get("HPCFRAME_DEBUG", "").strip() not in ("", "0", "false", "no")


def rank() -> int:
    """This process's rank in COMM_WORLD (0 without MPI; see :func:`hpcframe.comm.world_rank`)."""
    from ..comm import world_rank

    return world_rank(start_mpi=True)


class Failure(click.ClickException):
    """An error to print as one line (on rank 0) and exit with ``exit_code``."""

    def __init__(
        self, message: str, exit_code: int = 1, cause: BaseException | None = None, everywhere: bool = False
    ):
        super().__init__(message)
        # click declares exit_code a ClassVar but reads it from the instance (e.exit_code),
        # so a code per instance works
        self.exit_code = exit_code  # type: ignore[misc]
        self.cause = cause
        self.everywhere = everywhere  # print on every rank (a rank-local, unexpected error)
        self.debug = debug()  # decided now: show() runs after the click context is gone

    def show(self, file=None) -> None:
        """Print the message (and, under ``--debug``, the cause's traceback) to ``file``."""
        me = rank()
        if me != 0 and not self.everywhere:
            return
        file = file or sys.stderr
        prefix = f"rank {me}: " if me != 0 else ""
        if self.cause is not None and self.debug:
            traceback.print_exception(type(self.cause), self.cause, self.cause.__traceback__, file=file)
        click.echo(f"{prefix}Error: {self.format_message()}", file=file)


def _abort_alone(why: str) -> None:
    """Under MPI with several ranks, end every rank (``MPI_Abort``, exit code 130) after
    printing ``why`` with this rank and host: an error the other ranks do not know about would
    leave them waiting forever in their next collective (or in ``MPI_Finalize``)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return
    world = mpi.COMM_WORLD
    if world.Get_size() == 1:
        return
    import socket

    click.echo(
        f"rank {world.Get_rank()} on {socket.gethostname()}: Error: {why}; ending "
        f"all {world.Get_size()} ranks (MPI_Abort)",
        file=sys.stderr,
    )
    sys.stderr.flush()
    world.Abort(130)


def handle_errors(fn):
    """Run a command body, turning library errors into :class:`Failure` with the exit code
    scripts rely on (see ``EXIT_CODES``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import ComputeError, HpcframeError, JobCheckpointed, JobInterrupted, exit_code

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except JobInterrupted as exc:  # every rank knows: say so on every rank
            raise Failure(f"interrupted: {exc}", exit_code(exc), exc, everywhere=True) from exc
        except JobCheckpointed as exc:  # every rank stopped on a signal: 75
            raise Failure(f"checkpointed: {exc}", exit_code(exc), exc) from exc
        except ComputeError as exc:
            raise Failure(f"computation failed: {exc}", exit_code(exc), exc) from exc
        except (HpcframeError, OSError) as exc:  # 2 for a wrong spec, query or column
            raise Failure(str(exc), exit_code(exc), exc) from exc
        except KeyboardInterrupt as exc:
            _abort_alone("interrupted (KeyboardInterrupt) outside a computation the ranks share")
            raise Failure("interrupted", exit_code(exc)) from None
        except Exception as exc:  # noqa: BLE001 - an unexpected error: say so, briefly
            hint = "" if debug() else " (rerun with --debug for the traceback)"
            raise Failure(
                f"unexpected {type(exc).__name__}: {exc}{hint}", exit_code(exc), exc, everywhere=True
            ) from exc

    return wrapper
