"""A run's outputs replace the earlier ones only when it succeeded; a failed run loses nothing.

A stand-in SuperNode plays the run: it writes what the institution's runner
would write into the staging folder the runner is given, then either finishes
or dies. The earlier ``global_model.npz``, ``metrics.json`` and
``scorecard.csv`` must be untouched until the new run succeeded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from clients import SuperNodeError, infer_schema, promote_outputs, run_institution, save_schema
from clients.deploy import STAGING
from federation import create_kits

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
EARLIER = {"global_model.npz": b"earlier model", "metrics.json": b'{"earlier": 1}'}
EARLIER["scorecard.csv"] = b"feature,coefficient\nearlier,1\n"

_SUPERNODE = """#!{python}
import json, sys, time
from pathlib import Path

print("SuperNode ID: 1", flush=True)
staging = Path(sys.argv[sys.argv.index("--superexec-auth-secret-file") + 1]).parent / "{staging}"
(staging / "global_model.npz").write_bytes(b"new model")
if {fail}:
    sys.exit(3)  # the SuperNode dies (before any round: no rejoin) after a partial output
print("Receiving: train message", flush=True)
(staging / "model_card.md").write_text("card")
(staging / "metrics.json").write_text(json.dumps({{"test": {{}}}}))
print("Sending: query.final message", flush=True)
print("Sent successfully", flush=True)
time.sleep(600)
"""


@pytest.fixture
def kit(tmp_path: Path) -> Path:
    frame = pd.read_csv(DATA).head(200)
    frame.to_csv(tmp_path / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="outputs",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU")],
        schema=tmp_path / "schema.yaml",
        pin="sha256:" + "0" * 64,  # no task reaches the runner here
    )
    return tmp_path / "kits" / "bank-eu"


def _earlier(out: Path) -> None:
    out.mkdir()
    for name, content in EARLIER.items():
        (out / name).write_bytes(content)


def _fake_supernode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool) -> None:
    fake = tmp_path / "bin" / "flower-supernode"
    fake.parent.mkdir()
    fake.write_text(_SUPERNODE.format(python=sys.executable, staging=STAGING, fail=fail))
    fake.chmod(0o755)
    monkeypatch.setattr("clients.deploy.flower_executable", lambda name: str(fake))


def test_a_failed_run_keeps_the_earlier_outputs(
    kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _earlier(out)
    _fake_supernode(tmp_path, monkeypatch, fail=True)

    with pytest.raises(SuperNodeError, match="code 3"):
        run_institution(kit, tmp_path / "bank.csv", out, timeout=120, connect_timeout=60)

    for name, content in EARLIER.items():
        assert (out / name).read_bytes() == content, name
    assert not (out / ".supernode" / STAGING).exists()  # the partial model is gone


def test_a_finished_run_replaces_them_with_everything_it_wrote(
    kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _earlier(out)
    _fake_supernode(tmp_path, monkeypatch, fail=False)

    result = run_institution(kit, tmp_path / "bank.csv", out, timeout=120, connect_timeout=60)

    assert result.model.read_bytes() == b"new model"
    assert json.loads(result.metrics.read_text()) == {"test": {}}
    assert (out / "model_card.md").read_text() == "card"
    # This run wrote no scorecard: the earlier one stays (it is never deleted up front).
    assert (out / "scorecard.csv").read_bytes() == EARLIER["scorecard.csv"]


def test_promote_moves_metrics_last_and_folders_whole(tmp_path: Path) -> None:
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    _earlier(out)
    (out / "plots").mkdir()
    (out / "plots" / "old.png").write_bytes(b"old")
    for name in ("metrics.json", "global_model.npz", "zeta.csv"):
        (staging / name).write_text(name)
    (staging / "plots").mkdir()
    (staging / "plots" / "new.png").write_bytes(b"new")

    moved = promote_outputs(staging, out)

    assert moved[-1] == "metrics.json" and set(moved) == {
        "metrics.json",
        "global_model.npz",
        "zeta.csv",
        "plots",
    }
    assert (out / "metrics.json").read_text() == "metrics.json"
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["new.png"]
    assert not staging.exists()
