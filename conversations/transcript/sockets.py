"""
Bounds on open sockets and a way to close a user's sockets, across server processes.

Both socket kinds (the transcript socket and the read-only live socket) take a slot here when
they open and give it back when they close:

- `MAX_SOCKETS_PER_USER` slots per user and `MAX_SOCKETS_PER_CONVERSATION` per conversation;
  past either, the socket is closed with 4429. The slots live in Redis when REDIS_URL is set
  (sorted sets, one check-and-take script, so every process counts against the same bound),
  in this process's memory otherwise.
- A slot carries an expiry time that its process pushes forward every SOCKET_SLOT_TTL/3
  seconds for the sockets it still holds. A process that dies without closing its sockets
  stops doing so, and its slots lapse after SOCKET_SLOT_TTL seconds: nothing leaks for good.
  (A socket whose peer vanished is found by daphne's pings, which ends it cleanly.)
- When the slot store fails (Redis down), sockets open uncounted, as frames pass unlimited:
  losing transcripts would be worse than a bound lapsing for the length of an outage.
- Frames per user: `TRANSCRIPT_FRAMES_PER_SECOND_PER_USER`, counted in voiceproject.ratelimit
  (Redis or memory). Once a user is refused, this process refuses that user's further frames
  locally until the window reopens, so a flood costs no Redis round trip per frame.
- Revocation: each process's registry owns ONE channel-layer channel and joins a group per user
  it holds sockets of. Logging out publishes "close the sockets of this session", a password
  change "close all sockets of this user"; each process closes its matching sockets with 4401.
  One reader per process, not one per socket: the transcript socket keeps having no channel of
  its own (see consumer.py), and a process with 500 open sockets still has one blocked read.
- Telling a conversation's page: the same channel carries frames for the transcript sockets of
  one conversation (`tell_conversation`: the server hung its call up, witness/hangup.py). They
  go to the owner's user group, so they reach the page whichever process holds its socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save

from voiceproject import ratelimit
from voiceproject.loopbound import PerLoop

logger = logging.getLogger(__name__)

CLOSE_TOO_MANY_SOCKETS = 4429
# channels_redis forgets group members after a day (group_expiry); a socket may stay open longer.
GROUP_REJOIN_SECONDS = 3600
REVOKE = "sockets.revoke"
TELL = "sockets.tell"


def user_key(user_id) -> str:
    return f"sockets:user:{user_id}"


def conversation_key(conversation_uuid) -> str:
    return f"sockets:conversation:{uuid.UUID(str(conversation_uuid)).hex}"


def user_group(user_id) -> str:
    return f"sockets.user.{user_id}"


def session_digest(session_key: str | None) -> str | None:
    """What travels over the channel layer instead of the session key itself (a bearer secret)."""
    return hashlib.sha256(session_key.encode()).hexdigest() if session_key else None


# --- slot storage ----------------------------------------------------------------------------------


class MemorySlots:
    """This process's slots: {key: {socket id: expires at}}. Shared by every event loop."""

    def __init__(self):
        self._slots: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    async def take(self, keys: list[tuple[str, int]], member: str, ttl: float) -> str | None:
        now = time.time()
        with self._lock:
            for key, limit in keys:
                slots = self._slots.setdefault(key, {})
                for other in [m for m, expires in slots.items() if expires <= now]:
                    del slots[other]
                if member not in slots and len(slots) >= limit:
                    return key
            for key, _ in keys:
                self._slots[key][member] = now + ttl
        return None

    async def give_back(self, keys: list[str], member: str) -> None:
        with self._lock:
            for key in keys:
                slots = self._slots.get(key, {})
                slots.pop(member, None)
                if not slots:
                    self._slots.pop(key, None)

    async def refresh(self, held: list[tuple[list[str], str]], ttl: float) -> None:
        expires = time.time() + ttl
        with self._lock:
            for keys, member in held:
                for key in keys:
                    if member in self._slots.get(key, {}):
                        self._slots[key][member] = expires

    async def count(self, key: str) -> int:
        now = time.time()
        return sum(1 for expires in self._slots.get(key, {}).values() if expires > now)

    def reset(self) -> None:
        with self._lock:
            self._slots.clear()

    async def aclose(self) -> None:
        pass


