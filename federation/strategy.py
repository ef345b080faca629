"""Encrypted aggregation as a wrapper around a Flower strategy.

:class:`EncryptedAggregation` wraps Flower's own :class:`~flwr.serverapp.strategy.FedAvg`
(sampling, message construction and evaluation stay Flower's) and replaces
only the aggregation of training replies: every reply must carry one
serialised :class:`crypto.EncryptedUpdate`, which is checked (size bound before
parsing, format version, context fingerprint, run, round, the shapes fixed up
front by the run's ``model-shapes``, encoding), and the valid ones are summed
with the public context (:func:`~federation.summing.sum_compatible`, which turns
every failure to sum into a drop). A bad reply is dropped with its reason logged
and audited while the round completes with the rest — an institution's error
is recorded by its code's name only (:func:`~federation.replies.error_reason`);
with fewer summed replies than the quorum the round is refused
(:class:`QuorumNotReachedError`) and the global model is left as it was.

Every training and evaluation message carries the audit log's head hash
(:data:`~crossfed.protocol.AUDIT_HEAD_KEY`), so institutions can keep the heads
they were shown and detect a history rewritten later. The encrypted evaluation
sums are audited too, in a log of their own (:data:`EVALUATION_AUDIT`), so that
the training log keeps one line per training round. FedAvg itself never learns
about encryption (the pattern of Flower's ``DifferentialPrivacyServerSideFixedClipping``).
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
from pydantic import JsonValue

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    AUDIT_HEAD_KEY,
    EVALUATION_FILE,
    EVALUATION_METRICS,
    ConfigurationError,
    ciphertext_record,
    read_ciphertext,
)
from federation.audit import AuditLog, audit_head
from federation.audit_record import AuditRecord, DroppedNode
from federation.checkpoint import Checkpoint, save_checkpoint
from federation.errors import QuorumNotReachedError
from federation.measured import content_bytes
from federation.replies import bounded, error_reason
from federation.summing import sum_compatible
from federation.wrapping import DelegatingStrategy

__all__ = ["AUDIT_LOG", "EVALUATION_AUDIT", "EncryptedAggregation", "averaging_preset_problem"]

logger = logging.getLogger(__name__)

#: The training rounds' audit log, in the aggregator's out-dir.
AUDIT_LOG = "audit.jsonl"
#: The evaluation sums' audit log, in the aggregator's out-dir.
EVALUATION_AUDIT = "evaluation-audit.jsonl"

#: Encodings of :class:`crypto.EncryptedUpdate`: weighted values (training,
#: evaluation) and plain sums (the statistics round).
AVERAGE_ENCODING = "average"
SUM_ENCODING = "sum"

Shapes = tuple[tuple[int, ...], ...]


def averaging_preset_problem(preset: crypto.Preset) -> str | None:
    """Why ``preset`` cannot carry a federation's model, or ``None`` when it can.

    The packed codec clips every value to ``[-clip, clip]`` before quantising: fit
    for bounded quantities, but a model's weights are not bounded, and clipping
    them would change the model without a word. Federated averaging therefore
    takes presets with the float codec, or the masked presets, which carry
    clipped *deltas* from a start every institution holds
    (:class:`~federation.masked_strategy.MaskedAggregation`).
    """
    if preset.codec in ("float", "masked"):
        return None
    usable = sorted(name for name, p in crypto.PRESETS.items() if p.codec in ("float", "masked"))
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
        Quorum of summed replies per round.
    shapes:
        The model's array shapes (the run's ``model-shapes``), fixed before any
        reply is parsed; a reply with other shapes is dropped. Required: taking
        them from the first reply would let one institution decide them.
    max_update_bytes:
        Size bound checked before parsing.
    audit:
        Audit log receiving one record per training round; its head goes out
        with every message.
    out_dir:
        Where ``checkpoint.bin`` is written after every round (None: not written).
    run_id:
        Identifier recorded in the audit log and checkpoints.
    evaluation_audit:
        Audit log receiving one record per evaluation round (None: not kept).

    Raises
    ------
    crypto.SecretKeyPresentError
        ``context`` holds a secret key.
    ConfigurationError
        A preset that cannot carry a model, a masked preset (its rounds are
        :class:`~federation.masked_strategy.MaskedAggregation`'s), or no shapes.
    """

    #: Whether this strategy sums masked deltas (a masked preset's) rather than weights.
    masks_updates = False

    def __init__(
        self,
        strategy: FedAvg,
        context: crypto.PublicContext,
        *,
        min_institutions: int,
        shapes: Sequence[Sequence[int]],
        max_update_bytes: int,
        audit: AuditLog | None,
        out_dir: Path | None,
        run_id: str,
        evaluation_audit: AuditLog | None = None,
    ) -> None:
        if not isinstance(context, crypto.PublicContext):
            raise crypto.SecretKeyPresentError(
                "the aggregator takes only the public context; it was given a secret one"
            )
        problem = averaging_preset_problem(context.preset)
        if problem is not None:
            raise ConfigurationError(problem)
        if (context.preset.codec == "masked") != self.masks_updates:
            raise ConfigurationError(
                f"preset {context.preset.name!r}: masked presets are summed by "
                "MaskedAggregation, the others by EncryptedAggregation"
            )
        if not shapes:
            raise ConfigurationError(
                "encrypted aggregation needs model-shapes: the model's shapes are fixed "
                "before any reply is parsed"
            )
        super().__init__(strategy)
        self.context = context
        self.min_institutions = min_institutions
        self.shapes: Shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        self.max_update_bytes = max_update_bytes
        self.audit = audit
        self.evaluation_audit = evaluation_audit
        self.out_dir = out_dir
        self.run_id = run_id
        self._sampled: list[int] = []
        self._messages: list[Message] = []
        self._bytes_sent = 0
        self._evaluation_messages: list[Message] = []
        #: How many replies the latest training round summed (0 when it was refused).
        self.last_summed = 0
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

    def audit_head(self) -> str | None:
        """The training audit log's head hash (verified whole first), or None without a log."""
        if self.audit is None:
            return None
        return audit_head(self.audit.path, self.run_id)

    def _with_head(self, config: ConfigRecord) -> ConfigRecord:
        head = self.audit_head()
        if head is None:
            return config
        return ConfigRecord({**dict(config), AUDIT_HEAD_KEY: head})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate sampling and messages; add the audit head; remember who was asked."""
        messages = list(
            self.strategy.configure_train(server_round, arrays, self._with_head(config), grid)
        )
        self._sampled = [m.metadata.dst_node_id for m in messages]
        self._messages = messages  # the grid gives each its message id when it pushes it
        self._bytes_sent = sum(content_bytes(m.content) for m in messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate each reply, drop the bad with a reason, sum the rest."""
        started = time.perf_counter()
        self.last_summed = 0
        round_ = _Round(self._sampled, self._messages)
        for reply in replies:
            node = round_.node_of(reply)
            if node is None:
                logger.warning("round %d: ignored a reply not asked for", server_round)
                continue
            round_.take(node, *self._check(server_round, reply, self.shapes, AVERAGE_ENCODING))
        outcome = sum_compatible(self.context, round_.valid)
        round_.settle(outcome.dropped)
        for node, reason in round_.dropped.items():
            logger.warning("round %d: dropped reply of node %d: %s", server_round, node, reason)
        summed = outcome.summed
        if outcome.total is None or len(summed) < self.min_institutions:
            self._audit(server_round, round_, summed, "", started)  # no aggregate: refused
            raise QuorumNotReachedError(
                f"round {server_round}: {len(summed)} valid replies, quorum is "
                f"{self.min_institutions}; the round is not applied"
            )
        total = outcome.total.to_bytes()
        head = self._audit(server_round, round_, summed, hashlib.sha256(total).hexdigest(), started)
        if self.out_dir is not None:
            save_checkpoint(
                self.out_dir / "checkpoint.bin",
                Checkpoint(server_round, self.run_id, self.context.fingerprint, head, total),
            )
        self.last_summed = len(summed)
        metrics = MetricRecord({"institutions": len(summed), "dropped": len(round_.dropped)})
        return ciphertext_record(total), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate sampling and messages; add the audit head; remember who was asked."""
        messages = list(
            self.strategy.configure_evaluate(server_round, arrays, self._with_head(config), grid)
        )
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
        ``evaluation-round-R.bin`` and audited (who was counted, who was dropped
        and why); the plaintext result says only how many institutions were
        counted and dropped.
        """
        started = time.perf_counter()
        asked = [m.metadata.dst_node_id for m in self._evaluation_messages]
        round_ = _Round(asked, self._evaluation_messages)
        shapes = ((len(EVALUATION_METRICS),),)
        for reply in replies:
            node = round_.node_of(reply)
            if node is not None:
                round_.take(node, *self._check(server_round, reply, shapes, AVERAGE_ENCODING))
        outcome = sum_compatible(self.context, round_.valid)
        round_.settle(outcome.dropped)
        for node, reason in round_.dropped.items():
            logger.warning(
                "round %d: evaluation of node %d dropped: %s", server_round, node, reason
            )
        path = (
            None
            if self.out_dir is None
            else self.out_dir / EVALUATION_FILE.format(round=server_round)
        )
        summed_bytes = outcome.total.to_bytes() if outcome.total is not None else None
        self._audit_evaluation(server_round, round_, outcome.summed, summed_bytes, started)
        dropped = sum(
            1 for node in round_.dropped if node not in round_.silent and node not in round_.valid
        )
        self.last_evaluation = summed_bytes
        if summed_bytes is None:
            if path is not None:
                path.unlink(missing_ok=True)  # never leave an earlier run's sum in its place
            return MetricRecord({"institutions": 0, "dropped": dropped})
        if path is not None:
            path.write_bytes(summed_bytes)
        return MetricRecord({"institutions": len(outcome.summed), "dropped": dropped})

    def _check(
        self,
        server_round: int,
        reply: Message,
        shapes: Shapes | None,
        encoding: str,
    ) -> tuple[str, crypto.EncryptedUpdate | None, int, str]:
        """``(reason, update or None, bytes, sha256)`` of one reply; never raises."""
        if reply.has_error():
            return error_reason(reply), None, 0, ""
        try:
            record = reply.content.array_records[ARRAYS_KEY]
        except KeyError:
            return f"reply carries no {ARRAYS_KEY!r} record", None, 0, ""
        try:
            data = read_ciphertext(record)
        except crypto.CryptoError as exc:
            return bounded(f"{type(exc).__name__}: {exc}"), None, 0, ""
        digest = hashlib.sha256(data).hexdigest()
        try:
            update = crypto.EncryptedUpdate.from_bytes(
                self.context,
                data,
                max_bytes=self.max_update_bytes,
                expected_round=server_round,
                expected_shapes=shapes,
                expected_session=self.run_id,
            )
        except crypto.CryptoError as exc:
            return bounded(f"{type(exc).__name__}: {exc}"), None, len(data), digest
        if update.encoding != encoding:
            reason = f"reply is encoded as {bounded(update.encoding)!r}, expected {encoding!r}"
            return reason, None, len(data), digest
        if update.count != 1:
            return "reply is a sum of several updates, not one", None, len(data), digest
        return "", update, len(data), digest

    def _audit(
        self,
        server_round: int,
        round_: _Round,
        summed: Sequence[int],
        aggregate_digest: str,
        started: float,
    ) -> str:
        if self.audit is None:
            return ""
        return self.audit.append(
            round_.record(
                server_round,
                self.run_id,
                summed,
                aggregate_digest,
                bytes_sent=self._bytes_sent,
                aggregate_s=time.perf_counter() - started,
            )
        )

    def _audit_evaluation(
        self,
        server_round: int,
        round_: _Round,
        summed: Sequence[int],
        total: bytes | None,
        started: float,
    ) -> None:
        if self.evaluation_audit is None:
            return
        digest = hashlib.sha256(total).hexdigest() if total is not None else ""
        record = round_.record(
            server_round,
            self.run_id,
            summed,
            digest,
            bytes_sent=sum(content_bytes(m.content) for m in self._evaluation_messages),
            aggregate_s=time.perf_counter() - started,
            phase="evaluation",
        )
        self.evaluation_audit.append(record)


