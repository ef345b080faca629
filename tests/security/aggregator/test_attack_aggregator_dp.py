"""Attack: make the aggregator report a smaller ε than the run really spent.

Before, the accountant counted an invalid reply (dropped, so its noise share
never entered the sum) as if it had added noise — 4.00 reported against 6.52
true — and a restarted aggregator composed only the rounds after the restart —
2.71 reported against 4.00 true. Here a hostile institution sends replies the
aggregator must drop, and the aggregator goes down and restarts, through the
real aggregator code (:func:`federation.run_federation`). The true ε is
computed independently in each test, straight from ``dp_accounting``: the
reported ε must never be below it. The aggregator also sends no noise-share
count the institutions could rely on, and says what ε does not cover.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from dp_accounting import dp_event, rdp
from flwr.app import Message, RecordDict

from crossfed.protocol import ARRAYS_KEY, CONFIG_KEY, ConfigurationError, ciphertext_record
from federation import (
    EPSILON_SCOPE,
    epsilon_against_collusion,
    run_federation,
    verify_audit_log,
)

Z = 1.1  # the run's noise multiplier
DELTA = 1e-5


def _true_epsilon(multipliers: list[float]) -> float:
    """ε of Gaussian mechanisms with these noise multipliers, by dp_accounting's RDP accountant."""
    accountant = rdp.RdpAccountant()
    for z in multipliers:
        accountant.compose(dp_event.GaussianDpEvent(z))
    return float(accountant.get_epsilon(DELTA))


def _dp(settings: Any, **changes: Any) -> Any:
    return dataclasses.replace(
        settings, dp_clip=1.0, dp_noise_multiplier=Z, dp_delta=DELTA, **changes
    )


def _garbage(message: Message, me: Any) -> Message | None:
    """Training replies that fail parsing; everything else answered honestly."""
    if message.metadata.message_type != "train":
        return me.honest(message)
    content = RecordDict({ARRAYS_KEY: ciphertext_record(b"\x00" * 125)})
    return Message(content=content, reply_to=message)


def _other_shapes(message: Message, me: Any) -> Message | None:
    if message.metadata.message_type != "train":
        return me.honest(message)
    return me.encrypted(message, [np.ones(7)])


def _garbage_in_round_one(message: Message, me: Any) -> Message | None:
    return _garbage(message, me) if me.round_of(message) == 1 else me.honest(message)


@pytest.mark.parametrize(
    "hostile",
    [_garbage, _other_shapes, "error"],
    ids=["garbage", "other-shapes", "error-reply"],
)
def test_invalid_replies_cannot_lower_the_reported_epsilon(inprocess: Any, hostile: Any) -> None:
    behaviour = inprocess.error_reply(1003, "crossfed:MALFORMED_INPUT")
    if hostile != "error":
        behaviour = hostile
    settings = _dp(inprocess.settings)

    outcome = run_federation(inprocess.grid({33: behaviour}), settings)

    # Only two noise shares, each sized for three institutions, entered every sum.
    true = _true_epsilon([Z * math.sqrt(2 / 3)] * settings.rounds)
    reported = inprocess.metrics()["epsilon"]
    assert reported == pytest.approx(true, rel=1e-9)
    # What the old accountant said, counting the dropped reply as noise: lower than true.
    assert _true_epsilon([Z] * settings.rounds) < 0.9 * true
    assert [m.institutions_summed for m in outcome.rounds] == [2, 2, 2]


def test_a_restart_cannot_lower_the_reported_epsilon(inprocess: Any) -> None:
    settings = _dp(inprocess.settings, rounds=4)
    # Round 1: one reply dropped; round 2: all three; round 3: the aggregator goes down.
    with pytest.raises(RuntimeError, match="went down"):
        run_federation(inprocess.grid({33: _garbage_in_round_one}, crash_at=3), settings)

    outcome = run_federation(inprocess.grid(), settings)  # restarted: resumes after round 2

    assert outcome.resumed_after == 2
    true = _true_epsilon([Z * math.sqrt(2 / 3), Z, Z, Z])
    reported = inprocess.metrics()["epsilon"]
    assert reported == pytest.approx(true, rel=1e-9)
    # Composing only the rounds after the restart, as before, says much less.
    assert _true_epsilon([Z, Z]) < 0.8 * true
    assert [r.round for r in verify_audit_log(inprocess.out / "audit.jsonl").records] == [
        1,
        2,
        3,
        4,
    ]


def test_rounds_the_audit_log_lost_count_as_if_only_the_quorum_replied(inprocess: Any) -> None:
    settings = _dp(inprocess.settings, rounds=3)
    with pytest.raises(RuntimeError, match="went down"):
        run_federation(inprocess.grid(crash_at=3), settings)
    (inprocess.out / "audit.jsonl").unlink()  # the checkpoint says 2 rounds, nothing says how

    run_federation(inprocess.grid(), settings)

    reported = inprocess.metrics()["epsilon"]
    assert reported >= _true_epsilon([Z] * 3)  # what really happened: all three replied
    quorum = settings.min_institutions / settings.institutions
    assert reported == pytest.approx(_true_epsilon([Z * math.sqrt(quorum)] * 2 + [Z]), rel=1e-9)


def test_epsilon_states_what_it_does_not_cover(inprocess: Any) -> None:
    run_federation(inprocess.grid(), _dp(inprocess.settings))

    metrics = inprocess.metrics()
    assert metrics["epsilon_scope"] == EPSILON_SCOPE
    assert str(metrics["epsilon_scope"]).startswith(
        "model updates; the statistics round is an exact sum released only to key holders"
    )


def test_the_aggregator_sends_no_noise_share_count(inprocess: Any) -> None:
    grid = inprocess.grid()
    run_federation(grid, _dp(inprocess.settings))

    assert grid.sent
    for message in grid.sent:
        config = message.content.config_records.get(CONFIG_KEY)
        assert config is None or "dp-shares" not in config
    with pytest.raises(ConfigurationError, match="institutions"):
        run_federation(inprocess.grid(), _dp(inprocess.settings, institutions=0))


@pytest.mark.parametrize(("multiplier", "shares", "rounds"), [(1.0, 3, 5), (1.0, 10, 5)])
def test_the_collusion_epsilon_is_reported_and_never_below_the_truth(
    multiplier: float, shares: int, rounds: int
) -> None:
    # The aggregator with one colluding institution decrypts another's single reply:
    # one noise share, multiplier z/sqrt(k), once per round. The headline ε does not
    # hold against that coalition; the second figure must, computed independently.
    colluding = epsilon_against_collusion(multiplier, shares, rounds, 1e-5)
    truth = _true_epsilon([multiplier / math.sqrt(shares)] * rounds)
    assert colluding == pytest.approx(truth, rel=1e-6)
    assert colluding > _true_epsilon([multiplier] * rounds) * 1.5
    assert "epsilon_against_collusion" in EPSILON_SCOPE
