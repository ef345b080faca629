"""Privacy accounting for distributed differential privacy across institutions.

With distributed DP each of ``k`` institutions clips its model update to L2
norm ``C`` and adds Gaussian noise of standard deviation ``z * C / sqrt(k)``;
the noise in the (encrypted) sum then has standard deviation ``z * C``: the
Gaussian mechanism with noise multiplier ``z`` at institution level
(McMahan et al., "Learning Differentially Private Recurrent Language Models",
ICLR 2018; Kairouz et al., "The Distributed Discrete Gaussian Mechanism", 2021).
If fewer institutions reply than were planned for, the sum holds less noise:
the effective multiplier is ``z * sqrt(replied / planned)``.

The privacy loss over rounds comes from Google's ``dp_accounting`` library
(Rényi DP accountant, Mironov 2017), never from a hand-written formula. Every
institution takes part in every round (sampling rate 1).
"""

from __future__ import annotations

import math

from crossfed.protocol import ConfigurationError

__all__ = ["effective_noise_multiplier", "epsilon_spent", "noise_multiplier_for_epsilon"]


def epsilon_spent(noise_multipliers: list[float], delta: float) -> float:
    """ε after rounds with the given (effective) noise multipliers, at ``delta``."""
    if not 0 < delta < 1:
        raise ConfigurationError(f"dp-delta must be in (0, 1), got {delta}")
    # Imported here: dp_accounting takes seconds to import, and every institution
    # process imports federation while only the aggregator accounts.
    from dp_accounting import dp_event, rdp

    accountant = rdp.RdpAccountant()
    for multiplier in noise_multipliers:
        if multiplier <= 0:
            return math.inf
        accountant.compose(dp_event.GaussianDpEvent(multiplier))
    return float(accountant.get_epsilon(delta))


def effective_noise_multiplier(multiplier: float, replied: int, planned: int) -> float:
    """Noise multiplier of a sum to which ``replied`` of ``planned`` institutions added noise."""
    if planned < 1 or replied < 0:
        raise ConfigurationError(f"invalid institution counts {replied}/{planned}")
    return multiplier * math.sqrt(min(replied, planned) / planned)


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
