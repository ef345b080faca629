"""Masked aggregation: :class:`~federation.strategy.EncryptedAggregation` for masked presets.

Under ``masked16`` or ``masked8`` each institution sends its quantised training
*delta*, masked for a declared contributor set of institution names
(:mod:`crypto.masked`). This wrapper, in Flower's own strategy loop,

* declares the set in every training message (the names of the nodes sampled,
  from the run's roll call; :data:`~crossfed.protocol.CONTRIBUTORS_KEY`) and
  sends the seeds revealed for the previous round's sum beside it
  (:data:`~crossfed.protocol.SELF_SEEDS_KEY`), so that institutions can open it;
* in :meth:`aggregate_train`, checks the replies (as the unmasked strategy
  does, encoding ``masked``) and runs the re-mask and reveal exchange with the
  grid it was handed in :meth:`configure_train`
  (:func:`~federation.masked_exchange.complete_masked_sum`): a dropout makes the
  survivors re-mask for a smaller set, and a member that does not reveal its
  seed refuses the round (:class:`QuorumNotReachedError`, model unchanged);
* keeps each round's masked sum and seeds in ``out_dir/masked/`` (the
  aggregator holds deltas only: a later replay from the seeded model is the
  only way back to a model, and only institutions can do it) instead of a
  checkpoint; a masked run is never resumed.

Federated evaluation is left out under a masked preset until evaluation sums
are masked too: the unmasked evaluation recipe would show one institution's
metrics to whoever holds the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

import crypto
from crossfed.protocol import (
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    PURPOSE_TRAIN,
    SELF_SEEDS_KEY,
    ciphertext_record,
)
from federation.audit import AuditLog
from federation.errors import QuorumNotReachedError
from federation.masked_exchange import Checked, complete_masked_sum
from federation.measured import content_bytes
from federation.strategy import EncryptedAggregation, _Round

__all__ = ["MASKED_DIR", "MASKED_STATISTICS", "MaskedAggregation", "masked_round_files"]

logger = logging.getLogger(__name__)

#: Folder of the aggregator's out-dir holding every round's masked sum and seeds.
MASKED_DIR = "masked"
#: The run's encrypted statistics sum in that folder (its first entry normalises the deltas).
MASKED_STATISTICS = "statistics.bin"
#: Encoding of a masked reply (:mod:`crypto.masked`).
MASKED_ENCODING = "masked"
_NO_REPLY = "no reply before the round deadline (node gone or too slow)"


def masked_round_files(out_dir: Path, server_round: int) -> tuple[Path, Path]:
    """``(sum, seeds)`` files of one round's masked aggregate in an out-dir."""
    folder = out_dir / MASKED_DIR
    return folder / f"round-{server_round}.bin", folder / f"round-{server_round}.seeds.json"


