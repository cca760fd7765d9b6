"""The stand-in's POST /v1/realtime/calls outside a browser: the checks OpenAI makes, and CORS."""

import asyncio

import httpx
import pytest

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
BODY = {"session": {"type": "realtime", "model": "gpt-realtime-2.1"}}


@pytest.fixture
def key(realtime_standin):
    response = httpx.post(f"{realtime_standin.url}/realtime/client_secrets", json=BODY,
                          headers={"Authorization": f"Bearer {realtime_standin.api_key}"})
    return response.json()["value"]


def call(standin, key, body=OFFER, content_type="application/sdp", **kwargs):
    return httpx.post(f"{standin.url}/realtime/calls", content=body,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": content_type}, **kwargs)


def test_preflight_allows_the_browser_to_post_and_read_location(realtime_standin):
    response = httpx.options(f"{realtime_standin.url}/realtime/calls", headers={
        "Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code == 204
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Expose-Headers"] == "Location"


def test_only_keys_the_stand_in_minted(realtime_standin):
    response = call(realtime_standin, "ek_made_up")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # the page can read why
    assert call(realtime_standin, realtime_standin.api_key).status_code == 401  # not the real key


def test_the_offer_must_be_sdp(realtime_standin, key):
    response = call(realtime_standin, key, body='{"sdp": "v=0"}', content_type="application/json")
    assert response.status_code == 400
    assert "application/sdp" in response.json()["error"]["message"]


def test_no_query_parameters_in_ga(realtime_standin, key):
    response = call(realtime_standin, key, params={"model": "gpt-realtime-2.1"})
    assert response.status_code == 400


def test_failures_can_be_injected_and_carry_cors(realtime_standin, key):
    realtime_standin.fail_next(500, route="calls")
    response = call(realtime_standin, key)
    assert response.status_code == 500
    assert response.json()["error"]["message"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def browser_like_offer() -> str:
    """An offer as the page makes it: audio both ways and the `oai-events` channel."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    async def make():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


def test_a_key_is_good_for_one_call(realtime_standin, key):
    offer = browser_like_offer()
    first = call(realtime_standin, key, body=offer)
    assert first.status_code == 201, first.text
    assert first.headers["Content-Type"].startswith("application/sdp")
    assert first.headers["Location"].startswith("/v1/realtime/calls/rtc_")
    assert realtime_standin.calls.wait_for_call(timeout=5).id == first.headers["Location"].rsplit("/", 1)[1]
    second = call(realtime_standin, key, body=offer)
    assert second.status_code == 401
    assert "already used" in second.json()["error"]["message"]
