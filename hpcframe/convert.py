"""``hpcframe convert SRC DST --to parquet|hdf5|csv``: a dataset into another format, in
parallel, atomically and resumably (see :mod:`hpcframe.io.writers`).

:func:`convert` is the library function; :data:`convert_command` the click command the CLI
registers. Run it under ``mpiexec -n N`` to spread the work over N ranks.
"""
from __future__ import annotations

import os

import click

FORMATS = ("parquet", "hdf5", "csv")
#: The ``--compression`` values each ``--to`` format accepts (the first is the default).
COMPRESSIONS = {"parquet": ("zstd", "snappy", "gzip", "brotli", "lz4", "none"),
                "hdf5": ("gzip", "lzf", "none"), "csv": ()}


def check_compression(to: str, compression) -> str | None:
    """The codec to pass to the writer for ``--to to --compression compression`` (``None``
    for "none"; the format's default when ``compression`` is ``None``). Raises
    ``ValueError`` naming ``--compression`` and the accepted values otherwise."""
    allowed = COMPRESSIONS.get(to, ())
    if compression is None:
        return allowed[0] if allowed else None
    value = str(compression).strip().lower()
    if not allowed:
        raise ValueError(f"--compression {compression!r}: --to {to} output is not compressed; "
                         f"leave --compression out")
    if value not in allowed:
        raise ValueError(f"--compression {compression!r} is not supported with --to {to}; "
                         f"use one of {', '.join(allowed)}")
    return None if value == "none" else value


def open_source(src, **csv_options):
    """A lazy frame over ``src``: Parquet (``.parquet`` files or a folder of them), HDF5
    (``.h5``/``.hdf5``) or CSV (anything else, compressed or not). Raises
    ``FileNotFoundError`` when nothing matches."""
    import hpcframe as hf

    from .io.paths import expand_paths
    from .readers import read_csv

    first = src[0] if isinstance(src, (list, tuple)) else str(src)
    low = first.lower()
    if low.endswith((".parquet", ".parq", ".pq")) or (os.path.isdir(first) and _has(
            first, (".parquet", ".parq", ".pq"))):
        return hf.read_parquet(src)
    if low.endswith((".h5", ".hdf5", ".hdf")):
        files, _ = expand_paths(src, (".h5", ".hdf5", ".hdf"), "HDF5")
        return hf.read_hdf(files)
    return read_csv(src, **csv_options)


def _has(folder, suffixes) -> bool:
    for _, _, names in os.walk(folder):
        if any(n.lower().endswith(suffixes) for n in names):
            return True
    return False


def plan_text(frame, to: str, dst: str, ranks: int, comm=None) -> str:
    """The ``--dry-run`` plan: which partitions each rank reads and the files it writes.
    Reads only metadata (and a sample of CSV files). Collective under MPI."""
    from .comm import communicator
    from .execute import assign, leaves_of
    from .io.sources import known_partitions

    source = frame.node.scan().source
    with communicator(comm) as c:
        leaves = leaves_of(source, c)
    parts = known_partitions(source)
    lines = [f"convert {source.label} ({len({p.path for p in parts})} file(s), {len(parts)} "
             f"partition(s), ~{sum(p.num_rows for p in parts):,} rows, "
             f"{sum(p.nbytes for p in parts) / 1e6:.1f} MB) -> {to} {dst}",
             f"{len(leaves)} output part(s) over {ranks} rank(s):"]
    suffix = {"parquet": ".parquet", "hdf5": ".h5", "csv": ".csv"}[to]
    for r, (a, b) in enumerate(assign([leaf.num_rows for leaf in leaves], ranks)):
        if b <= a:
            lines.append(f"  rank {r}: idle")
            continue
        lines.append(f"  rank {r}: {b - a} part(s), ~{sum(l.num_rows for l in leaves[a:b]):,}"
                     f" rows")
        for leaf in leaves[a:b]:
            lines.append(f"    {leaf.describe()} -> part-{leaf.index:06d}{suffix}")
    return "\n".join(lines)


def convert(src, dst, to: str = "parquet", partition_by=None, comm=None, overwrite=False,
            progress=False, compression=None, row_group_size: int = 1 << 20,
            **csv_options) -> dict:
    """Convert ``src`` (see :func:`open_source`) into ``dst`` in format ``to``. Returns the
    summary of :func:`hpcframe.writing.write` (rows, files, bytes in/out, seconds, ranks).
    Collective under MPI. Raises ``ValueError`` for an unknown format, ``FileExistsError``
    when ``dst`` holds something else or another write into it is running
    (:class:`~hpcframe.io.writers.DestinationLockedError`), :class:`~hpcframe.ComputeError`
    when a rank fails (re-running resumes; so does re-running after a kill or a full disk)."""
    from . import writing
    from .io import writers as W

    if to not in FORMATS:
        raise ValueError(f"unknown output format {to!r}; use one of {', '.join(FORMATS)}")
    codec = check_compression(to, compression)
    if partition_by and to == "hdf5":
        raise ValueError("partition_by is only for --to parquet or csv (HDF5 output is one "
                         "table)")
    frame = open_source(src, **csv_options)
    if to == "parquet":
        fmt = W.ParquetFormat(dst, partition_by, row_group_size, codec or "none")
    elif to == "csv":
        fmt = W.CSVFormat(dst, partition_by)
    else:
        if partition_by:
            raise ValueError("partition_by is only for --to parquet or csv (HDF5 output is one "
                             "table)")
        fmt = W.HDF5Format(dst, codec)
    return writing.write(frame, fmt, comm=comm, overwrite=overwrite, progress=progress)


