"""The aggregator in deployment: a SuperLink over TLS with node authentication, one run.

:func:`run_aggregator` takes an aggregator kit (:class:`~federation.kit.AggregatorKit`)
and

1. starts ``flower-superlink`` with the kit's server certificate, SuperNode
   authentication on, runtime dependency installation off, its Fleet API on the
   kit's address and its other APIs on free ports of 127.0.0.1;
2. registers every institution's public node key (``flwr supernode register``):
   SuperNodes with any other key are refused;
3. submits this project as a Flower App (``flwr run <project> … --run-config``)
   with the run settings from the kit's ``federation.yaml`` and waits for the
   ServerApp to return;
4. stops the SuperLink and everything it started.

Its working state (``FLWR_HOME``, the SuperLink's database, logs and
``status.json``, which ``crossfed status`` reads) lives in the kit's ``run/``
folder. The outputs — the encrypted global model, metrics and the audit log —
go to ``out_dir``; none of them holds plaintext parameters.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crossfed.protocol import (
    BundleError,
    ProvisioningError,
    app_pin,
    flower_env,
    flower_executable,
    free_port,
    parse_address,
    spawn,
    stop_tree,
    toml_string,
)
from crossfed.protocol import project_root as protocol_project_root
from crypto import write_atomically
from federation.errors import FederationError
from federation.kit import AggregatorKit

__all__ = [
    "CONNECTION",
    "AggregatorResult",
    "SuperLink",
    "project_root",
    "read_status",
    "rounds_applied",
    "run_aggregator",
]

#: Name of the connection in ``FLWR_HOME/config.toml`` that the ``flwr`` CLI uses.
CONNECTION = "crossfed"
RUN_DIR = "run"
STATUS_FILE = "status.json"


def project_root() -> Path:
    """The Flower App folder: this project's root, whose pyproject.toml names the apps."""
    try:
        return protocol_project_root()
    except BundleError as exc:
        raise FederationError(str(exc)) from exc


