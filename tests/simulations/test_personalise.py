"""Personalisation: the institution's choice is made on its training rows and can be its own."""

from __future__ import annotations

import numpy as np
import pytest

from clients import ModelSpec, Standardizer, TrainConfig, build_model, predict_proba, train_local
from clients.personalise import CHOSEN_AMONG, Mixture, PersonaliseConfig, Scored, personalise


def _table(rng: np.random.Generator, rows: int, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(rows, coef.size)) * 3.0 + 5.0
    logits = (x - 5.0) @ coef - 1.0
    y = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return x, y


def _fit(x: np.ndarray, y: np.ndarray, epochs: int = 5) -> Scored:
    scaler = Standardizer.fit(x)
    model = build_model(ModelSpec(), x.shape[1], 0)
    train_local(model, scaler.transform(x), y, TrainConfig(epochs=epochs, learning_rate=0.2))
    return model, scaler


CONFIG = PersonaliseConfig(TrainConfig(epochs=1, learning_rate=0.2, seed=1), folds=3, seed=0)


def test_an_institution_unlike_the_federation_keeps_a_model_of_its_own() -> None:
    rng = np.random.default_rng(11)
    # The federation learnt the opposite relation from this institution's.
    x_fed, y_fed = _table(rng, 3000, np.array([2.0, -1.0, 0.0]))
    x, y = _table(rng, 900, np.array([-2.0, 1.0, 0.5]))
    federated = _fit(x_fed, y_fed)
    chosen = personalise(federated, _fit, x, y, CONFIG)
    assert chosen.choice != "federated"
    assert chosen.cv_auc["federated"] < 0.5 < chosen.cv_auc[chosen.choice]
    x_test, y_test = _table(rng, 600, np.array([-2.0, 1.0, 0.5]))
    scores = predict_proba(chosen.model, chosen.scaler.transform(x_test))
    fed_scores = predict_proba(federated[0], federated[1].transform(x_test))
    assert np.mean((scores > 0.5) == y_test) > np.mean((fed_scores > 0.5) == y_test)


def test_an_institution_like_the_federation_keeps_the_federated_model() -> None:
    rng = np.random.default_rng(12)
    coef = np.array([1.5, -1.0, 0.5])
    federated = _fit(*_table(rng, 6000, coef), epochs=10)
    x, y = _table(rng, 240, coef)  # a small lender: its own model is worse
    chosen = personalise(federated, _fit, x, y, CONFIG)
    assert chosen.choice in ("fine-tuned", "mixture")
    assert chosen.cv_auc[chosen.choice] >= chosen.cv_auc["local"]


def test_the_federated_model_is_scored_but_never_chosen_as_received() -> None:
    """Its held-out scores are in-sample (it trained on these rows): it cannot win on them.

    Here the federation *is* this institution's rows: the federated model scores
    best on cross-validation, yet the choice is an adapted model that keeps it.
    """
    rng = np.random.default_rng(15)
    x, y = _table(rng, 600, np.array([1.5, -1.0, 0.5]))
    federated = _fit(x, y, epochs=10)
    chosen = personalise(federated, _fit, x, y, CONFIG)
    best = max(chosen.cv_auc, key=lambda name: chosen.cv_auc[name])
    assert best == "federated"
    assert chosen.choice in CHOSEN_AMONG and chosen.model is not federated[0]


def test_too_few_defaults_to_fold_keeps_the_federated_model() -> None:
    rng = np.random.default_rng(13)
    federated = _fit(*_table(rng, 500, np.array([1.0, 1.0])))
    x, y = _table(rng, 60, np.array([1.0, 1.0]))
    y[:] = 0.0
    y[:2] = 1.0  # two defaults cannot fill three folds
    chosen = personalise(federated, _fit, x, y, CONFIG)
    assert chosen.choice == "federated" and chosen.model is federated[0] and not chosen.cv_auc


def test_the_mixture_averages_the_log_odds_under_each_standardiser() -> None:
    rng = np.random.default_rng(14)
    x, y = _table(rng, 400, np.array([1.0, -1.0]))
    fed = _fit(x[:200] * 2.0 + 1.0, y[:200])
    own = _fit(x[200:], y[200:])
    mixture = Mixture(fed, own, weight=0.25)
    p_fed = predict_proba(fed[0], fed[1].transform(x))
    p_own = predict_proba(own[0], own[1].transform(x))
    logit = 0.25 * np.log(p_fed / (1 - p_fed)) + 0.75 * np.log(p_own / (1 - p_own))
    got = predict_proba(mixture, fed[1].transform(x))
    assert got == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-5)
