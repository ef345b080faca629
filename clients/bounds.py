"""How far one institution can move the federation's model: a weight cap and a norm bound.

Encrypted aggregation cannot run robust aggregators (Krum, the median) on
ciphertexts, so a malicious institution's update is bounded instead, by two
settings of the kit (:class:`~crossfed.protocol.FederationSettings`):

``max-weight``
    An honest institution weights its update by ``min(rows, max_weight)``
    (:func:`capped_weight`); a global model whose decrypted summed weight is
    outside ``[contributors, contributors x max_weight]`` is refused
    (:func:`check_summed_weight`, in the encryption mod).
``max-update-norm``
    An honest institution clips its own update, trained minus start, to L2
    norm ``max_update_norm`` (:func:`clip_update`); every institution refuses a
    global model further than that from the model it started the round from
    (:func:`check_movement`). A weighted average of updates inside the ball is
    inside the ball (convexity), so an honest round always passes.

**The bound** (what ``tests/security/test_attack_institution_influence.py``
measures): whatever one institution sends — any values, any weight, through the
real encryption — a global model that an honest institution applies is within

    ``A = max_update_norm + dp_allowance + ckks_slack(d)``

(L2, all layers together) of the model that institution started the round
from, per round since, where ``ckks_slack(d) = 1e-3 + 1e-4 sqrt(d)`` covers
CKKS's decryption noise, ``dp_allowance`` is 0 without distributed DP and
``z C (sqrt(d) + 10) / sqrt(k max(2, q))`` with it (``z`` the noise
multiplier, ``C`` the clip, ``d`` the parameter count, ``k`` the kit's
institutions, ``q`` its quorum: ten standard deviations beyond the norm of the
averaged noise, exceeded with probability below ``1e-21``). Anything further is
refused with ``INTEGRITY_FAILED`` and the institution keeps its model. The
bound does not stop a malicious institution from moving the model *within*
``A`` each round, in the direction it likes (its share of the average is at
most ``max_weight`` over the summed weight, and the average is then held to
the ball); that limit of encrypted aggregation is stated in the docs.

A failed check depends on decrypted values, so it is a one-bit answer about the
sum. It can fail only when an institution sent a bad update: the aggregate's
check value already verified that the aggregator added nothing, and, in
encrypted mode, that every contributor started the round from the same model
as this institution (:func:`~clients.run_state.expected_binding`), whose
clipped updates average inside the ball. So only an institution that colludes
with the aggregator learns that bit. Without that binding, with a quorum below
the institution count, an aggregator could hand institutions different genuine
starts and probe each with genuine sums made from the others: the refusal then
said whether the data put them further apart than the allowance (red team F1).
An institution that started no round of the run yet has no reference and
checks nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.clientapp.typing import ClientAppCallable

from clients.errors import InboundMessageError, TamperedAggregateError
from clients.run_state import Inbound, classify, remember_start, round_start
from crossfed.protocol import ARRAYS_KEY, METRICS_KEY, NUM_EXAMPLES_KEY, FederationSettings

__all__ = [
    "CKKS_SLACK_BASE",
    "CKKS_SLACK_PER_ROOT",
    "DP_SIGMAS",
    "capped_weight",
    "check_movement",
    "check_summed_weight",
    "ckks_slack",
    "clip_update",
    "make_bounds_mod",
    "round_allowance",
    "update_norm",
]

#: L2 slack for CKKS's decryption noise on an averaged model, ``BASE + PER_ROOT sqrt(d)``.
#: Measured on the ``lean`` preset (the noisiest that carries models), 10^4 parameters:
#: error norm 6.0e-4 for three contributions of weight 1 (DP's weights), 2.0e-6 of
#: weight 250; the per-parameter error, 6e-6, is 16 times below ``PER_ROOT``.
CKKS_SLACK_BASE = 1e-3
CKKS_SLACK_PER_ROOT = 1e-4
#: Standard deviations beyond the averaged DP noise's norm a model may move.
DP_SIGMAS = 10.0

Mod = Callable[[Message, Context, ClientAppCallable], Message]
StartWeights = Callable[[Message, Context], list[np.ndarray]]


def update_norm(start: Sequence[np.ndarray], model: Sequence[np.ndarray]) -> float:
    """L2 norm of ``model - start`` over all layers together (float64).

    Raises
    ------
    InboundMessageError
        The two do not have the same layers and shapes.
    """
    if len(start) != len(model) or any(
        np.shape(s) != np.shape(m) for s, m in zip(start, model, strict=False)
    ):
        raise InboundMessageError("a model whose layers differ from this run's model")
    total = 0.0
    for s, m in zip(start, model, strict=True):
        delta = np.asarray(m, dtype=np.float64) - np.asarray(s, dtype=np.float64)
        total += float(np.sum(delta * delta))
    return math.sqrt(total)


def clip_update(
    start: Sequence[np.ndarray], trained: Sequence[np.ndarray], max_norm: float
) -> list[np.ndarray]:
    """``start + (trained - start) * min(1, max_norm / ||trained - start||)``, as float32."""
    norm = update_norm(start, trained)
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return [
        (np.asarray(s, np.float64) + (np.asarray(t, np.float64) - s) * scale).astype(np.float32)
        for s, t in zip(start, trained, strict=True)
    ]


def capped_weight(rows: int, cap: int) -> int:
    """The weight an honest institution gives its update: its rows, at most ``cap``."""
    return max(1, min(int(rows), int(cap)))


def ckks_slack(n_values: int) -> float:
    """L2 room for CKKS's decryption noise on an average of ``n_values`` parameters."""
    return CKKS_SLACK_BASE + CKKS_SLACK_PER_ROOT * math.sqrt(n_values)


