"""What a restart may change: a master applies changed configuration files as a whole, or not.

A master reads its configuration files once, when it starts, and builds every runner
process from those texts (:func:`runnerkit.master.files.write_layers`), so that a file
edited under a running master changes nothing until it is asked to apply it.  A
restart (SIGUSR1, ``runnerkit restart``) reads the files again.  The master can take
the new texts without stopping, as a whole, when they keep its plan: the same runner
processes (each runner's slices, :func:`plan`) and the same directories.  A change of
the plan or of a directory would have two generations of processes on one queue, or
leave a queue without its runners; it needs a stop and a start, and
:func:`reload_problem` says why.
"""

from __future__ import annotations

from runnerkit.config import Configuration
from runnerkit.importpath import use_import_path
from runnerkit.runner import check_runner_classes

#: A runner process of a plan: runner name, slice (None for a runner without a queue)
#: and the number of slices.
Spec = tuple[str, int | None, int]


def plan(config: Configuration) -> list[Spec]:
    """The runner processes a master of *config* keeps alive, by runner name.

    A queue runner has one process per slice it runs (``instances``, or the share that
    ``slices`` gives this host), a runner without a queue one; a runner with ``start:
    no`` none.
    """
    specs: list[Spec] = []
    for name, settings in sorted(config.runners.items()):
        if not settings.start:
            continue
        if settings.queue:
            specs.extend((name, index, settings.instances) for index in settings.run_slices)
        else:
            specs.append((name, None, 1))
    return specs


def reload_problem(running: Configuration, changed: Configuration) -> str | None:
    """Why a master running with *running* cannot take *changed* without a stop; None if
    it can.

    It can when both start the same runner processes (:func:`plan`), keep every
    directory (``[paths]`` and each queue's), and every runner class of *changed*
    loads, from *changed*'s import path (which this puts on ``sys.path``, as
    :func:`runnerkit.importpath.use_import_path` does).  The answer names the first
    difference found, as the sections say it.
    """
    for key in ("var_dir", "queue_dir", "log_dir", "data_dir", "lock_dir"):
        before, after = getattr(running.paths, key), getattr(changed.paths, key)
        if before != after:
            return f"[paths] {key} changes from {str(before)!r} to {str(after)!r}"
    for name in sorted({*running.queue_names, *changed.queue_names}):
        if name not in running.queue_names or name not in changed.queue_names:
            verb = "appears" if name not in running.queue_names else "goes away"
            return f"the queue {name!r} {verb}"
        before, after = running.runner(name).path, changed.runner(name).path
        if before != after:
            return f"[runner.{name}] path changes from {str(before)!r} to {str(after)!r}"
    old, new = plan(running), plan(changed)
    if old != new:
        return _plan_change(running, changed, old, new)
    try:
        use_import_path(changed)
        check_runner_classes(changed)
    except Exception as error:  # a class's module may raise anything while imported
        return str(error)
    return None


def _plan_change(
    running: Configuration, changed: Configuration, old: list[Spec], new: list[Spec]
) -> str:
    """The first runner whose processes differ between *old* and *new*, in words."""
    for name in sorted({spec[0] for spec in (*old, *new)}):
        if [spec for spec in old if spec[0] == name] == [spec for spec in new if spec[0] == name]:
            continue
        if name not in changed.runners or name not in running.runners:
            verb = "appears" if name not in running.runners else "goes away"
            return f"the runner {name!r} {verb}"
        before, after = running.runner(name), changed.runner(name)
        for key in ("start", "queue", "instances", "slices"):
            if getattr(before, key) != getattr(after, key):
                return (
                    f"[runner.{name}] {key} changes from {_word(getattr(before, key))} to "
                    f"{_word(getattr(after, key))}"
                )
    return "the runner processes change"  # pragma: no cover - a difference is found above


def _word(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
