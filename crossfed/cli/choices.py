"""The fixed choices of ``crossfed`` options, as enumerations.

Typer lists an enumeration's values in ``--help`` and refuses anything else
before a command runs, naming the valid values: ``--model xgboost`` fails at
once, not after every bank has joined. The values are the words the schema,
the kit and the run settings store, so ``choice.value`` is passed on as is.
This module imports nothing heavy: the top-level ``crossfed --help`` stays fast.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ImputeChoice",
    "MissingChoice",
    "ModelChoice",
    "PartitionMissingChoice",
    "UnseenChoice",
]


class ModelChoice(StrEnum):
    """The model every institution trains."""

    logistic = "logistic"
    mlp = "mlp"


class ImputeChoice(StrEnum):
    """What a schema does with a missing number."""

    median = "median"
    zero = "zero"
    refuse = "refuse"


class UnseenChoice(StrEnum):
    """What a schema does with a category outside its list."""

    error = "error"
    other = "other"


class MissingChoice(StrEnum):
    """What a schema does with a categorical column's missing value."""

    category = "category"
    error = "error"
    unseen = "unseen"


class PartitionMissingChoice(StrEnum):
    """What ``crossfed simulate --partition-by`` does with rows lacking the column's value."""

    drop = "drop"
    own = "own"