def round_allowance(settings: FederationSettings, n_values: int) -> float:
    """How far one honest round can move the model (L2), without CKKS's slack.

    ``max_update_norm``, plus under distributed DP the averaged noise's norm
    bound ``z C (sqrt(d) + DP_SIGMAS) / sqrt(k max(2, q))``.
    """
    allowance = settings.max_update_norm
    if settings.dp_enabled and settings.dp_noise_multiplier > 0:
        shares = max(1, settings.institutions)
        fewest = max(2, settings.min_institutions)
        std = settings.dp_noise_multiplier * settings.dp_clip / math.sqrt(shares * fewest)
        allowance += std * (math.sqrt(n_values) + DP_SIGMAS)
    return allowance


def check_movement(
    start: Sequence[np.ndarray], model: Sequence[np.ndarray], allowance: float
) -> None:
    """Refuse ``model`` if it is further than ``allowance`` (+ :func:`ckks_slack`) from ``start``.

    Raises
    ------
    TamperedAggregateError
        It is; the message names the check, not the distance.
    InboundMessageError
        Its layers differ from ``start``'s.
    """
    slack = ckks_slack(sum(int(np.size(layer)) for layer in start))
    if not update_norm(start, model) <= allowance + slack:
        raise TamperedAggregateError(
            "the global model moved further from this institution's start of the round "
            "than the kit's max-update-norm allows; refusing to apply it"
        )


def check_summed_weight(summed: float, contributors: int, cap: float) -> None:
    """Refuse a summed weight outside ``[contributors, contributors x cap]`` (0.5 slack).

    Every honest contributor weighs its update at least 1 and at most ``cap``.

    Raises
    ------
    TamperedAggregateError
        It is outside; the message names the check, not the weight.
    """
    if not contributors - 0.5 <= summed <= contributors * cap + 0.5:
        raise TamperedAggregateError(
            "the aggregate's summed weight is outside what its contributors may carry "
            "under the kit's max-weight; refusing to apply it"
        )


def make_bounds_mod(
    settings_of: Callable[[Context], FederationSettings], start_weights: StartWeights
) -> Mod:
    """The mod that bounds this institution's influence and checks everyone else's.

    Innermost (it sees plaintext in both modes, before distributed DP's noise):

    * a global model that arrives is checked against the model this institution
      started its last training round from (:func:`check_movement`, allowance
      :func:`round_allowance` per round since);
    * a training message's start model is remembered for that check;
    * a training reply's update is clipped to ``max_update_norm`` and weighted
      by :func:`capped_weight`; an evaluation reply's test-set size is capped too.

    Parameters
    ----------
    settings_of:
        The run's settings for a message's context (the kit's, never the wire's).
    start_weights:
        The plaintext model a message carries (the seeded initial model when none).
    """

    def bounds_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        settings = settings_of(context)
        inbound = classify(msg, settings)
        if inbound.model_round is not None:
            _check_arriving_model(msg, context, settings, inbound)
        start: list[np.ndarray] | None = None
        if inbound.kind == "train":
            start = start_weights(msg, context)
            remember_start(context, settings, inbound.round, start)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        if start is not None:
            trained = reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
            reply.content[ARRAYS_KEY] = ArrayRecord(
                clip_update(start, trained, settings.max_update_norm)
            )
        if inbound.kind in ("train", "evaluate"):
            _cap_weight(reply, settings.max_weight)
        return reply

    return bounds_mod


def _check_arriving_model(
    msg: Message, context: Context, settings: FederationSettings, inbound: Inbound
) -> None:
    record = msg.content.array_records.get(ARRAYS_KEY)
    reference = round_start(context, settings)
    if record is None or not len(record) or reference is None:
        return  # no model (refused elsewhere when one is due), or nothing to compare with yet
    start_round, start = reference
    rounds = max(1, (inbound.model_round or 0) - start_round + 1)
    model = record.to_numpy_ndarrays()
    allowance = round_allowance(settings, sum(int(np.size(w)) for w in start))
    check_movement(start, model, allowance * rounds)


def _cap_weight(reply: Message, cap: int) -> None:
    metrics = reply.content.metric_records.get(METRICS_KEY)
    if metrics is None or NUM_EXAMPLES_KEY not in metrics:
        return
    values = dict(metrics)
    rows = values[NUM_EXAMPLES_KEY]
    if not isinstance(rows, int):
        raise TypeError(f"the handler reported example count {rows!r}, not an integer")
    values[NUM_EXAMPLES_KEY] = capped_weight(rows, cap)
    reply.content[METRICS_KEY] = MetricRecord(values)
