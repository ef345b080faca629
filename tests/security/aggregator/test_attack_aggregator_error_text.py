"""Attack: smuggle free text into the aggregator's audit log through an error reply.

Before, the aggregator wrote ``institution reported an error: <reason>`` into the
audit log (and its log) with whatever text the reply carried — an exception's
message, which inside an institution could hold decrypted values, or text a
hostile institution chose (control characters, megabytes). Errors now cross the
wire as fixed codes; the aggregator records the code's name only. Here one
institution answers every message with an error whose text carries a "secret"
and terminal escapes, under a crossfed code, a Flower code and an unknown code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from crossfed.protocol import ErrorCode
from federation import run_federation, verify_audit_log

SECRET = "decrypted slot 0.4711 total rows 81234"
TEXT = f"{SECRET}\x1b[2J\n" + "x" * 100_000


@pytest.mark.parametrize(
    ("code", "recorded"),
    [
        (int(ErrorCode.INTEGRITY_FAILED), "institution reported crossfed:INTEGRITY_FAILED"),
        (2, "flower error CLIENT_APP_RAISED_EXCEPTION"),
        (77, "unrecognised error code 77"),
    ],
)
def test_an_error_reply_is_recorded_by_its_code_name_only(
    inprocess: Any, code: int, recorded: str
) -> None:
    outcome = run_federation(
        inprocess.grid({33: inprocess.error_reply(code, TEXT)}), inprocess.settings
    )

    assert outcome.statistics_dropped == {33: recorded}
    for log in ("audit.jsonl", "evaluation-audit.jsonl"):
        records = verify_audit_log(inprocess.out / log).records
        assert len(records) == 3
        for record in records:
            assert [(d.node, d.reason) for d in record.dropped] == [("33", recorded)]
    for written in inprocess.out.iterdir():
        if written.suffix in (".jsonl", ".json"):
            text = written.read_text()
            assert "81234" not in text and "\x1b" not in text and "xxxx" not in text


def test_a_hostile_reason_cannot_make_the_aggregator_read_it_as_a_code(inprocess: Any) -> None:
    # The text claims a crossfed code; the code says something else: the code wins.
    lying = inprocess.error_reply(int(ErrorCode.KEY_REFUSED), "crossfed:INTEGRITY_FAILED " + SECRET)
    settings = dataclasses.replace(inprocess.settings, rounds=1)

    outcome = run_federation(inprocess.grid({11: lying}), settings)

    assert outcome.statistics_dropped == {11: "institution reported crossfed:KEY_REFUSED"}
