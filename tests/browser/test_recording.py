"""
Recordings in the browser (issue 16): the voice page mixes the fake microphone and the stand-in's
audio track, records them in chunks and uploads each as it is produced; the transcript page plays
the result beside the lines. RECORDINGS=opt-in (the default): the user's "Record audio" switch.
"""

import time

import pytest
from playwright.sync_api import expect

from accounts.models import Preferences
from conversations.models import Recording, RecordingChunk
from tests.realtime_standin import scripts
from tests.support.browser import conversation_of, expect_all_saved, expect_lines, expect_phase, start
from tests.support.processes import ARTIFACTS

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = [{"loop": [{"wait": "response.create"}, {"reply": {}}]}]
CHUNK_S = 5.0  # RECORDING_CHUNK_MS of the test server (the default)

# Chunks the page still keeps (not yet acknowledged by the server), from its IndexedDB.
STORED_CHUNKS = """() => new Promise((resolve) => {
    const open = indexedDB.open("voice-recordings", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("chunks");
    open.onsuccess = () => {
        const count = open.result.transaction("chunks").objectStore("chunks").count();
        count.onsuccess = () => { open.result.close(); resolve(count.result); };
    };
})"""

# The recording as the transcript page's player gets it, decoded by the browser: its duration
# (MediaRecorder's WebM has no duration header, decoding reads it all) and its loudest sample.
DECODE = """async (url) => {
    const bytes = await (await fetch(url)).arrayBuffer();
    const audio = await new OfflineAudioContext(1, 1, 48000).decodeAudioData(bytes);
    const samples = audio.getChannelData(0);
    let peak = 0;
    for (let i = 0; i < samples.length; i += 7) peak = Math.max(peak, Math.abs(samples[i]));
    return { duration: audio.duration, peak };
}"""


def turn_on_recording(page):
    switch = page.get_by_role("switch", name="Record audio")
    expect(switch).not_to_be_checked()
    with page.expect_response("**/api/preferences/record-audio") as saved:
        switch.check()
    assert saved.value.status == 200


