"""Encryption overhead of one federated update, side by side with plaintext.

For each model size and each mode this measures, per institution: the seconds
to encode and encrypt one weighted update, its serialised bytes and expansion
over float32, the aggregator's seconds to deserialise and sum all institutions'
updates (deserialisation and summation also separately, and per ciphertext),
the seconds to decrypt the sum, and the largest absolute error of the
decrypted weighted average against the float64 average of the same fresh
random inputs.

Everything runs in one process on one core: TenSEAL holds the GIL, so a
thread pool would not help; institutions encrypt on their own machines anyway.

The masked modes (``ckks-masked``, 16-bit values, and ``ckks-masked8``) time
what an institution does per round: quantise its update (weighted by its
example count over the federation's total, here the declared normaliser),
derive its pair keys, compute its check values, mask and encrypt; the
aggregator's sum is the same homomorphic addition; decryption includes
unmasking with the contributors' revealed seeds and verifying the check.
They need 3 to 16 institutions.

``masked-pad`` is the same masked round without a lattice ciphertext
(:mod:`crypto.padded`): the masked16 entries plus a pad only institutions can
remove, three bytes a value. Same guarantees against these adversaries; it
shows what CKKS itself costs. Not a federation encoding.

Paillier (per-element, 2048-bit, the ``phe`` package with gmpy2) is far slower:
each value is its own ciphertext, so its cost is linear in the model size. It
is measured once per run on at most ``paillier_values`` values of every
institution, and its times and bytes are scaled linearly to each size; such
rows carry ``extrapolated_from`` (the number of values really encrypted).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np

import crypto

__all__ = ["MODES", "CryptoBenchRow", "run_crypto_bench"]

#: Benchmark modes in display order.
MODES = (
    "plaintext",
    "ckks-standard",
    "ckks-lean",
    "ckks-packed",
    "ckks-masked",
    "ckks-masked8",
    "masked-pad",
    "paillier",
)

_PRESET_OF_MODE = {"ckks-standard": "standard", "ckks-lean": "lean", "ckks-packed": "packed"}

#: Masked modes (:mod:`crypto.masked`): quantised deltas under pairwise masks.
_MASKED_PRESET_OF_MODE = {"ckks-masked": "masked16", "ckks-masked8": "masked8"}


@dataclass(frozen=True)
class CryptoBenchRow:
    """One measured (mode, size) cell; field names match the JSON schema."""

    mode: str
    params: int
    clients: int
    encrypt_s: float
    bytes_per_update: int
    expansion: float
    aggregate_s: float
    deserialize_s: float
    sum_s: float
    ciphertexts_per_update: int
    decrypt_s: float
    max_abs_error: float
    extrapolated_from: int | None = None

    @property
    def aggregate_s_per_ciphertext(self) -> float | None:
        """Aggregator seconds per ciphertext received (deserialise and add); None in plaintext."""
        total = self.ciphertexts_per_update * self.clients
        return self.aggregate_s / total if total else None

    def to_dict(self) -> dict[str, object]:
        """The row as plain data (for ``--json``)."""
        data = asdict(self)
        data["aggregate_s_per_ciphertext"] = self.aggregate_s_per_ciphertext
        return data


def _layer_shapes(params: int) -> list[tuple[int, ...]]:
    """Split ``params`` into a few layers of odd shapes, like a small network's."""
    if params < 8:
        return [(params,)]
    head = max(1, params // 97)
    bias = max(1, params // 31)
    body = params - head - bias
    return [(body,), (bias,), (head,)]


def _inputs(
    params: int, clients: int, rng: np.random.Generator
) -> tuple[list[list[np.ndarray]], list[int]]:
    shapes = _layer_shapes(params)
    updates = [[rng.uniform(-1.0, 1.0, size=s) for s in shapes] for _ in range(clients)]
    weights = [int(w) for w in rng.integers(100, 10_000, size=clients)]
    return updates, weights


def _reference(updates: list[list[np.ndarray]], weights: list[int]) -> np.ndarray:
    total = float(sum(weights))
    flat = np.stack([np.concatenate([a.ravel() for a in layers]) for layers in updates])
    return np.asarray(weights, dtype=np.float64) @ flat / total


def _max_error(average: Iterable[np.ndarray], reference: np.ndarray) -> float:
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in average])
    return float(np.max(np.abs(flat - reference)))


