"""Attack: rewrite the aggregator's history after the fact without anyone noticing.

Before, the audit log's head hash stayed with the aggregator: whoever controls
it could cut lines from the end, or rewrite the whole log with fresh hashes, and
nothing outside could tell. Now every training and evaluation message (and the
final one) carries the head as it stood when the message was sent, so each
institution holds a trail of heads. Here the institutions' copies are read off
the wire, checked against the log line by line, and then used the way an
institution would: a log cut short, or one rewritten with its chain recomputed,
fails :func:`federation.verify_audit_log` against the last head sent. The
evaluation sums are audited the same way, in their own log.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from flwr.app import Message

from crossfed.protocol import AUDIT_HEAD_KEY, CONFIG_KEY, ROUND_KEY
from federation import (
    AuditLog,
    AuditTamperedError,
    genesis_hash,
    run_federation,
    verify_audit_log,
)


def _heads(sent: list[Message]) -> list[tuple[str, int, str]]:
    """``(message type, round, head)`` of every message after the statistics round."""
    found = []
    for message in sent:
        config = message.content.config_records[CONFIG_KEY]
        if message.metadata.message_type == "query" and AUDIT_HEAD_KEY not in config:
            continue  # the statistics round precedes the log
        value = config.get(ROUND_KEY, -1)
        server_round = value if isinstance(value, int) else -1
        found.append((message.metadata.message_type, server_round, str(config[AUDIT_HEAD_KEY])))
    return found


def test_every_message_carries_the_head_of_the_log_as_it_stood(inprocess: Any) -> None:
    grid = inprocess.grid()

    outcome = run_federation(grid, inprocess.settings)

    lines = [json.loads(line) for line in (inprocess.out / "audit.jsonl").read_text().splitlines()]
    line_hash = {line["round"]: line["hash"] for line in lines}
    line_hash[0] = genesis_hash(lines[0]["run_id"])
    heads = _heads(grid.sent)
    # Round r's training messages see the log up to round r - 1; its evaluation, up to r.
    expected = {"train": lambda r: line_hash[r - 1], "evaluate": lambda r: line_hash[r]}
    checked = 0
    for kind, server_round, head in heads:
        if kind == "query.final":
            assert head == lines[-1]["hash"]
        else:
            assert head == expected[kind](server_round), (kind, server_round)
        checked += 1
    assert checked == 3 * (3 + 3) + 3  # 3 institutions x (train + evaluate) x 3 rounds + final
    assert outcome.rounds and len(lines) == 3


def test_a_history_cut_or_rewritten_fails_against_the_heads_institutions_hold(
    inprocess: Any,
) -> None:
    grid = inprocess.grid()
    run_federation(grid, inprocess.settings)
    held = _heads(grid.sent)[-1][2]  # what every institution was sent last
    log = inprocess.out / "audit.jsonl"
    assert verify_audit_log(log, expected_head=held).lines == 3

    # The aggregator cuts its last round out of the history.
    original = log.read_bytes()
    log.write_bytes(b"".join(original.splitlines(keepends=True)[:2]))
    with pytest.raises(AuditTamperedError):
        verify_audit_log(log, expected_head=held)

    # It rewrites the whole history with a fresh, internally valid chain.
    records = verify_audit_log(log).records
    log.unlink()
    rewritten = AuditLog(log)
    for record in records:
        rewritten.append(record.model_copy(update={"bytes_received": 0}))
    verify_audit_log(log)  # consistent by itself...
    with pytest.raises(AuditTamperedError):
        verify_audit_log(log, expected_head=held)  # ...but not with what was sent


def test_evaluation_sums_are_audited_with_reasons(inprocess: Any) -> None:
    def bad_evaluation(message: Message, me: Any) -> Message | None:
        if message.metadata.message_type == "evaluate":
            return me.encrypted(message, [np.full(3, 0.5)])  # three metrics, not five
        return me.honest(message)

    run_federation(inprocess.grid({22: bad_evaluation}), inprocess.settings)

    records = verify_audit_log(inprocess.out / "evaluation-audit.jsonl").records
    assert [r.round for r in records] == [1, 2, 3]
    for record in records:
        assert record.extra["phase"] == "evaluation"
        assert sorted(record.replied) == ["11", "33"]
        assert record.aggregate_sha256 is not None
        ((node, reason),) = [(d.node, d.reason) for d in record.dropped]
        assert node == "22" and reason.startswith("ShapeMismatchError")
    metrics = inprocess.metrics()
    assert metrics["evaluate"]["3"] == {"institutions": 2, "dropped": 1}
