"""
The history pages and the admin review in a real browser: screenshots into test-artifacts/
(desktop and phone widths), no script or CSP errors, and a turn arriving live on an open
transcript page.

Chromium is driven through Playwright's sync API in a thread of its own. In the main thread
the sync API would leave an event loop running after it is done, and every later test of the
session would then see one (Django's ORM refuses to run, pytest-asyncio cannot start its loop).
The server is daphne in another process on the test database, so the data is committed
(transactional tests).
"""

import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from conversations.models import Conversation, Utterance
from conversations.transcript.live import serialize_utterance
from tests.support.events import assistant, audio_done, linked, transcribed, user_audio
from tests.support.factories import make_talk, make_user, signed_in
from tests.support.processes import LiveServer, server_environment

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs the Debian chromium package"),
]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "history"
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


# --- The server -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    # Not UTC, and not a whole number of hours: the pages must agree on the clock, not merely be in UTC.
    with LiveServer(server_environment(TIME_ZONE="Asia/Kolkata"), log=ARTIFACTS / "daphne.log") as live:
        yield live.url


# --- The browser, in its own thread ---------------------------------------------------------------
class BrowserThread:
    """Runs callables `fn(browser)` in the one thread that owns Playwright and Chromium."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
        self.run(self._start)

    def _start(self, _):
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
                "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
            ],
        )  # fmt: skip

    def run(self, fn, *args):
        return self.pool.submit(lambda: fn(getattr(self, "browser", None), *args)).result(timeout=180)

    def close(self):
        def stop(browser):
            browser.close()
            self.playwright.stop()

        self.run(stop)
        self.pool.shutdown()


@pytest.fixture(scope="module")
def chromium():
    thread = BrowserThread()
    yield thread
    thread.close()


def session_cookie(user, base_url):
    client = signed_in(user)
    name = settings.SESSION_COOKIE_NAME
    return {"name": name, "value": client.cookies[name].value, "url": base_url}


def open_page(browser, cookie, device=DESKTOP):
    """A signed-in page that records script errors and console errors (CSP violations among them)."""
    context = browser.new_context(**device)
    context.add_cookies([cookie])
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    return page


def shoot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# --- Data that looks like real use -----------------------------------------------------------------
def make_history(user):
    now = timezone.now().replace(second=0, microsecond=0)
    trip = make_talk(
        user,
        [
            ("user", "I'm going to Lisbon for three days next month. What should I not miss?"),
            (
                "assistant",
                (
                    "Start in Alfama: walk up to the Miradouro de Santa Luzia for the view, then ride tram 28 "
                    "through the old town. On day two, go to Belém for the monastery and the custard tarts."
                ),
            ),
            ("user", "", "failed"),
            ("assistant", "Sorry, I didn't catch that. Could you say it again?"),
            ("user", "Is it worth a day trip to Sintra?"),
            (
                "assistant",
                (
                    "Yes, if you leave early. The Pena Palace gets crowded by eleven, so take the first "
                    "train from Rossio and book your ticket"
                ),
                "interrupted",
            ),
            ("user", "Which palace should I pick if I only have time for one?"),
            (
                "assistant",
                (
                    "Pick Pena for the colours and the views; pick Quinta da Regaleira if you'd rather "
                    "explore gardens, tunnels and the initiation well."
                ),
            ),
        ],
        title="Three days in Lisbon",
        when=now - timedelta(days=1, hours=3),
        status=Conversation.Status.ENDED,
    )
    make_talk(
        user,
        [
            ("user", "Can you help me practise my Spanish? Let's order food in a restaurant."),
            ("assistant", "¡Claro! Yo soy el camarero. Buenas tardes, ¿qué le pongo?"),
        ],
        when=now - timedelta(days=2, hours=5),
        status=Conversation.Status.ENDED,
    )
    make_talk(
        user,
        [("user", "What's a good name for a grey cat?"), ("assistant", "Earl Grey, Smokey or Pebble.")],
        title="Cat names",
        when=now - timedelta(days=4),
        status=Conversation.Status.ENDED,
    )
    make_talk(
        user,
        [
            ("user", "Explain how a heat pump works, simply."),
            ("assistant", "It moves heat instead of making it, like a fridge running backwards."),
        ],
        when=now - timedelta(days=6, hours=2),
        status=Conversation.Status.ENDED,
        model="gpt-realtime-2.1-mini",
    )
    make_talk(user, [("user", "", "failed")], when=now - timedelta(days=9), status=Conversation.Status.FAILED)
    live = make_talk(user, [], when=now - timedelta(minutes=2), title="Right now")
    return trip, live


def test_history_transcript_and_admin_screens(server, chromium):
    alice = make_user("alice")
    trip, _live = make_history(alice)
    reviewer = make_user("reviewer", is_staff=True, is_superuser=True)
    Conversation.objects.filter(pk=trip.pk).update(
        flagged=True, review_note="The user asked about opening hours: check the answer was hedged."
    )
    alice_cookie = session_cookie(alice, server)
    reviewer_cookie = session_cookie(reviewer, server)

    def user_pages(browser):
        for device, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
            page = open_page(browser, alice_cookie, device)
            page.goto(server + "/conversations/")
            page.get_by_role("heading", name="History").wait_for()
            assert page.locator("tbody tr").count() == 6
            shoot(page, f"history-list-{suffix}")

            page.get_by_label("Search transcripts").fill("palace")
            page.get_by_role("button", name="Search").click()
            page.wait_for_url("**/conversations/?q=palace*")
            assert page.locator("tbody tr").count() == 1
            assert page.locator("mark").first.inner_text().lower() == "palace"
            shoot(page, f"history-search-{suffix}")

            page.get_by_role("link", name="Three days in Lisbon").click()
            page.get_by_role("heading", name="Three days in Lisbon").wait_for()
            assert page.locator(".transcript .line").count() == 8
            assert page.locator(".line[data-status=failed] .line-status").text_content() == "Transcription failed"
            shoot(page, f"transcript-{suffix}")

            page.get_by_text("Download", exact=True).click()
            assert page.get_by_role("link", name="Markdown .md").is_visible()
            shoot(page, f"transcript-download-menu-{suffix}")
            with page.expect_download() as download:
                page.get_by_role("link", name="Markdown .md").click()
            assert download.value.suggested_filename == f"conversation-{trip.uuid}.md"

            page.goto(server + f"/conversations/{trip.uuid}/delete/")
            shoot(page, f"delete-confirm-{suffix}")
            assert page.problems == [], page.problems
            page.context.close()

    def admin_pages(browser):
        for device, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
            page = open_page(browser, reviewer_cookie, device)
            page.goto(server + "/admin/conversations/conversation/")
            page.locator("#result_list").wait_for()
            shoot(page, f"admin-list-{suffix}")
            page.goto(server + f"/admin/conversations/conversation/{trip.pk}/change/")
            page.get_by_text("Transcript", exact=True).first.wait_for()
            assert page.locator(".transcript-inline tbody tr").count() >= 8
            shoot(page, f"admin-change-{suffix}")
            page.goto(server + "/admin/conversations/conversation/usage/")
            page.locator("h2", has_text="Per user").wait_for()
            shoot(page, f"admin-usage-{suffix}")
            assert page.problems == [], page.problems
            page.context.close()

    chromium.run(user_pages)
    chromium.run(admin_pages)


# What the chat page does with the events it forwards, one frame at a time (each ack before the next
# frame, so each is stored in a batch of its own); returns the acked seqs.
SEND_EVENTS = """async ([path, events]) => {
    const socket = new WebSocket(`ws://${location.host}${path}`);
    const acks = [];
    const send = () => socket.send(JSON.stringify({type: "event", seq: acks.length + 1, event: events[acks.length]}));
    await new Promise((resolve, reject) => {
        socket.onerror = reject;
        socket.onmessage = (m) => {
            const message = JSON.parse(m.data);
            if (message.type === "ready") send();
            if (message.type === "ack") acks.push(message.seq);
            if (message.type === "ack") acks.length === events.length ? resolve() : send();
        };
    });
    socket.close();
    return acks;
}"""


def test_a_turn_appears_live_on_the_open_transcript_page(server, chromium):
    alice = make_user("alice")
    conversation = make_talk(alice, [], title="Live now")
    reviewer = make_user("reviewer", is_staff=True, is_superuser=True)
    alice_cookie = session_cookie(alice, server)
    reviewer_cookie = session_cookie(reviewer, server)
    events = [
        user_audio("item_u1"),
        assistant("item_a1"),
        audio_done("item_a1", "resp_1", "Good morning! What can I do for you today?"),
        # The user's transcript arrives after the reply to it; the line keeps its place.
        transcribed("item_u1", "Good morning, assistant."),
    ]

    def watch(browser):
        transcript = open_page(browser, alice_cookie)
        transcript.goto(server + conversation.get_absolute_url())
        transcript.locator(".live-status.is-live").wait_for()
        reviewing = open_page(browser, reviewer_cookie)
        reviewing.goto(server + f"/admin/conversations/conversation/{conversation.pk}/live/")
        reviewing.locator(".live-status.is-live").wait_for()

        # Another tab of alice's does the talking, over the transcript socket as the chat page does.
        talking = transcript.context.new_page()
        talking.goto(server + "/conversations/")
        acked = talking.evaluate(SEND_EVENTS, [f"/ws/conversations/{conversation.uuid}/", events])
        assert acked == [1, 2, 3, 4]

        for page, name in ((transcript, "transcript-live"), (reviewing, "admin-live")):
            user_line = page.locator('.line[data-item-id="item_u1"]')
            user_line.locator(".line-text", has_text="Good morning, assistant.").wait_for()
            lines = page.locator(".transcript .line")
            assert lines.count() == 2
            assert lines.nth(0).get_attribute("data-item-id") == "item_u1"
            assert "Good morning! What can I do" in lines.nth(1).inner_text()
            assert page.locator(".transcript-empty").is_hidden()
            assert page.locator(".line-status:visible").count() == 0  # both completed: no badge
            shoot(page, name)
            assert page.problems == [], page.problems
        assert "alice" in reviewing.locator('.line[data-item-id="item_u1"] .line-speaker').inner_text()
        assert transcript.locator("[data-turn-count]").inner_text() == "2"
        transcript.context.close()
        reviewing.context.close()

    chromium.run(watch)


def test_the_script_draws_a_line_exactly_as_the_server_does(server, chromium):
    """One line, one markup: live.js and the voice page draw with common/line.js, the server with
    transcript_line.html; for the same utterance the two must agree to the attribute."""
    alice = make_user("alice")
    talk = make_talk(
        alice,
        [
            ("user", 'Is 3 < 4 & "five" > 2?\n  Yes.'),
            ("assistant", "Yes — and <b>that</b> is not bold.", "interrupted"),
            ("user", "", "failed"),
            ("assistant", "", "interrupted"),
            ("user", "", "pending"),
            ("user", "Typed, with ü and 'quotes'"),
        ],
        status=Conversation.Status.ENDED,
    )
    Utterance.objects.filter(conversation=talk, position=5).update(kind=Utterance.Kind.TEXT)
    Utterance.objects.filter(conversation=talk, position__in=[0, 2]).update(verified=True)  # the witness saw them
    utterances = [serialize_utterance(u) for u in talk.utterances.order_by("position")]
    cookie = session_cookie(alice, server)

    def compare(browser):
        page = open_page(browser, cookie)
        page.goto(server + talk.get_absolute_url())
        served, drawn = page.evaluate(
            """async (utterances) => {
                const css = document.querySelector('link[href*="common/line.css"]').href;
                const { LineList } = await import(css.replace("line.css", "line.js"));
                const served = document.querySelector(".transcript");
                const labels = JSON.parse(document.getElementById("transcript-labels").textContent);
                const drawn = new LineList(document.createElement("ol"), labels, { timeZone: served.dataset.timeZone });
                // In a shuffled order: each line still finds its place.
                [...utterances].reverse().forEach((u) => drawn.show(u));
                const html = (list) => [...list.querySelectorAll(".line")].map((li) => li.outerHTML);
                return [html(served), html(drawn.list)];
            }""",
            utterances,
        )
        assert len(served) == len(utterances)
        for server_line, script_line in zip(served, drawn, strict=True):
            assert script_line == server_line
        assert page.problems == [], page.problems
        page.context.close()
        return served

    served = chromium.run(compare)
    assert 'data-status="failed" data-verified="true" data-at="' in served[2]
    # Each line says when it was said (the recording player seeks there).
    assert all(f'data-at="{u["created_at"]}"' in line for u, line in zip(utterances, served, strict=True))
    assert '<span class="line-kind">Typed</span>' in served[5]
    assert 'data-verified="true"' in served[0] and 'data-verified="false"' in served[1]
    assert '<span class="line-verified" title="Verified: the server heard this itself">✓</span>' in served[2]


def test_an_open_transcript_page_says_when_its_conversation_is_deleted(server, chromium):
    alice = make_user("alice")
    conversation = make_talk(alice, [("user", "Delete me, please.")], title="Short-lived")
    cookie = session_cookie(alice, server)

    def watch(browser):
        transcript = open_page(browser, cookie)
        transcript.goto(server + conversation.get_absolute_url())
        transcript.locator(".live-status.is-live").wait_for()
        # Another tab deletes it, as a user would.
        other = transcript.context.new_page()
        other.goto(server + f"/conversations/{conversation.uuid}/delete/")
        other.get_by_role("button", name="Delete conversation").click()
        other.wait_for_url(server + "/conversations/")
        status = transcript.locator(".live-status")
        status.filter(has_text="This conversation has been deleted.").wait_for()
        transcript.wait_for_timeout(1500)  # no reconnect attempt replaces the message
        assert "deleted" in status.inner_text() and "reconnecting" not in status.inner_text()
        assert transcript.locator(".transcript .line").count() == 1  # what was shown stays
        shoot(transcript, "transcript-deleted")
        assert transcript.problems == [], transcript.problems
        transcript.context.close()

    chromium.run(watch)
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.fixture(scope="module", autouse=True)
def _fresh_artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def test_a_turn_stored_ahead_of_the_one_it_follows_moves_into_place_live(server, chromium):
    """Turn 2 reaches the server first (as when the witness stores it while the page's outbox still
    holds turn 1); when turn 1 comes, the open transcript page shows the turns in the order said."""
    alice = make_user("alice")
    conversation = make_talk(alice, [], title="Out of order")
    cookie = session_cookie(alice, server)
    turn_1 = [user_audio("item_u1"), assistant("item_a1"), audio_done("item_a1", "resp_1", "The first answer.")]
    turn_2 = [user_audio("item_u2"), assistant("item_a2"), audio_done("item_a2", "resp_2", "The second answer.")]
    events = linked(turn_1 + turn_2)
    events = events[3:] + events[:3]

    def watch(browser):
        page = open_page(browser, cookie)
        page.goto(server + conversation.get_absolute_url())
        page.locator(".live-status.is-live").wait_for()
        talking = page.context.new_page()
        talking.goto(server + "/conversations/")
        assert talking.evaluate(SEND_EVENTS, [f"/ws/conversations/{conversation.uuid}/", events]) == list(range(1, 7))
        page.locator('.line[data-item-id="item_a1"] .line-text', has_text="The first answer.").wait_for()
        lines = page.locator(".transcript .line")
        expect_order = ["item_u1", "item_a1", "item_u2", "item_a2"]
        assert [lines.nth(i).get_attribute("data-item-id") for i in range(lines.count())] == expect_order
        page.reload()  # and as stored
        assert [lines.nth(i).get_attribute("data-item-id") for i in range(lines.count())] == expect_order
        assert page.problems == [], page.problems
        page.context.close()

    chromium.run(watch)
