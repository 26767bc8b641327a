"""SHA-256 without loading OpenSSL.

``hashlib`` pulls in OpenSSL's libcrypto, about 3.6 MB of resident memory in a process whose whole
budget on a small board is ~64 MB; CPython's own built-in SHA-256 gives the same digest.
"""

from __future__ import annotations

try:  # Python >= 3.12
    from _sha2 import sha256 as _sha256
except ImportError:  # pragma: no cover - depends on the Python version
    try:  # Python 3.10 and 3.11
        from _sha256 import sha256 as _sha256
    except ImportError:  # builds without the built-in module
        from hashlib import sha256 as _sha256


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of ``data`` (identical to ``hashlib.sha256(data).hexdigest()``)."""
    return _sha256(data).hexdigest()
