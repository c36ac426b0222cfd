"""``python -m runnerkit``: the same as the ``runnerkit`` command."""

from runnerkit.cli import main

main()
