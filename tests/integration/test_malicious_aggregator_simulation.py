"""A malicious aggregator in a simulated federation, against the real institutions.

Flower's simulation engine runs three virtual institutions with the real
ClientApp (German credit, encrypted mode, settings fixed by the harness as a
kit fixes them at a bank). The ServerApp is the attacker's: it runs the
protocol honestly where it needs genuine ciphertexts, and between those steps
sends what a compelled aggregator would — transformed aggregates, a lone
update presented as the sum, a stale sum relabelled as the current round, a
plaintext model, another run's session, `mode=plaintext` and a huge DP share
count in the configuration. It writes what came back to a file the test reads.

What the institutions must do: refuse every forgery with a fixed code whose
text is the same at every institution (nothing depends on their data), keep
replying ciphertext only when the configuration asks for plaintext, answer the
honest steps before the first forgery, and after it decrypt nothing more of the
run — not even the genuine next round (every refusal is a query on the key).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

import crypto
from clients import build_client_app
from clients.shapes import model_shapes_json
from crossfed.protocol import (
    ARRAYS_KEY,
    CIPHERTEXT_KEY,
    CONFIG_KEY,
    DP_SHARES_KEY,
    METRICS_KEY,
    MODE_KEY,
    PHASE_KEY,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    ciphertext_record,
    read_ciphertext,
)
from simulations.engine import ray_backend

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTITUTIONS = 3
TIMEOUT = 300.0


def _send(
    grid: Grid, nodes: list[int], kind: str, content: Callable[[], RecordDict]
) -> list[Message]:
    messages = [Message(content=content(), message_type=kind, dst_node_id=n) for n in nodes]
    replies = list(grid.send_and_receive(messages, timeout=TIMEOUT))
    assert len(replies) == len(nodes), f"{len(replies)} of {len(nodes)} replies"
    return replies


def _outcome(reply: Message) -> dict[str, Any]:
    """What the aggregator sees of one reply."""
    if reply.has_error():
        return {"error": [int(reply.error.code), str(reply.error.reason)]}
    arrays = {k: sorted(record.keys()) for k, record in reply.content.array_records.items()}
    metrics = {k: dict(record) for k, record in reply.content.metric_records.items()}
    return {"arrays": arrays, "metrics": metrics}


def _updates(public: crypto.PublicContext, replies: list[Message]) -> list[crypto.EncryptedUpdate]:
    return [
        crypto.EncryptedUpdate.from_bytes(public, read_ciphertext(r.content[ARRAYS_KEY]))  # type: ignore[arg-type]
        for r in replies
    ]


def malicious_server_app(public_path: str, results: Path) -> ServerApp:
    """The attacker's ServerApp; it writes every reply's outcome, by step, to ``results``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        public = crypto.PublicContext.load(public_path)
        nodes: list[int] = []
        while len(nodes) < INSTITUTIONS:  # Flower offers no event for nodes joining
            time.sleep(0.2)
            nodes = sorted(grid.get_node_ids())
        session = uuid.uuid4().hex
        seen: dict[str, list[dict[str, Any]]] = {}

        def config(round_id: int, **extra: Any) -> ConfigRecord:
            return ConfigRecord(
                {ROUND_KEY: round_id, SESSION_KEY: session, STATS_CIPHERTEXT_KEY: stats, **extra}
            )

        def model(update: crypto.EncryptedUpdate) -> ArrayRecord:
            return ciphertext_record(update.to_bytes())

        # Honest steps: statistics, round 1.
        replies = _send(
            grid,
            nodes,
            MessageType.QUERY,
            lambda: RecordDict(
                {CONFIG_KEY: ConfigRecord({PHASE_KEY: PHASE_STATS, SESSION_KEY: session})}
            ),
        )
        stats = crypto.aggregate(public, _updates(public, replies)).to_bytes()
        round1 = _send(grid, nodes, MessageType.TRAIN, lambda: RecordDict({CONFIG_KEY: config(1)}))
        updates = _updates(public, round1)
        g1 = crypto.aggregate(public, updates)

        plain = ArrayRecord([np.full(shape, 3.0, dtype=np.float32) for shape in g1.shapes])
        seen["plaintext model"] = [
            _outcome(r)
            for r in _send(
                grid,
                nodes,
                MessageType.EVALUATE,
                lambda: RecordDict({ARRAYS_KEY: plain, CONFIG_KEY: config(1)}),
            )
        ]
        seen["another session"] = [
            _outcome(r)
            for r in _send(
                grid,
                nodes,
                MessageType.EVALUATE,
                lambda: RecordDict(
                    {
                        ARRAYS_KEY: model(g1),
                        CONFIG_KEY: ConfigRecord(
                            {ROUND_KEY: 1, SESSION_KEY: "f" * 32, STATS_CIPHERTEXT_KEY: stats}
                        ),
                    }
                ),
            )
        ]
        # The genuine model, with the configuration asking for plaintext and no noise share.
        seen["honest, asked for plaintext"] = [
            _outcome(r)
            for r in _send(
                grid,
                nodes,
                MessageType.EVALUATE,
                lambda: RecordDict(
                    {
                        ARRAYS_KEY: model(g1),
                        CONFIG_KEY: config(1, **{MODE_KEY: "plaintext", DP_SHARES_KEY: 10**12}),
                    }
                ),
            )
        ]
        # Forgeries of the round-1 model, each sent for evaluation (which consumes no round).
        # The first refusal closes the run at every institution: nothing more is decrypted.
        forged = {
            "doubled": dataclasses.replace(g1, vectors=tuple(v + v for v in g1.vectors)),
            "shifted": dataclasses.replace(
                g1, vectors=tuple(v + [0.5] * v.size() for v in g1.vectors)
            ),
            "lone update": updates[0],
            "tripled": dataclasses.replace(g1, vectors=tuple(v + v + v for v in g1.vectors)),
        }
        for name, update in forged.items():
            replies = _send(
                grid,
                nodes,
                MessageType.EVALUATE,
                lambda update=update: RecordDict(
                    {ARRAYS_KEY: model(update), CONFIG_KEY: config(1)}
                ),
            )
            seen[name] = [_outcome(r) for r in replies]
        # The genuine round-2 request after those refusals, then round 3 given round 1's sum
        # relabelled as round 2's.
        round2 = _send(
            grid,
            nodes,
            MessageType.TRAIN,
            lambda: RecordDict({ARRAYS_KEY: model(g1), CONFIG_KEY: config(2)}),
        )
        seen["genuine round 2 after a refusal"] = [_outcome(r) for r in round2]
        stale = dataclasses.replace(g1, round_id=2)
        seen["stale sum relabelled"] = [
            _outcome(r)
            for r in _send(
                grid,
                nodes,
                MessageType.TRAIN,
                lambda: RecordDict({ARRAYS_KEY: model(stale), CONFIG_KEY: config(3)}),
            )
        ]
        results.write_text(json.dumps(seen))

    return app


