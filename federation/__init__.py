"""Aggregator side of crossfed: audit log and provisioning of keys and certificates.

The Flower ServerApp and the encrypted-aggregation strategy will live here too.
Import from this package, not from its modules: the sorted ``__all__`` below is
the public API.
"""

from federation.audit import (
    AUDIT_FORMAT_VERSION,
    AuditLog,
    VerifyReport,
    genesis_hash,
    verify_audit_log,
)
from federation.audit_record import AuditRecord, DroppedNode
from federation.errors import (
    AuditLogError,
    AuditTamperedError,
    FederationError,
    ProvisioningError,
)
from federation.pki import (
    CertificateAuthority,
    NodeKeyPair,
    SecretBytes,
    ServerCredentials,
    certificate_to_pem,
    create_ca,
    create_node_keypair,
    create_server_certificate,
    load_certificate,
    load_certificate_authority,
    load_node_private_key,
    load_node_public_key,
    load_private_key,
    private_key_to_pem,
    write_private,
    write_public,
)

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "AuditLog",
    "AuditLogError",
    "AuditRecord",
    "AuditTamperedError",
    "CertificateAuthority",
    "DroppedNode",
    "FederationError",
    "NodeKeyPair",
    "ProvisioningError",
    "SecretBytes",
    "ServerCredentials",
    "VerifyReport",
    "certificate_to_pem",
    "create_ca",
    "create_node_keypair",
    "create_server_certificate",
    "genesis_hash",
    "load_certificate",
    "load_certificate_authority",
    "load_node_private_key",
    "load_node_public_key",
    "load_private_key",
    "private_key_to_pem",
    "verify_audit_log",
    "write_private",
    "write_public",
]
