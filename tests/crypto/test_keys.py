"""The key split: secret and public contexts, their files, modes and contents."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from crypto import (
    CryptoError,
    EncryptedUpdate,
    MalformedDataError,
    PublicContext,
    SecretContext,
    SecretKeyPresentError,
    SecretKeyRequiredError,
    aggregate,
    decrypt_average,
    encrypt_update,
    generate_secret_context,
    load_context,
)
from crypto.constants import CONTEXT_MAGIC
from crypto.wire import pack_envelope, unpack_envelope

PRESET_NAMES = ("standard", "lean", "packed")

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())


def blob_of(data: bytes) -> tuple[dict[str, object], bytes]:
    header, blobs = unpack_envelope(CONTEXT_MAGIC, data, max_blobs=1, max_blob_bytes=1 << 26)
    return header, blobs[0]


def test_a_saved_secret_context_is_mode_0600(lean_secret: SecretContext, tmp_path: Path) -> None:
    path = lean_secret.save(tmp_path / "kit" / "secret.ctx")  # parent folder is created
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_saving_over_a_world_readable_file_leaves_it_0600(
    lean_secret: SecretContext, tmp_path: Path
) -> None:
    path = tmp_path / "secret.ctx"
    path.write_bytes(b"old contents")
    path.chmod(0o644)
    lean_secret.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes() == lean_secret.to_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["secret.ctx"]  # no temporary left behind


def test_a_saved_public_context_is_world_readable(
    lean_public: PublicContext, tmp_path: Path
) -> None:
    path = lean_public.save(tmp_path / "public.ctx")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_files_load_as_their_own_kind_and_still_work(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    tmp_path: Path,
    rng: np.random.Generator,
) -> None:
    secret = secret_contexts[preset_name]
    secret_path = secret.save(tmp_path / "secret.ctx")
    public_path = secret.public().save(tmp_path / "public.ctx")

    public = PublicContext.load(public_path)
    assert isinstance(public, PublicContext)
    assert public.tenseal_context.has_secret_key() is False
    assert isinstance(load_context(public_path), PublicContext)
    reloaded = SecretContext.load(secret_path)
    assert reloaded.tenseal_context.has_secret_key() is True
    assert isinstance(load_context(secret_path), SecretContext)
    assert public.fingerprint == reloaded.fingerprint == secret.fingerprint
    assert public.preset == reloaded.preset == secret.preset
    assert reloaded.tenseal_context.global_scale == 2.0**secret.preset.params.scale_bits

    # Encrypt with the original and the reloaded key, sum with the loaded public context,
    # decrypt with either: one federation.
    total = 10 if secret.preset.codec == "packed" else None
    values = [rng.uniform(-0.9, 0.9, size=33) for _ in range(2)]
    first = encrypt_update(secret, [values[0]], 4, total_weight=total, contributor=next(NAMES))
    second = encrypt_update(reloaded, [values[1]], 6, total_weight=total, contributor=next(NAMES))
    received = [EncryptedUpdate.from_bytes(public, u.to_bytes()) for u in (first, second)]
    summed = aggregate(public, received)
    expected = (4 * values[0] + 6 * values[1]) / 10
    for ctx in (secret, reloaded):
        average, weight = decrypt_average(ctx, summed, total_weight=total)
        bound = ctx.preset.build_codec().error_bound(2, weight, total_weight=total)
        assert float(np.max(np.abs(average[0] - expected))) <= bound


def test_public_load_refuses_a_secret_file(lean_secret: SecretContext, tmp_path: Path) -> None:
    path = lean_secret.save(tmp_path / "secret.ctx")
    with pytest.raises(SecretKeyPresentError):
        PublicContext.load(path)
    with pytest.raises(SecretKeyPresentError):
        PublicContext.from_bytes(lean_secret.to_bytes())


def test_secret_load_refuses_a_public_file(lean_public: PublicContext, tmp_path: Path) -> None:
    path = lean_public.save(tmp_path / "public.ctx")
    with pytest.raises(SecretKeyRequiredError):
        SecretContext.load(path)
    with pytest.raises(SecretKeyRequiredError):
        SecretContext.from_bytes(lean_public.to_bytes())


def test_a_public_file_labelled_secret_is_still_refused(lean_public: PublicContext) -> None:
    """The kind in the header and the key in the blob must agree."""
    header, blob = blob_of(lean_public.to_bytes())
    relabelled = pack_envelope(CONTEXT_MAGIC, {**header, "kind": "secret"}, [blob])
    with pytest.raises(SecretKeyRequiredError):
        SecretContext.from_bytes(relabelled)
    with pytest.raises(SecretKeyRequiredError):
        load_context_bytes(relabelled)


def test_a_secret_blob_labelled_public_is_still_refused(lean_secret: SecretContext) -> None:
    header, blob = blob_of(lean_secret.to_bytes())
    relabelled = pack_envelope(CONTEXT_MAGIC, {**header, "kind": "public"}, [blob])
    with pytest.raises(SecretKeyPresentError):
        PublicContext.from_bytes(relabelled)


def load_context_bytes(data: bytes) -> PublicContext | SecretContext:
    """Route bytes through :func:`load_context` via a temporary file."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ctx"
        path.write_bytes(data)
        return load_context(path)


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_the_public_file_holds_no_secret_key(
    preset_name: str, secret_contexts: dict[str, SecretContext]
) -> None:
    secret = secret_contexts[preset_name]
    _, secret_blob = blob_of(secret.to_bytes())
    public_bytes = secret.public().to_bytes()
    _, public_blob = blob_of(public_bytes)
    # A CKKS secret key at N = 8192 is ~100 KiB of ring elements; parameters are bytes.
    assert len(public_bytes) < 2048
    assert len(secret_blob) > 50 * len(public_blob)
    assert secret_blob not in public_bytes
    # No 64-byte run of the key-bearing part of the secret blob appears in the public file.
    key_part = secret_blob[len(public_blob) :]
    assert not any(key_part[i : i + 64] in public_bytes for i in range(0, len(key_part) - 64, 64))
    reparsed = ts.context_from(public_blob)
    assert not reparsed.has_secret_key()
    assert not reparsed.has_galois_keys()
    assert not reparsed.has_relin_keys()


