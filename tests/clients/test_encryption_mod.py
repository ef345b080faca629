"""The encryption mod applies only this run's verified sums and lets nothing out in clear."""

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
from clients import InboundMessageError, TamperedAggregateError, make_encryption_mod
from clients.run_state import SEEDED_START, admit, model_binding, remember_start
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_CIPHERTEXT_KEY,
    EVALUATION_KEY,
    EVALUATION_METRICS,
    FINAL_QUERY,
    METRICS_KEY,
    NUM_EXAMPLES_KEY,
    PHASE_KEY,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
    FederationSettings,
    ciphertext_record,
    read_ciphertext,
)

ROWS = (120, 80, 60)
SESSION = "s"


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


def _settings(path: str, **overrides: object) -> FederationSettings:
    values: dict[str, object] = {
        "mode": "encrypted",
        "secret_context": path,
        "min_institutions": 3,
        "institutions": 3,
    }
    values.update(overrides)
    return FederationSettings(**values)  # type: ignore[arg-type]


def _updates(
    secret: crypto.SecretContext,
    weights: list[int],
    round_id: int = 1,
    session: str = SESSION,
    binding: bytes = SEEDED_START,
) -> list[crypto.EncryptedUpdate]:
    rng = np.random.default_rng(5)
    return [
        crypto.encrypt_update(
            secret,
            [rng.normal(size=(1, 4)), rng.normal(size=1)],
            w,
            contributor=f"bank-{i}",
            round_id=round_id,
            session=session,
            binding=binding,
        )
        for i, w in enumerate(weights)
    ]


def _stats(secret: crypto.SecretContext) -> crypto.EncryptedUpdate:
    return crypto.aggregate(
        secret,
        [
            crypto.encrypt_sums(
                secret,
                [np.array([float(n), 1.0, 2.0, 3.0, 4.0])],
                contributor=f"bank-{i}",
                session=SESSION,
            )
            for i, n in enumerate(ROWS)
        ],
    )


def _message(
    secret: crypto.SecretContext,
    model: crypto.EncryptedUpdate | ArrayRecord | None = None,
    *,
    kind: str = MessageType.TRAIN,
    server_round: int = 2,
) -> Message:
    if model is None:
        model = crypto.aggregate(secret, _updates(secret, list(ROWS), round_id=server_round - 1))
    config = ConfigRecord(
        {
            ROUND_KEY: server_round,
            SESSION_KEY: SESSION,
            STATS_CIPHERTEXT_KEY: _stats(secret).to_bytes(),
        }
    )
    record = model if isinstance(model, ArrayRecord) else ciphertext_record(model.to_bytes())
    content = RecordDict({ARRAYS_KEY: record, CONFIG_KEY: config})
    return Message(content=content, dst_node_id=1, message_type=kind)


def _node() -> Context:
    return Context(
        run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config={}
    )


def _run(
    message: Message,
    settings: FederationSettings,
    handler_reply: RecordDict | None = None,
    node: Context | None = None,
) -> tuple[Message, Message]:
    """Admit ``message`` and pass it through the mod; return (what the handler saw, reply)."""
    context = node or _node()
    seen: list[Message] = []

    def handler(msg: Message, ctx: Context) -> Message:
        seen.append(msg)
        return Message(content=handler_reply or RecordDict(), reply_to=msg)

    admit(message, context, settings)
    reply = make_encryption_mod(lambda _: settings)(message, context, handler)
    return seen[0], reply


def test_an_honest_global_model_is_verified_and_decrypted_for_the_handler(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    trained = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord([np.zeros((1, 4)), np.zeros(1)]),
            METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: 30}),
        }
    )
    seen, _ = _run(_message(context), _settings(path), trained)
    arrays = seen.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
    assert [a.shape for a in arrays] == [(1, 4), (1,)]
    stats = seen.content.config_records[CONFIG_KEY][STATS_KEY]
    assert isinstance(stats, list)
    assert stats[0] == pytest.approx(sum(ROWS), abs=1e-3)


