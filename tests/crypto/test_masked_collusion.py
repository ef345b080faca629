"""The aggregator with one colluding institution cannot read another institution's update.

The attacker holds every ciphertext the aggregator received and one
institution's whole kit (the shared CKKS secret key, its agreement key, every
public key, its own seeds). It decrypts the victim's reply, removes every mask
it can compute, and tests what is left for uniformity modulo ``2^B``
(chi-square on 64 bins of the top and of the low bits, threshold at p = 1e-6).
Each test also shows that the same statistic flags the victim's real values
when the masks the attacker cannot compute are removed, so it can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import crypto
from crypto import AgreementKey, EncryptedUpdate, MaskedRound, SecretContext, quantise_update
from crypto.lanes import MaskedCodec
from crypto.masks import MaskShape, mask_entries, set_digest
from tests.uniformity import CHI2_63_P1E6, chi2

NAMES = ("amsterdam", "berlin", "cork", "dublin", "essen")
VICTIM, COLLUDER = "amsterdam", "cork"
SESSION, ROUND, NORMALISER = "run-9", 4, 1_000
VALUES = 40_000


@pytest.fixture(scope="module", params=["masked16", "masked8"])
def context(request: pytest.FixtureRequest) -> SecretContext:
    return crypto.generate_secret_context(request.param)


def _codec(context: SecretContext) -> MaskedCodec:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    return codec


def _federation(
    context: SecretContext, rng: np.random.Generator
) -> tuple[dict[str, AgreementKey], dict[str, MaskedRound], dict[str, np.ndarray]]:
    keys = {name: AgreementKey.generate() for name in NAMES}
    public = {name: key.public_bytes() for name, key in keys.items()}
    rounds, quantised = {}, {}
    for name in NAMES:
        # Small, concentrated deltas: far from uniform before masking.
        delta = [rng.uniform(-0.01, 0.01, size=VALUES)]
        update = quantise_update(context, delta, 300, normaliser=NORMALISER)
        peers = {other: pk for other, pk in public.items() if other != name}
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
        quantised[name] = update.values
    return keys, rounds, quantised


def _lanes(context: SecretContext, update: EncryptedUpdate, count: int) -> np.ndarray:
    """What the colluder reads from a ciphertext with the shared key: lane residues."""
    slots = np.concatenate([np.asarray(v.decrypt()) for v in update.vectors])
    values, _, _ = _codec(context).unpack(slots, VALUES, count)
    return values


def _masks(context: SecretContext, key: bytes, members: tuple[str, ...], kind: str) -> np.ndarray:
    codec = _codec(context)
    shape = MaskShape(VALUES, codec.value_bits, 1, 4, codec.tag_modulus)
    values, _, _ = mask_entries(
        key,
        shape,
        session=SESSION,
        round_id=ROUND,
        digest=set_digest(members),
        purpose="train",
        kind=kind,
    )
    return values


def _pair(keys: dict[str, AgreementKey], a: str, b: str, context: SecretContext) -> np.ndarray:
    """``sign(a, b) PRG(k_ab)``: the pair mask ``a`` adds for ``b`` (members: NAMES)."""
    key = keys[a].pair_key(a, b, keys[b].public_bytes(), context.fingerprint)
    return (1 if a < b else -1) * _masks(context, key, NAMES, "pair")


def test_a_reply_stripped_of_every_mask_the_colluder_knows_is_uniform(
    context: SecretContext, rng: np.random.Generator
) -> None:
    keys, rounds, quantised = _federation(context, rng)
    bits = _codec(context).value_bits
    modulus = 1 << bits
    replies = {name: rounds[name].encrypt(NAMES) for name in NAMES}
    seeds = {name: rounds[name].reveal(NAMES) for name in NAMES}  # the aggregator gets them
    # The colluder's knowledge: its pair key with the victim (from its own private key)
    # and the victim's self-mask seed, revealed for this set at the end of the round.
    colluder_key = keys[COLLUDER].pair_key(
        COLLUDER, VICTIM, keys[VICTIM].public_bytes(), context.fingerprint
    )
    known = (1 if VICTIM < COLLUDER else -1) * _masks(context, colluder_key, NAMES, "pair")
    known = known + _masks(context, seeds[VICTIM], NAMES, "self")
    seen = (_lanes(context, replies[VICTIM], 1) - known) % modulus
    assert chi2(seen, bits) < CHI2_63_P1E6

    # Control: with the honest peers' pair masks removed too (what the attacker cannot
    # compute), the same statistic sees the victim's values.
    honest = sum(
        _pair(keys, VICTIM, peer, context) for peer in NAMES if peer not in (VICTIM, COLLUDER)
    )
    exposed = (seen - honest) % modulus
    np.testing.assert_array_equal(exposed, quantised[VICTIM] % modulus)
    assert chi2(exposed, bits) > CHI2_63_P1E6

    # Meanwhile the sum of all is exact.
    public = context.public()
    summed = crypto.aggregate(public, list(replies.values()))
    result = crypto.decrypt_masked(context, summed, self_seeds=seeds, purpose="train")
    np.testing.assert_array_equal(result.values, sum(quantised.values()))


def test_a_claimed_dropout_does_not_let_two_sums_be_subtracted(
    context: SecretContext, rng: np.random.Generator
) -> None:
    """The aggregator receives the victim's reply, claims it dropped, and re-requests."""
    _keys, rounds, quantised = _federation(context, rng)
    bits = _codec(context).value_bits
    modulus = 1 << bits
    survivors = tuple(name for name in NAMES if name != VICTIM)
    public = context.public()
    full = crypto.aggregate(public, [rounds[name].encrypt(NAMES) for name in NAMES])
    rest = crypto.aggregate(public, [rounds[name].encrypt(survivors) for name in survivors])
    # Seeds the attacker gets: the victim's for the full set (it was told the set was
    # final), every survivor's for the survivors' set, and all of the colluder's own.
    victim_seed = rounds[VICTIM].reveal(NAMES)
    survivor_seeds = {name: rounds[name].reveal(survivors) for name in survivors}
    for name in survivors:  # honest survivors refuse a second set's seed
        if name != COLLUDER:
            with pytest.raises(crypto.MaskingRefusedError):
                rounds[name].reveal(NAMES)
    known_full = _masks(context, victim_seed, NAMES, "self") + _masks(
        context, rounds[COLLUDER]._seeds[NAMES], NAMES, "self"
    )
    known_rest = sum(_masks(context, seed, survivors, "self") for seed in survivor_seeds.values())
    difference = (
        (_lanes(context, full, len(NAMES)) - known_full)
        - (_lanes(context, rest, len(survivors)) - known_rest)
    ) % modulus
    assert chi2(difference, bits) < CHI2_63_P1E6

    # Control: had the honest survivors also revealed their seeds for the full set (masks
    # without a self mask revealed once), the difference would be the victim's update.
    hidden = sum(
        _masks(context, rounds[name]._seeds[NAMES], NAMES, "self")
        for name in survivors
        if name != COLLUDER
    )
    exposed = (difference - hidden) % modulus
    np.testing.assert_array_equal(exposed, quantised[VICTIM] % modulus)
    assert chi2(exposed, bits) > CHI2_63_P1E6
