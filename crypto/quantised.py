"""Quantised updates and verified masked sums: the integers a masked round carries.

An institution quantises its weighted, clipped delta once per round
(:func:`quantise_update`; exact integers go through :func:`crypto.integer_update`);
:class:`~crypto.masked.MaskedRound` masks the :class:`QuantisedUpdate` and
:func:`~crypto.masked.decrypt_masked` returns a :class:`MaskedSum`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crypto.errors import (
    IntegrityError,
    InvalidWeightError,
    NonFiniteInputError,
    OverflowRiskError,
    SecretKeyRequiredError,
    ShapeMismatchError,
)
from crypto.keys import SecretContext
from crypto.lanes import MaskedCodec

__all__ = ["MaskedSum", "QuantisedUpdate", "masked_codec", "quantise_update"]

Shapes = tuple[tuple[int, ...], ...]

_REFUSED = "aggregate refused: it is not exactly this round's sum of its declared contributors"


@dataclass(frozen=True)
class QuantisedUpdate:
    """One institution's update for one round, quantised once (signed integers).

    Keep it for the whole round: a re-request after a dropout re-sends these
    same integers under new masks; two different quantisations of one round
    would let their difference, rounding noise, be read.
    """

    shapes: Shapes
    values: np.ndarray
    weight: int


@dataclass(frozen=True)
class MaskedSum:
    """A verified, unmasked sum: integers only.

    A training sum's :meth:`average` is FedAvg's average delta; a sum of
    exact integers (statistics, evaluation: :func:`crypto.integer_update`) is
    read with :func:`crypto.integer_sum`.

    Attributes
    ----------
    shapes:
        Array shapes.
    values:
        ``sum_i q_i``, the summed signed integers.
    total_weight:
        ``sum_i n_i``, the summed example counts.
    step:
        The value of one integer unit (:attr:`~crypto.lanes.MaskedCodec.step`).
    weight_headroom:
        ``h``: how far the summed count may exceed the normaliser
        (:attr:`~crypto.lanes.MaskedCodec.weight_headroom`).
    contributors:
        The declared contributors' names, in the aggregate's order.
    integer_limb_bits:
        Bits of one limb of an exact integer sum
        (:attr:`~crypto.lanes.MaskedCodec.integer_limb_bits`; :func:`crypto.integer_sum`).
    """

    shapes: Shapes
    values: np.ndarray
    total_weight: int
    step: float
    weight_headroom: int = 2
    contributors: tuple[str, ...] = ()
    integer_limb_bits: int = 0

    def average(self, normaliser: int) -> list[np.ndarray]:
        """FedAvg's average delta, ``sum(q) step N / max(sum(n), N / h)``, for the normaliser used.

        ``sum(n)`` is what the contributors *declared*: one malicious
        institution can declare any count and tag it consistently. Dividing by
        it unguarded would let a count that makes ``sum(n)`` tiny multiply the
        average a thousandfold. So a total above ``h N`` (``h`` the codec's
        weight headroom: the honest sum could have wrapped) is refused, and the
        divisor is at least ``N / h``: a declared count can scale the average
        by at most ``h``. An honest set whose counts sum below ``N / h`` (a few
        small institutions) moves the model by a proportionally smaller step.

        Raises
        ------
        InvalidWeightError
            ``normaliser`` is not a positive integer.
        IntegrityError
            The summed count exceeds ``h`` times the normaliser.
        """
        if isinstance(normaliser, bool) or not isinstance(normaliser, int) or normaliser < 1:
            raise InvalidWeightError(f"normaliser must be a positive integer, got {normaliser!r}")
        if self.total_weight > self.weight_headroom * normaliser:
            raise IntegrityError(_REFUSED)
        divisor = max(self.total_weight, normaliser / self.weight_headroom)
        flat = self.values.astype(np.float64) * (self.step * normaliser / divisor)
        arrays, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            arrays.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return arrays


def quantise_update(
    context: SecretContext, arrays: Sequence[np.ndarray], weight: int, *, normaliser: int
) -> QuantisedUpdate:
    """Clip, weight by ``weight / normaliser`` and quantise a delta (see :mod:`crypto.lanes`).

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    ShapeMismatchError, NonFiniteInputError
        No arrays, or NaN or infinity in them.
    InvalidWeightError
        ``weight`` or ``normaliser`` out of range.
    """
    codec = masked_codec(context)
    if not arrays:
        raise ShapeMismatchError("an update needs at least one array")
    shapes = tuple(tuple(int(d) for d in np.shape(a)) for a in arrays)
    flat = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])
    if not np.all(np.isfinite(flat)):
        raise NonFiniteInputError("update holds NaN or infinite values; refusing to quantise")
    return QuantisedUpdate(shapes, codec.quantise(flat, weight, normaliser), int(weight))


def masked_codec(context: SecretContext) -> MaskedCodec:
    """The masked codec of ``context``'s preset.

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    OverflowRiskError
        The preset does not mask updates.
    """
    if not isinstance(context, SecretContext):
        raise SecretKeyRequiredError("masking and unmasking need the institutions' secret context")
    codec = context.preset.build_masked_codec()
    if codec is None:
        raise OverflowRiskError(
            f"preset {context.preset.name!r} does not mask updates: use a masked preset"
        )
    return codec
