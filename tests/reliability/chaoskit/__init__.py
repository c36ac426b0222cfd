"""Support for the reliability tests: runner classes for the children, and a harness.

- :mod:`chaoskit.runners` holds the runner classes that the masters of the tests start;
  the tests put ``tests/reliability`` on the children's ``PYTHONPATH``.
- :mod:`chaoskit.harness` runs real masters over a var dir and reads what they leave.
"""
