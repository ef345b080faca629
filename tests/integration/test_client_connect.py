"""A bank's client facing an aggregator that is not there: it stops, saying so.

A real SuperNode with TLS and its node key dials 127.0.0.1 on a port where
nothing listens; ``run_institution`` must give up after its connect timeout
with an error naming the address, not wait for the run deadline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import SuperNodeError, infer_schema, run_institution, save_schema
from clients.shapes import model_shapes_json
from crossfed.protocol import free_port
from federation import create_kits

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"


def test_unreachable_aggregator_is_reported_after_the_connect_timeout(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA).iloc[np.arange(200)]
    frame.to_csv(tmp_path / "bank.csv", index=False)
    schema = infer_schema(frame, "creditability", "bad")
    save_schema(schema, tmp_path / "schema.yaml")
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    create_kits(
        tmp_path / "kits",
        federation="nobody-home",
        aggregator_address=address,
        institutions=[("bank-eu", "EU"), ("bank-sg", "SG")],
        schema=tmp_path / "schema.yaml",
        preset="lean",
        rounds=1,
        training={"epochs": 1, "model-shapes": model_shapes_json(schema, "logistic", ())},
    )
    with pytest.raises(SuperNodeError, match="could not reach the aggregator") as caught:
        run_institution(
            tmp_path / "kits" / "bank-eu",
            tmp_path / "bank.csv",
            tmp_path / "out",
            timeout=600,
            connect_timeout=3,
        )
    assert address in str(caught.value)
    assert not (tmp_path / "out" / "global_model.npz").exists()
