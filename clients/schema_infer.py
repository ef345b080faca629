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

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from clients.errors import SchemaError
from clients.schema import (
    MISSING_CATEGORY,
    OTHER_CATEGORY,
    FederationSchema,
    MissingPolicy,
    UnseenPolicy,
    canonical_label,
    canonical_labels,
    schema_from_dict,
)
from clients.tables import quote

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
    choices
        Every other choice made, one sentence each, for the reviewer: which
        labels are bad and good, and per column its kind and what a missing
        or unseen value becomes. Values are quoted short (:func:`clients.tables.quote`).
    """

    schema: FederationSchema
    excluded: tuple[ExcludedColumn, ...]
    choices: tuple[str, ...] = ()


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
    negatives: Iterable[str | int] | None = None,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
    impute: Literal["refuse", "median", "zero"] = "refuse",
    unseen: UnseenPolicy = "error",
    missing: MissingPolicy = "category",
) -> SchemaProposal:
    """Propose a schema from a reference table, leaving identifiers out.

    Numeric dtypes (not booleans) become numeric columns; every other column
    (and every column named in ``categorical``) becomes categorical with its
    observed values, sorted. The result is a draft for the federation to
    review and fix, not something each institution should infer on its own
    data. The schema accepts the very table it was inferred from, or the
    call fails saying which policy would refuse it.

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
        Name of the target column. Every row needs a label.
    positive
        The bad label.
    negatives
        The good labels. If None, the target must hold exactly one other
        label, which becomes the good one: a third label is refused rather
        than silently counted as good. Given, every observed label must be
        ``positive`` or one of these.
    categorical
        Columns to treat as categorical even if numeric (coded values).
    exclude
        Columns to leave out (identifiers, dates, free text).
    impute
        Policy for every numeric column. ``"median"`` records this table's
        median in the schema, fixed from then on.
    unseen
        Policy for every categorical column's values outside its list.
    missing
        Policy for missing values of each categorical column that has some
        in this table (default: a category of their own). Columns without
        missing values here get none and follow ``unseen``.

    Returns
    -------
    SchemaProposal
        The schema, the columns left out with reasons, and every other choice.

    Raises
    ------
    SchemaError
        If the target is absent or has rows without a label, a label is
        neither ``positive`` nor a negative, ``categorical`` or ``exclude``
        name a column the table lacks, a policy would refuse this very table,
        or the inferred schema is invalid (no features left, an all-missing
        column).
    """
    names = [str(c) for c in frame.columns]
    if target not in names:
        raise SchemaError(
            f"target column {quote(target)} is not in the table{_suggest(target, names)}",
            field="target.column",
        )
    frame = frame.set_axis(names, axis=1)
    forced, requested = (
        _known_names(categorical, names, target, "--categorical"),
        _known_names(exclude, names, target, "--exclude"),
    )
    both = sorted(forced & requested)
    if both:
        raise SchemaError(
            f"column(s) {', '.join(map(quote, both))} named both to exclude and as categorical"
        )
    target_spec, choices = _target(frame[target], target, positive, negatives)
    numeric_columns: list[dict[str, Any]] = []
    categorical_columns: list[dict[str, Any]] = []
    excluded: list[ExcludedColumn] = []
    for name in names:
        if name == target:
            continue
        if name in requested:
            excluded.append(ExcludedColumn(name, "left out on request"))
            continue
        series = frame[name]
        if _is_numeric(series) and name not in forced:
            reason = _row_id_reason(series)
            if reason is None:
                column = _infer_numeric(name, series, impute)
                numeric_columns.append(column)
                choices.append(_numeric_choice(column, int(series.isna().sum())))
        else:
            values = canonical_labels(series)
            reason = _identifier_reason(values)
            if reason is None:
                column = _infer_categorical(name, values, unseen, missing)
                categorical_columns.append(column)
                absent = sum(1 for v in values if v is None)
                choices.append(_categorical_choice(column, absent, name in forced))
        if reason is not None:
            excluded.append(ExcludedColumn(name, reason))
    if not numeric_columns and not categorical_columns:
        left_out = "; ".join(f"{c.name!r}: {c.reason}" for c in excluded) or "none"
        raise SchemaError(f"no feature column left to put in the schema (left out: {left_out})")
    schema = schema_from_dict(
        {"target": target_spec, "numeric": numeric_columns, "categorical": categorical_columns}
    )
    return SchemaProposal(schema=schema, excluded=tuple(excluded), choices=tuple(choices))


def _suggest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {', '.join(map(quote, close))}?)" if close else ""


def _known_names(asked: Iterable[str], names: Sequence[str], target: str, option: str) -> set[str]:
    """``asked`` as a set, each name checked: a misspelt column is an error, never ignored."""
    chosen = {str(name) for name in asked}
    unknown = sorted(chosen - set(names))
    if unknown:
        hints = "; ".join(f"{quote(n)}{_suggest(n, names)}" for n in unknown)
        raise SchemaError(f"{option} names column(s) the table lacks: {hints}")
    if target in chosen:
        raise SchemaError(f"{option} names the target column {quote(target)}")
    return chosen


def _target(
    series: pd.Series, target: str, positive: str | int, negatives: Iterable[str | int] | None
) -> tuple[dict[str, Any], list[str]]:
    """The target's spec and the sentences saying which labels are bad and good."""
    labels = canonical_labels(series)
    unlabelled = sum(1 for label in labels if label is None)
    if unlabelled:
        raise SchemaError(
            f"target column {quote(target)} has no label in {unlabelled} of {len(labels)} rows; "
            "drop those rows (every row needs a label to train and test on)",
            field="target.column",
        )
    counts = pd.Series(labels, dtype=object).value_counts()
    observed = sorted(str(label) for label in counts.index)
    positive_label = canonical_label(positive)
    if positive_label not in observed:
        raise SchemaError(
            f"positive label {quote(positive_label)} does not occur in column {quote(target)} "
            f"(found {_labels(observed)})",
            field="target.positive",
        )
    others = [label for label in observed if label != positive_label]
    if negatives is None:
        if len(others) != 1:
            raise SchemaError(
                f"target column {quote(target)} holds {len(observed)} labels "
                f"({_labels(observed)}): say which are good with --negative "
                "(comma-separated); no label is counted as good unless named",
                field="target.negatives",
            )
        good = others
        how = "the only other label"
    else:
        good = list(dict.fromkeys(str(canonical_label(n)) for n in negatives))
        if positive_label in good:
            raise SchemaError(
                f"label {quote(positive_label)} is named both bad and good", field="target"
            )
        unmapped = [label for label in others if label not in good]
        if unmapped:
            raise SchemaError(
                f"target column {quote(target)} holds label(s) neither bad nor good: "
                f"{_labels(unmapped)} ({int(counts[unmapped].sum())} rows); name them with "
                "--negative or drop those rows",
                field="target.negatives",
            )
        how = "as given"
    spec = {"column": target, "positive": positive_label, "negatives": good}
    bad_rows = int(counts[positive_label])
    choices = [
        f"target {quote(target)}: bad = {quote(positive_label)} ({bad_rows} rows), good = "
        f"{_labels(good)} ({len(labels) - bad_rows} rows; {how})"
    ]
    absent = [label for label in good if label not in observed]
    if absent:
        choices.append(f"good label(s) {_labels(absent)} do not occur in this table")
    return spec, choices


