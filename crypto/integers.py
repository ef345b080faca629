"""Exact integer sums through the masked codec: statistics and evaluation metrics.

A masked round carries more than training deltas. The statistics round sums
per-institution feature sums, sums of squares and row counts; the evaluation
round sums metrics weighted by test-set size. Each is one institution's own
value and needs the same masks as its update (:mod:`crypto.masked`), but must
come back exact, not quantised: the federation standardises with the sums and
normalises with the row count.

So a signed integer ``v`` with ``|v| < 2^bits`` is split into ``L`` *balanced
limbs* ``v = sum_k d_k 2^(r k)``, each ``d_k`` in ``[-2^(r-1), 2^(r-1))`` with
``r = B - ceil(log2(max_institutions))``
(:attr:`~crypto.lanes.MaskedCodec.integer_limb_bits`; 12 at ``masked16``, 4 at
``masked8``) and ``L = ceil((bits + 2) / r)``. Masked lanes give each summed
limb only modulo ``2^B``; the sum of at most ``max_institutions`` limbs lies in
``[-2^(B-1), 2^(B-1))``, so reading it as a signed number is exact and no
carry between limbs is ever lost. :func:`integer_sum` recombines
``sum_k S_k 2^(r k)`` in Python integers: the exact sum, however large.

Every contribution carries weight 1, so a verified sum's total weight is its
number of contributors. :func:`fixed_point` and :func:`from_fixed_point` carry
real statistics across (round half to even, refusing NaN and infinity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crypto.errors import (
    IntegrityError,
    NonFiniteInputError,
    OverflowRiskError,
    ShapeMismatchError,
)
from crypto.keys import SecretContext
from crypto.lanes import MaskedCodec
from crypto.quantised import MaskedSum, QuantisedUpdate, masked_codec

__all__ = [
    "INTEGER_BITS",
    "MAX_FRACTION_BITS",
    "MAX_INTEGER_BITS",
    "fixed_point",
    "from_fixed_point",
    "integer_limbs",
    "integer_sum",
    "integer_update",
]

#: Default magnitude bound: every value ``|v| < 2^INTEGER_BITS`` (room for sums of
#: squares of wide features in fixed point over millions of rows).
INTEGER_BITS = 126

#: Largest magnitude bound a caller may choose.
MAX_INTEGER_BITS = 1024

#: Most fraction bits :func:`fixed_point` takes.
MAX_FRACTION_BITS = 256

_REFUSED = "aggregate refused: it is not exactly this round's sum of its declared contributors"


def integer_limbs(codec: MaskedCodec, bits: int = INTEGER_BITS) -> int:
    """``L``: limbs per value for ``|v| < 2^bits`` under ``codec``.

    Raises
    ------
    OverflowRiskError
        ``bits`` outside ``1..MAX_INTEGER_BITS``, or a codec whose limbs would
        have fewer than two bits.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_INTEGER_BITS:
        raise OverflowRiskError(f"an integer bound has 1 to {MAX_INTEGER_BITS} bits, got {bits!r}")
    radix = codec.integer_limb_bits
    if radix < 2:
        raise OverflowRiskError(
            f"{codec.value_bits}-bit lanes for {codec.max_institutions} institutions leave "
            f"{radix} bit(s) a limb: too few for exact integer sums"
        )
    return -(-(bits + 2) // radix)


def integer_update(
    context: SecretContext, values: Sequence[int], *, bits: int = INTEGER_BITS
) -> QuantisedUpdate:
    """Signed integers as a :class:`~crypto.QuantisedUpdate` of weight 1, for exact sums.

    Mask it with :class:`crypto.MaskedRound` (purpose ``"stats"`` or
    ``"evaluate"``) and read the verified sum with :func:`integer_sum`. Every
    institution of one sum must use the same ``bits`` (the limb count is in the
    shapes, and the check values are bound to them).

    Raises
    ------
    SecretKeyRequiredError, OverflowRiskError
        ``context`` is public or not masked (:func:`crypto.quantise_update`).
    ShapeMismatchError
        No values.
    TypeError
        A value is not an integer (``bool`` included).
    OverflowRiskError
        A value with ``|v| >= 2^bits``, or ``bits`` out of range.
    """
    codec = masked_codec(context)
    limbs = integer_limbs(codec, bits)
    listed = list(values)
    if not listed:
        raise ShapeMismatchError("an integer update needs at least one value")
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in listed):
        raise TypeError("integer_update takes integers only: use fixed_point for real values")
    bound = 1 << bits
    if any(not -bound < int(v) < bound for v in listed):
        raise OverflowRiskError(f"a value of {bits} bits or more: raise bits or scale it down")
    radix = codec.integer_limb_bits
    flat = [limb for v in listed for limb in _split(int(v), radix, limbs)]
    return QuantisedUpdate(((len(listed), limbs),), np.array(flat, dtype=np.int64), 1)


