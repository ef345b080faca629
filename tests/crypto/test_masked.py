"""Masked updates end to end: exact sums, dropouts, overflow, forgeries, no numpy RNG."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import tenseal as ts

import crypto
from crypto import (
    AgreementKey,
    EncryptedUpdate,
    IntegrityError,
    MaskedRound,
    MaskingRefusedError,
    OverflowRiskError,
    SecretContext,
    WeakParametersError,
    aggregate,
    decrypt_masked,
    quantise_update,
)
from crypto.lanes import MaskedCodec

NAMES = ("amsterdam", "berlin", "cork", "dublin", "essen")
SESSION, ROUND = "run-7", 3
NORMALISER = 1_000


@pytest.fixture(scope="module", params=["masked16", "masked8"])
def context(request: pytest.FixtureRequest) -> SecretContext:
    return crypto.generate_secret_context(request.param)


@dataclass
class Federation:
    """Institutions with agreement keys, one MaskedRound each for round ``ROUND``."""

    context: SecretContext
    keys: dict[str, AgreementKey]
    rounds: dict[str, MaskedRound]
    quantised: dict[str, np.ndarray]
    weights: dict[str, int]

    def replies(self, members: tuple[str, ...], senders: tuple[str, ...]) -> list[EncryptedUpdate]:
        public = self.context.public()
        return [
            EncryptedUpdate.from_bytes(public, self.rounds[name].encrypt(members).to_bytes())
            for name in senders
        ]

    def open(self, members: tuple[str, ...], replies: list[EncryptedUpdate]) -> crypto.MaskedSum:
        summed = aggregate(self.context.public(), replies)
        seeds = {name: self.rounds[name].reveal(members) for name in members}
        return decrypt_masked(self.context, summed, self_seeds=seeds, purpose="train")


def _federation(
    context: SecretContext, rng: np.random.Generator, names: tuple[str, ...] = NAMES
) -> Federation:
    keys = {name: AgreementKey.generate() for name in names}
    public = {name: key.public_bytes() for name, key in keys.items()}
    rounds, quantised, weights = {}, {}, {}
    for name in names:
        weight = int(rng.integers(50, 400))
        delta = [rng.uniform(-1.0, 1.0, size=(101, 7)), rng.uniform(-1.0, 1.0, size=(13,))]
        update = quantise_update(context, delta, weight, normaliser=NORMALISER)
        peers = {other: key for other, key in public.items() if other != name}
        rounds[name] = MaskedRound(
            context,
            keys[name],
            name,
            peers,
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="train",
        )
        quantised[name], weights[name] = update.values, weight
    return Federation(context, keys, rounds, quantised, weights)


def test_the_sum_is_exact_and_averages_like_fedavg(
    context: SecretContext, rng: np.random.Generator
) -> None:
    fed = _federation(context, rng)
    result = fed.open(NAMES, fed.replies(NAMES, NAMES))
    np.testing.assert_array_equal(result.values, sum(fed.quantised[name] for name in NAMES))
    assert result.total_weight == sum(fed.weights.values())
    assert [a.shape for a in result.average(NORMALISER)] == [(101, 7), (13,)]


def test_stochastic_rounding_is_unbiased_within_a_few_steps(context: SecretContext) -> None:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    flat = np.full(200_000, 0.123456)
    q = codec.quantise(flat, 300, NORMALISER)
    expected = 0.123456 * 300 / NORMALISER / codec.step
    assert set(np.unique(q)) <= {int(np.floor(expected)), int(np.floor(expected)) + 1}
    assert abs(float(np.mean(q)) - expected) < 0.01


def test_a_dropout_is_recovered_by_re_masking_the_same_update_for_the_survivors(
    context: SecretContext, rng: np.random.Generator
) -> None:
    fed = _federation(context, rng)
    survivors = NAMES[1:]
    first = fed.replies(NAMES, survivors)  # amsterdam masked for NAMES, then vanished
    second = fed.replies(survivors, survivors)
    seeds = {name: fed.rounds[name].reveal(survivors) for name in survivors}
    # The survivors' replies under the first set do not cancel without amsterdam's.
    with pytest.raises(IntegrityError):
        decrypt_masked(
            context, aggregate(context.public(), first), self_seeds=seeds, purpose="train"
        )
    result = decrypt_masked(
        context, aggregate(context.public(), second), self_seeds=seeds, purpose="train"
    )
    np.testing.assert_array_equal(result.values, sum(fed.quantised[n] for n in survivors))
    assert result.total_weight == sum(fed.weights[n] for n in survivors)


def test_a_seed_is_revealed_for_one_set_per_round_only(
    context: SecretContext, rng: np.random.Generator
) -> None:
    fed = _federation(context, rng)
    berlin = fed.rounds["berlin"]
    survivors = NAMES[1:]
    berlin.encrypt(NAMES)
    berlin.encrypt(survivors)
    berlin.reveal(survivors)
    with pytest.raises(MaskingRefusedError):
        berlin.reveal(NAMES)
    with pytest.raises(MaskingRefusedError):
        berlin.encrypt(NAMES[:4])
    with pytest.raises(MaskingRefusedError):
        fed.rounds["cork"].reveal(NAMES)  # nothing was masked for it


def test_fewer_than_three_contributors_are_refused(
    context: SecretContext, rng: np.random.Generator
) -> None:
    fed = _federation(context, rng)
    with pytest.raises(MaskingRefusedError):
        fed.rounds["berlin"].encrypt(("amsterdam", "berlin"))
    with pytest.raises(MaskingRefusedError):
        fed.rounds["berlin"].encrypt(("amsterdam", "cork", "dublin"))  # not a member
    members = NAMES[:3]
    pair = aggregate(context.public(), fed.replies(members, members[:2]))
    seeds = {name: fed.rounds[name].reveal(members) for name in members[:2]}
    with pytest.raises(IntegrityError):
        decrypt_masked(context, pair, self_seeds=seeds, purpose="train")


def _forgeries(context: SecretContext, fed: Federation) -> dict[str, EncryptedUpdate]:
    public = context.public()
    genuine = aggregate(public, fed.replies(NAMES, NAMES))
    codec = context.preset.build_masked_codec()
    assert codec is not None
    one = [0.0] * genuine.vectors[0].size()
    one[5] = 1.0
    carry = list(one)
    carry[5] = float(1 << codec.lane_bits)  # one more in the second lane of slot 5
    later = replace(fed, rounds={})
    for name in NAMES:  # the same institutions' round-4 updates, relabelled as round 3
        later.rounds[name] = MaskedRound(
            context,
            fed.keys[name],
            name,
            {o: fed.keys[o].public_bytes() for o in NAMES if o != name},
            crypto.QuantisedUpdate(((101, 7), (13,)), fed.quantised[name], fed.weights[name]),
            session=SESSION,
            round_id=ROUND + 1,
            purpose="train",
        )
    stale = aggregate(public, later.replies(NAMES, NAMES))
    vectors = genuine.vectors
    again = fed.replies(NAMES, NAMES[:1])[0]
    return {
        "doubled": replace(genuine, vectors=tuple(v + v for v in vectors)),
        "shifted": replace(genuine, vectors=(vectors[0] + one, *vectors[1:])),
        "lane added": replace(genuine, vectors=(vectors[0] + carry, *vectors[1:])),
        "another round": replace(stale, round_id=ROUND, contributors=genuine.contributors),
        "one reply twice": replace(
            genuine, vectors=tuple(a + b for a, b in zip(vectors, again.vectors, strict=True))
        ),
    }


def test_forged_aggregates_fail_the_check(context: SecretContext, rng: np.random.Generator) -> None:
    fed = _federation(context, rng)
    forgeries = _forgeries(context, fed)
    seeds = {name: fed.rounds[name].reveal(NAMES) for name in NAMES}
    for label, forged in forgeries.items():
        with pytest.raises(IntegrityError):
            decrypt_masked(context, forged, self_seeds=seeds, purpose="train")
            pytest.fail(f"{label} aggregate verified")
    genuine = aggregate(context.public(), fed.replies(NAMES, NAMES))
    assert decrypt_masked(context, genuine, self_seeds=seeds, purpose="train").total_weight > 0
    with pytest.raises(IntegrityError):  # a missing seed
        decrypt_masked(
            context, genuine, self_seeds={n: seeds[n] for n in NAMES[1:]}, purpose="train"
        )


def test_the_largest_federation_at_extreme_lanes_cannot_carry(context: SecretContext) -> None:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    k = codec.max_institutions
    n_values = 3 * context.preset.params.slots
    top = np.full(n_values, (1 << codec.value_bits) - 1, dtype=np.int64)
    tags = np.full(4, codec.tag_modulus - 1, dtype=np.int64)
    slots = codec.pack(top, (1 << 32) - 1, tags)
    size = context.preset.params.slots
    total: list[ts.CKKSVector] = []
    for _ in range(k):
        vectors = [
            ts.ckks_vector(context.tenseal_context, slots[start : start + size])
            for start in range(0, slots.size, size)
        ]
        total = [a + b for a, b in zip(total, vectors, strict=True)] if total else vectors
    decrypted = np.concatenate([np.asarray(v.decrypt()) for v in total])
    lanes, weight, sums = codec.unpack(decrypted, n_values, k)
    np.testing.assert_array_equal(
        lanes, (k * ((1 << codec.value_bits) - 1)) % (1 << codec.value_bits)
    )
    assert weight == (k * ((1 << 32) - 1)) % (1 << 32)
    np.testing.assert_array_equal(sums, k * (codec.tag_modulus - 1))


def test_a_layout_for_more_institutions_than_it_holds_is_refused(context: SecretContext) -> None:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    with pytest.raises(OverflowRiskError):
        replace(codec, max_institutions=2 * codec.max_institutions)
    with pytest.raises(WeakParametersError):
        replace(context.preset, max_institutions=2 * codec.max_institutions)
    assert isinstance(replace(codec, max_institutions=codec.max_institutions), MaskedCodec)


def test_the_mask_path_calls_no_numpy_generator(
    context: SecretContext, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed_rng = np.random.default_rng(int(rng.integers(1 << 32)))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("numpy randomness on the mask path")

    for name in ("default_rng", "Generator", "random", "rand", "randint", "seed", "RandomState"):
        monkeypatch.setattr(np.random, name, refuse)
    fed = _federation(context, fed_rng)
    result = fed.open(NAMES, fed.replies(NAMES, NAMES))
    np.testing.assert_array_equal(result.values, sum(fed.quantised[name] for name in NAMES))


def test_a_set_beyond_the_lanes_headroom_is_refused_before_masking(
    context: SecretContext, rng: np.random.Generator
) -> None:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    names = tuple(f"bank-{i:02d}" for i in range(codec.max_institutions + 1))
    keys = {name: AgreementKey.generate() for name in names}
    update = quantise_update(context, [rng.uniform(-1, 1, 10)], 10, normaliser=NORMALISER)
    masked = MaskedRound(
        context,
        keys[names[0]],
        names[0],
        {name: key.public_bytes() for name, key in keys.items() if name != names[0]},
        update,
        session=SESSION,
        round_id=ROUND,
        purpose="train",
    )
    masked.encrypt(names[:-1])  # the largest federation the layout allows
    with pytest.raises(MaskingRefusedError):
        masked.encrypt(names)


def test_masked_presets_refuse_the_unmasked_recipes_and_vice_versa(
    context: SecretContext, rng: np.random.Generator
) -> None:
    with pytest.raises(WeakParametersError):
        crypto.encrypt_update(context, [np.zeros(3)], 5, contributor="amsterdam")
    lean = crypto.generate_secret_context("lean")
    with pytest.raises(OverflowRiskError):
        quantise_update(lean, [np.zeros(3)], 5, normaliser=10)
    fed = _federation(context, rng)
    summed = aggregate(context.public(), fed.replies(NAMES, NAMES))
    with pytest.raises(crypto.ShapeMismatchError):
        crypto.decrypt_average(context, summed)
    with pytest.raises(crypto.MalformedDataError):  # a masked update under an unmasked preset
        EncryptedUpdate.from_bytes(lean, replace(summed, fingerprint=lean.fingerprint).to_bytes())
