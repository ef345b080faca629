"""Attack: crash the run, or decide the model's shapes, with one crafted reply.

Before, an aggregator without ``model-shapes`` took the first valid reply's
shapes, and replies of different shapes in round 1 raised an uncaught
``ShapeMismatchError`` that ended the run; the statistics round summed whatever
came. Here one institution sends other shapes (first in line), statistics of
another length, a sum-encoded reply, or an update under another institution's
contributor name — through the real aggregator code. The run must complete
with the honest replies, every hostile one dropped with its reason in the audit
log, and the global model of the declared shapes. Without ``model-shapes`` the
aggregator refuses to start at all.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, RecordDict

import crypto
from crossfed.protocol import ARRAYS_KEY, ConfigurationError, read_ciphertext
from federation import run_federation, verify_audit_log


def _other_shapes(message: Message, me: Any) -> Message | None:
    if message.metadata.message_type != "train":
        return me.honest(message)
    return me.encrypted(message, [np.ones((5, 2)), np.ones(9)])


def _other_statistics(message: Message, me: Any) -> Message | None:
    if message.metadata.message_type == "query" and me.round_of(message) == 0:
        return me.encrypted(message, [np.ones(40)], sums=True)
    return me.honest(message)


def _sum_encoded(message: Message, me: Any) -> Message | None:
    if message.metadata.message_type != "train":
        return me.honest(message)
    return me.encrypted(message, [np.ones(s) for s in ((4, 3), (3,))], sums=True)


def _impersonating(message: Message, me: Any) -> Message | None:
    """Every reply under node 11's contributor name (an impostor)."""
    me.name = "bank-11"
    return me.honest(message)


def _dropped(inprocess: Any, node: str) -> list[str]:
    records = verify_audit_log(inprocess.out / "audit.jsonl").records
    assert [r.round for r in records] == [1, 2, 3]
    assert all(r.aggregate_sha256 is not None for r in records)
    return [next(d.reason for d in r.dropped if d.node == node) for r in records]


def test_other_shapes_from_the_first_reply_cannot_crash_the_run(inprocess: Any) -> None:
    outcome = run_federation(inprocess.grid({11: _other_shapes}), inprocess.settings)

    assert [m.institutions_summed for m in outcome.rounds] == [2, 2, 2]
    reasons = _dropped(inprocess, "11")
    assert all(r.startswith("ShapeMismatchError") for r in reasons), reasons
    final = crypto.EncryptedUpdate.from_bytes(
        inprocess.secret, (inprocess.out / "global_model.bin").read_bytes()
    )
    assert final.shapes == inprocess.shapes
    assert (
        read_ciphertext(outcome.result.arrays) == (inprocess.out / "global_model.bin").read_bytes()
    )


def test_statistics_of_another_length_cannot_crash_the_run(inprocess: Any) -> None:
    outcome = run_federation(inprocess.grid({11: _other_statistics}), inprocess.settings)

    assert set(outcome.statistics_dropped) == {11}
    assert "cannot be summed" in outcome.statistics_dropped[11]
    assert [m.institutions_summed for m in outcome.rounds] == [3, 3, 3]


def test_a_sum_encoded_training_reply_is_dropped(inprocess: Any) -> None:
    outcome = run_federation(inprocess.grid({22: _sum_encoded}), inprocess.settings)

    assert [m.institutions_summed for m in outcome.rounds] == [2, 2, 2]
    assert all("encoded as 'sum'" in r for r in _dropped(inprocess, "22"))


def test_a_borrowed_contributor_name_drops_both_claims_and_never_crashes(inprocess: Any) -> None:
    settings = dataclasses.replace(inprocess.settings, min_institutions=1)

    outcome = run_federation(inprocess.grid({33: _impersonating}), settings)

    # Which came first varies (Flower samples in random order): neither claim may stand,
    # or the impostor's update could enter the sum under its victim's name.
    assert [m.institutions_summed for m in outcome.rounds] == [1, 1, 1]
    for node in ("11", "33"):
        assert all("claimed by 2 replies" in r for r in _dropped(inprocess, node))
    assert set(outcome.statistics_dropped) == {11, 33}
    records = verify_audit_log(inprocess.out / "audit.jsonl").records
    assert all(r.replied == ["22"] for r in records)


def test_without_model_shapes_the_aggregator_refuses_to_start(inprocess: Any) -> None:
    grid = inprocess.grid()
    settings = dataclasses.replace(inprocess.settings, model_shapes="")

    with pytest.raises(ConfigurationError, match="model-shapes"):
        run_federation(grid, settings)

    assert grid.sent == []  # refused before anything was sent or parsed


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones(3))
    return buffer.getvalue()


def _pickled() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("stype", "data"),
    [
        ("numpy.ndarray", b"not an array"),
        ("numpy.ndarray", b"\x93NUMPY\x01\x00" + b"\xff" * 20),
        ("numpy.ndarray", _pickled()),
        ("numpy.ndarray", _npz()),
        ("torch", b"\x00" * 16),
    ],
    ids=["garbage", "bad-header", "pickle", "npz", "other-stype"],
)
def test_array_bytes_that_are_no_array_cannot_crash_the_run(
    inprocess: Any, stype: str, data: bytes
) -> None:
    def hostile(message: Message, me: Any) -> Message | None:
        if message.metadata.message_type not in ("train", "query"):
            return me.honest(message)
        array = Array(dtype="uint8", shape=(len(data),), stype=stype, data=data)
        content = RecordDict({ARRAYS_KEY: ArrayRecord({"ciphertext": array})})
        return Message(content=content, reply_to=message)

    outcome = run_federation(inprocess.grid({22: hostile}), inprocess.settings)

    assert set(outcome.statistics_dropped) == {22}
    assert outcome.statistics_dropped[22].startswith("MalformedDataError")
    assert all(r.startswith("MalformedDataError") for r in _dropped(inprocess, "22"))
