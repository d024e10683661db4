"""Benchmarks: what the mesh costs, measured against a reference in the same run."""
