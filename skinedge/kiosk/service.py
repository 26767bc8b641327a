"""The kiosk's systemd unit: ``skinedge serve`` at boot, restarted after a crash, in a locked-down sandbox.

:func:`unit_text` writes the unit for a :class:`ServeConfig`; :func:`install` puts it in
``/etc/systemd/system``, creates the dedicated user and the case log's folders, and enables and starts it;
:func:`uninstall` stops, disables and removes it (the case log and the user are left alone: they hold data).

The sandbox: a dedicated system user without a shell or home; the whole file system read-only
(``ProtectSystem=strict``, ``ProtectHome=read-only``) except the case log's folder and the photo folder
(``ReadWritePaths``); no new privileges, no capabilities (unless the port is below 1024), private /tmp and
/dev, kernel tunables, modules, logs, clock and control groups out of reach, only the system calls a normal
service makes, only IP and Unix sockets. ``MemoryDenyWriteExecute`` is left out on purpose: interpreter
back ends may generate code at run time, and a board that fails to start is worse than one without it.
The start is checked through ``/healthz`` (``ExecStartPost`` runs :mod:`skinedge.kiosk.healthcheck`);
``Restart=on-failure`` brings a crashed or unhealthy server back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skinedge.kiosk import KioskError

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_NAME = "skinedge"
DEFAULT_USER = "skinedge"
_UNSAFE = set(" \t\n\"'\\%$;")


class ServiceError(KioskError):
    """The unit cannot be written, installed or removed (the reason says which step)."""


@dataclass(frozen=True)
class ServeConfig:
    """The ``skinedge serve`` options the unit runs with (paths are made absolute)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token_file: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    case_log: Path | None = None
    keep_photos: Path | None = None
    retain_days: float | None = None
    model: str | None = None
    model_store: Path | None = None
    threads: int | None = None
    camera: str | None = None
    insecure_no_auth: bool = False
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def serve_args(self) -> list[str]:
        """The ``skinedge serve`` arguments for these options."""
        args = ["serve", "--host", self.host, "--port", str(self.port)]
        for flag, value in (("--token-file", self.token_file), ("--certfile", self.certfile),
                            ("--keyfile", self.keyfile), ("--case-log", self.case_log),
                            ("--keep-photos", self.keep_photos), ("--model", self.model),
                            ("--threads", self.threads), ("--camera", self.camera)):
            if value is not None:
                args += [flag, str(Path(value).absolute()) if isinstance(value, Path) else str(value)]
        if self.retain_days is not None:
            args += ["--retain-days", f"{self.retain_days:g}"]
        if self.insecure_no_auth:
            args.append("--insecure-no-auth")
        return args + list(self.extra_args)

    def health_url(self) -> str:
        """Where the start check asks: this board itself, on the served port."""
        host = self.host
        if host in ("0.0.0.0", "", "*"):
            host = "127.0.0.1"
        elif host in ("::", "[::]"):
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{host}:{self.port}/healthz"


def skinedge_executable() -> Path:
    """The ``skinedge`` command of this installation (beside this Python, else on PATH)."""
    beside = Path(sys.executable).parent / "skinedge"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("skinedge")
    if found is None:
        raise ServiceError("skinedge", "the skinedge command is not installed beside this Python nor on PATH")
    return Path(found).absolute()


def _word(value: str, what: str) -> str:
    """``value`` as one word of a unit file line; paths with spaces, quotes, ``%`` or ``$`` are refused
    (systemd would expand or split them)."""
    if not value or set(value) & _UNSAFE:
        raise ServiceError(value or "''", f"{what} has spaces, quotes or one of % $ ; \\ in it, which a systemd "
                                          "unit would split or expand: use a path without them")
    return value


