"""The client mod that encrypts an institution's replies and decrypts what it receives.

Flower mods wrap a ClientApp: ``mod(message, context, call_next) -> reply``.
In encrypted mode — the kit's mode, never the message's — this one

* refuses any model, statistics or evaluation that arrives in the clear (the
  aggregator would choose the model the bank trains from and deploys), and any
  ciphertext made for another run or round than the message's place in the run
  (:mod:`clients.run_state`);
* verifies each aggregate's check value before using anything decrypted: it
  must be exactly the sum of at least ``max(2, min_institutions)`` distinct
  contributors' updates of this run and round (:func:`crypto.decrypt_average`),
  made from the same start as this institution's own round
  (:func:`~clients.run_state.expected_binding`), and its summed weight what
  those contributors may carry under the kit's ``max-weight``
  (:func:`~clients.bounds.check_summed_weight`);
* refuses, before decrypting anything, every message of a run in which it
  already refused an aggregate, and every message once its refusal budget
  across runs is spent (:mod:`clients.refusals`: the accept/refuse bit is a
  key-recovery oracle, red-team finding F5) — with the same fixed code;
* then hands the handlers plaintext weights and statistics;
* under a masked preset, settles a failure of the masked reply after the
  handlers (an N̂ below its own count, a non-finite delta) as any failure of
  the message (:mod:`clients.refusals`): it reads private values beside
  message values, so it closes the run (red team 3, F2);
* encrypts the handlers' reply, bound to the pinned session, the message's
  round, this institution's name and the model it worked on: training weights
  with the (capped) example count multiplied in, statistics as exact sums,
  evaluation metrics weighted by the test-set size. The reply then holds that
  ciphertext and nothing else: no metric, count, loss or timing leaves in the
  clear.

What a reply is bound to (the ``binding`` of :func:`crypto.encrypt_update`):

=====================  ===============================================================
reply                  binding
=====================  ===============================================================
statistics             nothing (:data:`~clients.run_state.SEEDED_START`)
training, round 1      :data:`~clients.run_state.SEEDED_START`: the seeded model
training, round r > 1  :func:`~clients.run_state.model_binding` of the exact
                       round-``r - 1`` aggregate the institution decrypted and
                       started from (remembered for the round's later checks)
evaluation, round r    :func:`~clients.run_state.model_binding` of the round-``r``
                       aggregate it evaluated; the final message's evaluation sum
                       must be bound to the final model that message carries
=====================  ===============================================================

So an aggregator that hands institutions different (genuine) starts cannot sum
their updates into a model any of them accepts as its own round's: without
this, with a quorum below the institution count, the movement bound's refusal
of an honest sum made from another start was a bit about the data.

An aggregate need not list this institution among its contributors: an honest
aggregator leaves out a reply that missed the round's deadline, and requiring
the institution's own name would then shut it out of every later round of the
run. How partial a sum may be is bounded by the quorum instead
(:func:`min_contributors`); which subset the aggregator sums is its choice, as
dropping replies always is.

In plaintext mode (the comparison mode of simulations) it passes messages
through. The secret context is read from the node config's ``secret-context``
path (deployment: the kit) or the run settings (simulation), and is never
logged or sent anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

import crypto
from clients.bounds import check_summed_weight
from clients.errors import ConfigError, InboundMessageError, KeyMaterialError
from clients.masked_round import MaskingKeys, apply_masked_aggregate
from clients.masked_sums import (
    example_count,
    masked_query,
    masked_reply,
    open_masked_evaluation,
    open_masked_sum,
    pin_statistics,
    seeds_of,
)
from clients.masking_keys import is_masked, masking_keys
from clients.refusals import check_may_decrypt, settle_failure
from clients.run_state import (
    SEEDED_START,
    Inbound,
    classify,
    expected_binding,
    model_binding,
    pinned_session,
    remember_binding,
)
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    EVALUATION_CIPHERTEXT_KEY,
    EVALUATION_KEY,
    EVALUATION_METRICS,
    METRICS_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
    STATS_SEEDS_KEY,
    FederationSettings,
    read_ciphertext,
    sealed_reply,
)

__all__ = ["contributor_name", "make_encryption_mod", "min_contributors"]

Mod = Callable[[Message, Context, ClientAppCallable], Message]
StartWeights = Callable[[Message, Context], list[np.ndarray]]


@lru_cache(maxsize=4)
def _secret_context(path: str) -> crypto.SecretContext:
    try:
        return crypto.SecretContext.load(path)
    except (OSError, crypto.CryptoError) as exc:
        raise KeyMaterialError(f"cannot load the secret context {path}: {exc}") from exc


def contributor_name(context: Context) -> str:
    """This institution's name in the check values: node config ``institution``.

    A deployment's runner sets it from the kit; in simulation each virtual
    institution is ``partition-<id>``.

    Raises
    ------
    ConfigError
        The node config names neither.
    """
    name = context.node_config.get("institution")
    if isinstance(name, str) and name:
        return name
    partition = context.node_config.get("partition-id")
    if isinstance(partition, int) and not isinstance(partition, bool):
        return f"partition-{partition}"
    raise ConfigError("the node config names no institution (key 'institution')")


def min_contributors(settings: FederationSettings) -> int:
    """Fewest contributors an aggregate may have: the kit's quorum, never below 2."""
    return max(2, settings.min_institutions)


