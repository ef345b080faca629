"""Reading an institution's table from the files banks actually have.

A bank's extract is rarely the comma-separated UTF-8 file a library expects:
spreadsheets exported in continental Europe use ``;`` between fields and a
decimal comma, older systems write Windows-1252 or Latin-1, and some teams
hand over Excel workbooks. :func:`read_table` reads all of these the same way
on every machine (the ``crossfed`` command and the ClientApp call it with the
same file and get the same table), and says what it chose in
:attr:`TableRead.notes`:

* the **delimiter** is detected from the first lines among ``,`` ``;`` tab and
  ``|`` (the one that splits every line into the same number of fields, most
  fields first, ``,`` on a tie), unless given;
* the **encoding** is UTF-8 (a byte-order mark is dropped), else Windows-1252,
  else Latin-1, which decodes any byte, unless given; UTF-16 is recognised by
  its byte-order mark;
* in a ``;`` file whose text columns all look like ``12,5``, the **decimal
  comma** is read as a number;
* **Excel** workbooks are read with pandas when an engine (openpyxl,
  python-calamine) is installed; otherwise the error says to export CSV.

Every error names the file and the option to change, and quotes no value longer
than :data:`QUOTE_CHARS` characters (:func:`quote`): a 30 MB cell must not end
up on a terminal or in a log.
"""

from __future__ import annotations

import codecs
import csv
import importlib.util
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clients.errors import DataLoadError

__all__ = [
    "CSV_SUFFIXES",
    "DELIMITERS",
    "EXCEL_SUFFIXES",
    "PARQUET_SUFFIXES",
    "QUOTE_CHARS",
    "TableRead",
    "quote",
    "read_table",
]

#: Longest value quoted in an error message; longer ones are cut and their length stated.
QUOTE_CHARS = 100
CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls", ".ods"})
#: Field delimiters tried, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
#: Bytes read to detect the encoding and the delimiter.
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 50
#: Encodings tried in turn when none is given; Latin-1 decodes any byte.
_FALLBACK_ENCODINGS = ("cp1252", "latin-1")
#: pandas' engine for each Excel-like suffix, and the package that provides it.
_EXCEL_ENGINES = (("openpyxl", "openpyxl"), ("calamine", "python_calamine"))
_XLS_ENGINES = (("xlrd", "xlrd"), ("calamine", "python_calamine"))
_ODS_ENGINES = (("odf", "odf"), ("calamine", "python_calamine"))
# Zip (xlsx, ods) and OLE2 (xls) containers: a workbook renamed to .csv.
_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+(?:,\d+)?\s*$")


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length stated.

    Every value an error message quotes goes through here, so a cell of
    megabytes (a pasted document, a binary blob) prints as a hundred
    characters and its size.
    """
    text = repr(value) if isinstance(value, str) else repr(str(value))
    if len(text) <= limit:
        return text
    length = len(value) if isinstance(value, str) else len(str(value))
    return f"{text[: max(limit - 1, 1)]}…' ({length:,} characters)"


@dataclass(frozen=True)
class TableRead:
    """A table as :func:`read_table` read it, and how.

    Attributes
    ----------
    frame
        The rows, columns as in the file.
    notes
        What was chosen and why (delimiter, encoding, decimal comma, sheet),
        one sentence each, for the user to check; empty for a plain
        comma-separated UTF-8 or Parquet file.
    """

    frame: pd.DataFrame
    notes: tuple[str, ...] = ()


def read_table(
    path: str | Path, *, encoding: str | None = None, delimiter: str | None = None
) -> TableRead:
    """Read a CSV, Parquet or Excel table, detecting what the file does not say.

    Parameters
    ----------
    path
        A ``.csv`` (also ``.tsv``, ``.txt``), ``.parquet``/``.pq`` or Excel
        (``.xlsx``, ``.xlsm``, ``.xls``, ``.ods``) file; suffix case ignored.
    encoding
        The text encoding of a CSV file; detected if None (module docstring).
    delimiter
        The field delimiter of a CSV file; detected if None.

    Raises
    ------
    DataLoadError
        The file is missing, empty, of an unknown kind, not decodable with
        the given encoding, a workbook without an installed engine, or
        unreadable; the message says which option to change.
    """
    file = Path(path)
    shown = quote(str(path))
    suffix = file.suffix.lower()
    known = CSV_SUFFIXES | PARQUET_SUFFIXES | EXCEL_SUFFIXES
    if suffix not in known:
        raise DataLoadError(
            f"cannot read {shown}: unknown extension {quote(suffix or '(none)')}; "
            "use .csv, .parquet or .pq (or an Excel workbook)",
            path=str(path),
        )
    if not file.is_file():
        raise DataLoadError(f"data file {shown} does not exist", path=str(path))
    if file.stat().st_size == 0:
        raise DataLoadError(f"data file {shown} is empty", path=str(path))
    if suffix in PARQUET_SUFFIXES:
        try:
            return TableRead(pd.read_parquet(file))
        except Exception as exc:  # pyarrow raises many types; all mean "unreadable"
            raise DataLoadError(
                f"cannot read {shown} as Parquet: {_reason(exc)}", path=str(path)
            ) from exc
    if suffix in EXCEL_SUFFIXES:
        return _read_excel(file, suffix)
    with file.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    if head.startswith(_WORKBOOK_MAGIC):
        raise DataLoadError(
            f"{shown} is a spreadsheet workbook (Excel), not CSV text: save it as .xlsx "
            "to read it as a workbook, or export it as CSV",
            path=str(path),
        )
    return _read_csv(file, head, encoding=encoding, delimiter=delimiter)


def _reason(exc: BaseException) -> str:
    """A third-party error's message, bounded (pandas may quote a whole line)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 2 * QUOTE_CHARS else text[: 2 * QUOTE_CHARS] + "…"


