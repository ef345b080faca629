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

Statistics (round 0, :func:`masked_statistics`) and evaluation (round r)
carry each institution's own values, so they are masked too, as exact
fixed-point integer sums with their own purpose (``stats``, ``evaluate``:
their masks never cancel a training mask of the same round), through the same
re-mask and reveal exchange. Their seeds travel with every message that
carries their sums (:data:`~crossfed.protocol.STATS_SEEDS_KEY`,
:data:`~crossfed.protocol.EVALUATION_SEEDS_KEY`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    MODE_KEY,
    PHASE_KEY,
    PHASE_STATS,
    PURPOSE_TRAIN,
    SELF_SEEDS_KEY,
    SESSION_KEY,
    STATS_SEEDS_KEY,
    ConfigurationError,
    FederationSettings,
    ciphertext_record,
    read_ciphertext,
)
from federation.audit import AuditLog
from federation.errors import QuorumNotReachedError
from federation.masked_exchange import (
    MIN_MASKED,
    Checked,
    MaskedOutcome,
    complete_masked_sum,
    roll_call,
)
from federation.measured import content_bytes
from federation.replies import bounded, error_reason
from federation.strategy import EncryptedAggregation, _Round

__all__ = [
    "MASKED_DIR",
    "MASKED_STATISTICS",
    "MaskedAggregation",
    "check_masked_run",
    "keep_masked_sum",
    "masked_round_files",
    "masked_statistics",
    "open_masked_run",
]

logger = logging.getLogger(__name__)

