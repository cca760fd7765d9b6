"""Preferences in the browser: saved on their page, the voice page starts from them, the session uses them."""

import pytest
from playwright.sync_api import expect

from accounts.models import Preferences
from tests.realtime_standin import scripts
from tests.support.browser import conversation_of, sign_in, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_voice_page_starts_from_the_saved_voice_mode_and_language(daphne_server, user, page, standin):
    sign_in(page.context, user, daphne_server.url)
    page.set_default_timeout(10_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Reached from the header's user menu.
    page.goto(daphne_server.url + "/chat/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Preferences").click()
    expect(page).to_have_url(daphne_server.url + "/accounts/preferences/")
    page.get_by_label("Voice").select_option("cedar")
    page.get_by_label("Push-to-talk: hold a button while you speak").check()
    page.get_by_label("Language").select_option(label="French (français)")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status").filter(has_text="Your preferences have been saved")).to_be_visible()
    saved = Preferences.objects.get(user=user)
    assert (saved.voice, saved.turn_detection, saved.language) == ("cedar", "manual", "fr")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Talk").click()
    expect(page.locator("#voice-select")).to_have_value("cedar")
    expect(page.locator("input[name=mode][value=push-to-talk]")).to_be_checked()
    expect(page.locator("#voice")).to_have_attribute("data-mode", "push-to-talk")
    expect(page.locator("#ptt")).to_be_visible()
    expect(page.locator("#detection-field")).to_be_hidden()
    expect(page.locator("#language-name")).to_have_text("French (français)")

    # The session the page starts is configured from them.
    standin.calls.script_next(scripts.conversation(1))
    start(page)
    call = standin.calls.wait_for_call()
    assert call.session["audio"]["output"]["voice"] == "cedar"
    assert call.session["audio"]["input"]["turn_detection"] is None
    assert call.session["audio"]["input"]["transcription"]["language"] == "fr"
    assert call.session["instructions"].endswith("Always answer in French.")
    assert conversation_of(user).language == "fr"
    page.get_by_role("button", name="Stop").click()
    assert errors == []
