"""The options ``skinedge serve`` takes for a kiosk (token, HTTPS, case log), their checks, the kiosk they build,
and the model store's active model: what the main command line needs at every start. The kiosk's own commands
(``skinedge cases``, ``service``, ``models``) are in :mod:`skinedge.kiosk.cli`, loaded only when one is run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from skinedge.errors import SkinedgeError
from skinedge.exits import fail_unusable

# -- options shared by serve and service install -------------------------------------------------------

FILE_PATH = click.Path(dir_okay=False, path_type=Path)
KIOSK_OPTIONS = (
    click.option("--token-file", type=FILE_PATH, default=None,
                 help="Require this token (Authorization: Bearer, or the page's sign-in) on every route but /healthz."),
    click.option("--certfile", type=FILE_PATH, default=None, help="Serve HTTPS with this PEM certificate."),
    click.option("--keyfile", type=FILE_PATH, default=None, help="The certificate's PEM private key."),
    click.option("--case-log", type=FILE_PATH, default=None,
                 help="Record every classification in this SQLite file (the answer carries case_id)."),
    click.option("--keep-photos", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Also keep each photo in this folder (mode 0700; needs --case-log)."),
    click.option("--retain-days", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Delete cases and photos older than this many days."),
    click.option("--insecure-no-auth", is_flag=True,
                 help="Allow listening beyond loopback without --token-file (anyone on the network can use it)."),
)


def kiosk_options(f: Callable) -> Callable:
    """Add the kiosk options to a command."""
    for option in reversed(KIOSK_OPTIONS):
        f = option(f)
    return f


def check_access_options(host: str, token_file: Path | None, certfile: Path | None, keyfile: Path | None,
                         case_log: Path | None, keep_photos: Path | None, retain_days: float | None,
                         insecure_no_auth: bool) -> None:
    """Refuse option combinations that make no sense or leave the kiosk open (click's usage errors, exit 2)."""
    from skinedge.serve.server import is_loopback

    if not is_loopback(host) and host != "localhost" and token_file is None and not insecure_no_auth:
        raise click.UsageError(f"--host {host} listens beyond this machine: give --token-file FILE (see "
                               "docs/kiosk.md), or --insecure-no-auth to serve anyone who can reach it")
    if keyfile is not None and certfile is None:
        raise click.UsageError("--keyfile needs --certfile")
    if (keep_photos is not None or retain_days is not None) and case_log is None:
        raise click.UsageError("--keep-photos and --retain-days need --case-log")


def build_kiosk(token_file: Path | None, certfile: Path | None, keyfile: Path | None, case_log: Path | None,
                keep_photos: Path | None, retain_days: float | None, labels: tuple[str, ...]) -> Any:
    """The :class:`skinedge.kiosk.web.Kiosk` for these options, or None when none is given.
    Raises :class:`SkinedgeError` subclasses for a bad token file, certificate or case log."""
    if token_file is None and certfile is None and case_log is None:
        return None
    from skinedge.kiosk.web import Kiosk, server_context

    kiosk = Kiosk()
    if certfile is not None:
        kiosk.ssl_context = server_context(certfile, keyfile)
    if token_file is not None:
        from skinedge.kiosk.auth import Authenticator, load_token

        kiosk.auth = Authenticator(load_token(token_file), secure_cookie=certfile is not None)
    if case_log is not None:
        from skinedge.kiosk.caselog import CaseLog

        kiosk.case_log = CaseLog(case_log, photo_dir=keep_photos, retain_days=retain_days, labels=labels)
    return kiosk


def store_model(model: str | None) -> str | None:
    """``model`` if given, else the model store's active model when a store is set up (None: the bundled one)."""
    if model is not None:
        return model
    from skinedge.kiosk.storedir import store_is_set_up

    if not store_is_set_up():  # the usual case, decided without importing the store's machinery
        return None
    from skinedge.kiosk.modelstore import active_model

    try:
        path = active_model()
    except SkinedgeError as exc:
        fail_unusable(exc)
    return None if path is None else str(path)
