"""skinedge.kiosk.service and healthcheck: the unit's contents, ``systemd-analyze verify`` and ``security``,
install/uninstall into a folder with a recording systemctl, the start check against a real HTTP server."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from skinedge.kiosk.healthcheck import healthy, wait_healthy
from skinedge.kiosk.healthcheck import main as healthcheck_main
from skinedge.kiosk.service import ServeConfig, ServiceError, install, uninstall, unit_text

KIOSK = ServeConfig(host="0.0.0.0", port=8443, token_file=Path("/etc/skinedge/token"),
                    certfile=Path("/etc/skinedge/cert.pem"), keyfile=Path("/etc/skinedge/key.pem"),
                    case_log=Path("/var/lib/skinedge/cases.sqlite"), keep_photos=Path("/var/lib/skinedge-photos"),
                    retain_days=365, model_store=Path("/var/lib/skinedge/models"))


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_has_the_hardening_the_issue_asks_for() -> None:
    d = directives(unit_text(KIOSK, executable="/opt/skinedge/bin/skinedge", python="/opt/skinedge/bin/python"))
    assert d["User"] == ["skinedge"] and d["Group"] == ["skinedge"]
    assert d["Restart"] == ["on-failure"] and d["ProtectSystem"] == ["strict"] and d["NoNewPrivileges"] == ["yes"]
    assert d["ReadWritePaths"] == ["/var/lib/skinedge /var/lib/skinedge-photos"]  # only the case log and photos
    assert d["CapabilityBoundingSet"] == [""] and d["AmbientCapabilities"] == [""]
    assert d["PrivateDevices"] == ["yes"] and d["ProtectHome"] == ["read-only"] and d["UMask"] == ["0077"]
    assert d["Environment"] == ["PYTHONUNBUFFERED=1", "SKINEDGE_MODEL_STORE=/var/lib/skinedge/models"]
    start = d["ExecStart"][0].split()
    assert start[:2] == ["/opt/skinedge/bin/skinedge", "serve"]
    opts = dict(zip(start[2::2], start[3::2]))
    assert opts["--host"] == "0.0.0.0" and opts["--port"] == "8443" and opts["--case-log"].endswith("cases.sqlite")
    assert opts["--retain-days"] == "365" and opts["--token-file"] == "/etc/skinedge/token"
    assert d["ExecStartPost"] == [
        "/opt/skinedge/bin/python -m skinedge.kiosk.healthcheck https://127.0.0.1:8443/healthz --timeout 90"]
    assert d["WantedBy"] == ["multi-user.target"]


def test_unit_variants() -> None:
    low = directives(unit_text(ServeConfig(port=443), executable="/x/skinedge", python="/x/python"))
    assert low["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"] and "ReadWritePaths" not in low
    assert low["ExecStartPost"][0].split()[3] == "http://127.0.0.1:443/healthz"
    cam = directives(unit_text(ServeConfig(camera="0"), executable="/x/skinedge", python="/x/python"))
    assert "PrivateDevices" not in cam and cam["DeviceAllow"] == ["char-video4linux rw"]
    v6 = ServeConfig(host="::1", port=9000)
    assert v6.health_url() == "http://[::1]:9000/healthz"


@pytest.mark.parametrize("config, words", [
    (ServeConfig(port=0), "fixed port"),
    (ServeConfig(case_log=Path("/var/lib/my cases/c.sqlite")), "spaces"),
    (ServeConfig(token_file=Path("/etc/100%/token")), "spaces"),
])
def test_unit_refuses_what_systemd_would_mangle(config: ServeConfig, words: str) -> None:
    with pytest.raises(ServiceError, match=words):
        unit_text(config, executable="/x/skinedge", python="/x/python")


def _analyze(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd): the unit is not verified")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config", [KIOSK, ServeConfig(port=443, camera="0"), ServeConfig()])
def test_systemd_analyze_verify_is_clean(tmp_path: Path, config: ServeConfig) -> None:
    unit = tmp_path / "skinedge.service"
    unit.write_text(unit_text(config))  # this installation's real skinedge command and Python
    proc = _analyze("verify", str(unit))
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stderr + proc.stdout


def test_systemd_analyze_security_exposure_is_low(tmp_path: Path) -> None:
    unit = tmp_path / "skinedge.service"
    unit.write_text(unit_text(KIOSK))
    proc = _analyze("security", "--offline=yes", str(unit))
    if proc.returncode != 0 and "offline" in proc.stderr:
        pytest.skip(f"this systemd-analyze has no --offline security check: {proc.stderr.strip()[:100]}")
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)
    assert m, proc.stdout[-500:]
    assert float(m.group(1)) <= 2.0, proc.stdout  # 0 is the most locked down, 10 the least; 1.5 when written


RECORDER = "import json, sys; open(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n')"


def test_install_and_uninstall(tmp_path: Path) -> None:
    log = tmp_path / "systemctl.log"
    systemctl = [sys.executable, "-c", RECORDER, str(log)]
    config = ServeConfig(port=8080, case_log=tmp_path / "data" / "cases.sqlite", keep_photos=tmp_path / "photos")
    path = install(config, name="skinedge-test", unit_dir=tmp_path, systemctl=systemctl, create_user=False)
    assert path == tmp_path / "skinedge-test.service"
    assert path.read_text() == unit_text(config)
    assert (tmp_path / "data").is_dir() and (tmp_path / "photos").stat().st_mode & 0o777 == 0o700
    uninstall(name="skinedge-test", unit_dir=tmp_path, systemctl=systemctl)
    assert not path.exists()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [["daemon-reload"], ["enable", "--now", "skinedge-test.service"],
                     ["disable", "--now", "skinedge-test.service"], ["daemon-reload"]]
    with pytest.raises(ServiceError, match="nothing to uninstall"):
        uninstall(name="skinedge-test", unit_dir=tmp_path, systemctl=systemctl)


def test_install_reports_a_failing_systemctl(tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "import sys; print('System has not been booted with systemd'); sys.exit(1)"]
    with pytest.raises(ServiceError, match="exit status 1: System has not been booted"):
        install(ServeConfig(), unit_dir=tmp_path, systemctl=failing, create_user=False)


class _Health(http.server.BaseHTTPRequestHandler):
    status = b'{"status": "ok"}'

    def do_GET(self) -> None:  # noqa: N802
        body = self.status if self.path == "/healthz" else b"{}"
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_healthcheck_against_a_real_server() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert healthy(f"http://127.0.0.1:{port}/healthz")
        assert not healthy(f"http://127.0.0.1:{port}/other")
        assert healthcheck_main([f"http://127.0.0.1:{port}/healthz", "--timeout", "1"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert not wait_healthy(f"http://127.0.0.1:{port}/healthz", timeout=0.3, interval=0.1)  # nobody listens
    assert healthcheck_main([f"http://127.0.0.1:{port}/healthz", "--timeout", "0.2"]) == 1
