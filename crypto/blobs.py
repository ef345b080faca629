"""Ciphertext blobs: bounded before TenSEAL inflates them, and never trivial.

SEAL compresses serialisations (zstd). A CKKS ciphertext is uniformly random
modulo its primes and barely compresses, so a serialised ciphertext much
shorter than the preset's information content is compressed filler: an
all-zero ciphertext shrinks to about 120 bytes and inflates to 131 KiB on load
(a 7.9 MiB reply would ask for about 8 GiB). Such a blob is refused before
TenSEAL sees it. After loading, a ciphertext must be one ciphertext of two
polynomials at the preset's top level, and not *transparent* (second
polynomial zero): a transparent ciphertext decrypts to whatever its first
polynomial encodes, a plaintext in disguise that needs no key to make.

Measured here (TenSEAL 0.3.18, zstd): fresh and summed ciphertexts take
131,217 bytes (lean, packed; 1.07 times their information content of
``2 N sum(bits) / 8`` = 122,880 bytes) and 331,071 to 331,158 bytes (standard;
1.15 times 286,720). The bound is 15/16 of the information content (115,200
and 268,800 bytes). What a blob above it may still inflate to is bounded by
SEAL's largest ciphertext (16 polynomials): about 9 times (lean) to 12 times
(standard) its size, instead of a thousand.
"""

from __future__ import annotations

import tenseal as ts

from crypto.errors import MalformedDataError
from crypto.keys import PublicContext, SecretContext
from crypto.presets import Preset

__all__ = ["load_vector", "min_blob_bytes"]

#: Fraction of a ciphertext's information content below which a blob must be filler.
_MIN_BLOB_FRACTION = 15 / 16


def min_blob_bytes(preset: Preset) -> int:
    """Shortest serialisation a genuine ciphertext of ``preset`` can have."""
    params = preset.params
    information = 2 * params.poly_modulus_degree * params.ciphertext_modulus_bits // 8
    return int(information * _MIN_BLOB_FRACTION)


def load_vector(
    context: PublicContext | SecretContext, blob: bytes, size: int, index: int
) -> ts.CKKSVector:
    """Load ciphertext ``index`` of an update, which must hold ``size`` values.

    Raises
    ------
    MalformedDataError
        The blob is far too short (refused unparsed), corrupt, not one
        two-polynomial ciphertext at the top level, trivial, at another scale
        than the preset's or not in NTT form, or of another size.
    """
    params = context.preset.params
    shortest = min_blob_bytes(context.preset)
    if len(blob) < shortest:
        raise MalformedDataError(
            f"ciphertext {index} of {len(blob)} bytes is far shorter than the {shortest} a "
            "ciphertext of this preset needs: refused before decompression"
        )
    try:
        vector = ts.ckks_vector_from(context.tenseal_context, blob)
        ciphertexts = vector.ciphertext()
        shape_ok = len(ciphertexts) == 1 and (
            ciphertexts[0].size() == 2
            and ciphertexts[0].coeff_modulus_size() == max(len(params.coeff_mod_bit_sizes) - 1, 1)
        )
        trivial = shape_ok and ciphertexts[0].is_transparent()
        # Every honest ciphertext, fresh or summed, is in NTT form at the preset's scale:
        # a scale field set to anything else would change what every slot decodes to.
        encoding_ok = (
            shape_ok
            and ciphertexts[0].is_ntt_form()
            and ciphertexts[0].scale == 2.0**params.scale_bits
        )
    except Exception as exc:  # TenSEAL raises bare ValueError/RuntimeError/TypeError
        raise MalformedDataError(f"ciphertext {index} is corrupt: {exc}") from exc
    if not shape_ok:
        raise MalformedDataError(
            f"ciphertext {index} is not one fresh or summed ciphertext of this preset"
        )
    if trivial:
        raise MalformedDataError(
            f"ciphertext {index} is trivial (transparent): it was not made with the key"
        )
    if not encoding_ok:
        raise MalformedDataError(
            f"ciphertext {index} is not at this preset's scale 2^{params.scale_bits} in NTT "
            "form: its slots would decode to other values"
        )
    if vector.size() != size:
        raise MalformedDataError(
            f"ciphertext {index} holds {vector.size()} values, expected {size}"
        )
    return vector
