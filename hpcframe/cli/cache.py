"""``hpcframe cache info DIR`` and ``hpcframe cache clear DIR``: the on-disk partial store of
``hpcframe run --cache-dir DIR`` (:mod:`hpcframe.io.partials`, :mod:`hpcframe.cache`)."""

from __future__ import annotations

import json
import os
import re
import time

import click

from .common import CONTEXT, handle_errors

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.I)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds in an age like ``30d``, ``12h``, ``90m``, ``2w`` or ``3600`` (seconds).
    Raises ``click.BadParameter`` otherwise."""
    m = _AGE.match(str(text))
    if not m:
        raise click.BadParameter(
            f"{text!r} is not an age; write e.g. 30d, 12h, 90m or 2w", param_hint="--older-than"
        )
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


def _store(directory: str):
    from ..io.partials import _LAYOUT, PartialStore

    if not os.path.isdir(os.path.join(directory, _LAYOUT)):
        raise click.UsageError(
            f"{directory!r} is not a cache directory (no {_LAYOUT}/ in it): make one with "
            "`hpcframe run SPEC --cache-dir DIR` or hf.Cache(dir=DIR)"
        )
    return PartialStore(directory)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    age = max(0.0, time.time() - t)
    for unit, s in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= s:
            return f"{age / s:.1f}{unit} ago"
    return f"{age:.0f}s ago"


@click.group("cache", context_settings=CONTEXT)
def cache() -> None:
    """The on-disk cache of block partials (`hpcframe run --cache-dir DIR`).

    \b
    Examples:
      hpcframe cache info cache/
      hpcframe cache clear cache/ --older-than 30d
    """


@cache.command("info", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@handle_errors
def info(directory: str, as_json: bool) -> None:
    """Entries, bytes and last use of the cache in DIRECTORY."""
    found = _store(directory).info()
    if as_json:
        click.echo(json.dumps(found))
        return
    click.echo(
        f"directory  {found['directory']}\n"
        f"entries    {found['entries']:,}\n"
        f"bytes      {_size(found['bytes'])}\n"
        f"oldest     {_ago(found['oldest'])} (least recently used)\n"
        f"newest     {_ago(found['newest'])}"
    )


@cache.command("clear", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--older-than",
    metavar="AGE",
    default=None,
    help="Remove only entries not used for AGE (30d, 12h, 90m, 2w); default: every entry.",
)
@handle_errors
def clear(directory: str, older_than: str | None) -> None:
    """Remove the cache's entries (all, or those not used for --older-than AGE). Safe while
    jobs use the cache: they recompute what is gone."""
    age = parse_age(older_than) if older_than is not None else None
    removed, freed = _store(directory).clear(older_than=age)
    click.echo(f"removed {removed:,} entries ({_size(freed)}) from {directory}")
