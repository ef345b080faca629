"""The key split: a secret context for institutions, a public one for the aggregator.

Institutions share one :class:`SecretContext` (delivered in their provisioning
kit); the aggregator gets its :meth:`~SecretContext.public` counterpart, which
holds the CKKS parameters and nothing else: no secret key, no public, Galois or
relinearisation key. Summing ciphertexts needs none of them.

Each key generation draws a 32-byte key identifier from the operating system's
CSPRNG. The *fingerprint* is SHA-256 over a domain tag, the preset (parameters
and codec) and that identifier; every ciphertext carries it, so data made under
another federation's key or preset is refused by name instead of decrypting to
noise. The identifier names the key; it does not prove possession of it.

Key generation also draws the 32-byte *check key* (:mod:`crypto.check`) with
which institutions verify that an aggregate is exactly this round's sum. It is
stored in the secret file only: the public context, the aggregator's, never
holds it, and the fingerprint does not depend on it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from pathlib import Path

import tenseal as ts

from crypto.check import CHECK_KEY_BYTES
from crypto.constants import CONTEXT_MAGIC, FORMAT_VERSION
from crypto.errors import (
    CryptoError,
    MalformedDataError,
    SecretKeyPresentError,
    SecretKeyRequiredError,
)
from crypto.files import write_atomically
from crypto.hazmat.params import build_tenseal_context
from crypto.presets import DEFAULT_PRESET, Preset, get_preset
from crypto.wire import pack_envelope, unpack_envelope

__all__ = [
    "PublicContext",
    "SecretContext",
    "generate_secret_context",
    "load_context",
]

_FINGERPRINT_TAG = b"crossfed/context-fingerprint/v1\x00"
_MAX_CONTEXT_BYTES = 64 << 20
_VERSION_PREFIX = struct.Struct(">4sH")


def _fingerprint(preset: Preset, key_id: bytes) -> str:
    digest = hashlib.sha256(_FINGERPRINT_TAG)
    digest.update(repr(sorted(preset.to_dict().items())).encode())
    digest.update(key_id)
    return digest.hexdigest()


class _Context:
    """Shared parts of both context kinds; not part of the public API."""

    _kind = ""

    def __init__(self, preset: Preset, key_id: bytes, tenseal_context: ts.Context) -> None:
        self._preset = preset
        self._key_id = key_id
        self._ts = tenseal_context
        self._fingerprint = _fingerprint(preset, key_id)

    @property
    def preset(self) -> Preset:
        """The preset (parameters and codec) of this federation."""
        return self._preset

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 naming this federation's key and preset."""
        return self._fingerprint

    @property
    def tenseal_context(self) -> ts.Context:
        """The underlying TenSEAL context (hazmat)."""
        return self._ts

    def __repr__(self) -> str:
        name, short = type(self).__name__, self._fingerprint[:16]
        return f"{name}(preset={self._preset.name!r}, fingerprint={short}…)"

    def _serialise(self, *, secret: bool, check_key: bytes | None = None) -> bytes:
        blob = self._ts.serialize(
            save_public_key=False,
            save_secret_key=secret,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        header = {
            "kind": self._kind,
            "preset": self._preset.to_dict(),
            "key_id": self._key_id.hex(),
            "fingerprint": self._fingerprint,
        }
        if check_key is not None:
            header["check_key"] = check_key.hex()
        return pack_envelope(CONTEXT_MAGIC, header, [blob])

    @staticmethod
    def _parse(data: bytes) -> tuple[str, Preset, bytes, ts.Context, bytes | None]:
        _refuse_an_old_format(data)
        header, blobs = unpack_envelope(
            CONTEXT_MAGIC, data, max_blobs=1, max_blob_bytes=_MAX_CONTEXT_BYTES
        )
        try:
            kind = header["kind"]
            preset = Preset.from_dict(header["preset"])
            key_id = bytes.fromhex(header["key_id"])
            fingerprint = header["fingerprint"]
            check_hex = header.get("check_key")
            check_key = None if check_hex is None else bytes.fromhex(check_hex)
        except CryptoError as exc:
            raise MalformedDataError(f"context file has an invalid preset: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedDataError(f"context file header is incomplete: {exc!r}") from exc
        if kind not in ("secret", "public") or len(blobs) != 1 or len(key_id) != 32:
            raise MalformedDataError("context file header is inconsistent")
        if check_key is not None and len(check_key) != CHECK_KEY_BYTES:
            raise MalformedDataError("context file holds a check key of the wrong size")
        if fingerprint != _fingerprint(preset, key_id):
            raise MalformedDataError("context file fingerprint does not match its contents")
        try:
            context = ts.context_from(blobs[0])
        except Exception as exc:  # TenSEAL raises bare ValueError/RuntimeError
            raise MalformedDataError(f"context data is corrupt: {exc}") from exc
        return kind, preset, key_id, context, check_key


class PublicContext(_Context):
    """The aggregator's context: parameters only, able to sum but never to decrypt."""

    _kind = "public"

    def __init__(self, preset: Preset, key_id: bytes, tenseal_context: ts.Context) -> None:
        if tenseal_context.has_secret_key():
            raise SecretKeyPresentError(
                "refusing a context that holds a secret key where a public one is required"
            )
        super().__init__(preset, key_id, tenseal_context)

    def to_bytes(self) -> bytes:
        """Serialise (format version, preset, key identifier, fingerprint)."""
        return self._serialise(secret=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicContext:
        """Load a public context; refuses one that holds a secret key.

        Raises
        ------
        SecretKeyPresentError
            The data is a secret context (the aggregator must never hold one).
        MalformedDataError
            The data is not a valid context.
        """
        kind, preset, key_id, context, check_key = cls._parse(data)
        if kind == "secret" or context.has_secret_key() or check_key is not None:
            raise SecretKeyPresentError(
                "this file holds a secret key: the aggregator takes only the public context"
            )
        return cls(preset, key_id, context)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the context to ``path`` (mode 0644) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, self.to_bytes(), mode=0o644)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicContext:
        """Read a context written by :meth:`save`."""
        return cls.from_bytes(_read(path))


class SecretContext(_Context):
    """An institution's context: encrypts, decrypts, checks aggregates. Never leaves it.

    Parameters
    ----------
    preset, key_id, tenseal_context:
        As for every context; the TenSEAL context must hold the secret key.
    check_key:
        The federation's 32-byte aggregate check key (:mod:`crypto.check`).
    """

    _kind = "secret"

    def __init__(
        self, preset: Preset, key_id: bytes, tenseal_context: ts.Context, check_key: bytes
    ) -> None:
        if not tenseal_context.has_secret_key():
            raise SecretKeyRequiredError("a secret context needs a secret key")
        if not isinstance(check_key, bytes) or len(check_key) != CHECK_KEY_BYTES:
            raise SecretKeyRequiredError(
                f"a secret context needs a {CHECK_KEY_BYTES}-byte aggregate check key"
            )
        super().__init__(preset, key_id, tenseal_context)
        self._check_key = check_key

    @property
    def check_key(self) -> bytes:
        """The aggregate check key (secret: only :mod:`crypto.update` needs it)."""
        return self._check_key

    def public(self) -> PublicContext:
        """The matching public context for the aggregator (parameters only)."""
        blob = self._ts.serialize(
            save_public_key=False,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        return PublicContext(self._preset, self._key_id, ts.context_from(blob))

    def to_bytes(self) -> bytes:
        """Serialise including the secret key and the check key: handle as a secret."""
        return self._serialise(secret=True, check_key=self._check_key)

    @classmethod
    def from_bytes(cls, data: bytes) -> SecretContext:
        """Load a secret context.

        Raises
        ------
        SecretKeyRequiredError
            The data is a public context.
        MalformedDataError
            The data is not a valid context.
        """
        kind, preset, key_id, context, check_key = cls._parse(data)
        if kind != "secret" or not context.has_secret_key():
            raise SecretKeyRequiredError("this is a public context: it holds no secret key")
        if check_key is None:
            raise MalformedDataError("this secret context holds no aggregate check key")
        return cls(preset, key_id, context, check_key)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the context to ``path`` with mode 0600 from creation on."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, self.to_bytes(), mode=0o600)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SecretContext:
        """Read a context written by :meth:`save`."""
        return cls.from_bytes(_read(path))


def generate_secret_context(preset: str | Preset = DEFAULT_PRESET) -> SecretContext:
    """Generate a fresh federation key under ``preset`` (a name or a :class:`Preset`)."""
    chosen = get_preset(preset) if isinstance(preset, str) else preset
    return SecretContext(
        chosen,
        secrets.token_bytes(32),
        build_tenseal_context(chosen.params),
        secrets.token_bytes(CHECK_KEY_BYTES),
    )


def load_context(path: str | os.PathLike[str]) -> PublicContext | SecretContext:
    """Load whichever kind of context ``path`` holds."""
    data = _read(path)
    _refuse_an_old_format(data)
    header, _ = unpack_envelope(CONTEXT_MAGIC, data, max_blobs=1, max_blob_bytes=_MAX_CONTEXT_BYTES)
    if header.get("kind") == "secret":
        return SecretContext.from_bytes(data)
    return PublicContext.from_bytes(data)


def _refuse_an_old_format(data: bytes) -> None:
    """Name the remedy for a context file written before the current format."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < _VERSION_PREFIX.size:
        return  # unpack_envelope gives the precise refusal
    magic, version = _VERSION_PREFIX.unpack_from(data, 0)
    if magic == CONTEXT_MAGIC and 0 < version < FORMAT_VERSION:
        raise MalformedDataError(
            f"this context file has format version {version}, from before crossfed's "
            f"aggregate check key (version {FORMAT_VERSION}); regenerate the federation kit "
            "(crossfed kit create) and give every party its new files"
        )


def _read(path: str | os.PathLike[str]) -> bytes:
    target = Path(path)
    try:
        size = target.stat().st_size
        if size > _MAX_CONTEXT_BYTES:
            raise MalformedDataError(f"{target}: {size} bytes is too large for a context file")
        return target.read_bytes()
    except OSError as exc:
        raise CryptoError(f"cannot read context file {target}: {exc.strerror}") from exc
