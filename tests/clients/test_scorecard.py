"""The points scale, the scorecard, the saved model, PSI and the outputs a run writes."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clients import (
    MLP,
    BadRateTarget,
    ConfigError,
    FederationSchema,
    LocalDataset,
    ModelFileError,
    ModelSpec,
    Standardizer,
    build_model,
    encode,
    evaluate,
    get_weights,
    load_model,
    local_moments,
    predict_proba,
    set_weights,
    sum_moments,
    train_test_split,
    write_final_outputs,
)
from clients.model_file import SavedModel
from clients.monitoring import ScoreBaseline, federation_mean_logit, psi, psi_reading
from clients.scaling import RiskBands, ScoreScaling
from clients.scorecard import (
    Scorecard,
    binning_error,
    build_scorecard,
    characteristics,
    exact_points,
    reason_codes,
)


def _saved(model: torch.nn.Module, names: list[str], scaler: Standardizer) -> SavedModel:
    kind = "mlp" if isinstance(model, MLP) else "logistic"
    parameters = {n: t.detach().numpy().copy() for n, t in model.state_dict().items()}
    return SavedModel.create(parameters, kind=kind, feature_names=names, scaler=scaler)


def _random_model(kind: str, n_features: int, seed: int) -> torch.nn.Module:
    """A model with fresh random weights (never zeros), larger than initialisation's."""
    model = build_model(ModelSpec(kind=kind), n_features, seed)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    set_weights(model, [rng.normal(0.0, 0.5, size=w.shape) for w in get_weights(model)])
    return model


@pytest.fixture
def split(german: pd.DataFrame, german_schema: FederationSchema) -> LocalDataset:
    x, y = encode(german, german_schema)
    parts = train_test_split(x, y, test_size=0.25, seed=3)
    return LocalDataset(german_schema, parts.x_train, parts.y_train, parts.x_test, parts.y_test)


def _names(schema: FederationSchema) -> list[str]:
    from clients import feature_names

    return feature_names(schema)


# --- the points scale and the bands -------------------------------------------------------


def test_the_scale_puts_the_base_score_at_the_base_odds_and_doubles_per_pdo() -> None:
    scale = ScoreScaling(pdo=20, base_score=600, base_odds=50)
    # Odds of good 50:1 is a PD of 1/51.
    assert float(scale.score_from_pd(1 / 51)) == pytest.approx(600.0)
    assert float(scale.score_from_pd(1 / 101)) == pytest.approx(620.0)  # 100:1
    assert float(scale.score_from_pd(1 / 26)) == pytest.approx(580.0)  # 25:1
    assert scale.factor == pytest.approx(20 / math.log(2))
    scores = np.array([480.0, 555.5, 640.0])
    np.testing.assert_allclose(scale.score_from_pd(scale.pd_from_score(scores)), scores)


def test_rescaling_is_exact() -> None:
    old, new = ScoreScaling(), ScoreScaling(pdo=40, base_score=500, base_odds=20)
    pd_bad = np.array([0.01, 0.2, 0.6])
    np.testing.assert_allclose(
        old.rescale(old.score_from_pd(pd_bad), new), new.score_from_pd(pd_bad)
    )


@pytest.mark.parametrize(
    ("pdo", "base_odds"), [(0.0, 50.0), (-20.0, 50.0), (20.0, 0.0), (math.nan, 50.0)]
)
def test_a_scale_without_meaning_is_refused(pdo: float, base_odds: float) -> None:
    with pytest.raises(ConfigError):
        ScoreScaling(pdo=pdo, base_odds=base_odds)


def test_bands_follow_the_pd_master_scale_at_their_edges() -> None:
    bands = RiskBands()
    grades = bands.assign(np.array([0.0, 0.0199, 0.02, 0.049, 0.05, 0.1, 0.19, 0.2, 0.99]))
    assert list(grades) == ["A", "A", "B", "B", "C", "D", "D", "E", "E"]
    # The score ranges say the same: a score just above a band's floor is in that band.
    table = bands.table(ScoreScaling())
    assert table[0]["score_up_to"] is None and table[-1]["score_above"] is None
    assert table[0]["score_above"] == pytest.approx(float(ScoreScaling().score_from_pd(0.02)))


@pytest.mark.parametrize("text", ["0.2,0.1", "0,0.5", "0.5,1", "a,b", ""])
def test_bad_band_edges_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        RiskBands.parse(text)


# --- the scorecard ----------------------------------------------------------------------------


