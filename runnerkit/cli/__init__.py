"""The ``runnerkit`` command: run, inspect and feed a runnerkit installation.

Every subcommand takes ``-C FILE`` (repeatable; default ``$RUNNERKIT_CONFIG``),
``--var-dir DIR`` (default ``$RUNNERKIT_VAR_DIR``, else ``./var``) and ``--path DIR``
(repeatable), before or after the subcommand (:mod:`runnerkit.cli.common`).  Exit
status: 0 on success, 1 when the command could not do its job, 2 for bad usage or
configuration (a var dir that does not exist, for a command that only looks).
"""

# The subcommands register themselves on ``main`` when their modules are imported.
from runnerkit.cli import conf, demo, lists, qfile, queue, queues, system  # noqa: F401
from runnerkit.cli.common import EXIT_FAILED, EXIT_USAGE, CommandError, UsageProblem, main

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "CommandError", "UsageProblem", "main"]
