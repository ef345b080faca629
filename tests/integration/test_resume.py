"""An aggregator that stops after round 2 and restarts resumes at round 3.

Two runs on German credit split across three institutions, same seeds: one
uninterrupted for 3 rounds, one stopped after round 2 and restarted with the
same settings and output folder. The restarted aggregator must resume from
its encrypted checkpoint at round 3, continue the same audit chain, and end
with the uninterrupted run's model (within CKKS precision).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crypto
from clients import infer_schema, save_schema
from federation import (
    ConfigurationError,
    FederationSettings,
    load_checkpoint,
    verify_audit_log,
)
from simulations.engine import run_federated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"


def test_restarted_aggregator_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA)
    files = []
    for index, part in enumerate(np.array_split(np.random.default_rng(9).permutation(1000), 3)):
        path = tmp_path / f"institution-{index}.csv"
        frame.iloc[part].to_csv(path, index=False)
        files.append(str(path))
    save_schema(infer_schema(frame, "creditability", "bad"), tmp_path / "schema.yaml")
    secret = crypto.generate_secret_context("lean")
    secret.save(tmp_path / "secret.ctx")
    secret.public().save(tmp_path / "public.ctx")
    base = FederationSettings(
        mode="encrypted",
        rounds=3,
        min_institutions=3,
        round_timeout=180,
        public_context=str(tmp_path / "public.ctx"),
        secret_context=str(tmp_path / "secret.ctx"),
        schema=str(tmp_path / "schema.yaml"),
        data_files=",".join(files),
        out_dir=str(tmp_path / "uninterrupted"),
        epochs=2,
        seed=4,
    )
    uninterrupted = run_federated(base, 3)

    interrupted = dataclasses.replace(base, out_dir=str(tmp_path / "restarted"))
    run_federated(dataclasses.replace(interrupted, rounds=2), 3)
    assert load_checkpoint(tmp_path / "restarted" / "checkpoint.bin").round == 2
    resumed = run_federated(interrupted, 3)

    assert resumed.metrics["resumed_after"] == 2
    assert list(resumed.metrics["evaluate"]) == ["3"]
    assert [m["round"] for m in resumed.metrics["rounds_measured"]] == [3]
    difference = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(uninterrupted.weights, resumed.weights, strict=True)
    )
    assert difference <= 1e-3
    report = verify_audit_log(tmp_path / "restarted" / "audit.jsonl")
    assert [r.round for r in report.records] == [1, 2, 3]
    assert len({r.run_id for r in report.records}) == 1

    # Nothing is left to run: the restart is refused with a clear message, not re-run.
    with pytest.raises(ConfigurationError, match="nothing left to run"):
        run_federated(interrupted, 3)
