"""Faults in a deployed federation: processes killed on 127.0.0.1, and what survives.

Each test provisions kits with ``crossfed kit create`` (quorum and round
deadline from ``--min-institutions`` and ``--round-timeout``), starts
``crossfed aggregator`` and one ``crossfed client`` per institution as separate
processes over TLS, and then kills something with SIGKILL — no clean shutdown:

* one institution's whole process tree (``crossfed client``, its SuperNode and
  its ``flwr-clientapp``) in the middle of round 1, quorum 2 of 3: the run
  completes with the other two, the audit log names the dropped node;
* the aggregator's whole tree after round 1's checkpoint: restarted with the
  same kit and ``--out`` it resumes at round 2 and ends with the model an
  uninterrupted federation from the same seeds reaches (here the simulation
  engine running the same settings, data and keys);
* one institution in round 2 with quorum 3 of 3: the run stops with a message
  naming the quorum, and round 1's checkpoint is left byte for byte; the
  institution and the aggregator are then started again, and round 2 is
  retried under the same run id and completes.

The scenarios run side by side, most of their time spent waiting for Flower
(a SIGKILLed SuperNode is noticed only after two missed 30 s heartbeats, and
Flower 1.39 offers no setting for that interval). So that at most two
federations start at once on two cores, the aggregator restart, which waits on
no heartbeat, starts — with the uninterrupted simulation it is compared with —
when the quorum scenario's victim has been killed and the first two
federations are only waiting for Flower to notice.

Every process is torn down, children included, whatever happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import crypto
from clients import infer_schema, save_schema
from clients.shapes import model_shapes_json
from crossfed.protocol import (
    FederationSettings,
    descendants,
    flower_env,
    free_port,
    stop_tree,
)
from federation import (
    AggregatorKit,
    create_kits,
    load_checkpoint,
    verify_audit_log,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
NAMES = ("bank-eu", "bank-sg", "lender-br")
RUN_TIMEOUT = 900.0  # a safety net only: two cores running three federations
ROUND_TIMEOUT = 120.0


def _crossfed(*args: str) -> list[str]:
    return [sys.executable, "-c", "from crossfed.cli import main; main()", *args]


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and everything below it at once: a crash, not a shutdown."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll ``condition`` until it holds; the timeout is a safety net, not a measurement."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@dataclasses.dataclass
class Deployment:
    """Kits, data and processes of one federation on 127.0.0.1, and what was seen."""

    root: Path
    names: tuple[str, ...]
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    codes: dict[str, int] = dataclasses.field(default_factory=dict)
    seen: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: BaseException | None = None
    wall_s: float = 0.0
    #: Set once the federation is only waiting for Flower to notice a killed node
    #: (or the scenario ended): a later wave of scenarios may start then.
    waiting_on_heartbeat: threading.Event = dataclasses.field(default_factory=threading.Event)
    events: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    def mark(self, what: str) -> None:
        """Note when something happened (printed with the scenario's wall time)."""
        self.events.append((what, time.monotonic()))

    @property
    def kits(self) -> Path:
        return self.root / "kits"

    @property
    def out(self) -> Path:
        return self.root / "agg-out"

    def data(self, name: str) -> Path:
        return self.root / f"{name}.csv"

    def client_out(self, name: str) -> Path:
        return self.root / f"out-{name}"

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def _start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("ab") as handle:
            process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        self.processes[name] = process
        return process

    def start_aggregator(self) -> None:
        """Start ``crossfed aggregator`` and wait until it has registered the institutions."""
        status = self.kits / "aggregator" / "run" / "status.json"
        status.unlink(missing_ok=True)
        process = self._start(
            "aggregator",
            _crossfed(
                "aggregator", "--kit", str(self.kits / "aggregator"), "--out", str(self.out),
                "--timeout", str(RUN_TIMEOUT),
            ),
        )  # fmt: skip

        def registered() -> bool:
            assert process.poll() is None, self.log("aggregator")[-3000:]
            return status.is_file() and json.loads(status.read_text())["phase"] == "running"

        _wait_for(registered, 180, "the aggregator to register the institutions")
        self.mark("aggregator running")
        self.seen.setdefault("node_ids", []).append(self.node_ids())

    def start_clients(self, *names: str) -> None:
        for name in names or self.names:
            self._start(
                name,
                _crossfed(
                    "client", "--kit", str(self.kits / name), "--data", str(self.data(name)),
                    "--out", str(self.client_out(name)), "--timeout", str(RUN_TIMEOUT),
                    "--connect-timeout", str(RUN_TIMEOUT),
                ),
            )  # fmt: skip

    def node_ids(self) -> dict[str, str]:
        status = json.loads((self.kits / "aggregator" / "run" / "status.json").read_text())
        return {name: str(node) for name, node in status["institutions"].items()}

    def kill_when_training(self, name: str, server_round: int) -> None:
        """Kill ``name``'s whole tree once its SuperNode has received round ``server_round``."""
        log = self.client_out(name) / ".supernode" / "supernode.log"

        def training() -> bool:
            text = log.read_text(errors="replace") if log.is_file() else ""
            return text.count("Receiving: train message") >= server_round

        # Polled often: the kill must land before the victim can have replied.
        _wait_for(training, RUN_TIMEOUT, f"{name} to receive round {server_round}", poll=0.05)
        _kill_tree(self.processes[name])
        self.mark(f"{name} killed in round {server_round}")

    def wait(self, *names: str) -> None:
        for name in names:
            try:
                self.codes[name] = self.processes[name].wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.codes[name] = -1

    def stop(self) -> None:
        for process in self.processes.values():
            stop_tree(process)

    def simulation_settings(self, out: Path) -> FederationSettings:
        """The kit's run settings, played by the simulation engine on the same files."""
        kit = AggregatorKit.load(self.kits / "aggregator")
        config = kit.manifest.run_config(
            public_context=str(kit.public_context), schema=str(kit.schema), out_dir=str(out)
        )
        return dataclasses.replace(
            FederationSettings.from_run_config(config),
            secret_context=str(self.kits / self.names[0] / "secret.ctx"),
            data_files=",".join(str(self.data(name)) for name in self.names),
        )


def _provision(
    root: Path, names: tuple[str, ...], *, min_institutions: int, rounds: int, cli: bool
) -> Deployment:
    """Data split across ``names`` and kits (through ``crossfed kit create`` if ``cli``)."""
    root.mkdir()
    fed = Deployment(root, names, flower_env(root / "flwr-home-default"))  # never ~/.flwr
    frame = pd.read_csv(DATA)
    order = np.random.default_rng(11).permutation(len(frame))
    for name, part in zip(names, np.array_split(order, len(names)), strict=True):
        frame.iloc[part].to_csv(fed.data(name), index=False)
    schema = root / "schema.yaml"
    inferred = infer_schema(frame, "creditability", "bad")
    save_schema(inferred, schema)
    address = f"127.0.0.1:{free_port()}"
    if not cli:
        create_kits(
            fed.kits, federation=root.name, aggregator_address=address,
            institutions=[(name, "EU") for name in names], schema=schema, preset="lean",
            rounds=rounds, min_institutions=min_institutions, round_timeout=ROUND_TIMEOUT,
            training={"epochs": 1, "model-shapes": model_shapes_json(inferred, "logistic", ())},
        )  # fmt: skip
        return fed
    created = subprocess.run(
        _crossfed(
            "kit", "create", "--out", str(fed.kits), "--federation", root.name,
            "--aggregator-address", address,
            *[arg for n in names for arg in ("--institution", f"{n}=EU")],
            "--schema", str(schema), "--preset", "lean", "--rounds", str(rounds), "--epochs", "1",
            "--min-institutions", str(min_institutions), "--round-timeout", str(ROUND_TIMEOUT),
        ),
        env=fed.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    return fed


def _kill_a_client(fed: Deployment) -> None:
    """Quorum 2 of 3: one institution is killed as round 1 reaches it."""
    fed.start_aggregator()
    fed.start_clients()
    fed.kill_when_training(fed.names[-1], 1)
    fed.wait("aggregator", *fed.names[:-1])


def _kill_the_aggregator(fed: Deployment) -> None:
    """The aggregator is killed once round 1 is checkpointed, then started again."""
    fed.start_aggregator()
    fed.start_clients()
    checkpoint = fed.out / "checkpoint.bin"
    _wait_for(checkpoint.is_file, RUN_TIMEOUT, "round 1's checkpoint")
    _kill_tree(fed.processes["aggregator"])
    fed.mark("aggregator killed")
    fed.seen["round_at_kill"] = load_checkpoint(checkpoint).round
    fed.seen["finished_at_kill"] = (fed.out / "metrics.json").exists()
    fed.start_aggregator()  # the same kit and --out
    fed.wait("aggregator", *fed.names)


def _lose_the_quorum(fed: Deployment) -> None:
    """Quorum 3 of 3: one institution is killed as round 2 reaches it; then both restart."""
    fed.start_aggregator()
    fed.start_clients()
    checkpoint = fed.out / "checkpoint.bin"
    _wait_for(checkpoint.is_file, RUN_TIMEOUT, "round 1's checkpoint")
    fed.seen["good_checkpoint"] = checkpoint.read_bytes()
    victim = fed.names[1]
    fed.kill_when_training(victim, 2)
    fed.waiting_on_heartbeat.set()
    fed.wait("aggregator")
    fed.mark("aggregator stopped")
    fed.seen["refused"] = {
        "code": fed.codes["aggregator"],
        "log": fed.log("aggregator"),
        "checkpoint": checkpoint.read_bytes(),
        "global_model": (fed.out / "global_model.bin").exists(),
        "client_models": [(fed.client_out(n) / "global_model.npz").exists() for n in fed.names],
    }
    # The operator brings the institution back and restarts the aggregator with the
    # same kit and --out; the other two institutions rejoin by themselves. The
    # institution starts first: it keeps dialling until the new SuperLink admits it.
    fed.start_clients(victim)
    fed.start_aggregator()
    fed.wait("aggregator", *fed.names)


_SIMULATE = """
import json, sys
import numpy as np
from crossfed.protocol import FederationSettings
from simulations.engine import default_backend_config, run_federated
settings = FederationSettings.from_run_config(json.loads(sys.argv[1]))
run = run_federated(settings, int(sys.argv[2]), backend_config=default_backend_config())
np.savez(sys.argv[3], *run.weights)
"""


def _simulate(fed: Deployment, out: Path) -> list[np.ndarray]:
    """The same federation, uninterrupted, in the simulation engine (a child process)."""
    config = json.dumps(fed.simulation_settings(out).to_run_config())
    weights = fed.root / "uninterrupted.npz"
    done = subprocess.run(
        [sys.executable, "-c", _SIMULATE, config, str(len(fed.names)), str(weights)],
        env=fed.env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with np.load(weights) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def _kill_the_aggregator_beside_the_reference(fed: Deployment) -> None:
    """The interrupted federation, and beside it the uninterrupted one it must match.

    The simulation runs in a process of its own (Ray does not share a process with
    threads that fork), started when the first wave only waits for Flower's heartbeat:
    beside three deployments starting on two cores, Ray once took minutes to start.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference") as pool:
        reference = pool.submit(_simulate, fed, fed.root / "sim")
        try:
            _kill_the_aggregator(fed)
        finally:
            fed.seen["uninterrupted"] = reference.result(timeout=RUN_TIMEOUT)
            fed.mark("uninterrupted simulation done")


SCRIPTS: dict[str, Callable[[Deployment], None]] = {
    "client-killed": _kill_a_client,
    "aggregator-killed": _kill_the_aggregator_beside_the_reference,
    "no-quorum": _lose_the_quorum,
}


#: Scenarios that start only once another one waits on Flower's heartbeat.
SECOND_WAVE = {"aggregator-killed": "no-quorum"}


def _guarded(
    script: Callable[[Deployment], None], fed: Deployment, after: Deployment | None
) -> None:
    if after is not None:  # the timeout is a safety net: the first wave sets it when done
        after.waiting_on_heartbeat.wait(timeout=RUN_TIMEOUT)
    started = time.monotonic()
    try:
        fed.mark("started")
        script(fed)
    except BaseException as exc:  # re-raised by the test that reads this scenario
        fed.error = exc
    finally:
        fed.waiting_on_heartbeat.set()
        fed.mark("ended")
    fed.wall_s += time.monotonic() - started


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Deployment]]:
    """The three scenarios side by side, in two waves (most of their time is spent waiting)."""
    root = tmp_path_factory.mktemp("faults")
    feds = {
        "client-killed": _provision(
            root / "client-killed", NAMES, min_institutions=2, rounds=1, cli=True
        ),
        "aggregator-killed": _provision(
            root / "aggregator-killed", NAMES[:2], min_institutions=2, rounds=2, cli=False
        ),
        "no-quorum": _provision(root / "no-quorum", NAMES, min_institutions=3, rounds=2, cli=False),
    }
    threads = [
        threading.Thread(
            target=_guarded,
            args=(SCRIPTS[key], fed, feds[SECOND_WAVE[key]] if key in SECOND_WAVE else None),
            name=key,
        )
        for key, fed in feds.items()
    ]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=2 * RUN_TIMEOUT)
    finally:
        for fed in feds.values():
            fed.stop()
    walls = {key: round(fed.wall_s) for key, fed in feds.items()}
    print(f"fault scenarios: {time.monotonic() - started:.0f} s; each (s): {walls}")
    for key, fed in feds.items():
        print(key, ", ".join(f"{what} at {at - started:.0f} s" for what, at in fed.events))
    yield feds


def _scenario(runs: dict[str, Deployment], key: str) -> Deployment:
    fed = runs[key]
    if fed.error is not None:
        raise fed.error
    return fed


def test_a_client_killed_mid_round_leaves_the_rest_to_finish(
    runs: dict[str, Deployment],
) -> None:
    fed = _scenario(runs, "client-killed")
    manifest = (fed.kits / "aggregator" / "federation.yaml").read_text()
    assert "min-institutions: 2" in manifest and f"round-timeout: {ROUND_TIMEOUT}" in manifest
    victim, survivors = fed.names[-1], fed.names[:-1]
    for name in ("aggregator", *survivors):
        assert fed.codes[name] == 0, fed.log(name)[-3000:]
    nodes = fed.node_ids()
    (record,) = verify_audit_log(fed.out / "audit.jsonl").records
    assert sorted(record.replied) == sorted(nodes[n] for n in survivors)
    (drop,) = record.dropped
    assert drop.node == nodes[victim]
    # The audit records Flower's own error by its code name, never free text.
    assert drop.reason in ("flower error NODE_UNAVAILABLE",) or (
        "no reply before the round deadline" in drop.reason
    )
    assert record.aggregate_sha256 is not None
    models = [np.load(fed.client_out(name) / "global_model.npz") for name in survivors]
    for key in models[0]["parameter_names"]:
        assert np.all(np.isfinite(models[0][key]))
        np.testing.assert_array_equal(models[0][key], models[1][key])
    assert not (fed.client_out(victim) / "global_model.npz").exists()


def test_a_restarted_aggregator_resumes_and_matches_an_uninterrupted_run(
    runs: dict[str, Deployment],
) -> None:
    fed = _scenario(runs, "aggregator-killed")
    assert fed.seen["round_at_kill"] == 1 and not fed.seen["finished_at_kill"]
    for name in ("aggregator", *fed.names):
        assert fed.codes[name] == 0, fed.log(name)[-3000:]
    assert "the aggregator restarted; rejoining" in fed.log(fed.names[0])
    metrics = json.loads((fed.out / "metrics.json").read_text())
    assert metrics["resumed_after"] == 1
    records = verify_audit_log(fed.out / "audit.jsonl").records
    assert [r.round for r in records] == [1, 2]
    assert len({r.run_id for r in records}) == 1
    before, after = fed.seen["node_ids"]  # the new SuperLink gave the nodes new ids
    assert sorted(records[0].replied) == sorted(before.values())
    assert sorted(records[1].replied) == sorted(after.values())
    secret = crypto.SecretContext.load(fed.kits / fed.names[0] / "secret.ctx")
    blob = (fed.out / "global_model.bin").read_bytes()
    resumed, _ = crypto.decrypt_average(secret, crypto.EncryptedUpdate.from_bytes(secret, blob))
    kept = np.load(fed.client_out(fed.names[0]) / "global_model.npz")
    kept_arrays = [kept[name] for name in kept["parameter_names"]]
    for a, b, c in zip(resumed, fed.seen["uninterrupted"], kept_arrays, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)  # CKKS precision, summed in another order
        np.testing.assert_allclose(a, c, atol=1e-6)


def test_without_quorum_the_run_stops_and_keeps_the_last_good_checkpoint(
    runs: dict[str, Deployment],
) -> None:
    fed = _scenario(runs, "no-quorum")
    refused = fed.seen["refused"]
    assert refused["code"] == 1
    assert "QuorumNotReachedError: round 2: 2 valid replies, quorum is 3" in refused["log"]
    assert refused["checkpoint"] == fed.seen["good_checkpoint"]
    assert not refused["global_model"]
    assert not any(refused["client_models"])
    records = verify_audit_log(fed.out / "audit.jsonl").records
    assert [r.round for r in records[:2]] == [1, 2]
    assert records[1].aggregate_sha256 is None
    before, _ = fed.seen["node_ids"]
    assert [d.node for d in records[1].dropped] == [before[fed.names[1]]]


def test_a_refused_round_is_retried_when_the_aggregator_restarts(
    runs: dict[str, Deployment],
) -> None:
    fed = _scenario(runs, "no-quorum")
    for name in ("aggregator", *fed.names):
        assert fed.codes[name] == 0, fed.log(name)[-3000:]
    metrics = json.loads((fed.out / "metrics.json").read_text())
    assert metrics["resumed_after"] == 1
    assert load_checkpoint(fed.out / "checkpoint.bin").round == 2
    records = verify_audit_log(fed.out / "audit.jsonl").records
    assert [(r.round, r.aggregate_sha256 is not None) for r in records] == [
        (1, True),
        (2, False),
        (2, True),
    ]
    assert len({r.run_id for r in records}) == 1
    _, after = fed.seen["node_ids"]
    assert sorted(records[2].replied) == sorted(after.values())
    models = [np.load(fed.client_out(name) / "global_model.npz") for name in fed.names]
    for key in models[0]["parameter_names"]:
        assert np.all(np.isfinite(models[0][key]))
        for other in models[1:]:
            np.testing.assert_array_equal(models[0][key], other[key])
