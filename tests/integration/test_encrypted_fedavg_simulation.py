"""Encrypted and plaintext FedAvg in Flower's simulation engine on German credit.

German credit is split across three virtual institutions; both modes run from
the same seeds. The encrypted federation must reach the plaintext one's model
(CKKS noise only), beat the institutions' local-only models, and leave an
audit log and checkpoint with no plaintext model in the aggregator's folder.
"""

from __future__ import annotations

from pathlib import Path

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
    infer_schema,
    predict_proba,
    save_schema,
    train_local,
    train_test_split,
)
from federation import FederationSettings, load_checkpoint, verify_audit_log
from simulations.engine import FederatedRun, run_federated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
INSTITUTIONS = 3
SEED = 7


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("german")
    frame = pd.read_csv(DATA)
    order = np.random.default_rng(SEED).permutation(len(frame))
    files = []
    for index, part in enumerate(np.array_split(order, INSTITUTIONS)):
        path = root / f"institution-{index}.csv"
        frame.iloc[part].to_csv(path, index=False)
        files.append(str(path))
    schema = infer_schema(frame, "creditability", "bad")
    save_schema(schema, root / "schema.yaml")
    secret = crypto.generate_secret_context("lean")
    secret.save(root / "secret.ctx")
    secret.public().save(root / "public.ctx")
    runs: dict[str, FederatedRun] = {}
    for mode in ("plaintext", "encrypted"):
        settings = FederationSettings(
            mode=mode,
            rounds=3,
            min_institutions=INSTITUTIONS,
            round_timeout=180,
            public_context=str(root / "public.ctx"),
            secret_context=str(root / "secret.ctx"),
            schema=str(root / "schema.yaml"),
            data_files=",".join(files),
            out_dir=str(root / f"out-{mode}"),
            epochs=3,
            seed=SEED,
        )
        runs[mode] = run_federated(settings, INSTITUTIONS)
    return {"root": root, "files": files, "schema": schema, "runs": runs, "secret": secret}


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