def test_exact_points_add_up_to_the_model_score(split: LocalDataset) -> None:
    names = _names(split.schema)
    model = _random_model("logistic", split.n_features, 5)
    scaler = Standardizer.fit(split.x_train)
    saved = _saved(model, names, scaler)
    found = characteristics(split.schema, names)
    scale = ScoreScaling()
    points = exact_points(saved, found, split.x_test, scale)
    assert points.shape == (len(split.y_test), len(split.schema.feature_columns))
    # The score from the model's log-odds (in float64; torch's float32 agrees to its precision).
    logit = scaler.transform(split.x_test).astype(np.float64) @ saved.weights[0].ravel()
    logit += float(saved.weights[1][0])
    np.testing.assert_allclose(points.sum(axis=1), scale.score_from_logit(logit), atol=1e-3)
    torch_pd = predict_proba(model, scaler.transform(split.x_test))
    np.testing.assert_allclose(scale.pd_from_score(points.sum(axis=1)), torch_pd, atol=1e-5)


def test_bins_are_training_quantiles_and_categories_score_exactly(split: LocalDataset) -> None:
    names = _names(split.schema)
    saved = _saved(
        _random_model("logistic", split.n_features, 7), names, Standardizer.fit(split.x_train)
    )
    card = build_scorecard(saved, split.schema, split.x_train, split.y_train)
    found = characteristics(split.schema, names)
    for c in found:
        rows = card.bins_of(c.name)
        assert sum(b.train_share for b in rows) == pytest.approx(1.0)
        if c.kind == "numeric":
            assert 2 <= len(rows) <= 10
            assert rows[0].lower is None and rows[-1].upper is None
            lowers = [float(b.lower) for b in rows[1:] if b.lower is not None]
            assert len(lowers) == len(rows) - 1
            assert lowers == sorted(lowers) and len(set(lowers)) == len(lowers)
            assert all(b.train_share > 0 for b in rows)  # no empty bin from the training data
            # Points move one way along the bins, the way the coefficient says.
            points = np.array([b.points for b in rows])
            slope = saved.weights[0].ravel()[c.columns[0]]
            assert np.all(np.sign(np.diff(points)) == -np.sign(slope))
        else:
            assert [b.label for b in rows] == list(c.levels)
    # With the numeric characteristics at their bins' means the table is exact: check the
    # categorical ones alone, on rows whose numeric points are subtracted out exactly.
    exact = exact_points(saved, found, split.x_test, card.scaling)
    binned = card.binned_points(found, split.x_test)
    categorical = [j for j, c in enumerate(found) if c.kind == "categorical"]
    np.testing.assert_allclose(binned[:, categorical], exact[:, categorical], atol=1e-9)
    error = binning_error(card, saved, found, split.x_test)
    assert 0 < error["mean_abs_points"] <= error["max_abs_points"]


