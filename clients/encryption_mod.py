"""The client mod that encrypts an institution's replies and decrypts what it receives.

Flower mods wrap a ClientApp: ``mod(message, context, call_next) -> reply``.
In encrypted mode this one

* decrypts the encrypted global model (an aggregate of the previous round's
  updates) into plaintext weights, and the encrypted federation statistics into
  plaintext sums, before the handlers see the message;
* encrypts the handlers' reply: training weights with the example count
  multiplied in and carried inside the ciphertext (the count then leaves the
  reply's metrics, so the aggregator never sees it), statistics as exact sums,
  and evaluation metrics the way of training weights, weighted by the test-set
  size (no metric or count reaches the aggregator in the clear).

In plaintext mode it passes messages through untouched. The secret context is
read from the node config's ``secret-context`` path (deployment: the kit) or
the run settings (simulation), and is never logged or sent anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord
from flwr.clientapp.typing import ClientAppCallable

import crypto
from clients.errors import TamperedAggregateError
from crossfed.protocol import (
    ARRAYS_KEY,
    CIPHERTEXT_KEY,
    CONFIG_KEY,
    DP_SHARES_KEY,
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

__all__ = ["make_encryption_mod"]

Mod = Callable[[Message, Context, ClientAppCallable], Message]


@lru_cache(maxsize=4)
def _secret_context(path: str) -> crypto.SecretContext:
    return crypto.SecretContext.load(path)


def make_encryption_mod(settings_of: Callable[[Context], FederationSettings]) -> Mod:
    """Build the mod; ``settings_of`` gives the run's settings for a message's context."""

    def encryption_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        settings = settings_of(context)
        if settings.mode != "encrypted":
            return call_next(msg, context)
        path = str(context.node_config.get("secret-context") or settings.secret_context)
        secret = _secret_context(path)
        _decrypt_inbound(msg, secret, settings)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        kind = msg.metadata.message_type
        config = msg.content.config_records.get(CONFIG_KEY)
        session = str(config.get(SESSION_KEY, "")) if config is not None else ""
        if kind == MessageType.TRAIN and config is not None:
            round_id = _as_int(config.get(ROUND_KEY, 0))
            _encrypt_outbound(reply, secret, round_id, session, sums=False)
        elif kind == MessageType.EVALUATE and config is not None:
            _encrypt_evaluation(reply, secret, _as_int(config.get(ROUND_KEY, 0)), session)
        elif kind == MessageType.QUERY:
            _encrypt_outbound(reply, secret, 0, session, sums=True)
        return reply

    return encryption_mod


def _decrypt_inbound(
    msg: Message, secret: crypto.SecretContext, settings: FederationSettings
) -> None:
    config = msg.content.config_records.get(CONFIG_KEY)
    total_rows: float | None = None
    if config is not None and STATS_CIPHERTEXT_KEY in config:
        blob = config[STATS_CIPHERTEXT_KEY]
        if not isinstance(blob, bytes):
            raise crypto.MalformedDataError("encrypted statistics must be bytes")
        stats = crypto.EncryptedUpdate.from_bytes(secret, blob)
        sums, _ = crypto.decrypt_sums(secret, stats)
        flat = np.concatenate([s.ravel() for s in sums])
        total_rows = float(flat[0])
        config[STATS_KEY] = [float(v) for v in flat]
        del config[STATS_CIPHERTEXT_KEY]
    if config is not None and EVALUATION_CIPHERTEXT_KEY in config:
        config[EVALUATION_KEY] = _decrypt_evaluation(secret, config[EVALUATION_CIPHERTEXT_KEY])
        del config[EVALUATION_CIPHERTEXT_KEY]
    arrays = msg.content.array_records.get(ARRAYS_KEY)
    if arrays is not None and CIPHERTEXT_KEY in arrays:
        update = crypto.EncryptedUpdate.from_bytes(secret, read_ciphertext(arrays))
        try:
            weights, summed_weight = crypto.decrypt_average(secret, update)
        except crypto.DecryptionError as exc:
            # The fingerprint matched this institution's key, so an honest sum decrypts;
            # one that does not (summed weight 0 or less, altered slots) was tampered with.
            raise TamperedAggregateError(
                "the global model does not decrypt to a valid sum (its summed weight is "
                "0 or less, or its ciphertext was altered); refusing to apply it"
            ) from exc
        _check_summed_weight(summed_weight, update.count, total_rows, config, settings)
        msg.content[ARRAYS_KEY] = ArrayRecord([w.astype(np.float32) for w in weights])


def _decrypt_evaluation(secret: crypto.SecretContext, blob: object) -> list[float]:
    """The federation's mean metrics from their encrypted sum; refuse what is not one."""
    if not isinstance(blob, bytes):
        raise crypto.MalformedDataError("the encrypted evaluation must be bytes")
    update = crypto.EncryptedUpdate.from_bytes(
        secret, blob, expected_shapes=((len(EVALUATION_METRICS),),)
    )
    try:
        (values,), _ = crypto.decrypt_average(secret, update)
    except crypto.DecryptionError as exc:
        raise TamperedAggregateError(
            "the federation's evaluation does not decrypt to a valid sum; refusing it"
        ) from exc
    return [float(v) for v in values]


