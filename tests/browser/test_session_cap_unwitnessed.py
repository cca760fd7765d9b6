"""The session cap in the browser when no server can hang up (REALTIME_WITNESS=false): the page's
own timer ends the session at REALTIME_MAX_SESSION_SECONDS, and the server refuses to continue a
conversation past the cap. A server of its own with an 8-second cap.

A module of its own: the capped server of test_session_cap.py (witness on) must be gone by then.
Its supervisor would otherwise witness this server's calls and hang them up at its own cap, as any
process of one deployment does — but this test is about a deployment with no witness at all.
"""

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, RealtimeCall
from tests.browser.conftest import _live_server, _new_user_on_chat
from tests.realtime_standin import scripts
from tests.support.browser import expect_alert, expect_lines, expect_phase, start

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 8


@pytest.fixture(scope="module")
def _unwitnessed_server(django_db_setup, django_db_blocker, _realtime_standin_server):
    yield from _live_server(
        _realtime_standin_server,
        django_db_blocker,
        log="daphne-unwitnessed.log",
        REALTIME_MAX_SESSION_SECONDS=str(CAP),
        REALTIME_WITNESS="false",
    )


@pytest.fixture
def unwitnessed_page(_unwitnessed_server, transactional_db, _realtime_standin_server, page):
    yield from _new_user_on_chat(_unwitnessed_server, _realtime_standin_server, page, "unwitnessed")


def test_without_a_witness_the_page_ends_the_session_and_the_server_refuses_to_continue(
    unwitnessed_page, standin
):
    page, user = unwitnessed_page
    standin.calls.script_next(scripts.conversation(1))
    start(page)
    first = standin.calls.wait_for_call()
    expect_lines(page, 2)

    # No server can hang up: the page's own timer ends the session at the cap.
    alert = expect_alert(page, "Session time limit reached", timeout=(CAP + 5) * 1000)
    expect(alert).to_contain_text("This session reached its 8-second limit.")
    assert first.closed.wait(5) and first.ended_by != "hangup"
    assert not RealtimeCall.objects.filter(hangup_requested_at__isnull=False).exists()

    # The conversation began more than the cap ago and no call of it could be hung up: refused.
    page.get_by_role("button", name="Continue this conversation").click()
    expect(page.locator("#voice-alert-message")).to_have_text(
        "This conversation has reached its 8-second limit. Start a new conversation to go on talking."
    )
    expect_phase(page, "idle")
    assert standin.calls.calls == [first]  # no second call

    standin.calls.script_next(scripts.conversation(1, first=2))
    start(page)  # a new conversation
    standin.calls.wait_for_call(count=2)
    expect_phase(page, "live")
    assert Conversation.objects.filter(user=user).count() == 2
    assert page.errors == []
