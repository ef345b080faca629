"""The Flower App section of pyproject.toml matches the run settings it feeds."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from crossfed.protocol import FederationSettings

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_every_setting_has_a_flower_default() -> None:
    app = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]
    assert app["publisher"] == "crossfed"
    assert app["components"] == {
        "serverapp": "federation.server_app:app",
        "clientapp": "clients.client_app:app",
    }
    # `flwr run --run-config` may only override keys listed here, and the ServerApp
    # refuses keys that are not settings: the two lists must be the same.
    defaults = app["config"]
    assert set(defaults) == {f.name.replace("_", "-") for f in fields(FederationSettings)}
    for field in fields(FederationSettings):
        assert defaults[field.name.replace("_", "-")] == field.default, field.name
