"""The institution's runner refuses the aggregator's code and settings, without any process.

:meth:`clients.app_runner.AppRunner.handle` is what the runner does with each
task the SuperNode hands it. Here the aggregator's side is played by hand: it
ships a bundle (a zip, as Flower's FAB) and a run configuration, and reads the
reply. The bank's ClientApp is a stand-in that records what it was given.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import stat
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.fab import Fab
from flwr.supercore.run import Run

from clients import InstitutionKit, infer_schema, save_schema
from clients.app_guard import (
    SOVEREIGN_KEYS,
    RunConfigMismatchError,
    check_run_config,
    kit_expectations,
)
from clients.app_runner import AppRunner, RunnerSetup, main, runner_setup
from clients.local_log import institution_logger, open_local_log
from crossfed.protocol import ErrorCode, FederationSettings, ProvisioningError, fab_digest
from federation import create_kits

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
SECRET_TEXT = "decrypted total rows 1234.5678"


def _bundle(client_app_source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pyproject.toml", "[project]\nname = 'crossfed'\n")
        archive.writestr("clients/__init__.py", "")
        archive.writestr("clients/client_app.py", client_app_source)
    return buffer.getvalue()


@dataclass
class Bank:
    """One institution's kit, its runner set-up, and the bundles in play."""

    kit: InstitutionKit
    setup: RunnerSetup
    good: bytes
    evil: bytes
    marker: Path
    log_path: Path


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    root = tmp_path_factory.mktemp("bank")
    frame = pd.read_csv(DATA).head(200)
    frame.to_csv(root / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), root / "schema.yaml")
    marker = root / "marker"
    good = _bundle("app = 'the reviewed crossfed'\n")
    evil = _bundle(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "import os\nSTOLEN = open(os.environ.get('SECRET', 'secret.ctx'), 'rb').read()\n"
    )
    create_kits(
        root / "kits",
        federation="sovereign",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU"), ("bank-sg", "SG")],
        schema=root / "schema.yaml",
        preset="lean",
        rounds=2,
        training={"epochs": 1},
        pin=fab_digest(good),
    )
    kit = InstitutionKit.load(root / "kits" / "bank-eu")
    setup = runner_setup(kit, data_path=root / "bank.csv", out_dir=root / "out")
    return Bank(kit, setup, good, evil, marker, root / "institution.log")


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@dataclass
class StandIn:
    """The bank's ClientApp: replies, or fails, and records what it was given."""

    seen: list[Context]
    app: ClientApp


def _stand_in(behaviour: str = "reply") -> StandIn:
    seen: list[Context] = []
    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        seen.append(context)
        if behaviour == "raise":
            raise ValueError(SECRET_TEXT)
        if behaviour == "error-flower":
            return Message(Error(code=4, reason=SECRET_TEXT), reply_to=msg)
        if behaviour == "error-crossfed":
            return Message(Error(int(ErrorCode.INTEGRITY_FAILED), SECRET_TEXT), reply_to=msg)
        return Message(RecordDict(), reply_to=msg)

    return StandIn(seen, app)


def _aggregator_config(bank: Bank, **changes: object) -> dict[str, object]:
    """What an honest aggregator's run config looks like at the SuperNode, then ``changes``."""
    defaults = FederationSettings(public_context="x").to_run_config()
    honest = bank.kit.manifest.run_config(
        public_context="/aggregator/public.ctx",
        schema="/aggregator/schema.yaml",
        out_dir="/aggregator/out",
    )
    return {**defaults, **honest, **changes}


@contextlib.contextmanager
def _local_log(path: Path) -> Iterator[None]:
    """The institution's log written to ``path`` for the duration (as the runner's main does)."""
    handler = open_local_log(path)
    try:
        yield
    finally:
        institution_logger().removeHandler(handler)
        handler.close()


@pytest.fixture
def runner(bank: Bank) -> Iterator[tuple[AppRunner, StandIn]]:
    bank.log_path.unlink(missing_ok=True)
    stand_in = _stand_in()
    with _local_log(bank.log_path):
        yield AppRunner(bank.setup, stand_in.app), stand_in


