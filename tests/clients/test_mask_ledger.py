"""The mask ledger: one quantisation and one revealed set per start and purpose, on disk.

Unit behaviour (reopening from disk, 0600, failing closed), then F3 replayed
through the real masked round: an aggregator that starts a second run from the
same start model, to open a sum without the victim and subtract it from the
first, gets neither a second quantisation nor the seeds of a second set.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import crypto
from clients.errors import MaskReuseRefusedError
from clients.mask_ledger import LEDGER_FILE, MaskLedger

START = hashlib.sha256(b"global model of round 4").digest()
OTHER_START = hashlib.sha256(b"global model of round 5").digest()
NAMES = ("bank-a", "bank-b", "bank-c", "bank-d")
VICTIM = "bank-d"


def test_a_second_quantisation_from_one_start_and_purpose_is_refused_across_reopening(
    tmp_path: Path,
) -> None:
    ledger = MaskLedger(tmp_path / "ledger")
    ledger.claim_quantisation(START, "train")
    with pytest.raises(MaskReuseRefusedError, match="quantise again"):
        ledger.claim_quantisation(START, "train")
    # Another process, another run: the same folder remembers.
    with pytest.raises(MaskReuseRefusedError):
        MaskLedger(tmp_path / "ledger").claim_quantisation(START, "train")
    # Other purposes and other starts are independent.
    ledger.claim_quantisation(START, "evaluate")
    ledger.claim_quantisation(OTHER_START, "train")
    with pytest.raises(MaskReuseRefusedError):
        MaskLedger(tmp_path / "ledger").claim_quantisation(OTHER_START, "train")


def test_the_same_exact_integers_may_be_quantised_again_other_integers_not(
    tmp_path: Path,
) -> None:
    ledger = MaskLedger(tmp_path)
    stats = hashlib.sha256(b"[120, 4410, 99120]").digest()
    ledger.claim_quantisation(START, "stats", values_digest=stats)
    MaskLedger(tmp_path).claim_quantisation(START, "stats", values_digest=stats)
    with pytest.raises(MaskReuseRefusedError):
        ledger.claim_quantisation(START, "stats", values_digest=hashlib.sha256(b"x").digest())
    with pytest.raises(MaskReuseRefusedError):
        ledger.claim_quantisation(START, "stats")
    # A stochastic quantisation (no digest) is never repeatable.
    ledger.claim_quantisation(START, "train")
    with pytest.raises(MaskReuseRefusedError):
        ledger.claim_quantisation(START, "train", values_digest=stats)


def test_one_revealed_set_per_start_and_purpose_the_same_set_again_allowed(
    tmp_path: Path,
) -> None:
    ledger = MaskLedger(tmp_path)
    full, without = crypto.set_digest(NAMES), crypto.set_digest(NAMES[:3])
    with pytest.raises(MaskReuseRefusedError, match="no 'train' update"):
        ledger.claim_reveal(START, "train", full)
    ledger.claim_quantisation(START, "train")
    ledger.claim_reveal(START, "train", full)
    ledger.claim_reveal(START, "train", full)
    reopened = MaskLedger(tmp_path)
    reopened.claim_reveal(START, "train", full)
    with pytest.raises(MaskReuseRefusedError, match="another contributor set"):
        reopened.claim_reveal(START, "train", without)
    ledger.claim_quantisation(START, "evaluate")
    ledger.claim_reveal(START, "evaluate", without)


def test_a_pin_keeps_its_first_value_across_reopening(tmp_path: Path) -> None:
    """Red team 3: the first opened statistics sum (its N̂) and evaluation set, per start."""
    first, other = hashlib.sha256(b"N = 300").digest(), hashlib.sha256(b"N = 600").digest()
    ledger = MaskLedger(tmp_path / "ledger")
    assert ledger.pin("statistics-sum", START, first)
    assert ledger.pin("statistics-sum", START, first)  # the same sum again: every message
    assert not MaskLedger(tmp_path / "ledger").pin("statistics-sum", START, other)
    # Other names and starts are apart; a pin is no quantisation of its start.
    assert ledger.pin("evaluation-set", START, other)
    assert ledger.pin("statistics-sum", OTHER_START, other)
    ledger.claim_quantisation(START, "stats")
    with pytest.raises(ValueError, match="pin"):
        ledger.pin("train", START, first)
    with pytest.raises(ValueError, match="digest"):
        ledger.pin("statistics-sum", START, b"short")


def test_the_ledger_is_one_0600_json_file(tmp_path: Path) -> None:
    ledger = MaskLedger(tmp_path / "state")
    ledger.claim_quantisation(START, "train")
    assert ledger.path == tmp_path / "state" / LEDGER_FILE
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o600
    data = json.loads(ledger.path.read_bytes())
    assert data["format"] == "crossfed-mask-ledger/v1"
    assert list(data["entries"].values()) == [{"quantised": "", "revealed": ""}]


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"format": "crossfed-mask-ledger/v0", "entries": {}}',
        b'{"format": "crossfed-mask-ledger/v1", "entries": {"k": {"quantised": 1}}}',
        b"",
    ],
)
def test_a_damaged_ledger_refuses_every_claim(tmp_path: Path, content: bytes) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(content)
    ledger = MaskLedger(tmp_path)
    with pytest.raises(MaskReuseRefusedError, match="malformed"):
        ledger.claim_quantisation(START, "train")
    with pytest.raises(MaskReuseRefusedError, match="malformed"):
        ledger.claim_reveal(START, "train", crypto.set_digest(NAMES))


def test_a_ledger_that_cannot_be_written_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crypto, "write_atomically", fail)
    ledger = MaskLedger(tmp_path)
    with pytest.raises(MaskReuseRefusedError, match="cannot be written"):
        ledger.claim_quantisation(START, "train")
    monkeypatch.undo()
    ledger.claim_quantisation(START, "train")  # nothing was recorded before


def test_claims_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    ledger = MaskLedger(tmp_path)
    with pytest.raises(ValueError):
        ledger.claim_quantisation(START, "training")
    with pytest.raises(ValueError):
        ledger.claim_quantisation(bytes(65), "train")
    with pytest.raises(ValueError):
        ledger.claim_quantisation(START, "stats", values_digest=b"short")
    ledger.claim_quantisation(START, "train")
    with pytest.raises(ValueError):
        ledger.claim_reveal(START, "train", b"\x00" * 31)


def _institution(
    context: crypto.SecretContext,
    keys: dict[str, crypto.AgreementKey],
    name: str,
    update: crypto.QuantisedUpdate,
    session: str,
) -> crypto.MaskedRound:
    return crypto.MaskedRound(
        context,
        keys[name],
        name,
        {peer: key.public_bytes() for peer, key in keys.items() if peer != name},
        update,
        session=session,
        round_id=0,
        binding=START,
        purpose="stats",
    )


def test_a_second_run_from_one_start_cannot_open_a_sum_without_the_victim(
    tmp_path: Path,
) -> None:
    """F3 on the statistics round: run 1 opens the sum of all four; run 2, from the same
    start, asks the three others for a sum without the victim. Their integers are the
    same (exact statistics), so they may mask them again, but no seed of the second set
    is revealed: the second sum never opens, and nothing is subtracted."""
    context = crypto.generate_secret_context("masked16")
    keys = {name: crypto.AgreementKey.generate() for name in NAMES}
    ledgers = {name: MaskLedger(tmp_path / name) for name in NAMES}
    stats = {name: [100 + i, 5_000 * (i + 1), -(i**7)] for i, name in enumerate(NAMES)}
    updates = {name: crypto.integer_update(context, values) for name, values in stats.items()}
    digest = {
        name: hashlib.sha256(json.dumps(values).encode()).digest() for name, values in stats.items()
    }

    def play(session: str, members: tuple[str, ...]) -> list[int] | None:
        """One statistics round; the opened sum, or None if some member withheld its seed."""
        rounds = {}
        for name in members:
            ledgers[name].claim_quantisation(START, "stats", values_digest=digest[name])
            rounds[name] = _institution(context, keys, name, updates[name], session)
        replies = [rounds[name].encrypt(members) for name in members]
        seeds = {}
        for name in members:
            try:
                ledgers[name].claim_reveal(START, "stats", crypto.set_digest(members))
            except MaskReuseRefusedError:
                continue
            seeds[name] = rounds[name].reveal(members)
        summed = crypto.aggregate(context.public(), replies)
        if len(seeds) < len(members):
            return None
        opened = crypto.decrypt_masked(context, summed, self_seeds=seeds, purpose="stats")
        return crypto.integer_sum(opened, 3)

    assert play("run-1", NAMES) == [sum(col) for col in zip(*stats.values(), strict=True)]
    others = tuple(name for name in NAMES if name != VICTIM)
    assert play("run-2", others) is None  # every honest institution refused the second set
    for name in others:
        with pytest.raises(MaskReuseRefusedError):
            ledgers[name].claim_reveal(START, "stats", crypto.set_digest(others))
    # Training updates are rounded stochastically: not even a second quantisation.
    ledgers[VICTIM].claim_quantisation(START, "train")
    with pytest.raises(MaskReuseRefusedError):
        MaskLedger(tmp_path / VICTIM).claim_quantisation(START, "train")
    # Why the same integers may be masked again: integer_update is deterministic.
    again = crypto.integer_update(context, stats[VICTIM])
    np.testing.assert_array_equal(again.values, updates[VICTIM].values)
