"""Provisioning kits: one folder for the aggregator, one per institution.

:func:`create_kits` makes everything a deployment needs, with the
``cryptography`` package and :mod:`crypto`:

=====================  ==========================================  =========
file                   what                                        mode
=====================  ==========================================  =========
aggregator/ca.crt      the federation CA's certificate             0644
aggregator/server.pem  the SuperLink's TLS certificate (SANs: the   0644
                       address's host, 127.0.0.1, localhost)
aggregator/server.key  its private key                             0600
aggregator/public.ctx  the public CKKS context (no secret key)     0644
aggregator/nodes/N.pub each authorised institution's node key      0644
NAME/ca.crt            the CA certificate                          0644
NAME/node.key          the institution's SuperNode key (OpenSSH)   0600
NAME/node.pub          its public half                             0644
NAME/secret.ctx        the shared secret CKKS context              0600
NAME/agreement.key     its own X25519 agreement private key        0600
                       (32 raw bytes; the public half of every
                       institution's is in federation.yaml)
*/federation.yaml      :class:`FederationManifest`                 0644
*/schema.yaml          the federation schema                       0644
=====================  ==========================================  =========

The CA's private key is used to sign the server certificate and then
discarded: nobody, the operator included, can mint another certificate the
institutions would trust. Nothing secret to the institutions goes into the
aggregator's folder; :class:`AggregatorKit` refuses a folder holding a secret
context or an agreement private key. Each institution's agreement key
(:class:`crypto.AgreementKey`, for the pair keys of masked updates) goes into
its own folder only; the manifest lists every public half.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import crypto
from crossfed.protocol import (
    AGGREGATOR_DIR,
    AGREEMENT_KEY,
    CA_CERT,
    MANIFEST,
    NODE_KEY,
    NODE_PUB,
    NODES_DIR,
    PUBLIC_CONTEXT,
    SCHEMA,
    SECRET_CONTEXT,
    SERVER_CERT,
    SERVER_KEY,
    BundleError,
    FederationManifest,
    FederationSettings,
    KitInstitution,
    ProvisioningError,
    agreement_key_hex,
    app_pin,
    check_agreement_keys,
    check_schema_pin,
    load_manifest,
    load_node_public_key,
    node_key_fingerprint,
    parse_address,
    project_root,
    require_kit_file,
)
from federation.pki import (
    SecretBytes,
    certificate_to_pem,
    create_ca,
    create_node_keypair,
    create_server_certificate,
    private_key_to_pem,
    write_private,
    write_public,
)
from federation.strategy import averaging_preset_problem

__all__ = [
    "AggregatorKit",
    "create_kits",
    "default_preset",
    "dial_host_problem",
    "parse_institution",
]

#: Fewest institutions a masked preset sums (crypto's floor for a masked aggregate).
MIN_MASKED = 3
#: The default for 3 to 16 institutions: no party, nor the aggregator with one
#: institution, reads one institution's update (docs/masks.md).
MASKED_DEFAULT = "masked16"


def default_preset(institutions: int, *, distributed_dp: bool = False) -> str:
    """The federation's default preset: ``masked16`` for 3 to 16 institutions, else ``lean``.

    Masks need at least three institutions in every sum, and ``masked16``'s
    lanes hold at most 16; outside that range updates are encrypted unmasked,
    and so they are with distributed DP (its noise shares are averaged with
    equal weights, masked deltas by row count: not combined yet).
    """
    masked = MIN_MASKED <= institutions <= crypto.PRESETS[MASKED_DEFAULT].max_institutions
    return MASKED_DEFAULT if masked and not distributed_dp else crypto.DEFAULT_PRESET


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOST = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
#: Names the server certificate carries besides the kit's host: the operator's own
#: ``flwr`` CLI dials the SuperLink's Control API on this machine (127.0.0.1).
LOCAL_NAMES = ("127.0.0.1", "localhost")


def dial_host_problem(host: str) -> str | None:
    """Why institutions could not dial ``host`` (and a certificate could not name it), or None.

    A wildcard address (``0.0.0.0``, ``::``) is where a server listens, never
    where a client connects; anything else must be an IP address or a DNS name.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.match(host) or len(host) > 253:
            return f"{host!r} is neither an IP address nor a DNS name"
        return None
    if address.is_unspecified:
        return (
            f"{host} is a listening address, not one institutions can dial: give the "
            "aggregator's DNS name or IP (crossfed aggregator --listen binds 0.0.0.0)"
        )
    if address.is_multicast:
        return f"{host} is a multicast address"
    return None


