"""Purposes and membership: masked sums of one round never share masks or verify as another.

A run has up to three masked sums with one round number: the statistics of
round 0, training and evaluation of round ``r``. The attacker holds the shared
CKKS key and every self-mask seed the round revealed (each is forwarded with
its aggregate); it decrypts two replies of one institution with one round
number and subtracts them, hoping the pair masks cancel. They do not: the
difference, stripped of every self mask, is uniform modulo ``2^B`` (chi-square
on 64 bins, threshold at p = 1e-6), while two rounds of one purpose — the
layout before purposes were bound — give the victim's difference exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import crypto
from crypto import (
    AgreementKey,
    EncryptedUpdate,
    IntegrityError,
    MaskedRound,
    MaskingRefusedError,
    QuantisedUpdate,
    SecretContext,
    aggregate,
    decrypt_masked,
    quantise_update,
)
from crypto.encrypted import MASKED
from crypto.integrity import round_check
from crypto.lanes import MaskedCodec
from crypto.masks import MaskShape, mask_entries, set_digest
from tests.uniformity import CHI2_63_P1E6, chi2

NAMES = ("amsterdam", "berlin", "cork", "dublin")
VICTIM = "berlin"
SESSION, ROUND, NORMALISER = "run-3", 5, 1_000
VALUES = 20_000


@pytest.fixture(scope="module", params=["masked16", "masked8"])
def context(request: pytest.FixtureRequest) -> SecretContext:
    return crypto.generate_secret_context(request.param)


def _codec(context: SecretContext) -> MaskedCodec:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    return codec


def _rounds(
    context: SecretContext,
    keys: dict[str, AgreementKey],
    updates: dict[str, QuantisedUpdate],
    purpose: str,
) -> dict[str, MaskedRound]:
    public = {name: key.public_bytes() for name, key in keys.items()}
    return {
        name: MaskedRound(
            context,
            keys[name],
            name,
            {peer: pk for peer, pk in public.items() if peer != name},
            updates[name],
            session=SESSION,
            round_id=ROUND,
            purpose=purpose,
        )
        for name in keys
    }


def _updates(context: SecretContext, rng: np.random.Generator) -> dict[str, QuantisedUpdate]:
    # Small, concentrated deltas: far from uniform before masking.
    return {
        name: quantise_update(
            context, [rng.uniform(-0.01, 0.01, size=VALUES)], 300, normaliser=NORMALISER
        )
        for name in NAMES
    }


def _stripped(
    context: SecretContext, reply: EncryptedUpdate, seed: bytes, purpose: str
) -> np.ndarray:
    """The attacker's view of one reply: decrypted lanes less the revealed self mask."""
    codec = _codec(context)
    slots = np.concatenate([np.asarray(v.decrypt()) for v in reply.vectors])
    lanes, _, _ = codec.unpack(slots, VALUES, 1)
    shape = MaskShape(VALUES, codec.value_bits, 1, 4, codec.tag_modulus)
    own, _, _ = mask_entries(
        seed,
        shape,
        session=SESSION,
        round_id=ROUND,
        digest=set_digest(NAMES),
        purpose=purpose,
        kind="self",
    )
    return (lanes - own) % (1 << codec.value_bits)


def _difference(
    context: SecretContext,
    first: dict[str, MaskedRound],
    second: dict[str, MaskedRound],
    purposes: tuple[str, str],
) -> np.ndarray:
    """One institution's two replies, stripped of both revealed self masks, subtracted."""
    replies = [rounds[VICTIM].encrypt(NAMES) for rounds in (first, second)]
    seeds = [rounds[VICTIM].reveal(NAMES) for rounds in (first, second)]
    views = [
        _stripped(context, reply, seed, purpose)
        for reply, seed, purpose in zip(replies, seeds, purposes, strict=True)
    ]
    return (views[0] - views[1]) % (1 << _codec(context).value_bits)


def test_two_purposes_of_one_round_do_not_share_masks(
    context: SecretContext, rng: np.random.Generator
) -> None:
    keys = {name: AgreementKey.generate() for name in NAMES}
    train_updates, eval_updates = _updates(context, rng), _updates(context, rng)
    bits = _codec(context).value_bits
    target = (train_updates[VICTIM].values - eval_updates[VICTIM].values) % (1 << bits)

    train = _rounds(context, keys, train_updates, "train")
    evaluate = _rounds(context, keys, eval_updates, "evaluate")
    difference = _difference(context, train, evaluate, ("train", "evaluate"))
    assert not np.array_equal(difference, target)
    assert chi2(difference, bits) < CHI2_63_P1E6

    # Control: two sums of one purpose with one round number (what a run had before
    # purposes were bound) share every pair mask, and their difference is the victim's.
    again = _rounds(context, keys, eval_updates, "train")
    exposed = _difference(
        context, _rounds(context, keys, train_updates, "train"), again, ("train", "train")
    )
    np.testing.assert_array_equal(exposed, target)
    assert chi2(exposed, bits) > CHI2_63_P1E6


