"""The exceptions runnerkit raises.

Every error runnerkit raises on purpose is a :class:`RunnerkitError`, so callers can
catch the whole family with one clause and still tell the cases apart by subclass.
Messages name the bad value and what would have been accepted.
"""

from __future__ import annotations


class RunnerkitError(Exception):
    """The base of every error that runnerkit raises on purpose."""


class ConfigurationError(RunnerkitError):
    """A configuration layer, section, key or value is wrong, or the stack is misused."""


class NoConfigurationError(ConfigurationError):
    """Code asked for the current configuration, but none is in effect."""


class QueueError(RunnerkitError):
    """A switchboard operation failed."""


class EntryRefusedError(RunnerkitError):
    """An entry of a queue is not requeued (taken, unreadable, no queue to go to, gone);
    it was left where it was, and the message says why.  Not a :class:`QueueError`."""


class QueueUnavailableError(QueueError):
    """The queue's store cannot be used for now (a Redis server unreachable, loading or
    full): an error of the environment, not of the message; try again later."""


class QueueFileError(QueueError):
    """A queue file cannot be read: it is damaged, truncated, hostile or not a file."""


class MetadataError(QueueError):
    """Message metadata holds a value that a queue file cannot store."""


class QueueCountError(QueueError):
    """A queue held another number of messages than a spec or test expected."""


class UnsafeNameError(RunnerkitError, ValueError):
    """A name that would make a path outside the directory it is meant for."""


class MessageError(RunnerkitError):
    """A message cannot be read at all (the email parser itself gives up on it)."""


class MessageLimitError(MessageError):
    """A message goes beyond one of the limits of ``[limits]`` (see :mod:`runnerkit.limits`).

    :param limit: the key of the limit, such as ``max_mime_depth``.
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        #: The key of the limit the message goes beyond.
        self.limit = limit


class ListError(RunnerkitError):
    """A mailing list operation failed."""


class InvalidAddressError(ListError):
    """An email address is malformed."""


class ListAlreadyExistsError(ListError):
    """A mailing list with that name exists already."""


class NoSuchListError(ListError):
    """No mailing list has that name or list id."""


class AlreadySubscribedError(ListError):
    """The address is already a member of the list in that role."""


class NotAMemberError(ListError):
    """The address is not a member of the list in that role."""


class RunnerError(RunnerkitError):
    """A runner cannot be built or run as configured."""


class RunnerSpecError(RunnerError):
    """A ``--runner NAME[:SLICE:COUNT]`` argument is malformed or does not match the section."""


class DatabaseError(RunnerkitError):
    """The SQLite database cannot be opened, or holds something runnerkit cannot read."""


class MasterError(RunnerkitError):
    """A master cannot be started, found or stopped."""


class MasterNotRunningError(MasterError):
    """No master holds the lock of this var dir."""


class UnsafeSiteError(MasterError):
    """The site's directories could be written by another user (strict modes)."""


class MasterRunningError(MasterError):
    """Another master holds the lock of this var dir."""


class MasterStartError(MasterError):
    """A master started in the background exited at once, or did not take its lock in time."""


class StatusFileError(MasterError):
    """The master's status file cannot be read, or is not what a master writes."""


class MasterLayersError(MasterError):
    """A command asked a running master for layers it does not run with.

    ``runnerkit restart -C FILE`` restarts the runners with the master's own layers;
    it cannot change them.
    """


class DemoError(RunnerkitError):
    """The demo was asked for something it cannot do."""


class HarnessError(RunnerkitError):
    """The harness (:mod:`runnerkit.testing`) was used in a way it cannot serve."""


class WorldError(HarnessError):
    """A :class:`~runnerkit.testing.World` was used while closed, or opened twice."""


class UnknownParserError(HarnessError):
    """``collect_specs`` was given a parser name it does not know."""


class ConsoleSyntaxError(HarnessError):
    """A console block of a spec cannot be read as a session: the message says where
    and why."""


class DurationsFileError(HarnessError):
    """A durations file (``--spec-durations``) cannot be read, or is not one runnerkit wrote."""
