"""The refusal count: 0600, fail closed, one per key, closed runs kept, one writer at a time."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from flwr.app import Context, RecordDict
from typer.testing import CliRunner

import crypto
from clients import InstitutionKit, infer_schema, refusal_count, save_schema
from clients.deploy import check_refusals
from clients.errors import (
    InboundMessageError,
    MaskReuseRefusedError,
    TamperedAggregateError,
    TrainingDivergedError,
)
from clients.preflight import check_institution
from clients.refusal_count import MAX_CLOSED, RefusalCountBusyError, refusal_budget
from clients.refusals import (
    REFUSAL_BUDGET,
    REFUSAL_FILE_KEY,
    DecryptionWithheldError,
    RefusalBudget,
    RefusalBudgetSpentError,
    check_may_decrypt,
    close_run,
    kit_refusal_budget,
    run_closed,
    settle_failure,
)
from crossfed.cli import app
from crossfed.protocol import FederationSettings
from federation import create_kits

SETTINGS = FederationSettings(mode="plaintext")  # only its state key is used
DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"


def _node(path: Path | None) -> Context:
    config: dict[str, str | int] = {"partition-id": 0}
    if path is not None:
        config[REFUSAL_FILE_KEY] = str(path)
    return Context(run_id=1, node_id=1, node_config=config, state=RecordDict(), run_config={})


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusal_count, "_UNRECORDED", set())


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real institution kit (the count lives in it, named for its key)."""
    root = tmp_path_factory.mktemp("refusals")
    frame = pd.read_csv(DATA)
    frame.head(200).to_csv(root / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), root / "schema.yaml")
    create_kits(
        root / "fed",
        federation="fed",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU"), ("bank-us", "US")],
        schema=root / "schema.yaml",
        pin="sha256:" + "0" * 64,
    )
    return root / "fed" / "bank-eu"


