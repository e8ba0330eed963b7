"""The ``hpcframe`` command line: the only package that imports click.

Commands parse their arguments, call the library, print, and map errors to exit codes (see
:mod:`hpcframe.cli.common`). One module per command group:

- :mod:`~hpcframe.cli.run`: ``info`` and ``run`` (job specs, :mod:`hpcframe.spec`);
- :mod:`~hpcframe.cli.convert`: ``convert`` (:mod:`hpcframe.convert`);
- :mod:`~hpcframe.cli.jobs`: ``submit``, ``status``, ``logs``, ``cancel`` (:mod:`hpcframe.jobs`);
- :mod:`~hpcframe.cli.report`: ``report`` (:mod:`hpcframe.diagnostics`);
- :mod:`~hpcframe.cli.cache`: ``cache info``, ``cache clear`` (:mod:`hpcframe.cache`).

``python -m hpcframe.cli ARGS`` is the same as ``hpcframe ARGS``.
"""

from __future__ import annotations

import click

from .. import __version__
from .common import CONTEXT, EXIT_CODES, Failure, handle_errors
from .convert import convert_command
from .jobs import COMMANDS as JOB_COMMANDS
from .report import report
from .run import info, run

__all__ = ["main", "Failure", "handle_errors"]


@click.group(context_settings=CONTEXT, epilog=EXIT_CODES)
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


main.add_command(info, "info")
main.add_command(run, "run")
for _cmd in JOB_COMMANDS:
    main.add_command(_cmd)
main.add_command(report, "report")
main.add_command(convert_command, "convert")
# -- CACHE: hpcframe cache info|clear (issue 14) --
from .cache import cache as _cache_group  # noqa: E402

main.add_command(_cache_group, "cache")
# -- end CACHE --
