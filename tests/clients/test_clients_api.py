"""The public API of ``clients``: ``__all__`` is sorted, complete and framework-free."""

from __future__ import annotations

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


# The framework-free core (errors, schema, data, standardize, models, training, metrics)
# is guarded in a fresh interpreter by tests/test_import_contracts.py.
