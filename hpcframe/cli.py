"""The ``hpcframe`` command line: a thin layer over :mod:`hpcframe.spec`.

Commands parse their arguments, call the library, print, and map errors to exit codes:
0 success, 1 the run failed (data, computation, writing), 2 the command line or the job spec
is wrong. Errors are one line on stderr (plus one line per failing rank), with a traceback only
under ``--debug`` or ``HPCFRAME_DEBUG=1``. Under MPI only rank 0 prints.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback

import click

from . import __version__

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the run failed: unreadable data, a rank failed, the output could not be written
  2  usage error: bad option, invalid job spec or filter, unknown column, output exists
  130  interrupted (SIGINT / Ctrl-C on any rank: every rank stops)
\b
Set HPCFRAME_DEBUG=1 (or pass --debug) for Python tracebacks."""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    flag = bool(ctx and ctx.find_root().params.get("debug"))
    return flag or os.environ.get("HPCFRAME_DEBUG", "").strip() not in ("", "0", "false", "no")


def _rank() -> int:
    """This process's rank in COMM_WORLD (0 without MPI)."""
    from .comm import launched_by_mpi

    try:
        if not launched_by_mpi():
            return 0
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank()
    except Exception:  # noqa: BLE001 - a broken MPI shows up later, with a clear error
        return 0


