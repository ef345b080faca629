"""Property tests: damaged bytes always raise a typed error, never crash or return numbers.

CKKS ciphertexts carry no integrity (TLS provides it): flipping bytes *inside*
a ciphertext body may give a valid ciphertext of other values, so that case is
only required not to crash. Truncation and damage to the envelope or header
must be refused with a :class:`~crypto.CryptoError`.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crypto import (
    PRESETS,
    CryptoError,
    EncryptedUpdate,
    MalformedDataError,
    Preset,
    PublicContext,
    SecretContext,
    decrypt_average,
    encrypt_update,
    load_context,
)
from crypto.constants import CONTEXT_MAGIC, FORMAT_VERSION, UPDATE_MAGIC
from crypto.wire import pack_envelope, unpack_envelope

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

PREFIX = struct.Struct(">4sHI")


def header_end(data: bytes) -> int:
    """Offset just past the header and the blob count: the envelope's structure."""
    (_, _, head_len) = PREFIX.unpack_from(data, 0)
    return PREFIX.size + head_len + 4


def split_update(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    return unpack_envelope(UPDATE_MAGIC, data, max_blobs=64, max_blob_bytes=1 << 22)


def split_context(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    return unpack_envelope(CONTEXT_MAGIC, data, max_blobs=1, max_blob_bytes=1 << 26)


def load_via_file(data: bytes) -> PublicContext | SecretContext:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "context.ctx"
        path.write_bytes(data)
        return load_context(path)


# --- updates --------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_refused(lean_public: PublicContext, data: bytes) -> None:
    with pytest.raises(CryptoError):
        EncryptedUpdate.from_bytes(lean_public, data)


@FUZZ
@given(rest=st.binary(max_size=2048))
def test_random_bytes_behind_a_valid_prefix_are_refused(
    lean_public: PublicContext, rest: bytes
) -> None:
    data = UPDATE_MAGIC + struct.pack(">H", FORMAT_VERSION) + rest
    with pytest.raises(CryptoError):
        EncryptedUpdate.from_bytes(lean_public, data)


@FUZZ
@given(fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_truncated_update_is_refused(
    lean_public: PublicContext, lean_update_bytes: bytes, fraction: float
) -> None:
    cut = int(fraction * len(lean_update_bytes))
    with pytest.raises(MalformedDataError):
        EncryptedUpdate.from_bytes(lean_public, lean_update_bytes[:cut])


@FUZZ
@given(cut=st.integers(min_value=0, max_value=600))
def test_an_update_truncated_in_its_envelope_is_refused(
    lean_public: PublicContext, lean_update_bytes: bytes, cut: int
) -> None:
    """Every cut in the first few hundred bytes (prefix, header, blob framing)."""
    with pytest.raises(MalformedDataError):
        EncryptedUpdate.from_bytes(lean_public, lean_update_bytes[:cut])


@FUZZ
@given(data=st.data())
def test_random_bytes_spliced_into_the_header_are_refused_or_harmless(
    lean_public: PublicContext, lean_update_bytes: bytes, data: st.DataObject
) -> None:
    """Header damage fails, except where it still spells a valid header.

    The header is not authenticated (TLS is), so a splice that happens to turn
    ``"count":1`` into ``"count":2`` or round 0 into 7 yields a valid update.
    It must never yield one that claims another key, kind, encoding or size.
    """
    original = EncryptedUpdate.from_bytes(lean_public, lean_update_bytes)
    end = header_end(lean_update_bytes)
    start = data.draw(st.integers(0, end - 1), label="start")
    length = data.draw(st.integers(1, min(16, end - start)), label="length")
    patch = data.draw(st.binary(min_size=length, max_size=length), label="patch")
    damaged = lean_update_bytes[:start] + patch + lean_update_bytes[start + length :]
    assume(damaged != lean_update_bytes)
    try:
        parsed = EncryptedUpdate.from_bytes(lean_public, damaged)
    except CryptoError:
        return
    assert parsed.fingerprint == original.fingerprint
    assert parsed.encoding == original.encoding
    assert parsed.shapes == original.shapes
    assert len(parsed.vectors) == len(original.vectors)


@FUZZ
@given(header=JSON)
def test_a_header_replaced_by_random_json_is_refused(
    lean_public: PublicContext, lean_update_bytes: bytes, header: Any
) -> None:
    _, blobs = split_update(lean_update_bytes)
    with pytest.raises(CryptoError):
        EncryptedUpdate.from_bytes(lean_public, pack_envelope(UPDATE_MAGIC, header, blobs))


def _still_valid(key: str, value: Any, original: dict[str, Any], max_count: int) -> bool:
    """Whether ``value`` in header field ``key`` still describes the same ciphertexts."""
    if key == "round":
        return type(value) is int and value >= 0
    if key == "count":
        return type(value) is int and 1 <= value <= max_count
    if key == "binding":  # any caller binding: lowercase hex of at most 64 bytes
        return isinstance(value, str) and re.fullmatch(r"(?:[0-9a-f]{2}){0,64}", value) is not None
    if key == "shapes":
        try:  # types first: math.prod of [10**10, "0"] would build a 10 GB string
            ok = all(type(d) is int and d >= 0 for shape in value for d in shape)
        except TypeError:
            return False
        sizes = [math.prod(shape) for shape in value] if ok else []
        return ok and sum(sizes) == sum(math.prod(s) for s in original["shapes"])
    return value == original[key]


@FUZZ
@given(
    key=st.sampled_from(["kind", "encoding", "fingerprint", "round", "count", "shapes", "binding"]),
    value=JSON,
)
def test_one_header_field_replaced_by_random_json_is_refused(
    lean_public: PublicContext, lean_update_bytes: bytes, key: str, value: Any
) -> None:
    header, blobs = split_update(lean_update_bytes)
    assume(not _still_valid(key, value, header, lean_public.preset.max_institutions))
    damaged = pack_envelope(UPDATE_MAGIC, {**header, key: value}, blobs)
    with pytest.raises(CryptoError):
        EncryptedUpdate.from_bytes(lean_public, damaged)


@FUZZ
@given(
    key=st.sampled_from(["kind", "encoding", "fingerprint", "round", "count", "shapes", "binding"])
)
def test_a_missing_header_field_is_refused(
    lean_public: PublicContext, lean_update_bytes: bytes, key: str
) -> None:
    header, blobs = split_update(lean_update_bytes)
    del header[key]
    with pytest.raises(MalformedDataError):
        EncryptedUpdate.from_bytes(lean_public, pack_envelope(UPDATE_MAGIC, header, blobs))


@FEW
@given(data=st.data())
def test_flips_inside_a_ciphertext_body_never_crash(
    lean_secret: SecretContext,
    lean_public: PublicContext,
    lean_update_bytes: bytes,
    data: st.DataObject,
) -> None:
    """No integrity is promised here, only a typed error or a well-formed update."""
    start = header_end(lean_update_bytes)
    damaged = bytearray(lean_update_bytes)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        position = data.draw(st.integers(start + 4, len(damaged) - 1), label="position")
        damaged[position] = data.draw(st.integers(0, 255), label="byte")
    try:
        parsed = EncryptedUpdate.from_bytes(lean_public, bytes(damaged))
        arrays, _ = decrypt_average(lean_secret, parsed)
    except CryptoError:
        return
    assert [a.shape for a in arrays] == [(5,), (3, 4)]


# --- contexts --------------------------------------------------------------------------------


LOADERS = {
    "public": PublicContext.from_bytes,
    "secret": SecretContext.from_bytes,
    "load_context": load_via_file,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@FEW
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_not_a_context(loader: str, data: bytes) -> None:
    with pytest.raises(CryptoError):
        LOADERS[loader](data)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@FEW
@given(rest=st.binary(max_size=2048))
def test_random_bytes_behind_a_context_prefix_are_refused(loader: str, rest: bytes) -> None:
    with pytest.raises(CryptoError):
        LOADERS[loader](CONTEXT_MAGIC + struct.pack(">H", FORMAT_VERSION) + rest)


@pytest.mark.parametrize("kind", ["public", "secret"])
@pytest.mark.parametrize("loader", sorted(LOADERS))
@FEW
@given(fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_truncated_context_is_refused(
    lean_secret: SecretContext, kind: str, loader: str, fraction: float
) -> None:
    full = lean_secret.to_bytes() if kind == "secret" else lean_secret.public().to_bytes()
    with pytest.raises(MalformedDataError):
        LOADERS[loader](full[: int(fraction * len(full))])


@pytest.mark.parametrize("loader", sorted(LOADERS))
@FEW
@given(header=JSON)
def test_a_context_header_replaced_by_random_json_is_refused(
    lean_secret: SecretContext, loader: str, header: Any
) -> None:
    _, blobs = split_context(lean_secret.to_bytes())
    with pytest.raises(CryptoError):
        LOADERS[loader](pack_envelope(CONTEXT_MAGIC, header, blobs))


@FUZZ
@given(
    base=st.sampled_from(["lean", "packed"]),
    field=st.sampled_from(
        [
            "name",
            "poly_modulus_degree",
            "coeff_mod_bit_sizes",
            "scale_bits",
            "codec",
            "max_institutions",
            "lanes",
            "lane_bits",
            "clip",
        ]
    ),
    value=JSON | st.integers(-3, 70),
)
def test_a_consistently_forged_preset_loads_as_usable_or_is_refused(
    secret_contexts: dict[str, SecretContext], base: str, field: str, value: Any
) -> None:
    """A preset field changed *and* the fingerprint recomputed: refused or fully usable.

    This reaches :meth:`Preset.from_dict` with arbitrary values; whatever it
    accepts must give a codec that encodes, sizes and decodes without an
    untyped error (it once accepted ``lanes=0`` and divided by zero later).
    """
    secret = secret_contexts[base]
    header, blobs = split_context(secret.to_bytes())
    forged_preset = {**header["preset"], field: value}
    try:
        preset = Preset.from_dict(forged_preset)
    except CryptoError:
        header["preset"] = forged_preset  # fingerprint left as is: refused either way
    else:
        key_id = bytes.fromhex(header["key_id"])
        header["preset"] = forged_preset
        header["fingerprint"] = SecretContext(
            preset, key_id, secret.tenseal_context, secret.check_key
        ).fingerprint
    data = pack_envelope(CONTEXT_MAGIC, header, blobs)
    try:
        loaded = SecretContext.from_bytes(data)
    except CryptoError:
        return
    values = np.linspace(-0.5, 0.5, 9)
    try:
        codec = loaded.preset.build_codec()
        codec.slot_count(9)
        codec.error_bound(1, 1.0, total_weight=1)
        update = encrypt_update(loaded, [values], 1, total_weight=1, contributor=next(NAMES))
        decrypt_average(loaded, update, total_weight=1)
    except CryptoError:
        pass


def test_a_context_with_the_wrong_magic_is_refused(lean_update_bytes: bytes) -> None:
    for loader in LOADERS.values():
        with pytest.raises(MalformedDataError, match="magic"):
            loader(lean_update_bytes)


def test_an_update_is_not_read_as_a_context_nor_a_context_as_an_update(
    lean_secret: SecretContext, lean_public: PublicContext
) -> None:
    with pytest.raises(MalformedDataError, match="magic"):
        EncryptedUpdate.from_bytes(lean_public, lean_secret.to_bytes())


def test_the_update_fixture_is_valid(lean_public: PublicContext, lean_update_bytes: bytes) -> None:
    """The fuzz tests damage a valid update: make sure it is one."""
    parsed = EncryptedUpdate.from_bytes(lean_public, lean_update_bytes)
    assert parsed.shapes == ((5,), (3, 4))
    assert PRESETS["lean"] == lean_public.preset
