"""crossfed's CKKS layer: safe recipes for encrypted federated averaging.

Institutions share a :class:`SecretContext`; the aggregator holds only its
:class:`PublicContext`. An institution calls :func:`encrypt_update`, the
aggregator :func:`aggregate`, the institutions :func:`decrypt_average`, which
refuses with :class:`IntegrityError` anything but this round's exact sum of the
declared contributors (secret-keyed check slots, :mod:`crypto.check`). Presets
(:data:`PRESETS`) make every parameter choice; raw CKKS parameters live in
:mod:`crypto.hazmat`. This package imports no Flower, torch or gRPC.
"""

from crypto.encrypted import EncryptedUpdate
from crypto.errors import (
    ContextMismatchError,
    CryptoError,
    DecryptionError,
    IntegrityError,
    InvalidWeightError,
    MalformedDataError,
    NonFiniteInputError,
    OverflowRiskError,
    SecretKeyPresentError,
    SecretKeyRequiredError,
    ShapeMismatchError,
    WeakParametersError,
)
from crypto.keys import PublicContext, SecretContext, generate_secret_context, load_context
from crypto.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset
from crypto.update import (
    aggregate,
    decrypt_average,
    decrypt_sums,
    encrypt_sums,
    encrypt_update,
)

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "ContextMismatchError",
    "CryptoError",
    "DecryptionError",
    "EncryptedUpdate",
    "IntegrityError",
    "InvalidWeightError",
    "MalformedDataError",
    "NonFiniteInputError",
    "OverflowRiskError",
    "Preset",
    "PublicContext",
    "SecretContext",
    "SecretKeyPresentError",
    "SecretKeyRequiredError",
    "ShapeMismatchError",
    "WeakParametersError",
    "aggregate",
    "decrypt_average",
    "decrypt_sums",
    "encrypt_sums",
    "encrypt_update",
    "generate_secret_context",
    "get_preset",
    "load_context",
]
