"""
Who makes the call (REALTIME_CONNECT), end to end in the browser: in server mode the server
posts the page's offer to OpenAI with the real key and no key reaches the page; in browser mode
the page calls OpenAI with the ephemeral key it was handed, and only with that one. In both, the
server's witness attaches once to the call's sideband (with the real key) and the lines it saw
end up `verified`.
"""

import re
import time
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import Error as PlaywrightError

from conversations.models import RealtimeCall, Utterance
from tests.realtime_standin import scripts
from tests.support.browser import (
    assert_journal_complete,
    conversation_of,
    expect_all_saved,
    expect_lines,
    lines,
    start,
    stored_lines,
)

pytestmark = pytest.mark.django_db(transaction=True)

TWO_TURNS = [
    ("user", "Question number 1, please?", "completed"),
    ("assistant", "Here is answer number 1.", "completed"),
    ("user", "Question number 2, please?", "completed"),
    ("assistant", "Here is answer number 2.", "completed"),
]
# Turn 1 plays as soon as the data channel opens, racing the witness's attach (it reaches the
# sideband only once the call id is known and its supervisor has claimed the call): the stand-in
# delivers to a sideband only what it sends after the attach, so turn 1 may or may not be seen by
# the witness, and nothing is asserted about it. Turn 2 waits for the attach: its lines must be.
WITNESSED_SCRIPT = scripts.conversation(1) + [{"gate": "attached"}] + scripts.conversation(1, first=2)
TURN_2 = ["item_user_2", "item_reply_2"]
SIDEBAND = "/v1/realtime"
# An OpenAI key of either kind: a standard one (sk-…, the stand-in's too) or an ephemeral one (ek_…).
ANY_KEY = re.compile(r"\b(?:sk-|ek_)[A-Za-z0-9]")


class Traffic:
    """Everything that crossed the page's network: its requests (headers, bodies), the answers
    (headers, bodies) and the frames of its WebSockets, both ways."""

    def __init__(self, page):
        self.requests, self.responses, self.frames = [], [], []
        # Playwright wants functions as handlers, not bound built-ins like list.append.
        page.on("request", lambda request: self.requests.append(request))
        page.on("response", lambda response: self.responses.append(response))
        page.on("websocket", self._socket)

    def _socket(self, socket):
        socket.on("framereceived", lambda payload: self.frames.append(str(payload)))
        socket.on("framesent", lambda payload: self.frames.append(str(payload)))

    def texts(self) -> list[str]:
        texts = list(self.frames)
        for request in self.requests:
            texts += [request.url, str(request.all_headers()), request.post_data or ""]
        for response in self.responses:
            texts.append(str(response.all_headers()))
            try:
                texts.append(response.text())
            except (PlaywrightError, UnicodeDecodeError):  # a redirect or a binary body has no text
                pass
        return texts


def attaches(standin, call) -> list:
    """The sideband attaches the stand-in received for this call."""
    return [r for r in standin.requests if (r.method, r.path) == ("GET", SIDEBAND)
            and parse_qs(r.query).get("call_id") == [call.id]]


def wait_for_attach(call, timeout: float = 10.0) -> None:
    """Until a sideband is attached to the call (from then on it gets every event sent)."""
    deadline = time.monotonic() + timeout
    while not call.sidebands:
        assert time.monotonic() < deadline, f"no witness attached to {call.id}"
        time.sleep(0.05)


def wait_verified(conversation, item_ids: list[str], timeout: float = 10.0) -> dict[str, bool]:
    """Poll the database until these lines are verified (the witness journals on its own
    schedule); item id -> verified, as last seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = dict(Utterance.objects.filter(conversation=conversation, item_id__in=item_ids)
                    .values_list("item_id", "verified"))
        if (len(seen) == len(item_ids) and all(seen.values())) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def assert_witnessed_once(standin, call, conversation) -> None:
    """Turn 2 (sent after the attach) verified, and exactly one attach, with the real key and
    from the server (no Origin), even after a scan of the witness supervisor more (2 s)."""
    assert wait_verified(conversation, TURN_2) == dict.fromkeys(TURN_2, True)
    time.sleep(2.5)
    [attach] = attaches(standin, call)
    assert attach.headers["Authorization"] == f"Bearer {standin.api_key}"
    assert "Origin" not in attach.headers
    assert RealtimeCall.objects.get(call_id=call.id).witness_state == RealtimeCall.WitnessState.ATTACHED


def page_state(page) -> str:
    """The DOM and the page's storage, as text."""
    return page.content() + page.evaluate("JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")


