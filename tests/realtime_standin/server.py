"""
The stand-in's HTTP server (aiohttp): OpenAI's Realtime REST endpoints, offline.

Routes
- `POST /v1/realtime/client_secrets` — checks `Authorization: Bearer <api_key>` and the GA body
  (client_secrets.py), answers `{"value": "ek_…", "expires_at", "session"}` and remembers the
  key with its session (`StandIn.issued`).
- `POST /v1/realtime/calls` (ephemeral key, SDP offer; or the unified interface: the real key and
  a multipart body of `sdp` and `session`) — answered by an aiortc peer that plays a script of
  server events on `oai-events` (calls.py, scripts.py); `StandIn.calls` drives it.
  `POST /v1/realtime/calls/{call_id}/hangup` (real key) ends a call.
- `GET /v1/realtime?call_id=rtc_…` (real key, WebSocket) — the sideband: the call's server events,
  and client events that drive the call (sideband.py).
- The retired beta routes (`/v1/realtime/sessions`, `/v1/realtime`) — `beta_api_shape_disabled`.
- Control, for tests and for a stand-in running in another process:
  `POST /_standin/fail` (the arguments of `fail_next` as JSON; routes "client_secrets", "calls",
  "sideband", "hangup"), `GET /_standin/requests` (sideband attaches and hang-ups included),
  `POST /_standin/reset`; for benchmarks, `POST /_standin/calls` (`{"count", "script"}`: calls
  without WebRTC, see `CallsPeer.open_bare`) and `POST /_standin/calls/release` (`{"gate"}`).

`RealtimeStandIn` runs the server in a thread with its own event loop, so that synchronous
tests (Django's test client, Playwright's sync API) can use it while it keeps serving.
"""

import asyncio
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from .calls import CallsPeer, cors
from .client_secrets import MODELS, ApiError, beta_disabled, effective_session
from .sideband import SidebandEndpoint

DEFAULT_API_KEY = "sk-standin-local-development-key"

FAILURE_KINDS = ("error", "slow", "garbage", "incomplete", "disconnect")
ROUTES = ("client_secrets", "calls", "sideband", "hangup")
# What OpenAI says for these statuses (the 401 quotes the key masked, as OpenAI's does).
DEFAULT_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided: {masked}. "
          "You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported."),
    404: ("invalid_request_error", "unknown_url", "Unknown request URL."),
    429: ("insufficient_quota", "insufficient_quota",
          "You exceeded your current quota, please check your plan and billing details."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def mask(key: str) -> str:
    return f"{key[:8]}{'*' * 8}{key[-4:]}" if len(key) > 12 else "*" * len(key)


@dataclass
class Failure:
    """How to answer the next matching request(s) instead of normally."""

    kind: str = "error"  # see FAILURE_KINDS
    status: int | None = None  # for "error" (default 500); for "slow", fail after the delay
    delay: float = 0.0  # seconds to wait before answering ("slow")
    message: str | None = None
    code: str | None = None
    route: str = "client_secrets"
    times: int = 1

    def __post_init__(self):
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"kind must be one of {FAILURE_KINDS}")
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: CIMultiDict
    text: str
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def as_dict(self) -> dict:
        return {"method": self.method, "path": self.path, "query": self.query, "headers": dict(self.headers),
                "body": self.json if self.json is not None else self.text, "at": self.at}


@dataclass
class IssuedKey:
    value: str
    expires_at: int
    session: dict
    used: bool = False  # for /realtime/calls: OpenAI refuses a key's second call


