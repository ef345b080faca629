"""Protocol vocabulary of the CKKS layer: magic numbers, versions, bounds."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONTEXT_MAGIC",
    "FORMAT_VERSION",
    "HE_STANDARD_MAX_COEFF_BITS",
    "MAX_HEADER_BYTES",
    "UPDATE_MAGIC",
]

#: Version of every serialised object; bumped on any incompatible change.
#: 2: secret contexts hold the aggregate check key, updates carry contributors and check slots.
FORMAT_VERSION: Final = 2

#: First bytes of a serialised encrypted update or aggregate.
UPDATE_MAGIC: Final = b"XFDU"

#: First bytes of a serialised CKKS context file.
CONTEXT_MAGIC: Final = b"XFDC"

#: Upper bound on a serialised JSON header; anything larger is refused unparsed.
MAX_HEADER_BYTES: Final = 1 << 20

#: Largest total coefficient-modulus size (bits) per ring degree for 128-bit classical
#: security with a ternary secret, from the Homomorphic Encryption Standard
#: (Albrecht et al., "Homomorphic Encryption Security Standard", 2018, Table 1),
#: the same table Microsoft SEAL enforces.
HE_STANDARD_MAX_COEFF_BITS: Final[dict[int, int]] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}
