"""Typed errors of the CKKS layer.

Every failure the layer can detect has its own class, named for the outcome, so
callers can act on it (drop a reply, refuse a file, stop a run). All derive from
:class:`CryptoError`. Third-party errors (TenSEAL, SEAL, ``struct``, ``json``) are
translated at the boundary with ``raise ... from exc``. Decryption failures are
one opaque error, :class:`DecryptionError`, on purpose; so is an aggregate that
fails its check value, :class:`IntegrityError`.
"""

from __future__ import annotations

__all__ = [
    "ContextMismatchError",
    "CryptoError",
    "DecryptionError",
    "HeaderRefusedError",
    "IntegrityError",
    "InvalidPeerKeyError",
    "InvalidWeightError",
    "MalformedDataError",
    "MaskingRefusedError",
    "NonFiniteInputError",
    "OverflowRiskError",
    "SecretKeyPresentError",
    "SecretKeyRequiredError",
    "ShapeMismatchError",
    "WeakParametersError",
]


class CryptoError(Exception):
    """Base class of every error raised by :mod:`crypto`."""


class WeakParametersError(CryptoError):
    """Parameters below 128-bit security (HE standard) or otherwise unusable."""


class ContextMismatchError(CryptoError):
    """Data was made under another context: fingerprint, preset or round differ."""


class SecretKeyRequiredError(CryptoError):
    """A secret operation (encrypt, decrypt) was asked of a public context."""


class SecretKeyPresentError(CryptoError):
    """A context that must be public (the aggregator's) holds a secret key."""


class MalformedDataError(CryptoError):
    """Bytes are not a valid crossfed object: wrong magic, truncated, corrupt, too big."""


class ShapeMismatchError(CryptoError):
    """Layer shapes or value counts differ from what was expected."""


class NonFiniteInputError(CryptoError):
    """An input array holds NaN or infinity."""


class InvalidWeightError(CryptoError):
    """An example count (weight) is not a positive integer within the federation's bound."""


class OverflowRiskError(CryptoError):
    """Values or institution counts exceed what the encoding can sum without overflow."""


class DecryptionError(CryptoError):
    """Decryption failed. Deliberately says nothing more."""


class IntegrityError(CryptoError):
    """An aggregate is not exactly this round's sum of its declared, distinct contributors.

    Raised before any decrypted value is returned. Its text is one of two fixed
    sentences (contributor list refused; check value refused) and never holds a
    decrypted value, a difference or a count, so an institution that reports it
    tells the aggregator nothing it did not already know.
    """


class HeaderRefusedError(IntegrityError):
    """An aggregate refused from its header alone, before anything of it was decrypted.

    Its contributor list is malformed, repeats a contributor or is shorter
    than required, or it declares another binding than the one expected. The
    outcome is decided by bytes the aggregator wrote, never by the secret key,
    so a caller that bounds key-dependent refusals (crossfed's refusal budget)
    need not count it. An :class:`IntegrityError`, with the same fixed texts.
    """


class InvalidPeerKeyError(CryptoError):
    """An agreement public key is malformed or of low order (its shared secret would be zero)."""


class MaskingRefusedError(CryptoError):
    """An institution refuses to mask or reveal for a contributor set.

    The set has fewer than three members, does not name this institution, names
    one whose agreement key it does not hold, or this round's self-mask seed
    was already revealed for another set (revealing two would let the
    aggregator and one institution subtract two sums).
    """
