"""Detached Ed25519 signatures of model files: the one definition of what is signed and how it is written.

The build machine signs (``skinedge-tools sign``, :mod:`skinedge_tools.sign`); the board verifies
(:func:`verify_file`, used by ``skinedge models install``). The crypto is the ``cryptography`` package's
(OpenSSL): nothing here is hand-written, only the framing.

What is signed: ``MESSAGE_PREFIX + sha256(model file)`` (hex), so the signature covers every byte of the file
and cannot be mistaken for a signature of anything else. The signature file ``MODEL.sig`` is text::

    skinedge-signature-v1
    key 3f2a...           (key id: the first 16 hex digits of the SHA-256 of the raw 32-byte public key)
    sha256 9c1e...        (of the model file; informative: the check recomputes it)
    signature <base64 of the 64-byte Ed25519 signature>

Keys are PEM files (PKCS#8 private key, SubjectPublicKeyInfo public key), which OpenSSL reads too.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinedge.digest import sha256_hex
from skinedge.kiosk import KioskError

HEADER = "skinedge-signature-v1"
MESSAGE_PREFIX = b"skinedge model signature v1\x00"
MAX_SIG_BYTES = 4096


class SignatureError(KioskError):
    """A signature or key is missing, malformed, made with another key, or does not match the file."""


@dataclass(frozen=True)
class Signature:
    """A parsed signature file."""

    key_id: str
    sha256: str
    signature: bytes


def crypto() -> Any:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SignatureError("cryptography", "signature checks need the 'cryptography' package: "
                                             "pip install 'skinedge[kiosk]'") from None
    return InvalidSignature, serialization, ed25519


def message(sha256: str) -> bytes:
    """The bytes an Ed25519 key signs for a file whose SHA-256 is ``sha256`` (hex)."""
    return MESSAGE_PREFIX + sha256.encode("ascii")


def key_id(public_key: Any) -> str:
    """The short id of an Ed25519 public key: 16 hex digits of the SHA-256 of its raw bytes."""
    _, serialization, _ = crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def load_public_key(path: str | os.PathLike) -> Any:
    """An Ed25519 public key from a PEM file. Raises :class:`SignatureError`."""
    _, serialization, ed25519 = crypto()
    p = Path(path)
    try:
        key = serialization.load_pem_public_key(p.read_bytes())
    except FileNotFoundError:
        raise SignatureError(str(p), "no such public key file") from None
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(str(p), f"not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(str(p), f"the key is {type(key).__name__}, not Ed25519")
    return key


def format_signature(key: str, sha256: str, signature: bytes) -> str:
    """The text of a ``.sig`` file."""
    return f"{HEADER}\nkey {key}\nsha256 {sha256}\nsignature {base64.b64encode(signature).decode()}\n"


def parse_signature(text: bytes, source: str) -> Signature:
    """Parse a ``.sig`` file's bytes. Raises :class:`SignatureError` naming ``source``."""
    if len(text) > MAX_SIG_BYTES:
        raise SignatureError(source, "the signature file is too large to be one")
    try:
        lines = text.decode("ascii").strip().splitlines()
    except UnicodeDecodeError:
        raise SignatureError(source, "not a skinedge signature file (not ASCII text)") from None
    if not lines or lines[0].strip() != HEADER:
        raise SignatureError(source, f"not a skinedge signature file (the first line must be {HEADER!r})")
    fields = dict(line.strip().partition(" ")[::2] for line in lines[1:] if line.strip())
    try:
        sig = base64.b64decode(fields["signature"], validate=True)
        out = Signature(key_id=fields["key"].strip(), sha256=fields["sha256"].strip().lower(), signature=sig)
    except (KeyError, ValueError) as exc:
        raise SignatureError(source, f"malformed signature file ({type(exc).__name__}: {exc})") from None
    if len(out.signature) != 64:
        raise SignatureError(source, f"an Ed25519 signature is 64 bytes, this one is {len(out.signature)}")
    return out


def verify(data: bytes, sig_text: bytes, public_key: Any, *, source: str = "model") -> Signature:
    """Check that ``sig_text`` (a ``.sig`` file) is ``public_key``'s signature of ``data``.

    Raises:
        SignatureError: malformed, made with another key, or not a signature of these bytes.
    """
    invalid, _, _ = crypto()
    sig = parse_signature(sig_text, source + ".sig")
    expected_key = key_id(public_key)
    if sig.key_id != expected_key:
        raise SignatureError(source, f"signed with key {sig.key_id}, but this board trusts key {expected_key}")
    digest = sha256_hex(data)
    try:
        public_key.verify(sig.signature, message(digest))
    except invalid:
        raise SignatureError(source, "the signature does not match the file: it was altered after signing, "
                                     "or the signature belongs to another file") from None
    return sig
