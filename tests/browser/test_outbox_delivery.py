"""The transcript outbox: nothing lost to a dropped socket, a restarted server or a reload, nothing stored twice."""

import pytest
from playwright.sync_api import expect

from conversations.models import Event, Source
from tests.realtime_standin import scripts
from tests.support.browser import (
    assert_journal_complete,
    conversation_of,
    expect_all_saved,
    expect_lines,
    forwarded,
    start,
    stored_lines,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_server_restart_mid_conversation_loses_nothing_and_duplicates_nothing(chat_page, standin, user, daphne_server, artifacts):
    page = chat_page
    standin.calls.script_next(scripts.conversation(1) + [{"gate": "server-down"}] + scripts.conversation(2, first=2))
    start(page)
    call = standin.calls.wait_for_call()
    expect_lines(page, 2)
    expect_all_saved(page)

    daphne_server.stop()  # the socket drops; the stand-in keeps talking
    save = page.locator("#save-state")
    expect(save).to_have_attribute("data-state", "offline")
    call.release("server-down")
    call.wait_finished()
    expect_lines(page, 6)
    # The page's frames only: the server's witness journals its own stream beside them.
    waiting = len(forwarded(call)) - Event.objects.filter(conversation=conversation_of(user), source=Source.BROWSER).count()
    assert waiting > 0
    expect(save).to_contain_text(f"{waiting} waiting")
    page.screenshot(path=str(artifacts / "socket-offline.png"))

    daphne_server.start()
    expect_all_saved(page, timeout=30_000)  # the backoff caps the wait at 15 s
    conversation = conversation_of(user)
    assert_journal_complete(conversation, [call])
    assert [role for role, _, _ in stored_lines(conversation)] == ["user", "assistant"] * 3
    assert stored_lines(conversation)[2:4] == [
        ("user", "Question number 2, please?", "completed"),
        ("assistant", "Here is answer number 2.", "completed"),
    ]
    assert page.errors == []


def test_unacked_frames_are_delivered_after_a_reload(chat_page, standin, user, daphne_server):
    page = chat_page
    cut = {"on": True}

    def socket(ws):
        # While `cut`, the socket "opens" but the server never hears of it: no ready, no acks.
        if not cut["on"]:
            ws.connect_to_server()

    page.route_web_socket("**/ws/conversations/**", socket)
    standin.calls.script_next(scripts.conversation(2))
    start(page)
    call = standin.calls.wait_for_call()
    call.wait_finished()
    expect_lines(page, 4)
    expect(page.locator("#save-state")).to_contain_text(f"{len(forwarded(call))} waiting")
    conversation = conversation_of(user)
    assert not Event.objects.filter(conversation=conversation, source=Source.BROWSER).exists()

    cut["on"] = False
    page.reload()
    expect_all_saved(page)
    assert_journal_complete(conversation, [call])
    assert stored_lines(conversation) == [
        ("user", "Question number 1, please?", "completed"),
        ("assistant", "Here is answer number 1.", "completed"),
        ("user", "Question number 2, please?", "completed"),
        ("assistant", "Here is answer number 2.", "completed"),
    ]
    # Delivered once: the outbox keeps only its sequence bookkeeping, and no frame waits.
    assert page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('voice.outbox.'))"
        ".map(k => JSON.parse(localStorage[k]).frames.length)"
    ) in ([], [0])
