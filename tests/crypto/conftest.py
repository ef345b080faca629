"""Shared fixtures for the CKKS layer's tests: contexts per preset, seeded randomness.

Key generation is cheap (milliseconds) but every test that needs a federation
reuses the session's contexts. Randomness is an input (STYLE.md, 7): each test
draws from a generator seeded with the session seed and its own node id, and a
failing test's report names the seed (``CROSSFED_TEST_SEED`` replays it).
"""

from __future__ import annotations

import itertools
import os
import secrets
import zlib
from collections.abc import Generator

import numpy as np
import pytest

from crypto import (
    PRESETS,
    PublicContext,
    SecretContext,
    encrypt_update,
    generate_secret_context,
)

PRESET_NAMES = ("standard", "lean", "packed")

#: Presets whose updates are masked quantised deltas (tests/crypto/test_masked*.py).
MASKED_PRESET_NAMES = ("masked16", "masked8")

#: A fresh institution name for every update (the check refuses a name twice in a sum).
NAMES = (f"institution-{i}" for i in itertools.count())

SESSION_SEED = int(os.environ.get("CROSSFED_TEST_SEED", secrets.randbits(32)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Name the seed in the report of a failing test so the failure can be replayed."""
    report = yield
    if report.failed:
        report.sections.append(
            ("crossfed seed", f"CROSSFED_TEST_SEED={SESSION_SEED} reproduces this run")
        )
    return report


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the session seed and the test's node id."""
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(scope="session")
def secret_contexts() -> dict[str, SecretContext]:
    """One federation key per shipped preset."""
    assert set(PRESET_NAMES) | set(MASKED_PRESET_NAMES) == set(PRESETS)
    return {name: generate_secret_context(name) for name in PRESET_NAMES}


@pytest.fixture(scope="session")
def public_contexts(secret_contexts: dict[str, SecretContext]) -> dict[str, PublicContext]:
    """The aggregator's side of each session key."""
    return {name: ctx.public() for name, ctx in secret_contexts.items()}


@pytest.fixture(scope="session")
def other_secret_contexts() -> dict[str, SecretContext]:
    """A second, unrelated federation key per preset (for mismatch tests)."""
    return {name: generate_secret_context(name) for name in PRESET_NAMES}


@pytest.fixture(scope="session")
def lean_secret(secret_contexts: dict[str, SecretContext]) -> SecretContext:
    return secret_contexts["lean"]


@pytest.fixture(scope="session")
def lean_public(public_contexts: dict[str, PublicContext]) -> PublicContext:
    return public_contexts["lean"]


@pytest.fixture(scope="session")
def lean_update_bytes(lean_secret: SecretContext) -> bytes:
    """A valid serialised lean update of two small layers (random, non-zero values)."""
    values = np.random.default_rng(SESSION_SEED).uniform(0.1, 1.0, size=17)
    return encrypt_update(
        lean_secret, [values[:5].reshape(5), values[5:].reshape(3, 4)], 3, contributor=next(NAMES)
    ).to_bytes()