def _check_app_pin(app_dir: Path, pin: str) -> None:
    """Refuse to submit a project tree whose bundle is not the one the kits pin.

    Every institution would refuse each message of such a run; saying so here
    saves the operator a failed run.
    """
    try:
        built = app_pin(app_dir)
    except BundleError as exc:
        raise FederationError(str(exc)) from exc
    if built != pin:
        raise FederationError(
            f"{app_dir} is not the app the kits pin ({built} != {pin}): the institutions "
            "would refuse the run; deploy the crossfed version the kits were made with"
        )


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FederationError(f"the SuperLink exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.3)
    raise FederationError(f"the SuperLink did not open {host}:{port} within {timeout:.0f} s")


class SuperLink:
    """A ``flower-superlink`` process for one aggregator kit, and the ``flwr`` CLI beside it."""

    def __init__(self, kit: AggregatorKit, work_dir: Path, listen: str | None = None) -> None:
        self.kit = kit
        self.work_dir = work_dir
        self.flwr_home = work_dir / "flwr-home"
        self.logs = work_dir / "logs"
        self.listen = listen or f"{kit.manifest.host}:{kit.manifest.port}"
        parse_address(self.listen)
        self.control_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for the SuperLink and the ``flwr`` CLI."""
        return flower_env(self.flwr_home)

    def start(self, timeout: float = 60.0) -> None:
        """Start the SuperLink on a fresh database and wait until its APIs listen."""
        for stale in self.work_dir.glob("state.db*"):
            stale.unlink()
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        self.control_port = free_port()
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.control_port}"\n'
            f"root-certificates = {toml_string(str(self.kit.ca_cert))}\n"
        )
        command = [
            flower_executable("flower-superlink"),
            "--ssl-ca-certfile", str(self.kit.ca_cert),
            "--ssl-certfile", str(self.kit.server_cert),
            "--ssl-keyfile", str(self.kit.server_key),
            "--enable-supernode-auth",
            "--fleet-api-address", self.listen,
            "--host", "127.0.0.1",
            "--port", str(self.control_port),
            "--health-server-address", f"127.0.0.1:{free_port()}",
            "--disable-runtime-dependency-installation",
            "--database", str(self.work_dir / "state.db"),
        ]  # fmt: skip
        self.process = spawn(command, env=self.env, log_path=self.logs / "superlink.log")
        _wait_for_port("127.0.0.1", self.control_port, self.process, timeout)
        host, port = parse_address(self.listen)
        _wait_for_port("127.0.0.1" if host in ("0.0.0.0", "::") else host, port, self.process, 30)

    def flwr(self, *args: str, timeout: float = 120.0) -> dict[str, Any]:
        """Run ``flwr ARGS --format json`` against this SuperLink; the parsed reply."""
        command = [flower_executable("flwr"), *args, "--format", "json"]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        try:
            reply: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise FederationError(
                f"`flwr {' '.join(args)}` failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()[-500:]}"
            ) from exc
        if not reply.get("success", False):
            raise FederationError(f"`flwr {' '.join(args)}` refused: {reply}")
        return reply

    def register_institutions(self) -> dict[str, int]:
        """Register every institution's node key; institution name to node id."""
        return {
            name: int(
                self.flwr("supernode", "register", str(key), CONNECTION, "--name", name)["node-id"]
            )
            for name, key in self.kit.node_keys.items()
        }

    def node_states(self) -> dict[int, str]:
        """Node id to state (``registered``, ``online``, ``offline``…)."""
        nodes = self.flwr("supernode", "list", CONNECTION)["nodes"]
        return {int(node["node-id"]): str(node["status"]) for node in nodes}

    def submit(self, app_dir: Path, run_config: Path) -> subprocess.Popen[bytes]:
        """Start ``flwr run APP --stream``; it returns when the ServerApp does."""
        command = [
            flower_executable("flwr"), "run", str(app_dir), CONNECTION,
            "--stream", "--run-config", str(run_config),
        ]  # fmt: skip
        return spawn(command, env=self.env, log_path=self.logs / "run.log")

    def stop(self) -> None:
        """Stop the SuperLink and its SuperExec and ServerApp processes."""
        stop_tree(self.process)
        self.process = None


@dataclass(frozen=True)
class AggregatorResult:
    """How a deployment run ended."""

    returncode: int
    out_dir: Path
    log_dir: Path
    wall_s: float
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the ServerApp finished and wrote its metrics."""
        return self.returncode == 0 and (self.out_dir / "metrics.json").is_file()


_ERROR_LINE = re.compile(r"\b([A-Z]\w*Error): (.+)$")


def run_failure(log_path: Path) -> str:
    """The last ``SomeError: message`` line of a failed run's log (why the ServerApp stopped)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        found = _ERROR_LINE.search(line.strip())
        if found:
            return f"{found.group(1)}: {found.group(2)}"
    return ""


def _write_run_config(path: Path, config: dict[str, int | float | str]) -> None:
    lines = []
    for key, value in config.items():
        text = toml_string(value) if isinstance(value, str) else repr(value)
        lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n")


def _write_status(path: Path, status: dict[str, Any]) -> None:
    status = {**status, "updated": datetime.now(UTC).isoformat(timespec="seconds")}
    write_atomically(path, json.dumps(status, indent=2).encode())


def read_status(kit_dir: Path) -> dict[str, Any]:
    """The aggregator's last ``status.json`` for this kit.

    Raises
    ------
    ProvisioningError
        If the aggregator has never run from this kit.
    """
    path = kit_dir / RUN_DIR / STATUS_FILE
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ProvisioningError(f"no aggregator has run from {kit_dir} yet ({path})") from exc
    out_dir = Path(str(status.get("out_dir", "")))
    audit = out_dir / "audit.jsonl"
    if audit.is_file():
        status["rounds_done"] = rounds_applied(audit)
    return status


def rounds_applied(audit: Path) -> int:
    """The last round the current run applied, read from its audit log as it grows.

    A refused round leaves a line without an aggregate and is not counted; a line
    still being written is skipped. Use :func:`federation.verify_audit_log` to check
    the log, not this.
    """
    try:
        text = audit.read_text(errors="replace")
    except OSError:  # not written yet
        return 0
    done, run_id = 0, None
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("run_id") != run_id:
            done, run_id = 0, record.get("run_id")
        if record.get("aggregate_sha256") and isinstance(record.get("round"), int):
            done = max(done, record["round"])
    return done


def run_aggregator(
    kit_dir: Path,
    out_dir: Path,
    *,
    listen: str | None = None,
    timeout: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> AggregatorResult:
    """Start the SuperLink, run the federation to completion, stop everything.

    Parameters
    ----------
    kit_dir
        The aggregator's kit (``crossfed kit create``).
    out_dir
        Where the ServerApp writes ``global_model.bin`` (encrypted), ``metrics.json``,
        ``audit.jsonl`` and ``checkpoint.bin``.
    listen
        Address the Fleet API binds; the kit's aggregator address by default.
    timeout
        Seconds before the run is abandoned; None waits for the ServerApp.
    progress
        Called with the status each time it changes.
    """
    started = time.monotonic()
    kit = AggregatorKit.load(kit_dir)
    app_dir = project_root()
    _check_app_pin(app_dir, kit.manifest.app_pin)
    work = kit.path / RUN_DIR
    work.mkdir(mode=0o700, exist_ok=True)
    out = out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = kit.manifest
    run_config = work / "run-config.toml"
    _write_run_config(
        run_config,
        manifest.run_config(
            public_context=str(kit.public_context), schema=str(kit.schema), out_dir=str(out)
        ),
    )
    status: dict[str, Any] = {
        "federation": manifest.name,
        "phase": "starting",
        "rounds": manifest.rounds,
        "rounds_done": 0,
        "out_dir": str(out),
        "control_address": None,
        "institutions": {},
    }
    status_path = work / STATUS_FILE

    def update(**changes: Any) -> None:
        status.update(changes)
        _write_status(status_path, status)
        if progress is not None:
            progress(dict(status))

    link = SuperLink(kit, work, listen)
    returncode = 1
    try:
        update()
        link.start()
        update(control_address=f"127.0.0.1:{link.control_port}")
        nodes = link.register_institutions()
        update(phase="running", institutions={name: node for name, node in nodes.items()})
        run = link.submit(app_dir, run_config)
        deadline = None if timeout is None else time.monotonic() + timeout
        audit = out / "audit.jsonl"
        while run.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                stop_tree(run)
                raise FederationError(f"the run did not finish within {timeout:.0f} s")
            if audit.is_file():
                done = rounds_applied(audit)
                if done != status["rounds_done"]:
                    update(rounds_done=done)
            time.sleep(1.0)
        returncode = run.returncode
        finished = returncode == 0 and (out / "metrics.json").is_file()
        reason = "" if finished else run_failure(work / "logs" / "run.log")
        update(phase="finished" if finished else "failed", returncode=returncode, reason=reason)
    except BaseException:
        update(phase="failed")
        raise
    finally:
        link.stop()
    return AggregatorResult(
        returncode, out, work / "logs", time.monotonic() - started, status.get("reason", "")
    )
