"""Loading an institution's table, checking it against the schema, encoding it.

The order is fixed: :func:`load_table` reads a CSV, Parquet or Excel file,
:func:`validate` refuses anything the federation schema does not allow
(before any training, naming the column and the number of offending rows),
and :func:`encode` turns the validated table into a float32 feature matrix
whose columns are identical, in name and order, at every institution,
whichever categories a given institution happens to hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from clients.errors import DataValidationError
from clients.schema import (
    MISSING_CATEGORY,
    OTHER_CATEGORY,
    CategoricalColumn,
    FederationSchema,
    NumericColumn,
    canonical_labels,
)
from clients.tables import quote, read_table

__all__ = [
    "TableCheck",
    "TrainTestSplit",
    "check_table",
    "encode",
    "feature_names",
    "load_table",
    "train_test_split",
    "validate",
]

_EXAMPLES_SHOWN = 3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def load_table(path: str | Path) -> pd.DataFrame:
    """Read an institution's table: CSV (any delimiter, UTF-8 or Latin-1), Parquet, Excel.

    The same detection runs wherever the file is read (the command line, the
    ClientApp), so every reader gets the same table; :func:`clients.tables.read_table`
    documents it and reports what it chose.

    Raises
    ------
    DataLoadError
        If the suffix is unknown, the file is missing or empty, or the
        reader fails on it; the message names the option to change.
    """
    return read_table(path).frame


def _examples(values: np.ndarray | pd.Series) -> str:
    distinct = list(dict.fromkeys(str(v) for v in values))
    shown = ", ".join(quote(v) for v in distinct[:_EXAMPLES_SHOWN])
    more = f" and {len(distinct) - _EXAMPLES_SHOWN} more" if len(distinct) > _EXAMPLES_SHOWN else ""
    return shown + more


def _check_columns(frame: pd.DataFrame, schema: FederationSchema) -> None:
    rows = len(frame)
    names = [str(c) for c in frame.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataValidationError(
            f"column {quote(duplicated[0])} appears more than once in the table ({rows} rows)",
            column=duplicated[0],
            count=rows,
        )
    present = set(names)
    missing = [c for c in schema.columns if c not in present]
    if missing:
        others = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise DataValidationError(
            f"column {missing[0]!r} required by the schema is missing from all {rows} rows"
            + others,
            column=missing[0],
            count=rows,
        )
    expected = set(schema.columns)
    extra = [c for c in names if c not in expected]
    if extra:
        others = f" (also extra: {_examples(extra[1:])})" if len(extra) > 1 else ""
        raise DataValidationError(
            f"column {quote(extra[0])} ({rows} rows) is not in the federation schema; "
            "drop it before joining" + others,
            column=extra[0],
            count=rows,
        )
    if rows == 0:
        raise DataValidationError("the table has zero rows", column=None, count=0)


def _validate_target(
    frame: pd.DataFrame, schema: FederationSchema, require_both_classes: bool
) -> np.ndarray:
    spec = schema.target
    labels = canonical_labels(frame[spec.column])
    missing = np.array([label is None for label in labels], dtype=bool)
    if missing.any():
        raise DataValidationError(
            f"target column {spec.column!r} is missing in {int(missing.sum())} rows",
            column=spec.column,
            count=int(missing.sum()),
        )
    allowed = {spec.positive, *spec.negatives}
    unknown = np.array([label not in allowed for label in labels], dtype=bool)
    if unknown.any():
        raise DataValidationError(
            f"target column {spec.column!r} has {int(unknown.sum())} rows with labels "
            f"outside {sorted(allowed)}: {_examples(labels[unknown])}",
            column=spec.column,
            count=int(unknown.sum()),
        )
    y = (labels == spec.positive).astype(np.float32)
    if require_both_classes and (y.min() == y.max()):
        present = spec.positive if y[0] == 1.0 else "/".join(spec.negatives)
        raise DataValidationError(
            f"target column {spec.column!r} holds a single class ({present!r}) in all "
            f"{len(y)} rows; training needs both bad and good examples",
            column=spec.column,
            count=len(y),
        )
    return y


def _validate_numeric(series: pd.Series, column: NumericColumn) -> pd.Series:
    try:
        numbers = pd.to_numeric(series, errors="coerce")
    except (TypeError, ValueError):  # unhashable or exotic objects: go value by value
        numbers = series.map(_to_float)
    numbers = numbers.astype(np.float64)
    text = numbers.isna() & series.notna()
    if text.any():
        raise DataValidationError(
            f"numeric column {column.name!r} has {int(text.sum())} rows with non-numeric "
            f"values: {_examples(series[text])}",
            column=column.name,
            count=int(text.sum()),
        )
    # Features are float32: a finite float64 beyond its range would turn into infinity.
    infinite = np.abs(numbers.to_numpy()) > _FLOAT32_MAX
    if infinite.any():
        raise DataValidationError(
            f"numeric column {column.name!r} has {int(infinite.sum())} infinite values "
            "(or values beyond the float32 range)",
            column=column.name,
            count=int(infinite.sum()),
        )
    missing = numbers.isna()
    if missing.any():
        fill = column.fill_value
        if fill is None:
            raise DataValidationError(
                f"numeric column {column.name!r} has {int(missing.sum())} missing values and "
                "its schema policy is 'refuse'",
                column=column.name,
                count=int(missing.sum()),
            )
        numbers = numbers.fillna(fill)
    return numbers


def _to_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _validate_categorical(series: pd.Series, column: CategoricalColumn) -> pd.Series:
    values = canonical_labels(series)
    missing = np.array([v is None for v in values], dtype=bool)
    if column.missing == "category":
        values = np.where(missing, MISSING_CATEGORY, values)
    elif column.missing == "error" and missing.any():
        raise DataValidationError(
            f"categorical column {column.name!r} has {int(missing.sum())} rows without a value "
            "and its schema policy for missing values is 'error'",
            column=column.name,
            count=int(missing.sum()),
        )
    known = set(column.levels) - {OTHER_CATEGORY}
    unseen = np.array([v not in known for v in values], dtype=bool)
    if unseen.any():
        if column.unseen == "error":
            absent = int((unseen & missing).sum())
            also = f" ({absent} of them without a value)" if absent else ""
            raise DataValidationError(
                f"categorical column {column.name!r} has {int(unseen.sum())} rows with values "
                f"outside the schema's categories{also}: {_examples(values[unseen])}",
                column=column.name,
                count=int(unseen.sum()),
            )
        values = np.where(unseen, OTHER_CATEGORY, values)
    return pd.Series(values, index=series.index, dtype=object, name=column.name)


def validate(
    frame: pd.DataFrame, schema: FederationSchema, *, require_both_classes: bool = True
) -> pd.DataFrame:
    """Check a table against the federation schema and return a clean copy.

    Checks, in order: duplicate, missing and extra columns; zero rows; the
    target (missing values, labels outside the schema, a single class);
    numeric columns (non-numeric text, infinities, missing values, which are
    filled with the schema's fixed value or refused); categorical columns
    (values outside the fixed category list, missing values included, are
    refused or mapped to :data:`~clients.schema.OTHER_CATEGORY` per policy).

    Parameters
    ----------
    frame
        The institution's raw table.
    schema
        The federation schema.
    require_both_classes
        Refuse a target holding one class only (default). A simulation with
        extreme label skew may turn this off; local metrics are then undefined.

    Returns
    -------
    pandas.DataFrame
        Columns in schema order: numeric as float64 (imputed), categorical as
        canonical strings, and the target as float32 0/1 (1 = positive).

    Raises
    ------
    DataValidationError
        On the first problem found; ``.column`` and ``.count`` say where and
        how many rows.
    """
    _check_columns(frame, schema)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    y = _validate_target(frame, schema, require_both_classes)
    clean: dict[str, pd.Series] = {}
    for numeric in schema.numeric:
        clean[numeric.name] = _validate_numeric(frame[numeric.name], numeric)
    for categorical in schema.categorical:
        clean[categorical.name] = _validate_categorical(frame[categorical.name], categorical)
    clean[schema.target.column] = pd.Series(y, index=frame.index, name=schema.target.column)
    return pd.DataFrame(clean, index=frame.index)


@dataclass(frozen=True)
class TableCheck:
    """Every problem :func:`validate` would stop at, and what it would fill in.

    Attributes
    ----------
    rows
        Rows in the table.
    problems
        One error per column that fails (all of them, not just the first),
        or one for the table's columns as a whole.
    filled
        What the schema's policies will do to this table, one sentence per
        column: missing numbers filled with the schema's value, missing
        categories given their own level, unseen categories mapped to the
        catch-all. Nothing is filled that the schema does not say.
    """

    rows: int
    problems: tuple[DataValidationError, ...]
    filled: tuple[str, ...]


def check_table(frame: pd.DataFrame, schema: FederationSchema) -> TableCheck:
    """Check a table against the schema and collect every problem instead of the first.

    What ``crossfed client --check`` reports: :func:`validate` passes exactly
    when :attr:`TableCheck.problems` is empty.
    """
    try:
        _check_columns(frame, schema)
    except DataValidationError as exc:
        return TableCheck(len(frame), (exc,), ())
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    problems: list[DataValidationError] = []
    filled: list[str] = []
    try:
        _validate_target(frame, schema, require_both_classes=True)
    except DataValidationError as exc:
        problems.append(exc)
    for numeric in schema.numeric:
        try:
            _validate_numeric(frame[numeric.name], numeric)
        except DataValidationError as exc:
            problems.append(exc)
            continue
        absent = int(pd.isna(frame[numeric.name]).sum())
        if absent:
            filled.append(
                f"numeric column {numeric.name!r}: {absent} missing values filled with "
                f"{numeric.fill_value:g} (schema policy {numeric.impute!r})"
            )
    for categorical in schema.categorical:
        try:
            clean = _validate_categorical(frame[categorical.name], categorical)
        except DataValidationError as exc:
            problems.append(exc)
            continue
        for level, what in ((MISSING_CATEGORY, "without a value"), (OTHER_CATEGORY, "unseen")):
            count = int((clean == level).sum())
            if count:
                filled.append(
                    f"categorical column {categorical.name!r}: {count} rows {what} "
                    f"encoded as {level!r} (schema policy)"
                )
    return TableCheck(len(frame), tuple(problems), tuple(filled))


def feature_names(schema: FederationSchema) -> list[str]:
    """Names of the encoded feature columns, in the order :func:`encode` uses.

    Numeric columns keep their name; each categorical level becomes
    ``"column=level"``. The order depends on the schema alone.
    """
    names = [column.name for column in schema.numeric]
    for column in schema.categorical:
        names.extend(f"{column.name}={level}" for level in column.levels)
    return names


def encode(
    frame: pd.DataFrame, schema: FederationSchema, *, require_both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a table and encode it as a feature matrix and a label vector.

    Categoricals are one-hot encoded over the schema's fixed levels, so two
    institutions whose tables hold different subsets of categories still
    produce the same columns (see :func:`feature_names`).

    Parameters
    ----------
    frame
        The institution's raw table.
    schema
        The federation schema.
    require_both_classes
        As in :func:`validate`; turn off to encode a handful of rows (or a
        label-skewed partition) whose target holds one class.

    Returns
    -------
    X : numpy.ndarray
        float32, shape ``(rows, len(feature_names(schema)))``.
    y : numpy.ndarray
        float32 of 0.0/1.0, 1.0 for the schema's positive (bad) label.

    Raises
    ------
    DataValidationError
        As :func:`validate`.
    """
    clean = validate(frame, schema, require_both_classes=require_both_classes)
    rows = len(clean)
    blocks: list[np.ndarray] = [
        clean[[c.name for c in schema.numeric]].to_numpy(dtype=np.float64).reshape(rows, -1)
    ]
    for column in schema.categorical:
        levels = column.levels
        codes = pd.Categorical(clean[column.name], categories=list(levels)).codes
        one_hot = np.zeros((rows, len(levels)), dtype=np.float64)
        one_hot[np.arange(rows), codes] = 1.0
        blocks.append(one_hot)
    features = np.concatenate(blocks, axis=1).astype(np.float32)
    labels = clean[schema.target.column].to_numpy(dtype=np.float32)
    return features, labels


class TrainTestSplit(NamedTuple):
    """A held-out split, unpackable like scikit-learn's result."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def train_test_split(
    x: np.ndarray, y: np.ndarray, *, test_size: float = 0.25, seed: int
) -> TrainTestSplit:
    """Split an institution's data into training and held-out test parts.

    Stratified on the label (scikit-learn's ``train_test_split``), so the
    local test set keeps the institution's bad rate, and seeded, so a run
    can be repeated exactly.

    Raises
    ------
    DataValidationError
        If the arrays disagree in length or a stratified split is impossible
        (for instance fewer than two rows of a class).
    """
    if len(x) != len(y):
        raise DataValidationError(
            f"features have {len(x)} rows but labels have {len(y)}", column=None, count=len(x)
        )
    # scikit-learn's model selection costs about a second to import: only here.
    from sklearn.model_selection import train_test_split as _sk_train_test_split

    try:
        x_train, x_test, y_train, y_test = _sk_train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
    except ValueError as exc:
        raise DataValidationError(
            f"cannot split {len(y)} rows with test_size={test_size}: {exc}",
            column=None,
            count=len(y),
        ) from exc
    return TrainTestSplit(x_train, x_test, y_train, y_test)
