"""skinedge.kiosk.auth: token files, bearer and cookie checks, sessions, the failure limiter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skinedge.errors import SkinedgeError
from skinedge.kiosk.auth import (
    COOKIE_NAME,
    Authenticator,
    FailureLimiter,
    TokenFileError,
    load_token,
    session_id_from,
    write_token_file,
)

TOKEN = "correct-horse-battery-staple-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "token"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_load_token_reads_first_line(tmp_path: Path) -> None:
    assert load_token(token_file(tmp_path, f"  {TOKEN}\n\nignored\n")) == TOKEN


@pytest.mark.parametrize("text, why", [("", "empty"), ("\n  \n", "empty"), ("short", "at least 16"),
                                       ("has a space inside it ok", "spaces")])
def test_load_token_refuses_bad_contents(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(TokenFileError, match=why) as err:
        load_token(token_file(tmp_path, text))
    assert isinstance(err.value, SkinedgeError) and err.value.source.endswith("token")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666])
def test_load_token_refuses_files_others_can_read_or_write(tmp_path: Path, mode: int) -> None:
    with pytest.raises(TokenFileError, match="chmod 600"):
        load_token(token_file(tmp_path, TOKEN, mode))


def test_load_token_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="no such token file"):
        load_token(tmp_path / "nope")
    with pytest.raises(TokenFileError, match="not a regular file"):
        load_token(tmp_path)


def test_write_token_file_is_private_and_exclusive(tmp_path: Path) -> None:
    p = tmp_path / "t"
    token = write_token_file(p)
    assert load_token(p) == token and len(token) >= 40
    if os.name == "posix":
        assert p.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_token_file(p)


def test_bearer_token() -> None:
    auth = Authenticator(TOKEN)
    assert auth.check({"Authorization": f"Bearer {TOKEN}"}, "a").ok
    assert auth.check({"Authorization": f"bearer  {TOKEN} "}, "a").via == "bearer"
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Basic {TOKEN}", TOKEN, "Bearer é"):
        d = auth.check({"Authorization": header}, "a")
        assert not d.ok and d.reason, header
    assert not auth.check({}, "b").ok


def test_session_cookie_sign_in_and_out() -> None:
    clock = Clock()
    auth = Authenticator(TOKEN, clock=clock, session_ttl_s=100)
    decision, cookie = auth.sign_in("wrong-token-wrong-token", "c")
    assert not decision.ok and cookie is None
    decision, cookie = auth.sign_in(TOKEN, "c")
    assert decision.ok and cookie is not None
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN not in cookie and len(sid) >= 40
    header = f"other=1; {COOKIE_NAME}={sid}"
    assert session_id_from(header) == sid
    assert auth.check({"Cookie": header}, "c").via == "cookie"
    # A made-up or altered session id is refused.
    altered = sid[:-1] + ("B" if sid.endswith("A") else "A")  # (a 1-in-64 chance that "A" changed nothing)
    assert not auth.check({"Cookie": f"{COOKIE_NAME}={altered}"}, "c").ok
    clock.now += 101  # expired
    assert not auth.check({"Cookie": header}, "c").ok
    _, cookie = auth.sign_in(TOKEN, "c")
    header = cookie.split(";")[0]
    assert auth.check({"Cookie": header}, "c").ok
    auth.end_session(header)
    assert not auth.check({"Cookie": header}, "c").ok
    assert "Max-Age=0" in auth.clear_cookie()


def test_secure_cookie_over_tls() -> None:
    assert "; Secure" in Authenticator(TOKEN, secure_cookie=True).set_cookie("x")


def test_sessions_are_bounded() -> None:
    auth = Authenticator(TOKEN, max_sessions=3)
    sids = [auth.new_session() for _ in range(5)]
    ok = [auth.check({"Cookie": f"{COOKIE_NAME}={s}"}, "x").ok for s in sids]
    assert ok == [False, False, True, True, True]


def test_limiter_locks_out_repeated_failures_and_forgives() -> None:
    clock = Clock()
    lim = FailureLimiter(free=3, base_s=1.0, max_s=8.0, forget_s=600, clock=clock)
    auth = Authenticator(TOKEN, limiter=lim, clock=clock)
    bad = {"Authorization": "Bearer wrong-wrong-wrong-wrong"}
    for _ in range(3):
        assert auth.check(bad, "1.2.3.4").retry_after == 0
    d = auth.check(bad, "1.2.3.4")
    assert not d.ok and d.retry_after == 1.0
    # Locked out: even the right token is not checked, and another client is not affected.
    d = auth.check({"Authorization": f"Bearer {TOKEN}"}, "1.2.3.4")
    assert not d.ok and "too many" in d.reason and d.retry_after == pytest.approx(1.0)
    assert auth.check({"Authorization": f"Bearer {TOKEN}"}, "5.6.7.8").ok
    lockouts = []
    for _ in range(5):
        clock.now += 100
        lockouts.append(auth.check(bad, "1.2.3.4").retry_after)
    assert lockouts == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    clock.now += 9
    assert auth.check({"Authorization": f"Bearer {TOKEN}"}, "1.2.3.4").ok  # success forgives
    assert auth.check(bad, "1.2.3.4").retry_after == 0
    clock.now += 601
    assert lim.retry_after("1.2.3.4") == 0


def test_limiter_memory_is_bounded() -> None:
    lim = FailureLimiter(max_clients=100)
    for i in range(10_000):
        lim.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(lim) == 100


def test_stale_cookie_does_not_count_as_a_failure() -> None:
    lim = FailureLimiter(free=1)
    auth = Authenticator(TOKEN, limiter=lim)
    for _ in range(10):
        assert not auth.check({"Cookie": f"{COOKIE_NAME}=stale-session-from-before-a-restart"}, "c").ok
    assert auth.sign_in(TOKEN, "c")[0].ok