def test_a_training_sum_does_not_verify_as_an_evaluation_sum(
    context: SecretContext, rng: np.random.Generator
) -> None:
    keys = {name: AgreementKey.generate() for name in NAMES}
    updates = _updates(context, rng)
    rounds = _rounds(context, keys, updates, "train")
    summed = aggregate(context.public(), [rounds[name].encrypt(NAMES) for name in NAMES])
    seeds = {name: rounds[name].reveal(NAMES) for name in NAMES}
    for purpose in ("evaluate", "stats"):
        with pytest.raises(IntegrityError):
            decrypt_masked(context, summed, self_seeds=seeds, purpose=purpose)
    result = decrypt_masked(context, summed, self_seeds=seeds, purpose="train")
    np.testing.assert_array_equal(result.values, sum(u.values for u in updates.values()))
    assert result.contributors == NAMES


def test_check_values_are_bound_to_the_purpose(context: SecretContext) -> None:
    """Even with every mask removed, a sum tagged for one purpose fails another's check."""
    codec = _codec(context)
    entries = np.arange(11, dtype=np.int64)
    nonce = "0" * 32
    tags = {
        purpose: round_check(
            context,
            codec,
            encoding=MASKED,
            shapes=((10,),),
            session=SESSION,
            round_id=ROUND,
            purpose=purpose,
        )
        for purpose in crypto.MASK_PURPOSES
    }
    genuine = tags["train"].exact_tags(entries, VICTIM, nonce)
    assert tags["train"].exact_matches(entries, genuine, ((VICTIM, nonce),))
    for purpose in ("stats", "evaluate"):
        assert not tags[purpose].exact_matches(entries, genuine, ((VICTIM, nonce),))


def test_an_unknown_purpose_is_refused(context: SecretContext, rng: np.random.Generator) -> None:
    keys = {name: AgreementKey.generate() for name in NAMES}
    updates = _updates(context, rng)
    for purpose in ("", "training", "pair", "self"):
        with pytest.raises(MaskingRefusedError):
            _rounds(context, keys, updates, purpose)
    rounds = _rounds(context, keys, updates, "stats")
    summed = aggregate(context.public(), [rounds[name].encrypt(NAMES) for name in NAMES])
    seeds = {name: rounds[name].reveal(NAMES) for name in NAMES}
    with pytest.raises(MaskingRefusedError):
        decrypt_masked(context, summed, self_seeds=seeds, purpose="Stats")
    assert decrypt_masked(context, summed, self_seeds=seeds, purpose="stats").total_weight == 1200


def test_an_aggregate_without_the_verifier_is_refused(
    context: SecretContext, rng: np.random.Generator
) -> None:
    """F9: the aggregator leaves amsterdam out of a set it trained for and hands it the sum.

    Genuine sums of one start with and without an institution differ by its
    update; an institution that takes a sum without itself lets the aggregator
    subtract. With its own name as ``member``, it refuses.
    """
    keys = {name: AgreementKey.generate() for name in NAMES}
    updates = _updates(context, rng)
    rounds = _rounds(context, keys, updates, "train")
    left_out = "amsterdam"
    rounds[left_out].encrypt(NAMES)  # it trained and replied for the full set
    others = tuple(name for name in NAMES if name != left_out)
    summed = aggregate(context.public(), [rounds[name].encrypt(others) for name in others])
    seeds = {name: rounds[name].reveal(others) for name in others}
    with pytest.raises(IntegrityError, match="not exactly this round's sum"):
        decrypt_masked(context, summed, self_seeds=seeds, purpose="train", member=left_out)
    for name in others:  # every contributor takes it
        result = decrypt_masked(context, summed, self_seeds=seeds, purpose="train", member=name)
        np.testing.assert_array_equal(result.values, sum(updates[n].values for n in others))
    # A name that differs only in case is not the member.
    with pytest.raises(IntegrityError):
        decrypt_masked(context, summed, self_seeds=seeds, purpose="train", member="Berlin")
