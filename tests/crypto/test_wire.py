"""The versioned envelope: round trips, bounds, trailing bytes, versions."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import MalformedDataError
from crypto.constants import FORMAT_VERSION, MAX_HEADER_BYTES, UPDATE_MAGIC
from crypto.wire import pack_envelope, unpack_envelope

MAGIC = b"TEST"

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
HEADERS = st.dictionaries(st.text(), JSON_VALUES, max_size=6)
BLOBS = st.lists(st.binary(max_size=200), max_size=6)


def unpack(data: Any, *, max_blobs: int = 16, max_blob_bytes: int = 1 << 16) -> Any:
    return unpack_envelope(MAGIC, data, max_blobs=max_blobs, max_blob_bytes=max_blob_bytes)


def raw_envelope(head: bytes, blobs: list[bytes], *, version: int = FORMAT_VERSION) -> bytes:
    parts = [struct.pack(">4sHI", MAGIC, version, len(head)), head, struct.pack(">I", len(blobs))]
    for blob in blobs:
        parts += [struct.pack(">I", len(blob)), blob]
    return b"".join(parts)


@settings(max_examples=200, deadline=None)
@given(header=HEADERS, blobs=BLOBS)
def test_pack_unpack_round_trip(header: dict[str, Any], blobs: list[bytes]) -> None:
    data = pack_envelope(MAGIC, header, blobs)
    assert data[:4] == MAGIC
    assert struct.unpack(">H", data[4:6])[0] == FORMAT_VERSION
    assert unpack(data) == (header, blobs)
    assert unpack(bytearray(data)) == (header, blobs)
    assert unpack(memoryview(data)) == (header, blobs)


@settings(max_examples=100, deadline=None)
@given(header=HEADERS, blobs=BLOBS, extra=st.binary(min_size=1, max_size=64))
def test_trailing_bytes_are_refused(
    header: dict[str, Any], blobs: list[bytes], extra: bytes
) -> None:
    with pytest.raises(MalformedDataError, match="trailing"):
        unpack(pack_envelope(MAGIC, header, blobs) + extra)


@settings(max_examples=100, deadline=None)
@given(header=HEADERS, blobs=BLOBS.filter(bool), data=st.data())
def test_truncation_anywhere_is_refused(
    header: dict[str, Any], blobs: list[bytes], data: st.DataObject
) -> None:
    packed = pack_envelope(MAGIC, header, blobs)
    cut = data.draw(st.integers(0, len(packed) - 1))
    with pytest.raises(MalformedDataError):
        unpack(packed[:cut])


def test_blob_count_bound() -> None:
    blobs = [b"x"] * 5
    assert unpack(pack_envelope(MAGIC, {}, blobs), max_blobs=5)[1] == blobs
    with pytest.raises(MalformedDataError, match="exceed"):
        unpack(pack_envelope(MAGIC, {}, blobs), max_blobs=4)


def test_blob_size_bound() -> None:
    blobs = [b"a" * 10, b"b" * 100]
    assert unpack(pack_envelope(MAGIC, {}, blobs), max_blob_bytes=100)[1] == blobs
    with pytest.raises(MalformedDataError, match="exceeds"):
        unpack(pack_envelope(MAGIC, {}, blobs), max_blob_bytes=99)


def test_a_huge_declared_blob_is_refused_before_allocation() -> None:
    data = raw_envelope(b"{}", [])[:-4] + struct.pack(">II", 1, 0xFFFFFFFF)
    with pytest.raises(MalformedDataError):
        unpack(data, max_blob_bytes=1 << 40)
    with pytest.raises(MalformedDataError):  # and a huge blob count
        unpack(raw_envelope(b"{}", [])[:-4] + struct.pack(">I", 0xFFFFFFFF), max_blobs=1 << 40)


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, 0xFFFF])
def test_other_format_versions_are_refused(version: int) -> None:
    with pytest.raises(MalformedDataError, match="version"):
        unpack(raw_envelope(b"{}", [b"blob"], version=version))
    assert unpack(raw_envelope(b"{}", [b"blob"]))[1] == [b"blob"]


def test_the_wrong_magic_is_refused() -> None:
    data = pack_envelope(UPDATE_MAGIC, {"a": 1}, [])
    with pytest.raises(MalformedDataError, match="magic"):
        unpack(data)


def test_an_oversized_header_length_is_refused_unparsed() -> None:
    data = struct.pack(">4sHI", MAGIC, FORMAT_VERSION, MAX_HEADER_BYTES + 1) + b"{}"
    with pytest.raises(MalformedDataError, match="header"):
        unpack(data)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",  # not UTF-8
        b"[1, 2]",
        b'"text"',
        b"null",
        b"1" * 5000,  # beyond Python's int digit limit: a ValueError, not a JSONDecodeError
        b'{"n": ' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,  # recursion
    ],
)
def test_a_header_that_is_not_a_json_object_is_refused(head: bytes) -> None:
    with pytest.raises(MalformedDataError):
        unpack(raw_envelope(head, []))


@pytest.mark.parametrize("data", ["text", None, 12, [b"XFDU"]])
def test_non_bytes_input_is_refused(data: object) -> None:
    with pytest.raises(MalformedDataError):
        unpack(data)
