"""The kiosk's commands: ``skinedge cases``, ``skinedge service``, ``skinedge models``. Parsing and printing only:
the work is in the modules beside this one. ``skinedge`` loads this module when one of them is run (not at every
start: their options cost a few milliseconds to build); what ``skinedge serve`` shares with them is in
:mod:`skinedge.kiosk.serve_options`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from skinedge.errors import SkinedgeError
from skinedge.exits import EXIT_UNUSABLE, fail_unusable
from skinedge.kiosk.serve_options import FILE_PATH, check_access_options, kiosk_options

# -- skinedge cases ----------------------------------------------------------------------------------

@click.group()
def cases() -> None:
    """The case log of skinedge serve --case-log: export it, report the model against the clinician's labels."""


@cases.command("export")
@click.argument("db", type=FILE_PATH)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--photos", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Where the photos are (default: the --keep-photos folder the server recorded).")
def export_command(db: Path, out: Path, photos: Path | None) -> None:
    """Write OUT/cases.csv and, for labelled cases whose photo was kept, OUT/<clinician label>/ photo folders
    (what skinedge evaluate OUT and skinedge-tools train read)."""
    from skinedge.kiosk.caselog import export, open_existing

    try:
        with open_existing(db) as log:
            summary = export(log, out, photo_dir=photos)
    except SkinedgeError as exc:
        fail_unusable(exc)
    folders = ", ".join(f"{label} {n}" for label, n in sorted(summary.photos.items())) or "none"
    click.echo(f"exported {summary.cases} cases to {out / 'cases.csv'}; photos by clinician label: {folders}")


@cases.command("report")
@click.argument("db", type=FILE_PATH)
@click.option("--json", "as_json", is_flag=True, help="Everything as one JSON object.")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
def report_command(db: Path, as_json: bool, resamples: int, seed: int) -> None:
    """Agreement of the model's top label with the clinician's label, with bootstrap 95% CIs
    (the figures of skinedge evaluate)."""
    from skinedge.kiosk.caselog import format_report, open_existing, report

    try:
        with open_existing(db) as log:
            rep = report(log, n_resamples=resamples, seed=seed)
    except SkinedgeError as exc:
        fail_unusable(exc)
    click.echo(json.dumps(rep, indent=1) if as_json else format_report(rep))


# -- skinedge service --------------------------------------------------------------------------------

@click.group()
def service() -> None:
    """Run skinedge serve at boot as a hardened systemd service (docs/kiosk.md)."""


