"""Attack: set what leaves the bank through the messages (mode, DP noise shares).

Before (issue 9, items 2 and 5): the ClientApp read the mode and the number of
institutions sharing distributed-DP noise from the aggregator's messages.
``mode=plaintext`` made a bank reply with its weights, example count, loss and
metrics in clear; ``dp-shares=10^12`` cut each bank's noise a millionfold while
the reported epsilon stayed the same. Here the test plays the aggregator with
those entries in every message: the banks' replies stay encrypted and carry
the noise their own settings (the kit's) prescribe.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import crypto
from clients import ModelSpec, build_model, get_weights, load_schema
from clients.data import feature_names
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    MODE_KEY,
    ErrorCode,
    read_ciphertext,
    reason_of,
)

pytestmark = pytest.mark.usefixtures("flower_task")

#: DP settings of the kit: a tiny clip and a large multiplier, so the noise dominates.
CLIP, MULTIPLIER = 0.01, 100.0


def _hostile(message: Any, **entries: object) -> Any:
    config = message.content.config_records[CONFIG_KEY]
    for key, value in entries.items():
        config[key] = value
    return message


def test_mode_plaintext_in_the_messages_is_ignored(played_aggregator: Any) -> None:
    banks = played_aggregator.federation.banks()
    stats_query = _hostile(played_aggregator.stats_query(), **{MODE_KEY: "plaintext"})
    train = _hostile(played_aggregator.train_message(1), **{MODE_KEY: "plaintext"})
    for message in (stats_query, train):
        for reply in played_aggregator.collect(message, banks):
            assert not reply.has_error()
            assert set(reply.content) == {ARRAYS_KEY, METRICS_KEY}
            assert dict(reply.content.metric_records[METRICS_KEY]) == {}  # no count, no loss
            # What the bank sent is one ciphertext, nothing the aggregator can read.
            update = played_aggregator.update(reply)
            assert update.session == played_aggregator.session


def _noise_std(federation: Any, reply: Any, start: list[np.ndarray]) -> float:
    """The test holds the key: the per-parameter spread of (reply - start)."""
    update = crypto.EncryptedUpdate.from_bytes(
        federation.secret, read_ciphertext(reply.content.array_records[ARRAYS_KEY])
    )
    weights, weight = crypto.decrypt_average(federation.secret, update)
    assert round(weight) == 1  # DP averages with equal weights
    residual = np.concatenate([(w - s).ravel() for w, s in zip(weights, start, strict=True)])
    return float(np.sqrt(np.mean(residual**2)))


def test_dp_shares_in_the_messages_do_not_cut_the_noise(
    played_aggregator: Any, institutions: Any
) -> None:
    settings = institutions.settings(dp_clip=CLIP, dp_noise_multiplier=MULTIPLIER)
    banks = institutions.banks(settings)
    stats_query = _hostile(played_aggregator.stats_query(), **{"dp-shares": 10**12})
    for bank in banks:
        assert not bank.send(stats_query).has_error()
    train = _hostile(played_aggregator.train_message(1), **{"dp-shares": 10**12})
    schema = load_schema(settings.schema)
    start = get_weights(build_model(ModelSpec(kind="logistic"), len(feature_names(schema)), 0))
    expected = MULTIPLIER * CLIP / math.sqrt(settings.institutions)  # the kit's share
    claimed = MULTIPLIER * CLIP / math.sqrt(10**12)  # the message's
    for reply in played_aggregator.collect(train, banks):
        assert not reply.has_error()
        measured = _noise_std(institutions, reply, start)
        # About 60 parameters: the estimate is within ~10% of the truth; the clipped
        # update itself adds at most CLIP / sqrt(60) per parameter.
        assert 0.6 * expected < measured < 1.5 * expected, (measured, expected)
        assert measured > 1e4 * claimed


def test_a_dp_run_without_the_kits_institution_count_is_refused(
    played_aggregator: Any, institutions: Any
) -> None:
    settings = institutions.settings(dp_clip=CLIP, dp_noise_multiplier=MULTIPLIER, institutions=0)
    banks = institutions.banks(settings)
    for bank in banks:
        assert not bank.send(played_aggregator.stats_query()).has_error()
    message = _hostile(played_aggregator.train_message(1), **{"dp-shares": 3})
    for reply in played_aggregator.collect(message, banks):
        assert reply.has_error()
        code = ErrorCode.CONFIG_MISMATCH
        assert (reply.error.code, reply.error.reason) == (int(code), reason_of(code))