def make_encryption_mod(
    settings_of: Callable[[Context], FederationSettings],
    start_weights: StartWeights | None = None,
) -> Mod:
    """Build the mod; ``settings_of`` gives the run's settings (the kit's) for a context.

    ``start_weights`` gives the plaintext model a message carries (the seeded
    initial model when none): a masked preset sends the *delta* from it.
    """

    def encryption_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        settings = settings_of(context)
        if settings.mode != "encrypted":
            return call_next(msg, context)
        inbound = classify(msg, settings)
        session = pinned_session(context, settings)
        # The bank's own key files; a failure to load them is key-independent (no cost).
        path = str(context.node_config.get("secret-context") or settings.secret_context)
        secret = _secret_context(path)
        name = contributor_name(context)
        keys = masking_keys(context, settings, secret, name) if is_masked(secret) else None
        if inbound.kind in ("roll-call", "remask", "reveal"):
            # Nothing is decrypted: the name, or the same update masked again, or one seed.
            return masked_query(msg, context, settings, inbound, keys, session)
        verified = False  # whether every aggregate of the message verified (refusals.py)
        try:
            binding = _decrypt_inbound(msg, context, secret, settings, inbound, session, keys)
            verified = True
            start: list[np.ndarray] | None = None
            if inbound.kind == "train":
                # The start of this round; the bounds mod keeps its weights as the movement
                # reference. Should it refuse the model, the two memories disagree and every
                # later model is refused (expected_binding): never a data-dependent answer.
                remember_binding(context, settings, inbound.round, binding)
                if keys is not None:
                    if start_weights is None:
                        raise ConfigError("a masked preset needs the start model's weights")
                    start = start_weights(msg, context)
            reply = call_next(msg, context)
        except Exception as exc:
            # Nothing, the run, or the run and the budget: clients.refusals decides (F5, R2).
            if inbound.kind != "stats":
                settle_failure(context, settings, session, exc, verified=verified)
            raise
        if reply.has_error():
            if inbound.kind != "stats":
                settle_failure(context, settings, session, None, verified=True)
            return reply
        if keys is not None:
            try:
                return masked_reply(msg, reply, context, settings, keys, inbound, binding, start)
            except Exception as exc:
                # A masked reply's failure reads the private data beside message values
                # (red team 3, F2): a settled refusal, never a free probe.
                if inbound.kind != "stats":
                    settle_failure(context, settings, session, exc, verified=True)
                raise
        if inbound.kind == "train":
            sealed = _encrypt_weights(reply, secret, inbound.round, session, name, binding)
        elif inbound.kind == "evaluate":
            sealed = _encrypt_evaluation(reply, secret, inbound.round, session, name, binding)
        elif inbound.kind == "stats":
            sealed = _encrypt_statistics(reply, secret, session, name)
        else:
            sealed = RecordDict({METRICS_KEY: MetricRecord({})})  # the final acknowledgement
        return Message(content=sealed, reply_to=msg)

    return encryption_mod


