"""A voice session in the browser, end to end: the page, WebRTC to the stand-in, the socket, the database."""

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, RealtimeCall
from conversations.realtime import upstream
from tests.realtime_standin import scripts
from tests.support.browser import (
    assert_journal_complete,
    conversation_of,
    expect_alert,
    expect_all_saved,
    expect_lines,
    expect_phase,
    lines,
    press_start,
    start,
    stored_lines,
)

pytestmark = pytest.mark.django_db(transaction=True)

THREE_TURNS = [
    ("user", "Question number 1, please?", "completed"),
    ("assistant", "Here is answer number 1.", "completed"),
    ("user", "Question number 2, please?", "completed"),
    ("assistant", "Here is answer number 2.", "completed"),
    ("user", "", "failed"),
    ("assistant", "Sorry, I did not catch that (3).", "completed"),
]
ANSWERS = [{"loop": [{"wait": "response.create"}, {"reply": {}}]}]


def test_scripted_turns_appear_in_order_in_the_page_and_the_database(chat_page, standin, user):
    page = chat_page
    standin.calls.script_next(scripts.conversation(3))
    start(page)
    call = standin.calls.wait_for_call()
    call.wait_finished()

    expect_lines(page, 6)
    shown = lines(page)
    # The first user transcript arrived after the whole reply: still shown above it.
    assert [(role, status) for role, _, status in shown] == [(role, status) for role, _, status in THREE_TURNS]
    assert [text for _, text, _ in shown][:4] == [text for _, text, _ in THREE_TURNS][:4]
    failed = page.locator("#transcript li").nth(4)
    expect(failed.locator(".line-status")).to_have_text("Transcription failed")
    expect(failed.locator(".line-error")).to_have_text("Audio was unintelligible")

    expect_all_saved(page)
    conversation = conversation_of(user)
    assert stored_lines(conversation) == THREE_TURNS
    assert_journal_complete(conversation, [call])
    # The microphone reached the peer, and the page played the peer's voice.
    assert call.audio_frames > 0
    assert page.evaluate("document.querySelector('audio').srcObject.getAudioTracks().length") == 1
    # Browser mode: the page read the call id from the answer's Location and reported it.
    assert list(RealtimeCall.objects.values_list("call_id", "conversation", "source")) == [
        (call.id, conversation.pk, "browser")
    ]
    assert page.errors == []


def test_stop_ends_the_conversation_and_links_to_it(chat_page, standin, user):
    page = chat_page
    standin.calls.script_next(scripts.conversation(1))
    start(page)
    call = standin.calls.wait_for_call()
    call.wait_finished()
    expect_lines(page, 2)

    page.get_by_role("button", name="Stop").click()
    expect_phase(page, "ended")
    conversation = conversation_of(user)
    link = page.get_by_role("link", name="Open saved conversation")
    expect(link).to_have_attribute("href", conversation.get_absolute_url())
    expect(page.locator("#save-state")).to_have_text("All saved")
    assert call.closed.wait(5), "the peer connection was not closed"
    # `end` is delivered after the last event: the conversation is marked ended.
    page.wait_for_function("() => !Object.keys(localStorage).some(k => k.startsWith('voice.outbox.'))")
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ENDED
    assert conversation.ended_at is not None
    # The microphone is released.
    assert page.evaluate("navigator.mediaDevices && true")
    expect(page.get_by_role("button", name="Start")).to_be_enabled()


def test_typed_message_reaches_the_peer_and_is_answered(chat_page, standin, user):
    page = chat_page
    standin.calls.script_next(ANSWERS)
    start(page)
    call = standin.calls.wait_for_call()

    page.get_by_label("Type a message to the assistant").fill("What is the capital of France?")
    page.keyboard.press("Enter")
    created = call.wait_for("conversation.item.create")[0]
    assert created["item"]["content"] == [{"type": "input_text", "text": "What is the capital of France?"}]
    call.wait_for("response.create")
    assert call.received_types()[-2:] == ["conversation.item.create", "response.create"]

    expect_lines(page, 2)
    expect(page.locator("#transcript li").first).to_contain_text("What is the capital of France?")
    expect(page.locator("#transcript li").first.locator(".line-kind")).to_have_text("Typed")
    expect(page.get_by_label("Type a message to the assistant")).to_have_value("")
    expect_all_saved(page)
    assert stored_lines(conversation_of(user))[0] == ("user", "What is the capital of France?", "completed")


