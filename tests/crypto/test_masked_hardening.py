"""Attacks on masked updates by one modified institution or a dishonest key list.

Red-team findings replayed through the real recipe: a malicious institution
declaring an example count that makes the summed count tiny (so dividing by it
would multiply the average a thousandfold), one party listed under two names
or with another's key (so it would count as two of the three contributors a
masked aggregate needs), and contributor names that differ only in case.
"""

from __future__ import annotations

import numpy as np
import pytest

import crypto
import crypto.masked as masked_module
from crypto import (
    AgreementKey,
    EncryptedUpdate,
    IntegrityError,
    InvalidWeightError,
    MaskedRound,
    MaskingRefusedError,
    QuantisedUpdate,
    SecretContext,
    aggregate,
    decrypt_masked,
    quantise_update,
)

NAMES = ("amsterdam", "berlin", "cork")
NORMALISER = 900
SESSION, ROUND = "run-1", 2


@pytest.fixture(scope="module")
def context() -> SecretContext:
    return crypto.generate_secret_context("masked16")


def _open(context: SecretContext, updates: dict[str, QuantisedUpdate]) -> crypto.MaskedSum:
    keys = {name: AgreementKey.generate() for name in NAMES}
    public = {name: key.public_bytes() for name, key in keys.items()}
    rounds = {
        name: MaskedRound(
            context,
            keys[name],
            name,
            {peer: pk for peer, pk in public.items() if peer != name},
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="train",
        )
        for name, update in updates.items()
    }
    replies = [
        EncryptedUpdate.from_bytes(context.public(), r.encrypt(NAMES).to_bytes())
        for r in rounds.values()
    ]
    seeds = {name: r.reveal(NAMES) for name, r in rounds.items()}
    return decrypt_masked(
        context, aggregate(context.public(), replies), self_seeds=seeds, purpose="train"
    )


def _honest(context: SecretContext, weight: int) -> QuantisedUpdate:
    return quantise_update(context, [np.zeros(64)], weight, normaliser=NORMALISER)


def _malicious(context: SecretContext, weight: int) -> QuantisedUpdate:
    """The largest push a lane holds, under a declared count the attacker picks."""
    codec = context.preset.build_masked_codec()
    assert codec is not None
    return QuantisedUpdate(((64,),), np.full(64, codec.levels, dtype=np.int64), weight)


def test_a_count_that_makes_the_total_tiny_cannot_multiply_the_average(
    context: SecretContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attacker's client skips the local checks and declares 2 - 600 = -598 examples."""
    monkeypatch.setattr(masked_module, "_check_update", lambda codec, update: None)
    codec = context.preset.build_masked_codec()
    assert codec is not None
    updates = {
        "amsterdam": _honest(context, 300),
        "berlin": _honest(context, 300),
        "cork": _malicious(context, 3 - 600),  # summed count 3: one per contributor
    }
    result = _open(context, updates)
    assert result.total_weight == 3  # the declared count is what the tags verify
    pushed = max(float(np.abs(a).max()) for a in result.average(NORMALISER))
    # Divided by the declared total it would be 300x larger; the divisor is at least N / h.
    unguarded = codec.levels * codec.step * NORMALISER / result.total_weight
    assert pushed <= codec.weight_headroom * codec.levels * codec.step * 1.0001
    assert pushed < unguarded / 100


def test_a_total_below_one_example_per_contributor_is_refused(
    context: SecretContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(masked_module, "_check_update", lambda codec, update: None)
    updates = {
        "amsterdam": _honest(context, 300),
        "berlin": _honest(context, 300),
        "cork": _malicious(context, 1 - 600),
    }
    with pytest.raises(IntegrityError):
        _open(context, updates)


def test_a_total_beyond_the_headroom_is_refused_before_averaging(context: SecretContext) -> None:
    codec = context.preset.build_masked_codec()
    assert codec is not None
    updates = {name: _honest(context, 600) for name in NAMES}  # 1,800 = 2 N: still honest
    result = _open(context, updates)
    result.average(NORMALISER)
    with pytest.raises(IntegrityError):
        result.average(NORMALISER - 1)  # 1,800 > 2 x 899: the value sum could have wrapped
    with pytest.raises(InvalidWeightError):
        result.average(0)


@pytest.mark.parametrize("weight", [0, -5, True, 2.5])
def test_an_honest_client_refuses_a_count_it_could_not_have_quantised(
    context: SecretContext, weight: object
) -> None:
    update = QuantisedUpdate(((4,),), np.zeros(4, dtype=np.int64), weight)  # type: ignore[arg-type]
    key = AgreementKey.generate()
    peers = {"berlin": AgreementKey.generate().public_bytes()}
    with pytest.raises(InvalidWeightError):
        MaskedRound(
            context,
            key,
            "amsterdam",
            peers,
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="train",
        )


def test_one_key_under_two_names_is_refused(context: SecretContext) -> None:
    """The key list names the colluder twice: it would count as two of three contributors."""
    update = _honest(context, 300)
    own = AgreementKey.generate()
    colluder = AgreementKey.generate().public_bytes()
    with pytest.raises(MaskingRefusedError):
        MaskedRound(
            context,
            own,
            "amsterdam",
            {"berlin": colluder, "cork": colluder},
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="train",
        )
    with pytest.raises(MaskingRefusedError):  # this institution's own key under another name
        MaskedRound(
            context,
            own,
            "amsterdam",
            {"berlin": colluder, "cork": own.public_bytes()},
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="train",
        )


@pytest.mark.parametrize("alias", ["Berlin", "BERLIN", "\uff42erlin", "berlin"])
def test_names_that_differ_only_in_case_or_width_are_one_institution(alias: str) -> None:
    with pytest.raises(MaskingRefusedError):
        crypto.masks.contributor_set(["amsterdam", "berlin", alias])


def test_the_pair_key_is_bound_to_the_listed_public_keys() -> None:
    a, b = AgreementKey.generate(), AgreementKey.generate()
    fingerprint = "f" * 64
    assert a.pair_key("a", "b", b.public_bytes(), fingerprint) == b.pair_key(
        "b", "a", a.public_bytes(), fingerprint
    )
    c = AgreementKey.generate()
    assert a.pair_key("a", "b", b.public_bytes(), fingerprint) != a.pair_key(
        "a", "b", c.public_bytes(), fingerprint
    )


def test_a_key_written_with_its_top_bit_set_is_refused_as_an_alias() -> None:
    """X25519 ignores bit 255: ``K`` and ``K | 2^255`` are one point under two spellings,
    which a byte comparison would count as two parties' keys."""
    a, c = AgreementKey.generate(), AgreementKey.generate()
    genuine = c.public_bytes()
    alias = genuine[:31] + bytes([genuine[31] | 0x80])
    assert crypto.canonical_public_key(genuine) and not crypto.canonical_public_key(alias)
    beyond = ((1 << 255) - 19 + 1).to_bytes(32, "little")  # u >= p: reduced by X25519
    assert not crypto.canonical_public_key(beyond)
    fingerprint = "f" * 64
    a.pair_key("a", "c", genuine, fingerprint)
    with pytest.raises(crypto.InvalidPeerKeyError, match="canonical"):
        a.pair_key("a", "d", alias, fingerprint)