@pytest.mark.parametrize("attack", ["doubled", "subtracted", "shifted", "one-update"])
def test_a_transformed_aggregate_fails_its_check_value(
    secret: tuple[crypto.SecretContext, str], attack: str
) -> None:
    context, path = secret
    a, b, c = _updates(context, list(ROWS))
    summed = crypto.aggregate(context, [a, b, c])
    if attack == "doubled":  # every row counted twice: the summed weight the old check read
        tampered = dataclasses.replace(summed, vectors=tuple(v + v for v in summed.vectors))
    elif attack == "subtracted":
        tampered = dataclasses.replace(
            summed, vectors=tuple(x - y for x, y in zip(summed.vectors, b.vectors, strict=True))
        )
    elif attack == "shifted":
        plain = [0.0] * summed.vectors[0].size()
        plain[0] = 3.0
        tampered = dataclasses.replace(summed, vectors=(summed.vectors[0] + plain,))
    else:  # one bank's update passed off as the sum of three
        tampered = dataclasses.replace(a, count=3, contributors=summed.contributors)
    with pytest.raises(crypto.IntegrityError):
        _run(_message(context, tampered), _settings(path))


def test_fewer_contributors_than_the_quorum_are_refused(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    partial = crypto.aggregate(context, _updates(context, list(ROWS[:2])))
    with pytest.raises(crypto.IntegrityError):
        _run(_message(context, partial), _settings(path))
    # Even a quorum of 1 in the kit is read as 2: a "sum" of one update is someone's update.
    single = crypto.aggregate(context, _updates(context, [ROWS[0]]))
    with pytest.raises(crypto.IntegrityError):
        _run(_message(context, single), _settings(path, min_institutions=1))


def test_a_summed_weight_over_the_kit_cap_is_refused(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    # A malicious institution holds the key: its update verifies, but claims 10,000 rows.
    summed = crypto.aggregate(context, _updates(context, [ROWS[0], ROWS[1], 10_000]))
    with pytest.raises(TamperedAggregateError, match="max-weight") as caught:
        _run(_message(context, summed), _settings(path, max_weight=500))
    assert "10" not in str(caught.value)  # the text names the check, not the weight
    trained = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord([np.zeros((1, 4)), np.zeros(1)]),
            METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: 30}),
        }
    )
    _, reply = _run(_message(context, summed), _settings(path, max_weight=10_000), trained)
    assert not reply.has_error()  # within the cap


def test_a_plaintext_model_is_refused_in_an_encrypted_run(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    chosen = ArrayRecord([np.full((1, 4), 7.0, dtype=np.float32), np.ones(1, dtype=np.float32)])
    with pytest.raises(InboundMessageError, match="not a ciphertext"):
        _run(_message(context, chosen), _settings(path))


def test_a_ciphertext_of_another_round_or_run_is_refused(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    stale = crypto.aggregate(context, _updates(context, list(ROWS), round_id=1))
    with pytest.raises(crypto.ContextMismatchError):
        _run(_message(context, stale, server_round=3), _settings(path))
    other_run = crypto.aggregate(context, _updates(context, list(ROWS), session="other"))
    with pytest.raises(crypto.ContextMismatchError):
        _run(_message(context, other_run), _settings(path))


def test_plaintext_mode_passes_messages_through(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    _, path = secret
    settings = FederationSettings(mode="plaintext", secret_context=path)
    content = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord([np.ones(3)]),
            CONFIG_KEY: ConfigRecord({ROUND_KEY: 2, SESSION_KEY: SESSION}),
        }
    )
    message = Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)
    seen, _ = _run(message, settings)
    assert seen.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()[0].tolist() == [1, 1, 1]


