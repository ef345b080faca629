"""Round trips: encrypt, serialise, parse, sum, serialise, parse, decrypt, compare.

Every comparison is against the float64 numpy weighted average of the same
fresh random inputs, within the bound the preset's codec states for itself
(``error_bound``). The packed codec is compared against the average of the
*clipped* inputs, and its stochastic rounding is checked to be unbiased.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest

from crypto import (
    PRESETS,
    EncryptedUpdate,
    PublicContext,
    SecretContext,
    aggregate,
    decrypt_average,
    decrypt_sums,
    encrypt_sums,
    encrypt_update,
)
from crypto.codec import NOISE_BITS, PackedCodec

PRESET_NAMES = ("standard", "lean", "packed")

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())

#: Layer shape sets: odd sizes, several layers, around one and two ciphertexts
#: (4096 slots; the weight takes one more slot; the packed codec holds two
#: values a slot), a scalar layer, and a realistically sized small model.
SHAPE_SETS: dict[str, list[tuple[int, ...]]] = {
    "one-value": [(1,)],
    "scalar-and-odd": [(), (3, 5), (7,), (2, 3, 4)],
    "mlp": [(64, 33), (33,), (33, 10), (10,)],
    "just-under-a-ciphertext": [(4095,)],
    "just-over-a-ciphertext": [(4097,)],
    "just-over-two-packed": [(8191,), (3,)],
    "wide": [(123, 457), (457,), (457, 9), (9,)],
}


def random_layers(
    rng: np.random.Generator, shapes: Sequence[tuple[int, ...]], *, spread: float = 0.9
) -> list[np.ndarray]:
    """Fresh random values, never zero: uniform magnitude in [0.05, spread], random sign."""
    layers = []
    for shape in shapes:
        size = math.prod(shape)
        magnitude = rng.uniform(0.05, spread, size=size)
        sign = rng.choice([-1.0, 1.0], size=size)
        layers.append((magnitude * sign).reshape(shape))
    return layers


def reference_average(
    updates: Sequence[Sequence[np.ndarray]], weights: Sequence[int], clip: float | None
) -> list[np.ndarray]:
    """The float64 weighted average numpy computes (of clipped inputs when ``clip`` is set)."""
    total = float(sum(weights))
    averages = []
    for index in range(len(updates[0])):
        acc = np.zeros(np.shape(updates[0][index]), dtype=np.float64)
        for layers, weight in zip(updates, weights, strict=True):
            values = np.asarray(layers[index], dtype=np.float64)
            if clip is not None:
                values = np.clip(values, -clip, clip)
            acc = acc + weight * values
        averages.append(acc / total)
    return averages


def encrypted_average(
    secret: SecretContext,
    public: PublicContext,
    updates: Sequence[Sequence[np.ndarray]],
    weights: Sequence[int],
    *,
    round_id: int = 7,
    total_weight: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[list[np.ndarray], float, EncryptedUpdate]:
    """The full protocol path, through bytes on both legs."""
    shapes = [np.shape(layer) for layer in updates[0]]
    received = []
    for layers, weight in zip(updates, weights, strict=True):
        sent = encrypt_update(
            secret,
            layers,
            weight,
            round_id=round_id,
            total_weight=total_weight,
            rng=rng,
            contributor=next(NAMES),
        ).to_bytes()
        received.append(
            EncryptedUpdate.from_bytes(
                public, sent, expected_round=round_id, expected_shapes=shapes
            )
        )
    summed_bytes = aggregate(public, received).to_bytes()
    summed = EncryptedUpdate.from_bytes(
        secret, summed_bytes, expected_round=round_id, expected_shapes=shapes
    )
    average, summed_weight = decrypt_average(secret, summed, total_weight=total_weight)
    return average, summed_weight, summed


def assert_within_bound(
    preset_name: str,
    average: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    count: int,
    summed_weight: float,
    total_weight: int | None,
) -> None:
    """Every decoded value is within the codec's own stated bound of the reference."""
    assert [a.shape for a in average] == [r.shape for r in reference]
    flat_ref = np.concatenate([r.reshape(-1) for r in reference])
    flat_avg = np.concatenate([a.reshape(-1) for a in average])
    assert flat_avg.dtype == np.float64
    bound = (
        PRESETS[preset_name]
        .build_codec()
        .error_bound(
            count,
            summed_weight,
            total_weight=total_weight,
            max_abs_mean=float(np.max(np.abs(flat_ref))),
        )
    )
    worst = float(np.max(np.abs(flat_avg - flat_ref)))
    assert worst <= bound, f"{preset_name}: error {worst:.3g} exceeds the stated bound {bound:.3g}"
    # The bound must be meaningful, not vacuous: far below the inputs' size (0.05 to 1).
    assert bound < 1e-3


