"""Talking to the servers of a cluster test (tests/support/processes.py: two_servers) as a page
does: signed in through the real log-in form, keys minted, transcript sockets over real WebSockets."""

import json
from contextlib import asynccontextmanager

import aiohttp
import httpx

from tests.support.factories import PASSWORD

TIMEOUT = 10


def http(server, cookies=None) -> httpx.AsyncClient:
    """A client of one server that sends the session cookies it is given, and no others.
    (Cookies do not tell ports apart: a shared jar would blur which server set what.)"""
    client = httpx.AsyncClient(base_url=server.url, headers={"Origin": server.url}, timeout=TIMEOUT)
    for name, value in (cookies or {}).items():
        client.cookies.set(name, value, domain="127.0.0.1")
    return client


async def log_in(server, username) -> dict:
    """Sign in through the real log-in form of `server`; its session and CSRF cookies."""
    async with http(server) as client:
        await client.get("/accounts/login/")
        token = client.cookies["csrftoken"]
        form = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
        response = await client.post("/accounts/login/", data=form)
        assert response.status_code == 302, response.text
        return {"sessionid": client.cookies["sessionid"], "csrftoken": client.cookies["csrftoken"]}


async def mint(server, cookies) -> httpx.Response:
    async with http(server, cookies) as client:
        return await client.post(
            "/api/realtime/sessions", json={}, headers={"X-CSRFToken": cookies["csrftoken"]}
        )


async def receive(ws, timeout: float = TIMEOUT) -> dict:
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


@asynccontextmanager
async def a_call_seen_by_both(a, b, standin, username="alice"):
    """A page signed in on server `a` makes a call (the stand-in's script waits at "never"),
    reports it on its socket to `a` (bound), and has a second socket on `b` (a second tab, or a
    reconnect through the load balancer). Yields (minted session, the stand-in's call, socket on a,
    socket on b); closing the sockets is the caller's (a test may have killed a server)."""
    from tests.realtime_standin.clients import BrowserPeer

    cookies = await log_in(a, username)
    minted = (await mint(a, cookies)).json()
    standin.calls.script_next([{"gate": "never"}])
    async with BrowserPeer() as browser, aiohttp.ClientSession() as session:
        answer = await browser.call(standin.url, minted["client_secret"])
        assert answer.status == 201, answer.body
        call = standin.calls.find(answer.call_id)
        headers = {"Origin": a.url, "Cookie": f"sessionid={cookies['sessionid']}"}
        on_a = await session.ws_connect(a.ws_url + minted["socket_url"], headers=headers)
        assert (await receive(on_a))["type"] == "ready"
        await on_a.send_str(json.dumps({"type": "call", "call_id": answer.call_id}))
        assert (await receive(on_a))["status"] == "bound"
        on_b = await session.ws_connect(b.ws_url + minted["socket_url"], headers={**headers, "Origin": b.url})
        assert (await receive(on_b))["type"] == "ready"
        yield minted, call, on_a, on_b