def test_server_mode_makes_the_call_with_the_real_key_and_no_key_reaches_the_page(
    server_mode_chat_page, server_mode_server, server_mode_user, standin
):
    page, user = server_mode_chat_page, server_mode_user
    traffic = Traffic(page)
    standin.calls.script_next(WITNESSED_SCRIPT)
    start(page)
    call = standin.calls.wait_for_call()
    wait_for_attach(call)
    # Turn 2 at once: the witness may store it before the page's outbox delivers turn 1; the
    # lines are still stored in the order said (previous_item_id, conversations/transcript/order.py).
    call.release("attached")
    call.wait_finished()

    expect_lines(page, 4)
    assert [tuple(line) for line in lines(page)] == TWO_TURNS
    expect_all_saved(page)
    conversation = conversation_of(user)
    assert stored_lines(conversation) == TWO_TURNS
    assert_journal_complete(conversation, [call])

    # The server's witness saw the lines of the turn played after it attached, and attached once.
    assert_witnessed_once(standin, call, conversation)

    # The stand-in saw one call, made with the unified interface and the real key, and no key minted.
    made_calls = [r for r in standin.requests if r.path != SIDEBAND]
    assert [(r.method, r.path) for r in made_calls] == [("POST", "/v1/realtime/calls")]
    made = made_calls[0]
    assert made.headers["Authorization"] == f"Bearer {standin.api_key}"
    assert made.headers["Content-Type"].startswith("multipart/form-data")
    assert "Origin" not in made.headers  # the server's request, not the page's
    assert call.unified and standin.issued == {}
    # The call id is the server's own knowledge.
    assert list(RealtimeCall.objects.values_list("call_id", "conversation", "source")) == [
        (call.id, conversation.pk, "server")
    ]

    # The page asked our server for the call, never for a key, and never spoke HTTP to OpenAI.
    api = [r.url.removeprefix(server_mode_server.url) for r in traffic.requests if "/api/" in r.url]
    assert api == ["/api/realtime/calls"]
    assert not [r.url for r in traffic.requests if r.url.startswith(standin.origin)]
    # No key of either kind, anywhere the page could see one.
    seen = traffic.texts() + [page_state(page)]
    assert traffic.responses and traffic.frames
    assert [text for text in seen if ANY_KEY.search(text) or standin.api_key in text] == []
    assert page.errors == []


def test_browser_mode_calls_with_the_ephemeral_key_only_and_reports_the_call(chat_page, user, standin):
    page = chat_page
    traffic = Traffic(page)
    standin.calls.script_next(WITNESSED_SCRIPT)
    start(page)
    call = standin.calls.wait_for_call()
    wait_for_attach(call)  # the page reported the call id; the server's witness took it from there
    call.release("attached")  # at once (see the server-mode test)
    call.wait_finished()
    expect_lines(page, 4)
    assert [tuple(line) for line in lines(page)] == TWO_TURNS
    expect_all_saved(page)
    conversation = conversation_of(user)
    assert stored_lines(conversation) == TWO_TURNS
    assert_witnessed_once(standin, call, conversation)

    # The server minted one key with the real one; the page made the call with that key alone.
    [ephemeral] = standin.issued
    keys = {(r.method, r.path, "Origin" in r.headers, r.headers.get("Authorization")) for r in standin.requests}
    assert keys == {
        ("POST", "/v1/realtime/client_secrets", False, f"Bearer {standin.api_key}"),
        ("POST", "/v1/realtime/calls", True, f"Bearer {ephemeral}"),
        ("GET", SIDEBAND, False, f"Bearer {standin.api_key}"),  # the witness, from the server
    }
    assert not call.unified
    assert not [r for r in standin.requests if "Origin" in r.headers and standin.api_key in r.text + str(r.headers)]
    # The call id the stand-in issued, as the page reported it: stored, but only as reported.
    assert list(RealtimeCall.objects.values_list("call_id", "conversation", "source")) == [
        (call.id, conversation.pk, "browser")
    ]
    # The ephemeral key reaches the page (that is browser mode); the real key never does.
    seen = traffic.texts() + [page_state(page)]
    assert any(ephemeral in text for text in seen)
    assert [text for text in seen if standin.api_key in text or re.search(r"\bsk-[A-Za-z0-9]", text)] == []
    assert page.errors == []
