"""Switchboards on Redis Streams: the queue backend for sites that span machines.

:class:`StreamSwitchboard` implements :class:`~runnerkit.backend.QueueBackend` with the
same meaning as the file :class:`~runnerkit.switchboard.Switchboard`, on a Redis or
Valkey server that any number of hosts share.  For a queue ``Q`` of a site whose keys
start with ``P`` (``[queues] key_prefix``):

- ``P queue:Q:slices`` holds how many slices the queue is split into, *N*.  It is
  recorded at first use and changes only while the queue is empty.
- ``P queue:Q:<s>``, for each slice *s* below *N*, is a stream whose entries have the
  fields ``f`` (the file base) and ``d`` (the queue-file document of
  :mod:`runnerkit.queuefile`, the very bytes a ``.pck`` holds: data, never pickle).
  An entry goes to the stream of its digest's slice (:func:`runnerkit.slices.slice_of`).
- Each stream has one consumer group, ``runners``.  Its pending entries list is what the
  file backend keeps as ``.bak`` files: a taken entry is pending under the consumer
  that took it.  An entry put back (after a crash, or by :meth:`put_back`) stays
  pending under the consumer ``waiting``, which keeps its place in the stream and its
  delivery count: the number of times it was taken, which decides when recovery gives
  up on it (:data:`~runnerkit.switchboard.MAX_RECOVERIES`).
- ``P queue:bad:preserved`` is a stream of preserved entries, with the fields ``f``,
  ``d``, ``queue`` (where from), ``reason`` and ``time``: the ``.psv`` files of ``bad``
  and their reasons in one.

Every change is one Lua script, so it happens whole or not at all (Redis runs a
script atomically): taking an entry checks that it waits and claims it; finishing
acknowledges and deletes it, and preserving adds it to the preserved stream in the
same step.  Nothing here needs Redis 7: the scripts use commands of Redis 6.2
(``XPENDING`` with a range, ``XCLAIM ... FORCE``), whose replies are the same in Valkey.

Durability is the server's (``appendonly yes`` with ``appendfsync always`` writes each
change to disk before it answers; ``everysec`` may lose the last second; replication
is asynchronous): docs/redis.md.  Redis Cluster is not supported (the scripts touch
several keys).

Errors: a server that cannot be reached, is loading its data, or is full
(``maxmemory``) raises :class:`~runnerkit.errors.QueueUnavailableError`, which runners
treat as an error of the environment (they wait and try again); anything else the
server refuses is a :class:`~runnerkit.errors.QueueError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from runnerkit import queuefile
from runnerkit.errors import ConfigurationError, QueueError, QueueFileError, QueueUnavailableError
from runnerkit.logtext import one_line
from runnerkit.message import Message
from runnerkit.slices import check_slice, slice_of
from runnerkit.switchboard import (
    _FILEBASE,
    MAX_REASON,
    MAX_RECOVERIES,
    QueueClock,
    check_filebase,
    encode_entry,
    new_filebase,
)
from runnerkit.typing import MsgData

if TYPE_CHECKING:  # pragma: no cover
    import redis

log = logging.getLogger("runnerkit.streams")

#: The consumer group of every queue stream.
GROUP = "runners"
#: The consumer under which entries put back wait, pending, in their place.
WAITING = "waiting"
#: The URL used when ``[queues] url`` and ``$RUNNERKIT_REDIS_URL`` are both empty.
DEFAULT_URL = "redis://localhost:6379/0"
#: Seconds to wait for the server's answer before it counts as unreachable.
SOCKET_TIMEOUT = 10.0
#: Seconds to wait for a connection to the server.
CONNECT_TIMEOUT = 5.0
#: Seconds a switchboard trusts the number of slices it read; an enqueue that meets
#: another is told so by the server, and reads it again.
LAYOUT_TTL = 5.0
#: How many entries one listing script looks at: the server runs one script at a
#: time, so a long queue is listed a page at a time (about 5 ms a page of 4 KB entries).
LIST_PAGE = 100
#: How long a watcher's XREAD blocks, in milliseconds: also how soon it sees a stop.
WATCH_BLOCK_MS = 1000

# The scripts.  KEYS and ARGV are documented above each; every one returns plain
# values.  ``field`` finds a field of an entry, whose fields come as a flat list.
_FIELD = """
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end
local function forget(key, group, consumer)
  if consumer ~= 'waiting'
     and #redis.call('XPENDING', key, group, '-', '+', 1, consumer) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', key, group, consumer)
  end
end
"""

# KEYS: stream, slices key.  ARGV: group, file base, document, the slices the writer
# routed by, whether this is the call sent again after the first one's answer was lost
# ('1' or '0').  Returns the new entry's id (or, sent again, the id of the entry the
# first call wrote, found among the stream's last 1000), or {'slices', N} when the queue
# has N slices now (and nothing was written).
_ENQUEUE = (
    _FIELD
    + """
local slices = redis.call('GET', KEYS[2]) or '1'
if slices ~= ARGV[4] then return {'slices', slices} end
if ARGV[5] == '1' then
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1000)) do
    if field(entry[2], 'f') == ARGV[2] then return entry[1] end
  end
end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return redis.call('XADD', KEYS[1], '*', 'f', ARGV[2], 'd', ARGV[3])
"""
)

# KEYS: stream.  ARGV: group, where to start ('-', or '(' and the last id seen), how
# many entries to look at.  Returns {next, id, file base or '', ...}: the waiting
# entries (not pending, or pending under WAITING) among them, in stream order, and
# where the next page starts ('' after the last).  A page at a time, so that a long
# queue never holds the server (it runs one script at a time) for long.
_LIST = (
    _FIELD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {''} end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
local taken = {}
local start = '-'
while true do
  local page = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', 1000)
  for _, item in ipairs(page) do
    if item[2] ~= 'waiting' then taken[item[1]] = true end
  end
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
local count = tonumber(ARGV[3])
local page = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', count)
local out = {''}
if #page == count then out[1] = '(' .. page[#page][1] end
for _, entry in ipairs(page) do
  if not taken[entry[1]] then
    out[#out + 1] = entry[1]
    out[#out + 1] = field(entry[2], 'f') or ''
  end
end
return out
"""
)