def wait_until_uploaded(page, timeout=20.0):
    """Until the page keeps no chunk (twice, a second apart: the last one comes after Stop)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        assert time.monotonic() < deadline, f"{page.evaluate(STORED_CHUNKS)} chunks never uploaded"
        quiet = quiet + 1 if page.evaluate(STORED_CHUNKS) == 0 else 0
        page.wait_for_timeout(1000)


def wait_for_chunks(conversation_filter, count, timeout=20.0):
    deadline = time.monotonic() + timeout
    while RecordingChunk.objects.filter(**conversation_filter).count() < count:
        assert time.monotonic() < deadline, "the chunks did not arrive"
        time.sleep(0.2)


def test_a_recorded_session_plays_back_beside_its_transcript(chat_page, standin, user):
    page = chat_page
    turn_on_recording(page)
    standin.calls.script_next(ANSWERS)
    start(page)
    indicator = page.locator("#recording-indicator")
    expect(indicator).to_be_visible()
    began = time.monotonic()
    expect(indicator).to_contain_text("Recording")
    expect(page.get_by_role("switch", name="Record audio")).to_be_disabled()  # for the next session

    # Two typed turns, a few seconds into the session: lines to seek to, well inside the recording.
    page.wait_for_timeout(3000)
    page.get_by_label("Type a message to the assistant").fill("First question, three seconds in.")
    page.keyboard.press("Enter")
    expect_lines(page, 2)
    page.wait_for_timeout(4000)
    page.get_by_label("Type a message to the assistant").fill("Second question, seven seconds in.")
    page.keyboard.press("Enter")
    expect_lines(page, 4)
    page.wait_for_timeout(2500)
    page.get_by_role("button", name="Stop").click()
    session_s = time.monotonic() - began
    expect_phase(page, "ended")
    expect(indicator).to_be_hidden()
    expect_all_saved(page)
    wait_until_uploaded(page)

    conversation = conversation_of(user)
    recording = Recording.objects.get(conversation=conversation)
    assert recording.segment == 1 and recording.mime_type.startswith("audio/webm")
    assert list(recording.chunk_files.order_by("index").values_list("index", flat=True)) == list(
        range(recording.chunks)
    )
    assert Preferences.objects.get(user=user).record_audio is True  # remembered

    page.goto(page.url.split("/chat/")[0] + conversation.get_absolute_url())
    audio = page.locator("[data-recordings] audio")
    expect(audio).to_have_count(1)
    decoded = page.evaluate(DECODE, audio.get_attribute("src"))
    # The whole session is in the file, and the header's durations added up to the same.
    assert abs(decoded["duration"] - session_s) < 1.0, (decoded, session_s)
    assert abs(recording.duration_ms / 1000 - session_s) < 1.0, (recording.duration_ms, session_s)
    assert decoded["peak"] > 0.05, "the recording is silent"

    # A click on the second question plays the recording from when it was said.
    line = page.locator(".transcript .line").nth(2)
    expect(line).to_contain_text("Second question")
    said_at = page.evaluate(
        "([line, fig]) => (Date.parse(line.dataset.at) - Date.parse(fig.dataset.startedAt)) / 1000",
        [line.element_handle(), page.locator("[data-recordings] [data-started-at]").element_handle()],
    )
    assert 5.0 < said_at < session_s
    # Which lines are marked as heard, in turn (the answer follows the question within a second).
    page.evaluate("""() => {
        window.heard = [];
        new MutationObserver(() => {
            const line = document.querySelector(".transcript .is-heard");
            if (line && window.heard.at(-1) !== line.dataset.itemId) window.heard.push(line.dataset.itemId);
        }).observe(document.querySelector(".transcript"), { subtree: true, attributeFilter: ["class"] });
    }""")
    line.click()
    page.wait_for_function("() => !document.querySelector('[data-recordings] audio').paused")
    position = audio.evaluate("a => a.currentTime")
    assert said_at - 0.1 <= position < said_at + 1.0, (position, said_at)
    # Playing on, the line heard is the one clicked, then the assistant's answer to it.
    answer = page.locator(".transcript .line").nth(3)
    expect(answer).to_have_class("line line-assistant is-heard", timeout=5000)
    assert page.evaluate("window.heard") == [
        line.get_attribute("data-item-id"),
        answer.get_attribute("data-item-id"),
    ]
    expect(page.locator(".transcript .is-heard")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "recording-player.png"), full_page=True)
    assert page.errors == []


def test_a_reload_mid_session_loses_at_most_the_chunk_being_recorded(chat_page, standin, user):
    page = chat_page
    turn_on_recording(page)
    standin.calls.script_next(ANSWERS)
    start(page)
    expect(page.locator("#recording-indicator")).to_be_visible()
    began = time.monotonic()
    conversation = conversation_of(user)
    wait_for_chunks({"recording__conversation": conversation}, 1)

    # The network fails: the next chunks stay in the page (IndexedDB), unsent.
    page.route("**/recordings/*/chunks/*", lambda route: route.abort())
    deadline = time.monotonic() + 20
    while page.evaluate(STORED_CHUNKS) < 2:
        assert time.monotonic() < deadline, "the page did not keep the chunks it could not send"
        page.wait_for_timeout(250)
    recorded_s = time.monotonic() - began
    page.reload()  # the session is gone, and so is the chunk being recorded
    page.get_by_role("button", name="Start").wait_for()
    page.unroute("**/recordings/*/chunks/*")
    wait_until_uploaded(page, timeout=60.0)  # the reloaded page sent what the first one kept

    recording = Recording.objects.get(conversation=conversation)
    kept = recording.duration_ms / 1000
    assert recording.chunks >= 3
    assert list(recording.chunk_files.order_by("index").values_list("index", flat=True)) == list(
        range(recording.chunks)
    )
    assert recorded_s - CHUNK_S - 0.5 <= kept <= recorded_s + 0.5, (kept, recorded_s)
    page.goto(page.url.split("/chat/")[0] + conversation.get_absolute_url())
    decoded = page.evaluate(DECODE, page.locator("[data-recordings] audio").get_attribute("src"))
    assert abs(decoded["duration"] - kept) < 1.0, (decoded, kept)
    assert page.errors == []


def test_without_record_audio_nothing_is_recorded(chat_page, standin, user):
    page = chat_page
    puts = []
    page.on("request", lambda request: request.method == "PUT" and puts.append(request.url))
    standin.calls.script_next(ANSWERS)
    expect(page.get_by_role("switch", name="Record audio")).not_to_be_checked()
    start(page)
    page.get_by_label("Type a message to the assistant").fill("Do not record this.")
    page.keyboard.press("Enter")
    expect_lines(page, 2)
    page.wait_for_timeout(CHUNK_S * 1000 + 1000)  # more than a chunk's time
    expect(page.locator("#recording-indicator")).to_be_hidden()
    page.get_by_role("button", name="Stop").click()
    expect_phase(page, "ended")
    assert puts == []
    assert page.evaluate(STORED_CHUNKS) == 0
    conversation = conversation_of(user)
    assert not Recording.objects.filter(conversation=conversation).exists()
    page.goto(page.url.split("/chat/")[0] + conversation.get_absolute_url())
    expect(page.locator(".transcript .line")).to_have_count(2)
    assert page.locator("[data-recordings] audio").count() == 0
    assert page.errors == []


def test_a_conversation_over_two_sessions_has_two_recordings_played_in_order(chat_page, standin, user):
    page = chat_page
    turn_on_recording(page)
    standin.calls.script_next(
        [{"sleep": 2}, *scripts.conversation(1), {"sleep": 3}, *scripts.session_expired()]
    )
    standin.calls.script_next([{"sleep": 3}, *scripts.conversation(1, first=2), *ANSWERS])
    start(page)
    expect_phase(page, "lost")
    expect(page.locator("#recording-indicator")).to_be_hidden()  # that session's recording is over
    page.get_by_role("button", name="Continue").click()
    expect_phase(page, "live")
    expect(page.locator("#recording-indicator")).to_be_visible()
    expect_lines(page, 4)
    page.wait_for_timeout(2000)
    page.get_by_role("button", name="Stop").click()
    expect_phase(page, "ended")
    expect_all_saved(page)
    wait_until_uploaded(page)

    conversation = conversation_of(user)
    assert list(
        Recording.objects.filter(conversation=conversation)
        .order_by("segment")
        .values_list("segment", flat=True)
    ) == [1, 2]
    page.goto(page.url.split("/chat/")[0] + conversation.get_absolute_url())
    parts = page.locator("[data-recordings] audio")
    expect(parts).to_have_count(2)

    # A line of the second session plays the second recording, from when it was said.
    line = page.locator(".transcript .line").nth(2)
    expect(line).to_contain_text("Question number 2")
    said_at = page.evaluate(
        "([line, fig]) => (Date.parse(line.dataset.at) - Date.parse(fig.dataset.startedAt)) / 1000",
        [line.element_handle(), page.locator("[data-recordings] [data-started-at]").nth(1).element_handle()],
    )
    assert said_at > 2.0
    line.click()
    page.wait_for_function("() => !document.querySelectorAll('[data-recordings] audio')[1].paused")
    assert parts.nth(0).evaluate("a => a.paused")
    position = parts.nth(1).evaluate("a => a.currentTime")
    assert said_at - 0.1 <= position < said_at + 1.0, (position, said_at)

    # The first recording, played to its end, goes on with the second from its start.
    first_s = (
        int(page.locator("[data-recordings] [data-started-at]").nth(0).get_attribute("data-duration-ms"))
        / 1000
    )
    parts.nth(1).evaluate("a => a.pause()")
    parts.nth(0).evaluate("(a, at) => { a.currentTime = at; return a.play(); }", first_s - 0.5)
    page.wait_for_function(
        "() => { const [a, b] = document.querySelectorAll('[data-recordings] audio'); return a.ended && !b.paused; }",
        timeout=10_000,
    )
    assert parts.nth(1).evaluate("a => a.currentTime") < 2.0
    assert page.errors == []


def test_in_the_admin_the_sessions_recordings_play_in_order(daphne_server, user, page):
    """The admin's change page has the same players and script: no transcript list beside them
    there, but the parts still play one after the other."""
    from tests.support.browser import sign_in
    from tests.support.factories import make_conversation, make_superuser
    from tests.support.recordings import record

    conversation = make_conversation(user, segments=2)
    for segment in (1, 2):
        record(conversation, segment)
    sign_in(page.context, make_superuser(f"staff{user.pk}"), daphne_server.url)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(daphne_server.url + f"/admin/conversations/conversation/{conversation.pk}/change/")
    parts = page.locator("[data-recordings] audio")
    expect(parts).to_have_count(2)
    parts.nth(0).evaluate("a => a.play().then(() => { a.currentTime = 3.5; })")  # near its end (4 s)
    page.wait_for_function(
        "() => { const [a, b] = document.querySelectorAll('[data-recordings] audio'); return a.ended && !b.paused; }",
        timeout=10_000,
    )
    assert errors == []


def test_a_refused_recording_stops_and_says_why_while_the_session_goes_on(chat_page, standin, user):
    page = chat_page
    turn_on_recording(page)
    refusal = {
        "error": {"code": "recording_too_large", "message": "This conversation holds all the audio it may."}
    }
    page.route(
        "**/recordings/*/chunks/*",
        lambda route: route.fulfill(status=413, json=refusal),
    )
    standin.calls.script_next(ANSWERS)
    start(page)
    expect(page.locator("#recording-indicator")).to_be_visible()
    # The first chunk is refused: recording stops, in words, and the session is still live.
    alert = page.locator("#voice-alert")
    expect(alert).to_contain_text("Recording stopped", timeout=CHUNK_S * 1000 + 5000)
    expect(alert).to_contain_text("This conversation holds all the audio it may.")
    expect(alert).to_contain_text("The session goes on without recording.")
    expect(page.locator("#recording-indicator")).to_be_hidden()
    expect_phase(page, "live")
    page.get_by_label("Type a message to the assistant").fill("Still there?")
    page.keyboard.press("Enter")
    expect_lines(page, 2)
    assert page.evaluate(STORED_CHUNKS) == 0  # nothing kept to resend: it can never be stored
    assert page.errors == []