def _decrypt_inbound(
    msg: Message,
    context: Context,
    secret: crypto.SecretContext,
    settings: FederationSettings,
    inbound: Inbound,
    session: str,
    keys: MaskingKeys | None = None,
) -> bytes:
    """Check every record that arrived, decrypt the aggregates, refuse anything in clear.

    With ``keys`` (a masked preset) the model is a masked sum of deltas, applied
    to this institution's own start (:func:`~clients.masked_round.apply_masked_aggregate`).

    Returns the binding of the model the message carries (what a reply about
    it is bound to): :func:`~clients.run_state.model_binding` of its exact
    ciphertext, or :data:`~clients.run_state.SEEDED_START` when it carries none.
    """
    content = msg.content
    extra = sorted(key for key in content.array_records if key != ARRAYS_KEY)
    if extra:
        raise InboundMessageError(f"array records the protocol does not have: {extra}")
    config = content.config_records.get(CONFIG_KEY)
    if config is not None:
        for key in (STATS_KEY, EVALUATION_KEY):
            if key in config:
                raise InboundMessageError(f"{key!r} arrived in the clear in an encrypted run")
    data = _model_bytes(msg, inbound)
    binding = SEEDED_START if data is None else model_binding(data)
    if inbound.kind != "stats":
        blob = _bytes_entry(config, STATS_CIPHERTEXT_KEY, required=True)
        config = _require(config)
        # After the structural checks, so a closed run answers them as an open one (R6).
        check_may_decrypt(context, settings, session)  # F5: a closed run, a spent budget
        if keys is None:
            config[STATS_KEY] = _decrypt_statistics(secret, blob or b"", settings, session)
        else:
            sums, _ = open_masked_sum(
                keys, blob or b"", seeds_of(msg, STATS_SEEDS_KEY), purpose="stats", round_id=0,
                session=session, binding=SEEDED_START,
                min_contributors=min_contributors(settings),
            )  # fmt: skip
            pin_statistics(context, settings, keys, sums)  # one N̂ per federation (F1, F2)
            config[STATS_KEY] = [float(v) for v in sums]
        del config[STATS_CIPHERTEXT_KEY]
    evaluation = _bytes_entry(config, EVALUATION_CIPHERTEXT_KEY, required=False)
    if evaluation is not None:
        if inbound.kind != "final":
            raise InboundMessageError("an evaluation sum outside the final message")
        config = _require(config)
        if keys is None:
            means = _decrypt_evaluation(secret, evaluation, settings, session, binding)
        else:
            means = open_masked_evaluation(
                msg, keys, evaluation, settings, session, binding, min_contributors(settings)
            )
        config[EVALUATION_KEY] = means
        del config[EVALUATION_CIPHERTEXT_KEY]
    if data is None or inbound.model_round is None:
        return binding
    if keys is not None:
        weights = apply_masked_aggregate(msg, context, settings, keys)
        content[ARRAYS_KEY] = ArrayRecord(weights)
        return binding
    update = crypto.EncryptedUpdate.from_bytes(
        secret,
        data,
        expected_round=inbound.model_round,
        expected_session=session,
        expected_shapes=settings.shapes(),
    )
    weights, summed = crypto.decrypt_average(
        secret,
        update,
        min_contributors=min_contributors(settings),
        binding=expected_binding(context, settings, inbound.model_round),
    )
    cap = 1 if settings.dp_enabled else settings.max_weight
    check_summed_weight(summed, len(update.contributor_names), cap)
    content[ARRAYS_KEY] = ArrayRecord([w.astype(np.float32) for w in weights])
    return binding


def _model_bytes(msg: Message, inbound: Inbound) -> bytes | None:
    """The ciphertext of the global model ``msg`` must carry, or None when it must carry none.

    Raises
    ------
    InboundMessageError
        A model where none belongs, none where one is due, or one that is not a
        ciphertext (a model in the clear is refused in an encrypted run).
    """
    arrays = msg.content.array_records.get(ARRAYS_KEY)
    has_model = arrays is not None and len(arrays) > 0
    if inbound.model_round is None:
        if has_model:
            raise InboundMessageError(f"a model in a {inbound.kind} message that must carry none")
        return None
    if arrays is None or not has_model:
        raise InboundMessageError(f"a {inbound.kind} message without its global model")
    try:
        return read_ciphertext(arrays)
    except crypto.MalformedDataError as exc:
        raise InboundMessageError(
            f"the global model of a {inbound.kind} message is not a ciphertext "
            "(a model in the clear is refused in an encrypted run)"
        ) from exc