def _labels(labels: Sequence[str]) -> str:
    shown = ", ".join(quote(label) for label in labels[:10])
    return shown + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def _infer_categorical(
    name: str, values: np.ndarray, unseen: UnseenPolicy, missing: MissingPolicy
) -> dict[str, Any]:
    categories = sorted({v for v in values if v is not None})
    column: dict[str, Any] = {"name": name, "categories": categories, "unseen": unseen}
    absent = sum(1 for v in values if v is None)
    if absent:
        if missing == "error" or (missing == "unseen" and unseen == "error"):
            raise SchemaError(
                f"categorical column {quote(name)} has {absent} rows without a value, which "
                f"missing policy {missing!r} refuses: the schema would refuse this very table "
                "(use the default, a missing category, or drop those rows)",
                field=f"categorical.{name}",
            )
        column["missing"] = missing
    return column


def _numeric_choice(column: dict[str, Any], absent: int) -> str:
    here = f"{absent} missing here" if absent else "none missing here"
    policy = column["impute"]
    if policy == "median":
        fill = f"filled with {column['value']:g}, this table's median"
    elif policy == "zero":
        fill = "filled with 0"
    else:
        fill = "refused"
    return f"numeric {quote(column['name'])}: missing values {fill} ({here})"


def _categorical_choice(column: dict[str, Any], absent: int, forced: bool) -> str:
    count = len(column["categories"])
    kind = "categorical (numeric codes, on request)" if forced else "categorical"
    unseen = "refused" if column["unseen"] == "error" else f"mapped to {OTHER_CATEGORY!r}"
    policy = column.get("missing")
    if policy == "category":
        missing = f"a category of their own, {MISSING_CATEGORY!r} ({absent} here)"
    elif policy is not None:  # "unseen" under unseen "other"; the rest is refused earlier
        missing = f"mapped to {OTHER_CATEGORY!r} ({absent} here)"
    else:
        missing = f"{unseen} like other values (none here)"
    return (
        f"{kind} {quote(column['name'])}: {count} categories; missing values {missing}; "
        f"other values {unseen}"
    )


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    positive: str | int,
    *,
    negatives: Iterable[str | int] | None = None,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
    impute: Literal["refuse", "median", "zero"] = "refuse",
    unseen: UnseenPolicy = "error",
    missing: MissingPolicy = "category",
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
        negatives=negatives,
        categorical=categorical,
        exclude=exclude,
        impute=impute,
        unseen=unseen,
        missing=missing,
    ).schema


def _infer_numeric(name: str, series: pd.Series, impute: str) -> dict[str, Any]:
    if impute == "refuse" and series.isna().any():
        raise SchemaError(
            f"numeric column {quote(name)} has {int(series.isna().sum())} missing values, which "
            "impute policy 'refuse' refuses: the schema would refuse this very table "
            "(use --impute median or zero, or drop those rows)",
            field=f"numeric.{name}",
        )
    if impute != "median":
        return {"name": name, "impute": impute}
    median = float(pd.to_numeric(series, errors="coerce").median())
    if not math.isfinite(median):
        raise SchemaError(
            f"column {quote(name)} has no values to take a median from", field=f"numeric.{name}"
        )
    return {"name": name, "impute": "median", "value": median}