def parse_institution(spec: str) -> tuple[str, str | None]:
    """Split ``NAME[=JURISDICTION]``; the name becomes a folder, so it is restricted."""
    name, _, jurisdiction = spec.partition("=")
    name, jurisdiction = name.strip(), jurisdiction.strip()
    if not _NAME.match(name) or name == AGGREGATOR_DIR:
        raise ProvisioningError(
            f"institution name {name!r} must be 1-63 letters, digits, '.', '_' or '-', "
            f"start with a letter or digit, and not be {AGGREGATOR_DIR!r}"
        )
    return name, jurisdiction or None


def create_kits(
    out: Path,
    *,
    federation: str,
    aggregator_address: str,
    institutions: Sequence[tuple[str, str | None]],
    schema: Path,
    preset: str | None = None,
    rounds: int = FederationSettings.rounds,
    min_institutions: int | None = None,
    round_timeout: float = FederationSettings.round_timeout,
    training: Mapping[str, int | float | str] | None = None,
    valid_days: int = 365,
    pin: str | None = None,
    agreement_keys: Mapping[str, bytes] | None = None,
) -> FederationManifest:
    """Create ``out/aggregator`` and ``out/NAME`` for every institution.

    Parameters
    ----------
    out
        Parent folder; the kit folders must not exist yet.
    federation
        The federation's name (the CA's common name too).
    aggregator_address
        ``HOST:PORT`` institutions dial; HOST becomes the server certificate's SAN.
    institutions
        ``(name, jurisdiction)`` pairs, names distinct.
    schema
        The federation schema (YAML), copied into every kit unchanged.
    preset, rounds, min_institutions, round_timeout, training
        Run settings recorded in ``federation.yaml``; ``preset`` defaults to
        :func:`default_preset` for the institution count; ``min_institutions``
        defaults to all institutions; ``training`` holds run-config overrides
        such as ``{"epochs": 2, "model": "logistic"}``.
    pin
        The app pin recorded in ``federation.yaml``: the digest of the app bundle
        institutions accept. Default: the bundle ``flwr run`` builds from this
        crossfed's source tree, which the aggregator submits.
    agreement_keys
        Every institution's agreement *public* key (raw 32 bytes), generated by
        the institution itself (``crossfed kit agreement-key``): the kits then
        hold no agreement private key, and whoever creates them never sees one.
        Default: generate one per institution here and put its private half in
        its kit (the creator of the kits then knows every pair key).

    Raises
    ------
    ProvisioningError
        On a bad name, address or count, a preset that cannot average this many
        institutions, an existing kit folder, or a write failure.
    """
    names = [name for name, _ in institutions]
    if not names:
        raise ProvisioningError("a federation needs at least one institution")
    distributed_dp = float((training or {}).get("dp-clip", 0.0)) > 0
    preset = preset or default_preset(len(names), distributed_dp=distributed_dp)
    if len(set(names)) != len(names):
        raise ProvisioningError(f"institution names must be distinct, got {names}")
    host, _ = parse_address(aggregator_address)
    if problem := dial_host_problem(host):
        raise ProvisioningError(f"aggregator address {aggregator_address!r}: {problem}")
    if preset not in crypto.PRESETS:
        raise ProvisioningError(
            f"unknown preset {preset!r}; choose one of {', '.join(sorted(crypto.PRESETS))}"
        )
    problem = averaging_preset_problem(crypto.PRESETS[preset])
    if problem is not None:
        raise ProvisioningError(problem)
    chosen = crypto.PRESETS[preset]
    if chosen.codec == "masked" and not MIN_MASKED <= len(names) <= chosen.max_institutions:
        raise ProvisioningError(
            f"preset {preset} masks updates of {MIN_MASKED} to {chosen.max_institutions} "
            f"institutions, not {len(names)}: choose another preset (lean)"
        )
    if chosen.codec == "masked" and distributed_dp:
        raise ProvisioningError(
            f"preset {preset} does not combine with distributed DP (--dp-clip) yet: give "
            "--preset lean, or protect each customer with DP-SGD (--dpsgd-epsilon)"
        )
    folders = [out / AGGREGATOR_DIR, *(out / name for name in names)]
    taken = [str(f) for f in folders if f.exists()]
    if taken:
        raise ProvisioningError(f"kit folders exist already: {', '.join(taken)}")
    try:
        schema_bytes = schema.read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"cannot read the schema {schema}: {exc.strerror}") from exc
    if pin is None:
        try:
            pin = app_pin(project_root())
        except BundleError as exc:
            raise ProvisioningError(f"cannot pin the app bundle: {exc}") from exc

    secret = crypto.generate_secret_context(preset)
    keys = {name: create_node_keypair() for name in names}
    generated = {name: crypto.AgreementKey.generate() for name in names if not agreement_keys}
    publics = _agreement_publics(names, agreement_keys, secret.fingerprint) or {
        name: key.public_bytes() for name, key in generated.items()
    }
    manifest = FederationManifest(
        name=federation,
        aggregator_address=aggregator_address,
        rounds=rounds,
        preset=preset,
        min_institutions=min_institutions if min_institutions is not None else len(names),
        round_timeout=round_timeout,
        context_fingerprint=secret.fingerprint,
        institutions=tuple(
            KitInstitution(
                name,
                jurisdiction,
                node_key_fingerprint(keys[name].public_openssh),
                agreement_key_hex(publics[name]),
            )
            for name, jurisdiction in institutions
        ),
        training=dict(training or {}),
        app_pin=pin,
        schema_sha256=hashlib.sha256(schema_bytes).hexdigest(),
    )
    ca = create_ca(_common_name(federation), valid_days=max(valid_days, 1))
    server = create_server_certificate(ca, [host, *LOCAL_NAMES], valid_days=valid_days)
    ca_pem = certificate_to_pem(ca.cert)
    manifest_text = manifest.to_yaml().encode()

    created: list[Path] = []
    try:
        for folder in folders:
            folder.mkdir(mode=0o700, parents=True)
            created.append(folder)
            write_public(folder / CA_CERT, ca_pem)
            write_public(folder / MANIFEST, manifest_text)
            write_public(folder / SCHEMA, schema_bytes)
        agg = out / AGGREGATOR_DIR
        write_public(agg / SERVER_CERT, certificate_to_pem(server.cert))
        write_private(agg / SERVER_KEY, private_key_to_pem(server.key))
        secret.public().save(agg / PUBLIC_CONTEXT)
        (agg / NODES_DIR).mkdir(mode=0o755)
        for name, pair in keys.items():
            write_public(agg / NODES_DIR / f"{name}.pub", pair.public_openssh)
            pair.write(out / name / NODE_KEY, out / name / NODE_PUB)
            secret.save(out / name / SECRET_CONTEXT)
            if name in generated:
                private = SecretBytes(generated[name].private_bytes())
                write_private(out / name / AGREEMENT_KEY, private)
    except (OSError, crypto.CryptoError, ProvisioningError) as exc:
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, ProvisioningError):
            raise
        raise ProvisioningError(f"cannot write the kits: {exc}") from exc
    return manifest


