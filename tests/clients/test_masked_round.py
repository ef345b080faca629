"""The institution's side of a masked round, through Flower messages (no processes).

Four institutions quantise once, reply masked for the declared set, re-mask for
the survivors after a dropout, reveal one seed per round, and turn the masked
sum into start + average delta; forged seeds, a second set and a second
quantisation are refused.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

import crypto
from clients import InboundMessageError
from clients.errors import MaskReuseRefusedError, TamperedAggregateError
from clients.masked_round import (
    MASK_LEDGER_KEY,
    MaskingKeys,
    apply_masked_aggregate,
    federation_rows,
    masked_query_reply,
    masked_train_reply,
)
from clients.run_state import SEEDED_START, admit
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    METRICS_KEY,
    PHASE_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    ROUND_KEY,
    SELF_SEED_KEY,
    SELF_SEEDS_KEY,
    SESSION_KEY,
    STATS_KEY,
    FederationSettings,
    ciphertext_record,
    read_ciphertext,
)

#: Quantisation error allowed per value: eight steps of masked16 (clip 4, 16-bit lanes).
ATOL = 8 * crypto.PRESETS["masked16"].build_masked_codec().step

NAMES = ("bank-a", "bank-b", "bank-c", "bank-d")
ROWS = {"bank-a": 120, "bank-b": 80, "bank-c": 60, "bank-d": 40}
SHAPES = ((2, 3), (3,))
SESSION = "run-1"
NORMALISER = sum(ROWS.values())


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture(scope="module")
def keys() -> dict[str, MaskingKeys]:
    secret = crypto.generate_secret_context("masked16")
    agreement = {name: crypto.AgreementKey.generate() for name in NAMES}
    public = {name: key.public_bytes() for name, key in agreement.items()}
    return {
        name: MaskingKeys(
            secret, agreement[name], name, {p: k for p, k in public.items() if p != name}
        )
        for name in NAMES
    }


SETTINGS = FederationSettings(
    mode="encrypted",
    secret_context="unused: the keys are passed in",
    rounds=3,
    min_institutions=3,
    institutions=4,
    model_shapes=json.dumps([list(s) for s in SHAPES]),
)


def _config(round_id: int, members: tuple[str, ...], rows: int = NORMALISER) -> ConfigRecord:
    values: dict[str, object] = {
        ROUND_KEY: round_id,
        SESSION_KEY: SESSION,
        STATS_KEY: [float(rows), 1.0, 2.0],
        CONTRIBUTORS_KEY: list(members),
    }
    return ConfigRecord(values)  # type: ignore[arg-type]


def _train(
    round_id: int,
    members: tuple[str, ...],
    model: RecordDict | None = None,
    rows: int = NORMALISER,
) -> Message:
    content = model or RecordDict()
    content[CONFIG_KEY] = _config(round_id, members, rows)
    return Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)


def _query(phase: str, round_id: int, members: tuple[str, ...]) -> Message:
    config = ConfigRecord(
        {
            PHASE_KEY: phase,
            ROUND_KEY: round_id,
            SESSION_KEY: SESSION,
            CONTRIBUTORS_KEY: list(members),
        }
    )
    return Message(
        content=RecordDict({CONFIG_KEY: config}), dst_node_id=1, message_type=MessageType.QUERY
    )


_LEDGERS: list[Path] = []


@pytest.fixture(autouse=True)
def ledgers(tmp_path: Path) -> None:
    """Every institution's mask ledger in this test's folder (clients.mask_ledger)."""
    _LEDGERS[:] = [tmp_path]


def _ledger(name: str) -> dict[str, str]:
    return {MASK_LEDGER_KEY: str(_LEDGERS[0] / uuid.uuid4().hex / name)}


def _nodes() -> dict[str, Context]:
    return {
        name: Context(
            run_id=1, node_id=i + 1, node_config=_ledger(name), state=RecordDict(), run_config={}
        )
        for i, name in enumerate(NAMES)
    }


def _update(reply: Message, keys: MaskingKeys) -> crypto.EncryptedUpdate:
    assert set(reply.content.keys()) == {ARRAYS_KEY, METRICS_KEY}
    assert len(reply.content.metric_records[METRICS_KEY]) == 0
    data = read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    return crypto.EncryptedUpdate.from_bytes(keys.secret.public(), data, expected_round=1)


class Round:
    """Round 1 of four institutions from one start, each with its own delta."""

    def __init__(self, keys: dict[str, MaskingKeys]) -> None:
        rng = np.random.default_rng(11)
        self.keys = keys
        self.nodes = _nodes()
        self.start = [rng.normal(size=s) for s in SHAPES]
        self.delta = {n: [rng.uniform(-0.4, 0.4, size=s) for s in SHAPES] for n in NAMES}

    def train(
        self, members: tuple[str, ...], rows: dict[str, int] | None = None
    ) -> dict[str, crypto.EncryptedUpdate]:
        replies = {}
        for name in members:
            msg = _train(1, members, rows=(rows or {}).get(name, NORMALISER))
            admit(msg, self.nodes[name], SETTINGS)
            reply = masked_train_reply(
                msg,
                self.nodes[name],
                SETTINGS,
                self.keys[name],
                start=self.start,
                trained=[s + d for s, d in zip(self.start, self.delta[name], strict=True)],
                count=ROWS[name],
                binding=SEEDED_START,
            )
            replies[name] = _update(reply, self.keys[name])
        return replies

    def query(self, phase: str, name: str, members: tuple[str, ...]) -> Message:
        return masked_query_reply(
            _query(phase, 1, members), self.nodes[name], SETTINGS, self.keys[name]
        )

    def reveal(self, members: tuple[str, ...]) -> dict[str, bytes]:
        seeds = {}
        for name in members:
            seed = self.query(PHASE_REVEAL, name, members).content.config_records[CONFIG_KEY]
            assert isinstance(seed[SELF_SEED_KEY], bytes)
            seeds[name] = seed[SELF_SEED_KEY]
        return seeds

    def apply(
        self, name: str, summed: crypto.EncryptedUpdate, seeds: dict[str, bytes]
    ) -> list[np.ndarray]:
        model = RecordDict(
            {
                ARRAYS_KEY: ciphertext_record(summed.to_bytes()),
                SELF_SEEDS_KEY: ConfigRecord(dict(seeds)),  # type: ignore[arg-type]
            }
        )
        msg = _train(2, NAMES, model)
        admit(msg, self.nodes[name], SETTINGS)
        return apply_masked_aggregate(msg, self.nodes[name], SETTINGS, self.keys[name])

    def expected(self, members: tuple[str, ...]) -> list[np.ndarray]:
        total = sum(ROWS[n] for n in members)
        return [
            s + sum(ROWS[n] * self.delta[n][i] for n in members) / total
            for i, s in enumerate(self.start)
        ]


def _sum(keys: MaskingKeys, updates: list[crypto.EncryptedUpdate]) -> crypto.EncryptedUpdate:
    return crypto.aggregate(keys.secret.public(), updates)


def test_every_institution_applies_start_plus_the_average_delta(
    keys: dict[str, MaskingKeys],
) -> None:
    play = Round(keys)
    replies = play.train(NAMES)
    summed = _sum(keys["bank-a"], list(replies.values()))
    seeds = play.reveal(NAMES)
    expected = play.expected(NAMES)
    for name in NAMES:
        model = play.apply(name, summed, seeds)
        for got, want in zip(model, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=ATOL)
        assert not np.allclose(model[0], play.start[0], atol=1e-2)


def test_a_dropout_is_remasked_and_only_one_set_is_ever_revealed(
    keys: dict[str, MaskingKeys],
) -> None:
    play = Round(keys)
    play.train(NAMES)  # bank-d's reply never arrives
    survivors = ("bank-a", "bank-b", "bank-c")
    remasked = [
        _update(play.query(PHASE_REMASK, name, survivors), keys[name]) for name in survivors
    ]
    summed = _sum(keys["bank-a"], remasked)
    seeds = play.reveal(survivors)
    expected = play.expected(survivors)
    for got, want in zip(play.apply("bank-a", summed, seeds), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL)
    # The aggregator cannot now get the seeds of the first set too (S and S' differ by one).
    with pytest.raises(crypto.MaskingRefusedError):
        play.query(PHASE_REVEAL, "bank-a", NAMES)
    with pytest.raises(crypto.MaskingRefusedError):
        play.query(PHASE_REMASK, "bank-a", NAMES)


def test_a_round_is_quantised_once_and_unknown_rounds_are_refused(
    keys: dict[str, MaskingKeys],
) -> None:
    play = Round(keys)
    play.train(("bank-a", "bank-b", "bank-c"))
    node = play.nodes["bank-a"]
    with pytest.raises(InboundMessageError, match="quantised already"):
        masked_train_reply(
            _train(1, NAMES),
            node,
            SETTINGS,
            keys["bank-a"],
            start=play.start,
            trained=play.start,
            count=1,
            binding=SEEDED_START,
        )
    with pytest.raises(InboundMessageError, match="no masked update kept"):
        masked_query_reply(_query(PHASE_REVEAL, 2, NAMES[:3]), node, SETTINGS, keys["bank-a"])
    with pytest.raises(crypto.MaskingRefusedError):  # a set without this institution
        play.query(PHASE_REMASK, "bank-a", ("bank-b", "bank-c", "bank-d"))
    with pytest.raises(crypto.MaskingRefusedError):  # two members: the sum would reveal one
        play.query(PHASE_REMASK, "bank-a", ("bank-a", "bank-b"))


def test_a_forged_or_missing_seed_is_refused(keys: dict[str, MaskingKeys]) -> None:
    play = Round(keys)
    summed = _sum(keys["bank-a"], list(play.train(NAMES).values()))
    seeds = play.reveal(NAMES)
    forged = {**seeds, "bank-c": bytes(32)}
    with pytest.raises(crypto.IntegrityError):
        play.apply("bank-a", summed, forged)
    missing = {name: seed for name, seed in seeds.items() if name != "bank-d"}
    with pytest.raises(crypto.IntegrityError):
        play.apply("bank-b", summed, missing)


def test_an_aggregate_without_this_institution_is_refused(keys: dict[str, MaskingKeys]) -> None:
    """F9: bank-d trained; the aggregator sums the others and hands bank-d their sum.

    Genuine sums of one start with and without bank-d differ by its update, so
    bank-d takes no sum of its round that leaves it out; the members take it.
    """
    play = Round(keys)
    play.train(NAMES)
    others = ("bank-a", "bank-b", "bank-c")
    remasked = [_update(play.query(PHASE_REMASK, name, others), keys[name]) for name in others]
    summed = _sum(keys["bank-a"], remasked)
    seeds = play.reveal(others)
    with pytest.raises(crypto.IntegrityError):
        play.apply("bank-d", summed, seeds)
    for got, want in zip(play.apply("bank-b", summed, seeds), play.expected(others), strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL)


def test_a_lone_reply_decrypts_to_noise_without_its_masks(keys: dict[str, MaskingKeys]) -> None:
    """A colluding institution decrypts another's reply: the masks hide the delta."""
    play = Round(keys)
    reply = play.train(NAMES)["bank-b"]
    secret = keys["bank-b"].secret
    slots = np.concatenate(
        [np.asarray(v.decrypt(secret.tenseal_context.secret_key())) for v in reply.vectors]
    )
    codec = secret.preset.build_masked_codec()
    assert codec is not None
    values, _, _ = codec.unpack(slots, sum(int(np.prod(s)) for s in SHAPES), 1)
    honest = crypto.quantise_update(
        secret, play.delta["bank-b"], ROWS["bank-b"], normaliser=NORMALISER
    ).values
    signed = codec.signed(values)
    assert np.max(np.abs(signed - honest)) > 1000  # far beyond rounding: masked


