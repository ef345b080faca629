"""Attack (red team 3): the aggregator and one colluding institution against the masked round.

Played through the real code on the fake grid of
``tests/federation/test_masked_wiring.py``: four institutions behind real
``error_mod``, ``admit`` and encryption mods, every message serialised and
parsed, the real roll call, masked statistics and ``MaskedAggregation``. The
colluder is node 44 (``partition-3``): it runs the honest code but reports
other statistics than its data, and keeps its own ledger elsewhere. The victim
is node 11 (``partition-0``, 120 training rows, 30 test rows).

* F1: a second run whose statistics the colluder shifted (N̂ doubled, every
  mean and variance unchanged) with the victim dropped: before, the honest
  institutions quantised round 1 from the seeded start again (the ledger was
  keyed by start *and* N̂), and the two opened sums gave the victim's update.
* F2: the colluder sets N̂ = t in each new run; before, the victim's training
  reply was an error exactly when its count exceeded 2t, outside the refusal
  path: a binary search on its private row count, one free probe per run.
* F3: evaluation sets of two rounds that differ by the victim (its evaluate
  reply dropped): the summed test sizes differ by its exact test-set size.
* A mask-ledger refusal crossed the wire as ``INTERNAL``; a quantisation error
  after training (a data-dependent NaN) left the run open: a free probe.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

import crypto
from clients.masked_round import MASK_LEDGER_KEY
from clients.refusals import run_closed
from crossfed.protocol import (
    ARRAYS_KEY,
    EVALUATION_METRICS,
    FRACTION_BITS,
    ErrorCode,
    FederationSettings,
    read_ciphertext,
)
from federation import QuorumNotReachedError
from federation.masked_strategy import MaskedAggregation
from simulations.scenario import write_agreement_keys
from tests.federation.test_masked_wiring import (
    NODES,
    ROWS,
    SHAPES,
    Institutions,
    _round,
    _start_federation,
)

VICTIM, HONEST, COLLUDER = 11, (22, 33), 44
TOTAL_ROWS = sum(ROWS.values())


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture
def federation(tmp_path: Path) -> tuple[FederationSettings, Path]:
    """A masked16 federation of four, its own keys per test (the ledgers pin per key)."""
    folder = tmp_path / "federation"
    folder.mkdir()
    secret = crypto.generate_secret_context("masked16")
    settings = FederationSettings(
        mode="encrypted",
        rounds=3,
        min_institutions=3,
        institutions=len(NODES),
        secret_context=str(secret.save(folder / "secret.ctx")),
        public_context=str(secret.public().save(folder / "public.ctx")),
        model_shapes=json.dumps([list(s) for s in SHAPES]),
        agreement_keys=str(write_agreement_keys(folder / "agreement", len(NODES))),
    )
    return settings, folder


class Coalition(Institutions):
    """The grid with a colluder: ``shift`` is added to node 44's statistics.

    ``poison`` makes a node's trained model non-finite (a data-dependent NaN).
    """

    def __init__(self, settings: FederationSettings, ledgers: Path, colluder_ledger: Path) -> None:
        super().__init__(settings, ledgers)
        self.contexts[COLLUDER].node_config[MASK_LEDGER_KEY] = str(colluder_ledger)
        self.shift = np.zeros(3)
        self.poison: set[int] = set()

    def handle(self, msg: Message, context: Context) -> Message:
        reply = super().handle(msg, context)
        node = context.node_id
        if msg.metadata.message_type == MessageType.QUERY and node == COLLUDER:
            values = self.statistics[node] + self.shift
            self.statistics[node] = values
            return Message(content=RecordDict({ARRAYS_KEY: ArrayRecord([values])}), reply_to=msg)
        if msg.metadata.message_type == MessageType.TRAIN and node in self.poison:
            trained = reply.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
            trained[0][0, 0] = np.nan
            reply.content[ARRAYS_KEY] = ArrayRecord(trained)
        return reply


def _run(
    federation: tuple[FederationSettings, Path],
    tmp_path: Path,
    session: str,
    shift: np.ndarray | None = None,
) -> tuple[Coalition, MaskedAggregation, ConfigRecord]:
    """A new run (fresh node state, a new session) on the honest institutions' ledgers."""
    settings, _ = federation
    folder = tmp_path / session
    folder.mkdir()
    grid = Coalition(settings, tmp_path / "ledgers", folder / "colluder-ledger")
    if shift is not None:
        grid.shift = shift
    _, strategy, config = _start_federation(
        federation, folder, session=session, ledgers=tmp_path / "ledgers", grid=grid
    )
    return grid, strategy, config


def _train_replies(
    grid: Coalition, strategy: MaskedAggregation, config: ConfigRecord, r: int, arrays: ArrayRecord
) -> dict[int, Message]:
    messages = list(strategy.configure_train(r, arrays, config, grid))  # type: ignore[arg-type]
    return {m.metadata.dst_node_id: grid.deliver(m) for m in messages}


def _code(reply: Message) -> int | None:
    return reply.error.code if reply.has_error() else None


