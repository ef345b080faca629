"""Codecs: how a weighted update becomes CKKS slot values, and back.

Two codecs, both additive (the sum of encodings decodes to the sum of the
inputs), both carrying the weight as one extra slot so that the aggregator sums
weights without seeing any:

* :class:`FloatCodec` stores ``weight * x`` one value per slot at the context's
  scale. Exact up to CKKS noise; the expansion is TenSEAL's (about 8x a float32
  with two 60-bit primes at ``N = 8192``).
* :class:`PackedCodec` clips ``x`` to ``[-clip, clip]``, scales it by
  ``weight / total_weight``, quantises with stochastic rounding (unbiased:
  ``E[q] = y``; Gupta et al., "Deep Learning with Limited Numerical Precision",
  ICML 2015) and packs several signed integers per slot, one per *lane* of
  ``lane_bits`` bits. Because the scaled values of all institutions sum to at
  most ``weight_headroom`` (the weights sum to the total), a lane never needs
  ``log2(institutions)`` bits of headroom, only the rounding slack.

A third codec, :class:`SumCodec`, carries plain *sums* with a wide dynamic
range (federation-wide feature statistics: counts, sums, sums of squares): each
value is split into a high and a low limb, ``x = hi * 2^L + lo``, whose sums are
recovered separately, so values far beyond one slot's capacity add exactly.

Lane decoding uses balanced (signed) digits: with ``|lane sum| < 2^(B-1)`` every
lane is recovered exactly from the rounded slot integer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from crypto.check import Segment
from crypto.errors import DecryptionError, InvalidWeightError, OverflowRiskError

__all__ = ["FloatCodec", "PackedCodec", "SumCodec"]

#: log2 of the fresh-encryption noise in slot units at the scale, with margin.
#: Measured here (TenSEAL 0.3.18, symmetric, N = 8192): about 2^9.6; 2^12 is claimed.
NOISE_BITS = 12

#: Bits an IEEE double keeps through CKKS encoding and decoding, with a margin (about 51.8).
_DOUBLE_BITS = 49

#: Widest low limb: the check modulus (one limb wide) must stay within 32 bits.
_MAX_LIMB_BITS = 32


@dataclass(frozen=True)
class FloatCodec:
    """One ``weight * value`` per slot, plus the weight in the last slot.

    Parameters
    ----------
    capacity_bits:
        ``log2`` of the largest slot magnitude the context can hold.
    scale_bits:
        ``log2`` of the context's encoding scale.
    max_institutions:
        Most updates that may be summed; bounds each update's magnitude.
    """

    capacity_bits: int
    scale_bits: int
    max_institutions: int
    kind: Literal["float"] = "float"

    def slot_count(self, n_values: int) -> int:
        """Slots needed for ``n_values`` parameters (one extra for the weight)."""
        return n_values + 1

    @property
    def slot_bound(self) -> float:
        """Largest magnitude one update puts in a slot."""
        return self.max_magnitude

    def mac_segments(self, n_values: int) -> tuple[Segment, ...]:
        """The check's entries (:mod:`crypto.check`): every slot, noisy, up to ``max_magnitude``."""
        return (Segment(n_values + 1, self.max_magnitude, noisy=True),)

    def mac_values(self, slots: np.ndarray, n_values: int) -> np.ndarray:
        """The check's entries from encoded or decrypted slots: the slots themselves."""
        return np.asarray(slots[: n_values + 1], dtype=np.float64)

    @property
    def max_magnitude(self) -> float:
        """Largest ``|weight * value|`` one update may carry."""
        return 2.0**self.capacity_bits / self.max_institutions

    def encode(
        self, flat: np.ndarray, weight: int, total_weight: int | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Return the slot values of one update (``total_weight`` and ``rng`` unused)."""
        scaled = flat * float(weight)
        peak = float(np.max(np.abs(scaled))) if scaled.size else 0.0
        if max(peak, float(weight)) > self.max_magnitude:
            raise OverflowRiskError(
                f"weight x value reaches {max(peak, float(weight)):.3g}, above the "
                f"{self.max_magnitude:.3g} that {self.max_institutions} institutions can sum "
                "without overflow; lower the values or the federation's max_institutions"
            )
        return np.append(scaled, float(weight))

    def decode(
        self, slots: np.ndarray, n_values: int, count: int, total_weight: int | None
    ) -> tuple[np.ndarray, float]:
        """Return ``(weighted average, total weight)`` from the decrypted slots of a sum."""
        weight = float(slots[n_values])
        if not math.isfinite(weight) or weight < 0.5:
            raise DecryptionError("decryption failed")
        return slots[:n_values] / weight, weight

    def error_bound(
        self,
        count: int,
        summed_weight: float,
        *,
        total_weight: int | None = None,
        max_abs_mean: float = 1.0,
    ) -> float:
        """Bound on ``|decoded average - true average|`` for ``count`` summed updates.

        Each ciphertext adds at most ``2^(NOISE_BITS - scale_bits)`` per slot; the
        noise of the numerator and of the summed weight both pass the division.
        """
        noise = count * 2.0 ** (NOISE_BITS - self.scale_bits)
        return noise * (1.0 + max_abs_mean) / max(summed_weight - noise, 1e-300)


@dataclass(frozen=True)
class PackedCodec:
    """Clip, quantise and pack ``lanes`` signed integers of ``lane_bits`` bits per slot.

    The decoded average differs from the average of the *clipped* inputs by at
    most ``count * clip * total_weight / (levels * sum_of_weights)`` (one
    rounding step per update); with the true total weight this is
    ``count * clip / levels``, about ``count * clip * 2^-19`` for 21-bit lanes.
    Values outside ``[-clip, clip]`` are clipped, which the caller must intend.

    Parameters
    ----------
    capacity_bits:
        ``log2`` of the largest slot magnitude the context can hold.
    lanes:
        Quantised values per slot.
    lane_bits:
        Bits per lane, sign included.
    clip:
        Agreed range: every value is clipped to ``[-clip, clip]``.
    max_institutions:
        Most updates that may be summed (rounding slack per lane).
    weight_headroom:
        How far the summed weights may exceed ``total_weight`` before a lane
        could overflow (2 allows late joiners up to the declared total again).
    """

    capacity_bits: int
    lanes: int
    lane_bits: int
    clip: float
    max_institutions: int
    weight_headroom: int = 2
    kind: Literal["packed"] = "packed"

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.lane_bits < 2:
            raise OverflowRiskError(
                f"need at least one lane of at least 2 bits, got {self.lanes} of {self.lane_bits}"
            )
        if self.lanes * self.lane_bits - 1 > self.capacity_bits:
            raise OverflowRiskError(
                f"{self.lanes} lanes of {self.lane_bits} bits need "
                f"{self.lanes * self.lane_bits - 1} bits; the context holds {self.capacity_bits}"
            )
        if self.levels < 2:
            raise OverflowRiskError(
                f"{self.lane_bits}-bit lanes leave no precision for "
                f"{self.max_institutions} institutions"
            )
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise OverflowRiskError(f"clip must be a positive number, got {self.clip}")

    @property
    def levels(self) -> int:
        """Quantisation levels on each side of zero for a weight fraction of one."""
        half = 2 ** (self.lane_bits - 1)
        return (half - 1 - self.max_institutions) // self.weight_headroom

    def slot_count(self, n_values: int) -> int:
        """Slots needed for ``n_values`` parameters (one extra for the weight)."""
        return -(-n_values // self.lanes) + 1

    @property
    def max_weight(self) -> float:
        """Largest weight one update may carry: ``max_institutions`` of them fit the slot."""
        return 2.0**self.capacity_bits / self.max_institutions

    @property
    def slot_bound(self) -> float:
        """Largest magnitude one update puts in a slot (all lanes full, or the weight)."""
        return max(2.0 ** (self.lanes * self.lane_bits - 1), self.max_weight)

    def mac_segments(self, n_values: int) -> tuple[Segment, ...]:
        """The check's entries: every lane (exact integers), then the weight (exact)."""
        per_lane = -(-n_values // self.lanes)
        return (
            Segment(per_lane * self.lanes, 2.0 ** (self.lane_bits - 1), noisy=False),
            Segment(1, self.max_weight, noisy=False),
        )

    def mac_values(self, slots: np.ndarray, n_values: int) -> np.ndarray:
        """The check's entries: the lanes and the weight, as :meth:`decode` rounds them."""
        per_lane = -(-n_values // self.lanes)
        lanes = self._unpack(slots[:per_lane])
        weight = _rint_int(slots[per_lane : per_lane + 1])
        return np.concatenate([lanes.reshape(-1), weight]).astype(np.float64)

    def _unpack(self, slots: np.ndarray) -> np.ndarray:
        """Balanced digits of the rounded slot integers: ``(lanes, per_lane)`` lane values."""
        packed = _rint_int(slots)
        base, half = 1 << self.lane_bits, 1 << (self.lane_bits - 1)
        lanes = np.empty((self.lanes, packed.size), dtype=np.int64)
        for lane in range(self.lanes):
            digit = ((packed + half) & (base - 1)) - half
            lanes[lane] = digit
            packed = (packed - digit) >> self.lane_bits
        return lanes

    def encode(
        self, flat: np.ndarray, weight: int, total_weight: int | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Return the slot values of one update; ``total_weight`` is required."""
        if total_weight is None or total_weight < 1:
            raise InvalidWeightError(
                "the packed codec needs total_weight, the federation-wide example count "
                "(a positive integer), to scale each update"
            )
        if weight > total_weight:
            raise InvalidWeightError(
                f"weight {weight} exceeds the federation's total weight {total_weight}"
            )
        if weight > self.max_weight:
            raise OverflowRiskError(
                f"weight {weight} exceeds the {self.max_weight:.3g} that "
                f"{self.max_institutions} institutions can sum without overflow"
            )
        fraction = weight / total_weight
        scaled = np.clip(flat, -self.clip, self.clip) * (fraction * self.levels / self.clip)
        quantised = np.floor(scaled + rng.random(scaled.size)).astype(np.int64)
        per_lane = -(-flat.size // self.lanes)
        padded = np.zeros(per_lane * self.lanes, dtype=np.int64)
        padded[: flat.size] = quantised
        grid = padded.reshape(self.lanes, per_lane)
        slots = np.zeros(per_lane, dtype=np.int64)
        for lane in range(self.lanes):
            slots += grid[lane] << (self.lane_bits * lane)
        return np.append(slots.astype(np.float64), float(weight))

    def decode(
        self, slots: np.ndarray, n_values: int, count: int, total_weight: int | None
    ) -> tuple[np.ndarray, float]:
        """Return ``(weighted average, total weight)`` from the decrypted slots of a sum."""
        if total_weight is None or total_weight < 1:
            raise InvalidWeightError("the packed codec needs total_weight to decode")
        per_lane = -(-n_values // self.lanes)
        weight = float(np.rint(slots[per_lane]))
        if not math.isfinite(weight) or weight < 1:
            raise DecryptionError("decryption failed")
        if weight > self.weight_headroom * total_weight:
            raise OverflowRiskError(
                f"the summed weight exceeds {self.weight_headroom} x the declared total "
                f"{total_weight}: lanes may have overflowed, the sum is refused"
            )
        lanes = self._unpack(slots[:per_lane])
        sums = lanes.reshape(-1)[:n_values].astype(np.float64)
        average = sums * (self.clip * total_weight / (self.levels * weight))
        return average, weight

    def error_bound(
        self,
        count: int,
        summed_weight: float,
        *,
        total_weight: int | None = None,
        max_abs_mean: float = 1.0,
    ) -> float:
        """Bound on ``|decoded - average of clipped inputs|`` for ``count`` summed updates.

        One quantisation step per update, in units of the declared ``total_weight``.
        """
        declared = float(total_weight if total_weight is not None else summed_weight)
        return count * self.clip * declared / (self.levels * summed_weight)


@dataclass(frozen=True)
class SumCodec:
    """Two limbs per value, ``x = hi * 2^limb_bits + lo``, for exact wide-range sums.

    ``hi`` is an integer and ``lo`` lies in ``[0, 2^limb_bits)``; both limbs of
    ``max_institutions`` values sum without overflow, and the summed ``hi`` is
    rounded to an integer (exact while the noise stays below one half), so the
    decoded sum is off by at most the noise of the ``lo`` limb, about
    ``count * 2^(NOISE_BITS - scale_bits)`` in absolute terms. Values must stay
    below ``2^(2 * limb_bits)`` in magnitude.
    """

    capacity_bits: int
    scale_bits: int
    max_institutions: int
    kind: Literal["sum"] = "sum"

    @property
    def limb_bits(self) -> int:
        """Bits of the low limb: one limb of every institution fits the capacity.

        Also capped so that a limb's double rounding stays below the noise:
        CKKS encodes and decodes through IEEE doubles, and a slot of magnitude
        ``2^k`` comes back within about ``2^(k - 51.8)`` (measured here), which
        at the ``standard`` preset's 2^40 scale would swamp the noise bound.
        """
        headroom = self.capacity_bits - math.ceil(math.log2(self.max_institutions + 1)) - 1
        return min(headroom, _DOUBLE_BITS + NOISE_BITS - self.scale_bits, _MAX_LIMB_BITS)

    def slot_count(self, n_values: int) -> int:
        """Slots needed for ``n_values`` sums (two limbs each)."""
        return 2 * n_values

    @property
    def slot_bound(self) -> float:
        """Largest magnitude one update puts in a slot (a limb)."""
        return 2.0**self.limb_bits

    def mac_segments(self, n_values: int) -> tuple[Segment, ...]:
        """The check's entries: high limbs (exact integers), then low limbs (noisy)."""
        unit = 2.0**self.limb_bits
        return (Segment(n_values, unit, noisy=False), Segment(n_values, unit, noisy=True))

    def mac_values(self, slots: np.ndarray, n_values: int) -> np.ndarray:
        """The check's entries: rounded high limbs and raw low limbs, as :meth:`decode` uses."""
        high = _rint_int(slots[:n_values]).astype(np.float64)
        return np.concatenate([high, np.asarray(slots[n_values : 2 * n_values], np.float64)])

    def encode(
        self, flat: np.ndarray, weight: int, total_weight: int | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Return the limbs ``[hi..., lo...]`` of ``flat`` (other arguments unused)."""
        unit = 2.0**self.limb_bits
        high = np.floor(flat / unit)
        if high.size and float(np.max(np.abs(high))) >= unit:
            raise OverflowRiskError(
                f"a value reaches {float(np.max(np.abs(flat))):.3g}, beyond the "
                f"{unit * unit:.3g} this preset can sum exactly"
            )
        return np.concatenate([high, flat - high * unit])

    def decode(
        self, slots: np.ndarray, n_values: int, count: int, total_weight: int | None
    ) -> tuple[np.ndarray, float]:
        """Return ``(sums, number of institutions summed)``."""
        high = np.rint(slots[:n_values])
        return high * 2.0**self.limb_bits + slots[n_values : 2 * n_values], float(count)

    def error_bound(
        self,
        count: int,
        summed_weight: float,
        *,
        total_weight: int | None = None,
        max_abs_mean: float = 1.0,
    ) -> float:
        """Bound on the absolute error of each decoded sum of ``count`` updates."""
        return count * 2.0 ** (NOISE_BITS - self.scale_bits)


def _rint_int(values: np.ndarray) -> np.ndarray:
    """Round to int64, clipping first so that no decrypted value can overflow the cast."""
    return np.rint(np.clip(np.asarray(values, dtype=np.float64), -(2.0**62), 2.0**62)).astype(
        np.int64
    )
