"""runnerkit's benchmark: ``python -m bench``, from the repository's root.

It measures, on this machine's disk and on tmpfs (``/dev/shm``):

- enqueue throughput of about 3 KB messages, against the raw file-system floor (create,
  write, fsync, rename; and the same with the directory fsynced);
- drain throughput (list, then dequeue and finish every message) with 1 and 8 slices;
- the cost of listing one slice of 8 among 100,000 queued files, against a bare
  ``os.listdir``, and of listing 4,000 files that share one timestamp;
- the idle wake-up latency of a runner process, from ``enqueue`` to ``_dispose``, with
  inotify and with Mailman-style polling;
- the harness's overhead: one document's world set up and torn down, and the wall time
  of the spec suite;
- the demo's throughput through LMTP, ``in``, ``pipeline`` and ``out``.

Where GNU Mailman 3.3.10 is installed (``pip install -e '.[bench]'``), its
``Switchboard`` is measured in the same run, its trials alternating with runnerkit's,
and the table shows ratios.  Every figure is the median of several trials; every ratio
is the median of the ratios of trials run side by side, so that noise from other work
on the machine falls on both sides.  ``python -m bench --help`` lists the options;
``--update-readme`` rewrites the results tables at the end of README.md and redraws the
plots beside them (:mod:`bench.plots`: the ratios against Mailman and the floor, and the
drain rate by runner processes), ``--plots DIR`` draws them anywhere, and
``--plots-from FILE`` redraws them from an earlier run's ``--json`` file.
"""
