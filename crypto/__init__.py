"""crossfed's CKKS layer: safe recipes for encrypted federated averaging.

Institutions share a :class:`SecretContext`; the aggregator holds only its
:class:`PublicContext`. An institution calls :func:`encrypt_update`, the
aggregator :func:`aggregate`, the institutions :func:`decrypt_average`, which
refuses with :class:`IntegrityError` anything but this round's exact sum of the
declared contributors (secret-keyed check slots, :mod:`crypto.check`). With a
masked preset (``masked16``, ``masked8``) updates are quantised deltas under
pairwise masks (:mod:`crypto.masked`): :func:`quantise_update`,
:class:`MaskedRound`, :func:`aggregate`, :func:`decrypt_masked`; exact
integer sums (statistics, metrics) through :func:`integer_update` and
:func:`integer_sum`. Presets (:data:`PRESETS`) make every parameter choice; raw
CKKS parameters live in :mod:`crypto.hazmat`. This package imports no Flower, torch or gRPC.
"""

from crypto.encrypted import EncryptedUpdate
from crypto.errors import (
    ContextMismatchError,
    CryptoError,
    DecryptionError,
    HeaderRefusedError,
    IntegrityError,
    InvalidPeerKeyError,
    InvalidWeightError,
    MalformedDataError,
    MaskingRefusedError,
    NonFiniteInputError,
    OverflowRiskError,
    SecretKeyPresentError,
    SecretKeyRequiredError,
    ShapeMismatchError,
    WeakParametersError,
)
from crypto.files import write_atomically
from crypto.integers import (
    INTEGER_BITS,
    fixed_point,
    from_fixed_point,
    integer_sum,
    integer_update,
)
from crypto.keys import PublicContext, SecretContext, generate_secret_context, load_context
from crypto.masked import MaskedRound, decrypt_masked
from crypto.masks import MASK_PURPOSES, AgreementKey, canonical_public_key, set_digest
from crypto.padded import PaddedUpdate, open_padded, pad_update, sum_padded
from crypto.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset
from crypto.quantised import MaskedSum, QuantisedUpdate, quantise_update
from crypto.update import (
    aggregate,
    decrypt_average,
    decrypt_sums,
    encrypt_sums,
    encrypt_update,
)

__all__ = [
    "DEFAULT_PRESET",
    "INTEGER_BITS",
    "MASK_PURPOSES",
    "PRESETS",
    "AgreementKey",
    "ContextMismatchError",
    "CryptoError",
    "DecryptionError",
    "EncryptedUpdate",
    "HeaderRefusedError",
    "IntegrityError",
    "InvalidPeerKeyError",
    "InvalidWeightError",
    "MalformedDataError",
    "MaskedRound",
    "MaskedSum",
    "MaskingRefusedError",
    "NonFiniteInputError",
    "OverflowRiskError",
    "PaddedUpdate",
    "Preset",
    "PublicContext",
    "QuantisedUpdate",
    "SecretContext",
    "SecretKeyPresentError",
    "SecretKeyRequiredError",
    "ShapeMismatchError",
    "WeakParametersError",
    "aggregate",
    "canonical_public_key",
    "decrypt_average",
    "decrypt_masked",
    "decrypt_sums",
    "encrypt_sums",
    "encrypt_update",
    "fixed_point",
    "from_fixed_point",
    "generate_secret_context",
    "get_preset",
    "integer_sum",
    "integer_update",
    "load_context",
    "open_padded",
    "pad_update",
    "quantise_update",
    "set_digest",
    "sum_padded",
    "write_atomically",
]
