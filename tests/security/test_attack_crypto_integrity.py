"""Attack: a keyless aggregator makes institutions apply a model it chose.

The aggregator holds the public context only: it cannot encrypt, but it can
still transform ciphertexts. Before, institutions checked only the decrypted
summed weight against a bound, so a plaintext shift, ``2 S``, ``11 G2 - 10 G1``,
a stale or mixed round, one bank's update sent as "the sum" or one update
subtracted from another all passed, and the refusal itself depended on the
decrypted count (a decryption oracle).

Here the attacker builds each forgery with nothing but what a keyless holder
can do through TenSEAL (``vec + vec``, ``vec - vec``, ``-vec``, ``vec + [plain
list]``, ``vec * k`` where the preset leaves a level to rescale) and by
rewriting headers through the public envelope format; the institution parses
the bytes and decrypts as it does in a round. Every forgery ends in
:class:`crypto.IntegrityError` before any decrypted value is returned, with a
text that is the same whatever the data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pytest
import tenseal as ts

import crypto
import crypto.integrity
from crypto.constants import UPDATE_MAGIC
from crypto.wire import pack_envelope, unpack_envelope

SHAPES = ((4, 3), (5,))
SESSION = "run-7f3a"
BANKS = ("bank-a", "bank-b", "bank-c")
WEIGHTS = (120, 340, 75)
PRESET_NAMES = ("lean", "standard", "packed")


@cache
def keys(preset: str) -> tuple[crypto.SecretContext, crypto.PublicContext]:
    """The institutions' secret context and the aggregator's public one."""
    secret = crypto.generate_secret_context(preset)
    return secret, secret.public()


def total(preset: str) -> int | None:
    return sum(WEIGHTS) if preset == "packed" else None


def layers(seed: int, index: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, index])
    return [rng.uniform(-0.9, 0.9, size=shape) for shape in SHAPES]


def sent(preset: str, round_id: int, seed: int = 1, banks: Sequence[str] = BANKS) -> list[bytes]:
    """What each institution sends in round ``round_id`` (fresh encryptions)."""
    secret, _ = keys(preset)
    return [
        crypto.encrypt_update(
            secret,
            layers(seed, index),
            WEIGHTS[index],
            contributor=name,
            round_id=round_id,
            session=SESSION,
            total_weight=total(preset),
        ).to_bytes()
        for index, name in enumerate(banks)
    ]


# --- the attacker's tools: the public context, TenSEAL's keyless operations, the envelope ------


def received(preset: str, blob: bytes) -> crypto.EncryptedUpdate:
    """Parse as the aggregator does."""
    return crypto.EncryptedUpdate.from_bytes(keys(preset)[1], blob)


def honest_sum(preset: str, blobs: Sequence[bytes]) -> crypto.EncryptedUpdate:
    return crypto.aggregate(keys(preset)[1], [received(preset, blob) for blob in blobs])


def with_vectors(
    update: crypto.EncryptedUpdate, vectors: Sequence[ts.CKKSVector]
) -> crypto.EncryptedUpdate:
    return dataclasses.replace(update, vectors=tuple(vectors))


def combine(
    terms: Sequence[tuple[int, crypto.EncryptedUpdate]], header: crypto.EncryptedUpdate
) -> crypto.EncryptedUpdate:
    """``sum(a * update)`` by repeated ciphertext addition and negation, under ``header``."""
    total_vectors: list[ts.CKKSVector] | None = None
    for coefficient, update in terms:
        for _ in range(abs(coefficient)):
            step = [v if coefficient > 0 else -v for v in update.vectors]
            total_vectors = (
                step
                if total_vectors is None
                else [a + b for a, b in zip(total_vectors, step, strict=True)]
            )
    assert total_vectors is not None
    return with_vectors(header, total_vectors)


def shifted(update: crypto.EncryptedUpdate, slot: int, delta: float) -> crypto.EncryptedUpdate:
    """Add a plaintext with ``delta`` in one slot of the first ciphertext."""
    first = update.vectors[0]
    plain = [0.0] * first.size()
    plain[slot] = delta
    return with_vectors(update, [first + plain, *update.vectors[1:]])


def rewritten(blob: bytes, **fields: Any) -> bytes:
    """The same ciphertexts under a header with ``fields`` replaced."""
    header, blobs = unpack_envelope(UPDATE_MAGIC, blob, max_blobs=64, max_blob_bytes=1 << 22)
    return pack_envelope(UPDATE_MAGIC, {**header, **fields}, blobs)


def relabelled(
    update: crypto.EncryptedUpdate, contributors: Sequence[Sequence[str]]
) -> crypto.EncryptedUpdate:
    pairs = tuple((name, nonce) for name, nonce in contributors)
    return dataclasses.replace(update, contributors=pairs, count=len(pairs))


# --- the institution ----------------------------------------------------------------------------


def institution_applies(
    preset: str, blob: bytes | crypto.EncryptedUpdate, *, round_id: int = 2, minimum: int = 3
) -> tuple[list[np.ndarray], float]:
    """An institution's steps: parse against its expectations, then verify and decrypt."""
    secret, _ = keys(preset)
    data = blob.to_bytes() if isinstance(blob, crypto.EncryptedUpdate) else blob
    update = crypto.EncryptedUpdate.from_bytes(
        secret, data, expected_round=round_id, expected_session=SESSION, expected_shapes=SHAPES
    )
    return crypto.decrypt_average(
        secret, update, total_weight=total(preset), min_contributors=minimum
    )