def summary_text(s: dict) -> str:
    """One human line per fact of a conversion summary (a write that had nothing left to
    do says so instead of reporting bytes it did not write)."""
    state = s.get("state", "written")
    if state in ("complete", "published"):
        head = (f"nothing to do: {s['path']} is already complete" if state == "complete" else
                f"published {s['path']}, which an earlier, interrupted run had finished")
        when = f", written {s['written']}" if s.get("written") else ""
        return f"{head} ({s['rows']:,} rows in {s['files']} file(s){when})"
    secs = max(s["seconds"], 1e-9)
    mb_in, mb_out = s["bytes_in"] / 1e6, s["bytes_out"] / 1e6
    return "\n".join([
        f"wrote {s['path']}: {s['rows']:,} rows in {s['files']} file(s) "
        f"({s['leaves'] - s['skipped']} part(s) written, {s['skipped']} already done)",
        f"read {mb_in:,.1f} MB, wrote {mb_out:,.1f} MB in {secs:.2f} s on {s['ranks']} rank(s):"
        f" {mb_in / secs:,.1f} MB/s, {mb_in / secs / s['ranks']:,.1f} MB/s per rank"])


def parse_size(text: str) -> int:
    """``"64MB"``, ``"4 MiB"``, ``"1g"``, ``"65536"`` → bytes; raises ``ValueError``."""
    from .units import parse_size as size

    return int(size(text))


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
@click.option("--to", "to", type=click.Choice(FORMATS), default="parquet", show_default=True,
              help="Output format.")
@click.option("--partition-by", callback=_split_list,
              help="Comma-separated columns for hive folders (parquet, csv).")
@click.option("--compression", default=None,
              help="Parquet: zstd (default), snappy, gzip, brotli, lz4, none. HDF5: gzip "
                   "(default), lzf, none. Not for csv.")
@click.option("--row-group-size", type=int, default=1 << 20, show_default=True,
              help="Rows per Parquet row group.")
@click.option("--sep", default=None, help="CSV field separator (default ',').")
@click.option("--dtype", multiple=True, callback=_dtypes, metavar="COLUMN=TYPE",
              help="CSV column type (repeatable), e.g. --dtype Carrier=category.")
@click.option("--parse-dates", callback=_split_list, help="CSV columns to parse as dates.")
@click.option("--usecols", callback=_split_list, help="CSV columns to keep.")
@click.option("--on-bad-lines", type=click.Choice(["error", "skip", "warn"]), default="error",
              show_default=True, help="What to do with CSV lines that do not fit.")
@click.option("--chunk-bytes", callback=_size, default=None,
              help="CSV partition size, e.g. 64MB (bounds each rank's memory).")
@click.option("--overwrite", is_flag=True, help="Replace a dataset hpcframe wrote before.")
@click.option("--dry-run", is_flag=True, help="Show the plan (partitions -> ranks -> files).")
@click.option("--progress", is_flag=True, help="Print partitions done / total on rank 0.")
def convert_command(src, dst, to, partition_by, compression, row_group_size, sep, dtype,
                    parse_dates, usecols, on_bad_lines, chunk_bytes, overwrite, dry_run,
                    progress):
    """Convert SRC (CSV files, plain or .gz/.bz2/.xz/.zst; Parquet; HDF5; a glob in quotes)
    into DST. Run under mpiexec to use several ranks; re-run after a failure to resume."""
    from .cli import handle_errors

    handle_errors(_convert_body)(src, dst, to, partition_by, compression, row_group_size, sep,
                                 dtype, parse_dates, usecols, on_bad_lines, chunk_bytes,
                                 overwrite, dry_run, progress)


def _convert_body(src, dst, to, partition_by, compression, row_group_size, sep, dtype,
                  parse_dates, usecols, on_bad_lines, chunk_bytes, overwrite, dry_run,
                  progress):
    """The command body; errors become exit codes: 2 for usage (bad options, an existing
    destination), 1 for a failed run (see ``hpcframe --help``)."""
    from .cli import Failure
    from .comm import communicator
    from .errors import ComputeError, HpcframeError

    try:
        check_compression(to, compression)
        if partition_by and to == "hdf5":
            raise ValueError("--partition-by is only for --to parquet or csv (HDF5 output is "
                             "one table)")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    csv_options = {k: v for k, v in dict(sep=sep, dtype=dtype, parse_dates=parse_dates,
                                         usecols=usecols, chunk_bytes=chunk_bytes).items()
                   if v is not None}
    if on_bad_lines != "error":
        csv_options["on_bad_lines"] = on_bad_lines
    try:
        with communicator() as comm:
            if dry_run:
                frame = open_source(src, **csv_options)
                text = plan_text(frame, to, dst, comm.size, comm)
                if comm.rank == 0:
                    click.echo(text)
                return
            summary = convert(src, dst, to, partition_by, comm=comm, overwrite=overwrite,
                              progress=progress, compression=compression,
                              row_group_size=row_group_size, **csv_options)
            if comm.rank == 0:
                click.echo(summary_text(summary))
    except FileExistsError as exc:  # the destination holds something: a usage error
        raise Failure(str(exc), 2, exc) from exc
    except ComputeError as exc:
        raise Failure(f"hpcframe convert failed; re-run the same command to resume:\n{exc}",
                      1, exc) from exc
    except HpcframeError:
        raise  # handle_errors: 1 (2 for a bad query/column)
    except ValueError as exc:  # bad CSV options (dtype, separator...) found while opening
        data = type(exc).__module__.startswith("pyarrow")  # unreadable data: the run failed
        raise Failure(str(exc), 1 if data else 2, exc) from exc


if __name__ == "__main__":  # python -m hpcframe.convert ... (same as ``hpcframe convert``)
    convert_command()
