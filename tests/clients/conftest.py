"""Shared fixtures: the real German credit table and a schema inferred from it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from clients import FederationSchema, infer_schema, load_table

# Tiny models on a shared 2-core machine: intra-op threads only contend (30x slower).
torch.set_num_threads(1)

GERMAN_CREDIT = Path(__file__).resolve().parents[1] / "data" / "german_credit.csv"


@pytest.fixture(scope="session")
def _german_frame() -> pd.DataFrame:
    return load_table(GERMAN_CREDIT)


@pytest.fixture
def german(_german_frame: pd.DataFrame) -> pd.DataFrame:
    """A fresh copy of the 1,000-row table, free to be spoiled by a test."""
    return _german_frame.copy()


@pytest.fixture(scope="session")
def german_schema(_german_frame: pd.DataFrame) -> FederationSchema:
    """The schema inferred from the whole table: target ``creditability``, bad = positive."""
    return infer_schema(_german_frame, "creditability", "bad")
