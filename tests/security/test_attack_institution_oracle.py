"""Attack: use an institution's errors as a decryption oracle.

Before (issue 9, item 3): Flower returned an institution's exception text to
the aggregator. ``TamperedAggregateError`` printed the decrypted summed weight
and total row count, ``Standardizer`` a decrypted statistic, and whether a
shifted sum was accepted at all depended on the decrypted values. Using only
the public context, ciphertext-plaintext additions and rewritten headers, the
aggregator recovered one bank's example count exactly.

Here the test plays that aggregator against the real ClientApp of two
federations with different data (1,000 and 600 rows of German credit): it
shifts the encrypted row count and the encrypted summed weight by amounts that
straddle the true values, and compares every answer. They are the same fixed
code for both federations and for every probe: the answer carries no bit of
the data. Every error an institution returns is one of the fixed codes, with
its fixed text, while the details land in the bank's own 0600 log.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

import crypto
from clients import load_local_dataset
from clients.local_log import institution_logger, open_local_log
from crossfed.protocol import (
    CONFIG_KEY,
    STATS_CIPHERTEXT_KEY,
    ErrorCode,
    reason_of,
)

pytestmark = pytest.mark.usefixtures("flower_task")

FIXED = {(int(code), reason_of(code)) for code in ErrorCode}


def _answer(reply: Message) -> tuple[int, str] | str:
    """What the aggregator learns from a reply: the error, or that it was accepted."""
    if not reply.has_error():
        return "accepted"
    return (reply.error.code, reply.error.reason or "")


def _shifted(public: crypto.PublicContext, blob: bytes, slot: int, delta: float) -> bytes:
    """``blob`` with ``delta`` added, in the clear, to one slot: what a keyless party can do."""
    update = crypto.EncryptedUpdate.from_bytes(public, blob)
    size = update.vectors[0].size()
    index, offset = divmod(slot, size)
    plain = [0.0] * update.vectors[index].size()
    plain[offset] = delta
    vectors = list(update.vectors)
    vectors[index] = vectors[index] + plain
    return dataclasses.replace(update, vectors=tuple(vectors)).to_bytes()


def _training_rows(federation: Any) -> int:
    """The federation's true training row count (what the statistics sum holds)."""
    settings = federation.base
    return sum(
        len(
            load_local_dataset(
                path, settings.schema, seed=settings.seed, test_fraction=settings.test_fraction
            ).y_train
        )
        for path in federation.files
    )


#: Probes of the row count: subtract these (before: a count at or below zero answered
#: with an error naming it, above zero was accepted; a binary search found the count).
PROBES = (100.0, 400.0, 600.0, 749.0, 751.0, 2_000.0)


def _count_probe_answers(aggregator: Any) -> list[tuple[int, str] | str]:
    public = aggregator.federation.public
    stats = crypto.EncryptedUpdate.from_bytes(public, aggregator.stats)
    count_slot = stats.shapes[0][0]  # the count's low limb ([high limbs..., low limbs...])
    answers = []
    for delta in (0.0, *(-probe for probe in PROBES)):
        bank = aggregator.federation.banks()[0]  # a fresh bank per probe: round 1 each time
        bank.send(aggregator.stats_query())
        message = aggregator.train_message(1)
        config = message.content.config_records[CONFIG_KEY]
        if delta:
            config[STATS_CIPHERTEXT_KEY] = _shifted(public, aggregator.stats, count_slot, delta)
        answers.append(_answer(bank.send(message)))
    return answers


