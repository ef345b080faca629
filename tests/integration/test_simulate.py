"""``crossfed simulate`` end to end: a reduced study, the real-data path, a Ray head.

Each study really trains every strategy (Flower's simulation engine for the
federated ones), so the scenarios are small: three institutions, two rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from clients import load_schema
from crossfed.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GERMAN_CREDIT = Path(__file__).parents[1] / "data" / "german_credit.csv"
STRATEGY_KEYS = {
    "name", "auc", "ks", "brier", "approval_rate", "compliance_cost", "lead_time_days",
    "bytes_sent", "cpu_s", "wall_s", "epsilon",
}  # fmt: skip
COST_KEYS = {"transfer", "residual_risk", "operational", "total", "currency"}
INSTITUTION_KEYS = {
    "name", "jurisdiction", "n", "local_auc", "federated_auc", "local_approval_rate",
    "federated_approval_rate", "personalised_auc",
}  # fmt: skip
ATTACK_KEYS = {"strategy", "attack", "target", "advantage"}
FILES = ("results.json", "results.csv", "pareto.png", "uplift.png", "report.html")


def _simulate(out: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(out), "--rounds", "2", "--epochs", "1", *args]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "wall time:" in result.output
    return dict(json.loads((out / "results.json").read_text()))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("study")
    return out, _simulate(
        out, "--institutions", "3", "--rows", "3000", "--epsilons", "4", "--dpsgd-epsilons", "4"
    )


def test_every_file_with_the_documented_keys(generated: tuple[Path, dict[str, Any]]) -> None:
    out, results = generated
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"scenario", "strategies", "institutions", "sensitivity"} <= set(results)
    strategies = results["strategies"]
    assert isinstance(strategies, list)
    assert [s["name"] for s in strategies] == [
        "centralized", "local-only", "fedavg", "he-fedavg", "he-fedavg-dpsgd-eps4",
        "he-fedavg-dp-eps4",
    ]  # fmt: skip
    for strategy in strategies:
        assert set(strategy) >= STRATEGY_KEYS, strategy["name"]
        assert set(strategy["compliance_cost"]) == COST_KEYS
        assert 0.0 <= strategy["auc"] <= 1.0
    institutions = results["institutions"]
    assert isinstance(institutions, list) and len(institutions) == 3
    assert all(set(i) >= INSTITUTION_KEYS for i in institutions)
    attacks = results["privacy_attacks"]
    assert all(set(a) >= ATTACK_KEYS for a in attacks)
    # The aggregator sees a plaintext update under plaintext FedAvg only.
    on_updates = {
        a["strategy"] for a in attacks if "update" in a["surface"] and a["advantage"] is not None
    }
    assert on_updates == {"fedavg"}
    # Four answers to the two unsettled questions, for every strategy.
    assert len(results["sensitivity"]) == 4 * len(strategies)
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["name"]) == [s["name"] for s in strategies]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # pareto, tornado, uplift
    assert "he-fedavg-dp-eps4" in html and "Assumed" in html and "Measured" in html


def test_measurements_and_costs_are_consistent(generated: tuple[Path, dict[str, Any]]) -> None:
    _, results = generated
    by_name = {s["name"]: s for s in results["strategies"]}
    # Encryption changes the model by CKKS noise only.
    assert abs(by_name["he-fedavg"]["auc"] - by_name["fedavg"]["auc"]) <= 1e-3
    # Ciphertexts are far larger than plaintext updates; both were measured.
    assert by_name["he-fedavg"]["bytes_sent"] > 10 * by_name["fedavg"]["bytes_sent"] > 0
    assert by_name["local-only"]["bytes_sent"] == 0
    assert by_name["he-fedavg-dp-eps4"]["epsilon"] == pytest.approx(4.0, rel=0.01)
    # DP-SGD: the worst institution's epsilon over every step is the target.
    assert by_name["he-fedavg-dpsgd-eps4"]["epsilon"] == pytest.approx(4.0, rel=0.03)
    # The default mix puts a CN platform lender (not a bank: the PBoC 2011 notice does not
    # bind it) in a three-institution federation: pooling its 434 people's records needs the
    # CAC standard contract (sensitive PI of fewer than 10,000 people), so it is priced.
    centralized = by_name["centralized"]
    assert centralized["feasible"] is True and centralized["compliance_cost"]["total"] > 0
    cn_pool = [
        r for r in results["routes"] if r["strategy"] == "centralized" and r["origin"] == "CN"
    ]
    assert [r["mechanism"] for r in cn_pool] == ["standard_contract + separate_consent"]
    assert by_name["local-only"]["compliance_cost"]["transfer"] == 0
    for strategy in results["strategies"]:
        cost = strategy["compliance_cost"]
        if cost["total"] is not None:
            parts = cost["transfer"] + cost["residual_risk"] + cost["operational"]
            assert cost["total"] == pytest.approx(parts)


def test_real_data_partitioned_by_a_column(tmp_path: Path) -> None:
    schema_path = tmp_path / "schema.yaml"
    runner = CliRunner()
    inferred = runner.invoke(
        app,
        [
            "schema", "infer", "--data", str(GERMAN_CREDIT), "--target", "creditability",
            "--positive", "bad", "--out", str(schema_path),
        ],
    )  # fmt: skip
    assert inferred.exit_code == 0, inferred.output
    assert load_schema(schema_path).target.positive == "bad"
    results = _simulate(
        tmp_path / "german",
        "--data", str(GERMAN_CREDIT), "--target", "creditability", "--positive", "bad",
        "--partition-by", "housing", "--schema", str(schema_path), "--epsilons", "",
        "--dpsgd-epsilons", "",
        "--jurisdictions", "EU,US,SG",
    )  # fmt: skip
    institutions = results["institutions"]
    assert isinstance(institutions, list)
    assert sorted(i["name"] for i in institutions) == [
        "housing-for-free", "housing-own", "housing-rent",
    ]  # fmt: skip
    assert sum(i["n"] for i in institutions) == 1000
    assert {i["jurisdiction"] for i in institutions} == {"EU", "US", "SG"}
    names = [s["name"] for s in results["strategies"]]
    assert names == ["centralized", "local-only", "fedavg", "he-fedavg"]
    # No sector rule localises raw records in EU, US or SG: pooling is priced here.
    centralized = results["strategies"][0]
    assert centralized["feasible"] is True and centralized["compliance_cost"]["total"] > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def ray_head(tmp_path: Path) -> Iterator[str]:
    """A Ray head on 127.0.0.1, started here and stopped by its process group."""
    port = _free_port()
    ray = Path(sys.executable).with_name("ray")
    # Its own temp dir: the default one would advertise this head to every ray.init on
    # the machine. Short, for Ray's socket paths.
    temp_dir = tempfile.mkdtemp(prefix="crossfed-rayhead-")
    command = [
        str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
        "--disable-usage-stats", "--ray-client-server-port", str(_free_port()),
        "--dashboard-agent-listen-port", str(_free_port()), "--temp-dir", temp_dir,
    ]  # fmt: skip
    head = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"),
    )
    try:
        deadline = time.monotonic() + 180
        assert head.stdout is not None
        for line in head.stdout:
            if "Ray runtime started" in line:
                break
            if time.monotonic() > deadline:
                pytest.fail("the Ray head did not start within 180 s")
        else:
            pytest.fail(f"the Ray head exited with code {head.wait()}")
        # Keep reading its output so that a full pipe never blocks it.
        threading.Thread(target=head.stdout.read, daemon=True).start()
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(os.getpgid(head.pid), signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_runs_on_an_existing_ray_cluster(ray_head: str, tmp_path: Path) -> None:
    import ray
    from ray._private import state

    results = _simulate(
        tmp_path / "cluster",
        "--institutions", "2", "--rows", "1500", "--epsilons", "", "--dpsgd-epsilons", "",
        "--ray-address", ray_head,
    )  # fmt: skip
    assert results["scenario"]["ray_address"] == ray_head
    ray.init(address=ray_head, log_to_driver=False)
    try:
        jobs = state.jobs()
    finally:
        ray.shutdown()
    # The study's simulation ran as a job of this cluster (this check is another).
    assert len(jobs) >= 2
