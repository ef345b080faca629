"""The federation schema: the columns every institution agrees on up front.

Federated training only works when every institution turns its records into
the same feature vector, column for column. The schema fixes, before any
training: the target column and which label is the "bad" (positive) class,
the numeric columns and how each fills missing values, and the categorical
columns with their complete, ordered category lists. Nothing here is computed
per institution at training time: an imputation value (even a "median") is a
number written in the schema, agreed by the federation (for instance from a
public or reference sample), so identical raw records encode identically
everywhere and no institution's local statistics leak through its encoding.

The schema is a pydantic model, stored as YAML. :func:`load_schema`,
:func:`schema_from_dict` and :func:`infer_schema` translate every problem into
:class:`~clients.errors.SchemaError` naming the offending field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from clients.errors import SchemaError

__all__ = [
    "MISSING_CATEGORY",
    "OTHER_CATEGORY",
    "SCHEMA_FORMAT_VERSION",
    "CategoricalColumn",
    "FederationSchema",
    "MissingPolicy",
    "NumericColumn",
    "TargetSpec",
    "UnseenPolicy",
    "canonical_label",
    "canonical_labels",
    "load_schema",
    "save_schema",
    "schema_from_dict",
]

SCHEMA_FORMAT_VERSION: Literal[1] = 1
"""Version of the YAML layout written by :func:`save_schema`."""

OTHER_CATEGORY = "__other__"
"""Category that absorbs unseen values when a column's policy is ``"other"``."""

MISSING_CATEGORY = "__missing__"
"""Category of a missing value when a column's ``missing`` policy is ``"category"``."""

