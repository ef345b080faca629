"""Named CKKS presets: parameters plus the codec that uses them.

=========  ==========================  =====  ==========================================
name       ring, coefficient bits      scale  use
=========  ==========================  =====  ==========================================
standard   8192, [60, 40, 40, 60]      2^40   TenSEAL's tutorial setting: the comparison
lean       8192, [60, 60]              2^25   addition-only default, one float per slot
packed     8192, [60, 60]              2^17   clipped, quantised, two 21-bit lanes a slot
masked16   4096, [56, 53]              2^15   masked 16-bit deltas, two 20-bit lanes a slot
masked8    4096, [32, 32, 45]          2^14   masked 8-bit deltas, four 12-bit lanes a slot
=========  ==========================  =====  ==========================================

The masked presets (:mod:`crypto.masked`) sum at most 16 institutions: each
lane needs ``log2(institutions)`` bits above its value bits, and a slot holds
at most 48 bits through the double-precision decoder. ``masked16`` clips each
delta value to [-4, 4] (at the default step 0.3 round 1 moves the intercept by
about 2; a clip of 1 cost 0.003 ROC AUC on the default scenario), ``masked8``
to [-1, 1] (its 8 bits are too coarse for a wider range). Measured here (TenSEAL
0.3.18, 16 institutions summed, 30,000 slots at random and extreme lane
values): every slot decoded within 0.08 (masked16) and 0.16 (masked8) of its
integer, a limit of 0.5; 30.3 and 33.7 serialised bytes a slot, so 15.1 and
8.4 bytes a parameter (3.8x and 2.1x a float32).

Federated averaging only adds ciphertexts, so two primes suffice (DESIGN.md).
Every preset, and any custom one, passes :func:`~crypto.hazmat.check_security`
(HE standard, 128-bit) when a context is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crypto.codec import FloatCodec, PackedCodec, SumCodec
from crypto.errors import CryptoError, OverflowRiskError, WeakParametersError
from crypto.hazmat.params import CKKSParameters, check_security
from crypto.lanes import MaskedCodec

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "get_preset"]

#: Name of the preset used when none is given.
DEFAULT_PRESET = "lean"

#: Default most institutions one sum may hold.
DEFAULT_MAX_INSTITUTIONS = 128


@dataclass(frozen=True)
class Preset:
    """A named CKKS parameter set and its codec.

    Parameters
    ----------
    name:
        Identifier carried in every serialised object.
    params:
        Raw CKKS parameters (see :mod:`crypto.hazmat`).
    codec:
        ``"float"`` or ``"packed"``.
    max_institutions:
        Most updates one aggregate may sum; sets overflow headroom.
    lanes, lane_bits, clip:
        Packed codec only: values per slot, bits per value, agreed clip range.
    """

    name: str
    params: CKKSParameters
    codec: str = "float"
    max_institutions: int = DEFAULT_MAX_INSTITUTIONS
    lanes: int = 2
    lane_bits: int = 21
    clip: float = 1.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_security(self.params)
        if self.codec not in ("float", "packed", "masked"):
            raise WeakParametersError(
                f"unknown codec {self.codec!r}: use 'float', 'packed' or 'masked'"
            )
        if not 1 <= self.max_institutions <= 1 << 16:
            raise WeakParametersError(
                f"max_institutions must be 1..65536, got {self.max_institutions}"
            )
        try:  # validates lanes against the capacity
            self.build_codec() if self.codec != "masked" else self.build_masked_codec()
        except OverflowRiskError as exc:
            raise WeakParametersError(f"preset {self.name!r}: {exc}") from exc

    def build_masked_codec(self) -> MaskedCodec | None:
        """The masked codec (:mod:`crypto.lanes`) of a masked preset; ``None`` for others.

        For a masked preset ``lane_bits`` is ``B``, the bits of each value;
        lanes are ``B + ceil(log2(max_institutions))`` bits wide.
        """
        if self.codec != "masked":
            return None
        return MaskedCodec(
            capacity_bits=self.params.capacity_bits,
            lanes=self.lanes,
            value_bits=self.lane_bits,
            clip=self.clip,
            max_institutions=self.max_institutions,
        )

    def build_codec(self) -> FloatCodec | PackedCodec:
        """The codec object this preset's updates are encoded with (float or packed).

        Raises
        ------
        WeakParametersError
            A masked preset: its updates go through :class:`crypto.MaskedRound`.
        """
        if self.codec == "masked":
            raise WeakParametersError(
                f"preset {self.name!r} masks updates: quantise and mask them with "
                "crypto.quantise_update and crypto.MaskedRound"
            )
        if self.codec == "float":
            return FloatCodec(
                capacity_bits=self.params.capacity_bits,
                scale_bits=self.params.scale_bits,
                max_institutions=self.max_institutions,
            )
        return PackedCodec(
            capacity_bits=self.params.capacity_bits,
            lanes=self.lanes,
            lane_bits=self.lane_bits,
            clip=self.clip,
            max_institutions=self.max_institutions,
        )

    def build_sum_codec(self) -> SumCodec:
        """The codec of exact wide-range sums (feature statistics) under this preset."""
        return SumCodec(
            capacity_bits=self.params.capacity_bits,
            scale_bits=self.params.scale_bits,
            max_institutions=self.max_institutions,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for headers and context files (description left out)."""
        return {
            "name": self.name,
            "poly_modulus_degree": self.params.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.params.coeff_mod_bit_sizes),
            "scale_bits": self.params.scale_bits,
            "codec": self.codec,
            "max_institutions": self.max_institutions,
            "lanes": self.lanes,
            "lane_bits": self.lane_bits,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Preset:
        """Rebuild a preset from :meth:`to_dict` output, validating every field."""
        try:
            params = CKKSParameters(
                poly_modulus_degree=int(data["poly_modulus_degree"]),
                coeff_mod_bit_sizes=tuple(int(b) for b in data["coeff_mod_bit_sizes"]),
                scale_bits=int(data["scale_bits"]),
            )
            return cls(
                name=str(data["name"]),
                params=params,
                codec=str(data["codec"]),
                max_institutions=int(data["max_institutions"]),
                lanes=int(data["lanes"]),
                lane_bits=int(data["lane_bits"]),
                clip=float(data["clip"]),
            )
        except CryptoError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise WeakParametersError(f"invalid preset description: {exc!r}") from exc


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="standard",
            params=CKKSParameters(8192, (60, 40, 40, 60), 40),
            description="TenSEAL tutorial setting (8192, [60,40,40,60], 2^40): comparison point",
        ),
        Preset(
            name="lean",
            params=CKKSParameters(8192, (60, 60), 25),
            description="addition-only (8192, [60,60], 2^25): one float per slot",
        ),
        Preset(
            name="masked16",
            params=CKKSParameters(4096, (56, 53), 15),
            codec="masked",
            max_institutions=16,
            lanes=2,
            lane_bits=16,
            clip=4.0,
            description="masked 16-bit deltas in [-4, 4], two 20-bit lanes a slot, up to 16 "
            "institutions (4096, [56,53], 2^15)",
        ),
        Preset(
            name="masked8",
            params=CKKSParameters(4096, (32, 32, 45), 14),
            codec="masked",
            max_institutions=16,
            lanes=4,
            lane_bits=8,
            description="masked 8-bit deltas, four 12-bit lanes a slot, up to 16 "
            "institutions (4096, [32,32,45], 2^14)",
        ),
        Preset(
            name="packed",
            params=CKKSParameters(8192, (60, 60), 17),
            codec="packed",
            description="clip to [-1, 1], quantise, two 21-bit lanes per slot (8192, [60,60])",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """Return the named preset.

    Raises
    ------
    WeakParametersError
        No preset has that name.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise WeakParametersError(
            f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
