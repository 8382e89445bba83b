"""Benchmarks for nbconvert-kfp; run them with ``python -m bench`` (or ``make bench``) from the repo root.

Each benchmark measures its baseline in the same run and reports the ratio to its target;
see bench/README.md. Results go to bench/results/latest.json (git-ignored).
"""
