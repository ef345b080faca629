"""Presets and the 128-bit security bound (HE standard) on raw parameters."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from crypto import DEFAULT_PRESET, PRESETS, Preset, WeakParametersError, get_preset
from crypto.codec import FloatCodec
from crypto.constants import HE_STANDARD_MAX_COEFF_BITS
from crypto.errors import OverflowRiskError
from crypto.hazmat import CKKSParameters, build_tenseal_context, check_security


@pytest.mark.parametrize(
    "params",
    [
        CKKSParameters(4096, (60, 60), 40),  # 120 > 109 bits
        CKKSParameters(8192, (60, 60, 60, 60), 40),  # 240 > 218 bits
        CKKSParameters(2048, (30, 30), 20),  # 60 > 54 bits
        CKKSParameters(16384, (60,) * 8, 40),  # 480 > 438 bits
        CKKSParameters(4000, (30, 30), 20),  # not a power of two in the table
        CKKSParameters(65536, (60, 60), 40),  # beyond the table
        CKKSParameters(8192, (), 20),  # no primes
        CKKSParameters(8192, (61, 60), 40),  # prime above 60 bits
        CKKSParameters(8192, (16, 60), 10),  # prime below 17 bits
        CKKSParameters(8192, (60, 60), 58),  # scale leaves no room
        CKKSParameters(8192, (60, 60), 9),  # scale too small
    ],
)
def test_weak_or_unusable_parameters_are_refused(params: CKKSParameters) -> None:
    with pytest.raises(WeakParametersError):
        check_security(params)
    with pytest.raises(WeakParametersError):
        Preset(name="weak", params=params)
    with pytest.raises(WeakParametersError):
        build_tenseal_context(params)


def _primes_summing_to(total: int) -> tuple[int, ...]:
    """Prime sizes of 17..60 bits, as even as possible, summing to ``total``."""
    n = -(-total // 60)
    return tuple(total // n + (1 if i < total % n else 0) for i in range(n))


def _usable(degree: int, total: int) -> CKKSParameters:
    sizes = _primes_summing_to(total)
    modulus = sum(sizes[:-1]) if len(sizes) > 1 else sizes[0]
    return CKKSParameters(degree, sizes, min(40, modulus - 5))


@pytest.mark.parametrize(("degree", "bound"), sorted(HE_STANDARD_MAX_COEFF_BITS.items()))
def test_the_bound_is_inclusive_and_tight(degree: int, bound: int) -> None:
    check_security(_usable(degree, bound))  # exactly at the HE standard's bound: accepted
    with pytest.raises(WeakParametersError, match="128-bit"):
        check_security(_usable(degree, bound + 1))  # one bit over: refused


@pytest.mark.parametrize("name", ["lean", "packed", "standard"])
def test_shipped_presets_pass_and_round_trip(name: str) -> None:
    preset = get_preset(name)
    assert preset is PRESETS[name]
    assert preset.name == name
    check_security(preset.params)
    assert sum(preset.params.coeff_mod_bit_sizes) <= HE_STANDARD_MAX_COEFF_BITS[8192]
    assert preset.params.slots == preset.params.poly_modulus_degree // 2 == 4096
    assert Preset.from_dict(preset.to_dict()) == preset
    assert preset.description  # documented
    codec = preset.build_codec()
    assert codec.kind == preset.codec
    assert 0 < codec.error_bound(1, 10.0, total_weight=10) < 1e-4


@pytest.mark.parametrize("name", ["masked16", "masked8"])
def test_masked_presets_pass_round_trip_and_refuse_the_unmasked_recipe(name: str) -> None:
    preset = get_preset(name)
    check_security(preset.params)
    assert preset.params.poly_modulus_degree == 4096
    assert Preset.from_dict(preset.to_dict()) == preset
    codec = preset.build_masked_codec()
    assert codec is not None and codec.max_institutions == preset.max_institutions == 16
    with pytest.raises(WeakParametersError, match="masks updates"):
        preset.build_codec()


def test_the_shipped_presets_are_the_documented_five() -> None:
    assert sorted(PRESETS) == ["lean", "masked16", "masked8", "packed", "standard"]
    assert DEFAULT_PRESET in PRESETS
    assert PRESETS["standard"].params == CKKSParameters(8192, (60, 40, 40, 60), 40)
    assert PRESETS["lean"].params == CKKSParameters(8192, (60, 60), 25)
    assert PRESETS["packed"].params == CKKSParameters(8192, (60, 60), 17)
    assert PRESETS["packed"].codec == "packed"
    assert PRESETS["packed"].clip == 1.0


def test_capacity_leaves_room_for_the_scale() -> None:
    assert PRESETS["lean"].params.ciphertext_modulus_bits == 60
    assert PRESETS["lean"].params.capacity_bits == 60 - 25 - 2
    assert PRESETS["standard"].params.ciphertext_modulus_bits == 140
    assert PRESETS["standard"].params.capacity_bits == 50  # capped by IEEE doubles
    assert PRESETS["packed"].params.capacity_bits == 41  # two 21-bit signed lanes fit


@pytest.mark.parametrize("name", ["", "Lean", "fast", "secure", "lean "])
def test_an_unknown_preset_name_is_refused(name: str) -> None:
    from crypto import generate_secret_context

    with pytest.raises(WeakParametersError, match="unknown preset"):
        get_preset(name)
    with pytest.raises(WeakParametersError):
        generate_secret_context(name)


@pytest.mark.parametrize(
    "change",
    [
        {"codec": "zip"},
        {"max_institutions": 0},
        {"max_institutions": 1 << 17},
        {"codec": "packed", "lanes": 3},  # 63 bits do not fit the 41-bit capacity
        {"codec": "packed", "lanes": 0},
        {"codec": "packed", "lanes": -1},
        {"codec": "packed", "lane_bits": 1},
        {"codec": "packed", "lane_bits": 0},
        {"codec": "packed", "clip": 0.0},
        {"codec": "packed", "clip": float("nan")},
        {"codec": "packed", "clip": float("inf")},
    ],
)
def test_unusable_preset_settings_are_refused(change: dict[str, Any]) -> None:
    base = dataclasses.replace(PRESETS["packed"], codec="packed")
    with pytest.raises((WeakParametersError, OverflowRiskError)):
        dataclasses.replace(base, name="custom", **change)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "lean",
        {},
        {**PRESETS["lean"].to_dict(), "scale_bits": "many"},
        {**PRESETS["lean"].to_dict(), "coeff_mod_bit_sizes": 60},
        {**PRESETS["lean"].to_dict(), "clip": float("inf"), "codec": "packed"},
        {**PRESETS["lean"].to_dict(), "max_institutions": float("inf")},
        {k: v for k, v in PRESETS["lean"].to_dict().items() if k != "lanes"},
        {**PRESETS["lean"].to_dict(), "coeff_mod_bit_sizes": [60, 60, 60, 60]},
    ],
)
def test_invalid_preset_descriptions_are_refused(data: object) -> None:
    with pytest.raises((WeakParametersError, OverflowRiskError)):
        Preset.from_dict(data)


def test_a_custom_preset_is_usable() -> None:
    tiny = dataclasses.replace(PRESETS["lean"], name="tiny", max_institutions=2)
    codec = tiny.build_codec()
    assert isinstance(codec, FloatCodec)
    assert codec.max_magnitude == 2.0**33 / 2
    assert Preset.from_dict(tiny.to_dict()) == tiny
