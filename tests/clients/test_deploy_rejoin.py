"""``crossfed client`` rejoins an aggregator that restarted, even when its SuperNode hangs.

Flower 1.39's SuperNode should exit once a restarted SuperLink answers "Invalid
node ID", but can hang on its way out ("Heartbeat sender is not running"). Here a
stand-in SuperNode does exactly that on its first start (after a training
message, or before any) and behaves on its second: the institution must end
the hung one, start another and finish.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from clients import infer_schema, run_institution, save_schema
from federation import create_kits

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"

_SUPERNODE = """#!{python}
import json, sys, time
from pathlib import Path

starts = Path(__file__).with_name("starts")
count = int(starts.read_text()) + 1 if starts.exists() else 1
starts.write_text(str(count))
print(f"SuperNode ID: {{count}}", flush=True)
if count > 1 or {received}:
    print("Receiving: train message", flush=True)
if count == 1:  # the SuperLink restarted and forgot this node; the process hangs
    print("grpc: status = StatusCode.UNAUTHENTICATED, details = Invalid node ID", flush=True)
    print("RuntimeError: Heartbeat sender is not running.", flush=True)
    time.sleep(600)
# The runner's outputs go to OUT/.supernode/outputs (beside its secret) until the run succeeded.
staging = Path(sys.argv[sys.argv.index("--superexec-auth-secret-file") + 1]).parent / "outputs"
(staging / "metrics.json").write_text(json.dumps({{"test": {{}}}}))
print("Sending: query.final message", flush=True)
print("Sent successfully", flush=True)
time.sleep(600)  # a SuperNode never stops by itself
"""


@pytest.mark.parametrize("received", [True, False], ids=["mid-run", "before-round-1"])
def test_a_hung_supernode_is_replaced_when_the_aggregator_forgot_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, received: bool
) -> None:
    frame = pd.read_csv(DATA).head(200)
    frame.to_csv(tmp_path / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="rejoin",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU")],
        schema=tmp_path / "schema.yaml",
        pin="sha256:" + "0" * 64,  # no task reaches the runner here
    )
    fake = tmp_path / "bin" / "flower-supernode"
    fake.parent.mkdir()
    fake.write_text(_SUPERNODE.format(python=sys.executable, received=received))
    fake.chmod(0o755)
    monkeypatch.setattr("clients.deploy.flower_executable", lambda name: str(fake))
    said: list[str] = []

    result = run_institution(
        tmp_path / "kits" / "bank-eu",
        tmp_path / "bank.csv",
        tmp_path / "out",
        timeout=120,
        connect_timeout=60,
        progress=said.append,
    )

    assert (fake.parent / "starts").read_text() == "2"
    assert "the aggregator restarted; rejoining the federation" in said
    assert result.out_dir == tmp_path / "out" and (tmp_path / "out" / "metrics.json").is_file()
