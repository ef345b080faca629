"""A malicious aggregator against real institutions: its code and its settings are refused.

One SuperLink on ``localhost`` (the kit names the aggregator by a DNS name, so
the operator's local control link and the institutions' TLS both rely on it)
and two ``crossfed client`` processes (SuperNode with process isolation plus the
institution's runner). The aggregator then plays the attacker, submitting, one
after another on the same SuperLink:

1. a modified project tree whose ClientApp writes a marker file and reads the
   bank's ``secret.ctx`` — a bundle swap;
2. the honest tree with ``mode = "plaintext"`` in the run configuration;
3. the honest tree with another ``test-fraction``.

Every bank refuses every message before its app runs: the marker never appears,
no message is accepted, the refusal (with the key or the digest) is in the
bank's local log, and the aggregator sees only the fixed code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clients import infer_schema, load_schema, save_schema
from clients.shapes import model_shapes_json
from crossfed.protocol import (
    app_pin,
    flower_env,
    free_port,
    project_root,
    stop_tree,
    toml_string,
)
from federation import AggregatorKit, SuperLink, create_kits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data" / "german_credit.csv"
NAMES = ("bank-eu", "bank-sg")
RUN_TIMEOUT = 300  # a safety net only: each refused run ends in well under a minute
_RUN_ID = re.compile(r"Successfully started run (\d+)")
_PACKAGES = ("clients", "crossfed", "crypto", "federation")

_EVIL_CLIENT_APP = '''"""The aggregator's ClientApp: it would take the bank's key and rows."""

from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp

MARKER = Path({marker!r})
MARKER.write_text("imported at the bank")
app = ClientApp()


@app.query()
def steal(msg, context):
    key = Path(str(context.node_config.get("secret-context", "secret.ctx"))).read_bytes()
    MARKER.write_text(f"stole {{len(key)}} bytes of the secret context")
    return Message(RecordDict({{"config": ConfigRecord({{"stolen": key}})}}), reply_to=msg)
'''


def _crossfed(*args: str) -> list[str]:
    return [sys.executable, "-c", "from crossfed.cli import main; main()", *args]


def _snapshot(tree: Path) -> Path:
    """A copy of this crossfed's Flower App (its pyproject and packages).

    The kits pin the copy and the honest runs submit it: the working tree may
    change while the test runs (other work in progress), a deployment's does not.
    """
    source = project_root()
    tree.mkdir()
    shutil.copy2(source / "pyproject.toml", tree / "pyproject.toml")
    for package in _PACKAGES:
        shutil.copytree(
            source / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tree


def _write_run_config(path: Path, config: dict[str, int | float | str]) -> Path:
    lines = [
        f"{key} = {toml_string(value) if isinstance(value, str) else repr(value)}"
        for key, value in config.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Attack:
    """One run the attacker submitted and what each side kept of it."""

    run_id: str
    returncode: int
    aggregator_log: str


@dataclass
class Outcome:
    root: Path
    kits: Path
    marker: Path
    evil_digest: str
    attacks: dict[str, Attack]
    bank_logs: dict[str, str]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("sovereign")
    env = flower_env(root / "flwr-home-default")
    frame = pd.read_csv(DATA)
    order = np.random.default_rng(11).permutation(len(frame))
    for name, part in zip(NAMES, np.array_split(order, len(NAMES)), strict=True):
        frame.iloc[part].to_csv(root / f"{name}.csv", index=False)
    save_schema(infer_schema(frame, "creditability", "bad"), root / "schema.yaml")
    honest_app = _snapshot(root / "app")
    marker = root / "marker"
    evil = _snapshot(root / "evil-app")
    (evil / "clients" / "client_app.py").write_text(_EVIL_CLIENT_APP.format(marker=str(marker)))
    evil_digest = app_pin(evil)
    kits = root / "kits"
    create_kits(
        kits,
        federation="sovereign",
        aggregator_address=f"localhost:{free_port()}",  # a DNS name, not an address
        institutions=[(name, "EU") for name in NAMES],
        schema=root / "schema.yaml",
        preset="lean",
        rounds=1,
        round_timeout=120,
        training={
            "epochs": 1,
            "model-shapes": model_shapes_json(load_schema(root / "schema.yaml"), "logistic", ()),
        },
        pin=app_pin(honest_app),
    )

    kit = AggregatorKit.load(kits / "aggregator")
    link = SuperLink(kit, kit.path / "run")
    honest = kit.manifest.run_config(
        public_context=str(kit.public_context), schema=str(kit.schema), out_dir=str(root / "agg")
    )
    runs = {
        "bundle-swap": (evil, honest),
        "plaintext": (honest_app, {**honest, "mode": "plaintext"}),
        "test-fraction": (honest_app, {**honest, "test-fraction": 1e-9}),
    }
    clients: dict[str, subprocess.Popen[bytes]] = {}
    attacks: dict[str, Attack] = {}
    try:
        link.start()
        link.register_institutions()  # over TLS to 127.0.0.1: the certificate names it too
        for name in NAMES:
            with (root / f"{name}.log").open("wb") as log:
                clients[name] = subprocess.Popen(
                    _crossfed(
                        "client", "--kit", str(kits / name), "--data", str(root / f"{name}.csv"),
                        "--out", str(root / f"out-{name}"), "--timeout", "900",
                    ),
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                )  # fmt: skip
        run_log = link.logs / "run.log"
        for label, (app_dir, config) in runs.items():
            offset = run_log.stat().st_size if run_log.is_file() else 0
            submitted = link.submit(app_dir, _write_run_config(root / f"{label}.toml", config))
            try:
                code = submitted.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                stop_tree(submitted)
                code = -1
            text = run_log.read_bytes()[offset:].decode(errors="replace")
            found = _RUN_ID.search(text)
            attacks[label] = Attack(found.group(1) if found else "?", code, text)
        for name, process in clients.items():
            assert process.poll() is None, (root / f"{name}.log").read_text()[-3000:]
    finally:
        for process in clients.values():
            stop_tree(process)
        link.stop()
    bank_logs = {
        name: (root / f"out-{name}" / ".supernode" / "institution.log").read_text()
        for name in NAMES
    }
    yield Outcome(root, kits, marker, evil_digest, attacks, bank_logs)


def _entries(log: str, run_id: str) -> list[str]:
    return [line for line in log.splitlines() if f" of run {run_id}" in line]


def test_a_dns_named_kit_registers_and_connects_its_institutions(outcome: Outcome) -> None:
    for name in NAMES:
        supernode = outcome.root / f"out-{name}" / ".supernode" / "supernode.log"
        assert "SuperNode ID:" in supernode.read_text(), name
        assert "runner ready" in outcome.bank_logs[name]


def test_a_swapped_bundle_is_refused_and_never_runs(outcome: Outcome) -> None:
    attack = outcome.attacks["bundle-swap"]
    assert not outcome.marker.exists()  # never imported, never run, at either bank
    for name in NAMES:
        # Flower's per-message process would have installed the bundle here.
        assert not (outcome.root / f"out-{name}" / ".supernode" / "flwr-home" / "apps").exists()
        entries = _entries(outcome.bank_logs[name], attack.run_id)
        assert entries, outcome.bank_logs[name]
        assert all("REFUSED" in line and "BUNDLE_REFUSED" in line for line in entries)
        assert outcome.evil_digest in entries[0]
    # The aggregator learns the fixed code, nothing of the bank's check; its run fails.
    assert "crossfed:BUNDLE_REFUSED" in attack.aggregator_log
    assert "QuorumNotReachedError: statistics round: 0 valid replies" in attack.aggregator_log
    _assert_aggregator_learns_nothing(outcome)


@pytest.mark.parametrize(
    ("label", "key"), [("plaintext", "mode"), ("test-fraction", "test-fraction")]
)
def test_a_run_config_override_is_refused_before_anything_is_sent(
    outcome: Outcome, label: str, key: str
) -> None:
    attack = outcome.attacks[label]
    for name in NAMES:
        entries = _entries(outcome.bank_logs[name], attack.run_id)
        assert entries, outcome.bank_logs[name]
        # No message of this run reached the app: nothing derived from the data left.
        assert all("REFUSED" in line and "CONFIG_MISMATCH" in line for line in entries)
        assert f"run config key {key!r}" in entries[0]
        assert entries[0].count("run config key") == 1  # the kit's own settings agreed
    assert "crossfed:CONFIG_MISMATCH" in attack.aggregator_log
    assert "QuorumNotReachedError: statistics round: 0 valid replies" in attack.aggregator_log
    _assert_aggregator_learns_nothing(outcome)


def _assert_aggregator_learns_nothing(outcome: Outcome) -> None:
    """No digest, path or refusal detail in the aggregator's logs or SuperLink database."""
    pin = AggregatorKit.load(outcome.kits / "aggregator").manifest.app_pin
    probes = [pin, outcome.evil_digest, "run config key 'mode'", "run config key 'test-fraction'"]
    probes += [str(outcome.kits / name) for name in NAMES]
    probes += [str(outcome.root / f"{name}.csv") for name in NAMES]
    for path in (outcome.kits / "aggregator" / "run").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(p.encode() in data for p in probes), path
