"""Aggregator side of crossfed: the Flower ServerApp, keyless encrypted aggregation,
audit log, checkpoints, and provisioning of kits, keys and certificates.

Import from this package, not from its modules: the sorted ``__all__`` below is
the public API.
"""

from federation.audit import (
    AUDIT_FORMAT_VERSION,
    AuditLog,
    VerifyReport,
    audit_head,
    genesis_hash,
    verify_audit_log,
)
from federation.audit_record import AuditRecord, DroppedNode
from federation.checkpoint import CHECKPOINT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from federation.deploy import (
    AggregatorResult,
    SuperLink,
    read_status,
    run_aggregator,
)
from federation.dp import (
    EPSILON_SCOPE,
    effective_noise_multiplier,
    epsilon_against_collusion,
    epsilon_scope,
    epsilon_spent,
    noise_multiplier_for_epsilon,
)
from federation.errors import (
    AuditLogError,
    AuditTamperedError,
    CheckpointError,
    FederationError,
    QuorumNotReachedError,
)
from federation.final import deliver_final_model
from federation.kit import (
    AggregatorKit,
    create_kits,
    parse_institution,
)
from federation.masked_strategy import MaskedAggregation
from federation.measured import (
    NOT_MEASURED,
    CpuMeter,
    MeasuredStrategy,
    RoundMeasurement,
    SumCounter,
    content_bytes,
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
    load_private_key,
    private_key_to_pem,
    write_private,
    write_public,
)
from federation.replies import error_reason
from federation.resume import (
    OffsetRounds,
    ReleasedRound,
    ResumePoint,
    prior_noise_multipliers,
    released_rounds,
    resume_point,
)
from federation.server_app import RunOutcome, build_server_app, check_settings, run_federation
from federation.strategy import AUDIT_LOG, EVALUATION_AUDIT, EncryptedAggregation
from federation.summing import SumOutcome, sum_compatible

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "AUDIT_LOG",
    "CHECKPOINT_VERSION",
    "EPSILON_SCOPE",
    "EVALUATION_AUDIT",
    "NOT_MEASURED",
    "AggregatorKit",
    "AggregatorResult",
    "AuditLog",
    "AuditLogError",
    "AuditRecord",
    "AuditTamperedError",
    "CertificateAuthority",
    "Checkpoint",
    "CheckpointError",
    "CpuMeter",
    "DroppedNode",
    "EncryptedAggregation",
    "FederationError",
    "MaskedAggregation",
    "MeasuredStrategy",
    "NodeKeyPair",
    "OffsetRounds",
    "QuorumNotReachedError",
    "ReleasedRound",
    "ResumePoint",
    "RoundMeasurement",
    "RunOutcome",
    "SecretBytes",
    "ServerCredentials",
    "SumCounter",
    "SumOutcome",
    "SuperLink",
    "VerifyReport",
    "audit_head",
    "build_server_app",
    "certificate_to_pem",
    "check_settings",
    "content_bytes",
    "create_ca",
    "create_kits",
    "create_node_keypair",
    "create_server_certificate",
    "deliver_final_model",
    "effective_noise_multiplier",
    "epsilon_against_collusion",
    "epsilon_scope",
    "epsilon_spent",
    "error_reason",
    "genesis_hash",
    "load_certificate",
    "load_certificate_authority",
    "load_checkpoint",
    "load_private_key",
    "noise_multiplier_for_epsilon",
    "parse_institution",
    "prior_noise_multipliers",
    "private_key_to_pem",
    "read_status",
    "released_rounds",
    "resume_point",
    "run_aggregator",
    "run_federation",
    "save_checkpoint",
    "sum_compatible",
    "verify_audit_log",
    "write_private",
    "write_public",
]
