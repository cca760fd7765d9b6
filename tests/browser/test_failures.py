"""Every way a start can fail shows its own message (screenshots in test-artifacts/)."""

import json
import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation
from tests.realtime_standin import scripts
from tests.support.browser import expect_alert, expect_lines, expect_phase, press_start, sign_in, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_microphone_denied(browser, browser_context_args, user, daphne_server, standin, artifacts):
    context = browser.new_context(**{**browser_context_args, "permissions": []})
    try:
        sign_in(context, user, daphne_server.url)
        page = context.new_page()
        page.goto(daphne_server.url + "/chat/")
        press_start(page)
        alert = expect_alert(page, "Microphone blocked")
        expect(alert).to_contain_text("Allow microphone access")
        expect_phase(page, "idle")
        expect(page.get_by_role("button", name="Start")).to_be_enabled()
        page.screenshot(path=str(artifacts / "error-microphone-denied.png"))
        # Nothing was asked of the server: no key, no empty conversation.
        assert not Conversation.objects.filter(user=user).exists()
        assert standin.issued == {}
    finally:
        context.close()


def test_server_without_openai_key(chat_page, artifacts):
    page = chat_page
    page.route("**/api/realtime/sessions", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"error": {"code": "not_configured", "message": "OpenAI is not configured on this server."}}),
    ))
    press_start(page)
    expect(expect_alert(page, "Voice conversations are not set up on this server.")).to_contain_text("OPENAI_API_KEY")
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    page.screenshot(path=str(artifacts / "error-503-not-configured.png"))


def test_rate_limited_says_how_long_to_wait(chat_page, user, artifacts):
    page = chat_page
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    granted = 0
    while granted < 50:  # use up this user's keys (5 a minute by default)
        response = page.request.post(page.url.replace("/chat/", "/api/realtime/sessions"),
                                     headers={"X-CSRFToken": token, "Content-Type": "application/json"}, data="{}")
        if response.status == 429:
            break
        assert response.status == 201, response.text()
        granted += 1
    refusal = response.json()["error"]["message"]
    press_start(page)
    alert = expect_alert(page, "Too many sessions")
    # The server's own words: which limit, and how long to wait (a second or so less by now).
    # (A full window reads "1 minute", a second later "59 seconds".)
    wait = r"\d+ (?:seconds?|minutes?)"
    before, after = re.split(wait, refusal)
    expect(alert).to_contain_text(re.compile(f"{re.escape(before)}{wait}{re.escape(after)}"))
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    page.screenshot(path=str(artifacts / "error-429-rate-limited.png"))


def test_upstream_error_passes_openai_message_on(chat_page, standin, artifacts):
    page = chat_page
    standin.fail_next(500)
    press_start(page)
    alert = expect_alert(page, "Could not start a session")
    expect(alert).to_contain_text("The server had an error while processing your request")
    expect(alert).to_contain_text("try again")
    expect(page.get_by_role("button", name="Start")).to_be_enabled()
    page.screenshot(path=str(artifacts / "error-502-upstream.png"))


def test_failing_calls_shows_openai_message(chat_page, standin, user, artifacts):
    page = chat_page
    standin.fail_next(400, route="calls", code="invalid_offer",
                      message="Invalid SDP offer: the audio section is missing.")
    press_start(page)
    alert = expect_alert(page, "OpenAI refused the connection")
    expect(alert).to_contain_text("Invalid SDP offer: the audio section is missing.")
    expect(alert).to_contain_text("HTTP 400")
    expect_phase(page, "idle")
    page.screenshot(path=str(artifacts / "error-calls-failed.png"))

    # Start again: the conversation the failed attempt created is reused, not left empty.
    standin.calls.script_next(scripts.conversation(1))
    start(page)
    expect_lines(page, 2)
    assert Conversation.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("what", ["channel", "peer"])
def test_connection_lost_offers_to_continue(chat_page, standin, user, artifacts, what):
    page = chat_page
    standin.calls.script_next(scripts.conversation(1) + [{"close": what}])
    standin.calls.script_next(scripts.conversation(1, first=2))
    press_start(page)  # the session may be over before a test could see it live
    expect_lines(page, 2)
    expect_phase(page, "lost")
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    # A peer that hangs up closes the channel too; whichever the browser notices first.
    expect(page.locator("#voice-alert-title")).to_have_text(re.compile("Session closed|Connection lost"))
    page.screenshot(path=str(artifacts / f"error-{what}-closed.png"))

    page.get_by_role("button", name="Continue").click()
    expect_phase(page, "live")
    expect_lines(page, 4)
    assert Conversation.objects.filter(user=user).count() == 1
