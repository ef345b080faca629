"""Inferring a federation schema from a table, without copying identifiers into it.

:func:`propose_schema` reads a bank's table and proposes the schema every
institution will encode with: numeric columns with their imputation value,
categorical columns with their fixed category lists. ``schema.yaml`` goes into
every kit, the aggregator's too, so a column whose values identify people
(names, IBANs, customer numbers, free-text notes) is never written into it:
such columns are left out and reported with a reason that names counts and
lengths, never a value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from clients.errors import SchemaError
from clients.schema import (
    FederationSchema,
    UnseenPolicy,
    canonical_label,
    canonical_labels,
    schema_from_dict,
)

__all__ = ["ExcludedColumn", "SchemaProposal", "infer_schema", "propose_schema"]


def _is_numeric(series: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    )


# What inference refuses to copy into a schema. The schema goes into every kit, the
# aggregator's too, so a category list must be a code list the federation agrees on,
# never a list of people: names, IBANs, customer numbers, notes.
_MAX_CATEGORIES = 200
"""More distinct values than this is no code list a federation reviews: an identifier."""
_MAX_DISTINCT_SHARE = 0.5
"""More distinct values than this share of the rows: the column nearly singles out rows."""
_MAX_CATEGORY_CHARS = 100
"""A longer value (or one spanning lines) is free text, not a category."""
_MIN_DISTINCT_JUDGED = 3
"""Below this many distinct values (or rows) the shares say nothing: a yes/no column."""
_MIN_ID_NUMBER = 100_000
"""Whole numbers of six digits or more, unique per row: customer or account numbers."""


@dataclass(frozen=True)
class ExcludedColumn:
    """A column :func:`propose_schema` left out of the schema, and why.

    Attributes
    ----------
    name
        The column's name.
    reason
        Why it was left out, in words. It describes the column's shape
        (counts, lengths), never one of its values.
    """

    name: str
    reason: str


@dataclass(frozen=True)
class SchemaProposal:
    """What :func:`propose_schema` infers from a reference table.

    Attributes
    ----------
    schema
        The draft schema; it holds no value of an excluded column.
    excluded
        The columns left out, in table order: those the caller asked to
        exclude, and identifier-like ones (unique or nearly unique per row,
        mostly one-off values, free text, whole-number row ids).
    """

    schema: FederationSchema
    excluded: tuple[ExcludedColumn, ...]


def _identifier_reason(labels: np.ndarray) -> str | None:
    """Why a categorical column's canonical labels look like identifiers, or None.

    Free text and over-long category lists are refused whatever the table's
    size. Two shares need a few distinct values to mean anything: more
    distinct values than half the rows (names, IBANs, customer numbers: the
    column singles out rows), or more than half the values seen in one row
    only (a mostly empty note, a rare name among codes).
    """
    counts = pd.Series(labels, dtype=object).value_counts(dropna=True)
    distinct, rows = len(counts), int(counts.sum())
    if distinct == 0:
        return None  # all missing: schema_from_dict names the empty category list
    values = [str(value) for value in counts.index]
    longest = max(len(value) for value in values)
    if longest > _MAX_CATEGORY_CHARS or any("\n" in v or "\r" in v for v in values):
        return f"free text (values up to {longest} characters)"
    judged = distinct >= _MIN_DISTINCT_JUDGED
    if judged and distinct == rows:
        return f"unique per row ({rows} rows): an identifier"
    if judged and distinct > _MAX_DISTINCT_SHARE * rows:
        return f"nearly unique per row ({distinct} distinct values in {rows} rows): an identifier"
    if distinct > _MAX_CATEGORIES:
        return (
            f"{distinct} distinct values, more than the {_MAX_CATEGORIES} a category list "
            "holds: an identifier"
        )
    once = int((counts == 1).sum())
    if judged and 2 * once > distinct:
        return (
            f"mostly one-off values ({once} of its {distinct} values occur in one row only): "
            "an identifier"
        )
    return None


def _row_id_reason(series: pd.Series) -> str | None:
    """Why a numeric column looks like a row id, or None.

    A row id holds a different whole number in every row and is either a
    numbering (the values span less than twice the row count) or a long
    number (every value has six digits or more: customer, account or phone
    numbers). An amount in a small table is unique per row too, but spread
    thinly over a wide range of short numbers, so it stays.
    """
    values = series.dropna()
    rows = len(values)
    if rows < _MIN_DISTINCT_JUDGED or values.nunique() != rows:
        return None
    numbers = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(numbers) & (numbers == np.round(numbers))):
        return None
    if float(numbers.max() - numbers.min()) < 2 * rows:
        return f"a different whole number in each of its {rows} rows, in sequence: a row identifier"
    if float(np.abs(numbers).min()) >= _MIN_ID_NUMBER:
        return f"a different long whole number in each of its {rows} rows: an identifier"
    return None


def propose_schema(
    frame: pd.DataFrame,
    target: str,
    positive: str | int,
    *,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
    impute: Literal["refuse", "median", "zero"] = "refuse",
    unseen: UnseenPolicy = "error",
) -> SchemaProposal:
    """Propose a schema from a reference table, leaving identifiers out.

    Numeric dtypes (not booleans) become numeric columns; every other column
    (and every column named in ``categorical``) becomes categorical with its
    observed values, sorted. The result is a draft for the federation to
    review and fix, not something each institution should infer on its own
    data.

    The schema goes into every kit, the aggregator's included, so no column
    that identifies people is written into it: a categorical column that is
    free text (a value over 100 characters or spanning lines), has more than
    200 distinct values, is (nearly) unique per row, or consists mostly of
    values seen in one row only; and a numeric column holding a different
    whole number in every row that is a numbering or all long numbers (a row
    id or customer number, whose median would be one customer's number).
    Such columns are left out with the reason, and none of their values
    appears anywhere in the schema. The target column is the caller's choice
    and is not judged.

    Parameters
    ----------
    frame
        A reference table, e.g. a public sample or one institution's data.
    target
        Name of the target column.
    positive
        The bad label; every other observed label becomes a negative label.
    categorical
        Columns to treat as categorical even if numeric (coded values).
    exclude
        Columns to leave out (identifiers, dates, free text).
    impute
        Policy for every numeric column. ``"median"`` records this table's
        median in the schema, fixed from then on.
    unseen
        Policy for every categorical column.

    Returns
    -------
    SchemaProposal
        The schema and the columns left out, with reasons.

    Raises
    ------
    SchemaError
        If the target is absent, ``positive`` is not among its values, or
        the inferred schema is invalid (no features left, an all-missing
        column).
    """
    if target not in frame.columns:
        raise SchemaError(f"target column {target!r} is not in the table", field="target.column")
    labels = canonical_labels(frame[target])
    observed = sorted({label for label in labels if label is not None})
    positive_label = canonical_label(positive)
    if positive_label not in observed:
        raise SchemaError(
            f"positive label {positive_label!r} does not occur in column {target!r} "
            f"(found {observed})",
            field="target.positive",
        )
    forced = set(categorical)
    requested = set(exclude)
    numeric_columns: list[dict[str, Any]] = []
    categorical_columns: list[dict[str, Any]] = []
    excluded: list[ExcludedColumn] = []
    for name in frame.columns:
        if name == target:
            continue
        if name in requested:
            excluded.append(ExcludedColumn(str(name), "left out on request"))
            continue
        series = frame[name]
        if _is_numeric(series) and name not in forced:
            reason = _row_id_reason(series)
            if reason is None:
                numeric_columns.append(_infer_numeric(str(name), series, impute))
        else:
            values = canonical_labels(series)
            reason = _identifier_reason(values)
            if reason is None:
                categories = sorted({v for v in values if v is not None})
                categorical_columns.append(
                    {"name": str(name), "categories": categories, "unseen": unseen}
                )
        if reason is not None:
            excluded.append(ExcludedColumn(str(name), reason))
    if not numeric_columns and not categorical_columns:
        left_out = "; ".join(f"{c.name!r}: {c.reason}" for c in excluded) or "none"
        raise SchemaError(f"no feature column left to put in the schema (left out: {left_out})")
    schema = schema_from_dict(
        {
            "target": {
                "column": target,
                "positive": positive_label,
                "negatives": [label for label in observed if label != positive_label],
            },
            "numeric": numeric_columns,
            "categorical": categorical_columns,
        }
    )
    return SchemaProposal(schema=schema, excluded=tuple(excluded))


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    positive: str | int,
    *,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
    impute: Literal["refuse", "median", "zero"] = "refuse",
    unseen: UnseenPolicy = "error",
) -> FederationSchema:
    """Propose a schema from a reference table (``crossfed schema infer``).

    The schema of :func:`propose_schema`, which documents the parameters and
    the identifier-like columns left out; call that to learn which columns
    were left out and why.

    Raises
    ------
    SchemaError
        As :func:`propose_schema`.
    """
    return propose_schema(
        frame,
        target,
        positive,
        categorical=categorical,
        exclude=exclude,
        impute=impute,
        unseen=unseen,
    ).schema


def _infer_numeric(name: str, series: pd.Series, impute: str) -> dict[str, Any]:
    if impute != "median":
        return {"name": name, "impute": impute}
    median = float(pd.to_numeric(series, errors="coerce").median())
    if not math.isfinite(median):
        raise SchemaError(
            f"column {name!r} has no values to take a median from", field=f"numeric.{name}"
        )
    return {"name": name, "impute": "median", "value": median}
