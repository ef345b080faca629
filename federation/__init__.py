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
from federation.checkpoint import CHECKPOINT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from federation.constants import (
    ARRAYS_KEY,
    CIPHERTEXT_KEY,
    CONFIG_KEY,
    DP_SHARES_KEY,
    METRICS_KEY,
    MODE_KEY,
    NUM_EXAMPLES_KEY,
    PHASE_KEY,
    PHASE_STATS,
    ROUND_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
)
from federation.dp import effective_noise_multiplier, epsilon_spent, noise_multiplier_for_epsilon
from federation.errors import (
    AuditLogError,
    AuditTamperedError,
    CheckpointError,
    ConfigurationError,
    FederationError,
    ProvisioningError,
    QuorumNotReachedError,
)
from federation.measured import CPU_METRIC, MeasuredStrategy, RoundMeasurement, content_bytes
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
from federation.server_app import RunOutcome, build_server_app, run_federation
from federation.settings import MODES, FederationSettings
from federation.strategy import EncryptedAggregation, ciphertext_record, read_ciphertext

__all__ = [
    "ARRAYS_KEY",
    "AUDIT_FORMAT_VERSION",
    "CHECKPOINT_VERSION",
    "CIPHERTEXT_KEY",
    "CONFIG_KEY",
    "CPU_METRIC",
    "DP_SHARES_KEY",
    "METRICS_KEY",
    "MODES",
    "MODE_KEY",
    "NUM_EXAMPLES_KEY",
    "PHASE_KEY",
    "PHASE_STATS",
    "ROUND_KEY",
    "STATS_CIPHERTEXT_KEY",
    "STATS_KEY",
    "AuditLog",
    "AuditLogError",
    "AuditRecord",
    "AuditTamperedError",
    "CertificateAuthority",
    "Checkpoint",
    "CheckpointError",
    "ConfigurationError",
    "DroppedNode",
    "EncryptedAggregation",
    "FederationError",
    "FederationSettings",
    "MeasuredStrategy",
    "NodeKeyPair",
    "ProvisioningError",
    "QuorumNotReachedError",
    "RoundMeasurement",
    "RunOutcome",
    "SecretBytes",
    "ServerCredentials",
    "VerifyReport",
    "build_server_app",
    "certificate_to_pem",
    "ciphertext_record",
    "content_bytes",
    "create_ca",
    "create_node_keypair",
    "create_server_certificate",
    "effective_noise_multiplier",
    "epsilon_spent",
    "genesis_hash",
    "load_certificate",
    "load_certificate_authority",
    "load_checkpoint",
    "load_node_private_key",
    "load_node_public_key",
    "load_private_key",
    "noise_multiplier_for_epsilon",
    "private_key_to_pem",
    "read_ciphertext",
    "run_federation",
    "save_checkpoint",
    "verify_audit_log",
    "write_private",
    "write_public",
]
