"""What the aggregator writes down about a reply it could not use, in words it chose.

An institution's error crosses the wire as a code (:class:`crossfed.protocol.ErrorCode`,
reason text ``crossfed:NAME``); Flower's own infrastructure errors (node unavailable,
ClientApp crashed) carry Flower's codes, and their reason text may hold an
exception's message raised inside an institution. The audit log and the
aggregator's log therefore record only the *code's name*, looked up here, never
the reason text an institution (or a hostile one) put in the reply. Text the
aggregator's own checks produce about a reply (a crypto error naming a header
field) is bounded with :func:`bounded` before it is written.
"""

from __future__ import annotations

from flwr.app import Message
from flwr.common.constant import ErrorCode as FlowerErrorCode

from crossfed.protocol import ErrorCode, reason_of

__all__ = ["MAX_REASON_CHARS", "bounded", "error_reason"]

#: Longest drop reason written to the audit log.
MAX_REASON_CHARS = 300

#: Flower's error codes by value (its ``ErrorCode`` is a plain class of ints).
_FLOWER_CODES = {
    value: name
    for name, value in vars(FlowerErrorCode).items()
    if name.isupper() and isinstance(value, int)
}


def bounded(text: str) -> str:
    """``text`` as printable ASCII (other characters escaped), at most :data:`MAX_REASON_CHARS`."""
    printable = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
    escaped = printable.encode("ascii", "backslashreplace").decode("ascii")
    if len(escaped) <= MAX_REASON_CHARS:
        return escaped
    return escaped[: MAX_REASON_CHARS - 3] + "..."


def error_reason(reply: Message) -> str:
    """The drop reason for an error reply: its code's name, never its reason text.

    ``institution reported crossfed:NAME`` for a crossfed code,
    ``flower error NAME`` for one of Flower's, ``unrecognised error code N``
    otherwise (a reply that carries no usable code says so).
    """
    code = reply.error.code
    if isinstance(code, bool) or not isinstance(code, int):
        return "unrecognised error (no integer code)"
    try:
        return f"institution reported {reason_of(ErrorCode(code))}"
    except ValueError:
        pass  # not one of crossfed's codes
    if code in _FLOWER_CODES:
        return f"flower error {_FLOWER_CODES[code]}"
    return f"unrecognised error code {code}" if abs(code) < 10**12 else "unrecognised error code"
