"""An institution's own update is bounded, and so is every model it applies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import InboundMessageError, TamperedAggregateError
from clients.bounds import (
    capped_weight,
    check_movement,
    check_summed_weight,
    ckks_slack,
    clip_update,
    round_allowance,
    update_norm,
)
from crossfed.protocol import FederationSettings


def _layers(rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    return [rng.normal(scale=scale, size=(3, 4)), rng.normal(scale=scale, size=4)]


def test_an_update_longer_than_the_bound_is_clipped_to_it_along_its_direction() -> None:
    rng = np.random.default_rng(1)
    start, trained = _layers(rng), _layers(rng, 10.0)
    clipped = clip_update(start, trained, 0.5)
    assert update_norm(start, clipped) == pytest.approx(0.5, rel=1e-5)
    original = np.concatenate([(t - s).ravel() for s, t in zip(start, trained, strict=True)])
    kept = np.concatenate([(c - s).ravel() for s, c in zip(start, clipped, strict=True)])
    assert float(np.dot(original, kept)) == pytest.approx(
        float(np.linalg.norm(original) * np.linalg.norm(kept)), rel=1e-5
    )
    short = clip_update(start, [s + 1e-3 for s in start], 0.5)  # inside: unchanged
    for got, want in zip(short, start, strict=True):
        np.testing.assert_allclose(got, want + 1e-3, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 50.0), min_size=2, max_size=5),
    st.lists(st.integers(1, 10_000), min_size=5, max_size=5),
    st.integers(0, 2**31),
)
def test_a_weighted_average_of_honest_updates_always_passes(
    lengths: list[float], weights: list[int], seed: int
) -> None:
    """Convexity: honest updates clipped to N average to a model within N."""
    rng = np.random.default_rng(seed)
    start = _layers(rng)
    bound = 2.0
    updates = [clip_update(start, _layers(rng, length), bound) for length in lengths]
    used = weights[: len(updates)]
    average = [
        np.sum([w * u[i].astype(np.float64) for w, u in zip(used, updates, strict=True)], axis=0)
        / sum(used)
        for i in range(len(start))
    ]
    check_movement(start, average, bound)


def test_a_model_moved_further_than_the_allowance_is_refused_without_numbers() -> None:
    start = [np.zeros(4)]
    check_movement(start, [np.array([1.0, 0.0, 0.0, 0.0])], 1.0)
    with pytest.raises(TamperedAggregateError, match="max-update-norm") as caught:
        check_movement(start, [np.array([1.0 + 2 * ckks_slack(4), 0.0, 0.0, 0.0])], 1.0)
    assert not any(ch.isdigit() for ch in str(caught.value))
    with pytest.raises(TamperedAggregateError):
        check_movement(start, [np.array([np.nan, 0.0, 0.0, 0.0])], 1.0)
    with pytest.raises(InboundMessageError, match="layers"):
        check_movement(start, [np.zeros(5)], 1.0)


def test_summed_weights_are_held_to_the_contributors_and_the_cap() -> None:
    check_summed_weight(3.0, 3, 1.0)
    check_summed_weight(1200.0, 3, 400)
    for summed in (2.0, 1201.0, float("nan")):
        with pytest.raises(TamperedAggregateError, match="max-weight"):
            check_summed_weight(summed, 3, 400)
    assert [capped_weight(rows, 400) for rows in (1, 250, 400, 10**7)] == [1, 250, 400, 400]


def test_the_dp_allowance_covers_the_averaged_noise() -> None:
    plain = FederationSettings(mode="plaintext", max_update_norm=2.0)
    assert round_allowance(plain, 1000) == 2.0
    dp = FederationSettings(
        mode="plaintext",
        max_update_norm=2.0,
        dp_clip=0.5,
        dp_noise_multiplier=1.2,
        institutions=5,
        min_institutions=3,
    )
    d = 1000
    std = 1.2 * 0.5 / math.sqrt(5 * 3)  # the average of 3 of 5 institutions' noise shares
    assert round_allowance(dp, d) == pytest.approx(2.0 + std * (math.sqrt(d) + 10))
    rng = np.random.default_rng(0)
    # The averaged noise of three contributions never comes near the allowance.
    for _ in range(200):
        noise = rng.normal(scale=1.2 * 0.5 / math.sqrt(5), size=(3, d)).sum(axis=0) / 3
        assert float(np.linalg.norm(noise)) < round_allowance(dp, d) - 2.0
