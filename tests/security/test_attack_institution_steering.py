"""Attack: a malicious aggregator chooses the model the banks train from and deploy.

Before (issue 9, item 4): an encrypted run accepted a *plaintext* global model,
so the aggregator simply chose the weights; ``11 G2 - 10 G1``, a plaintext
shift, a stale round or one bank's single update all passed the summed-weight
check, and no inbound ciphertext was checked for its run or round. Here the
test plays the aggregator message by message against the real ClientApp of
three banks (German credit) and tries each: every one is refused with a fixed
code, and the honest run beside them goes through.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    ROUND_KEY,
    SESSION_KEY,
    STATS_KEY,
    ErrorCode,
    reason_of,
)

pytestmark = pytest.mark.usefixtures("flower_task")


def assert_refused(reply: Message, code: ErrorCode) -> None:
    """The reply is the fixed error ``code`` and carries nothing else."""
    assert reply.has_error(), "the bank accepted what it must refuse"
    assert (reply.error.code, reply.error.reason) == (int(code), reason_of(code))
    assert not reply.has_content()


def test_an_honest_run_passes_and_replies_only_ciphertext(played_aggregator: Any) -> None:
    for server_round in (1, 2, 3):
        played_aggregator.run_round(server_round)
    replies = played_aggregator.collect(played_aggregator.final_message())
    assert not any(reply.has_error() for reply in replies)
    for reply in replies:
        assert set(reply.content) == {METRICS_KEY}
        assert dict(reply.content.metric_records[METRICS_KEY]) == {}
    fresh = played_aggregator.federation.banks()[0]
    fresh.send(played_aggregator.stats_query())
    reply = fresh.send(played_aggregator.train_message(1))
    assert set(reply.content) == {ARRAYS_KEY, METRICS_KEY}
    assert dict(reply.content.metric_records[METRICS_KEY]) == {}


def _chosen_weights(played_aggregator: Any) -> ArrayRecord:
    """Weights the attacker picked: the model it wants the banks to deploy."""
    shapes = played_aggregator.federation.base.shapes()
    return ArrayRecord([np.full(shape, 3.0, dtype=np.float32) for shape in shapes])


def test_a_plaintext_global_model_is_refused(played_aggregator: Any) -> None:
    chosen = _chosen_weights(played_aggregator)
    # As the round-1 "initial model" (each bank builds the seeded one itself), then as
    # round 2's: a bank never trains a round twice, so each attempt costs the round.
    for server_round in (1, 2):
        message = played_aggregator.train_message(server_round, chosen)
        for reply in played_aggregator.collect(message):
            assert_refused(reply, ErrorCode.MALFORMED_INPUT)
    played_aggregator.banks = played_aggregator.federation.banks()  # a fresh run
    played_aggregator.run_statistics()
    played_aggregator.run_round(1)
    for reply in played_aggregator.collect(played_aggregator.evaluate_message(1, chosen)):
        assert_refused(reply, ErrorCode.MALFORMED_INPUT)
    played_aggregator.run_round(2)
    played_aggregator.run_round(3)
    for reply in played_aggregator.collect(played_aggregator.final_message(chosen)):
        assert_refused(reply, ErrorCode.MALFORMED_INPUT)
    replies = played_aggregator.collect(played_aggregator.final_message())
    assert not any(reply.has_error() for reply in replies)


def test_plaintext_statistics_are_refused(played_aggregator: Any) -> None:
    message = played_aggregator.train_message(1)
    # Statistics the attacker chose, beside the encrypted sum.
    message.content.config_records[CONFIG_KEY][STATS_KEY] = [100.0] + [0.0] * 120
    for reply in played_aggregator.collect(message):
        assert_refused(reply, ErrorCode.MALFORMED_INPUT)


def test_stale_rounds_replays_and_rounds_beyond_the_kit_are_refused(
    played_aggregator: Any,
) -> None:
    played_aggregator.run_round(1)
    played_aggregator.run_round(2)
    stale = played_aggregator.models[1]
    beyond = played_aggregator.train_message(3)
    beyond.content.config_records[CONFIG_KEY][ROUND_KEY] = 4  # the kit says 3 rounds
    attempts = [
        played_aggregator.train_message(2),  # round 2 again (a replayed training)
        played_aggregator.train_message(1),  # and round 1
        played_aggregator.evaluate_message(1),  # back to round 1 after round 2
        played_aggregator.evaluate_message(2, stale),  # round 1's model as round 2's
        beyond,
    ]
    for message in attempts:
        for reply in played_aggregator.collect(message):
            assert_refused(reply, ErrorCode.MALFORMED_INPUT)
    # The run's own messages still pass.
    replies = played_aggregator.collect(played_aggregator.evaluate_message(2))
    assert not any(reply.has_error() for reply in replies)
    for reply in played_aggregator.collect(played_aggregator.train_message(3, stale)):
        assert_refused(reply, ErrorCode.MALFORMED_INPUT)  # round 1's model for round 3


def test_another_runs_session_or_ciphertext_is_refused(
    played_aggregator: Any, aggregator_for: Any
) -> None:
    played_aggregator.run_round(1)
    message = played_aggregator.train_message(2)
    message.content.config_records[CONFIG_KEY][SESSION_KEY] = "another-run"
    for reply in played_aggregator.collect(message):
        assert_refused(reply, ErrorCode.MALFORMED_INPUT)
    # A second run of the same federation (same key, honest sums, its own session):
    # its round-1 model passed off as this run's, in a message naming this run.
    other = aggregator_for("run-session-2")
    other.run_round(1)
    for reply in played_aggregator.collect(played_aggregator.evaluate_message(1, other.models[1])):
        assert_refused(reply, ErrorCode.MALFORMED_INPUT)
    played_aggregator.run_round(2)  # this run goes on


def _combine(
    base: crypto.EncryptedUpdate, terms: list[tuple[int, crypto.EncryptedUpdate]]
) -> crypto.EncryptedUpdate:
    """``sum(k * u)`` over ``terms`` under ``base``'s header: additions only, no key."""
    total: list[Any] = []
    for factor, update in terms:
        for _ in range(abs(factor)):
            signed = [v if factor > 0 else -v for v in update.vectors]
            total = signed if not total else [t + v for t, v in zip(total, signed, strict=True)]
    return dataclasses.replace(base, vectors=tuple(total))


