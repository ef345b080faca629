"""The only errors an institution ever returns to the aggregator: fixed codes.

An institution's error can depend on what it decrypted (a tampered sum, a
statistic out of range); its text would then be a decryption oracle for a
malicious aggregator. So what crosses the wire is one member of
:class:`ErrorCode` with its fixed reason text, never an exception's message;
the details stay in the institution's local log (mode 0600).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["REASON_PREFIX", "ErrorCode", "reason_of"]

#: Prefix of the reason text of every error an institution returns.
REASON_PREFIX = "crossfed:"


class ErrorCode(IntEnum):
    """Why an institution refused or failed a message (values are stable on the wire).

    Values start at 1000 to stay clear of Flower's own error codes.
    """

    #: Anything not covered below (an unexpected failure; details in the local log).
    INTERNAL = 1000
    #: The app bundle the aggregator shipped is not the one the institution's kit pins.
    BUNDLE_REFUSED = 1001
    #: The run configuration disagrees with the institution's kit.
    CONFIG_MISMATCH = 1002
    #: An inbound ciphertext or record failed a check (format, run, round, shapes, type).
    MALFORMED_INPUT = 1003
    #: A decrypted aggregate failed its integrity check (not this round's exact sum).
    INTEGRITY_FAILED = 1004
    #: The institution's own data cannot be used (schema, file); nothing was sent.
    DATA_REFUSED = 1005
    #: The institution's key material cannot be used.
    KEY_REFUSED = 1006
    #: The institution's mask ledger refuses a second quantisation, or a seed for another
    #: contributor set, of one start (or cannot be read or written: it fails closed).
    MASK_REUSE_REFUSED = 1007


def reason_of(code: ErrorCode) -> str:
    """The fixed reason text sent with ``code``: ``crossfed:NAME``."""
    return f"{REASON_PREFIX}{code.name}"