def unit_text(config: ServeConfig, *, user: str = DEFAULT_USER, executable: str | os.PathLike | None = None,
              python: str | os.PathLike | None = None) -> str:
    """The systemd unit that runs ``skinedge serve`` with ``config`` as ``user``.

    ``executable``: the skinedge command (default: this installation's); ``python``: the interpreter for the
    start check (default: this one).
    """
    exe = _word(str(Path(executable or skinedge_executable()).absolute()), "the skinedge command")
    py = _word(str(Path(python or sys.executable).absolute()), "the Python interpreter")
    _word(user, "the user name")
    if config.port == 0:
        raise ServiceError("--port 0", "a service needs a fixed port (its start check and clients must know it)")
    args = " ".join(_word(a, "a serve option") for a in config.serve_args())
    writable = []
    if config.case_log is not None:
        writable.append(Path(config.case_log).absolute().parent)  # SQLite writes -wal and -shm files beside it
    if config.keep_photos is not None:
        writable.append(Path(config.keep_photos).absolute())
    writable_line = " ".join(_word(str(p), "a writable path") for p in dict.fromkeys(writable))
    low_port = config.port < 1024
    caps = "CAP_NET_BIND_SERVICE" if low_port else ""
    lines = [
        "# Written by skinedge service install: skinedge serve as a hardened service (docs/kiosk.md).",
        "# Scores from a research model, not a diagnosis.",
        "[Unit]",
        "Description=skinedge kiosk (skin photo scores, not a diagnosis)",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=600",
        "StartLimitBurst=20",
        "",
        "[Service]",
        "Type=exec",
        f"User={user}",
        f"Group={user}",
        f"ExecStart={exe} {args}",
        f"ExecStartPost={py} -m skinedge.kiosk.healthcheck {config.health_url()} --timeout 90",
        "Restart=on-failure",
        "RestartSec=3",
        "TimeoutStartSec=120",
        "TimeoutStopSec=20",
        "Environment=PYTHONUNBUFFERED=1",
        *([f"Environment=SKINEDGE_MODEL_STORE={_word(str(Path(config.model_store).absolute()), 'the model store')}"]
          if config.model_store is not None else []),
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        *([f"ReadWritePaths={writable_line}"] if writable_line else []),
        "PrivateTmp=yes",
        *(["PrivateDevices=yes"] if config.camera is None else
          ["DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "SupplementaryGroups=video"]),
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        f"CapabilityBoundingSet={caps}",
        f"AmbientCapabilities={caps}",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def _run(cmd: Sequence[str]) -> None:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True)
    except FileNotFoundError:
        raise ServiceError(cmd[0], "command not found (is this a systemd system?)") from None
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())[:300]
        raise ServiceError(" ".join(cmd), f"failed with exit status {proc.returncode}: {detail}")


def _user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def install(config: ServeConfig, *, name: str = DEFAULT_NAME, user: str = DEFAULT_USER, unit_dir: Path = UNIT_DIR,
            systemctl: Sequence[str] = ("systemctl",), create_user: bool = True, start: bool = True,
            executable: str | os.PathLike | None = None) -> Path:
    """Write the unit, create ``user`` (a system user without shell or home) and the writable folders
    (owned by it, mode 0700), then ``systemctl daemon-reload`` and ``enable`` (``--now`` with ``start``).

    Returns the unit file's path. Needs root (``sudo skinedge service install ...``).
    """
    text = unit_text(config, user=user, executable=executable)
    if create_user and not _user_exists(user):
        _run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", user])
    folders = [p for p in (Path(config.case_log).absolute().parent if config.case_log else None,
                           Path(config.keep_photos).absolute() if config.keep_photos else None) if p]
    for folder in folders:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if create_user and os.geteuid() == 0:
                shutil.chown(folder, user, user)
        except OSError as exc:
            raise ServiceError(str(folder), f"cannot create the folder ({exc.strerror or exc})") from None
    path = Path(unit_dir) / f"{name}.service"
    try:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
    except OSError as exc:
        raise ServiceError(str(path), f"cannot write the unit ({exc.strerror or exc}); run with sudo") from None
    _run([*systemctl, "daemon-reload"])
    _run([*systemctl, "enable", *(["--now"] if start else []), f"{name}.service"])
    return path


def uninstall(*, name: str = DEFAULT_NAME, unit_dir: Path = UNIT_DIR,
              systemctl: Sequence[str] = ("systemctl",)) -> Path:
    """Stop and disable the service and remove its unit (the case log, photos and user stay)."""
    path = Path(unit_dir) / f"{name}.service"
    if not path.exists():
        raise ServiceError(str(path), "no such unit: nothing to uninstall")
    _run([*systemctl, "disable", "--now", f"{name}.service"])
    try:
        path.unlink()
    except OSError as exc:
        raise ServiceError(str(path), f"cannot remove the unit ({exc.strerror or exc}); run with sudo") from None
    _run([*systemctl, "daemon-reload"])
    return path
