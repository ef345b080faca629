"""The protocol layer: what the institution side and the aggregator side agree on.

``clients/`` (institutions) and ``federation/`` (the aggregator) are peers: neither
imports the other. Both import this small layer: the record keys of the messages
(:mod:`~crossfed.protocol.records`), a run's typed settings
(:class:`FederationSettings`), the ciphertext-to-record adaptor, the kit manifest
(``federation.yaml``, with every institution's agreement public key) and the
SuperNode key helpers, the fixed error codes an institution may return, and the
supervision of Flower's processes. It imports neither side, nor torch, nor the
simulation harness.

Import from this package, not from its modules: the sorted ``__all__`` below is
the public API.
"""

from crossfed.protocol.agreement import agreement_key_hex, check_agreement_keys
from crossfed.protocol.app_pin import (
    BundleError,
    app_pin,
    build_app_bundle,
    fab_digest,
    project_root,
)
from crossfed.protocol.codes import (
    REASON_PREFIX,
    ErrorCode,
    reason_of,
)
from crossfed.protocol.errors import (
    ConfigurationError,
    ProtocolError,
    ProvisioningError,
)
from crossfed.protocol.manifest import (
    AGGREGATOR_DIR,
    AGREEMENT_KEY,
    CA_CERT,
    MANIFEST,
    MANIFEST_VERSION,
    NODE_KEY,
    NODE_PUB,
    NODES_DIR,
    PUBLIC_CONTEXT,
    SCHEMA,
    SECRET_CONTEXT,
    SERVER_CERT,
    SERVER_KEY,
    FederationManifest,
    KitInstitution,
    check_schema_pin,
    load_manifest,
    parse_address,
    require_kit_file,
)
from crossfed.protocol.masking import (
    CONTRIBUTORS_KEY,
    NAME_KEY,
    PHASE_REMASK,
    PHASE_REVEAL,
    PHASE_ROLL_CALL,
    PURPOSE_KEY,
    PURPOSE_TRAIN,
    PURPOSES,
    SELF_SEED_KEY,
    SELF_SEEDS_KEY,
)
from crossfed.protocol.node_keys import (
    load_node_private_key,
    load_node_public_key,
    node_key_fingerprint,
    read_kit_file,
    require_p384_private,
)
from crossfed.protocol.processes import (
    descendants,
    exit_code_from_log,
    flower_env,
    flower_executable,
    free_port,
    spawn,
    stop_tree,
    toml_string,
)
from crossfed.protocol.records import (
    ARRAYS_KEY,
    AUDIT_HEAD_KEY,
    CIPHERTEXT_KEY,
    CONFIG_KEY,
    CPU_METRIC,
    DP_SHARES_KEY,
    EVALUATION_CIPHERTEXT_KEY,
    EVALUATION_FILE,
    EVALUATION_KEY,
    EVALUATION_METRICS,
    FINAL_QUERY,
    METRICS_KEY,
    MODE_KEY,
    NUM_EXAMPLES_KEY,
    PHASE_KEY,
    PHASE_STATS,
    ROUND_KEY,
    SESSION_KEY,
    STATS_CIPHERTEXT_KEY,
    STATS_KEY,
)
from crossfed.protocol.settings import (
    MODELS,
    MODES,
    FederationSettings,
)
from crossfed.protocol.wire import (
    ciphertext_record,
    read_ciphertext,
    sealed_reply,
)

__all__ = [
    "AGGREGATOR_DIR",
    "AGREEMENT_KEY",
    "ARRAYS_KEY",
    "AUDIT_HEAD_KEY",
    "CA_CERT",
    "CIPHERTEXT_KEY",
    "CONFIG_KEY",
    "CONTRIBUTORS_KEY",
    "CPU_METRIC",
    "DP_SHARES_KEY",
    "EVALUATION_CIPHERTEXT_KEY",
    "EVALUATION_FILE",
    "EVALUATION_KEY",
    "EVALUATION_METRICS",
    "FINAL_QUERY",
    "MANIFEST",
    "MANIFEST_VERSION",
    "METRICS_KEY",
    "MODELS",
    "MODES",
    "MODE_KEY",
    "NAME_KEY",
    "NODES_DIR",
    "NODE_KEY",
    "NODE_PUB",
    "NUM_EXAMPLES_KEY",
    "PHASE_KEY",
    "PHASE_REMASK",
    "PHASE_REVEAL",
    "PHASE_ROLL_CALL",
    "PHASE_STATS",
    "PUBLIC_CONTEXT",
    "PURPOSES",
    "PURPOSE_KEY",
    "PURPOSE_TRAIN",
    "REASON_PREFIX",
    "ROUND_KEY",
    "SCHEMA",
    "SECRET_CONTEXT",
    "SELF_SEEDS_KEY",
    "SELF_SEED_KEY",
    "SERVER_CERT",
    "SERVER_KEY",
    "SESSION_KEY",
    "STATS_CIPHERTEXT_KEY",
    "STATS_KEY",
    "BundleError",
    "ConfigurationError",
    "ErrorCode",
    "FederationManifest",
    "FederationSettings",
    "KitInstitution",
    "ProtocolError",
    "ProvisioningError",
    "agreement_key_hex",
    "app_pin",
    "build_app_bundle",
    "check_agreement_keys",
    "check_schema_pin",
    "ciphertext_record",
    "descendants",
    "exit_code_from_log",
    "fab_digest",
    "flower_env",
    "flower_executable",
    "free_port",
    "load_manifest",
    "load_node_private_key",
    "load_node_public_key",
    "node_key_fingerprint",
    "parse_address",
    "project_root",
    "read_ciphertext",
    "read_kit_file",
    "reason_of",
    "require_kit_file",
    "require_p384_private",
    "sealed_reply",
    "spawn",
    "stop_tree",
    "toml_string",
]
