"""The transcript socket in tests: `open_socket()` connects a user to a conversation's socket
through the app's URL router (no server), `Socket` sends frames and reads the answers."""

import json

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

TIMEOUT = 10


class Socket:
    def __init__(self, communicator):
        self.communicator = communicator

    async def send(self, frame):
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self):
        return json.loads(await self.communicator.receive_from(timeout=TIMEOUT))

    async def request(self, frame):
        await self.send(frame)
        return await self.receive()

    async def events(self, events, first_seq=1):
        """Send events as frames (without waiting), then collect their acks in order."""
        for offset, event in enumerate(events):
            await self.send({"type": "event", "seq": first_seq + offset, "event": event})
        replies = [await self.receive() for _ in events]
        assert replies == [{"type": "ack", "seq": first_seq + i} for i in range(len(events))]

    async def closed_with(self):
        message = await self.communicator.receive_output(timeout=TIMEOUT)
        assert message["type"] == "websocket.close", message
        return message.get("code")

    async def close(self):
        await self.communicator.disconnect(timeout=TIMEOUT)


async def open_socket(user, conversation_uuid, expect_ready=True):
    from conversations.routing import websocket_urlpatterns

    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation_uuid}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    socket = Socket(communicator)
    if expect_ready:
        socket.ready = await socket.receive()
        assert socket.ready["type"] == "ready"
    return socket
