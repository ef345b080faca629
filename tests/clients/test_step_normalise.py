"""Updates normalised by local steps: the arithmetic, and the pooled optimum it reaches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients import ConfigError, ModelSpec, TrainConfig, build_model, get_weights, set_weights
from clients.step_normalise import local_steps, normalise_update, reference_steps, step_scale
from clients.training import binary_cross_entropy, train_local
from crossfed.protocol import ConfigurationError, FederationSettings


def test_local_steps_count_the_last_partial_batch() -> None:
    assert local_steps(128, 2, 64) == 4
    assert local_steps(129, 2, 64) == 6
    assert local_steps(1, 3, 64) == 3


def test_equal_institutions_keep_plain_fedavg() -> None:
    # Three institutions of 333-334 rows: every scale is exactly 1.
    for rows in (333, 334):
        assert step_scale(rows, 1000, 3, 2, 64) == 1.0


def test_the_largest_institution_is_scaled_down_and_the_smallest_up() -> None:
    # The default scenario's training rows (seed 0).
    rows = [4429, 1701, 981, 668, 498, 395, 325]
    scales = [step_scale(n, sum(rows), len(rows), 2, 64) for n in rows]
    assert reference_steps(sum(rows), len(rows), 2, 64) == 42.0
    assert scales == sorted(scales)  # larger institution, smaller factor
    assert scales[0] == pytest.approx(42 / 140)
    assert scales[-1] == pytest.approx(42 / 12)


def test_a_scale_of_one_sends_the_trained_weights_unchanged() -> None:
    trained = [np.array([0.1, 0.2], np.float32), np.array([0.3], np.float32)]
    out = normalise_update([np.array([7.0, 8.0]), np.array([9.0])], trained, 1.0)
    assert len(out) == len(trained)
    for sent, kept in zip(out, trained, strict=True):
        assert np.array_equal(sent, kept) and sent.dtype == np.float32


def test_normalise_update_scales_the_update_only() -> None:
    start = [np.array([[1.0, 2.0]]), np.array([0.5])]
    trained = [np.array([[2.0, 0.0]]), np.array([1.5])]
    out = normalise_update(start, trained, 0.25)
    assert all(o.dtype == np.float32 for o in out)
    np.testing.assert_allclose(out[0], [[1.25, 1.5]])
    np.testing.assert_allclose(out[1], [0.75])


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_scale_is_refused(scale: float) -> None:
    with pytest.raises(ConfigError):
        normalise_update([np.zeros(2)], [np.ones(2)], scale)


def test_models_of_other_shapes_are_refused() -> None:
    with pytest.raises(ConfigError):
        normalise_update([np.zeros(2)], [np.ones(3)], 1.0)
    with pytest.raises(ConfigError):
        normalise_update([np.zeros(2)], [np.ones(2), np.ones(1)], 1.0)


@pytest.mark.parametrize(
    "args", [(0, 1, 2, 64), (1000, 0, 2, 64), (1000, 3, 0, 64), (float("nan"), 3, 2, 64)]
)
def test_bad_reference_values_are_refused(args: tuple[float, int, int, int]) -> None:
    with pytest.raises(ConfigError):
        reference_steps(*args)
    with pytest.raises(ConfigError):
        local_steps(0, 2, 64)


def test_the_setting_is_on_by_default_and_read_from_a_run_config() -> None:
    assert FederationSettings(mode="plaintext").normalise_steps is True
    parsed = FederationSettings.from_run_config({"mode": "plaintext", "normalise-steps": False})
    assert parsed.normalise_steps is False
    # Text spellings (a --run-config override) mean what they say; anything else is refused.
    for text, meant in (("false", False), ("False", False), ("true", True)):
        settings = FederationSettings.from_run_config(
            {"mode": "plaintext", "normalise-steps": text}
        )
        assert settings.normalise_steps is meant
    with pytest.raises(ConfigurationError, match="normalise-steps"):
        FederationSettings.from_run_config({"mode": "plaintext", "normalise-steps": "no"})


def _institution(
    n: int, shift: float, bias: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one institution: its own feature means and bad rate, a curved risk.

    Covariate and bad-rate shift between institutions, as between the harness's
    jurisdictions, and a risk a logistic model fits only approximately, so each
    institution's own best model differs from the pooled one.
    """
    x = (rng.normal(size=(n, 3)) + shift).astype(np.float32)
    logits = x[:, 0] - 0.5 * x[:, 1] ** 2 + 0.3 * x[:, 2] + bias
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return x, y


