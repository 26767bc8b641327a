"""Signing models on the build machine: an Ed25519 key pair, and ``MODEL.sig`` beside each model.

The board checks these signatures before it installs a model (``skinedge models install``); the format
is defined once, in :mod:`skinedge.kiosk.signing`. Keep the private key off the boards (and off the
repository): whoever holds it can put a model on every kiosk that trusts its public key.
"""

from __future__ import annotations

import os
from pathlib import Path

from skinedge.digest import sha256_hex
from skinedge.kiosk.signing import crypto, format_signature, key_id, message


def keygen(private_path: str | os.PathLike, public_path: str | os.PathLike | None = None) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair: the private key (PEM, PKCS#8, mode 0600, never overwritten) and the
    public key (PEM) the boards trust (default: ``<private>.pub``). Returns both paths and the key id."""
    _, serialization, ed25519 = crypto()
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_name(private_path.name + ".pub")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = key.public_key()
    public_path.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, key_id(public)


def load_private_key(path: str | os.PathLike):
    """An Ed25519 private key from a PEM file."""
    _, serialization, ed25519 = crypto()
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: the key is {type(key).__name__}, not Ed25519")
    return key


def sign_file(model: str | os.PathLike, private_key_path: str | os.PathLike,
              out: str | os.PathLike | None = None) -> Path:
    """Sign ``model`` with the key in ``private_key_path``; writes ``<model>.sig`` (or ``out``) and returns it."""
    key = load_private_key(private_key_path)
    model = Path(model)
    digest = sha256_hex(model.read_bytes())
    out = Path(out) if out else model.with_name(model.name + ".sig")
    out.write_text(format_signature(key_id(key.public_key()), digest, key.sign(message(digest))))
    return out