def _common_name(federation: str) -> str:
    name = f"{federation} federation CA".strip()
    return name if len(name) <= 64 else name[:64]


@dataclass(frozen=True)
class AggregatorKit:
    """The aggregator's kit folder, checked on load (:meth:`load`)."""

    path: Path
    manifest: FederationManifest
    node_keys: dict[str, Path] = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> AggregatorKit:
        """Load and check: files present, no institution secret, node keys match the manifest.

        Raises
        ------
        ProvisioningError
            A file is missing or inconsistent, or a secret context or an
            agreement private key sits in the folder.
        """
        folder = path.resolve()
        manifest = load_manifest(folder)
        for name in (CA_CERT, SERVER_CERT, SERVER_KEY, PUBLIC_CONTEXT, SCHEMA):
            require_kit_file(folder / name)
        if (folder / SECRET_CONTEXT).exists():
            raise ProvisioningError(
                f"{folder} holds {SECRET_CONTEXT}: the aggregator must never hold the secret key"
            )
        if (folder / AGREEMENT_KEY).exists():
            raise ProvisioningError(
                f"{folder} holds {AGREEMENT_KEY}: the aggregator must never hold an "
                "institution's agreement private key"
            )
        try:
            public = crypto.PublicContext.load(folder / PUBLIC_CONTEXT)
        except crypto.CryptoError as exc:
            raise ProvisioningError(f"{folder / PUBLIC_CONTEXT}: {exc}") from exc
        if public.fingerprint != manifest.context_fingerprint:
            raise ProvisioningError("public.ctx does not match the manifest's context fingerprint")
        check_schema_pin(folder / SCHEMA, manifest)
        keys: dict[str, Path] = {}
        for institution in manifest.institutions:
            key_path = require_kit_file(folder / NODES_DIR / f"{institution.name}.pub")
            load_node_public_key(key_path)
            if node_key_fingerprint(key_path.read_bytes()) != institution.node_key_sha256:
                raise ProvisioningError(
                    f"{key_path} does not match {institution.name}'s fingerprint in {MANIFEST}"
                )
            keys[institution.name] = key_path
        return cls(folder, manifest, keys)

    @property
    def ca_cert(self) -> Path:
        """The CA certificate."""
        return self.path / CA_CERT

    @property
    def server_cert(self) -> Path:
        """The SuperLink's TLS certificate."""
        return self.path / SERVER_CERT

    @property
    def server_key(self) -> Path:
        """The SuperLink's TLS private key."""
        return self.path / SERVER_KEY

    @property
    def public_context(self) -> Path:
        """The public CKKS context."""
        return self.path / PUBLIC_CONTEXT

    @property
    def schema(self) -> Path:
        """The federation schema."""
        return self.path / SCHEMA


def _agreement_publics(
    names: Sequence[str], given: Mapping[str, bytes] | None, fingerprint: str
) -> dict[str, bytes]:
    """The institutions' own agreement public keys, checked; empty when none are given.

    Raises
    ------
    ProvisioningError
        Keys missing or extra for some names, listed twice, malformed or of low
        order (no pair key could be derived with them).
    """
    if not given:
        return {}
    missing, extra = sorted(set(names) - set(given)), sorted(set(given) - set(names))
    if missing or extra:
        raise ProvisioningError(
            "agreement keys must be given for exactly the institutions: "
            + "; ".join(
                part
                for part in (
                    f"missing for {', '.join(missing)}" if missing else "",
                    f"given for unknown {', '.join(extra)}" if extra else "",
                )
                if part
            )
        )
    listed = {name: agreement_key_hex(given[name]) for name in names}
    keys = check_agreement_keys(listed, required=True)
    probe = crypto.AgreementKey.generate()
    for name, public in keys.items():
        try:
            probe.pair_key(name + "\x00", name, public, fingerprint)
        except crypto.CryptoError as exc:
            raise ProvisioningError(f"the agreement key of {name!r} cannot be used: {exc}") from exc
    return keys
