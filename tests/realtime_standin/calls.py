"""
The WebRTC side of the stand-in: `POST /v1/realtime/calls` answered by an aiortc peer.

    POST /v1/realtime/calls            Authorization: Bearer ek_…   Content-Type: application/sdp
      → 201, the SDP answer, Location: /v1/realtime/calls/rtc_…
    POST /v1/realtime/calls            Authorization: Bearer <the real key>   multipart/form-data:
                                       parts `sdp` (the offer) and `session` (JSON)   (the unified interface)
      → the same answer; the session is validated as client_secrets validates it
    POST /v1/realtime/calls/{id}/hangup  (the real API key) → 200, the call and its sidebands end

The key must be one the stand-in minted (`StandIn.issued`), unexpired and unused — OpenAI
refuses a key's second call. The unified interface takes the real key only. The sideband
(`GET /v1/realtime?call_id=…`) is in sideband.py: `Call._send` feeds it the same events. Browsers post from the app's origin, so these routes answer the
CORS preflight (Authorization and Content-Type allowed, Location exposed).

Each call is a `Call`: an aiortc peer with no ICE servers (nothing leaves the machine) that
sends an audio track (a voice-like tone while the assistant "speaks", silence otherwise), plays
a script on `oai-events` (scripts.py) and records every client event the browser sends.

Tests drive it from their own thread (Playwright's sync API); the peer lives on the stand-in's
event loop. Every public method of `CallsPeer` and `Call` is safe to call from another thread:

    standin.calls.script_next(scripts.conversation(3))   # the next call plays this
    page.get_by_role("button", name="Start").click()
    call = standin.calls.wait_for_call()
    call.wait_for("response.create")                     # the browser sent it
    call.release("drop")                                 # let a {"gate": "drop"} step pass
"""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import copy
import email
import email.policy
import fractions
import itertools
import json
import math
import secrets
import threading
import time
from collections import deque
from typing import Callable

from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from . import scripts
from .client_secrets import effective_session

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, the Opus frame WebRTC uses
CALLS_PATH = "/v1/realtime/calls"


# --- Audio ------------------------------------------------------------------------------------

def _voice_frames(levels: int = 12) -> list[bytes]:
    """One 20 ms frame of a vowel-like sound (200 Hz and three harmonics) at each loudness level.
    200 Hz fits a 20 ms frame exactly (4 periods), so frames join without clicks and need no
    computing while the call runs."""
    period = SAMPLE_RATE // 200
    wave = [
        math.sin(2 * math.pi * i / period) + 0.5 * math.sin(4 * math.pi * i / period)
        + 0.3 * math.sin(6 * math.pi * i / period) + 0.15 * math.sin(8 * math.pi * i / period)
        for i in range(FRAME_SAMPLES)
    ]
    peak = max(abs(x) for x in wave)
    frames = []
    for level in range(levels + 1):
        gain = 12000 * level / levels / peak
        frames.append(array.array("h", (int(x * gain) for x in wave)).tobytes())
    return frames


VOICE_FRAMES = _voice_frames()
SILENCE = bytes(FRAME_SAMPLES * 2)


class VoiceTrack(MediaStreamTrack):
    """The model's voice: syllable-like bursts while `speaking()` is true, silence otherwise."""

    kind = "audio"

    def __init__(self, speaking: Callable[[], bool]):
        super().__init__()
        self.speaking = speaking
        self._start = 0.0
        self._timestamp = -1

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._timestamp < 0:
            self._start, self._timestamp = time.time(), 0
        else:
            self._timestamp += FRAME_SAMPLES
            await asyncio.sleep(self._start + self._timestamp / SAMPLE_RATE - time.time())
        if self.speaking():
            t = self._timestamp / SAMPLE_RATE
            envelope = abs(math.sin(2 * math.pi * 2.5 * t)) * (0.6 + 0.4 * math.sin(2 * math.pi * 0.7 * t) ** 2)
            pcm = VOICE_FRAMES[round(envelope * (len(VOICE_FRAMES) - 1))]
        else:
            pcm = SILENCE
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.pts = self._timestamp
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def _rms(frame) -> float:
    samples = array.array("h", bytes(frame.planes[0]))
    if not samples:
        return 0.0
    step = max(1, len(samples) // 240)  # a sample of the samples is plenty for a level
    picked = samples[::step]
    return math.sqrt(sum(s * s for s in picked) / len(picked))


# --- SDP --------------------------------------------------------------------------------------

def drop_mdns_candidates(sdp: str) -> str:
    """Chromium hides local addresses behind `<uuid>.local` names; resolving them would multicast."""
    lines = sdp.splitlines()
    kept = [line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)]
    return "\r\n".join(kept) + "\r\n"


