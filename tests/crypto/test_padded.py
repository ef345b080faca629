"""The lattice-free comparison row: pairwise masks plus an institutions-only pad.

The aggregator holds the padded sum and every revealed self-mask seed (it
forwards them). Without the pad key what it can strip leaves residues that are
uniform modulo ``2^B`` (chi-square on 64 bins, threshold at p = 1e-6); with the
key — an institution's view — the same steps give the exact sum, and any edit
of the sum fails the check values.
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest

import crypto
from crypto import AgreementKey, IntegrityError, MaskedRound, SecretContext, quantise_update
from crypto.errors import ContextMismatchError, MalformedDataError
from crypto.masks import MaskShape, mask_entries, set_digest
from crypto.padded import PaddedUpdate, open_padded, pad_update, sum_padded
from tests.uniformity import CHI2_63_P1E6, chi2

NAMES = ("amsterdam", "berlin", "cork", "dublin")
SESSION, ROUND, NORMALISER = "run-1", 2, 4_000
VALUES = 20_000


@pytest.fixture(scope="module")
def context() -> SecretContext:
    return crypto.generate_secret_context("masked16")


@pytest.fixture(scope="module")
def padded_round(
    context: SecretContext,
) -> tuple[list[PaddedUpdate], dict[str, bytes], bytes, list]:
    rng = np.random.default_rng(3)
    keys = {name: AgreementKey.generate() for name in NAMES}
    public = {name: key.public_bytes() for name, key in keys.items()}
    pad_key = secrets.token_bytes(32)
    deltas = [[rng.uniform(-0.5, 0.5, size=VALUES)] for _ in NAMES]
    replies, seeds, quantised = [], {}, []
    for name, delta in zip(NAMES, deltas, strict=True):
        update = quantise_update(context, delta, 1_000, normaliser=NORMALISER)
        quantised.append(update)
        masked = MaskedRound(
            context,
            keys[name],
            name,
            {peer: pk for peer, pk in public.items() if peer != name},
            update,
            session=SESSION,
            round_id=ROUND,
            purpose="train",
        )
        replies.append(pad_update(context, masked, pad_key, NAMES))
        seeds[name] = masked.reveal(NAMES)
    return replies, seeds, pad_key, quantised


def test_institutions_open_the_exact_sum(context: SecretContext, padded_round) -> None:
    replies, seeds, pad_key, quantised = padded_round
    wire = [PaddedUpdate.from_bytes(r.to_bytes()) for r in replies]  # through the wire
    summed = PaddedUpdate.from_bytes(sum_padded(wire).to_bytes())

    opened = open_padded(context, summed, pad_key, self_seeds=seeds, purpose="train")
    assert np.array_equal(opened.values, np.sum([q.values for q in quantised], axis=0))
    assert opened.total_weight == 4_000


def test_the_aggregator_without_the_pad_key_sees_uniform_residues(
    context: SecretContext, padded_round
) -> None:
    replies, seeds, pad_key, quantised = padded_round
    summed = sum_padded(replies)
    bits = summed.value_bits
    shape = MaskShape(VALUES, bits, 1, summed.tags.size, summed.tag_modulus)
    stripped = summed.values.copy()
    for name in NAMES:  # every revealed self mask: the aggregator forwards the seeds
        own = mask_entries(
            seeds[name], shape, session=SESSION, round_id=ROUND,
            digest=set_digest(NAMES), purpose="train", kind="self",
        )  # fmt: skip
        stripped = stripped - own[0]
    stripped %= 1 << bits
    truth = np.sum([q.values for q in quantised], axis=0) % (1 << bits)

    assert np.mean(stripped == truth) < 0.01  # the pads hide the sum
    assert chi2(stripped, bits) < CHI2_63_P1E6
    # Control: an institution's view (the pad key) gives the sum exactly.
    opened = open_padded(context, summed, pad_key, self_seeds=seeds, purpose="train")
    assert np.array_equal(opened.values % (1 << bits), truth)


def test_an_edited_sum_a_wrong_pad_key_or_a_missing_member_is_refused(
    context: SecretContext, padded_round
) -> None:
    replies, seeds, pad_key, _ = padded_round
    summed = sum_padded(replies)
    edited = PaddedUpdate(**{**summed.__dict__, "values": summed.values.copy()})
    edited.values[7] = (edited.values[7] + 1) % (1 << summed.value_bits)
    with pytest.raises(IntegrityError):
        open_padded(context, edited, pad_key, self_seeds=seeds, purpose="train")
    with pytest.raises(IntegrityError):
        open_padded(context, summed, secrets.token_bytes(32), self_seeds=seeds, purpose="train")
    with pytest.raises(IntegrityError):  # three of four summed, declared as three: no mask cancels
        open_padded(context, sum_padded(replies[:3]), pad_key, self_seeds=seeds, purpose="train")
    with pytest.raises(ContextMismatchError):
        open_padded(context, summed, pad_key, self_seeds=seeds, purpose="evaluate")
    with pytest.raises(ContextMismatchError, match="twice"):
        sum_padded([replies[0], replies[0], replies[1]])


def test_a_padded_update_is_three_bytes_a_value_and_checked_on_load(padded_round) -> None:
    replies, *_ = padded_round
    data = replies[0].to_bytes()
    assert 3 * VALUES < len(data) < 3 * VALUES + 1_000
    with pytest.raises(MalformedDataError):
        PaddedUpdate.from_bytes(data[:-5])
    with pytest.raises(MalformedDataError):
        PaddedUpdate.from_bytes(b"XFDU" + data[4:])