#: Folder of the aggregator's out-dir holding every round's masked sum and seeds.
MASKED_DIR = "masked"
#: The run's encrypted statistics sum in that folder (its first entry normalises the deltas).
MASKED_STATISTICS = "statistics"
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
    stats_seeds:
        The seeds of the run's masked statistics sum (:func:`masked_statistics`),
        sent with every message (the sum travels in the config).
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
        stats_seeds: Mapping[str, bytes],
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
        self.stats_seeds = dict(stats_seeds)
        self.timeout = timeout
        #: The seeds revealed for the latest evaluation sum, by name (for the final message).
        self.evaluation_seeds: dict[str, bytes] = {}
        #: The seeds revealed for the latest sum, by name (sent with every message carrying it).
        self.seeds: dict[str, bytes] = {}
        self._grid: Grid | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's sampling among named nodes; declare the set; forward the last seeds."""
        self._grid = grid
        messages = self._declare(super().configure_train(server_round, arrays, config, grid))
        self._sampled = [m.metadata.dst_node_id for m in messages]
        self._messages = messages
        self._bytes_sent = sum(content_bytes(m.content) for m in messages)
        return messages

    def _declare(self, sent: Iterable[Message]) -> list[Message]:
        """Keep the named nodes' messages; declare their set; add the seeds they need."""
        messages = [m for m in sent if m.metadata.dst_node_id in self.names]
        members = sorted(self.names[m.metadata.dst_node_id] for m in messages)
        for message in messages:
            config = message.content.config_records.get(CONFIG_KEY) or ConfigRecord()
            message.content[CONFIG_KEY] = ConfigRecord({**dict(config), CONTRIBUTORS_KEY: members})
            message.content[STATS_SEEDS_KEY] = ConfigRecord(dict(self.stats_seeds))
            if self.seeds:
                message.content[SELF_SEEDS_KEY] = ConfigRecord(dict(self.seeds))
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
        try:
            outcome = self._complete(first, PURPOSE_TRAIN, server_round)
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
            keep_masked_sum(self.out_dir, f"round-{server_round}", outcome.total, outcome.seeds)
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
        """Flower's sampling among named nodes; declare the set; forward the round's seeds."""
        self._grid = grid
        messages = self._declare(super().configure_evaluate(server_round, arrays, config, grid))
        self._evaluation_messages = messages
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Complete the masked evaluation sum (re-mask, reveal); keep it and its seeds.

        An evaluation that cannot be completed counts no institution; training
        goes on (the unmasked strategy does the same below its quorum).
        """
        started = time.perf_counter()
        self.last_evaluation, self.evaluation_seeds = None, {}
        asked = [m.metadata.dst_node_id for m in self._evaluation_messages]
        round_ = _Round(asked, self._evaluation_messages)
        first: dict[int, Checked] = {}
        for reply in replies:
            node = round_.node_of(reply)
            if node is not None:
                first.setdefault(node, self._check(server_round, reply, None, MASKED_ENCODING))
        for node in round_.sampled:
            first.setdefault(node, (_NO_REPLY, None, 0, ""))
        try:
            outcome = self._complete(first, "evaluate", server_round)
        except QuorumNotReachedError as exc:
            logger.warning("round %d: no evaluation sum: %s", server_round, exc)
            return MetricRecord({"institutions": 0, "dropped": len(first)})
        round_.digests.update(outcome.digests)
        round_.dropped.update(outcome.dropped)
        self._audit_evaluation(server_round, round_, outcome.summed, outcome.total, started)
        if self.out_dir is not None:
            keep_masked_sum(
                self.out_dir, f"evaluation-{server_round}", outcome.total, outcome.seeds
            )
        self.last_evaluation, self.evaluation_seeds = outcome.total, dict(outcome.seeds)
        return MetricRecord({"institutions": len(outcome.summed), "dropped": len(outcome.dropped)})

    def _complete(
        self, first: Mapping[int, Checked], purpose: str, server_round: int
    ) -> MaskedOutcome:
        if self._grid is None:
            raise QuorumNotReachedError(f"round {server_round}: no grid to complete the sum on")
        return complete_masked_sum(
            self._grid,
            self.context,
            self.names,
            first,
            lambda reply: self._check(
                server_round, reply, self.shapes if purpose == PURPOSE_TRAIN else None,
                MASKED_ENCODING,
            ),
            purpose=purpose,
            round_id=server_round,
            session=self.run_id,
            quorum=self.min_institutions,
            timeout=self.timeout,
        )  # fmt: skip


def masked_statistics(
    grid: Grid,
    context: crypto.PublicContext,
    names: Mapping[int, str],
    *,
    session: str,
    mode: str,
    quorum: int,
    timeout: float,
    max_update_bytes: int,
) -> tuple[bytes, dict[str, bytes], dict[int, str]]:
    """The masked statistics round (round 0, purpose ``stats``): ``(sum, seeds, dropped)``.

    Every named institution is asked, with the set of all of them declared; a
    dropout re-masks for the rest, as in training.

    Raises
    ------
    QuorumNotReachedError
        Fewer than ``max(3, quorum)`` institutions left, or one did not reveal.
    """
    members = sorted(names.values())
    config = {
        PHASE_KEY: PHASE_STATS, MODE_KEY: mode, SESSION_KEY: session, CONTRIBUTORS_KEY: members,
    }  # fmt: skip
    messages = [
        Message(
            content=RecordDict({CONFIG_KEY: ConfigRecord(dict(config))}),  # type: ignore[arg-type]
            message_type=MessageType.QUERY,
            dst_node_id=node,
        )
        for node in sorted(names)
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    round_ = _Round(sorted(names), messages)

    def check(reply: Message) -> Checked:
        return _check_statistics(context, reply, session, max_update_bytes)

    first: dict[int, Checked] = {}
    for reply in replies:
        node = round_.node_of(reply)
        if node is not None:
            first.setdefault(node, check(reply))
    for node in round_.sampled:
        first.setdefault(node, (_NO_REPLY, None, 0, ""))
    outcome = complete_masked_sum(
        grid, context, names, first, check, purpose="stats", round_id=0, session=session,
        quorum=quorum, timeout=timeout,
    )  # fmt: skip
    return outcome.total, dict(outcome.seeds), dict(outcome.dropped)


def _check_statistics(
    context: crypto.PublicContext, reply: Message, session: str, max_bytes: int
) -> Checked:
    """One masked statistics reply checked (never raises)."""
    if reply.has_error():
        return error_reason(reply), None, 0, ""
    try:
        data = read_ciphertext(reply.content.array_records[ARRAYS_KEY])
        digest = hashlib.sha256(data).hexdigest()
        update = crypto.EncryptedUpdate.from_bytes(
            context, data, max_bytes=max_bytes, expected_round=0, expected_session=session
        )
    except (KeyError, crypto.CryptoError) as exc:
        return bounded(f"{type(exc).__name__}: {exc}"), None, 0, ""
    if update.encoding != MASKED_ENCODING or update.count != 1:
        return "statistics reply is not one institution's masked sums", None, len(data), digest
    return "", update, len(data), digest


def keep_masked_sum(out_dir: Path, stem: str, total: bytes, seeds: Mapping[str, bytes]) -> None:
    """Write a masked sum and its seeds to ``out_dir/masked/STEM.bin`` and ``STEM.seeds.json``."""
    folder = out_dir / MASKED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    crypto.write_atomically(folder / f"{stem}.bin", total)
    listed = {name: seed.hex() for name, seed in seeds.items()}
    crypto.write_atomically(
        folder / f"{stem}.seeds.json", json.dumps(listed, sort_keys=True).encode()
    )


def check_masked_run(settings: FederationSettings, out_dir: Path | None) -> None:
    """Refuse what a masked federation cannot do (yet), naming why.

    Raises
    ------
    ConfigurationError
        Distributed DP (its shares are weighted equally, masked deltas by row
        count), or an out-dir holding an earlier run (a checkpoint or masked
        sums): the aggregator of a masked run holds only masked *deltas*, which
        only institutions can open and add up from the seeded model, so it has
        no model to resume from.
    """
    if settings.dp_enabled:
        raise ConfigurationError(
            "a masked preset does not combine with distributed DP (dp-clip > 0) yet"
        )
    if out_dir is not None and (
        (out_dir / "checkpoint.bin").exists() or (out_dir / MASKED_DIR).exists()
    ):
        raise ConfigurationError(
            f"{out_dir} holds an earlier run; a masked run cannot resume (its aggregator "
            "holds only masked deltas, which institutions alone can open): use a new out-dir"
        )


def open_masked_run(
    grid: Grid,
    context: crypto.PublicContext,
    nodes: Sequence[int],
    settings: FederationSettings,
    session: str,
    out_dir: Path | None,
) -> tuple[dict[int, str], bytes, dict[str, bytes], dict[int, str]]:
    """A masked run's start: the roll call, then the masked statistics round.

    Returns node to name, the statistics sum, its seeds and the nodes dropped
    from it (with reasons); the sum and its seeds are kept in ``out_dir/masked``
    (what a replay of the masked deltas needs to normalise them).

    Raises
    ------
    QuorumNotReachedError
        Fewer than ``max(3, min_institutions)`` institutions named themselves
        distinctly, or the statistics sum could not be completed.
    """
    floor = max(MIN_MASKED, settings.min_institutions)
    names, _ = roll_call(grid, nodes, session, settings.round_timeout)
    if len(names) < floor:
        raise QuorumNotReachedError(
            f"roll call: {len(names)} institutions named themselves distinctly; a masked "
            f"federation needs at least {floor}"
        )
    blob, seeds, dropped = masked_statistics(
        grid,
        context,
        names,
        session=session,
        mode=settings.mode,
        quorum=settings.min_institutions,
        timeout=settings.round_timeout,
        max_update_bytes=settings.max_update_bytes,
    )
    if out_dir is not None:
        keep_masked_sum(out_dir, MASKED_STATISTICS, blob, seeds)
    return names, blob, seeds, dropped
