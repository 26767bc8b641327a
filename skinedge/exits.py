"""The command line's exit statuses, the same for every command (README "Command line"), and its one way to stop
on an unusable model, file or setting."""

from __future__ import annotations

import click

from skinedge.errors import SkinedgeError

EXIT_FAILED_INPUTS = 1  # some inputs could not be classified (or selftest: outputs differ)
EXIT_UNUSABLE = 2  # model, labels, backend, file or setting unusable; also click's status for bad options
EXIT_INTERRUPTED = 130


def fail_unusable(error: SkinedgeError) -> None:
    """Print ``error`` and exit with the status of an unusable model, file or setting (2)."""
    click.echo(f"error: {error}", err=True)
    raise SystemExit(EXIT_UNUSABLE)