def _bench_plaintext(
    params: int, updates: list[list[np.ndarray]], weights: list[int]
) -> CryptoBenchRow:
    clients = len(weights)
    start = time.perf_counter()
    blobs = [
        np.concatenate([a.ravel() for a in layers]).astype(np.float32).tobytes()
        for layers in updates
    ]
    encode_s = (time.perf_counter() - start) / clients
    start = time.perf_counter()
    vectors = [np.frombuffer(b, dtype=np.float32) for b in blobs]
    middle = time.perf_counter()
    total = np.zeros(params, dtype=np.float64)
    for w, v in zip(weights, vectors, strict=True):
        total += w * v.astype(np.float64)
    end = time.perf_counter()
    start_dec = time.perf_counter()
    average = total / float(sum(weights))
    decrypt_s = time.perf_counter() - start_dec
    return CryptoBenchRow(
        mode="plaintext",
        params=params,
        clients=clients,
        encrypt_s=encode_s,
        bytes_per_update=len(blobs[0]),
        expansion=len(blobs[0]) / (4 * params),
        aggregate_s=end - start,
        deserialize_s=middle - start,
        sum_s=end - middle,
        ciphertexts_per_update=0,
        decrypt_s=decrypt_s,
        max_abs_error=_max_error([average], _reference(updates, weights)),
    )


def _bench_ckks(
    mode: str, params: int, updates: list[list[np.ndarray]], weights: list[int], seed: int
) -> CryptoBenchRow:
    secret = crypto.generate_secret_context(_PRESET_OF_MODE[mode])
    total_weight = sum(weights)
    rng = np.random.default_rng(seed)
    encrypt_times, blobs = [], []
    for index, (layers, weight) in enumerate(zip(updates, weights, strict=True)):
        start = time.perf_counter()
        update = crypto.encrypt_update(
            secret,
            layers,
            weight,
            contributor=f"institution-{index}",
            round_id=1,
            total_weight=total_weight,
            rng=rng,
        )
        blob = update.to_bytes()
        encrypt_times.append(time.perf_counter() - start)
        blobs.append(blob)
    return _aggregate_and_open(
        mode,
        params,
        secret,
        blobs,
        encrypt_times,
        lambda incoming: crypto.decrypt_average(secret, incoming, total_weight=total_weight)[0],
        _reference(updates, weights),
    )


def _masked_contributions(
    secret: crypto.SecretContext,
    updates: list[list[np.ndarray]],
    weights: list[int],
    seal: Callable[[crypto.MaskedRound, list[str]], bytes],
) -> tuple[list[bytes], list[float], dict[str, bytes]]:
    """Every institution's timed quantise, mask and ``seal``; then the revealed seeds.

    Returns the sealed blobs, each institution's seconds, and the seeds by name.
    """
    names = [f"institution-{index}" for index in range(len(weights))]
    keys = {name: crypto.AgreementKey.generate() for name in names}
    directory = {name: key.public_bytes() for name, key in keys.items()}
    normaliser = sum(weights)
    encrypt_times, blobs, rounds = [], [], []
    for name, layers, weight in zip(names, updates, weights, strict=True):
        start = time.perf_counter()
        quantised = crypto.quantise_update(secret, layers, weight, normaliser=normaliser)
        masked = crypto.MaskedRound(
            secret,
            keys[name],
            name,
            {peer: pk for peer, pk in directory.items() if peer != name},
            quantised,
            session="bench",
            round_id=1,
            purpose="train",
        )
        blobs.append(seal(masked, names))
        encrypt_times.append(time.perf_counter() - start)
        rounds.append(masked)
    seeds = {name: masked.reveal(names) for name, masked in zip(names, rounds, strict=True)}
    return blobs, encrypt_times, seeds


