"""Benchmarks (scripts, no asserts)."""
