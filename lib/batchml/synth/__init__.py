"""Generators of dumps and datasets with known ground truth (for tests, the demo and benchmarks)."""
