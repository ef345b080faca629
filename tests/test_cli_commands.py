"""The ``crossfed`` command imports a sub-command's code only when it runs."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from crossfed.cli import COMMANDS, app


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


def test_an_unknown_command_is_named() -> None:
    result = CliRunner().invoke(app, ["simulat"])
    assert result.exit_code == 2
    assert "No such command 'simulat'" in result.output


def test_deployment_commands_do_not_load_the_simulation_harness() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from crossfed.cli import app\n"
        "runs = (['client', '--help'], ['aggregator', '--help'], ['kit', 'create', '--help'])\n"
        "for args in runs:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('simulations', 'ray')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
