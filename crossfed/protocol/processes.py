"""Starting and stopping Flower's long-running processes (SuperLink, SuperNode).

Flower's daemons spawn children of their own: the SuperLink a
``flower-superexec`` in a new session, which spawns ``flwr-serverapp``; a
SuperNode one ``flwr-clientapp`` process per message. Killing a daemon's
process group therefore misses some of them, and a ``flwr-clientapp`` whose
SuperNode was killed lives on as an orphan. :func:`stop_tree` collects the
whole tree first (with psutil), then terminates it.

Every process gets :func:`flower_env`: telemetry and Flower's update check off
(nothing leaves the machine but the federation's own traffic), ``FLWR_HOME``
inside the caller's working folder, never the user's ``~/.flwr``, and this
interpreter's ``bin`` folder first on ``PATH``: the SuperLink starts
``flower-superexec`` and the SuperNode ``flwr-clientapp`` by bare name, so an
un-activated virtual environment would otherwise fail at start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from crossfed.protocol.errors import ConfigurationError

__all__ = [
    "descendants",
    "exit_code_from_log",
    "flower_env",
    "flower_executable",
    "free_port",
    "spawn",
    "stop_tree",
    "toml_string",
]

_EXIT_CODE = re.compile(r"Exit Code: (\d+)")


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower's commands: telemetry and update check off, ``FLWR_HOME`` set,
    this interpreter's ``bin`` folder first on ``PATH``."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    path = [part for part in env.get("PATH", "").split(os.pathsep) if part and part != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *path])
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def flower_executable(name: str) -> str:
    """Path of a Flower command, preferring the one beside this Python interpreter.

    Raises
    ------
    ConfigurationError
        Flower's command is not installed.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"{name} is not installed (pip install flwr)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks; a race remains until bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def toml_string(value: str) -> str:
    """Quote ``value`` as a TOML basic string (JSON escapes are valid TOML escapes)."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def spawn(
    command: Sequence[str], *, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (children, grandchildren, …); empty once it is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tree(process: subprocess.Popen[bytes] | None, grace_s: float = 5.0) -> None:
    """Stop ``process`` and every process below it: SIGTERM, then SIGKILL after ``grace_s``.

    The tree is collected before anything is signalled, so children that
    become orphans on their parent's exit are still found.
    """
    if process is None:
        return
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        pids = [pid for pid in pids if _alive(pid)]
        if not pids:
            break
        time.sleep(0.1)
    # Children spawned while we waited are caught here too.
    for pid in [*pids, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)


def exit_code_from_log(log_path: Path) -> int | None:
    """The last Flower exit code (``Exit Code: N``) a daemon wrote to its log, if any."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    codes = _EXIT_CODE.findall(text)
    return int(codes[-1]) if codes else None
