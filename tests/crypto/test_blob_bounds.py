"""Ciphertext blobs: bounded before TenSEAL inflates them, and never trivial.

SEAL compresses serialisations (zstd); a CKKS ciphertext is uniformly random
modulo its primes, so a genuine one barely compresses, while a blob of zeros
shrinks to about a hundred bytes and inflates a thousandfold on load. And a
ciphertext whose second polynomial is zero (transparent) decrypts to whatever
its first polynomial encodes: a keyless sender's plaintext in disguise. The
blobs below are built by hand from SEAL's documented layout, as an attacker
would.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts
from tenseal import sealapi

from crypto import (
    PRESETS,
    EncryptedUpdate,
    MalformedDataError,
    PublicContext,
    SecretContext,
    aggregate,
    encrypt_update,
)
from crypto.blobs import min_blob_bytes
from crypto.constants import UPDATE_MAGIC
from crypto.wire import pack_envelope, unpack_envelope

PRESET_NAMES = ("standard", "lean", "packed")

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _seal_header(version: tuple[int, int], size: int, compression: int = 0) -> bytes:
    return struct.pack("<HBBBBHQ", 0xA15E, 0x10, *version, compression, 0, size)


def seal_version(update_bytes: bytes) -> tuple[int, int]:
    """SEAL's version as it writes it, read off a genuine update's first ciphertext."""
    _, blobs = unpack_envelope(UPDATE_MAGIC, update_bytes, max_blobs=4, max_blob_bytes=1 << 22)
    at = blobs[0].index(b"\x5e\xa1")  # SEAL's magic, little-endian
    return blobs[0][at + 3], blobs[0][at + 4]


def crafted_blob(
    context: PublicContext,
    values: int,
    version: tuple[int, int],
    *,
    polys: int = 2,
    first: np.ndarray | None = None,
) -> bytes:
    """A TenSEAL CKKS vector of ``values`` values: an uncompressed SEAL ciphertext of
    ``polys`` polynomials at the top level, all zero except, optionally, the first."""
    seal_context = context.tenseal_context.seal_context().data
    params = context.preset.params
    degree, primes = params.poly_modulus_degree, max(len(params.coeff_mod_bit_sizes) - 1, 1)
    words = np.zeros(polys * degree * primes, dtype="<u8")
    if first is not None:
        words[: first.size] = first
    data = words.tobytes()
    array = _seal_header(version, 16 + 8 + len(data)) + struct.pack("<Q", words.size) + data
    scale = float(2**params.scale_bits)
    members = (
        struct.pack("<4Q", *seal_context.first_parms_id())
        + b"\x01"  # NTT form, as CKKS requires
        + struct.pack("<QQQdQ", polys, degree, primes, scale, 1)
        + array
    )
    seal = _seal_header(version, 16 + len(members)) + members
    shape = _varint(values)
    return (
        b"\x0a"
        + _varint(len(shape))
        + shape
        + b"\x12"
        + _varint(len(seal))
        + seal
        + b"\x19"
        + struct.pack("<d", scale)
    )


def with_blob(update_bytes: bytes, blob: bytes) -> bytes:
    """``update_bytes`` with its (single) ciphertext replaced by ``blob``."""
    header, _ = unpack_envelope(UPDATE_MAGIC, update_bytes, max_blobs=4, max_blob_bytes=1 << 22)
    return pack_envelope(UPDATE_MAGIC, header, [blob])


def small_update(secret: SecretContext) -> bytes:
    total = 100 if secret.preset.codec == "packed" else None
    values = [np.linspace(-0.5, 0.5, 6)]
    return encrypt_update(secret, values, 3, total_weight=total, contributor=next(NAMES)).to_bytes()


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_genuine_fresh_and_summed_blobs_sit_above_the_bound(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
) -> None:
    """Measured: 131,217 bytes (lean, packed) and 331,071 to 331,158 (standard), fresh or summed."""
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    params = PRESETS[preset_name].params
    raw = 2 * params.poly_modulus_degree * params.ciphertext_modulus_bits // 8
    updates = [EncryptedUpdate.from_bytes(public, small_update(secret)) for _ in range(3)]
    summed = aggregate(public, updates)
    sizes = [len(v.serialize()) for u in (*updates, summed) for v in u.vectors]
    bound = min_blob_bytes(PRESETS[preset_name])
    assert bound < raw
    assert all(bound * 1.05 < size < 1.3 * raw for size in sizes), (bound, raw, sizes)


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_a_compressed_all_zero_ciphertext_is_refused_before_tenseal(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    vectors = EncryptedUpdate.from_bytes(public, small_update(secret)).vectors
    # SEAL's own zstd-compressed serialisation of an all-zero ciphertext.
    seal_context = public.tenseal_context.seal_context().data
    zero = sealapi.Ciphertext(seal_context)
    zero.resize(seal_context, seal_context.first_parms_id(), 2)
    zero.save(str(tmp_path / "zero"))
    compressed = (tmp_path / "zero").read_bytes()
    blob = (
        b"\x0a\x01"
        + _varint(vectors[0].size())
        + b"\x12"
        + _varint(len(compressed))
        + compressed
        + b"\x19"
        + struct.pack("<d", float(2**public.preset.params.scale_bits))
    )
    assert len(blob) < 200
    assert ts.ckks_vector_from(public.tenseal_context, blob).size() == vectors[0].size()  # before

    def never(*args: object) -> None:
        raise AssertionError("TenSEAL was handed a blob far too short to be a ciphertext")

    monkeypatch.setattr(ts, "ckks_vector_from", never)
    with pytest.raises(MalformedDataError, match="far shorter"):
        EncryptedUpdate.from_bytes(public, with_blob(small_update(secret), blob))


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_trivial_and_oversized_ciphertexts_are_refused(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
) -> None:
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    valid = small_update(secret)
    size = EncryptedUpdate.from_bytes(public, valid).vectors[0].size()
    params = PRESETS[preset_name].params
    chosen = np.random.default_rng(1).integers(0, 2**40, size=params.poly_modulus_degree)
    version = seal_version(valid)
    zero = crafted_blob(public, size, version)
    disguised = crafted_blob(public, size, version, first=chosen)  # c1 = 0: decrypts to c0
    three = crafted_blob(public, size, version, polys=3, first=chosen)
    # TenSEAL alone takes them all.
    for blob in (zero, disguised, three):
        assert ts.ckks_vector_from(public.tenseal_context, blob).size() == size
    for blob in (zero, disguised):
        with pytest.raises(MalformedDataError, match="trivial"):
            EncryptedUpdate.from_bytes(public, with_blob(valid, blob))
    with pytest.raises(MalformedDataError, match=r"not one fresh or summed|exceeds the bound"):
        EncryptedUpdate.from_bytes(public, with_blob(valid, three))


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_a_ciphertext_at_another_scale_is_refused_before_decryption(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
) -> None:
    """A ciphertext at twice the scale (made here with the key, as a colluding institution
    could; the aggregator can write the scale field into a genuine one's bytes): every slot
    would decode to half its value. Refused on load, before anything is decrypted."""
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    valid = small_update(secret)
    genuine = EncryptedUpdate.from_bytes(public, valid).vectors[0]
    scale = 2.0 ** (PRESETS[preset_name].params.scale_bits + 1)
    values = np.zeros(genuine.size()).tolist()
    rescaled = ts.ckks_vector(secret.tenseal_context, values, scale=scale).serialize()
    assert ts.ckks_vector_from(public.tenseal_context, rescaled).size() == genuine.size()
    with pytest.raises(MalformedDataError, match="scale"):
        EncryptedUpdate.from_bytes(public, with_blob(valid, rescaled))
    EncryptedUpdate.from_bytes(public, valid)  # the genuine one at the preset's scale loads
