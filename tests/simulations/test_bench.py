"""The benchmarks users run: rows, JSON keys, and what each mode must measure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossfed.cli import app
from crypto import PRESETS
from simulations.bench import MODES, hidden_size_for, run_crypto_bench, run_round_bench

CRYPTO_KEYS = {
    "mode",
    "params",
    "clients",
    "encrypt_s",
    "bytes_per_update",
    "expansion",
    "aggregate_s",
    "decrypt_s",
    "max_abs_error",
}


def test_crypto_bench_measures_every_mode_on_odd_sizes() -> None:
    rows = run_crypto_bench([37, 4_099], clients=3, paillier_values=5)
    assert [(r.mode, r.params) for r in rows] == [(m, s) for s in (37, 4_099) for m in MODES]
    by = {(r.mode, r.params): r for r in rows}
    for params in (37, 4_099):
        assert by[("plaintext", params)].bytes_per_update == 4 * params
        # Among the CKKS presets the packed codec expands least, the standard one most.
        assert by[("ckks-standard", params)].expansion > by[("ckks-lean", params)].expansion
        assert by[("ckks-lean", params)].expansion >= by[("ckks-packed", params)].expansion
        assert by[("ckks-lean", params)].max_abs_error < 1e-6
        assert by[("ckks-packed", params)].max_abs_error < 1e-4
        # Masked deltas: 16-bit steps of 2 clip / 32751, 8-bit of 2 / 111, one per institution.
        step16 = 2 * PRESETS["masked16"].clip / 32751
        assert by[("ckks-masked", params)].max_abs_error < 3 * step16
        assert by[("ckks-masked8", params)].max_abs_error < 3 * 2 / 111
        # The same masked round without the lattice: same values, three bytes each.
        assert by[("masked-pad", params)].max_abs_error < 3 * step16
        assert all(r.encrypt_s > 0 and r.aggregate_s > 0 for r in rows if r.mode != "plaintext")
    # A whole ciphertext for 37 values costs more than Paillier's per-value ones;
    # from a few thousand values on, Paillier expands most.
    assert by[("paillier", 37)].expansion < by[("ckks-lean", 37)].expansion
    assert by[("paillier", 4_099)].expansion > by[("ckks-standard", 4_099)].expansion
    assert by[("paillier", 4_099)].extrapolated_from == 5
    assert by[("ckks-masked8", 4_099)].expansion < by[("ckks-masked", 4_099)].expansion
    assert by[("masked-pad", 4_099)].expansion < 0.8 < by[("ckks-masked8", 4_099)].expansion


def test_crypto_bench_refuses_unknown_modes_and_sizes() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        run_crypto_bench([10], ["ckks-turbo"])
    with pytest.raises(ValueError, match="at least 1"):
        run_crypto_bench([0], ["plaintext"])
    with pytest.raises(ValueError, match="3 to 16"):
        run_crypto_bench([10], ["ckks-masked"], clients=2)


def test_bench_crypto_cli_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        ["bench", "crypto", "--sizes", "1k", "--modes", "plaintext,ckks-lean", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["plaintext", "ckks-lean"]
    assert all(set(r) >= CRYPTO_KEYS for r in rows)
    assert rows[0]["aggregate_s_per_ciphertext"] is None  # strict JSON: no NaN
    assert rows[1]["aggregate_s_per_ciphertext"] > 0


def test_bench_crypto_cli_names_a_bad_size() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--sizes", "ten"])
    assert result.exit_code != 0
    assert "ten" in result.output


@pytest.mark.parametrize(("params", "features"), [(100_000, 20), (5_000, 48), (100, 3)])
def test_hidden_size_gives_about_the_requested_parameters(params: int, features: int) -> None:
    h = hidden_size_for(params, features)
    actual = features * h + h + h * h + h + h + 1
    assert abs(actual - params) <= 2 * h + features + 3


@pytest.mark.integration
@pytest.mark.slow
def test_round_bench_compares_every_mode_with_plaintext(tmp_path: Path) -> None:
    rows, ratios = run_round_bench(500, 3, 2, rows=900, work_dir=tmp_path)
    plain, lean, masked = rows
    assert (plain.mode, lean.mode, masked.mode) == ("plaintext", "ckks-lean", "ckks-masked")
    assert plain.params == lean.params == masked.params > 0
    assert lean.bytes_up_per_client > 5 * plain.bytes_up_per_client
    # 16-bit masked deltas travel in fewer bytes than one float per slot.
    assert plain.bytes_up_per_client < masked.bytes_up_per_client < lean.bytes_up_per_client
    assert abs(plain.auc - lean.auc) < 1e-3
    assert abs(plain.auc - masked.auc) < 5e-3
    assert ratios == pytest.approx(
        {"ckks-lean": lean.round_s / plain.round_s, "ckks-masked": masked.round_s / plain.round_s}
    )


def test_round_bench_refuses_modes_it_cannot_compare() -> None:
    with pytest.raises(ValueError, match="modes are plaintext"):
        run_round_bench(500, 3, 1, modes=("ckks-lean",))
    with pytest.raises(ValueError, match="3 to 16"):
        run_round_bench(500, 2, 1, modes=("plaintext", "ckks-masked"))
