"""Masked updates without a lattice ciphertext: pairwise masks plus an institutions-only pad.

What does CKKS itself cost? Against this project's adversaries (a malicious
aggregator, curious institutions, the aggregator with one of them) a masked
update needs two things: masks that cancel only in the sum of a declared set
(:mod:`crypto.masks`; against any one institution or the aggregator with one)
and something that hides the *sum* from the aggregator. CKKS provides the
second with a lattice ciphertext. The cheapest construction with the same
guarantees replaces it by a pad only institutions can remove (the idea of
FLASHE, Jiang et al. 2021, "FLASHE: Additively Symmetric Homomorphic
Encryption for Cross-Silo Federated Learning"): every institution adds
``PRG(k; run, round, set, purpose, its name)`` under a key ``k`` every
institution holds and the aggregator does not; the aggregator sums residues;
institutions subtract the contributors' pads and revealed self masks and
verify the same check values as the CKKS path (:func:`crypto.masked.verified_sum`).

Each value travels as a ``B``-bit residue in three bytes instead of a CKKS
slot: the benchmark's ``masked-pad`` row (``crossfed bench crypto``). It is a
measurement of what the lattice costs, not a federation encoding: the
federation's masked presets stay CKKS (a leaked pad key, unlike a leaked
CKKS context, would need every institution's kit replaced too, and FLASHE's
security rests on the pad key never reaching the aggregator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crypto.errors import ContextMismatchError, MalformedDataError
from crypto.keys import SecretContext
from crypto.lanes import WEIGHT_BITS
from crypto.masked import MaskedRound, verified_sum
from crypto.masks import MaskShape, mask_entries, set_digest
from crypto.quantised import MaskedSum, masked_codec
from crypto.wire import pack_envelope, unpack_envelope

__all__ = ["PaddedUpdate", "open_padded", "pad_update", "sum_padded"]

PADDED_MAGIC = b"XFDP"

Shapes = tuple[tuple[int, ...], ...]

#: Bytes per value residue on the wire (values have at most 24 bits).
_VALUE_BYTES = 3


@dataclass(frozen=True)
class PaddedUpdate:
    """Masked, padded entries of one institution or a sum of several (no key needed to add).

    Attributes
    ----------
    fingerprint, session, round_id, purpose, binding, shapes:
        As the CKKS update's header: what the entries are bound to.
    contributors:
        ``(name, nonce)`` of every contribution summed.
    value_bits, tag_modulus:
        The moduli of the value and check entries (the weight's is ``2^32``).
    values, weight, tags:
        The residues.
    """

    fingerprint: str
    session: str
    round_id: int
    purpose: str
    binding: bytes
    shapes: Shapes
    contributors: tuple[tuple[str, str], ...]
    value_bits: int
    tag_modulus: int
    values: np.ndarray
    weight: int
    tags: np.ndarray

    def to_bytes(self) -> bytes:
        """Header, then values in three little-endian bytes each, weight, check values."""
        header = {
            "fingerprint": self.fingerprint,
            "session": self.session,
            "round": self.round_id,
            "purpose": self.purpose,
            "binding": self.binding.hex(),
            "shapes": [list(s) for s in self.shapes],
            "contributors": [list(c) for c in self.contributors],
            "value_bits": self.value_bits,
            "tag_modulus": self.tag_modulus,
        }
        words = np.asarray(self.values, dtype="<u4").view(np.uint8).reshape(-1, 4)
        return pack_envelope(
            PADDED_MAGIC,
            header,
            [
                words[:, :_VALUE_BYTES].tobytes(),
                int(self.weight).to_bytes(4, "little"),
                np.asarray(self.tags, dtype="<u8").tobytes(),
            ],
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = 256 << 20) -> PaddedUpdate:
        """Parse one, checking every length and range before anything is used.

        Raises
        ------
        MalformedDataError
            Any field missing, of the wrong type or length, or a residue out of range.
        """
        header, blobs = unpack_envelope(PADDED_MAGIC, data, max_blobs=3, max_blob_bytes=max_bytes)
        try:
            shapes = tuple(tuple(int(d) for d in s) for s in header["shapes"])
            n_values = sum(int(np.prod(s)) for s in shapes)
            value_bits, modulus = int(header["value_bits"]), int(header["tag_modulus"])
            contributors = tuple((str(n), str(c)) for n, c in header["contributors"])
            update = cls(
                str(header["fingerprint"]),
                str(header["session"]),
                int(header["round"]),
                str(header["purpose"]),
                bytes.fromhex(str(header["binding"])),
                shapes,
                contributors,
                value_bits,
                modulus,
                _values(blobs[0], n_values),
                int.from_bytes(blobs[1], "little"),
                np.frombuffer(blobs[2], dtype="<u8").astype(np.int64),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedDataError(f"not a padded update: {exc}") from exc
        if (
            len(blobs[1]) != 4
            or not 8 <= value_bits <= 24
            or not 1 < modulus < 1 << 32
            or int(update.values.max(initial=0)) >> value_bits
            or int(update.tags.max(initial=0)) >= modulus
            or int(update.tags.min(initial=0)) < 0
        ):
            raise MalformedDataError("a padded update's residues are out of range")
        return update


def pad_update(
    context: SecretContext, masked: MaskedRound, pad_key: bytes, contributors: Sequence[str]
) -> PaddedUpdate:
    """``masked``'s entries for ``contributors``, with this institution's pad added.

    ``pad_key`` is the institutions' shared 32-byte pad key (never the aggregator's).
    """
    values, weight, tags = masked.masked_entries(contributors)
    name, nonce = masked.contributor
    members = tuple(sorted(contributors))
    codec = masked_codec(context)
    shape = MaskShape(values.size, codec.value_bits, 1, tags.size, codec.tag_modulus)
    pad = _pad(pad_key, shape, masked, members, name)
    return PaddedUpdate(
        context.fingerprint,
        masked.session,
        masked.round_id,
        masked.purpose,
        masked.binding,
        masked.shapes,
        ((name, nonce),),
        codec.value_bits,
        codec.tag_modulus,
        (values + pad[0]) % (1 << codec.value_bits),
        (weight + int(pad[1][0])) % (1 << WEIGHT_BITS),
        (tags + pad[2]) % codec.tag_modulus,
    )


def sum_padded(updates: Sequence[PaddedUpdate]) -> PaddedUpdate:
    """The aggregator's sum: residues added in their moduli; no key involved.

    Raises
    ------
    ContextMismatchError
        No updates, or updates bound to different runs, rounds, purposes,
        shapes, moduli or contexts, or one contributor twice.
    """
    if not updates:
        raise ContextMismatchError("nothing to sum")
    first = updates[0]
    bound = (first.fingerprint, first.session, first.round_id, first.purpose, first.binding)
    for update in updates:
        if (
            (update.fingerprint, update.session, update.round_id, update.purpose, update.binding)
            != bound
            or update.shapes != first.shapes
            or (update.value_bits, update.tag_modulus) != (first.value_bits, first.tag_modulus)
        ):
            raise ContextMismatchError("padded updates of different runs, rounds or encodings")
    contributors = tuple(c for u in updates for c in u.contributors)
    if len({name for name, _ in contributors}) != len(contributors):
        raise ContextMismatchError("one contributor summed twice")
    return PaddedUpdate(
        *bound[:4],
        first.binding,
        first.shapes,
        contributors,
        first.value_bits,
        first.tag_modulus,
        np.sum([u.values for u in updates], axis=0) % (1 << first.value_bits),
        sum(u.weight for u in updates) % (1 << WEIGHT_BITS),
        np.sum([u.tags for u in updates], axis=0) % first.tag_modulus,
    )


def open_padded(
    context: SecretContext,
    summed: PaddedUpdate,
    pad_key: bytes,
    *,
    self_seeds: Mapping[str, bytes],
    purpose: str,
) -> MaskedSum:
    """Remove the contributors' pads and self masks, verify, and return the exact sum.

    Raises
    ------
    ContextMismatchError
        Another context or purpose.
    IntegrityError
        A seed missing, or not exactly the declared contributors' sum (check values).
    """
    codec = masked_codec(context)
    if summed.fingerprint != context.fingerprint or summed.purpose != purpose:
        raise ContextMismatchError("a padded sum of another context or purpose")
    members = tuple(sorted(name for name, _ in summed.contributors))
    shape = MaskShape(summed.values.size, codec.value_bits, 1, summed.tags.size, codec.tag_modulus)
    values, weight, tags = summed.values.copy(), summed.weight, summed.tags.copy()
    for name in members:
        pad = _pad(pad_key, shape, summed, members, name)
        values, weight, tags = values - pad[0], weight - int(pad[1][0]), tags - pad[2]
    return verified_sum(
        context,
        (values % (1 << codec.value_bits), weight % (1 << WEIGHT_BITS), tags % codec.tag_modulus),
        self_seeds=self_seeds,
        purpose=purpose,
        shapes=summed.shapes,
        session=summed.session,
        round_id=summed.round_id,
        binding=summed.binding,
        contributors=summed.contributors,
    )


def _pad(
    key: bytes,
    shape: MaskShape,
    bound: MaskedRound | PaddedUpdate,
    members: tuple[str, ...],
    name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Institution ``name``'s pad for the set ``members`` (bound like its masks)."""
    return mask_entries(
        key,
        shape,
        session=bound.session,
        round_id=bound.round_id,
        digest=set_digest(members),
        purpose=bound.purpose,
        kind="pad/" + name,
    )


def _values(blob: bytes, n_values: int) -> np.ndarray:
    if len(blob) != _VALUE_BYTES * n_values:
        raise MalformedDataError(f"{len(blob)} value bytes for {n_values} values")
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, _VALUE_BYTES)
    words = np.zeros((n_values, 4), dtype=np.uint8)
    words[:, :_VALUE_BYTES] = raw
    return words.view("<u4").reshape(-1).astype(np.int64)
