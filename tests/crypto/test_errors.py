"""Refusals: every misuse the layer can detect raises its own typed error.

Secret operations on a public context, data from another key, preset or
round, wrong shapes, non-finite inputs, invalid weights, overflow risks and
too many institutions.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

import crypto
from crypto import (
    PRESETS,
    ContextMismatchError,
    CryptoError,
    EncryptedUpdate,
    IntegrityError,
    InvalidWeightError,
    NonFiniteInputError,
    OverflowRiskError,
    PublicContext,
    SecretContext,
    SecretKeyRequiredError,
    ShapeMismatchError,
    aggregate,
    decrypt_average,
    decrypt_sums,
    encrypt_sums,
    encrypt_update,
    generate_secret_context,
)
from crypto.codec import FloatCodec

PRESET_NAMES = ("standard", "lean", "packed")

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())


def layers(rng: np.random.Generator, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    return [rng.uniform(0.1, 0.9, size=math.prod(s)).reshape(s) for s in shapes]


def total_for(ctx: SecretContext | PublicContext) -> int | None:
    return 1000 if ctx.preset.codec == "packed" else None


# --- secret operations need the secret context -------------------------------------------------


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_a_public_context_cannot_decrypt_or_encrypt(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    total = total_for(secret)
    received = [
        EncryptedUpdate.from_bytes(
            public,
            encrypt_update(
                secret, layers(rng, (4,)), 2, total_weight=total, contributor=next(NAMES)
            ).to_bytes(),
        )
        for _ in range(2)
    ]
    summed = aggregate(public, received)
    with pytest.raises(SecretKeyRequiredError):
        decrypt_average(public, summed, total_weight=total)  # type: ignore[arg-type]
    with pytest.raises(SecretKeyRequiredError):
        encrypt_update(public, layers(rng, (4,)), 2, total_weight=total, contributor=next(NAMES))  # type: ignore[arg-type]
    # Below the recipes too: the aggregator's TenSEAL context holds no key to decrypt with.
    assert not public.tenseal_context.has_secret_key()
    with pytest.raises(ValueError, match="secret_key"):
        summed.vectors[0].decrypt()
    # The institutions, parsing the same bytes, can.
    average, _ = decrypt_average(
        secret, EncryptedUpdate.from_bytes(secret, summed.to_bytes()), total_weight=total
    )
    assert average[0].shape == (4,)


# --- fingerprints, presets, rounds, shapes ------------------------------------------------------


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_an_update_under_another_key_is_refused(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    other_secret_contexts: dict[str, SecretContext],
    rng: np.random.Generator,
) -> None:
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    other = other_secret_contexts[preset_name]
    assert other.fingerprint != secret.fingerprint
    total = total_for(secret)
    mine = encrypt_update(secret, layers(rng, (6,)), 3, total_weight=total, contributor=next(NAMES))
    theirs = encrypt_update(
        other, layers(rng, (6,)), 3, total_weight=total, contributor=next(NAMES)
    )
    with pytest.raises(ContextMismatchError):
        EncryptedUpdate.from_bytes(public, theirs.to_bytes())
    with pytest.raises(ContextMismatchError):
        EncryptedUpdate.from_bytes(secret, theirs.to_bytes())
    with pytest.raises(ContextMismatchError):
        aggregate(public, [theirs])
    with pytest.raises(ContextMismatchError):
        aggregate(public, [mine, theirs])
    with pytest.raises(ContextMismatchError):
        aggregate(public, [theirs, mine])
    with pytest.raises(ContextMismatchError):
        decrypt_average(secret, aggregate(other.public(), [theirs]), total_weight=total)


@pytest.mark.parametrize(
    ("made_under", "read_under"),
    [("lean", "packed"), ("packed", "lean"), ("standard", "lean"), ("lean", "standard")],
)
def test_an_update_under_another_preset_is_refused(
    made_under: str,
    read_under: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    update = encrypt_update(
        secret_contexts[made_under],
        layers(rng, (5,)),
        2,
        total_weight=total_for(secret_contexts[made_under]),
        contributor=next(NAMES),
    )
    with pytest.raises(ContextMismatchError):
        EncryptedUpdate.from_bytes(public_contexts[read_under], update.to_bytes())
    with pytest.raises(ContextMismatchError):
        aggregate(public_contexts[read_under], [update])
    with pytest.raises(ContextMismatchError):
        decrypt_average(secret_contexts[read_under], update, total_weight=1000)


def test_an_update_for_another_round_is_refused(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    data = encrypt_update(
        lean_secret, layers(rng, (3,)), 1, round_id=4, contributor=next(NAMES)
    ).to_bytes()
    assert EncryptedUpdate.from_bytes(lean_public, data, expected_round=4).round_id == 4
    for wrong in (0, 3, 5):
        with pytest.raises(ContextMismatchError):
            EncryptedUpdate.from_bytes(lean_public, data, expected_round=wrong)


def test_a_negative_round_is_refused_at_encrypt(
    lean_secret: SecretContext, rng: np.random.Generator
) -> None:
    with pytest.raises(ContextMismatchError):
        encrypt_update(lean_secret, layers(rng, (3,)), 1, round_id=-1, contributor=next(NAMES))


def test_unexpected_shapes_are_refused(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    data = encrypt_update(
        lean_secret, layers(rng, (2, 3), (4,)), 1, contributor=next(NAMES)
    ).to_bytes()
    parsed = EncryptedUpdate.from_bytes(lean_public, data, expected_shapes=[[2, 3], [4]])
    assert parsed.shapes == ((2, 3), (4,))
    for wrong in ([(3, 2), (4,)], [(6,), (4,)], [(2, 3)], [(2, 3), (4,), (1,)], [(4,), (2, 3)]):
        with pytest.raises(ShapeMismatchError):
            EncryptedUpdate.from_bytes(lean_public, data, expected_shapes=wrong)


def test_aggregate_refuses_mixed_rounds_and_shapes(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    base = encrypt_update(lean_secret, layers(rng, (2, 3)), 1, round_id=1, contributor=next(NAMES))
    later = encrypt_update(lean_secret, layers(rng, (2, 3)), 1, round_id=2, contributor=next(NAMES))
    flat = encrypt_update(
        lean_secret, layers(rng, (6,)), 1, round_id=1, contributor=next(NAMES)
    )  # same size, other shape
    longer = encrypt_update(
        lean_secret, layers(rng, (5000,)), 1, round_id=1, contributor=next(NAMES)
    )
    with pytest.raises(ContextMismatchError):
        aggregate(lean_public, [base, later])
    with pytest.raises(ShapeMismatchError):
        aggregate(lean_public, [base, flat])
    with pytest.raises(ShapeMismatchError):
        aggregate(lean_public, [base, longer])
    with pytest.raises(ShapeMismatchError):
        aggregate(lean_public, [])
    twin = encrypt_update(lean_secret, layers(rng, (2, 3)), 1, round_id=1, contributor=next(NAMES))
    assert aggregate(lean_public, [base, twin]).count == 2
    with pytest.raises(IntegrityError):
        aggregate(lean_public, [base, base])  # one institution twice: institutions would refuse


# --- inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_is_refused(
    preset_name: str,
    bad: float,
    secret_contexts: dict[str, SecretContext],
    rng: np.random.Generator,
) -> None:
    secret = secret_contexts[preset_name]
    values = layers(rng, (3,), (4, 5))
    values[1][2, 3] = bad
    with pytest.raises(NonFiniteInputError):
        encrypt_update(secret, values, 1, total_weight=total_for(secret), contributor=next(NAMES))


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
@pytest.mark.parametrize("weight", [0, -1, -100, 2.5, 3.0, True, False, "3", None, np.float64(2)])
def test_invalid_weights_are_refused(
    preset_name: str,
    weight: object,
    secret_contexts: dict[str, SecretContext],
    rng: np.random.Generator,
) -> None:
    secret = secret_contexts[preset_name]
    with pytest.raises(InvalidWeightError):
        encrypt_update(
            secret,
            layers(rng, (3,)),
            weight,  # type: ignore[arg-type]
            total_weight=total_for(secret),
            contributor=next(NAMES),
        )


def test_numpy_integer_weights_are_accepted(
    lean_secret: SecretContext, rng: np.random.Generator
) -> None:
    update = encrypt_update(lean_secret, layers(rng, (3,)), np.int64(5), contributor=next(NAMES))  # type: ignore[arg-type]
    _, weight = decrypt_average(lean_secret, update)
    assert abs(weight - 5) < 1e-2


def test_packed_needs_a_total_weight_at_least_the_weight(
    secret_contexts: dict[str, SecretContext], rng: np.random.Generator
) -> None:
    secret = secret_contexts["packed"]
    values = layers(rng, (3,))
    for total in (None, 0, -5):
        with pytest.raises(InvalidWeightError):
            encrypt_update(secret, values, 3, total_weight=total, contributor=next(NAMES))
    with pytest.raises(InvalidWeightError):
        encrypt_update(secret, values, 11, total_weight=10, contributor=next(NAMES))
    update = encrypt_update(
        secret, values, 10, total_weight=10, contributor=next(NAMES)
    )  # equal is fine
    with pytest.raises(InvalidWeightError):
        decrypt_average(secret, update)  # decoding needs it too


def test_packed_refuses_a_sum_beyond_the_weight_headroom(
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    secret, public = secret_contexts["packed"], public_contexts["packed"]
    small = [
        encrypt_update(
            secret,
            [0.01 * x for x in layers(rng, (8,))],
            10,
            total_weight=10,
            contributor=next(NAMES),
        )
        for _ in range(3)
    ]
    _, weight = decrypt_average(secret, aggregate(public, small[:2]), total_weight=10)
    assert weight == 20  # twice the declared total: still inside the headroom
    with pytest.raises(OverflowRiskError):
        decrypt_average(secret, aggregate(public, small), total_weight=10)
    # With large values the lanes themselves wrap: the decoded lanes are no longer the sum
    # of the contributions, and the check refuses before the weight is even looked at.
    large = [  # three full weights of 0.95 need 2.85 x a lane's range: every lane wraps
        encrypt_update(secret, [np.full(8, 0.95)], 10, total_weight=10, contributor=next(NAMES))
        for _ in range(3)
    ]
    with pytest.raises(IntegrityError):
        decrypt_average(secret, aggregate(public, large), total_weight=10)


@pytest.mark.parametrize(
    ("preset_name", "value", "weight"),
    [
        ("lean", 1e5, 1000),  # 1e8 > 2^33 / 128
        ("lean", -1e5, 1000),
        ("lean", 1e-3, 2**27),  # the weight alone exceeds the headroom
        ("standard", 1e12, 10),  # 1e13 > 2^50 / 128
    ],
)
def test_values_that_would_overflow_the_float_codec_are_refused(
    preset_name: str,
    value: float,
    weight: int,
    secret_contexts: dict[str, SecretContext],
    rng: np.random.Generator,
) -> None:
    values = layers(rng, (10,), (3,))
    values[1][1] = value
    with pytest.raises(OverflowRiskError):
        encrypt_update(secret_contexts[preset_name], values, weight, contributor=next(NAMES))


def test_values_just_inside_the_float_headroom_are_accepted(
    secret_contexts: dict[str, SecretContext], rng: np.random.Generator
) -> None:
    secret = secret_contexts["lean"]
    codec = secret.preset.build_codec()
    assert isinstance(codec, FloatCodec)
    values = layers(rng, (10,))
    values[0][4] = 0.99 * codec.max_magnitude / 2
    average, weight = decrypt_average(
        secret, encrypt_update(secret, values, 2, contributor=next(NAMES))
    )
    bound = codec.error_bound(1, weight, max_abs_mean=float(np.max(np.abs(values[0]))))
    assert float(np.max(np.abs(average[0] - values[0]))) <= bound


def test_more_institutions_than_the_preset_allows_are_refused(rng: np.random.Generator) -> None:
    tiny = dataclasses.replace(PRESETS["lean"], name="tiny", max_institutions=2)
    secret = generate_secret_context(tiny)
    public = secret.public()
    updates = [
        encrypt_update(secret, layers(rng, (5,)), 1, contributor=next(NAMES)) for _ in range(3)
    ]
    pair = aggregate(public, updates[:2])
    assert pair.count == 2
    with pytest.raises(OverflowRiskError):
        aggregate(public, updates)
    with pytest.raises(OverflowRiskError):
        aggregate(public, [pair, updates[2]])  # counts add up across partial sums


def test_another_keys_ciphertexts_under_a_forged_fingerprint_do_not_decode_to_numbers(
    secret_contexts: dict[str, SecretContext],
    other_secret_contexts: dict[str, SecretContext],
    rng: np.random.Generator,
) -> None:
    """The packed codec's weight slot catches decryption under the wrong key."""
    secret, other = secret_contexts["packed"], other_secret_contexts["packed"]
    theirs = encrypt_update(other, layers(rng, (50,)), 3, total_weight=10, contributor=next(NAMES))
    forged = dataclasses.replace(theirs, fingerprint=secret.fingerprint)
    with pytest.raises(CryptoError):
        decrypt_average(secret, forged, total_weight=10)


