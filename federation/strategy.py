"""Encrypted aggregation as a wrapper around a Flower strategy.

:class:`EncryptedAggregation` wraps Flower's own :class:`~flwr.serverapp.strategy.FedAvg`
(sampling, message construction and evaluation stay Flower's) and replaces
only the aggregation of training replies: every reply must carry one
serialised :class:`crypto.EncryptedUpdate`, which is checked (size bound before
parsing, format version, context fingerprint, round, shapes), and the valid
ones are summed with the public context. A bad reply is dropped with its reason
logged and audited while the round completes with the rest; with fewer valid
replies than the quorum the round is refused (:class:`QuorumNotReachedError`)
and the global model is left as it was. FedAvg itself never learns about
encryption (the pattern of Flower's ``DifferentialPrivacyServerSideFixedClipping``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    EVALUATION_FILE,
    EVALUATION_METRICS,
    ConfigurationError,
    ciphertext_record,
    read_ciphertext,
)
from federation.audit import AuditLog
from federation.audit_record import AuditRecord, DroppedNode
from federation.checkpoint import Checkpoint, save_checkpoint
from federation.errors import QuorumNotReachedError
from federation.measured import content_bytes
from federation.wrapping import DelegatingStrategy

__all__ = ["EncryptedAggregation", "averaging_preset_problem"]

logger = logging.getLogger(__name__)


def averaging_preset_problem(preset: crypto.Preset) -> str | None:
    """Why ``preset`` cannot carry a federation's model, or ``None`` when it can.

    The packed codec clips every value to ``[-clip, clip]`` before quantising: fit
    for bounded quantities, but a model's weights are not bounded, and clipping
    them would change the model without a word. Federated averaging therefore
    takes presets with the float codec only.
    """
    if preset.codec == "float":
        return None
    usable = sorted(name for name, p in crypto.PRESETS.items() if p.codec == "float")
    return (
        f"preset {preset.name!r} clips every value to [-{preset.clip:g}, {preset.clip:g}] and "
        f"cannot carry a model's weights; a federation uses {' or '.join(usable)}"
    )


class EncryptedAggregation(DelegatingStrategy):
    """Sum CKKS-encrypted replies of a wrapped Flower strategy, holding no key.

    Parameters
    ----------
    strategy:
        The wrapped Flower FedAvg (sampling, evaluation).
    context:
        The aggregator's public context; a secret one is refused.
    min_institutions:
        Quorum of valid replies per round.
    shapes:
        Expected model shapes, or None to accept the first valid reply's shapes
        and hold every later reply to them.
    max_update_bytes:
        Size bound checked before parsing.
    audit:
        Audit log receiving one record per round.
    out_dir:
        Where ``checkpoint.bin`` is written after every round (None: not written).
    run_id:
        Identifier recorded in the audit log and checkpoints.
    """

    def __init__(
        self,
        strategy: FedAvg,
        context: crypto.PublicContext,
        *,
        min_institutions: int,
        shapes: Sequence[Sequence[int]] | None,
        max_update_bytes: int,
        audit: AuditLog | None,
        out_dir: Path | None,
        run_id: str,
    ) -> None:
        if not isinstance(context, crypto.PublicContext):
            raise crypto.SecretKeyPresentError(
                "the aggregator takes only the public context; it was given a secret one"
            )
        problem = averaging_preset_problem(context.preset)
        if problem is not None:
            raise ConfigurationError(problem)
        super().__init__(strategy)
        self.context = context
        self.min_institutions = min_institutions
        self.shapes = None if shapes is None else tuple(tuple(s) for s in shapes)
        self.max_update_bytes = max_update_bytes
        self.audit = audit
        self.out_dir = out_dir
        self.run_id = run_id
        self._sampled: list[int] = []
        self._messages: list[Message] = []
        self._bytes_sent = 0
        self._evaluation_messages: list[Message] = []
        #: The latest round's encrypted evaluation sum (for the final message).
        self.last_evaluation: bytes | None = None

    def summary(self) -> None:
        """Log the configuration (wrapped strategy, preset, quorum)."""
        logger.info(
            "Encrypted aggregation (preset %s, fingerprint %s…, quorum %d) around:",
            self.context.preset.name,
            self.context.fingerprint[:16],
            self.min_institutions,
        )
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate sampling and messages to the wrapped strategy; remember who was asked."""
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._sampled = [m.metadata.dst_node_id for m in messages]
        self._messages = messages  # the grid gives each its message id when it pushes it
        self._bytes_sent = sum(content_bytes(m.content) for m in messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate each reply, drop the bad with a reason, sum the rest."""
        started = time.perf_counter()
        valid: dict[int, crypto.EncryptedUpdate] = {}
        digests: dict[str, str] = {}
        dropped: list[DroppedNode] = []
        received = 0
        asked = {m.metadata.message_id: m.metadata.dst_node_id for m in self._messages}
        for reply in replies:
            # A reply belongs to the node its message was sent to: the SuperLink answers
            # for an unreachable node under its own id.
            node = asked.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            if node not in self._sampled:
                logger.warning(
                    "round %d: ignored a reply from node %d, not asked", server_round, node
                )
                continue
            reason, update, size, digest = self._check(server_round, reply)
            received += size
            if update is None:
                logger.warning("round %d: dropped reply of node %d: %s", server_round, node, reason)
            elif node in valid:
                reason = "duplicate reply, counted once"
            else:
                valid[node] = update
                digests[str(node)] = digest
                continue
            if digest:
                digests.setdefault(str(node), digest)
            if all(d.node != str(node) for d in dropped):
                dropped.append(DroppedNode(node=str(node), reason=reason))
        for node in self._sampled:
            if node not in valid and all(d.node != str(node) for d in dropped):
                reason = "no reply before the round deadline (node gone or too slow)"
                logger.warning("round %d: node %d: %s", server_round, node, reason)
                dropped.append(DroppedNode(node=str(node), reason=reason))
        if len(valid) < self.min_institutions:
            self._audit(server_round, valid, dropped, digests, "", received, started)
            raise QuorumNotReachedError(
                f"round {server_round}: {len(valid)} valid replies, quorum is "
                f"{self.min_institutions}; the round is not applied"
            )
        if self.shapes is None:
            self.shapes = next(iter(valid.values())).shapes
        summed = crypto.aggregate(self.context, list(valid.values())).to_bytes()
        aggregate_digest = hashlib.sha256(summed).hexdigest()
        head = self._audit(
            server_round, valid, dropped, digests, aggregate_digest, received, started
        )
        if self.out_dir is not None:
            save_checkpoint(
                self.out_dir / "checkpoint.bin",
                Checkpoint(server_round, self.run_id, self.context.fingerprint, head, summed),
            )
        metrics = MetricRecord({"institutions": len(valid), "dropped": len(dropped)})
        return ciphertext_record(summed), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate sampling and messages to the wrapped strategy; remember who was asked."""
        messages = list(self.strategy.configure_evaluate(server_round, arrays, config, grid))
        self._evaluation_messages = messages
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Sum the institutions' encrypted evaluations; keep the sum, learn nothing.

        Each valid reply is one institution's metrics (:data:`EVALUATION_METRICS`)
        encrypted with its test-set size multiplied in, exactly like a training
        update: the sum decrypts, for key holders only, to the federation's
        size-weighted mean metrics. It is written to ``out_dir`` as
        ``evaluation-round-R.bin``; the plaintext result says only how many
        institutions were counted and dropped.
        """
        asked = {m.metadata.message_id: m.metadata.dst_node_id for m in self._evaluation_messages}
        shapes = ((len(EVALUATION_METRICS),),)
        valid: dict[int, crypto.EncryptedUpdate] = {}
        dropped = 0
        for reply in replies:
            node = asked.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            if node not in asked.values():
                continue
            reason, update, _, _ = self._check(server_round, reply, shapes)
            if update is None:
                logger.warning(
                    "round %d: evaluation of node %d dropped: %s", server_round, node, reason
                )
                dropped += 1
            elif node not in valid:  # a duplicate is counted once
                valid[node] = update
        path = (
            None
            if self.out_dir is None
            else self.out_dir / EVALUATION_FILE.format(round=server_round)
        )
        if not valid:
            self.last_evaluation = None
            if path is not None:
                path.unlink(missing_ok=True)  # never leave an earlier run's sum in its place
            return MetricRecord({"institutions": 0, "dropped": dropped})
        summed = crypto.aggregate(self.context, list(valid.values())).to_bytes()
        self.last_evaluation = summed
        if path is not None:
            path.write_bytes(summed)
        return MetricRecord({"institutions": len(valid), "dropped": dropped})

    def _check(
        self,
        server_round: int,
        reply: Message,
        shapes: tuple[tuple[int, ...], ...] | None = None,
    ) -> tuple[str, crypto.EncryptedUpdate | None, int, str]:
        if reply.has_error():
            return f"institution reported an error: {reply.error.reason}", None, 0, ""
        try:
            record = reply.content.array_records[ARRAYS_KEY]
        except KeyError:
            return f"reply carries no {ARRAYS_KEY!r} record", None, 0, ""
        try:
            data = read_ciphertext(record)
        except crypto.CryptoError as exc:
            return str(exc), None, 0, ""
        digest = hashlib.sha256(data).hexdigest()
        try:
            update = crypto.EncryptedUpdate.from_bytes(
                self.context,
                data,
                max_bytes=self.max_update_bytes,
                expected_round=server_round,
                expected_shapes=shapes or self.shapes,
                expected_session=self.run_id,
            )
        except crypto.CryptoError as exc:
            return f"{type(exc).__name__}: {exc}", None, len(data), digest
        if update.count != 1:
            return "reply is a sum of several updates, not one", None, len(data), digest
        return "", update, len(data), digest

    def _audit(
        self,
        server_round: int,
        valid: dict[int, crypto.EncryptedUpdate],
        dropped: list[DroppedNode],
        digests: dict[str, str],
        aggregate_digest: str,
        received: int,
        started: float,
    ) -> str:
        if self.audit is None:
            return ""
        record = AuditRecord(
            round=server_round,
            run_id=self.run_id,
            sampled=[str(n) for n in self._sampled],
            replied=[str(n) for n in valid],
            dropped=dropped,
            ciphertext_sha256={n: d for n, d in digests.items() if int(n) in valid},
            extra={
                "dropped_ciphertext_sha256": {
                    n: d for n, d in digests.items() if int(n) not in valid
                }
            },
            aggregate_sha256=aggregate_digest or None,
            bytes_received=received,
            bytes_sent=self._bytes_sent,
            timings={"aggregate_s": time.perf_counter() - started},
        )
        return self.audit.append(record)
