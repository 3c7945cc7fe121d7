"""Helpers shared by the tests, the benchmarks and the GPU scripts (never imported by serve_app)."""
