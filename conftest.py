"""Collect the specs in doctests/ with Sybil, each document in a fresh world."""

from runnerkit.testing import collect_specs

pytest_collect_file = collect_specs(["doctests/*.rst"])
