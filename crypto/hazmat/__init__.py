"""Raw CKKS parameters and TenSEAL contexts: dangerous, read before use.

Everything here takes the choices the top-level recipes make for you: ring
degree, coefficient-modulus primes, scale. A wrong choice gives weak security
(refused by :func:`check_security`), overflow (garbage sums) or noise that
swamps the values. Prefer :mod:`crypto`'s presets; come here only to add one.
"""

from crypto.hazmat.params import CKKSParameters, build_tenseal_context, check_security

__all__ = ["CKKSParameters", "build_tenseal_context", "check_security"]
