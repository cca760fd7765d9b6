"""
The transcript socket, `/ws/conversations/<uuid>/` (protocol: docs/socket.md).

The browser forwards the OpenAI server events of a conversation here; each one is stored in the
journal and applied to the transcript before it is acknowledged. Frames are handled in the
order they arrive: event frames are queued and written in batches by the process's
`JournalWriter` (group commit), so a busy socket — or 200 of them — costs few transactions;
acks go out after the commit, in order. `ping` is answered at once; `end` waits its turn
behind the events sent before it, and so does `call` (the id of the OpenAI call the page made,
bound to this conversation once: realtime/calls.py). The server may also send, unasked,
`call_ended` (it hung the call up: witness/hangup.py), relayed by sockets.py's registry.

Close codes (only 1000 and 4000-4999: daphne refuses to send others, and a refused close left
the socket open): 4401 not signed in, or signed out / password changed while open (sockets.py);
4404 unknown or someone else's conversation (also when the conversation is deleted while the
socket is open); 4429 too many open sockets (sockets.py); 4500 the database refused a batch
(nothing of it was stored; the browser reconnects and resends what was not acked); 4503 the
client sent far more than the server could store meanwhile (same recovery).

Frames per user are rate-limited (sockets.frame_allowed): a frame past the limit gets an `error`
with code `rate_limited` and `retry_after` (seconds) and is not stored. The frames after it on
that socket are then dropped unread, with no reply, until the refused one is sent again: the
page resends from the refused seq on, so it needs no reply per frame, and a flood that ignores
the error costs the server one json.loads per frame instead of a validation and a reply
(bench/abuse.py). Stored seqs stay contiguous: `ready.last_seq` never hides an unstored frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import access, actions, witness
from conversations.models import Conversation, RealtimeCall
from conversations.realtime import calls
from conversations.transcript import journal, live, sockets
from conversations.transcript.frames import Frame, FrameError, parse_frame
from conversations.transcript.writer import get_writer

logger = logging.getLogger(__name__)

CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_SOCKETS = sockets.CLOSE_TOO_MANY_SOCKETS
CLOSE_SERVER_ERROR = 4500
CLOSE_TRY_AGAIN_LATER = 4503

# Frames handed to the writer at a time (one socket's share of a transaction).
MAX_FRAMES_PER_WRITE = 500
# Back-pressure: received but not yet stored.
MAX_QUEUED_FRAMES = 10_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024


def _open_conversation(user, conversation_uuid):
    """The owner's conversation (only id and uuid loaded) and its last seq, or None; also ends
    the user's other conversations that went quiet meanwhile (the user is back)."""
    try:
        conversation = access.get_conversation(
            user, conversation_uuid, queryset=Conversation.objects.only("id", "uuid")
        )
    except access.NoAccess:
        return None
    actions.end_idle_conversations(user=user, exclude=[conversation.pk])
    # A socket of a conversation with a call (re)opens here: this process's witness supervisor
    # must run, in case the process that held the call's witness is gone.
    witnessed = witness.enabled() and RealtimeCall.objects.filter(conversation=conversation, ended_at=None).exists()
    return conversation, journal.last_seq(conversation.pk), witnessed


def _held_back(text: str | None, throttled_from: int) -> bool:
    """After a `rate_limited` refusal: anything but a ping or the refused frame itself is dropped,
    read as little as possible (bad JSON included: it would only get an error)."""
    if not text or ("ping" not in text and str(throttled_from) not in text):
        return True  # a substring search: no parsing for the bulk of a flood
    try:
        data = json.loads(text)
    except ValueError:
        return True
    if not isinstance(data, dict):
        return True
    return data.get("type") != "ping" and data.get("seq") != throttled_from