def _ask(
    runner: AppRunner, bank: Bank, fab: bytes, config: dict[str, object]
) -> tuple[Message, str]:
    message = Message(RecordDict(), dst_node_id=1, message_type="query")
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"out-dir": "/aggregator/chosen"},
        state=RecordDict(),
        run_config=config,  # type: ignore[arg-type]
    )
    reply = runner.handle(message, context, Run.create_empty(1), Fab("h", fab, {}))
    return reply, bank.log_path.read_text()


def test_the_pinned_bundle_runs_the_installed_app_with_the_kits_settings(
    bank: Bank, runner: tuple[AppRunner, StandIn]
) -> None:
    app_runner, stand_in = runner
    reply, log = _ask(app_runner, bank, bank.good, _aggregator_config(bank))
    assert not reply.has_error()
    (context,) = stand_in.seen
    assert context.run_config == bank.setup.settings.to_run_config()
    assert context.run_config["secret-context"] == str(bank.kit.secret_context)
    assert context.run_config["out-dir"] != "/aggregator/out"
    assert context.node_config == bank.setup.node_config
    assert "accepted query message" in log and fab_digest(bank.good) in log


def test_a_swapped_bundle_is_refused_and_never_imported(
    bank: Bank, runner: tuple[AppRunner, StandIn]
) -> None:
    app_runner, stand_in = runner
    reply, log = _ask(app_runner, bank, bank.evil, _aggregator_config(bank))
    assert reply.has_error()
    assert reply.error.code == ErrorCode.BUNDLE_REFUSED
    assert reply.error.reason == "crossfed:BUNDLE_REFUSED"  # no path, no hash
    assert stand_in.seen == [] and not bank.marker.exists()
    refusal = (
        f"REFUSED query message of run 1 with BUNDLE_REFUSED: app bundle {fab_digest(bank.evil)}"
    )
    assert refusal in log and bank.setup.pin in log
    assert stat.S_IMODE(bank.log_path.stat().st_mode) == 0o600


def test_even_a_pinned_bundle_is_never_imported(bank: Bank, tmp_path: Path) -> None:
    """The pin is a second line: a kit that pinned the evil bundle still runs installed code."""
    evil_pin = RunnerSetup(
        fab_digest(bank.evil), bank.setup.settings, bank.setup.expected, bank.setup.node_config
    )
    stand_in = _stand_in()
    app_runner = AppRunner(evil_pin, stand_in.app)
    before = sys.modules.get("clients.client_app")
    with _local_log(bank.log_path):
        reply, _ = _ask(app_runner, bank, bank.evil, _aggregator_config(bank))
    assert not reply.has_error() and len(stand_in.seen) == 1
    assert not bank.marker.exists()
    assert sys.modules.get("clients.client_app") is before


def test_an_unreadable_bundle_is_refused(bank: Bank, runner: tuple[AppRunner, StandIn]) -> None:
    app_runner, stand_in = runner
    reply, log = _ask(app_runner, bank, b"PK\x03\x04 not a zip", _aggregator_config(bank))
    assert reply.error.code == ErrorCode.BUNDLE_REFUSED and stand_in.seen == []
    assert "unreadable app bundle" in log


OVERRIDES = [
    ("mode", "plaintext"),
    ("test-fraction", 1e-9),
    ("epochs", 50),
    ("rounds", 99),
    ("learning-rate", 10.0),
    ("batch-size", 1),
    ("proximal-mu", 1.0),
    ("normalise-steps", False),
    ("seed", 7),
    ("model", "mlp"),
    ("hidden", "512"),
    ("dp-clip", 5.0),
    ("dp-delta", 0.5),
    ("dpsgd-epsilon", 50.0),
    ("dpsgd-clip", 100.0),
    ("min-institutions", 1),
    ("institutions", 1),
    ("model-shapes", "[[1, 2]]"),
]


@pytest.mark.parametrize(("key", "value"), OVERRIDES, ids=[k for k, _ in OVERRIDES])
def test_a_run_config_that_disagrees_with_the_kit_is_refused(
    bank: Bank, runner: tuple[AppRunner, StandIn], key: str, value: object
) -> None:
    app_runner, stand_in = runner
    reply, log = _ask(app_runner, bank, bank.good, _aggregator_config(bank, **{key: value}))
    assert reply.error.code == ErrorCode.CONFIG_MISMATCH
    assert reply.error.reason == "crossfed:CONFIG_MISMATCH"
    assert stand_in.seen == []
    assert f"run config key {key!r} is {value!r}" in log


