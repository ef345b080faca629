"""The last message of a run: the final global model, for institutions to keep.

Training rounds end with the aggregator holding the global model — in
encrypted mode as a ciphertext it cannot read. :func:`deliver_final_model`
sends it, with the federation statistics, to every connected institution in
one ``query.final`` message, with the last round's federation-wide evaluation
(encrypted in encrypted mode); each institution's ClientApp decrypts both
(through the encryption mod), evaluates the model on its own held-out split and
writes the model, its metrics beside the federation's and, for logistic
regression, a scorecard to its own disk.
Nothing but an acknowledgement comes back.

A SuperNode never stops by itself; ``crossfed client`` watches for the files
this message makes the institution write, then stops its SuperNode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from crossfed.protocol import (
    ARRAYS_KEY,
    AUDIT_HEAD_KEY,
    CONFIG_KEY,
    FINAL_QUERY,
    MODE_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
    FederationSettings,
)
from federation.replies import error_reason

__all__ = ["deliver_final_model"]

logger = logging.getLogger(__name__)


def deliver_final_model(
    grid: Grid,
    arrays: ArrayRecord | None,
    config: Mapping[str, object],
    settings: FederationSettings,
    evaluation: Mapping[str, bytes | list[float]] | None = None,
    audit_head: str | None = None,
    seed_records: Mapping[str, Mapping[str, bytes]] | None = None,
) -> dict[int, str]:
    """Send the final global model to every connected institution.

    Parameters
    ----------
    grid
        The run's grid.
    arrays
        The strategy's final arrays: ciphertext in encrypted mode, weights otherwise.
    config
        The training config; its federation statistics (encrypted or not) go along,
        so each institution standardises its evaluation data as in training.
    settings
        The run's settings (mode, timeout).
    evaluation
        The last round's federation-wide evaluation: under
        ``EVALUATION_CIPHERTEXT_KEY`` the encrypted sum (encrypted mode), under
        ``EVALUATION_KEY`` the mean metrics (plaintext mode).
    audit_head
        The audit log's head after the last round, sent along (under
        ``AUDIT_HEAD_KEY``) like with every training and evaluation message.
    seed_records
        Masked presets: the revealed seeds of every masked sum the message
        carries (the last round's, the statistics', the last evaluation's), by
        record key and name, so institutions can open them.

    Returns
    -------
    dict[int, str]
        Node id to ``"ok"`` or the reason the node did not acknowledge (an error's
        code name, never its text). Failures are logged, never raised: the
        aggregator's own outputs are already written.
    """
    if arrays is None or not len(arrays):
        logger.warning("no final model to deliver")
        return {}
    entries = {k: v for k, v in config.items() if k in (STATS_KEY, STATS_CIPHERTEXT_KEY)}
    entries.update(evaluation or {})
    if audit_head is not None:
        entries[AUDIT_HEAD_KEY] = audit_head
    nodes = sorted(grid.get_node_ids())
    records: dict[str, ArrayRecord | ConfigRecord] = {
        ARRAYS_KEY: arrays,
        CONFIG_KEY: ConfigRecord({MODE_KEY: settings.mode, **entries}),  # type: ignore[dict-item]
    }
    for key, seeds in (seed_records or {}).items():
        records[key] = ConfigRecord(dict(seeds))
    messages = [
        Message(content=RecordDict(dict(records)), message_type=FINAL_QUERY, dst_node_id=node)
        for node in nodes
    ]
    outcome = {node: "no reply before the round timeout" for node in nodes}
    for reply in grid.send_and_receive(messages, timeout=settings.round_timeout):
        node = reply.metadata.src_node_id
        outcome[node] = error_reason(reply) if reply.has_error() else "ok"
    for node, state in outcome.items():
        if state != "ok":
            logger.warning("final model to node %d: %s", node, state)
    return outcome
