"""Attack: crash or confuse a restarting aggregator with a hostile checkpoint file.

A restarted aggregator reads ``checkpoint.bin`` back from its output folder.
Before, a header nested a few thousand levels deep escaped ``load_checkpoint``
as ``RecursionError``, an integer with thousands of digits as ``ValueError``,
and a ``true`` version passed as version 1. Whoever can write that folder plays
the attacker here: every input must end in a :class:`CheckpointError` (the
aggregator then starts afresh or stops with a reason) or in a well-typed
checkpoint, never in another exception.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.checkpoint import (
    CHECKPOINT_VERSION,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from federation.errors import CheckpointError

_PREFIX = struct.Struct(">4sI")
_VALID = {
    "version": CHECKPOINT_VERSION,
    "round": 4,
    "run_id": "run-x",
    "fingerprint": "f" * 64,
    "audit_head": "a" * 64,
}
_PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _file(header: bytes, model: bytes = b"\x01" * 32, magic: bytes = b"XFCK") -> bytes:
    return _PREFIX.pack(magic, len(header)) + header + model


def _load(path: Path, data: bytes) -> Checkpoint | None:
    """Load ``data`` as a checkpoint: a well-typed one, or None after a CheckpointError."""
    path.write_bytes(data)
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError:
        return None
    assert isinstance(checkpoint, Checkpoint)
    assert type(checkpoint.round) is int and checkpoint.round >= 0
    for text in (checkpoint.run_id, checkpoint.fingerprint, checkpoint.audit_head):
        assert isinstance(text, str)
        text.encode("utf-8")  # usable in logs and file names: no lone surrogates
    assert isinstance(checkpoint.model, bytes)
    return checkpoint


def _refused(path: Path, data: bytes) -> CheckpointError:
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    return caught.value


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "checkpoint.bin"


def test_a_valid_checkpoint_still_loads(path: Path) -> None:
    save_checkpoint(path, Checkpoint(4, "run-x", "f" * 64, "a" * 64, b"\x07" * 100))
    assert load_checkpoint(path, expected_fingerprint="f" * 64) == Checkpoint(
        4, "run-x", "f" * 64, "a" * 64, b"\x07" * 100
    )
    assert _load(path, _file(json.dumps(_VALID).encode())) is not None


@pytest.mark.parametrize("depth", [1_000, 30_000])
def test_deeply_nested_header_is_refused(path: Path, depth: int) -> None:
    # Before: RecursionError out of json.loads, past every handler.
    header = b'{"version": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(header) < 1 << 16
    assert "corrupt checkpoint header" in str(_refused(path, _file(header)))
    # Objects nested inside an extra field of an otherwise valid header.
    text = json.dumps(_VALID)[:-1] + ', "x": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    _refused(path, _file(text.encode()))


@pytest.mark.parametrize("field", ["version", "round", "extra"])
def test_integer_with_too_many_digits_is_refused(path: Path, field: str) -> None:
    # Before: ValueError ("Exceeds the limit for integer string conversion").
    text = json.dumps(_VALID)[:-1] + f', "{field}": ' + "9" * 5_000 + "}"
    assert "corrupt checkpoint header" in str(_refused(path, _file(text.encode())))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", True),  # True == 1 in Python: before, it passed as version 1
        ("version", 1.0),
        ("version", "1"),
        ("version", 2),
        ("version", None),
        ("round", True),
        ("round", -1),
        ("round", 4.0),
        ("round", "4"),
        ("round", [4]),
        ("round", 10**30),
        ("run_id", 5),
        ("run_id", None),
        ("fingerprint", ["f"]),
        ("fingerprint", {"f": 1}),
        ("audit_head", None),
        ("audit_head", 0),
    ],
)
def test_wrong_field_types_are_refused(path: Path, field: str, value: Any) -> None:
    header = json.dumps({**_VALID, field: value}).encode()
    error = _refused(path, _file(header))
    assert len(str(error)) < 300  # names the problem without echoing a hostile value


@pytest.mark.parametrize("field", sorted(_VALID))
def test_missing_fields_are_refused(path: Path, field: str) -> None:
    header = {k: v for k, v in _VALID.items() if k != field}
    assert field in str(_refused(path, _file(json.dumps(header).encode())))


@pytest.mark.parametrize(
    "header",
    [b"[1, 2]", b'"text"', b"42", b"null", b"NaN", b"", b"{", b'{"round": NaN}'],
)
def test_headers_that_are_no_object_are_refused(path: Path, header: bytes) -> None:
    _refused(path, _file(header))


@pytest.mark.parametrize(
    "header",
    [
        b'{"version": 1, "run_id": "\xff\xfe"}',
        "{}".encode("utf-16"),
        b"\xc3\x28" * 10,
        json.dumps({**_VALID, "run_id": "\ud800"}).encode(),  # a lone surrogate, escaped
        json.dumps({**_VALID, "audit_head": "\udfff"}).encode(),
    ],
)
def test_non_utf8_headers_are_refused(path: Path, header: bytes) -> None:
    _refused(path, _file(header))


def test_bad_lengths_and_magic_are_refused(path: Path) -> None:
    header = json.dumps(_VALID).encode()
    _refused(path, _file(header, magic=b"XFCL"))
    _refused(path, _file(header)[:6])
    _refused(path, _PREFIX.pack(b"XFCK", len(header) + 1) + header)
    _refused(path, _PREFIX.pack(b"XFCK", 1 << 20) + header + b"\x00" * (1 << 20))
    for unreadable in (path.parent, path.parent / "absent.bin"):  # a folder; no file
        with pytest.raises(CheckpointError):
            load_checkpoint(unreadable)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from([CHECKPOINT_VERSION, 0, -1, "f" * 64]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@_PROPERTY
@given(
    fields=st.dictionaries(
        st.sampled_from([*_VALID, "model", "x"]), _json_values, max_size=len(_VALID) + 2
    ),
    keep=st.sets(st.sampled_from(sorted(_VALID))),
)
def test_any_json_header_gives_a_checkpoint_or_a_checkpoint_error(
    path: Path, fields: dict[str, Any], keep: set[str]
) -> None:
    header = {k: v for k, v in _VALID.items() if k in keep} | fields
    _load(path, _file(json.dumps(header).encode()))


@_PROPERTY
@given(header=st.binary(max_size=300), model=st.binary(max_size=64))
def test_any_header_bytes_give_a_checkpoint_or_a_checkpoint_error(
    path: Path, header: bytes, model: bytes
) -> None:
    _load(path, _file(header, model))


@_PROPERTY
@given(data=st.binary(max_size=300))
def test_any_file_gives_a_checkpoint_or_a_checkpoint_error(path: Path, data: bytes) -> None:
    _load(path, data)


@_PROPERTY
@given(
    position=st.integers(min_value=0, max_value=200),
    spliced=st.binary(min_size=1, max_size=24),
    cut=st.integers(min_value=0, max_value=8),
)
def test_damaged_valid_checkpoints_give_a_checkpoint_or_a_checkpoint_error(
    path: Path, position: int, spliced: bytes, cut: int
) -> None:
    valid = _file(json.dumps(_VALID).encode())
    index = position % len(valid)
    _load(path, valid[:index] + spliced + valid[index + cut :])
