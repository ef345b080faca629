"""Attack: the aggregator's view plus one institution's kit against another's masked reply.

Played through the real protocol code: the fake grid of
``tests/federation/test_masked_wiring.py`` (four institutions behind the real
``error_mod``, ``admit`` and encryption mods, every message serialised and
parsed), the real roll call, masked statistics and ``MaskedAggregation``, with a
model of 4,160 values. The coalition holds everything the aggregator saw (the
victim's training reply as it crossed the wire, the sum, every revealed
self-mask seed) and the colluder's kit (the federation's CKKS secret key, its
own agreement private key, every public key). It decrypts the victim's reply
and strips what it can compute — the victim's revealed self mask and the
colluder's own pair mask with the victim. What is left is uniform modulo
``2^B`` (chi-square on 64 bins, threshold at p = 1e-6), while the sum of the
round opens exactly. Control: removing also the pair masks of the two honest
institutions (keys the coalition does not hold) leaves the victim's quantised
update, which the same statistic sees at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord

import crypto
import tests.federation.test_masked_wiring as wiring
from crossfed.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    CONTRIBUTORS_KEY,
    SESSION_KEY,
    FederationSettings,
    read_ciphertext,
)
from crypto.check import CHECK_LANES
from crypto.masks import MaskShape, mask_entries, set_digest
from simulations.scenario import write_agreement_keys
from tests.uniformity import CHI2_63_P1E6, chi2

SHAPES = ((64, 64), (64,))
VICTIM, COLLUDER, HONEST = "partition-0", "partition-3", ("partition-1", "partition-2")


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; play one task."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture
def federation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FederationSettings, Path]:
    monkeypatch.setattr(wiring, "SHAPES", SHAPES)
    monkeypatch.setattr(wiring, "START", [np.zeros(s, dtype=np.float32) for s in SHAPES])
    folder = tmp_path / "federation"
    folder.mkdir()
    secret = crypto.generate_secret_context("masked16")
    settings = FederationSettings(
        mode="encrypted",
        rounds=2,
        min_institutions=3,
        institutions=len(wiring.NODES),
        secret_context=str(secret.save(folder / "secret.ctx")),
        public_context=str(secret.public().save(folder / "public.ctx")),
        model_shapes=json.dumps([list(s) for s in SHAPES]),
        agreement_keys=str(write_agreement_keys(folder / "agreement", len(wiring.NODES))),
    )
    return settings, folder


def test_the_aggregator_with_one_institution_reads_nothing_of_another_yet_the_sum_is_exact(
    federation: tuple[FederationSettings, Path], tmp_path: Path
) -> None:
    settings, _ = federation
    grid, strategy, config = wiring._start_federation(federation, tmp_path)
    messages = list(strategy.configure_train(1, ArrayRecord(), config, grid))  # type: ignore[arg-type]
    members = list(messages[0].content.config_records[CONFIG_KEY][CONTRIBUTORS_KEY])  # type: ignore[arg-type]
    replies = {r.metadata.src_node_id: r for r in grid.send_and_receive(messages)}
    for node, reply in replies.items():
        assert not reply.has_error(), (node, reply.error.reason if reply.has_error() else "")
    summed, _ = strategy.aggregate_train(1, replies.values())  # remask-free round, seeds revealed
    assert summed is not None and sorted(strategy.seeds) == sorted(members)

    # The coalition's kit: the shared CKKS key, the colluder's agreement key, the public list.
    secret = crypto.SecretContext.load(settings.secret_context)
    keys = Path(settings.agreement_keys)
    listed = {
        n: bytes.fromhex(k) for n, k in json.loads((keys / "public.json").read_text()).items()
    }
    colluder = crypto.AgreementKey.from_bytes((keys / f"{COLLUDER}.key").read_bytes())
    codec = secret.preset.build_masked_codec()
    assert codec is not None
    n_values = sum(int(np.prod(s)) for s in SHAPES)
    shape = MaskShape(n_values, codec.value_bits, 1, CHECK_LANES, codec.tag_modulus)
    modulus = 1 << codec.value_bits
    session = str(config[SESSION_KEY])

    def stream(key: bytes, kind: str) -> np.ndarray:
        return mask_entries(
            key, shape, session=session, round_id=1, digest=set_digest(members),
            purpose="train", kind=kind,
        )[0]  # fmt: skip

    def pair(owner: crypto.AgreementKey, owner_name: str) -> np.ndarray:
        """The victim's pair mask with ``owner_name``, from ``owner``'s side of the key."""
        key = owner.pair_key(owner_name, VICTIM, listed[VICTIM], secret.fingerprint)
        return stream(key, "pair") * (1 if owner_name > VICTIM else -1)  # the victim's sign

    # The victim's reply as it crossed the wire, decrypted with the shared key.
    victim_node = wiring.NODES[0]
    update = crypto.EncryptedUpdate.from_bytes(
        secret, read_ciphertext(replies[victim_node].content.array_records[ARRAYS_KEY])
    )
    slots = np.concatenate([np.asarray(v.decrypt(), dtype=np.float64) for v in update.vectors])
    values, _weight, _tags = codec.unpack(slots, n_values, 1)
    seen = values - stream(strategy.seeds[VICTIM], "self") - pair(colluder, COLLUDER)
    seen %= modulus
    assert chi2(seen, codec.value_bits) < CHI2_63_P1E6

    # Control: the honest institutions' pair masks (not the coalition's to compute) hide it all.
    honest_keys = {
        n: crypto.AgreementKey.from_bytes((keys / f"{n}.key").read_bytes()) for n in HONEST
    }
    exposed = seen - sum(pair(honest_keys[n], n) for n in HONEST)
    exposed %= modulus
    quantised = codec.signed(exposed)
    assert chi2(exposed, codec.value_bits) > CHI2_63_P1E6
    delta = np.concatenate([d.ravel() for d in wiring._delta(victim_node, 1)])
    share = wiring.ROWS[victim_node] / sum(wiring.ROWS.values())
    np.testing.assert_allclose(quantised * codec.step, share * delta, atol=codec.step)

    # And the round's sum opens, exactly, for any institution.
    opened = crypto.decrypt_masked(
        secret,
        crypto.EncryptedUpdate.from_bytes(secret, read_ciphertext(summed)),
        self_seeds=strategy.seeds,
        purpose="train",
    )
    assert opened.total_weight == sum(wiring.ROWS.values())
    expected = sum(wiring.ROWS[n] * np.concatenate([d.ravel() for d in wiring._delta(n, 1)])
                   for n in wiring.NODES) / sum(wiring.ROWS.values())  # fmt: skip
    average = np.concatenate([a.ravel() for a in opened.average(sum(wiring.ROWS.values()))])
    np.testing.assert_allclose(average, expected, atol=4 * codec.step)
