"""The aggregator's accountant and measurements: what counts, and where figures come from.

:class:`~federation.MeasuredStrategy` is driven as Flower drives it. ε grows
with the replies that entered a sum, never with those merely received; a refused
round spends nothing; rounds released before a restart come from the audit log
(:func:`~federation.released_rounds`), and rounds the log lost count at the
quorum. The institutions' CPU is whatever the meter handed in measures — a
``cpu-s`` figure in a reply is never read.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from crossfed.protocol import ConfigurationError, FederationSettings
from federation import (
    NOT_MEASURED,
    AuditLog,
    AuditRecord,
    MeasuredStrategy,
    QuorumNotReachedError,
    ReleasedRound,
    check_settings,
    effective_noise_multiplier,
    epsilon_spent,
    prior_noise_multipliers,
    released_rounds,
)
from federation.wrapping import DelegatingStrategy

NODES = (1, 2, 3)


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


class Grid:
    def get_node_ids(self) -> Iterable[int]:
        return NODES


def _asked(strategy: MeasuredStrategy, server_round: int = 1) -> list[Message]:
    messages = list(
        strategy.configure_train(server_round, ArrayRecord(), ConfigRecord(), Grid())  # type: ignore[arg-type]
    )
    for message in messages:
        message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
    return messages


def _plain_reply(to: Message, cpu: float) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord([np.ones(3, dtype=np.float32)]),
            "metrics": MetricRecord({"num-examples": 10, "cpu-s": cpu}),
        }
    )
    return Message(content=content, reply_to=to)


class Summing(DelegatingStrategy):
    """A wrapped strategy that says it summed ``summed`` replies (or refuses the round)."""

    def __init__(self, summed: int) -> None:
        super().__init__(FedAvg(min_available_nodes=1, min_train_nodes=1))
        self.last_summed = summed

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self.last_summed == 0:
            raise QuorumNotReachedError("refused")
        return ArrayRecord(), None


class FixedMeter:
    """A CPU meter whose stopwatch reads ``seconds`` once started."""

    source = "a test meter"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0

    def start(self) -> Callable[[], float]:
        self.started += 1
        return lambda: self.seconds


def test_a_cpu_figure_in_a_reply_is_never_read() -> None:
    strategy = MeasuredStrategy(FedAvg(min_available_nodes=3, min_train_nodes=3))
    replies = [_plain_reply(m, cpu=1e9) for m in _asked(strategy)]

    arrays, _ = strategy.aggregate_train(1, replies)

    assert arrays is not None
    (measured,) = strategy.rounds
    assert measured.institutions_cpu_s is None
    assert strategy.institutions_cpu_source == NOT_MEASURED
    assert measured.institutions_summed == 3


def test_the_institutions_cpu_comes_from_the_meter_around_the_round() -> None:
    meter = FixedMeter(2.5)
    strategy = MeasuredStrategy(
        FedAvg(min_available_nodes=3, min_train_nodes=3), institutions_cpu=meter
    )
    replies = [_plain_reply(m, cpu=1e9) for m in _asked(strategy)]
    assert meter.started == 1  # started when the round's messages were made

    strategy.aggregate_train(1, replies)

    assert strategy.rounds[0].institutions_cpu_s == 2.5
    assert strategy.institutions_cpu_source == "a test meter"


def test_epsilon_counts_the_summed_replies_not_those_received() -> None:
    strategy = MeasuredStrategy(Summing(summed=1), dp_noise_multiplier=2.0, dp_institutions=3)
    replies = [_plain_reply(m, cpu=0.0) for m in _asked(strategy)]  # three answered

    strategy.aggregate_train(1, replies)

    (measured,) = strategy.rounds
    assert measured.institutions_replied == 3 and measured.institutions_summed == 1
    assert measured.noise_multiplier == pytest.approx(2.0 * math.sqrt(1 / 3))
    assert measured.epsilon == pytest.approx(epsilon_spent([2.0 * math.sqrt(1 / 3)], 1e-5))


def test_the_share_count_is_never_below_the_institutions_asked() -> None:
    # The settings say 2 institutions, 3 were asked: each share was sized for 2 at most.
    strategy = MeasuredStrategy(Summing(summed=2), dp_noise_multiplier=2.0, dp_institutions=2)
    strategy.aggregate_train(1, [_plain_reply(m, 0.0) for m in _asked(strategy)])

    assert strategy.rounds[0].noise_multiplier == pytest.approx(2.0 * math.sqrt(2 / 3))


def test_a_refused_round_spends_nothing() -> None:
    strategy = MeasuredStrategy(
        Summing(summed=0), dp_noise_multiplier=2.0, dp_institutions=3, prior_noise_multipliers=[1.5]
    )
    with pytest.raises(QuorumNotReachedError):
        strategy.aggregate_train(1, [_plain_reply(m, 0.0) for m in _asked(strategy)])

    (measured,) = strategy.rounds
    assert measured.noise_multiplier is None and measured.institutions_summed == 0
    assert measured.epsilon == pytest.approx(epsilon_spent([1.5], 1e-5))
    assert strategy.noise_multipliers == [1.5]


def _record(round_: int, run_id: str, replied: int, applied: bool = True) -> AuditRecord:
    sampled = ["1", "2", "3"]
    return AuditRecord(
        round=round_,
        run_id=run_id,
        sampled=sampled,
        replied=sampled[:replied],
        aggregate_sha256="ab" * 32 if applied else None,
    )


def test_released_rounds_are_this_runs_aggregates_from_the_audit_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(_record(1, "other-run", 3))
    log.append(_record(1, "run", 2))
    log.append(_record(2, "run", 1, applied=False))  # refused: nothing released
    log.append(_record(2, "run", 3))  # retried after a restart

    assert released_rounds(tmp_path / "audit.jsonl", "run") == [
        ReleasedRound(1, 2, 3),
        ReleasedRound(2, 3, 3),
    ]
    assert released_rounds(tmp_path / "missing.jsonl", "run") == []


def test_prior_multipliers_count_audited_rounds_and_assume_the_quorum_for_lost_ones() -> None:
    released = [ReleasedRound(1, 2, 3)]
    prior = prior_noise_multipliers(released, 3, noise_multiplier=1.0, institutions=3, quorum=2)
    assert prior == pytest.approx(
        [effective_noise_multiplier(1.0, 2, 3)] * 3  # round 1 audited; 2 and 3 lost
    )
    assert (
        prior_noise_multipliers(released, 1, noise_multiplier=0.0, institutions=3, quorum=2) == []
    )


def _settings(**values: object) -> FederationSettings:
    base: dict[str, object] = {"mode": "encrypted", "public_context": "public.ctx"}
    base.update(values)
    return FederationSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "model-shapes"),
        ({"model_shapes": "[[2]]", "dp_clip": 1.0, "dp_noise_multiplier": 1.0}, "institutions"),
    ],
)
def test_the_aggregator_refuses_settings_it_cannot_run_honestly(
    values: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        check_settings(_settings(**values))


def test_settings_that_fix_shapes_and_share_count_pass() -> None:
    check_settings(_settings(model_shapes="[[2]]", dp_clip=1.0, institutions=3))
    check_settings(FederationSettings(mode="plaintext"))  # plaintext needs no shapes
