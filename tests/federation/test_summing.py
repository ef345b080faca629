"""Summing checked replies, and naming an error reply, without letting a reply decide.

:func:`~federation.sum_compatible` turns every failure to sum into a drop with a
reason — the largest compatible group is summed, whoever came first — and a
contributor name claimed twice drops both claims. :func:`~federation.error_reason`
names an error reply by its code, never by its text.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Error, Message, RecordDict

import crypto
from crossfed.protocol import ErrorCode
from federation import error_reason, sum_compatible
from federation.replies import MAX_REASON_CHARS, bounded

SHAPES = ((3, 2), (2,))


@pytest.fixture(scope="module")
def secret() -> crypto.SecretContext:
    return crypto.generate_secret_context("lean")


def _update(
    secret: crypto.SecretContext, name: str, seed: int, shapes: tuple[tuple[int, ...], ...] = SHAPES
) -> tuple[crypto.EncryptedUpdate, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=s) for s in shapes]
    return crypto.encrypt_update(secret, arrays, 10, contributor=name, round_id=1), arrays


def test_a_hostile_first_reply_cannot_push_the_honest_ones_out(
    secret: crypto.SecretContext,
) -> None:
    hostile, _ = _update(secret, "evil", 0, shapes=((7,),))
    honest = {node: _update(secret, f"bank-{node}", node) for node in (2, 3)}

    outcome = sum_compatible(
        secret.public(), {1: hostile, **{n: u for n, (u, _) in honest.items()}}
    )

    assert outcome.summed == (2, 3)
    assert set(outcome.dropped) == {1} and "cannot be summed" in outcome.dropped[1]
    assert outcome.total is not None
    weights, total = crypto.decrypt_average(secret, outcome.total)
    assert total == pytest.approx(20, abs=1e-3)
    for got, a, b in zip(weights, honest[2][1], honest[3][1], strict=True):
        np.testing.assert_allclose(got, (a + b) / 2, atol=1e-4)


def test_a_contributor_name_claimed_twice_drops_both_claims(secret: crypto.SecretContext) -> None:
    victim, _ = _update(secret, "bank-1", 1)
    impostor, _ = _update(secret, "bank-1", 9)
    other, _ = _update(secret, "bank-2", 2)

    outcome = sum_compatible(secret.public(), {9: impostor, 1: victim, 2: other})

    assert outcome.summed == (2,)
    assert set(outcome.dropped) == {1, 9}
    assert all("claimed by 2 replies" in reason for reason in outcome.dropped.values())


def test_nothing_to_sum_is_an_outcome_not_an_error(secret: crypto.SecretContext) -> None:
    assert sum_compatible(secret.public(), {}).total is None
    only, _ = _update(secret, "bank-1", 1)
    outcome = sum_compatible(secret.public(), {4: only})
    assert outcome.summed == (4,) and outcome.total is not None and not outcome.dropped


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (int(ErrorCode.CONFIG_MISMATCH), "institution reported crossfed:CONFIG_MISMATCH"),
        (5, "flower error NODE_UNAVAILABLE"),
        (123456, "unrecognised error code 123456"),
        (10**30, "unrecognised error code"),
    ],
)
def test_an_error_reply_is_named_by_its_code_only(
    code: int, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):  # Flower stamps messages with a task
        monkeypatch.setattr(TaskIdentity, name, 1)
    to = Message(RecordDict(), dst_node_id=1, message_type="train")
    to.metadata.__dict__["_message_id"] = "m1"
    reply = Message(Error(code=code, reason="rows=81234 secret"), reply_to=to)

    assert error_reason(reply) == expected


def test_reason_text_is_bounded_and_printable() -> None:
    text = bounded("évil\x1b[2J\n" + "x" * 10_000)
    assert len(text) <= MAX_REASON_CHARS
    assert text.isascii() and text.isprintable()
    assert text.startswith("\\xe9vil\\x1b[2J\\n")
