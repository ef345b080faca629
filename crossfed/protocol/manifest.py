"""``federation.yaml``: what every kit says about its federation.

The manifest is public: the federation's name, the address institutions
dial, the run's settings, and each institution's name, jurisdiction, the
fingerprint of its SuperNode key and its agreement public key (X25519, for the
pair keys of masked updates; :mod:`crossfed.protocol.agreement`). The same
file goes into every kit, so an institution can see who else takes part and an
operator can check which keys the SuperLink accepts.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import crypto
from crossfed.protocol.agreement import check_agreement_keys
from crossfed.protocol.errors import ProvisioningError

__all__ = [
    "AGGREGATOR_DIR",
    "AGREEMENT_KEY",
    "CA_CERT",
    "MANIFEST",
    "MANIFEST_VERSION",
    "NODES_DIR",
    "NODE_KEY",
    "NODE_PUB",
    "PUBLIC_CONTEXT",
    "SCHEMA",
    "SECRET_CONTEXT",
    "SERVER_CERT",
    "SERVER_KEY",
    "FederationManifest",
    "KitInstitution",
    "check_schema_pin",
    "load_manifest",
    "parse_address",
    "require_kit_file",
]

MANIFEST_VERSION = 1
AGGREGATOR_DIR = "aggregator"
CA_CERT = "ca.crt"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
PUBLIC_CONTEXT = "public.ctx"
SECRET_CONTEXT = "secret.ctx"
NODE_KEY = "node.key"
NODE_PUB = "node.pub"
NODES_DIR = "nodes"
#: An institution's X25519 agreement private key (32 raw bytes, 0600): its own kit only.
AGREEMENT_KEY = "agreement.key"
MANIFEST = "federation.yaml"
SCHEMA = "schema.yaml"

# Run-config keys the manifest may set under ``training`` (the rest come from
# the manifest's own fields or from the deployment: paths, out-dir).
_TRAINING_KEYS = frozenset(
    {
        "mode",
        "model",
        "hidden",
        "epochs",
        "batch-size",
        "learning-rate",
        "proximal-mu",
        "normalise-steps",
        "seed",
        "test-fraction",
        "max-update-bytes",
        "max-update-norm",
        "max-weight",
        "model-shapes",
        "dp-clip",
        "dp-noise-multiplier",
        "dp-delta",
        "dpsgd-epsilon",
        "dpsgd-clip",
        "dpsgd-batch-size",
        "dpsgd-learning-rate",
    }
)


def parse_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) and check the port."""
    host, sep, port_text = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        raise ProvisioningError(f"aggregator address must look like HOST:PORT, got {address!r}")
    if not 0 < int(port_text) < 65536:
        raise ProvisioningError(f"port {port_text} of {address!r} is outside 1-65535")
    return host, int(port_text)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


@dataclass(frozen=True)
class KitInstitution:
    """An authorised institution: name, jurisdiction, SuperNode key fingerprint, agreement key.

    ``agreement_key`` is the X25519 public key (64 lowercase hex digits), or
    ``""`` in a kit made before agreement keys.
    """

    name: str
    jurisdiction: str | None
    node_key_sha256: str
    agreement_key: str = ""