class Failure(click.ClickException):
    """An error to print as one line (on rank 0) and exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1, cause: BaseException | None = None,
                 everywhere: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.cause = cause
        self.everywhere = everywhere  # print on every rank (a rank-local, unexpected error)
        self.debug = _debug()  # decided now: show() runs after the click context is gone

    def show(self, file=None) -> None:
        rank = _rank()
        if rank != 0 and not self.everywhere:
            return
        file = file or sys.stderr
        prefix = f"rank {rank}: " if rank != 0 else ""
        if self.cause is not None and self.debug:
            traceback.print_exception(type(self.cause), self.cause, self.cause.__traceback__,
                                      file=file)
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

    click.echo(f"rank {world.Get_rank()} on {socket.gethostname()}: Error: {why}; ending "
               f"all {world.Get_size()} ranks (MPI_Abort)", file=sys.stderr)
    sys.stderr.flush()
    world.Abort(130)


def handle_errors(fn):
    """Run a command body, turning library errors into :class:`Failure` with the exit code
    scripts rely on (see ``EXIT_CODES``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import ColumnNotFoundError, ComputeError, HpcframeError, JobInterrupted
        from .query import QueryError
        from .spec import SpecError

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except (SpecError, QueryError, ColumnNotFoundError) as exc:
            raise Failure(str(exc), 2, exc) from exc
        except JobInterrupted as exc:  # every rank knows: say so on every rank
            raise Failure(f"interrupted: {exc}", 130, exc, everywhere=True) from exc
        except ComputeError as exc:
            raise Failure(f"computation failed: {exc}", 1, exc) from exc
        except (HpcframeError, OSError) as exc:
            raise Failure(str(exc), 1, exc) from exc
        except KeyboardInterrupt:
            _abort_alone("interrupted (KeyboardInterrupt) outside a computation the ranks "
                         "share")
            raise Failure("interrupted", 130) from None
        except Exception as exc:  # noqa: BLE001 - an unexpected error: say so, briefly
            hint = "" if _debug() else " (rerun with --debug for the traceback)"
            raise Failure(f"unexpected {type(exc).__name__}: {exc}{hint}", 1, exc,
                          everywhere=True) from exc

    return wrapper


@click.group(context_settings=CONTEXT, epilog=EXIT_CODES)
@click.version_option(__version__, "-V", "--version", prog_name="hpcframe",
                      message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def main(debug: bool) -> None:
    """hpcframe: pandas analytics over partitioned Parquet/HDF5, across MPI ranks.

    \b
    Examples:
      hpcframe info data/flights/
      hpcframe run job.yaml
      mpiexec -n 4 hpcframe run job.yaml
      hpcframe run job.yaml --set filter="carrier == 'UA'" --output ua.parquet
    """


@main.command(context_settings=CONTEXT, epilog=EXIT_CODES)
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(["parquet", "hdf5"]),
              help="Input format (default: from the file names).")
@click.option("--key", help="HDF5: the table inside the files (default: the only one).")
@click.option("--partitions", "show_parts", is_flag=True, help="List every partition.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def info(path: str, fmt: str | None, key: str | None, show_parts: bool, as_json: bool) -> None:
    """Describe a dataset from its metadata only: columns (Arrow type and the pandas dtype
    they become), files, partitions, rows, bytes, min/max/null statistics, hive columns.

    PATH is a file, a directory (searched recursively; key=value folders are hive
    columns) or a glob pattern in quotes.

    \b
    Examples:
      hpcframe info data/flights/
      hpcframe info 'data/*.h5' --key trips
      hpcframe info data/flights/ --json | jq .rows
    """
    from .spec import dataset_info, format_info

    if _rank() != 0:  # under mpiexec: rank 0 answers, the others have nothing to do
        return
    result = dataset_info(path, fmt, key)
    if as_json:
        click.echo(json.dumps(result, default=str, indent=2))
    else:
        click.echo(format_info(result, partitions=show_parts))


@main.command(context_settings=CONTEXT, epilog=EXIT_CODES)
@click.argument("spec", metavar="SPEC")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key (dotted path), e.g. --set filter=\"x > 0\" "
                   "--set options.sort=false. Repeatable.")
@click.option("-o", "--output", metavar="PATH",
              help="Write here instead of the spec's output (format from the extension).")
@click.option("--overwrite", is_flag=True, default=None,
              help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--explain", is_flag=True,
              help="Show the plan (columns read, pushed filters, partitions per rank) and stop.")
@click.option("--progress", is_flag=True,
              help="Show progress across all ranks on rank 0 while the job runs (a bar in a "
                   "terminal, periodic lines in a batch log).")
@click.option("--profile-dir", metavar="DIR",
              help="Record task and resource profiles of the run into DIR (Parquet + JSON); "
                   "`hpcframe report DIR` turns them into an HTML/PNG report.")
@handle_errors
def run(spec: str, overrides: tuple[str, ...], output: str | None, overwrite: bool | None,
        quiet: bool, as_json: bool, explain: bool, progress: bool,
        profile_dir: str | None) -> None:
    """Run the job spec SPEC (YAML): read, filter, group, aggregate, write.

    Under mpiexec/srun every rank runs it; rank 0 writes the output (atomically) and prints.
    See docs/jobs-specs.md for the format.

    \b
    Examples:
      hpcframe run configs/examples/flights_by_day.yaml
      mpiexec -n 4 hpcframe run job.yaml
      hpcframe run job.yaml --set filter="carrier == 'UA'" --output ua.parquet --overwrite
      hpcframe run job.yaml --explain
      mpiexec -n 8 hpcframe run job.yaml --progress --profile-dir runs/today
    """
    from .comm import world_interrupt_guard
    from .diagnostics import profiling
    from .spec import explain_job, run_job

    if explain:
        text = explain_job(spec, overrides)
        if _rank() == 0:
            click.echo(text)
        return
    with world_interrupt_guard(), profiling(profile_dir, progress):  # SIGINT to one rank
        summary = run_job(spec, overrides, output=output, overwrite=overwrite)
    if summary.rank != 0:
        return
    if summary.result is not None and not as_json:
        import pandas as pd

        with pd.option_context("display.max_rows", 60, "display.width", 120):
            click.echo(summary.result.to_string(max_rows=60))
    if as_json:
        fields = {k: v for k, v in vars(summary).items() if k not in ("result", "rank")}
        click.echo(json.dumps(fields))
    elif not quiet:
        click.echo(summary.text())


def _register_job_commands() -> None:
    """Add ``submit``/``status``/``logs``/``cancel`` from :mod:`hpcframe.jobs.commands` when
    that module exists."""
    try:
        from .jobs import commands
    except ModuleNotFoundError as exc:
        if exc.name not in ("hpcframe.jobs", "hpcframe.jobs.commands"):
            raise
        return
    for name in ("submit", "status", "logs", "cancel"):
        cmd = getattr(commands, name, None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd, name)


_register_job_commands()


def _register_more() -> None:
    from .convert import convert_command
    from .diagnostics.cli import report

    main.add_command(report, "report")
    main.add_command(convert_command, "convert")


_register_more()


if __name__ == "__main__":  # pragma: no cover
    main()
