"""Ten thousand hostile inputs against every deserialiser: a typed error or a valid object.

Every reader of bytes that come from outside — an institution's update, a
context file, the aggregator's checkpoint, the audit log, the ciphertext
record of a Flower message — gets at least 10,000 hypothesis-generated inputs:
random bytes, truncations of a valid object, a few bytes of a valid object
overwritten (near the header more often than not), and random bytes spliced
in. Each call must either raise the package's own error type or return a
well-formed object; anything else (a crash, a third-party exception, a hang
past pytest's limits) fails.

The module takes a few minutes on two cores; it is marked ``slow``. The
shallower property tests beside the code (``tests/crypto/test_fuzz.py``,
``tests/federation/test_audit.py``) run a few hundred examples each and stay
in the fast suite.
"""

from __future__ import annotations

import hashlib
import random
import re
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto
from crossfed.protocol import read_ciphertext
from federation import (
    AuditLog,
    AuditLogError,
    AuditRecord,
    Checkpoint,
    CheckpointError,
    DroppedNode,
    VerifyReport,
    load_checkpoint,
    save_checkpoint,
    verify_audit_log,
)

pytestmark = pytest.mark.slow

EXAMPLES = 10_000
TEN_THOUSAND = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEADER_SPAN = 700  # bytes at the front of every format that hold its header


@cache
def _secret() -> crypto.SecretContext:
    return crypto.generate_secret_context("lean")


@cache
def _public() -> crypto.PublicContext:
    return _secret().public()


@cache
def _update() -> bytes:
    rng = np.random.default_rng(20250601)
    arrays = [rng.normal(size=(6, 3)), rng.normal(size=3)]
    return crypto.encrypt_update(
        _secret(), arrays, 17, round_id=3, session="run-x", contributor="bank-a"
    ).to_bytes()


@cache
def _checkpoint() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.bin"
        save_checkpoint(path, Checkpoint(4, "run-x", "f" * 64, "a" * 64, b"\x01" * 512))
        return path.read_bytes()


@cache
def _audit_log() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.jsonl"
        log = AuditLog(path)
        for server_round in (1, 2, 3):
            log.append(
                AuditRecord(
                    round=server_round,
                    run_id="run-x",
                    timestamp=datetime(2025, 6, 1, tzinfo=UTC),
                    sampled=["11", "22", "33"],
                    replied=["11", "22"],
                    dropped=[DroppedNode(node="33", reason="no reply before the round deadline")],
                    ciphertext_sha256={
                        n: hashlib.sha256(n.encode()).hexdigest() for n in ("11", "22")
                    },
                    aggregate_sha256=hashlib.sha256(b"sum").hexdigest(),
                    bytes_received=262_144,
                    timings={"aggregate_s": 0.25},
                )
            )
        return path.read_bytes()


def _damage(valid: bytes, kind: int, seed: int, filler: bytes) -> bytes:
    """One hostile variant of ``valid``, chosen by ``kind`` and placed by ``seed``."""
    rng = random.Random(seed)

    def position() -> int:  # near the header two times in three
        span = min(HEADER_SPAN, len(valid)) if rng.random() < 2 / 3 else len(valid)
        return rng.randrange(span)

    if kind == 0:
        return filler  # random bytes
    if kind == 1:
        return valid[: rng.randrange(len(valid))]  # truncated
    if kind == 2:
        out = bytearray(valid)  # a few bytes overwritten
        for _ in range(rng.randint(1, 6)):
            out[position()] = rng.randrange(256)
        return bytes(out)
    if kind == 3:
        start = position()  # random bytes spliced in, some removed
        return valid[:start] + filler + valid[start + rng.randint(0, 64) :]
    return valid + (filler or b"\x00")  # trailing bytes


def hostile(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, truncations, overwritten bytes, splices and extensions of ``valid``.

    Three draws per example (kind, placement seed, filler bytes) keep hypothesis's
    own cost per example low, so ten thousand examples fit in seconds.
    """
    return st.builds(
        lambda kind, seed, filler: _damage(valid, kind, seed, filler),
        st.integers(0, 4),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=512),
    )


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "input"


def test_the_valid_objects_parse() -> None:
    secret = _secret()
    assert crypto.EncryptedUpdate.from_bytes(secret.public(), _update()).round_id == 3
    assert crypto.SecretContext.from_bytes(secret.to_bytes()).fingerprint == secret.fingerprint
    assert crypto.PublicContext.from_bytes(secret.public().to_bytes()).fingerprint
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f"
        path.write_bytes(_checkpoint())
        assert load_checkpoint(path).round == 4
        path.write_bytes(_audit_log())
        assert verify_audit_log(path).lines == 3


@TEN_THOUSAND
@given(data=hostile(_update()))
def test_encrypted_update(data: bytes) -> None:
    public = _public()
    try:
        update = crypto.EncryptedUpdate.from_bytes(public, data)
    except crypto.CryptoError:
        return
    assert update.fingerprint == public.fingerprint
    assert update.count >= 1 and update.round_id >= 0 and update.shapes


@TEN_THOUSAND
@given(data=hostile(_public().to_bytes()))
def test_public_context(data: bytes) -> None:
    try:
        context = crypto.PublicContext.from_bytes(data)
    except crypto.CryptoError:
        return
    assert HEX64.match(context.fingerprint)
    assert not context.tenseal_context.is_private()


@TEN_THOUSAND
@given(data=hostile(_secret().to_bytes()))
def test_secret_context(data: bytes) -> None:
    try:
        context = crypto.SecretContext.from_bytes(data)
    except crypto.CryptoError:
        return
    assert HEX64.match(context.fingerprint)
    assert context.tenseal_context.is_private()


def _through_file(scratch: Path, data: bytes, read: Callable[[Path], object]) -> object:
    scratch.write_bytes(data)
    return read(scratch)


@TEN_THOUSAND
@given(data=hostile(_checkpoint()))
def test_checkpoint(scratch: Path, data: bytes) -> None:
    try:
        checkpoint = _through_file(scratch, data, load_checkpoint)
    except CheckpointError:
        return
    assert isinstance(checkpoint, Checkpoint)
    assert type(checkpoint.round) is int and checkpoint.round >= 0
    assert isinstance(checkpoint.run_id, str) and isinstance(checkpoint.model, bytes)


@TEN_THOUSAND
@given(data=hostile(_audit_log()))
def test_audit_log(scratch: Path, data: bytes) -> None:
    try:
        report = _through_file(scratch, data, verify_audit_log)
    except AuditLogError:  # AuditTamperedError included
        return
    assert isinstance(report, VerifyReport)
    assert report.lines == len(report.records) == data.count(b"\n")


DTYPES = (np.uint8, np.int8, np.uint16, np.int64, np.float32, np.float64, np.bool_)
ARRAYS: st.SearchStrategy[np.ndarray] = st.tuples(
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 5), max_size=3),
    st.binary(max_size=256),
).map(
    lambda spec: np.resize(np.frombuffer(spec[2] or b"\x00", dtype=np.uint8), spec[1]).astype(
        spec[0]
    )
)
RECORDS = st.dictionaries(
    st.one_of(st.just("ciphertext"), st.text(max_size=12)), ARRAYS, max_size=3
)


@TEN_THOUSAND
@given(arrays=RECORDS)
def test_ciphertext_record(arrays: dict[str, np.ndarray]) -> None:
    record = ArrayRecord({key: Array(value) for key, value in arrays.items()})
    try:
        data = read_ciphertext(record)
    except crypto.CryptoError:
        return
    assert list(arrays) == ["ciphertext"]
    assert data == arrays["ciphertext"].tobytes()