def integer_sum(summed: MaskedSum, n_values: int) -> list[int]:
    """The exact summed integers of a verified sum of :func:`integer_update` contributions.

    Raises
    ------
    ShapeMismatchError
        The sum is not one ``(n_values, L)`` block of integer limbs, or was
        not made by :func:`crypto.decrypt_masked`.
    IntegrityError
        Its total weight is not its number of contributors (each carries 1).
    """
    radix = summed.integer_limb_bits
    shapes = summed.shapes
    if (
        radix < 2
        or len(shapes) != 1
        or len(shapes[0]) != 2
        or shapes[0][0] != n_values
        or summed.values.size != n_values * shapes[0][1]
    ):
        raise ShapeMismatchError(f"not a sum of {n_values} exact integers (crypto.integer_update)")
    if summed.total_weight != len(summed.contributors):
        raise IntegrityError(_REFUSED)
    limbs = shapes[0][1]
    grid = summed.values.reshape(n_values, limbs)
    return [_join([int(limb) for limb in row], radix) for row in grid]


def fixed_point(values: np.ndarray, frac_bits: int) -> list[int]:
    """``round(x 2^frac_bits)`` per value, ties to even, as Python integers (flattened).

    Deterministic: every institution turns one real into one integer, and the
    rounding error is at most ``2^-(frac_bits+1)`` per value.

    Raises
    ------
    NonFiniteInputError
        NaN or infinity among ``values``.
    OverflowRiskError
        ``frac_bits`` outside ``0..MAX_FRACTION_BITS``, or a scaled value beyond
        a double's range.
    """
    _check_fraction_bits(frac_bits)
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(flat)):
        raise NonFiniteInputError("fixed_point refuses NaN and infinity")
    with np.errstate(over="ignore"):
        scaled = np.ldexp(flat, frac_bits)
    if not np.all(np.isfinite(scaled)):
        raise OverflowRiskError(f"a value too large for {frac_bits} fraction bits")
    return [int(v) for v in np.rint(scaled)]


def from_fixed_point(values: Sequence[int], frac_bits: int) -> np.ndarray:
    """``v / 2^frac_bits`` per integer, correctly rounded to float64.

    Raises
    ------
    OverflowRiskError
        ``frac_bits`` out of range, or a quotient beyond a double's range.
    """
    _check_fraction_bits(frac_bits)
    unit = 1 << frac_bits
    try:
        return np.array([int(v) / unit for v in values], dtype=np.float64)
    except OverflowError as exc:
        raise OverflowRiskError("a fixed-point sum beyond a double's range") from exc


def _split(value: int, radix: int, limbs: int) -> list[int]:
    """Balanced limbs, least significant first: ``value = sum_k d_k 2^(radix k)``."""
    base, half = 1 << radix, 1 << (radix - 1)
    digits = []
    for _ in range(limbs):
        digit = (value + half) % base - half
        digits.append(digit)
        value = (value - digit) >> radix
    if value:
        raise OverflowRiskError("an integer wider than its limbs")
    return digits


def _join(limbs: Sequence[int], radix: int) -> int:
    """``sum_k d_k 2^(radix k)`` (limbs least significant first)."""
    total = 0
    for digit in reversed(limbs):
        total = (total << radix) + digit
    return total


def _check_fraction_bits(frac_bits: int) -> None:
    if (
        isinstance(frac_bits, bool)
        or not isinstance(frac_bits, int)
        or not 0 <= frac_bits <= MAX_FRACTION_BITS
    ):
        raise OverflowRiskError(f"fixed point takes 0 to {MAX_FRACTION_BITS} fraction bits")