def _federate(data: list[tuple[np.ndarray, np.ndarray]], normalise: bool) -> torch.nn.Module:
    """Rows-weighted FedAvg of 2 local epochs per round, optionally step-normalised."""
    model = build_model(ModelSpec(kind="logistic"), 3, 0)
    rows = [len(y) for _, y in data]
    for round_ in range(1, 9):
        start = get_weights(model)
        total = [np.zeros_like(w, dtype=np.float64) for w in start]
        for (x, y), n in zip(data, rows, strict=True):
            local = build_model(ModelSpec(kind="logistic"), 3, 0)
            set_weights(local, start)
            result = train_local(
                local, x, y, TrainConfig(epochs=2, batch_size=32, learning_rate=0.3, seed=round_)
            )
            sent = result.weights
            if normalise:
                sent = normalise_update(start, sent, step_scale(n, sum(rows), len(rows), 2, 32))
            for acc, w in zip(total, sent, strict=True):
                acc += n * np.asarray(w, np.float64) / sum(rows)
        set_weights(model, [w.astype(np.float32) for w in total])
    return model


def test_normalised_fedavg_lands_nearer_the_pooled_optimum() -> None:
    """A big bank and a small one with other customers: plain FedAvg sides with the big one.

    Each institution's update counts once for its rows and again for its longer
    local training; normalised, the federated model's loss on the pooled rows
    (what centralized training minimises) comes close to the pooled model's.
    """
    rng = np.random.default_rng(7)
    data = [_institution(1600, 0.0, 0.0, rng), _institution(200, 1.5, -2.0, rng)]
    x = np.concatenate([d[0] for d in data])
    y = np.concatenate([d[1] for d in data])
    plain = binary_cross_entropy(_federate(data, normalise=False), x, y)
    normalised = binary_cross_entropy(_federate(data, normalise=True), x, y)
    pooled = build_model(ModelSpec(kind="logistic"), 3, 0)
    for epoch in range(1, 41):
        config = TrainConfig(epochs=2, batch_size=32, learning_rate=0.05, seed=epoch)
        train_local(pooled, x, y, config)
    best = binary_cross_entropy(pooled, x, y)
    assert normalised < plain
    assert normalised - best < 0.5 * (plain - best)


@pytest.mark.parametrize(
    ("changes", "scaled"),
    [
        ({}, True),
        ({"normalise_steps": False}, False),
        ({"dpsgd_epsilon": 4.0}, False),  # the small institutions' noise would be scaled up
        ({"dp_clip": 0.5, "dp_noise_multiplier": 1.0}, False),  # equal weights, clipped
    ],
)
def test_the_client_app_normalises_only_without_dp(
    changes: dict[str, object], scaled: bool
) -> None:
    # One rule for the harness and every kit: the ClientApp decides from the settings.
    from flwr.app import ConfigRecord

    from clients.client_app import _normalised
    from clients.training import TrainResult
    from crossfed.protocol import STATS_KEY

    settings = FederationSettings(
        mode="plaintext",
        institutions=4,
        epochs=2,
        batch_size=10,
        **changes,  # type: ignore[arg-type]
    )
    start = [np.zeros(3, dtype=np.float32)]
    trained = TrainResult([np.ones(3, dtype=np.float32)], 400, [0.5])  # a large institution
    config = ConfigRecord({STATS_KEY: [1000.0, 0.0, 0.0]})
    sent = _normalised(settings, config, start, trained)
    assert np.allclose(sent[0], trained.weights[0]) is not scaled