def _encodings(head: bytes, file: Path, encoding: str | None) -> tuple[str, ...]:
    """The encodings to try, in order: the given one, or those the first bytes allow."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise DataLoadError(
                f"unknown encoding {quote(encoding)} (try utf-8, cp1252 or latin-1)",
                path=str(file),
            ) from exc
        return (encoding,)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("utf-16",)
    if head.startswith(codecs.BOM_UTF8):
        return ("utf-8-sig",)
    return ("utf-8", *_FALLBACK_ENCODINGS)


def _sample_text(head: bytes, file: Path, encodings: tuple[str, ...]) -> tuple[str, int]:
    """The sample decoded with the first encoding that fits it, and that encoding's index."""
    for index, candidate in enumerate(encodings):
        try:
            # The sample may end inside a multi-byte character: decode incrementally.
            text = codecs.getincrementaldecoder(candidate)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            raise DataLoadError(
                f"{quote(str(file))} holds NUL bytes: a binary file, or text in an encoding "
                f"other than {candidate} (give --encoding, e.g. utf-16)",
                path=str(file),
            )
        return text, index
    raise DataLoadError(
        f"{quote(str(file))} is not {encodings[0]} text: give the file's encoding with "
        "--encoding (e.g. utf-8, cp1252, latin-1)",
        path=str(file),
    )


def _detect_delimiter(text: str) -> str:
    """The delimiter splitting the sample's lines into equal field counts, most fields first."""
    lines = text.splitlines()[:_SAMPLE_LINES]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line of the sample may be cut
    best, best_fields = ",", 1
    for candidate in DELIMITERS:
        try:
            counts = {
                len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=candidate)
            }
        except csv.Error:
            continue
        counts.discard(0)
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = candidate, fields
    return best


