"""Agreement keys and mask streams: pairwise masks that cancel in the sum.

Every institution holds an X25519 agreement key (Bernstein, "Curve25519: new
Diffie-Hellman speed records", PKC 2006); its 32-byte public key is listed in
every kit, the private key only in its own. Two institutions ``i`` and ``j``
derive the same *pair key*::

    k_ij = HKDF-SHA256(X25519(sk_i, pk_j), salt=_PAIR_SALT,
                       info=_PAIR_LABEL || sorted(name_i, name_j) || fingerprint)

and from it, per run, round, purpose (:data:`MASK_PURPOSES`: statistics,
training or evaluation, which share round numbers) and *contributor set* ``S``
(the institutions the aggregator declared for this aggregate), a ChaCha20
stream (:func:`crypto.primitives.keystream`) bound to ``SHA-256(sorted S)`` and
a kind label (pair or self mask). Institution ``i`` adds, per entry,
``sum_{j in S, j != i} sign(i, j) PRG(k_ij)`` with ``sign = +1`` when
``name_i < name_j`` and ``-1`` otherwise, so the masks of ``S`` cancel exactly
in the sum of its members (Bonawitz et al.,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS
2017). Value entries are uint32 words masked to ``B`` bits (unbiased, since
``2^B`` divides ``2^32``), the weight entry a whole uint32 word (modulo
``2^32``), check entries uint64 words reduced modulo the check prime ``P``
(bias below ``P / 2^64``).

Dropouts. Masks are bound to ``S``: if a member vanishes, the aggregator asks
the survivors ``S'`` (at least three) to send again, and each re-sends the
*same* quantised update (quantised once per run and round, never twice) under
masks bound to ``S'``, independent of those bound to ``S``. A "correction step"
in which survivors reveal their masks with the dropped party would let an
aggregator that did receive the "dropped" reply unmask it together with one
colluding institution; re-masking reveals no mask. But re-masking alone lets
the same pair subtract two *sums* (``S`` and ``S'`` differ by the "dropped"
party), so each institution also adds a *self mask* from a fresh seed per set
and reveals the seed of one set per round only (:mod:`crypto.masked`):
at most one of its replies can ever be unmasked.

Nothing here uses numpy's generators: every mask is a keyed ChaCha20 stream.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import InvalidPeerKeyError, MalformedDataError, MaskingRefusedError
from crypto.primitives import keystream

__all__ = [
    "AGREEMENT_KEY_BYTES",
    "MASK_PURPOSES",
    "MIN_CONTRIBUTORS",
    "AgreementKey",
    "MaskShape",
    "canonical_public_key",
    "check_purpose",
    "contributor_set",
    "mask_entries",
    "set_digest",
]

#: Raw size of an X25519 public or private key.
AGREEMENT_KEY_BYTES = 32

#: Fewest contributors of a masked aggregate: with two, the sum reveals the other's update.
MIN_CONTRIBUTORS = 3

#: What a masked sum is for. One run has up to three masked sums with one round
#: number (the statistics of round 0, training and evaluation of round ``r``); every
#: mask stream and check value is bound to the purpose, so two vectors of one
#: institution never share a mask (their difference would cancel every mask) and a
#: sum of one purpose never verifies as another.
MASK_PURPOSES = ("stats", "train", "evaluate")

_PAIR_SALT = b"crossfed/pair-key/v1"
_PAIR_LABEL = b"crossfed/pair-key/v1\x00"
_MASK_LABEL = b"crossfed/mask/v1\x00"


class AgreementKey:
    """An institution's X25519 private agreement key (secret: its own kit only)."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> AgreementKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> AgreementKey:
        """Load a raw 32-byte private key.

        Raises
        ------
        MalformedDataError
            Not 32 bytes.
        """
        if not isinstance(raw, bytes) or len(raw) != AGREEMENT_KEY_BYTES:
            raise MalformedDataError(f"an agreement private key has {AGREEMENT_KEY_BYTES} bytes")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw private key: handle as a secret."""
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_bytes(self) -> bytes:
        """The raw 32-byte public key, for every kit."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def pair_key(
        self, own_name: str, peer_name: str, peer_public: bytes, fingerprint: str
    ) -> bytes:
        """``k_ij``: the 32-byte key this institution shares with ``peer_name``.

        Bound to both names and both public keys (sorted by name) and the
        federation's context fingerprint, so a key agreed in one federation,
        between other names or under another listed key is unrelated.

        Raises
        ------
        InvalidPeerKeyError
            ``peer_public`` is not 32 bytes or is a low-order point (the shared
            secret would be all zero: cryptography refuses it).
        MaskingRefusedError
            The two names are equal.
        """
        if own_name == peer_name:
            raise MaskingRefusedError("an institution has no pair key with itself")
        if not canonical_public_key(peer_public):
            raise InvalidPeerKeyError(
                f"the agreement key of {peer_name!r} is not a canonical {AGREEMENT_KEY_BYTES}-byte "
                "X25519 public key"
            )
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidPeerKeyError(
                f"the agreement key of {peer_name!r} is of low order: refused"
            ) from exc
        ends = sorted([(own_name, self.public_bytes().hex()), (peer_name, peer_public.hex())])
        info = _PAIR_LABEL + _canonical([[list(end) for end in ends], fingerprint])
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=_PAIR_SALT, info=info).derive(shared)


