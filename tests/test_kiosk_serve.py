"""``skinedge serve`` as a kiosk: token, sign-in, case routes, HTTPS, over real loopback sockets with the bundled
model and a real SQLite case log. Every refusal is checked for its status, its JSON, and that nothing was written."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from skinedge import Classifier
from skinedge.kiosk.auth import Authenticator, FailureLimiter, write_token_file
from skinedge.kiosk.caselog import CaseLog
from skinedge.kiosk.web import Kiosk, server_context
from skinedge.serve import ServeOptions, make_server, running

TOKEN = "kiosk-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def clf() -> Classifier:
    with Classifier(num_threads=1) as c:
        yield c


@pytest.fixture(scope="module")
def photo(skin6_dir: Path) -> bytes:
    return sorted((skin6_dir / "test" / "Eczema").glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def kiosk_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kiosk")


@pytest.fixture(scope="module")
def server(clf: Classifier, kiosk_dir: Path):
    log = CaseLog(kiosk_dir / "cases.sqlite", photo_dir=kiosk_dir / "photos", labels=clf.labels)
    # Many wrong tokens are sent on purpose below: a limiter that never locks this client out (tested apart).
    kiosk = Kiosk(auth=Authenticator(TOKEN, limiter=FailureLimiter(free=10**9)), case_log=log)
    with running(make_server(clf, "127.0.0.1", 0, ServeOptions(), kiosk=kiosk)) as srv:
        yield srv
    log.close()


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            context: ssl.SSLContext | None = None):
    host, port = srv.server_address[:2]
    conn = (http.client.HTTPSConnection(host, port, timeout=30, context=context) if context
            else http.client.HTTPConnection(host, port, timeout=30))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def as_json(data: bytes) -> dict:
    return json.loads(data)


def counts(srv) -> tuple[int, int, list]:
    log = srv.kiosk.case_log
    cases = log.all_cases()
    return len(cases), len(list(log.photo_dir.iterdir())), [c.clinician_label for c in cases]


PROTECTED = [
    ("GET", "/api/info", None, {}),
    ("POST", "/api/classify", "PHOTO", {"Content-Type": "image/jpeg"}),
    ("POST", "/api/classify?heatmap=1", "PHOTO", {"Content-Type": "image/jpeg"}),
    ("GET", "/api/cases", None, {}),
    ("GET", "/api/cases?limit=500", None, {}),
    ("GET", "/api/cases/1", None, {}),
    ("POST", "/api/cases/1/label", b'{"label": "Acne"}', {"Content-Type": "application/json"}),
    ("POST", "/api/signout", b"", {}),
    ("GET", "/api/live", None, {}),
    ("GET", "/api/live.mjpg", None, {}),
    ("GET", "/no/such/route", None, {}),
    ("GET", "/static/../../etc/passwd", None, {}),
    ("PUT", "/api/classify", b"x", {}),
    ("DELETE", "/api/cases/1", None, {}),
    ("PATCH", "/api/cases/1/label", b"{}", {}),
]


@pytest.mark.parametrize("credentials", [{}, {"Authorization": "Bearer wrong-token-wrong-token"},
                                         {"Authorization": f"Bearer {TOKEN[:-1]}"},
                                         {"Authorization": f"Basic {TOKEN}"},
                                         {"Cookie": "skinedge_session=forged-session-id"}])
def test_every_route_needs_the_token(server, photo: bytes, credentials: dict) -> None:
    # One real case exists, so that case routes would have something to leak.
    status, _, data = request(server, "POST", "/api/classify", photo, {**AUTH, "Content-Type": "image/jpeg"})
    assert status == 200
    before = counts(server)
    for method, path, body, headers in PROTECTED:
        body = photo if body == "PHOTO" else body
        status, got_headers, data = request(server, method, path, body, {**headers, **credentials})
        assert status == 401, (method, path, status, data[:200])
        answer = as_json(data)
        assert answer["error"] == "Unauthorized" and answer["status"] == 401 and set(answer) == {
            "error", "reason", "status"}, answer
        assert got_headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert got_headers["Content-Type"] == "application/json"
    assert counts(server) == before  # nothing recorded, labelled or kept


def test_public_routes_carry_no_data(server) -> None:
    status, _, data = request(server, "GET", "/healthz")
    assert status == 200 and as_json(data) == {"status": "ok"}
    for path in server.pages:  # the page's fixed files: the same bytes with or without a token
        anonymous = request(server, "GET", path)
        signed = request(server, "GET", path, headers=AUTH)
        assert anonymous[0] == signed[0] == 200 and anonymous[2] == signed[2]
        assert b"model_sha256" not in anonymous[2] and b"case_id\":" not in anonymous[2]


def test_classify_records_a_case_and_the_label_round_trip(server, clf: Classifier, photo: bytes) -> None:
    status, _, data = request(server, "POST", "/api/classify", photo, {**AUTH, "Content-Type": "image/jpeg"})
    assert status == 200
    answer = as_json(data)
    case = server.kiosk.case_log.get(answer["case_id"])  # on disk before the answer was sent
    expected = clf.classify(photo)
    assert case.top_label == expected.label == answer["label"] and case.model_sha256 == clf.model_sha256
    assert case.result["scores"] == answer["scores"] and "server_ms" not in case.result
    import hashlib
    assert case.photo_sha256 == hashlib.sha256(photo).hexdigest()
    kept = server.kiosk.case_log.photo_dir / case.photo
    assert kept.read_bytes() == photo and kept.stat().st_mode & 0o777 == 0o600
    assert 0 <= answer["timings_ms"]["case_log"] < answer["server_ms"]
    status, _, data = request(server, "POST", f"/api/cases/{case.case_id}/label", b'{"label": "Eczema"}',
                              {**AUTH, "Content-Type": "application/json"})
    assert status == 200 and as_json(data)["clinician_label"] == "Eczema"
    status, _, data = request(server, "GET", "/api/cases?limit=1", headers=AUTH)
    page = as_json(data)
    assert status == 200 and page["cases"][0]["case_id"] == case.case_id and page["labels"] == list(clf.labels)
    assert page["cases"][0]["clinician_label"] == "Eczema" and page["total"] >= 1
    status, _, data = request(server, "GET", f"/api/cases/{case.case_id}", headers=AUTH)
    assert status == 200 and as_json(data)["case_id"] == case.case_id
    status, _, data = request(server, "GET", "/api/info", headers=AUTH)
    assert as_json(data)["auth"] is as_json(data)["case_log"] is as_json(data)["photos_kept"] is True


def _label(server, case_path: str, body: bytes, content_type: str = "application/json"):
    return request(server, "POST", case_path, body, {**AUTH, "Content-Type": content_type})


@pytest.mark.parametrize("path, body, content_type, status, error", [
    ("/api/cases/CASE/label", b"x" * 5000, "application/json", 413, "PayloadTooLarge"),
    ("/api/cases/CASE/label", b'{"label": ', "application/json", 400, "BadRequest"),
    ("/api/cases/CASE/label", b"\xff\xfe", "application/json", 400, "BadRequest"),
    ("/api/cases/CASE/label", b'["Acne"]', "application/json", 400, "BadRequest"),
    ("/api/cases/CASE/label", b'{"lbl": "Acne"}', "application/json", 400, "BadRequest"),
    ("/api/cases/CASE/label", b'{"label": "Acne", "x": 1}', "application/json", 400, "BadRequest"),
    ("/api/cases/CASE/label", b'{"label": 3}', "application/json", 400, "BadRequest"),
    ("/api/cases/CASE/label", b'{"label": "Melanoma"}', "application/json", 422, "LabelError"),
    ("/api/cases/CASE/label", b'{"label": "../../etc"}', "application/json", 422, "LabelError"),
    ("/api/cases/CASE/label", b'label=Acne', "application/x-www-form-urlencoded", 415, "UnsupportedMediaType"),
    ("/api/cases/999999/label", b'{"label": "Acne"}', "application/json", 404, "NotFound"),
    ("/api/cases/0/label", b'{"label": "Acne"}', "application/json", 404, "NotFound"),
    ("/api/cases/-1/label", b'{"label": "Acne"}', "application/json", 404, "NotFound"),
    ("/api/cases/abc/label", b'{"label": "Acne"}', "application/json", 404, "NotFound"),
    ("/api/cases/1234567890123456789012/label", b'{"label": "Acne"}', "application/json", 404, "NotFound"),
    ("/api/cases/CASE/../CASE/label", b'{"label": "Acne"}', "application/json", 404, "NotFound"),
])
def test_bad_label_requests_are_refused_and_write_nothing(server, photo: bytes, path, body, content_type, status,
                                                          error) -> None:
    _, _, data = request(server, "POST", "/api/classify", photo, {**AUTH, "Content-Type": "image/jpeg"})
    case_id = as_json(data)["case_id"]
    before = counts(server)
    got, _, data = _label(server, path.replace("CASE", str(case_id)), body, content_type)
    answer = as_json(data)
    assert (got, answer["error"]) == (status, error), answer
    assert answer["reason"] and "Traceback" not in answer["reason"]
    assert counts(server) == before and server.kiosk.case_log.get(case_id).clinician_label is None


def test_label_route_methods_and_missing_length(server) -> None:
    status, headers, data = request(server, "GET", "/api/cases/1/label", headers=AUTH)
    assert status == 405 and headers["Allow"] == "POST"
    status, headers, _ = request(server, "POST", "/api/cases", b"{}", {**AUTH, "Content-Type": "application/json"})
    assert status == 405 and headers["Allow"] == "GET"
    for query, word in (("limit=0", "limit"), ("limit=x", "limit"), ("before=-3", "before"), ("labelled=maybe",
                                                                                            "labelled")):
        status, _, data = request(server, "GET", f"/api/cases?{query}", headers=AUTH)
        assert status == 400 and word in as_json(data)["reason"]
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as s:  # a chunked body: no Content-Length
        s.sendall(f"POST /api/cases/1/label HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        reply = s.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 411")


@pytest.mark.parametrize("path", ["/static/../app.js", "/static/..%2fapp.js", "/%2e%2e/%2e%2e/etc/passwd",
                                  "//etc/passwd", "/static//etc/passwd", "/api/cases/1/../../info",
                                  "/api/cases/..%2f..%2finfo", "/static/app.js/../../../etc/passwd",
                                  "/..\\..\\etc\\passwd"])
def test_path_traversal(server, path: str) -> None:
    for headers, want in (({}, 401), (AUTH, 404)):
        status, _, data = request(server, "GET", path, headers=headers)
        assert status == want, (path, headers, status)
        assert b"root:" not in data and b"use strict" not in data


def test_sign_in_sets_a_strict_http_only_cookie(server) -> None:
    status, _, data = request(server, "POST", "/api/signin", json.dumps({"token": "wrong-token-123456"}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 401 and as_json(data)["error"] == "Unauthorized"
    status, headers, data = request(server, "POST", "/api/signin", json.dumps({"token": TOKEN}).encode(),
                                    {"Content-Type": "application/json"})
    assert status == 200 and as_json(data) == {"signed_in": True}
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie and TOKEN not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    assert request(server, "GET", "/api/info", headers=session)[0] == 200
    status, headers, _ = request(server, "POST", "/api/signout", b"", session)
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    assert request(server, "GET", "/api/info", headers=session)[0] == 401
    for body in (b"{}", b'{"token": 5}', b"not json"):
        status, _, _ = request(server, "POST", "/api/signin", body, {"Content-Type": "application/json"})
        assert status == 400


def test_repeated_failures_are_slowed_down(clf: Classifier) -> None:
    kiosk = Kiosk(auth=Authenticator(TOKEN, limiter=FailureLimiter(free=3, base_s=2.0)))
    with running(make_server(clf, "127.0.0.1", 0, kiosk=kiosk)) as srv:
        bad = {"Authorization": "Bearer wrong-token-wrong-token"}
        statuses = [request(srv, "GET", "/api/info", headers=bad)[0] for _ in range(4)]
        assert statuses == [401, 401, 401, 401]
        status, headers, data = request(srv, "GET", "/api/info", headers=AUTH)  # locked out: not even checked
        assert status == 429 and int(headers["Retry-After"]) >= 1 and "too many" in as_json(data)["reason"]
        status, _, _ = request(srv, "POST", "/api/signin", json.dumps({"token": TOKEN}).encode(),
                               {"Content-Type": "application/json"})
        assert status == 429
        assert request(srv, "GET", "/healthz")[0] == 200  # the health check is never locked
        time.sleep(2.1)
        assert request(srv, "GET", "/api/info", headers=AUTH)[0] == 200


def test_without_a_case_log_the_case_routes_say_so(clf: Classifier, photo: bytes) -> None:
    kiosk = Kiosk(auth=Authenticator(TOKEN))
    with running(make_server(clf, "127.0.0.1", 0, kiosk=kiosk)) as srv:
        status, _, data = request(srv, "GET", "/api/cases", headers=AUTH)
        assert status == 404 and "--case-log" in as_json(data)["reason"]
        status, _, data = request(srv, "POST", "/api/classify", photo, {**AUTH, "Content-Type": "image/jpeg"})
        assert status == 200 and "case_id" not in as_json(data)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: the HTTPS tests need it to make a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_with_a_self_signed_certificate(clf: Classifier, photo: bytes, certificate, tmp_path: Path) -> None:
    cert, key = certificate
    log = CaseLog(tmp_path / "c.sqlite", labels=clf.labels)
    kiosk = Kiosk(auth=Authenticator(TOKEN, secure_cookie=True), case_log=log, ssl_context=server_context(cert, key))
    client = ssl.create_default_context(cafile=str(cert))  # the client trusts this board's own certificate
    with running(make_server(clf, "127.0.0.1", 0, kiosk=kiosk)) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        # A client that connects and never starts the handshake does not hold up the others.
        stalled = socket.create_connection(srv.server_address[:2], timeout=10)
        status, _, data = request(srv, "POST", "/api/classify", photo, {**AUTH, "Content-Type": "image/jpeg"},
                                  context=client)
        assert status == 200 and as_json(data)["case_id"] == 1
        status, headers, _ = request(srv, "POST", "/api/signin", json.dumps({"token": TOKEN}).encode(),
                                     {"Content-Type": "application/json"}, context=client)
        assert status == 200 and "; Secure" in headers["Set-Cookie"]
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            request(srv, "GET", "/healthz")  # plain HTTP to the HTTPS port: no answer, the server lives on
        assert request(srv, "GET", "/healthz", context=client)[0] == 200
        stalled.close()
    log.close()


def test_bad_certificate_files_are_typed_errors(tmp_path: Path, certificate) -> None:
    from skinedge.kiosk.web import TLSError

    with pytest.raises(TLSError, match="no such file"):
        server_context(tmp_path / "missing.pem", tmp_path / "k.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(TLSError, match="usable pair"):
        server_context(junk, certificate[1])
    with pytest.raises(TLSError, match="usable pair"):
        server_context(certificate[0], junk)


def test_cli_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    """Checked before binding anything (so this test never listens beyond loopback)."""
    from click.testing import CliRunner

    from skinedge.cli import main

    res = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert res.exit_code == 2 and "--token-file" in res.output and "--insecure-no-auth" in res.output
    loose = tmp_path / "token"
    write_token_file(loose)
    loose.chmod(0o644)
    res = CliRunner().invoke(main, ["serve", "--port", "0", "--token-file", str(loose)])
    assert res.exit_code == 2 and f"error: {loose}: " in res.output and "chmod 600" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["serve", "--port", "0", "--keep-photos", str(tmp_path / "p")])
    assert res.exit_code == 2 and "need --case-log" in res.output


def test_a_photo_that_cannot_be_classified_leaves_no_case_and_no_file(server, photo: bytes) -> None:
    """The photo is written while the model runs (--keep-photos); a refused photo's file is removed again."""
    before = counts(server)
    for body in (b"\xff\xd8\xff\xe0 not really a JPEG" * 10, photo[: len(photo) // 3]):
        status, _, data = request(server, "POST", "/api/classify", body, {**AUTH, "Content-Type": "image/jpeg"})
        assert status == 400 and as_json(data)["error"] == "ImageError"
    assert counts(server) == before
    # The same photo twice: one file, two cases.
    for _ in range(2):
        assert request(server, "POST", "/api/classify", photo, {**AUTH, "Content-Type": "image/jpeg"})[0] == 200
    n_cases, n_files, _ = counts(server)
    assert n_cases == before[0] + 2 and n_files == before[1] + (0 if before[1] else 1)
