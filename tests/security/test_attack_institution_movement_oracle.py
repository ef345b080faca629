"""Attack: read the data through the movement bound's refusals (red team F1).

Before: with a quorum below the institution count, the aggregator handed the
banks different genuine round-1 sums as their round-2 start, then probed each
bank with genuine round-2 subset sums in repeated evaluate messages. Every sum
verified, so whether a bank replied or answered ``INTEGRITY_FAILED`` said only
whether the true distance from the bank's start to the probed sum exceeded the
kit's ``max-update-norm``: one bit of the data per message (measured: 2 of 12
honest sums refused, each exactly when its distance was beyond the allowance).

Now every update is bound to a digest of the exact aggregate its bank started
from (:mod:`clients.encryption_mod`), and a bank verifies a round-``r`` model
under its own round-``r`` start. The test plays that aggregator against the
real ClientApp of two federations with different data: two banks share a
start, the third gets another; every subset of round-2 updates is summed
(updates of different starts by hand, their header claiming the probed bank's
own start, the strongest lie) and sent to every bank. A sum is accepted
exactly when all its contributors started from the probed bank's start, and
the answers are the same for both federations: they carry no bit of the data.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from flwr.app import Message

import crypto
from clients.run_state import model_binding
from crossfed.protocol import ErrorCode

from .conftest import Federation, PlayedAggregator, copy_message

pytestmark = pytest.mark.usefixtures("flower_task")

#: The round-1 sum (of two banks) each bank is handed as its round-2 start.
STARTS = ((0, 1), (0, 1), (1, 2))


def _hand_sum(updates: list[crypto.EncryptedUpdate], binding: bytes) -> bytes:
    """Ciphertexts added with the public context, declaring every contributor and ``binding``."""
    vectors = list(updates[0].vectors)
    for update in updates[1:]:
        vectors = [a + b for a, b in zip(vectors, update.vectors, strict=True)]
    contributors = tuple(pair for update in updates for pair in update.contributors)
    return dataclasses.replace(
        updates[0],
        count=len(updates),
        vectors=tuple(vectors),
        contributors=contributors,
        binding=binding,
    ).to_bytes()


def _answer(reply: Message) -> str:
    if not reply.has_error():
        return "accepted"
    assert reply.error.code == int(ErrorCode.INTEGRITY_FAILED)
    return "refused"


def _play(federation: Federation, session: str) -> dict[tuple[int, tuple[int, ...]], str]:
    """Every bank probed with every subset sum of round 2; the answers the aggregator reads."""
    settings = federation.settings(min_institutions=2, max_update_norm=0.1)
    banks = federation.banks(settings)
    play = PlayedAggregator(federation, banks, session=session)
    play.run_statistics()
    first = [play.update(reply) for reply in play.collect(play.train_message(1))]
    sums = {
        pair: crypto.aggregate(federation.public, [first[i] for i in pair]).to_bytes()
        for pair in set(STARTS)
    }
    second = [
        play.update(bank.send(copy_message(play.train_message(2, sums[STARTS[index]]))))
        for index, bank in enumerate(banks)
    ]
    answers: dict[tuple[int, tuple[int, ...]], str] = {}
    for index, bank in enumerate(banks):
        own = model_binding(sums[STARTS[index]])
        for subset in [*itertools.combinations(range(3), 2), (0, 1, 2)]:
            chosen = [second[i] for i in subset]
            if len({update.binding for update in chosen}) == 1:
                blob = crypto.aggregate(federation.public, chosen).to_bytes()
            else:  # crypto.aggregate refuses to mix starts; the aggregator adds by hand
                blob = _hand_sum(chosen, own)
            reply = bank.send(copy_message(play.evaluate_message(2, blob)))
            answers[(index, subset)] = _answer(reply)
    return answers


def test_the_movement_bound_answers_the_same_whatever_the_data(
    institutions: Federation, smaller_institutions: Federation
) -> None:
    answers = _play(institutions, "oracle-1000")
    # Accepted exactly when every contributor started from the probed bank's own start.
    for (bank, subset), answer in answers.items():
        same_start = all(STARTS[i] == STARTS[bank] for i in subset)
        assert answer == ("accepted" if same_start else "refused"), (bank, subset)
    assert set(answers.values()) == {"accepted", "refused"}
    # Other data, other distances: the same answers.
    assert _play(smaller_institutions, "oracle-600") == answers


def test_a_bank_probed_with_its_own_starts_sums_is_never_refused(
    institutions: Any,
) -> None:
    """The other half of the argument: genuine sums made from the bank's own start stay
    inside the movement bound (honest updates are clipped; the ball is convex), however
    small the bound."""
    settings = institutions.settings(min_institutions=2, max_update_norm=1e-3)
    play = PlayedAggregator(institutions, institutions.banks(settings), session="tight-bound")
    play.run_statistics()
    for server_round in (1, 2):
        replies = play.collect(play.train_message(server_round))
        updates = [play.update(reply) for reply in replies]
        for subset in [*itertools.combinations(range(3), 2), (0, 1, 2)]:
            blob = crypto.aggregate(institutions.public, [updates[i] for i in subset]).to_bytes()
            for bank in play.banks:
                assert _answer(bank.send(play.evaluate_message(server_round, blob))) == "accepted"
        play.models[server_round] = crypto.aggregate(institutions.public, updates).to_bytes()
