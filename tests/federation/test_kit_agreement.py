"""Agreement keys in kits: each institution's private key in its own kit only, every public
key in every manifest, and a kit whose keys were tampered with, swapped or left out refused."""

from __future__ import annotations

import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import crypto
from clients import InstitutionKit, KeyMaterialError, check_institution
from crossfed.protocol import FederationManifest, ProvisioningError, load_manifest
from federation import AggregatorKit, create_kits

SCHEMA = b"version: 1\ntarget:\n  column: y\n  positive: ['1']\n"
NAMES = ("bank-sg", "bank-id", "lender-br")
PIN = "sha256:" + "0" * 64


def _create(root: Path, agreement_keys: dict[str, bytes] | None = None) -> FederationManifest:
    """Kits for NAMES in ``root/out`` (a lean federation, pinned, no bundle built)."""
    (root / "schema.yaml").write_bytes(SCHEMA)
    return create_kits(
        root / "out",
        federation="masks",
        aggregator_address="127.0.0.1:9092",
        institutions=[(name, None) for name in NAMES],
        schema=root / "schema.yaml",
        preset="lean",
        pin=PIN,
        agreement_keys=agreement_keys,
    )


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agreement")
    _create(root)
    return root / "out"


def _copy(kits: Path, name: str, tmp_path: Path) -> Path:
    copy = tmp_path / name
    shutil.copytree(kits / name, copy)
    return copy


