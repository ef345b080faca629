"""Shared set-up of the integration tests: German credit split across institutions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crypto
from clients import FederationSchema, infer_schema, save_schema
from crossfed.protocol import FederationSettings

GERMAN_CREDIT = Path(__file__).parents[1] / "data" / "german_credit.csv"


@dataclass(frozen=True)
class GermanFederation:
    """Files, schema and keys of German credit split across institutions."""

    root: Path
    files: list[str]
    schema: FederationSchema
    secret: crypto.SecretContext

    def settings(self, out: str, **overrides: object) -> FederationSettings:
        """Encrypted-mode settings writing to ``root/out``; keyword overrides win."""
        values: dict[str, object] = {
            "mode": "encrypted",
            "rounds": 3,
            "min_institutions": len(self.files),
            "round_timeout": 180.0,
            "public_context": str(self.root / "public.ctx"),
            "secret_context": str(self.root / "secret.ctx"),
            "schema": str(self.root / "schema.yaml"),
            "data_files": ",".join(self.files),
            "out_dir": str(self.root / out),
            "epochs": 2,
        }
        values.update(overrides)
        return FederationSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def german_federation(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[int, int], GermanFederation]:
    """Factory: ``make(institutions, seed)`` shuffles, splits and writes German credit."""

    def make(institutions: int, seed: int) -> GermanFederation:
        root = tmp_path_factory.mktemp(f"german-{institutions}-{seed}")
        frame = pd.read_csv(GERMAN_CREDIT)
        order = np.random.default_rng(seed).permutation(len(frame))
        files = []
        for index, part in enumerate(np.array_split(order, institutions)):
            path = root / f"institution-{index}.csv"
            frame.iloc[part].to_csv(path, index=False)
            files.append(str(path))
        schema = infer_schema(frame, "creditability", "bad")
        save_schema(schema, root / "schema.yaml")
        secret = crypto.generate_secret_context("lean")
        secret.save(root / "secret.ctx")
        secret.public().save(root / "public.ctx")
        return GermanFederation(root, files, schema, secret)

    return make
