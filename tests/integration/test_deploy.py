"""A deployed federation as separate processes on 127.0.0.1: kits, TLS, node authentication.

``crossfed kit create`` provisions an aggregator and three institutions;
``crossfed aggregator`` and three ``crossfed client`` processes run masked
encrypted FedAvg (preset ``masked16``: roll call, masked statistics, masked
training with its seed reveal, masked evaluation) on German credit split in
three, for two rounds; the unmasked ``lean`` preset runs in test_faults. While it runs,
intruders try to join: a SuperNode with a key the federation never issued, one
speaking plaintext, and a client whose kit trusts another CA. A client whose
file lacks a schema column stops before connecting. Every process is torn
down, children included, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import crypto
from clients import infer_schema, save_schema
from crossfed.protocol import (
    FederationSettings,
    flower_env,
    flower_executable,
    free_port,
    stop_tree,
)
from federation import (
    certificate_to_pem,
    create_ca,
    create_node_keypair,
    verify_audit_log,
)
from simulations.engine import replay_masked

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
NAMES = ("bank-eu", "bank-sg", "lender-br")
RUN_TIMEOUT = 600  # a safety net only: a loaded two-core machine takes about 200 s
BLIP_S = 8.0


def _crossfed(*args: str) -> list[str]:
    return [sys.executable, "-c", "from crossfed.cli import main; main()", *args]


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1


class FlakyLink:
    """A TCP forwarder on 127.0.0.1 whose connections can be cut, as a network blip would.

    TLS passes through untouched (the forwarder sees only ciphertext). While cut,
    new connections are accepted and closed at once, so clients see resets.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._down_until = 0.0
        self.cuts: list[int] = []  # connections dropped by each cut
        self.forwarded: list[float] = []  # when each connection was let through
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            if time.monotonic() < self._down_until:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {conn, upstream}
                self.forwarded.append(time.monotonic())
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self._sockets -= set(sockets)

    @property
    def down_until(self) -> float:
        """When the last cut ended (``time.monotonic()``)."""
        return self._down_until

    def cut(self, seconds: float) -> None:
        """Drop every open connection and refuse new ones for ``seconds``."""
        self._down_until = time.monotonic() + seconds
        with self._lock:
            live = list(self._sockets)
        self._drop(*live)
        self.cuts.append(len(live) // 2)

    def close(self) -> None:
        self._server.close()
        with self._lock:
            live = list(self._sockets)
        self._drop(*live)


def _cut_when_training(link: FlakyLink, supernode_log: Path, seconds: float) -> None:
    """Cut the link once the institution has received round 1's training message."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if supernode_log.is_file() and "Receiving: train message" in supernode_log.read_text():
            link.cut(seconds)
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("deploy")
    env = flower_env(root / "flwr-home-default")  # never ~/.flwr
    frame = pd.read_csv(DATA)
    order = np.random.default_rng(3).permutation(len(frame))
    for name, part in zip(NAMES, np.array_split(order, len(NAMES)), strict=True):
        frame.iloc[part].to_csv(root / f"{name}.csv", index=False)
    frame.drop(columns=["duration_in_month"]).to_csv(root / "no-duration.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), root / "schema.yaml")

    # The kit's address is a forwarder to the aggregator's real port, so the test can
    # cut every institution's connection mid-round and let it come back.
    listen = free_port()
    link = FlakyLink(listen)
    port = link.port
    kits = root / "kits"
    created = subprocess.run(
        _crossfed(
            "kit", "create", "--out", str(kits), "--federation", "german",
            "--aggregator-address", f"127.0.0.1:{port}",
            *[arg for n in NAMES for arg in ("--institution", f"{n}=EU")],
            "--schema", str(root / "schema.yaml"), "--preset", "masked16",
            "--rounds", "2", "--epochs", "1", "--round-timeout", "180",
        ),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr

    # An intruder's kits: a key the federation never issued; a CA it never used.
    rogue = root / "rogue"
    rogue.mkdir()
    create_node_keypair().write(rogue / "node.key", rogue / "node.pub")
    wrong_ca = root / "wrong-ca-kit"
    shutil.copytree(kits / "bank-sg", wrong_ca)
    (wrong_ca / "ca.crt").unlink()
    (wrong_ca / "ca.crt").write_bytes(certificate_to_pem(create_ca("impostor CA").cert))

    bad = subprocess.run(
        _crossfed(
            "client", "--kit", str(kits / "bank-eu"), "--data", str(root / "no-duration.csv"),
            "--out", str(root / "bad-out"),
        ),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip

    processes: dict[str, subprocess.Popen[bytes]] = {}
    codes: dict[str, int] = {}
    started = time.monotonic()
    try:
        processes["aggregator"] = _start(
            _crossfed(
                "aggregator", "--kit", str(kits / "aggregator"), "--out", str(root / "agg-out"),
                "--timeout", str(RUN_TIMEOUT), "--listen", f"127.0.0.1:{listen}",
            ),
            root / "aggregator.log", env,
        )  # fmt: skip
        status = kits / "aggregator" / "run" / "status.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if status.is_file() and json.loads(status.read_text())["phase"] != "starting":
                break
            assert processes["aggregator"].poll() is None, (root / "aggregator.log").read_text()
            time.sleep(0.5)
        for name in NAMES:
            processes[name] = _start(
                _crossfed(
                    "client", "--kit", str(kits / name), "--data", str(root / f"{name}.csv"),
                    "--out", str(root / f"out-{name}"), "--timeout", str(RUN_TIMEOUT),
                ),
                root / f"{name}.log", env,
            )  # fmt: skip
        node = [flower_executable("flower-supernode"), "--superlink", f"127.0.0.1:{port}"]
        processes["unknown-key"] = _start(
            [
                *node, "--root-certificates", str(kits / "bank-sg" / "ca.crt"),
                "--auth-supernode-private-key", str(rogue / "node.key"),
                "--port", str(free_port()), "--max-wait-time", "20",
            ],
            root / "unknown-key.log", flower_env(rogue / "home"),
        )  # fmt: skip
        processes["plaintext"] = _start(
            [
                *node, "--insecure", "--auth-supernode-private-key",
                str(kits / "lender-br" / "node.key"),
                "--port", str(free_port()), "--max-wait-time", "20",
            ],
            root / "plaintext.log", flower_env(rogue / "home2"),
        )  # fmt: skip
        processes["wrong-ca"] = _start(
            _crossfed(
                "client", "--kit", str(wrong_ca), "--data", str(root / "bank-sg.csv"),
                "--out", str(root / "out-wrong-ca"), "--connect-timeout", "20",
            ),
            root / "wrong-ca.log", env,
        )  # fmt: skip
        blip = threading.Thread(
            target=_cut_when_training,
            args=(link, root / f"out-{NAMES[0]}" / ".supernode" / "supernode.log", BLIP_S),
            daemon=True,
        )
        blip.start()
        for name, process in processes.items():
            codes[name] = _wait(process, max(1.0, RUN_TIMEOUT + 60 - (time.monotonic() - started)))
    finally:
        for process in processes.values():
            stop_tree(process)
        cut_ended = link.down_until
        link.close()
    print(
        f"deployment: 1 aggregator + {len(NAMES)} institutions, 2 masked rounds, "
        f"{time.monotonic() - started:.1f} s wall; connections cut mid-round: {link.cuts}"
    )
    yield {
        "root": root,
        "kits": kits,
        "codes": codes,
        "bad": bad,
        "cuts": link.cuts,
        "reconnections": sum(1 for t in link.forwarded if t >= cut_ended) if link.cuts else 0,
    }


def _log(deployment: dict[str, object], name: str) -> str:
    root = deployment["root"]
    assert isinstance(root, Path)
    return (root / f"{name}.log").read_text(errors="replace")


def test_all_parties_finish_with_the_same_model(deployment: dict[str, object]) -> None:
    codes, root = deployment["codes"], deployment["root"]
    assert isinstance(codes, dict) and isinstance(root, Path)
    for name in ("aggregator", *NAMES):
        assert codes[name] == 0, _log(deployment, name)[-3000:]
    models = [np.load(root / f"out-{name}" / "global_model.npz") for name in NAMES]
    first = [models[0][key] for key in models[0].files]
    for other in models[1:]:
        for a, b in zip(first, [other[key] for key in other.files], strict=True):
            np.testing.assert_array_equal(a, b)
    shared = []
    for name in NAMES:
        metrics = json.loads((root / f"out-{name}" / "metrics.json").read_text())
        assert 0.5 < metrics["test"]["auc"] <= 1.0
        # The federation's size-weighted evaluation, decrypted by each institution.
        shared.append(metrics["federation_test"])
        assert set(shared[-1]) == set(metrics["test"]) and 0.5 < shared[-1]["auc"] <= 1.0
        # A points-based scorecard, binned on this institution's own training split.
        card = pd.read_csv(root / f"out-{name}" / "scorecard.csv")
        assert list(card.columns[:3]) == ["characteristic", "type", "bin"]
        assert "points" in card.columns
        assert metrics["scorecard"]["produced"] and metrics["scorecard"]["bins"] == len(card)
        assert metrics["approval_target"]["fraction"] == 0.5
        # The model card knows the federation's size from the decrypted statistics round.
        rows = f"{metrics['federation_train_rows']:,} training rows over all institutions"
        assert rows in (root / f"out-{name}" / "model_card.md").read_text()
    assert shared[0] == shared[1] == shared[2]
    # The aggregator kept only counts: no institution's metric or test-set size.
    written = json.loads((root / "agg-out" / "metrics.json").read_text())
    assert written["evaluate"]["2"] == {"institutions": 3, "dropped": 0}


def _opened_round(kits: Path, out: Path, server_round: int) -> crypto.MaskedSum:
    """An institution's opening of one round's masked sum, with the seeds the aggregator kept."""
    secret = crypto.SecretContext.load(kits / NAMES[0] / "secret.ctx")
    blob = (out / "masked" / f"round-{server_round}.bin").read_bytes()
    seeds = json.loads((out / "masked" / f"round-{server_round}.seeds.json").read_text())
    return crypto.decrypt_masked(
        secret,
        crypto.EncryptedUpdate.from_bytes(secret, blob),
        self_seeds={name: bytes.fromhex(seed) for name, seed in seeds.items()},
        purpose="train",
    )


def test_aggregator_output_is_ciphertext_only(deployment: dict[str, object]) -> None:
    root, kits = deployment["root"], deployment["kits"]
    assert isinstance(root, Path) and isinstance(kits, Path)
    out = root / "agg-out"
    assert verify_audit_log(out / "audit.jsonl").lines == 2
    assert not list(out.glob("*.npz"))
    secret = crypto.SecretContext.load(kits / "bank-eu" / "secret.ctx")
    blob = (out / "masked" / "round-2.bin").read_bytes()
    with pytest.raises(crypto.SecretKeyRequiredError):
        crypto.decrypt_masked(
            secret.public(),  # type: ignore[arg-type]
            crypto.EncryptedUpdate.from_bytes(secret.public(), blob),
            self_seeds={},
            purpose="train",
        )
    # Only the institutions' key opens the masked deltas, and they make the model they wrote.
    manifest = yaml.safe_load((kits / "aggregator" / "federation.yaml").read_text())
    settings = FederationSettings(
        mode="encrypted",
        rounds=2,
        secret_context=str(kits / "bank-eu" / "secret.ctx"),
        out_dir=str(out),
        model_shapes=manifest["training"]["model-shapes"],
        seed=int(manifest["training"]["seed"]),
    )
    weights = replay_masked(settings)
    model = np.load(root / "out-bank-eu" / "global_model.npz")
    kept = [model[key] for key in model["parameter_names"]]
    for a, b in zip(weights, kept, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # No plaintext parameter array sits anywhere in the aggregator's outputs or state.
    probes = [w.astype(np.float32).tobytes() for w in kept if w.size > 1]
    probes += [w.astype(np.float64).tobytes() for w in kept if w.size > 1]
    for path in [*out.rglob("*"), *(kits / "aggregator").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(p in data for p in probes), path


def test_aggregator_folder_holds_no_secret_key(deployment: dict[str, object]) -> None:
    root, kits = deployment["root"], deployment["kits"]
    assert isinstance(root, Path) and isinstance(kits, Path)
    secret_file = (kits / "bank-eu" / "secret.ctx").read_bytes()
    secret = crypto.SecretContext.load(kits / "bank-eu" / "secret.ctx")
    secret.tenseal_context.secret_key().data.save(str(root / "sk.bin"))
    key = (root / "sk.bin").read_bytes()
    probe = key[len(key) // 2 :][:4096]
    files = [p for p in [*(kits / "aggregator").rglob("*"), *(root / "agg-out").rglob("*")]]
    assert any(p.name == "state.db" for p in files)  # the SuperLink's state is checked too
    for path in files:
        if path.is_file():
            data = path.read_bytes()
            assert secret_file not in data and probe not in data, path


def test_unknown_node_key_is_refused(deployment: dict[str, object]) -> None:
    codes, kits = deployment["codes"], deployment["kits"]
    assert isinstance(codes, dict) and isinstance(kits, Path)
    assert codes["unknown-key"] != 0
    assert "Failed to activate SuperNode" in _log(deployment, "unknown-key")
    link_log = (kits / "aggregator" / "run" / "logs" / "superlink.log").read_text()
    assert "No SuperNode found with the given public key" in link_log


def test_plaintext_and_wrong_ca_cannot_connect(deployment: dict[str, object]) -> None:
    codes = deployment["codes"]
    assert isinstance(codes, dict)
    assert codes["plaintext"] != 0
    assert "Exit Code" in _log(deployment, "plaintext")
    assert codes["wrong-ca"] == 1
    assert "TLS failed" in _log(deployment, "wrong-ca")


def test_missing_column_stops_before_connecting(deployment: dict[str, object]) -> None:
    bad, root = deployment["bad"], deployment["root"]
    assert isinstance(bad, subprocess.CompletedProcess) and isinstance(root, Path)
    assert bad.returncode == 2
    assert "duration_in_month" in bad.stderr and "nothing was sent" in bad.stderr
    assert not (root / "bad-out" / ".supernode").exists()


def test_a_network_blip_mid_round_is_survived_and_counted_once(
    deployment: dict[str, object],
) -> None:
    root, kits, cuts = deployment["root"], deployment["kits"], deployment["cuts"]
    assert isinstance(root, Path) and isinstance(kits, Path) and isinstance(cuts, list)
    # The blip dropped every institution's open connection, and each SuperNode
    # opened a new one afterwards (whether gRPC had to retry depends on timing).
    assert len(cuts) == 1 and cuts[0] >= len(NAMES), cuts
    assert deployment["reconnections"] >= len(NAMES), deployment["reconnections"]
    records = verify_audit_log(root / "agg-out" / "audit.jsonl").records
    for record in records:
        assert len(record.replied) == len(set(record.replied)) == len(NAMES)
        assert record.dropped == []
    # Each institution's rows counted once in the summed weight of the last round.
    summed = _opened_round(kits, root / "agg-out", 2)
    rows = [json.loads((root / f"out-{n}" / "metrics.json").read_text())["n_train"] for n in NAMES]
    assert summed.total_weight == sum(rows)
    assert sorted(summed.contributors) == sorted(NAMES)
