"""The package's public surface: what ``import crypto`` resolves to and exports.

``__all__`` is the public API (STYLE.md, 2): every exported name exists and the
list is sorted; every name another crossfed package reaches for is exported;
and the layer pulls in no Flower, torch or gRPC (DESIGN.md keeps it
framework-free; pycryptodome's top-level ``Crypto`` must not shadow it).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import crypto

REPO = Path(__file__).resolve().parents[2]
OTHER_PACKAGES = ("federation", "clients", "simulations", "crossfed")

#: Names defined in crypto's modules that other packages have no need of.
INTERNAL = {
    # codec objects are reached through Preset.build_codec() / build_sum_codec()
    "FloatCodec",
    "PackedCodec",
    "SumCodec",
    # protocol vocabulary and envelope plumbing used inside the layer only
    "CONTEXT_MAGIC",
    "FORMAT_VERSION",
    "HE_STANDARD_MAX_COEFF_BITS",
    "MAX_HEADER_BYTES",
    "UPDATE_MAGIC",
    "MAX_PARAMETERS",
    "MAX_CONTRIBUTOR_NAME",
    # the two encodings and the layout helpers the recipes share with the update type
    "AVERAGE",
    "SUM",
    "codec_of",
    "decrypted_slots",
    "verified_sum",
    "vector_sizes",
    "MAX_BINDING_BYTES",
    "pack_envelope",
    "unpack_envelope",
    # the aggregate check's machinery: callers use encrypt_*/decrypt_* and IntegrityError
    "CHECK_KEY_BYTES",
    "CHECK_LANES",
    "NONCE_BYTES",
    "Binding",
    "CheckLayout",
    "RoundCheck",
    "Segment",
    "largest_prime_below",
    "valid_nonce",
    "keystream",
    # the masked codec and mask streams: callers use quantise_update/MaskedRound/decrypt_masked
    "MASKED",
    "MaskedCodec",
    "TAG_BITS",
    "WEIGHT_BITS",
    "AGREEMENT_KEY_BYTES",
    "MIN_CONTRIBUTORS",
    "MaskShape",
    "check_purpose",
    "contributor_set",
    "mask_entries",
    "masked_codec",
    "MAX_FRACTION_BITS",
    "MAX_INTEGER_BITS",
    "integer_limbs",
    "check_binding",
    "check_contributors",
    "parse_contributors",
    "round_check",
    "valid_binding",
    "valid_name",
    "verify",
    "load_vector",
    "min_blob_bytes",
    # hazmat is exported one level down on purpose (STYLE.md, 3)
    "CKKSParameters",
    "build_tenseal_context",
    "check_security",
}


def _isort_key(name: str) -> tuple[int, str]:
    """ruff RUF022's "isort-style" order: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


SUBMODULES = (
    "crypto.blobs",
    "crypto.check",
    "crypto.codec",
    "crypto.constants",
    "crypto.encrypted",
    "crypto.errors",
    "crypto.files",
    "crypto.integers",
    "crypto.integrity",
    "crypto.keys",
    "crypto.lanes",
    "crypto.masked",
    "crypto.masks",
    "crypto.presets",
    "crypto.primitives",
    "crypto.quantised",
    "crypto.update",
    "crypto.wire",
    "crypto.hazmat",
    "crypto.hazmat.params",
)


def test_import_crypto_is_this_project() -> None:
    assert Path(crypto.__file__).resolve().is_relative_to(REPO / "crypto")
    assert callable(crypto.encrypt_update)
    assert crypto.__name__ == "crypto"


def test_import_crypto_from_elsewhere_still_resolves_to_this_project(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import crypto; print(crypto.__file__, crypto.encrypt_update)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert str(REPO / "crypto") in result.stdout


def test_crypto_imports_no_flower_torch_or_grpc() -> None:
    code = (
        "import crypto, crypto.hazmat, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flwr','torch','grpc')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module_name", ["crypto", *SUBMODULES])
def test_all_is_sorted_and_every_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_key), "sort with ruff's RUF022"
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"


def test_every_public_name_is_exported_or_deliberately_internal() -> None:
    for module_name in SUBMODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name in INTERNAL:
                continue
            assert name in crypto.__all__, f"{module_name}.{name} is public but not in crypto"
            assert getattr(crypto, name) is getattr(module, name)
        # Every public class or function defined in the module is in its own __all__.
        for name, value in vars(module).items():
            if name.startswith("_") or inspect.ismodule(value):
                continue
            defined_here = getattr(value, "__module__", None) == module.__name__
            if defined_here and (inspect.isclass(value) or inspect.isfunction(value)):
                assert name in module.__all__, f"{module_name}.{name} missing from __all__"


def test_every_error_is_exported_and_derives_from_crypto_error() -> None:
    import crypto.errors

    for name in crypto.errors.__all__:
        error = getattr(crypto.errors, name)
        assert issubclass(error, crypto.CryptoError)
        assert name in crypto.__all__


def _crypto_names_used_in(path: Path) -> list[tuple[str, str]]:
    """``(how, name)`` for every use of the crypto package in one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases: set[str] = set()
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "crypto":
                    aliases.add(alias.asname or "crypto")
                elif alias.name.startswith("crypto."):
                    found.append(("import", alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "crypto":
                found += [("from crypto import", alias.name) for alias in node.names]
            elif node.module.startswith("crypto."):
                found.append(("from", node.module))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(("crypto.", node.attr))
    return found


def test_other_packages_use_only_what_crypto_exports() -> None:
    problems = []
    for package in OTHER_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for how, name in _crypto_names_used_in(path):
                rel = path.relative_to(REPO)
                if how in ("import", "from"):
                    if not (name == "crypto.hazmat" or name.startswith("crypto.hazmat.")):
                        problems.append(f"{rel}: imports {name}; import from crypto instead")
                elif name != "hazmat" and name not in crypto.__all__:
                    problems.append(f"{rel}: uses crypto.{name}, which is not in crypto.__all__")
    assert not problems, "\n".join(problems)
