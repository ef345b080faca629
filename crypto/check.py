"""Secret-keyed check values: an institution applies only this round's exact sum.

The aggregator holds no key, yet it can still transform ciphertexts: add a
plaintext, add or subtract ciphertexts, double a sum, mix rounds by rewriting
headers, or send one institution's update as "the sum". To tell a genuine sum
from any of these, every fresh update carries ``CHECK_LANES`` (4) extra slots
after its payload, each a *linear message authentication code* of it (Carter
and Wegman, "Universal classes of hash functions", JCSS 1979; the linearly
homomorphic use of Catalano and Fiore, "Practical homomorphic MACs for
arithmetic circuits", EUROCRYPT 2013)::

    check_l = ( <r_l, m> + <k_l, m_exact> + t_l(name, nonce) )  mod M

``m`` is the payload as the codec decodes it (``mac_values``: the weighted
values and the weight; the packed codec's integer lanes and weight; the sum
codec's limbs), ``m_exact`` its entries that decode to exact integers (lanes,
packed weight, high limbs). ``r_l`` is a secret real vector as long as ``m``
(``r_lj = f_j u_lj``, ``u_lj`` uniform on the multiples of ``2^-51`` in
``[-1, 1)``), ``k_l`` a secret integer vector uniform modulo ``M``, ``t_l`` a
secret offset per contributor, uniform in ``[0, M)``. All come from the
federation's check key (:class:`~crypto.keys.SecretContext`, never in the
public context), bound to the context fingerprint, run, round, encoding,
shapes, sizes and the caller's binding (crossfed: a digest of the model the
contributor started from, :mod:`clients.run_state`), through HKDF-SHA256
(RFC 5869) with ChaCha20 as the generator. ``M`` is the largest
prime below ``2^limb_bits`` of the preset's sum codec (``2^24``, ``2^21``,
``2^32`` for lean, standard, packed), so ``max_institutions`` check values sum
inside the capacity whatever the payload's magnitude (``2^31``, ``2^28``,
``2^39`` against ``2^33``, ``2^50``, ``2^41``; the largest seen in 1,200
trials: ``2^30.2``, ``2^27.1``, ``2^38.1``). Sums of genuine updates sum their
check values; the verifier recomputes both inner products on the decrypted
sum, adds the declared contributors' ``t`` and compares modulo ``M``.

What it rejects (the aggregator knows none of ``r``, ``k``, ``t``). A forgery's
residual is ``s - <r, d> - <k, d_exact> + sum_i (a_i - [i declared]) t_i``
modulo ``M`` (plus noise), with ``d`` and ``s`` plaintexts added to the payload
and the check slots and ``a_i`` the multiplicity of genuine contribution ``i``.

* Any contribution counted other than once if declared and zero times if not
  (``2 S``, ``11 G2 - 10 G1``, ``S - u``, a partial, padded or relabelled
  contributor list, another round, run or binding, whose ``r``, ``k``, ``t``
  are unrelated) leaves a uniform term modulo ``M``: each lane passes with
  probability ``2 tol / M``; all four at most ``2^-68`` (standard, 128
  contributors), ``2^-122`` (lean), ``2^-125`` (packed).
* Any change of an exact entry by a nonzero integer below ``M`` passes each
  lane with probability ``(2 tol + 1) / M`` (``M`` prime): no lane or weight
  change of the packed codec, no high-limb change of the sum codec, survives.
* A shift ``d_j`` of one entry passes each lane with probability at most
  ``tol / (f_j |d_j|) + 2 tol / M + 2^-51 f_j |d_j| / M + 2^-52``, whatever the
  other entries (``f_j d_j u_j`` runs over ``2^52`` points spaced
  ``f_j |d_j| 2^-51`` apart; at most ``2 f_j |d_j| / M + 1`` windows of width
  ``2 tol`` around multiples of ``M`` meet them, each holding at most
  ``2 tol / (f_j |d_j| 2^-51) + 1``). So ``|d_j| >= sqrt(10) tol / f_j`` is
  detected with probability >= 99 %, for any data.
* No shift passes for every key. The third term is the coefficients'
  granularity: ``d_j = M 2^51 / f_j`` is a multiple of ``M`` times every
  ``r_j`` (a period of the check), ``M 2^50 / f_j`` passes half the time, and
  so on. The verifier first refuses any decrypted slot beyond what its
  declared contributors can put there (``count x slot_bound``, check slots
  ``count x M``: :func:`crypto.integrity.verify`), so ``|d_j| <= 2 x 128 P_j``
  and the term stays below ``2^-19`` per lane (``standard`` averages; ``2^-31``
  or less for every other preset and encoding). Before, ``u_j`` had 26 bits:
  ``d_j = M 2^25 / f_j`` passed every lane for every key, and on ``standard``
  it fits a slot (``2^45``).

Magnitudes. ``f_j`` is the power of two nearest ``2^E / (sqrt(len(m)) P_j)``
with ``P_j`` the largest ``|m_j|`` one contribution can carry (the codec's
bound) and ``E`` two bits above the widest noisy entry's bound: then ``r``
weighs the payload's noise about twice the check slot's own, near the best
ratio of detection threshold to tolerance. ``u_j`` (52 significant bits) and
``m_j`` are each split into two halves of at most 26 bits, so each of the four
partial products is exact; each is reduced modulo ``M`` (exact) before
summation, so the check is computed to a few ulps of ``M`` however large
``<r, m>`` is. The tolerance is 10 standard
deviations of the residual's noise as modelled from the preset, never from the
decrypted values (so whether a sum passes depends on the data only through the
forgery itself): fresh noise ``2^(9 - scale_bits)`` per slot (measured
``2^(7.7 - scale_bits)``), float64 decoding error ``2^-52`` of the largest slot
a ciphertext may hold (measured ``2^-52.5``) on every slot, both through ``r``
on the noisy entries, and summation rounding.

Measured here (TenSEAL 0.3.18; ``tests/crypto/test_check_calibration.py`` and
``tests/crypto/test_check.py``):

* Honest sums: 1,200 trials of 1 to 128 genuine contributions of 3,000 values
  over lean, standard and packed, averages and sums, half of them at their
  codec's largest accepted magnitude (two runs): none failed; worst
  ``|residual| / tol`` 0.17 (standard averages), 0.14 (lean), 0.14 (packed),
  0.004 (standard sums). Sums of 100,000 values (60 trials): worst 0.11. All
  128 contributions at the largest magnitude, same sign (every preset,
  averages and sums): within the slot ranges and verified.
* Detection threshold at 100,000 parameters (one coordinate shifted; the
  average moves by ``d_j / W``, ``W`` the summed example count), for 3 and 128
  contributors: lean 0.17 and 1.1 weighted-sum units (with ``W`` = 1,000,
  1.7e-4 and 1.1e-3 in the average); standard 36 and 1,500 (float64 decoding
  of slots that may reach ``2^43`` sets this floor: the comparison preset, not
  one to deploy); packed any change of one quantum (``2^-19`` of the clip when
  ``W`` is the declared total); statistics (sum encoding)
  0.22 and 1.4 (lean), 0.014 and 0.08 (standard), 55 and 350 (packed) in the
  statistic's own units. A shift at exactly the 3-contributor threshold
  passed for 6 of 300 random keys at 100,000 parameters (lean and standard
  each) and for 23 (lean) and 35 (standard) of 3,000 at 2,000 parameters: the
  bound is 1 %. No shift ``M 2^k / f_j``, ``k = 0 .. 51``, passed the check
  value alone (range check left out) for any of 200 keys (standard).
* Cost at 100,000 parameters (this shared machine, best of 7): computing the
  check values takes 9 to 26 ms and verifying 10 to 26 ms, against 42 ms to
  encrypt and 26 ms to decrypt (lean; packed 37 and 37 ms; standard 76 and
  49 ms), from four ChaCha20 keystreams and a few vector operations per lane.

Limits: every institution holds the check key, so an institution colluding with
the aggregator can forge a check value (as it can decrypt every update: the
shared key is the trust boundary). A genuine aggregate of a subset of this
round's contributors verifies: the caller sets ``min_contributors`` (the
sample less its declared dropouts) and checks that its own name is listed, or
binds its round's updates to something all its contributors share (crossfed:
their start). A stale aggregate with its own header intact verifies under its
own round: the
caller checks ``round_id`` and ``session``
(``EncryptedUpdate.from_bytes(expected_round=..., expected_session=...)``).
Masked updates (:mod:`crypto.masked`) use the integer part alone,
:meth:`RoundCheck.exact_tags`: ``(<k_l, m> + t_l) mod M`` over the signed
integer values and the weight, ``M = 2^32 - 5``, under this same key
derivation and binding. A real-valued ``<r, m>`` would be unusable there: every
institution holds the check key, so the fraction of an unmasked real tag is a
function of the values any institution could read. Integer tags are masked
modulo ``M`` like every lane (pairwise masks cancel in the sum, self masks are
removed with the revealed seeds), and the verifier compares exactly: a sum
whose entries differ from the genuine one by anything nonzero modulo ``M``
(every lane change: lane sums are below ``2^24``) passes each of the four lanes
with probability ``1 / M``, all of them ``2^-128``; a wrong contributor list,
round, run, encoding, shapes or binding leaves uniform offsets.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from crypto.errors import WeakParametersError
from crypto.primitives import keystream, largest_prime_below

__all__ = [
    "CHECK_KEY_BYTES",
    "CHECK_LANES",
    "NONCE_BYTES",
    "Binding",
    "CheckLayout",
    "RoundCheck",
    "Segment",
    "valid_nonce",
]

#: Check slots every update carries after its payload.
CHECK_LANES: Final = 4

#: Size of the federation's check key (drawn with :mod:`secrets` at key generation).
CHECK_KEY_BYTES: Final = 32

#: Size of the fresh nonce each update carries, per contributor.
NONCE_BYTES: Final = 16

#: log2 of the bound on one fresh ciphertext's per-slot noise standard deviation, in units
#: of the scale. Measured here (TenSEAL 0.3.18, symmetric, N = 8192): 2^7.7 at every preset.
FRESH_STD_BITS: Final = 9.0

#: Standard deviations of modelled noise a residual may reach.
TOLERANCE_SIGMAS: Final = 10.0

#: Relative float64 rounding budget (8 ulps) for the sums of reduced products.
_FLOAT_EPS = 2.0**-50

#: ``2^E`` is this many bits above the widest noisy entry's bound: ``r`` then weighs the
#: payload's noise about 2.3 times the check slot's own (``sqrt(1 + 16/3)``), near the
#: best ratio of detection threshold to tolerance (see the module docstring).
_RANGE_MARGIN_BITS = 2.0

#: Per-slot decoding error relative to a ciphertext's largest slot (standard deviation).
#: Measured here: 2^-52.5 (standard preset, slots of 2^43); 2^-52 is claimed.
_DECODE_EPS = 2.0**-52

#: Entries of ``r`` drawn per keystream chunk (bounds memory for large models).
_CHUNK = 1 << 18  # also keeps _CHUNK * M below 2^64 for the exact integer part

#: Bits of the check modulus ``M``: enough that a forgery passes a lane with probability
#: ``(2 tol + 1) / M``, at most 32 so that the exact integer part stays inside uint64.
_MIN_MODULUS_BITS = 16
_MAX_MODULUS_BITS = 32

_SALT = b"crossfed/aggregate-check/v2"
_NONCE_HEX = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Segment:
    """A run of MAC entries sharing one magnitude bound.

    Attributes
    ----------
    length:
        Number of entries.
    bound:
        Largest ``|value|`` one contribution can put in each entry (``P_j``).
    noisy:
        ``True`` when CKKS noise reaches the decoded value; ``False`` when the
        decoder rounds it to an exact integer (packed lanes, the sum codec's
        high limbs).
    """

    length: int
    bound: float
    noisy: bool


@dataclass(frozen=True)
class CheckLayout:
    """How large ``r``, ``t`` and the tolerance are for one kind of update.

    Attributes
    ----------
    segments:
        The entries ``m``, in order.
    modulus_bits:
        Check values live in ``[0, M)``, ``M`` the largest prime below ``2^modulus_bits``.
    range_bits:
        ``E``: ``r_j`` is about ``2^E / (sqrt(len(m)) P_j)``.
    noise_std:
        Bound on one fresh ciphertext's per-slot noise standard deviation.
    slot_bound:
        Largest magnitude one contribution can put in any slot, ``M`` included.
    """

    segments: tuple[Segment, ...]
    modulus_bits: int
    range_bits: float
    noise_std: float
    slot_bound: float

    @classmethod
    def build(
        cls,
        segments: Sequence[Segment],
        *,
        modulus_bits: int,
        slot_bound: float,
        scale_bits: int,
    ) -> CheckLayout:
        """Choose ``E`` for these entries (see the module docstring).

        ``slot_bound`` is the largest magnitude one contribution can put in any
        slot (payload or check): float64 decoding spreads an error of about
        ``2^-52`` times the largest slot of a ciphertext over all its slots.

        Raises
        ------
        WeakParametersError
            The preset leaves fewer than 16 or more than 32 bits for check values.
        """
        if not _MIN_MODULUS_BITS <= modulus_bits <= _MAX_MODULUS_BITS:
            raise WeakParametersError(
                f"the preset leaves {modulus_bits} bits for the aggregate check, "
                f"which needs {_MIN_MODULUS_BITS} to {_MAX_MODULUS_BITS}"
            )
        noisy = [s.bound for s in segments if s.noisy and s.length]
        widest = max(noisy) if noisy else max((s.bound for s in segments), default=1.0)
        range_bits = math.log2(widest) + _RANGE_MARGIN_BITS
        noise_std = 2.0 ** (FRESH_STD_BITS - scale_bits)
        bound = max(slot_bound, 2.0**modulus_bits)
        return cls(tuple(segments), modulus_bits, range_bits, noise_std, bound)

    @property
    def entries(self) -> int:
        """``len(m)``."""
        return sum(segment.length for segment in self.segments)

    @property
    def modulus(self) -> int:
        """``M``: the largest prime below ``2^modulus_bits`` (so that ``k_j d_j`` is uniform)."""
        return _prime_below_power(self.modulus_bits)

    def factor(self, segment: Segment) -> float:
        """The power of two near ``2^E / (sqrt(len(m)) P_j)`` that scales ``u_j`` into ``r_j``."""
        ideal = self.range_bits - 0.5 * math.log2(max(self.entries, 1)) - math.log2(segment.bound)
        return 2.0 ** round(ideal)


@dataclass(frozen=True)
class Binding:
    """What a check value is bound to: any difference gives unrelated ``r``, ``k`` and ``t``.

    ``caller`` is what the caller binds its update to beyond the run and round
    (crossfed: a digest of the model the contributor started the round from, so
    that only updates made from one start sum to a verifiable aggregate).
    ``purpose`` is what a masked sum is for (:data:`crypto.masks.MASK_PURPOSES`:
    statistics, training and evaluation share round numbers); empty for the
    unmasked encodings.
    """

    fingerprint: str
    session: str
    round_id: int
    encoding: str
    shapes: tuple[tuple[int, ...], ...]
    payload_slots: int
    entries: int
    caller: bytes = b""
    purpose: str = ""

    def info(self) -> bytes:
        """Canonical bytes for the key derivation."""
        return json.dumps(
            {
                "fingerprint": self.fingerprint,
                "session": self.session,
                "round": self.round_id,
                "encoding": self.encoding,
                "shapes": [list(shape) for shape in self.shapes],
                "payload_slots": self.payload_slots,
                "entries": self.entries,
                "lanes": CHECK_LANES,
                "binding": self.caller.hex(),
                "purpose": self.purpose,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()


@functools.cache
def _prime_below_power(bits: int) -> int:
    return largest_prime_below(1 << bits)


def valid_nonce(nonce: object) -> bool:
    """Whether ``nonce`` is a well-formed contributor nonce (32 lowercase hex digits)."""
    return isinstance(nonce, str) and _NONCE_HEX.match(nonce) is not None


class RoundCheck:
    """The check of one binding under one federation's check key.

    Parameters
    ----------
    key:
        The federation's check key (secret, from the secret context).
    binding:
        What the check values are bound to.
    layout:
        Magnitudes for the binding's entries.
    """

    def __init__(self, key: bytes, binding: Binding, layout: CheckLayout) -> None:
        if len(key) != CHECK_KEY_BYTES:
            raise ValueError(f"a check key has {CHECK_KEY_BYTES} bytes")
        if binding.entries != layout.entries:
            raise ValueError("the binding and the layout disagree on the number of entries")
        self._layout = layout
        self._round_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=_SALT, info=binding.info()
        ).derive(key)

    @property
    def layout(self) -> CheckLayout:
        """The layout this check uses."""
        return self._layout

    def tags(self, values: np.ndarray, contributor: str, nonce: str) -> np.ndarray:
        """The ``CHECK_LANES`` check values, in ``[0, M)``, of one contribution's entries."""
        modulus = float(self._layout.modulus)
        dots, _ = self._dots(values)
        offsets = self._offsets(contributor, nonce)
        return np.array(
            [
                math.fmod(dot + offset, modulus) % modulus
                for dot, offset in zip(dots, offsets, strict=True)
            ]
        )

    def residuals(
        self, values: np.ndarray, checks: np.ndarray, contributors: Sequence[tuple[str, str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(residuals, tolerances)`` per lane for a decrypted sum.

        ``values`` are the sum's entries as the codec decodes them, ``checks``
        its decrypted check slots, ``contributors`` the declared ``(name,
        nonce)`` pairs. A genuine sum has ``|residual| <= tolerance`` on every
        lane; residuals are centred modulo ``M``.
        """
        modulus = float(self._layout.modulus)
        dots, noisy_norms = self._dots(values)
        offsets = [self._offsets(name, nonce) for name, nonce in contributors]
        residuals = np.empty(CHECK_LANES)
        for lane in range(CHECK_LANES):
            expected = math.fsum([dots[lane], *(row[lane] for row in offsets)])
            difference = math.fmod(float(checks[lane]) - expected, modulus) % modulus
            residuals[lane] = difference - modulus if difference > modulus / 2 else difference
        tolerances = np.array([self.tolerance(len(contributors), norm) for norm in noisy_norms])
        return residuals, tolerances

    def tolerance(self, count: int, noisy_norm_squared: float) -> float:
        """Largest honest ``|residual|`` for ``count`` contributions.

        Modelled from the preset, never from the data: every decrypted slot
        (the check slot, and through ``r`` each noisy entry) carries fresh CKKS
        noise and float64 decoding error as if every slot of every
        contribution held its largest magnitude; the sums of reduced products
        (each below ``M``) round at ``2^-50`` of ``M`` per term. Products are
        exact and the integer part is exact.
        """
        layout = self._layout
        slot = count * layout.noise_std**2 + (_DECODE_EPS * count * layout.slot_bound) ** 2
        terms = 4 * layout.entries + count + 2
        rounding = _FLOAT_EPS**2 * float(layout.modulus) ** 2 * terms * (count + 1)
        return TOLERANCE_SIGMAS * math.sqrt(slot * (1.0 + noisy_norm_squared) + rounding)

    def _stream(self, label: bytes, lane: int) -> Any:
        """A ChaCha20 keystream under a key derived for ``label`` and ``lane``."""
        return keystream(self._round_key, label + bytes([lane]))

    def exact_tags(self, values: np.ndarray, contributor: str, nonce: str) -> np.ndarray:
        """Integer check values ``(<k_l, m> + t_l) mod M`` of integer entries ``m``.

        For encodings whose every entry is an exact integer (the masked codec,
        :mod:`crypto.lanes`): the tag is then an integer too and can be masked
        modulo ``M`` like any lane (a real-valued tag's fraction would leak
        ``<r, m>`` to anyone holding the check key). ``k_l`` and ``t_l`` are the
        same keyed streams as :meth:`tags` uses, bound to the same binding.
        """
        modulus = self._layout.modulus
        dots = self._exact_dots(values)
        offsets = self._integer_offsets(contributor, nonce)
        return np.array([(d + t) % modulus for d, t in zip(dots, offsets, strict=True)], np.int64)

    def exact_matches(
        self, values: np.ndarray, checks: np.ndarray, contributors: Sequence[tuple[str, str]]
    ) -> bool:
        """Whether summed integer check values match integer entries ``values`` exactly.

        ``checks`` are the summed tags reduced modulo ``M``. A change of any entry
        by a nonzero amount below ``M`` (``M`` prime) passes a lane with
        probability ``1 / M``; all :data:`CHECK_LANES` lanes, ``M^-4``.
        """
        modulus = self._layout.modulus
        dots = self._exact_dots(values)
        rows = [self._integer_offsets(name, nonce) for name, nonce in contributors]
        for lane in range(CHECK_LANES):
            expected = (dots[lane] + sum(row[lane] for row in rows)) % modulus
            if int(checks[lane]) % modulus != expected:
                return False
        return True

    def _exact_dots(self, values: np.ndarray) -> list[int]:
        """Per lane, ``<k_l, values> mod M`` over every entry (all of them integers)."""
        flat = np.asarray(values).reshape(-1)
        if flat.size != self._layout.entries:
            raise ValueError(f"{flat.size} check entries, the layout has {self._layout.entries}")
        modulus = self._layout.modulus
        dots: list[int] = []
        for lane in range(CHECK_LANES):
            integer = self._stream(b"k\x00", lane)
            total = 0
            for start in range(0, flat.size, _CHUNK):
                chunk = flat[start : start + _CHUNK]
                total += _modular_dot(integer.update(bytes(8 * chunk.size)), chunk, modulus)
            dots.append(total % modulus)
        return dots

    def _integer_offsets(self, contributor: str, nonce: str) -> list[int]:
        """``t_l(name, nonce)`` for every lane as integers in ``[0, M)`` (bias below ``2^-32``)."""
        info = b"t\x00" + json.dumps([contributor, nonce]).encode()
        raw = HKDFExpand(algorithm=hashes.SHA256(), length=8 * CHECK_LANES, info=info).derive(
            self._round_key
        )
        return [int(word) % self._layout.modulus for word in np.frombuffer(raw, dtype="<u8")]

    def _offsets(self, contributor: str, nonce: str) -> list[float]:
        """``t_l(name, nonce)`` for every lane, uniform in ``[0, M)``."""
        info = b"t\x00" + json.dumps([contributor, nonce]).encode()
        raw = HKDFExpand(algorithm=hashes.SHA256(), length=8 * CHECK_LANES, info=info).derive(
            self._round_key
        )
        words = np.frombuffer(raw, dtype="<u8")
        return [float(word >> 11) * 2.0**-53 * self._layout.modulus for word in words]

    def _dots(self, values: np.ndarray) -> tuple[list[float], list[float]]:
        """Per lane: ``<r_l, values> + <k_l, exact values>`` modulo ``M``, and ``sum r_lj^2``.

        ``r_lj = factor * u_lj`` with ``u_lj`` uniform on the multiples of ``2^-51`` in
        ``[-1, 1)`` and the factor a power of two. ``u_lj`` is split into two
        halves of at most 26 significant bits (:func:`_coefficients`) and each
        value into two (Veltkamp's split), so each of the four partial products
        is exact; each is reduced modulo ``M`` (exact) before summation, so the
        result is accurate to a few ulps of ``M`` however large ``<r_l, values>``
        is. The second sum is over noisy entries (it sizes the tolerance).
        """
        layout = self._layout
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        if flat.size != layout.entries:
            raise ValueError(f"{flat.size} check entries, the layout has {layout.entries}")
        modulus = layout.modulus
        real_modulus = float(modulus)
        dots: list[float] = []
        norms: list[float] = []
        for lane in range(CHECK_LANES):
            real, integer = self._stream(b"r\x00", lane), self._stream(b"k\x00", lane)
            parts: list[float] = []
            norm_parts: list[float] = []
            exact = 0
            offset = 0
            for segment in layout.segments:
                factor = layout.factor(segment)
                for start in range(0, segment.length, _CHUNK):
                    size = min(_CHUNK, segment.length - start)
                    chunk = flat[offset + start : offset + start + size]
                    u_high, u_low = _coefficients(real.update(bytes(8 * size)))
                    m_high, m_low = _split(chunk)
                    for u_half in (u_high, u_low):
                        for m_half in (m_high, m_low):
                            reduced = np.fmod((u_half * m_half) * factor, real_modulus)
                            parts.append(math.fmod(float(np.sum(reduced)), real_modulus))
                    if segment.noisy:
                        u = u_high + u_low
                        norm_parts.append(factor * factor * float(np.dot(u, u)))
                    else:
                        exact += _modular_dot(integer.update(bytes(8 * size)), chunk, modulus)
                offset += segment.length
            parts.append(float(exact % modulus))
            dots.append(math.fmod(math.fsum(parts), real_modulus))
            norms.append(math.fsum(norm_parts))
        return dots, norms


def _coefficients(keystream: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``u = high + low``, uniform on the multiples of ``2^-51`` in ``[-1, 1)``.

    Each 64-bit word gives ``U``, uniform in ``[-2^51, 2^51)``, and ``u = U 2^-51``;
    ``high = (U >> 26) 2^-25`` and ``low = (U mod 2^26) 2^-51`` have at most 26
    significant bits each, so their products with 26-bit halves are exact.
    The granularity is what sets the check's period: ``r_j d`` is a multiple of
    ``M`` for every key only when ``d`` is a multiple of ``M 2^51 / f_j``, far
    beyond what any slot the verifier accepts can hold (see the module docstring).
    """
    words = np.frombuffer(keystream, dtype="<u8")
    signed = (words >> np.uint64(12)).astype(np.int64) - (1 << 51)
    high = (signed >> 26).astype(np.float64) * 2.0**-25
    low = (signed & ((1 << 26) - 1)).astype(np.float64) * 2.0**-51
    return high, low


def _split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split: ``values = high + low``, each with at most 26 significant bits."""
    scaled = values * 134217729.0  # 2^27 + 1
    high = scaled - (scaled - values)
    return high, values - high


def _modular_dot(keystream: bytes, chunk: np.ndarray, modulus: int) -> int:
    """``sum_j k_j m_j mod M`` exactly, ``k_j`` uniform in ``[0, M)``, ``m_j`` integers."""
    k = np.frombuffer(keystream, dtype="<u8") % np.uint64(modulus)
    m = (np.rint(chunk).astype(np.int64) % modulus).astype(np.uint64)
    products = (k * m) % np.uint64(modulus)  # each product < M^2 <= 2^64: exact
    return int(products.sum(dtype=np.uint64)) % modulus  # _CHUNK * M < 2^64: exact