def test_a_missing_count_is_zero_and_each_refusal_is_written_0600(tmp_path: Path) -> None:
    budget = RefusalBudget(tmp_path / "state" / "refusals.json")
    assert budget.refused() == 0 and not budget.spent()
    old = os.umask(0)
    try:
        for expected in range(1, REFUSAL_BUDGET + 1):
            assert budget.record(f"s{expected}") == expected
            assert stat.S_IMODE(budget.path.stat().st_mode) == 0o600
            assert stat.S_IMODE(budget.lock_path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert budget.spent()
    budget.reset()
    assert budget.refused() == 0
    assert budget.closed("s1")  # the operator's reset reopens no run
    assert stat.S_IMODE(budget.path.stat().st_mode) == 0o600


def test_a_count_of_the_first_format_is_read(tmp_path: Path) -> None:
    path = tmp_path / "refusals.json"
    path.write_text(json.dumps({"format": "crossfed-refusals/v1", "refused": 2}))
    assert RefusalBudget(path).refused() == 2
    assert RefusalBudget(path).record("s") == 3


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe",
        b"3",
        json.dumps({"format": "crossfed-refusals/v2", "refused": "0", "closed": []}).encode(),
        json.dumps({"format": "crossfed-refusals/v2", "refused": True, "closed": []}).encode(),
        json.dumps({"format": "other", "refused": 0}).encode(),
        json.dumps({"format": "crossfed-refusals/v2", "refused": 0, "closed": ["../x"]}).encode(),
        json.dumps({"format": "crossfed-refusals/v2", "refused": 0, "closed": "ab"}).encode(),
        json.dumps({"format": "crossfed-refusals/v2", "refused": 0, "x": "y" * 9000}).encode(),
    ],
)
def test_a_damaged_count_is_spent(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "refusals.json"
    path.write_bytes(content)
    assert RefusalBudget(path).spent()


def test_an_unreadable_count_is_spent(tmp_path: Path) -> None:
    path = tmp_path / "refusals.json"
    path.mkdir()  # reading a folder fails whoever runs the test (root ignores modes)
    assert RefusalBudget(path).spent()


def test_a_closed_run_withholds_decryption_and_other_runs_do_not(tmp_path: Path) -> None:
    node = _node(tmp_path / "refusals.json")
    check_may_decrypt(node, SETTINGS, "s1")
    close_run(node, SETTINGS, "s1")
    with pytest.raises(DecryptionWithheldError):
        check_may_decrypt(node, SETTINGS, "s1")
    assert RefusalBudget(tmp_path / "refusals.json").refused() == 1
    check_may_decrypt(_node(tmp_path / "refusals.json"), SETTINGS, "s2")


def test_a_closed_run_stays_closed_for_a_node_that_rejoined(tmp_path: Path) -> None:
    """R5: the aggregator makes the SuperNode rejoin; its node state is empty, the file not."""
    path = tmp_path / "refusals.json"
    close_run(_node(path), SETTINGS, "s1", spend=False)
    rejoined = _node(path)  # a fresh InMemoryNodeState
    assert run_closed(rejoined, SETTINGS, "s1")
    with pytest.raises(DecryptionWithheldError):
        check_may_decrypt(rejoined, SETTINGS, "s1")
    check_may_decrypt(rejoined, SETTINGS, "s2")  # another run is open
    assert "s1" not in path.read_text()  # the file keeps digests, not the aggregator's text
    # Only the latest closed runs are kept: an older one reopened is no more than a new run.
    budget = RefusalBudget(path)
    for index in range(MAX_CLOSED):
        budget.record(f"later-{index}", spend=False)
    assert not budget.closed("s1") and budget.closed(f"later-{MAX_CLOSED - 1}")
    assert budget.refused() == 0


@pytest.mark.parametrize(
    ("failure", "verified", "closed", "spent"),
    [
        # Decided before anything was decrypted, whatever the key: free (R3).
        (InboundMessageError("extra record"), False, False, 0),
        (crypto.MalformedDataError("truncated"), False, False, 0),
        (crypto.HeaderRefusedError("too few contributors"), False, False, 0),
        # The mask ledger: decided by what the aggregator asked for before (red team 3).
        (MaskReuseRefusedError("quantised before"), False, False, 0),
        # A verification that failed: the key-dependent bit the budget bounds.
        (crypto.IntegrityError("check value"), False, True, 1),
        (crypto.DecryptionError("decryption failed"), False, True, 1),
        (ValueError("raised while decrypting"), False, True, 1),
        # A policy refusal of a verified sum, or a failure after every sum verified (R2).
        (TamperedAggregateError("summed weight / movement"), False, True, 0),
        (TamperedAggregateError("movement bound"), True, True, 0),
        (TrainingDivergedError("NaN", epoch=0, batch=0), True, True, 0),
        (None, True, True, 0),
    ],
)
def test_only_key_dependent_failures_spend_the_budget(
    tmp_path: Path,
    failure: BaseException | None,
    verified: bool,
    closed: bool,
    spent: int,
) -> None:
    path = tmp_path / "refusals.json"
    node = _node(path)
    settle_failure(node, SETTINGS, "s1", failure, verified=verified)
    assert run_closed(node, SETTINGS, "s1") is closed
    assert run_closed(_node(path), SETTINGS, "s1") is closed  # also after a rejoin
    assert RefusalBudget(path).refused() == spent


def test_a_count_that_cannot_be_written_refuses_everything_in_this_process(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    path = blocker / "refusals.json"  # its parent is a file: every write fails
    close_run(_node(path), SETTINGS, "s1")
    with pytest.raises(DecryptionWithheldError):
        check_may_decrypt(_node(path), SETTINGS, "s2")


def test_without_a_file_only_the_run_is_closed() -> None:
    node = _node(None)
    close_run(node, SETTINGS, "s1")
    with pytest.raises(DecryptionWithheldError):
        check_may_decrypt(node, SETTINGS, "s1")
    check_may_decrypt(_node(None), SETTINGS, "s1")


_HOLDER = """
import sys
from pathlib import Path
from clients.refusal_count import RefusalBudget
with RefusalBudget(Path(sys.argv[1])).claim():
    print("claimed", flush=True)
    sys.stdin.read()  # held until the test closes our stdin
"""


def test_one_process_at_a_time_writes_a_count(tmp_path: Path) -> None:
    """R7: while a runner holds the count, no other process writes it or decrypts past it."""
    budget = RefusalBudget(tmp_path / "refusals.json")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(budget.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"claimed\n"
        with pytest.raises(RefusalCountBusyError), budget.claim():
            pass
        with pytest.raises(RefusalCountBusyError):
            budget.reset()
        # A refusal this process cannot write is not lost: it refuses everything instead.
        assert not budget.spent()
        budget.record("s1")
        assert budget.spent()
        with pytest.raises(DecryptionWithheldError):
            check_may_decrypt(_node(budget.path), SETTINGS, "s2")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    with budget.claim():  # released with its holder
        assert budget.record("s1") == 1  # the claimant writes under its own lock
        with pytest.raises(RefusalCountBusyError), budget.claim():
            pass


def test_every_out_folder_shares_the_count_of_the_kits_key(kit: Path, tmp_path: Path) -> None:
    """R4: a dated --out per run does not start the count again; the key does."""
    loaded = InstitutionKit.load(kit)
    budget = kit_refusal_budget(loaded)
    fingerprint = loaded.manifest.context_fingerprint
    assert budget.path == kit.resolve() / f"refusals-{fingerprint[:16]}.json"
    assert budget == refusal_budget(kit, fingerprint)
    try:
        check_refusals(loaded, tmp_path / "out-2026-11-29")
        for index in range(REFUSAL_BUDGET):
            budget.record(f"s{index}")
        for out in ("out-2026-11-29", "out-2026-11-30"):
            with pytest.raises(RefusalBudgetSpentError, match="reset-refusals"):
                check_refusals(loaded, tmp_path / out)
        # Another key (a kit re-created in place) has a count of its own.
        assert not refusal_budget(kit, "ab" * 32).spent()
        with pytest.raises(ValueError, match="fingerprint"):
            refusal_budget(kit, "../../etc")
    finally:
        budget.path.unlink(missing_ok=True)


def test_the_operator_resets_the_count_of_the_kits_key(kit: Path, tmp_path: Path) -> None:
    budget = kit_refusal_budget(InstitutionKit.load(kit))
    try:
        for index in range(REFUSAL_BUDGET):
            budget.record(f"s{index}")
        result = CliRunner().invoke(
            app,
            ["client", "--kit", str(kit), "--data", "x.csv", "--out", str(tmp_path / "new"),
             "--reset-refusals"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "RESET" in result.output
        assert budget.refused() == 0
        check_refusals(InstitutionKit.load(kit), tmp_path / "other")
        missing = CliRunner().invoke(
            app,
            ["client", "--kit", str(tmp_path / "no-kit"), "--data", "x.csv", "--out",
             str(tmp_path), "--reset-refusals"],
        )  # fmt: skip
        assert missing.exit_code == 2 and "nothing was reset" in missing.output
    finally:
        budget.path.unlink(missing_ok=True)


def test_the_runner_counts_refusals_in_the_kit(
    kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--refusal-file`` (default: the kit's count) reaches the ClientApp's node config."""
    import clients.app_runner as runner

    seen: dict[str, Path | None] = {}

    def capture(*_: object, refusal_file: Path | None = None, **__: object) -> None:
        seen["file"] = refusal_file
        raise RuntimeError("stop here")  # the runner reports it and exits 2

    monkeypatch.setattr(runner, "runner_setup", capture)
    base = ["--data", "d.csv", "--out", "o", "--runtime-api-address", "127.0.0.1:9"]
    log = tmp_path / "work" / "institution.log"
    assert runner.main(["--kit", str(kit), *base, "--log-file", str(log)]) == 2
    assert seen["file"] == kit_refusal_budget(InstitutionKit.load(kit)).path
    chosen = tmp_path / "elsewhere.json"
    argv = ["--kit", str(kit), *base, "--log-file", str(log), "--refusal-file", str(chosen)]
    assert runner.main(argv) == 2
    assert seen["file"] == chosen


def test_client_check_reports_the_refusal_count(kit: Path, tmp_path: Path) -> None:
    """`crossfed client --check` names a spent count as a problem and a partial one as a note."""
    budget = kit_refusal_budget(InstitutionKit.load(kit))
    data = kit.parents[1] / "bank.csv"
    try:
        report = check_institution(kit, data, tmp_path / "out")
        assert not any("refused" in line for line in (*report.problems, *report.notes))
        budget.record("s1")
        report = check_institution(kit, data, tmp_path / "another-out")
        assert any("1 of 3 refused aggregates" in note for note in report.notes)
        budget.record("s2")
        budget.record("s3")
        report = check_institution(kit, data, tmp_path / "a-third-out")
        assert any("decrypts nothing until you review" in p for p in report.problems)
    finally:
        budget.path.unlink(missing_ok=True)


def test_the_runner_holds_the_count_while_it_serves(
    kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R7: the runner writes its refusals under its own lock; a second runner is refused."""
    import clients.app_runner as runner

    budget = kit_refusal_budget(InstitutionKit.load(kit))
    argv = ["--kit", str(kit), "--data", str(kit.parents[1] / "bank.csv"), "--out",
            str(tmp_path / "o"), "--runtime-api-address", "127.0.0.1:9",
            "--log-file", str(tmp_path / "work" / "institution.log")]  # fmt: skip
    seen: dict[str, object] = {}

    def serve(self: object, *_: object, **__: object) -> None:
        seen["count"] = budget.record("s1")  # what a refused aggregate writes, in-process
        seen["second runner"] = runner.main(argv)  # (another process: see the test above)

    monkeypatch.setattr(runner.AppRunner, "serve", serve)
    try:
        assert runner.main(argv) == 0
        assert seen == {"count": 1, "second runner": 2}
        assert not budget.spent() and budget.refused() == 1
        budget.reset()  # the runner is gone: its lock went with it
    finally:
        budget.path.unlink(missing_ok=True)
