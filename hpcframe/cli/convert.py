"""``hpcframe convert SRC DST --to parquet|hdf5|csv``: parse the options, call
:func:`hpcframe.convert.convert` (or :func:`hpcframe.convert.plan` for ``--dry-run``), print,
and map errors to exit codes.
"""

from __future__ import annotations

import click

from ..convert import FORMATS, check_compression, convert, open_source, parse_size, plan
from .common import Failure, handle_errors


def summary_text(s: dict) -> str:
    """One human line per fact of a conversion summary (a write that had nothing left to
    do says so instead of reporting bytes it did not write)."""
    state = s.get("state", "written")
    if state in ("complete", "published"):
        head = (
            f"nothing to do: {s['path']} is already complete"
            if state == "complete"
            else f"published {s['path']}, which an earlier, interrupted run had finished"
        )
        when = f", written {s['written']}" if s.get("written") else ""
        return f"{head} ({s['rows']:,} rows in {s['files']} file(s){when})"
    secs = max(s["seconds"], 1e-9)
    mb_in, mb_out = s["bytes_in"] / 1e6, s["bytes_out"] / 1e6
    return "\n".join(
        [
            f"wrote {s['path']}: {s['rows']:,} rows in {s['files']} file(s) "
            f"({s['leaves'] - s['skipped']} part(s) written, {s['skipped']} already done)",
            f"read {mb_in:,.1f} MB, wrote {mb_out:,.1f} MB in {secs:.2f} s on {s['ranks']} rank(s):"
            f" {mb_in / secs:,.1f} MB/s, {mb_in / secs / s['ranks']:,.1f} MB/s per rank",
        ]
    )


def plan_text(p: dict, to: str, dst: str) -> str:
    """The ``--dry-run`` text of :func:`hpcframe.convert.plan`'s result."""
    lines = [
        f"convert {p['source']} ({p['files']} file(s), {p['partitions']} partition(s), "
        f"~{p['rows']:,} rows, {p['bytes'] / 1e6:.1f} MB) -> {to} {dst}",
        f"{sum(map(len, p['ranks']))} output part(s) over {len(p['ranks'])} rank(s):",
    ]
    for r, parts in enumerate(p["ranks"]):
        if not parts:
            lines.append(f"  rank {r}: idle")
            continue
        lines.append(f"  rank {r}: {len(parts)} part(s), ~{sum(n for _, n, _ in parts):,} rows")
        for what, _, name in parts:
            lines.append(f"    {what} -> {name}")
    return "\n".join(lines)


