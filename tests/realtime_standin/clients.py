"""
Clients of the stand-in for Python tests (asyncio, aiortc and aiohttp; no browser):

    async with BrowserPeer() as browser:                       # a peer like the voice page
        answer = await browser.call(standin.url, ek)           # or key=api_key, session={...}: unified
        assert (await browser.next_event())["type"] == "session.created"
        async with Sideband(standin.url, answer.call_id, standin.api_key) as sideband:
            await sideband.send({"type": "session.update", "session": {...}})
            await sideband.next_event()                        # None once the socket has closed

The stand-in runs on its own loop in another thread, so its thread-safe methods (`call.release`,
`standin.calls.wait_for_call`) may be called from these coroutines; wrap the long waits
(`call.wait_finished`) in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole


@dataclass
class CallAnswer:
    status: int
    headers: dict
    body: str

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @property
    def call_id(self) -> str | None:
        return self.location.rsplit("/", 1)[1] if self.location else None

    def error(self) -> dict:
        return json.loads(self.body)["error"]


class BrowserPeer:
    """What the voice page does: audio both ways, the `oai-events` channel, server events collected."""

    def __init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="sendrecv")
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: list[dict] = []
        self._queue: asyncio.Queue = asyncio.Queue()
        self.opened = asyncio.Event()
        self.channel_closed = asyncio.Event()
        self._sink = MediaBlackhole()  # read the stand-in's voice, or aiortc queues it

        self.channel.on("open", self.opened.set)
        self.channel.on("close", self.channel_closed.set)

        @self.channel.on("message")
        def on_message(message):
            event = json.loads(message)
            self.events.append(event)
            self._queue.put_nowait(event)

        @self.pc.on("track")
        def on_track(track):
            self._sink.addTrack(track)

    async def __aenter__(self) -> BrowserPeer:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def call(self, base_url: str, key: str, *, session: dict | None = None,
                   headers: dict | None = None) -> CallAnswer:
        """POST the offer to {base_url}/realtime/calls: the SDP alone with an ephemeral key, or, with
        `session`, the unified interface's multipart body (key: the real one). A 201 is applied."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        headers = {"Authorization": f"Bearer {key}", **(headers or {})}
        if session is None:
            data, headers["Content-Type"] = offer, "application/sdp"
        else:
            data = aiohttp.FormData()
            data.add_field("sdp", offer, content_type="application/sdp")
            data.add_field("session", session if isinstance(session, str) else json.dumps(session),
                           content_type="application/json")
        async with aiohttp.ClientSession() as http, http.post(f"{base_url}/realtime/calls", data=data,
                                                              headers=headers) as response:
            answer = CallAnswer(response.status, dict(response.headers), await response.text())
        if answer.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.body, type="answer"))
            await self._sink.start()
        return answer

    async def next_event(self, timeout: float = 10.0) -> dict:
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def events_until(self, event_type: str, timeout: float = 10.0) -> list[dict]:
        """The events received from now on, up to and including the next one of this type."""
        events = []
        while not events or events[-1].get("type") != event_type:
            events.append(await self.next_event(timeout))
        return events

    def send(self, event: dict) -> None:
        self.channel.send(json.dumps(event))

    async def close(self) -> None:
        await self._sink.stop()
        await self.pc.close()


def sideband_url(base_url: str, call_id: str) -> str:
    """{OPENAI_BASE_URL}/realtime?call_id=…, with the scheme made ws(s)."""
    return base_url.replace("http", "ws", 1) + f"/realtime?call_id={call_id}"


class Sideband:
    """A server's socket on a call (`GET /v1/realtime?call_id=…`). Opening it raises
    `aiohttp.WSServerHandshakeError` (with `.status`) when the stand-in refuses the attach."""

    def __init__(self, base_url: str, call_id: str, key: str, *, headers: dict | None = None):
        self.url = sideband_url(base_url, call_id)
        self.headers = {"Authorization": f"Bearer {key}", **(headers or {})}
        self.events: list[dict] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._close_frame: int | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sideband:  # noqa: PYI034
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self) -> Sideband:
        self._http = aiohttp.ClientSession()
        try:
            self.ws = await self._http.ws_connect(self.url, headers=self.headers, autoping=True)
        except BaseException:
            await self._http.close()
            raise
        return self

    @property
    def close_code(self) -> int | None:
        """The code of the stand-in's close frame; 1006 (or None) when the connection dropped without one."""
        if self._close_frame is not None:
            return self._close_frame
        return self.ws.close_code if self.ws else None

    async def send(self, event: dict) -> None:
        await self.ws.send_str(json.dumps(event))

    async def next_event(self, timeout: float = 10.0) -> dict | None:
        """The next server event; None once the socket has closed (see `close_code`) or dropped."""
        message = await self.ws.receive(timeout)
        if message.type == aiohttp.WSMsgType.CLOSE:
            self._close_frame = message.data
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        event = json.loads(message.data)
        self.events.append(event)
        return event

    async def events_until(self, event_type: str, timeout: float = 10.0) -> list[dict]:
        events = []
        while not events or events[-1].get("type") != event_type:
            event = await self.next_event(timeout)
            if event is None:
                raise ConnectionError(f"the sideband closed ({self.close_code}) before {event_type!r}; got {events}")
            events.append(event)
        return events

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._http is not None:
            await self._http.close()
