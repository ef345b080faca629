"""The refusal count: 0600, fail closed when damaged or unwritable, reset only on purpose."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict
from typer.testing import CliRunner

from clients import refusals
from clients.deploy import check_refusals
from clients.refusals import (
    REFUSAL_BUDGET,
    REFUSAL_FILE_KEY,
    DecryptionWithheldError,
    RefusalBudget,
    RefusalBudgetSpentError,
    check_may_decrypt,
    close_run,
    refusal_budget,
)
from crossfed.cli import app
from crossfed.protocol import FederationSettings

SETTINGS = FederationSettings(mode="plaintext")  # only its state key is used


def _node(path: Path | None) -> Context:
    config: dict[str, str | int] = {"partition-id": 0}
    if path is not None:
        config[REFUSAL_FILE_KEY] = str(path)
    return Context(run_id=1, node_id=1, node_config=config, state=RecordDict(), run_config={})


def test_a_missing_count_is_zero_and_each_refusal_is_written_0600(tmp_path: Path) -> None:
    budget = RefusalBudget(tmp_path / "state" / "refusals.json")
    assert budget.refused() == 0 and not budget.spent()
    old = os.umask(0)
    try:
        for expected in range(1, REFUSAL_BUDGET + 1):
            assert budget.record() == expected
            assert stat.S_IMODE(budget.path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert budget.spent()
    budget.reset()
    assert budget.refused() == 0
    assert stat.S_IMODE(budget.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe",
        b"3",
        json.dumps({"format": "crossfed-refusals/v1", "refused": "0"}).encode(),
        json.dumps({"format": "crossfed-refusals/v1", "refused": True}).encode(),
        json.dumps({"format": "other", "refused": 0}).encode(),
        json.dumps({"format": "crossfed-refusals/v1", "refused": 0, "x": "y" * 5000}).encode(),
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
    # Another Flower run has a fresh node state: only the count carries over.
    check_may_decrypt(_node(tmp_path / "refusals.json"), SETTINGS, "s2")


def test_a_count_that_cannot_be_written_refuses_everything_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusals, "_UNRECORDED", set())
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


def test_the_client_refuses_to_start_until_the_operator_resets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    budget = refusal_budget(out)
    assert budget.path == out.resolve() / ".supernode" / refusals.REFUSALS_FILE
    check_refusals(out)
    for _ in range(REFUSAL_BUDGET):
        budget.record()
    with pytest.raises(RefusalBudgetSpentError, match="reset-refusals"):
        check_refusals(out)
    result = CliRunner().invoke(
        app,
        ["client", "--kit", str(tmp_path), "--data", "x.csv", "--out", str(out),
         "--reset-refusals"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "RESET" in result.output
    assert budget.refused() == 0
    check_refusals(out)


def test_the_runner_counts_refusals_beside_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--refusal-file`` (default: beside ``--log-file``) reaches the ClientApp's node config."""
    import clients.app_runner as runner

    seen: dict[str, Path | None] = {}

    def capture(*_: object, refusal_file: Path | None = None, **__: object) -> None:
        seen["file"] = refusal_file
        raise RuntimeError("stop here")  # the runner reports it and exits 2

    monkeypatch.setattr(runner, "runner_setup", capture)
    monkeypatch.setattr(runner.InstitutionKit, "load", lambda _path: None)
    base = ["--kit", "k", "--data", "d.csv", "--out", "o", "--runtime-api-address", "127.0.0.1:9"]
    log = tmp_path / "work" / "institution.log"
    assert runner.main([*base, "--log-file", str(log)]) == 2
    assert seen["file"] == log.parent / refusals.REFUSALS_FILE
    chosen = tmp_path / "elsewhere.json"
    assert runner.main([*base, "--log-file", str(log), "--refusal-file", str(chosen)]) == 2
    assert seen["file"] == chosen


def test_client_check_reports_the_refusal_count(tmp_path: Path) -> None:
    """`crossfed client --check` names a spent count as a problem and a partial one as a note."""
    from clients.preflight import _check_out

    out = tmp_path / "out"
    budget = refusal_budget(out)
    problems: list[str] = []
    notes: list[str] = []
    _check_out(out, problems, notes)
    assert problems == [] and not any("refused" in note for note in notes)
    budget.record()
    _check_out(out, problems, notes)
    assert problems == [] and any("1 of 3 refused aggregates" in note for note in notes)
    budget.record()
    budget.record()
    _check_out(out, problems, notes)
    assert any("decrypts nothing until you review" in problem for problem in problems)
