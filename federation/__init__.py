"""Aggregator side of crossfed: audit log and provisioning of keys and certificates.

The Flower ServerApp and the encrypted-aggregation strategy will live here too.
Import from this package, not from its modules; ``__all__`` is the public API.
"""

from federation.audit import (
    AUDIT_FORMAT_VERSION,
    AuditLog,
    AuditRecord,
    DroppedNode,
    VerifyReport,
    genesis_hash,
    verify_audit_log,
)
from federation.errors import (
    AuditLogError,
    AuditTamperedError,
    FederationError,
    ProvisioningError,
)

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "AuditLog",
    "AuditLogError",
    "AuditRecord",
    "AuditTamperedError",
    "DroppedNode",
    "FederationError",
    "ProvisioningError",
    "VerifyReport",
    "genesis_hash",
    "verify_audit_log",
]
