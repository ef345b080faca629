"""Reading the files banks have: semicolons, Latin-1, Excel, and errors of bounded size."""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import DataLoadError, DataValidationError, encode, load_table, read_table
from clients.schema import FederationSchema
from clients.tables import QUOTE_CHARS, quote


def test_a_semicolon_file_with_decimal_commas_reads_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    path.write_text("amount;region;bad\n1200,50;Nord;1\n80,25;Süd;0\n15;Nord;0\n", encoding="utf-8")

    read = read_table(path)

    assert list(read.frame.columns) == ["amount", "region", "bad"]
    assert read.frame["amount"].tolist() == [1200.5, 80.25, 15.0]
    assert read.frame["region"].tolist() == ["Nord", "Süd", "Nord"]
    assert any("semicolon" in note for note in read.notes)
    assert any("decimal commas" in note for note in read.notes)


def test_a_semicolon_file_keeps_commas_inside_text(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    rows = ["purpose;amount;bad"] + [f"car, used;{100 + k};{k % 2}" for k in range(20)]
    path.write_text("\n".join(rows) + "\n")

    frame = load_table(path)

    assert frame.shape == (20, 3)
    assert set(frame["purpose"]) == {"car, used"}
    assert pd.api.types.is_integer_dtype(frame["amount"].dtype)


def test_latin1_text_is_read_and_the_choice_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "kunden.csv"
    path.write_bytes("ort,betrag,bad\nMünchen,10,1\nKöln,20,0\n".encode("latin-1"))

    read = read_table(path)

    assert read.frame["ort"].tolist() == ["München", "Köln"]
    assert read.notes and "not UTF-8" in read.notes[0] and "--encoding" in read.notes[0]


def test_latin1_past_the_sample_falls_back_too(tmp_path: Path) -> None:
    # The first 64 KiB are ASCII; the first non-UTF-8 byte comes after.
    rows = ["ort,betrag"] + ["Berlin,1"] * 9000 + ["Düsseldorf,2"]
    path = tmp_path / "late.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))

    frame = load_table(path)

    assert frame["ort"].iloc[-1] == "Düsseldorf"


def test_a_wrong_explicit_encoding_names_the_option(tmp_path: Path) -> None:
    path = tmp_path / "kunden.csv"
    path.write_bytes("ort,bad\nMünchen,1\n".encode("latin-1"))
    with pytest.raises(DataLoadError, match="--encoding"):
        read_table(path, encoding="utf-8")
    with pytest.raises(DataLoadError, match="unknown encoding"):
        read_table(path, encoding="klingon")


def test_utf16_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + "a,b\n1,x\n2,y\n".encode("utf-16-le"))
    assert load_table(path)["b"].tolist() == ["x", "y"]


def test_an_excel_workbook_without_a_reader_says_to_export_csv(tmp_path: Path) -> None:
    path = tmp_path / "loans.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(DataLoadError, match="export the sheet as CSV") as caught:
        read_table(path)
    assert "openpyxl" in str(caught.value)


def test_an_excel_workbook_is_read_when_a_reader_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Excel engine ships with crossfed; stand in for openpyxl being installed.
    path = tmp_path / "loans.xlsx"
    path.write_bytes(b"PK\x03\x04")
    calls: list[tuple[Path, str]] = []

    def fake_read_excel(file: Path, *, sheet_name: int, engine: str) -> pd.DataFrame:
        calls.append((file, engine))
        return pd.DataFrame({"a": [1]})

    monkeypatch.setattr("clients.tables.importlib.util.find_spec", lambda name: name == "openpyxl")
    monkeypatch.setattr("clients.tables.pd.read_excel", fake_read_excel)

    read = read_table(path)

    assert calls == [(path, "openpyxl")]
    assert read.frame["a"].tolist() == [1] and "openpyxl" in read.notes[0]


def test_a_workbook_renamed_to_csv_is_named_as_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "loans.csv"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(DataLoadError, match="workbook"):
        read_table(path)


def test_a_bad_delimiter_option_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataLoadError, match="one character"):
        read_table(path, delimiter=";;")


def test_quote_cuts_long_values_and_states_their_length() -> None:
    assert quote("short") == "'short'"
    cut = quote("x" * 30_000_000)
    assert len(cut) < QUOTE_CHARS + 40
    assert "30,000,000 characters" in cut


def test_a_30_mb_cell_is_not_printed_in_a_validation_error(
    tmp_path: Path, german_schema: FederationSchema, german: pd.DataFrame
) -> None:
    numeric = german_schema.numeric[0].name
    frame = german.head(50).copy()
    frame[numeric] = frame[numeric].astype(object)
    frame.loc[frame.index[3], numeric] = "9" * 15_000_000 + "x" * 15_000_000
    path = tmp_path / "huge.csv"
    frame.to_csv(path, index=False)

    with pytest.raises(DataValidationError) as caught:
        encode(load_table(path), german_schema)

    message = str(caught.value)
    assert numeric in message and "30,000,000 characters" in message
    assert len(message) < 500


def test_the_same_file_reads_the_same_everywhere(tmp_path: Path) -> None:
    # The command line and the ClientApp both call load_table: no options, same table.
    path = tmp_path / "loans.csv"
    rows = ["amount;bad"] + [f"{k},5;{k % 2}" for k in range(30)]
    path.write_bytes(("\n".join(rows) + "\n").encode("cp1252"))
    first, second = load_table(path), load_table(path)
    pd.testing.assert_frame_equal(first, second)
    assert np.allclose(first["amount"], np.arange(30) + 0.5)