def test_push_to_talk_mid_session(chat_page, standin):
    page = chat_page
    standin.calls.script_next(ANSWERS)
    start(page)
    call = standin.calls.wait_for_call()

    page.get_by_label("Push-to-talk").check()
    update = call.wait_for("session.update")[0]
    assert update["session"]["audio"]["input"]["turn_detection"] is None
    talk = page.get_by_role("button", name="Hold to talk")
    expect(talk).to_be_enabled()
    # Hold the button: clear, (speak), release: commit + response.create.
    talk.hover()
    page.mouse.down()
    call.wait_for("input_audio_buffer.clear")
    expect(talk).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("document.querySelector('audio') && true")
    page.mouse.up()
    call.wait_for("response.create")
    assert call.received_types()[-4:] == ["session.update", "input_audio_buffer.clear", "input_audio_buffer.commit", "response.create"]
    expect_lines(page, 2)

    # The space bar does the same, from anywhere but a text field.
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.down("Space")
    call.wait_for("input_audio_buffer.clear", count=2)
    page.keyboard.up("Space")
    call.wait_for("response.create", count=2)
    assert call.received_types()[-3:] == ["input_audio_buffer.clear", "input_audio_buffer.commit", "response.create"]

    # And back to hands-free, in the same session.
    page.get_by_label("Hands-free").check()
    update = call.wait_for("session.update", count=2)[-1]
    # The server's own setting for the mode, exactly what a new session gets (the page has no copy).
    assert update["session"]["audio"]["input"]["turn_detection"] == upstream.SERVER_VAD_CONFIG
    expect(page.get_by_role("button", name="Hold to talk")).to_be_hidden()


def test_interrupt_cancels_the_reply(chat_page, standin, user):
    page = chat_page
    standin.calls.script_next(scripts.barge_in())
    start(page)
    call = standin.calls.wait_for_call()
    interrupt = page.get_by_role("button", name="Interrupt")
    expect(interrupt).to_be_enabled()
    expect(page.locator("#transcript li")).to_contain_text("Once upon a time")

    interrupt.click()
    call.wait_for("output_audio_buffer.clear")
    assert call.received_types()[-2:] == ["response.cancel", "output_audio_buffer.clear"]
    call.wait_finished()
    expect(page.locator("#transcript li").first).to_have_attribute("data-status", "interrupted")
    expect(page.locator("#transcript li").first.locator(".line-status")).to_have_text("Interrupted")
    expect(interrupt).to_be_disabled()
    expect_all_saved(page)
    assert stored_lines(conversation_of(user)) == [
        ("assistant", "Once upon a time, in a land far away, there lived", "interrupted")
    ]


def test_continue_after_session_expired_uses_the_same_conversation(chat_page, standin, user):
    page = chat_page
    standin.calls.script_next(scripts.conversation(1) + scripts.session_expired())
    standin.calls.script_next(scripts.conversation(1, first=2))
    press_start(page)
    first = standin.calls.wait_for_call()
    first.wait_finished()

    expect_alert(page, "Session time limit reached")
    expect_phase(page, "lost")
    conversation = conversation_of(user)
    with page.expect_request("**/api/realtime/sessions") as request:
        page.get_by_role("button", name="Continue").click()
    assert request.value.post_data_json["conversation"] == str(conversation.uuid)
    expect_phase(page, "live")
    second = standin.calls.wait_for_call(count=2)
    assert second is not first and first.closed.is_set()
    second.wait_finished()

    expect_lines(page, 4)
    expect_all_saved(page)
    assert [text for _, text, _ in stored_lines(conversation)] == [
        "Question number 1, please?", "Here is answer number 1.",
        "Question number 2, please?", "Here is answer number 2.",
    ]
    assert_journal_complete(conversation, [first, second])
    assert Conversation.objects.filter(user=user).count() == 1


def test_before_the_time_limit_the_page_offers_to_continue(daphne_server, user, page, standin):
    from tests.support.browser import sign_in

    page.clock.install()  # the page's clock, so that 55 minutes can pass at once
    sign_in(page.context, user, daphne_server.url)
    page.goto(daphne_server.url + "/chat/")
    standin.calls.script_next(scripts.conversation(1))
    standin.calls.script_next(scripts.conversation(1, first=2))
    start(page)
    first = standin.calls.wait_for_call()
    expect_lines(page, 2)

    page.clock.fast_forward("28:01")  # the last 2 minutes of REALTIME_MAX_SESSION_SECONDS (1800)
    # The installed clock keeps running in real time: a loaded machine may show a second or more later.
    expect(page.locator("#session-clock")).to_have_text(re.compile(r"^28:\d\d$"))
    expect(page.locator("#session-left")).to_have_text(re.compile(r"^1:5\d left$"))
    alert = expect_alert(page, "This session ends soon")
    expect(alert).to_contain_text("30 minutes")
    with page.expect_request("**/api/realtime/sessions") as request:
        alert.get_by_role("button", name="Continue").click()
    assert request.value.post_data_json["conversation"] == str(conversation_of(user).uuid)
    second = standin.calls.wait_for_call(count=2)
    expect_lines(page, 4)
    expect(page.locator("#session-clock")).to_have_text(re.compile(r"^0:0\d$"))
    assert first.closed.wait(5) and not second.closed.is_set()
    page.context.close()
