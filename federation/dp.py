"""Privacy accounting for distributed differential privacy across institutions.

With distributed DP each of ``k`` institutions clips its model update to L2
norm ``C`` and adds Gaussian noise of standard deviation ``z * C / sqrt(k)``;
the noise in the (encrypted) sum then has standard deviation ``z * C``: the
Gaussian mechanism with noise multiplier ``z`` at institution level
(McMahan et al., "Learning Differentially Private Recurrent Language Models",
ICLR 2018; Kairouz et al., "The Distributed Discrete Gaussian Mechanism", 2021).
``k`` is the federation's institution count from each institution's own kit
(the run's ``institutions``), never a number the aggregator sends.

The accountant never reports less than the privacy actually spent:

- **Only summed replies count.** A reply dropped as invalid (malformed, another
  round, shapes that do not fit, an error) put no noise into the sum, so the
  effective multiplier of a round is ``z * sqrt(summed / k)`` with ``summed``
  the replies that entered the aggregate — not those that merely answered.
  A round refused for lack of quorum releases nothing and spends nothing.
- **Every round of the run counts.** A restarted aggregator composes the rounds
  its audit log records for the run id before the restart (with the summed
  count each recorded) with those it runs itself
  (:func:`federation.resume.released_rounds`).

What ε does **not** cover, stated plainly: the statistics round (round 0) —
each institution's example count and the sums and sums of squares of its
encoded features — is released as an exact, un-noised federation-wide sum,
which only key holders (the institutions) can decrypt; the per-round
evaluation metrics are likewise exact encrypted sums for key holders only. The
guarantee is about the model updates: ε bounds what the sequence of global
models reveals about any one institution's training data, not what the
federation-wide statistics or evaluation metrics reveal. In plaintext mode the
aggregator sees those statistics and metrics in clear.
:func:`epsilon_scope` says so next to every reported ε.

Nor does ε hold against **the aggregator together with one colluding
institution**. Every institution holds the federation's one secret key, so a
colluding institution can decrypt any other institution's single reply, which
carries only that institution's noise share ``z * C / sqrt(k)``: against that
coalition each institution's update is protected by multiplier ``z / sqrt(k)``
only. :func:`epsilon_against_collusion` reports that ε beside the headline one
until pairwise masks under the encryption remove the shared-key view.

The privacy loss over rounds comes from Google's ``dp_accounting`` library
(Rényi DP accountant, Mironov 2017), never from a hand-written formula. Every
institution is asked in every round (sampling rate 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from crossfed.protocol import ConfigurationError

__all__ = [
    "EPSILON_SCOPE",
    "effective_noise_multiplier",
    "epsilon_against_collusion",
    "epsilon_scope",
    "epsilon_spent",
    "noise_multiplier_for_epsilon",
]

#: What the reported ε covers in encrypted mode (written next to it in ``metrics.json``).
EPSILON_SCOPE = (
    "model updates; the statistics round is an exact sum released only to key holders"
    " (so are the evaluation metrics); against the aggregator with one colluding"
    " institution see epsilon_against_collusion"
)
#: What the reported ε covers in plaintext mode.
_PLAINTEXT_SCOPE = (
    "model updates; the statistics round and the evaluation metrics are exact sums the"
    " aggregator sees in clear"
)


def epsilon_scope(mode: str) -> str:
    """What ε covers, and what is released outside it, for a run in ``mode``."""
    return EPSILON_SCOPE if mode == "encrypted" else _PLAINTEXT_SCOPE


def epsilon_spent(noise_multipliers: Sequence[float], delta: float) -> float:
    """ε after rounds with the given (effective) noise multipliers, at ``delta`` (0 for none)."""
    if not 0 < delta < 1:
        raise ConfigurationError(f"dp-delta must be in (0, 1), got {delta}")
    if not noise_multipliers:
        return 0.0
    # Imported here: dp_accounting takes seconds to import, and every institution
    # process imports federation while only the aggregator accounts.
    from dp_accounting import dp_event, rdp

    accountant = rdp.RdpAccountant()
    for multiplier in noise_multipliers:
        if multiplier <= 0:
            return math.inf
        accountant.compose(dp_event.GaussianDpEvent(multiplier))
    return float(accountant.get_epsilon(delta))


def effective_noise_multiplier(multiplier: float, summed: int, planned: int) -> float:
    """Noise multiplier of a sum of ``summed`` noise shares, each sized for ``planned``.

    ``summed`` counts the replies that entered the aggregate, never those
    dropped; ``planned`` is the share count institutions divided their noise by.
    """
    if planned < 1 or summed < 0:
        raise ConfigurationError(f"invalid institution counts {summed}/{planned}")
    return multiplier * math.sqrt(min(summed, planned) / planned)


def epsilon_against_collusion(multiplier: float, shares: int, rounds: int, delta: float) -> float:
    """ε of one institution's updates against the aggregator plus one colluding institution.

    The colluder decrypts the institution's own reply, whose noise is one share
    (``multiplier / sqrt(shares)`` relative to the clip), once per round.
    """
    if shares < 1 or rounds < 0:
        raise ConfigurationError(f"invalid share count {shares} or rounds {rounds}")
    return epsilon_spent([multiplier / math.sqrt(shares)] * rounds, delta)


def noise_multiplier_for_epsilon(epsilon: float, rounds: int, delta: float) -> float:
    """Smallest noise multiplier whose ε after ``rounds`` rounds is at most ``epsilon``.

    Bisection on the accountant, to a relative tolerance of 1e-4.
    """
    if epsilon <= 0 or rounds < 1:
        raise ConfigurationError(f"need epsilon > 0 and rounds >= 1, got {epsilon}, {rounds}")
    low, high = 1e-3, 1.0
    while epsilon_spent([high] * rounds, delta) > epsilon:
        high *= 2
        if high > 1e6:
            raise ConfigurationError(f"epsilon {epsilon} is unreachable in {rounds} rounds")
    while (high - low) / high > 1e-4:
        middle = (low + high) / 2
        if epsilon_spent([middle] * rounds, delta) > epsilon:
            low = middle
        else:
            high = middle
    return high