# Drops lapsed slots, then takes one in every set or in none. Returns the index (1-based) of the
# set that is full, 0 when taken. ARGV: now, expires at, member, key ttl, then one limit per key.
TAKE_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if not redis.call('ZSCORE', key, ARGV[3]) and redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('EXPIRE', key, ARGV[4])
end
return 0
"""


class RedisSlots:
    """Slots shared by every process: a sorted set per key, socket id -> expiry time."""

    def __init__(self, url: str):
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(url)
        self._take = self.client.register_script(TAKE_SCRIPT)

    async def take(self, keys: list[tuple[str, int]], member: str, ttl: float) -> str | None:
        now = time.time()
        args = [now, now + ttl, member, int(ttl) + 1, *(limit for _, limit in keys)]
        full = await self._take(keys=[key for key, _ in keys], args=args)
        return keys[int(full) - 1][0] if full else None

    async def give_back(self, keys: list[str], member: str) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, member)
            await pipe.execute()

    async def refresh(self, held: list[tuple[list[str], str]], ttl: float) -> None:
        expires = time.time() + ttl
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, member in held:
                for key in keys:
                    pipe.zadd(key, {member: expires}, xx=True)  # only slots that still exist
                    pipe.expire(key, int(ttl) + 1)
            await pipe.execute()

    async def count(self, key: str) -> int:
        return await self.client.zcount(key, time.time(), "+inf")

    async def aclose(self) -> None:
        await self.client.aclose()


_memory_slots = MemorySlots()


# --- the registry of this process's sockets -------------------------------------------------------


@dataclass
class Slot:
    id: str
    user_id: int
    keys: list[str]
    session: str | None  # session_digest() of the socket's session
    consumer: weakref.ref = field(repr=False)


class Registry:
    """One per event loop (a server process has one): its sockets, their slots, its channel."""

    def __init__(self):
        self.storage = RedisSlots(settings.REDIS_URL) if settings.REDIS_URL else _memory_slots
        self.slots: dict[str, Slot] = {}
        self.users: dict[int, set[str]] = {}
        self.channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = False

    @property
    def ttl(self) -> float:
        return settings.SOCKET_SLOT_TTL

    async def open(self, consumer, user, conversation_uuid) -> Slot | None:
        """Take a slot for `consumer`; None when the user or the conversation has no slot left."""
        slot = Slot(
            id=uuid.uuid4().hex,
            user_id=user.pk,
            keys=[user_key(user.pk), conversation_key(conversation_uuid)],
            session=session_digest(getattr(consumer.scope.get("session"), "session_key", None)),
            consumer=weakref.ref(consumer),
        )
        limits = [settings.MAX_SOCKETS_PER_USER, settings.MAX_SOCKETS_PER_CONVERSATION]
        try:
            full = await self.storage.take(list(zip(slot.keys, limits)), slot.id, self.ttl)
        except Exception:
            # Redis is down: as with the frame limit, storing the transcript matters more than the
            # bound. The socket opens uncounted (giving its slot back fails harmlessly).
            logger.warning("Socket slots unavailable; socket let through uncounted", exc_info=True)
            full = None
        if full is not None:
            logger.info("Socket refused: %s has no free slot", full)
            return None
        self.slots[slot.id] = slot
        first_of_user = slot.user_id not in self.users
        self.users.setdefault(slot.user_id, set()).add(slot.id)
        await self._start()
        if first_of_user:
            await self._join(slot.user_id)
        return slot

    async def close(self, slot: Slot | None) -> None:
        if slot is None or self.slots.pop(slot.id, None) is None:
            return
        mine = self.users.get(slot.user_id, set())
        mine.discard(slot.id)
        try:
            await self.storage.give_back(slot.keys, slot.id)
        except Exception:  # it lapses after SOCKET_SLOT_TTL
            logger.exception("Could not give back a socket slot")
        if not mine:
            self.users.pop(slot.user_id, None)
            layer = get_channel_layer()
            if layer is not None and self.channel:
                try:
                    await layer.group_discard(user_group(slot.user_id), self.channel)
                except Exception:
                    logger.exception("Could not leave a user's socket group")

    # -- revocation --

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        layer = get_channel_layer()
        if layer is not None:
            # The default prefix, on purpose: channels_redis reads all of a process's channels of
            # one prefix with one blocking pop, and a reader of another prefix would hold that
            # pop's lock while waiting on its own list, starving every consumer's channel.
            self.channel = await layer.new_channel()
            self._tasks.append(asyncio.create_task(self._listen(layer)))
        self._tasks.append(asyncio.create_task(self._heartbeat()))

    async def _join(self, user_id: int) -> None:
        layer = get_channel_layer()
        if layer is not None and self.channel:
            try:
                await layer.group_add(user_group(user_id), self.channel)
            except Exception:
                logger.exception("Could not join a user's socket group")

    async def _listen(self, layer) -> None:
        while True:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Socket registry: channel layer read failed")
                await asyncio.sleep(1)
                continue
            if message.get("type") == REVOKE:
                await self.revoke(message.get("user"), message.get("session"))
            elif message.get("type") == TELL:
                await self.tell(message.get("user"), message.get("conversation"), message.get("frame"))

    async def revoke(self, user_id, session: str | None) -> int:
        """Close this process's sockets of the user (of one session, when given) with 4401."""
        closed = 0
        for slot_id in list(self.users.get(user_id, ())):
            slot = self.slots.get(slot_id)
            consumer = slot.consumer() if slot else None
            if consumer is None or (session is not None and slot.session != session):
                continue
            try:
                await consumer.revoke()
                closed += 1
            except Exception:
                logger.exception("Could not close a revoked socket")
        return closed

    async def tell(self, user_id, conversation_uuid, frame) -> int:
        """Send `frame` on this process's transcript sockets of the user's conversation."""
        told = 0
        key = conversation_key(conversation_uuid)
        for slot_id in list(self.users.get(user_id, ())):
            slot = self.slots.get(slot_id)
            consumer = slot.consumer() if slot and key in slot.keys else None
            tell = getattr(consumer, "tell", None)  # the live (read-only) socket has none
            if tell is None:
                continue
            try:
                await tell(frame)
                told += 1
            except Exception:
                logger.exception("Could not tell a socket")
        return told

    # -- heartbeat --

    async def _heartbeat(self) -> None:
        joined = time.monotonic()
        while True:
            await asyncio.sleep(self.ttl / 3)
            # A consumer that vanished without its disconnect (a crash) lets its slot lapse.
            held = [(s.keys, s.id) for s in self.slots.values() if s.consumer() is not None]
            try:
                await self.storage.refresh(held, self.ttl)
                if time.monotonic() - joined > GROUP_REJOIN_SECONDS:  # memberships expire (a day)
                    joined = time.monotonic()
                    for user_id in list(self.users):
                        await self._join(user_id)
            except Exception:
                logger.exception("Could not refresh the socket slots")

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("Socket registry task failed")
        for slot in list(self.slots.values()):
            await self.close(slot)
        await self.storage.aclose()