def _edit_manifest(kit: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = kit / "federation.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in data["institutions"] if e["name"] == name)
    return entry


def test_every_manifest_lists_every_public_key_and_each_kit_holds_its_own_private_key(
    kits: Path,
) -> None:
    manifests = [load_manifest(kits / folder) for folder in ("aggregator", *NAMES)]
    assert all(manifest == manifests[0] for manifest in manifests)
    listed = manifests[0].agreement_keys()
    assert sorted(listed) == sorted(NAMES)
    assert len(set(listed.values())) == len(NAMES)
    for name in NAMES:
        path = kits / name / "agreement.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        private = path.read_bytes()
        assert len(private) == 32
        assert crypto.AgreementKey.from_bytes(private).public_bytes() == listed[name]
        kit = InstitutionKit.load(kits / name)
        assert kit.agreement is not None and kit.agreement.private_bytes() == private
        assert sorted(kit.peer_keys()) == sorted(set(NAMES) - {name})


def test_no_agreement_private_key_outside_its_own_kit(kits: Path, tmp_path: Path) -> None:
    for name in NAMES:
        private = (kits / name / "agreement.key").read_bytes()
        probes = (private, private.hex().encode(), private.hex().upper().encode())
        for folder in ("aggregator", *(other for other in NAMES if other != name)):
            files = [p for p in (kits / folder).rglob("*") if p.is_file()]
            assert files
            for path in files:
                data = path.read_bytes()
                assert not any(probe in data for probe in probes), f"{path} holds {name}'s key"
    assert not (kits / "aggregator" / "agreement.key").exists()
    copy = _copy(kits, "aggregator", tmp_path)
    shutil.copy(kits / "bank-sg" / "agreement.key", copy / "agreement.key")
    with pytest.raises(ProvisioningError, match="agreement private key"):
        AggregatorKit.load(copy)


def test_pair_keys_from_two_kits_agree_and_differ_from_a_third_pair(kits: Path) -> None:
    sg, id_, br = (InstitutionKit.load(kits / name) for name in NAMES)
    fingerprint = sg.manifest.context_fingerprint
    keys = {}
    for kit, peer in ((sg, id_), (id_, sg), (sg, br), (br, sg), (id_, br), (br, id_)):
        assert kit.agreement is not None
        keys[kit.name, peer.name] = kit.agreement.pair_key(
            kit.name, peer.name, kit.peer_keys()[peer.name], fingerprint
        )
    assert keys["bank-sg", "bank-id"] == keys["bank-id", "bank-sg"]
    assert keys["bank-sg", "lender-br"] == keys["lender-br", "bank-sg"]
    assert keys["bank-id", "lender-br"] == keys["lender-br", "bank-id"]
    pairs = {keys["bank-sg", "bank-id"], keys["bank-sg", "lender-br"], keys["bank-id", "lender-br"]}
    assert len(pairs) == 3 and all(len(key) == 32 for key in pairs)


def _other_key() -> str:
    return crypto.AgreementKey.generate().public_bytes().hex()


def _swap(data: dict[str, Any]) -> None:
    sg, id_ = _entry(data, "bank-sg"), _entry(data, "bank-id")
    sg["agreement-key"], id_["agreement-key"] = id_["agreement-key"], sg["agreement-key"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: _entry(d, "bank-sg").update({"agreement-key": _other_key()}), "not the agree"),
        (_swap, "is not the agreement key"),
        (lambda d: _entry(d, "bank-id").pop("agreement-key"), "no agreement key for bank-id"),
        (lambda d: _entry(d, "bank-id").update({"agreement-key": "00" * 31}), "lowercase hex"),
        (
            lambda d: _entry(d, "bank-id").update({"agreement-key": "AB" * 32}),
            "lowercase hex",
        ),
        (
            lambda d: _entry(d, "lender-br").update(
                {"agreement-key": _entry(d, "bank-id")["agreement-key"]}
            ),
            "one agreement key for both",
        ),
        # A low-order point: every pair key with it would be derived from an all-zero secret.
        (lambda d: _entry(d, "lender-br").update({"agreement-key": "00" * 32}), "cannot be used"),
    ],
    ids=["tampered", "swapped", "missing", "short", "uppercase", "repeated", "low-order"],
)
def test_a_manifest_whose_keys_were_altered_is_refused(
    kits: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    copy = _copy(kits, "bank-sg", tmp_path)
    _edit_manifest(copy, change)
    with pytest.raises(ProvisioningError, match=match):
        InstitutionKit.load(copy)
    report = check_institution(copy, tmp_path / "absent.csv", tmp_path / "out")
    assert report.institution is None
    assert len(report.problems) == 1 and report.problems[0].startswith("kit: ")
    assert re.search(match, report.problems[0])


def test_a_swapped_or_missing_private_key_is_refused(kits: Path, tmp_path: Path) -> None:
    copy = _copy(kits, "bank-sg", tmp_path)
    shutil.copy(kits / "bank-id" / "agreement.key", copy / "agreement.key")
    with pytest.raises(ProvisioningError, match=r"not the agreement key .* lists for 'bank-sg'"):
        InstitutionKit.load(copy)
    (copy / "agreement.key").write_bytes(b"\x01" * 31)
    with pytest.raises(ProvisioningError, match="is not an agreement private key"):
        InstitutionKit.load(copy)
    (copy / "agreement.key").unlink()
    with pytest.raises(ProvisioningError, match=r"lacks agreement\.key"):
        InstitutionKit.load(copy)


def _strip_keys(data: dict[str, Any]) -> None:
    for entry in data["institutions"]:
        entry.pop("agreement-key")


def test_a_kit_made_before_agreement_keys_loads_only_while_updates_are_not_masked(
    kits: Path, tmp_path: Path
) -> None:
    copy = _copy(kits, "bank-sg", tmp_path)
    _edit_manifest(copy, _strip_keys)
    with pytest.raises(ProvisioningError, match="lists no agreement keys: the kit is inconsistent"):
        InstitutionKit.load(copy)
    (copy / "agreement.key").unlink()
    kit = InstitutionKit.load(copy)
    assert kit.agreement is None and kit.peer_keys() == {}
    report = check_institution(copy, tmp_path / "absent.csv", tmp_path / "out")
    assert any("holds no agreement key" in note for note in report.notes)

    data = yaml.safe_load((copy / "federation.yaml").read_text())
    data["preset"] = "masked16"
    with pytest.raises(ProvisioningError, match="re-create the kits"):
        FederationManifest.from_dict(data)
    listed = yaml.safe_load((kits / "bank-sg" / "federation.yaml").read_text())
    listed["preset"] = "masked16"
    assert FederationManifest.from_dict(listed).masked


def test_masking_keys_come_from_a_masked_kit_only(kits: Path, tmp_path: Path) -> None:
    from clients.masked_round import MaskingKeys

    lean = InstitutionKit.load(kits / "bank-id")
    with pytest.raises(KeyMaterialError, match="does not mask updates"):
        MaskingKeys.from_kit(lean, crypto.SecretContext.load(kits / "bank-id" / "secret.ctx"))
    masked = crypto.generate_secret_context("masked16")
    copy = _copy(kits, "bank-id", tmp_path)

    def to_masked(data: dict[str, Any]) -> None:
        data["preset"], data["context-fingerprint"] = "masked16", masked.fingerprint

    _edit_manifest(copy, to_masked)
    keys = MaskingKeys.from_kit(InstitutionKit.load(copy), masked)
    assert keys.name == "bank-id" and sorted(keys.peers) == ["bank-sg", "lender-br"]
    assert keys.peers["bank-sg"] == lean.manifest.agreement_keys()["bank-sg"]
    with pytest.raises(KeyMaterialError, match="not this federation's"):
        MaskingKeys.from_kit(InstitutionKit.load(copy), crypto.generate_secret_context("masked16"))


def test_keys_made_at_each_institution_never_pass_through_the_kit_creator(
    tmp_path: Path,
) -> None:
    """`kit agreement-key` at each bank, `kit create --agreement-keys` with the public halves."""
    own = {name: crypto.AgreementKey.generate() for name in NAMES}
    manifest = _create(tmp_path, {name: key.public_bytes() for name, key in own.items()})
    assert manifest.agreement_keys() == {name: key.public_bytes() for name, key in own.items()}
    assert not list((tmp_path / "out").rglob("agreement.key"))  # no private key was ever made
    kit = tmp_path / "out" / NAMES[0]
    with pytest.raises(ProvisioningError, match="agreement"):
        InstitutionKit.load(kit)  # the bank has not put its own key in yet
    (kit / "agreement.key").write_bytes(own[NAMES[0]].private_bytes())
    (kit / "agreement.key").chmod(0o600)
    loaded = InstitutionKit.load(kit)
    assert loaded.peer_keys() == {n: own[n].public_bytes() for n in NAMES[1:]}
    # Another bank's key in this kit is refused: it is not the one listed for this name.
    (kit / "agreement.key").write_bytes(own[NAMES[1]].private_bytes())
    with pytest.raises(ProvisioningError, match="not the agreement key"):
        InstitutionKit.load(kit)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (lambda keys: {n: keys[n] for n in NAMES[:2]}, "missing for lender-br"),
        (lambda keys: {**keys, "bank-xx": keys[NAMES[0]]}, "unknown bank-xx"),
        (lambda keys: {**keys, NAMES[2]: keys[NAMES[0]]}, "one agreement key for both"),
        (lambda keys: {**keys, NAMES[2]: bytes(32)}, "cannot be used"),
    ],
)
def test_agreement_keys_given_for_other_names_repeated_or_unusable_are_refused(
    tmp_path: Path, given: Callable[[dict[str, bytes]], dict[str, bytes]], problem: str
) -> None:
    keys = {name: crypto.AgreementKey.generate().public_bytes() for name in NAMES}
    with pytest.raises(ProvisioningError, match=problem):
        _create(tmp_path, given(keys))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_key_listed_again_under_another_spelling_is_refused(tmp_path: Path) -> None:
    """The colluder's key with its top bit set, listed for a made-up institution."""
    keys = {name: crypto.AgreementKey.generate().public_bytes() for name in NAMES}
    colluder = keys[NAMES[1]]
    keys[NAMES[2]] = colluder[:31] + bytes([colluder[31] | 0x80])
    with pytest.raises(ProvisioningError, match="not a canonical X25519"):
        _create(tmp_path, keys)
