"""Encrypted updates: encrypt, serialise, sum without a key, decrypt the average.

One update is a list of arrays of any shapes (a model's layers or its change),
weighted by the institution's example count. The weight is multiplied into the
values *and* carried as one more slot inside the ciphertext, so an aggregator
summing updates learns neither any single update nor any single weight:
decrypting the sum gives ``sum(w_i * x_i)`` and ``sum(w_i)``, and their ratio is
the weighted average FedAvg needs (McMahan et al., "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017).

Every fresh update names its contributor (the institution's stable name) with a
fresh random nonce and carries, after its payload, the secret-keyed check slots
of :mod:`crypto.check`. :func:`aggregate` concatenates the contributor lists;
:func:`decrypt_average` and :func:`decrypt_sums` verify, before returning
anything, that the aggregate is exactly the sum of its declared, distinct
contributors' updates for this run, round, encoding and shapes, and raise
:class:`~crypto.errors.IntegrityError` otherwise.

A caller may bind its update to more than the run and round: ``binding``
(bytes, in the header and in the check value's key derivation). Only updates
with one binding sum to an aggregate that verifies, and a verifier that passes
the binding it expects refuses any other. crossfed's institutions bind each
model update to a digest of the aggregate they started the round from
(:mod:`clients.encryption_mod`).

Parsing bounds what TenSEAL will allocate and refuses trivial ciphertexts
(:mod:`crypto.blobs`).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

import numpy as np
import tenseal as ts

from crypto.check import NONCE_BYTES
from crypto.encrypted import (
    AVERAGE,
    SUM,
    EncryptedUpdate,
    codec_of,
    decrypted_slots,
)
from crypto.errors import (
    ContextMismatchError,
    IntegrityError,
    InvalidWeightError,
    MalformedDataError,
    NonFiniteInputError,
    OverflowRiskError,
    SecretKeyRequiredError,
    ShapeMismatchError,
)
from crypto.integrity import (
    MAX_BINDING_BYTES,
    MAX_CONTRIBUTOR_NAME,
    round_check,
    valid_binding,
    valid_name,
    verify,
)
from crypto.keys import PublicContext, SecretContext

__all__ = [
    "aggregate",
    "decrypt_average",
    "decrypt_sums",
    "encrypt_sums",
    "encrypt_update",
]


def encrypt_update(
    context: SecretContext,
    arrays: Sequence[np.ndarray],
    weight: int,
    *,
    contributor: str,
    round_id: int = 0,
    total_weight: int | None = None,
    rng: np.random.Generator | None = None,
    session: str = "",
    binding: bytes = b"",
) -> EncryptedUpdate:
    """Encrypt ``arrays`` weighted by ``weight`` (an institution's example count).

    Parameters
    ----------
    context:
        The federation's secret context.
    arrays:
        The update: arrays of any shapes, finite values.
    weight:
        Example count, a positive integer.
    contributor:
        The institution's stable name (from its kit), 1 to
        :data:`MAX_CONTRIBUTOR_NAME` characters. Required: the check value is
        bound to it, and institutions refuse an aggregate naming one twice.
    round_id:
        Federation round the update belongs to.
    total_weight:
        Federation-wide example count; required by the packed codec only.
    rng:
        Randomness for stochastic rounding (packed codec); a fresh generator
        seeded from the operating system when omitted.
    session:
        The run the update belongs to (see :class:`EncryptedUpdate`).
    binding:
        Up to :data:`~crypto.integrity.MAX_BINDING_BYTES` bytes the check value
        is bound to besides run and round, carried in the header (crossfed: a
        digest of the model the institution started the round from). Updates
        with different bindings sum to an aggregate that fails verification.

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    NonFiniteInputError
        An array holds NaN or infinity.
    InvalidWeightError
        ``weight`` is not a positive integer.
    OverflowRiskError
        Values too large for the preset's headroom.
    TypeError, ValueError
        ``contributor`` is missing, not a string, empty or too long; ``binding``
        is not bytes or too long.
    """
    if isinstance(weight, bool) or not isinstance(weight, int | np.integer) or weight <= 0:
        raise InvalidWeightError(f"weight must be a positive integer example count, got {weight!r}")
    return _encrypt(
        context,
        arrays,
        AVERAGE,
        int(weight),
        round_id,
        total_weight,
        rng,
        session,
        contributor,
        binding,
    )


def encrypt_sums(
    context: SecretContext,
    arrays: Sequence[np.ndarray],
    *,
    contributor: str,
    round_id: int = 0,
    session: str = "",
    binding: bytes = b"",
) -> EncryptedUpdate:
    """Encrypt values to be *summed* across institutions, exactly and over a wide range.

    For federation-wide statistics (example counts, feature sums and sums of
    squares): values up to about ``2^50`` in magnitude, summed with an absolute
    error near the preset's noise (see :class:`~crypto.codec.SumCodec`).
    Decrypt the aggregate with :func:`decrypt_sums`. ``contributor`` and
    ``binding`` as for :func:`encrypt_update`.

    Raises
    ------
    SecretKeyRequiredError, NonFiniteInputError, OverflowRiskError, TypeError, ValueError
        As :func:`encrypt_update`.
    """
    return _encrypt(context, arrays, SUM, 1, round_id, None, None, session, contributor, binding)


def _encrypt(
    context: SecretContext,
    arrays: Sequence[np.ndarray],
    encoding: str,
    weight: int,
    round_id: int,
    total_weight: int | None,
    rng: np.random.Generator | None,
    session: str,
    contributor: str,
    binding: bytes,
) -> EncryptedUpdate:
    if not isinstance(context, SecretContext):
        raise SecretKeyRequiredError("encryption needs the institutions' secret context")
    if not isinstance(contributor, str):
        raise TypeError(f"contributor must be the institution's name, got {type(contributor)}")
    if not valid_name(contributor):
        raise ValueError(f"a contributor name has 1 to {MAX_CONTRIBUTOR_NAME} characters")
    if not isinstance(binding, bytes):
        raise TypeError(f"binding must be bytes, got {type(binding).__name__}")
    if not valid_binding(binding):
        raise ValueError(f"a binding has at most {MAX_BINDING_BYTES} bytes")
    if round_id < 0:
        raise ContextMismatchError(f"round id must be non-negative, got {round_id}")
    if len(session) > 256:
        raise ContextMismatchError("a session identifier has at most 256 characters")
    if not arrays:
        raise ShapeMismatchError("an update needs at least one array")
    shapes = tuple(tuple(int(d) for d in np.shape(a)) for a in arrays)
    flat = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])
    if not np.all(np.isfinite(flat)):
        bad = int(np.count_nonzero(~np.isfinite(flat)))
        raise NonFiniteInputError(f"update holds {bad} NaN or infinite values; refusing to encrypt")
    preset = context.preset
    generator = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    codec = codec_of(preset, encoding)
    payload = codec.encode(flat, weight, total_weight, generator)
    nonce = secrets.token_bytes(NONCE_BYTES).hex()
    check = round_check(
        context,
        codec,
        encoding=encoding,
        shapes=shapes,
        session=session,
        round_id=round_id,
        binding=binding,
    )
    tags = check.tags(codec.mac_values(payload, flat.size), contributor, nonce)
    slots = np.concatenate([payload, tags])
    step = preset.params.slots
    vectors = tuple(
        ts.ckks_vector(context.tenseal_context, slots[start : start + step])
        for start in range(0, slots.size, step)
    )
    return EncryptedUpdate(
        context.fingerprint,
        round_id,
        shapes,
        1,
        encoding,
        vectors,
        session,
        ((contributor, nonce),),
        binding,
    )


def aggregate(
    context: PublicContext | SecretContext, updates: Sequence[EncryptedUpdate]
) -> EncryptedUpdate:
    """Sum updates homomorphically; needs no key.

    The result lists every input's contributors, in order.

    Raises
    ------
    ContextMismatchError
        Updates made under another context, for different runs or rounds, or
        with different bindings (their sum would never verify).
    ShapeMismatchError
        Updates with different shapes.
    OverflowRiskError
        More institutions than the preset's ``max_institutions``.
    MalformedDataError
        An update whose count differs from its contributor list.
    IntegrityError
        A contributor name or nonce appears twice: institutions would refuse the sum.
    """
    if not updates:
        raise ShapeMismatchError("nothing to aggregate: no updates")
    first = updates[0]
    for update in updates:
        if update.fingerprint != context.fingerprint:
            raise ContextMismatchError("an update was made under another federation's context")
        if update.session != first.session:
            raise ContextMismatchError("updates from different runs cannot be summed")
        if update.round_id != first.round_id:
            raise ContextMismatchError(
                f"updates from rounds {first.round_id} and {update.round_id} cannot be summed"
            )
        if update.binding != first.binding:
            raise ContextMismatchError(
                "updates with different bindings (made from different starting models) "
                "cannot be summed"
            )
        if update.encoding != first.encoding:
            raise ShapeMismatchError("averages and sums cannot be added together")
        if update.shapes != first.shapes or len(update.vectors) != len(first.vectors):
            raise ShapeMismatchError("updates with different shapes cannot be summed")
        if update.count != len(update.contributors):
            raise MalformedDataError("an update's count differs from its contributor list")
    count = sum(update.count for update in updates)
    if count > context.preset.max_institutions:
        raise OverflowRiskError(
            f"{count} updates exceed the {context.preset.max_institutions} institutions the "
            f"preset {context.preset.name!r} can sum without overflow"
        )
    contributors = tuple(pair for update in updates for pair in update.contributors)
    names = [name for name, _ in contributors]
    nonces = [nonce for _, nonce in contributors]
    if len(set(names)) != len(names) or len(set(nonces)) != len(nonces):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise IntegrityError(
            f"contributors appear more than once ({', '.join(repeated) or 'a repeated nonce'}):"
            " institutions refuse such a sum"
        )
    # Out-of-place additions: TenSEAL's copy() insists on a secret key.
    sums = list(first.vectors)
    for update in updates[1:]:
        try:
            sums = [total + vector for total, vector in zip(sums, update.vectors, strict=True)]
        except Exception as exc:  # SEAL refuses mismatched scales or parameters
            raise MalformedDataError(f"ciphertexts cannot be added: {exc}") from exc
    return EncryptedUpdate(
        first.fingerprint,
        first.round_id,
        first.shapes,
        count,
        first.encoding,
        tuple(sums),
        first.session,
        contributors,
        first.binding,
    )


def decrypt_average(
    context: SecretContext,
    encrypted_sum: EncryptedUpdate,
    *,
    total_weight: int | None = None,
    min_contributors: int = 1,
    binding: bytes | None = None,
) -> tuple[list[np.ndarray], float]:
    """Verify and decrypt a sum: ``(weighted average arrays, summed weight)``.

    Nothing is returned, and no error depends on a decrypted value, until the
    sum's check slots show that it is exactly the sum of its declared
    contributors' updates for its run, round, encoding and shapes. The caller
    checks the run and round (``EncryptedUpdate.from_bytes(expected_round=...,
    expected_session=...)``) and that its own name is in
    :attr:`EncryptedUpdate.contributor_names`.

    Parameters
    ----------
    context:
        The federation's secret context.
    encrypted_sum:
        The aggregate.
    total_weight:
        Federation-wide example count (packed codec).
    min_contributors:
        Fewest distinct contributors the caller accepts (the federation's
        sample size less its declared dropouts).
    binding:
        The binding every contributor must have made its update under (see
        :func:`encrypt_update`); ``None`` accepts the one the header declares
        (the check value still holds the header to it).

    Raises
    ------
    SecretKeyRequiredError
        ``context`` is public.
    ContextMismatchError
        The sum was made under another context.
    IntegrityError
        Contributors repeated, malformed or fewer than ``min_contributors``,
        another binding than ``binding``, a slot out of range, or the check
        value does not match: a forged, scaled, mixed, stale, partial,
        relabelled or differently bound sum.
    DecryptionError
        Decryption failed or gave an impossible summed weight.
    """
    if encrypted_sum.encoding != AVERAGE:
        raise ShapeMismatchError("this holds sums: decrypt it with decrypt_sums")
    return _decrypt(context, encrypted_sum, total_weight, min_contributors, binding)


def decrypt_sums(
    context: SecretContext,
    encrypted_sum: EncryptedUpdate,
    *,
    min_contributors: int = 1,
    binding: bytes | None = None,
) -> tuple[list[np.ndarray], int]:
    """Verify and decrypt an aggregate of :func:`encrypt_sums` updates: ``(sums, institutions)``.

    ``min_contributors`` and ``binding`` as for :func:`decrypt_average`.

    Raises
    ------
    SecretKeyRequiredError, ContextMismatchError, IntegrityError, DecryptionError
        As :func:`decrypt_average`.
    """
    if encrypted_sum.encoding != SUM:
        raise ShapeMismatchError("this holds weighted averages: use decrypt_average")
    arrays, count = _decrypt(context, encrypted_sum, None, min_contributors, binding)
    return arrays, int(count)


def _decrypt(
    context: SecretContext,
    encrypted_sum: EncryptedUpdate,
    total_weight: int | None,
    min_contributors: int,
    binding: bytes | None,
) -> tuple[list[np.ndarray], float]:
    slots = decrypted_slots(context, encrypted_sum, min_contributors, binding)
    codec = codec_of(context.preset, encrypted_sum.encoding)
    n_values = encrypted_sum.n_values
    check = round_check(
        context,
        codec,
        encoding=encrypted_sum.encoding,
        shapes=encrypted_sum.shapes,
        session=encrypted_sum.session,
        round_id=encrypted_sum.round_id,
        binding=encrypted_sum.binding,
    )
    payload = verify(check, codec, slots, n_values, encrypted_sum.contributors)
    average, weight = codec.decode(payload, n_values, encrypted_sum.count, total_weight)
    arrays: list[np.ndarray] = []
    offset = 0
    for shape in encrypted_sum.shapes:
        size = math.prod(shape)
        arrays.append(average[offset : offset + size].reshape(shape))
        offset += size
    return arrays, weight