def contributor_set(names: Iterable[str]) -> tuple[str, ...]:
    """The canonical (sorted) contributor set; refuses repeats and fewer than three.

    Raises
    ------
    MaskingRefusedError
        A name repeats (also as a case or Unicode variant: ``Bank-A`` and
        ``bank-a`` are one institution), is not a non-empty string, or fewer than
        :data:`MIN_CONTRIBUTORS` names are given.
    """
    listed = list(names)
    if not all(isinstance(name, str) and name for name in listed):
        raise MaskingRefusedError("contributor names are non-empty strings")
    if len({_folded(name) for name in listed}) != len(listed):
        raise MaskingRefusedError(
            "a contributor set names an institution twice (names are compared "
            "case-folded and NFKC-normalised)"
        )
    if len(listed) < MIN_CONTRIBUTORS:
        raise MaskingRefusedError(
            f"a masked aggregate needs at least {MIN_CONTRIBUTORS} contributors, got {len(listed)}"
        )
    return tuple(sorted(listed))


def set_digest(members: Iterable[str]) -> bytes:
    """SHA-256 of the canonical contributor set (what the masks are bound to).

    Raises
    ------
    MaskingRefusedError
        Not a valid contributor set (:func:`contributor_set`).
    """
    return hashlib.sha256(_canonical(list(contributor_set(members)))).digest()


@dataclass(frozen=True)
class MaskShape:
    """How many entries of each kind one update masks, and their moduli.

    Attributes
    ----------
    values:
        Value entries, each masked modulo ``2^value_bits``.
    value_bits:
        ``B``, at most 32.
    weights:
        Weight entries, each masked modulo ``2^32``.
    tags:
        Check entries, each masked modulo ``tag_modulus``.
    tag_modulus:
        ``P``, the check prime (below ``2^32``).
    """

    values: int
    value_bits: int
    weights: int
    tags: int
    tag_modulus: int


def check_purpose(purpose: object) -> str:
    """``purpose`` if it is one of :data:`MASK_PURPOSES`.

    Raises
    ------
    MaskingRefusedError
        Any other value.
    """
    if not isinstance(purpose, str) or purpose not in MASK_PURPOSES:
        raise MaskingRefusedError(
            f"a masked sum's purpose is one of {', '.join(MASK_PURPOSES)}, got {purpose!r}"
        )
    return purpose


def mask_entries(
    key: bytes,
    shape: MaskShape,
    *,
    session: str,
    round_id: int,
    digest: bytes,
    purpose: str,
    kind: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One keyed stream's ``(values, weights, tags)`` masks, each in its modulus.

    ``key`` is a pair key (``kind="pair"``) or a self-mask seed
    (``kind="self"``); the stream is bound to run, round, the contributor
    set's digest, the sum's purpose (:data:`MASK_PURPOSES`) and the kind.

    Raises
    ------
    MaskingRefusedError
        ``purpose`` is not one of :data:`MASK_PURPOSES`.
    """
    check_purpose(purpose)
    info = _MASK_LABEL + _canonical([session, round_id, digest.hex(), purpose, kind])
    stream = keystream(key, info)
    raw = stream.update(bytes(4 * (shape.values + shape.weights) + 8 * shape.tags))
    words = np.frombuffer(raw, dtype="<u4", count=shape.values + shape.weights)
    values = (words[: shape.values] & np.uint32((1 << shape.value_bits) - 1)).astype(np.int64)
    weights = words[shape.values :].astype(np.int64)
    wide = np.frombuffer(raw, dtype="<u8", offset=4 * (shape.values + shape.weights))
    tags = (wide % np.uint64(shape.tag_modulus)).astype(np.int64)
    return values, weights, tags


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _folded(name: str) -> str:
    """``name`` as compared for uniqueness: NFKC-normalised, then case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


#: ``2^255 - 19``: X25519 public keys are residues below it, written little-endian.
_FIELD_PRIME = (1 << 255) - 19


def canonical_public_key(raw: object) -> bool:
    """Whether ``raw`` is the one canonical encoding of an X25519 public key.

    X25519 ignores the top bit of a public key and reduces ``u`` modulo
    ``2^255 - 19``, so one point has several byte strings: a key list that
    compares bytes would take ``K`` and ``K`` with bit 255 set as two keys of one
    party. Only ``u < 2^255 - 19`` with the top bit clear is accepted.
    """
    if not isinstance(raw, bytes) or len(raw) != AGREEMENT_KEY_BYTES:
        return False
    return int.from_bytes(raw, "little") < _FIELD_PRIME