def test_every_setting_named_in_the_brief_is_compared() -> None:
    wanted = {
        "mode", "preset", "dp-clip", "dp-noise-multiplier", "dp-delta", "test-fraction",
        "rounds", "model", "hidden", "epochs", "batch-size", "learning-rate", "proximal-mu",
        "seed", "model-shapes", "schema-sha256", "federation", "min-institutions",
        "institutions", "dpsgd-epsilon", "dpsgd-clip", "dpsgd-batch-size",
        "dpsgd-learning-rate",
    }  # fmt: skip
    assert wanted <= set(SOVEREIGN_KEYS)
    assert {"out-dir", "public-context", "secret-context", "schema"}.isdisjoint(SOVEREIGN_KEYS)


@pytest.mark.parametrize(
    "changes",
    [
        {"preset": "tutorial"},
        {"federation": "another"},
        {"schema-sha256": "0" * 64},
        {"mode": "bogus"},
        {"dp-noise-multiplier": 1.0},  # without a clip: invalid, refused all the same
    ],
    ids=["preset", "federation", "schema", "invalid-mode", "invalid-dp"],
)
def test_identity_keys_and_invalid_values_are_refused(
    bank: Bank, changes: dict[str, object]
) -> None:
    config = _aggregator_config(bank, **changes)
    with pytest.raises(RunConfigMismatchError):
        check_run_config(config, bank.setup.settings, kit_expectations(bank.kit))


def test_paths_and_the_aggregators_own_settings_may_differ(
    bank: Bank, runner: tuple[AppRunner, StandIn]
) -> None:
    app_runner, stand_in = runner
    config = _aggregator_config(
        bank,
        **{
            "round-timeout": 5.0,
            "max-update-bytes": 1 << 20,
            "out-dir": "/elsewhere",
            "federation": bank.kit.manifest.name,
            "preset": bank.kit.manifest.preset,
            "schema-sha256": bank.kit.manifest.schema_sha256,
        },
    )
    reply, _ = _ask(app_runner, bank, bank.good, config)
    assert not reply.has_error() and len(stand_in.seen) == 1


@pytest.mark.parametrize("behaviour", ["raise", "error-flower", "error-crossfed"])
def test_an_app_failure_crosses_the_wire_as_a_fixed_code(
    bank: Bank, tmp_path: Path, behaviour: str
) -> None:
    log_path = tmp_path / "institution.log"
    app_runner = AppRunner(bank.setup, _stand_in(behaviour).app)
    message = Message(RecordDict(), dst_node_id=1, message_type="query")
    context = Context(1, 1, {}, RecordDict(), _aggregator_config(bank))  # type: ignore[arg-type]
    with _local_log(log_path):
        reply = app_runner.handle(message, context, Run.create_empty(1), Fab("h", bank.good, {}))
    expected = ErrorCode.INTEGRITY_FAILED if behaviour == "error-crossfed" else ErrorCode.INTERNAL
    assert reply.error.code == expected
    assert reply.error.reason == f"crossfed:{expected.name}"
    assert SECRET_TEXT in log_path.read_text()


def test_a_kit_without_an_app_pin_does_not_start_a_runner(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA).head(50)
    frame.to_csv(tmp_path / "bank.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), tmp_path / "schema.yaml")
    create_kits(
        tmp_path / "kits",
        federation="unpinned",
        aggregator_address="127.0.0.1:9092",
        institutions=[("bank-eu", "EU")],
        schema=tmp_path / "schema.yaml",
        pin="",
    )
    code = main(
        [
            "--kit", str(tmp_path / "kits" / "bank-eu"), "--data", str(tmp_path / "bank.csv"),
            "--out", str(tmp_path / "out"), "--runtime-api-address", "127.0.0.1:9",
            "--log-file", str(tmp_path / "institution.log"),
        ]
    )  # fmt: skip
    assert code == 2
    assert "pins no app bundle" in (tmp_path / "institution.log").read_text()


def test_a_kit_whose_schema_was_swapped_is_refused(bank: Bank, tmp_path: Path) -> None:
    copy = tmp_path / "bank-eu"
    shutil.copytree(bank.kit.path, copy)
    schema = copy / "schema.yaml"
    schema.chmod(0o644)
    schema.write_text(schema.read_text().replace("creditability", "creditability2"))
    with pytest.raises(ProvisioningError, match="SHA-256 differs"):
        InstitutionKit.load(copy)
