"""Play the aggregator against the real institution ClientApp, without Flower's engine.

:class:`Federation` is German credit split across three institutions, with a
real CKKS key and the real :func:`clients.build_client_app`; each institution
has its own node context (node config, persistent state), as Flower keeps it.
:class:`PlayedAggregator` builds the messages the honest ServerApp sends
(statistics query, train, evaluate, final) and sums the replies with the public
context only; an attack test then deviates from it where the attacker would.

The fixtures are requested by name (``flower_task``, ``institutions``,
``smaller_institutions``, ``played_aggregator``); none is autouse, so tests in
subfolders with their own conftest are not affected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

import crypto
from clients import build_client_app, infer_schema, save_schema
from clients.shapes import model_shapes_json
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_CIPHERTEXT_KEY,
    FINAL_QUERY,
    MODE_KEY,
    PHASE_KEY,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    FederationSettings,
    ciphertext_record,
    read_ciphertext,
)

GERMAN_CREDIT = Path(__file__).resolve().parents[1] / "data" / "german_credit.csv"
#: Institutions of the played federation.
BANKS = 3


@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    torch.set_num_threads(1)  # tiny models on a shared machine: threads only contend
    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@dataclass
class Bank:
    """One institution: the real ClientApp and its node context."""

    app: Callable[..., Message]
    context: Context

    def send(self, message: Message) -> Message:
        """Deliver ``message`` as Flower does and return the reply."""
        return self.app(message=message, context=self.context)


@dataclass
class Federation:
    """Files, key and settings of German credit across :data:`BANKS` institutions."""

    root: Path
    files: list[str]
    secret: crypto.SecretContext
    public: crypto.PublicContext
    base: FederationSettings

    def settings(self, **overrides: object) -> FederationSettings:
        """The kit's settings, with ``overrides``."""
        return replace(self.base, **overrides)  # type: ignore[arg-type]

    def banks(self, settings: FederationSettings | None = None) -> list[Bank]:
        """One fresh institution per partition, all running the real ClientApp."""
        app = build_client_app(settings or self.base)
        return [
            Bank(
                app,
                Context(
                    run_id=1,
                    node_id=100 + index,
                    node_config={"partition-id": index},
                    state=RecordDict(),
                    run_config={},
                ),
            )
            for index in range(len(self.files))
        ]

    def model(self, blob: bytes) -> tuple[list[np.ndarray], float]:
        """What a key holder reads from an aggregate (the test's view, not the aggregator's)."""
        update = crypto.EncryptedUpdate.from_bytes(self.secret, blob)
        return crypto.decrypt_average(self.secret, update, min_contributors=2)


def write_federation(root: Path, frame: pd.DataFrame, seed: int) -> Federation:
    """Shuffle and split ``frame`` into :data:`BANKS` files; make keys and settings."""
    order = np.random.default_rng(seed).permutation(len(frame))
    files = []
    for index, part in enumerate(np.array_split(order, BANKS)):
        path = root / f"institution-{index}.csv"
        frame.iloc[part].to_csv(path, index=False)
        files.append(str(path))
    schema = infer_schema(pd.read_csv(GERMAN_CREDIT), "creditability", "bad")
    save_schema(schema, root / "schema.yaml")
    secret = crypto.generate_secret_context("lean")
    secret.save(root / "secret.ctx")
    public = secret.public()
    public.save(root / "public.ctx")
    settings = FederationSettings(
        mode="encrypted",
        rounds=3,
        min_institutions=BANKS,
        institutions=BANKS,
        public_context=str(root / "public.ctx"),
        secret_context=str(root / "secret.ctx"),
        schema=str(root / "schema.yaml"),
        data_files=",".join(files),
        epochs=1,
        model_shapes=model_shapes_json(schema, "logistic", ()),
    )
    return Federation(root, files, secret, public, settings)