# KEYS: stream.  ARGV: group.  Returns {id, file base or '', consumer, count, ...} of
# the taken entries (pending, not under WAITING).
_TAKEN = (
    _FIELD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local out = {}
local start = '-'
while true do
  local ok, page = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], start, '+', 1000)
  if not ok then return {} end
  for _, item in ipairs(page) do
    if item[2] ~= 'waiting' then
      local entry = redis.call('XRANGE', KEYS[1], item[1], item[1])
      local filebase = ''
      if #entry > 0 then filebase = field(entry[1][2], 'f') or '' end
      out[#out + 1] = item[1]
      out[#out + 1] = filebase
      out[#out + 1] = item[2]
      out[#out + 1] = item[4]
    end
  end
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
return out
"""
)

# KEYS: stream, and the slice's lease key when the taker holds a lease.  ARGV: group,
# consumer, id, file base ('*' for a foreign entry: any or none), the lease's owner.
# Takes the entry if it waits (or is already this consumer's: each take has a consumer
# of its own, so that is this very call, sent again after its reply was lost); returns
# its document ('' when it has none), false when it does not wait, or {'lease', holder}
# when the taker's lease is not (or no longer) its own: then nothing is taken.
_TAKE = (
    _FIELD
    + """
if KEYS[2] then
  local holder = redis.call('GET', KEYS[2])
  if holder ~= ARGV[5] then return {'lease', holder or ''} end
end
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if #entry == 0 then return false end
if ARGV[4] ~= '*' and (field(entry[1][2], 'f') or '') ~= ARGV[4] then return false end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not ok then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
  pending = {}
end
local count = 0
if #pending > 0 then
  if pending[1][2] == ARGV[2] then return field(entry[1][2], 'd') or '' end
  if pending[1][2] ~= 'waiting' then return false end
  count = pending[1][4]
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3],
           'RETRYCOUNT', count + 1, 'FORCE', 'JUSTID')
return field(entry[1][2], 'd') or ''
"""
)

# KEYS: stream, preserved stream.  ARGV: group, id, file base, preserve ('1' or '0'),
# reason, queue, time, the file base the entry holds ('*' for a foreign entry: any or
# none; the file base given is what the preserved entry gets).  Removes a taken entry,
# or moves it to the preserved stream; returns 1, or 0 when the entry is not taken.
_FINISH = (
    _FIELD
    + """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not ok or #pending == 0 or pending[1][2] == 'waiting' then return 0 end
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #entry > 0 and ARGV[8] ~= '*' and (field(entry[1][2], 'f') or '') ~= ARGV[8] then
  return 0
end
if ARGV[4] == '1' then
  local document = ''
  if #entry > 0 then document = field(entry[1][2], 'd') or '' end
  redis.call('XADD', KEYS[2], '*', 'f', ARGV[3], 'd', document,
             'queue', ARGV[6], 'reason', ARGV[5], 'time', ARGV[7])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
forget(KEYS[1], ARGV[1], pending[1][2])
return 1
"""
)

# KEYS: stream.  ARGV: group, id, and optionally the consumer that must hold it.  Puts
# a taken entry back, in its place; its delivery count goes back to what it was (a
# put-back is no strike).  Returns 1, or 0 when the entry is not taken (by that
# consumer).
_PUT_BACK = (
    _FIELD
    + """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not ok or #pending == 0 or pending[1][2] == 'waiting' then return 0 end
if ARGV[3] and pending[1][2] ~= ARGV[3] then return 0 end
local count = pending[1][4] - 1
if count < 0 then count = 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], 'waiting', 0, ARGV[2], 'RETRYCOUNT', count, 'JUSTID')
forget(KEYS[1], ARGV[1], pending[1][2])
return 1
"""
)

# KEYS: stream, preserved stream.  ARGV: group, max recoveries, queue, time.  Puts
# back every taken entry; one taken max-recoveries times (or whose entry is damaged) is
# preserved instead.  Returns {id, file base, count, action, ...}; action is 'back',
# 'preserved' or 'gone' (pending without an entry: dropped).
_RECOVER = (
    _FIELD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
local limit = tonumber(ARGV[2])
local out = {}
local owners = {}
local start = '-'
while true do
  local page = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', 1000)
  for _, item in ipairs(page) do
    if item[2] ~= 'waiting' then
      local id, count = item[1], item[4]
      owners[item[2]] = true
      local entry = redis.call('XRANGE', KEYS[1], id, id)
      local action
      local filebase = ''
      if #entry == 0 then
        redis.call('XACK', KEYS[1], ARGV[1], id)
        action = 'gone'
      else
        filebase = field(entry[1][2], 'f') or ''
        if count >= limit then
          local reason = 'recovered ' .. count ..
            ' times after crashes: processing it keeps failing'
          redis.call('XADD', KEYS[2], '*', 'f', filebase,
                     'd', field(entry[1][2], 'd') or '',
                     'queue', ARGV[3], 'reason', reason, 'time', ARGV[4])
          redis.call('XACK', KEYS[1], ARGV[1], id)
          redis.call('XDEL', KEYS[1], id)
          action = 'preserved'
        else
          redis.call('XCLAIM', KEYS[1], ARGV[1], 'waiting', 0, id,
                     'RETRYCOUNT', count, 'JUSTID')
          action = 'back'
        end
      end
      out[#out + 1] = id
      out[#out + 1] = filebase
      out[#out + 1] = count
      out[#out + 1] = action
    end
  end
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
for owner, _ in pairs(owners) do forget(KEYS[1], ARGV[1], owner) end
return out
"""
)

# KEYS: stream.  ARGV: group.  Returns {length, taken}.
_DEPTH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local length = redis.call('XLEN', KEYS[1])
local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
local taken = 0
if ok and summary[4] then
  for _, consumer in ipairs(summary[4]) do
    if consumer[1] ~= 'waiting' then taken = taken + tonumber(consumer[2]) end
  end
end
return {length, taken}
"""

# KEYS: the slices key.  ARGV: the slices wanted ('' for none), the mode ('look';
# 'record' if nothing is recorded; 'change' also when the queue is empty), the stream
# keys' prefix (without the slice number).  Returns the number of slices afterwards;
# nothing recorded means 1.
_LAYOUT = """
local recorded = redis.call('GET', KEYS[1]) or '1'
if ARGV[1] == '' or ARGV[2] == 'look' or recorded == ARGV[1] then return recorded end
if ARGV[2] == 'record' and redis.call('EXISTS', KEYS[1]) == 1 then return recorded end
for s = 0, tonumber(recorded) - 1 do
  if redis.call('XLEN', ARGV[3] .. s) > 0 then return recorded end
end
for s = 0, tonumber(recorded) - 1 do
  redis.call('DEL', ARGV[3] .. s)
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

# KEYS: the lease key.  ARGV: owner, milliseconds, may take over from (an owner prefix
# or ''), renew ('1': only a lease still held is renewed; one that expired is not taken
# again).  Takes or renews a lease; returns the owner holding it afterwards ('' for
# nobody: a renewal that found the lease expired).
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false and ARGV[4] == '1' then return '' end
if holder == ARGV[1] and redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1 then
  -- Renewed without writing anything new: a full server (maxmemory) allows it.
  return ARGV[1]
