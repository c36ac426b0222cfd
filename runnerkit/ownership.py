"""Strict modes: a master starts only on a var dir that no one else can write.

Whoever can write a queue directory can plant a message that the ``out`` runner
delivers as the list's, and whoever can write the var dir can replace any directory in
it.  So, as OpenSSH's ``StrictModes`` and ``postfix check`` do, a master refuses to
start when one of the site's directories (the var dir, ``[paths]``'s directories,
every queue's and the Maildirs'), its database or one of its ``-C`` files is owned by
another user than the one it runs as (root excepted), or is writable by its group or
by others.
``[master] strict_modes: no`` turns the check off, for those who must.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Sequence
from pathlib import Path

from runnerkit.config import Configuration
from runnerkit.errors import UnsafeSiteError

#: The permission bits that let others than the owner write.
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def site_paths(config: Configuration) -> list[Path]:
    """The directories and files of *config*'s site that strict modes check, in order."""
    paths = config.paths
    found = [
        paths.var_dir,
        paths.queue_dir,
        paths.data_dir,
        paths.log_dir,
        paths.lock_dir,
        paths.metrics_dir,
        config.delivery.maildir,
    ]
    found += [config.runner(name).path for name in config.queue_names]
    found.append(config.database_path)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def unsafe_paths(
    config: Configuration, uid: int | None = None, config_files: Sequence[Path] = ()
) -> list[str]:
    """Why each of *config*'s site paths that exists is unsafe, one problem a line.

    A path is unsafe when its owner is neither *uid* (default: the effective user) nor
    root, or when its group or others may write it.  *config_files* (the ``-C``
    files) are checked too: one can name runner classes and an import path, so whoever
    may write it may run code as runnerkit's user.  Symbolic links are followed: the
    directory that is used is the one checked.  Paths that do not exist yet are made
    safe when they are made.

    :returns: one sentence per problem, naming the path and the command that fixes it;
        empty when all is well.
    """
    uid = os.geteuid() if uid is None else uid
    problems = []
    for path in [*site_paths(config), *(Path(file) for file in config_files)]:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        except OSError as error:
            problems.append(f"{str(path)!r} cannot be checked: {error.strerror}")
            continue
        if info.st_uid not in (uid, 0):
            problems.append(
                f"{str(path)!r} is owned by {_user(info.st_uid)}, not by {_user(uid)} who "
                f"runs runnerkit (fix: chown {_user(uid)} {path})"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & _WRITABLE_BY_OTHERS:
            who = " and ".join(
                word
                for bit, word in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "others"))
                if mode & bit
            )
            problems.append(
                f"{str(path)!r} is writable by {who} (mode {mode:04o}; fix: chmod go-w {path})"
            )
    return problems


def _user(uid: int) -> str:
    """A user's name, or its number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_strict_modes(config: Configuration, config_files: Sequence[Path] = ()) -> None:
    """Refuse *config*'s site if a path of it is unsafe, unless ``strict_modes`` is off.

    :raises UnsafeSiteError: naming every problem (:func:`unsafe_paths`) and the key
        that turns the check off.
    """
    if not config.master.strict_modes:
        return
    problems = unsafe_paths(config, config_files=config_files)
    if problems:
        raise UnsafeSiteError(
            "refusing to start: another user could plant or change mail here: "
            + "; ".join(problems)
            + " (or, to start anyway, set [master] strict_modes: no)"
        )