@service.command("install")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--model", default=None, help="A model file or bundled name (default: the model store's active one).")
@click.option("--model-store", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="SKINEDGE_MODEL_STORE",
              help="The model store the service reads (SKINEDGE_MODEL_STORE in the unit; default: this shell's).")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--camera", default=None)
@kiosk_options
@click.option("--user", default="skinedge", show_default=True, help="The dedicated user it runs as (created).")
@click.option("--name", default="skinedge", show_default=True, help="Unit name (NAME.service).")
@click.option("--print", "print_only", is_flag=True, help="Print the unit and change nothing.")
@click.option("--no-start", is_flag=True, help="Enable it for the next boot without starting it now.")
def service_install(host, port, model, model_store, threads, camera, token_file, certfile, keyfile, case_log,
                    keep_photos, retain_days, insecure_no_auth, user, name, print_only, no_start) -> None:
    """Write /etc/systemd/system/NAME.service for skinedge serve with these options, create the user and the
    case log's folders, then enable and start it (needs root). --print only shows the unit."""
    from skinedge.kiosk.service import ServeConfig, install, unit_text

    check_access_options(host, token_file, certfile, keyfile, case_log, keep_photos, retain_days, insecure_no_auth)
    if user == "root":
        raise click.UsageError("the service must not run as root: choose a dedicated user")
    config = ServeConfig(host=host, port=port, token_file=token_file, certfile=certfile, keyfile=keyfile,
                         case_log=case_log, keep_photos=keep_photos, retain_days=retain_days, model=model,
                         model_store=model_store, threads=threads, camera=camera, insecure_no_auth=insecure_no_auth)
    try:
        if print_only:
            click.echo(unit_text(config, user=user), nl=False)
            return
        for path in filter(None, (token_file, certfile, keyfile)):
            if not path.is_file():
                raise click.UsageError(f"{path}: no such file")
        path = install(config, name=name, user=user, start=not no_start)
    except SkinedgeError as exc:
        fail_unusable(exc)
    click.echo(f"installed {path}; {'enabled' if no_start else 'enabled and started'} "
               f"(systemctl status {name}; journalctl -u {name})")


@service.command("uninstall")
@click.option("--name", default="skinedge", show_default=True)
def service_uninstall(name: str) -> None:
    """Stop, disable and remove the service (the case log, photos and user stay)."""
    from skinedge.kiosk.service import uninstall

    try:
        path = uninstall(name=name)
    except SkinedgeError as exc:
        fail_unusable(exc)
    click.echo(f"removed {path}")


# -- skinedge models ---------------------------------------------------------------------------------

_store_option = click.option(
    "--store", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The model store (default: $SKINEDGE_MODEL_STORE, else ~/.local/share/skinedge/models).")


def _store(store: Path | None):
    from skinedge.kiosk.modelstore import ModelStore

    return ModelStore(store)


@click.group()
def models() -> None:
    """The board's model store: signed, self-tested models, switched atomically, with rollback."""


@models.command("trust")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_store_option
def models_trust(public_key: Path, store: Path | None) -> None:
    """Trust this Ed25519 public key (from skinedge-tools keygen) for models installed here."""
    try:
        s = _store(store)
        kid = s.trust(public_key)
    except SkinedgeError as exc:
        fail_unusable(exc)
    click.echo(f"trusting key {kid} for models installed in {s.root}")


@models.command("list")
@_store_option
@click.option("--json", "as_json", is_flag=True)
def models_list(store: Path | None, as_json: bool) -> None:
    """The active model and the previous one (what rollback returns to)."""
    try:
        s = _store(store)
        listing = s.list()
    except SkinedgeError as exc:
        fail_unusable(exc)
    if as_json:
        click.echo(json.dumps({"store": str(s.root), "models": [m.to_dict() for m in listing]}, indent=1))
        return
    if not listing:
        click.echo(f"no models installed in {s.root} (serve and predict use the bundled model)")
    for m in listing:
        role = "active  " if m.active else "previous"
        click.echo(f"{role} {m.name}  sha256 {m.sha256[:16]}  installed {m.installed} from {m.source} "
                   f"(key {m.key_id})")


@models.command("install")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The signature file (default: FILE.sig).")
@_store_option
@click.option("--threads", type=click.IntRange(min=1), default=None)
def models_install(file: Path, sig: Path | None, store: Path | None, threads: int | None) -> None:
    """Check FILE (signature, structure and checksums, self-test on this board) and make it the active model.
    A refused model changes nothing."""
    try:
        s = _store(store)
        m = s.install(file, signature=sig, num_threads=threads)
    except SkinedgeError as exc:
        click.echo(f"refused: {exc}", err=True)
        click.echo("the active model is unchanged", err=True)
        raise SystemExit(EXIT_UNUSABLE) from None
    click.echo(f"installed and active: {m.name} (sha256 {m.sha256[:16]}); signature, checks and self-test passed")
    click.echo("restart the service to use it: sudo systemctl restart skinedge")


@models.command("rollback")
@_store_option
def models_rollback(store: Path | None) -> None:
    """Make the previous model active again (a second rollback undoes the first)."""
    try:
        m = _store(store).rollback()
    except SkinedgeError as exc:
        fail_unusable(exc)
    click.echo(f"active: {m.name} (sha256 {m.sha256[:16]}); restart the service to use it")
