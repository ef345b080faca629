"""The versioned envelope every serialised crossfed crypto object travels in.

Layout (all integers big-endian)::

    magic (4 bytes) | format version (u16) | header length (u32) | header (UTF-8 JSON)
    | blob count (u32) | for each blob: length (u32) | bytes

The header says what the object is (kind, preset, fingerprint, shapes, round);
the blobs are TenSEAL serialisations. Every length is checked against the data
actually present and against caller-supplied bounds *before* anything is
parsed or allocated, so truncated, padded or oversized input fails with
:class:`~crypto.errors.MalformedDataError`, never with a crash.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from crypto.constants import FORMAT_VERSION, MAX_HEADER_BYTES
from crypto.errors import MalformedDataError

__all__ = ["pack_envelope", "unpack_envelope"]

_PREFIX = struct.Struct(">4sHI")
_U32 = struct.Struct(">I")


def pack_envelope(magic: bytes, header: dict[str, Any], blobs: list[bytes]) -> bytes:
    """Serialise ``header`` and ``blobs`` behind ``magic`` and the format version."""
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    parts = [_PREFIX.pack(magic, FORMAT_VERSION, len(head)), head, _U32.pack(len(blobs))]
    for blob in blobs:
        parts.append(_U32.pack(len(blob)))
        parts.append(blob)
    return b"".join(parts)


def unpack_envelope(
    magic: bytes,
    data: bytes,
    *,
    max_blobs: int,
    max_blob_bytes: int,
) -> tuple[dict[str, Any], list[bytes]]:
    """Parse an envelope, checking magic, version and every length.

    Parameters
    ----------
    magic:
        The expected first four bytes (which kind of object this must be).
    data:
        The serialised object.
    max_blobs, max_blob_bytes:
        Bounds checked before any blob is sliced out.

    Raises
    ------
    MalformedDataError
        On a wrong magic or version, a truncated or padded input, a bound
        exceeded, or a header that is not a JSON object.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedDataError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise MalformedDataError(f"truncated: {len(view)} bytes is shorter than the prefix")
    found_magic, version, head_len = _PREFIX.unpack_from(view, 0)
    if found_magic != magic:
        raise MalformedDataError(f"wrong magic {found_magic!r}, expected {magic!r}")
    if version != FORMAT_VERSION:
        raise MalformedDataError(
            f"format version {version} is not supported (this build reads {FORMAT_VERSION})"
        )
    if head_len > MAX_HEADER_BYTES:
        raise MalformedDataError(f"header of {head_len} bytes exceeds {MAX_HEADER_BYTES}")
    offset = _PREFIX.size
    if offset + head_len + _U32.size > len(view):
        raise MalformedDataError("truncated inside the header")
    try:
        header = json.loads(bytes(view[offset : offset + head_len]).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError: also int digit limit, bad UTF-8
        raise MalformedDataError(f"header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise MalformedDataError("header is not a JSON object")
    offset += head_len
    (count,) = _U32.unpack_from(view, offset)
    offset += _U32.size
    if count > max_blobs:
        raise MalformedDataError(f"{count} ciphertext blobs exceed the bound of {max_blobs}")
    blobs: list[bytes] = []
    for index in range(count):
        if offset + _U32.size > len(view):
            raise MalformedDataError(f"truncated before blob {index}")
        (size,) = _U32.unpack_from(view, offset)
        offset += _U32.size
        if size > max_blob_bytes:
            raise MalformedDataError(
                f"blob {index} of {size} bytes exceeds the bound of {max_blob_bytes}"
            )
        if offset + size > len(view):
            raise MalformedDataError(f"truncated inside blob {index}")
        blobs.append(bytes(view[offset : offset + size]))
        offset += size
    if offset != len(view):
        raise MalformedDataError(f"{len(view) - offset} unexpected trailing bytes")
    return header, blobs
