"""Benchmarks: training throughput and HPO efficiency."""
