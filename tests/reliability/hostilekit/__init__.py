"""Child-process code of the hostile, corrupt, strange, full-disk and leftover tests.

- :mod:`hostilekit.runners`: the runner class the runner processes run;
- :mod:`hostilekit.paused_writer`: a writer that stops for ever inside its fsync;
- :mod:`hostilekit.fill_queue`: fills a queue on a tiny file system until it is full;
- :mod:`hostilekit.open_umask`: creates queues and files under umask 0.
"""