@pytest.fixture(scope="module")
def institutions(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """German credit, all 1,000 rows, across three banks."""
    frame = pd.read_csv(GERMAN_CREDIT)
    return write_federation(tmp_path_factory.mktemp("german"), frame, seed=3)


@pytest.fixture(scope="module")
def smaller_institutions(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """German credit, 600 rows in another order: other counts, other sums."""
    frame = pd.read_csv(GERMAN_CREDIT).sample(n=600, random_state=11)
    return write_federation(tmp_path_factory.mktemp("german-600"), frame, seed=5)


def _message(
    message_type: str, config: dict[str, object], model: bytes | ArrayRecord | None = None
) -> Message:
    content = RecordDict({CONFIG_KEY: ConfigRecord(config)})  # type: ignore[arg-type]
    if isinstance(model, bytes):
        content[ARRAYS_KEY] = ciphertext_record(model)
    else:
        content[ARRAYS_KEY] = model if model is not None else ArrayRecord()
    return Message(content=content, dst_node_id=1, message_type=message_type)


def copy_message(message: Message) -> Message:
    """A fresh message with the same type and copies of the records (one per bank)."""
    content = RecordDict()
    for key, record in message.content.items():
        if isinstance(record, ArrayRecord):
            content[key] = ArrayRecord(dict(record.items()))
        elif isinstance(record, ConfigRecord):
            content[key] = ConfigRecord(dict(record))
        else:
            content[key] = MetricRecord(dict(record))
    return Message(content=content, dst_node_id=1, message_type=message.metadata.message_type)


@dataclass
class PlayedAggregator:
    """The honest ServerApp's side of a run, message by message (public context only)."""

    federation: Federation
    banks: list[Bank]
    session: str = "run-session-1"
    stats: bytes = b""
    models: dict[int, bytes] = field(default_factory=dict)
    evaluations: dict[int, bytes] = field(default_factory=dict)
    updates: dict[int, list[crypto.EncryptedUpdate]] = field(default_factory=dict)

    def stats_query(self) -> Message:
        """The statistics query (round 0)."""
        config = {PHASE_KEY: PHASE_STATS, MODE_KEY: "encrypted", SESSION_KEY: self.session}
        return Message(
            content=RecordDict({CONFIG_KEY: ConfigRecord(config)}),  # type: ignore[arg-type]
            dst_node_id=1,
            message_type=MessageType.QUERY,
        )

    def config(self, server_round: int) -> dict[str, object]:
        """A train or evaluate message's config, as the ServerApp writes it."""
        return {
            MODE_KEY: "encrypted",
            "dp-shares": len(self.banks),
            SESSION_KEY: self.session,
            STATS_CIPHERTEXT_KEY: self.stats,
            ROUND_KEY: server_round,
        }

    def train_message(self, server_round: int, model: bytes | ArrayRecord | None = None) -> Message:
        """Round ``server_round``'s training message (default: the previous round's sum)."""
        if model is None and server_round > 1:
            model = self.models[server_round - 1]
        return _message(MessageType.TRAIN, self.config(server_round), model)

    def evaluate_message(
        self, server_round: int, model: bytes | ArrayRecord | None = None
    ) -> Message:
        """Round ``server_round``'s evaluation message (default: that round's sum)."""
        chosen = self.models[server_round] if model is None else model
        return _message(MessageType.EVALUATE, self.config(server_round), chosen)

    def final_message(self, model: bytes | ArrayRecord | None = None) -> Message:
        """The final message: the last round's model, statistics and evaluation."""
        last = self.federation.base.rounds
        config: dict[str, object] = {MODE_KEY: "encrypted", STATS_CIPHERTEXT_KEY: self.stats}
        if last in self.evaluations:
            config[EVALUATION_CIPHERTEXT_KEY] = self.evaluations[last]
        return _message(FINAL_QUERY, config, self.models[last] if model is None else model)

    def collect(self, message: Message, banks: Sequence[Bank] | None = None) -> list[Message]:
        """Send a copy of ``message`` to every bank (or ``banks``); return the replies."""
        return [bank.send(copy_message(message)) for bank in banks or self.banks]

    def update(self, reply: Message) -> crypto.EncryptedUpdate:
        """A reply's ciphertext, parsed with the public context (as the aggregator does)."""
        if reply.has_error():
            raise AssertionError(f"an honest step failed: {reply.error.reason}")
        return crypto.EncryptedUpdate.from_bytes(
            self.federation.public, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
        )

    def sum_replies(self, replies: Sequence[Message]) -> bytes:
        """The honest aggregate of ``replies``."""
        updates = [self.update(reply) for reply in replies]
        return crypto.aggregate(self.federation.public, updates).to_bytes()

    def run_statistics(self) -> None:
        """Round 0: every bank's moments, summed."""
        self.stats = self.sum_replies(self.collect(self.stats_query()))

    def run_round(self, server_round: int) -> None:
        """Train and evaluate round ``server_round`` honestly; keep the updates and sums."""
        replies = self.collect(self.train_message(server_round))
        self.updates[server_round] = [self.update(reply) for reply in replies]
        self.models[server_round] = self.sum_replies(replies)
        self.evaluations[server_round] = self.sum_replies(
            self.collect(self.evaluate_message(server_round))
        )


@pytest.fixture
def played_aggregator(flower_task: None, institutions: Federation) -> PlayedAggregator:
    """An honest aggregator over fresh banks of :func:`institutions`, statistics round done."""
    play = PlayedAggregator(institutions, institutions.banks())
    play.run_statistics()
    return play


@pytest.fixture
def aggregator_for(flower_task: None, institutions: Federation) -> Callable[..., PlayedAggregator]:
    """Factory: an honest aggregator of another run over fresh banks, statistics done.

    ``make(session, federation=institutions)``.
    """

    def make(session: str, federation: Federation | None = None) -> PlayedAggregator:
        chosen = federation or institutions
        play = PlayedAggregator(chosen, chosen.banks(), session=session)
        play.run_statistics()
        return play

    return make