def refusal(preset: str, forged: bytes | crypto.EncryptedUpdate, **kwargs: Any) -> str:
    """The institution refuses ``forged`` with IntegrityError; return the text."""
    with pytest.raises(crypto.IntegrityError) as caught:
        institution_applies(preset, forged, **kwargs)
    text = str(caught.value)
    assert not re.search(r"\d", text.replace("round's", "")), "no number in the refusal"
    return text


def reference(seed: int = 1) -> list[np.ndarray]:
    weights = np.array(WEIGHTS, dtype=float)
    return [
        sum(w * layers(seed, i)[k] for i, w in enumerate(weights)) / weights.sum()
        for k in range(len(SHAPES))
    ]


# --- the baseline: the honest sum is applied -----------------------------------------------------


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_honest_sum_is_applied(preset: str) -> None:
    summed = honest_sum(preset, sent(preset, 2))
    average, weight = institution_applies(preset, summed)
    assert summed.contributor_names == BANKS
    assert round(weight) == sum(WEIGHTS)
    for got, want in zip(average, reference(), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)


# --- forgeries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("where", ["first value", "a middle value", "weight"])
def test_a_plaintext_shift_is_refused(preset: str, where: str) -> None:
    """A shift that moves one averaged coordinate (or the weight) by 0.1 of a unit; by 1 at
    ``standard``, whose float64 floor lets shifts of up to 36 weighted-sum units (0.07 here)
    pass with more than 1 % probability (:mod:`crypto.check`)."""
    summed = honest_sum(preset, sent(preset, 2))
    weight_slot = keys(preset)[0].preset.build_codec().slot_count(summed.n_values) - 1
    slot = {"first value": 0, "a middle value": weight_slot // 2, "weight": weight_slot}[where]
    size = 1.0 if preset == "standard" else 0.1
    refusal(preset, shifted(summed, slot, size * sum(WEIGHTS)))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_shift_of_every_slot_check_slots_included_is_refused(preset: str) -> None:
    summed = honest_sum(preset, sent(preset, 2))
    rng = np.random.default_rng(3)
    vector = summed.vectors[0]
    forged = with_vectors(summed, [vector + rng.uniform(-50, 50, vector.size()).tolist()])
    refusal(preset, forged)


@pytest.mark.parametrize("multiple", [1.0, -1.0, 2.0, 0.5, 2.0**-10])
def test_a_shift_by_the_check_values_old_period_is_refused(multiple: float) -> None:
    """Red team F2: check coefficients of 26-bit granularity made ``M 2^25 / f`` a period of
    the check value for every key, and on ``standard`` such a shift fits a slot (it was
    accepted: a federation "auc" of 4.7e10). Now the coefficients have 2^-51 granularity and
    slots beyond what the contributors can hold are refused."""
    summed = honest_sum("standard", sent("standard", 2))
    secret, _ = keys("standard")
    check = crypto.integrity.round_check(
        secret,
        secret.preset.build_codec(),
        encoding=summed.encoding,
        shapes=summed.shapes,
        session=SESSION,
        round_id=2,
    )
    layout = check.layout
    old_period = layout.modulus * 2.0**25 / layout.factor(layout.segments[0])
    refusal("standard", shifted(summed, 0, multiple * old_period))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_sum_made_from_another_start_is_refused(preset: str) -> None:
    """Updates bound to one start (``binding``) verify only for a caller expecting it, and a
    header rewritten to claim that start does not verify (the binding keys the check)."""
    secret, _ = keys(preset)
    start, other = b"s" * 32, b"o" * 32
    bound = [
        crypto.encrypt_update(
            secret,
            layers(1, index),
            WEIGHTS[index],
            contributor=name,
            round_id=2,
            session=SESSION,
            total_weight=total(preset),
            binding=other,
        ).to_bytes()
        for index, name in enumerate(BANKS)
    ]
    summed = honest_sum(preset, bound)
    for claimed in (summed, dataclasses.replace(summed, binding=start)):
        with pytest.raises(crypto.IntegrityError):
            crypto.decrypt_average(
                secret, claimed, total_weight=total(preset), min_contributors=3, binding=start
            )
    crypto.decrypt_average(
        secret, summed, total_weight=total(preset), min_contributors=3, binding=other
    )


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_doubled_sum_is_refused(preset: str) -> None:
    """``2 S``: every weighted value and the weight doubled, the average unchanged-looking."""
    summed = honest_sum(preset, sent(preset, 2))
    refusal(preset, combine([(2, summed)], summed))


def test_scaling_by_a_plaintext_factor_is_refused_or_impossible() -> None:
    """``vec * k`` needs a level to rescale: none at lean; at standard it is refused."""
    lean = honest_sum("lean", sent("lean", 2))
    with pytest.raises(ValueError, match="modulus switching chain"):
        _ = lean.vectors[0] * 3
    standard = honest_sum("standard", sent("standard", 2))
    secret, _ = keys("standard")
    for factor in (3, 0.5):
        scaled = with_vectors(standard, [v * factor for v in standard.vectors])
        with pytest.raises(crypto.MalformedDataError):  # one prime fewer: too short to parse
            institution_applies("standard", scaled)
        with pytest.raises(crypto.IntegrityError):  # and refused even handed over unparsed
            crypto.decrypt_average(secret, scaled, min_contributors=3)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_eleven_g2_minus_ten_g1_is_refused(preset: str) -> None:
    """Extrapolating from the last two global models (``11 G2 - 10 G1``)."""
    g1 = honest_sum(preset, sent(preset, 1, seed=1))
    g2 = honest_sum(preset, sent(preset, 2, seed=2))
    refusal(preset, combine([(11, g2), (-10, g1)], g2))


def test_mixing_rounds_by_rewriting_a_header_is_refused() -> None:
    old = sent("lean", 1, seed=1)[0]  # bank-a's update of round 1
    now = sent("lean", 2, seed=2)
    mixed = honest_sum("lean", [rewritten(old, round=2), *now[1:]])
    assert mixed.round_id == 2 and mixed.contributor_names == BANKS
    refusal("lean", mixed)


def test_a_stale_sum_is_refused_rewritten_or_not() -> None:
    stale = honest_sum("lean", sent("lean", 1)).to_bytes()
    with pytest.raises(crypto.ContextMismatchError):
        institution_applies("lean", stale)  # its own header names round 1
    refusal("lean", rewritten(stale, round=2))


def test_a_sum_from_another_run_is_refused_when_relabelled() -> None:
    secret, _ = keys("lean")
    other_run = [
        crypto.encrypt_update(
            secret, layers(1, i), WEIGHTS[i], contributor=name, round_id=2, session="run-old"
        ).to_bytes()
        for i, name in enumerate(BANKS)
    ]
    summed = honest_sum("lean", other_run).to_bytes()
    refusal("lean", rewritten(summed, session=SESSION))


def test_relabelled_shapes_are_refused() -> None:
    summed = honest_sum("lean", sent("lean", 2)).to_bytes()
    secret, _ = keys("lean")
    forged = crypto.EncryptedUpdate.from_bytes(secret, rewritten(summed, shapes=[[3, 4], [5]]))
    with pytest.raises(crypto.IntegrityError):
        crypto.decrypt_average(secret, forged, min_contributors=3)


def test_one_update_sent_as_the_sum_is_refused() -> None:
    alone = received("lean", sent("lean", 2)[0])
    refusal("lean", alone)  # one contributor where the round needs three
    # Passed off as all three: its header lists the other banks' genuine nonces.
    others = [received("lean", blob).contributors[0] for blob in sent("lean", 2)[1:]]
    refusal("lean", relabelled(alone, [*alone.contributors, *others]))


def test_subtracting_one_update_from_another_is_refused() -> None:
    updates = [received("lean", blob) for blob in sent("lean", 2)]
    summed = crypto.aggregate(keys("lean")[1], updates)
    difference = combine([(1, summed), (-1, updates[1])], summed)
    refusal("lean", difference)  # S - u_b declared as a + b + c
    refusal("lean", combine([(1, updates[0]), (-1, updates[1]), (1, updates[2])], summed))
    # S - u_b declared as a + c *is* the sum of a and c: what dropping b gives, nothing more,
    # and refused where the round needs all three.
    as_pair = relabelled(difference, [summed.contributors[0], summed.contributors[2]])
    refusal("lean", as_pair, minimum=3)
    pair = crypto.aggregate(keys("lean")[1], [updates[0], updates[2]])
    got, _ = institution_applies("lean", as_pair, minimum=2)
    want, _ = institution_applies("lean", pair, minimum=2)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_duplicated_contributor_is_refused() -> None:
    first = sent("lean", 2)
    second = sent("lean", 2, seed=9)  # bank-a encrypted twice this round
    a1, a2, b = (received("lean", blob) for blob in (first[0], second[0], first[1]))
    with pytest.raises(crypto.IntegrityError):
        crypto.aggregate(keys("lean")[1], [a1, a2, b])  # the honest aggregator refuses too
    doubled = combine([(2, a1), (1, b)], a1)
    refusal("lean", relabelled(doubled, [*a1.contributors, *a1.contributors, *b.contributors]))
    both = combine([(1, a1), (1, a2), (1, b)], a1)
    refusal("lean", relabelled(both, [*a1.contributors, *a2.contributors, *b.contributors]))


def test_relabelled_contributors_are_refused() -> None:
    summed = honest_sum("lean", sent("lean", 2))
    (a, na), (b, nb), (c, nc) = summed.contributors
    refusal("lean", relabelled(summed, [(a, nb), (b, na), (c, nc)]))  # nonces swapped
    refusal("lean", relabelled(summed, [(b, na), (a, nb), (c, nc)]))  # names swapped
    stranger = received("lean", sent("lean", 2, banks=("bank-d",))[0]).contributors[0]
    refusal("lean", relabelled(summed, [(a, na), (b, nb), stranger]))  # c replaced by d
    refusal("lean", relabelled(summed, [(a, na), (b, nb), (c, "0" * 32)]))  # forged nonce


def test_a_partial_sum_declared_as_another_set_is_refused() -> None:
    updates = [received("lean", blob) for blob in sent("lean", 2)]
    pair = crypto.aggregate(keys("lean")[1], updates[:2])
    everyone = [*pair.contributors, updates[2].contributors[0]]
    refusal("lean", relabelled(pair, everyone))  # a + b declared as a + b + c
    refusal("lean", relabelled(pair, [pair.contributors[0]]), minimum=1)  # a + b as a


def test_sums_relabelled_as_averages_are_refused() -> None:
    secret, _ = keys("lean")
    stats = [
        crypto.encrypt_sums(secret, [np.arange(7.0)], contributor=name, round_id=2, session=SESSION)
        for name in BANKS
    ]
    summed = crypto.aggregate(keys("lean")[1], stats)
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_average(secret, dataclasses.replace(summed, encoding="average"))
    with pytest.raises(crypto.IntegrityError):
        crypto.decrypt_sums(secret, shifted(summed, 3, 1.0), min_contributors=3)


# --- no oracle: the refusal says the same whatever the data ------------------------------------


def test_the_refusal_text_does_not_depend_on_the_data() -> None:
    texts = set()
    for seed in (1, 2, 3):
        summed = honest_sum("lean", sent("lean", 2, seed=seed))
        texts.add(refusal("lean", shifted(summed, 0, 1.0)))
        texts.add(refusal("lean", combine([(2, summed)], summed)))
        texts.add(refusal("lean", relabelled(summed, summed.contributors[:2]), minimum=2))
    assert len(texts) == 1, texts
    short = received("lean", sent("lean", 2)[0])
    header_text = refusal("lean", short)  # refused from its header alone, before decryption
    assert header_text != texts.pop()
