"""The entries of a queue, as the ``runnerkit queue`` commands select them.

What an entry is, and how one is read, requeued or discarded, is :mod:`runnerkit.entries`
(shared with the REST runner's operator page); this module adds the commands' filters.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from runnerkit.cli.common import UsageProblem
from runnerkit.config.values import as_duration
from runnerkit.entries import (
    MAX_LISTNAME,
    PRESERVED,
    TAKEN,
    WAITING,
    Entry,
    find_entry,
    format_age,
    is_filebase,
    iso_time,
    queue_entries,
    read_entry,
)
from runnerkit.site import Site

__all__ = [
    "MAX_LISTNAME",
    "PRESERVED",
    "TAKEN",
    "WAITING",
    "Entry",
    "find_entry",
    "format_age",
    "is_filebase",
    "iso_time",
    "queue_entries",
    "read_entry",
    "select_entries",
]


def select_entries(
    site: Site,
    items: Iterable[Entry],
    listname: str | None,
    older_than: str | None,
    match: str | None,
    now: float,
) -> list[Entry]:
    """The *items* that every filter given lets through.

    *listname* matches an entry's ``listname`` or ``listid``; a list of *site* named
    by either matches by both.

    :raises UsageProblem: *older_than* is not a duration (the configuration's syntax,
        :func:`runnerkit.config.values.as_duration`).
    """
    minimum: timedelta | None = None
    if older_than is not None:
        try:
            minimum = as_duration(older_than)
        except ValueError as error:
            raise UsageProblem(f"--older-than: {older_than!r}: {error}") from None
    wanted = None if listname is None else _list_names(site, listname)
    needle = None if match is None else match.casefold()
    chosen = []
    for item in items:
        metadata = item.metadata or {}
        names = {str(metadata.get(key, "")).lower() for key in ("listname", "listid")}
        if wanted is not None and not wanted & names:
            continue
        if minimum is not None and item.age(now) < minimum.total_seconds():
            continue
        text = " ".join((item.reason, item.subject, item.sender)).casefold()
        if needle is not None and needle not in text:
            continue
        chosen.append(item)
    return chosen


def _list_names(site: Site, listname: str) -> set[str]:
    """The names *listname* goes by: itself, and its list's posting address and id."""
    names = {listname.lower()}
    mlist = site.lists.find(listname)
    if mlist is not None:
        names |= {mlist.fqdn_listname.lower(), mlist.list_id.lower()}
    return names