def test_a_moved_row_count_does_not_buy_a_second_quantisation_of_the_seeded_start(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    """F1: run 2's statistics carry N̂ doubled; the victim is dropped; nothing is quantised."""
    grid, strategy, config = _run(federation, tmp_path, "run-1")
    _round(grid, strategy, config, 1, ArrayRecord())  # opened over all four
    totals = np.sum(list(grid.statistics.values()), axis=0)
    again, strategy, config = _run(federation, tmp_path, "run-2", shift=totals)
    again.lost = lambda reply: reply.metadata.src_node_id == VICTIM
    replies = _train_replies(again, strategy, config, 1, ArrayRecord())
    for node in HONEST:
        # Refused before training: the statistics sum is not the one this federation opened.
        assert _code(replies[node]) == ErrorCode.INTEGRITY_FAILED, node
        assert (node, 1) not in again.starts
    with pytest.raises(QuorumNotReachedError):
        _round(again, strategy, config, 1, ArrayRecord())


@pytest.mark.parametrize("first", [59, 300])
def test_the_training_reply_is_no_oracle_on_a_private_count(
    federation: tuple[FederationSettings, Path], tmp_path: Path, first: int
) -> None:
    """F2: N̂ = t per run; the victim's reply may depend on its count in the first run only.

    Before: an error exactly when 120 > 2t, in every run, the run left open.
    """
    first_victim = None
    for probe, t in enumerate((first, 40, 59, 60, 64, 300)):
        shift = np.array([t - TOTAL_ROWS, 0.0, 0.0])  # the colluder's (negative) row count
        grid, strategy, config = _run(federation, tmp_path, f"probe-{probe}", shift)
        replies = _train_replies(grid, strategy, config, 1, ArrayRecord())
        if probe == 0:
            # The one bit: N̂ below the victim's own rows is not a genuine sum; refused
            # before quantising, and settled (its run is closed).
            first_victim = _code(replies[VICTIM])
            refused = t < ROWS[VICTIM]
            assert first_victim == (ErrorCode.INTEGRITY_FAILED if refused else None)
            assert run_closed(grid.contexts[VICTIM], grid.settings, "probe-0") is refused
            continue
        # Every later run: the same refusal for 120, 80 and 60 rows, whatever t.
        codes = {_code(replies[node]) for node in (VICTIM, *HONEST)}
        assert len(codes) == 1 and None not in codes, (t, codes)
    assert first_victim is not None or first >= ROWS[VICTIM]


def test_evaluation_sets_that_differ_by_the_victim_are_not_both_opened(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    """F3: round 3's evaluation without the victim would open 45 beside 75: its test size."""
    settings, _ = federation
    secret = crypto.SecretContext.load(settings.secret_context)
    grid, strategy, config = _run(federation, tmp_path, "run-eval")
    arrays = ArrayRecord()
    sizes = []
    for r in (1, 2, 3):
        grid.lost = lambda reply: False
        arrays = _round(grid, strategy, config, r, arrays)
        if r == 3:  # the victim's evaluate reply "dropped": the survivors are asked to remask
            grid.lost = lambda reply: reply.metadata.src_node_id == VICTIM
        messages = list(strategy.configure_evaluate(r, arrays, config, grid))  # type: ignore[arg-type]
        metrics = strategy.aggregate_evaluate(r, grid.send_and_receive(messages))
        blob = strategy.last_evaluation
        if blob is None:
            assert metrics is not None and metrics["institutions"] == 0
            continue
        opened = crypto.decrypt_masked(
            secret,
            crypto.EncryptedUpdate.from_bytes(secret, blob),
            self_seeds=strategy.evaluation_seeds,
            purpose="evaluate",
        )
        sums = crypto.from_fixed_point(
            crypto.integer_sum(opened, len(EVALUATION_METRICS) + 1), FRACTION_BITS
        )
        sizes.append(float(sums[-1]))
    # Rounds 1 and 2 opened over the one set the institutions reveal evaluations for.
    assert sizes == [sum(ROWS.values()) // 4] * 2


def test_a_ledger_refusal_crosses_the_wire_as_its_own_code(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    """A second run with unchanged statistics: the ledger refuses round 1 (not INTERNAL)."""
    grid, strategy, config = _run(federation, tmp_path, "run-1")
    _round(grid, strategy, config, 1, ArrayRecord())
    again, strategy, config = _run(federation, tmp_path, "run-2")
    replies = _train_replies(again, strategy, config, 1, ArrayRecord())
    for node in (VICTIM, *HONEST):
        assert _code(replies[node]) == ErrorCode.MASK_REUSE_REFUSED, node


def test_a_quantisation_error_after_training_closes_the_run(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    """A data-dependent NaN in the trained model: refused, and settled, not a free probe."""
    grid, strategy, config = _run(federation, tmp_path, "run-nan")
    grid.poison = {VICTIM}
    replies = _train_replies(grid, strategy, config, 1, ArrayRecord())
    assert _code(replies[VICTIM]) == ErrorCode.MALFORMED_INPUT
    assert run_closed(grid.contexts[VICTIM], grid.settings, "run-nan")
    assert not any(run_closed(grid.contexts[n], grid.settings, "run-nan") for n in HONEST)
    assert read_ciphertext(replies[HONEST[0]].content.array_records[ARRAYS_KEY])
