"""Everything ``crossfed client`` can check before it connects, without connecting.

A bank should learn that its file, its kit or its machine will fail *before*
every other institution has joined and waits on it. :func:`check_institution`
(``crossfed client --check``) runs, without sending anything or starting a
SuperNode, every check whose failure would otherwise surface later:

* the kit loads (files present, node key listed, schema pinned, its agreement
  key the one the manifest lists for it and every listed agreement key usable),
  pins an app bundle, and its secret key is this federation's (fingerprint);
* the kit's settings are valid and its recorded model shapes are those of
  the schema and model (the aggregator refuses other shapes);
* the file reads (delimiter and encoding as the ClientApp will detect them)
  and every column fits the schema (all problems, not only the first); what
  the schema's policies fill in is reported, so nothing is imputed unseen;
* the seeded, stratified test split the ClientApp takes holds rows of both
  classes on both sides (otherwise training or the held-out metrics fail);
* the output folder can be written, and Flower's SuperNode is installed.

:func:`check_secret` and :func:`check_split` are also what
:func:`clients.run_institution` runs before connecting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import crypto
from clients.app_guard import kit_settings
from clients.data import check_table, encode, train_test_split
from clients.errors import ClientError, DataValidationError
from clients.kit import InstitutionKit
from clients.output_names import METRICS_FILE, MODEL_FILE, SCORECARD_FILE
from clients.refusals import REFUSAL_BUDGET, kit_refusal_budget
from clients.schema import FederationSchema, load_schema
from clients.tables import quote, read_table
from crossfed.protocol import (
    ConfigurationError,
    FederationSettings,
    ProtocolError,
    ProvisioningError,
    flower_executable,
)

__all__ = ["CheckReport", "check_institution", "check_secret", "check_split"]


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_institution` found.

    Attributes
    ----------
    institution
        The kit's institution name, or None if the kit did not load.
    rows
        Rows in the data file, or None if it could not be read.
    problems
        Everything that would fail, one sentence each; empty when the run can go ahead.
    notes
        What was detected or will be done (delimiter, imputed values, split sizes).
    """

    institution: str | None
    rows: int | None
    problems: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing would fail."""
        return not self.problems


def check_secret(kit: InstitutionKit) -> None:
    """Refuse a secret context that does not load or is not the federation's.

    Raises
    ------
    crossfed.protocol.ProvisioningError
        The file is unreadable or its fingerprint is not the manifest's.
    """
    try:
        secret = crypto.SecretContext.load(kit.secret_context)
    except crypto.CryptoError as exc:
        raise ProvisioningError(f"{kit.secret_context}: {exc}") from exc
    if secret.fingerprint != kit.manifest.context_fingerprint:
        raise ProvisioningError(
            f"{kit.secret_context} is not this federation's key (fingerprint differs)"
        )


def check_split(x: np.ndarray, y: np.ndarray, settings: FederationSettings) -> tuple[int, int]:
    """The training and test sizes of the ClientApp's split, if both sides hold both classes.

    Raises
    ------
    clients.DataValidationError
        The stratified split is impossible or leaves one side with one class
        (too few rows of a class); the message gives the class counts.
    """
    bad = int(y.sum())
    counts = f"{bad} bad and {len(y) - bad} good rows"
    needed = _rows_needed(settings.test_fraction)
    if min(bad, len(y) - bad) < needed:
        raise DataValidationError(
            f"{counts}: at least {needed} rows of each class are needed, so that the training "
            f"rows and the held-out test rows ({settings.test_fraction:g} of them) both hold "
            "bad and good examples",
            column=None,
            count=len(y),
        )
    split = train_test_split(x, y, test_size=settings.test_fraction, seed=settings.seed)
    for part, labels in (("training", split.y_train), ("test", split.y_test)):
        if labels.size == 0 or labels.min() == labels.max():
            raise DataValidationError(
                f"the {part} split ({settings.test_fraction:g} of the rows held out) holds a "
                f"single class: {counts} are too few; at least "
                f"{_rows_needed(settings.test_fraction)} rows of each class are needed",
                column=None,
                count=len(y),
            )
    return len(split.y_train), len(split.y_test)


def _rows_needed(test_fraction: float) -> int:
    """Fewest rows of a class that put one on each side of a stratified split."""
    return max(2, int(np.ceil(1 / min(test_fraction, 1 - test_fraction))))


def _check_shapes(
    settings: FederationSettings, schema: FederationSchema, problems: list[str]
) -> None:
    declared = settings.shapes()
    if declared is None:
        if settings.mode == "encrypted":
            problems.append(
                "the kit records no model shapes, which an encrypted run needs: "
                "recreate the kits with `crossfed kit create`"
            )
        return
    from clients.shapes import model_shapes  # builds the model: torch, only here

    expected = tuple(
        tuple(shape) for shape in model_shapes(schema, settings.model, settings.hidden_sizes())
    )
    if declared != expected:
        problems.append(
            f"the kit's model shapes {list(declared)} are not those of its schema and model "
            f"{list(expected)}: the kits were made for another schema"
        )


def _check_out(out_dir: Path, problems: list[str], notes: list[str]) -> None:
    out = out_dir.resolve()
    if out.exists() and not out.is_dir():
        problems.append(f"--out {quote(str(out_dir))} is a file, not a folder")
        return
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"--out {quote(str(out_dir))}: {existing} is not writable")
        return
    kept = [name for name in (MODEL_FILE, METRICS_FILE, SCORECARD_FILE) if (out / name).is_file()]
    if kept:
        notes.append(
            f"earlier outputs in {out_dir} ({', '.join(kept)}) are kept until a new run succeeds"
        )


def _check_refusals(kit: InstitutionKit, problems: list[str], notes: list[str]) -> None:
    """The refusal count of the kit's key (every --out shares it) and whether it can be kept."""
    budget = kit_refusal_budget(kit)
    refused = budget.refused()
    if refused >= REFUSAL_BUDGET:
        problems.append(
            f"this institution refused {REFUSAL_BUDGET} aggregates (or cannot read their count "
            f"in {budget.path}): it decrypts nothing until you review the local log and run "
            "`crossfed client … --reset-refusals`"
        )
    elif refused:
        notes.append(
            f"{refused} of {REFUSAL_BUDGET} refused aggregates counted in {budget.path}: "
            "review the local log"
        )
    if not os.access(budget.path.parent, os.W_OK | os.X_OK):
        problems.append(
            f"kit: {budget.path.parent} is not writable: the count of refused aggregates is "
            "kept there, and the client will not start without it"
        )


