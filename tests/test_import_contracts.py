"""Import contracts: which packages each layer may load, checked in a fresh interpreter.

The institution side (``clients``) and the aggregator side (``federation``) are
peers over the protocol layer (``crossfed.protocol``) and ``crypto``: neither may
load the other, so a bank's reviewer can read the institution side alone. Each
check imports the module in a new subprocess and reads ``sys.modules``: what
was really loaded, not what the import lines say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_PROBE = (
    "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(sys.modules)))"
)

# module -> package roots (or dotted prefixes) it must never load
CONTRACTS: dict[str, set[str]] = {
    "crypto": {"flwr", "torch", "grpc", "clients", "federation", "simulations", "crossfed"},
    "crossfed.protocol": {"clients", "federation", "simulations", "torch", "crossfed.cli"},
    "clients": {"federation", "simulations", "crossfed.cli", "flwr", "torch", "tenseal"},
    "clients.client_app": {"federation", "simulations", "crossfed.cli"},
    "clients.app_runner": {"federation", "simulations", "crossfed.cli"},
    # The bank's `crossfed client` supervisor only checks files and starts processes:
    # no training stack (torch, scikit-learn's model selection) in its start-up.
    "clients.deploy": {
        "federation",
        "simulations",
        "crossfed.cli",
        "torch",
        "sklearn.model_selection",
    },
    "crossfed.cli.deploy": {"torch", "sklearn.model_selection"},
    "clients.kit": {"federation", "simulations", "crossfed.cli"},
    "federation": {"clients", "simulations", "crossfed.cli", "torch"},
    "federation.server_app": {"clients", "simulations", "crossfed.cli", "torch"},
    # The framework-free core a bank can test and audit without Flower or TenSEAL.
    "clients.errors": {"flwr", "tenseal", "crypto", "federation", "simulations", "torch"},
    "clients.schema": {"flwr", "tenseal", "crypto", "federation", "simulations", "torch"},
    "clients.data": {"flwr", "tenseal", "crypto", "federation", "simulations", "torch"},
    "clients.standardize": {"flwr", "tenseal", "crypto", "federation", "simulations"},
    "clients.models": {"flwr", "tenseal", "crypto", "federation", "simulations"},
    "clients.training": {"flwr", "tenseal", "crypto", "federation", "simulations"},
    "clients.metrics": {"flwr", "tenseal", "crypto", "federation", "simulations", "torch"},
    # Scoring with a saved model needs NumPy, not the training stack.
    "clients.model_file": {"flwr", "tenseal", "crypto", "federation", "simulations", "torch"},
    "clients.scoring": {"federation", "simulations", "crossfed.cli", "torch"},
}


def loaded_modules(module: str) -> list[str]:
    """Every module name in ``sys.modules`` after importing ``module`` in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def violations(loaded: list[str], forbidden: set[str]) -> list[str]:
    """The loaded modules that are, or lie below, a forbidden name."""
    return sorted(
        name for name in loaded if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize("module", sorted(CONTRACTS))
def test_module_loads_nothing_it_must_not(module: str) -> None:
    loaded = loaded_modules(module)
    assert module in loaded
    found = violations(loaded, CONTRACTS[module])
    roots = sorted({name.split(".")[0] for name in found})
    assert not found, f"importing {module} loads {roots}: {found[:10]}"


def test_the_check_catches_a_real_dependency() -> None:
    # The harness sits above both sides: importing it loads the institution side, and
    # the same check that guards the contracts above must say so.
    loaded = loaded_modules("simulations")
    assert violations(loaded, {"clients"}), "the probe failed to see a real import"