_registries: PerLoop[Registry] = PerLoop(Registry)


def registry() -> Registry:
    return _registries.get()


def reset() -> None:
    """Forget every slot and frame refusal (tests; an operator after a crash of every process)."""
    _memory_slots.reset()
    _refused_until.clear()
    if settings.REDIS_URL:
        import redis

        with redis.Redis.from_url(settings.REDIS_URL) as client:
            keys = list(client.scan_iter(match="sockets:*", count=1000))
            if keys:
                client.delete(*keys)


# --- frames per user -------------------------------------------------------------------------------

# user id -> time.monotonic() until which this process refuses the user's frames without asking
_refused_until: dict[int, float] = {}


async def frame_allowed(user_id: int) -> ratelimit.Verdict:
    """Count one frame of the user against TRANSCRIPT_FRAMES_PER_SECOND_PER_USER."""
    rate = settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER
    if not rate:
        return ratelimit.Verdict(True)
    now = time.monotonic()
    until = _refused_until.get(user_id)
    if until is not None:
        if now < until:
            return ratelimit.Verdict(False, max(1, round(until - now)))
        del _refused_until[user_id]
    try:
        verdict = await ratelimit.ahit(f"{rate}/second", "socket-frames", str(user_id))
    except ratelimit.StorageError:  # Redis is down: storing the transcript matters more
        logger.warning("Frame rate limit unavailable; frame let through")
        return ratelimit.Verdict(True)
    if not verdict.allowed:
        _refused_until[user_id] = now + verdict.retry_after
    return verdict


# --- publishing revocations (any process, sync code: signal handlers) ------------------------------


def revoke_sockets(user_id: int, session_key: str | None = None) -> None:
    """Close the user's open sockets in every process: those of one session, or all of them."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": REVOKE, "user": user_id, "session": session_digest(session_key)}
    try:
        async_to_sync(layer.group_send)(user_group(user_id), message)
    except Exception:
        logger.exception("Could not close the sockets of user %s", user_id)


def on_logged_out(sender, request, user, **kwargs):
    if user is not None and request is not None:
        revoke_sockets(user.pk, request.session.session_key)


def on_user_saved(sender, instance, created, **kwargs):
    # set_password() keeps the new password in `_password` until save() has run this signal.
    if not created and getattr(instance, "_password", None) is not None:
        user_id = instance.pk
        transaction.on_commit(lambda: revoke_sockets(user_id))


def connect_signals() -> None:
    user_logged_out.connect(on_logged_out, dispatch_uid="sockets-logged-out")
    post_save.connect(on_user_saved, sender=get_user_model(), dispatch_uid="sockets-password-changed")


async def tell_conversation(user_id: int, conversation_uuid, frame: dict) -> None:
    """Send `frame` to the open transcript sockets of the user's conversation, in every process
    (best effort: a page with no open socket learns nothing, and finds the call gone anyway)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": TELL, "user": user_id, "conversation": uuid.UUID(str(conversation_uuid)).hex, "frame": frame}
    try:
        await layer.group_send(user_group(user_id), message)
    except Exception:
        logger.exception("Could not tell the sockets of conversation %s", conversation_uuid)
