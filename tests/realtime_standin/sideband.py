"""
The sideband: a server's own WebSocket on a running call.

    GET /v1/realtime?call_id=rtc_…   Authorization: Bearer <the real API key>   (WebSocket upgrade)

Once attached, the socket receives the call's server events, the same stream as the data channel
`oai-events` (same events, same order, same `event_id`s), from the moment it attaches: no
`session.created`. Client events sent on it drive the call exactly like the browser's
(`session.update` is answered by `session.updated`, `response.create` gets the scripted answer,
`response.cancel` stops the voice, …). Several sockets may attach to one call. The sideband ends
when the call ends (hang-up, the browser leaving, `call.close()`); closing a sideband does not end
the call.

Refused at the handshake, with OpenAI's error body: a wrong or missing key (401), an unknown or
ended call (404 `call_id_not_found`), no `call_id` (400), an `OpenAI-Beta` header (400
`beta_api_shape_disabled`). An ephemeral key the stand-in minted is accepted, then refused after
`SidebandEndpoint.ephemeral_grace` seconds with an `error` event and close code 1008, as reported
of OpenAI; it receives no call events meanwhile.

Faults, `fail_next(kind, route="sideband")` or `POST /_standin/fail {"route": "sideband", …}`:
    "error"       refuse the attach: 404 `call_id_not_found` unless `status`/`code` say otherwise
    "slow"        accept after `delay` seconds (or refuse with `status` after it)
    "disconnect"  attach, deliver events, then drop the connection after `delay` seconds without a
                  close frame, as a network loss does; the call goes on
    "garbage", "incomplete"  answer the handshake with 200 and a body instead of upgrading
"""

from __future__ import annotations

import asyncio
import json
import secrets

from aiohttp import web

from .calls import CallsPeer, _openai_error
from .client_secrets import beta_disabled

SIDEBAND_PATH = "/v1/realtime"
POLICY_VIOLATION = 1008


class Sideband:
    """One attached socket. Events pass through a queue that `deliver` fills synchronously, so each
    socket gets them in the order the data channel did, however slowly it reads."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self._queue: asyncio.Queue = asyncio.Queue()
        self._writer: asyncio.Task | None = None

    def deliver(self, text: str) -> None:
        self._queue.put_nowait(text)

    def end(self, code: int = 1000, message: bytes = b"call ended") -> None:
        """Close after the events already queued."""
        self._queue.put_nowait((code, message))

    def start(self) -> None:
        self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, tuple):
                    await self.ws.close(code=item[0], message=item[1])
                    return
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            return  # the client is gone

    def stop(self) -> None:
        if self._writer is not None and not self._writer.done() and self._writer is not asyncio.current_task():
            self._writer.cancel()


class SidebandEndpoint:
    """`GET /v1/realtime?call_id=…` for a StandIn's calls."""

    ephemeral_grace = 2.0  # seconds before a sideband opened with an ephemeral key is refused

    def __init__(self, standin, calls: CallsPeer):
        self.standin = standin
        self.calls = calls

    def routes(self) -> list[web.RouteDef]:
        return [web.get(SIDEBAND_PATH, self.attach)]

    async def attach(self, request: web.Request) -> web.StreamResponse:
        drop_after = None
        failure = self.standin._take_failure("sideband")
        if failure is not None:
            if failure.kind == "disconnect":
                drop_after = failure.delay
            elif failure.status == 404 or (failure.kind == "error" and failure.status is None):
                await asyncio.sleep(failure.delay)
                return _openai_error(404, failure.message or "Call not found.", failure.code or "call_id_not_found",
                                     param="call_id")
            else:  # another status; slow (then go on); garbage, incomplete (a 200 instead of the upgrade)
                response = await self.standin._fail(request, failure)
                if response is not None:
                    return response

        if request.headers.get("OpenAI-Beta"):
            raise beta_disabled("The 'OpenAI-Beta' header")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        ephemeral = scheme == "Bearer" and token.strip() in self.standin.issued
        if not ephemeral:
            self.standin._authenticate(request)  # 401 unless the real key
        call_id = request.query.get("call_id")
        if not call_id:
            return _openai_error(400, "Missing required parameter: 'call_id'. This stand-in serves the sideband "
                                      "only: GET /v1/realtime?call_id=rtc_….", "missing_required_parameter",
                                 param="call_id")
        call = self.calls.find(call_id)
        if call is None or call.closed.is_set():
            return _openai_error(404, f"Call not found: {call_id!r}.", "call_id_not_found", param="call_id")

        ws = web.WebSocketResponse(autoping=True)
        if not ws.can_prepare(request).ok:
            return _openai_error(400, "Expected a WebSocket upgrade.", "invalid_request")
        if ephemeral:
            return await self._refuse_ephemeral(request, ws)

        sideband = Sideband(ws)
        # Attached before the handshake completes: a client that sees the upgrade misses nothing after it.
        call.sidebands.append(sideband)
        transport = request.transport
        try:
            await ws.prepare(request)
            sideband.start()
            if drop_after is not None:
                asyncio.get_running_loop().call_later(drop_after, lambda: transport and transport.close())
            async for message in ws:
                if message.type == web.WSMsgType.TEXT:
                    call.on_client_event(message.data, "sideband")
        finally:
            if sideband in call.sidebands:
                call.sidebands.remove(sideband)
            if not call.closed.is_set():
                sideband.stop()  # nothing more to write; after a hang-up the writer closes the socket
        return ws

    async def _refuse_ephemeral(self, request: web.Request, ws: web.WebSocketResponse) -> web.WebSocketResponse:
        await ws.prepare(request)
        await asyncio.sleep(self.ephemeral_grace)
        error = {"type": "error", "event_id": "event_" + secrets.token_hex(8), "error": {
            "type": "invalid_request_error", "code": "invalid_api_key", "param": None, "event_id": None,
            "message": "A sideband connection needs your standard API key; ephemeral keys are not accepted."}}
        try:
            await ws.send_str(json.dumps(error))
            await ws.close(code=POLICY_VIOLATION, message=b"ephemeral keys cannot attach")
        except (ConnectionError, RuntimeError):
            pass
        return ws
