"""Encrypted and plaintext FedAvg in Flower's simulation engine on German credit.

German credit is split across three virtual institutions; both modes run from
the same seeds. The encrypted federation must reach the plaintext one's model
(CKKS noise only), beat the institutions' local-only models, and leave an
audit log and checkpoint with no plaintext model in the aggregator's folder.
While they run, every socket the Ray cluster listens on is recorded: a local
simulation must open no port beyond 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import crypto
from clients import (
    ModelSpec,
    Standardizer,
    TrainConfig,
    build_model,
    encode,
    evaluate,
    predict_proba,
    train_local,
    train_test_split,
)
from crossfed.protocol import (
    EVALUATION_METRICS,
    NUM_EXAMPLES_KEY,
    descendants,
)
from federation import load_checkpoint, verify_audit_log
from simulations.engine import FederatedRun, run_federated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


INSTITUTIONS = 3
SEED = 7


def _listening(pids: list[int]) -> set[tuple[str, int, str]]:
    """``(address, port, command)`` of every TCP socket ``pids`` listen on (Linux ``/proc``)."""
    owners: dict[str, str] = {}
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners[target[8:-1]] = command
        except OSError:  # the process ended meanwhile
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in owners:  # 0A: LISTEN
                continue
            host, port = fields[1].split(":")
            raw = bytes.fromhex(host)
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(words)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
            found.add((str(address), int(port, 16), owners[fields[9]]))
    return found


@contextmanager
def _sockets_listened_on() -> Iterator[set[tuple[str, int, str]]]:
    """Record the listening sockets of this process and its children until the block ends."""
    seen: set[tuple[str, int, str]] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            seen.update(_listening([os.getpid(), *descendants(os.getpid())]))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


@pytest.fixture(scope="module")
def federation(german_federation: Callable[[int, int], Any]) -> dict[str, object]:
    split = german_federation(INSTITUTIONS, SEED)
    with _sockets_listened_on() as listening:
        runs: dict[str, FederatedRun] = {
            mode: run_federated(split.settings(f"out-{mode}", mode=mode, epochs=3, seed=SEED), 3)
            for mode in ("plaintext", "encrypted")
        }
    return {
        "root": split.root,
        "files": split.files,
        "schema": split.schema,
        "runs": runs,
        "secret": split.secret,
        "listening": listening,
    }


def test_a_local_simulation_listens_on_loopback_only(federation: dict[str, object]) -> None:
    listening = federation["listening"]
    assert isinstance(listening, set)
    commands = {command for _, _, command in listening}
    # Ray's own servers were seen (the watcher works), and every one is on loopback.
    assert {"gcs_server", "raylet"} <= commands, listening
    assert {address for address, _, _ in listening} == {"127.0.0.1"}, listening


def test_encrypted_reaches_the_plaintext_model(federation: dict[str, object]) -> None:
    runs = federation["runs"]
    assert isinstance(runs, dict)
    plain, encrypted = runs["plaintext"], runs["encrypted"]
    assert [w.shape for w in plain.weights] == [w.shape for w in encrypted.weights]
    difference = max(
        float(np.max(np.abs(a - b))) for a, b in zip(plain.weights, encrypted.weights, strict=True)
    )
    assert difference <= 1e-3
    assert abs(plain.final_evaluation()["auc"] - encrypted.final_evaluation()["auc"]) <= 1e-3
    # Training really moved the model away from its seeded start.
    assert max(float(np.max(np.abs(w))) for w in encrypted.weights) > 0.05


def test_federated_beats_local_only(federation: dict[str, object]) -> None:
    runs, files, schema = federation["runs"], federation["files"], federation["schema"]
    assert isinstance(runs, dict) and isinstance(files, list)
    local_aucs = []
    for path in files:
        x, y = encode(pd.read_csv(path), schema)  # type: ignore[arg-type]
        split = train_test_split(x, y, test_size=0.25, seed=SEED)
        scaler = Standardizer.fit(split.x_train)
        model = build_model(ModelSpec(kind="logistic"), x.shape[1], SEED)
        for round_ in range(1, 4):
            train_local(
                model,
                scaler.transform(split.x_train),
                split.y_train,
                TrainConfig(epochs=3, batch_size=64, learning_rate=0.1, seed=SEED + round_),
            )
        scores = predict_proba(model, scaler.transform(split.x_test))
        local_aucs.append(evaluate(split.y_test, scores).auc)
    federated_auc = runs["encrypted"].final_evaluation()["auc"]
    assert federated_auc > float(np.mean(local_aucs))


def test_aggregator_outputs_hold_no_plaintext_model(federation: dict[str, object]) -> None:
    root, secret = federation["root"], federation["secret"]
    assert isinstance(root, Path) and isinstance(secret, crypto.SecretContext)
    out = root / "out-encrypted"
    report = verify_audit_log(out / "audit.jsonl")
    assert report.lines == 3
    assert [r.round for r in report.records] == [1, 2, 3]
    assert all(len(r.replied) == INSTITUTIONS and not r.dropped for r in report.records)
    checkpoint = load_checkpoint(out / "checkpoint.bin", expected_fingerprint=secret.fingerprint)
    assert checkpoint.round == 3
    assert checkpoint.model == (out / "global_model.bin").read_bytes()
    assert not list(out.glob("*.npz"))
    # The aggregator's copy is ciphertext: only the secret context opens it.
    with pytest.raises(crypto.SecretKeyRequiredError):
        crypto.decrypt_average(
            secret.public(),  # type: ignore[arg-type]
            crypto.EncryptedUpdate.from_bytes(secret.public(), checkpoint.model),
        )


def test_the_aggregator_sees_no_institution_metric_or_size(federation: dict[str, object]) -> None:
    root, runs = federation["root"], federation["runs"]
    assert isinstance(root, Path) and isinstance(runs, dict)
    written = json.loads((root / "out-encrypted" / "metrics.json").read_text())
    for server_round in ("1", "2", "3"):
        # Plaintext mode reports AUC and example counts; encrypted, only who was counted.
        assert written["evaluate"][server_round] == {"institutions": INSTITUTIONS, "dropped": 0}
        assert (root / "out-encrypted" / f"evaluation-round-{server_round}.bin").is_file()
        assert NUM_EXAMPLES_KEY not in written["train"][server_round]
    assert (
        "auc" in json.loads((root / "out-plaintext" / "metrics.json").read_text())["evaluate"]["3"]
    )
    # Key holders decrypt the same size-weighted means the plaintext federation reports.
    plain, encrypted = runs["plaintext"], runs["encrypted"]
    for name in EVALUATION_METRICS:
        assert abs(plain.final_evaluation()[name] - encrypted.final_evaluation()[name]) <= 1e-3