def test_a_feature_that_raises_risk_costs_points_in_its_highest_bin(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    # A trained model on the real table: a longer loan is riskier (German credit's best-known
    # effect), so its longest-duration bin earns the fewest points.
    from clients import TrainConfig, train_local

    x, y = encode(german, german_schema)
    scaler = Standardizer.fit(x)
    model = build_model(ModelSpec(), x.shape[1], 0)
    train_local(
        model, scaler.transform(x), y.copy(), TrainConfig(epochs=5, learning_rate=0.1, seed=0)
    )
    saved = _saved(model, _names(german_schema), scaler)
    rows = build_scorecard(saved, german_schema, x, y).bins_of("duration_in_month")
    assert rows[-1].points == min(b.points for b in rows)
    assert rows[-1].train_bad_rate > rows[0].train_bad_rate


def test_the_csv_round_trips_and_rescales_like_a_rebuild(split: LocalDataset) -> None:
    names = _names(split.schema)
    saved = _saved(
        _random_model("logistic", split.n_features, 9), names, Standardizer.fit(split.x_train)
    )
    card = build_scorecard(saved, split.schema, split.x_train, split.y_train)
    frame = pd.read_csv(io.BytesIO(card.to_csv()), dtype=str, keep_default_na=False)
    back = Scorecard.from_frame(frame, card.scaling)
    assert [b.label for b in back.bins] == [b.label for b in card.bins]
    np.testing.assert_allclose(
        [b.points for b in back.bins], [b.points for b in card.bins], atol=1e-4
    )
    other = ScoreScaling(pdo=50, base_score=700, base_odds=10)
    rebuilt = build_scorecard(saved, split.schema, split.x_train, split.y_train, scaling=other)
    np.testing.assert_allclose(
        [b.points for b in card.rescaled(other).bins], [b.points for b in rebuilt.bins], atol=1e-9
    )


def test_an_mlp_gets_no_scorecard(split: LocalDataset) -> None:
    names = _names(split.schema)
    saved = _saved(
        _random_model("mlp", split.n_features, 1), names, Standardizer.fit(split.x_train)
    )
    with pytest.raises(ConfigError, match="logistic regression"):
        build_scorecard(saved, split.schema, split.x_train, split.y_train)


def test_a_model_of_another_schema_is_refused(split: LocalDataset) -> None:
    names = _names(split.schema)
    saved = _saved(
        _random_model("logistic", split.n_features, 1), names[::-1], Standardizer.fit(split.x_train)
    )
    with pytest.raises(ModelFileError, match="another schema"):
        build_scorecard(saved, split.schema, split.x_train, split.y_train)


def test_reason_codes_rank_the_points_lost_and_skip_the_best_bins() -> None:
    points = np.array([[10.0, 5.0, 30.0], [12.0, 20.0, 30.0]])
    best = np.array([12.0, 20.0, 30.0])
    reasons, lost = reason_codes(points, best, ["a", "b", "c"], top=3)
    assert reasons == [["b", "a"], []]
    np.testing.assert_allclose(lost[0, :2], [15.0, 2.0])
    assert np.isnan(lost[0, 2]) and np.isnan(lost[1]).all()
    reasons, _ = reason_codes(points, best, ["a", "b", "c"], top=1)
    assert reasons == [["b"], []]


# --- the saved model ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_the_saved_model_scores_without_torch_as_torch_does(split: LocalDataset, kind: str) -> None:
    names = _names(split.schema)
    model = _random_model(kind, split.n_features, 4)
    scaler = Standardizer.fit(split.x_train)
    archive = _saved(model, names, scaler).to_bytes()
    with np.load(io.BytesIO(archive), allow_pickle=False) as npz:
        assert list(npz["parameter_names"]) == list(model.state_dict())
        assert list(npz["feature_names"]) == names
        np.testing.assert_array_equal(npz["federation_mean"], scaler.mean)
        np.testing.assert_array_equal(npz["federation_std"], scaler.std)
        assert str(npz["model_kind"]) == kind
    loaded = _load_bytes(archive)
    expected = predict_proba(model, scaler.transform(split.x_test))
    np.testing.assert_allclose(loaded.probability(split.x_test), expected, atol=1e-5)
    # The hand-written gradient is torch's.
    z = torch.tensor(scaler.transform(split.x_test[:5]), requires_grad=True)
    model(z).sum().backward()
    _, grad = loaded.logit_and_gradient(split.x_test[:5])
    assert z.grad is not None
    np.testing.assert_allclose(grad, z.grad.numpy(), atol=1e-5)


def _load_bytes(archive: bytes) -> SavedModel:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "global_model.npz"
        path.write_bytes(archive)
        return load_model(path)


def test_an_unnamed_archive_from_an_older_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "global_model.npz"
    np.savez(path, np.ones((1, 3)), np.zeros(1))
    with pytest.raises(ModelFileError, match="older crossfed"):
        load_model(path)


def test_an_archive_whose_shapes_disagree_is_refused(split: LocalDataset) -> None:
    names = _names(split.schema)
    scaler = Standardizer.fit(split.x_train)
    with pytest.raises(ModelFileError):
        SavedModel.create(
            {"linear.weight": np.ones((1, len(names) - 1)), "linear.bias": np.zeros(1)},
            kind="logistic",
            feature_names=names,
            scaler=scaler,
        )
    with pytest.raises(ModelFileError, match="kind"):
        SavedModel.create(
            {"linear.weight": np.ones((1, len(names))), "linear.bias": np.zeros(1)},
            kind="xgboost",
            feature_names=names,
            scaler=scaler,
        )


# --- PSI and the federation's mean score -----------------------------------------------------


def test_psi_by_hand_and_its_reading() -> None:
    expected = np.array([0.5, 0.5])
    actual = np.array([0.25, 0.75])
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0
    assert psi_reading(0.05).startswith("stable")
    assert psi_reading(0.2).startswith("some shift")
    assert psi_reading(0.3).startswith("major shift")


def test_a_baseline_sees_a_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(12)
    baseline = ScoreBaseline.from_logits(rng.normal(-1.0, 1.0, 5000))
    assert len(baseline.shares) == 10
    assert all(s == pytest.approx(0.1, abs=0.01) for s in baseline.shares)
    assert baseline.psi(rng.normal(-1.0, 1.0, 5000)) < 0.02
    assert baseline.psi(rng.normal(0.0, 1.0, 5000)) > 0.25
    assert ScoreBaseline.from_dict(baseline.as_dict()) == baseline


def test_the_federations_mean_log_odds_is_the_intercept(split: LocalDataset) -> None:
    # Three institutions standardise with their summed moments; over all their training
    # rows the mean log-odds of any logistic model is then its bias: no histogram needed.
    parts = np.array_split(split.x_train, 3)
    total = sum_moments(local_moments(p) for p in parts)
    scaler = Standardizer.from_moments(total.n_rows, total.sums, total.sums_sq)
    saved = _saved(_random_model("logistic", split.n_features, 2), _names(split.schema), scaler)
    pooled = np.concatenate([saved.logit(p) for p in parts])
    assert federation_mean_logit(saved) == pytest.approx(float(pooled.mean()), abs=1e-9)


# --- the approval-rate target -----------------------------------------------------------------


def test_the_default_target_is_half_the_observed_bad_rate() -> None:
    # A book whose bad rate is 28%: a fixed 2% target approves almost nobody.
    rng = np.random.default_rng(21)
    y = (rng.random(4000) < 0.28).astype(float)
    p = np.clip(0.28 + 0.2 * (y - 0.28) + rng.normal(0, 0.2, y.size), 0.001, 0.999)  # AUC 0.77
    fixed = evaluate(y, p, 0.02)
    default = evaluate(y, p)
    assert default.target is not None and default.target.fraction == 0.5
    assert default.target.bad_rate == pytest.approx(0.5 * y.mean())
    assert "0.5 x the test split's bad rate" in default.target.describe()
    assert fixed.approval_rate < 0.02 and default.approval_rate > 0.4
    train = BadRateTarget.relative(np.r_[np.ones(30), np.zeros(70)])
    assert train.bad_rate == pytest.approx(0.15) and train.source == "training split"
    assert evaluate(y, p, train).target == train


# --- what a run writes ------------------------------------------------------------------------


def _run_facts() -> dict[str, object]:
    return {
        "mode": "encrypted", "model": "logistic", "rounds": 4, "epochs": 2, "batch_size": 64,
        "learning_rate": 0.3, "proximal_mu": 0.0, "seed": 0, "test_fraction": 0.25,
        "institutions": 3, "dp_clip": 0.5, "dp_noise_multiplier": 1.1, "dp_delta": 1e-5,
        "institution": "bank-eu", "data_file": "loans.csv", "federation_train_rows": 2250,
    }  # fmt: skip


def test_a_logistic_run_writes_model_scorecard_card_and_metrics(
    split: LocalDataset, tmp_path: Path
) -> None:
    model = _random_model("logistic", split.n_features, 6)
    scaler = Standardizer.fit(split.x_train)
    federation = {"auc": 0.71, "ks": 0.3, "brier": 0.2, "log_loss": 0.55, "approval_rate": 0.4}
    metrics = write_final_outputs(
        tmp_path, model, split, scaler, _run_facts(), federation=federation
    )
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["test"] == metrics
    target = report["approval_target"]
    assert target["bad_rate"] == pytest.approx(0.5 * float(split.y_train.mean()))
    assert "training split" in target["description"]
    assert "0.5 x its own training split" in report["federation_approval_target"]
    saved = load_model(tmp_path / "global_model.npz")
    for a, b in zip(saved.weights, get_weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    card = pd.read_csv(tmp_path / "scorecard.csv")
    assert list(card.columns[:6]) == ["characteristic", "type", "bin", "lower", "upper", "points"]
    assert set(card["characteristic"]) == set(split.schema.feature_columns)
    assert report["scorecard"]["produced"] and report["scorecard"]["bins"] == len(card)
    assert report["federation_mean_score"] == pytest.approx(
        float(ScoreScaling().score_from_logit(float(saved.weights[1][0])))
    )
    text = (tmp_path / "model_card.md").read_text()
    for needed in (
        "bank-eu", "2,250 training rows", "ε = ", "noise multiplier 1.1", "0.7100",
        "bad rate <=", "600 points at 50:1", "What was measured", "Intended use",
    ):  # fmt: skip
        assert needed in text, needed


def test_an_mlp_run_writes_no_scorecard_and_removes_a_stale_one(
    split: LocalDataset, tmp_path: Path
) -> None:
    (tmp_path / "scorecard.csv").write_text("stale\n")
    model = _random_model("mlp", split.n_features, 6)
    facts = {**_run_facts(), "model": "mlp", "hidden": "32,16", "dp_clip": 0.0}
    write_final_outputs(tmp_path, model, split, Standardizer.fit(split.x_train), facts)
    assert not (tmp_path / "scorecard.csv").exists()
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["scorecard"]["produced"] is False and "MLP" in report["scorecard"]["why"]
    assert report["federation_mean_score"] is None
    text = (tmp_path / "model_card.md").read_text()
    assert "No points-based scorecard" in text and "hidden layers 32, 16" in text
    assert "Differential privacy: off" in text
