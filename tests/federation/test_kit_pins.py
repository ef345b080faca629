"""A kit pins the app bundle and the schema; its certificate also serves the local control link."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from crossfed.protocol import ProvisioningError, app_pin, load_manifest, project_root
from federation import AggregatorKit, FederationError, create_kits, load_certificate, run_aggregator

SCHEMA = b"version: 1\ntarget:\n  column: y\n  positive: ['1']\n"


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pinned")
    (root / "schema.yaml").write_bytes(SCHEMA)
    create_kits(
        root / "out",
        federation="pinned",
        aggregator_address="aggregator.example:9092",
        institutions=[("bank-sg", "SG")],
        schema=root / "schema.yaml",
        preset="lean",
    )
    return root / "out"


def test_the_kit_pins_the_bundle_flwr_run_ships_and_the_schema(kits: Path) -> None:
    pin = app_pin(project_root())  # built afresh, as `flwr run` will build it
    for folder in ("aggregator", "bank-sg"):
        manifest = load_manifest(kits / folder)
        assert manifest.app_pin == pin
        assert manifest.schema_sha256 == hashlib.sha256(SCHEMA).hexdigest()


def test_the_server_certificate_names_the_host_and_this_machine(kits: Path) -> None:
    cert = load_certificate(kits / "aggregator" / "server.pem")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["aggregator.example", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_a_swapped_schema_is_refused_by_the_aggregator_kit(kits: Path, tmp_path: Path) -> None:
    copy = tmp_path / "aggregator"
    shutil.copytree(kits / "aggregator", copy)
    (copy / "schema.yaml").chmod(0o644)
    (copy / "schema.yaml").write_bytes(SCHEMA + b"# edited\n")
    with pytest.raises(ProvisioningError, match="SHA-256 differs"):
        AggregatorKit.load(copy)


def test_the_aggregator_will_not_submit_a_tree_the_kits_do_not_pin(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_bytes(SCHEMA)
    create_kits(
        tmp_path / "kits",
        federation="other",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-sg", "SG")],
        schema=tmp_path / "schema.yaml",
        pin="sha256:" + "0" * 64,
    )
    with pytest.raises(FederationError, match="not the app the kits pin"):
        run_aggregator(tmp_path / "kits" / "aggregator", tmp_path / "out")
    assert not (tmp_path / "kits" / "aggregator" / "run" / "logs").exists()