def _read_csv(file: Path, head: bytes, *, encoding: str | None, delimiter: str | None) -> TableRead:
    shown = quote(str(file))
    encodings = _encodings(head, file, encoding)
    text, first = _sample_text(head, file, encodings)
    notes: list[str] = []
    if delimiter is None:
        sep = _detect_delimiter(text)
        if sep != ",":
            notes.append(f"fields separated by {_DELIMITER_NAMES[sep]} ({sep!r}), detected")
    elif len(delimiter) != 1:
        raise DataLoadError(
            f"the delimiter must be one character, got {quote(delimiter)}", path=str(file)
        )
    else:
        sep = delimiter
    frame: pd.DataFrame | None = None
    for chosen in encodings[first:]:
        try:
            frame = pd.read_csv(file, sep=sep, encoding=chosen)
            if sep == ";" and _decimal_comma_columns(frame):
                frame = pd.read_csv(file, sep=sep, encoding=chosen, decimal=",")
                notes.append("decimal commas (12,5) read as numbers")
        except pd.errors.EmptyDataError as exc:
            raise DataLoadError(f"data file {shown} has no columns", path=str(file)) from exc
        except UnicodeDecodeError as exc:
            if chosen != encodings[-1]:
                continue  # not this encoding past the sample: try the next
            raise DataLoadError(
                f"{shown} is not {chosen} text past its first lines (byte {exc.start}): "
                "give the file's encoding with --encoding (e.g. cp1252, latin-1)",
                path=str(file),
            ) from exc
        except Exception as exc:  # pandas raises many types; all mean "unreadable"
            raise DataLoadError(
                f"cannot read {shown} as CSV (delimiter {sep!r}, encoding {chosen}): "
                f"{_reason(exc)}; check --delimiter and --encoding",
                path=str(file),
            ) from exc
        if encoding is None and chosen in _FALLBACK_ENCODINGS:
            notes.insert(
                0,
                f"read as {chosen}: the file is not UTF-8 (give --encoding if accented "
                "letters look wrong)",
            )
        elif chosen not in ("utf-8", "utf-8-sig"):
            notes.insert(0, f"read as {chosen}")
        break
    if frame is None:  # unreachable: the last encoding raises or breaks
        raise DataLoadError(f"cannot read {shown}", path=str(file))
    if frame.shape[1] == 1 and delimiter is None and len(str(frame.columns[0])) > 1:
        notes.append(
            f"one column only: if the file uses another delimiter than {sep!r}, give --delimiter"
        )
    return TableRead(frame, tuple(notes))


def _decimal_comma_columns(frame: pd.DataFrame) -> list[str]:
    """Text columns of a ``;`` file whose every value looks like ``12,5`` (one at least)."""
    found = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series.dtype):
            continue
        values = series.dropna().astype(str)
        commas = len(values) > 0 and bool(values.str.contains(",", regex=False).any())
        if commas and values.map(lambda v: bool(_DECIMAL_COMMA.match(v))).all():
            found.append(str(name))
    return found


def _read_excel(file: Path, suffix: str) -> TableRead:
    shown = quote(str(file))
    engines = {".xls": _XLS_ENGINES, ".ods": _ODS_ENGINES}.get(suffix, _EXCEL_ENGINES)
    engine = next((e for e, module in engines if importlib.util.find_spec(module)), None)
    if engine is None:
        needed = " or ".join(module.replace("_", "-") for _, module in engines)
        raise DataLoadError(
            f"{shown} is an Excel workbook and no reader for it is installed: export the "
            f"sheet as CSV (UTF-8) and use that file, or install {needed}",
            path=str(file),
        )
    try:
        frame = pd.read_excel(file, sheet_name=0, engine=engine)
    except Exception as exc:  # every engine raises its own types; all mean "unreadable"
        raise DataLoadError(
            f"cannot read {shown} as a workbook: {_reason(exc)}; export the sheet as CSV",
            path=str(file),
        ) from exc
    return TableRead(frame, (f"first sheet of the workbook read with {engine}",))
