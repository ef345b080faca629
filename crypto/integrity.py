"""The institution's side of the aggregate check: contributor lists and verification.

:mod:`crypto.check` is the algebra; this module ties it to a context, a codec
and an update's header. :func:`verify` runs before any decrypted value leaves
:func:`~crypto.update.decrypt_average` or :func:`~crypto.update.decrypt_sums`,
and refuses with :class:`~crypto.errors.IntegrityError`, whose text is one of
two fixed sentences: nothing in it depends on a decrypted value, a difference
or a count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from crypto.check import CHECK_LANES, Binding, CheckLayout, RoundCheck, valid_nonce
from crypto.codec import FloatCodec, PackedCodec, SumCodec
from crypto.errors import HeaderRefusedError, IntegrityError
from crypto.keys import SecretContext
from crypto.lanes import TAG_BITS, MaskedCodec

__all__ = [
    "MAX_BINDING_BYTES",
    "MAX_CONTRIBUTOR_NAME",
    "check_binding",
    "check_contributors",
    "parse_contributors",
    "round_check",
    "valid_binding",
    "valid_name",
    "verify",
]

#: Longest contributor name (characters).
MAX_CONTRIBUTOR_NAME = 256

#: Longest caller binding (bytes): room for a SHA-512 digest.
MAX_BINDING_BYTES = 64

#: Relative room above ``count x slot_bound`` for noise and float64 decoding: an honest
#: sum's slots stay more than a million times closer to the bound than this.
_RANGE_SLACK = 2.0**-20

#: The two fixed texts of IntegrityError.
_CONTRIBUTORS_REFUSED = (
    "aggregate refused: its contributor list is malformed, repeats a contributor, or is "
    "shorter than required"
)
_CHECK_REFUSED = (
    "aggregate refused: it is not exactly this round's sum of its declared contributors"
)

Codec = FloatCodec | PackedCodec | SumCodec
Shapes = tuple[tuple[int, ...], ...]
Contributors = tuple[tuple[str, str], ...]


def valid_name(name: object) -> bool:
    """Whether ``name`` is a well-formed contributor name."""
    return isinstance(name, str) and 1 <= len(name) <= MAX_CONTRIBUTOR_NAME


def parse_contributors(value: Any) -> Contributors:
    """``[[name, nonce], ...]`` from a header, each well-formed; raises ``ValueError``."""
    if not isinstance(value, list):
        raise ValueError("contributors is not a list")
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("a contributor is not a [name, nonce] pair")
        name, nonce = item
        if not valid_name(name) or not valid_nonce(nonce):
            raise ValueError("a contributor has an invalid name or nonce")
        pairs.append((name, nonce))
    return tuple(pairs)


def check_contributors(contributors: Contributors, count: int, minimum: int) -> None:
    """Refuse unless names and nonces are distinct and well-formed, ``count`` of them, and
    at least ``minimum`` (read from the header alone, before anything is decrypted).

    Raises
    ------
    TypeError, ValueError
        ``minimum`` is not a positive integer.
    HeaderRefusedError
        The list fails any of these (an :class:`~crypto.errors.IntegrityError`).
    """
    if isinstance(minimum, bool) or not isinstance(minimum, int):
        raise TypeError("min_contributors must be an integer")
    if minimum < 1:
        raise ValueError("min_contributors must be at least 1")
    names = [name for name, _ in contributors]
    nonces = [nonce for _, nonce in contributors]
    acceptable = (
        len(contributors) == count >= minimum
        and len(set(names)) == len(names)
        and len(set(nonces)) == len(nonces)
        and all(valid_name(name) for name in names)
        and all(valid_nonce(nonce) for nonce in nonces)
    )
    if not acceptable:
        raise HeaderRefusedError(_CONTRIBUTORS_REFUSED)


def valid_binding(binding: object) -> bool:
    """Whether ``binding`` is acceptable caller binding: bytes, at most 64 of them."""
    return isinstance(binding, bytes) and len(binding) <= MAX_BINDING_BYTES


def check_binding(declared: bytes, expected: bytes | None) -> None:
    """Refuse an aggregate whose header declares another binding than the caller expects.

    Read from the header alone, before anything is decrypted; a header that
    lies about its binding fails the check value instead (the binding is in the
    key derivation).

    Raises
    ------
    TypeError, ValueError
        ``expected`` is not bytes of at most :data:`MAX_BINDING_BYTES`.
    HeaderRefusedError
        ``declared`` differs from ``expected`` (an :class:`~crypto.errors.IntegrityError`).
    """
    if expected is None:
        return
    if not isinstance(expected, bytes):
        raise TypeError(f"binding must be bytes, got {type(expected).__name__}")
    if len(expected) > MAX_BINDING_BYTES:
        raise ValueError(f"a binding has at most {MAX_BINDING_BYTES} bytes")
    if declared != expected:
        raise HeaderRefusedError(_CHECK_REFUSED)


def round_check(
    context: SecretContext,
    codec: Codec | MaskedCodec,
    *,
    encoding: str,
    shapes: Shapes,
    session: str,
    round_id: int,
    binding: bytes = b"",
    purpose: str = "",
) -> RoundCheck:
    """The check of one (run, round, encoding, shapes, binding, purpose) under the check key.

    ``purpose`` is a masked sum's (:data:`crypto.masks.MASK_PURPOSES`), empty otherwise.
    """
    preset = context.preset
    n_values = sum(math.prod(shape) for shape in shapes)
    modulus_bits = (
        TAG_BITS if isinstance(codec, MaskedCodec) else preset.build_sum_codec().limb_bits
    )
    layout = CheckLayout.build(
        codec.mac_segments(n_values),
        modulus_bits=modulus_bits,
        slot_bound=codec.slot_bound,
        scale_bits=preset.params.scale_bits,
    )
    bound = Binding(
        fingerprint=context.fingerprint,
        session=session,
        round_id=round_id,
        encoding=encoding,
        shapes=shapes,
        payload_slots=codec.slot_count(n_values),
        entries=layout.entries,
        caller=binding,
        purpose=purpose,
    )
    return RoundCheck(context.check_key, bound, layout)


def verify(
    check: RoundCheck,
    codec: Codec,
    slots: np.ndarray,
    n_values: int,
    contributors: Contributors,
) -> np.ndarray:
    """Return the payload slots of a decrypted sum once its check slots verify.

    First every slot must lie where the declared contributors can put it: a
    payload slot within ``count x slot_bound`` of zero, a check slot in
    ``[0, count x M)`` (each with :data:`_RANGE_SLACK` and one unit of room for
    noise, which an honest sum never comes near). Any shift the check could miss
    for every key is a multiple of ``M 2^51 / f_j`` (:mod:`crypto.check`), far
    outside these ranges, so no shift passes for a reason that does not depend
    on the key. Then the check slots must match.

    Raises
    ------
    IntegrityError
        The slots are not payload plus check slots, a slot is out of range, or
        a check slot is off by more than its tolerance: not the sum of the
        declared contributors.
    """
    payload_slots = codec.slot_count(n_values)
    if slots.shape != (payload_slots + CHECK_LANES,) or not np.all(np.isfinite(slots)):
        raise IntegrityError(_CHECK_REFUSED)
    count = len(contributors)
    payload, checks = slots[:payload_slots], slots[payload_slots:]
    payload_limit = count * (codec.slot_bound * (1.0 + _RANGE_SLACK) + 1.0)
    check_limit = count * (check.layout.modulus * (1.0 + _RANGE_SLACK) + 1.0)
    in_range = (
        bool(np.all(np.abs(payload) <= payload_limit))
        and bool(np.all(checks >= -float(count)))
        and bool(np.all(checks <= check_limit))
    )
    if not in_range:
        raise IntegrityError(_CHECK_REFUSED)
    residuals, tolerances = check.residuals(
        codec.mac_values(payload, n_values), checks, contributors
    )
    if not np.all(np.abs(residuals) <= tolerances):
        raise IntegrityError(_CHECK_REFUSED)
    return payload
