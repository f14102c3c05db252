"""The modules of bench/bench_calls.py (run that script; this package is not installed)."""
