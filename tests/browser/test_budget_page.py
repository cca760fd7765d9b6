"""The voice page and the daily budget: the meter shows the day's spend against the budget, and a
refusal once it is used says so in words, with the time it frees up at in the browser's clock."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import ResponseUsage
from tests.realtime_standin import scripts
from tests.support.browser import expect_alert, expect_lines, expect_phase, press_start, sign_in, start
from tests.support.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)

ZONE = "Asia/Kolkata"  # UTC+5:30: a time copied from the server's UTC message would be wrong


def test_the_meter_and_the_budget_refusal(
    browser, browser_context_args, user, daphne_server, standin, artifacts
):  # fmt: skip
    context = browser.new_context(**browser_context_args, timezone_id=ZONE)
    try:
        sign_in(context, user, daphne_server.url)
        page = context.new_page()
        page.goto(daphne_server.url + "/chat/")
        meter = page.locator("#budget-meter")
        expect(meter).to_be_visible()
        expect(meter).to_contain_text("Voice budget today: $0.00 of $5.00")

        # A session: its responses' usage reaches the meter after each response.done.
        standin.calls.script_next(scripts.conversation(1))
        start(page)
        standin.calls.wait_for_call().wait_finished()
        expect_lines(page, 2)
        expect(meter).to_contain_text("Voice budget today: $0.01 of $5.00")
        page.get_by_role("button", name="Stop").click()
        expect_phase(page, "ended")

        # Earlier today the user spent the rest of the budget.
        spent_at = timezone.now() - timedelta(hours=3)
        ResponseUsage.objects.create(
            conversation=make_conversation(user), response_id="resp_earlier", created_at=spent_at, source="server",
            output_tokens=5 * 15_625, output_audio_tokens=5 * 15_625,  # $5 at $64 per million
        )  # fmt: skip
        issued = len(standin.issued)
        press_start(page)
        alert = expect_alert(page, "Today's voice budget is used")
        frees = (spent_at + timedelta(hours=24)).astimezone(ZoneInfo(ZONE))
        frees = frees.replace(second=0, microsecond=0) + timedelta(minutes=1)  # rounded up
        expect(alert).to_contain_text(
            f"You have used today's voice budget ($5.00). It frees up at {frees:%H:%M}."
        )
        expect(alert).not_to_contain_text("UTC")
        expect(alert).not_to_contain_text("budget_exhausted")
        expect(meter).to_contain_text("Voice budget today: $5.01 of $5.00")
        expect(page.get_by_role("button", name="Start")).to_be_disabled()
        page.screenshot(path=str(artifacts / "error-429-budget-exhausted.png"))
        assert len(standin.issued) == issued  # refused before OpenAI
        assert datetime.now(UTC) < frees
    finally:
        context.close()
