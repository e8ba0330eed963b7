"""``hpcframe profiles``: list, show and write *cluster profiles* (scheduler settings used by
``hpcframe submit --cluster-profile NAME``; unrelated to ``hpcframe run --profile-dir``, the
performance record). Exit codes: 0 success, 1 a scheduler command failed, 2 a usage error.
"""

from __future__ import annotations

import os
import sys

import click

from ..jobs import CommandError, JobError

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _list() -> None:
    from ..jobs.profiles import RENAMED, SHIPPED_DIR, list_profiles, renamed, search_dirs

    rows = list_profiles()
    shipped = os.path.realpath(SHIPPED_DIR)
    if not rows:
        click.echo("no cluster profiles found in " + ", ".join(search_dirs()))
        return
    click.echo(f"{'NAME':<16} {'SCHEDULER':<10} PATH")
    for name, path, shadowed in rows:
        sched = _scheduler_of(path)
        notes = []
        if os.path.dirname(os.path.realpath(path)) == shipped:
            notes.append("shipped")
        if renamed(name)[1]:
            notes.append(f"old name of {renamed(name)[0]}")
        if shadowed:
            notes.append(f"hidden by {shadowed}")
        note = f"  ({'; '.join(notes)})" if notes else ""
        click.echo(f"{name:<16} {sched:<10} {path}{note}")
    names = {n for n, _, _ in rows}
    for old, new in sorted(RENAMED.items()):
        if old not in names:
            click.echo(f"{old:<16} {'':<10} (old name of {new}: still works, with a message)")
    click.echo("\nsearched in order: " + ", ".join(search_dirs()), err=True)


def _scheduler_of(path: str) -> str:
    from ..jobs.profiles import _read_yaml

    try:
        raw = _read_yaml(path)
    except JobError:
        return "?(bad)"
    return str(raw.get("scheduler", "slurm")) if isinstance(raw, dict) else "?(bad)"


@click.group("profiles", context_settings=_CTX, invoke_without_command=True)
@click.pass_context
def profiles(ctx) -> None:
    """Cluster profiles: the scheduler settings `hpcframe submit --cluster-profile NAME` uses.

    (Not the performance record of `hpcframe run --profile-dir DIR`.) Without a subcommand:
    list them. Profiles are found in ./configs, ~/.config/hpcframe/profiles, $HPCFRAME_PROFILES
    and, last, those shipped with hpcframe (slurm, slurm-local, pbs, torque).

    \b
      hpcframe profiles
      hpcframe profiles show slurm-local
      hpcframe profiles init --name mycluster
    """
    if ctx.invoked_subcommand is None:
        _list()


@profiles.command("list", context_settings=_CTX)
def list_command() -> None:
    """List the cluster profiles found, in search order."""
    _list()


@profiles.command("show", context_settings=_CTX)
@click.argument("name")
@click.option(
    "--dask-config",
    type=click.Path(exists=True, dir_okay=False),
    help="Also merge jobqueue.slurm / jobqueue.pbs from this dask-jobqueue YAML file.",
)
def show(name, dask_config) -> None:
    """Show profile NAME (a name or a YAML path): every setting after merging, and where it came from."""
    from ..jobs.profiles import find_profile, renamed, resolve

    new, message = renamed(name)
    if message:
        click.echo(f"hpcframe: {message}", err=True)
    try:
        path = find_profile(new)
        params, sources = resolve(new, dask_config)
    except JobError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"# cluster profile {new}: {path}")
    for key in params.fields():
        value = getattr(params, key)
        if key == "array":
            continue
        shown = "(none)" if value is None or (isinstance(value, (list, dict)) and not value) else value
        if key == "launcher" and value is None:
            from ..jobs import scheduler_for

            shown = scheduler_for(params.scheduler).default_launcher
        click.echo(f"{key:<17} {str(shown):<32} {sources[key]}")


@profiles.command("init", context_settings=_CTX)
@click.option("--name", default="mycluster", show_default=True, help="The new profile's name.")
@click.option(
    "--output",
    "-o",
    help="Where to write it ('-' prints it). [default: ~/.config/hpcframe/profiles/NAME.yaml]",
)
@click.option(
    "--scheduler",
    type=click.Choice(["slurm", "pbs", "torque"]),
    help="Skip detection (sinfo on PATH: slurm; qstat: pbs or torque).",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init(name, output, scheduler, force) -> None:
    """Write a starting cluster profile from what `sinfo` (SLURM) or `qstat -Q` (PBS) report.

    Picks the default partition/queue, the cores of its nodes and a wall time within its
    limit; review the file, then `hpcframe submit job.yaml --cluster-profile NAME`.
    """
    from ..jobs.base import check_name
    from ..jobs.profiles import init_profile, write_profile

    try:
        check_name("profile name", name)
        text = init_profile(scheduler)
        if output == "-":
            click.echo(text, nl=False)
            return
        path = output or os.path.join(os.path.expanduser("~/.config/hpcframe/profiles"), f"{name}.yaml")
        path = write_profile(text, path, force=force)
    except JobError as exc:
        raise click.UsageError(str(exc)) from None
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(text, nl=False)
    shown = name if output is None else path
    click.echo(f"wrote {path}; try: hpcframe submit job.yaml --cluster-profile {shown} --dry-run", err=True)


COMMANDS = [profiles]
