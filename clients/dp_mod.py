"""Distributed differential privacy as a client mod: clip the update, add a noise share.

Sits inside the encryption mod, so it sees plaintext: the global model the
round started from and the weights the handler trained. The update (trained
minus start) is clipped to L2 norm ``C`` (all layers together) and Gaussian
noise of standard deviation ``z * C / sqrt(k)`` is added, ``k`` being the
number of institutions in the federation as the institution's own kit says
(never as a message says: an aggregator that claimed a million institutions
would cut every share's noise a thousandfold); the k noise shares sum to ``z * C``
in the aggregate, so no single party, the aggregator included, ever sees an
update with less noise than the share, and the average carries the noise of
the central Gaussian mechanism (see :mod:`federation.dp`, which accounts ε).

Updates are then averaged with equal weights (the reply's example count is
set to 1), as in DP-FedAvg (McMahan et al., ICLR 2018): with count weighting
one institution's influence, and so the sensitivity, would depend on its size.
Noise comes from a generator seeded by the operating system, never a fixed seed.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord
from flwr.clientapp.typing import ClientAppCallable

from clients.errors import ConfigError
from crossfed.protocol import (
    ARRAYS_KEY,
    METRICS_KEY,
    NUM_EXAMPLES_KEY,
    FederationSettings,
)

__all__ = ["clip_and_noise", "make_dp_mod"]

Mod = Callable[[Message, Context, ClientAppCallable], Message]
StartWeights = Callable[[Message, Context], list[np.ndarray]]


def clip_and_noise(
    start: list[np.ndarray],
    trained: list[np.ndarray],
    *,
    clip: float,
    noise_std: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Return ``start + clip(trained - start) + N(0, noise_std^2)``, layer by layer."""
    deltas = [
        t.astype(np.float64) - s.astype(np.float64) for s, t in zip(start, trained, strict=True)
    ]
    norm = math.sqrt(sum(float(np.sum(d * d)) for d in deltas))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return [
        (s + d * scale + rng.normal(0.0, noise_std, size=d.shape)).astype(np.float32)
        for s, d in zip(start, deltas, strict=True)
    ]


def make_dp_mod(
    settings_of: Callable[[Context], FederationSettings], start_weights: StartWeights
) -> Mod:
    """Build the mod.

    Parameters
    ----------
    settings_of:
        The run's settings for a message's context.
    start_weights:
        The plaintext model a training message starts from.

    The number of institutions sharing the noise is ``settings.institutions``
    (the kit's count); a DP run whose settings do not name it is refused.
    Whatever the message says about it (``dp-shares``) is ignored.
    """

    def dp_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        settings = settings_of(context)
        if not settings.dp_enabled or msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        shares = settings.institutions
        if shares < 1:
            raise ConfigError(
                "distributed DP needs the federation's institution count (institutions) "
                "from the kit to size each noise share; it is 0"
            )
        start = start_weights(msg, context)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        trained = reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
        noise_std = settings.dp_noise_multiplier * settings.dp_clip / math.sqrt(shares)
        private = clip_and_noise(
            start,
            trained,
            clip=settings.dp_clip,
            noise_std=noise_std,
            rng=np.random.default_rng(secrets.randbits(128)),
        )
        metrics = dict(reply.content.metric_records[METRICS_KEY])
        metrics[NUM_EXAMPLES_KEY] = 1
        reply.content[ARRAYS_KEY] = ArrayRecord(private)
        reply.content[METRICS_KEY] = MetricRecord(metrics)
        return reply

    return dp_mod
