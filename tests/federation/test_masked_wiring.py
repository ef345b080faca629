"""A masked round through the aggregator's strategy and the institutions' mods, no processes.

:class:`~federation.masked_strategy.MaskedAggregation` is driven as Flower drives
it, on a grid that hands every message to four institutions running the real
admission and encryption mods (:mod:`clients.run_state`,
:mod:`clients.encryption_mod`) with keys from a simulation folder: the roll
call names them, a reply the aggregator drops makes the survivors re-mask, the
round completes with the exact sum of the rest, and every institution (the
dropped one too) starts the next round from it. An aggregator asking for a
second set's seeds, a re-mask of a round not trained, or a round whose member
does not reveal, gets nothing.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp.strategy import FedAvg

import crypto
from clients.encryption_mod import make_encryption_mod
from clients.error_mod import error_mod
from clients.masked_round import MASK_LEDGER_KEY
from clients.refusals import run_closed
from clients.run_state import admit
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    EVALUATION_METRICS,
    FRACTION_BITS,
    METRICS_KEY,
    MODE_KEY,
    NUM_EXAMPLES_KEY,
    PHASE_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    PURPOSE_KEY,
    ROUND_KEY,
    SELF_SEED_KEY,
    SELF_SEEDS_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_SEEDS_KEY,
    ConfigurationError,
    FederationSettings,
)
from federation import AuditLog, QuorumNotReachedError, run_federation
from federation.masked_exchange import roll_call
from federation.masked_strategy import MaskedAggregation, masked_round_files, masked_statistics
from simulations.scenario import write_agreement_keys

#: Quantisation error allowed per value: eight steps of masked16 (clip 4, 16-bit lanes).
ATOL = 8 * crypto.PRESETS["masked16"].build_masked_codec().step

NODES = (11, 22, 33, 44)
ROWS = {11: 120, 22: 80, 33: 60, 44: 40}
SHAPES = ((2, 3), (3,))
RUN = "run-masked"
START = [np.zeros(s, dtype=np.float32) for s in SHAPES]


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[FederationSettings, Path]:
    folder = tmp_path_factory.mktemp("masked")
    secret = crypto.generate_secret_context("masked16")
    settings = FederationSettings(
        mode="encrypted",
        rounds=3,
        min_institutions=3,
        institutions=len(NODES),
        secret_context=str(secret.save(folder / "secret.ctx")),
        public_context=str(secret.public().save(folder / "public.ctx")),
        model_shapes=json.dumps([list(s) for s in SHAPES]),
        agreement_keys=str(write_agreement_keys(folder / "agreement", len(NODES))),
    )
    return settings, folder


def _delta(node: int, server_round: int) -> list[np.ndarray]:
    rng = np.random.default_rng(node * 100 + server_round)
    return [rng.uniform(-0.3, 0.3, size=s) for s in SHAPES]


class Institutions:
    """Four institutions behind a grid: real mods, a handler that adds a known delta."""

    def __init__(self, settings: FederationSettings, ledgers: Path) -> None:
        self.settings = settings
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config={"partition-id": i, MASK_LEDGER_KEY: str(ledgers / str(node))},
                state=RecordDict(),
                run_config={},
            )
            for i, node in enumerate(NODES)
        }
        self.starts: dict[tuple[int, int], list[np.ndarray]] = {}
        self.lost: Callable[[Message], bool] = lambda message: False
        self.mod = make_encryption_mod(lambda _: settings, _start)
        self.statistics: dict[int, np.ndarray] = {}

    def get_node_ids(self) -> Iterable[int]:
        return NODES

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            reply = self.deliver(message)
            if not self.lost(reply):
                replies.append(reply)
        return replies

    def deliver(self, sent: Message) -> Message:
        """Serialise and parse ``sent`` as the wire would (no object is shared), then run it."""
        message = message_from_proto(message_to_proto(sent))
        node = message.metadata.dst_node_id
        context = self.contexts[node]

        def admitted(msg: Message, ctx: Context) -> Message:
            admit(msg, ctx, self.settings)
            return self.mod(msg, ctx, self.handle)

        reply = error_mod(message, context, admitted)
        reply.metadata.__dict__["_src_node_id"] = node
        return reply

    def handle(self, msg: Message, context: Context) -> Message:
        """Statistics: (rows, a sum, a sum of squares); evaluation: known metrics; training."""
        node = context.node_id
        if msg.metadata.message_type == MessageType.QUERY:
            rows = float(ROWS[node])
            self.statistics[node] = np.array([rows, rows * 0.25 + 1 / 3, rows * 1.5])
            content = RecordDict({ARRAYS_KEY: ArrayRecord([self.statistics[node]])})
            return Message(content=content, reply_to=msg)
        if msg.metadata.message_type == MessageType.EVALUATE:
            metrics: dict[str, int | float] = dict(_metrics(node))
            metrics[NUM_EXAMPLES_KEY] = ROWS[node] // 4
            return Message(content=RecordDict({METRICS_KEY: MetricRecord(metrics)}), reply_to=msg)
        return self.train(msg, context)

    def train(self, msg: Message, context: Context) -> Message:
        server_round = int(msg.content.config_records[CONFIG_KEY][ROUND_KEY])  # type: ignore[arg-type]
        start = _start(msg, context)
        self.starts[(context.node_id, server_round)] = start
        trained = [s + d for s, d in zip(start, _delta(context.node_id, server_round), strict=True)]
        content = RecordDict(
            {
                ARRAYS_KEY: ArrayRecord([t.astype(np.float32) for t in trained]),
                METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: ROWS[context.node_id]}),
            }
        )
        return Message(content=content, reply_to=msg)


def _metrics(node: int) -> dict[str, float]:
    return {name: (node % 7 + k) / 10 for k, name in enumerate(EVALUATION_METRICS)}


def _start(msg: Message, context: Context) -> list[np.ndarray]:
    record = msg.content.array_records.get(ARRAYS_KEY)
    if record is None or not len(record):
        return [s.copy() for s in START]
    return record.to_numpy_ndarrays()


def _start_federation(
    federation: tuple[FederationSettings, Path],
    tmp_path: Path,
    *,
    session: str = RUN,
    ledgers: Path | None = None,
    grid: Institutions | None = None,
) -> tuple[Institutions, MaskedAggregation, ConfigRecord]:
    settings, _ = federation
    ledgers = ledgers or tmp_path / "ledgers"
    grid = grid or Institutions(settings, ledgers)
    names, dropped = roll_call(grid, NODES, session, 5.0)  # type: ignore[arg-type]
    assert dropped == {}
    assert names == {node: f"partition-{i}" for i, node in enumerate(NODES)}
    public = crypto.PublicContext.load(settings.public_context)
    blob, stats_seeds, dropped = masked_statistics(
        grid,  # type: ignore[arg-type]
        public,
        names,
        session=session,
        mode="encrypted",
        quorum=3,
        timeout=5.0,
        max_update_bytes=1 << 24,
    )
    assert dropped == {} and sorted(stats_seeds) == sorted(names.values())
    strategy = MaskedAggregation(
        FedAvg(min_train_nodes=4, min_available_nodes=4, min_evaluate_nodes=4),
        public,
        names=names,
        stats_seeds=stats_seeds,
        timeout=5.0,
        min_institutions=3,
        shapes=SHAPES,
        max_update_bytes=1 << 24,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        out_dir=tmp_path,
        run_id=session,
    )
    config = ConfigRecord({MODE_KEY: "encrypted", SESSION_KEY: session, STATS_CIPHERTEXT_KEY: blob})
    return grid, strategy, config


def _round(
    grid: Institutions,
    strategy: MaskedAggregation,
    config: ConfigRecord,
    r: int,
    arrays: ArrayRecord,
) -> ArrayRecord:
    messages = list(strategy.configure_train(r, arrays, config, grid))  # type: ignore[arg-type]
    record, _ = strategy.aggregate_train(r, grid.send_and_receive(messages))
    assert record is not None
    return record


def _expected(grid: Institutions, members: Iterable[int], r: int) -> list[np.ndarray]:
    members = list(members)
    total = sum(ROWS[n] for n in members)
    start = grid.starts[(members[0], r)]
    return [
        s + sum(ROWS[n] * _delta(n, r)[i] for n in members) / total for i, s in enumerate(start)
    ]


def test_a_dropped_reply_is_remasked_and_the_round_is_the_exact_sum_of_the_rest(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    grid, strategy, config = _start_federation(federation, tmp_path)
    arrays = _round(grid, strategy, config, 1, ArrayRecord())
    assert sorted(strategy.seeds) == [f"partition-{i}" for i in range(4)]
    # Round 2: the aggregator drops node 44's masked reply (late, or malformed).
    grid.lost = lambda reply: reply.metadata.src_node_id == 44
    arrays = _round(grid, strategy, config, 2, arrays)
    grid.lost = lambda reply: False
    assert sorted(strategy.seeds) == ["partition-0", "partition-1", "partition-2"]
    messages = list(strategy.configure_train(3, arrays, config, grid))  # type: ignore[arg-type]
    assert all(SELF_SEEDS_KEY in m.content.config_records for m in messages)
    replies = {r.metadata.src_node_id: r for r in grid.send_and_receive(messages)}
    expected = _expected(grid, (11, 22, 33), 2)
    for node in (11, 22, 33):
        for got, want in zip(grid.starts[(node, 3)], expected, strict=True):
            np.testing.assert_allclose(got, want, atol=ATOL)
    # The dropped institution refuses a sum it is not in, from the header: its run stays
    # open and no refusal budget is spent (nothing was decrypted).
    assert replies[44].has_error() and (44, 3) not in grid.starts
    assert not run_closed(grid.contexts[44], grid.settings, RUN)
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [d["node"] for d in audit[1]["dropped"]] == ["44"]
    assert sorted(audit[1]["replied"]) == ["11", "22", "33"]
    assert masked_round_files(tmp_path, 2)[0].read_bytes() == _bytes(arrays)


def test_a_second_reveal_of_one_round_and_a_remask_of_another_round_get_nothing(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    grid, strategy, config = _start_federation(federation, tmp_path)
    _round(grid, strategy, config, 1, ArrayRecord())
    full = [f"partition-{i}" for i in range(4)]
    # The round's set was revealed; the aggregator asks node 11 for a subset's seed too.
    for phase, members, r in (
        (PHASE_REVEAL, full[:3], 1),  # another set of the same round: S minus one
        (PHASE_REMASK, full[:3], 1),  # re-mask after revealing: refused as well
        (PHASE_REMASK, full, 2),  # a round node 11 has not trained
        (PHASE_REVEAL, full, 2),
    ):
        reply = grid.deliver(_query(11, phase, members, r))
        assert reply.has_error(), (phase, members, r)
        assert not reply.has_content()


def test_a_member_that_does_not_reveal_refuses_the_round(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    grid, strategy, config = _start_federation(federation, tmp_path)
    grid.lost = lambda reply: (
        reply.metadata.src_node_id == 33 and SELF_SEED_KEY in _config_of(reply)
    )
    with pytest.raises(QuorumNotReachedError, match="revealed no seed"):
        _round(grid, strategy, config, 1, ArrayRecord())
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["aggregate_sha256"] is None
    assert not masked_round_files(tmp_path, 1)[0].exists()


def test_a_roll_call_leaves_out_two_nodes_answering_one_name(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    settings, _ = federation
    grid = Institutions(settings, tmp_path)
    grid.contexts[44].node_config["partition-id"] = 0  # answers "partition-0" like node 11
    names, dropped = roll_call(grid, NODES, RUN, 5.0)  # type: ignore[arg-type]
    assert names == {22: "partition-1", 33: "partition-2"}
    assert set(dropped) == {11, 44}


def _config_of(reply: Message) -> ConfigRecord:
    if reply.has_error():
        return ConfigRecord()
    return reply.content.config_records.get(CONFIG_KEY) or ConfigRecord()


def _bytes(record: ArrayRecord) -> bytes:
    from crossfed.protocol import read_ciphertext

    return read_ciphertext(record)


def _query(node: int, phase: str, members: list[str], r: int) -> Message:
    config = ConfigRecord(
        {
            PHASE_KEY: phase,
            CONTRIBUTORS_KEY: members,
            PURPOSE_KEY: "train",
            ROUND_KEY: r,
            SESSION_KEY: RUN,
        }
    )
    return Message(
        content=RecordDict({CONFIG_KEY: config}),
        message_type="query",
        dst_node_id=node,
    )


def test_statistics_and_evaluation_are_exact_masked_sums(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    settings, _ = federation
    grid, strategy, config = _start_federation(federation, tmp_path)
    secret = crypto.SecretContext.load(settings.secret_context)
    stats = crypto.EncryptedUpdate.from_bytes(secret, config[STATS_CIPHERTEXT_KEY])  # type: ignore[arg-type]
    # The sum opens, with the seeds, to the exact fixed-point sum of every institution's values.
    summed = crypto.decrypt_masked(secret, stats, self_seeds=strategy.stats_seeds, purpose="stats")
    exact = crypto.integer_sum(summed, 3)
    want = [sum(crypto.fixed_point(v, FRACTION_BITS)[k] for v in grid.statistics.values())
            for k in range(3)]  # fmt: skip
    assert exact == want
    # A statistics sum does not open as a training sum (its masks and checks are bound to it).
    with pytest.raises(crypto.IntegrityError):
        crypto.decrypt_masked(secret, stats, self_seeds=strategy.stats_seeds, purpose="train")
    arrays = _round(grid, strategy, config, 1, ArrayRecord())
    messages = list(strategy.configure_evaluate(1, arrays, config, grid))  # type: ignore[arg-type]
    assert all(STATS_SEEDS_KEY in m.content.config_records for m in messages)
    metrics = strategy.aggregate_evaluate(1, grid.send_and_receive(messages))
    assert metrics is not None and metrics["institutions"] == 4
    assert strategy.last_evaluation is not None
    evaluation = crypto.EncryptedUpdate.from_bytes(secret, strategy.last_evaluation)
    opened = crypto.decrypt_masked(
        secret, evaluation, self_seeds=strategy.evaluation_seeds, purpose="evaluate"
    )
    sums = crypto.from_fixed_point(
        crypto.integer_sum(opened, len(EVALUATION_METRICS) + 1), FRACTION_BITS
    )
    sizes = {node: ROWS[node] // 4 for node in NODES}
    for k, name in enumerate(EVALUATION_METRICS):
        mean = sum(_metrics(n)[name] * sizes[n] for n in NODES) / sum(sizes.values())
        assert sums[k] / sums[-1] == pytest.approx(mean, abs=1e-9)


def test_a_masked_run_refuses_to_resume_or_to_add_distributed_dp(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    settings, _ = federation
    earlier = tmp_path / "earlier"
    (earlier / "masked").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match="cannot resume"):
        run_federation(None, dataclasses.replace(settings, out_dir=str(earlier)))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="distributed DP"):
        run_federation(None, dataclasses.replace(settings, dp_clip=0.5, institutions=4))  # type: ignore[arg-type]


def test_a_second_run_from_the_same_start_gets_no_second_quantisation(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    """Red-team F3: a new run (fresh node state, new session) from the seeded start.

    Its sum, beside the first run's, would differ by any institution left out of
    one of them; every institution's ledger (kept across runs) refuses to
    quantise that start again, so the second run's first round gets nothing.
    """
    ledgers = tmp_path / "ledgers"
    grid, strategy, config = _start_federation(federation, tmp_path, ledgers=ledgers)
    _round(grid, strategy, config, 1, ArrayRecord())
    (tmp_path / "second").mkdir()
    again, strategy, config = _start_federation(
        federation, tmp_path / "second", session="run-again", ledgers=ledgers
    )
    with pytest.raises(QuorumNotReachedError):
        _round(again, strategy, config, 1, ArrayRecord())
