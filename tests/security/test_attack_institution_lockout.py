"""Attack: turn the refusal budget against the institutions it protects (red team 2, R2-R6).

The budget (:mod:`clients.refusals`) stops an institution decrypting after a
few refused aggregates, since each refusal can be a bit about the shared key.
Before, *every* refusal of a message that carried ciphertexts spent it, and the
run's closure lived in the SuperNode's memory only:

* R2: one malicious institution, no aggregator needed, sent an update far
  outside ``max-update-norm`` (or an inflated weight); the sum verified, every
  honest institution's movement bound refused it and spent one unit: three
  runs locked the whole federation out until every operator reset by hand;
* R3: an aggregator that dropped one contributor from a header (or a stale
  binding after a missed round) spent the budget without any ciphertext work;
* R5: an aggregator that made the node rejoin (a fresh SuperNode, empty node
  state) reopened a run in which an aggregate had been refused;
* R6: a malformed message was answered ``MALFORMED_INPUT`` in an open run and
  ``INTEGRITY_FAILED`` in a closed one: a free probe of the closure.

Each test plays the attacker against the real ClientApp (real mods, real
CKKS, real count files) and asserts it does not get what it wanted; where it
costs little, a control shows what the same move did before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal as ts
from flwr.app import ArrayRecord, Message

import crypto
from clients.refusals import REFUSAL_BUDGET, REFUSAL_FILE_KEY, RefusalBudget
from crossfed.protocol import CONFIG_KEY, STATS_CIPHERTEXT_KEY, ErrorCode, reason_of

pytestmark = pytest.mark.usefixtures("flower_task")

REFUSED = (int(ErrorCode.INTEGRITY_FAILED), reason_of(ErrorCode.INTEGRITY_FAILED))
MALFORMED = (int(ErrorCode.MALFORMED_INPUT), reason_of(ErrorCode.MALFORMED_INPUT))
NORM_BOUND = 1.0
WEIGHT_CAP = 400  # above each honest bank's ~250 training rows
MALICIOUS = "partition-2"


def _answer(reply: Message) -> tuple[int, str] | str:
    """What the aggregator learns from a reply: the error, or that it was accepted."""
    return (reply.error.code, reply.error.reason or "") if reply.has_error() else "accepted"


def _count_in(play: Any, folder: Path) -> list[RefusalBudget]:
    """Give each of ``play``'s banks a refusal file in ``folder``, as a deployment does."""
    budgets = []
    for index, bank in enumerate(play.banks):
        budget = RefusalBudget(folder / f"bank-{index}" / "refusals.json")
        bank.context.node_config[REFUSAL_FILE_KEY] = str(budget.path)
        budgets.append(budget)
    return budgets


