"""An institution joins a deployed federation: check the data, run a SuperNode, keep the model.

:func:`run_institution` is what ``crossfed client`` runs at a bank:

1. loads the institution's kit (:class:`~clients.kit.InstitutionKit`) and
   checks that its secret context is the federation's;
2. validates the data file against the federation schema *before any
   connection*: a missing column or a value outside the schema stops here with
   the column named, and nothing is sent;
3. starts ``flower-supernode`` over TLS (the kit's CA certificate as root),
   authenticated with the kit's node key, with ``--isolation process``: it runs
   no app itself and never installs the app bundle the aggregator ships;
4. starts the institution's runner beside it (:mod:`clients.app_runner`), which
   takes the SuperNode's tasks and runs the ClientApp of the crossfed installed
   here, with the kit's settings and this machine's paths; a bundle that is not
   the kit's pin, or a run configuration that disagrees with the kit, is
   refused with a fixed error code (details in ``.supernode/institution.log``);
   only the runner, which holds a fresh per-run secret, may take tasks;
5. waits until the final global model has been written to a staging folder
   (``metrics.json`` appears last), then stops the SuperNode — SuperNodes never
   exit by themselves — and the runner, and moves the outputs into place. A
   runner that dies ends the run; a failed run leaves earlier outputs as they were.

The data file and the secret context never leave this machine: the ClientApp
sends only encrypted updates, encrypted statistics and evaluation metrics.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clients.app_guard import kit_settings
from clients.data import encode, load_table
from clients.errors import OutputDirError, SuperNodeError
from clients.kit import InstitutionKit
from clients.output_names import METRICS_FILE, MODEL_FILE, SCORECARD_FILE, WORK_DIR
from clients.preflight import check_secret, check_split
from clients.refusals import REFUSAL_BUDGET, RefusalBudgetSpentError, kit_refusal_budget
from clients.schema import load_schema
from crossfed.protocol import (
    ProvisioningError,
    exit_code_from_log,
    flower_env,
    flower_executable,
    free_port,
    spawn,
    stop_tree,
)

__all__ = [
    "STAGING",
    "InstitutionResult",
    "check_data",
    "check_refusals",
    "promote_outputs",
    "run_institution",
]

_ROUND = re.compile(r"Receiving: train message")
_REFUSED = "the aggregator refused this node's key"
# A SuperNode that has received messages and then stops lost its aggregator: the
# aggregator went down (its SuperNode gives up retrying) or restarted on a fresh
# SuperLink that no longer knows this node's id ("Invalid node ID").
_JOINED = "Receiving:"
# What the SuperLink answers a node it no longer knows (it restarted on a fresh state).
_FORGOTTEN = "Invalid node ID"
# Logged once the SuperLink has accepted the node (TLS and its key both passed).
_CONNECTED = "SuperNode ID:"
# Slack past the connect deadline for the SuperNode to give up and say why itself.
_CONNECT_GRACE_S = 15.0
_RETRY_S = 3.0
#: The runner's module (``python -m``), the bank's local log and the runner's own output.
RUNNER_MODULE = "clients.app_runner"
LOCAL_LOG = "institution.log"
_RUNNER_LOG = "runner.log"
_SECRET = "superexec.secret"
#: Where a run's outputs are written (in ``OUT/.supernode``) until it succeeded.
STAGING = "outputs"


def _read_from(path: Path, offset: int) -> str:
    """The log's text from byte ``offset`` on (one SuperNode attempt's lines)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class InstitutionResult:
    """Where an institution's outputs are and how long the run took."""

    name: str
    out_dir: Path
    rows: int
    wall_s: float

    @property
    def model(self) -> Path:
        """The decrypted global model (``.npz``)."""
        return self.out_dir / MODEL_FILE

    @property
    def metrics(self) -> Path:
        """Local metrics of the final model (JSON)."""
        return self.out_dir / METRICS_FILE

    @property
    def scorecard(self) -> Path:
        """Coefficient table (logistic regression only)."""
        return self.out_dir / SCORECARD_FILE


def check_data(kit: InstitutionKit, data_path: Path) -> int:
    """Validate ``data_path`` against the kit's schema and split it as the ClientApp will.

    Returns the number of rows. ``crossfed client --check`` runs this and every
    other check, collecting all problems (:func:`clients.preflight.check_institution`).

    Raises
    ------
    clients.SchemaError, clients.DataLoadError, clients.DataValidationError
        The schema or the file is unusable, or too few rows of a class for
        the held-out split; the message names the column.
    crossfed.protocol.ConfigurationError
        The kit's settings are invalid.
    """
    schema = load_schema(kit.schema)
    frame = load_table(data_path)
    x, y = encode(frame, schema)  # validates first
    check_split(x, y, kit_settings(kit, out_dir=Path()))
    return len(frame)


