"""SHA-256 of model files, with OpenSSL's implementation when this Python has it.

Every model load hashes the whole file (2.8 MB for the bundled model). CPython's built-in SHA-256 takes
~13 ms of each cold start for that on the development machine; OpenSSL's (SHA extensions or NEON
assembly) takes ~3 ms plus ~3 ms to load ``_hashlib``, for ~3.6 MiB more resident memory, which the
64 MB budget of a small board allows (docs/benchmarks.md, suite 5). Both give the same digest.
"""

from __future__ import annotations

try:
    from _hashlib import openssl_sha256 as _sha256  # what hashlib.sha256 is, without hashlib's other imports
except ImportError:  # pragma: no cover - Python built without OpenSSL
    try:  # Python >= 3.12
        from _sha2 import sha256 as _sha256
    except ImportError:  # Python 3.10 and 3.11
        from _sha256 import sha256 as _sha256


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of ``data`` (identical to ``hashlib.sha256(data).hexdigest()``)."""
    return _sha256(data).hexdigest()
