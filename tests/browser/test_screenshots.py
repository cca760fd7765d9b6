"""The page in use, photographed for people to look at (test-artifacts/chat-*.png)."""

import pytest
from playwright.sync_api import expect

from tests.realtime_standin import scripts
from tests.support.browser import expect_lines, sign_in, start

pytestmark = pytest.mark.django_db(transaction=True)

MID_REPLY = (
    scripts.conversation(2)
    + scripts.typed_user_item("item_typed", "Could you summarise that in one sentence?")
    + scripts.assistant_start("item_reply_x", "resp_x")
    + scripts.assistant_deltas("item_reply_x", "resp_x", "In short: both answers say the same thing, and")
    + [{"gate": "photographed"}]
)


@pytest.mark.parametrize(
    "name, options",
    [
        ("desktop", {"viewport": {"width": 1280, "height": 860}}),
        ("desktop-dark", {"viewport": {"width": 1280, "height": 860}, "color_scheme": "dark"}),
        ("mobile", {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}),
    ],
)
def test_page_in_use(browser, browser_context_args, user, daphne_server, standin, artifacts, name, options):
    context = browser.new_context(**{**browser_context_args, **options})
    try:
        sign_in(context, user, daphne_server.url)
        page = context.new_page()
        page.goto(daphne_server.url + "/chat/")
        page.screenshot(path=str(artifacts / f"chat-{name}-idle.png"), full_page=True)
        standin.calls.script_next(MID_REPLY)
        start(page)
        expect_lines(page, 6)
        expect(page.locator("#model-note")).to_have_text("speaking")
        expect(page.locator("#save-state")).to_have_text("All saved")
        # Let the waveforms fill with a few frames of sound before taking the picture.
        page.wait_for_timeout(400)
        page.screenshot(path=str(artifacts / f"chat-{name}-live.png"), full_page=True)
        call = standin.calls.wait_for_call()
        call.release("photographed")
        # Push-to-talk, held down.
        page.get_by_label("Push-to-talk").check()
        call.wait_for("session.update")
        talk = page.get_by_role("button", name="Hold to talk")
        talk.hover()
        page.mouse.down()
        call.wait_for("input_audio_buffer.clear")
        page.screenshot(path=str(artifacts / f"chat-{name}-push-to-talk.png"), full_page=True)
        page.mouse.up()
    finally:
        context.close()
