"""Settings, privacy accounting, checkpoints and the encrypted-aggregation wrapper."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

import crypto
from crossfed.protocol import (
    ConfigurationError,
    FederationSettings,
    ciphertext_record,
    read_ciphertext,
)
from federation import (
    Checkpoint,
    CheckpointError,
    EncryptedAggregation,
    content_bytes,
    effective_noise_multiplier,
    epsilon_spent,
    load_checkpoint,
    noise_multiplier_for_epsilon,
    save_checkpoint,
)


def test_settings_round_trip_through_run_config() -> None:
    settings = FederationSettings(mode="plaintext", rounds=4, dp_clip=1.5, learning_rate=0.2)
    assert FederationSettings.from_run_config(settings.to_run_config()) == settings


def test_settings_cast_toml_integers_to_floats() -> None:
    parsed = FederationSettings.from_run_config({"mode": "plaintext", "round-timeout": 30})
    assert parsed.round_timeout == 30.0 and isinstance(parsed.round_timeout, float)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"mode": "plaintext", "no-such-key": 1}, "no-such-key"),
        ({"mode": "sideways"}, "mode"),
        ({"mode": "plaintext", "rounds": 0}, "rounds"),
        ({"mode": "plaintext", "rounds": "many"}, "rounds"),
        ({"mode": "encrypted"}, "public-context"),
        ({"mode": "plaintext", "dp-noise-multiplier": 1.0}, "dp-clip"),
        ({"mode": "plaintext", "model-shapes": "[[1,"}, "model-shapes"),
    ],
)
def test_settings_refuse_bad_values_by_name(config: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        FederationSettings.from_run_config(config)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    one = epsilon_spent([1.0], 1e-5)
    three = epsilon_spent([1.0] * 3, 1e-5)
    noisier = epsilon_spent([2.0] * 3, 1e-5)
    assert 0 < one < three and noisier < three
    assert epsilon_spent([0.0], 1e-5) == math.inf


def test_noise_multiplier_for_epsilon_meets_the_target_tightly() -> None:
    for target in (1.0, 4.0, 8.0):
        z = noise_multiplier_for_epsilon(target, 5, 1e-5)
        assert epsilon_spent([z] * 5, 1e-5) <= target
        assert epsilon_spent([z * 0.99] * 5, 1e-5) > target


def test_dropouts_reduce_the_effective_noise() -> None:
    assert effective_noise_multiplier(2.0, 4, 4) == pytest.approx(2.0)
    assert effective_noise_multiplier(2.0, 1, 4) == pytest.approx(1.0)
    with pytest.raises(ConfigurationError):
        effective_noise_multiplier(2.0, 1, 0)


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    model = os.urandom(777)
    written = Checkpoint(
        round=4, run_id="r1", fingerprint="ab" * 32, audit_head="cd" * 32, model=model
    )
    path = save_checkpoint(tmp_path / "checkpoint.bin", written)
    assert load_checkpoint(path, expected_fingerprint="ab" * 32) == written
    with pytest.raises(CheckpointError, match="another federation"):
        load_checkpoint(path, expected_fingerprint="ef" * 32)
    data = path.read_bytes()
    for damaged in (data[:6], b"XXXX" + data[4:], data[:4] + b"\xff\xff\xff\xff" + data[8:]):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.bin")


def test_ciphertext_record_round_trip_and_refusal() -> None:
    data = os.urandom(1001)
    assert read_ciphertext(ciphertext_record(data)) == data
    with pytest.raises(crypto.MalformedDataError):
        read_ciphertext(ArrayRecord([np.ones(3)]))


def test_content_bytes_counts_arrays_and_bytes() -> None:
    content = RecordDict(
        {"a": ArrayRecord([np.ones(100, dtype=np.float32)]), "c": ConfigRecord({"b": b"x" * 50})}
    )
    assert content_bytes(content) >= 400 + 50


def _aggregation(context: crypto.PublicContext) -> EncryptedAggregation:
    return EncryptedAggregation(
        FedAvg(),
        context,
        min_institutions=1,
        shapes=((2,),),
        max_update_bytes=1 << 20,
        audit=None,
        out_dir=None,
        run_id="r",
    )


def test_aggregator_refuses_a_secret_context() -> None:
    secret = crypto.generate_secret_context("lean")
    with pytest.raises(crypto.SecretKeyPresentError):
        _aggregation(secret)  # type: ignore[arg-type]
    strategy = _aggregation(secret.public())
    assert not strategy.context.tenseal_context.has_secret_key()


def test_aggregator_refuses_a_preset_that_clips_the_model() -> None:
    public = crypto.generate_secret_context("packed").public()
    with pytest.raises(ConfigurationError, match="'packed' clips every value to \\[-1, 1\\]"):
        _aggregation(public)
