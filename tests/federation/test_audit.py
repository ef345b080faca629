"""Tests for federation.audit: the hash-chained audit log, and ``crossfed audit verify``."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

import federation
from crossfed.cli.audit import app as audit_app
from federation import (
    AuditLog,
    AuditLogError,
    AuditRecord,
    AuditTamperedError,
    DroppedNode,
    FederationError,
    VerifyReport,
    genesis_hash,
    verify_audit_log,
)
from federation.audit import audit_head
from federation.deploy import rounds_applied


def _record(rng: random.Random, round_: int, run_id: str = "run-a") -> AuditRecord:
    """A round with random institutions, hashes, sizes and timings."""
    nodes = [f"bank-{rng.randrange(10**6)}" for _ in range(rng.randint(2, 6))]
    sampled = list(dict.fromkeys(nodes))
    replied = sampled[: rng.randint(1, len(sampled))]
    late = [n for n in sampled if n not in replied]
    return AuditRecord(
        round=round_,
        run_id=run_id,
        timestamp=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.random() * 1e7),
        sampled=sampled,
        replied=replied,
        dropped=[DroppedNode(node=n, reason="no reply before timeout") for n in late],
        ciphertext_sha256={n: hashlib.sha256(rng.randbytes(32)).hexdigest() for n in replied},
        aggregate_sha256=hashlib.sha256(rng.randbytes(32)).hexdigest(),
        bytes_received=rng.randrange(10**9),
        bytes_sent=rng.randrange(10**9),
        timings={"fit": rng.random() * 60, "aggregate": rng.random()},
        extra={"preset": "add-only-8192", "note": "é ✓", "clip": [rng.random(), None, True]},
    )


@pytest.fixture
def rng() -> random.Random:
    return random.Random()


@pytest.fixture
def log_path(tmp_path: Path, rng: random.Random) -> Path:
    """A valid five-round log."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for round_ in range(1, 6):
        log.append(_record(rng, round_))
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _tampered_at(path: Path, expected_head: str | None = None) -> AuditTamperedError:
    with pytest.raises(AuditTamperedError) as info:
        verify_audit_log(path, expected_head=expected_head)
    return info.value