def test_a_malicious_aggregator_in_a_simulated_federation_gets_nothing(
    german_federation: Callable[[int, int], Any], tmp_path: Path
) -> None:
    federation = german_federation(INSTITUTIONS, 9)
    settings = federation.settings(
        "out",
        rounds=5,
        min_institutions=INSTITUTIONS,
        institutions=INSTITUTIONS,
        model_shapes=model_shapes_json(federation.schema, "logistic", ()),
    )
    results = tmp_path / "seen.json"
    with ray_backend(None) as backend:
        run_simulation(
            server_app=malicious_server_app(settings.public_context, results),
            client_app=build_client_app(settings),
            num_supernodes=INSTITUTIONS,
            backend_config=backend,
        )
    seen = json.loads(results.read_text())

    def codes(step: str) -> set[tuple[int, str]]:
        outcomes = seen[step]
        assert len(outcomes) == INSTITUTIONS
        assert all("error" in o for o in outcomes), f"{step}: {outcomes}"
        return {tuple(o["error"]) for o in outcomes}

    # Every forgery is refused, by every institution, with one fixed code and text:
    # the answer depends on what the aggregator did, never on an institution's data.
    integrity = {(1004, "crossfed:INTEGRITY_FAILED")}
    malformed = {(1003, "crossfed:MALFORMED_INPUT")}
    for step in ("doubled", "shifted", "lone update", "tripled", "stale sum relabelled"):
        assert codes(step) == integrity, step
    for step in ("plaintext model", "another session"):  # refused before any decryption
        assert codes(step) == malformed, step
    # After a refused aggregate the run is closed: not even the genuine model of the next
    # round is decrypted (each refusal would otherwise be one more query on the key).
    assert codes("genuine round 2 after a refusal") == integrity

    # The genuine model is evaluated, and the reply stays one ciphertext with nothing in
    # clear although the configuration asked for plaintext.
    for step in ("honest, asked for plaintext",):
        for outcome in seen[step]:
            assert outcome.get("arrays") == {ARRAYS_KEY: [CIPHERTEXT_KEY]}, (step, outcome)
            assert outcome["metrics"] == {METRICS_KEY: {}}, (step, outcome)
