"""Benchmarks shipped with Highway; each prints its figures next to a baseline from the same run."""
