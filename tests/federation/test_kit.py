"""Provisioning kits: layout, file modes, no secret in the aggregator's folder, refusals."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509

import crypto
from clients import InstitutionKit
from crossfed.protocol import (
    FederationManifest,
    ProvisioningError,
    load_node_private_key,
    load_node_public_key,
    node_key_fingerprint,
)
from federation import (
    AggregatorKit,
    create_kits,
    load_certificate,
    parse_institution,
)
from federation.kit import default_preset

SCHEMA = b"version: 1\ntarget:\n  column: y\n  positive: ['1']\n"


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kits")
    (root / "schema.yaml").write_bytes(SCHEMA)
    create_kits(
        root / "out",
        federation="asean-sme",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-sg", "SG"), ("bank-id", "ID"), ("lender-br", None)],
        schema=root / "schema.yaml",
        preset="lean",
        rounds=2,
        training={"epochs": 1},
    )
    return root / "out"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_modes(kits: Path) -> None:
    agg = kits / "aggregator"
    assert sorted(p.name for p in agg.iterdir()) == [
        "ca.crt",
        "federation.yaml",
        "nodes",
        "public.ctx",
        "schema.yaml",
        "server.key",
        "server.pem",
    ]
    assert _mode(agg / "server.key") == 0o600
    for name in ("bank-sg", "bank-id", "lender-br"):
        inst = kits / name
        assert sorted(p.name for p in inst.iterdir()) == [
            "agreement.key",
            "ca.crt",
            "federation.yaml",
            "node.key",
            "node.pub",
            "schema.yaml",
            "secret.ctx",
        ]
        assert _mode(inst / "secret.ctx") == 0o600
        assert _mode(inst / "node.key") == 0o600
        assert _mode(inst / "agreement.key") == 0o600
        assert _mode(inst) == 0o700
        assert (inst / "schema.yaml").read_bytes() == SCHEMA
        load_node_private_key(inst / "node.key")
        assert (inst / "node.pub").read_bytes() == (agg / "nodes" / f"{name}.pub").read_bytes()
        assert (inst / "ca.crt").read_bytes() == (agg / "ca.crt").read_bytes()


def test_no_secret_in_the_aggregator_folder(kits: Path) -> None:
    secret_file = (kits / "bank-sg" / "secret.ctx").read_bytes()
    secret = crypto.SecretContext.load(kits / "bank-sg" / "secret.ctx")
    key_blob = secret.tenseal_context.secret_key().data
    blob_path = kits.parent / "sk.bin"
    key_blob.save(str(blob_path))
    key_bytes = blob_path.read_bytes()
    node_keys = [(kits / n / "node.key").read_bytes() for n in ("bank-sg", "bank-id", "lender-br")]
    # The secret key's serialisation starts with a SEAL header; search for its body.
    probes = [secret_file, key_bytes[len(key_bytes) // 2 :][:4096], *node_keys]
    files = [p for p in (kits / "aggregator").rglob("*") if p.is_file()]
    assert len(files) == 9
    for path in files:
        data = path.read_bytes()
        for probe in probes:
            assert probe not in data, f"{path} holds secret material"
    public = crypto.PublicContext.load(kits / "aggregator" / "public.ctx")
    assert public.fingerprint == secret.fingerprint


def test_loaded_kits_agree(kits: Path) -> None:
    agg = AggregatorKit.load(kits / "aggregator")
    assert agg.manifest.name == "asean-sme"
    assert agg.manifest.min_institutions == 3
    assert set(agg.node_keys) == {"bank-sg", "bank-id", "lender-br"}
    inst = InstitutionKit.load(kits / "bank-id")
    assert inst.name == "bank-id"
    assert inst.manifest == agg.manifest
    juris = {i.name: i.jurisdiction for i in agg.manifest.institutions}
    assert juris == {"bank-sg": "SG", "bank-id": "ID", "lender-br": None}
    config = agg.manifest.run_config(public_context="p", schema="s", out_dir="o")
    assert config["rounds"] == 2 and config["epochs"] == 1 and config["mode"] == "encrypted"


def test_certificates_chain_and_name_the_address(kits: Path) -> None:
    ca = load_certificate(kits / "aggregator" / "ca.crt")
    server = load_certificate(kits / "aggregator" / "server.pem")
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_fingerprints_match_ssh_keygen_format(kits: Path) -> None:
    pub = (kits / "bank-sg" / "node.pub").read_bytes()
    load_node_public_key(kits / "bank-sg" / "node.pub")
    fingerprint = node_key_fingerprint(pub)
    assert fingerprint.startswith("SHA256:") and "=" not in fingerprint
    manifest = AggregatorKit.load(kits / "aggregator").manifest
    assert fingerprint in {i.node_key_sha256 for i in manifest.institutions}


def test_aggregator_kit_with_a_secret_context_is_refused(kits: Path, tmp_path: Path) -> None:
    copy = tmp_path / "aggregator"
    shutil.copytree(kits / "aggregator", copy)
    shutil.copy(kits / "bank-sg" / "secret.ctx", copy / "secret.ctx")
    with pytest.raises(ProvisioningError, match="secret"):
        AggregatorKit.load(copy)
    (copy / "secret.ctx").unlink()
    shutil.copy(kits / "bank-sg" / "secret.ctx", copy / "public.ctx")
    with pytest.raises(ProvisioningError, match="secret key"):
        AggregatorKit.load(copy)


def test_foreign_node_key_is_refused(kits: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bank-sg"
    shutil.copytree(kits / "bank-sg", copy)
    shutil.copy(kits / "aggregator" / "nodes" / "bank-id.pub", copy / "node.pub")
    with pytest.raises(ProvisioningError, match="is not the key of"):
        InstitutionKit.load(copy)
    shutil.copy(kits / "bank-id" / "node.key", copy / "node.key")
    with pytest.raises(ProvisioningError, match=r"not the agreement key .* for 'bank-id'"):
        InstitutionKit.load(copy)  # bank-id's node keys beside bank-sg's agreement key
    shutil.copy(kits / "bank-id" / "agreement.key", copy / "agreement.key")
    assert InstitutionKit.load(copy).name == "bank-id"  # the key pair names the institution
    (copy / "ca.crt").unlink()
    with pytest.raises(ProvisioningError, match=r"ca\.crt"):
        InstitutionKit.load(copy)


def test_existing_folders_are_not_overwritten(kits: Path) -> None:
    with pytest.raises(ProvisioningError, match="exist"):
        create_kits(
            kits,
            federation="again",
            aggregator_address="127.0.0.1:9092",
            institutions=[("bank-sg", "SG")],
            schema=kits / "aggregator" / "schema.yaml",
        )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("bank-a=EU", ("bank-a", "EU")), ("bank_b", ("bank_b", None)), (" c.d = SG ", ("c.d", "SG"))],
)
def test_parse_institution(spec: str, expected: tuple[str, str | None]) -> None:
    assert parse_institution(spec) == expected


@pytest.mark.parametrize("spec", ["", "../x", "aggregator", "a b", "-x=EU"])
def test_parse_institution_refuses(spec: str) -> None:
    with pytest.raises(ProvisioningError):
        parse_institution(spec)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_bytes(SCHEMA)
    base = {
        "federation": "f",
        "institutions": [("a", None), ("b", None)],
        "schema": tmp_path / "schema.yaml",
    }
    for kwargs, match in [
        ({"aggregator_address": "no-port"}, "HOST:PORT"),
        ({"aggregator_address": "h:1", "min_institutions": 3}, "min-institutions"),
        ({"aggregator_address": "h:1", "preset": "weak"}, "preset"),
        ({"aggregator_address": "h:1", "preset": "packed"}, "cannot carry a model's weights"),
        ({"aggregator_address": "h:1", "preset": "masked16"}, "3 to 16 institutions, not 2"),
        (
            {
                "aggregator_address": "h:1",
                "preset": "masked16",
                "institutions": [("a", None), ("b", None), ("c", None)],
                "training": {"dp-clip": 0.5, "dp-noise-multiplier": 1.0},
            },
            "does not combine with distributed DP",
        ),
        ({"aggregator_address": "h:1", "training": {"out-dir": "/x"}}, "not allowed"),
    ]:
        with pytest.raises(ProvisioningError, match=match):
            create_kits(tmp_path / "out", **{**base, **kwargs})  # type: ignore[arg-type]
        assert not (tmp_path / "out" / "aggregator").exists()


@pytest.mark.parametrize(("count", "expected"), [(2, "lean"), (3, "masked16"), (17, "lean")])
def test_the_default_preset_masks_updates_where_a_federation_can(
    tmp_path: Path, count: int, expected: str
) -> None:
    (tmp_path / "schema.yaml").write_bytes(SCHEMA)
    manifest = create_kits(
        tmp_path / "out",
        federation="f",
        aggregator_address="h:1",
        institutions=[(f"bank-{i}", None) for i in range(count)],
        schema=tmp_path / "schema.yaml",
        pin="sha256:" + "0" * 64,  # not this test's subject; hashing the app takes seconds
    )
    assert manifest.preset == default_preset(count) == expected
    assert default_preset(count, distributed_dp=True) == "lean"


def test_manifest_round_trips(kits: Path) -> None:
    import yaml

    manifest = AggregatorKit.load(kits / "aggregator").manifest
    assert FederationManifest.from_dict(yaml.safe_load(manifest.to_yaml())) == manifest
    with pytest.raises(ProvisioningError, match="version"):
        FederationManifest.from_dict({"version": 99})