def test_statistics_over_another_subset_for_one_institution_fail_the_sum(
    keys: dict[str, MaskingKeys],
) -> None:
    """Each statistics sum genuine, but one institution told a smaller federation: its update
    would weigh 2.6 times as much. The normaliser is bound, so the sum verifies nowhere."""
    play = Round(keys)
    replies = play.train(NAMES, rows={"bank-d": NORMALISER - ROWS["bank-a"] - ROWS["bank-b"]})
    # The headers show the mismatch; the aggregator rewrites bank-d's to hide it.
    assert replies["bank-d"].binding != replies["bank-a"].binding
    replies["bank-d"] = dataclasses.replace(replies["bank-d"], binding=replies["bank-a"].binding)
    summed = _sum(keys["bank-a"], list(replies.values()))
    seeds = play.reveal(NAMES)
    for name in ("bank-a", "bank-d"):
        with pytest.raises(crypto.IntegrityError):
            play.apply(name, summed, seeds)


def test_a_new_run_cannot_reach_the_last_runs_masked_round(keys: dict[str, MaskingKeys]) -> None:
    """Same node, same settings, a new Flower run: fresh state, another session."""
    play = Round(keys)
    play.train(NAMES)  # bank-a, node 1, keeps round 1 of the first run
    fresh = Context(
        run_id=2, node_id=1, node_config=_ledger("bank-a"), state=RecordDict(), run_config={}
    )
    first = _train(1, NAMES)
    first.content[CONFIG_KEY][SESSION_KEY] = "run-2"
    admit(first, fresh, SETTINGS)  # the new run pins its own session
    query = _query(PHASE_REMASK, 1, NAMES[:3])
    query.content[CONFIG_KEY][SESSION_KEY] = "run-2"
    with pytest.raises(InboundMessageError, match="no masked update kept"):
        masked_query_reply(query, fresh, SETTINGS, keys["bank-a"])