class _Round:
    """The replies of one round: who was asked, what each sent, why some were dropped."""

    def __init__(self, sampled: Sequence[int], messages: Sequence[Message]) -> None:
        self.sampled = list(dict.fromkeys(sampled))
        self._asked = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        self.valid: dict[int, crypto.EncryptedUpdate] = {}
        self.digests: dict[int, str] = {}
        self.dropped: dict[int, str] = {}
        self.silent: set[int] = set()
        self.received = 0

    def node_of(self, reply: Message) -> int | None:
        """The node a reply answers for, or None if it was not asked.

        A reply belongs to the node its message was sent to: the SuperLink
        answers for an unreachable node under its own id.
        """
        node = self._asked.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
        return node if node in self.sampled else None

    def take(
        self, node: int, reason: str, update: crypto.EncryptedUpdate | None, size: int, digest: str
    ) -> None:
        """Record one checked reply; a node's second reply is a duplicate, counted once."""
        self.received += size
        if update is not None and node in self.valid:
            reason, update = "duplicate reply, counted once", None
        if update is not None:
            self.valid[node] = update
            self.digests[node] = digest
            return
        if digest:
            self.digests.setdefault(node, digest)
        self.dropped.setdefault(node, reason)

    def settle(self, not_summed: dict[int, str]) -> None:
        """Drop the valid replies the sum left out, and every node that never answered."""
        for node, reason in not_summed.items():
            self.valid.pop(node, None)
            self.dropped[node] = reason
        for node in self.sampled:
            if node not in self.valid and node not in self.dropped:
                self.dropped[node] = "no reply before the round deadline (node gone or too slow)"
                self.silent.add(node)

    def record(
        self,
        server_round: int,
        run_id: str,
        summed: Sequence[int],
        aggregate_digest: str,
        *,
        bytes_sent: int,
        aggregate_s: float,
        phase: str = "",
    ) -> AuditRecord:
        """The round's audit record.

        ``replied`` lists the replies in the sum, or, for a refused round
        (``aggregate_digest`` empty), those that would have been summed.
        """
        in_sum = set(summed)
        extra: dict[str, JsonValue] = {
            "dropped_ciphertext_sha256": {
                str(n): d for n, d in self.digests.items() if n not in in_sum
            }
        }
        if phase:
            extra["phase"] = phase
        return AuditRecord(
            round=server_round,
            run_id=run_id,
            sampled=[str(n) for n in self.sampled],
            replied=[str(n) for n in summed],
            dropped=[DroppedNode(node=str(n), reason=r) for n, r in self.dropped.items()],
            ciphertext_sha256={str(n): self.digests[n] for n in summed},
            extra=extra,
            aggregate_sha256=aggregate_digest or None,
            bytes_received=self.received,
            bytes_sent=bytes_sent,
            timings={"aggregate_s": aggregate_s},
        )
