"""Exceptions raised by the aggregator-side ``federation`` package.

Every error the package raises on purpose derives from :class:`FederationError`,
so a caller (the command line, the ServerApp) can catch one type at the
boundary. The subclasses are named for outcomes a federation operator can act
on: the audit log cannot be read or extended (:class:`AuditLogError`), it has
been altered (:class:`AuditTamperedError`), a checkpoint is unusable
(:class:`CheckpointError`) or a round lacks its quorum
(:class:`QuorumNotReachedError`). Kit and setting problems are the protocol
layer's (:class:`crossfed.protocol.ProvisioningError`,
:class:`crossfed.protocol.ConfigurationError`). Errors from
third-party libraries are translated at the boundary with ``raise … from exc``
so the original cause stays attached.
"""

from __future__ import annotations

__all__ = [
    "AuditLogError",
    "AuditTamperedError",
    "CheckpointError",
    "FederationError",
    "QuorumNotReachedError",
]


class FederationError(Exception):
    """Base class of every error raised by the ``federation`` package."""


class AuditLogError(FederationError):
    """The audit log cannot be read, written or extended.

    Raised for I/O failures, for a record that would break the log's rules
    (for example a round number that does not increase within its run), and
    when another writer has appended to the file behind this process's back.
    """


class AuditTamperedError(AuditLogError):
    """The audit log's content does not verify: it was altered or damaged.

    Parameters
    ----------
    line
        One-based number of the first line found wrong. For a log whose head
        does not match the externally kept head hash, this is the number of the
        last line present (0 for an empty file).
    reason
        What is wrong with that line, in words an operator can act on.

    Notes
    -----
    A line left incomplete by a crash during a write also raises this error:
    the log cannot tell damage from tampering, and an operator should look.
    """

    def __init__(self, line: int, reason: str) -> None:
        # Both values go to ``args`` so the error survives pickling (Ray, logging).
        super().__init__(line, reason)
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"audit log line {self.line}: {self.reason}"


class CheckpointError(FederationError):
    """A checkpoint file is missing, corrupt, or belongs to another federation."""


class QuorumNotReachedError(FederationError):
    """Fewer valid replies than the federation's quorum: the round is not applied."""
