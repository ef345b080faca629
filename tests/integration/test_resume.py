"""An aggregator that stops after round 2 and restarts resumes at round 3.

Two runs on German credit split across three institutions, same seeds: one
uninterrupted for 3 rounds, one stopped after round 2 and restarted with the
same settings and output folder. The restarted aggregator must resume from
its encrypted checkpoint at round 3, continue the same audit chain, and end
with the uninterrupted run's model (within CKKS precision).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from crossfed.protocol import ConfigurationError
from federation import load_checkpoint, verify_audit_log
from simulations.engine import run_federated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_restarted_aggregator_resumes_from_its_checkpoint(
    german_federation: Callable[[int, int], Any],
) -> None:
    federation = german_federation(3, 9)
    base = federation.settings("uninterrupted", seed=4)
    uninterrupted = run_federated(base, 3)

    interrupted = dataclasses.replace(base, out_dir=str(federation.root / "restarted"))
    run_federated(dataclasses.replace(interrupted, rounds=2), 3)
    assert load_checkpoint(federation.root / "restarted" / "checkpoint.bin").round == 2
    resumed = run_federated(interrupted, 3)

    assert resumed.metrics["resumed_after"] == 2
    assert list(resumed.metrics["evaluate"]) == ["3"]
    assert [m["round"] for m in resumed.metrics["rounds_measured"]] == [3]
    difference = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(uninterrupted.weights, resumed.weights, strict=True)
    )
    assert difference <= 1e-3
    report = verify_audit_log(federation.root / "restarted" / "audit.jsonl")
    assert [r.round for r in report.records] == [1, 2, 3]
    assert len({r.run_id for r in report.records}) == 1

    # Nothing is left to run: the restart is refused with a clear message, not re-run.
    with pytest.raises(ConfigurationError, match="nothing left to run"):
        run_federated(interrupted, 3)
