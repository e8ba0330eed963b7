"""``hpcframe report DIR``: the run report of a profile directory (:mod:`hpcframe.diagnostics`)."""

from __future__ import annotations

import os

import click


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--png", is_flag=True, help="Also write DIR/report.png (matplotlib) for terminals and job e-mails."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the HTML report (default DIR/report.html).",
)
def report(directory, png, output):
    """Write DIRECTORY/report.html from a profile directory made by
    `hpcframe run ... --profile-dir DIRECTORY`, and print the bottleneck."""
    from ..diagnostics.report import summarize, write_html, write_png
    from ..diagnostics.store import load

    try:
        profile = load(directory)
    except (FileNotFoundError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    html_path = output or os.path.join(directory, "report.html")
    folder = os.path.dirname(os.path.abspath(html_path))
    if not os.path.isdir(folder):
        raise click.UsageError(
            f"cannot write {html_path!r}: the folder {folder!r} does not "
            f"exist; create it first or choose another -o/--output"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.UsageError(
            f"cannot write {html_path!r}: the folder {folder!r} is not writable; choose another -o/--output"
        )
    try:
        write_html(profile, html_path)
    except OSError as exc:
        raise click.ClickException(f"cannot write {html_path!r}: {exc}") from None
    click.echo(f"wrote {html_path}")
    if png:
        png_path = os.path.splitext(html_path)[0] + ".png"
        try:
            write_png(profile, png_path)
        except OSError as exc:
            raise click.ClickException(f"cannot write {png_path!r}: {exc}") from None
        click.echo(f"wrote {png_path}")
    s = summarize(profile)
    click.echo(f"{s['ranks']} rank(s), wall {s['wall']:.2f} s")
    click.echo(f"bottleneck: {s['bottleneck']}")
