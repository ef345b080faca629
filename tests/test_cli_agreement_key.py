"""`crossfed kit agreement-key` at a bank and `kit create --agreement-keys` from its output."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import crypto
from crossfed.cli import app
from crossfed.cli.kit import read_agreement_keys
from crossfed.protocol import ProvisioningError


def test_a_bank_makes_its_key_and_prints_only_the_public_half(tmp_path: Path) -> None:
    out = tmp_path / "bank-eu.key"
    result = CliRunner().invoke(
        app, ["kit", "agreement-key", "--out", str(out), "--institution", "bank-eu"]
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = crypto.AgreementKey.from_bytes(out.read_bytes())
    line = f"bank-eu: {key.public_bytes().hex()}"
    assert line in result.output
    assert out.read_bytes().hex() not in result.output
    (tmp_path / "keys.yaml").write_text(line + "\n")
    assert read_agreement_keys(tmp_path / "keys.yaml") == {"bank-eu": key.public_bytes()}
    again = CliRunner().invoke(
        app, ["kit", "agreement-key", "--out", str(out), "--institution", "bank-eu"]
    )
    assert again.exit_code == 2
    assert "refusing to overwrite" in again.output
    assert crypto.AgreementKey.from_bytes(out.read_bytes()).public_bytes() == key.public_bytes()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- bank-eu\n", "expected lines of"),
        ("bank-eu: abc\n", "64"),
        ("bank-eu: 12\n", "expected lines of"),
        ("bank-eu: " + "0b" * 32 + "\nbank-sg: " + "0b" * 32 + "\n", "one agreement key"),
        ("bank-eu: [", "cannot read"),
    ],
)
def test_a_malformed_key_list_is_refused_with_its_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "keys.yaml").write_text(text)
    with pytest.raises(ProvisioningError, match=problem):
        read_agreement_keys(tmp_path / "keys.yaml")
