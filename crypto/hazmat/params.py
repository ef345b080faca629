"""CKKS parameter sets and the TenSEAL contexts built from them.

A parameter set fixes the ring degree ``N`` (``N / 2`` real slots per
ciphertext), the coefficient-modulus primes and the encoding scale. Only
additions happen on ciphertexts in federated averaging, so no rescaling,
relinearisation or Galois keys are needed: with two primes, the first is the
ciphertext modulus and the last the special prime of SEAL's key switching.

Contexts use TenSEAL's *symmetric* encryption: institutions encrypt with the
shared secret key, which gives lower fresh noise than public-key encryption
(measured here: about 8x less at ``N = 8192``) and means the aggregator's
context holds no key material at all, only parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tenseal as ts

from crypto.constants import HE_STANDARD_MAX_COEFF_BITS
from crypto.errors import WeakParametersError

__all__ = ["CKKSParameters", "build_tenseal_context", "check_security"]

_MAX_PRIME_BITS = 60


@dataclass(frozen=True)
class CKKSParameters:
    """One CKKS parameter set.

    Parameters
    ----------
    poly_modulus_degree:
        Ring degree ``N``, a power of two from 1024 to 32768.
    coeff_mod_bit_sizes:
        Bit sizes of the coefficient-modulus primes; the last one is SEAL's
        special prime and is not part of a ciphertext.
    scale_bits:
        ``log2`` of the encoding scale ``Δ``. A value ``x`` is stored as
        ``round(x * Δ)`` modulo the ciphertext modulus.
    """

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    @property
    def slots(self) -> int:
        """Real values one ciphertext holds."""
        return self.poly_modulus_degree // 2

    @property
    def ciphertext_modulus_bits(self) -> int:
        """Bits of the modulus a fresh ciphertext lives under (special prime excluded)."""
        sizes = self.coeff_mod_bit_sizes
        return sum(sizes[:-1]) if len(sizes) > 1 else sizes[0]

    @property
    def capacity_bits(self) -> int:
        """``log2`` of the largest magnitude a slot can hold before it wraps.

        ``|x| * Δ`` must stay below half the ciphertext modulus; one bit is kept
        as a margin against encoding and encryption noise. Decoding goes through
        IEEE doubles, so no more than 50 bits are ever claimed.
        """
        return min(self.ciphertext_modulus_bits - self.scale_bits - 2, 50)

    def canonical(self) -> str:
        """A canonical JSON text of the parameters (hashed into fingerprints)."""
        return json.dumps(
            {
                "poly_modulus_degree": self.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
                "scale_bits": self.scale_bits,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def check_security(params: CKKSParameters) -> None:
    """Refuse parameters below 128-bit security or that SEAL cannot use.

    Raises
    ------
    WeakParametersError
        The ring degree is not in the HE standard's table, the total modulus
        exceeds the 128-bit bound for that degree, a prime is out of range, or
        the scale leaves no room for values.
    """
    n = params.poly_modulus_degree
    if n not in HE_STANDARD_MAX_COEFF_BITS:
        raise WeakParametersError(
            f"poly_modulus_degree {n} is not one of {sorted(HE_STANDARD_MAX_COEFF_BITS)}"
        )
    sizes = params.coeff_mod_bit_sizes
    if not sizes or any(not 17 <= b <= _MAX_PRIME_BITS for b in sizes):
        raise WeakParametersError(
            f"coefficient-modulus primes must each be 17..{_MAX_PRIME_BITS} bits, got {list(sizes)}"
        )
    total, bound = sum(sizes), HE_STANDARD_MAX_COEFF_BITS[n]
    if total > bound:
        raise WeakParametersError(
            f"total coefficient modulus of {total} bits exceeds the {bound}-bit bound for "
            f"128-bit security at poly_modulus_degree {n} (HE standard)"
        )
    if not 10 <= params.scale_bits < params.ciphertext_modulus_bits - 4:
        raise WeakParametersError(
            f"scale of 2^{params.scale_bits} leaves no room under a "
            f"{params.ciphertext_modulus_bits}-bit ciphertext modulus"
        )


def build_tenseal_context(params: CKKSParameters) -> ts.Context:
    """Build a fresh secret TenSEAL context (new secret key) after checking security."""
    check_security(params)
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
    )
    context.global_scale = float(2**params.scale_bits)
    return context
