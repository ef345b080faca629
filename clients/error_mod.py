"""The outermost mod: every failure becomes a fixed code on the wire, details stay local.

Flower sends an exception's text back to the aggregator (``str(exc)`` in the
error reply). An institution's exceptions can depend on what it decrypted — a
tampered sum, a statistic out of range — so their text would be a decryption
oracle for a malicious aggregator. :func:`error_mod` catches every exception
raised below it, writes the details (message, traceback) to the institution's
local log (:mod:`clients.local_log`), and replies with one
:class:`~crossfed.protocol.ErrorCode` and its fixed reason text
(:func:`error_code` picks it from the exception's type alone). An error reply
built further in is reduced to the same form.

:class:`GuardedClientApp` does the same for what Flower raises before any mod
runs (a message type no handler is registered for).
"""

from __future__ import annotations

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

import crypto
from clients.errors import (
    ConfigError,
    DataLoadError,
    DataValidationError,
    InboundMessageError,
    InvalidWeightsError,
    KeyMaterialError,
    MaskReuseRefusedError,
    SchemaError,
    TamperedAggregateError,
)
from clients.local_log import institution_logger
from crossfed.protocol import ConfigurationError, ErrorCode, reason_of

__all__ = ["GuardedClientApp", "error_code", "error_mod", "error_reply"]

#: Exception types and the code each is reported as; the first match wins.
_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], ErrorCode], ...] = (
    # The aggregate is not an honest sum of this round (check value, summed weight,
    # movement, or a decryption that yields no valid sum).
    ((crypto.IntegrityError, crypto.DecryptionError, TamperedAggregateError),
     ErrorCode.INTEGRITY_FAILED),
    ((KeyMaterialError, crypto.SecretKeyRequiredError), ErrorCode.KEY_REFUSED),
    # Decided by the ledger (what the aggregator asked for before), not by any value.
    (MaskReuseRefusedError, ErrorCode.MASK_REUSE_REFUSED),
    ((InboundMessageError, InvalidWeightsError, crypto.CryptoError), ErrorCode.MALFORMED_INPUT),
    ((ConfigError, ConfigurationError), ErrorCode.CONFIG_MISMATCH),
    ((SchemaError, DataLoadError, DataValidationError), ErrorCode.DATA_REFUSED),
)  # fmt: skip


def error_code(exc: BaseException) -> ErrorCode:
    """The code ``exc`` is reported as: its ``code`` attribute if it has one, else by type."""
    code = getattr(exc, "code", None)
    if isinstance(code, ErrorCode):
        return code
    for types, mapped in _CODES:
        if isinstance(exc, types):
            return mapped
    return ErrorCode.INTERNAL


def error_reply(msg: Message, code: ErrorCode) -> Message:
    """The reply to ``msg`` that tells the aggregator ``code`` and nothing else."""
    return Message(Error(code=int(code), reason=reason_of(code)), reply_to=msg)


def _fixed(reply: Message, msg: Message) -> Message:
    """``reply`` with an error reduced to a known code and its fixed text."""
    if not reply.has_error():
        return reply
    try:
        code = ErrorCode(reply.error.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    if reply.error.reason != reason_of(code):
        institution_logger().error(
            "%s message: an error reply (code %s, %r) was reduced to %s",
            msg.metadata.message_type,
            reply.error.code,
            reply.error.reason,
            code.name,
        )
    return error_reply(msg, code)


def error_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run the rest of the app; turn any exception into a fixed-code error reply."""
    try:
        reply = call_next(msg, context)
    except Exception as exc:  # every failure: its text must not reach the aggregator
        code = error_code(exc)
        institution_logger().error(
            "refused or failed a %s message of run %s (node %s): %s",
            msg.metadata.message_type,
            context.run_id,
            context.node_id,
            code.name,
            exc_info=exc,
        )
        return error_reply(msg, code)
    return _fixed(reply, msg)


class GuardedClientApp(ClientApp):
    """A ClientApp whose own dispatch failures also become fixed-code error replies.

    Flower's :class:`~flwr.clientapp.ClientApp` raises, before any mod runs, for
    a message type it has no handler for; the aggregator would read that text.
    """

    def __call__(self, message: Message, context: Context) -> Message:
        """Dispatch as Flower does; report any exception as :func:`error_code` says."""
        try:
            return super().__call__(message, context)
        except Exception as exc:
            code = ErrorCode.MALFORMED_INPUT if isinstance(exc, ValueError) else error_code(exc)
            institution_logger().error(
                "could not dispatch a %s message: %s",
                message.metadata.message_type,
                code.name,
                exc_info=exc,
            )
            return error_reply(message, code)
