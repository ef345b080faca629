"""Attack: recover the shared CKKS key from whether institutions accept aggregates.

Before (red team F5): a malicious aggregator byte-edits a genuine encrypted sum
(``c1 += λ`` plus a plaintext offset) and sends it as the round's aggregate.
The refusal is a fixed code, but *whether* the institution refuses depends on
the decryption, hence on the secret key; the institution refused and carried
on, so every later message of the run, and every later run, was one more
query. A binary search of about 37,000 such queries read the key.

Here the test plays that aggregator against the real ClientApp (real Flower
messages, real mods) with a keyless edit of a genuine sum, and asserts what it
gets: one refusal, then nothing more decrypted in that run — a genuine
aggregate of the same run is refused before any decryption — and, across runs,
nothing decrypted at all once :data:`clients.refusals.REFUSAL_BUDGET` refusals
are spent, until the operator resets the count. Every one of these refusals is
the same fixed code and text on the wire as the first.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message

import crypto
from clients.errors import TrainingDivergedError
from clients.local_log import LOGGER_NAME
from clients.refusals import REFUSAL_BUDGET, REFUSAL_FILE_KEY, RefusalBudget
from crossfed.protocol import CONFIG_KEY, STATS_CIPHERTEXT_KEY, ErrorCode, reason_of

pytestmark = pytest.mark.usefixtures("flower_task")

REFUSALS_FILE = "refusals.json"  # any path: the node config names it
REFUSED = (int(ErrorCode.INTEGRITY_FAILED), reason_of(ErrorCode.INTEGRITY_FAILED))


def _answer(reply: Message) -> tuple[int, str] | str:
    """What the aggregator learns from a reply: the error, or that it was accepted."""
    if not reply.has_error():
        return "accepted"
    assert not reply.has_content()
    return (reply.error.code, reply.error.reason or "")


def _tampered(public: crypto.PublicContext, blob: bytes, delta: float = 0.375) -> bytes:
    """A genuine sum with a plaintext offset in slot 0: what a keyless aggregator can do."""
    update = crypto.EncryptedUpdate.from_bytes(public, blob)
    plain = [0.0] * update.vectors[0].size()
    plain[0] = delta
    vectors = (update.vectors[0] + plain, *update.vectors[1:])
    return dataclasses.replace(update, vectors=vectors).to_bytes()


@pytest.fixture
def decryptions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every call of the secret-key decryptions the institution side makes, by name."""
    calls: list[str] = []
    for name in ("decrypt_average", "decrypt_sums"):
        real = getattr(crypto, name)

        def record(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(crypto, name, record)
    yield calls


def test_after_one_refused_aggregate_nothing_more_of_the_run_is_decrypted(
    played_aggregator: Any, decryptions: list[str]
) -> None:
    played_aggregator.run_round(1)
    public = played_aggregator.federation.public
    forged = _tampered(public, played_aggregator.models[1])
    first = played_aggregator.collect(played_aggregator.evaluate_message(1, forged))
    assert [_answer(reply) for reply in first] == [REFUSED] * len(first)

    decryptions.clear()
    # The oracle's next queries, and the genuine messages of the same run: the honest
    # round-1 model, round 2's training, the final message. All refused, none decrypted.
    later = [
        played_aggregator.evaluate_message(1),
        played_aggregator.evaluate_message(1, _tampered(public, played_aggregator.models[1], -1.0)),
        played_aggregator.train_message(2),
        played_aggregator.final_message(played_aggregator.models[1]),
    ]
    for message in later:
        replies = played_aggregator.collect(message)
        assert [_answer(reply) for reply in replies] == [REFUSED] * len(replies)
    assert decryptions == []
    # The genuine model was acceptable: a bank of another run that saw no forgery takes it.
    fresh = played_aggregator.federation.banks()[0]
    fresh.send(played_aggregator.stats_query())
    assert _answer(fresh.send(played_aggregator.train_message(2))) == "accepted"
    assert decryptions


def test_any_failure_after_decrypting_closes_the_run(
    played_aggregator: Any, decryptions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only a refused check value: a failure of the work done on a decrypted model
    (here training that diverges) may depend on the key, so it also closes the run."""
    played_aggregator.run_round(1)

    def diverge(*_: object, **__: object) -> None:
        raise TrainingDivergedError("the loss became NaN")

    monkeypatch.setattr("clients.client_app.train_local", diverge)
    failed = played_aggregator.collect(played_aggregator.train_message(2))
    assert all(reply.has_error() for reply in failed)
    decryptions.clear()
    # The run's next message that carries ciphertexts (the statistics sum, a model).
    later = played_aggregator.evaluate_message(2, played_aggregator.models[1])
    replies = played_aggregator.collect(later)
    assert [_answer(reply) for reply in replies] == [REFUSED] * len(replies)
    assert decryptions == []


def _bank_with_budget(aggregator_for: Callable[..., Any], session: str, budget: Path) -> Any:
    """A new Flower run (fresh node state) whose banks count refusals in ``budget``/bank-i."""
    play = aggregator_for(session)
    for index, bank in enumerate(play.banks):
        bank.context.node_config[REFUSAL_FILE_KEY] = str(budget / f"bank-{index}" / REFUSALS_FILE)
    return play


def _forge_statistics(play: Any) -> list[tuple[int, str] | str]:
    """Round 1's training message with a tampered statistics sum: one oracle query."""
    message = play.train_message(1)
    forged = _tampered(play.federation.public, play.stats, delta=-1.0)
    message.content.config_records[CONFIG_KEY][STATS_CIPHERTEXT_KEY] = forged
    return [_answer(reply) for reply in play.collect(message)]


def test_the_refusal_budget_spans_runs_until_the_operator_resets_it(
    aggregator_for: Callable[..., Any],
    decryptions: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for run in range(REFUSAL_BUDGET):
        play = _bank_with_budget(aggregator_for, f"oracle-run-{run}", tmp_path)
        assert _forge_statistics(play) == [REFUSED] * len(play.banks)
    files = sorted(tmp_path.glob(f"bank-*/{REFUSALS_FILE}"))
    assert len(files) == len(play.banks)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert RefusalBudget(path).refused() == REFUSAL_BUDGET

    # A new run, an honest aggregator: nothing is decrypted any more, and the answer is
    # the same fixed code as a refused aggregate's.
    decryptions.clear()
    caplog.set_level(logging.ERROR, logger=LOGGER_NAME)
    spent = _bank_with_budget(aggregator_for, "honest-run", tmp_path)
    replies = spent.collect(spent.train_message(1))
    assert [_answer(reply) for reply in replies] == [REFUSED] * len(replies)
    assert decryptions == []
    assert "refusal budget" in caplog.text and "reset" in caplog.text

    # The operator reviewed institution.log and reset the count: decryption resumes.
    for path in files:
        RefusalBudget(path).reset()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reset = _bank_with_budget(aggregator_for, "after-review", tmp_path)
    replies = reset.collect(reset.train_message(1))
    assert [_answer(reply) for reply in replies] == ["accepted"] * len(replies)
    assert "decrypt_sums" in decryptions


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"format": "crossfed-refusals/v1", "refused": -1}', b"[]"]
)
def test_a_damaged_refusal_count_refuses_everything(
    aggregator_for: Callable[..., Any],
    decryptions: list[str],
    tmp_path: Path,
    content: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for index in range(3):
        target = tmp_path / f"bank-{index}" / REFUSALS_FILE
        target.parent.mkdir()
        target.write_bytes(content)
    caplog.set_level(logging.ERROR, logger=LOGGER_NAME)
    play = _bank_with_budget(aggregator_for, "damaged", tmp_path)
    decryptions.clear()
    replies = play.collect(play.train_message(1))
    assert [_answer(reply) for reply in replies] == [REFUSED] * len(replies)
    assert decryptions == []
    assert "treated as spent" in caplog.text


def test_every_refusal_is_the_same_answer_on_the_wire(
    aggregator_for: Callable[..., Any], tmp_path: Path
) -> None:
    """Tampered, run closed, budget spent, count damaged: one code, one text, no content."""
    answers: set[tuple[int, str] | str] = set()
    replies: list[Message] = []
    for run in range(REFUSAL_BUDGET):
        play = _bank_with_budget(aggregator_for, f"wire-{run}", tmp_path / "spent")
        message = play.train_message(1)
        message.content.config_records[CONFIG_KEY][STATS_CIPHERTEXT_KEY] = _tampered(
            play.federation.public, play.stats, delta=-1.0
        )
        replies += play.collect(message)  # a tampered aggregate
        replies += play.collect(play.train_message(2, play.stats))  # the run is closed
    spent = _bank_with_budget(aggregator_for, "wire-spent", tmp_path / "spent")
    replies += spent.collect(spent.train_message(1))  # the budget is spent
    damaged = tmp_path / "damaged" / "bank-0" / REFUSALS_FILE
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x00garbage")
    broken = _bank_with_budget(aggregator_for, "wire-damaged", tmp_path / "damaged")
    replies.append(broken.banks[0].send(broken.train_message(1)))  # the count is damaged
    for reply in replies:
        assert reply.has_error() and not reply.has_content()
        answers.add(_answer(reply))
    assert answers == {REFUSED}
