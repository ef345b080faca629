"""The run's memory: the first message pins the session, rounds only go forward."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from clients import InboundMessageError, TamperedAggregateError
from clients.run_state import (
    SEEDED_START,
    admit,
    classify,
    expected_binding,
    model_binding,
    pinned_session,
    remember_binding,
    remember_start,
    round_start,
    state_key,
)
from crossfed.protocol import (
    CONFIG_KEY,
    FINAL_QUERY,
    PHASE_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    PHASE_ROLL_CALL,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    FederationSettings,
)

SETTINGS = FederationSettings(mode="plaintext", rounds=3)


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _message(kind: str, **config: object) -> Message:
    content = RecordDict({CONFIG_KEY: ConfigRecord(config)})  # type: ignore[arg-type]
    return Message(content=content, dst_node_id=1, message_type=kind)


def _stats(session: str = "s1") -> Message:
    return _message(MessageType.QUERY, **{PHASE_KEY: PHASE_STATS, SESSION_KEY: session})


def _train(server_round: object, session: str = "s1") -> Message:
    return _message(MessageType.TRAIN, **{ROUND_KEY: server_round, SESSION_KEY: session})


def _evaluate(server_round: int, session: str = "s1") -> Message:
    return _message(MessageType.EVALUATE, **{ROUND_KEY: server_round, SESSION_KEY: session})


def _node() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def test_each_kind_of_message_carries_the_model_of_its_round() -> None:
    assert (classify(_stats(), SETTINGS).kind, classify(_stats(), SETTINGS).model_round) == (
        "stats",
        None,
    )
    assert classify(_train(1), SETTINGS).model_round is None  # the seeded model, built here
    assert classify(_train(3), SETTINGS).model_round == 2
    assert classify(_evaluate(2), SETTINGS).model_round == 2  # the model round 2 made
    final = classify(_message(FINAL_QUERY), SETTINGS)
    assert (final.kind, final.round, final.model_round) == ("final", 3, 3)


@pytest.mark.parametrize("server_round", [0, 4, -1, 2.0, "2", True, [2]])
def test_a_round_outside_the_kit_or_not_an_integer_is_refused(server_round: object) -> None:
    with pytest.raises(InboundMessageError):
        classify(_train(server_round), SETTINGS)


def test_a_query_that_is_not_the_statistics_query_is_refused() -> None:
    with pytest.raises(InboundMessageError, match="statistics"):
        classify(_message(MessageType.QUERY, **{PHASE_KEY: "anything"}), SETTINGS)


def test_the_first_message_pins_the_session() -> None:
    node = _node()
    with pytest.raises(InboundMessageError):
        pinned_session(node, SETTINGS)
    admit(_stats("s1"), node, SETTINGS)
    assert pinned_session(node, SETTINGS) == "s1"
    for message in (_stats("s2"), _train(1, "s2"), _evaluate(1, "s2")):
        with pytest.raises(InboundMessageError, match="another session"):
            admit(message, node, SETTINGS)
    with pytest.raises(InboundMessageError, match="names no session"):
        admit(_message(MessageType.TRAIN, **{ROUND_KEY: 1}), node, SETTINGS)
    admit(_message(FINAL_QUERY), node, SETTINGS)  # the final message names none


@pytest.mark.parametrize("session", ["", "x" * 257])
def test_a_first_message_without_a_valid_session_pins_nothing(session: str) -> None:
    node = _node()
    with pytest.raises(InboundMessageError, match="no valid session"):
        admit(_stats(session), node, SETTINGS)
    assert not node.state.config_records


def test_training_rounds_only_go_forward_and_evaluations_never_back() -> None:
    node = _node()
    admit(_stats(), node, SETTINGS)
    admit(_train(2), node, SETTINGS)  # a node that missed round 1 joins at round 2
    for stale in (1, 2):
        with pytest.raises(InboundMessageError, match="not after round 2"):
            admit(_train(stale), node, SETTINGS)
    with pytest.raises(InboundMessageError, match="before round 2"):
        admit(_evaluate(1), node, SETTINGS)
    admit(_evaluate(2), node, SETTINGS)
    admit(_evaluate(2), node, SETTINGS)  # evaluating twice changes nothing
    admit(_train(3), node, SETTINGS)


def test_runs_with_other_settings_keep_their_own_memory() -> None:
    node = _node()
    other = FederationSettings(mode="plaintext", rounds=3, out_dir="elsewhere")
    assert state_key(other) != state_key(SETTINGS)
    admit(_stats("first"), node, SETTINGS)
    admit(_stats("second"), node, other)  # one simulation, two federations, one node
    assert (pinned_session(node, SETTINGS), pinned_session(node, other)) == ("first", "second")


def test_the_start_of_the_last_round_is_remembered() -> None:
    node = _node()
    assert round_start(node, SETTINGS) is None
    with pytest.raises(InboundMessageError):
        remember_start(node, SETTINGS, 1, [np.ones(2)])
    admit(_stats(), node, SETTINGS)
    remember_start(node, SETTINGS, 2, [np.ones((1, 2)), np.zeros(1)])
    found = round_start(node, SETTINGS)
    assert found is not None
    assert found[0] == 2
    assert [a.tolist() for a in found[1]] == [[[1.0, 1.0]], [0.0]]


def test_the_binding_is_a_digest_of_the_exact_ciphertext_bytes() -> None:
    blob = bytes(range(256)) * 4
    assert model_binding(blob) == model_binding(bytes(blob))
    assert len(model_binding(blob)) == 32
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    assert model_binding(flipped) != model_binding(blob)
    assert model_binding(b"") != SEEDED_START


def test_a_model_must_verify_under_the_start_of_its_own_round() -> None:
    node = _node()
    admit(_stats(), node, SETTINGS)
    # Nothing started yet: the start the aggregate's contributors declare is accepted.
    assert expected_binding(node, SETTINGS, 2) is None
    with pytest.raises(InboundMessageError):
        remember_binding(_node(), SETTINGS, 1, SEEDED_START)  # no session pinned
    start = model_binding(b"round-1 aggregate")
    remember_binding(node, SETTINGS, 2, start)
    remember_start(node, SETTINGS, 2, [np.ones(2)])
    assert expected_binding(node, SETTINGS, 2) == start
    for other_round in (1, 3):  # a round this institution did not start from that model
        with pytest.raises(TamperedAggregateError):
            expected_binding(node, SETTINGS, other_round)
    remember_binding(node, SETTINGS, 3, SEEDED_START)  # started round 3, but no reference kept
    with pytest.raises(TamperedAggregateError):
        expected_binding(node, SETTINGS, 3)
    remember_start(node, SETTINGS, 3, [np.ones(2)])
    assert expected_binding(node, SETTINGS, 3) == SEEDED_START


def test_a_movement_reference_without_its_binding_is_refused() -> None:
    node = _node()
    admit(_stats(), node, SETTINGS)
    remember_start(node, SETTINGS, 1, [np.ones(2)])
    with pytest.raises(TamperedAggregateError):
        expected_binding(node, SETTINGS, 1)


def _masking(phase: str, server_round: object, session: str = "s1") -> Message:
    return _message(
        MessageType.QUERY, **{PHASE_KEY: phase, ROUND_KEY: server_round, SESSION_KEY: session}
    )


def test_a_remask_or_reveal_query_is_only_for_the_round_being_trained() -> None:
    node = _node()
    for phase in (PHASE_REMASK, PHASE_REVEAL):  # before any message: no session to pin from it
        with pytest.raises(InboundMessageError, match="first message"):
            admit(_masking(phase, 0), node, SETTINGS)
    roll_call = _message(MessageType.QUERY, **{PHASE_KEY: PHASE_ROLL_CALL, SESSION_KEY: "s1"})
    assert admit(roll_call, node, SETTINGS).kind == "roll-call"  # pins the session
    assert admit(_masking(PHASE_REMASK, 0), node, SETTINGS).kind == "remask"  # statistics
    admit(_train(1), node, SETTINGS)
    assert admit(_masking(PHASE_REVEAL, 1), node, SETTINGS).kind == "reveal"
    for phase, server_round, session in (
        (PHASE_REMASK, 0, "s1"),  # a round this institution is past
        (PHASE_REMASK, 2, "s1"),  # a round it has not trained
        (PHASE_REVEAL, 2, "s1"),
        (PHASE_REVEAL, 1, "s2"),  # another session
        (PHASE_REVEAL, 4, "s1"),  # beyond the kit's rounds
        (PHASE_REVEAL, "1", "s1"),
    ):
        with pytest.raises(InboundMessageError):
            admit(_masking(phase, server_round, session), node, SETTINGS)