class TranscriptConsumer(AsyncWebsocketConsumer):
    # This socket only writes: it publishes live updates (live.publish, default layer) but never
    # receives channel-layer messages, so it registers no channel of its own (revocation reaches
    # it through the process's one registry channel, sockets.py). That spares each socket its
    # channel-layer connection; the reads themselves are one blocking pop per process either way.
    channel_layer_alias = None
    conversation_id: int | None = None
    slot: sockets.Slot | None = None
    # After a `rate_limited` refusal: the refused seq. Other frames are dropped until it is resent.
    _throttled_from: int | None = None

    async def dispatch(self, message):
        # Channels (>= 4.2) runs close_old_connections() in the process's ONE database thread
        # before every handler, so each incoming frame would wait for the batch being written and
        # frames could never pile up into the next batch. These handlers touch the database only
        # through database_sync_to_async, which cleans up connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        self._queue: deque[Frame] = deque()
        self._queued_bytes = 0
        self._flushing = None
        self._closed = False
        user = self.scope.get("user")
        # Accept, then close with a code: a refused handshake would reach the browser as 1006,
        # and it could not tell "log in again" from "network trouble".
        if user is None or not user.is_authenticated:
            return await self._refuse(CLOSE_NOT_AUTHENTICATED)
        # Before any database work: a user opening sockets in a loop costs the database nothing.
        self.slot = await sockets.registry().open(self, user, self.scope["url_route"]["kwargs"]["conversation_id"])
        if self.slot is None:
            return await self._refuse(CLOSE_TOO_MANY_SOCKETS)
        opened = await database_sync_to_async(_open_conversation)(
            user, self.scope["url_route"]["kwargs"]["conversation_id"]
        )
        if opened is None:
            return await self._refuse(CLOSE_NOT_FOUND)
        self.conversation, last_seq, witnessed = opened
        if witnessed:
            witness.ensure_running()
        self.conversation_id, self.conversation_uuid = self.conversation.pk, self.conversation.uuid
        await self.accept()
        await self._send({"type": "ready", "conversation": str(self.conversation_uuid), "last_seq": last_seq})

    async def receive(self, text_data=None, bytes_data=None):
        if self.conversation_id is None or self._closed:
            return
        if self._throttled_from is not None and _held_back(text_data, self._throttled_from):
            return
        try:
            frame = parse_frame(
                text_data,
                max_bytes=settings.TRANSCRIPT_MAX_FRAME_BYTES,
                max_chars=settings.TRANSCRIPT_MAX_CHARS,
                max_non_text_bytes=settings.TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES,
            )
        except FrameError as error:
            await self._send(error.reply())
            return
        if frame.type == "ping":
            await self._send({"type": "pong"})
            return
        refusal = await self._throttle(frame)
        if refusal is not None:
            await self._send(refusal)
            return
        self._queue.append(frame)
        self._queued_bytes += frame.size
        if len(self._queue) > MAX_QUEUED_FRAMES or self._queued_bytes > MAX_QUEUED_BYTES:
            # Unacked frames stay in the browser's outbox; it resends them after reconnecting.
            logger.warning("Closing a transcript socket that outran the database (%d frames)", len(self._queue))
            self._queue.clear()
            await self._close(CLOSE_TRY_AGAIN_LATER)
            return
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self):
        """Store the queued frames in order; runs while frames keep arriving."""
        writer = get_writer()
        while self._queue:
            if self._queue[0].type == "end":
                self._queue.popleft()
                await actions.aend_conversation(self.conversation)
                await self._send({"type": "ended", "conversation": str(self.conversation_uuid)})
                continue
            if self._queue[0].type == "call":
                if not await self._bind_call(self._queue.popleft().call_id):
                    return
                continue
            batch = []
            while self._queue and self._queue[0].type == "event" and len(batch) < MAX_FRAMES_PER_WRITE:
                batch.append(self._queue.popleft())
            self._queued_bytes -= sum(f.size for f in batch)
            try:
                result = await writer.write(self.conversation_id, batch)
            except Exception:
                logger.exception("Transcript writer failed")
                result = journal.AppendResult(self.conversation_id, failed=True)
            if result.failed:
                self._queue.clear()
                await self._close(CLOSE_SERVER_ERROR)
                return
            if not result.found:
                for seq in result.seqs:
                    await self._send(
                        {"type": "error", "seq": seq, "code": "conversation_closed",
                         "message": "This conversation no longer exists."}
                    )  # fmt: skip
                self._queue.clear()
                await self._close(CLOSE_NOT_FOUND)
                return
            for seq in result.seqs:
                # Refused for good (quota_exceeded, conversation_closed): the page drops it.
                refused = result.refused.get(seq)
                await self._send(refused.reply() if refused else {"type": "ack", "seq": seq})
            if result.changed:
                await live.publish(self.conversation_uuid, live.changed_message(self.conversation_uuid, result.changed))

    async def _bind_call(self, call_id: str) -> bool:
        """Bind the page's call to this conversation and say so; False when the socket closed."""
        try:
            await calls.abind(self.conversation_id, call_id, calls.BROWSER)
        except calls.CallTaken as taken:
            await self._send({"type": "error", "seq": None, "code": "call_taken", "call_id": call_id,
                              "message": str(taken)})  # fmt: skip
            return True
        except calls.ConversationGone:
            await self._send({"type": "error", "seq": None, "code": "conversation_closed",
                              "message": "This conversation no longer exists."})  # fmt: skip
            self._queue.clear()
            await self._close(CLOSE_NOT_FOUND)
            return False
        except Exception:  # the database refused: as for a failed batch, the page resends after reconnecting
            logger.exception("Binding a call failed")
            self._queue.clear()
            await self._close(CLOSE_SERVER_ERROR)
            return False
        await self._send({"type": "call", "call_id": call_id, "status": "bound"})
        return True

    async def _throttle(self, frame: Frame) -> dict | None:
        """None, or the `rate_limited` error for a frame over the user's frame rate."""
        verdict = await sockets.frame_allowed(self.scope["user"].pk)
        if verdict.allowed:
            self._throttled_from = None
            return None
        if frame.seq is not None:
            self._throttled_from = frame.seq
        return {
            "type": "error", "seq": frame.seq, "code": "rate_limited", "retry_after": verdict.retry_after,
            "message": f"Too many frames: this one and those after it were not stored; send them again "
            f"in {verdict.retry_after} s.",
        }  # fmt: skip

    async def tell(self, frame: dict):
        """A frame from the server for this conversation's page (sockets.tell_conversation), e.g.
        `call_ended` when the server hung the call up."""
        await self._send(frame)

    async def revoke(self):
        """The session ended or the password changed (sockets.Registry.revoke)."""
        await self._close(CLOSE_NOT_AUTHENTICATED)

    async def disconnect(self, code):
        self._closed = True
        await sockets.registry().close(self.slot)
        # What was received is still stored (it cannot be acked; the resend will be a no-op).
        if self._flushing is not None:
            try:
                await self._flushing
            except Exception:
                logger.exception("Transcript socket failed while closing")

    async def _send(self, message: dict) -> None:
        if not self._closed:
            await self.send(text_data=json.dumps(message))

    async def _refuse(self, code: int) -> None:
        await self.accept()
        await self._close(code)

    async def _close(self, code: int) -> None:
        if not self._closed:
            self._closed = True
            await self.close(code=code)