def _check_summed_weight(
    summed: float,
    count: int,
    total_rows: float | None,
    config: ConfigRecord | None,
    settings: FederationSettings,
) -> None:
    """Refuse a global model whose summed weight honest institutions cannot produce."""
    if settings.dp_enabled:
        shares = config.get(DP_SHARES_KEY) if config is not None else None
        bound = float(shares) if isinstance(shares, int) else float(count)
    elif total_rows is not None:
        bound = total_rows
    else:
        return
    if not 0.5 <= summed <= bound + 0.5:
        raise TamperedAggregateError(
            f"the global model's summed weight {summed:.1f} is outside [1, {bound:.0f}] "
            "that the federation's institutions can contribute; refusing to apply it"
        )


def _encrypt_outbound(
    reply: Message, secret: crypto.SecretContext, round_id: int, session: str, *, sums: bool
) -> None:
    record = reply.content.array_records[ARRAYS_KEY]
    metrics = reply.content.metric_records[METRICS_KEY]
    arrays = record.to_numpy_ndarrays()
    if sums:
        update = crypto.encrypt_sums(secret, arrays, round_id=round_id, session=session)
    else:
        update = crypto.encrypt_update(
            secret,
            arrays,
            _as_int(metrics[NUM_EXAMPLES_KEY]),
            round_id=round_id,
            session=session,
        )
    reply.content[ARRAYS_KEY] = ciphertext_record(update.to_bytes())
    # Nothing else the handler measured (the example count, the training loss) is
    # sent: the aggregator would have no use for it but to learn about this bank.
    reply.content[METRICS_KEY] = MetricRecord({})


def _encrypt_evaluation(
    reply: Message, secret: crypto.SecretContext, round_id: int, session: str
) -> None:
    """Replace the plaintext metrics and test-set size by one encrypted, weighted vector.

    In the clear they would tell the aggregator each institution's test-set size,
    and with it the size of its data, and its own model quality.
    """
    metrics = reply.content.metric_records.get(METRICS_KEY)
    if metrics is None:
        return  # nothing reported, nothing to hide
    missing = [name for name in EVALUATION_METRICS if name not in metrics]
    if missing:
        raise ValueError(f"the evaluation reply lacks {', '.join(missing)}")
    values = np.array([float(metrics[name]) for name in EVALUATION_METRICS])  # type: ignore[arg-type]
    update = crypto.encrypt_update(
        secret, [values], _as_int(metrics[NUM_EXAMPLES_KEY]), round_id=round_id, session=session
    )
    reply.content[ARRAYS_KEY] = ciphertext_record(update.to_bytes())
    reply.content[METRICS_KEY] = MetricRecord({})


def _as_int(value: object) -> int:
    """A config or metric value that must be a whole number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise crypto.InvalidWeightError(f"expected a whole number, got {value!r}")
    return int(value)
