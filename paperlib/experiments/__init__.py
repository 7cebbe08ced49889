"""Experiments: one cached run, suites of runs, profiles, studies and benchmarks."""
