"""
The read-only live socket of a transcript page: `/ws/conversations/<uuid>/live/`.

It joins the conversation's channel-layer group (live.py), which the transcript consumer tells
about every change and about the end of the conversation, and relays those messages to the
page (static/history/live.js). On connect it
first sends the whole transcript as it is, so that nothing said between rendering the page
and opening the socket (or during a reconnect) is missed; lines are keyed by item id, so a
change that arrives both in the snapshot and as a message is applied twice harmlessly.

Owner and staff only (access.py): anonymous → closed with 4401, anyone else or an unknown
conversation → 4404. The socket is accepted before it is closed so that the browser sees the
code. When the conversation is deleted the page gets `conversation.deleted`, then close 4404.
It takes one of the user's socket slots (sockets.py: 4429 past the bound) and is closed with
4401 when its session logs out or the password changes.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from conversations import access
from conversations.history import selectors
from conversations.transcript import sockets
from conversations.transcript.consumer import CLOSE_NOT_AUTHENTICATED, CLOSE_NOT_FOUND
from conversations.transcript.live import group_name, serialize_utterance


@database_sync_to_async
def _viewable(user, conversation_id):
    """(conversation, whether the user watches as a reviewer), or None."""
    try:
        conversation = access.get_conversation(user, conversation_id, reviewer=True)
    except access.NoAccess:
        return None
    return conversation, access.is_reviewer(user)


@database_sync_to_async
def _snapshot(conversation) -> dict:
    return {
        "type": "snapshot",
        "conversation": str(conversation.uuid),
        "status": conversation.status,
        "utterances": [serialize_utterance(u) for u in selectors.transcript(conversation)],
    }


class HistoryLiveConsumer(AsyncJsonWebsocketConsumer):
    group = None
    reviewer = False  # staff who may view every conversation
    slot = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_NOT_AUTHENTICATED)
            return
        self.slot = await sockets.registry().open(self, user, self.scope["url_route"]["kwargs"]["conversation_id"])
        if self.slot is None:
            await self._refuse(sockets.CLOSE_TOO_MANY_SOCKETS)
            return
        viewable = await _viewable(user, self.scope["url_route"]["kwargs"]["conversation_id"])
        if viewable is None:
            await self._refuse(CLOSE_NOT_FOUND)
            return
        conversation, self.reviewer = viewable
        # Join before reading the snapshot: a change made in between then arrives twice rather
        # than never.
        self.group = group_name(conversation.uuid)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await _snapshot(conversation))

    async def _refuse(self, code):
        await self.accept()
        await self.close(code=code)

    async def revoke(self):
        """The session ended or the password changed (sockets.Registry.revoke)."""
        await self.close(code=CLOSE_NOT_AUTHENTICATED)

    async def disconnect(self, code):
        await sockets.registry().close(self.slot)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json(
                {"type": "error", "code": "read_only", "message": "This socket only sends updates."}
            )

    async def decode_json(self, text_data):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    # The group's messages (live.py), passed on as they are: live.js reads the same shapes.
    async def transcript_changed(self, message):
        await self.send_json(message)

    async def conversation_ended(self, message):
        await self.send_json(message)

    async def conversation_deleted(self, message):
        await self.send_json(message)
        await self.close(code=CLOSE_NOT_FOUND)

    async def conversation_reviewed(self, message):
        # Staff's notes on a conversation are not its owner's to read.
        if self.reviewer:
            await self.send_json(message)