def check_institution(kit_dir: Path, data_path: Path, out_dir: Path) -> CheckReport:
    """Check everything a run could fail on later; send nothing, start nothing.

    Returns
    -------
    CheckReport
        Every problem found (none: the run can go ahead) and what was noted.
    """
    problems: list[str] = []
    notes: list[str] = []
    try:
        kit = InstitutionKit.load(kit_dir)
    except ProvisioningError as exc:
        return CheckReport(None, None, (f"kit: {exc}",), ())
    if not kit.manifest.app_pin:
        problems.append(f"kit: {kit.path} pins no app bundle: recreate it with `crossfed kit`")
    if kit.agreement is None:
        notes.append(
            f"kit: {kit.path} holds no agreement key (made before masked updates); preset "
            f"{kit.manifest.preset} does not need one, a masked federation needs new kits"
        )
    try:
        check_secret(kit)
    except ProvisioningError as exc:
        problems.append(f"kit: {exc}")
    settings: FederationSettings | None = None
    schema: FederationSchema | None = None
    try:
        settings = kit_settings(kit, out_dir=out_dir)
        schema = load_schema(kit.schema)
        _check_shapes(settings, schema, problems)
    except (ConfigurationError, ClientError) as exc:
        problems.append(f"kit: {exc}")
    rows = _check_data(data_path, schema, settings, problems, notes)
    _check_out(out_dir, problems, notes)
    _check_refusals(kit, problems, notes)
    try:
        flower_executable("flower-supernode")
    except ProtocolError as exc:
        problems.append(str(exc))
    return CheckReport(kit.name, rows, tuple(problems), tuple(notes))


def _check_data(
    data_path: Path,
    schema: FederationSchema | None,
    settings: FederationSettings | None,
    problems: list[str],
    notes: list[str],
) -> int | None:
    shown = quote(str(data_path))
    try:
        read = read_table(data_path)
    except ClientError as exc:
        problems.append(f"data: {exc}")
        return None
    notes.extend(f"{shown}: {note}" for note in read.notes)
    if schema is None or settings is None:
        return len(read.frame)
    table = check_table(read.frame, schema)
    problems.extend(f"data {shown}: {problem}" for problem in table.problems)
    notes.extend(f"{shown}: {line}" for line in table.filled)
    if table.problems:
        return table.rows
    try:
        x, y = encode(read.frame, schema)
        train, test = check_split(x, y, settings)
    except ClientError as exc:
        problems.append(f"data {shown}: {exc}")
        return table.rows
    notes.append(
        f"{shown}: {table.rows} rows ({int(y.sum())} bad): {train} to train on, {test} held out"
    )
    if train > settings.max_weight:
        notes.append(f"this institution's weight is capped at {settings.max_weight} rows")
    return table.rows