def assert_summed_weight(preset_name: str, summed_weight: float, weights: Sequence[int]) -> None:
    preset = PRESETS[preset_name]
    if preset.codec == "packed":
        assert summed_weight == float(sum(weights))
    else:
        noise = len(weights) * 2.0 ** (NOISE_BITS - preset.params.scale_bits)
        assert abs(summed_weight - sum(weights)) <= noise


@pytest.mark.parametrize("shape_set", sorted(SHAPE_SETS))
@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_round_trip_matches_numpy_within_the_stated_bound(
    preset_name: str,
    shape_set: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    shapes = SHAPE_SETS[shape_set]
    packed = PRESETS[preset_name].codec == "packed"
    updates = [random_layers(rng, shapes) for _ in range(3)]
    weights = [int(w) for w in rng.integers(1, 500, size=3)]
    total_weight = sum(weights) if packed else None
    average, summed_weight, summed = encrypted_average(
        secret_contexts[preset_name],
        public_contexts[preset_name],
        updates,
        weights,
        total_weight=total_weight,
        rng=rng,
    )
    assert summed.count == 3
    assert summed.round_id == 7
    assert summed.shapes == tuple(tuple(s) for s in shapes)
    assert_summed_weight(preset_name, summed_weight, weights)
    reference = reference_average(updates, weights, PRESETS[preset_name].clip if packed else None)
    assert_within_bound(
        preset_name,
        average,
        reference,
        count=3,
        summed_weight=summed_weight,
        total_weight=total_weight,
    )


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_a_single_update_decrypts_without_aggregation(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    rng: np.random.Generator,
) -> None:
    secret = secret_contexts[preset_name]
    packed = secret.preset.codec == "packed"
    layers = random_layers(rng, [(5, 2), (9,)])
    update = encrypt_update(
        secret, layers, 11, total_weight=40 if packed else None, rng=rng, contributor=next(NAMES)
    )
    assert update.count == 1
    assert update.n_values == 19
    average, weight = decrypt_average(secret, update, total_weight=40 if packed else None)
    assert_summed_weight(preset_name, weight, [11])
    assert_within_bound(
        preset_name,
        average,
        reference_average([layers], [11], 1.0 if packed else None),
        count=1,
        summed_weight=weight,
        total_weight=40 if packed else None,
    )


@pytest.mark.slow
@pytest.mark.parametrize("preset_name", ["lean", "packed"])
def test_a_million_values_round_trip(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    shapes = [(1000, 999), (1003,)]  # 1,000,003 values: not a multiple of any slot count
    packed = PRESETS[preset_name].codec == "packed"
    updates = [random_layers(rng, shapes) for _ in range(2)]
    weights = [int(w) for w in rng.integers(1, 10_000, size=2)]
    total_weight = sum(weights) if packed else None
    average, summed_weight, summed = encrypted_average(
        secret_contexts[preset_name],
        public_contexts[preset_name],
        updates,
        weights,
        total_weight=total_weight,
        rng=rng,
    )
    assert summed.n_values == 1_000_003
    assert_summed_weight(preset_name, summed_weight, weights)
    assert_within_bound(
        preset_name,
        average,
        reference_average(updates, weights, 1.0 if packed else None),
        count=2,
        summed_weight=summed_weight,
        total_weight=total_weight,
    )


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_fifty_weighted_updates_average_like_numpy(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    shapes = [(37, 11), (5,)]
    packed = PRESETS[preset_name].codec == "packed"
    updates = [random_layers(rng, shapes) for _ in range(50)]
    weights = [int(w) for w in rng.integers(1, 1000, size=50)]
    total_weight = sum(weights) if packed else None
    average, summed_weight, summed = encrypted_average(
        secret_contexts[preset_name],
        public_contexts[preset_name],
        updates,
        weights,
        total_weight=total_weight,
        rng=rng,
    )
    assert summed.count == 50
    assert_summed_weight(preset_name, summed_weight, weights)
    reference = reference_average(updates, weights, 1.0 if packed else None)
    assert_within_bound(
        preset_name,
        average,
        reference,
        count=50,
        summed_weight=summed_weight,
        total_weight=total_weight,
    )
    # A weighted average, not a plain one: the unweighted mean is measurably elsewhere.
    plain = [np.mean([u[i] for u in updates], axis=0) for i in range(len(shapes))]
    assert max(float(np.max(np.abs(a - p))) for a, p in zip(average, plain, strict=True)) > 1e-3


def test_packed_clips_values_outside_the_range(
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    clip = PRESETS["packed"].clip
    assert clip == 1.0
    shapes = [(301,), (7, 13)]
    updates = [random_layers(rng, shapes, spread=4.0) for _ in range(3)]
    # Make sure every layer has values well outside the range on both sides.
    for layers in updates:
        layers[0][:3] = [3.5, -2.75, 100.0]
    weights = [int(w) for w in rng.integers(1, 300, size=3)]
    total = sum(weights)
    average, summed_weight, _ = encrypted_average(
        secret_contexts["packed"],
        public_contexts["packed"],
        updates,
        weights,
        total_weight=total,
        rng=rng,
    )
    clipped = reference_average(updates, weights, clip)
    assert_within_bound(
        "packed", average, clipped, count=3, summed_weight=summed_weight, total_weight=total
    )
    flat = np.concatenate([a.reshape(-1) for a in average])
    step = PRESETS["packed"].build_codec().error_bound(3, summed_weight, total_weight=total)
    assert float(np.max(np.abs(flat))) <= clip + step
    # The unclipped average is far away: clipping really happened.
    unclipped = reference_average(updates, weights, None)
    assert float(np.max(np.abs(average[0] - unclipped[0]))) > 0.5


def test_packed_values_at_the_clip_edges_with_full_weight_headroom(
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    """Lanes at their largest: every value at +-clip, summed weight twice the declared total."""
    n = 9001
    updates = [[rng.choice([-5.0, -1.0, 1.0, 5.0], size=n)] for _ in range(2)]
    total = 1000
    average, summed_weight, _ = encrypted_average(
        secret_contexts["packed"],
        public_contexts["packed"],
        updates,
        [total, total],
        total_weight=total,
        rng=rng,
    )
    assert summed_weight == 2 * total
    assert_within_bound(
        "packed",
        average,
        reference_average(updates, [total, total], 1.0),
        count=2,
        summed_weight=summed_weight,
        total_weight=total,
    )


def test_packed_rounding_is_unbiased(
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    """Stochastic rounding: the mean error over many trials is within 3 standard errors of 0.

    The value sits 0.3 of a quantisation step above a grid point, where rounding
    to nearest or down would be biased by -0.3 steps (hundreds of standard errors).
    """
    secret, public = secret_contexts["packed"], public_contexts["packed"]
    codec = PRESETS["packed"].build_codec()
    assert isinstance(codec, PackedCodec)
    levels = codec.levels
    total = 4
    value = (1234 + 0.3) / levels  # weight == total: scaled by exactly `levels`
    errors = []
    for _ in range(12):
        layers = [np.full(4001, value), rng.uniform(-1.0, 1.0, size=999)]
        sent = encrypt_update(
            secret, layers, total, total_weight=total, rng=rng, contributor=next(NAMES)
        ).to_bytes()
        summed = aggregate(public, [EncryptedUpdate.from_bytes(public, sent)])
        average, _ = decrypt_average(secret, summed, total_weight=total)
        errors.append(average[0] - value)
        errors.append(average[1] - layers[1])
    flat = np.concatenate(errors)
    standard_error = float(np.std(flat)) / math.sqrt(flat.size)
    assert standard_error > 0  # rounding really is random
    assert abs(float(np.mean(flat))) < 3 * standard_error
    # The constant's errors are one of two values: -0.3 or +0.7 steps.
    constant = np.concatenate(errors[0::2]) * levels
    assert np.all(np.isclose(constant, -0.3, atol=1e-3) | np.isclose(constant, 0.7, atol=1e-3))


def test_packed_rounding_follows_the_injected_generator(
    secret_contexts: dict[str, SecretContext], rng: np.random.Generator
) -> None:
    secret = secret_contexts["packed"]
    layers = random_layers(rng, [(513,)])

    def decoded(seed: int) -> np.ndarray:
        update = encrypt_update(
            secret,
            layers,
            3,
            total_weight=5,
            rng=np.random.default_rng(seed),
            contributor=next(NAMES),
        )
        return decrypt_average(secret, update, total_weight=5)[0][0]

    assert np.array_equal(decoded(42), decoded(42))
    assert not np.array_equal(decoded(42), decoded(43))


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_an_aggregate_survives_serialisation_unchanged(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    total = 20 if secret.preset.codec == "packed" else None
    updates = [
        encrypt_update(
            secret,
            random_layers(rng, [(3, 3)]),
            4,
            round_id=2,
            total_weight=total,
            contributor=next(NAMES),
        )
        for _ in range(2)
    ]
    summed = aggregate(public, updates)
    again = EncryptedUpdate.from_bytes(public, summed.to_bytes())
    assert (again.fingerprint, again.round_id, again.shapes, again.count) == (
        summed.fingerprint,
        2,
        ((3, 3),),
        2,
    )
    assert again.to_bytes() == summed.to_bytes()
    first, _ = decrypt_average(secret, summed, total_weight=total)
    second, _ = decrypt_average(secret, again, total_weight=total)
    assert np.array_equal(first[0], second[0])


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_wide_range_sums_round_trip(
    preset_name: str,
    secret_contexts: dict[str, SecretContext],
    public_contexts: dict[str, PublicContext],
    rng: np.random.Generator,
) -> None:
    """encrypt_sums: federation-wide statistics, summed within the sum codec's absolute bound."""
    secret, public = secret_contexts[preset_name], public_contexts[preset_name]
    shapes = [(3, 7), (5000,), (333,)]
    # Integers across the whole range the preset sums (float64 sums them exactly).
    limit = min(2.0 ** (2 * secret.preset.build_sum_codec().limb_bits - 1), 2.0**49)
    updates = []
    for _ in range(4):
        counts = rng.integers(1, 10**6, size=21).astype(np.float64).reshape(3, 7)
        features = rng.uniform(-1e6, 1e6, size=5000)
        wide = np.floor(rng.uniform(-limit, limit, size=333))
        updates.append([counts, features, wide])
    received = [
        EncryptedUpdate.from_bytes(
            public,
            encrypt_sums(secret, u, round_id=3, contributor=next(NAMES)).to_bytes(),
            expected_shapes=shapes,
        )
        for u in updates
    ]
    summed = EncryptedUpdate.from_bytes(secret, aggregate(public, received).to_bytes())
    sums, institutions = decrypt_sums(secret, summed)
    assert institutions == 4
    bound = secret.preset.build_sum_codec().error_bound(4, 4.0)
    for index in range(3):
        expected = np.sum([u[index] for u in updates], axis=0)
        assert sums[index].shape == expected.shape
        assert float(np.max(np.abs(sums[index] - expected))) <= bound
    # Counts are integers and the bound is below one half: rounding recovers them exactly.
    assert bound < 0.5
    assert np.array_equal(np.rint(sums[0]), np.sum([u[0] for u in updates], axis=0))
