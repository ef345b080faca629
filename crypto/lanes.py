"""The masked codec: quantised deltas in lanes that never carry, masked modulo ``2^B``.

An institution sends ``y = (n / N) clip(delta, -C, C)``: its example count
``n`` over a normaliser ``N`` every institution shares (the protocol supplies
it, e.g. the previous round's decrypted total), so that the sum over
institutions is ``sum n_i delta_i / N`` and FedAvg's average is
``sum(y) N / sum(n)``. ``y`` is quantised with stochastic rounding (unbiased;
Gupta et al., "Deep Learning with Limited Numerical Precision", ICML 2015),
the uniform draws coming from a ChaCha20 stream under a fresh key (never a
numpy generator), to signed integers ``q`` with step ``R / (2^(B-1) - 1 -
max_institutions)`` and ``R = weight_headroom C``: while ``sum(n) <=
weight_headroom N`` the summed integers stay inside ``[-2^(B-1), 2^(B-1))``
(one rounding step of slack per institution), so reading the sum modulo
``2^B`` as a signed number is exact. A sum beyond it wraps, and the check
value, computed on the integers as sent, refuses the aggregate.

Each masked value is a lane value in ``[0, 2^B)``. ``lanes`` of them share a
slot, lane ``l`` at bit ``L l`` with ``L = B + ceil(log2(max_institutions))``:
the sum of up to ``max_institutions`` lane values stays below ``2^L``, so lanes
never carry into each other and each is read back with shifts and masks. The
example count travels exactly in one more slot as a lane modulo ``2^32``, and
the :data:`~crypto.check.CHECK_LANES` check values follow, one per slot, each
modulo the check prime ``P < 2^32``. Every slot is centred (half of one
contribution's range subtracted) to use CKKS's signed range; the decoder rounds
each slot to an integer before anything else, so only integers leave
decryption.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Literal

import numpy as np

from crypto.check import CHECK_LANES, Segment
from crypto.errors import IntegrityError, InvalidWeightError, OverflowRiskError
from crypto.primitives import keystream, largest_prime_below

__all__ = ["TAG_BITS", "WEIGHT_BITS", "MaskedCodec"]

#: Bits of the weight lane: ``sum(n)`` is recovered modulo ``2^32``.
WEIGHT_BITS = 32

#: Check values live modulo ``P``, the largest prime below ``2^TAG_BITS``.
TAG_BITS = 32

#: Bits a slot may use so that IEEE double decoding stays exact (measured here at
#: N = 4096: 48-bit slots decode within 0.16 of the integer, summed noise included).
_DOUBLE_BITS = 48

#: Largest distance of a decrypted slot from an integer that an honest sum shows
#: (measured: 0.08 at ``masked16``, 0.16 at ``masked8``, 16 institutions).
_ROUNDING_LIMIT = 0.375

_TAG_MODULUS = largest_prime_below(1 << TAG_BITS)

_REFUSED = "aggregate refused: it is not exactly this round's sum of its declared contributors"


@dataclass(frozen=True)
class MaskedCodec:
    """Lane layout and quantisation of masked updates.

    Parameters
    ----------
    capacity_bits:
        ``log2`` of the largest slot magnitude the context can hold.
    lanes:
        Values per slot.
    value_bits:
        ``B``: each value is an integer modulo ``2^B`` (8 to 24).
    clip:
        ``C``: every delta is clipped to ``[-C, C]``.
    max_institutions:
        Most contributions one aggregate may sum (sets the lanes' headroom).
    weight_headroom:
        How far ``sum(n)`` may exceed the normaliser before the value sum could wrap.
    """

    capacity_bits: int
    lanes: int
    value_bits: int
    clip: float
    max_institutions: int
    weight_headroom: int = 2
    kind: Literal["masked"] = "masked"

    def __post_init__(self) -> None:
        if not 8 <= self.value_bits <= 24 or self.lanes < 1:
            raise OverflowRiskError("masked values have 8 to 24 bits, at least one lane a slot")
        if self.max_institutions < 3:
            raise OverflowRiskError("a masked aggregate needs room for at least 3 institutions")
        width = self.lanes * self.lane_bits
        if width - 1 > self.capacity_bits or width > _DOUBLE_BITS:
            raise OverflowRiskError(
                f"{self.lanes} lanes of {self.lane_bits} bits ({self.max_institutions} "
                f"institutions of {self.value_bits}-bit values) need {width} bits a slot; the "
                f"context holds {min(self.capacity_bits + 1, _DOUBLE_BITS)}: fewer institutions "
                "or lanes"
            )
        if WEIGHT_BITS + self.headroom_bits - 1 > self.capacity_bits:
            raise OverflowRiskError("the context cannot hold the weight and check slots")
        if self.levels < 1 or not (math.isfinite(self.clip) and self.clip > 0):
            raise OverflowRiskError("no quantisation levels left, or a clip that is not positive")

    @property
    def headroom_bits(self) -> int:
        """``ceil(log2(max_institutions))``: what a lane needs above its value bits."""
        return max(1, math.ceil(math.log2(self.max_institutions)))

    @property
    def lane_bits(self) -> int:
        """``L = B + ceil(log2(max_institutions))``."""
        return self.value_bits + self.headroom_bits

    @property
    def integer_limb_bits(self) -> int:
        """``r = B - ceil(log2(max_institutions))``: bits of one limb of an exact integer.

        :mod:`crypto.integers` splits integers into balanced limbs in ``[-2^(r-1),
        2^(r-1))``: the sum of ``max_institutions`` of them stays inside
        ``[-2^(B-1), 2^(B-1))``, so it reads back exactly from its residue modulo
        ``2^B`` (masked lanes only ever give the residue).
        """
        return self.value_bits - self.headroom_bits

    @property
    def levels(self) -> int:
        """Integer levels per side for a sum of magnitude ``R``, rounding slack kept aside."""
        return (1 << (self.value_bits - 1)) - 1 - self.max_institutions

    @property
    def step(self) -> float:
        """The value of one integer unit: ``R / levels`` with ``R = weight_headroom * clip``."""
        return self.weight_headroom * self.clip / self.levels

    @property
    def tag_modulus(self) -> int:
        """``P``: the check prime, the largest below ``2^TAG_BITS``."""
        return _TAG_MODULUS

    @property
    def max_weight(self) -> int:
        """Largest example count one contribution may carry (all of them sum below ``2^32``)."""
        return (1 << WEIGHT_BITS) // self.max_institutions - 1

    @property
    def slot_bound(self) -> float:
        """Largest magnitude one contribution puts in a slot (centred)."""
        return float(max(self._centre(self.lanes), 1 << (WEIGHT_BITS - 1)))

    def slot_count(self, n_values: int) -> int:
        """Payload slots for ``n_values`` values: the value slots and the weight slot."""
        return -(-n_values // self.lanes) + 1

    def mac_segments(self, n_values: int) -> tuple[Segment, ...]:
        """The check's entries: the signed integer values, then the weight (all exact)."""
        return (
            Segment(n_values, float(1 << (self.value_bits - 1)), noisy=False),
            Segment(1, float(1 << WEIGHT_BITS), noisy=False),
        )

    def quantise(self, flat: np.ndarray, weight: int, normaliser: int) -> np.ndarray:
        """Signed integers ``q``, ``E[q] step = (weight / normaliser) clip(flat)``.

        Raises
        ------
        InvalidWeightError
            ``weight`` or ``normaliser`` not a positive integer, ``weight`` above
            :attr:`max_weight` or above ``weight_headroom * normaliser``.
        """
        for name, value in (("weight", weight), ("normaliser", normaliser)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InvalidWeightError(f"{name} must be a positive integer, got {value!r}")
        if weight > self.max_weight or weight > self.weight_headroom * normaliser:
            raise InvalidWeightError(
                f"weight {weight} exceeds {self.weight_headroom} x the normaliser {normaliser} "
                f"or the {self.max_weight} one contribution may carry"
            )
        scaled = np.clip(flat, -self.clip, self.clip) * (weight / normaliser / self.step)
        draws = keystream(secrets.token_bytes(32), b"crossfed/rounding/v1").update(
            bytes(8 * scaled.size)
        )
        uniform = (np.frombuffer(draws, dtype="<u8") >> np.uint64(11)) * 2.0**-53
        return np.floor(scaled + uniform).astype(np.int64)

    def pack(self, values: np.ndarray, weight: int, tags: np.ndarray) -> np.ndarray:
        """Centred slots of one masked contribution: value slots, weight slot, check slots.

        ``values`` are lane values in ``[0, 2^B)``, ``weight`` in ``[0, 2^32)``,
        ``tags`` in ``[0, P)``.
        """
        per_slot = -(-values.size // self.lanes)
        grid = np.zeros(per_slot * self.lanes, dtype=np.int64)
        grid[: values.size] = values
        lanes = grid.reshape(self.lanes, per_slot)
        slots = np.zeros(per_slot, dtype=np.int64)
        for lane in range(self.lanes):
            slots += lanes[lane] << (self.lane_bits * lane)
        half = 1 << (WEIGHT_BITS - 1)
        return np.concatenate(
            [
                (slots - self._centre(self.lanes)).astype(np.float64),
                [float(weight - half)],
                (np.asarray(tags, dtype=np.int64) - half).astype(np.float64),
            ]
        )

    def unpack(
        self, slots: np.ndarray, n_values: int, count: int
    ) -> tuple[np.ndarray, int, np.ndarray]:
        """``(lane sums mod 2^B, weight sum mod 2^32, tag sums)`` of a decrypted sum of ``count``.

        Every slot must be within :data:`_ROUNDING_LIMIT` of an integer and, once
        un-centred, within what ``count`` contributions can put there; every lane
        sum at most ``count (2^B - 1)``.

        Raises
        ------
        IntegrityError
            A slot or lane out of range, or a slot far from an integer.
        """
        per_slot = -(-n_values // self.lanes)
        if slots.shape != (per_slot + 1 + CHECK_LANES,) or not np.all(np.isfinite(slots)):
            raise IntegrityError(_REFUSED)
        clipped = np.clip(slots, -(2.0**52), 2.0**52)
        rounded = np.rint(clipped)
        if float(np.max(np.abs(clipped - rounded))) > _ROUNDING_LIMIT:
            raise IntegrityError(_REFUSED)
        integers = rounded.astype(np.int64)
        half = 1 << (WEIGHT_BITS - 1)
        packed = integers[:per_slot] + count * self._centre(self.lanes)
        wide = integers[per_slot:] + count * half
        if np.any(packed < 0) or np.any(packed >= 1 << (self.lane_bits * self.lanes)):
            raise IntegrityError(_REFUSED)
        if np.any(wide < 0) or np.any(wide > count * ((1 << WEIGHT_BITS) - 1)):
            raise IntegrityError(_REFUSED)
        lane_mask = (1 << self.lane_bits) - 1
        lanes = np.stack([(packed >> (self.lane_bits * k)) & lane_mask for k in range(self.lanes)])
        if np.any(lanes > count * ((1 << self.value_bits) - 1)):
            raise IntegrityError(_REFUSED)
        values = lanes.reshape(-1)[:n_values] & ((1 << self.value_bits) - 1)
        return values, int(wide[0]) % (1 << WEIGHT_BITS), wide[1:]

    def signed(self, values: np.ndarray) -> np.ndarray:
        """Residues modulo ``2^B`` read as signed integers in ``[-2^(B-1), 2^(B-1))``."""
        base, half = 1 << self.value_bits, 1 << (self.value_bits - 1)
        return ((np.asarray(values, dtype=np.int64) + half) % base) - half

    def _centre(self, lanes: int) -> int:
        """Half of one contribution's largest packed slot."""
        return 1 << (self.value_bits + self.lane_bits * (lanes - 1) - 1)
