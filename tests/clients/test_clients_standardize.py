"""Standardisation from federation-wide moments equals pooled standardisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clients import (
    DataValidationError,
    FederationSchema,
    Moments,
    Standardizer,
    encode,
    local_moments,
    sum_moments,
)


def test_summed_moments_of_two_institutions_equal_pooled_statistics(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    x, _ = encode(german, german_schema)
    rng = np.random.default_rng(20240611)
    in_a = rng.random(len(x)) < 0.3
    bank_a, bank_b = x[in_a], x[~in_a]
    count, sums, sums_sq = sum_moments([local_moments(bank_a), local_moments(bank_b)])
    federated = Standardizer.from_moments(count, sums, sums_sq)
    pooled = Standardizer.fit(x)
    assert count[0] == len(x)
    assert np.allclose(federated.mean, x.astype(np.float64).mean(axis=0))
    assert np.allclose(federated.std, x.astype(np.float64).std(axis=0))
    assert np.allclose(federated.transform(bank_a), pooled.transform(bank_a), atol=1e-5)
    assert np.allclose(federated.transform(x), pooled.transform(x), atol=1e-5)


def test_standardised_pooled_data_has_zero_mean_unit_std() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(loc=[5000.0, -3.0, 0.2], scale=[2000.0, 0.5, 0.01], size=(400, 3))
    z = Standardizer.fit(x).transform(x)
    assert z.dtype == np.float32
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(z.std(axis=0), 1.0, atol=1e-4)


def test_constant_feature_is_centred_not_divided_by_zero() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([np.full(50, 7.0), rng.normal(size=50)])
    scaler = Standardizer.fit(x)
    assert scaler.std[0] == 1.0
    z = scaler.transform(x)
    assert np.all(np.isfinite(z)) and np.allclose(z[:, 0], 0.0)


def test_slightly_negative_variance_from_approximate_sums_is_clipped() -> None:
    # CKKS-decrypted sums carry small errors: sum of squares a hair below sum^2 / n.
    n, value = 100.0, 3.0
    scaler = Standardizer.from_moments(
        np.array([n]), np.array([n * value]), np.array([n * value**2 - 1e-6])
    )
    assert scaler.std[0] == 1.0 and scaler.mean[0] == pytest.approx(value)


def test_vector_packing_round_trip() -> None:
    rng = np.random.default_rng(3)
    moments = local_moments(rng.normal(size=(20, 4)))
    vector = moments.to_vector()
    assert vector.shape == (9,)
    back = Moments.from_vector(vector)
    for original, restored in zip(moments, back, strict=True):
        assert np.array_equal(original, restored)
    # Summing packed vectors (what the encrypted aggregation does) is summing moments.
    other = local_moments(rng.normal(size=(5, 4)))
    summed = Moments.from_vector(vector + other.to_vector())
    assert np.allclose(summed.sums, moments.sums + other.sums)


def test_invalid_inputs_raise_typed_errors() -> None:
    with pytest.raises(DataValidationError):
        local_moments(np.zeros(3))
    with pytest.raises(DataValidationError) as caught:
        local_moments(np.array([[1.0, np.nan], [2.0, 3.0], [np.inf, 1.0]]))
    assert caught.value.count == 2
    with pytest.raises(DataValidationError):
        Standardizer.from_moments(np.array([0.0]), np.zeros(2), np.zeros(2))
    with pytest.raises(DataValidationError):
        Standardizer.from_moments(np.array([3.0]), np.zeros(2), np.zeros(3))
    with pytest.raises(DataValidationError):
        Moments.from_vector(np.zeros(4))
    with pytest.raises(DataValidationError):
        sum_moments([])
    with pytest.raises(DataValidationError):
        sum_moments([local_moments(np.ones((2, 2))), local_moments(np.ones((2, 3)))])
    with pytest.raises(DataValidationError):
        Standardizer.fit(np.ones((4, 2))).transform(np.ones((4, 3)))
