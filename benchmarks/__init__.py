"""Measurements of the bridge, outside the package (not in the wheel): the load benchmark
and its baselines, the soak, and the security review's attacks, run by ``scripts/``."""