def _bench_masked(
    mode: str, params: int, updates: list[list[np.ndarray]], weights: list[int]
) -> CryptoBenchRow:
    secret = crypto.generate_secret_context(_MASKED_PRESET_OF_MODE[mode])
    blobs, encrypt_times, seeds = _masked_contributions(
        secret, updates, weights, lambda masked, names: masked.encrypt(names).to_bytes()
    )
    normaliser = sum(weights)
    return _aggregate_and_open(
        mode,
        params,
        secret,
        blobs,
        encrypt_times,
        lambda incoming: crypto.decrypt_masked(
            secret, incoming, self_seeds=seeds, purpose="train"
        ).average(normaliser),
        _reference(updates, weights),
    )


def _bench_padded(
    params: int, updates: list[list[np.ndarray]], weights: list[int]
) -> CryptoBenchRow:
    secret = crypto.generate_secret_context("masked16")
    pad_key = secrets.token_bytes(32)  # every institution's, never the aggregator's
    blobs, encrypt_times, seeds = _masked_contributions(
        secret,
        updates,
        weights,
        lambda masked, names: crypto.pad_update(secret, masked, pad_key, names).to_bytes(),
    )
    normaliser = sum(weights)
    start = time.perf_counter()
    received = [crypto.PaddedUpdate.from_bytes(blob) for blob in blobs]
    middle = time.perf_counter()
    outgoing = crypto.sum_padded(received).to_bytes()
    end = time.perf_counter()
    start_dec = time.perf_counter()
    summed = crypto.open_padded(
        secret, crypto.PaddedUpdate.from_bytes(outgoing), pad_key, self_seeds=seeds, purpose="train"
    )
    average = summed.average(normaliser)
    decrypt_s = time.perf_counter() - start_dec
    return CryptoBenchRow(
        mode="masked-pad",
        params=params,
        clients=len(blobs),
        encrypt_s=float(np.median(encrypt_times)),
        bytes_per_update=len(blobs[0]),
        expansion=len(blobs[0]) / (4 * params),
        aggregate_s=end - start,
        deserialize_s=middle - start,
        sum_s=end - middle,
        ciphertexts_per_update=0,
        decrypt_s=decrypt_s,
        max_abs_error=_max_error(average, _reference(updates, weights)),
    )


def _aggregate_and_open(
    mode: str,
    params: int,
    secret: crypto.SecretContext,
    blobs: list[bytes],
    encrypt_times: list[float],
    open_sum: Callable[[crypto.EncryptedUpdate], list[np.ndarray]],
    reference: np.ndarray,
) -> CryptoBenchRow:
    """Time the aggregator's part (parse, sum, serialise) and one institution's opening."""
    public = secret.public()
    start = time.perf_counter()
    received = [crypto.EncryptedUpdate.from_bytes(public, b, expected_round=1) for b in blobs]
    middle = time.perf_counter()
    outgoing = crypto.aggregate(public, received).to_bytes()
    end = time.perf_counter()
    start_dec = time.perf_counter()
    average = open_sum(crypto.EncryptedUpdate.from_bytes(secret, outgoing))
    decrypt_s = time.perf_counter() - start_dec
    return CryptoBenchRow(
        mode=mode,
        params=params,
        clients=len(blobs),
        encrypt_s=float(np.median(encrypt_times)),
        bytes_per_update=len(blobs[0]),
        expansion=len(blobs[0]) / (4 * params),
        aggregate_s=end - start,
        deserialize_s=middle - start,
        sum_s=end - middle,
        ciphertexts_per_update=len(received[0].vectors),
        decrypt_s=decrypt_s,
        max_abs_error=_max_error(average, reference),
    )


def _bench_paillier(
    params: int,
    updates: list[list[np.ndarray]],
    weights: list[int],
    limit: int,
    cache: dict[int, CryptoBenchRow],
) -> CryptoBenchRow:
    sample = min(params, limit)
    if sample not in cache:
        cache[sample] = _measure_paillier(sample, updates, weights)
    measured = cache[sample]
    factor = params / sample
    per_update = int(measured.bytes_per_update * factor)
    return replace(
        measured,
        params=params,
        encrypt_s=measured.encrypt_s * factor,
        bytes_per_update=per_update,
        expansion=per_update / (4 * params),
        aggregate_s=measured.aggregate_s * factor,
        deserialize_s=measured.deserialize_s * factor,
        sum_s=measured.sum_s * factor,
        ciphertexts_per_update=params + 1,
        decrypt_s=measured.decrypt_s * factor,
        extrapolated_from=sample if factor > 1 else None,
    )


