"""Institutions that reply with garbage, another federation's ciphertext, a stale round or
an update from another run.

Six virtual institutions hold German credit; two are honest, four tamper
with their encrypted training replies on the wire (an outermost client mod,
so the tampering happens after encryption). The aggregator must drop each bad
reply with its reason logged and audited while every round completes with
the honest two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    ROUND_KEY,
    ciphertext_record,
    read_ciphertext,
)
from federation import verify_audit_log
from simulations.engine import run_federated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GARBAGE, FOREIGN, STALE, OTHER_RUN = 2, 3, 4, 5
HOSTILE = (GARBAGE, FOREIGN, STALE, OTHER_RUN)

Mod = Callable[[Message, Context, ClientAppCallable], Message]


def hostile_mod(secret_path: str, foreign_path: str) -> Mod:
    """Tamper with the encrypted training replies of partitions 2, 3, 4 and 5."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        partition = int(str(context.node_config["partition-id"]))
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        if partition not in HOSTILE:
            return reply
        data = read_ciphertext(reply.content.array_records[ARRAYS_KEY])
        secret = crypto.SecretContext.load(secret_path)
        original = crypto.EncryptedUpdate.from_bytes(secret, data)
        arrays = [np.full(shape, 0.5) for shape in original.shapes]
        server_round = int(str(msg.content.config_records[CONFIG_KEY][ROUND_KEY]))
        if partition == GARBAGE:
            rng = np.random.default_rng(partition)
            data = rng.integers(0, 256, size=len(data) // 2, dtype=np.uint8).tobytes()
        elif partition == FOREIGN:
            foreign = crypto.SecretContext.load(foreign_path)
            data = crypto.encrypt_update(
                foreign, arrays, 10, round_id=server_round, contributor=f"partition-{partition}"
            ).to_bytes()
        elif partition == STALE:
            # A genuine update of this run, replayed from the previous round.
            stale = crypto.encrypt_update(
                secret,
                arrays,
                10,
                round_id=server_round - 1,
                session=original.session,
                contributor=f"partition-{partition}",
            )
            data = stale.to_bytes()
        else:
            # A genuine update under this federation's key, for this round, recorded in
            # another run of the same federation and replayed into this one.
            other_run = "0" * len(original.session)
            assert other_run != original.session
            data = crypto.encrypt_update(
                secret,
                arrays,
                10,
                round_id=server_round,
                session=other_run,
                contributor=f"partition-{partition}",
            ).to_bytes()
        reply.content[ARRAYS_KEY] = ciphertext_record(data)
        return reply

    return mod


def test_bad_replies_are_dropped_and_audited(
    german_federation: Callable[[int, int], Any],
) -> None:
    federation = german_federation(6, 3)
    root = federation.root
    crypto.generate_secret_context("lean").save(root / "foreign.ctx")
    settings = federation.settings("out", rounds=2, min_institutions=2, seed=5)
    mod = hostile_mod(str(root / "secret.ctx"), str(root / "foreign.ctx"))

    run = run_federated(settings, 6, client_mods=[mod])

    report = verify_audit_log(root / "out" / "audit.jsonl")
    assert [r.round for r in report.records] == [1, 2]
    for record in report.records:
        assert len(record.replied) == 2
        reasons = [d.reason for d in record.dropped]
        assert len(reasons) == 4
        assert sum("MalformedDataError" in r for r in reasons) == 1
        assert sum("ContextMismatchError" in r and "under context" in r for r in reasons) == 1
        assert sum("ContextMismatchError" in r and "round" in r for r in reasons) == 1
        assert sum("ContextMismatchError" in r and "another run" in r for r in reasons) == 1
        # The dropped ciphertexts are fingerprinted in the audit trail too.
        assert len(record.extra["dropped_ciphertext_sha256"]) == 4  # type: ignore[arg-type]
    # The honest replies' model was applied: finite, trained weights, evaluated.
    assert all(np.all(np.isfinite(w)) for w in run.weights)
    assert run.final_evaluation()["auc"] > 0.6
