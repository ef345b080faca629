"""``crossfed client`` supervises its ClientApp runner: a runner that dies ends the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from clients import SuperNodeError, infer_schema, run_institution, save_schema
from crossfed.protocol import ProvisioningError
from federation import create_kits

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"

# A SuperNode that connects and then waits for messages, as a real one does.
_SUPERNODE = f"""#!{sys.executable}
import time
print("SuperNode ID: 1", flush=True)
time.sleep(600)
"""


def _kit(tmp_path: Path, pin: str) -> Path:
    frame = pd.read_csv(DATA).head(100)
    frame.to_csv(tmp_path / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="supervised",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU")],
        schema=tmp_path / "schema.yaml",
        pin=pin,
    )
    return tmp_path / "kits" / "bank-eu"


def test_a_runner_that_dies_ends_the_run_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = _kit(tmp_path, "sha256:" + "0" * 64)
    fake = tmp_path / "bin" / "flower-supernode"
    fake.parent.mkdir()
    fake.write_text(_SUPERNODE)
    fake.chmod(0o755)
    monkeypatch.setattr("clients.deploy.flower_executable", lambda name: str(fake))
    monkeypatch.setattr("clients.deploy.RUNNER_MODULE", "crossfed_no_such_runner")

    with pytest.raises(SuperNodeError, match="ClientApp runner stopped") as raised:
        run_institution(kit, tmp_path / "bank.csv", tmp_path / "out", timeout=120)

    assert "No module named crossfed_no_such_runner" in str(raised.value)
    assert raised.value.log_path.endswith("runner.log")


def test_a_kit_without_an_app_pin_starts_nothing(tmp_path: Path) -> None:
    kit = _kit(tmp_path, "")
    with pytest.raises(ProvisioningError, match="pins no app bundle"):
        run_institution(kit, tmp_path / "bank.csv", tmp_path / "out", timeout=10)
    assert not (tmp_path / "out" / ".supernode").exists()
