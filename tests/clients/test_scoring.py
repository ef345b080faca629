"""``score_file``: a model folder, a kit and an applicants' file in; scores, bands, reasons out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import (
    ConfigError,
    DataValidationError,
    FederationSchema,
    LocalDataset,
    ModelFileError,
    ModelFolder,
    ModelSpec,
    Standardizer,
    TrainConfig,
    build_model,
    encode,
    predict_proba,
    save_schema,
    score_file,
    train_local,
    train_test_split,
    write_final_outputs,
)
from clients.scaling import RiskBands, ScoreScaling
from crossfed.protocol import ProvisioningError
from federation import create_kits


def _folder(tmp_path: Path, german: pd.DataFrame, schema: FederationSchema, kind: str) -> Path:
    """What ``crossfed client`` leaves behind, from a model trained on 750 rows."""
    x, y = encode(german, schema)
    parts = train_test_split(x, y, test_size=0.25, seed=0)
    data = LocalDataset(schema, parts.x_train, parts.y_train, parts.x_test, parts.y_test)
    scaler = Standardizer.fit(data.x_train)
    model = build_model(ModelSpec(kind=kind), data.n_features, 0)  # type: ignore[arg-type]
    train_local(
        model,
        scaler.transform(data.x_train),
        data.y_train.copy(),
        TrainConfig(epochs=4, learning_rate=0.1, seed=0),
    )
    out = tmp_path / f"out-{kind}"
    write_final_outputs(out, model, data, scaler, {"mode": "encrypted", "model": kind})
    return out


@pytest.fixture
def kit(tmp_path: Path, german_schema: FederationSchema) -> Path:
    save_schema(german_schema, tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="scoring",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU")],
        schema=tmp_path / "schema.yaml",
        pin="sha256:" + "0" * 64,
    )
    return tmp_path / "kits" / "bank-eu"


@pytest.fixture
def logistic(tmp_path: Path, german: pd.DataFrame, german_schema: FederationSchema) -> Path:
    return _folder(tmp_path, german, german_schema, "logistic")


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "applicants.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_each_applicant_gets_a_score_a_pd_a_band_and_reasons(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    applicants = german.drop(columns="creditability").assign(app_id=np.arange(len(german)) + 7)
    result = score_file(kit, logistic, _csv(tmp_path, applicants), id_columns=("app_id",))
    table = result.table
    assert list(table.columns[:5]) == ["app_id", "row", "score", "probability_of_default", "band"]
    assert table["app_id"].tolist() == list(range(7, 7 + len(german)))
    folder = ModelFolder.load(logistic)
    x, _ = encode(german, folder_schema(kit))
    np.testing.assert_allclose(table["probability_of_default"], folder.model.probability(x))
    # Score and PD are one scale; the band is the PD's grade.
    scale = ScoreScaling()
    np.testing.assert_allclose(
        table["score"], scale.score_from_pd(table["probability_of_default"]), atol=0.006
    )
    assert (table["band"] == RiskBands().assign(table["probability_of_default"])).all()
    # The scorecard's points add up close to the score; reasons lose points, largest first.
    assert (table["scorecard_points"] - table["score"]).abs().mean() < 5
    lost = table[[f"reason_{k}_points" for k in range(1, 5)]].to_numpy()
    assert (np.nan_to_num(lost[:, :-1], nan=-1) >= np.nan_to_num(lost[:, 1:], nan=-1)).all()
    assert set(table["reason_1"]) <= set(folder_schema(kit).feature_columns)
    # No labels in the file: scores only, and no metrics.
    assert result.metrics is None and "scores only" in result.labels_note
    assert result.ignored_columns == ()


def folder_schema(kit: Path) -> FederationSchema:
    from clients.scoring import load_kit_schema

    return load_kit_schema(kit)


def test_the_reasons_are_the_bins_that_cost_the_most_against_the_best(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    result = score_file(kit, logistic, _csv(tmp_path, german), reasons=2)
    folder = ModelFolder.load(logistic)
    card = folder.scorecard
    assert card is not None
    first = german.iloc[0]
    losses = {}
    for name in card.characteristic_names:
        rows = card.bins_of(name)
        best = max(b.points for b in rows)
        value = first[name]
        if rows[0].kind == "categorical":
            mine = next(b for b in rows if b.label == str(value))
        else:
            mine = next(
                b
                for b in rows
                if (b.lower is None or value >= b.lower) and (b.upper is None or value < b.upper)
            )
        losses[name] = best - mine.points
    expected = sorted(losses, key=lambda n: -losses[n])[:2]
    assert [result.table.loc[0, "reason_1"], result.table.loc[0, "reason_2"]] == expected
    assert result.table.loc[0, "reason_1_points"] == pytest.approx(losses[expected[0]], abs=0.01)


def test_labels_give_metrics_at_the_recorded_target(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    result = score_file(kit, logistic, _csv(tmp_path, german.assign(branch="north")))
    assert result.metrics is not None and 0.5 < result.metrics.auc <= 1.0
    assert result.metrics.target is not None
    assert "training split" in result.metrics.target.describe()
    assert result.ignored_columns == ("branch",)
    given = score_file(kit, logistic, _csv(tmp_path, german), target_bad_rate=0.1)
    assert given.metrics is not None and given.metrics.target is not None
    assert given.metrics.target.bad_rate == 0.1


def test_psi_is_small_on_the_same_population_and_large_on_a_shifted_one(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    same = score_file(kit, logistic, _csv(tmp_path, german))
    assert same.psi < 0.1
    riskier = german.assign(
        duration_in_month=german["duration_in_month"] * 3,
        credit_amount=german["credit_amount"] * 4,
    )
    moved = score_file(kit, logistic, _csv(tmp_path, riskier, "riskier.csv"))
    assert moved.psi > 0.25
    assert moved.mean_score < same.mean_score
    assert same.federation_mean_score is not None


def test_another_scale_moves_the_scores_not_the_bands(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    path = _csv(tmp_path, german)
    base = score_file(kit, logistic, path)
    other = ScoreScaling(pdo=40, base_score=500, base_odds=20)
    moved = score_file(kit, logistic, path, scaling=other)
    np.testing.assert_allclose(
        moved.table["score"], ScoreScaling().rescale(base.table["score"], other), atol=0.02
    )
    assert (moved.table["band"] == base.table["band"]).all()
    # The table's points are rescaled with it.
    np.testing.assert_allclose(
        moved.table["scorecard_points"],
        ScoreScaling().rescale(base.table["scorecard_points"], other),
        atol=0.02,
    )


def test_an_mlp_gets_pd_band_and_gradient_reasons_without_a_scorecard(
    tmp_path: Path, kit: Path, german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    folder = _folder(tmp_path, german, german_schema, "mlp")
    result = score_file(kit, folder, _csv(tmp_path, german.head(50)))
    assert "scorecard_points" not in result.table.columns
    assert "gradient x input" in result.reason_method
    assert result.table["reason_1"].isin(german_schema.feature_columns).all()
    assert (result.table["reason_1_points"] > 0).all()
    assert result.federation_mean_score is None


def test_a_file_that_misses_a_schema_column_is_refused_by_name(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    with pytest.raises(DataValidationError, match="credit_amount") as caught:
        score_file(kit, logistic, _csv(tmp_path, german.drop(columns="credit_amount")))
    assert caught.value.column == "credit_amount"
    spoiled = german.astype({"purpose": object})
    spoiled.loc[3, "purpose"] = "yacht"
    with pytest.raises(DataValidationError, match="purpose"):
        score_file(kit, logistic, _csv(tmp_path, spoiled, "spoiled.csv"))
    with pytest.raises(DataValidationError, match="id column"):
        score_file(kit, logistic, _csv(tmp_path, german), id_columns=("app_id",))
    with pytest.raises(ConfigError):
        score_file(kit, logistic, _csv(tmp_path, german), reasons=0)


def test_a_kit_whose_schema_was_edited_is_refused(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    schema = kit / "schema.yaml"
    schema.write_text(schema.read_text().replace("creditability", "creditworthiness"))
    with pytest.raises(ProvisioningError):
        score_file(kit, logistic, _csv(tmp_path, german))


def test_a_model_folder_from_another_schema_or_incomplete_is_refused(
    tmp_path: Path, kit: Path, logistic: Path, german: pd.DataFrame
) -> None:
    path = _csv(tmp_path, german)
    smaller = german.drop(columns=["telephone"])
    from clients import infer_schema

    other = _folder(
        tmp_path / "other", smaller, infer_schema(smaller, "creditability", "bad"), "logistic"
    )
    with pytest.raises(ModelFileError, match="another schema"):
        score_file(kit, other, path)
    (logistic / "scorecard.csv").unlink()
    with pytest.raises(ModelFileError, match=r"scorecard\.csv"):
        score_file(kit, logistic, path)
    with pytest.raises(ModelFileError, match="not a model folder"):
        score_file(kit, tmp_path / "nowhere", path)


def test_the_saved_model_agrees_with_torch(
    tmp_path: Path, german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    # What `crossfed score` computes without torch is what the trained torch model says.
    x, y = encode(german, german_schema)
    parts = train_test_split(x, y, test_size=0.25, seed=0)
    data = LocalDataset(german_schema, parts.x_train, parts.y_train, parts.x_test, parts.y_test)
    scaler = Standardizer.fit(data.x_train)
    model = build_model(ModelSpec(kind="mlp"), data.n_features, 3)
    write_final_outputs(tmp_path, model, data, scaler, {"mode": "plaintext"})
    folder = ModelFolder.load(tmp_path)
    np.testing.assert_allclose(
        folder.model.probability(data.x_test),
        predict_proba(model, scaler.transform(data.x_test)),
        atol=1e-5,
    )
