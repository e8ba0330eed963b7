"""The ``hpcframe`` command line: the only package that imports click.

Commands parse their arguments, call the library, print, and map errors to exit codes (see
:mod:`hpcframe.cli.common`). One module per command group:

- :mod:`~hpcframe.cli.run`: ``info`` and ``run`` (job specs, :mod:`hpcframe.spec`);
- :mod:`~hpcframe.cli.convert`: ``convert`` (:mod:`hpcframe.convert`);
- :mod:`~hpcframe.cli.jobs`: ``submit``, ``status``, ``logs``, ``cancel``, ``jobs``, ``wait``
  (:mod:`hpcframe.jobs`);
- :mod:`~hpcframe.cli.report`: ``report`` (:mod:`hpcframe.diagnostics`);
- :mod:`~hpcframe.cli.profiles`: ``profiles`` (cluster profiles, :mod:`hpcframe.jobs.profiles`);
- :mod:`~hpcframe.cli.cache`: ``cache info``, ``cache clear`` (:mod:`hpcframe.cache`).

Commands are loaded lazily (click's "lazily loading subcommands"): ``hpcframe --version``
imports no command module, ``hpcframe run ...`` only :mod:`~hpcframe.cli.run`, and no command
module imports pandas, pyarrow or mpi4py before its command runs. To add a command, add one
line to :data:`COMMANDS`.

``python -m hpcframe.cli ARGS`` is the same as ``hpcframe ARGS``.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__
from .common import CONTEXT, EXIT_CODES, Failure, handle_errors

__all__ = ["main", "Failure", "handle_errors", "COMMANDS"]

COMMANDS: dict[str, str] = {
    # command name -> "module:attribute" of its click command, imported when the command is used
    # (or listed by --help). One line per command; keep each part's lines in its marked region.
    "info": "hpcframe.cli.run:info",
    "run": "hpcframe.cli.run:run",
    "convert": "hpcframe.cli.convert:convert_command",
    "report": "hpcframe.cli.report:report",
    # batch-job commands (hpcframe/cli/jobs.py)
    "submit": "hpcframe.cli.jobs:submit",
    "status": "hpcframe.cli.jobs:status",
    "logs": "hpcframe.cli.jobs:logs",
    "cancel": "hpcframe.cli.jobs:cancel",
    "jobs": "hpcframe.cli.jobs:jobs",
    "wait": "hpcframe.cli.jobs:wait_cmd",
    "profiles": "hpcframe.cli.profiles:profiles",
    "cache": "hpcframe.cli.cache:cache",
}


class LazyGroup(click.Group):
    """A click group whose commands (``name -> "module:attribute"``) are imported on first use.

    Parameters
    ----------
    lazy_commands : dict of str to str
        The commands, as :data:`COMMANDS`. Commands added with ``add_command`` work as usual.
    """

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands if lazy_commands is not None else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, without importing any command module."""
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module the first time."""
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        target = self.lazy_commands[cmd_name]
        module, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        if not isinstance(cmd, click.Command):  # a wrong line in COMMANDS: a bug, not a user error
            raise TypeError(f"hpcframe.cli.COMMANDS[{cmd_name!r}] = {target!r} is not a click command")
        return cmd


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings=CONTEXT, epilog=EXIT_CODES)
@click.version_option(__version__, "-V", "--version", prog_name="hpcframe", message="%(prog)s %(version)s")
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