def _openai_error(status: int, message: str, code: str | None = None, kind: str = "invalid_request_error",
                  param: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}}, status=status)


# --- One call ---------------------------------------------------------------------------------

class Call:
    """One WebRTC session: the peer, its script, and what the browser sent on `oai-events`."""

    def __init__(self, peer: "CallsPeer", call_id: str, session: dict, script: list[dict], *, media: bool = True):
        self.peer = peer
        self.id = call_id
        self.session = session
        self.script = script
        self.loop = peer.loop
        # media=False: a bench call (CallsPeer.open_bare) with no peer connection; its events reach
        # only the sidebands attached.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[])) if media else None
        self.channel = None
        self.speaking = False
        self.audio_frames = 0  # microphone frames received from the browser
        self.sent: list[dict] = []  # server events sent, in order
        self.items: list[str] = []  # the conversation's item ids, in OpenAI's order (for previous_item_id)
        self._received: list[dict] = []  # client events received, in order
        self._cond = threading.Condition()  # for waiters in other threads
        self._changed = asyncio.Event()  # for the script on the loop
        self._gates: dict[str, asyncio.Event] = {}
        self._waited: dict[str, int] = {}  # per type: how many the script has consumed
        self._tasks: set[asyncio.Task] = set()
        self.finished = threading.Event()  # the script ran to its end
        self.closed = threading.Event()
        self._replies = itertools.count(1)
        self.listening = False  # {"listen": true}: a loudness detector answers the microphone
        self.unified = False  # made by a server with the real key (multipart), not by the browser
        self.safety_identifier: str | None = None  # the OpenAI-Safety-Identifier header, if any
        self.sidebands: list = []  # attached sideband sockets (sideband.Sideband), on the loop
        self._sources: list[str] = []  # per received event: "data_channel" or "sideband"
        self.ended_by: str | None = None  # "hangup", "peer" (the browser left), "script"

    # --- thread-safe API for tests ------------------------------------------------------------

    @property
    def received(self) -> list[dict]:
        with self._cond:
            return list(self._received)

    def received_types(self, source: str = "data_channel") -> list[str]:
        """The types of the events the browser sent (or, with source="sideband", the witness)."""
        return [event.get("type") for event in self.received_from(source)]

    def received_from(self, source: str) -> list[dict]:
        """The client events that came in on "data_channel" or on "sideband", in order."""
        with self._cond:
            return [event for event, came in zip(self._received, self._sources) if came == source]

    def wait_for(
        self, event_type: str, count: int = 1, timeout: float = 10.0, source: str = "data_channel"
    ) -> list[dict]:
        """Block until the browser (or, with source="sideband", the server's witness) has sent
        `count` events of this type; returns them."""
        def matching():
            return [
                e for e, came in zip(self._received, self._sources) if came == source and e.get("type") == event_type
            ]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"the browser sent {len(matching())} {event_type!r}, not {count}; got {self.received_types()}")
            return matching()

    def release(self, gate: str) -> None:
        self._run(self._release(gate))

    def send(self, event: dict) -> None:
        """Send a server event now (outside the script)."""
        self._run(self._send(event))

    def close(self) -> None:
        self._run(self._close(by="test"))

    def wait_finished(self, timeout: float = 10.0) -> None:
        if not self.finished.wait(timeout):
            raise TimeoutError(f"the script of {self.id} did not finish; sent {len(self.sent)} events")

    def _run(self, coro):
        if _on_loop(self.loop):
            return asyncio.ensure_future(coro)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    # --- on the loop ---------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        pc = self.pc
        pc.addTrack(VoiceTrack(lambda: self.speaking))

        @pc.on("datachannel")
        def on_datachannel(channel):
            if channel.label != "oai-events":
                return
            self.channel = channel
            channel.on("message", self._on_message)
            channel.on("close", lambda: self._spawn(self._close()))
            # The browser's channel arrives already open (negotiated in the offer).
            if channel.readyState == "open":
                self._spawn(self._play())
            else:
                channel.on("open", lambda: self._spawn(self._play()))

        @pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self._spawn(self._consume(track))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await self._close()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=drop_mdns_candidates(offer_sdp), type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)  # gathers the (host-only) candidates
        return pc.localDescription.sdp

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_message(self, message) -> None:
        self.on_client_event(message, "data_channel")

    def on_client_event(self, message, source: str) -> None:
        """A client event from the data channel or a sideband: both drive the call alike."""
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            event = {"type": "<not json>", "raw": str(message)[:200]}
        if not isinstance(event, dict):
            event = {"type": "<not an object>", "raw": str(message)[:200]}
        with self._cond:
            self._received.append(event)
            self._sources.append(source)
            self._cond.notify_all()
        self._changed.set()
        kind = event.get("type")
        if kind == "response.cancel" or kind == "output_audio_buffer.clear":
            self.speaking = False
        elif kind == "session.update":
            self._spawn(self._update_session(event))

    async def _update_session(self, event: dict) -> None:
        """OpenAI answers session.update with session.updated (the whole session) on every stream."""
        update = event.get("session")
        if not isinstance(update, dict):
            await self._send({"type": "error", "error": {
                "type": "invalid_request_error", "code": "invalid_type", "param": "session",
                "message": "Invalid type for 'session': expected an object.", "event_id": event.get("event_id")}})
            return
        self.session = _merged(self.session, {k: v for k, v in update.items() if k != "type"})
        await self._send({"type": "session.updated", "session": self.session})

    async def _send(self, event: dict) -> None:
        """One server event, to the data channel and to every attached sideband, in the same order."""
        channel_open = self.channel is not None and self.channel.readyState == "open"
        if not channel_open and not self.sidebands:
            return
        event = copy.deepcopy(event)
        event.setdefault("event_id", "event_" + secrets.token_hex(8))
        scripts.place(self.items, event)
        if event["type"] == "output_audio_buffer.started":
            self.speaking = True
        elif event["type"] in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self.speaking = False
        text = json.dumps(event)
        if channel_open:
            self.channel.send(text)
        for sideband in self.sidebands:
            sideband.deliver(text)  # queued synchronously: no other event can overtake it
        self.sent.append(event)

    async def _release(self, gate: str) -> None:
        self._gate(gate).set()

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    async def _wait(self, event_type: str) -> None:
        wanted = self._waited.get(event_type, 0) + 1
        while sum(1 for e in self.received if e.get("type") == event_type) < wanted:
            self._changed.clear()
            await self._changed.wait()
        self._waited[event_type] = wanted

    async def _play(self) -> None:
        await self._send({"type": "session.created", "session": self.session})
        try:
            await self._steps(self.script)
        except ConnectionError:
            return
        self.finished.set()

    async def _steps(self, steps: list[dict]) -> None:
        for step in steps:
            if self.closed.is_set():
                raise ConnectionError
            if "send" in step:
                await self._send(step["send"])
                await asyncio.sleep(0)  # let the browser's events interleave, as on a network
            elif "wait" in step:
                await self._wait(step["wait"])
            elif "gate" in step:
                await self._gate(step["gate"]).wait()
            elif "sleep" in step:
                await asyncio.sleep(step["sleep"])
            elif "close" in step:
                await self._close(step["close"], by="script")
                raise ConnectionError
            elif "loop" in step:
                while not self.closed.is_set():
                    await self._steps(step["loop"])
            elif "reply" in step:
                await self._steps(scripts.reply_to(self._last_request(), next(self._replies)))
            elif "listen" in step:
                self.listening = True
            else:
                raise ValueError(f"unknown script step {step!r}")

    def _last_request(self) -> dict | None:
        """What the last response.create answers: the client event just before it that adds input."""
        for event in reversed(self.received):
            if event.get("type") in ("conversation.item.create", "input_audio_buffer.commit"):
                return event
        return None

    async def _consume(self, track) -> None:
        """Receive the microphone (aiortc queues frames until read). While `listening`, a crude
        energy detector stands in for server VAD: talk for a moment, pause, get an answer."""
        voiced = silent = 0
        talking = False
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.audio_frames += 1
            if not self.listening or self._turn_detection() is None:
                continue
            loud = _rms(frame) > 600
            voiced, silent = (voiced + 1, 0) if loud else (0, silent + 1)
            if not talking and voiced >= 10:  # 200 ms of sound
                talking = True
            elif talking and silent >= 35:  # 700 ms of quiet
                talking = False
                self._spawn(self._heard())

    def _turn_detection(self):
        """The session's turn detection, as last set (None: push-to-talk)."""
        detection = ((self.session.get("audio") or {}).get("input") or {}).get("turn_detection")
        for event in self.received:
            if event.get("type") == "session.update":
                audio_input = ((event.get("session") or {}).get("audio") or {}).get("input") or {}
                if "turn_detection" in audio_input:
                    detection = audio_input["turn_detection"]
        return detection

    async def _heard(self) -> None:
        n = next(self._replies)
        user_id = f"item_user_v{n}"
        await self._steps(scripts.user_audio_item(user_id) + scripts.user_transcript(user_id, "(something you said)")
                          + scripts.assistant_turn(f"item_reply_v{n}", f"resp_v{n}", scripts.next_reply()))

    async def _close(self, what: str = "peer", *, by: str = "peer") -> None:
        if what == "channel" and self.channel:
            self.channel.close()
            return
        if self.closed.is_set():
            return
        self.ended_by = by
        self.closed.set()
        for sideband in list(self.sidebands):
            sideband.end()  # after the events already queued for it
        self._changed.set()
        self.speaking = False
        if self.pc is not None:
            await self.pc.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()


