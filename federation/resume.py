"""Resuming a run from the aggregator's encrypted checkpoint.

Flower's ``Strategy.start`` counts rounds from 1. A restarted aggregator that
completed round ``k`` before it went down must go on with round ``k + 1``:
:class:`OffsetRounds` shifts the round number every wrapped call sees (and so
the ``server-round`` sent to institutions, the round id their updates must
carry, and the audit log's round), and :func:`resume_point` reads the
checkpoint to find ``k`` and the encrypted global model to start from.

The privacy accountant must not forget what the run released before the
restart: :func:`released_rounds` reads, from the audit log, every round of the
run id that produced an aggregate and how many replies it summed — rounds
recorded after the checkpoint's (a crash between the audit line and the
checkpoint) included — and :func:`prior_noise_multipliers` turns them into the
effective noise multipliers composed before the first new round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crossfed.protocol import ciphertext_record
from federation.audit import verify_audit_log
from federation.checkpoint import Checkpoint, load_checkpoint
from federation.dp import effective_noise_multiplier
from federation.wrapping import DelegatingStrategy

__all__ = [
    "OffsetRounds",
    "ReleasedRound",
    "ResumePoint",
    "prior_noise_multipliers",
    "released_rounds",
    "resume_point",
]

logger = logging.getLogger(__name__)


class ResumePoint:
    """Where a run starts: round offset, run id and initial (encrypted) model."""

    def __init__(self, checkpoint: Checkpoint | None, run_id: str) -> None:
        self.completed = checkpoint.round if checkpoint else 0
        self.run_id = checkpoint.run_id if checkpoint else run_id
        self.arrays = ciphertext_record(checkpoint.model) if checkpoint else ArrayRecord()


def resume_point(out_dir: Path | None, fingerprint: str, new_run_id: str) -> ResumePoint:
    """The checkpoint in ``out_dir`` (same federation) if there is one, else a fresh start.

    Raises
    ------
    federation.CheckpointError
        A checkpoint exists but is corrupt or belongs to another federation:
        the operator must look, not have it silently overwritten.
    """
    path = out_dir / "checkpoint.bin" if out_dir is not None else None
    if path is None or not path.exists():
        return ResumePoint(None, new_run_id)
    checkpoint = load_checkpoint(path, expected_fingerprint=fingerprint)
    logger.info("resuming run %s after round %d from %s", checkpoint.run_id, checkpoint.round, path)
    return ResumePoint(checkpoint, new_run_id)


@dataclass(frozen=True)
class ReleasedRound:
    """A round of a run that produced an aggregate, as its audit line records it."""

    round: int
    summed: int
    sampled: int


def released_rounds(audit_path: Path, run_id: str) -> list[ReleasedRound]:
    """Every round of ``run_id`` the audit log records with an aggregate, in log order.

    A missing log yields none. A round recorded twice (retried after a restart)
    appears twice: both aggregates may have been released.

    Raises
    ------
    federation.AuditTamperedError
        The log does not verify: the accountant must not trust it.
    """
    if not audit_path.exists():
        return []
    return [
        ReleasedRound(record.round, len(record.replied), len(record.sampled))
        for record in verify_audit_log(audit_path).records
        if record.run_id == run_id and record.aggregate_sha256 is not None
    ]


def prior_noise_multipliers(
    released: Sequence[ReleasedRound],
    completed: int,
    *,
    noise_multiplier: float,
    institutions: int,
    quorum: int,
) -> list[float]:
    """Effective noise multipliers of the rounds a run released before this start.

    Each audited round counts with the replies it summed. A round the
    checkpoint holds (``1 .. completed``) that the audit log lacks counts as if
    only the quorum had been summed — the least noise the aggregator could have
    accepted — so the result can only overstate ε.
    """
    if noise_multiplier <= 0:
        return []
    recorded = {r.round for r in released}
    rounds = list(released) + [
        ReleasedRound(r, quorum, max(institutions, quorum))
        for r in range(1, completed + 1)
        if r not in recorded
    ]
    return [
        effective_noise_multiplier(
            noise_multiplier, r.summed, max(institutions, r.sampled, r.summed, 1)
        )
        for r in rounds
    ]


class OffsetRounds(DelegatingStrategy):
    """Present Flower's round ``r`` to ``strategy`` as round ``r + offset``."""

    def __init__(self, strategy: Strategy, offset: int) -> None:
        super().__init__(strategy)
        self.offset = offset

    def summary(self) -> None:
        """Log the wrapped strategy's summary and the offset."""
        if self.offset:
            logger.info("Resuming after round %d", self.offset)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate with the shifted round."""
        return self.strategy.configure_train(server_round + self.offset, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegate with the shifted round."""
        return self.strategy.aggregate_train(server_round + self.offset, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate with the shifted round."""
        return self.strategy.configure_evaluate(server_round + self.offset, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Delegate with the shifted round."""
        return self.strategy.aggregate_evaluate(server_round + self.offset, replies)