def _require(config: ConfigRecord | None) -> ConfigRecord:
    if config is None:
        raise InboundMessageError("a message without its config record")
    return config


def _bytes_entry(config: ConfigRecord | None, key: str, *, required: bool) -> bytes | None:
    value = config.get(key) if config is not None else None
    if value is None and not required:
        return None
    if not isinstance(value, bytes):
        raise InboundMessageError(f"{key!r} is missing or not bytes")
    return value


def _decrypt_statistics(
    secret: crypto.SecretContext, blob: bytes, settings: FederationSettings, session: str
) -> list[float]:
    """The federation's summed moments, if they are this run's verified statistics sum."""
    stats = crypto.EncryptedUpdate.from_bytes(
        secret, blob, expected_round=0, expected_session=session
    )
    if len(stats.shapes) != 1 or len(stats.shapes[0]) != 1:
        raise InboundMessageError("the statistics sum is not one vector")
    sums, _ = crypto.decrypt_sums(
        secret, stats, min_contributors=min_contributors(settings), binding=SEEDED_START
    )
    return [float(v) for v in sums[0]]


def _decrypt_evaluation(
    secret: crypto.SecretContext,
    blob: bytes,
    settings: FederationSettings,
    session: str,
    binding: bytes,
) -> list[float]:
    """The federation's mean metrics of the last round, if they are that round's verified sum
    of evaluations of the model bound as ``binding`` (the final model beside it)."""
    update = crypto.EncryptedUpdate.from_bytes(
        secret,
        blob,
        expected_round=settings.rounds,
        expected_session=session,
        expected_shapes=((len(EVALUATION_METRICS),),),
    )
    (values,), summed = crypto.decrypt_average(
        secret, update, min_contributors=min_contributors(settings), binding=binding
    )
    check_summed_weight(summed, len(update.contributor_names), settings.max_weight)
    return [float(v) for v in values]


def _encrypt_weights(
    reply: Message,
    secret: crypto.SecretContext,
    round_id: int,
    session: str,
    name: str,
    binding: bytes,
) -> RecordDict:
    arrays = reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
    weight = example_count(reply.content.metric_records[METRICS_KEY])
    return sealed_reply(
        crypto.encrypt_update(
            secret,
            arrays,
            weight,
            contributor=name,
            round_id=round_id,
            session=session,
            binding=binding,
        ).to_bytes()
    )


def _encrypt_statistics(
    reply: Message, secret: crypto.SecretContext, session: str, name: str
) -> RecordDict:
    arrays: Sequence[np.ndarray] = reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
    return sealed_reply(
        crypto.encrypt_sums(
            secret, arrays, contributor=name, round_id=0, session=session, binding=SEEDED_START
        ).to_bytes()
    )


def _encrypt_evaluation(
    reply: Message,
    secret: crypto.SecretContext,
    round_id: int,
    session: str,
    name: str,
    binding: bytes,
) -> RecordDict:
    """One encrypted vector of the metrics, weighted by the (capped) test-set size.

    In the clear they would tell the aggregator each institution's test-set size,
    and with it the size of its data, and its own model quality.
    """
    metrics = reply.content.metric_records[METRICS_KEY]
    missing = [name for name in EVALUATION_METRICS if name not in metrics]
    if missing:
        raise ValueError(f"the evaluation reply lacks {', '.join(missing)}")
    values = np.array([float(metrics[key]) for key in EVALUATION_METRICS])  # type: ignore[arg-type]
    return sealed_reply(
        crypto.encrypt_update(
            secret,
            [values],
            example_count(metrics),
            contributor=name,
            round_id=round_id,
            session=session,
            binding=binding,
        ).to_bytes()
    )
