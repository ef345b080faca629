"""An in-process federation for attacks on (and by) the aggregator.

:class:`InstitutionsGrid` is a Flower ``Grid`` whose nodes are institutions
played in this process with real CKKS ciphertexts: the aggregator's real code
(:func:`federation.run_federation`, its strategies, audit log, checkpoints and
accountant) runs against it unchanged, without Ray or SuperLink, in a second or
two. Each node answers through a *behaviour*; a test swaps one node's behaviour
for a hostile one (another shape, garbage, an error with chosen text, silence)
and reads what the aggregator made of it. Every message the aggregator sends is
kept, so a test can also check what crossed the wire.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

import crypto
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_METRICS,
    PHASE_KEY,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    FederationSettings,
    ciphertext_record,
)

#: The model every honest institution trains: two arrays.
SHAPES = ((4, 3), (3,))
#: Encoded features of the statistics vector (1 + 2 * features values).
FEATURES = 3

Behaviour = Callable[[Message, "Institution"], Message | None]


@dataclass
class Institution:
    """One played institution: its name, weight and the secret context it shares."""

    node: int
    name: str
    weight: int
    secret: crypto.SecretContext
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def round_of(self, message: Message) -> int:
        value = message.content.config_records[CONFIG_KEY].get(ROUND_KEY, 0)
        return int(value) if isinstance(value, int) else 0

    def session_of(self, message: Message) -> str:
        return str(message.content.config_records[CONFIG_KEY][SESSION_KEY])

    def honest(self, message: Message) -> Message | None:
        """What an honest institution answers (for behaviours hostile only sometimes)."""
        return honest(message, self)

    def encrypted(
        self, message: Message, arrays: list[np.ndarray], *, sums: bool = False
    ) -> Message:
        """A reply carrying ``arrays`` encrypted as this institution would."""
        if sums:
            update = crypto.encrypt_sums(
                self.secret,
                arrays,
                contributor=self.name,
                round_id=self.round_of(message),
                session=self.session_of(message),
            )
        else:
            update = crypto.encrypt_update(
                self.secret,
                arrays,
                self.weight,
                contributor=self.name,
                round_id=self.round_of(message),
                session=self.session_of(message),
            )
        content = RecordDict({ARRAYS_KEY: ciphertext_record(update.to_bytes())})
        return Message(content=content, reply_to=message)


def honest(message: Message, me: Institution) -> Message | None:
    """Answer as an honest institution: statistics, an update, an evaluation, an ack."""
    kind = message.metadata.message_type
    config = message.content.config_records.get(CONFIG_KEY)
    if kind == "query" and config is not None and config.get(PHASE_KEY) == PHASE_STATS:
        stats = np.concatenate([[float(me.weight)], me.rng.normal(size=2 * FEATURES)])
        return me.encrypted(message, [stats], sums=True)
    if kind == "train":
        return me.encrypted(message, [me.rng.normal(size=s) for s in SHAPES])
    if kind == "evaluate":
        return me.encrypted(message, [me.rng.uniform(size=len(EVALUATION_METRICS))])
    return Message(content=RecordDict(), reply_to=message)  # the final model: an ack


def error_reply(code: int, reason: str) -> Behaviour:
    """A behaviour that answers every message with an error of ``code`` and ``reason``."""

    def behave(message: Message, me: Institution) -> Message | None:
        return Message(Error(code=code, reason=reason), reply_to=message)

    return behave


class InstitutionsGrid(Grid):
    """A Grid whose nodes are in-process :class:`Institution` s answering via behaviours.

    ``crash_at`` makes the grid raise (the aggregator going down) when the
    training message of that round is about to be sent.
    """

    def __init__(
        self,
        institutions: list[Institution],
        behaviours: dict[int, Behaviour] | None = None,
        crash_at: int | None = None,
    ) -> None:
        self.institutions = {i.node: i for i in institutions}
        self.behaviours = behaviours or {}
        self.crash_at = crash_at
        #: Every message the aggregator sent, in order.
        self.sent: list[Message] = []

    def set_run(self, run: Run) -> None:  # pragma: no cover - not used by the aggregator
        raise NotImplementedError

    @property
    def run(self) -> Run:  # pragma: no cover - not used by the aggregator
        raise NotImplementedError

    def create_message(  # pragma: no cover - not used by the aggregator
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self.institutions)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # pragma: no cover
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            self.sent.append(message)
            me = self.institutions[message.metadata.dst_node_id]
            if message.metadata.message_type == "train" and me.round_of(message) == self.crash_at:
                raise RuntimeError(f"the aggregator went down in round {self.crash_at}")
            reply = self.behaviours.get(me.node, honest)(message, me)
            if reply is not None:
                replies.append(reply)
        return replies


@dataclass(frozen=True)
class Federation:
    """Keys and settings of an in-process federation of three institutions.

    Test modules cannot import this conftest, so what they need hangs off this
    object: :meth:`grid` builds the institutions, :meth:`error_reply` makes a
    behaviour (an institution's :meth:`Institution.honest` is the honest one),
    :attr:`shapes` are the honest model's shapes.
    """

    root: Path
    secret: crypto.SecretContext
    settings: FederationSettings
    shapes: tuple[tuple[int, ...], ...] = SHAPES
    features: int = FEATURES

    @staticmethod
    def error_reply(code: int, reason: str) -> Behaviour:
        """A behaviour answering every message with an error (:func:`error_reply`)."""
        return error_reply(code, reason)

    def institutions(self) -> list[Institution]:
        """Fresh institutions (nodes 11, 22, 33) sharing the federation's secret context."""
        return [
            Institution(node, f"bank-{node}", weight, self.secret, np.random.default_rng(node))
            for node, weight in ((11, 40), (22, 60), (33, 100))
        ]

    def grid(
        self, behaviours: dict[int, Behaviour] | None = None, crash_at: int | None = None
    ) -> InstitutionsGrid:
        """A grid of fresh institutions; ``behaviours`` replaces some nodes' honest one."""
        return InstitutionsGrid(self.institutions(), behaviours, crash_at)

    @property
    def out(self) -> Path:
        """The aggregator's output folder."""
        return Path(self.settings.out_dir)

    def metrics(self) -> dict[str, object]:
        """The aggregator's ``metrics.json``."""
        return dict(json.loads((self.out / "metrics.json").read_text()))


@pytest.fixture(scope="session")
def inprocess_secret() -> crypto.SecretContext:
    return crypto.generate_secret_context("lean")


@pytest.fixture
def inprocess(
    tmp_path: Path, inprocess_secret: crypto.SecretContext, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Federation]:
    """Encrypted settings for three institutions, writing to ``tmp_path/out``."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):  # Flower stamps messages with a task
        monkeypatch.setattr(TaskIdentity, name, 1)
    inprocess_secret.public().save(tmp_path / "public.ctx")
    settings = FederationSettings(
        mode="encrypted",
        rounds=3,
        min_institutions=2,
        institutions=3,
        round_timeout=5.0,
        public_context=str(tmp_path / "public.ctx"),
        out_dir=str(tmp_path / "out"),
        model_shapes=json.dumps([list(s) for s in SHAPES]),
    )
    yield Federation(tmp_path, inprocess_secret, settings)