ImputePolicy = Literal["refuse", "median", "zero", "constant"]
UnseenPolicy = Literal["error", "other"]
MissingPolicy = Literal["category", "error", "unseen"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class TargetSpec(BaseModel):
    """The label column and how its values map to 1 (bad) and 0 (good).

    Attributes
    ----------
    column
        Name of the target column.
    positive
        The label of the positive class: the bad outcome (default, fraud).
    negatives
        Every other allowed label; all map to 0. Any value outside
        ``positive`` and ``negatives`` is a validation error.
    """

    model_config = _MODEL_CONFIG

    column: str
    positive: str
    negatives: tuple[str, ...]

    @field_validator("negatives")
    @classmethod
    def _negatives_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one negative label is required")
        if len(set(value)) != len(value):
            raise ValueError("negative labels must be distinct")
        return value

    @model_validator(mode="after")
    def _positive_not_negative(self) -> TargetSpec:
        if self.positive in self.negatives:
            raise ValueError(f"label {self.positive!r} is both positive and negative")
        return self


class NumericColumn(BaseModel):
    """A numeric feature and its fixed policy for missing values.

    Attributes
    ----------
    name
        Column name.
    impute
        ``"refuse"`` (default): a missing value is a validation error.
        ``"zero"``: fill with 0. ``"median"`` or ``"constant"``: fill with
        :attr:`value`, fixed in the schema (``"median"`` records that the
        number is a reference median; it is never recomputed locally).
    value
        The fill value for ``"median"`` and ``"constant"``; must be absent
        for ``"refuse"``.
    """

    model_config = _MODEL_CONFIG

    name: str
    impute: ImputePolicy = "refuse"
    value: float | None = None

    @model_validator(mode="after")
    def _value_matches_policy(self) -> NumericColumn:
        if self.impute in ("median", "constant"):
            if self.value is None or not abs(self.value) <= _FLOAT32_MAX:
                raise ValueError(
                    f"impute {self.impute!r} needs a finite 'value' within the float32 range"
                )
        elif self.impute == "zero":
            if self.value not in (None, 0.0):
                raise ValueError("impute 'zero' takes no other 'value' than 0")
        elif self.value is not None:
            raise ValueError("impute 'refuse' takes no 'value'")
        return self

    @property
    def fill_value(self) -> float | None:
        """The number that replaces a missing value, or ``None`` to refuse."""
        if self.impute == "zero":
            return 0.0
        return self.value


class CategoricalColumn(BaseModel):
    """A categorical feature with its complete, ordered category list.

    Attributes
    ----------
    name
        Column name.
    categories
        Every allowed value, in the order of the one-hot columns.
    unseen
        ``"error"`` (default): a value outside :attr:`categories` is a
        validation error. ``"other"``: such values go to one extra one-hot
        column, :data:`OTHER_CATEGORY`.
    missing
        What a missing value (empty cell, NaN) is: ``"category"``, a level of
        its own (:data:`MISSING_CATEGORY`, one more one-hot column), so that
        "not given" is learnt like any other answer; ``"error"``, refused;
        ``"unseen"`` or absent (schemas written before this field), treated
        as an unseen value under :attr:`unseen`.
    """

    model_config = _MODEL_CONFIG

    name: str
    categories: tuple[str, ...]
    unseen: UnseenPolicy = "error"
    missing: MissingPolicy | None = None

    @field_validator("categories")
    @classmethod
    def _categories_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one category is required")
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        if OTHER_CATEGORY in value:
            raise ValueError(f"{OTHER_CATEGORY!r} is reserved for unseen values")
        if MISSING_CATEGORY in value:
            raise ValueError(f"{MISSING_CATEGORY!r} is reserved for missing values")
        return value

    @property
    def levels(self) -> tuple[str, ...]:
        """The one-hot levels: the categories, then the missing and catch-all levels if enabled."""
        extra = (MISSING_CATEGORY,) if self.missing == "category" else ()
        if self.unseen == "other":
            extra = (*extra, OTHER_CATEGORY)
        return (*self.categories, *extra)


class FederationSchema(BaseModel):
    """Everything institutions must agree on to encode records identically.

    Feature order is: numeric columns in listed order, then each categorical
    column's levels in listed order (see :func:`clients.data.feature_names`).
    """

    model_config = _MODEL_CONFIG

    format_version: Literal[1] = SCHEMA_FORMAT_VERSION
    target: TargetSpec
    numeric: tuple[NumericColumn, ...] = ()
    categorical: tuple[CategoricalColumn, ...] = ()

    @model_validator(mode="after")
    def _names_distinct(self) -> FederationSchema:
        if not self.numeric and not self.categorical:
            raise ValueError("the schema needs at least one numeric or categorical column")
        seen = {self.target.column}
        columns: tuple[NumericColumn | CategoricalColumn, ...] = (*self.numeric, *self.categorical)
        for column in columns:
            if column.name in seen:
                raise ValueError(f"column {column.name!r} is declared twice")
            seen.add(column.name)
        return self

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Names of the raw feature columns, numeric first, in schema order."""
        return tuple(c.name for c in self.numeric) + tuple(c.name for c in self.categorical)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column an institution's table must have: features and target."""
        return (*self.feature_columns, self.target.column)

    def to_yaml(self) -> str:
        """Serialise to YAML text, in field order, readable by a reviewer."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def schema_from_dict(data: Any) -> FederationSchema:
    """Build and check a schema from plain data (parsed YAML or JSON).

    Raises
    ------
    SchemaError
        If a field is missing, mistyped or inconsistent; ``.field`` names it.
    """
    if not isinstance(data, Mapping):
        raise SchemaError("a schema must be a mapping of fields", field=None)
    try:
        return FederationSchema.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field_path(first["loc"]) or None
        where = f"field {field!r}" if field else "schema"
        if first["type"] == "missing":
            message = f"schema {where} is missing"
        else:
            message = f"schema {where}: {first['msg']}"
        raise SchemaError(message, field=field) from exc


def load_schema(path: str | Path) -> FederationSchema:
    """Read a federation schema from a YAML file.

    Raises
    ------
    SchemaError
        If the file is missing or unreadable, is not YAML, or does not
        describe a valid schema (``.field`` then names the field).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {str(path)!r}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"schema file {str(path)!r} is not valid YAML: {exc}") from exc
    return schema_from_dict(data)


def save_schema(schema: FederationSchema, path: str | Path) -> None:
    """Write a schema as YAML, so it can be shipped in every institution's kit."""
    Path(path).write_text(schema.to_yaml(), encoding="utf-8")


def canonical_labels(values: pd.Series) -> np.ndarray:
    """Map a column's values to canonical strings, missing values to ``None``.

    Schemas store categories and labels as strings, yet the same value can
    arrive as ``1`` from a CSV, ``1.0`` from a Parquet float column or
    ``"1"`` from text. Integral numbers become ``"1"``, booleans
    ``"True"``/``"False"``, anything else ``str(value)``. Work is done once
    per distinct value, so this stays fast on large tables.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([None, *(canonical_label(v) for v in uniques)], dtype=object)
    return mapped[codes + 1]


def canonical_label(value: object) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if number.is_integer():
            return str(int(number))
        return repr(number)
    return str(value)
