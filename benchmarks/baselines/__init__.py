"""Baselines the benchmarks compare against, kept runnable so the comparison can be repeated."""
