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
from crypto.errors import IntegrityError
from crypto.keys import SecretContext

__all__ = [
    "MAX_CONTRIBUTOR_NAME",
    "check_contributors",
    "parse_contributors",
    "round_check",
    "valid_name",
    "verify",
]

#: Longest contributor name (characters).
MAX_CONTRIBUTOR_NAME = 256

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
    IntegrityError
        The list fails any of these.
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
        raise IntegrityError(_CONTRIBUTORS_REFUSED)


def round_check(
    context: SecretContext,
    codec: Codec,
    *,
    encoding: str,
    shapes: Shapes,
    session: str,
    round_id: int,
) -> RoundCheck:
    """The check of one (run, round, encoding, shapes) under ``context``'s check key."""
    preset = context.preset
    n_values = sum(math.prod(shape) for shape in shapes)
    layout = CheckLayout.build(
        codec.mac_segments(n_values),
        modulus_bits=preset.build_sum_codec().limb_bits,
        slot_bound=codec.slot_bound,
        scale_bits=preset.params.scale_bits,
    )
    binding = Binding(
        fingerprint=context.fingerprint,
        session=session,
        round_id=round_id,
        encoding=encoding,
        shapes=shapes,
        payload_slots=codec.slot_count(n_values),
        entries=layout.entries,
    )
    return RoundCheck(context.check_key, binding, layout)


def verify(
    check: RoundCheck,
    codec: Codec,
    slots: np.ndarray,
    n_values: int,
    contributors: Contributors,
) -> np.ndarray:
    """Return the payload slots of a decrypted sum once its check slots verify.

    Raises
    ------
    IntegrityError
        The slots are not payload plus check slots, or a check slot is off by
        more than its tolerance: not the sum of the declared contributors.
    """
    payload_slots = codec.slot_count(n_values)
    if slots.shape != (payload_slots + CHECK_LANES,) or not np.all(np.isfinite(slots)):
        raise IntegrityError(_CHECK_REFUSED)
    payload = slots[:payload_slots]
    residuals, tolerances = check.residuals(
        codec.mac_values(payload, n_values), slots[payload_slots:], contributors
    )
    if not np.all(np.abs(residuals) <= tolerances):
        raise IntegrityError(_CHECK_REFUSED)
    return payload
