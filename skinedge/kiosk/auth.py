"""Access to the kiosk's page and API: one shared token, session cookies, and a limiter for guessers.

The token is a long random string kept in a file only the service may read (``load_token``). A client
proves it knows the token with ``Authorization: Bearer <token>`` on every request, or signs in once on the
page and then carries a session cookie: a random id (256 bits) that the server keeps in memory, never the
token itself. Tokens are compared in constant time (:func:`hmac.compare_digest`), and sessions are looked
up by the SHA-256 of their id, so neither comparison leaks through timing.

A client that keeps failing is shut out for a growing time (:class:`FailureLimiter`): the first few
failures are free (typing mistakes), then each one doubles the lockout, up to a minute. The limiter keeps
at most a fixed number of clients, so a flood of addresses cannot grow it without bound.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from skinedge.kiosk import KioskError

#: The session cookie's name.
COOKIE_NAME = "skinedge_session"
#: Shortest token accepted: 16 characters (``secrets.token_urlsafe(32)`` gives 43).
MIN_TOKEN_CHARS = 16
#: A token file larger than this is not a token file.
MAX_TOKEN_FILE_BYTES = 4096
#: How long a session lasts without signing in again (a clinic's working day).
SESSION_TTL_S = 12 * 3600.0
#: Sessions kept at once; signing in beyond this forgets the oldest one.
MAX_SESSIONS = 256


class TokenFileError(KioskError):
    """The token file is missing, unreadable, empty, too short, or readable by other users."""


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text) for a token file."""
    return secrets.token_urlsafe(32)


