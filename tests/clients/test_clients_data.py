"""Loading, validation and encoding of an institution's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import (
    OTHER_CATEGORY,
    DataLoadError,
    DataValidationError,
    FederationSchema,
    encode,
    feature_names,
    infer_schema,
    load_table,
    schema_from_dict,
    train_test_split,
    validate,
)

# --- load_table -------------------------------------------------------------


def test_csv_and_parquet_load_the_same_table(german: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "loans.PARQUET"
    german.to_parquet(path)
    loaded = load_table(path)
    pd.testing.assert_frame_equal(loaded, german, check_dtype=False)


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loans.json"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataLoadError, match=r"unknown extension '\.json'") as caught:
        load_table(path)
    assert caught.value.path == str(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataLoadError, match="does not exist"):
        load_table(tmp_path / "absent.csv")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataLoadError, match="is empty"):
        load_table(path)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    with pytest.raises(DataLoadError, match="no columns"):
        load_table(blank)


def test_corrupt_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataLoadError, match="cannot read"):
        load_table(path)


def test_header_only_csv_loads_and_then_fails_validation(
    german: pd.DataFrame, german_schema: FederationSchema, tmp_path: Path
) -> None:
    path = tmp_path / "header.csv"
    german.head(0).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="zero rows") as caught:
        validate(load_table(path), german_schema)
    assert caught.value.column is None
    assert caught.value.count == 0


# --- validate ---------------------------------------------------------------


def _raises(frame: pd.DataFrame, schema: FederationSchema) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        validate(frame, schema)
    return caught.value


def test_the_real_table_is_valid(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    clean = validate(german, german_schema)
    assert list(clean.columns) == list(german_schema.columns)
    assert clean["creditability"].sum() == 300


def test_missing_column(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    error = _raises(german.drop(columns=["purpose", "job"]), german_schema)
    assert error.column == "purpose"
    assert error.count == 1000
    assert "'purpose'" in str(error) and "job" in str(error) and "1000" in str(error)


def test_missing_target(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    error = _raises(german.drop(columns=["creditability"]), german_schema)
    assert error.column == "creditability"


def test_extra_column(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    german["customer_id"] = np.arange(len(german))
    error = _raises(german, german_schema)
    assert error.column == "customer_id"
    assert error.count == 1000
    assert "customer_id" in str(error)


def test_duplicate_column(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    doubled = pd.concat([german, german[["job"]]], axis=1)
    error = _raises(doubled, german_schema)
    assert error.column == "job"


def test_text_in_numeric_column(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    amounts = german["credit_amount"].astype(object)
    amounts.iloc[[3, 17, 400]] = ["n/a", "1,200", "unknown"]
    german["credit_amount"] = amounts
    error = _raises(german, german_schema)
    assert error.column == "credit_amount"
    assert error.count == 3
    assert "3 rows" in str(error) and "'n/a'" in str(error)


def test_text_in_numeric_column_read_from_csv(
    german: pd.DataFrame, german_schema: FederationSchema, tmp_path: Path
) -> None:
    german["age_in_years"] = german["age_in_years"].astype(object)
    german.loc[:4, "age_in_years"] = "forty"
    path = tmp_path / "loans.csv"
    german.to_csv(path, index=False)
    error = _raises(load_table(path), german_schema)
    assert (error.column, error.count) == ("age_in_years", 5)


def test_infinite_numeric_values(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    german["credit_amount"] = german["credit_amount"].astype(float)
    german.loc[[1, 2], "credit_amount"] = np.inf
    german.loc[3, "credit_amount"] = 1e300  # finite, but infinite once cast to float32
    error = _raises(german, german_schema)
    assert (error.column, error.count) == ("credit_amount", 3)


def test_nan_numeric_refused_by_default(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    german["duration_in_month"] = german["duration_in_month"].astype(float)
    german.loc[[0, 10, 20, 30], "duration_in_month"] = np.nan
    error = _raises(german, german_schema)
    assert (error.column, error.count) == ("duration_in_month", 4)
    assert "refuse" in str(error)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"impute": "zero"}, 0.0),
        ({"impute": "median", "value": 18.0}, 18.0),
        ({"impute": "constant", "value": -1.5}, -1.5),
    ],
)
def test_nan_numeric_imputed_with_the_schema_value(
    german: pd.DataFrame, german_schema: FederationSchema, policy: dict, expected: float
) -> None:
    data = german_schema.model_dump()
    data["numeric"][0].update(policy)
    schema = schema_from_dict(data)
    german["duration_in_month"] = german["duration_in_month"].astype(float)
    german.loc[[0, 10], "duration_in_month"] = np.nan
    clean = validate(german, schema)
    assert clean.loc[[0, 10], "duration_in_month"].tolist() == [expected, expected]
    assert clean.loc[1, "duration_in_month"] == german.loc[1, "duration_in_month"]


def test_unseen_category_refused(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    german.loc[[5, 6], "purpose"] = "crypto mining rig"
    german.loc[7, "purpose"] = None
    error = _raises(german, german_schema)
    assert (error.column, error.count) == ("purpose", 3)
    assert "crypto mining rig" in str(error)


def test_unseen_category_mapped_to_other(german: pd.DataFrame) -> None:
    schema = infer_schema(german, "creditability", "bad", unseen="other")
    german.loc[[5, 6], "purpose"] = "crypto mining rig"
    clean = validate(german, schema)
    assert (clean["purpose"] == OTHER_CATEGORY).sum() == 2
    x, _ = encode(german, schema)
    other = feature_names(schema).index(f"purpose={OTHER_CATEGORY}")
    assert x[:, other].sum() == 2


def test_zero_rows(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    error = _raises(german.head(0), german_schema)
    assert (error.column, error.count) == (None, 0)


def test_single_class(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    goods = german[german["creditability"] == "good"]
    error = _raises(goods, german_schema)
    assert (error.column, error.count) == ("creditability", 700)
    assert "single class" in str(error)
    clean = validate(goods, german_schema, require_both_classes=False)
    assert clean["creditability"].sum() == 0


def test_unknown_target_label(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    german.loc[[0, 1, 2, 3], "creditability"] = "indeterminate"
    error = _raises(german, german_schema)
    assert (error.column, error.count) == ("creditability", 4)
    assert "indeterminate" in str(error)


def test_missing_target_values(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    german.loc[[8, 9], "creditability"] = None
    error = _raises(german, german_schema)
    assert (error.column, error.count) == ("creditability", 2)


def test_numeric_target_labels_match_across_dtypes() -> None:
    schema = schema_from_dict(
        {"target": {"column": "y", "positive": 1, "negatives": [0]}, "numeric": [{"name": "a"}]}
    )
    for labels in ([1, 0, 1], [1.0, 0.0, 1.0], ["1", "0", "1"]):
        frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": labels})
        _, y = encode(frame, schema)
        assert y.tolist() == [1.0, 0.0, 1.0]


# --- encode -----------------------------------------------------------------


def test_encode_shape_and_labels(german: pd.DataFrame, german_schema: FederationSchema) -> None:
    x, y = encode(german, german_schema)
    names = feature_names(german_schema)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.shape == (1000, len(names))
    assert y.sum() == 300
    assert names[:2] == ["duration_in_month", "credit_amount"]
    assert x[0, names.index("credit_amount")] == german.loc[0, "credit_amount"]
    for column in german_schema.categorical:
        block = [names.index(f"{column.name}={c}") for c in column.categories]
        assert np.all(x[:, block].sum(axis=1) == 1.0)
        hot = [names.index(f"{column.name}={value}") for value in german[column.name]]
        assert np.all(x[np.arange(len(x)), hot] == 1.0), column.name


def test_identical_columns_across_institutions_with_different_categories(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    # Institution A lends for cars only, B for everything else: disjoint 'purpose' values.
    cars = german["purpose"].str.startswith("car")
    bank_a, bank_b = german[cars].reset_index(drop=True), german[~cars].reset_index(drop=True)
    assert set(bank_a["purpose"]).isdisjoint(set(bank_b["purpose"]))
    x_a, _ = encode(bank_a, german_schema)
    x_b, _ = encode(bank_b, german_schema)
    assert x_a.shape[1] == x_b.shape[1] == len(feature_names(german_schema))
    names = feature_names(german_schema)
    purpose_cols = [i for i, n in enumerate(names) if n.startswith("purpose=")]
    used_a = {names[i] for i in purpose_cols if x_a[:, i].any()}
    used_b = {names[i] for i in purpose_cols if x_b[:, i].any()}
    assert used_a and used_b and used_a.isdisjoint(used_b)
    # Same row, encoded by either institution, gives the same vector.
    row = bank_b.head(1)
    x_row, _ = encode(row, german_schema, require_both_classes=False)
    assert np.array_equal(x_row, x_b[:1])


def test_encoding_ignores_row_and_column_order(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    x, y = encode(german, german_schema)
    shuffled = german[list(reversed(german.columns))]
    x2, y2 = encode(shuffled, german_schema)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


# --- train_test_split -------------------------------------------------------


def test_split_is_seeded_and_stratified(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    x, y = encode(german, german_schema)
    first = train_test_split(x, y, seed=7)
    again = train_test_split(x, y, seed=7)
    other = train_test_split(x, y, seed=8)
    assert np.array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
    assert len(first.y_test) == 250
    assert first.y_test.mean() == pytest.approx(0.3)
    assert first.y_train.mean() == pytest.approx(0.3)


def test_split_refuses_impossible_input() -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    with pytest.raises(DataValidationError):
        train_test_split(x, np.array([0, 0, 0, 0, 1]), seed=0)
    with pytest.raises(DataValidationError):
        train_test_split(x, np.array([0, 1]), seed=0)