def _rechain(objects: list[dict[str, Any]]) -> bytes:
    """Rebuild a log's chain from its objects, following the documented format only."""

    def canonical(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    out, prev = [], hashlib.sha256(("0" * 64 + objects[0]["run_id"]).encode()).hexdigest()
    for seq, obj in enumerate(objects, start=1):
        body = {k: v for k, v in obj.items() if k != "hash"} | {"seq": seq, "prev_hash": prev}
        prev = hashlib.sha256(canonical(body)).hexdigest()
        out.append(canonical(body | {"hash": prev}) + b"\n")
    return b"".join(out)


def test_round_trip(tmp_path: Path, rng: random.Random) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    records = [_record(rng, r) for r in (1, 2, 5, 9)]
    heads = [log.append(r) for r in records]

    report = verify_audit_log(path, expected_head=log.head)
    assert isinstance(report, VerifyReport)
    assert report.records == tuple(records)
    assert report.lines == log.lines == 4
    assert report.head == log.head == heads[-1]
    assert len(set(heads)) == 4
    assert report.runs == ("run-a",)
    assert report.round_ranges == {"run-a": (1, 9)}
    first = json.loads(_lines(path)[0])
    assert first["seq"] == 1 and first["v"] == 1
    assert first["prev_hash"] == genesis_hash("run-a")
    assert first["timestamp"].endswith("+00:00")


def test_format_matches_documentation(log_path: Path) -> None:
    objects = [json.loads(line) for line in _lines(log_path)]
    assert _rechain(objects) == log_path.read_bytes()


def test_empty_and_missing_logs(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    report = verify_audit_log(tmp_path / "empty.jsonl")
    assert (report.lines, report.head, report.records) == (0, None, ())
    with pytest.raises(AuditLogError):
        verify_audit_log(tmp_path / "missing.jsonl")
    with pytest.raises(AuditLogError):
        verify_audit_log(tmp_path)  # a directory


def test_edited_field_is_caught_at_its_line(log_path: Path) -> None:
    lines = _lines(log_path)
    obj = json.loads(lines[2])
    obj["bytes_sent"] += 1
    lines[2] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log_path.write_bytes(b"".join(lines))
    error = _tampered_at(log_path)
    assert error.line == 3 and "hash" in error.reason


def test_edit_with_recomputed_line_hash_breaks_the_next_link(log_path: Path) -> None:
    objects = [json.loads(line) for line in _lines(log_path)]
    objects[1]["replied"] = objects[1]["replied"][:1]
    objects[1]["ciphertext_sha256"] = {}
    forged_line = _rechain(objects).splitlines(keepends=True)[1]
    lines = _lines(log_path)
    lines[1] = forged_line
    log_path.write_bytes(b"".join(lines))
    error = _tampered_at(log_path)
    assert error.line == 3 and "prev_hash" in error.reason


def test_non_canonical_whitespace_is_caught(log_path: Path) -> None:
    lines = _lines(log_path)
    lines[0] = json.dumps(json.loads(lines[0]), sort_keys=True).encode() + b"\n"
    log_path.write_bytes(b"".join(lines))
    assert _tampered_at(log_path).line == 1


def test_dropped_middle_line(log_path: Path) -> None:
    lines = _lines(log_path)
    log_path.write_bytes(b"".join(lines[:2] + lines[3:]))
    error = _tampered_at(log_path)
    assert error.line == 3 and "sequence" in error.reason


def test_dropped_last_line_needs_the_external_head(log_path: Path) -> None:
    head = verify_audit_log(log_path).head
    assert head is not None
    log_path.write_bytes(b"".join(_lines(log_path)[:-1]))
    assert verify_audit_log(log_path).lines == 4  # a shorter chain is still a chain
    error = _tampered_at(log_path, expected_head=head)
    assert error.line == 4 and "expected head" in error.reason


def test_rewritten_log_needs_the_external_head(log_path: Path) -> None:
    head = verify_audit_log(log_path).head
    assert head is not None
    objects = [json.loads(line) for line in _lines(log_path)]
    objects[0]["sampled"].append("ghost-bank")
    log_path.write_bytes(_rechain(objects))
    assert verify_audit_log(log_path).lines == 5
    assert _tampered_at(log_path, expected_head=head).line == 5


def test_reordered_lines(log_path: Path) -> None:
    lines = _lines(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    log_path.write_bytes(b"".join(lines))
    assert _tampered_at(log_path).line == 2


def test_inserted_and_duplicated_lines(log_path: Path, rng: random.Random) -> None:
    original = _lines(log_path)
    log_path.write_bytes(b"".join([*original[:3], original[2], *original[3:]]))
    assert _tampered_at(log_path).line == 4

    other = log_path.parent / "other.jsonl"
    AuditLog(other).append(_record(rng, 7))
    log_path.write_bytes(b"".join(original[:2] + _lines(other) + original[2:]))
    assert _tampered_at(log_path).line == 3


@pytest.mark.parametrize(
    ("garbage", "line"),
    [
        (b"{not json\n", 6),
        (b"\n", 6),
        (b"[1, 2]\n", 6),
        (b'{"v": 1}\n', 6),
        (b"NaN\n", 6),
        (b'{"partial": ', 6),
    ],
)
def test_malformed_lines(log_path: Path, garbage: bytes, line: int) -> None:
    with log_path.open("ab") as handle:
        handle.write(garbage)
    assert _tampered_at(log_path).line == line


def test_incomplete_last_line(log_path: Path) -> None:
    log_path.write_bytes(log_path.read_bytes()[:-1])
    error = _tampered_at(log_path)
    assert error.line == 5 and "incomplete" in error.reason


def test_rounds_must_increase_within_a_run(tmp_path: Path, rng: random.Random) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append(_record(rng, 3))
    for bad_round in (3, 2):
        with pytest.raises(AuditLogError, match="increase"):
            log.append(_record(rng, bad_round))
    log.append(_record(rng, 1, run_id="run-b"))  # a new run starts its own count
    log.append(_record(rng, 4))
    assert verify_audit_log(path).round_ranges == {"run-a": (3, 4), "run-b": (1, 1)}

    objects = [json.loads(line) for line in _lines(path)]
    objects[2]["round"] = 2  # a forged but well-chained log with a round going back
    path.write_bytes(_rechain(objects))
    error = _tampered_at(path)
    assert error.line == 3 and "increase" in error.reason


def test_only_a_refused_round_may_be_retried(tmp_path: Path, rng: random.Random) -> None:
    # Round 2 fell below the quorum (no aggregate); the restarted aggregator retries it.
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append(_record(rng, 1))
    log.append(_record(rng, 2).model_copy(update={"aggregate_sha256": None}))
    log.append(_record(rng, 2))
    with pytest.raises(AuditLogError, match="only a refused round may be retried"):
        log.append(_record(rng, 2))  # round 2 was applied this time: no second go
    assert [r.round for r in verify_audit_log(path).records] == [1, 2, 2]

    # A forged log repeating an applied round is caught even when well chained.
    objects = [json.loads(line) for line in _lines(path)]
    objects[1]["aggregate_sha256"] = objects[2]["aggregate_sha256"]
    path.write_bytes(_rechain(objects))
    error = _tampered_at(path)
    assert error.line == 3 and "increase" in error.reason


def test_progress_counts_applied_rounds_of_the_current_run(
    tmp_path: Path, rng: random.Random
) -> None:
    # What `crossfed aggregator` and `crossfed status` show as "round N/M".
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    assert rounds_applied(path) == 0
    log.append(_record(rng, 1))
    log.append(_record(rng, 2).model_copy(update={"aggregate_sha256": None}))
    assert rounds_applied(path) == 1  # round 2 was refused
    log.append(_record(rng, 2))
    assert rounds_applied(path) == 2  # ... and retried: three lines, two rounds
    with path.open("ab") as handle:
        handle.write(b'{"round": 3, "run_id": "run-a", "aggre')  # still being written
    assert rounds_applied(path) == 2
    path.write_bytes(b"".join(_lines(path)[:3]))
    AuditLog(path).append(_record(rng, 1, run_id="run-b"))
    assert rounds_applied(path) == 1  # a new run counts from its own start


def test_continuation_after_reopening(log_path: Path, rng: random.Random) -> None:
    before = verify_audit_log(log_path)
    reopened = AuditLog(log_path)
    assert (reopened.lines, reopened.head) == (before.lines, before.head)
    reopened.append(_record(rng, 6))
    reopened.append(_record(rng, 1, run_id="run-restarted"))
    after = verify_audit_log(log_path, expected_head=reopened.head)
    assert after.lines == 7
    assert after.records[:5] == before.records
    assert json.loads(_lines(log_path)[5])["prev_hash"] == before.head
    with pytest.raises(AuditLogError):
        AuditLog(log_path).append(_record(rng, 6))  # run-a is past round 6 already


def test_tampered_log_is_never_extended(log_path: Path) -> None:
    log_path.write_bytes(b"".join(_lines(log_path)[1:]))
    with pytest.raises(AuditTamperedError):
        AuditLog(log_path)


def test_second_writer_is_refused(log_path: Path, rng: random.Random) -> None:
    first, second = AuditLog(log_path), AuditLog(log_path)
    first.append(_record(rng, 6))
    with pytest.raises(AuditLogError, match="changed"):
        second.append(_record(rng, 7))
    assert verify_audit_log(log_path).lines == 6


def test_unwritable_record_leaves_the_file_alone(log_path: Path, rng: random.Random) -> None:
    before = log_path.read_bytes()
    bad = _record(rng, 6).model_copy(update={"extra": {"loss": float("nan")}})
    with pytest.raises(AuditLogError):
        AuditLog(log_path).append(bad)
    assert log_path.read_bytes() == before


def test_record_rules() -> None:
    digest = "ab" * 32
    with pytest.raises(ValidationError, match="not sampled"):
        AuditRecord(round=1, run_id="r", sampled=["a"], replied=["a", "b"])
    with pytest.raises(ValidationError, match="did not reply"):
        AuditRecord(round=1, run_id="r", sampled=["a"], ciphertext_sha256={"a": digest})
    with pytest.raises(ValidationError):
        AuditRecord(round=1, run_id="r", aggregate_sha256="not-a-digest")
    with pytest.raises(ValidationError, match="time zone"):
        AuditRecord(round=1, run_id="r", timestamp=datetime(2025, 1, 1))
    with pytest.raises(ValidationError):
        AuditRecord(round=True, run_id="r")
    with pytest.raises(ValidationError):
        AuditRecord(round=1, run_id="r", timings={"fit": -1.0})
    local = datetime(2025, 1, 1, 9, tzinfo=timezone(timedelta(hours=8)))
    assert AuditRecord(round=1, run_id="r", timestamp=local).timestamp == local
    assert AuditRecord(round=1, run_id="r", timestamp=local).timestamp.utcoffset() == timedelta()


def test_expected_head_must_look_like_a_digest(log_path: Path) -> None:
    with pytest.raises(AuditLogError, match="hexadecimal"):
        verify_audit_log(log_path, expected_head="HEAD")


def test_tampered_error_is_typed_and_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(AuditTamperedError(7, "hash mismatch")))
    assert (error.line, error.reason) == (7, "hash mismatch")
    assert str(error) == "audit log line 7: hash mismatch"
    assert isinstance(error, AuditLogError) and isinstance(error, FederationError)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "audit.jsonl"


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "audit.jsonl"
    log, rng = AuditLog(path), random.Random(20250101)
    for round_ in range(1, 4):
        log.append(_record(rng, round_))
    return path.read_bytes()


def _verify_or_typed_error(path: Path, data: bytes) -> VerifyReport | None:
    path.write_bytes(data)
    try:
        return verify_audit_log(path)
    except AuditTamperedError as exc:
        assert 1 <= exc.line <= data.count(b"\n") + 1
        return None


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json_fragments = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@_FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_give_typed_errors(scratch: Path, data: bytes) -> None:
    _verify_or_typed_error(scratch, data)


@_FUZZ
@given(lines=st.lists(st.one_of(st.text(max_size=40), _json_fragments.map(json.dumps))))
def test_random_lines_give_typed_errors(scratch: Path, lines: list[str]) -> None:
    data = "".join(line.replace("\n", " ") + "\n" for line in lines).encode("utf-8", "replace")
    _verify_or_typed_error(scratch, data)


@_FUZZ
@given(position=st.integers(min_value=0), byte=st.integers(0, 255), delete=st.booleans())
def test_every_single_byte_change_is_caught(
    scratch: Path, valid_bytes: bytes, position: int, byte: int, delete: bool
) -> None:
    index = position % len(valid_bytes)
    if delete:
        data = valid_bytes[:index] + valid_bytes[index + 1 :]
    elif valid_bytes[index] == byte:
        return
    else:
        data = valid_bytes[:index] + bytes([byte]) + valid_bytes[index + 1 :]
    assert _verify_or_typed_error(scratch, data) is None


def test_cli_verify_ok(log_path: Path) -> None:
    head = verify_audit_log(log_path).head
    assert head is not None
    result = CliRunner().invoke(audit_app, ["verify", str(log_path), "--expected-head", head])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "lines: 5" in result.output and "run-a" in result.output


def test_cli_verify_tampered_and_unreadable(log_path: Path) -> None:
    lines = _lines(log_path)
    log_path.write_bytes(b"".join(lines[:1] + lines[2:]))
    result = CliRunner().invoke(audit_app, ["verify", str(log_path)])
    assert result.exit_code == 1
    assert "TAMPERED" in result.output and "line 2" in result.output
    missing = CliRunner().invoke(audit_app, ["verify", str(log_path.parent / "nope.jsonl")])
    assert missing.exit_code == 2


def test_package_exports_are_sorted_and_resolve() -> None:
    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, functions
        kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
        return kind, name

    assert federation.__all__ == sorted(federation.__all__, key=isort_style)
    for name in federation.__all__:
        assert getattr(federation, name) is not None


def test_append_syncs_to_disk(
    tmp_path: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(_record(rng, 1))  # the file, then its new directory entry
    assert len(synced) == 2
    log.append(_record(rng, 2))
    assert len(synced) == 3


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_log_is_created_owner_only_whatever_the_umask(
    tmp_path: Path, rng: random.Random, umask: int
) -> None:
    # The log names institutions and holds why their replies were dropped: 0600, not 0644.
    path = tmp_path / "audit.jsonl"
    previous = os.umask(umask)
    try:
        log = AuditLog(path)
        log.append(_record(rng, 1))
        assert path.stat().st_mode & 0o777 == 0o600
        log.append(_record(rng, 2))
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o600
    assert verify_audit_log(path).lines == 2


def test_a_world_readable_log_is_narrowed_before_it_grows(
    log_path: Path, rng: random.Random
) -> None:
    log_path.chmod(0o644)  # as written by an older version, or copied in
    AuditLog(log_path).append(_record(rng, 6))
    assert log_path.stat().st_mode & 0o777 == 0o600
    assert verify_audit_log(log_path).lines == 6


def test_audit_head_is_what_the_next_line_links_to(tmp_path: Path, rng: random.Random) -> None:
    path = tmp_path / "audit.jsonl"
    assert audit_head(path) == genesis_hash("")  # no log yet
    assert audit_head(path, run_id="run-a") == genesis_hash("run-a")
    path.write_bytes(b"")
    assert audit_head(path, run_id="run-a") == genesis_hash("run-a")
    log = AuditLog(path)
    heads = [log.append(_record(rng, r)) for r in (1, 2, 3)]
    assert audit_head(path) == audit_head(path, run_id="other") == heads[-1] == log.head
    assert json.loads(_lines(path)[-1])["hash"] == heads[-1]
    log.append(_record(rng, 4))
    assert json.loads(_lines(path)[-1])["prev_hash"] == heads[-1]
    assert "audit_head" in federation.audit.__all__


def test_audit_head_of_a_shortened_log_fails_against_a_head_sent_earlier(
    log_path: Path,
) -> None:
    sent = audit_head(log_path)  # what the institutions were given last round
    log_path.write_bytes(b"".join(_lines(log_path)[:-1]))
    assert audit_head(log_path) != sent
    assert _tampered_at(log_path, expected_head=sent).line == 4


def test_audit_head_refuses_a_damaged_log(log_path: Path) -> None:
    lines = _lines(log_path)
    lines[2] = lines[2].replace(b'"round":3', b'"round":7')
    log_path.write_bytes(b"".join(lines))
    with pytest.raises(AuditTamperedError):
        audit_head(log_path)
    with pytest.raises(AuditLogError):
        audit_head(log_path.parent)  # a directory, not a log