def test_an_evaluation_reaches_the_aggregator_encrypted_with_its_size_inside(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    reported = {"auc": 0.71, "ks": 0.33, "brier": 0.19, "log_loss": 0.52, "approval_rate": 0.4}
    handler_reply = RecordDict({METRICS_KEY: MetricRecord({**reported, NUM_EXAMPLES_KEY: 57})})
    model = crypto.aggregate(context, _updates(context, list(ROWS), round_id=2))
    message = _message(context, model, kind=MessageType.EVALUATE, server_round=2)
    _, reply = _run(message, _settings(path), handler_reply)
    assert not reply.has_error()
    assert set(reply.content) == {ARRAYS_KEY, METRICS_KEY}
    assert dict(reply.content.metric_records[METRICS_KEY]) == {}  # no metric, no size
    update = crypto.EncryptedUpdate.from_bytes(
        context, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    )
    assert (update.round_id, update.session, update.shapes) == (
        2,
        SESSION,
        ((len(EVALUATION_METRICS),),),
    )
    assert update.contributor_names == ("partition-0",)
    (values,), weight = crypto.decrypt_average(context, update)
    assert round(weight) == 57
    np.testing.assert_allclose(values, [reported[n] for n in EVALUATION_METRICS], atol=1e-5)


def _final(context: crypto.SecretContext, model: bytes, evaluation: bytes, rounds: int) -> Message:
    message = _message(context, ciphertext_record(model), kind=FINAL_QUERY, server_round=rounds)
    config = message.content.config_records[CONFIG_KEY]
    del config[ROUND_KEY], config[SESSION_KEY]  # the final message names neither
    config[EVALUATION_CIPHERTEXT_KEY] = evaluation
    return message


def test_the_final_message_opens_the_federation_evaluation_or_refuses_it(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    settings = _settings(path, rounds=3)
    model = crypto.aggregate(context, _updates(context, list(ROWS), round_id=3)).to_bytes()
    sizes = {50: [0.7, 0.3, 0.2, 0.5, 0.4], 150: [0.8, 0.5, 0.1, 0.3, 0.6], 100: [0.5] * 5}

    def evaluations(evaluated: bytes) -> bytes:
        """The round's evaluation sum, each made on the model serialised as ``evaluated``."""
        return crypto.aggregate(
            context,
            [
                crypto.encrypt_update(
                    context,
                    [np.array(v)],
                    n,
                    contributor=f"bank-{n}",
                    round_id=3,
                    session=SESSION,
                    binding=model_binding(evaluated),
                )
                for n, v in sizes.items()
            ],
        ).to_bytes()

    node = _node()
    pin = Message(
        content=RecordDict(
            {CONFIG_KEY: ConfigRecord({PHASE_KEY: PHASE_STATS, SESSION_KEY: SESSION})}
        ),
        dst_node_id=1,
        message_type=MessageType.QUERY,
    )
    admit(pin, node, settings)
    seen, reply = _run(_final(context, model, evaluations(model), 3), settings, node=node)
    config = seen.content.config_records[CONFIG_KEY]
    assert EVALUATION_CIPHERTEXT_KEY not in config
    expected = sum(n * np.array(v) for n, v in sizes.items()) / sum(sizes)
    opened = config[EVALUATION_KEY]
    assert isinstance(opened, list)
    np.testing.assert_allclose(np.array(opened), np.asarray(expected), atol=1e-5)
    assert dict(reply.content.metric_records[METRICS_KEY]) == {}  # nothing else comes back

    # A model update where the evaluation belongs is refused by its shape.
    wrong = crypto.aggregate(context, _updates(context, list(ROWS), round_id=3))
    with pytest.raises(crypto.ShapeMismatchError):
        _run(_final(context, model, wrong.to_bytes(), 3), settings, node=node)
    # Evaluations of another model (another aggregate of round 3) are refused.
    other = crypto.aggregate(context, _updates(context, list(ROWS), round_id=3)).to_bytes()
    with pytest.raises(crypto.IntegrityError):
        _run(_final(context, model, evaluations(other), 3), settings, node=node)


def test_a_training_reply_carries_the_update_and_nothing_in_clear(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    trained = [np.full((1, 4), 0.25), np.array([-0.5])]
    handler_reply = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord(trained),
            METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: 30, "train-loss": 0.41, "cpu-s": 1.5}),
        }
    )
    _, reply = _run(_message(context), _settings(path), handler_reply)
    assert set(reply.content) == {ARRAYS_KEY, METRICS_KEY}
    assert dict(reply.content.metric_records[METRICS_KEY]) == {}  # no size, loss or time
    update = crypto.EncryptedUpdate.from_bytes(
        context, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    )
    assert (update.round_id, update.session, update.contributor_names) == (
        2,
        SESSION,
        ("partition-0",),
    )
    weights, weight = crypto.decrypt_average(context, update)
    assert round(weight) == 30
    for got, sent in zip(weights, trained, strict=True):
        np.testing.assert_allclose(got, sent, atol=1e-5)


def test_an_institution_needs_a_name_for_its_check_values(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    from clients import ConfigError

    context, path = secret
    nameless = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    handler_reply = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord([np.zeros((1, 4)), np.zeros(1)]),
            METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: 3}),
        }
    )
    with pytest.raises(ConfigError, match="institution"):
        _run(_message(context), _settings(path), handler_reply, node=nameless)
    named = Context(
        run_id=1,
        node_id=1,
        node_config={"institution": "bank-eu"},
        state=RecordDict(),
        run_config={},
    )
    _, reply = _run(_message(context), _settings(path), handler_reply, node=named)
    update = crypto.EncryptedUpdate.from_bytes(
        context, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    )
    assert update.contributor_names == ("bank-eu",)


def _trained_reply() -> RecordDict:
    return RecordDict(
        {
            ARRAYS_KEY: ArrayRecord([np.zeros((1, 4)), np.zeros(1)]),
            METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: 30}),
        }
    )