# --- The endpoint -----------------------------------------------------------------------------

class CallsPeer:
    """`/v1/realtime/calls` for a StandIn: checks the ephemeral key, answers with a new `Call`."""

    def __init__(self, standin):
        self.standin = standin  # its `issued` keys, its failure injection (route="calls")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls: list[Call] = []
        self._scripts: deque[list[dict]] = deque()
        self._cond = threading.Condition()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(CALLS_PATH, self.create),
            web.post(CALLS_PATH + "/{call_id}/hangup", self.hangup),
        ]

    # --- thread-safe API for tests ------------------------------------------------------------

    def script_next(self, script: list[dict], times: int = 1) -> None:
        """The next `times` calls play this script (then the default script again)."""
        with self._cond:
            self._scripts.extend([script] * times)

    def wait_for_call(self, index: int = -1, count: int | None = None, timeout: float = 10.0) -> Call:
        """Block until `count` calls exist (default: at least one), and return calls[index]."""
        wanted = count or 1
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= wanted, timeout):
                raise TimeoutError(f"{len(self.calls)} calls, wanted {wanted}")
            return self.calls[index]

    def reset(self) -> None:
        """Hang up every call, forget them and the queued scripts."""
        with self._cond:
            calls, self.calls = self.calls, []
            self._scripts.clear()
        for call in calls:
            if call.loop and not call.loop.is_closed():
                try:
                    call.close()
                except (RuntimeError, concurrent.futures.TimeoutError):
                    pass

    # --- handlers -----------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.loop = asyncio.get_running_loop()
        failure = self.standin._take_failure("calls")
        if failure is not None:
            response = await self.standin._fail(request, failure)
            if response is not None:
                return response
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        issued = self.standin.issued.get(token.strip()) if scheme == "Bearer" else None
        if request.content_type == "multipart/form-data":
            return await self.create_unified(request, ephemeral=issued is not None)
        if issued is None:
            return _openai_error(401, "Invalid ephemeral key. Mint one with POST /v1/realtime/client_secrets.", "invalid_api_key")
        if issued.expires_at < time.time():
            return _openai_error(401, "The ephemeral key has expired. Mint a new one.", "expired_api_key")
        if issued.used:
            return _openai_error(401, "This ephemeral key was already used for a call. Mint one key per call.", "invalid_api_key")
        if request.query_string:
            return _openai_error(400, "The GA /v1/realtime/calls takes no query parameters; the session comes from the key.", "unknown_parameter")
        if request.content_type != "application/sdp":
            return _openai_error(400, f"Expected Content-Type: application/sdp, got {request.content_type!r}.", "invalid_content_type")
        offer = await request.text()
        if not offer.startswith("v=0"):
            return _openai_error(400, "The body is not an SDP offer.", "invalid_offer")
        issued.used = True
        return await self._start(offer, issued.session)

    async def create_unified(self, request: web.Request, *, ephemeral: bool) -> web.StreamResponse:
        """The unified interface: a server posts the browser's offer and the session with the real key."""
        if ephemeral:
            return _openai_error(401, "The unified interface (multipart/form-data with 'sdp' and 'session') needs "
                                      "your standard API key, not an ephemeral key.", "invalid_api_key")
        self.standin._authenticate(request)
        if request.query_string:
            return _openai_error(400, "The GA /v1/realtime/calls takes no query parameters; the session is the "
                                      "'session' part.", "unknown_parameter")
        parts = multipart_fields(request.headers.get("Content-Type", ""), await request.read())
        if parts is None:
            return _openai_error(400, "Could not parse the multipart/form-data body.", "invalid_multipart")
        for name in ("sdp", "session"):
            if name not in parts:
                return _openai_error(400, f"Missing required parameter: '{name}'.", "missing_required_parameter",
                                     param=name)
        try:
            session = json.loads(parts["session"])
        except ValueError:
            return _openai_error(400, "The 'session' part is not valid JSON.", "invalid_json", param="session")
        session, _ = effective_session({"session": session}, models=self.standin.models)  # ApiError: 400
        if not parts["sdp"].startswith("v=0"):
            return _openai_error(400, "The 'sdp' part is not an SDP offer.", "invalid_offer", param="sdp")
        session = {"id": "sess_" + secrets.token_hex(12), **session, "expires_at": 0}
        return await self._start(parts["sdp"], session, unified=True,
                                 safety_identifier=request.headers.get("OpenAI-Safety-Identifier"))

    async def _start(self, offer: str, session: dict, *, unified: bool = False,
                     safety_identifier: str | None = None) -> web.StreamResponse:
        with self._cond:
            script = self._scripts.popleft() if self._scripts else scripts.default_script()
        call = Call(self, "rtc_" + secrets.token_hex(12), session, script)
        call.unified, call.safety_identifier = unified, safety_identifier
        try:
            answer = await call.answer(offer)
        except Exception as exc:  # aiortc rejects SDP it cannot use
            await call._close()
            return _openai_error(400, f"Could not negotiate the offer: {exc}", "invalid_offer")
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return web.Response(status=201, text=answer, content_type="application/sdp",
                            headers={"Location": f"{CALLS_PATH}/{call.id}"})

    def open_bare(self, script: list[dict]) -> Call:
        """A call without WebRTC (no SDP, no media), for benchmarks that need many calls: it plays
        `script` at once (start it with a gate or a wait: events sent before a sideband attaches
        reach no one) and is found, attached to and hung up like any call. On the loop."""
        self.loop = asyncio.get_running_loop()
        call = Call(self, "rtc_" + secrets.token_hex(12), {"type": "realtime", "model": self.standin.models[0]},
                    script, media=False)
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        call._spawn(call._play())
        return call

    def find(self, call_id: str) -> Call | None:
        with self._cond:
            return next((c for c in self.calls if c.id == call_id), None)

    async def hangup(self, request: web.Request) -> web.StreamResponse:
        failure = self.standin._take_failure("hangup")  # fail_next(503, route="hangup")
        if failure is not None:
            response = await self.standin._fail(request, failure)
            if response is not None:
                return response
        self.standin._authenticate(request)  # the real API key, as OpenAI requires
        call = self.find(request.match_info["call_id"])
        if call is None:
            return _openai_error(404, "No call with that id.", "call_id_not_found")
        await call._close(by="hangup")
        return web.json_response({})


def multipart_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """The named parts of a multipart/form-data body, as text (None: not multipart). The body was
    already read (the request log keeps it), so it is parsed from bytes rather than streamed."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body, policy=email.policy.HTTP)
    if not message.is_multipart():
        return None
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    return fields


def _merged(base: dict, update: dict) -> dict:
    """`base` with `update` applied: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


# Browsers post the offer from the app's origin: answer the preflight and let the page read
# the answer, the error body and the Location header.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def cors(request: web.Request, handler):
    if not request.path.startswith(CALLS_PATH):
        return await handler(request)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(CORS_HEADERS)
        raise
    response.headers.update(CORS_HEADERS)
    return response


def _on_loop(loop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
