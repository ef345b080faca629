"""Benchmarks users run: ``crossfed bench crypto`` and ``crossfed bench round``."""

from simulations.bench.crypto_overhead import MODES, CryptoBenchRow, run_crypto_bench
from simulations.bench.round_cost import RoundBenchRow, hidden_size_for, run_round_bench

__all__ = [
    "MODES",
    "CryptoBenchRow",
    "RoundBenchRow",
    "hidden_size_for",
    "run_crypto_bench",
    "run_round_bench",
]