def _split_list(ctx, param, value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _dtypes(ctx, param, values):
    out = {}
    for v in values:
        if "=" not in v:
            raise click.BadParameter(f"{v!r}: write COLUMN=TYPE, e.g. --dtype Carrier=str")
        k, t = v.split("=", 1)
        out[k.strip()] = t.strip()
    return out or None


def _size(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("convert")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--to", "to", type=click.Choice(FORMATS), default="parquet", show_default=True, help="Output format."
)
@click.option(
    "--partition-by", callback=_split_list, help="Comma-separated columns for hive folders (parquet, csv)."
)
@click.option(
    "--compression",
    default=None,
    help="Parquet: zstd (default), snappy, gzip, brotli, lz4, none. HDF5: gzip "
    "(default), lzf, none. Not for csv.",
)
@click.option(
    "--row-group-size", type=int, default=1 << 20, show_default=True, help="Rows per Parquet row group."
)
@click.option(
    "--sep",
    default=None,
    callback=lambda ctx, param, value: "\t" if value == "\\t" else value,
    help="CSV field separator, one character (default ','; '\\t' for a tab).",
)
@click.option(
    "--dtype",
    multiple=True,
    callback=_dtypes,
    metavar="COLUMN=TYPE",
    help="CSV column type (repeatable), e.g. --dtype Carrier=category.",
)
@click.option("--parse-dates", callback=_split_list, help="CSV columns to parse as dates.")
@click.option("--usecols", callback=_split_list, help="CSV columns to keep.")
@click.option(
    "--on-bad-lines",
    type=click.Choice(["error", "skip", "warn"]),
    default="error",
    show_default=True,
    help="What to do with CSV lines that do not fit.",
)
@click.option(
    "--chunk-bytes",
    callback=_size,
    default=None,
    help="CSV partition size, e.g. 64MB (bounds each rank's memory).",
)
@click.option("--overwrite", is_flag=True, help="Replace a dataset hpcframe wrote before.")
@click.option("--dry-run", is_flag=True, help="Show the plan (partitions -> ranks -> files).")
@click.option("--progress", is_flag=True, help="Print partitions done / total on rank 0.")
def convert_command(
    src,
    dst,
    to,
    partition_by,
    compression,
    row_group_size,
    sep,
    dtype,
    parse_dates,
    usecols,
    on_bad_lines,
    chunk_bytes,
    overwrite,
    dry_run,
    progress,
):
    """Convert SRC (CSV files, plain or .gz/.bz2/.xz/.zst; Parquet; HDF5; a glob in quotes)
    into DST. Run under mpiexec to use several ranks; re-run after a failure to resume."""
    handle_errors(_convert_body)(
        src,
        dst,
        to,
        partition_by,
        compression,
        row_group_size,
        sep,
        dtype,
        parse_dates,
        usecols,
        on_bad_lines,
        chunk_bytes,
        overwrite,
        dry_run,
        progress,
    )


def _convert_body(
    src,
    dst,
    to,
    partition_by,
    compression,
    row_group_size,
    sep,
    dtype,
    parse_dates,
    usecols,
    on_bad_lines,
    chunk_bytes,
    overwrite,
    dry_run,
    progress,
):
    """The command body; errors become exit codes: 2 for usage (bad options, an existing
    destination), 1 for a failed run (see ``hpcframe --help``)."""
    from ..comm import communicator
    from ..errors import ComputeError, HpcframeError, JobCheckpointed

    try:
        check_compression(to, compression)
        if partition_by and to == "hdf5":
            raise ValueError("--partition-by is only for --to parquet or csv (HDF5 output is one table)")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    csv_options = {
        k: v
        for k, v in dict(
            sep=sep, dtype=dtype, parse_dates=parse_dates, usecols=usecols, chunk_bytes=chunk_bytes
        ).items()
        if v is not None
    }
    if on_bad_lines != "error":
        csv_options["on_bad_lines"] = on_bad_lines
    try:
        with communicator() as comm:
            if dry_run:
                frame = open_source(src, comm, **csv_options)
                text = plan_text(plan(frame, to, comm.size, comm), to, dst)
                if comm.rank == 0:
                    click.echo(text)
                return
            summary = convert(
                src,
                dst,
                to,
                partition_by,
                comm=comm,
                overwrite=overwrite,
                progress=progress,
                compression=compression,
                row_group_size=row_group_size,
                **csv_options,
            )
            if comm.rank == 0:
                click.echo(summary_text(summary))
    except FileExistsError as exc:  # the destination holds something: a usage error
        raise Failure(str(exc), 2, exc) from exc
    except JobCheckpointed as exc:  # stopped on a signal, parts kept: exit 75
        raise Failure(
            f"hpcframe convert checkpointed; re-run the same command to resume:\n{exc}", 75, exc
        ) from exc
    except ComputeError as exc:
        raise Failure(f"hpcframe convert failed; re-run the same command to resume:\n{exc}", 1, exc) from exc
    except HpcframeError:
        raise  # handle_errors: 1 (2 for a bad query/column)
    except ValueError as exc:  # bad CSV options (dtype, separator...) found while opening
        data = type(exc).__module__.startswith("pyarrow")  # unreadable data: the run failed
        raise Failure(str(exc), 1 if data else 2, exc) from exc
