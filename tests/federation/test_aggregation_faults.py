"""The aggregator under faults: duplicates, silence, unreachable nodes, oversize, no quorum.

:class:`~federation.EncryptedAggregation` is driven as Flower drives it
(``configure_train`` on a grid, then ``aggregate_train`` with the replies), with
replies made here: a node that reconnects and answers twice is counted once;
a node that never answers, or for which the SuperLink answers "unavailable"
under its own id, is recorded as dropped for that round; an oversized reply is
refused by the size bound before it is parsed; below the quorum the round is
refused and the last good checkpoint is left as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.serverapp.strategy import FedAvg

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    ciphertext_record,
    read_ciphertext,
)
from federation import (
    AuditLog,
    EncryptedAggregation,
    QuorumNotReachedError,
    load_checkpoint,
    verify_audit_log,
)

NODES = (11, 22, 33)
RUN = "run-faults"
SHAPES = ((3, 2), (2,))
WEIGHTS = {11: 40, 22: 60, 33: 100}


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


class Grid:
    """Just enough of Flower's grid for a strategy to sample and build messages."""

    def get_node_ids(self) -> Iterable[int]:
        return NODES

    def push(self, messages: Iterable[Message]) -> None:
        """Give each message its id, as a real grid does when it pushes it."""
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex


@pytest.fixture(scope="module")
def secret() -> crypto.SecretContext:
    return crypto.generate_secret_context("lean")


def _strategy(
    secret: crypto.SecretContext, out: Path, *, quorum: int = 2, max_bytes: int = 1 << 24
) -> EncryptedAggregation:
    return EncryptedAggregation(
        FedAvg(min_train_nodes=1, min_available_nodes=1),
        secret.public(),
        min_institutions=quorum,
        shapes=SHAPES,
        max_update_bytes=max_bytes,
        audit=AuditLog(out / "audit.jsonl"),
        out_dir=out,
        run_id=RUN,
    )


def _asked(strategy: EncryptedAggregation, server_round: int) -> dict[int, Message]:
    grid = Grid()
    messages = list(
        strategy.configure_train(server_round, ArrayRecord(), ConfigRecord(), grid)  # type: ignore[arg-type]
    )
    grid.push(messages)
    return {m.metadata.dst_node_id: m for m in messages}


def _reply(
    secret: crypto.SecretContext, to: Message, server_round: int, seed: int
) -> tuple[Message, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=shape) for shape in SHAPES]
    node = to.metadata.dst_node_id
    update = crypto.encrypt_update(
        secret,
        arrays,
        WEIGHTS[node],
        contributor=f"bank-{node}",
        round_id=server_round,
        session=RUN,
    )
    content = RecordDict({ARRAYS_KEY: ciphertext_record(update.to_bytes())})
    return Message(content=content, reply_to=to), arrays


def _unavailable(to: Message) -> Message:
    """The SuperLink's stand-in reply for a node it lost: its own id as the sender."""
    reply = Message(Error(code=5, reason="node unavailable"), reply_to=to)
    reply.metadata.__dict__["_src_node_id"] = 0
    return reply


def _weight(secret: crypto.SecretContext, record: ArrayRecord) -> tuple[list[np.ndarray], float]:
    summed = crypto.EncryptedUpdate.from_bytes(secret, read_ciphertext(record))
    weights, total = crypto.decrypt_average(secret, summed)
    return weights, float(total)


