"""An institution's local dataset, prepared once per process and reused each round.

The file is loaded, validated against the federation schema and encoded before
any training; a held-out test split is taken with the run's seed. Nothing in
here leaves the institution: only moments, weights and metrics computed from
it do, and those through the ClientApp.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from clients.data import encode, load_table, train_test_split
from clients.schema import FederationSchema, load_schema

__all__ = ["LocalDataset", "load_local_dataset"]


@dataclass(frozen=True)
class LocalDataset:
    """Encoded training and test data of one institution."""

    schema: FederationSchema
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        """Number of encoded feature columns."""
        return int(self.x_train.shape[1])


@lru_cache(maxsize=8)
def load_local_dataset(
    data_path: str, schema_path: str, *, seed: int, test_fraction: float
) -> LocalDataset:
    """Load, validate, encode and split an institution's file (cached per process).

    Raises
    ------
    clients.DataLoadError, clients.DataValidationError, clients.SchemaError
        The file or the schema is unusable; the message names the column.
    """
    schema = load_schema(schema_path)
    x, y = encode(load_table(data_path), schema)  # validates first
    split = train_test_split(x, y, test_size=test_fraction, seed=seed)
    return LocalDataset(schema, split.x_train, split.y_train, split.x_test, split.y_test)