class MaskedAggregation(EncryptedAggregation):
    """Sum masked deltas for declared sets of named institutions, holding no key.

    Parameters
    ----------
    strategy, context, min_institutions, shapes, max_update_bytes, audit, out_dir, run_id:
        As for :class:`~federation.strategy.EncryptedAggregation`; ``context``
        must be of a masked preset.
    names:
        Node id to institution name, from the run's roll call
        (:func:`~federation.masked_exchange.roll_call`); only named nodes are asked.
    timeout:
        Seconds to wait for the replies of each re-mask and reveal exchange.
    """

    masks_updates = True

    def __init__(
        self,
        strategy: FedAvg,
        context: crypto.PublicContext,
        *,
        names: Mapping[int, str],
        timeout: float,
        min_institutions: int,
        shapes: Sequence[Sequence[int]],
        max_update_bytes: int,
        audit: AuditLog | None,
        out_dir: Path | None,
        run_id: str,
    ) -> None:
        super().__init__(
            strategy,
            context,
            min_institutions=min_institutions,
            shapes=shapes,
            max_update_bytes=max_update_bytes,
            audit=audit,
            out_dir=out_dir,
            run_id=run_id,
        )
        self.names = dict(names)
        self.timeout = timeout
        #: The seeds revealed for the latest sum, by name (sent with every message carrying it).
        self.seeds: dict[str, bytes] = {}
        self._grid: Grid | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's sampling among named nodes; declare the set; forward the last seeds."""
        self._grid = grid
        messages = [
            m
            for m in super().configure_train(server_round, arrays, config, grid)
            if m.metadata.dst_node_id in self.names
        ]
        members = sorted(self.names[m.metadata.dst_node_id] for m in messages)
        for message in messages:
            sent = message.content.config_records.get(CONFIG_KEY) or ConfigRecord()
            message.content[CONFIG_KEY] = ConfigRecord({**dict(sent), CONTRIBUTORS_KEY: members})
            if self.seeds:
                message.content[SELF_SEEDS_KEY] = ConfigRecord(dict(self.seeds))
        self._sampled = [m.metadata.dst_node_id for m in messages]
        self._messages = messages
        self._bytes_sent = sum(content_bytes(m.content) for m in messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the masked replies, re-mask on dropouts, collect the seeds, keep the sum."""
        started = time.perf_counter()
        self.last_summed = 0
        round_ = _Round(self._sampled, self._messages)
        first: dict[int, Checked] = {}
        for reply in replies:
            node = round_.node_of(reply)
            if node is None:
                logger.warning("round %d: ignored a reply not asked for", server_round)
                continue
            checked = self._check(server_round, reply, self.shapes, MASKED_ENCODING)
            round_.received += checked[2]
            first.setdefault(node, checked)
        for node in round_.sampled:
            first.setdefault(node, (_NO_REPLY, None, 0, ""))
        if self._grid is None:
            raise QuorumNotReachedError(f"round {server_round}: no grid to complete the sum on")
        try:
            outcome = complete_masked_sum(
                self._grid,
                self.context,
                self.names,
                first,
                lambda reply: self._check(server_round, reply, self.shapes, MASKED_ENCODING),
                purpose=PURPOSE_TRAIN,
                round_id=server_round,
                session=self.run_id,
                quorum=self.min_institutions,
                timeout=self.timeout,
            )
        except QuorumNotReachedError:
            self.seeds = {}
            for node, (reason, _update, _size, digest) in first.items():
                round_.dropped[node] = reason or "left out of a set that could not be opened"
                if digest:
                    round_.digests[node] = digest
            self._audit(server_round, round_, [], "", started)  # no aggregate: refused
            raise
        round_.digests.update(outcome.digests)
        round_.dropped.update(outcome.dropped)
        round_.received += outcome.bytes_up
        for node, reason in outcome.dropped.items():
            logger.warning("round %d: dropped reply of node %d: %s", server_round, node, reason)
        digest = hashlib.sha256(outcome.total).hexdigest()
        self._audit(server_round, round_, outcome.summed, digest, started)
        if self.out_dir is not None:
            total_path, seeds_path = masked_round_files(self.out_dir, server_round)
            total_path.parent.mkdir(parents=True, exist_ok=True)
            crypto.write_atomically(total_path, outcome.total)
            seeds = {name: seed.hex() for name, seed in outcome.seeds.items()}
            crypto.write_atomically(seeds_path, json.dumps(seeds, sort_keys=True).encode())
        self.seeds = dict(outcome.seeds)
        self.last_summed = len(outcome.summed)
        metrics = MetricRecord(
            {
                "institutions": len(outcome.summed),
                "dropped": len(outcome.dropped),
                "masked-exchange-bytes": outcome.bytes_down + outcome.bytes_up,
            }
        )
        return ciphertext_record(outcome.total), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """None: evaluation sums are not masked yet (see the module docstring)."""
        self._grid = grid
        self._evaluation_messages = []
        return []

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Nothing was asked: no institution's evaluation is counted."""
        self.last_evaluation = None
        return MetricRecord({"institutions": 0, "dropped": 0})
