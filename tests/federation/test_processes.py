"""The environment and process handling every Flower daemon gets."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from crossfed.protocol import descendants, flower_env, spawn, stop_tree


def test_flower_helpers_resolve_without_an_activated_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SuperLink starts `flower-superexec` and the SuperNode `flwr-clientapp`
    # by bare name; a PATH without this interpreter's bin folder must not matter.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = flower_env(tmp_path / "home")
    bin_dir = str(Path(sys.executable).parent)
    assert env["PATH"].split(os.pathsep)[0] == bin_dir
    for helper in ("flower-superexec", "flwr-clientapp", "flwr-serverapp"):
        found = shutil.which(helper, path=env["PATH"])
        assert found is not None and Path(found).parent == Path(bin_dir), helper


def test_nothing_calls_home(tmp_path: Path) -> None:
    env = flower_env(tmp_path / "home")
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["FLWR_HOME"] == str(tmp_path / "home")


def test_stop_tree_reaches_grandchildren(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    process = spawn([sys.executable, "-c", script], env=dict(os.environ), log_path=tmp_path / "log")
    deadline = time.monotonic() + 10
    while not descendants(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    children = descendants(process.pid)
    assert children, "the child never started"
    stop_tree(process, grace_s=2.0)
    assert process.poll() is not None
    for pid in children:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
