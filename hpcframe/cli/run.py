"""``hpcframe info PATH`` and ``hpcframe run SPEC``: parse, call :mod:`hpcframe.spec`, print.

The library returns data (:func:`hpcframe.spec.dataset_info` a dict,
:func:`hpcframe.spec.run_job` a :class:`~hpcframe.spec.RunSummary`); how it reads on a
terminal is decided here (:func:`format_info`, :func:`format_summary`).
"""

from __future__ import annotations

import json

import click

from .common import CONTEXT, EXIT_CODES, handle_errors, rank


@click.command(context_settings=CONTEXT, epilog=EXIT_CODES)
@click.argument("path")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "hdf5", "csv"]),
    help="Input format (default: from the file names).",
)
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
    from ..spec import dataset_info

    if rank() != 0:  # under mpiexec: rank 0 answers, the others have nothing to do
        return
    result = dataset_info(path, fmt, key)
    if as_json:
        click.echo(json.dumps(result, default=str, indent=2))
    else:
        click.echo(format_info(result, partitions=show_parts))


@click.command(context_settings=CONTEXT, epilog=EXIT_CODES)
@click.argument("spec", metavar="SPEC")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help='Override a spec key (dotted path), e.g. --set filter="x > 0" --set options.sort=false. Repeatable.',
)
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="Write here instead of the spec's output (format from the extension).",
)
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--explain",
    "--dry-run",
    "explain",
    is_flag=True,
    help="Show the physical plan (stages, columns read, pushed filters, partitions per rank) "
    "and stop; reads only metadata.",
)
@click.option(
    "--progress",
    is_flag=True,
    help="Show progress across all ranks on rank 0 while the job runs (a bar in a "
    "terminal, periodic lines in a batch log).",
)
@click.option(
    "--profile-dir",
    metavar="DIR",
    help="Record a performance record (task and resource timings) of the run into DIR "
    "(Parquet + JSON); `hpcframe report DIR` turns it into an HTML/PNG report. Not a "
    "cluster profile (that is `hpcframe submit --cluster-profile`).",
)
# --cache-dir (issue 14)
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="Keep every block's partial results in DIR (shared by the ranks and by later jobs): "
    "a re-run reads only new or changed files. See `hpcframe cache info|clear DIR`.",
)
@handle_errors
def run(
    spec: str,
    overrides: tuple[str, ...],
    output: str | None,
    overwrite: bool | None,
    quiet: bool,
    as_json: bool,
    explain: bool,
    progress: bool,
    profile_dir: str | None,
    cache_dir: str | None = None,
) -> None:
    """Run the job spec SPEC (YAML): read, filter, group, aggregate, write.

    Under mpiexec/srun every rank runs it; rank 0 writes the output (atomically) and prints.
    See docs/jobs-specs.md for the format.

    \b
    Examples:
      hpcframe run configs/examples/flights_by_day.yaml
      mpiexec -n 4 hpcframe run job.yaml
      hpcframe run job.yaml --set filter="carrier == 'UA'" --output ua.parquet --overwrite
      hpcframe run job.yaml --dry-run      # the plan only (same as --explain)
      mpiexec -n 8 hpcframe run job.yaml --progress --profile-dir runs/today
      hpcframe run daily.yaml --cache-dir cache/   # tomorrow: reads only the new file
    """
    from ..comm import world_interrupt_guard
    from ..diagnostics import profiling
    from ..spec import explain_job, run_job

    if explain:
        text = explain_job(spec, overrides)
        if rank() == 0:
            click.echo(text)
        return
    with world_interrupt_guard(), _caching(cache_dir), profiling(profile_dir, progress):
        # (world_interrupt_guard: a SIGINT to one rank stops every rank)
        summary = run_job(spec, overrides, output=output, overwrite=overwrite)
    if summary.rank != 0:
        return
    if summary.result is not None and not as_json:
        click.echo(format_result(summary.result))
    if as_json:
        fields = {k: v for k, v in vars(summary).items() if k not in ("result", "rank")}
        click.echo(json.dumps(fields))
    elif not quiet:
        click.echo(format_summary(summary, cached=cache_dir is not None))


# --cache-dir (issue 14)
def _caching(cache_dir: str | None):
    """The ``hf.Cache`` of ``--cache-dir`` (a no-op without one)."""
    import contextlib

    if cache_dir is None:
        return contextlib.nullcontext()
    from ..cache import Cache

    try:
        return Cache(dir=cache_dir)
    except OSError as exc:
        raise click.UsageError(
            f"cannot use the cache directory {cache_dir!r}: {exc.strerror or exc}; "
            "pass a writable --cache-dir"
        ) from None


def format_result(table) -> str:
    """A result table (a ``pandas.DataFrame``) as printed by ``hpcframe run`` (60 rows)."""
    import pandas as pd

    with pd.option_context("display.max_rows", 60, "display.width", 120):
        return table.to_string(max_rows=60)


def format_summary(summary, cached: bool = False) -> str:
    """A :class:`~hpcframe.spec.RunSummary` as a few human-readable lines (``cached``: a cache
    was used: also say how many blocks it served)."""
    s = summary
    total = f"{s.rows_total:,}" if s.rows_total is not None else "?"
    lines = [
        f"rows in:  {total} ({s.rows_read:,} read; {s.partitions_pruned} of "
        f"{s.partitions} block(s) skipped by statistics)",
        f"rows out: {s.rows_out:,}" if s.rows_out is not None else "rows out: ?",
        f"output:   {s.output} ({s.format})" if s.output else "output:   (none: printed above)",
        f"seconds:  {s.seconds:.2f} on {s.ranks} rank(s)",
    ]
    # blocks not read because a cache held their partials
    read = getattr(s, "partitions_read", None)
    if cached and read is not None:
        lines.insert(1, f"blocks:   {read} read, {s.partitions - s.partitions_pruned - read} from the cache")
    return "\n".join(lines)


def format_info(info: dict, partitions: bool = False) -> str:
    """``dataset_info(...)`` as the text ``hpcframe info`` prints."""
    parts = info["partitions"]
    kind = "row groups" if info["format"] == "parquet" else "row ranges"
    lines = [
        f"path        {info['path']}",
        f"format      {info['format']}" + (f" (key {info['key']})" if info.get("key") else ""),
        f"files       {info['files']:,}",
        f"partitions  {len(parts):,} ({kind})",
        f"rows        {info['rows']:,}",
        f"bytes       {_bytes(info['bytes'])}",
        f"columns     {len(info['columns'])}",
        f"hive        {', '.join(info['hive']) if info['hive'] else '-'}",
        "",
    ]
    head = ("column", "arrow type", "pandas dtype", "nulls", "min", "max")
    rows = [
        (
            c["name"] + (" (hive)" if c["name"] in info["hive"] else ""),
            c["arrow"],
            c["pandas"],
            "-" if c["nulls"] is None else f"{c['nulls']:,}",
            _compact(c["min"]),
            _compact(c["max"]),
        )
        for c in info["columns"]
    ]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if partitions:
        lines += ["", "partitions:"]
        for i, p in enumerate(parts):
            lines.append(f"  {i:>4}  {p['path']} [{p['piece']}]  {p['rows']:,} rows  {_bytes(p['bytes'])}")
    return "\n".join(lines)


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _compact(v, width: int = 22) -> str:
    import datetime

    if v is None:
        return "-"
    if isinstance(v, float):
        text = f"{v:.6g}"
    elif isinstance(v, (datetime.datetime, datetime.date)):
        text = v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v.isoformat()
    elif isinstance(v, bytes):
        text = v.decode("utf-8", "replace")
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 3] + "..."