def test_repr_shows_no_key_material(lean_secret: SecretContext, lean_public: PublicContext) -> None:
    header, secret_blob = blob_of(lean_secret.to_bytes())
    for text in (repr(lean_secret), str(lean_secret), repr(lean_public)):
        assert len(text) < 120
        assert str(header["key_id"]) not in text
        assert secret_blob.hex()[:32] not in text
        assert lean_secret.preset.name in text
    assert repr(lean_secret).startswith("SecretContext(")


def test_contexts_refuse_the_wrong_kind_of_tenseal_context(lean_secret: SecretContext) -> None:
    header, _ = blob_of(lean_secret.to_bytes())
    key_id = bytes.fromhex(str(header["key_id"]))
    with pytest.raises(SecretKeyPresentError):
        PublicContext(lean_secret.preset, key_id, lean_secret.tenseal_context)
    public_ts = lean_secret.public().tenseal_context
    with pytest.raises(SecretKeyRequiredError):
        SecretContext(lean_secret.preset, key_id, public_ts, lean_secret.check_key)


def test_each_key_generation_is_a_new_federation() -> None:
    first, second = generate_secret_context("lean"), generate_secret_context("lean")
    assert first.fingerprint != second.fingerprint
    assert len(first.fingerprint) == 64
    int(first.fingerprint, 16)
    assert first.public().fingerprint == first.fingerprint
    assert generate_secret_context().preset.name == "lean"  # the default preset


def test_a_tampered_key_id_is_refused(lean_secret: SecretContext) -> None:
    header, blob = blob_of(lean_secret.to_bytes())
    other_id = ("00" if str(header["key_id"])[:2] != "00" else "11") + str(header["key_id"])[2:]
    with pytest.raises(MalformedDataError):
        SecretContext.from_bytes(
            pack_envelope(CONTEXT_MAGIC, {**header, "key_id": other_id}, [blob])
        )


def test_a_tampered_preset_is_refused(lean_secret: SecretContext) -> None:
    header, blob = blob_of(lean_secret.to_bytes())
    preset = dict(header["preset"])  # type: ignore[call-overload]
    preset["max_institutions"] = 64
    with pytest.raises(MalformedDataError):  # the fingerprint no longer matches
        SecretContext.from_bytes(pack_envelope(CONTEXT_MAGIC, {**header, "preset": preset}, [blob]))


def test_missing_or_unreadable_files_raise_the_typed_error(tmp_path: Path) -> None:
    with pytest.raises(CryptoError):
        load_context(tmp_path / "absent.ctx")
    with pytest.raises(CryptoError):
        SecretContext.load(tmp_path)  # a folder
    (tmp_path / "empty.ctx").write_bytes(b"")
    with pytest.raises(MalformedDataError):
        PublicContext.load(tmp_path / "empty.ctx")
