"""Calibration of the aggregate check: honest sums never fail, with margin.

Each preset and encoding gets a pool of ``max_institutions`` (128) genuine
contributions, every second one at the largest magnitude its codec accepts
(same sign everywhere, so a sum of all reaches the capacity) and the others
ordinary; each trial sums a random subset of 1 to 128 of them with the public
context and measures ``|residual| / tolerance`` on every check lane. The slow
run (1,200 trials) gives the figures in :mod:`crypto.check`'s docstring; the
fast run replays a few trials per preset.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto import (
    EncryptedUpdate,
    SecretContext,
    aggregate,
    encrypt_sums,
    encrypt_update,
    generate_secret_context,
)
from crypto.codec import FloatCodec
from crypto.encrypted import AVERAGE, SUM
from crypto.encrypted import codec_of as _codec
from crypto.integrity import round_check

CONFIGS = [(p, e) for p in ("lean", "standard", "packed") for e in (AVERAGE, SUM)]


def pool(
    secret: SecretContext, encoding: str, rng: np.random.Generator, size: int, n: int
) -> tuple[list[EncryptedUpdate], int | None]:
    """``size`` genuine contributions of ``n`` values, half at their codec's largest magnitude."""
    preset = secret.preset
    weights = rng.integers(1, 1000, size=size)
    total = int(weights.sum()) if preset.codec == "packed" else None
    made = []
    for index in range(size):
        at_max, name = index % 2 == 0, f"institution-{index}"
        if encoding == SUM:
            limit = 2.0 ** (2 * preset.build_sum_codec().limb_bits)
            values = (
                0.99 * limit * rng.uniform(0.5, 1.0, n)
                if at_max
                else 1e6 * rng.uniform(-1.0, 1.0, n)
            )
            made.append(encrypt_sums(secret, [values], contributor=name, round_id=1))
            continue
        if preset.codec == "packed":
            values = rng.uniform(-1, 1, n) * (1.5 if at_max else 0.1)  # clipped at 1
        else:
            codec = preset.build_codec()
            assert isinstance(codec, FloatCodec)
            peak = codec.max_magnitude / float(weights[index])
            values = (0.99 * peak * rng.uniform(0.9, 1.0, n)) if at_max else rng.normal(0, 0.1, n)
        made.append(
            encrypt_update(
                secret,
                [values],
                int(weights[index]),
                contributor=name,
                round_id=1,
                total_weight=total,
                rng=rng,
            )
        )
    return made, total


def worst_ratio(secret: SecretContext, summed: EncryptedUpdate) -> float:
    """Largest ``|residual| / tolerance`` over the lanes of a decrypted genuine sum."""
    codec = _codec(secret.preset, summed.encoding)
    key = secret.tenseal_context.secret_key()
    slots = np.concatenate([np.asarray(v.decrypt(key)) for v in summed.vectors])
    payload = codec.slot_count(summed.n_values)
    check = round_check(
        secret,
        codec,
        encoding=summed.encoding,
        shapes=summed.shapes,
        session=summed.session,
        round_id=summed.round_id,
    )
    residuals, tolerances = check.residuals(
        codec.mac_values(slots[:payload], summed.n_values), slots[payload:], summed.contributors
    )
    return float(np.max(np.abs(residuals) / tolerances))


def calibrate(trials: int, size: int, n: int, seed: int) -> dict[tuple[str, str], float]:
    rng = np.random.default_rng(seed)
    worst: dict[tuple[str, str], float] = {}
    for preset_name, encoding in CONFIGS:
        secret = generate_secret_context(preset_name)
        public = secret.public()
        made, _ = pool(secret, encoding, rng, size, n)
        ratios = []
        for _ in range(trials):
            chosen = rng.choice(size, size=int(rng.integers(1, size + 1)), replace=False)
            ratios.append(worst_ratio(secret, aggregate(public, [made[i] for i in chosen])))
        worst[(preset_name, encoding)] = max(ratios)
    return worst


def test_a_few_honest_sums_pass_with_margin() -> None:
    worst = calibrate(trials=4, size=12, n=300, seed=1)
    assert all(ratio < 0.5 for ratio in worst.values()), worst


@pytest.mark.slow
def test_twelve_hundred_honest_sums_of_up_to_128_pass_with_margin() -> None:
    worst = calibrate(trials=200, size=128, n=3000, seed=2)
    print("worst |residual| / tolerance:", {f"{p}/{e}": round(r, 3) for (p, e), r in worst.items()})
    assert all(ratio < 0.5 for ratio in worst.values()), worst
