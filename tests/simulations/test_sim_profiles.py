"""Jurisdiction profiles: shipped ones load, are sourced and ranged; bad ones are refused."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulations import JURISDICTIONS, ProfileError, load_profile, load_profiles
from simulations.compliance import load_consortium, shipped_profiles_dir

SHIPPED = sorted(shipped_profiles_dir().glob("*.yaml"))
CONSORTIUM_FILE = shipped_profiles_dir().parent / "consortium.yaml"


def _has_provenance(node: dict[str, Any]) -> bool:
    source = node.get("source")
    if isinstance(source, str) and source.strip():
        return True
    rationale = node.get("rationale")
    return node.get("assumption") is True and isinstance(rationale, str) and bool(rationale.strip())


def _unsourced(node: Any, path: str = "") -> list[str]:
    """Dotted paths of numbers and flags that lack a source or an assumption flag."""
    bad: list[str] = []
    if isinstance(node, dict):
        if "value" in node and not _has_provenance(node):
            bad.append(path)
        for key, child in node.items():
            if key in ("value", "source", "assumption", "rationale", "settled", "low", "high"):
                continue
            where = f"{path}.{key}" if path else str(key)
            if isinstance(child, (int, float)) and not isinstance(child, bool):
                bad.append(where)  # a bare number outside a sourced value
            bad.extend(_unsourced(child, where))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            bad.extend(_unsourced(child, f"{path}[{i}]"))
    return bad


def test_every_generator_jurisdiction_has_a_shipped_profile() -> None:
    profiles = load_profiles()
    assert set(JURISDICTIONS) <= set(profiles)
    assert len(SHIPPED) == len(profiles)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_and_every_number_is_sourced_or_assumed(path: Path) -> None:
    profile = load_profile(path)
    assert path.stem.upper() == profile.jurisdiction
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _unsourced(raw) == []
    flags = raw["flags"]
    assert {"updates_are_personal_data", "encryption_exits_scope"} <= set(flags)
    # Whether updates are personal data is unsettled everywhere (REGULATION.md).
    assert flags["updates_are_personal_data"]["settled"] is False
    # An unsettled question carries the chance of "yes" for the Monte Carlo.
    for name, flag in flags.items():
        assert ("probability" in flag) != flag["settled"], name


def _unranged(node: Any, path: str = "") -> list[str]:
    """Dotted paths of assumed numbers without a low/high range."""
    bad: list[str] = []
    if isinstance(node, dict):
        value = node.get("value")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if node.get("assumption") is True and numeric and not {"low", "high"} <= set(node):
            bad.append(path)
        for key, child in node.items():
            bad.extend(_unranged(child, f"{path}.{key}" if path else str(key)))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            bad.extend(_unranged(child, f"{path}[{i}]"))
    return bad


@pytest.mark.parametrize("path", [*SHIPPED, CONSORTIUM_FILE], ids=lambda p: p.stem)
def test_every_shipped_assumption_has_a_range(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _unsourced(raw) == []
    assert _unranged(raw) == []


def test_shipped_consortium_loads() -> None:
    consortium = load_consortium()
    assert consortium.institutions.of("cn-platform-lender") == "nonbank_lender"
    assert consortium.institutions.of("cn-platform-lender-2") == "nonbank_lender"
    assert consortium.institutions.of("branch-a") == "bank"  # the most regulated type


def test_provenance_checker_can_fail() -> None:
    assert _unsourced({"a": {"value": 1}, "b": 3}) == ["a", "b"]
    assert _unranged({"a": {"value": 1, "assumption": True, "rationale": "r"}}) == ["a"]


def _write(tmp_path: Path, raw: dict[str, Any], name: str = "eu.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _eu() -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load((shipped_profiles_dir() / "eu.yaml").read_text())
    return result


def test_missing_field_is_refused_naming_field_and_file(tmp_path: Path) -> None:
    raw = _eu()
    del raw["currency"]
    path = _write(tmp_path, raw)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.field == "currency"
    assert str(path) in str(info.value) and "currency" in str(info.value)


def test_missing_source_is_refused(tmp_path: Path) -> None:
    raw = _eu()
    del raw["mechanisms"]["scc_tia"]["fixed_cost"]["source"]
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, raw))
    assert info.value.field == "mechanisms.scc_tia.fixed_cost"


def test_negative_cost_is_refused_naming_field_and_file(tmp_path: Path) -> None:
    raw = _eu()
    raw["mechanisms"]["scc_tia"]["fixed_cost"]["value"] = -5
    path = _write(tmp_path, raw)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.field == "mechanisms.scc_tia.fixed_cost.value"
    assert str(path) in str(info.value)


def test_unordered_probabilities_and_unknown_route_are_refused(tmp_path: Path) -> None:
    raw = _eu()
    raw["enforcement"]["encrypted_updates"].update(value=0.5, high=0.6)
    with pytest.raises(ProfileError, match="must not increase"):
        load_profile(_write(tmp_path, raw))
    raw = _eu()
    raw["enforcement"]["encrypted_updates"]["value"] = 0.9  # above its own high
    with pytest.raises(ProfileError, match="low <= value <= high"):
        load_profile(_write(tmp_path, raw))
    raw = _eu()
    raw["routes"]["destinations"] = {"US": "carrier_pigeon"}
    with pytest.raises(ProfileError, match="carrier_pigeon"):
        load_profile(_write(tmp_path, raw))


def test_user_directory_overrides_file_by_file(tmp_path: Path) -> None:
    raw = _eu()
    raw["mechanisms"]["scc_tia"]["fixed_cost"] = {
        "value": 99_000,
        "assumption": True,
        "rationale": "our counsel's quote",
    }
    _write(tmp_path, raw, "my-eu.yaml")
    profiles = load_profiles(tmp_path)
    assert profiles["EU"].mechanisms["scc_tia"].fixed_cost.value == 99_000
    assert profiles["CN"] == load_profiles()["CN"]


def test_user_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "nowhere")
    _write(tmp_path, _eu(), "a.yaml")
    _write(tmp_path, _eu(), "b.yaml")
    with pytest.raises(ProfileError, match="second profile"):
        load_profiles(tmp_path)
    (tmp_path / "b.yaml").write_text("- not a mapping\n")
    with pytest.raises(ProfileError, match="mapping"):
        load_profiles(tmp_path)


def test_penalty_cap_rules() -> None:
    profiles = load_profiles()
    # SG: S$1M up to S$10M turnover, 10% above (s.48J, from 1 Oct 2022).
    sg = profiles["SG"].penalty_at(date(2026, 1, 1))
    assert sg.name == "pdpa_48j"
    assert sg.amount(5e6) == 1e6
    assert sg.amount(50e6) == pytest.approx(5e6)
    assert profiles["SG"].penalty_at(date(2022, 9, 30)).name == "pdpa_before_48j"
    # BR: 2% of revenue, capped at R$50M.
    assert profiles["BR"].penalty("lgpd_52").amount(1e9) == pytest.approx(2e7)
    assert profiles["BR"].penalty("lgpd_52").amount(1e10) == 5e7
    # EU: the higher of EUR 20M and 4%.
    assert profiles["EU"].penalty("art83_5").amount(1e9) == pytest.approx(4e7)
    # US: the 2025 IEEPA adjustment; India: DPDP's 'other' tier only from 13 May 2027.
    assert profiles["US"].penalty_at(date(2025, 1, 14)).amount(0) == 368_136
    assert profiles["US"].penalty_at(date(2025, 1, 15)).amount(0) == 377_700
    assert profiles["IN"].penalty_at(date(2027, 5, 12)).name == "it_act_43a"
    assert profiles["IN"].penalty_at(date(2027, 5, 13)).amount(0) == 50 * 10**7


def test_rule_requirements_are_checked_on_load(tmp_path: Path) -> None:
    raw = yaml.safe_load((shipped_profiles_dir() / "cn.yaml").read_text())
    del raw["facts"]["sa_sensitive_people"]
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, raw, "cn.yaml"))
    assert info.value.field == "facts.sa_sensitive_people"
    raw = _eu()
    raw["rule"] = "atlantis"
    with pytest.raises(ProfileError, match="unknown rule"):
        load_profile(_write(tmp_path, raw))
