"""User-facing tools: the ``nodemesh`` CLI, the simulated cluster, example apps, benchmarks."""