def test_sums_and_averages_do_not_mix(
    lean_secret: SecretContext, lean_public: PublicContext, rng: np.random.Generator
) -> None:
    values = layers(rng, (4,))
    average = encrypt_update(lean_secret, values, 2, contributor=next(NAMES))
    sums = encrypt_sums(lean_secret, values, contributor=next(NAMES))
    with pytest.raises(ShapeMismatchError):
        aggregate(lean_public, [average, sums])
    with pytest.raises(ShapeMismatchError):
        decrypt_average(lean_secret, sums)
    with pytest.raises(ShapeMismatchError):
        decrypt_sums(lean_secret, average)
    with pytest.raises(SecretKeyRequiredError):
        encrypt_sums(lean_public, values, contributor=next(NAMES))  # type: ignore[arg-type]
    with pytest.raises(SecretKeyRequiredError):
        decrypt_sums(lean_public, sums)  # type: ignore[arg-type]


def test_sums_refuse_non_finite_and_out_of_range_values(
    lean_secret: SecretContext, rng: np.random.Generator
) -> None:
    limit = 2.0 ** (2 * lean_secret.preset.build_sum_codec().limb_bits)
    for bad in (math.nan, math.inf):
        with pytest.raises(NonFiniteInputError):
            encrypt_sums(lean_secret, [np.array([1.0, bad])], contributor=next(NAMES))
    for too_big in (limit, -limit * 1.01, 1e300):
        with pytest.raises(OverflowRiskError):
            encrypt_sums(lean_secret, [np.array([1.0, too_big])], contributor=next(NAMES))
    sums, _ = decrypt_sums(
        lean_secret, encrypt_sums(lean_secret, [np.array([limit / 4])], contributor=next(NAMES))
    )
    assert abs(float(sums[0][0]) - limit / 4) <= lean_secret.preset.build_sum_codec().error_bound(
        1, 1.0
    )


def test_update_from_another_run_is_refused_as_a_replay() -> None:
    secret = crypto.generate_secret_context("lean")
    public = secret.public()
    rng = np.random.default_rng(11)
    arrays = [rng.normal(size=(3, 5))]
    old = crypto.encrypt_update(
        secret, arrays, 7, round_id=2, session="run-a", contributor=next(NAMES)
    ).to_bytes()
    with pytest.raises(crypto.ContextMismatchError, match="another run"):
        crypto.EncryptedUpdate.from_bytes(public, old, expected_round=2, expected_session="run-b")
    same = crypto.EncryptedUpdate.from_bytes(public, old, expected_session="run-a")
    assert same.session == "run-a"
    other = crypto.encrypt_update(
        secret, arrays, 7, round_id=2, session="run-b", contributor=next(NAMES)
    )
    with pytest.raises(crypto.ContextMismatchError, match="different runs"):
        crypto.aggregate(public, [same, other])
    again = crypto.encrypt_update(
        secret, arrays, 7, round_id=2, session="run-a", contributor=next(NAMES)
    )
    assert crypto.aggregate(public, [same, again]).session == "run-a"
