"""Benchmarks users run: encryption overhead (``crossfed bench crypto``) and more."""

from simulations.bench.crypto_overhead import MODES, CryptoBenchRow, run_crypto_bench

__all__ = ["MODES", "CryptoBenchRow", "run_crypto_bench"]
