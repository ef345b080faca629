"""Benchmarks: ``crossfed bench crypto``, ``crossfed bench round`` and ``crossfed bench scale``."""

from simulations.bench.crypto_overhead import MODES, CryptoBenchRow, run_crypto_bench
from simulations.bench.round_cost import (
    ROUND_MODES,
    RoundBenchRow,
    hidden_size_for,
    run_round_bench,
)
from simulations.bench.scale import ScaleBenchResult, run_scale_bench

__all__ = [
    "MODES",
    "ROUND_MODES",
    "CryptoBenchRow",
    "RoundBenchRow",
    "ScaleBenchResult",
    "hidden_size_for",
    "run_crypto_bench",
    "run_round_bench",
    "run_scale_bench",
]