class StandIn:
    """The state and the aiohttp application. Thread-safe to drive from another thread."""

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, models=MODELS):
        self.api_key = api_key
        self.models = tuple(models)
        self._failures: deque[Failure] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=10_000)
        self.issued: dict[str, IssuedKey] = {}
        self.calls = CallsPeer(self)  # POST /v1/realtime/calls: the WebRTC side (calls.py)
        self.sideband = SidebandEndpoint(self, self.calls)  # GET /v1/realtime?call_id=… (sideband.py)

    # --- control ----------------------------------------------------------------------------

    def fail_next(self, kind: str | int = "error", *, status: int | None = None, times: int = 1,
                  delay: float = 0.0, message: str | None = None, code: str | None = None,
                  route: str = "client_secrets") -> None:
        """
        Answer the next `times` requests to `route` badly. `kind` may be a status (`fail_next(429)`)
        or one of FAILURE_KINDS: "error" (an OpenAI error body), "slow" (answer after `delay`
        seconds — normally, or with `status`), "garbage" (200, not JSON), "incomplete" (200, JSON
        without the key), "disconnect" (close the connection without an answer). For
        route="sideband" (sideband.py): "error" refuses the attach with 404 `call_id_not_found`, and
        "disconnect" drops the attached socket `delay` seconds into the call. route="hangup" fails
        `POST /v1/realtime/calls/{id}/hangup` the same ways as the REST routes.
        """
        if isinstance(kind, int):
            kind, status = "error", kind
        failure = Failure(kind=kind, status=status, delay=delay, message=message, code=code, route=route,
                          times=max(1, int(times)))
        self._failures.append(failure)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset, oldest first (control requests excluded)."""
        return list(self._requests)

    def reset(self) -> None:
        self._failures.clear()
        self._requests.clear()
        self.issued.clear()
        self.calls.reset()

    def _take_failure(self, route: str) -> Failure | None:
        for failure in list(self._failures):
            if failure.route == route:
                failure.times -= 1
                if failure.times <= 0:
                    try:
                        self._failures.remove(failure)
                    except ValueError:
                        pass
                return failure
        return None

    # --- the application --------------------------------------------------------------------

    def app(self) -> web.Application:
        # CORS outermost: the browser must be able to read /calls answers, error bodies included.
        app = web.Application(middlewares=[cors, self._record])
        app.add_routes(self.calls.routes())
        app.add_routes(self.sideband.routes())
        app.add_routes([
            web.post("/v1/realtime/client_secrets", self.client_secrets),
            web.post("/v1/realtime/sessions", self.beta_route),
            web.post("/v1/realtime", self.beta_route),
            web.post("/_standin/fail", self.control_fail),
            web.get("/_standin/requests", self.control_requests),
            web.post("/_standin/reset", self.control_reset),
            web.post("/_standin/calls", self.control_calls),
            web.post("/_standin/calls/release", self.control_release),
        ])
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler):
        if not request.path.startswith("/_standin/"):
            text = await request.text() if request.can_read_body else ""
            self._requests.append(RecordedRequest(request.method, request.path, request.query_string,
                                                  CIMultiDict(request.headers), text))
        try:
            return await handler(request)
        except ApiError as error:
            return web.json_response(error.body(), status=error.status)

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not secrets.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(401, DEFAULT_ERRORS[401][2].format(masked=mask(token.strip())), code="invalid_api_key")

    async def _fail(self, request: web.Request, failure: Failure) -> web.StreamResponse | None:
        """Answer as `failure` says; None means "go on normally" (a slow success)."""
        if failure.delay:
            await asyncio.sleep(failure.delay)
        if failure.kind == "disconnect":
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the request without an answer
        if failure.kind == "garbage":
            return web.Response(status=200, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if failure.kind == "incomplete":
            return web.json_response({"object": "realtime.client_secret", "expires_at": int(time.time()) + 60})
        if failure.kind == "slow" and failure.status is None:
            return None
        status = failure.status or 500
        kind, code, message = DEFAULT_ERRORS.get(status, ("server_error", None, f"HTTP {status}"))
        message = failure.message or message.format(masked=mask(self.api_key))
        raise ApiError(status, message, code=failure.code or code, type=kind)

    async def client_secrets(self, request: web.Request) -> web.StreamResponse:
        failure = self._take_failure("client_secrets")
        if failure is not None:
            response = await self._fail(request, failure)
            if response is not None:
                return response
        if request.headers.get("OpenAI-Beta"):
            raise beta_disabled("The 'OpenAI-Beta' header")
        self._authenticate(request)
        if request.content_type != "application/json":
            raise ApiError(400, "Expected a JSON body (Content-Type: application/json).")
        try:
            body = json.loads(await request.text())
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        session, seconds = effective_session(body, models=self.models)
        now = int(time.time())
        value = "ek_" + secrets.token_hex(16)
        session = {"id": "sess_" + secrets.token_hex(12), **session, "expires_at": 0}
        self.issued[value] = IssuedKey(value, now + seconds, session)
        return web.json_response({"value": value, "expires_at": now + seconds, "session": session})

    async def beta_route(self, request: web.Request) -> web.StreamResponse:
        raise beta_disabled(f"POST {request.path}")

    async def control_fail(self, request: web.Request) -> web.Response:
        try:
            self.fail_next(**(await request.json()))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def control_requests(self, request: web.Request) -> web.Response:
        return web.json_response([r.as_dict() for r in self._requests])

    async def control_calls(self, request: web.Request) -> web.Response:
        """`{"count": N, "script": [...]}`: N calls without WebRTC (CallsPeer.open_bare); their ids."""
        try:
            body = await request.json()
            count, script = int(body.get("count", 1)), body.get("script", [])
            if not isinstance(script, list) or not 1 <= count <= 10_000:
                raise ValueError("count must be 1..10000 and script a list of steps")
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        calls = [self.calls.open_bare(script) for _ in range(count)]
        return web.json_response({"call_ids": [call.id for call in calls]}, status=201)

    async def control_release(self, request: web.Request) -> web.Response:
        """`{"gate": name}`, optionally `"call_ids": [...]`: open that gate of those calls (default: all)."""
        try:
            body = await request.json()
            gate = body["gate"]
            wanted = set(body["call_ids"]) if body.get("call_ids") is not None else None
            if not isinstance(gate, str):
                raise ValueError("gate must be a string")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return web.json_response({"error": f"a gate name and optional call_ids are needed ({exc!r})"}, status=400)
        released = 0
        for call in list(self.calls.calls):
            if wanted is None or call.id in wanted:
                await call._release(gate)
                released += 1
        return web.json_response({"released": released})

    async def control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


class RealtimeStandIn(StandIn):
    """
    The stand-in served from a background thread with its own event loop:

        with RealtimeStandIn() as standin:      # port 0: a free port
            settings.OPENAI_BASE_URL = standin.url
            standin.fail_next(429)
            ...
            standin.requests[-1].json
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, host: str = "127.0.0.1", port: int = 0, **kwargs):
        super().__init__(api_key, **kwargs)
        self.host, self.port = host, port
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OPENAI_BASE_URL that points at this stand-in."""
        return f"{self.origin}/v1"

    async def _start_site(self) -> None:
        # handler_cancellation: a client that gives up (a timeout test) ends its slow request.
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "RealtimeStandIn":
        ready = threading.Event()
        error: list[BaseException] = []

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._start_site())
            except BaseException as exc:  # report to the starting thread
                error.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._runner.cleanup())
            self.loop.close()

        self._thread = threading.Thread(target=run, name="realtime-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        if self.loop and self._thread and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "RealtimeStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
