"""Federation schema: inference, YAML round trip, refusal of broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clients import (
    OTHER_CATEGORY,
    ExcludedColumn,
    FederationSchema,
    SchemaError,
    infer_schema,
    load_schema,
    propose_schema,
    save_schema,
    schema_from_dict,
)


def test_infer_splits_numeric_and_categorical_by_dtype(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    numeric = [c.name for c in german_schema.numeric]
    categorical = [c.name for c in german_schema.categorical]
    assert numeric == [c for c in german.columns if german[c].dtype.kind in "if"]
    assert "purpose" in categorical and "credit_amount" in numeric
    assert "creditability" not in numeric + categorical
    assert german_schema.target.positive == "bad"
    assert german_schema.target.negatives == ("good",)
    for column in german_schema.categorical:
        assert list(column.categories) == sorted(german[column.name].unique())
        assert column.unseen == "error"
    assert all(c.impute == "refuse" for c in german_schema.numeric)


def test_infer_median_fixes_the_reference_median(german: pd.DataFrame) -> None:
    schema = infer_schema(german, "creditability", "bad", impute="median", unseen="other")
    amount = next(c for c in schema.numeric if c.name == "credit_amount")
    assert amount.fill_value == pytest.approx(german["credit_amount"].median())
    assert all(c.unseen == "other" for c in schema.categorical)
    assert schema.categorical[0].levels[-1] == OTHER_CATEGORY


def test_infer_forced_categorical_and_exclude(german: pd.DataFrame) -> None:
    schema = infer_schema(
        german, "creditability", "bad", categorical=["job"], exclude=["telephone"]
    )
    assert "telephone" not in schema.columns
    job = next(c for c in schema.categorical if c.name == "job")
    assert len(job.categories) == german["job"].nunique()


def test_german_credit_loses_no_column_to_the_identifier_rules(
    german: pd.DataFrame, german_schema: FederationSchema
) -> None:
    proposal = propose_schema(german, "creditability", "bad")
    assert proposal.excluded == ()
    assert proposal.schema == german_schema
    assert len(german_schema.numeric) == 7 and len(german_schema.categorical) == 13
    forced = propose_schema(
        german, "creditability", "bad", categorical=["job", "age_in_years"], exclude=["telephone"]
    )
    assert forced.excluded == (ExcludedColumn("telephone", "left out on request"),)
    assert "age_in_years" in [c.name for c in forced.schema.categorical]


@pytest.mark.parametrize("rows", [40, 100, 300])
def test_a_small_sample_keeps_its_amounts(german: pd.DataFrame, rows: int) -> None:
    # A sample this small has a different credit_amount in every row: still no row id.
    sample = german.drop_duplicates("credit_amount").sample(rows, random_state=rows)
    assert sample["credit_amount"].is_unique
    proposal = propose_schema(sample, "creditability", "bad", impute="median")
    assert "credit_amount" in [c.name for c in proposal.schema.numeric]
    assert "credit_amount" not in [c.name for c in proposal.excluded]


def _table(column: list[object], rows: int | None = None) -> pd.DataFrame:
    rows = rows or len(column)
    return pd.DataFrame(
        {
            "x": column,
            "amount": np.linspace(10.5, 99.5, rows),
            "y": ["bad" if k % 3 == 0 else "good" for k in range(rows)],
        }
    )


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        ([f"person {k}" for k in range(60)], "unique per row"),
        ([f"p{k % 40}" for k in range(60)], "nearly unique per row (40 distinct values in 60"),
        ([f"c{k % 250}" for k in range(1000)], "250 distinct values"),
        (["short"] * 59 + ["a" * 101], "free text (values up to 101"),
        (["one", "two"] * 29 + ["three\nlines", "one"], "free text"),
        (["n/a"] * 50 + [f"note {k}" for k in range(10)], "mostly one-off values (10 of its 11"),
        ([None] * 55 + [f"name {k}" for k in range(5)], "unique per row (5 rows)"),
        (list(range(7, 67)), "in sequence: a row identifier"),
        ([10**7 + 7919 * k for k in range(60)], "long whole number"),
        ([float(k) for k in range(60)], "in sequence: a row identifier"),
    ],
)
def test_identifier_like_columns_are_left_out_with_a_reason(
    column: list[object], reason: str
) -> None:
    proposal = propose_schema(_table(column), "y", "bad", impute="median")
    assert [c.name for c in proposal.excluded] == ["x"]
    assert reason in proposal.excluded[0].reason
    assert proposal.schema.feature_columns == ("amount",)


@pytest.mark.parametrize(
    "column",
    [
        ["a", "b", "c", "d"] * 15,  # a code list
        ["yes", "no"] + ["yes"] * 58,  # a rare value, but only two values
        [k % 7 for k in range(60)],  # a small coded number
        [0.5 + k for k in range(60)],  # unique per row, but not whole numbers
        [250 + 311 * k for k in range(60)],  # unique whole amounts, spread thin and short
        [True, False] * 30,
    ],
)
def test_ordinary_columns_stay(column: list[object]) -> None:
    proposal = propose_schema(_table(column), "y", "bad")
    assert proposal.excluded == ()
    assert "x" in proposal.schema.feature_columns


def test_a_table_of_identifiers_only_is_refused_by_name() -> None:
    frame = pd.DataFrame(
        {"name": [f"person {k}" for k in range(30)], "y": ["bad", "good", "good"] * 10}
    )
    with pytest.raises(SchemaError, match="'name': unique per row") as caught:
        propose_schema(frame, "y", "bad")
    assert "person 1" not in str(caught.value)


def test_infer_refuses_unknown_positive_label(german: pd.DataFrame) -> None:
    with pytest.raises(SchemaError) as caught:
        infer_schema(german, "creditability", "default")
    assert caught.value.field == "target.positive"
    with pytest.raises(SchemaError) as caught:
        infer_schema(german, "no_such_target", "bad")
    assert caught.value.field == "target.column"


def test_yaml_round_trip(german_schema: FederationSchema, tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    save_schema(german_schema, path)
    loaded = load_schema(path)
    assert loaded == german_schema
    assert loaded.to_yaml() == german_schema.to_yaml()


def test_yaml_round_trip_keeps_imputation_values(german: pd.DataFrame, tmp_path: Path) -> None:
    schema = infer_schema(german, "creditability", "bad", impute="median")
    path = tmp_path / "schema.yaml"
    save_schema(schema, path)
    assert load_schema(path) == schema


def _dump(german_schema: FederationSchema) -> dict:
    return yaml.safe_load(german_schema.to_yaml())


def test_missing_field_is_named(german_schema: FederationSchema, tmp_path: Path) -> None:
    data = _dump(german_schema)
    del data["target"]["positive"]
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SchemaError, match=r"target\.positive") as caught:
        load_schema(path)
    assert caught.value.field == "target.positive"


def test_missing_category_list_is_named(german_schema: FederationSchema) -> None:
    data = _dump(german_schema)
    del data["categorical"][2]["categories"]
    with pytest.raises(SchemaError) as caught:
        schema_from_dict(data)
    assert caught.value.field == "categorical[2].categories"


def test_wrong_type_is_named(german_schema: FederationSchema) -> None:
    data = _dump(german_schema)
    data["numeric"][1]["impute"] = "mean"
    with pytest.raises(SchemaError) as caught:
        schema_from_dict(data)
    assert caught.value.field == "numeric[1].impute"
    data = _dump(german_schema)
    data["categorical"][0]["categories"] = "not a list"
    with pytest.raises(SchemaError) as caught:
        schema_from_dict(data)
    assert caught.value.field == "categorical[0].categories"


def test_unknown_field_is_refused(german_schema: FederationSchema) -> None:
    data = _dump(german_schema)
    data["target"]["postive"] = "bad"
    with pytest.raises(SchemaError) as caught:
        schema_from_dict(data)
    assert caught.value.field == "target.postive"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"name": "x", "impute": "median"}, "finite 'value'"),
        ({"name": "x", "impute": "constant", "value": float("nan")}, "finite 'value'"),
        ({"name": "x", "impute": "refuse", "value": 3.0}, "takes no 'value'"),
        ({"name": "x", "impute": "zero", "value": 3.0}, "no other 'value'"),
    ],
)
def test_imputation_value_must_match_policy(column: dict, message: str) -> None:
    data = {"target": {"column": "y", "positive": "1", "negatives": ["0"]}, "numeric": [column]}
    with pytest.raises(SchemaError, match=message) as caught:
        schema_from_dict(data)
    assert caught.value.field == "numeric[0]"


def test_inconsistent_schemas_are_refused() -> None:
    target = {"column": "y", "positive": "1", "negatives": ["0"]}
    with pytest.raises(SchemaError, match="at least one"):
        schema_from_dict({"target": target})
    with pytest.raises(SchemaError, match="declared twice"):
        schema_from_dict({"target": target, "numeric": [{"name": "y"}]})
    with pytest.raises(SchemaError, match="both positive and negative"):
        schema_from_dict(
            {
                "target": {"column": "y", "positive": "1", "negatives": ["1"]},
                "numeric": [{"name": "a"}],
            }
        )
    with pytest.raises(SchemaError, match="reserved"):
        schema_from_dict(
            {"target": target, "categorical": [{"name": "c", "categories": [OTHER_CATEGORY]}]}
        )
    with pytest.raises(SchemaError) as caught:
        schema_from_dict({"target": target, "numeric": [{"name": "a"}], "format_version": 2})
    assert caught.value.field == "format_version"


def test_numeric_labels_are_read_as_strings() -> None:
    schema = schema_from_dict(
        {"target": {"column": "y", "positive": 1, "negatives": [0]}, "numeric": [{"name": "a"}]}
    )
    assert schema.target.positive == "1"
    assert schema.target.negatives == ("0",)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("target: [unclosed\n")
    with pytest.raises(SchemaError, match="not valid YAML"):
        load_schema(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(SchemaError, match="mapping"):
        load_schema(scalar)