end
if holder == false or holder == ARGV[1]
   or (ARGV[3] ~= '' and string.sub(holder, 1, #ARGV[3]) == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"""

# KEYS: the lease key.  ARGV: owner.  Gives a lease up if it is still the owner's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def redis_url(url: str) -> str:
    """The server of ``[queues] url`` *url*: itself, else ``$RUNNERKIT_REDIS_URL``, else
    :data:`DEFAULT_URL`."""
    return url or os.environ.get("RUNNERKIT_REDIS_URL", "") or DEFAULT_URL


def connect(url: str, retries: int = 1) -> redis.Redis:
    """A client of the server at *url* (redis-py's ``Redis.from_url``), which connects
    when first used.

    By default one retry after a dropped connection, so a restarted server is met again
    at once (for commands that may run twice); waits of :data:`SOCKET_TIMEOUT` and
    :data:`CONNECT_TIMEOUT` seconds.

    :raises ConfigurationError: redis-py is not installed, or *url* is not one it reads.
    """
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError as error:
        raise ConfigurationError(
            "[queues] backend: redis needs the redis package: pip install 'runnerkit[redis]'"
        ) from error
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
            health_check_interval=30,
        )
    except ValueError as error:
        raise ConfigurationError(f"[queues] url {url!r}: {error}") from error


def describe(url: str) -> str:
    """*url* without its password, for messages."""
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{separator}{rest}"


def queue_key(prefix: str, name: str, suffix: str) -> str:
    """The key of queue *name*'s *suffix* (``slices``, ``preserved`` or a slice number)."""
    return f"{prefix}queue:{name}:{suffix}"


class RedisCalls:
    """A site's client of its Redis server, its scripts, and the errors it raises as
    queue errors.

    :param url: the server (``[queues] url``, as :func:`redis_url` resolves it).
    :param prefix: the prefix of the site's keys (``[queues] key_prefix``).
    """

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.client = connect(url)
        #: A client that never sends a command again by itself: for an enqueue, which
        #: sent twice would queue the message twice (:meth:`StreamSwitchboard.enqueue`
        #: sends it again itself, saying so).
        self.once = connect(url, retries=0)
        register = self.client.register_script
        self.enqueue = register(_ENQUEUE)
        self.list = register(_LIST)
        self.taken = register(_TAKEN)
        self.take = register(_TAKE)
        self.finish = register(_FINISH)
        self.put_back = register(_PUT_BACK)
        self.recover = register(_RECOVER)
        self.depth = register(_DEPTH)
        self.layout = register(_LAYOUT)
        self.lease = register(_LEASE)
        self.release = register(_RELEASE)
        self.requeue_preserved = register(_FIELD + _REQUEUE_PRESERVED)

    def __repr__(self) -> str:
        return f"<RedisCalls {describe(self.url)} prefix {self.prefix!r}>"

    def call(self, doing: str, function: Callable[[], Any]) -> Any:
        """``function()``, its Redis errors raised as queue errors that say what was
        being done (*doing*) and where.

        :raises QueueUnavailableError: the server cannot be reached, is loading, or is
            full (``maxmemory``): for now, not for good.
        :raises QueueError: the server refused the command.
        """
        import redis

        try:
            return function()
        except (
            redis.exceptions.AuthenticationError,
            redis.exceptions.AuthorizationError,
        ) as error:
            # Not for good either: credentials fixed on the server are met at the next try.
            raise QueueUnavailableError(
                f"cannot {doing}: the Redis server at {describe(self.url)} refused the "
                f"credentials of [queues] url: {str(error).rstrip('.')}"
            ) from error
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise QueueUnavailableError(
                f"cannot {doing}: the Redis server at {describe(self.url)} cannot be "
                f"reached: {str(error).rstrip('.')}"
            ) from error
        except redis.exceptions.ResponseError as error:
            text = str(error)
            # redis-py strips the code of the errors it has a class for (OOM, READONLY,
            # TRYAGAIN, MASTERDOWN): those go by their class; the others by their text.
            full = isinstance(error, redis.exceptions.OutOfMemoryError) or text.startswith("OOM")
            for_now = tuple(
                getattr(redis.exceptions, name)
                for name in ("ReadOnlyError", "TryAgainError", "MasterDownError")
                if hasattr(redis.exceptions, name)
            )
            if (
                full
                or isinstance(error, for_now)
                or text.startswith(("LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN"))
            ):
                what = "is full (maxmemory)" if full else "cannot take changes now"
                raise QueueUnavailableError(
                    f"cannot {doing}: the Redis server at {describe(self.url)} {what}: {text}"
                ) from error
            raise QueueError(
                f"cannot {doing}: the Redis server at {describe(self.url)} refused: {text}"
            ) from error

    def ping(self) -> None:
        """Check that the server answers.

        :raises QueueUnavailableError: it does not.
        """
        self.call("reach the queue server", self.client.ping)

    def close(self) -> None:
        """Close the clients' connections."""
        for client in (self.client, self.once):
            close_client(client)


def close_client(client: redis.Redis) -> None:
    """Close *client* and every connection of its pool, now.

    ``Redis.close()`` alone leaves the pool of a client made by ``from_url`` open before
    redis-py 5 (its sockets closed only when collected).
    """
    with contextlib.suppress(Exception):
        client.close()
    with contextlib.suppress(Exception):
        client.connection_pool.disconnect()


def check_server(url: str, prefix: str) -> None:
    """Check that the Redis server at *url* answers and takes the credentials in *url*
    (a PING), before a master starts runners that would wait for it in vain.

    :raises QueueUnavailableError: it cannot be reached or refuses the credentials.
    :raises ConfigurationError: redis-py is missing, or *url* is not one it reads.
    """
    calls = RedisCalls(redis_url(url), prefix)
    try:
        calls.ping()
    finally:
        calls.close()


def _connection_lost(error: BaseException) -> bool:
    """Whether *error* came of a connection lost or timed out (not of a full server)."""
    import redis

    return isinstance(
        error.__cause__, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def foreign_filebase(key: str, entry_id: str) -> str:
    """A file base for a stream entry that has none (one not written by runnerkit): its
    id's time, and a digest of the stream and id, so it is the same at every look."""
    milliseconds = int(entry_id.split("-", 1)[0])
    digest = hashlib.sha1(f"{key} {entry_id}".encode()).hexdigest()
    return f"{milliseconds // 1000}.{milliseconds % 1000:03d}000000+{digest}"


def _filebase_of(raw: str, key: str, entry_id: str) -> str:
    """The file base of entry *entry_id* of stream *key*, whose ``f`` field is *raw*:
    itself when it is a file base, else (none, or not one: an entry written by someone
    else) :func:`foreign_filebase`."""
    return raw if _FILEBASE.fullmatch(raw) else foreign_filebase(key, entry_id)


#: What the scripts are given as the file base an entry holds when it is foreign: any.
_ANY = "*"


def _stream_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class StreamSwitchboard:
    """One queue on Redis Streams, or one slice of it: a
    :class:`~runnerkit.backend.QueueBackend`.

    :param name: the queue's name, such as ``in``.
    :param calls: the site's :class:`RedisCalls`.
    :param slice: which slice this switchboard serves, or None for the whole queue.
    :param numslices: how many slices the queue is split into (a runner's
        ``instances``).
    :param recover: put back this slice's taken entries now, as a runner does when it
        starts (:meth:`recover_backup_files`).
    :param layout: how many slices the queue has, when a whole-queue switchboard knows
        (the site passes ``instances``); a slice's switchboard uses *numslices*.
    :param clock: the clock that stamps file bases; queues that keep FIFO among each
        other share one.
    :param max_file_size: the largest document read, in bytes (None: no limit); a
        larger one is unreadable, and preserved in bad with the reason.
    :param create: record the queue's number of slices; without it (a read-only look)
        nothing is written by the look itself.
    :raises QueueError: the slice is impossible, or the queue is recorded with another
        number of slices and is not empty.
    :raises QueueUnavailableError: the server cannot be reached.
    """

    def __init__(
        self,
        name: str,
        calls: RedisCalls,
        slice: int | None = None,
        numslices: int = 1,
        recover: bool = False,
        *,
        layout: int | None = None,
        clock: QueueClock | None = None,
        max_file_size: int | None = None,
        create: bool = True,
    ) -> None:
        check_slice(slice, numslices)
        #: The queue's name.
        self.name = name
        #: This switchboard's slice, or None for all of them.
        self.slice = slice
        #: How many slices the queue has, as this switchboard was told.
        self.numslices = numslices
        #: A switchboard on Redis has no directory.
        self.queue_directory = None
        self.calls = calls
        self.max_file_size = max_file_size
        self._clock = clock if clock is not None else QueueClock()
        self._create = create
        self._wanted = numslices if slice is not None else layout
        self._layout: int | None = None
        self._layout_read = 0.0
        #: file base -> (stream key, entry id), as last seen.
        self._ids: dict[str, tuple[str, str]] = {}
        #: The name of this switchboard's consumers: each take has one of its own,
        #: ``<host>:<pid>:<switchboard>:<take>``, deleted when the take is finished.
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._takes = 0
        #: The slice lease of the runner process this switchboard serves, if any: while
        #: set, :meth:`dequeue` takes only while it is fresh, and the server takes only
        #: while it is held (:class:`SliceLease`).
        self.lease: SliceLease | None = None
        #: (stream, entry id, consumer) of takes whose answer never came.
        self._uncertain: list[tuple[str, str, str]] = []
        self._preserved_key = queue_key(calls.prefix, "bad", "preserved")
        if slice is not None:
            self._check_layout()
        if recover:
            self.recover_backup_files()

    def __repr__(self) -> str:
        where = "" if self.slice is None else f" slice {self.slice}/{self.numslices}"
        return f"<StreamSwitchboard {self.name!r}{where} at {describe(self.calls.url)}>"

    # The layout.

    def _stream(self, number: int) -> str:
        return queue_key(self.calls.prefix, self.name, str(number))

    def layout(self, fresh: bool = False) -> int:
        """How many slice streams the queue has, as recorded on the server (read again
        after :data:`LAYOUT_TTL` seconds, or when *fresh*).

        A runner's switchboard records its number of slices, or changes it while the
        queue is empty; a whole-queue one records the site's if none is; a read-only
        one only looks (nothing recorded: 1).

        :raises QueueUnavailableError: the server cannot be reached.
        """
        now = time.monotonic()
        if self._layout is None or fresh or now - self._layout_read > LAYOUT_TTL:
            wanted = "" if self._wanted is None else str(self._wanted)
            mode = "change" if self.slice is not None else "record"
            if not self._create:
                mode = "look"
            recorded = self.calls.call(
                f"read the slices of queue {self.name!r}",
                lambda: self.calls.layout(
                    keys=[queue_key(self.calls.prefix, self.name, "slices")],
                    args=[wanted, mode, queue_key(self.calls.prefix, self.name, "")],
                ),
            )
            self._layout = int(recorded)
            self._layout_read = now
        return self._layout

    def _check_layout(self) -> None:
        layout = self.layout()
        if layout != self.numslices:
            raise QueueError(
                f"queue {self.name!r} is split into {layout} slices on the Redis server "
                f"({queue_key(self.calls.prefix, self.name, 'slices')}), not "
                f"{self.numslices}; the number changes only while the queue is empty: "
                "drain it (runnerkit stop --drain), then start with the new instances"
            )

    def _stream_of(self, filebase: str, layout: int) -> str:
        """The stream of *filebase*'s slice when the queue has *layout* slices."""
        return self._stream(slice_of(int(filebase.rsplit("+", 1)[1], 16), layout))

    def _streams(self) -> list[str]:
        """This switchboard's streams: its slice's, or every slice's."""
        if self.slice is not None:
            return [self._stream(self.slice)]
        return [self._stream(number) for number in range(self.layout())]

    # Queueing.

    def enqueue(self, msg: Message | str, metadata: MsgData | None = None, **kws: Any) -> str:
        """Queue *msg* with *metadata*, and return its file base.

        The rules for metadata are :meth:`~runnerkit.switchboard.Switchboard.enqueue`'s.

        :raises MetadataError: a metadata value cannot be stored.
        :raises QueueUnavailableError: the server cannot be reached or is full; nothing
            is known to be stored.
        :raises QueueError: the server refused it; nothing was stored.
        """
        content = encode_entry(msg, metadata, kws)
        if not self._create:
            raise QueueError(f"cannot enqueue to {self.name!r}: this site is read-only")
        filebase = new_filebase(self._clock)
        slices_key = queue_key(self.calls.prefix, self.name, "slices")
        for fresh in (False, True):
            layout = self.layout(fresh)
            key = self._stream_of(filebase, layout)
            keys = [key, slices_key]
            doing = f"enqueue to {self.name!r}"
            try:
                reply = self.calls.call(
                    doing,
                    partial(
                        self.calls.enqueue,
                        keys=keys,
                        args=[GROUP, filebase, content, layout, "0"],
                        client=self.calls.once,
                    ),
                )
            except QueueUnavailableError as error:
                if not _connection_lost(error):
                    raise
                # The answer was lost, not necessarily the entry: sent again, the
                # script looks for it before it writes, so it is queued once.
                reply = self.calls.call(
                    doing,
                    partial(
                        self.calls.enqueue, keys=keys, args=[GROUP, filebase, content, layout, "1"]
                    ),
                )
            if not isinstance(reply, list):
                self._ids[filebase] = (key, _text(reply))
                return filebase
        raise QueueError(
            f"cannot enqueue to {self.name!r}: its number of slices keeps changing "
            f"({queue_key(self.calls.prefix, self.name, 'slices')})"
        )

    # Listing.

    @property
    def files(self) -> list[str]:
        """This slice's waiting file bases, oldest first (by the server's stream ids).

        :raises QueueUnavailableError: the server cannot be reached.
        """
        self._settle()
        return [filebase for filebase, _ in self._waiting()]

    def _settle(self) -> None:
        """Put back the entries whose take may have happened without its answer
        reaching this process (the server went away in between): taken under a consumer
        of this process's that nobody works for, they would wait for the next start's
        recovery.  Each is put back only if that very consumer holds it.

        :raises QueueUnavailableError: the server still cannot be reached.
        """
        while self._uncertain:
            key, entry_id, consumer = self._uncertain[0]
            self.calls.call(
                f"put an unanswered take back in {self.name!r}",
                partial(self.calls.put_back, keys=[key], args=[GROUP, entry_id, consumer]),
            )
            self._uncertain.pop(0)

    def _waiting(self) -> list[tuple[str, str]]:
        found: list[tuple[tuple[int, str, int], str, str, str]] = []
        streams = self._streams()
        for key in streams:
            start = "-"
            while start:
                reply = self.calls.call(
                    f"list queue {self.name!r}",
                    partial(self.calls.list, keys=[key], args=[GROUP, start, LIST_PAGE]),
                )
                start = _text(reply[0])
                for index in range(1, len(reply), 2):
                    entry_id = _text(reply[index])
                    filebase = _filebase_of(_text(reply[index + 1]), key, entry_id)
                    order = _stream_order(entry_id)
                    # Across slices, the server's millisecond first, then the writer's
                    # stamp.
                    found.append(((order[0], filebase, order[1]), filebase, key, entry_id))
        if len(streams) > 1:
            found.sort(key=lambda item: item[0])
        for _, filebase, key, entry_id in found:
            self._ids[filebase] = (key, entry_id)
        return [(filebase, entry_id) for _, filebase, _, entry_id in found]

    def taken(self) -> list[tuple[str, str, int]]:
        """This slice's taken entries: ``(file base, consumer, times taken)`` each, the
        ``.bak`` files of the file backend.

        :raises QueueUnavailableError: the server cannot be reached.
        """
        out = []
        for key in self._streams():
            reply = self.calls.call(
                f"list the taken entries of queue {self.name!r}",
                partial(self.calls.taken, keys=[key], args=[GROUP]),
            )
            for index in range(0, len(reply), 4):
                entry_id = _text(reply[index])
                filebase = _filebase_of(_text(reply[index + 1]), key, entry_id)
                self._ids[filebase] = (key, entry_id)
                out.append((filebase, _text(reply[index + 2]), int(reply[index + 3])))
        return out

    def get_files(self, extension: str = ".pck") -> list[str]:
        """The file bases that the file backend would list with *extension*:
        ``.pck`` waiting, ``.bak`` taken, ``.psv`` preserved (``bad`` only); none of
        any other.

        :raises QueueUnavailableError: the server cannot be reached.
        """
        if extension == ".pck":
            return self.files
        if extension == ".bak":
            return [filebase for filebase, _, _ in self.taken()]
        if extension == ".psv":
            return [filebase for filebase, _ in self._preserved()] if self.name == "bad" else []
        return []

    def depth(self) -> int:
        """How many messages wait in this slice; ``bad`` counts preserved ones too.

        :raises QueueUnavailableError: the server cannot be reached.
        """
        total = 0
        for key in self._streams():
            length, taken = self.calls.call(
                f"count queue {self.name!r}",
                partial(self.calls.depth, keys=[key], args=[GROUP]),
            )
            total += int(length) - int(taken)
        if self.name == "bad":
            total += self.calls.call(
                "count the preserved entries", lambda: self.calls.client.xlen(self._preserved_key)
            )
        return total

    # Taking and finishing.

    def _locate(self, filebase: str, *, waiting: bool) -> tuple[str, str]:
        check_filebase(filebase)
        place = self._ids.get(filebase)
        if place is None:
            if waiting:
                self._waiting()
            else:
                self.taken()
            place = self._ids.get(filebase)
        if place is None:
            state = "waiting" if waiting else "taken"
            raise QueueError(f"no {state} message {filebase!r} in queue {self.name!r}")
        return place

    def _next_consumer(self) -> str:
        self._takes += 1
        return f"{self.consumer}:{self._takes}"

    def dequeue(self, filebase: str) -> tuple[Message, MsgData]:
        """Take *filebase* for processing; :meth:`finish` must follow.

        :raises QueueError: no such waiting message.
        :raises QueueFileError: its document is unreadable (it is taken all the same);
            finish it with ``preserve=True``.
        :raises QueueUnavailableError: the server cannot be reached; or this switchboard's
            :attr:`lease` is not fresh (:meth:`SliceLease.fresh`), or no longer held,
            so nothing may be taken (the server checks it in the same step as the take).
        """
        key, entry_id = self._locate(filebase, waiting=True)
        expected = _ANY if filebase == foreign_filebase(key, entry_id) else filebase
        consumer = self._next_consumer()
        keys, args = [key], [GROUP, consumer, entry_id, expected]
        lease = self.lease
        if lease is not None:
            stale = lease.staleness()
            if stale is not None:
                raise QueueUnavailableError(f"cannot dequeue {filebase!r}: {stale}")
            keys.append(lease.key)
            args.append(lease.owner)
        try:
            document = self.calls.call(
                f"dequeue {filebase!r} from {self.name!r}",
                lambda: self.calls.take(keys=keys, args=args),
            )
        except QueueUnavailableError:
            # The take may have happened, its answer lost: settled at the next listing.
            self._uncertain.append((key, entry_id, consumer))
            raise
        if isinstance(document, list):
            holder = _text(document[1]) or "nobody (it expired)"
            raise QueueUnavailableError(
                f"cannot dequeue {filebase!r} from {self.name!r}: the slice lease "
                f"{lease.key if lease else '?'} is held by {holder}, not by this runner"
            )
        if document is None:
            self._ids.pop(filebase, None)
            raise QueueError(f"cannot dequeue {filebase!r} from {self.name!r}: it does not wait")
        source = f"entry {entry_id} of Redis stream {key!r}"
        if not document:
            raise QueueFileError(f"{source} is not a runnerkit queue entry: it has no document")
        if self.max_file_size is not None and len(document) > self.max_file_size:
            raise QueueFileError(
                f"{source} holds {len(document)} bytes, more than the largest a queue "
                f"entry may be ({self.max_file_size})"
            )
        entry = queuefile.decode(bytes(document), source=source)
        return entry.message, entry.metadata

    def finish(self, filebase: str, preserve: bool = False, reason: str | None = None) -> None:
        """Be done with a taken message: remove it, or preserve it in ``bad`` with
        *reason* (one line, at most :data:`~runnerkit.switchboard.MAX_REASON`
        characters).

        :raises QueueError: *filebase* is not taken.
        :raises QueueUnavailableError: the server cannot be reached; it stays taken.
        """
        key, entry_id = self._locate(filebase, waiting=False)
        when = datetime.now(UTC).isoformat(timespec="seconds")
        text = one_line(reason, MAX_REASON) if reason is not None else ""
        done = self.calls.call(
            f"finish {filebase!r} of {self.name!r}",
            lambda: self.calls.finish(
                keys=[key, self._preserved_key],
                args=[
                    GROUP,
                    entry_id,
                    filebase,
                    "1" if preserve else "0",
                    text,
                    self.name,
                    when,
                    _ANY if filebase == foreign_filebase(key, entry_id) else filebase,
                ],
            ),
        )
        if not done:
            gone = not self.calls.call(
                f"look for {filebase!r} in {self.name!r}",
                partial(self.calls.client.xrange, key, entry_id, entry_id),
            )
            if not gone:
                raise QueueError(
                    f"cannot finish {filebase!r} of queue {self.name!r}: it is not taken"
                )
            # Already finished: by an earlier send of this very call, whose answer was
            # lost with its connection (the client sends it again), or by an operator.
            log.info("%s of queue %r was finished already", filebase, self.name)
        self._ids.pop(filebase, None)

    def put_back(self, filebase: str) -> None:
        """Undo :meth:`dequeue`: the taken *filebase* waits again, in its place.

        :raises QueueError: it is not taken.
        :raises QueueUnavailableError: the server cannot be reached.
        """
        key, entry_id = self._locate(filebase, waiting=False)
        done = self.calls.call(
            f"put {filebase!r} back in {self.name!r}",
            lambda: self.calls.put_back(keys=[key], args=[GROUP, entry_id]),
        )
        if not done:
            raise QueueError(f"cannot put {filebase!r} back in queue {self.name!r}: not taken")

    # Recovery.

    def recover_backup_files(self) -> None:
        """Put back this slice's taken entries, left by a crash in mid-message.

        One taken :data:`~runnerkit.switchboard.MAX_RECOVERIES` times is preserved in
        ``bad`` with the reason instead.  Only the runner of a slice calls this, when it
        starts, holding the slice's lease (:class:`SliceLease`, in a master's runner
        process): nothing else can have it taken.

        :raises QueueUnavailableError: the server cannot be reached.
        """
        when = datetime.now(UTC).isoformat(timespec="seconds")
        for key in self._streams():
            reply = self.calls.call(
                f"recover queue {self.name!r}",
                partial(
                    self.calls.recover,
                    keys=[key, self._preserved_key],
                    args=[GROUP, MAX_RECOVERIES, self.name, when],
                ),
            )
            for index in range(0, len(reply), 4):
                entry_id, filebase = _text(reply[index]), _text(reply[index + 1])
                count, action = int(reply[index + 2]), _text(reply[index + 3])
                filebase = _filebase_of(filebase, key, entry_id)
                if action == "preserved":
                    log.error(
                        "preserving %s of queue %r in bad: recovered %d times, it keeps failing",
                        filebase,
                        self.name,
                        count,
                    )
                elif action == "back":
                    log.info(
                        "recovered %s of queue %r (recovery %d of %d)",
                        filebase,
                        self.name,
                        count,
                        MAX_RECOVERIES - 1,
                    )

    # Preserved entries (the bad queue's).

    def _preserved(self) -> list[tuple[str, dict[str, Any]]]:
        reply = self.calls.call(
            "list the preserved entries",
            lambda: self.calls.client.xrange(self._preserved_key),
        )
        out = []
        entry_id: Any
        fields: Any
        for entry_id, fields in reply:
            record = {_text(key): value for key, value in fields.items()}
            record["id"] = _text(entry_id)
            filebase = _filebase_of(_text(record.get("f", b"")), self._preserved_key, record["id"])
            out.append((filebase, record))
        return out

    def _find_preserved(self, filebase: str) -> dict[str, Any] | None:
        check_filebase(filebase)
        for found, record in self._preserved():
            if found == filebase:
                return record
        return None

    def preserved_document(self, filebase: str) -> bytes:
        """The queue-file document of the preserved *filebase*.

        :raises QueueError: there is none.
        """
        record = self._find_preserved(filebase)
        if record is None:
            raise QueueError(f"no preserved entry {filebase!r} in bad")
        return bytes(record.get("d", b""))

    def document(self, filebase: str) -> bytes:
        """The queue-file document of the waiting or taken *filebase*.

        :raises QueueError: there is none.
        """
        for waiting in (True, False):
            try:
                key, entry_id = self._locate(filebase, waiting=waiting)
            except QueueError:
                continue
            reply = self.calls.call(
                f"read {filebase!r}",
                partial(self.calls.client.xrange, key, entry_id, entry_id),
            )
            if reply:
                found: Any = reply[0][1]
                return bytes(found.get(b"d", b""))
        raise QueueError(f"no message {filebase!r} in queue {self.name!r}")

    def preserved_reason(self, filebase: str) -> dict[str, str] | None:
        """Why the preserved *filebase* was preserved: ``queue``, ``reason`` and
        ``time``, as text; None when it was preserved without one, or is not there.

        :raises QueueError: *filebase* is not a file base name.
        """
        record = self._find_preserved(filebase)
        if record is None or not _text(record.get("reason", b"")):
            return None
        return {
            key: one_line(_text(record.get(key, b"")), MAX_REASON)
            for key in ("queue", "reason", "time")
        }

    @contextlib.contextmanager
    def preserved_held(self, filebase: str) -> Iterator[None]:
        """Check that the preserved *filebase* is there for the block.

        Removing it (:meth:`remove_preserved`) is atomic on the server: of two commands
        that handle it at once, the second finds it gone.

        :raises QueueError: it is not there.
        """
        if self._find_preserved(filebase) is None:
            raise QueueError(f"preserved entry {filebase!r} is gone: another command took it")
        yield

    def remove_orphaned_reason(self, filebase: str) -> bool:
        """Reasons live in their entries here: there is never one to remove."""
        return False

    def remove_preserved(self, filebase: str) -> None:
        """Remove the preserved *filebase* and its reason.

        :raises QueueError: it is not there (another command took it).
        """
        record = self._find_preserved(filebase)
        removed = 0
        if record is not None:
            removed = self.calls.call(
                f"remove preserved {filebase!r}",
                lambda: self.calls.client.xdel(self._preserved_key, record["id"]),
            )
        if not removed:
            raise QueueError(f"cannot remove preserved {filebase!r}: it is gone")

    # Waking.

    def watch(self, callback: Callable[[], object]) -> StreamWatcher:
        """Call *callback* from a thread whenever an entry is added to this slice's
        streams (one blocking ``XREAD`` on a connection of its own)."""
        return StreamWatcher(self.calls.url, self._streams(), callback)

    def close(self) -> None:
        """Nothing to release: the connections are the site's."""

    # Reading entries as they are, and moving preserved ones, for the operator's tools.

    def entry_extension(self, filebase: str) -> str | None:
        """Where *filebase* is, in the file backend's terms: ``.pck`` (waiting), ``.psv``
        (preserved, of ``bad``) or ``.bak`` (taken); None when it is nowhere here.
        Looks afresh.

        :raises QueueError: *filebase* is not a queue file base name.
        :raises QueueUnavailableError: the server cannot be reached.
        """
        check_filebase(filebase)
        self._ids.pop(filebase, None)
        if any(found == filebase for found, _ in self._waiting()):
            return ".pck"
        if self.name == "bad" and self._find_preserved(filebase) is not None:
            return ".psv"
        if any(found == filebase for found, _, _ in self.taken()):
            return ".bak"
        return None

    def entry_location(self, filebase: str, extension: str = ".pck") -> str:
        """Where *filebase* is, for people: ``redis stream KEY entry ID`` (the preserved
        stream's for ``.psv``), at the server, its password hidden.

        :raises QueueError: it is not there.
        :raises QueueUnavailableError: the server cannot be reached.
        """
        if extension == ".psv":
            record = self._find_preserved(filebase)
            if record is None:
                raise QueueError(f"no preserved entry {filebase!r} in bad")
            key, entry_id = self._preserved_key, record["id"]
        else:
            key, entry_id = self._locate(filebase, waiting=extension != ".bak")
        return f"redis stream {key} entry {entry_id} at {describe(self.calls.url)}"

    def read_document(self, filebase: str, extension: str = ".pck") -> bytes:
        """The queue-file document of *filebase* (``.psv``: the preserved one), changing
        nothing, at most :attr:`max_file_size` bytes of it.

        :raises QueueFileError: it is not there, or is larger.
        :raises QueueUnavailableError: the server cannot be reached.
        """
        try:
            if extension == ".psv":
                document = self.preserved_document(filebase)
            else:
                document = self.document(filebase)
        except QueueUnavailableError:
            raise
        except QueueError as error:
            raise QueueFileError(str(error)) from error
        if self.max_file_size is not None and len(document) > self.max_file_size:
            raise QueueFileError(
                f"entry {filebase!r} of queue {self.name!r} holds {len(document)} bytes, more "
                f"than the largest a queue entry may be ({self.max_file_size})"
            )
        return document

    def preserved_entries(self) -> list[dict[str, Any]]:
        """Every preserved entry (of this, ``bad``), in one read, oldest first: each a
        dict of ``filebase``, ``id`` (its entry id), ``where`` (as
        :meth:`entry_location` says it), ``document`` (bytes), and ``reason``: the
        ``queue``, ``reason`` and ``time`` it was preserved with, as text, or None.

        :raises QueueUnavailableError: the server cannot be reached.
        """
        if self.name != "bad":
            return []
        out = []
        for filebase, record in self._preserved():
            reason = None
            if _text(record.get("reason", b"")):
                reason = {
                    key: one_line(_text(record.get(key, b"")), MAX_REASON)
                    for key in ("queue", "reason", "time")
                }
            out.append(
                {
                    "filebase": filebase,
                    "id": record["id"],
                    "where": f"redis stream {self._preserved_key} entry {record['id']} at "
                    f"{describe(self.calls.url)}",
                    "document": bytes(record.get("d", b"")),
                    "reason": reason,
                }
            )
        return out

    def discard_preserved(self, filebase: str, entry_id: str | None = None) -> None:
        """Remove the preserved *filebase* (its entry *entry_id*, when known: no look
        for it); of two commands that remove it at once, one does.

        :raises QueueError: it is gone (another command took it).
        :raises QueueUnavailableError: the server cannot be reached.
        """
        if entry_id is None:
            self.remove_preserved(filebase)
            return
        removed = self.calls.call(
            f"remove preserved {filebase!r}",
            lambda: self.calls.client.xdel(self._preserved_key, entry_id),
        )
        if not removed:
            raise QueueError(f"cannot remove preserved {filebase!r}: it is gone")

    def requeue_preserved(
        self,
        filebase: str,
        destination: StreamSwitchboard,
        msg: Message,
        metadata: MsgData,
        entry_id: str | None = None,
    ) -> str:
        """Move the preserved *filebase* (of this, ``bad``) to *destination* as a new
        entry of *msg* and *metadata*, in one step on the server: of two commands that
        requeue it at once, one does, and the other finds it gone.

        :param entry_id: its entry's id, when known (no look for it).
        :returns: the new entry's file base.
        :raises MetadataError: a metadata value cannot be stored.
        :raises QueueError: it is gone, or *destination* is another server's.
        :raises QueueUnavailableError: the server cannot be reached; nothing changed.
        """
        content = encode_entry(msg, metadata, {})
        if (destination.calls.url, destination.calls.prefix) != (
            self.calls.url,
            self.calls.prefix,
        ):
            raise QueueError(f"cannot requeue {filebase!r} to {destination!r}: another server's")
        if not destination._create:
            raise QueueError(f"cannot enqueue to {destination.name!r}: this site is read-only")
        if entry_id is None:
            record = self._find_preserved(filebase)
            if record is None:
                raise QueueError(f"preserved entry {filebase!r} is gone: another command took it")
            entry_id = record["id"]
        expected = "" if filebase == foreign_filebase(self._preserved_key, entry_id) else filebase
        new = new_filebase(destination._clock)
        slices_key = queue_key(self.calls.prefix, destination.name, "slices")
        for fresh in (False, True):
            layout = destination.layout(fresh)
            key = destination._stream_of(new, layout)
            reply = self.calls.call(
                f"requeue preserved {filebase!r} to {destination.name!r}",
                partial(
                    self.calls.requeue_preserved,
                    keys=[self._preserved_key, key, slices_key],
                    args=[entry_id, expected, GROUP, new, content, layout],
                ),
            )
            if reply is None:
                raise QueueError(f"preserved entry {filebase!r} is gone: another command took it")
            if not isinstance(reply, list):
                destination._ids[new] = (key, _text(reply))
                return new
        raise QueueError(
            f"cannot requeue to {destination.name!r}: its number of slices keeps changing "
            f"({slices_key})"
        )


class StreamWatcher:
    """Calls *callback* when entries are added to *keys*, from a thread, until closed.

    Errors (a server gone for a while) are logged once and retried every second; the
    runner it wakes polls anyway.
    """

    def __init__(self, url: str, keys: list[str], callback: Callable[[], object]) -> None:
        self._client = connect(url)
        self._keys = keys
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stream-watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        last: dict[Any, Any] = dict.fromkeys(self._keys, "$")
        failing = False
        while not self._stop.is_set():
            try:
                reply: Any = self._client.xread(last, count=100, block=WATCH_BLOCK_MS)
            except Exception as error:
                if self._stop.is_set():
                    return  # closed under it: its connection is gone on purpose
                if not failing:
                    log.warning("cannot watch %s for new entries: %s", self._keys, error)
                failing = True
                self._stop.wait(1.0)
                continue
            failing = False
            if reply:
                for key, entries in reply:
                    if entries:
                        last[_text(key)] = _text(entries[-1][0])
                self._callback()

    def close(self) -> None:
        """Stop the thread and close its connection.

        The connection is closed under a blocked ``XREAD`` rather than waiting up to
        :data:`WATCH_BLOCK_MS` for it: a runner whose master died exits at once.
        """
        self._stop.set()
        self._thread.join(timeout=0.05)
        close_client(self._client)
        self._thread.join(timeout=WATCH_BLOCK_MS / 1000 + 5)


# Holding slices across hosts.


def host_id(var_dir: os.PathLike[str] | str) -> str:
    """This host's name for leases: the machine's name and the var dir's real path."""
    return f"{socket.gethostname()}:{os.path.realpath(var_dir)}"


class SliceLease:
    """A lease on one slice of one queue, held by one runner process of one host.

    Hosts that share a server run different slices (``[runner.NAME] slices``); the
    lease makes sure of it: a runner takes its slice's lease before it recovers and
    runs, renews it every third of ``[queues] lease``, and gives it up when it stops.
    A lease left by a process of this host that died (its local slice lock is free
    again) is taken over at once; one of another host only once it expires.

    The runner takes a message only while the lease is *fresh*: renewed (the request
    sent) less than two thirds of the lease ago, by this process's monotonic clock
    (:meth:`staleness`), and the server checks in the same script as the take that the
    lease is still this owner's.  A renewal that finds the lease expired (the server
    was unreachable for longer than the lease) takes it again if nobody else did; one
    that finds it held by another counts as lost: the runner stops after its message
    and its process asks to be restarted, so that the next one waits for the lease and
    recovers the slice afresh.

    :param calls: the site's Redis calls.
    :param queue: the queue's name.
    :param slice: the slice.
    :param host: :func:`host_id` of this host.
    :param seconds: the lease's time to live.
    """

    def __init__(
        self, calls: RedisCalls, queue: str, slice: int, host: str, seconds: float
    ) -> None:
        self.calls = calls
        self.key = f"{calls.prefix}lease:{queue}:{slice}"
        self.host = host
        self.owner = f"{host}:{os.getpid()}"
        self.milliseconds = max(1000, int(seconds * 1000))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the lease was lost, once it was.
        self.lost: str | None = None
        #: Called (from the renewing thread) when the lease is lost: stop the runner.
        self.on_lost: Callable[[], object] | None = None
        #: The monotonic time at which the last successful take or renewal was sent.
        self.renewed: float | None = None

    @property
    def seconds(self) -> float:
        """The lease's time to live, in seconds."""
        return self.milliseconds / 1000

    def staleness(self) -> str | None:
        """Why no message may be taken under this lease now, or None when it may.

        It may not once the lease is lost, nor once the last successful renewal was
        sent two thirds of the lease ago or more: the lease may expire on the server
        before a message taken now is done.
        """
        if self.lost is not None:
            return self.lost
        if self.renewed is None:
            return f"the slice lease {self.key} is not held"
        age = time.monotonic() - self.renewed
        if age >= self.seconds * 2 / 3:
            return (
                f"the slice lease {self.key} was last renewed {age:.1f}s ago, of "
                f"{self.seconds:g}s it lasts: it may be lost; nothing is taken until it is "
                "renewed"
            )
        return None

    def try_acquire(self, renew: bool = False) -> str | None:
        """Take the lease if free (or left by this host); or, to *renew* it, extend it if
        it is still this owner's.

        :returns: None when taken (or renewed), else who holds it (``''``: nobody, the
            lease to renew expired).
        :raises QueueUnavailableError: the server cannot be reached.
        """
        sent = time.monotonic()
        holder = self.calls.call(
            f"{'renew' if renew else 'take'} the lease {self.key}",
            lambda: self.calls.lease(
                keys=[self.key],
                args=[self.owner, self.milliseconds, f"{self.host}:", "1" if renew else "0"],
            ),
        )
        holder = _text(holder)
        if holder == self.owner:
            self.renewed = sent
            return None
        return holder

    def acquire(self, give_up: Callable[[], bool], poll: float = 0.5) -> bool:
        """Wait until the lease is taken, or *give_up* says to stop waiting; then renew
        it from a thread.

        :returns: whether the lease is held.
        """
        said = None
        while not give_up():
            try:
                holder = self.try_acquire()
            except QueueUnavailableError as error:
                holder = f"nobody known: {error}"
            if holder is None:
                self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
                self._thread.start()
                return True
            if holder != said:
                log.warning("waiting for slice lease %s, held by %s", self.key, holder)
                said = holder
            time.sleep(poll)
        return False

    def _renew(self) -> None:
        interval = self.milliseconds / 3000
        wait = interval
        while not self._stop.wait(wait):
            try:
                holder = self.try_acquire(renew=True)
            except QueueError as error:
                # Unreachable, full, or refused: the runner takes nothing once the lease
                # is stale, and a renewal that succeeds later says whether it is lost.
                if wait == interval:
                    log.warning("cannot renew slice lease %s: %s", self.key, error)
                # Try again sooner (and quietly): the lease must be renewed as soon as
                # the server answers again, before it expires.
                wait = min(interval, 0.25)
                continue
            if holder == "":
                # It expired while the server did not answer (or answered too late);
                # if nobody took it meanwhile, it is this runner's again.
                try:
                    holder = self.try_acquire()
                except QueueError:
                    wait = min(interval, 0.25)
                    continue
                if holder is None:
                    log.warning(
                        "slice lease %s expired while the server did not answer; nobody "
                        "else took it: held again",
                        self.key,
                    )
            elif holder is None and wait != interval:
                log.warning("renewed slice lease %s again", self.key)
            wait = interval
            if holder is not None:
                self.lost = f"slice lease {self.key} is now held by {holder}"
                log.error("%s: stopping", self.lost)
                if self.on_lost is not None:
                    self.on_lost()
                return

    def release(self) -> None:
        """Stop renewing, and give the lease up if still held."""
        self._stop.set()
        self.lost = self.lost or f"slice lease {self.key} was given up"
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(QueueError):
            self.calls.call(
                f"give up the lease {self.key}",
                lambda: self.calls.release(keys=[self.key], args=[self.owner]),
            )


def site_keys(calls: RedisCalls) -> Iterator[str]:
    """Every key of the site (those that start with its prefix)."""
    for key in calls.client.scan_iter(match=_glob_escape(calls.prefix) + "*", count=1000):
        yield _text(key)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def delete_site_keys(calls: RedisCalls) -> int:
    """Delete every key of the site; returns how many.  For tests and throwaway sites."""
    keys = list(site_keys(calls))
    for start in range(0, len(keys), 500):
        calls.client.unlink(*keys[start : start + 500])
    return len(keys)


# KEYS: preserved stream, destination stream, destination slices key.  ARGV: preserved
# entry id, its file base ('' for one without), group, new file base, document, the
# slices the writer routed by.  Moves a preserved entry to a queue in one step; returns
# the new entry's id, {'slices', N} when the destination has N slices now (nothing
# changed), or false when the preserved entry is gone.
_REQUEUE_PRESERVED = """
local slices = redis.call('GET', KEYS[3]) or '1'
if slices ~= ARGV[6] then return {'slices', slices} end
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entry == 0 then return false end
if (field(entry[1][2], 'f') or '') ~= ARGV[2] then return false end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[3], '0', 'MKSTREAM')
return redis.call('XADD', KEYS[2], '*', 'f', ARGV[4], 'd', ARGV[5])
"""
