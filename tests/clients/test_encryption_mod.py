"""The encryption mod refuses a global model no honest federation can produce."""

from __future__ import annotations

import dataclasses

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

import crypto
from clients import TamperedAggregateError, make_encryption_mod
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_CIPHERTEXT_KEY,
    EVALUATION_KEY,
    EVALUATION_METRICS,
    METRICS_KEY,
    NUM_EXAMPLES_KEY,
    ROUND_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
    FederationSettings,
    ciphertext_record,
    read_ciphertext,
)

ROWS = (120, 80)


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> tuple[crypto.SecretContext, str]:
    context = crypto.generate_secret_context("lean")
    path = tmp_path_factory.mktemp("keys") / "secret.ctx"
    context.save(path)
    return context, str(path)


def _updates(secret: crypto.SecretContext, weights: list[int]) -> list[crypto.EncryptedUpdate]:
    rng = np.random.default_rng(5)
    return [
        crypto.encrypt_update(secret, [rng.normal(size=(1, 4)), rng.normal(size=1)], w, round_id=1)
        for w in weights
    ]


def _message(
    secret: crypto.SecretContext,
    model_weights: list[int],
    model: crypto.EncryptedUpdate | None = None,
) -> Message:
    if model is None:
        model = crypto.aggregate(secret, _updates(secret, model_weights))
    stats = crypto.aggregate(
        secret,
        [crypto.encrypt_sums(secret, [np.array([float(n), 1.0, 2.0, 3.0, 4.0])]) for n in ROWS],
    )
    config = ConfigRecord({ROUND_KEY: 2, SESSION_KEY: "s", STATS_CIPHERTEXT_KEY: stats.to_bytes()})
    content = RecordDict({ARRAYS_KEY: ciphertext_record(model.to_bytes()), CONFIG_KEY: config})
    return Message(content=content, dst_node_id=1, message_type=MessageType.EVALUATE)


def _run(message: Message, path: str) -> Message:
    settings = FederationSettings(mode="encrypted", secret_context=path)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    seen: list[Message] = []

    def handler(msg: Message, ctx: Context) -> Message:
        seen.append(msg)
        return Message(content=RecordDict(), reply_to=msg)

    make_encryption_mod(lambda _: settings)(message, context, handler)
    return seen[0]


def test_honest_global_model_is_decrypted_for_the_handler(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    seen = _run(_message(context, list(ROWS)), path)
    arrays = seen.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
    assert [a.shape for a in arrays] == [(1, 4), (1,)]
    stats = seen.content.config_records[CONFIG_KEY][STATS_KEY]
    assert stats[0] == pytest.approx(sum(ROWS), abs=1e-3)


def test_inflated_summed_weight_is_refused(secret: tuple[crypto.SecretContext, str]) -> None:
    context, path = secret
    # The same institution's update counted three times: more rows than exist.
    tampered = _message(context, [ROWS[0], ROWS[0], ROWS[0]])
    with pytest.raises(TamperedAggregateError, match="summed weight"):
        _run(tampered, path)


@pytest.mark.parametrize(
    ("minuend", "subtrahend"),
    [(ROWS[0], ROWS[0]), (ROWS[1], ROWS[0])],
    ids=["zero", "negative"],
)
def test_summed_weight_of_zero_or_less_is_refused(
    secret: tuple[crypto.SecretContext, str], minuend: int, subtrahend: int
) -> None:
    context, path = secret
    # An aggregator that subtracts one update from another (no key needed for that)
    # hands out a model whose summed weight is 0 or negative: no honest sum does.
    a, b = _updates(context, [minuend, subtrahend])
    tampered = dataclasses.replace(
        a, vectors=tuple(x - y for x, y in zip(a.vectors, b.vectors, strict=True))
    )
    with pytest.raises(TamperedAggregateError, match="summed weight is 0 or less"):
        _run(_message(context, [], tampered), path)


def test_plaintext_mode_passes_messages_through(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    _, path = secret
    settings = FederationSettings(mode="plaintext", secret_context=path)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    content = RecordDict({ARRAYS_KEY: ArrayRecord([np.ones(3)])})
    message = Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)
    seen: list[Message] = []

    def handler(msg: Message, ctx: Context) -> Message:
        seen.append(msg)
        return Message(content=RecordDict(), reply_to=msg)

    make_encryption_mod(lambda _: settings)(message, context, handler)
    assert seen[0].content.array_records[ARRAYS_KEY].to_numpy_ndarrays()[0].tolist() == [1, 1, 1]


def test_an_evaluation_reaches_the_aggregator_encrypted_with_its_size_inside(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    reported = {"auc": 0.71, "ks": 0.33, "brier": 0.19, "log_loss": 0.52, "approval_rate": 0.4}
    settings = FederationSettings(mode="encrypted", secret_context=path)
    node = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})

    def handler(msg: Message, ctx: Context) -> Message:
        metrics = MetricRecord({**reported, NUM_EXAMPLES_KEY: 57})
        return Message(content=RecordDict({METRICS_KEY: metrics}), reply_to=msg)

    reply = make_encryption_mod(lambda _: settings)(_message(context, [120, 80]), node, handler)
    assert not reply.has_error()
    assert dict(reply.content.metric_records[METRICS_KEY]) == {}  # no metric, no size
    update = crypto.EncryptedUpdate.from_bytes(
        context, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    )
    assert (update.round_id, update.shapes) == (2, ((len(EVALUATION_METRICS),),))
    (values,), weight = crypto.decrypt_average(context, update)
    assert round(weight) == 57
    np.testing.assert_allclose(values, [reported[n] for n in EVALUATION_METRICS], atol=1e-5)