def _measure_paillier(
    sample: int, updates: list[list[np.ndarray]], weights: list[int]
) -> CryptoBenchRow:
    """Paillier on the first ``sample`` values of each update, unscaled."""
    from phe import paillier

    public_key, private_key = paillier.generate_paillier_keypair(n_length=2048)
    flats = [np.concatenate([a.ravel() for a in layers])[:sample] for layers in updates]
    encrypt_times, ciphers, sizes = [], [], []
    for flat, weight in zip(flats, weights, strict=True):
        start = time.perf_counter()
        values = [public_key.encrypt(float(weight * x)) for x in flat]
        values.append(public_key.encrypt(weight))
        wire = [(str(c.ciphertext()), c.exponent) for c in values]
        encrypt_times.append(time.perf_counter() - start)
        sizes.append(sum(len(text) + 4 for text, _ in wire))
        ciphers.append(wire)
    start = time.perf_counter()
    loaded = [
        [paillier.EncryptedNumber(public_key, int(text), exp) for text, exp in wire]
        for wire in ciphers
    ]
    middle = time.perf_counter()
    summed = loaded[0]
    for other in loaded[1:]:
        summed = [a + b for a, b in zip(summed, other, strict=True)]
    end = time.perf_counter()
    start_dec = time.perf_counter()
    plain = [private_key.decrypt(c) for c in summed]
    decrypt_s = time.perf_counter() - start_dec
    average = np.asarray(plain[:-1]) / plain[-1]
    reference = sum(w * f for w, f in zip(weights, flats, strict=True)) / float(sum(weights))
    return CryptoBenchRow(
        mode="paillier",
        params=sample,
        clients=len(weights),
        encrypt_s=float(np.median(encrypt_times)),
        bytes_per_update=sizes[0],
        expansion=sizes[0] / (4 * sample),
        aggregate_s=end - start,
        deserialize_s=middle - start,
        sum_s=end - middle,
        ciphertexts_per_update=sample + 1,
        decrypt_s=decrypt_s,
        max_abs_error=float(np.max(np.abs(average - reference))),
    )


def run_crypto_bench(
    sizes: Iterable[int],
    modes: Iterable[str] = MODES,
    *,
    clients: int = 10,
    seed: int = 0,
    paillier_values: int = 300,
    on_row: Callable[[CryptoBenchRow], None] | None = None,
) -> list[CryptoBenchRow]:
    """Measure every (size, mode) pair; ``on_row`` is called as each row completes.

    Raises
    ------
    ValueError
        An unknown mode, a size below 1, fewer than one client, or a masked
        mode with fewer than 3 or more than 16 clients.
    """
    chosen = list(modes)
    unknown = sorted(set(chosen) - set(MODES))
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if clients < 1:
        raise ValueError(f"need at least one client, got {clients}")
    if set(chosen) & {*_MASKED_PRESET_OF_MODE, "masked-pad"} and not 3 <= clients <= 16:
        raise ValueError(f"the masked modes sum 3 to 16 institutions, got {clients}")
    rows: list[CryptoBenchRow] = []
    paillier_cache: dict[int, CryptoBenchRow] = {}
    for index, params in enumerate(sizes):
        if params < 1:
            raise ValueError(f"model size must be at least 1 parameter, got {params}")
        rng = np.random.default_rng([seed, index])
        updates, weights = _inputs(params, clients, rng)
        for mode in chosen:
            if mode == "plaintext":
                row = _bench_plaintext(params, updates, weights)
            elif mode in _MASKED_PRESET_OF_MODE:
                row = _bench_masked(mode, params, updates, weights)
            elif mode == "masked-pad":
                row = _bench_padded(params, updates, weights)
            elif mode == "paillier":
                row = _bench_paillier(params, updates, weights, paillier_values, paillier_cache)
            else:
                row = _bench_ckks(mode, params, updates, weights, seed)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