def _tampered(public: crypto.PublicContext, blob: bytes, delta: float = -1.0) -> bytes:
    """A genuine sum with a plaintext offset in slot 0: a keyless aggregator's query."""
    update = crypto.EncryptedUpdate.from_bytes(public, blob)
    plain = [0.0] * update.vectors[0].size()
    plain[0] = delta
    vectors = (update.vectors[0] + plain, *update.vectors[1:])
    return dataclasses.replace(update, vectors=vectors).to_bytes()


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every secret-key decryption of a ciphertext, whoever calls it."""
    calls: list[int] = []
    real = ts.CKKSVector.decrypt

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ts.CKKSVector, "decrypt", counting)
    yield calls


def _out_of_bounds_sum(play: Any, honest: list[Any], value: float, weight: int) -> bytes:
    """Round 1's genuine updates of the honest banks plus the malicious institution's.

    The malicious institution holds the federation's key like every institution, so
    its update verifies like any other: ``value`` in every parameter, at ``weight``.
    """
    replies = play.collect(play.train_message(1), honest)
    updates = [play.update(reply) for reply in replies]
    shapes = play.federation.base.shapes()
    bad = crypto.encrypt_update(
        play.federation.secret,
        [np.full(shape, value) for shape in shapes],
        weight,
        contributor=MALICIOUS,
        round_id=1,
        session=play.session,
        binding=b"",  # round 1: every contributor starts from the seeded model
    )
    return crypto.aggregate(play.federation.public, [*updates, bad]).to_bytes()


def test_one_institution_cannot_lock_the_honest_institutions_out(
    institutions: Any,
    aggregator_for: Callable[..., Any],
    decrypted: list[int],
    tmp_path: Path,
) -> None:
    """R2: more runs than the budget of out-of-bounds updates; the honest banks still decrypt."""
    settings = institutions.settings(max_update_norm=NORM_BOUND, max_weight=WEIGHT_CAP)
    for run in range(REFUSAL_BUDGET + 1):
        play = aggregator_for(f"lockout-{run}")
        play.banks = institutions.banks(settings)
        budgets = _count_in(play, tmp_path)
        play.run_statistics()
        honest = play.banks[:2]
        # Far outside the movement bound (50 in every parameter; an honest round moves
        # the model well under 1) at the cap, or an inflated weight (100 x the cap).
        value, weight = (50.0, WEIGHT_CAP) if run % 2 == 0 else (0.0, 100 * WEIGHT_CAP)
        attack = play.evaluate_message(1, _out_of_bounds_sum(play, honest, value, weight))
        assert [_answer(reply) for reply in play.collect(attack, honest)] == [REFUSED] * 2
        # The run is closed all the same: the next message decrypts nothing.
        decrypted.clear()
        again = play.collect(play.train_message(2, play.stats), honest)
        assert [_answer(reply) for reply in again] == [REFUSED] * 2
        assert decrypted == []
        assert [budget.refused() for budget in budgets[:2]] == [0, 0]

    # After more such runs than the budget allows, an honest run is decrypted and trained.
    play = aggregator_for("honest-after-the-lockout")
    _count_in(play, tmp_path)
    replies = play.collect(play.train_message(1))
    assert [_answer(reply) for reply in replies] == ["accepted"] * len(replies)

    # Control: a refusal whose outcome depends on the key (a keyless edit the check
    # value catches) still spends the budget, as before.
    forged = play.train_message(2, _tampered(play.federation.public, play.sum_replies(replies)))
    assert [_answer(reply) for reply in play.collect(forged)] == [REFUSED] * len(play.banks)
    counts = [RefusalBudget(tmp_path / f"bank-{i}" / "refusals.json").refused() for i in (0, 1)]
    assert counts == [1, 1]


def test_a_header_edit_neither_closes_the_run_nor_spends_the_budget(
    aggregator_for: Callable[..., Any], tmp_path: Path
) -> None:
    """R3: a sum with a contributor dropped is refused from its header, for free, every time."""
    play = aggregator_for("header-edit")
    budgets = _count_in(play, tmp_path)
    replies = play.collect(play.train_message(1))
    partial = play.sum_replies(replies[:2])  # genuine, but fewer than the kit's quorum
    for _ in range(REFUSAL_BUDGET + 2):
        answers = [_answer(reply) for reply in play.collect(play.evaluate_message(1, partial))]
        assert answers == [REFUSED] * len(play.banks)  # an IntegrityError on the wire
    assert [budget.refused() for budget in budgets] == [0] * len(budgets)
    # The run is still open: the genuine sum of the round is accepted.
    genuine = play.evaluate_message(1, play.sum_replies(replies))
    assert [_answer(reply) for reply in play.collect(genuine)] == ["accepted"] * len(play.banks)


def test_a_node_made_to_rejoin_still_refuses_the_closed_run(
    institutions: Any,
    aggregator_for: Callable[..., Any],
    decrypted: list[int],
    tmp_path: Path,
) -> None:
    """R5: the aggregator deletes the node; the fresh SuperNode must not reopen the run."""
    play = aggregator_for("rejoin")
    _count_in(play, tmp_path)
    play.run_round(1)
    forged = play.evaluate_message(1, _tampered(play.federation.public, play.models[1]))
    assert [_answer(reply) for reply in play.collect(forged)] == [REFUSED] * len(play.banks)

    # The same institutions after a rejoin: fresh node state, the same kit (the same file).
    play.banks = institutions.banks()
    _count_in(play, tmp_path)
    decrypted.clear()
    replies = play.collect(play.train_message(2))
    assert [_answer(reply) for reply in replies] == [REFUSED] * len(play.banks)
    assert decrypted == []

    # Control: with the closure in node state alone (as before), the rejoined node reopens it.
    play.banks = institutions.banks()
    replies = play.collect(play.train_message(2))
    assert [_answer(reply) for reply in replies] == ["accepted"] * len(play.banks)


def test_a_malformed_probe_answers_the_same_in_a_closed_run(
    aggregator_for: Callable[..., Any], tmp_path: Path
) -> None:
    """R6: the answer to a message malformed before any decryption tells nothing of the closure."""
    play = aggregator_for("probe")
    budgets = _count_in(play, tmp_path)
    play.run_round(1)

    def probe(play: Any, model: bytes) -> list[tuple[int, str] | str]:
        """An evaluation (it changes no memory of the run) with an array record of no protocol."""
        message = play.evaluate_message(1, model)
        message.content["junk"] = ArrayRecord([np.zeros(1)])
        return [_answer(reply) for reply in play.collect(message)]

    assert probe(play, play.models[1]) == [MALFORMED] * len(play.banks)  # open run
    forged = play.evaluate_message(1, _tampered(play.federation.public, play.models[1]))
    assert [_answer(reply) for reply in play.collect(forged)] == [REFUSED] * len(play.banks)
    assert probe(play, play.models[1]) == [MALFORMED] * len(play.banks)  # closed: the same

    # The budget spent (a new run): the same answer again, and a plain message is refused.
    for budget in budgets:
        for index in range(REFUSAL_BUDGET):
            budget.record(f"earlier-{index}")
    spent = aggregator_for("probe-spent")
    _count_in(spent, tmp_path)
    assert probe(spent, spent.stats) == [MALFORMED] * len(spent.banks)
    plain = spent.train_message(1)
    assert [_answer(reply) for reply in spent.collect(plain)] == [REFUSED] * len(spent.banks)


def test_a_forged_statistics_sum_still_spends_the_budget(
    aggregator_for: Callable[..., Any], tmp_path: Path
) -> None:
    """The other side of R2/R3: a refusal the check value makes is counted, once per run."""
    play = aggregator_for("forged-stats")
    budgets = _count_in(play, tmp_path)
    message = play.train_message(1)
    message.content.config_records[CONFIG_KEY][STATS_CIPHERTEXT_KEY] = _tampered(
        play.federation.public, play.stats
    )
    assert [_answer(reply) for reply in play.collect(message)] == [REFUSED] * len(play.banks)
    assert [budget.refused() for budget in budgets] == [1] * len(budgets)
