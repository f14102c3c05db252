"""Pieces of bench/bench_soak.py: the app launcher, short prompts, the call driver, the analysis."""
