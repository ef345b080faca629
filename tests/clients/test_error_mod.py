"""Errors cross the wire as fixed codes; their details go to a 0600 local log."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from flwr.app import Context, Error, Message, MessageType, RecordDict

import crypto
from clients import (
    ConfigError,
    DataLoadError,
    DataValidationError,
    InboundMessageError,
    InvalidWeightsError,
    KeyMaterialError,
    SchemaError,
    TamperedAggregateError,
)
from clients.error_mod import GuardedClientApp, error_code, error_mod
from clients.errors import MaskReuseRefusedError
from clients.local_log import LOGGER_NAME, institution_logger, open_local_log
from crossfed.protocol import ConfigurationError, ErrorCode, reason_of

SECRET_VALUE = "4711.25"  # stands for a decrypted value in an exception's text


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _node() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def _message(kind: str = MessageType.TRAIN) -> Message:
    return Message(content=RecordDict(), dst_node_id=1, message_type=kind)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (crypto.IntegrityError("x"), ErrorCode.INTEGRITY_FAILED),
        (crypto.DecryptionError("x"), ErrorCode.INTEGRITY_FAILED),
        (TamperedAggregateError("x"), ErrorCode.INTEGRITY_FAILED),
        (crypto.MalformedDataError("x"), ErrorCode.MALFORMED_INPUT),
        (crypto.ContextMismatchError("x"), ErrorCode.MALFORMED_INPUT),
        (crypto.ShapeMismatchError("x"), ErrorCode.MALFORMED_INPUT),
        (InboundMessageError("x"), ErrorCode.MALFORMED_INPUT),
        (InvalidWeightsError("x"), ErrorCode.MALFORMED_INPUT),
        (ConfigError("x"), ErrorCode.CONFIG_MISMATCH),
        (ConfigurationError("x"), ErrorCode.CONFIG_MISMATCH),
        (SchemaError("x"), ErrorCode.DATA_REFUSED),
        (DataLoadError("x", path="p"), ErrorCode.DATA_REFUSED),
        (DataValidationError("x", column=None, count=0), ErrorCode.DATA_REFUSED),
        (KeyMaterialError("x"), ErrorCode.KEY_REFUSED),
        (MaskReuseRefusedError("x"), ErrorCode.MASK_REUSE_REFUSED),
        (ValueError("x"), ErrorCode.INTERNAL),
        (RuntimeError("x"), ErrorCode.INTERNAL),
    ],
)
def test_each_failure_maps_to_one_fixed_code(exc: Exception, code: ErrorCode) -> None:
    assert error_code(exc) is code


def test_an_exception_becomes_a_fixed_reply_and_its_text_stays_local(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing(msg: Message, ctx: Context) -> Message:
        raise TamperedAggregateError(f"summed weight {SECRET_VALUE}")

    with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
        reply = error_mod(_message(), _node(), failing)
    assert (reply.error.code, reply.error.reason) == (
        int(ErrorCode.INTEGRITY_FAILED),
        reason_of(ErrorCode.INTEGRITY_FAILED),
    )
    assert not reply.has_content()
    assert SECRET_VALUE not in repr(reply)
    assert any(SECRET_VALUE in (r.exc_text or r.getMessage()) or r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    ("code", "expected"),
    [(int(ErrorCode.DATA_REFUSED), ErrorCode.DATA_REFUSED), (0, ErrorCode.INTERNAL)],
)
def test_an_error_reply_from_further_in_is_reduced_to_its_code(
    code: int, expected: ErrorCode
) -> None:
    def erring(msg: Message, ctx: Context) -> Message:
        return Message(Error(code=code, reason=f"value {SECRET_VALUE}"), reply_to=msg)

    reply = error_mod(_message(), _node(), erring)
    assert (reply.error.code, reply.error.reason) == (int(expected), reason_of(expected))


def test_a_message_type_without_a_handler_gets_a_fixed_code() -> None:
    app = GuardedClientApp(mods=[error_mod])

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        return Message(content=RecordDict(), reply_to=msg)

    reply = app(_message("train.custom"), _node())
    assert (reply.error.code, reply.error.reason) == (
        int(ErrorCode.MALFORMED_INPUT),
        reason_of(ErrorCode.MALFORMED_INPUT),
    )
    assert not app(_message(), _node()).has_error()


def test_the_local_log_is_created_0600_and_narrowed_to_it(tmp_path: Path) -> None:
    fresh = tmp_path / "logs" / "bank.log"
    existing = tmp_path / "old.log"
    existing.write_text("earlier\n")
    existing.chmod(0o644)
    handlers = [open_local_log(fresh), open_local_log(existing)]
    try:
        institution_logger().error("refused: %s", SECRET_VALUE)
    finally:
        for handler in handlers:
            institution_logger().removeHandler(handler)
            handler.close()
    for path in (fresh, existing):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SECRET_VALUE in path.read_text()
    assert existing.read_text().startswith("earlier\n")
