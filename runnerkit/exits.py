"""The exit statuses of a runner process, which the master reads.

They live here, below both :mod:`runnerkit.process` (which exits with them) and
:mod:`runnerkit.master` (whose restart policy decides by them), so that the policy can
be imported, and tested, without the process machinery.
"""

#: Exit status when the runner cannot be set up (bad arguments, configuration or class).
EXIT_SETUP_FAILED = 2
#: Exit status of a runner stopped by SIGUSR1: the master restarts it at once and at no
#: cost (75 is ``EX_TEMPFAIL`` of BSD's sysexits.h: try again).
EXIT_RESTART = 75
