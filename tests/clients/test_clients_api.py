"""The public API of ``clients``: ``__all__`` is sorted, complete and framework-free."""

from __future__ import annotations

import ast
from pathlib import Path

import clients


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then CamelCase, then lower_case."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_and_unique() -> None:
    assert list(clients.__all__) == sorted(clients.__all__, key=_isort_key)
    assert len(set(clients.__all__)) == len(clients.__all__)


def test_every_exported_name_exists() -> None:
    for name in clients.__all__:
        assert hasattr(clients, name), name


def test_every_public_error_derives_from_client_error() -> None:
    errors = [getattr(clients, n) for n in clients.__all__ if n.endswith("Error")]
    assert len(errors) >= 8
    for error in errors:
        assert issubclass(error, clients.ClientError)


# The framework-free core: what a bank can use, test and audit without Flower or TenSEAL.
CORE_MODULES = ("errors", "schema", "data", "standardize", "models", "training", "metrics")


def _imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_no_federated_framework_or_encryption() -> None:
    package = Path(clients.__file__).parent
    for module in CORE_MODULES:
        roots = _imported_roots((package / f"{module}.py").read_text(encoding="utf-8"))
        forbidden = roots & {"flwr", "tenseal", "crypto", "federation", "simulations"}
        assert not forbidden, f"clients/{module}.py imports {sorted(forbidden)}"
        assert "pandas" in roots or "numpy" in roots or module == "errors"
