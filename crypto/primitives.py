"""Two primitives the check values and the masks share: keyed streams and the prime search.

:func:`keystream` is the one generator of keyed randomness in :mod:`crypto`
(check coefficients, masks, stochastic rounding); :func:`largest_prime_below`
gives the moduli of the exact integer checks.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = ["keystream", "largest_prime_below"]


def keystream(key: bytes, info: bytes) -> Any:
    """A ChaCha20 keystream (an encryptor: ``update(bytes(n))`` gives ``n`` bytes).

    The key is HKDF-expanded (RFC 5869) from ``key`` with ``info``, so every
    distinct ``info`` gives an independent stream; the nonce is fixed at zero,
    which is safe because each derived key is used for one stream only. The one
    generator of keyed randomness in :mod:`crypto` (check values, masks).
    """
    derived = HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(key)
    return Cipher(algorithms.ChaCha20(derived, bytes(16)), mode=None).encryptor()


def largest_prime_below(bound: int) -> int:
    """The largest prime below ``bound`` (deterministic Miller-Rabin, ``bound <= 2^64``)."""
    candidate = bound - 1 if bound % 2 == 0 else bound - 2
    while candidate > 2 and not _is_prime(candidate):
        candidate -= 2
    return candidate


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)  # deterministic below 3.3e24
    for p in bases:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True
