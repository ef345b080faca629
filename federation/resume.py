"""Resuming a run from the aggregator's encrypted checkpoint.

Flower's ``Strategy.start`` counts rounds from 1. A restarted aggregator that
completed round ``k`` before it went down must go on with round ``k + 1``:
:class:`OffsetRounds` shifts the round number every wrapped call sees (and so
the ``server-round`` sent to institutions, the round id their updates must
carry, and the audit log's round), and :func:`resume_point` reads the
checkpoint to find ``k`` and the encrypted global model to start from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crossfed.protocol import ciphertext_record
from federation.checkpoint import Checkpoint, load_checkpoint
from federation.wrapping import DelegatingStrategy

__all__ = ["OffsetRounds", "ResumePoint", "resume_point"]

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
