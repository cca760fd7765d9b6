"""What the browser tests do with the page and say about it and the database, in one place."""

from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from conversations.models import Conversation, Event, Source, Utterance
from conversations.transcript.forwarded import forwarded_types

FORWARDED = forwarded_types()  # the page's own list (static/voice/outbox.js)


def sign_in(context, user, base_url: str) -> None:
    """Put a real session cookie for `user` into the browser context."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": base_url}])


def press_start(page: Page) -> None:
    """Press Start without waiting: for scripts that may end the session before a test sees it live."""
    page.get_by_role("button", name="Start").click()


def start(page: Page) -> None:
    press_start(page)
    expect_phase(page, "live")


def expect_phase(page: Page, phase: str, timeout: float = 10_000) -> None:
    expect(page.locator("#voice")).to_have_attribute("data-phase", phase, timeout=timeout)


def lines(page: Page) -> list[tuple[str, str, str]]:
    """(role, text, status) of each transcript line, top to bottom."""
    return page.locator("#transcript li").evaluate_all(
        "items => items.map(li => [li.classList.contains('line-user') ? 'user' : 'assistant',"
        " li.querySelector('.line-text').textContent, li.dataset.status])"
    )


def expect_lines(page: Page, count: int, timeout: float = 10_000) -> None:
    expect(page.locator("#transcript li")).to_have_count(count, timeout=timeout)


def expect_all_saved(page: Page, timeout: float = 15_000) -> None:
    save = page.locator("#save-state")
    expect(save).to_have_attribute("data-pending", "0", timeout=timeout)
    expect(save).to_have_text("All saved", timeout=timeout)


def expect_alert(page: Page, title: str, timeout: float = 10_000):
    alert = page.locator("#voice-alert")
    expect(alert).to_be_visible(timeout=timeout)
    expect(page.locator("#voice-alert-title")).to_have_text(title, timeout=timeout)
    return alert


def conversation_of(user) -> Conversation:
    return Conversation.objects.get(user=user)


def stored_lines(conversation: Conversation) -> list[tuple[str, str, str]]:
    return [
        (u.role, u.text, u.status)
        for u in Utterance.objects.filter(conversation=conversation).order_by("position")
    ]


def forwarded(call) -> list[dict]:
    """The server events of a call the page must have forwarded to the socket."""
    return [event for event in call.sent if event["type"] in FORWARDED]


def assert_journal_complete(conversation: Conversation, calls) -> None:
    """Every forwarded event stored exactly once, in order, with seqs 1..n (the browser's stream:
    the server's witness journals its own beside it, numbered apart)."""
    events = list(Event.objects.filter(conversation=conversation, source=Source.BROWSER).order_by("seq"))
    expected = [event["event_id"] for call in calls for event in forwarded(call)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.payload.get("event_id") for e in events] == expected