def test_another_row_count_does_not_unlock_a_second_quantisation_of_one_start(
    keys: dict[str, MaskingKeys],
) -> None:
    """Red team 3, F1: the ledger was keyed by (start, N̂); a new N̂ was a new key."""
    play = Round(keys)
    play.train(NAMES)
    config = play.nodes["bank-a"].node_config  # the same ledger, a new run's fresh state
    fresh = Context(run_id=2, node_id=1, node_config=config, state=RecordDict(), run_config={})
    again = _train(1, NAMES, rows=2 * NORMALISER)
    again.content[CONFIG_KEY][SESSION_KEY] = "run-2"
    admit(again, fresh, SETTINGS)
    with pytest.raises(MaskReuseRefusedError, match="quantise again"):
        masked_train_reply(
            again,
            fresh,
            SETTINGS,
            keys["bank-a"],
            start=play.start,
            trained=play.start,
            count=ROWS["bank-a"],
            binding=SEEDED_START,
        )


def test_a_row_count_below_this_institutions_own_is_refused_before_quantising(
    keys: dict[str, MaskingKeys],
) -> None:
    """Red team 3, F2: never the codec's weight > 2 N̂ (a private count against N̂)."""
    node = _nodes()["bank-a"]
    msg = _train(1, NAMES, rows=ROWS["bank-a"] - 1)
    admit(msg, node, SETTINGS)
    with pytest.raises(TamperedAggregateError, match="row count"):
        masked_train_reply(
            msg,
            node,
            SETTINGS,
            keys["bank-a"],
            start=[np.zeros(s) for s in SHAPES],
            trained=[np.zeros(s) for s in SHAPES],
            count=ROWS["bank-a"],
            binding=SEEDED_START,
        )


@pytest.mark.parametrize("rows", [0.0, -5.0, float("inf"), float("nan"), 2.0**70])
def test_a_normaliser_no_federation_has_is_refused(rows: float) -> None:
    config = _config(1, NAMES)
    config[STATS_KEY] = [rows, 1.0, 2.0]
    with pytest.raises(InboundMessageError, match="row count"):
        federation_rows(config)
    config[STATS_KEY] = [float(NORMALISER), 1.0, 2.0]
    assert federation_rows(config) == NORMALISER
