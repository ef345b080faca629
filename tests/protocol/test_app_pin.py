"""The app pin: a digest of what an app bundle holds, not of the zip file's bytes."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from crossfed.protocol import BundleError, app_pin, build_app_bundle, fab_digest

FILES = {
    "pyproject.toml": os.urandom(64).hex().encode(),
    "clients/client_app.py": os.urandom(200),
    "federation/server_app.py": os.urandom(300),
    ".info/CONTENT": b"listing",
}

PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyapp"
version = "1.0.0"

[tool.flwr.app]
publisher = "crossfed"

[tool.flwr.app.components]
serverapp = "tinyapp.server:app"
clientapp = "tinyapp.client:app"

[tool.flwr.app.config]
mode = "encrypted"
"""


def _zip(
    files: dict[str, bytes],
    *,
    order: list[str] | None = None,
    when: tuple[int, int, int, int, int, int] = (2024, 10, 1, 0, 0, 0),
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name in order or list(files):
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = compression
            archive.writestr(info, files[name])
    return buffer.getvalue()


def test_the_digest_ignores_timestamps_compression_and_order() -> None:
    reference = fab_digest(_zip(FILES))
    assert reference.startswith("sha256:") and len(reference) == len("sha256:") + 64
    shuffled = list(reversed(FILES))
    other = _zip(FILES, order=shuffled, when=(2031, 5, 6, 7, 8, 10), compression=zipfile.ZIP_STORED)
    assert other != _zip(FILES)
    assert fab_digest(other) == reference


@pytest.mark.parametrize("change", ["byte", "rename", "extra", "missing"])
def test_any_change_of_content_or_paths_changes_the_digest(change: str) -> None:
    files = dict(FILES)
    if change == "byte":
        data = bytearray(files["clients/client_app.py"])
        data[17] ^= 1
        files["clients/client_app.py"] = bytes(data)
    elif change == "rename":
        files["clients/client_app2.py"] = files.pop("clients/client_app.py")
    elif change == "extra":
        files["clients/evil.py"] = b"import os"
    else:
        del files["federation/server_app.py"]
    assert fab_digest(_zip(files)) != fab_digest(_zip(FILES))


def test_a_path_listed_twice_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("clients/client_app.py", b"good")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("clients/client_app.py", b"evil")
    with pytest.raises(BundleError, match="twice"):
        fab_digest(buffer.getvalue())


def test_garbage_and_oversized_bundles_are_refused() -> None:
    with pytest.raises(BundleError):
        fab_digest(os.urandom(300))
    with pytest.raises(BundleError):
        fab_digest(_zip(FILES)[:-40])  # truncated: no central directory
    bomb = _zip({"a.py": b"\0" * (1 << 20)})  # 1 MiB of zeros packs to about 1 KiB
    assert len(bomb) < 4096
    with pytest.raises(BundleError, match="more than"):
        fab_digest(bomb, max_unpacked=1 << 19)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Flower's builder, pathspec
def test_the_pin_is_the_digest_of_the_bundle_flower_builds(tmp_path: Path) -> None:
    app = tmp_path / "tinyapp"
    (app / "tinyapp").mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "tinyapp" / "__init__.py").write_text("")
    (app / "tinyapp" / "client.py").write_text("app = None\n")
    (app / "tinyapp" / "server.py").write_text("app = None\n")
    pin = app_pin(app)
    assert pin == fab_digest(build_fab_from_disk(app)) == fab_digest(build_app_bundle(app))
    (app / "tinyapp" / "client.py").write_text("app = None  # changed\n")
    assert app_pin(app) != pin
    with pytest.raises(BundleError):
        build_app_bundle(tmp_path / "not-an-app")