def test_probing_the_row_count_gets_the_same_answer_whatever_the_count(
    aggregator_for: Any, institutions: Any, smaller_institutions: Any
) -> None:
    rows = [_training_rows(institutions), _training_rows(smaller_institutions)]
    # The probes straddle both true counts (750 and 450 training rows): without a check
    # value, some probe would be answered differently by the two federations.
    assert any(rows[1] <= probe < rows[0] for probe in PROBES), rows
    answers = [
        _count_probe_answers(aggregator_for("probe-run", federation))
        for federation in (institutions, smaller_institutions)
    ]
    integrity = (int(ErrorCode.INTEGRITY_FAILED), reason_of(ErrorCode.INTEGRITY_FAILED))
    for per_federation in answers:
        assert per_federation[0] == "accepted"  # the honest sum
        assert per_federation[1:] == [integrity] * len(PROBES)
    assert answers[0] == answers[1]


def test_probing_the_summed_weight_gets_the_same_answer_whatever_the_data(
    aggregator_for: Any, institutions: Any, smaller_institutions: Any
) -> None:
    answers = []
    for federation in (institutions, smaller_institutions):
        aggregator = aggregator_for("weight-probe", federation)
        aggregator.run_round(1)
        public = federation.public
        model = crypto.EncryptedUpdate.from_bytes(public, aggregator.models[1])
        weight_slot = model.n_values  # the float codec's last payload slot
        per_federation = []
        # Before: a weight shifted to 0 or below was refused naming it, the rest accepted
        # (or refused with the weight and the total rows in the text).
        for delta in (-1000.0, -700.0, -500.0, -400.0, -1.0, 1.0, 1e6):
            forged = _shifted(public, aggregator.models[1], weight_slot, delta)
            replies = aggregator.collect(aggregator.evaluate_message(1, forged))
            per_federation.append(sorted({_answer(reply) for reply in replies}, key=str))
        answers.append(per_federation)
    integrity = (int(ErrorCode.INTEGRITY_FAILED), reason_of(ErrorCode.INTEGRITY_FAILED))
    assert answers[0] == answers[1] == [[integrity]] * 7


def test_every_error_an_institution_returns_is_a_fixed_code(
    played_aggregator: Any, institutions: Any
) -> None:
    played_aggregator.run_round(1)
    public = institutions.public
    replies = []
    forged = _shifted(public, played_aggregator.models[1], 0, 0.25)
    replies += played_aggregator.collect(played_aggregator.evaluate_message(1, forged))
    replies += played_aggregator.collect(played_aggregator.train_message(1))  # stale
    unknown = Message(
        content=RecordDict({CONFIG_KEY: ConfigRecord({"phase": "tell-me"})}),
        dst_node_id=1,
        message_type=MessageType.QUERY,
    )
    replies += played_aggregator.collect(unknown)
    unregistered = Message(content=RecordDict(), dst_node_id=1, message_type="train.debug")
    replies += played_aggregator.collect(unregistered)
    missing = institutions.settings(data_files="/nonexistent/a.csv,/nonexistent/b.csv,/x.csv")
    lost = institutions.banks(missing)[0]
    replies.append(lost.send(played_aggregator.stats_query()))
    seen = set()
    for reply in replies:
        assert reply.has_error()
        assert (reply.error.code, reply.error.reason) in FIXED
        assert not reply.has_content()
        seen.add(ErrorCode(reply.error.code))
    assert seen == {
        ErrorCode.INTEGRITY_FAILED,
        ErrorCode.MALFORMED_INPUT,
        ErrorCode.DATA_REFUSED,
    }


def test_the_details_stay_in_the_banks_own_log(played_aggregator: Any, tmp_path: Path) -> None:
    played_aggregator.run_round(1)
    path = tmp_path / "logs" / "institution.log"
    handler = open_local_log(path)
    try:
        forged = _shifted(played_aggregator.federation.public, played_aggregator.models[1], 0, 1.0)
        reply = played_aggregator.banks[0].send(played_aggregator.evaluate_message(1, forged))
    finally:
        institution_logger().removeHandler(handler)
        handler.close()
    assert _answer(reply) == (
        int(ErrorCode.INTEGRITY_FAILED),
        reason_of(ErrorCode.INTEGRITY_FAILED),
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "IntegrityError" in text and "Traceback" in text
    assert institution_logger().level <= logging.INFO