def test_a_transformed_aggregate_is_refused(
    played_aggregator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test probes many aggregates of one run, each refused on its own merits; the
    # per-run closure (clients.refusals, red team F5) would refuse all but the first
    # before decrypting. It is tested in test_attack_institution_key_oracle.py.
    monkeypatch.setattr("clients.encryption_mod.check_may_decrypt", lambda *_: None)
    public = played_aggregator.federation.public
    played_aggregator.run_round(1)
    played_aggregator.run_round(2)
    g1 = crypto.EncryptedUpdate.from_bytes(public, played_aggregator.models[1])
    g2 = crypto.EncryptedUpdate.from_bytes(public, played_aggregator.models[2])
    one, two, _ = played_aggregator.updates[2]
    shift = [0.0] * g2.vectors[0].size()
    shift[0] = 0.05
    attacks = {
        "11 G2 - 10 G1": _combine(g2, [(11, g2), (-10, g1)]),
        "doubled": _combine(g2, [(2, g2)]),
        "plaintext shift": dataclasses.replace(
            g2, vectors=(g2.vectors[0] + shift, *g2.vectors[1:])
        ),
        "round 1 under round 2's header": dataclasses.replace(g2, vectors=g1.vectors),
        "one bank's update as the sum": dataclasses.replace(
            one, count=g2.count, contributors=g2.contributors
        ),
        "two of three (the quorum is three)": crypto.aggregate(public, [one, two]),
    }
    for name, forged in attacks.items():
        message = played_aggregator.evaluate_message(2, forged.to_bytes())
        for reply in played_aggregator.collect(message):
            assert reply.has_error(), name
            assert_refused(reply, ErrorCode.INTEGRITY_FAILED)
    # The honest sum of the same round still passes.
    replies = played_aggregator.collect(played_aggregator.evaluate_message(2))
    assert not any(reply.has_error() for reply in replies)