def _binding_of(reply: Message, context: crypto.SecretContext) -> bytes:
    return crypto.EncryptedUpdate.from_bytes(
        context, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    ).binding


def _train_as_bank(
    message: Message, settings: FederationSettings, node: Context
) -> tuple[Message, Message]:
    """Run a train message through the mod with a handler that, as the bounds mod does,
    remembers the model it starts from."""
    seen: list[Message] = []

    def handler(msg: Message, ctx: Context) -> Message:
        seen.append(msg)
        weights = msg.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
        remember_start(ctx, settings, 2, weights)
        return Message(content=_trained_reply(), reply_to=msg)

    admit(message, node, settings)
    reply = make_encryption_mod(lambda _: settings)(message, node, handler)
    return seen[0], reply


def test_every_reply_is_bound_to_the_model_it_was_made_from(
    secret: tuple[crypto.SecretContext, str],
) -> None:
    context, path = secret
    settings = _settings(path)
    start = crypto.aggregate(context, _updates(context, list(ROWS))).to_bytes()
    _, reply = _run(_message(context, ciphertext_record(start)), settings, _trained_reply())
    assert _binding_of(reply, context) == model_binding(start)

    first = _message(context, ArrayRecord(), server_round=1)  # round 1: the seeded model
    _, reply = _run(first, settings, _trained_reply())
    assert _binding_of(reply, context) == SEEDED_START

    reported = {name: 0.5 for name in EVALUATION_METRICS}
    evaluated = crypto.aggregate(context, _updates(context, list(ROWS), round_id=2)).to_bytes()
    message = _message(
        context, ciphertext_record(evaluated), kind=MessageType.EVALUATE, server_round=2
    )
    handler_reply = RecordDict({METRICS_KEY: MetricRecord({**reported, NUM_EXAMPLES_KEY: 9})})
    _, reply = _run(message, settings, handler_reply)
    assert _binding_of(reply, context) == model_binding(evaluated)
    assert model_binding(evaluated) != model_binding(start)


def test_a_model_is_applied_only_if_made_from_this_institutions_own_start(
    secret: tuple[crypto.SecretContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The movement oracle's precondition (red team F1): an institution is handed one
    genuine round-1 sum as its start, and round-2 sums of contributors that started from
    another genuine round-1 sum are refused before anything is decrypted."""
    # This test probes many aggregates of one run, each refused on its own merits; the
    # per-run closure (clients.refusals, red team F5) would refuse all but the first
    # before decrypting. It is tested in test_attack_institution_key_oracle.py.
    monkeypatch.setattr("clients.encryption_mod.check_may_decrypt", lambda *_: None)
    context, path = secret
    settings = _settings(path, min_institutions=2)
    node = _node()
    own = crypto.aggregate(context, _updates(context, list(ROWS[:2]))).to_bytes()
    other = crypto.aggregate(context, _updates(context, list(ROWS[1:]))).to_bytes()
    _, reply = _train_as_bank(_message(context, ciphertext_record(own)), settings, node)
    assert not reply.has_error()

    def evaluate(binding: bytes, server_round: int = 2) -> Message:
        model = crypto.aggregate(
            context, _updates(context, list(ROWS), round_id=server_round, binding=binding)
        )
        return _message(context, model, kind=MessageType.EVALUATE, server_round=server_round)

    handler_reply = RecordDict(
        {METRICS_KEY: MetricRecord({**dict.fromkeys(EVALUATION_METRICS, 0.5), NUM_EXAMPLES_KEY: 9})}
    )
    _, accepted = _run(evaluate(model_binding(own)), settings, handler_reply, node=node)
    assert not accepted.has_error()
    for foreign in (model_binding(other), SEEDED_START):
        with pytest.raises(crypto.IntegrityError):
            _run(evaluate(foreign), settings, handler_reply, node=node)
    # A header that claims the institution's start for updates made from another one
    # fails the check value itself (the binding is in the key derivation).
    lying = crypto.aggregate(
        context, _updates(context, list(ROWS), round_id=2, binding=model_binding(other))
    )
    lying = dataclasses.replace(lying, binding=model_binding(own))
    with pytest.raises(crypto.IntegrityError):
        _run(
            _message(context, lying, kind=MessageType.EVALUATE, server_round=2),
            settings,
            handler_reply,
            node=node,
        )
    # A round this institution did not start has no start to compare with: refused.
    with pytest.raises(TamperedAggregateError):
        _run(evaluate(model_binding(own), server_round=3), settings, handler_reply, node=node)
