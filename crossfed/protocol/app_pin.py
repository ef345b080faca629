"""The app pin: which Flower App bundle (FAB) an institution agrees to be sent.

``flwr run`` ships the project tree to every SuperNode as a FAB, a zip file.
``crossfed kit create`` builds the same FAB with Flower's own builder
(:func:`build_app_bundle`) and records :func:`fab_digest` of it in every kit's
``federation.yaml``; an institution computes the digest of the bundle it
receives and refuses any other, before anything of it is installed or imported.

The digest covers what the bundle *holds*, not the zip file's bytes: the sorted
file paths and the SHA-256 of each file's content. Zip timestamps, compression
level and entry order do not change it; one changed byte in one file does. A
bundle with a duplicate path, an unreadable entry, or more than
:data:`MAX_UNPACKED_BYTES` of content is refused, not digested: the bundle is
the aggregator's input, so it is parsed with bounded memory.

The pin proves that the aggregator ships what the kit names. It does not by
itself make the institution run that code: the institution's runner never
imports from a bundle at all (it runs the crossfed the bank installed), so the
pin is a second, independent line.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
import zlib
from pathlib import Path

from flwr.cli.build import build_fab_from_disk

from crossfed.protocol.errors import ProtocolError

__all__ = [
    "APP_PIN_PREFIX",
    "MAX_UNPACKED_BYTES",
    "BundleError",
    "app_pin",
    "build_app_bundle",
    "fab_digest",
    "project_root",
]

#: Every app pin starts with the name of its hash.
APP_PIN_PREFIX = "sha256:"
#: Most content a bundle may unpack to (Flower caps the packed FAB at 10 MB).
MAX_UNPACKED_BYTES = 64 << 20
_CHUNK = 1 << 16


class BundleError(ProtocolError):
    """An app bundle cannot be built or read (not a zip, duplicate path, too large)."""


def fab_digest(fab: bytes, *, max_unpacked: int = MAX_UNPACKED_BYTES) -> str:
    """The app pin of a FAB: SHA-256 over its sorted paths and each file's SHA-256.

    Each file contributes the line ``PATH NUL HEX(SHA-256(content)) LF``; the
    lines are hashed in path order. Directory entries are skipped (a zip need
    not list them).

    Raises
    ------
    BundleError
        ``fab`` is not a readable zip, lists a path twice, or unpacks to more than
        ``max_unpacked`` bytes.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(fab)) as archive:
            entries = [info for info in archive.infolist() if not info.is_dir()]
            names = [info.filename for info in entries]
            if len(set(names)) != len(names):
                raise BundleError("the bundle lists a path twice")
            total = 0
            outer = hashlib.sha256()
            for info in sorted(entries, key=lambda entry: entry.filename):
                inner = hashlib.sha256()
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        total += len(chunk)
                        if total > max_unpacked:
                            raise BundleError(f"the bundle unpacks to more than {max_unpacked} B")
                        inner.update(chunk)
                outer.update(info.filename.encode("utf-8") + b"\0")
                outer.update(inner.hexdigest().encode("ascii") + b"\n")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
        raise BundleError(f"the bundle is not a readable zip: {exc}") from exc
    except (NotImplementedError, RuntimeError, ValueError, OSError) as exc:
        # Unsupported compression, encrypted members, corrupt headers.
        raise BundleError(f"the bundle cannot be read: {exc}") from exc
    return APP_PIN_PREFIX + outer.hexdigest()


def build_app_bundle(project: Path) -> bytes:
    """The FAB ``flwr run PROJECT`` would ship, built with Flower's own builder.

    Raises
    ------
    BundleError
        ``project`` is not a Flower App (no valid ``pyproject.toml``) or its
        bundle is too large.
    """
    try:
        with warnings.catch_warnings():
            # Flower 1.39's builder calls a pathspec API that warns once per pattern.
            warnings.simplefilter("ignore", DeprecationWarning)
            return build_fab_from_disk(project)
    except (ValueError, OSError) as exc:  # Flower's AppPathDepthError is a ValueError
        raise BundleError(f"cannot build the app bundle of {project}: {exc}") from exc


def project_root() -> Path:
    """This crossfed's source tree: the Flower App ``flwr run`` ships (pyproject names the apps).

    Raises
    ------
    BundleError
        The installed crossfed is not a source tree (install it with ``pip install -e``).
    """
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text():
        raise BundleError(
            f"{root} is not the crossfed source tree: the aggregator ships the project as a "
            "Flower App and needs its pyproject.toml (install with `pip install -e`)"
        )
    return root


def app_pin(project: Path) -> str:
    """The app pin of the project tree at ``project`` (what a kit records).

    Building walks the whole folder, as ``flwr run`` does (about 3 s with a
    virtual environment inside it).

    Raises
    ------
    BundleError
        The project's bundle cannot be built.
    """
    return fab_digest(build_app_bundle(project))
