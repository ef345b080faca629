"""``schema infer``: a schema that accepts its own table, no guessed labels, every choice said."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clients import (
    MISSING_CATEGORY,
    DataValidationError,
    SchemaError,
    encode,
    feature_names,
    propose_schema,
    schema_from_dict,
    validate,
)

TARGET = "creditability"


@pytest.fixture
def gappy(german: pd.DataFrame) -> pd.DataFrame:
    """German credit with cells missing in two categorical columns and one numeric."""
    frame = german.copy()
    frame.loc[[3, 5, 7], "housing"] = np.nan
    frame.loc[[4, 9], "purpose"] = np.nan
    frame.loc[[2], "age_in_years"] = np.nan
    return frame


def test_the_inferred_schema_accepts_its_own_table(gappy: pd.DataFrame) -> None:
    proposal = propose_schema(gappy, TARGET, "bad", impute="median")

    clean = validate(gappy, proposal.schema)

    housing = next(c for c in proposal.schema.categorical if c.name == "housing")
    assert housing.missing == "category"
    assert (clean["housing"] == MISSING_CATEGORY).sum() == 3
    assert "housing=__missing__" in feature_names(proposal.schema)
    # Columns with no missing value here get no extra level.
    telephone = next(c for c in proposal.schema.categorical if c.name == "telephone")
    assert telephone.missing is None and MISSING_CATEGORY not in telephone.levels


def test_every_choice_is_reported(gappy: pd.DataFrame) -> None:
    proposal = propose_schema(gappy, TARGET, "bad", impute="median")
    text = "\n".join(proposal.choices)
    assert "bad = 'bad' (300 rows), good = 'good' (700 rows; the only other label)" in text
    columns = [*proposal.schema.numeric, *proposal.schema.categorical]
    for column in columns:
        assert f"'{column.name}'" in text, column.name
    assert "'housing': 3 categories; missing values a category of their own" in text
    assert "'age_in_years': missing values filled with 33" in text and "(1 missing here)" in text


def test_a_refusing_policy_is_refused_when_the_table_itself_has_gaps(gappy: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="'age_in_years' has 1 missing values") as numeric:
        propose_schema(gappy, TARGET, "bad", impute="refuse")
    assert "would refuse this very table" in str(numeric.value)
    with pytest.raises(SchemaError, match="'purpose' has 2 rows without a value"):
        propose_schema(gappy, TARGET, "bad", impute="median", missing="error")


def test_missing_as_unseen_other_maps_to_the_catch_all(gappy: pd.DataFrame) -> None:
    schema = propose_schema(
        gappy, TARGET, "bad", impute="median", unseen="other", missing="unseen"
    ).schema
    clean = validate(gappy, schema)
    assert (clean["housing"] == "__other__").sum() == 3


def test_a_third_label_is_refused_unless_mapped(german: pd.DataFrame) -> None:
    frame = german.copy()
    bad_rows = int((frame[TARGET] == "bad").sum())
    frame.loc[[10, 11], TARGET] = "unknown"
    bad_rows -= int((german.loc[[10, 11], TARGET] == "bad").sum())

    with pytest.raises(SchemaError, match=r"holds 3 labels .*--negative") as caught:
        propose_schema(frame, TARGET, "bad")
    assert caught.value.field == "target.negatives"

    with pytest.raises(SchemaError, match=r"neither bad nor good: 'unknown' \(2 rows\)"):
        propose_schema(frame, TARGET, "bad", negatives=["good"])

    schema = propose_schema(frame, TARGET, "bad", negatives=["good", "unknown"]).schema
    _, y = encode(frame, schema)
    assert schema.target.negatives == ("good", "unknown")
    assert y[10] == 0.0 and y[11] == 0.0 and y.sum() == bad_rows


def test_a_label_named_bad_and_good_is_refused(german: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="both bad and good"):
        propose_schema(german, TARGET, "bad", negatives=["good", "bad"])


def test_a_missing_target_column_is_refused_with_a_suggestion(german: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="'creditabilty' is not in the table") as caught:
        propose_schema(german, "creditabilty", "bad")
    assert "did you mean 'creditability'" in str(caught.value)


def test_rows_without_a_label_are_refused(german: pd.DataFrame) -> None:
    frame = german.copy()
    frame[TARGET] = frame[TARGET].astype(object)
    frame.loc[[1, 2], TARGET] = None
    with pytest.raises(SchemaError, match="no label in 2 of 1000 rows"):
        propose_schema(frame, TARGET, "bad")


@pytest.mark.parametrize("option", ["exclude", "categorical"])
def test_unknown_column_names_are_refused_by_name(german: pd.DataFrame, option: str) -> None:
    with pytest.raises(SchemaError, match=f"--{option} names column") as caught:
        propose_schema(german, TARGET, "bad", **{option: ["hosing", "nope"]})
    message = str(caught.value)
    assert "'hosing' (did you mean 'housing'?)" in message and "'nope'" in message


def test_the_target_cannot_be_excluded(german: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="--exclude names the target"):
        propose_schema(german, TARGET, "bad", exclude=[TARGET])


def test_a_schema_without_the_missing_field_keeps_its_old_meaning() -> None:
    # Schemas written before `missing` existed: a missing category is an unseen value.
    schema = schema_from_dict(
        {
            "target": {"column": "y", "positive": "1", "negatives": ["0"]},
            "categorical": [{"name": "c", "categories": ["a", "b"]}],
        }
    )
    frame = pd.DataFrame({"c": ["a", None, "b"], "y": [1, 0, 0]})
    with pytest.raises(DataValidationError, match="1 of them without a value"):
        validate(frame, schema)
    assert "missing" not in schema.to_yaml()


def test_the_missing_level_is_reserved() -> None:
    with pytest.raises(SchemaError, match="reserved for missing values"):
        schema_from_dict(
            {
                "target": {"column": "y", "positive": "1", "negatives": ["0"]},
                "categorical": [{"name": "c", "categories": ["a", MISSING_CATEGORY]}],
            }
        )