def test_a_reconnected_node_answering_twice_is_counted_once(
    secret: crypto.SecretContext, tmp_path: Path
) -> None:
    strategy = _strategy(secret, tmp_path)
    asked = _asked(strategy, 1)
    first, arrays_11 = _reply(secret, asked[11], 1, seed=1)
    again, _ = _reply(secret, asked[11], 1, seed=2)  # the same node after reconnecting
    other, arrays_22 = _reply(secret, asked[22], 1, seed=3)

    record, metrics = strategy.aggregate_train(1, [first, again, other])

    assert record is not None and metrics is not None
    weights, total = _weight(secret, record)
    assert total == pytest.approx(WEIGHTS[11] + WEIGHTS[22], abs=1e-3)
    expected = [
        (WEIGHTS[11] * a + WEIGHTS[22] * b) / (WEIGHTS[11] + WEIGHTS[22])
        for a, b in zip(arrays_11, arrays_22, strict=True)
    ]
    for got, want in zip(weights, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    (line,) = verify_audit_log(tmp_path / "audit.jsonl").records
    assert sorted(line.replied) == ["11", "22"]
    reasons = {d.node: d.reason for d in line.dropped}
    assert reasons["11"] == "duplicate reply, counted once"
    assert "no reply before the round deadline" in reasons["33"]
    assert metrics["institutions"] == 2


def test_a_lost_node_is_dropped_under_its_own_id(
    secret: crypto.SecretContext, tmp_path: Path
) -> None:
    strategy = _strategy(secret, tmp_path)
    asked = _asked(strategy, 1)
    replies = [_reply(secret, asked[n], 1, seed=n)[0] for n in (11, 22)]

    record, _ = strategy.aggregate_train(1, [*replies, _unavailable(asked[33])])

    assert record is not None
    (line,) = verify_audit_log(tmp_path / "audit.jsonl").records
    assert sorted(line.sampled) == ["11", "22", "33"]
    assert [(d.node, d.reason) for d in line.dropped] == [("33", "flower error NODE_UNAVAILABLE")]
    assert load_checkpoint(tmp_path / "checkpoint.bin").round == 1


def test_an_oversized_reply_is_refused_before_parsing(
    secret: crypto.SecretContext, tmp_path: Path
) -> None:
    honest, _ = _reply(secret, _asked(_strategy(secret, tmp_path / "probe"), 1)[11], 1, seed=0)
    bound = len(read_ciphertext(honest.content.array_records[ARRAYS_KEY])) + 64
    strategy = _strategy(secret, tmp_path, max_bytes=bound)
    asked = _asked(strategy, 1)
    replies = [_reply(secret, asked[n], 1, seed=n)[0] for n in (11, 22)]
    # Not even a valid envelope: a parser would call it malformed, the bound says oversized.
    huge = Message(
        RecordDict({ARRAYS_KEY: ciphertext_record(b"\xff" * (bound + 1))}), reply_to=asked[33]
    )

    strategy.aggregate_train(1, [*replies, huge])

    (line,) = verify_audit_log(tmp_path / "audit.jsonl").records
    (drop,) = line.dropped
    assert drop.node == "33"
    assert drop.reason.startswith("MalformedDataError") and "exceeds the bound" in drop.reason
    assert "33" in line.extra["dropped_ciphertext_sha256"]  # type: ignore[operator]


def test_below_the_quorum_the_round_is_refused_and_the_checkpoint_kept(
    secret: crypto.SecretContext, tmp_path: Path
) -> None:
    strategy = _strategy(secret, tmp_path, quorum=3)
    asked = _asked(strategy, 1)
    strategy.aggregate_train(1, [_reply(secret, asked[n], 1, seed=n)[0] for n in NODES])
    good = (tmp_path / "checkpoint.bin").read_bytes()

    asked = _asked(strategy, 2)
    replies = [_reply(secret, asked[n], 2, seed=n)[0] for n in (11, 22)]  # 33 was killed
    with pytest.raises(QuorumNotReachedError, match="round 2: 2 valid replies, quorum is 3"):
        strategy.aggregate_train(2, replies)

    assert (tmp_path / "checkpoint.bin").read_bytes() == good
    assert load_checkpoint(tmp_path / "checkpoint.bin").round == 1
    records = verify_audit_log(tmp_path / "audit.jsonl").records
    assert [r.round for r in records] == [1, 2]
    assert records[1].aggregate_sha256 is None
    assert [d.node for d in records[1].dropped] == ["33"]

    # The operator restarts the aggregator (same out dir, same run): round 2 is retried.
    restarted = _strategy(secret, tmp_path, quorum=3)
    asked = _asked(restarted, 2)
    arrays, _ = restarted.aggregate_train(
        2, [_reply(secret, asked[n], 2, seed=n)[0] for n in NODES]
    )
    assert arrays is not None
    assert load_checkpoint(tmp_path / "checkpoint.bin").round == 2
    records = verify_audit_log(tmp_path / "audit.jsonl").records
    assert [(r.round, r.aggregate_sha256 is None) for r in records] == [
        (1, False),
        (2, True),
        (2, False),
    ]


def test_evaluations_are_summed_encrypted_and_only_counts_are_seen(
    secret: crypto.SecretContext, tmp_path: Path
) -> None:
    strategy = _strategy(secret, tmp_path)
    grid = Grid()
    messages = list(strategy.configure_evaluate(3, ArrayRecord(), ConfigRecord(), grid))  # type: ignore[arg-type]
    grid.push(messages)
    asked = {m.metadata.dst_node_id: m for m in messages}
    assert sorted(asked) == sorted(NODES)
    reported = {11: [0.7, 0.3, 0.2, 0.5, 0.4], 22: [0.8, 0.5, 0.1, 0.3, 0.6]}
    replies = []
    for node, values in reported.items():
        update = crypto.encrypt_update(
            secret,
            [np.array(values)],
            WEIGHTS[node],
            contributor=f"bank-{node}",
            round_id=3,
            session=RUN,
        )
        content = RecordDict({ARRAYS_KEY: ciphertext_record(update.to_bytes())})
        replies.append(Message(content=content, reply_to=asked[node]))
    stale = crypto.encrypt_update(
        secret, [np.ones(5)], 100, contributor="bank-33", round_id=2, session=RUN
    )
    content = RecordDict({ARRAYS_KEY: ciphertext_record(stale.to_bytes())})
    replies.append(Message(content=content, reply_to=asked[33]))  # another round's

    result = strategy.aggregate_evaluate(3, replies)

    assert result is not None and dict(result) == {"institutions": 2, "dropped": 1}
    summed = crypto.EncryptedUpdate.from_bytes(
        secret, (tmp_path / "evaluation-round-3.bin").read_bytes()
    )
    (mean,), weight = crypto.decrypt_average(secret, summed)
    assert round(weight) == 100  # 40 + 60: the sizes stay inside the ciphertext
    expected = (40 * np.array(reported[11]) + 60 * np.array(reported[22])) / 100
    np.testing.assert_allclose(mean, expected, atol=1e-5)

    # A round in which no evaluation is valid leaves no sum, not even an earlier one.
    garbage = RecordDict({ARRAYS_KEY: ciphertext_record(b"not a ciphertext")})
    result = strategy.aggregate_evaluate(3, [Message(content=garbage, reply_to=asked[11])])
    assert result is not None and dict(result) == {"institutions": 0, "dropped": 1}
    assert not (tmp_path / "evaluation-round-3.bin").exists()
    assert strategy.last_evaluation is None
