"""Benchmarks and the demo; each module runs with `python -m bench.<name>`."""