def load_token(path: str | os.PathLike) -> str:
    """The token in ``path``: its first line, stripped.

    Refused (:class:`TokenFileError`) when the file is missing or unreadable, empty, shorter than
    :data:`MIN_TOKEN_CHARS`, has whitespace inside, or (on POSIX) when other users may read or write it
    (mode ``o+r``/``o+w``/``g+w``): a token anyone on the board can read protects nothing.
    """
    p = Path(path)
    name = str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise TokenFileError(name, "no such token file (make one: skinedge serve --help, or docs/kiosk.md)") from None
    except OSError as exc:
        raise TokenFileError(name, f"cannot read the token file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise TokenFileError(name, "the token file is not a regular file")
    if os.name == "posix" and st.st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        raise TokenFileError(name, f"the token file is readable or writable by other users (mode "
                                   f"{stat.S_IMODE(st.st_mode):o}): run chmod 600 {name}")
    if st.st_size > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(name, f"the token file is {st.st_size} bytes: a token is one line of text")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(name, f"cannot read the token file ({exc})") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise TokenFileError(name, "the token file is empty")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise TokenFileError(name, "the token has spaces or control characters in it")
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenFileError(name, f"the token is {len(token)} characters; at least {MIN_TOKEN_CHARS} are needed "
                                   "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def write_token_file(path: str | os.PathLike, token: str | None = None) -> str:
    """Write a new token file (mode 0600, created exclusively: an existing file is never overwritten)."""
    token = token or new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


class FailureLimiter:
    """Slows down clients that keep failing to authenticate.

    After ``free`` failures in a row, each further failure locks the client out for
    ``base_s * 2**(n - free)`` seconds (at most ``max_s``); while locked out, its attempts are refused without
    being checked. A client's count is forgotten after ``forget_s`` without failures, or at a success.
    At most ``max_clients`` are remembered (the least recently failing are dropped first).
    """

    def __init__(self, *, free: int = 5, base_s: float = 1.0, max_s: float = 60.0, forget_s: float = 900.0,
                 max_clients: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base_s, self.max_s, self.forget_s = free, base_s, max_s, forget_s
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, tuple[int, float, float]] = OrderedDict()  # failures, last, locked until
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next attempt is checked (0: go ahead)."""
        now = self._clock()
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return 0.0
            failures, last, until = entry
            if now - last > self.forget_s:
                del self._clients[client]
                return 0.0
            return max(0.0, until - now)

    def failed(self, client: str) -> float:
        """Record a failure; returns the lockout it earns (0 while within the free failures)."""
        now = self._clock()
        with self._lock:
            failures, last, _ = self._clients.pop(client, (0, now, 0.0))
            if now - last > self.forget_s:
                failures = 0
            failures += 1
            over = failures - self.free
            lockout = 0.0 if over <= 0 else min(self.max_s, self.base_s * 2.0 ** (over - 1))
            self._clients[client] = (failures, now, now + lockout)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            return lockout

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        with self._lock:
            self._clients.pop(client, None)

    def __len__(self) -> int:
        return len(self._clients)


@dataclass(frozen=True)
class Decision:
    """What :meth:`Authenticator.check` found: ``ok``, or why not and how long to wait (``retry_after``)."""

    ok: bool
    reason: str = ""
    retry_after: float = 0.0
    via: str = ""  # "bearer" or "cookie" when ok


class Authenticator:
    """Checks requests against one token; keeps the page's sessions.

    Args:
        token: the shared secret (from :func:`load_token`).
        secure_cookie: mark the session cookie ``Secure`` (when serving HTTPS).
        limiter: the failure limiter (a default one when None).
    """

    def __init__(self, token: str, *, secure_cookie: bool = False, limiter: FailureLimiter | None = None,
                 session_ttl_s: float = SESSION_TTL_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"a token needs at least {MIN_TOKEN_CHARS} characters")
        self._token = token.encode("utf-8")
        self.secure_cookie = secure_cookie
        self.limiter = limiter if limiter is not None else FailureLimiter()  # (an empty one is falsy)
        self.session_ttl_s = session_ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[bytes, float] = OrderedDict()  # sha256(session id) -> expiry
        self._lock = threading.Lock()

    def token_matches(self, candidate: str) -> bool:
        """Constant-time comparison of ``candidate`` with the token."""
        return hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), self._token)

    def check(self, headers: Mapping[str, str], client: str) -> Decision:
        """Is this request allowed? ``headers`` need a ``get`` (``http.client.HTTPMessage`` works);
        ``client`` is the peer address the limiter counts failures against."""
        wait = self.limiter.retry_after(client)
        if wait > 0:
            return Decision(False, "too many failed attempts from this address; wait before trying again", wait)
        auth = headers.get("Authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip() and self.token_matches(value.strip()):
                self.limiter.succeeded(client)
                return Decision(True, via="bearer")
            return self._failed(client, "wrong token" if scheme.lower() == "bearer"
                                else "the Authorization header must be 'Bearer <token>'")
        session = session_id_from(headers.get("Cookie"))
        if session is not None:
            if self._session_valid(session):
                return Decision(True, via="cookie")
            # Not counted as a failure: a stale cookie (after a restart) is no guess at 256 random bits.
            return Decision(False, "the session has expired or is unknown: sign in again")
        return Decision(False, "sign in, or send Authorization: Bearer <token>")

    def _failed(self, client: str, reason: str) -> Decision:
        return Decision(False, reason, self.limiter.failed(client))

    def sign_in(self, candidate: str, client: str) -> tuple[Decision, str | None]:
        """Check ``candidate`` (the token typed on the page); on success, a new session and its
        ``Set-Cookie`` value."""
        wait = self.limiter.retry_after(client)
        if wait > 0:
            return Decision(False, "too many failed attempts from this address; wait before trying again", wait), None
        if not self.token_matches(candidate):
            return self._failed(client, "wrong token"), None
        self.limiter.succeeded(client)
        return Decision(True, via="sign-in"), self.set_cookie(self.new_session())

    def new_session(self) -> str:
        """A new random session id, remembered until it expires (the oldest is forgotten beyond the cap)."""
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._sessions[_digest(sid)] = now + self.session_ttl_s
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return sid

    def end_session(self, cookie_header: str | None) -> None:
        """Forget the session a ``Cookie`` header carries (sign out)."""
        sid = session_id_from(cookie_header)
        if sid is not None:
            with self._lock:
                self._sessions.pop(_digest(sid), None)

    def _session_valid(self, sid: str) -> bool:
        key, now = _digest(sid), self._clock()
        with self._lock:
            expiry = self._sessions.get(key)
            if expiry is None:
                return False
            if expiry < now:
                del self._sessions[key]
                return False
            return True

    def set_cookie(self, sid: str) -> str:
        """The ``Set-Cookie`` value for session ``sid``: HttpOnly, SameSite=Strict, Secure over HTTPS."""
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE_NAME}={sid}; Path=/; Max-Age={int(self.session_ttl_s)}; HttpOnly; SameSite=Strict{secure}"

    def clear_cookie(self) -> str:
        """The ``Set-Cookie`` value that removes the session cookie from the browser."""
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"


def session_id_from(cookie_header: str | None) -> str | None:
    """The session id in a ``Cookie`` header, or None (absent or malformed)."""
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


def _digest(sid: str) -> bytes:
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).digest()