@dataclass(frozen=True)
class FederationManifest:
    """The federation as every kit describes it (``federation.yaml``)."""

    name: str
    aggregator_address: str
    rounds: int
    preset: str
    min_institutions: int
    round_timeout: float
    context_fingerprint: str
    institutions: tuple[KitInstitution, ...]
    training: dict[str, int | float | str] = field(default_factory=dict)
    #: Digest of the app bundle institutions accept (:func:`crossfed.protocol.fab_digest`).
    app_pin: str = ""
    #: SHA-256 (hex) of the kit's ``schema.yaml``; institutions check it on load.
    schema_sha256: str = ""

    def __post_init__(self) -> None:
        parse_address(self.aggregator_address)
        if not self.name.strip():
            raise ProvisioningError("the federation needs a name")
        if self.rounds < 1:
            raise ProvisioningError(f"rounds must be at least 1, got {self.rounds}")
        if not 1 <= self.min_institutions <= len(self.institutions):
            raise ProvisioningError(
                f"min-institutions must be between 1 and {len(self.institutions)}, "
                f"got {self.min_institutions}"
            )
        if self.round_timeout <= 0:
            raise ProvisioningError(f"round-timeout must be positive, got {self.round_timeout}")
        if self.preset not in crypto.PRESETS:
            raise ProvisioningError(
                f"unknown preset {self.preset!r}; choose one of {', '.join(sorted(crypto.PRESETS))}"
            )
        names = [i.name for i in self.institutions]
        if len(set(names)) != len(names):
            raise ProvisioningError(f"federation.yaml names an institution twice: {names}")
        check_agreement_keys(
            {i.name: i.agreement_key for i in self.institutions}, required=self.masked
        )
        unknown = sorted(set(self.training) - _TRAINING_KEYS)
        if unknown:
            raise ProvisioningError(
                f"training settings {unknown} are not allowed in a kit; "
                f"allowed: {', '.join(sorted(_TRAINING_KEYS))}"
            )

    @property
    def masked(self) -> bool:
        """Whether the preset masks updates, so that every institution needs an agreement key."""
        return crypto.PRESETS[self.preset].codec == "masked"

    def agreement_keys(self) -> dict[str, bytes]:
        """Every institution's raw agreement public key by name; empty in a kit without keys."""
        return check_agreement_keys(
            {i.name: i.agreement_key for i in self.institutions}, required=self.masked
        )

    @property
    def host(self) -> str:
        """The aggregator's host name or address."""
        return parse_address(self.aggregator_address)[0]

    @property
    def port(self) -> int:
        """The SuperLink's Fleet API port."""
        return parse_address(self.aggregator_address)[1]

    def dial_address(self) -> str:
        """The address a SuperNode passes to ``--superlink``."""
        host = f"[{self.host}]" if _is_ipv6(self.host) else self.host
        return f"{host}:{self.port}"

    def run_config(
        self, *, public_context: str, schema: str, out_dir: str
    ) -> dict[str, int | float | str]:
        """The Flower run config the aggregator submits (dashed keys)."""
        config: dict[str, int | float | str] = {"mode": "encrypted", **self.training}
        config.update(
            {
                "rounds": self.rounds,
                "min-institutions": self.min_institutions,
                "institutions": len(self.institutions),
                "round-timeout": float(self.round_timeout),
                "public-context": public_context,
                "schema": schema,
                "out-dir": out_dir,
            }
        )
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML."""
        return {
            "version": MANIFEST_VERSION,
            "federation": self.name,
            "aggregator-address": self.aggregator_address,
            "rounds": self.rounds,
            "preset": self.preset,
            "min-institutions": self.min_institutions,
            "round-timeout": self.round_timeout,
            "context-fingerprint": self.context_fingerprint,
            "training": dict(self.training),
            "app-pin": self.app_pin,
            "schema-sha256": self.schema_sha256,
            "institutions": [_institution_entry(i) for i in self.institutions],
        }

    def to_yaml(self) -> str:
        """``federation.yaml``'s text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> FederationManifest:
        """Parse :meth:`to_dict`'s output; a missing or mistyped key is named.

        Raises
        ------
        ProvisioningError
            The data is not a manifest this version reads.
        """
        if not isinstance(data, Mapping):
            raise ProvisioningError("federation.yaml must be a mapping")
        if data.get("version") != MANIFEST_VERSION:
            raise ProvisioningError(
                f"federation.yaml version {data.get('version')!r} is not {MANIFEST_VERSION}"
            )
        try:
            institutions = tuple(
                KitInstitution(
                    str(entry["name"]),
                    None if entry.get("jurisdiction") is None else str(entry["jurisdiction"]),
                    str(entry["node-key-sha256"]),
                    str(entry.get("agreement-key") or ""),
                )
                for entry in data["institutions"]
            )
            training = data.get("training") or {}
            if not isinstance(training, Mapping):
                raise ProvisioningError("federation.yaml: training must be a mapping")
            return cls(
                name=str(data["federation"]),
                aggregator_address=str(data["aggregator-address"]),
                rounds=int(data["rounds"]),
                preset=str(data["preset"]),
                min_institutions=int(data["min-institutions"]),
                round_timeout=float(data["round-timeout"]),
                context_fingerprint=str(data["context-fingerprint"]),
                institutions=institutions,
                training={str(k): v for k, v in training.items()},
                app_pin=str(data.get("app-pin") or ""),
                schema_sha256=str(data.get("schema-sha256") or ""),
            )
        except KeyError as exc:
            raise ProvisioningError(f"federation.yaml lacks {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ProvisioningError(f"federation.yaml has a bad value: {exc}") from exc


def _institution_entry(institution: KitInstitution) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": institution.name,
        "jurisdiction": institution.jurisdiction,
        "node-key-sha256": institution.node_key_sha256,
    }
    if institution.agreement_key:  # a kit made before agreement keys lists none
        entry["agreement-key"] = institution.agreement_key
    return entry


def require_kit_file(path: Path) -> Path:
    """``path`` if it is a file, else a :class:`ProvisioningError` naming what the kit lacks."""
    if not path.is_file():
        raise ProvisioningError(f"the kit lacks {path.name} ({path})")
    return path


def check_schema_pin(schema: Path, manifest: FederationManifest) -> None:
    """Refuse a kit whose ``schema.yaml`` is not the one its manifest pins (SHA-256).

    Raises
    ------
    ProvisioningError
        The manifest pins no schema (a kit from before the pin: recreate it), the
        file cannot be read, or its hash differs.
    """
    if not manifest.schema_sha256:
        raise ProvisioningError(
            f"{MANIFEST} pins no schema hash: recreate the kits with `crossfed kit create`"
        )
    try:
        digest = hashlib.sha256(schema.read_bytes()).hexdigest()
    except OSError as exc:
        raise ProvisioningError(f"cannot read {schema}: {exc.strerror}") from exc
    if digest != manifest.schema_sha256:
        raise ProvisioningError(f"{schema} is not the schema {MANIFEST} pins (SHA-256 differs)")


def load_manifest(folder: Path) -> FederationManifest:
    """Read and check a kit folder's ``federation.yaml``.

    Raises
    ------
    ProvisioningError
        The folder is not a kit, or its manifest is missing or invalid.
    """
    if not folder.is_dir():
        raise ProvisioningError(f"{folder} is not a kit folder")
    try:
        data: Any = yaml.safe_load(require_kit_file(folder / MANIFEST).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ProvisioningError(f"cannot read {folder / MANIFEST}: {exc}") from exc
    return FederationManifest.from_dict(data)