def _failure_reason(log: str, returncode: int | None, address: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in log or "handshake" in log.lower():
        return (
            "TLS failed: the aggregator's certificate does not verify against the kit's "
            "ca.crt (wrong CA, or not this federation's aggregator)"
        )
    if "Failed to activate SuperNode" in log or "code: 2004" in log:
        return f"{_REFUSED}: it is not registered in this federation"
    if "Failed to initialize the connection" in log or "failed to connect" in log:
        return f"could not reach the aggregator at {address} (is it running, is the address right?)"
    errors = [line for line in log.splitlines() if "ERROR" in line]
    tail = errors[-1] if errors else log.strip().splitlines()[-1:] or [""]
    return f"the SuperNode stopped (code {returncode}): {''.join(tail).strip()[-300:]}"


def _private(path: Path) -> Path:
    """``path`` as an empty file of mode 0600 (logs that may name local details)."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _runner_failure(log_path: Path, returncode: int | None) -> str:
    lines = _read_from(log_path, 0).strip().splitlines()
    tail = lines[-1].strip()[-300:] if lines else ""
    return (
        f"the institution's ClientApp runner stopped (code {returncode}): {tail}; "
        "no further message was answered"
    )


def _await_final_reply(
    log_path: Path, process: subprocess.Popen[bytes], grace: float = 30.0
) -> None:
    """Let the SuperNode acknowledge the final message, so the aggregator need not time out."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and process.poll() is None:
        log = log_path.read_text(errors="replace")
        _, found, after = log.rpartition("Sending: query.final")
        if found and "Sent successfully" in after:
            return
        time.sleep(0.3)


def promote_outputs(staging: Path, out: Path) -> list[str]:
    """Move a finished run's outputs from ``staging`` into ``out``, ``metrics.json`` last.

    Each file replaces its namesake atomically (same file system), so ``out``
    always holds one run's complete outputs: the earlier run's until this
    call, this run's after it (``metrics.json`` appearing last marks them
    complete, as in :mod:`clients.outputs`). Whatever the run wrote is moved,
    folders included. Returns the names moved.

    Raises
    ------
    clients.OutputDirError
        A file could not be moved; the earlier outputs not yet replaced remain.
    """
    names = sorted(p.name for p in staging.iterdir())
    ordered = [n for n in names if n != METRICS_FILE] + [n for n in names if n == METRICS_FILE]
    try:
        for name in ordered:
            target = out / name
            if (staging / name).is_dir() and target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
        staging.rmdir()
    except OSError as exc:
        raise OutputDirError(f"cannot move the outputs into {out}: {exc.strerror}") from exc
    return ordered


def check_refusals(kit: InstitutionKit, out_dir: Path) -> None:
    """Refuse to join while the refusal budget of the kit's key is spent (the operator reviews).

    Raises
    ------
    clients.refusals.RefusalBudgetSpentError
        :data:`~clients.refusals.REFUSAL_BUDGET` aggregates were refused (or the
        count is unreadable): nothing would be decrypted.
    """
    budget = kit_refusal_budget(kit)
    if budget.spent():
        raise RefusalBudgetSpentError(
            f"this institution refused {REFUSAL_BUDGET} tampered aggregates (or cannot read "
            f"their count in {budget.path}) and decrypts nothing until its operator has "
            f"reviewed the local log ({out_dir / WORK_DIR / LOCAL_LOG} or that of another "
            f"--out) and run `crossfed client --kit {kit.path} --data … --out {out_dir} "
            "--reset-refusals`"
        )


def run_institution(
    kit_dir: Path,
    data_path: Path,
    out_dir: Path,
    *,
    timeout: float | None = None,
    connect_timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> InstitutionResult:
    """Validate the data, join the federation, wait for the final model.

    Parameters
    ----------
    kit_dir
        The institution's kit (``crossfed kit create``).
    data_path
        The institution's CSV or Parquet file; read here and by the ClientApp only.
    out_dir
        Where the decrypted global model, metrics and scorecard are written.
        The run writes them to ``out_dir/.supernode/outputs`` and moves them
        into place only once it succeeded (:func:`promote_outputs`): earlier
        outputs are never deleted before connecting nor lost when a run fails.
        The SuperNode's working files go to ``out_dir/.supernode``.
    timeout
        Seconds to wait for the run to finish; None waits indefinitely.
    connect_timeout
        Seconds the SuperNode keeps retrying to reach the aggregator.
    progress
        Called with a short line when something happens (connected, round n).

    Raises
    ------
    crossfed.protocol.ProvisioningError
        The kit is incomplete or not this federation's.
    clients.DataValidationError, clients.DataLoadError, clients.SchemaError
        The data does not fit the schema (nothing was sent).
    clients.SuperNodeError
        The node was refused, TLS failed, or the run did not finish in time.
    clients.OutputDirError
        The output folder cannot be written.
    """
    started = time.monotonic()
    say = progress or (lambda _line: None)
    kit = InstitutionKit.load(kit_dir)
    if not kit.manifest.app_pin:
        raise ProvisioningError(
            f"{kit.path} pins no app bundle: recreate the kits with `crossfed kit create`"
        )
    check_secret(kit)
    check_refusals(kit, out_dir)
    rows = check_data(kit, data_path)
    say(f"{data_path}: {rows} rows match the federation schema")

    out = out_dir.resolve()
    work = out / WORK_DIR
    try:
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        work.chmod(0o700)
        # Earlier outputs stay where they are: this run writes beside them and its
        # outputs replace them only once it succeeded (promote_outputs).
        staging = work / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise OutputDirError(f"cannot write the output folder {out}: {exc.strerror}") from exc
    log_path = _private(work / "supernode.log")
    runner_log = _private(work / _RUNNER_LOG)
    secret_file = _private(work / _SECRET)
    secret_file.write_bytes(secrets.token_hex(32).encode())
    runtime_api = f"127.0.0.1:{free_port()}"
    command = [
        flower_executable("flower-supernode"),
        "--root-certificates", str(kit.ca_cert),
        "--superlink", kit.manifest.dial_address(),
        "--auth-supernode-private-key", str(kit.node_key),
        "--isolation", "process",
        "--superexec-auth-secret-file", str(secret_file),
        "--host", "127.0.0.1",
        "--port", runtime_api.rpartition(":")[2],
        "--max-wait-time", str(connect_timeout),
    ]  # fmt: skip
    runner_command = [
        sys.executable, "-m", RUNNER_MODULE,
        "--kit", str(kit.path),
        "--data", str(data_path.resolve()),
        "--out", str(staging),
        "--runtime-api-address", runtime_api,
        "--superexec-auth-secret-file", str(secret_file),
        "--log-file", str(work / LOCAL_LOG),
        "--refusal-file", str(kit_refusal_budget(kit).path),
        "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    process: subprocess.Popen[bytes] | None = None
    runner: subprocess.Popen[bytes] | None = None
    env = flower_env(work / "flwr-home")
    succeeded = False
    try:
        runner = spawn(runner_command, env=env, log_path=runner_log)
        process, offset = spawn(command, env=env, log_path=log_path), 0
        say(f"SuperNode started; dialling {kit.manifest.dial_address()} over TLS")
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        connect_deadline = now + connect_timeout
        seen_requests = trained = 0  # train messages received, across rejoins
        joined = connected = False
        while not (staging / METRICS_FILE).is_file():
            if runner.poll() is not None:
                raise SuperNodeError(
                    _runner_failure(runner_log, runner.returncode),
                    exit_code=None,
                    log_path=str(runner_log),
                )
            log = _read_from(log_path, offset)
            joined = joined or _JOINED in log
            connected = connected or joined or _CONNECTED in log
            forgotten = connected and _FORGOTTEN in log
            if forgotten and process.poll() is None:
                # Flower 1.39's SuperNode should exit here, but can hang on its way out
                # ("Heartbeat sender is not running"): end it and rejoin in its place.
                stop_tree(process)
            if process.poll() is not None:
                if (joined or forgotten) and (deadline is None or time.monotonic() < deadline):
                    # The aggregator restarted (it resumes from its checkpoint): rejoin it.
                    say("the aggregator restarted; rejoining the federation")
                    trained = seen_requests
                    connect_deadline = time.monotonic() + connect_timeout
                    offset, joined, connected = log_path.stat().st_size, False, False
                    process = spawn(command, env=env, log_path=log_path)
                    continue
                reason = _failure_reason(log, process.returncode, kit.manifest.dial_address())
                if _REFUSED in reason and time.monotonic() < connect_deadline:
                    # The aggregator may not have registered this node yet: try again.
                    say("not (yet) registered with the aggregator; retrying")
                    time.sleep(_RETRY_S)
                    offset = log_path.stat().st_size
                    process = spawn(command, env=env, log_path=log_path)
                    continue
                raise SuperNodeError(
                    reason, exit_code=exit_code_from_log(log_path), log_path=str(log_path)
                )
            if not connected and time.monotonic() > connect_deadline + _CONNECT_GRACE_S:
                # Flower's SuperNode can keep dialling past --max-wait-time; give up here.
                reason = _failure_reason(log, None, kit.manifest.dial_address())
                raise SuperNodeError(
                    reason
                    if reason.startswith(("TLS failed", _REFUSED))
                    else f"could not reach the aggregator at {kit.manifest.dial_address()} "
                    f"within {connect_timeout:.0f} s (is it running, is the address right?)",
                    exit_code=None,
                    log_path=str(log_path),
                )
            requests = trained + len(_ROUND.findall(log))
            if requests != seen_requests:
                seen_requests = requests
                say(f"training locally (training request {requests} from the aggregator)")
            if deadline is not None and time.monotonic() > deadline:
                raise SuperNodeError(
                    f"the run did not finish within {timeout:.0f} s",
                    exit_code=None,
                    log_path=str(log_path),
                )
            time.sleep(0.5)
        _await_final_reply(log_path, process)
        succeeded = True
    finally:
        stop_tree(process)
        stop_tree(runner)
        if not succeeded:  # earlier outputs untouched; this run's partial ones dropped
            shutil.rmtree(staging, ignore_errors=True)
    promote_outputs(staging, out)
    say(f"final model written to {out}")
    return InstitutionResult(kit.name, out, rows, time.monotonic() - started)
