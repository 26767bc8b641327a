"""Reading the metadata archive appended to a model without importing :mod:`zipfile`.

``zipfile`` pulls in shutil, bz2, lzma and more: about 5 ms of every cold start, for an archive that
skinedge writes itself with a handful of stored (uncompressed) entries. :func:`read_stored_zip` reads
exactly that kind of archive with :mod:`struct` and gives up (returns None) on anything else: compressed,
encrypted or ZIP64 entries, extra fields, odd names, and every inconsistency. The caller then hands the
bytes to ``zipfile``, so damaged and foreign archives are judged, and worded, exactly as before. When it
does return, ``zipfile`` would have found the same entries with the same bytes: the end record is located
the way ``zipfile`` locates it, and every check ``zipfile`` makes on the way (signatures, the version
needed to extract, local names, CRC-32) is made here too, or the archive is left to ``zipfile``.
"""

from __future__ import annotations

import struct
import zlib

_END = b"PK\x05\x06"  # end of central directory record (22 bytes + comment)
_END64_LOCATOR = b"PK\x06\x07"  # precedes the end record in a ZIP64 archive
_CENTRAL = b"PK\x01\x02"  # central directory entry (46 bytes + name + extra + comment)
_LOCAL = b"PK\x03\x04"  # local file header (30 bytes + name + extra)
_END_SIZE, _CENTRAL_SIZE, _LOCAL_SIZE = 22, 46, 30
_UTF8_NAME = 0x800  # the only general-purpose flag a stored, unencrypted entry may carry here
_MAX_EXTRACT_VERSION = 63  # zipfile refuses newer versions
_STORED = 0


def read_stored_zip(data: bytes, max_entry_bytes: int) -> tuple[int, dict[str, bytes]] | None:
    """``(offset where the archive starts in data, {name: bytes})`` for an archive of stored entries.

    None when ``data`` ends in no such archive, or in anything this reader does not fully check (an
    entry above ``max_entry_bytes`` included): read it with ``zipfile`` then.
    """
    end = _find_end(data)
    if end is None or data[end - 20 : end - 16] == _END64_LOCATOR:
        return None
    cd_size, cd_offset = struct.unpack_from("<LL", data, end + 12)
    cd_start = end - cd_size  # zipfile's start_dir: the archive may follow other bytes (the flatbuffer)
    concat = cd_start - cd_offset
    if cd_start < 0:
        return None
    entries: list[tuple[bytes, int, int, int]] = []  # name, local header offset, size, CRC-32
    pos = cd_start
    while pos < end:
        if pos + _CENTRAL_SIZE > end or data[pos : pos + 4] != _CENTRAL:
            return None
        (extract_version, flags, method, _time, _date, crc, csize, usize, name_len, extra_len, comment_len,
         _disk, _internal, _external, local) = struct.unpack_from("<2xBxHHHHLLLHHHHHLL", data, pos + 4)
        name = data[pos + _CENTRAL_SIZE : pos + _CENTRAL_SIZE + name_len]
        pos += _CENTRAL_SIZE + name_len + extra_len + comment_len
        if (pos > end or extract_version > _MAX_EXTRACT_VERSION or flags & ~_UTF8_NAME or method != _STORED
                or extra_len or csize != usize or usize > max_entry_bytes or not _plain_name(name)):
            return None
        entries.append((name, local + concat, csize, crc))
    if pos != end or not entries:
        return None
    files: dict[str, bytes] = {}
    for name, header, size, crc in entries:
        if header < 0 or header + _LOCAL_SIZE > cd_start or data[header : header + 4] != _LOCAL:
            return None
        name_len, extra_len = struct.unpack_from("<HH", data, header + 26)
        if data[header + _LOCAL_SIZE : header + _LOCAL_SIZE + name_len] != name:
            return None
        start = header + _LOCAL_SIZE + name_len + extra_len
        payload = data[start : start + size]
        if start + size > cd_start or zlib.crc32(payload) != crc:
            return None
        files[name.decode("ascii")] = payload
    return min(header for _, header, _, _ in entries), files


def _find_end(data: bytes) -> int | None:
    """Offset of the end-of-central-directory record, found as zipfile finds it."""
    if len(data) >= _END_SIZE and data[-_END_SIZE : -_END_SIZE + 4] == _END and data[-2:] == b"\x00\x00":
        return len(data) - _END_SIZE
    end = data.rfind(_END, max(len(data) - (1 << 16) - _END_SIZE, 0))
    return end if end >= 0 and end + _END_SIZE <= len(data) else None


def _plain_name(name: bytes) -> bool:
    """Printable ASCII without backslashes: read the same under every encoding and OS zipfile considers."""
    return bool(name) and all(0x20 <= b < 0x7F for b in name) and b"\\" not in name