def test_the_final_message_opens_the_federation_evaluation_or_refuses_it(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    sizes = {50: [0.7, 0.3, 0.2, 0.5, 0.4], 150: [0.8, 0.5, 0.1, 0.3, 0.6]}
    summed = crypto.aggregate(
        context,
        [crypto.encrypt_update(context, [np.array(v)], n, round_id=3) for n, v in sizes.items()],
    )
    message = _message(context, [120, 80])
    message.content.config_records[CONFIG_KEY][EVALUATION_CIPHERTEXT_KEY] = summed.to_bytes()
    seen = _run(message, path).content.config_records[CONFIG_KEY]
    assert EVALUATION_CIPHERTEXT_KEY not in seen
    expected = (50 * np.array(sizes[50]) + 150 * np.array(sizes[150])) / 200
    np.testing.assert_allclose(seen[EVALUATION_KEY], expected, atol=1e-5)

    # A model update where the evaluation belongs is refused by its shape.
    message = _message(context, [120, 80])
    wrong = crypto.aggregate(context, _updates(context, [120, 80])).to_bytes()
    message.content.config_records[CONFIG_KEY][EVALUATION_CIPHERTEXT_KEY] = wrong
    with pytest.raises(crypto.ShapeMismatchError):
        _run(message, path)


def test_a_training_reply_carries_the_update_and_nothing_in_clear(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    settings = FederationSettings(mode="encrypted", secret_context=path)
    node = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    trained = [np.full((1, 4), 0.25), np.array([-0.5])]

    def handler(msg: Message, ctx: Context) -> Message:
        metrics = MetricRecord({NUM_EXAMPLES_KEY: 30, "train-loss": 0.41})
        content = RecordDict({ARRAYS_KEY: ArrayRecord(trained), METRICS_KEY: metrics})
        return Message(content=content, reply_to=msg)

    message = _message(context, [120, 80])
    message.metadata.__dict__["_message_type"] = MessageType.TRAIN
    reply = make_encryption_mod(lambda _: settings)(message, node, handler)
    assert dict(reply.content.metric_records[METRICS_KEY]) == {}  # no size, no loss
    update = crypto.EncryptedUpdate.from_bytes(
        context, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    )
    weights, weight = crypto.decrypt_average(context, update)
    assert round(weight) == 30
    for got, sent in zip(weights, trained, strict=True):
        np.testing.assert_allclose(got, sent, atol=1e-5)
