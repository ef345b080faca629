"""Simulation harness."""
